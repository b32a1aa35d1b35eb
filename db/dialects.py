"""The small engine-specific part of the Store: DuckDB (one file, the zero-setup default) and
PostgreSQL (a team store). Everything else in db/ is one code path on SQLAlchemy Core.

Each dialect says:
- how a URL is checked and shown (a PostgreSQL URL may carry a password: it is never shown),
- how writers are serialised: DuckDB, one lock per file in the process (DuckDB allows one writer
  process per file); PostgreSQL, nothing beyond its transactions, plus advisory locks where two
  writers could decide the same thing at once (creating the schema, claiming a run name),
- how bulk rows go in: DuckDB scans an Arrow table in place; PostgreSQL takes them through COPY
  (psycopg's copy API, CSV written by Arrow's C++ writer),
- the few queries whose best form differs (arg_max and ASOF joins in DuckDB; window functions,
  DISTINCT ON and LATERAL joins in PostgreSQL),
- what a lost connection looks like (PostgreSQL: one line naming the server, password hidden).
"""
from __future__ import annotations

import itertools
import queue
import threading
import zlib
from typing import Iterable, Iterator, Optional

import numpy as np
import pandas as pd

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from core.errors import StoreError
from db import schema

# Rows per COPY chunk: big enough that Arrow's CSV writer and the server's parser dominate.
COPY_CHUNK_ROWS = 256_000
# libpq's connect_timeout: a team store whose host does not answer fails in seconds with the one-line
# "cannot be reached" error, not after the operating system's TCP timeout (minutes) with every page
# and the watcher's scans blocked. A URL that sets connect_timeout itself keeps its value.
CONNECT_TIMEOUT_S = 10
# OperationalErrors that do not mean the server went away: deadlock detected, serialization failure,
# lock not available (PostgreSQL's SQLSTATE codes).
NOT_LOST_SQLSTATES = ("40P01", "40001", "55P03")
# Advisory lock keys (PostgreSQL): one for creating/upgrading the schema, one space for run names.
SCHEMA_LOCK_KEY = 0x5CA1E5C0
RUN_NAME_LOCK_SPACE = 0x5CA1E


def safe_url(url: str) -> str:
    """``url`` as it may be shown in a message, a log or the UI: the password replaced by ***."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: show only its scheme
        return url.split("://", 1)[0] + "://..." if "://" in url else "<database URL>"


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` (if any) and the full URL replaced by their safe forms."""
    try:
        parsed = sa.make_url(url)
    except Exception:
        return text
    password = parsed.password
    text = text.replace(url, safe_url(url))
    if password:
        text = text.replace(str(password), "***")
    return text


def for_url(url: str) -> "Dialect":
    scheme = url.split(":", 1)[0].split("+", 1)[0].lower()
    if scheme == "duckdb":
        return DUCKDB
    if scheme in ("postgresql", "postgres"):
        return POSTGRESQL
    raise StoreError(f"Unsupported database URL {safe_url(url)}: ScaleScope needs a file, e.g. "
                     "duckdb:///data/scalescope.duckdb (the default), or a PostgreSQL server, "
                     "postgresql+psycopg://USER@HOST:PORT/DB (a team store).")


def for_conn(conn) -> "Dialect":
    return POSTGRESQL if conn.dialect.name == "postgresql" else DUCKDB


class Dialect:
    name = ""

    def engine_options(self, url: str) -> dict:
        return {}

    def prepare_engine(self, engine) -> None:
        """Settings every new connection of ``engine`` gets."""

    def lock_schema(self, conn) -> None:
        """Serialise creating/upgrading the schema with other processes (no-op where one process writes)."""

    def lock_run_names(self, conn, names: Iterable[str]) -> None:
        """Hold, until the transaction ends, the right to create or replace runs of these names."""

    def bulk_insert(self, conn, table_name: str, arrow: pa.Table) -> int:
        raise NotImplementedError

    def after_bulk_load(self, engine) -> None:
        """Upkeep after a big committed load (outside its transaction)."""

    @staticmethod
    def read_curves(conn, stmt, params: dict) -> pd.DataFrame:
        """The curves query's result (columns run, x, value, vmin, vmax, n) as a DataFrame."""
        return pd.read_sql(stmt, conn, params=params)

    def connection_lost(self, url: str, exc: BaseException) -> Optional[StoreError]:
        return None


