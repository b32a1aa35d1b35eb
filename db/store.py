"""The Store: one DuckDB file behind SQLAlchemy that every page, the CLI and the probes share.

- Opened from a URL (default ``duckdb:///data/scalescope.duckdb``; ``SCALESCOPE_DB_URL`` or
  ``--db`` override it). The schema lives in :mod:`db.schema`; a version is recorded and an older
  file is upgraded on open.
- Writes are serialised by one lock per file, and each write operation is one transaction: an
  import lands whole or not at all. DuckDB's MVCC gives readers a consistent snapshot, so nobody
  sees half an import.
- Bulk rows (metrics, routing assignments) go through DuckDB's Arrow path inside the store's own
  connection, never row-by-row ORM inserts.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from core.errors import DamagedStoreError, DuplicateRunError, InputError, StoreError, StoreLockedError
from core.fitting.diagnostics import DIAGNOSTICS as FIT_RESULT_METHODS
from core.fitting.result import upgrade_stored_v2
from core.jsonable import jsonable
from core.registry import LAWS
from db import dialects, schema
from core.runs import METRIC_COLUMNS, SIZE_FIELDS, ParsedRun

DEFAULT_URL = "duckdb:///data/scalescope.duckdb"
DUPLICATE_POLICIES = ("error", "skip", "replace", "rename")
X_AXES = ("step", "tokens", "flops", "wall_time")
EDITABLE_SIZE_FIELDS = SIZE_FIELDS + ["arch"]

# One lock per database file, shared by every Store opened on it in this process.
_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()
# Commits per database (file or server URL) made by this process, counted by every Store opened on
# it: the cheap part of Store.version(), which the pages' caches are keyed on.
_CHANGES: dict[str, int] = {}


def default_url() -> str:
    """The database URL: ``SCALESCOPE_DB_URL`` if set, else the embedded default file."""
    return os.environ.get("SCALESCOPE_DB_URL") or DEFAULT_URL


def _file_of(url: str) -> Path:
    """The database file a ``duckdb:///PATH`` URL names.

    An in-memory database is refused: duckdb-engine gives each pooled connection (each thread)
    its own empty one, so pages, imports and readers would not see each other's data.
    """
    prefix = "duckdb:///"
    path = url[len(prefix):].split("?", 1)[0] if url.startswith(prefix) else ""
    if path in ("", ":memory:") or path.startswith(":memory:"):
        raise StoreError(f"Unsupported database URL {url!r}: ScaleScope needs a file, e.g. "
                         "duckdb:///data/scalescope.duckdb (an in-memory DuckDB is empty in every thread).")
    return Path(path)


# A file made before schema versions were recorded held only these tables (upgraded as version 0).
PRE_VERSIONING_TABLES = ("metrics", "runs")
# What DuckDB says when it reads a block that is cut short or whose checksum does not match.
_DAMAGE_SIGNS = ("corrupt database file", "does not match stored checksum", "could not read enough bytes",
                 "database has been invalidated")


def _driver_message(exc: BaseException) -> str:
    """The database's own words for ``exc``: first line, without SQLAlchemy's wrapper and link."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).split("(Background on this error", 1)[0].strip()
    text = text.splitlines()[0] if text else type(orig).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _damaged(url: str, what: str) -> DamagedStoreError:
    """The one message for a damaged store: what is wrong, and to restore a backup."""
    try:
        where, target = f"The database file {_file_of(url)}", url
    except StoreError:  # a server URL: never shown, it may carry a password
        where, target = "The database", "URL"
    return DamagedStoreError(f"{where} is damaged ({what}): restore a backup with "
                             f"`python cli.py restore BACKUP_DIR --db {target}`, or pass another file with --db.")


def _damage_error(url: str, exc: BaseException) -> Optional[StoreError]:
    """A DamagedStoreError when the driver's ``exc`` reports damage (a short read, a bad checksum); else None."""
    if isinstance(exc, StoreError):
        return None
    if not any(sign in str(getattr(exc, "orig", None) or exc).lower() for sign in _DAMAGE_SIGNS):
        return None
    return _damaged(url, _driver_message(exc))


class Store:
    """All persistence. Methods return pandas DataFrames / dicts; no SQL escapes this package."""

    def __init__(self, url: Optional[str] = None, create: bool = True, check: bool = False):
        """Open the store at ``url``.

        ``create=False`` (read-only commands): the file must already be a ScaleScope store; a
        missing path is refused instead of creating folders and an empty store. Opening never
        writes to a file that is not a ScaleScope store, nor to a current one (only an older
        ScaleScope file is upgraded). ``check=True`` reads every stored value once, so a damaged
        file is reported now rather than by the first query that meets the damage.
        """
        self.url = url or default_url()
        self.dialect = dialects.for_url(self.url)
        self.display_url = dialects.safe_url(self.url)  # what messages, logs and pages may show
        if self.dialect is not dialects.DUCKDB:
            self._open_server(create, check)
            return
        path = _file_of(self.url)
        if not create:
            if not path.exists():
                raise StoreError(f"No ScaleScope store at {path}: the file does not exist. Check --db or "
                                 "SCALESCOPE_DB_URL, or import runs first with `python cli.py ingest FILE`.")
            if not path.is_file() or path.stat().st_size == 0:
                raise StoreError(f"{path} is {'empty' if path.is_file() else 'not a file'}, not a ScaleScope "
                                 "store: pass a store file with --db.")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
        key = str(path.resolve())
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault(key, threading.RLock())
        self._changes_key = key
        self.engine = None
        try:
            self._start_engine(sa.create_engine(self.url), path, create, check)
        except Exception as exc:
            if self.engine is not None:
                self.engine.dispose()
            if isinstance(exc, StoreError):
                raise
            if "Could not set lock" in str(exc):
                raise StoreLockedError(
                    f"The database {self.url} is open in another process (DuckDB allows one writer process "
                    "per file): stop the dashboard or other CLI using it, or pass another file with --db.") from exc
            damaged = _damage_error(self.url, exc)
            if damaged is not None:
                raise damaged from exc
            raise StoreError(f"Cannot open the database {self.url}: {_driver_message(exc)}. The file is damaged "
                             f"or not a ScaleScope store: check the path, restore a backup with "
                             f"`python cli.py restore BACKUP_DIR --db URL`, or close the other program that "
                             "holds the file.") from exc

    def _open_server(self, create: bool, check: bool) -> None:
        """Open a store on a database server (PostgreSQL): no file and no per-file lock; writers are
        kept apart by transactions and advisory locks (db/dialects.py)."""
        self._lock = contextlib.nullcontext()
        self._changes_key = self.url
        self.engine = None
        try:
            self.engine = sa.create_engine(self.url, **self.dialect.engine_options(self.url))
            self.dialect.prepare_engine(self.engine)
            self._start_engine(self.engine, self.display_url, create, check)
        except Exception as exc:
            if self.engine is not None:
                self.engine.dispose()
            if isinstance(exc, StoreError):
                raise StoreError(dialects.scrub(str(exc), self.url)) from None
            lost = self.dialect.connection_lost(self.url, exc)
            if lost is not None:
                raise lost from None
            raise StoreError(f"Cannot open the database {self.display_url}: "
                             f"{dialects.scrub(_driver_message(exc), self.url)}. Check the URL, the user's rights "
                             "on that database, and that the server runs.") from None

    def _start_engine(self, engine, where, create: bool, check: bool) -> None:
        """Both engines alike: error translation and the change counter hooked in, the schema created or
        upgraded (under the per-file lock on DuckDB; a no-op lock on a server), the damage check."""
        self.engine = engine
        sa.event.listen(engine, "handle_error", self._translate_error)
        sa.event.listen(engine, "commit", self._committed)
        with self._lock:
            self._upgrade(where, create)
        if check:
            self.check()

    def _translate_error(self, ctx):
        """SQLAlchemy ``handle_error`` hook: a query that meets a damaged block (DuckDB) or a server that
        went away (PostgreSQL) raises one StoreError."""
        if self.dialect is dialects.DUCKDB:
            return _damage_error(self.url, ctx.original_exception)
        return self.dialect.connection_lost(self.url, ctx.sqlalchemy_exception or ctx.original_exception)

    # ---------------------------------------------------------------- schema and transactions
    def _upgrade(self, path: Path, create: bool) -> None:
        """Check what the file holds (reads only), then create or upgrade it if that is needed.

        An empty database becomes a new store (when ``create``); an older ScaleScope schema is
        upgraded; a current one is left as it is. Anything else is refused untouched: a database
        with other tables, ScaleScope tables without their version row, a newer schema.
        """
        if self.dialect is not dialects.DUCKDB:
            # Many processes may open a new server store at once: one creates the schema, under an
            # advisory lock held to the end of this transaction; the others then find it current.
            with self.engine.begin() as conn:
                self.dialect.lock_schema(conn)
                tables = set(sa.inspect(conn).get_table_names())
                version = self._needed_upgrade(path, create, tables, self._recorded_version(conn, path, tables))
                if version is not None:
                    self._create_and_migrate(conn, version)
            return
        with self.engine.connect() as conn:
            self._check_length(conn, path)
            tables = set(sa.inspect(conn).get_table_names())
            version = self._needed_upgrade(path, create, tables, self._recorded_version(conn, path, tables))
        if version is not None:
            with self.engine.begin() as conn:
                self._create_and_migrate(conn, version)

    def _needed_upgrade(self, path, create: bool, tables: set, version: Optional[int]) -> Optional[int]:
        """The schema version to upgrade from (that of a new store for an empty database), or None when
        the store is current; raises StoreError for what must be refused untouched."""
        if version == schema.SCHEMA_VERSION:
            missing = sorted(set(schema.metadata.tables) - tables)
            if missing:
                what = f"it records schema version {version} but lacks the table(s) {', '.join(missing)}"
                if self.dialect is dialects.DUCKDB:
                    raise _damaged(self.url, what)
                raise DamagedStoreError(f"The database {path} is damaged ({what}): restore a backup into a new "
                                        "database with `python cli.py restore BACKUP_DIR --db URL`.")
            return None
        if version is None and not create:
            raise StoreError(f"{path} is an empty database, not a ScaleScope store: pass a store file with --db, "
                             "or import runs into it first with `python cli.py ingest FILE`.")
        version = schema.SCHEMA_VERSION if version is None else version
        if version > schema.SCHEMA_VERSION:
            raise StoreError(
                f"The database {self.display_url} has schema version {version}, newer than this ScaleScope "
                f"({schema.SCHEMA_VERSION}). Upgrade ScaleScope, or open another file with --db.")
        return version

    @staticmethod
    def _create_and_migrate(conn, version: int) -> None:
        """Create missing tables, run the upgrade steps from ``version``, record the current version."""
        schema.metadata.create_all(conn)
        for step in range(version, schema.SCHEMA_VERSION):
            MIGRATIONS[step](conn)
        conn.execute(sa.delete(schema.schema_info))
        conn.execute(sa.insert(schema.schema_info).values(version=schema.SCHEMA_VERSION))

    def _check_length(self, conn, path: Path) -> None:
        """A DuckDB file cut short (a copy or download that stopped early) is refused at once: after
        three 4 KiB headers it must hold at least its USED blocks, each of ``block_size`` bytes. Not
        its total: a checkpoint truncates free blocks at the end of the file while the header still
        counts them (a healthy store of 9 blocks, 4 of them free, is 5 blocks long)."""
        if conn.dialect.name != "duckdb":
            return
        row = conn.exec_driver_sql("PRAGMA database_size").mappings().first()
        if not row:
            return
        needed = 3 * 4096 + int(row["used_blocks"]) * int(row["block_size"])
        actual = path.stat().st_size
        if actual < needed:
            raise _damaged(self.url, f"cut short: {actual:,} bytes where its used blocks need {needed:,}")

    def _recorded_version(self, conn, path: Path, tables: set) -> Optional[int]:
        """The schema version the file records; None for an empty database (a new store)."""
        if "schema_info" in tables:
            rows = conn.execute(sa.select(schema.schema_info.c.version)).all()
            if len(rows) != 1 or not isinstance(rows[0][0], int) or rows[0][0] < 0:
                raise _damaged(self.url, f"its schema_info table holds {len(rows)} row(s) instead of one "
                                         "schema version")
            return rows[0][0]
        if not tables:
            return None
        ours = sorted(tables & set(schema.metadata.tables))
        if not ours:
            shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
            raise StoreError(
                f"{path} is not a ScaleScope store (it holds the table(s) {shown} and no ScaleScope schema_info "
                "table); it was left unchanged. Pass a ScaleScope store with --db, or a new file name to start one.")
        if tables == set(PRE_VERSIONING_TABLES):
            return 0
        raise _damaged(self.url, f"it has ScaleScope tables ({', '.join(ours)}) but no schema_info table, so "
                                 "its schema version is unknown; it was left unchanged")

    def check(self) -> None:
        """Read every stored value once (DuckDB verifies each block's checksum as it reads it).

        Raises StoreError when the file is damaged. Cost: one scan of the file.
        """
        if self.engine.dialect.name != "duckdb":
            return
        with self.read() as conn:
            for table in schema.metadata.sorted_tables:
                conn.exec_driver_sql(f'SELECT count(*), bit_xor(hash(COLUMNS(*))) FROM "{table.name}"').all()

    def schema_version(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(schema.schema_info.c.version)).scalar_one())

    @contextmanager
    def write(self):
        """One write transaction: commits whole on success, rolls back on any error. Serialised per
        file on DuckDB; on PostgreSQL concurrent writers are kept apart by the server (db/dialects.py)."""
        with self._lock:
            try:
                with self.engine.begin() as conn:
                    yield conn
            except sa.exc.DBAPIError as exc:  # a COPY that lost its server bypasses the handle_error hook
                lost = self.dialect.connection_lost(self.url, exc)
                if lost is None:
                    raise
                raise lost from None

    @contextmanager
    def read(self):
        with self.engine.connect() as conn:
            yield conn

    def ping(self) -> None:
        """Raise StoreError (one line, the password masked) when a server store cannot be reached now
        (one round trip); a DuckDB file this process holds open is always at hand."""
        if self.dialect is not dialects.DUCKDB:
            with self.read() as conn:
                conn.exec_driver_sql("SELECT 1")

    def _committed(self, _conn) -> None:
        """SQLAlchemy ``commit`` hook: count the commit (every write path, bulk loads included)."""
        with _LOCKS_GUARD:
            _CHANGES[self._changes_key] = _CHANGES.get(self._changes_key, 0) + 1

    def version(self) -> tuple:
        """A cheap value that changes whenever the stored data does, to key caches on: the database
        and the commits this process made to it (any Store on it). DuckDB allows one writer process
        per file, so that is every change; on a database server other processes write too, so one
        query adds the row counts and newest ids of runs, fits, evals, probes and captures (a
        metadata edit made elsewhere shows once something else changes, or on a server restart)."""
        local = (self._changes_key, _CHANGES.get(self._changes_key, 0))
        if self.dialect is dialects.DUCKDB:
            return local
        def agg(table: sa.Table, fn, col: str):
            return sa.select(fn(table.c[col])).scalar_subquery()
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(
                agg(schema.runs, sa.func.count, "id"), agg(schema.runs, sa.func.max, "id"),
                agg(schema.runs, sa.func.max, "last_grew"), agg(schema.fits, sa.func.count, "id"),
                agg(schema.fits, sa.func.max, "id"), agg(schema.evals, sa.func.count, "id"),
                agg(schema.evals, sa.func.max, "id"), agg(schema.probes, sa.func.max, "id"),
                agg(schema.routing_captures, sa.func.count, "id"), agg(schema.watch_files, sa.func.max, "updated_at"),
            )).one()
        return local + tuple(row)

    def close(self) -> None:
        self.engine.dispose()

    @staticmethod
    def bulk_insert(conn, table: sa.Table, frame: pd.DataFrame | pa.Table) -> int:
        """Append a DataFrame/Arrow table to ``table`` through DuckDB's Arrow scan (same transaction)."""
        arrow = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(frame, preserve_index=False)
        if arrow.num_rows == 0:
            return 0
        # DuckDB scans the Arrow table in place; PostgreSQL takes it through COPY (db/dialects.py).
        return dialects.for_conn(conn).bulk_insert(conn, table.name, arrow)

    # ---------------------------------------------------------------- runs: ingest
    def ingest(self, parsed: Sequence[ParsedRun], on_duplicate: str = "error") -> list[dict]:
        """Store parsed runs in ONE transaction. Returns, per stored run, name/format/n_metric_rows/id.

        ``on_duplicate``: error (refuse the whole import), skip, replace (delete the old run first)
        or rename (keep both; the new one gets a " (2)" suffix).
        """
        if on_duplicate not in DUPLICATE_POLICIES:
            raise InputError(f"Unknown duplicate policy {on_duplicate!r}: choose one of {', '.join(DUPLICATE_POLICIES)}.")
        if not parsed:
            raise InputError("Nothing to import: the file holds no runs. Check that it has data rows.")
        names = [p.name for p in parsed]
        for p in parsed:
            validate_parsed(p)
        seen = set()
        for n in names:
            if n in seen:
                raise InputError(f"The import names the run {n!r} twice: give each run a unique name.")
            seen.add(n)
        with self.write() as conn:
            return self.ingest_into(conn, parsed, on_duplicate)

    def ingest_into(self, conn, parsed: Sequence[ParsedRun], on_duplicate: str = "error",
                    on_replace=None) -> list[dict]:
        """The body of :meth:`ingest` inside a caller's open write transaction (``store.write()``),
        for features that store runs together with rows of their own (probe sweeps with evals).

        ``on_replace(conn, name)`` is called before a replaced run is deleted. Runs must already
        be validated (:meth:`ingest` does it; callers use :func:`validate_parsed`).
        """
        added: list[dict] = []
        dialects.for_conn(conn).lock_run_names(conn, [p.name for p in parsed])
        existing = set(conn.execute(sa.select(schema.runs.c.name)).scalars())
        for p in parsed:
            name = p.name
            if name in existing:
                if on_duplicate == "error":
                    raise DuplicateRunError(
                        f"A run named {name!r} already exists: choose skip, replace or rename for duplicates.")
                if on_duplicate == "skip":
                    continue
                if on_duplicate == "replace":
                    if on_replace is not None:
                        on_replace(conn, name)
                    self._delete_runs(conn, [name])
                else:
                    name = _free_name(name, existing)
            run_id = conn.execute(
                sa.insert(schema.runs).values(**_run_row(p, name)).returning(schema.runs.c.id)
            ).scalar_one()
            existing.add(name)
            frame = _metrics_frame(p.metrics, run_id)
            n_rows = self.bulk_insert(conn, schema.metrics, frame)
            added.append({"id": run_id, "name": name, "parsed_name": p.name, "format": p.source_format,
                          "n_metric_rows": n_rows})
        return added

    # ---------------------------------------------------------------- runs: read / edit / delete
    def runs(self) -> pd.DataFrame:
        """Every run with its sizes and number of metric rows (one row per run, ordered by id).

        On DuckDB (one writer process, so ``version`` sees every change) it is kept per store
        version: pages ask for it several times a rerun, and counting the metric rows scans the
        whole table; a copy is returned, so callers may change it."""
        return self._memo(("runs",), self._read_runs).copy()

    def _memo(self, key: tuple, compute):
        """``compute()``, kept per store version on DuckDB (one writer process: ``version`` sees every
        change); read afresh on a database server, where other processes write too."""
        if self.dialect is not dialects.DUCKDB:
            return compute()
        version = self.version()
        memo = self.__dict__.get("_memos")
        if memo is None or memo.get("version") != version or len(memo) > 64:
            memo = self.__dict__["_memos"] = {"version": version}
        if key not in memo:
            memo[key] = compute()
        return memo[key]

    def _read_runs(self) -> pd.DataFrame:
        with self.read() as conn:
            frame = pd.read_sql(sa.text(
                "SELECT r.*, coalesce(m.n, 0) AS n_metric_rows FROM runs r "
                "LEFT JOIN (SELECT run_id, count(*) AS n FROM metrics GROUP BY run_id) m ON m.run_id = r.id "
                "ORDER BY r.id"), conn)
        frame["n_metric_rows"] = frame["n_metric_rows"].astype("int64")
        return frame

    def run_names(self) -> list[str]:
        with self.read() as conn:
            return list(conn.execute(sa.select(schema.runs.c.name).order_by(schema.runs.c.id)).scalars())

    def run_ids(self, names: Iterable[str]) -> dict[str, int]:
        names = list(names)
        if not names:
            return {}
        with self.read() as conn:
            rows = conn.execute(sa.select(schema.runs.c.name, schema.runs.c.id)
                                .where(schema.runs.c.name.in_(names))).all()
        found = {n: i for n, i in rows}
        missing = [n for n in names if n not in found]
        if missing:
            raise InputError(f"No run named {missing[0]!r} in the store: list runs with `python cli.py runs`.")
        return found

    def update_run(self, name: str, **sizes) -> dict:
        """Edit a run's sizes (parameters, experts, tokens per step, ...). Derived tokens/FLOPs follow.

        Metric rows without tokens get tokens = step × tokens_per_step; rows without FLOPs get
        6·N_active·tokens (Kaplan et al. 2020, C ≈ 6ND), the rule recorded with the run.
        """
        unknown = [k for k in sizes if k not in EDITABLE_SIZE_FIELDS]
        if unknown:
            raise InputError(f"Cannot edit {unknown[0]!r}: editable fields are {', '.join(EDITABLE_SIZE_FIELDS)}.")
        clean = {}
        for key, value in sizes.items():
            if key == "arch":
                if value not in ("dense", "moe"):
                    raise InputError("arch must be 'dense' or 'moe'.")
                clean[key] = value
                continue
            if value is None or (isinstance(value, float) and math.isnan(value)):
                clean[key] = None
                continue
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InputError(f"{key} must be a number, got {value!r}.") from None
            if not math.isfinite(number) or number <= 0:
                raise InputError(f"{key} must be a positive finite number, got {value!r}.")
            clean[key] = int(number) if key in ("n_experts", "top_k", "seq_len") else number
        run_id = self.run_ids([name])[name]
        with self.write() as conn:
            if clean:
                conn.execute(sa.update(schema.runs).where(schema.runs.c.id == run_id).values(**clean))
            row = conn.execute(sa.select(schema.runs).where(schema.runs.c.id == run_id)).mappings().one()
            n_active = row["n_active_params"] or row["n_params"]
            tps = row["tokens_per_step"]
            if tps:
                conn.execute(sa.text("UPDATE metrics SET tokens = step * :tps WHERE run_id = :rid "
                                     "AND tokens IS NULL AND step IS NOT NULL"), {"tps": tps, "rid": run_id})
            if n_active:
                conn.execute(sa.text("UPDATE metrics SET flops = 6 * :n * tokens WHERE run_id = :rid "
                                     "AND flops IS NULL AND tokens IS NOT NULL"), {"n": n_active, "rid": run_id})
            last = conn.execute(sa.text(
                "SELECT max(tokens), max(flops) FROM metrics WHERE run_id = :rid"), {"rid": run_id}).one()
            updates = {}
            if row["tokens"] is None and last[0] is not None:
                updates["tokens"] = float(last[0])
            tokens = updates.get("tokens", row["tokens"])
            if row["flops"] is None and n_active and tokens:
                updates["flops"] = 6.0 * n_active * tokens
            elif row["flops"] is None and last[1] is not None:
                updates["flops"] = float(last[1])
            if updates:
                conn.execute(sa.update(schema.runs).where(schema.runs.c.id == run_id).values(**updates))
            out = conn.execute(sa.select(schema.runs).where(schema.runs.c.id == run_id)).mappings().one()
        return dict(out)

    def delete_runs(self, names: Iterable[str]) -> int:
        names = list(names)
        if not names:
            return 0
        self.run_ids(names)  # every name must exist
        with self.write() as conn:
            return self._delete_runs(conn, names)

    def _delete_runs(self, conn, names: list[str]) -> int:
        ids = list(conn.execute(sa.select(schema.runs.c.id).where(schema.runs.c.name.in_(names))).scalars())
        if not ids:
            return 0
        conn.execute(sa.delete(schema.metrics).where(schema.metrics.c.run_id.in_(ids)))
        conn.execute(sa.delete(schema.evals).where(schema.evals.c.run_id.in_(ids)))
        conn.execute(sa.delete(schema.runs).where(schema.runs.c.id.in_(ids)))
        return len(ids)

    # ---------------------------------------------------------------- metrics: read
    def metric_names(self, run_names: Optional[Iterable[str]] = None) -> list[str]:
        names = None if run_names is None else tuple(run_names)
        return list(self._memo(("metric_names", names), lambda: self._read_metric_names(names)))

    def _read_metric_names(self, run_names: Optional[Iterable[str]] = None) -> list[str]:
        query = "SELECT DISTINCT m.name FROM metrics m"
        params: dict = {}
        if run_names is not None:
            ids = list(self.run_ids(run_names).values())
            if not ids:
                return []
            query += " WHERE m.run_id IN :ids"
            params["ids"] = ids
        stmt = sa.text(query + " ORDER BY 1")
        if params:
            stmt = stmt.bindparams(sa.bindparam("ids", expanding=True))
        with self.read() as conn:
            return list(conn.execute(stmt, params).scalars())

    def metrics(self, run_names: Iterable[str], metric: Optional[str] = None) -> pd.DataFrame:
        """Every stored point of the named runs (long form, with a ``run`` column)."""
        ids = self.run_ids(run_names)
        if not ids:
            return pd.DataFrame(columns=["run"] + METRIC_COLUMNS)
        query = ("SELECT r.name AS run, m.name, m.step, m.tokens, m.flops, m.wall_time, m.value "
                 "FROM metrics m JOIN runs r ON r.id = m.run_id WHERE m.run_id IN :ids")
        params = {"ids": list(ids.values())}
        if metric is not None:
            query += " AND m.name = :metric"
            params["metric"] = metric
        stmt = sa.text(query + " ORDER BY r.id, m.name, m.step").bindparams(sa.bindparam("ids", expanding=True))
        with self.read() as conn:
            return pd.read_sql(stmt, conn, params=params)

    def curves(self, run_names: Sequence[str], metric: str, x: str = "step",
               max_points: int = 2000, log_x: bool = False) -> pd.DataFrame:
        """Downsampled curves, computed inside the database (DuckDB or PostgreSQL: db/dialects.py).

        Each run's x range is cut into ``max_points`` buckets (in log x when ``log_x``); per bucket
        the last point (largest x) is kept with the bucket's min and max value, so spikes survive
        as a band. The run's final point always falls in the last bucket, so it is always kept.
        Returns columns run, x, value, vmin, vmax, n (points in the bucket), ordered by run and x.
        """
        if x not in X_AXES:
            raise InputError(f"Unknown x-axis {x!r}: choose one of {', '.join(X_AXES)}.")
        if max_points < 2:
            raise InputError("max_points must be at least 2.")
        ids = self.run_ids(run_names)
        if not ids:
            return pd.DataFrame(columns=["run", "x", "value", "vmin", "vmax", "n"])
        xexpr = f"ln(m.{x})" if log_x else f"m.{x}"
        positive = f" AND m.{x} > 0" if log_x else ""
        sql = self.dialect.curves_sql(x, xexpr, positive)
        stmt = sa.text(sql).bindparams(sa.bindparam("ids", expanding=True))
        with self.read() as conn:
            return self.dialect.read_curves(conn, stmt, {"ids": list(ids.values()), "metric": metric,
                                                         "nb": max_points - 1})

    def final_values(self, metric: str = "loss", run_names: Optional[Sequence[str]] = None,
                     at_step: Optional[float] = None) -> pd.DataFrame:
        """One row per run: its sizes and the metric's final value (or the value at ``at_step``).

        The final value is the point with the largest step; a run-summary row (step unknown) counts
        as final. This is the usual target of a scaling-law fit.
        """
        params: dict = {"metric": metric}
        where = "m.name = :metric"
        if at_step is not None:
            where += " AND m.step = :at_step"
            params["at_step"] = float(at_step)
        sql = self.dialect.final_values_sql(where, "AND r.name IN :names" if run_names is not None else "")
        stmt = sa.text(sql)
        if run_names is not None:
            params["names"] = list(run_names)
            stmt = stmt.bindparams(sa.bindparam("names", expanding=True))
        with self.read() as conn:
            frame = pd.read_sql(stmt, conn, params=params)
        # A summary row at the run's end: fall back to the run's own tokens/flops.
        frame["tokens"] = frame["tokens"].fillna(frame["run_tokens"])
        frame["flops"] = frame["flops"].fillna(frame["run_flops"])
        return frame.drop(columns=["run_tokens", "run_flops"])

    def export_metrics(self, run_names: Sequence[str], path: str | Path, fmt: str = "csv") -> int:
        """Write the named runs' metric rows (with run sizes) to CSV or Parquet; returns rows written."""
        if fmt not in ("csv", "parquet"):
            raise InputError(f"Unknown export format {fmt!r}: choose csv or parquet.")
        frame = self.metrics(run_names)
        runs = self.runs().set_index("name")
        for col in ("n_params", "n_active_params", "arch"):
            frame[col] = frame["run"].map(runs[col])
        if fmt == "csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
        return len(frame)

    def is_empty(self) -> bool:
        with self.read() as conn:
            return conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one() == 0


