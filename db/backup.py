"""The SQL of backups: every table of the schema to one Parquet file, and back into an empty store.

Dialect-neutral: tables, columns and sequences come from :mod:`db.schema`'s metadata and rows move
through SQLAlchemy in Arrow batches (plain SELECT / INSERT). DuckDB gets a fast path in the dialect
branches below: it writes and reads the Parquet files itself (COPY ... TO, read_parquet), in parallel.
The Parquet schema is the same either way (:func:`arrow_schema`), so a backup made on one dialect
restores on the other.
The manifest (what was written, row counts, checksums) is :mod:`services.backup`'s business.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Optional

import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from core.errors import StoreError
from db import dialects, schema
from db.store import Store, _file_of, default_url

BATCH_ROWS = 100_000
SCHEMA_VERSION = schema.SCHEMA_VERSION  # what a backup made now records, and what a restore accepts


def tables() -> list[sa.Table]:
    """Every table a backup holds, parents before children (the schema's own order). Not
    schema_info: the manifest records the version, and the target store has its own row."""
    return [t for t in schema.metadata.sorted_tables if t is not schema.schema_info]


def table_columns() -> dict[str, list[str]]:
    """{table name: its column names}, for checking a backup folder without touching a database."""
    return {t.name: [c.name for c in t.columns] for t in tables()}


def store_file(url: Optional[str] = None) -> Optional[Path]:
    """The database file a store URL names (the default store's without one); None for a server URL."""
    try:
        return _file_of(url or default_url())
    except StoreError:  # not a DuckDB file: a server database (or a URL Store() refuses itself)
        return None


def describe_url(url: str) -> str:
    """The URL without its password (a PostgreSQL URL carries one), for a manifest."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy parses: Store() refuses it anyway
        return url


def arrow_schema(table: sa.Table) -> pa.Schema:
    """The Parquet schema of ``table``, from its SQLAlchemy column types (same on every dialect)."""
    fields = []
    for col in table.columns:
        kind = col.type
        if isinstance(kind, sa.BigInteger):
            typ = pa.int64()
        elif isinstance(kind, sa.Integer):
            typ = pa.int32()
        elif isinstance(kind, sa.Float):
            typ = pa.float64()
        elif isinstance(kind, sa.Boolean):
            typ = pa.bool_()
        elif isinstance(kind, sa.DateTime):
            typ = pa.timestamp("us")
        elif isinstance(kind, sa.String):
            typ = pa.string()
        else:  # a new column type: teach the backup about it rather than guess
            raise StoreError(f"Cannot back up {table.name}.{col.name}: its type {kind} has no Parquet mapping.")
        fields.append(pa.field(col.name, typ, nullable=col.nullable))
    return pa.schema(fields)


def sequences() -> dict[str, tuple[sa.Table, sa.Column]]:
    """Each id sequence of the schema with the table and column it numbers."""
    out = {}
    for table in tables():
        for col in table.columns:
            if isinstance(col.default, sa.Sequence):
                out[col.default.name] = (table, col)
    return out


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------ backup
def dump(store: Store, folder: Path, progress: Optional[Callable[[int, int, str], None]] = None) -> dict:
    """Write every table to ``folder/<table>.parquet``; returns {"tables": {name: {file, rows,
    sha256}}, "sequences": {name: last value used}, "dialect": ...}.

    Holds the store's write lock throughout, so the files are one consistent snapshot: no import of
    this process lands halfway through (DuckDB lets no other process write the file meanwhile).
    """
    out: dict = {"tables": {}, "sequences": {}}
    todo = tables()
    with store.write() as conn:
        out["dialect"] = conn.dialect.name
        for i, table in enumerate(todo):
            if progress:
                progress(i, len(todo), table.name)
            path = folder / f"{table.name}.parquet"
            rows = _write_parquet(conn, table, path)
            out["tables"][table.name] = {"file": path.name, "rows": rows, "sha256": sha256(path)}
        out["sequences"] = _sequence_values(conn)
    if progress:
        progress(len(todo), len(todo), "done")
    return out


def _fast_path(conn) -> bool:
    """Whether rows move through DuckDB's own Parquet/Arrow paths (tests turn it off to run the
    dialect-neutral path that PostgreSQL will use)."""
    return conn.dialect.name == "duckdb"


def _write_parquet(conn, table: sa.Table, path: Path) -> int:
    target = arrow_schema(table)
    if _fast_path(conn):  # DuckDB writes the file itself, in parallel
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        order = ", ".join(f'"{c.name}"' for c in table.primary_key.columns)
        conn.exec_driver_sql(
            f'COPY (SELECT {cols} FROM "{table.name}"{" ORDER BY " + order if order else ""}) '
            f"TO {_quote(path)} (FORMAT parquet, COMPRESSION zstd)")
        written = pq.read_schema(path)
        if [f.name for f in written] != target.names or not all(
                written.field(f.name).type == f.type for f in target):
            raise StoreError(f"Backing up {table.name} wrote columns {written} instead of {target}.")
        return pq.ParquetFile(path).metadata.num_rows
    rows = 0
    with pq.ParquetWriter(path, target, compression="zstd") as writer:
        for batch in _batches(conn, table, target):
            writer.write_table(batch)
            rows += batch.num_rows
        if rows == 0:  # an empty table still gets a file with its columns
            writer.write_table(target.empty_table())
    return rows


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _batches(conn, table: sa.Table, target: pa.Schema):
    query = sa.select(*table.columns).order_by(*table.primary_key.columns)
    result = conn.execution_options(stream_results=True, yield_per=BATCH_ROWS).execute(query)
    for part in result.mappings().partitions(BATCH_ROWS):
        yield pa.Table.from_pylist([dict(r) for r in part], schema=target)


def _sequence_values(conn) -> dict[str, int]:
    """The last value each id sequence handed out (0 when none), so a restore continues after it."""
    names = list(sequences())
    if conn.dialect.name == "duckdb":
        found = dict(conn.exec_driver_sql(
            "SELECT sequence_name, last_value FROM duckdb_sequences() WHERE schema_name = current_schema()").all())
        return {n: int(found.get(n) or 0) for n in names}
    if conn.dialect.name == "postgresql":
        out = {}
        for n in names:
            last, called = conn.exec_driver_sql(f'SELECT last_value, is_called FROM "{n}"').one()
            out[n] = int(last) if called else 0
        return out
    return {n: 0 for n in names}


# ----------------------------------------------------------------------------------------- restore
def row_counts(conn) -> dict[str, int]:
    return {t.name: int(conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()) for t in tables()}


def load(store: Store, folder: Path, manifest: dict,
         progress: Optional[Callable[[int, int, str], None]] = None) -> dict[str, int]:
    """Fill an EMPTY store from a checked backup ``folder`` in one transaction; returns rows per table.

    Ids are kept as they were, and each id sequence continues after the larger of the backup's
    last value and the largest id restored, so later inserts never collide. Any error rolls the
    whole restore back.
    """
    todo = tables()
    with store.write() as conn:
        present = {name: n for name, n in row_counts(conn).items() if n}
        if present:
            name, n = next(iter(present.items()))
            raise StoreError(f"The target store {store.url} is not empty ({name} holds {n} rows): restore into "
                             "a new file, e.g. --db duckdb:///data/restored.duckdb; nothing was changed.")
        counts = {}
        for i, table in enumerate(todo):
            if progress:
                progress(i, len(todo), table.name)
            entry = manifest["tables"][table.name]
            counts[table.name] = _read_parquet(store, conn, table, folder / entry["file"])
            if counts[table.name] != entry["rows"]:
                raise StoreError(f"The backup's {entry['file']} holds {counts[table.name]} rows, its manifest says "
                                 f"{entry['rows']}: the backup is damaged; nothing was restored.")
        _continue_sequences(conn, manifest.get("sequences") or {})
    if progress:
        progress(len(todo), len(todo), "done")
    return counts


def _read_parquet(store: Store, conn, table: sa.Table, path: Path) -> int:
    target = arrow_schema(table)
    batches = pq.ParquetFile(path).iter_batches(batch_size=BATCH_ROWS, columns=target.names)
    if _fast_path(conn):  # one INSERT over an Arrow stream (the path is read by pyarrow:
        # DuckDB's read_parquet would expand *, ? and [...] in a folder name)
        reader = pa.RecordBatchReader.from_batches(
            target, (pa.Table.from_batches([b]).cast(target).to_batches()[0] for b in batches if b.num_rows))
        raw = conn.connection.driver_connection
        cols = ", ".join(f'"{c.name}"' for c in table.columns)
        view = f"_ss_restore_{table.name}"
        raw.register(view, reader)
        try:
            return int(conn.exec_driver_sql(f'INSERT INTO "{table.name}" ({cols}) SELECT {cols} FROM "{view}"').rowcount)
        finally:
            raw.unregister(view)
    if conn.dialect.name == "postgresql":  # COPY, as every bulk load on PostgreSQL (db/dialects.py)
        return dialects.copy_batches(conn, table.name, target.names, (
            part for b in batches if b.num_rows for part in pa.Table.from_batches([b]).cast(target).to_batches()))
    rows = 0
    for batch in batches:
        data = pa.Table.from_batches([batch]).cast(target)
        if data.num_rows:
            conn.execute(sa.insert(table), data.to_pylist())
        rows += data.num_rows
    return rows


def _continue_sequences(conn, recorded: dict) -> None:
    for name, (table, col) in sequences().items():
        top = conn.execute(sa.select(sa.func.max(col))).scalar_one() or 0
        want = max(int(recorded.get(name) or 0), int(top))
        if want <= 0:
            continue
        if conn.dialect.name == "duckdb":  # no setval: draw the numbers the backup had used
            current = conn.exec_driver_sql(
                "SELECT coalesce(last_value, 0) FROM duckdb_sequences() "
                "WHERE schema_name = current_schema() AND sequence_name = ?", (name,)).scalar_one()
            if want > current:
                conn.exec_driver_sql(f"SELECT max(nextval('{name}')) FROM range({int(want - current)})").all()
        elif conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SELECT setval('{name}', {int(want)})")
        else:
            raise StoreError(f"Cannot restore into a {conn.dialect.name} database: ScaleScope knows how to set "
                             "id sequences on DuckDB and PostgreSQL only.")
