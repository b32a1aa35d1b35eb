"""The fast path for big long-format tables: DuckDB reads the file itself, inside the store's
own transaction, so millions of metric rows never pass through pandas or Python objects.

Long format: one row per (run, step, metric) with columns ``run, step, metric, value`` and optional
``tokens, flops, wall_time`` (names matched case-insensitively; a few aliases below). CSV/TSV and
Parquet. Validation happens in SQL before anything is kept; the transaction rolls back on any error.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Optional, Sequence

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

import sqlalchemy as sa

from core.errors import DuplicateRunError, InputError
from core.validation import check_file_size, check_text_file, check_unique_columns, clean_name, wall_time_origin
from db import dialects, schema
from db.store import DUPLICATE_POLICIES, Store

ALIASES = {
    "run": ("run", "run_name", "model", "name"),
    "step": ("step", "global_step", "iteration", "iter"),
    "metric": ("metric", "metric_name", "key", "tag"),
    "value": ("value", "val", "metric_value"),
    "tokens": ("tokens", "tokens_seen", "num_tokens"),
    "flops": ("flops", "compute", "training_flops"),
    "wall_time": ("wall_time", "walltime", "time", "runtime"),
}
REQUIRED = ("run", "step", "metric", "value")
TSV_SUFFIXES = (".tsv", ".tab")
# What DuckDB's read_csv/read_parquet expand in a file name.
_GLOB_CHARS = re.compile(r"[*?\[]")
# A stored metric row the importers would refuse (their check_finite / check_non_negative rules).
_BAD_ROW = ("(m.step < 0 OR m.tokens < 0 OR m.flops < 0 OR m.wall_time < 0 OR NOT isfinite(m.value) "
            "OR NOT isfinite(m.step) OR NOT isfinite(m.tokens) OR NOT isfinite(m.flops) OR NOT isfinite(m.wall_time) "
            "OR m.name IS NULL OR m.step IS NULL)")


def _sql_text(text: str) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def _reader(path: Path, cols: Optional[dict[str, str]] = None) -> str:
    """The DuckDB table function reading ``path``, which must be a name without glob characters
    (see :func:`_literal_path`: DuckDB's read_csv/read_parquet expand *, ? and [...]).

    With ``cols`` (role -> column), a CSV's columns get their types from their roles, not from
    DuckDB's sniffing (which reads a column of 'inf' as dates): names as text, the rest as numbers.
    """
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return f"read_parquet({_sql_text(path)})"
    delim = "\\t" if suffix in TSV_SUFFIXES else ","
    types = ""
    if cols:
        pairs = ", ".join(f"{_sql_text(c)}: '{'VARCHAR' if role in ('run', 'metric') else 'DOUBLE'}'"
                          for role, c in cols.items())
        types = f", types={{{pairs}}}"
    return f"read_csv({_sql_text(path)}, header=true, delim='{delim}', sample_size=20480{types})"


@contextmanager
def _literal_path(path: Path):
    """A name for ``path`` that DuckDB reads literally: a symbolic link in a private folder.

    File names are data: ``r[ab].parquet`` must import that one file, never ra.parquet and rb.parquet.
    """
    with tempfile.TemporaryDirectory(prefix="scalescope-bulk-") as tmp:
        link = Path(tmp) / ("data" + path.suffix.lower())
        os.symlink(path.resolve(), link)
        if _GLOB_CHARS.search(str(link)):  # a temp folder named with glob characters: escape them too
            link = Path(_GLOB_CHARS.sub(lambda m: f"[{m.group(0)}]", str(link)))
        yield link


def _header(path: Path, what: str) -> list[str]:
    """The column names as the file writes them (duplicates kept), after the shared file checks."""
    if path.suffix.lower() == ".parquet":
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise InputError(f"{what} is not a readable Parquet file ({first[:160]}); write it again with "
                             "pandas.DataFrame.to_parquet or pyarrow") from None
    head = check_text_file(path, what)  # not empty, UTF-8, no NUL byte anywhere: the importers' rule
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    first_line = (text.splitlines() or [""])[0]
    delim = "\t" if path.suffix.lower() in TSV_SUFFIXES else ","
    return [h.strip() for h in next(csv.reader([first_line], delimiter=delim), [])]


def _map_columns(conn, source: str, what: str) -> dict[str, str]:
    cols = [r[0] for r in conn.exec_driver_sql(f"DESCRIBE SELECT * FROM {source}").fetchall()]
    lower = {c.lower().strip(): c for c in cols}
    found = {}
    for key, names in ALIASES.items():
        for n in names:
            if n in lower:
                found[key] = lower[n]
                break
    missing = [k for k in REQUIRED if k not in found]
    if missing:
        raise InputError(f"{what}: not a long metrics table, no {missing[0]!r} column (found {', '.join(cols[:8])}); "
                         "long tables need run, step, metric, value columns.")
    return found


def _source(conn, literal: Path, what: str):
    """The file's role -> column map, its typed DuckDB reader, and ``q(role)``: the quoted column of a
    role (NULL for an optional one the file lacks)."""
    cols = _map_columns(conn, _reader(literal), what)
    return cols, _reader(literal, cols), lambda k: f'"{cols[k]}"' if k in cols else "NULL"


def ingest_long_table(store: Store, path: str | Path, on_duplicate: str = "error",
                      source_format: str = "csv_long", *, what: Optional[str] = None,
                      max_bytes: Optional[int] = None, tags: Sequence[str] = ()) -> list[dict]:
    """Import a long metrics table through DuckDB in one transaction; returns the runs added.

    ``what`` is the file as the user knows it (an upload's name; default the path's base name), used
    in messages and as the runs' ``source_file``; ``max_bytes`` the upload limit (default
    $SCALESCOPE_MAX_UPLOAD_BYTES or 1 GiB). The file passes the same checks as in the importers
    (core.validation: size first, then text without NUL bytes, names, duplicated columns).

    Two reads of the file and no staging copy: a cheap first pass collects the run and metric names
    and row counts; the second pass streams rows straight into ``metrics``, joined to the new run ids.
    The inserted rows are then checked (negative steps, NaN/inf values); any problem rolls back.
    Every new run carries ``tags`` (services/ingest.py gives the import's tag).
    """
    path = Path(path)
    what = what or path.name
    if on_duplicate not in DUPLICATE_POLICIES:
        raise InputError(f"Unknown duplicate policy {on_duplicate!r}: choose one of {', '.join(DUPLICATE_POLICIES)}.")
    if not path.is_file():
        raise InputError(f"{what} does not exist or is not a file; check the path")
    check_file_size(path, what, max_bytes)
    check_unique_columns(_header(path, what), what)
    if store.dialect is not dialects.DUCKDB:
        return _ingest_long_table_copy(store, path, on_duplicate, source_format, what, tags)
    with _literal_path(path) as literal, store.write() as conn:
        try:
            cols, source, q = _source(conn, literal, what)
            pairs = conn.exec_driver_sql(
                f"SELECT CAST({q('run')} AS VARCHAR), CAST({q('metric')} AS VARCHAR), count(*), "
                f"min(CAST({q('wall_time')} AS DOUBLE)) FROM {source} GROUP BY 1, 2").fetchall()
        except sa.exc.DBAPIError as exc:
            raise _unreadable(what, exc) from None
        run_of, metric_of, counts = _clean_names(pairs, cols, what)
        ids, rename = _create_runs(conn, what, sorted(counts), on_duplicate, source_format, tags)
        if not ids:
            return []
        raws = [r for r in run_of if run_of[r] in ids]
        origin = _wall_origins(pairs, run_of, wall_at=3)
        conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_src (raw VARCHAR, run_id BIGINT, wall_origin DOUBLE)")
        Store.bulk_insert(conn, sa.table("_ss_src"), pa.table(
            {"raw": pa.array(raws, pa.string()), "run_id": pa.array([ids[run_of[r]] for r in raws], pa.int64()),
             "wall_origin": pa.array([origin[run_of[r]] for r in raws], pa.float64())}))
        conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_metric (raw VARCHAR, name VARCHAR)")
        Store.bulk_insert(conn, sa.table("_ss_metric"), pa.table(
            {"raw": pa.array(list(metric_of), pa.string()), "name": pa.array(list(metric_of.values()), pa.string())}))
        try:
            conn.exec_driver_sql(
                "INSERT INTO metrics (run_id, name, step, tokens, flops, wall_time, value) "
                f"SELECT i.run_id, n.name, CAST({q('step')} AS DOUBLE), "
                f"CAST({q('tokens')} AS DOUBLE), CAST({q('flops')} AS DOUBLE), "
                f"CAST({q('wall_time')} AS DOUBLE) - i.wall_origin, "
                f"CAST({q('value')} AS DOUBLE) FROM {source} s "
                f"JOIN _ss_src i ON i.raw = CAST(s.{q('run')} AS VARCHAR) "
                f"JOIN _ss_metric n ON n.raw = CAST(s.{q('metric')} AS VARCHAR)")
        except sa.exc.DBAPIError as exc:
            raise _unreadable(what, exc) from None
        # One scan of the new rows: per-run bad-row counts and the final tokens/FLOPs.
        conn.exec_driver_sql(
            "CREATE OR REPLACE TEMP TABLE _ss_final AS SELECT m.run_id, max(m.tokens) AS tokens, "
            f"max(m.flops) AS flops, count(*) FILTER ({_BAD_ROW}) AS n_bad "
            "FROM metrics m WHERE m.run_id IN (SELECT run_id FROM _ss_ids) GROUP BY m.run_id")
        if conn.exec_driver_sql("SELECT sum(n_bad) FROM _ss_final").scalar():
            _explain_bad_row(conn, what)
        conn.exec_driver_sql("UPDATE runs SET tokens = t.tokens, flops = t.flops FROM _ss_final t "
                             "WHERE runs.id = t.run_id")
        for table in ("_ss_ids", "_ss_final", "_ss_src", "_ss_metric"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    return [{"id": i, "name": rename.get(n, n), "format": source_format, "n_metric_rows": counts[n]}
            for n, i in ids.items()]


def _wall_origins(pairs: list, run_of: dict, wall_at: int) -> dict:
    """Per run name, what to subtract from its wall times (core.validation.wall_time_origin of the run's
    smallest one), from the first pass's (raw run, raw metric, ..., min wall time at ``wall_at``) groups:
    the small-file path measures Unix timestamps from the run's first point, and so does this one."""
    smallest: dict = {}
    for p in pairs:
        w = p[wall_at]
        if w is not None and w == w:
            name = run_of[p[0]]
            smallest[name] = w if name not in smallest else min(smallest[name], w)
    return {name: wall_time_origin(smallest.get(name)) for name in set(run_of.values())}


def _clean_names(pairs: list, cols: dict[str, str], what: str):
    """From the (raw run, raw metric, rows, ...) groups of a file: raw run -> run name, raw metric ->
    metric name, and rows per run, after the importers' name rule (trimmed, not empty, no control
    characters) on each distinct name."""
    if not pairs:
        raise InputError(f"{what} has a header but no rows; export the log after the run has written points")
    if any(p[0] is None for p in pairs):
        raise InputError(f"{what}: column '{cols['run']}' is empty in some rows; give every row a run name")
    if any(p[1] is None for p in pairs):
        raise InputError(f"{what}: column '{cols['metric']}' is empty in some rows; name the metric on every row")
    run_of = {raw: clean_name(raw, f"{what}: run name") for raw in sorted({p[0] for p in pairs})}
    metric_of = {raw: clean_name(raw, f"{what}: metric name") for raw in sorted({p[1] for p in pairs})}
    counts: dict[str, int] = {}
    for p in pairs:
        counts[run_of[p[0]]] = counts.get(run_of[p[0]], 0) + p[2]
    return run_of, metric_of, counts


def _ingest_long_table_copy(store: Store, path: Path, on_duplicate: str, source_format: str,
                            what: str, tags: Sequence[str] = ()) -> list[dict]:
    """The PostgreSQL path of :func:`ingest_long_table`: a private in-memory DuckDB reads the file (the
    same readers, column and name rules, and bad-row rule as the DuckDB path) and checks every row
    before the server is touched; then ONE PostgreSQL transaction creates the runs (under advisory
    locks on their names) and takes the rows through binary COPY, in Arrow batches encoded while the
    server stores the previous ones. The rows sit in DuckDB's memory meanwhile (columnar, ~60 bytes a
    row), never as Python objects."""
    reader = sa.create_engine("duckdb:///:memory:", poolclass=sa.pool.StaticPool)
    try:
        with _literal_path(path) as literal, reader.connect() as duck:
            try:
                cols, source, q = _source(duck, literal, what)
                # The file is parsed once, into the private DuckDB's memory; both passes below read that
                # table, not the file. The file's order is kept: rows that arrive run by run stay
                # together on the server, where the BRIN index on run_id finds a run's blocks.
                duck.exec_driver_sql(
                    f"CREATE TEMP TABLE _ss_rows AS SELECT CAST({q('run')} AS VARCHAR) AS run, "
                    f"CAST({q('metric')} AS VARCHAR) AS name, "
                    + ", ".join(f"CAST({q(k)} AS DOUBLE) AS {k}" for k in ("step", "tokens", "flops", "wall_time",
                                                                           "value")) + f" FROM {source}")
                typed = "SELECT * FROM _ss_rows"
                # One pass: rows, final tokens/FLOPs and bad rows per (run, metric).
                pairs = duck.exec_driver_sql(
                    f"SELECT run, name, count(*), max(tokens), max(flops), count(*) FILTER ({_BAD_ROW}), "
                    f"min(wall_time) FROM ({typed}) m GROUP BY 1, 2").fetchall()
            except sa.exc.DBAPIError as exc:
                raise _unreadable(what, exc) from None
            run_of, metric_of, counts = _clean_names(pairs, cols, what)
            if any(p[5] for p in pairs):
                bad = duck.exec_driver_sql(f"SELECT run, step, value, tokens, flops, wall_time FROM ({typed}) m "
                                           f"WHERE {_BAD_ROW} LIMIT 1").one()
                raise InputError(_bad_row_message(what, run_of[bad[0]], *bad[1:]))
            final: dict[str, list] = {}
            for raw, _, _, tokens, flops, _, _ in pairs:
                seen = final.setdefault(run_of[raw], [None, None])
                seen[0] = tokens if seen[0] is None or (tokens is not None and tokens > seen[0]) else seen[0]
                seen[1] = flops if seen[1] is None or (flops is not None and flops > seen[1]) else seen[1]
            with store.write() as conn:
                store.dialect.lock_run_names(conn, sorted(counts))
                ids, rename = _create_runs(conn, what, sorted(counts), on_duplicate, source_format, tags)
                if not ids:
                    return []
                raws = [r for r in run_of if run_of[r] in ids]
                raw_duck = duck.connection.driver_connection
                origin = _wall_origins(pairs, run_of, wall_at=6)
                raw_duck.register("_ss_src", pa.table({"raw": pa.array(raws, pa.string()), "run_id": pa.array(
                    [ids[run_of[r]] for r in raws], pa.int32()), "wall_origin": pa.array(
                    [origin[run_of[r]] for r in raws], pa.float64())}))
                raw_duck.register("_ss_metric", pa.table({"raw": pa.array(list(metric_of), pa.string()),
                                                          "name": pa.array(list(metric_of.values()), pa.string())}))
                columns = ["run_id", "name", "step", "tokens", "flops", "wall_time", "value"]
                rows = None
                try:
                    rows = raw_duck.sql(
                        f"SELECT i.run_id, n.name, s.step, s.tokens, s.flops, s.wall_time - i.wall_origin, s.value "
                        f"FROM ({typed}) s "
                        "JOIN _ss_src i ON i.raw = s.run JOIN _ss_metric n ON n.raw = s.name").to_arrow_reader(
                        dialects.COPY_CHUNK_ROWS)
                    dialects.copy_batches(conn, "metrics", columns, rows)
                except duckdb.Error as exc:
                    raise _unreadable(what, exc) from None
                finally:
                    if rows is not None:
                        rows.close()  # a COPY that failed midway leaves the reader open otherwise
                conn.execute(sa.update(schema.runs).where(schema.runs.c.id == sa.bindparam("run_id")).values(
                    tokens=sa.bindparam("t"), flops=sa.bindparam("f")),
                    [{"run_id": i, "t": final[n][0], "f": final[n][1]} for n, i in ids.items()])
            store.dialect.after_bulk_load(store.engine)
    finally:
        reader.dispose()
    return [{"id": i, "name": rename.get(n, n), "format": source_format, "n_metric_rows": counts[n]}
            for n, i in ids.items()]


def _unreadable(what: str, exc: Exception) -> InputError:
    first = (str(getattr(exc, "orig", exc)).splitlines() or [type(exc).__name__])[0][:200]
    if "NOT NULL" in first:
        return InputError(f"{what}: some rows have an empty value or metric; fill or remove them.")
    if "Conversion Error" in first or "Could not convert" in first:
        return InputError(f"{what}: a cell holds a non-numeric value ({first}); numbers only in step, value, "
                          "tokens, flops and wall-time columns")
    return InputError(f"{what}: a row does not fit the table ({first}); check that every row has the "
                      "same columns and numbers where numbers belong.")


def _explain_bad_row(conn, filename: str) -> None:
    """Raise an InputError naming the first bad row of the new runs (the failure path only)."""
    bad = conn.exec_driver_sql(
        "SELECT r.name, m.step, m.value, m.tokens, m.flops, m.wall_time FROM metrics m JOIN _ss_ids i ON i.run_id = m.run_id "
        f"JOIN runs r ON r.id = m.run_id WHERE {_BAD_ROW} LIMIT 1").one()
    raise InputError(_bad_row_message(filename, *bad))


def _bad_row_message(filename: str, run, step, value, tokens, flops, wall) -> str:
    """What is wrong with the first bad row, and what to do."""
    if step is None:
        what = "a missing step"
    elif value is not None and not math.isfinite(value):
        what = f"a NaN or infinite value at step {step:g}"
    elif step < 0 or not math.isfinite(step):
        what = f"a negative or infinite step ({step})"
    elif wall is not None and not (math.isfinite(wall) and wall >= 0):
        what = f"a negative or infinite wall time ({wall}) at step {step:g}"
    elif any(x is not None and not math.isfinite(x) for x in (tokens, flops)):
        what = f"an infinite tokens/flops count at step {step:g}"
    else:
        what = f"a negative tokens/flops count at step {step:g}"
    return f"{filename}: run {run!r} has {what}; fix or remove that row and import again."


def _create_runs(conn, what: str, names: list[str], on_duplicate: str, source_format: str, tags: Sequence[str] = ()):
    """Insert the run rows (after the duplicate policy, each with ``tags``) and leave their ids in temp table _ss_ids."""
    tags_json = json.dumps(list(tags))
    existing = set(conn.execute(sa.select(schema.runs.c.name)).scalars())
    clash = [n for n in names if n in existing]
    rename = {}
    if clash:
        if on_duplicate == "error":
            raise DuplicateRunError(f"A run named {clash[0]!r} already exists: choose skip, replace or rename "
                                    "for duplicates.")
        if on_duplicate == "skip":
            names = [n for n in names if n not in existing]
        elif on_duplicate == "replace":
            ids = list(conn.execute(sa.select(schema.runs.c.id).where(schema.runs.c.name.in_(clash))).scalars())
            for table in (schema.metrics, schema.evals):
                conn.execute(sa.delete(table).where(table.c.run_id.in_(ids)))
            conn.execute(sa.delete(schema.runs).where(schema.runs.c.id.in_(ids)))
        else:
            taken = set(existing) | set(names)
            for n in clash:
                i = 2
                while f"{n} ({i})" in taken:
                    i += 1
                rename[n] = f"{n} ({i})"
                taken.add(rename[n])
    if not names:
        return {}, rename
    final = [rename.get(n, n) for n in names]
    if conn.dialect.name == "postgresql":
        rows = conn.execute(sa.insert(schema.runs).returning(schema.runs.c.id, sort_by_parameter_order=True), [
            {"name": f, "source_format": source_format, "source_file": what, "arch": "dense",
             "flops_rule": "as logged", "config": "{}", "tags": tags_json} for f in final]).scalars().all()
        return dict(zip(names, rows)), rename
    conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_names (run VARCHAR, final VARCHAR)")
    Store.bulk_insert(conn, sa.table("_ss_names"), pa.table({"run": names, "final": final}))
    conn.exec_driver_sql(
        "INSERT INTO runs (name, source_format, source_file, arch, flops_rule, config, tags) "
        "SELECT final, ?, ?, 'dense', 'as logged', '{}', ? FROM _ss_names", (source_format, what, tags_json))
    conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_ids AS "
                         "SELECT n.run, r.id AS run_id FROM _ss_names n JOIN runs r ON r.name = n.final")
    conn.exec_driver_sql("DROP TABLE IF EXISTS _ss_names")
    ids = dict(conn.exec_driver_sql("SELECT run, run_id FROM _ss_ids").fetchall())
    return {n: ids[n] for n in names}, rename