# -------------------------------------------------------------------- upgrades
def _upgrade_from_0(conn) -> None:
    """Version 0: a file made before versioning. create_all() has already added missing tables."""


def _upgrade_from_1(conn) -> None:
    """Version 1 → 2: drop the ART indexes on the bulk tables (they slowed every big import)."""
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_metrics_run_id")
    conn.exec_driver_sql("DROP INDEX IF EXISTS ix_routing_assignments_capture_id")


def _upgrade_from_2(conn) -> None:
    """Version 2 → 3: stored fits take the typed FitResult layout (core.fitting.result.upgrade_stored_v2):
    budget quantities ("N_opt@1e+21" keys) become the ``optima`` table, the method's diagnostics move
    under ``method_diagnostics``. Fits of other kinds (eval fits) keep their layout."""
    rows = conn.execute(sa.select(schema.fits.c.id, schema.fits.c.law, schema.fits.c.method, schema.fits.c.settings,
                                  schema.fits.c.intervals, schema.fits.c.diagnostics)).mappings().all()
    for row in rows:
        if row["method"] not in FIT_RESULT_METHODS or row["law"] not in LAWS:
            continue
        diagnostics = json.loads(row["diagnostics"] or "{}")
        if "method_diagnostics" in diagnostics:
            continue
        intervals, diagnostics = upgrade_stored_v2(json.loads(row["intervals"] or "{}"), diagnostics,
                                                   json.loads(row["settings"] or "{}"))
        conn.execute(sa.update(schema.fits).where(schema.fits.c.id == row["id"]).values(
            intervals=json.dumps(jsonable(intervals), allow_nan=False),
            diagnostics=json.dumps(jsonable(diagnostics), allow_nan=False)))