class DuckDB(Dialect):
    """One file; one writer process; Arrow scans for bulk rows."""

    name = "duckdb"

    def bulk_insert(self, conn, table_name: str, arrow: pa.Table) -> int:
        raw = conn.connection.driver_connection
        view = f"_ss_bulk_{threading.get_ident()}"
        cols = ", ".join(f'"{c}"' for c in arrow.column_names)
        raw.register(view, arrow)
        try:
            conn.exec_driver_sql(f'INSERT INTO "{table_name}" ({cols}) SELECT {cols} FROM "{view}"')
        finally:
            raw.unregister(view)
        return arrow.num_rows

    @staticmethod
    def curves_sql(x: str, xexpr: str, positive: str) -> str:
        return _curve_points(x, xexpr, positive) + f"""
            b AS (SELECT run_id, min(bx) AS lo, max(bx) AS hi FROM s GROUP BY run_id),
            k AS (
                SELECT s.run_id, s.x, s.value,
                       CASE WHEN b.hi > b.lo THEN floor((s.bx - b.lo) / (b.hi - b.lo) * :nb) ELSE 0 END AS bucket
                FROM s JOIN b ON s.run_id = b.run_id)
            SELECT r.name AS run, arg_max(k.x, k.x) AS x, arg_max(k.value, k.x) AS value,
                   min(k.value) AS vmin, max(k.value) AS vmax, count(*) AS n
            FROM k JOIN runs r ON r.id = k.run_id
            GROUP BY r.id, r.name, k.bucket ORDER BY r.id, x"""

    @staticmethod
    def final_values_sql(where: str, names: str) -> str:
        return f"""
            SELECT r.id AS run_id, r.name AS run, r.arch, r.n_params, r.n_nonembedding_params,
                   r.n_active_params, r.n_experts, r.top_k, r.tokens AS run_tokens, r.flops AS run_flops,
                   r.tags, r.config,
                   arg_max(m.value, coalesce(m.step, 1e300)) AS value,
                   arg_max(m.step, coalesce(m.step, 1e300)) AS step,
                   arg_max(m.tokens, coalesce(m.step, 1e300)) AS tokens,
                   arg_max(m.flops, coalesce(m.step, 1e300)) AS flops
            FROM runs r JOIN metrics m ON m.run_id = r.id
            WHERE {where} {names}
            GROUP BY ALL ORDER BY r.id"""


