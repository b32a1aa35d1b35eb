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

import threading
import zlib
from typing import Iterable, Optional

import psycopg  # the PostgreSQL driver: db/ is the one layer that may import it
import pyarrow as pa
import pyarrow.csv as pa_csv
import sqlalchemy as sa

from core.errors import StoreError
from db import schema

# Rows per COPY chunk: big enough that Arrow's CSV writer and the server's parser dominate.
COPY_CHUNK_ROWS = 256_000
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

    def engine_options(self) -> dict:
        return {}

    def lock_schema(self, conn) -> None:
        """Serialise creating/upgrading the schema with other processes (no-op where one process writes)."""

    def lock_run_names(self, conn, names: Iterable[str]) -> None:
        """Hold, until the transaction ends, the right to create or replace runs of these names."""

    def bulk_insert(self, conn, table_name: str, arrow: pa.Table) -> int:
        raise NotImplementedError

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

    def engine_options(self) -> dict:
        # pre_ping: a pooled connection that died with a restarted server is replaced, not used.
        return {"pool_pre_ping": True}

    def lock_schema(self, conn) -> None:
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")

    def lock_run_names(self, conn, names: Iterable[str]) -> None:
        # Sorted, so two imports that share names take their locks in one order (no deadlock).
        keys = sorted({zlib.crc32(str(n).encode("utf-8")) - 2 ** 31 for n in names})
        for key in keys:
            conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({RUN_NAME_LOCK_SPACE}, {int(key)})")

    def bulk_insert(self, conn, table_name: str, arrow: pa.Table) -> int:
        """COPY ``arrow``'s rows into ``table_name`` inside the caller's transaction."""
        if arrow.num_rows == 0:
            return 0
        return copy_batches(conn, table_name, arrow.column_names,
                            arrow.to_batches(max_chunksize=COPY_CHUNK_ROWS))

    def connection_lost(self, url: str, exc: BaseException) -> Optional[StoreError]:
        orig = getattr(exc, "orig", None) or exc
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
        # Window functions: each run's x range (w), then per bucket the last point and the band (b).
        return _curve_points(x, xexpr, positive) + f"""
            k AS (
                SELECT run_id, x, value,
                       CASE WHEN max(bx) OVER w > min(bx) OVER w
                            THEN floor((bx - min(bx) OVER w) / (max(bx) OVER w - min(bx) OVER w) * :nb)
                            ELSE 0 END AS bucket
                FROM s WINDOW w AS (PARTITION BY run_id)),
            g AS (
                SELECT run_id, x, value, min(value) OVER b AS vmin, max(value) OVER b AS vmax,
                       count(*) OVER b AS n, row_number() OVER (b ORDER BY x DESC) AS rn
                FROM k WINDOW b AS (PARTITION BY run_id, bucket))
            SELECT r.name AS run, g.x, g.value, g.vmin, g.vmax, g.n
            FROM g JOIN runs r ON r.id = g.run_id WHERE g.rn = 1 ORDER BY r.id, g.x"""

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


def _curve_points(x: str, xexpr: str, positive: str) -> str:
    """The CTE ``s`` both curve queries start from: the chosen runs' points of one metric, x and bucket x."""
    return f"""
            WITH s AS (
                SELECT m.run_id, m.{x} AS x, {xexpr} AS bx, m.value FROM metrics m
                WHERE m.run_id IN :ids AND m.name = :metric AND m.{x} IS NOT NULL{positive}),"""


def copy_batches(conn, table_name: str, columns: list[str], batches: Iterable[pa.RecordBatch]) -> int:
    """COPY Arrow record batches into ``table_name`` (``columns`` in batch order) over the caller's
    connection and transaction; returns the rows sent. Nulls travel as unquoted empty fields."""
    raw = conn.connection.driver_connection
    cols = ", ".join(f'"{c}"' for c in columns)
    options = pa_csv.WriteOptions(include_header=False)
    rows = 0
    try:
        with raw.cursor() as cur, cur.copy(f'COPY "{table_name}" ({cols}) FROM STDIN (FORMAT csv)') as copy:
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                sink = pa.BufferOutputStream()
                pa_csv.write_csv(batch, sink, options)
                copy.write(memoryview(sink.getvalue()))
                rows += batch.num_rows
    except psycopg.Error as exc:
        if raw.broken or raw.closed:
            conn.invalidate(exc)  # the server went away: SQLAlchemy must not reuse this connection
        raise sa.exc.DBAPIError.instance(f"COPY {table_name}", None, exc, psycopg.Error,
                                         connection_invalidated=raw.broken or raw.closed) from None
    return rows


DUCKDB = DuckDB()
POSTGRESQL = PostgreSQL()

# PostgreSQL only: a BRIN index (block ranges, PostgreSQL's zone maps) on the bulk tables' run and
# capture ids. Rows arrive run by run, so it narrows a 20-run chart query to those runs' blocks, and
# it costs almost nothing at each COPY (a B-tree would). DuckDB keeps no index (see db/schema.py).
for _table, _column in ((schema.metrics, "run_id"), (schema.routing_assignments, "capture_id")):
    sa.event.listen(_table, "after_create", sa.DDL(
        f"CREATE INDEX IF NOT EXISTS ix_{_table.name}_{_column}_brin ON {_table.name} USING brin ({_column}) "
        "WITH (pages_per_range = 16)").execute_if(dialect="postgresql"))