def _upgrade_from_3(conn) -> None:
    """Version 3 → 4: watched folders (issue 11 §1). create_all() has added watch_folders and
    watch_files; runs gains last_grew (when a watched file last added rows; NULL for other runs)."""
    columns = conn.execute(sa.select(sa.literal_column("*")).select_from(sa.table("runs")).limit(0)).keys()
    if "last_grew" not in columns:
        kind = schema.runs.c.last_grew.type.compile(dialect=conn.dialect)
        conn.exec_driver_sql(f"ALTER TABLE runs ADD COLUMN last_grew {kind}")


MIGRATIONS = {0: _upgrade_from_0, 1: _upgrade_from_1, 2: _upgrade_from_2, 3: _upgrade_from_3}


# -------------------------------------------------------------------- helpers
def _free_name(name: str, taken: set) -> str:
    i = 2
    while f"{name} ({i})" in taken:
        i += 1
    return f"{name} ({i})"


def validate_parsed(p: ParsedRun) -> None:
    if not isinstance(p.name, str) or not p.name.strip():
        raise InputError("A run has an empty name: give every run a non-empty name.")
    if len(p.name) > 500:
        raise InputError(f"The run name {p.name[:40]!r}... is longer than 500 characters: shorten it.")
    if p.arch not in ("dense", "moe"):
        raise InputError(f"Run {p.name!r}: arch must be 'dense' or 'moe', got {p.arch!r}.")
    for key in SIZE_FIELDS:
        value = getattr(p, key)
        if value is None:
            continue
        if not isinstance(value, (int, float, np.integer, np.floating)) or not math.isfinite(float(value)) or value < 0:
            raise InputError(f"Run {p.name!r}: {key} must be a non-negative finite number, got {value!r}.")
    frame = p.metrics
    missing = [c for c in METRIC_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"Run {p.name!r}: metric rows lack the column {missing[0]!r}.")
    if len(frame):
        values = frame["value"].to_numpy(dtype="float64")
        if not np.isfinite(values).all():
            raise InputError(f"Run {p.name!r}: a metric value is NaN or infinite; remove or fix that row.")
        steps = frame["step"].to_numpy(dtype="float64")
        if (steps[~np.isnan(steps)] < 0).any():
            raise InputError(f"Run {p.name!r}: a step is negative; steps count up from 0.")
        if frame["name"].isna().any():
            raise InputError(f"Run {p.name!r}: a metric row has no metric name.")