class PostgreSQL(Dialect):
    """A server many processes write at once: transactions, advisory locks, COPY for bulk rows."""

    name = "postgresql"

    def engine_options(self, url: str) -> dict:
        # pre_ping: a pooled connection that died with a restarted server is replaced, not used.
        options = {"pool_pre_ping": True}
        if "connect_timeout" not in sa.engine.make_url(url).query:  # the URL's own setting wins
            options["connect_args"] = {"connect_timeout": CONNECT_TIMEOUT_S}
        return options

    def prepare_engine(self, engine) -> None:
        sa.event.listen(engine, "connect", _session_settings)

    def lock_schema(self, conn) -> None:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")

    def lock_run_names(self, conn, names: Iterable[str]) -> None:
        # Sorted, so two imports that share names take their locks in one order (no deadlock).
        keys = sorted({zlib.crc32(str(n).encode("utf-8")) - 2 ** 31 for n in names})
        if keys:  # one round trip, however many names
            conn.execute(sa.text(f"SELECT pg_advisory_xact_lock({RUN_NAME_LOCK_SPACE}, k) FROM "
                                 "(SELECT k FROM unnest(CAST(:keys AS integer[])) AS k ORDER BY k) AS sorted"),
                         {"keys": keys})

    def bulk_insert(self, conn, table_name: str, arrow: pa.Table) -> int:
        """COPY ``arrow``'s rows into ``table_name`` inside the caller's transaction."""
        if arrow.num_rows == 0:
            return 0
        return copy_batches(conn, table_name, arrow.column_names,
                            arrow.to_batches(max_chunksize=COPY_CHUNK_ROWS))

    def after_bulk_load(self, engine) -> None:
        # Block ranges filled since the last VACUUM are not in the BRIN index yet, and a query must
        # read them all; summarise them now (one read of the new pages) instead of after autovacuum.
        with engine.begin() as conn:
            conn.exec_driver_sql(f"SELECT brin_summarize_new_values('{METRICS_BRIN}')")

    def connection_lost(self, url: str, exc: BaseException) -> Optional[StoreError]:
        import psycopg  # the PostgreSQL driver, imported by a PostgreSQL store only (~40 ms a DuckDB CLI run spares)

        orig = getattr(exc, "orig", None) or exc
        if getattr(orig, "sqlstate", None) in NOT_LOST_SQLSTATES:
            return None  # the server is there: a deadlock or a lock conflict is an error of this operation
        lost = isinstance(orig, psycopg.OperationalError) or (
            isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated)
        if isinstance(orig, psycopg.Error) and getattr(orig, "sqlstate", None) in ("57P01", "57P02", "57P03"):
            lost = True  # admin shutdown, crash shutdown, cannot connect now
        if not lost:
            return None
        detail = " ".join(str(orig).split())[:200] or type(orig).__name__
        return StoreError(
            f"The PostgreSQL database {safe_url(url)} cannot be reached ({scrub(detail, url)}): nothing of this "
            "operation was stored. Check that the server is running and reachable, then try again.")

    @staticmethod
    def curves_sql(x: str, xexpr: str, positive: str) -> str:
        # A window function gives each point its run's x range (w); one hash aggregate then makes the
        # buckets, keeping the last point's (x, value) as the largest [x, value] array (no sort per bucket).
        return _curve_points(x, xexpr, positive) + f"""
            k AS (
                SELECT run_id, x, value,
                       CASE WHEN max(bx) OVER w > min(bx) OVER w
                            THEN CAST(floor((bx - min(bx) OVER w) / (max(bx) OVER w - min(bx) OVER w) * :nb)
                                      AS integer)
                            ELSE 0 END AS bucket
                FROM s WINDOW w AS (PARTITION BY run_id)),
            g AS (
                SELECT run_id, max(ARRAY[x, value]) AS last, min(value) AS vmin, max(value) AS vmax,
                       count(*) AS n
                FROM k GROUP BY run_id, bucket)
            SELECT r.name AS run,
                   array_send(array_agg(ARRAY[g.last[1], g.last[2], g.vmin, g.vmax, g.n] ORDER BY g.last[1])) AS points
            FROM g JOIN runs r ON r.id = g.run_id GROUP BY r.id, r.name ORDER BY r.id"""

    @staticmethod
    def read_curves(conn, stmt, params: dict) -> pd.DataFrame:
        """The curves query's rows: one per run holding its buckets as one binary float8 array of
        (x, value, vmin, vmax, n) rows (array_send), so 40,000 points arrive as 20 values that numpy
        reads, not as 200,000 Python floats (that took longer than the query)."""
        runs, blocks = [], []
        for run, points in conn.execute(stmt, params).all():
            block = _binary_float8s(points).reshape(-1, len(CURVE_COLUMNS))
            runs.append(np.full(len(block), run, dtype=object))
            blocks.append(block)
        if not runs:
            return pd.DataFrame(columns=["run", *CURVE_COLUMNS])
        table = np.concatenate(blocks)
        frame = pd.DataFrame({"run": np.concatenate(runs), **{c: table[:, i] for i, c in enumerate(CURVE_COLUMNS)}})
        return frame.astype({"n": "int64"})

    @staticmethod
    def final_values_sql(where: str, names: str) -> str:
        # DuckDB's arg_max(x, key): x of the row with the largest key, among the rows where x is not NULL.
        def arg_max(col: str) -> str:
            return (f"(array_agg(m.{col} ORDER BY coalesce(m.step, 1e300) DESC) "
                    f"FILTER (WHERE m.{col} IS NOT NULL))[1] AS {col}")
        return f"""
            SELECT r.id AS run_id, r.name AS run, r.arch, r.n_params, r.n_nonembedding_params,
                   r.n_active_params, r.n_experts, r.top_k, r.tokens AS run_tokens, r.flops AS run_flops,
                   r.tags, r.config, {", ".join(arg_max(c) for c in ("value", "step", "tokens", "flops"))}
            FROM runs r JOIN metrics m ON m.run_id = r.id
            WHERE {where} {names}
            GROUP BY r.id ORDER BY r.id"""


# The columns of each bucket, in the order of the PostgreSQL curves query's 2-D array.
CURVE_COLUMNS = ("x", "value", "vmin", "vmax", "n")


def _binary_float8s(data: bytes) -> np.ndarray:
    """The elements of a float8 array without NULLs in PostgreSQL's binary form (array_send: ndim,
    flags, element type, then size and lower bound per dimension; then a 4-byte length and the
    8-byte value per element), flat, in row-major order."""
    ndim = int.from_bytes(data[:4], "big")
    items = np.frombuffer(data, dtype=[("len", ">i4"), ("v", ">f8")], offset=12 + 8 * ndim)
    return items["v"].astype(np.float64)