def _run_row(p: ParsedRun, name: str) -> dict:
    row = {key: getattr(p, key) for key in SIZE_FIELDS}
    for key in ("n_experts", "top_k", "seq_len"):
        if row[key] is not None:
            row[key] = int(row[key])
    for key in ("n_params", "n_nonembedding_params", "n_active_params", "tokens_per_step", "tokens", "flops"):
        if row[key] is not None:
            row[key] = float(row[key])
    if row["n_active_params"] is None and p.arch == "dense" and row["n_params"] is not None:
        row["n_active_params"] = row["n_params"]
    row.update(name=name, source_format=p.source_format, source_file=p.source_file, arch=p.arch,
               flops_rule=p.flops_rule, config=json.dumps(p.config, default=str),
               tags=json.dumps(list(p.tags)))
    return row


def _metrics_frame(metrics: pd.DataFrame, run_id: int) -> pa.Table:
    n = len(metrics)
    cols = {"run_id": pa.array(np.full(n, run_id, dtype=np.int32)),
            "name": pa.array(metrics["name"].astype(str).to_numpy(), type=pa.string())}
    for c in ("step", "tokens", "flops", "wall_time", "value"):
        cols[c] = pa.array(pd.to_numeric(metrics[c], errors="coerce").to_numpy(dtype="float64"),
                           from_pandas=True)
    return pa.table(cols)