def _session_settings(dbapi_connection, _record) -> None:
    """PostgreSQL session settings. No JIT: ScaleScope's queries run for milliseconds, but a chart query
    over 10M rows costs enough to cross jit_above_cost, and compiling it took ~100 ms more than running
    it. work_mem at least 32 MB: a 20-run chart's 40,000 buckets otherwise spill to disk."""
    with dbapi_connection.cursor() as cur:
        cur.execute("SET jit = off")
        cur.execute("SELECT set_config('work_mem', '32MB', false) FROM pg_settings "
                    "WHERE name = 'work_mem' AND setting::bigint < 32768")
    dbapi_connection.commit()


def _curve_points(x: str, xexpr: str, positive: str) -> str:
    """The CTE ``s`` both curve queries start from: the chosen runs' points of one metric, x and bucket x."""
    return f"""
            WITH s AS (
                SELECT m.run_id, m.{x} AS x, {xexpr} AS bx, m.value FROM metrics m
                WHERE m.run_id IN :ids AND m.name = :metric AND m.{x} IS NOT NULL{positive}),"""


def copy_batches(conn, table_name: str, columns: list[str], batches: Iterable[pa.RecordBatch]) -> int:
    """COPY Arrow record batches into ``table_name`` (``columns`` in batch order) over the caller's
    connection and transaction; returns the rows sent.

    Binary COPY when every column's Arrow type is the table's own (int4, int8, float8, text: the
    metrics, runs, evals and routing tables): the server then parses no text, about half the work
    of a CSV COPY. Anything else travels as CSV written by Arrow. The batches are read and encoded
    in a background thread while this one sends, so the file reader, the encoder and the server work
    at the same time.
    """
    import psycopg  # PostgreSQL only: a DuckDB store never imports the driver

    raw = conn.connection.driver_connection
    cols = ", ".join(f'"{c}"' for c in columns)
    batches = iter(batches)
    first = next((b for b in batches if b.num_rows), None)
    if first is None:
        return 0
    binary = _binary_fits(table_name, columns, first.schema)
    encode = _binary_rows if binary else _csv_rows
    rows = 0
    try:
        with raw.cursor() as cur, cur.copy(f'COPY "{table_name}" ({cols}) FROM STDIN '
                                           f'(FORMAT {"binary" if binary else "csv"})') as copy:
            if binary:
                copy.write(_BINARY_SIGNATURE)
            for n, data in _in_background((b.num_rows, encode(b)) for b in itertools.chain([first], batches)
                                          if b.num_rows):
                copy.write(data)
                rows += n
            if binary:
                copy.write(_BINARY_TRAILER)
    except psycopg.Error as exc:
        if raw.broken or raw.closed:
            conn.invalidate(exc)  # the server went away: SQLAlchemy must not reuse this connection
        raise sa.exc.DBAPIError.instance(f"COPY {table_name}", None, exc, psycopg.Error,
                                         connection_invalidated=raw.broken or raw.closed) from None
    return rows


# PostgreSQL's binary COPY framing: signature, flags and header extension; a field count of -1 ends it.
_BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
_BINARY_TRAILER = b"\xff\xff"


def _binary_fits(table_name: str, columns: list[str], arrow_schema: pa.Schema) -> bool:
    """Whether each Arrow column has exactly the binary form of its column in the schema's table."""
    table = schema.metadata.tables.get(table_name)
    if table is None:
        return False
    for name, field in zip(columns, arrow_schema):
        kind = table.c[name].type if name in table.c else None
        want = (pa.int64() if isinstance(kind, sa.BigInteger) else pa.int32() if isinstance(kind, sa.Integer)
                else pa.float64() if isinstance(kind, sa.Float) else pa.string() if isinstance(kind, sa.String)
                else None)
        if want is None or field.type != want:
            return False
    return True


def _csv_rows(batch: pa.RecordBatch) -> memoryview:
    """CSV without a header: nulls as unquoted empty fields, strings quoted, floats round-trip exact."""
    sink = pa.BufferOutputStream()
    pa_csv.write_csv(batch, sink, pa_csv.WriteOptions(include_header=False))
    return memoryview(sink.getvalue())


def _binary_rows(batch: pa.RecordBatch) -> bytes:
    """The rows of ``batch`` in PostgreSQL's binary COPY format, built with numpy, not row by row.

    Every tuple is a field count, then per field a big-endian int32 length (-1 for NULL) and the
    big-endian value. Rows that share their layout (the same strings' lengths, the same NULLs) form
    one group written as one packed numpy record array; COPY takes rows in any order. Metric rows
    have one layout per metric name, so a batch is a handful of groups.
    """
    n = batch.num_rows
    keys, mult, parts = np.zeros(n, dtype=np.int64), 1, []
    for col in batch.columns:
        if col.null_count == n:
            parts.append(("null", None, None))
        elif pa.types.is_string(col.type):
            # A few distinct values (metric names): one group per value, written as a constant. Many
            # (run names): one group per byte length, so the groups stay few.
            codes = pc.dictionary_encode(col)
            words = [w.encode("utf-8") for w in codes.dictionary.to_pylist()]
            index = codes.indices.fill_null(-1).to_numpy().astype(np.int64)  # -1: NULL
            sizes = np.array([len(w) for w in words] + [-1], dtype=np.int64)[index]  # [-1] picks NULL's
            layout = index if len(words) <= 64 else sizes
            distinct = np.unique(layout)
            if len(distinct) > 1:
                keys += np.searchsorted(distinct, layout) * mult
                mult *= len(distinct)
            parts.append(("text", sizes, (index, np.array(words + [b""], dtype=object), len(words) <= 64)))
        else:
            valid = None
            if col.null_count:
                valid = np.asarray(col.is_valid())
                keys += valid * mult
                mult *= 2
            values = (col.fill_null(0) if col.null_count else col).to_numpy()
            parts.append(("value", values.astype(values.dtype.newbyteorder(">")), valid))
    if mult > 1:
        order = np.argsort(keys, kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(keys[order])) + 1)
    else:
        groups = [None]  # one layout: every row, in place
    out = []
    for rows in groups:
        first = 0 if rows is None else rows[0]
        fields, values = [("count", ">i2")], {"count": len(parts)}
        for i, (kind, data, extra) in enumerate(parts):
            if kind == "null" or (kind == "value" and extra is not None and not extra[first]) or (
                    kind == "text" and data[first] < 0):
                fields.append((f"len{i}", ">i4"))
                values[f"len{i}"] = -1
            elif kind == "text":  # data: byte lengths; extra: dictionary index, encoded words, by value?
                size, (index, words, by_value) = int(data[first]), extra
                fields.append((f"len{i}", ">i4"))
                values[f"len{i}"] = size
                if size:
                    fields.append((f"val{i}", f"S{size}"))
                    values[f"val{i}"] = (words[index[first]] if by_value else
                                         words[index if rows is None else index[rows]].astype(f"S{size}"))
            else:
                fields += [(f"len{i}", ">i4"), (f"val{i}", data.dtype)]
                values[f"len{i}"] = data.dtype.itemsize
                values[f"val{i}"] = data if rows is None else data[rows]
        packed = np.empty(n if rows is None else len(rows), dtype=np.dtype(fields))
        for name, value in values.items():
            packed[name] = value
        out.append(packed.tobytes())
    return out[0] if len(out) == 1 else b"".join(out)


def _in_background(items: Iterator, depth: int = 3) -> Iterator:
    """Iterate ``items`` in a worker thread, ``depth`` ahead of the consumer (the reader and encoder
    release the GIL, so they overlap with the consumer's socket writes). Stops the worker when the
    consumer stops early; an error in the worker is raised here."""
    todo: queue.Queue = queue.Queue(depth)
    stop, done = threading.Event(), object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                todo.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # handed to the consumer, which raises it
            put(exc)

    worker = threading.Thread(target=work, name="scalescope-copy", daemon=True)
    worker.start()
    try:
        while True:
            item = todo.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()


DUCKDB = DuckDB()
POSTGRESQL = PostgreSQL()

# PostgreSQL only: a BRIN index (block ranges, PostgreSQL's zone maps) on the bulk tables' run and
# capture ids. Rows arrive run by run, so it narrows a 20-run chart query to those runs' blocks, and
# it costs almost nothing at each COPY (a B-tree would). DuckDB keeps no index (see db/schema.py).
# autosummarize: autovacuum adds each filled block range to the index; a big import does it at once
# (PostgreSQL.after_bulk_load).
METRICS_BRIN = "ix_metrics_run_id_brin"
for _table, _column in ((schema.metrics, "run_id"), (schema.routing_assignments, "capture_id")):
    sa.event.listen(_table, "after_create", sa.DDL(
        f"CREATE INDEX IF NOT EXISTS ix_{_table.name}_{_column}_brin ON {_table.name} USING brin ({_column}) "
        "WITH (pages_per_range = 16, autosummarize = on)").execute_if(dialect="postgresql"))
