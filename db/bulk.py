"""The fast path for big long-format tables: DuckDB reads the file itself, inside the store's
own transaction, so millions of metric rows never pass through pandas or Python objects.

Long format: one row per (run, step, metric) with columns ``run, step, metric, value`` and optional
``tokens, flops, wall_time`` (names matched case-insensitively; a few aliases below). CSV/TSV and
Parquet. Validation happens in SQL before anything is kept; the transaction rolls back on any error.
"""
from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa

import sqlalchemy as sa

from core.errors import DuplicateRunError, InputError
from db import schema
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


def _reader(path: Path) -> str:
    quoted = str(path).replace("'", "''")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return f"read_parquet('{quoted}')"
    delim = "\\t" if suffix in (".tsv", ".tab") else ","
    return f"read_csv('{quoted}', header=true, delim='{delim}', sample_size=20480)"


def _map_columns(conn, source: str) -> dict[str, str]:
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
        raise InputError(f"Not a long metrics table: no {missing[0]!r} column (found {', '.join(cols[:8])}). "
                         "Long tables need run, step, metric, value columns.")
    return found


def ingest_long_table(store: Store, path: str | Path, on_duplicate: str = "error",
                      source_format: str = "csv_long") -> list[dict]:
    """Import a long metrics table through DuckDB in one transaction; returns the runs added.

    Two reads of the file and no staging copy: a cheap first pass collects the run names and row
    counts; the second pass streams rows straight into ``metrics``, joined to the new run ids.
    The inserted rows are then checked (negative steps, NaN/inf values); any problem rolls back.
    """
    path = Path(path)
    if on_duplicate not in DUPLICATE_POLICIES:
        raise InputError(f"Unknown duplicate policy {on_duplicate!r}: choose one of {', '.join(DUPLICATE_POLICIES)}.")
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty or missing: choose a file with a header and data rows.")
    source = _reader(path)
    with store.write() as conn:
        try:
            cols = _map_columns(conn, source)
            q = lambda k: f'"{cols[k]}"' if k in cols else "NULL"  # noqa: E731
            counts = dict(conn.exec_driver_sql(
                f"SELECT CAST({q('run')} AS VARCHAR) AS run, count(*) FROM {source} GROUP BY 1").fetchall())
        except sa.exc.DBAPIError as exc:
            raise _unreadable(path, exc) from None
        if not counts:
            raise InputError(f"{path.name} has a header but no data rows.")
        if None in counts or any(not str(n).strip() for n in counts):
            raise InputError(f"{path.name}: some rows have an empty run name; name every row's run.")
        ids, rename = _create_runs(conn, path, sorted(counts), on_duplicate, source_format)
        if not ids:
            return []
        try:
            conn.exec_driver_sql(
                "INSERT INTO metrics (run_id, name, step, tokens, flops, wall_time, value) "
                f"SELECT i.run_id, CAST({q('metric')} AS VARCHAR), CAST({q('step')} AS DOUBLE), "
                f"CAST({q('tokens')} AS DOUBLE), CAST({q('flops')} AS DOUBLE), CAST({q('wall_time')} AS DOUBLE), "
                f"CAST({q('value')} AS DOUBLE) FROM {source} s JOIN _ss_ids i ON i.run = CAST(s.{q('run')} AS VARCHAR)")
        except sa.exc.DBAPIError as exc:
            raise _unreadable(path, exc) from None
        # One scan of the new rows: per-run bad-row counts and the final tokens/FLOPs.
        conn.exec_driver_sql(
            "CREATE OR REPLACE TEMP TABLE _ss_final AS SELECT m.run_id, max(m.tokens) AS tokens, "
            "max(m.flops) AS flops, count(*) FILTER (m.step < 0 OR m.tokens < 0 OR m.flops < 0 "
            "OR NOT isfinite(m.value) OR NOT isfinite(m.step) OR m.name IS NULL OR m.step IS NULL) AS n_bad "
            "FROM metrics m WHERE m.run_id IN (SELECT run_id FROM _ss_ids) GROUP BY m.run_id")
        if conn.exec_driver_sql("SELECT sum(n_bad) FROM _ss_final").scalar():
            _explain_bad_row(conn, path.name)
        conn.exec_driver_sql("UPDATE runs SET tokens = t.tokens, flops = t.flops FROM _ss_final t "
                             "WHERE runs.id = t.run_id")
        conn.exec_driver_sql("DROP TABLE IF EXISTS _ss_ids")
        conn.exec_driver_sql("DROP TABLE IF EXISTS _ss_final")
    return [{"id": i, "name": rename.get(n, n), "format": source_format, "n_metric_rows": counts[n]}
            for n, i in ids.items()]


def _unreadable(path: Path, exc: Exception) -> InputError:
    first = str(getattr(exc, "orig", exc)).splitlines()[0]
    if "NOT NULL" in first:
        return InputError(f"{path.name}: some rows have an empty value or metric; fill or remove them.")
    return InputError(f"{path.name}: a row does not fit the table ({first}); check that every row has the "
                      "same columns and numbers where numbers belong.")


def _explain_bad_row(conn, filename: str) -> None:
    """Raise an InputError naming the first bad row of the new runs (the failure path only)."""
    bad = conn.exec_driver_sql(
        "SELECT r.name, m.step, m.value, m.tokens, m.flops FROM metrics m JOIN _ss_ids i ON i.run_id = m.run_id "
        "JOIN runs r ON r.id = m.run_id WHERE m.step < 0 OR m.tokens < 0 OR m.flops < 0 "
        "OR NOT isfinite(m.value) OR NOT isfinite(m.step) OR m.name IS NULL OR m.step IS NULL LIMIT 1").one()
    run, step, value, tokens, flops = bad
    if step is None:
        what = "a missing step"
    elif value is not None and not math.isfinite(value):
        what = f"a NaN or infinite value at step {step:g}"
    elif step < 0 or not math.isfinite(step):
        what = f"a negative or infinite step ({step})"
    else:
        what = f"a negative tokens/flops count at step {step:g}"
    raise InputError(f"{filename}: run {run!r} has {what}; fix or remove that row and import again.")


def _create_runs(conn, path: Path, names: list[str], on_duplicate: str, source_format: str):
    """Insert the run rows (after the duplicate policy) and leave their ids in temp table _ss_ids."""
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
    conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_names (run VARCHAR, final VARCHAR)")
    Store.bulk_insert(conn, sa.table("_ss_names"), pa.table({"run": names, "final": final}))
    conn.exec_driver_sql(
        "INSERT INTO runs (name, source_format, source_file, arch, flops_rule, config, tags) "
        "SELECT final, ?, ?, 'dense', 'as logged', '{}', '[]' FROM _ss_names", (source_format, path.name))
    conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_ids AS "
                         "SELECT n.run, r.id AS run_id FROM _ss_names n JOIN runs r ON r.name = n.final")
    conn.exec_driver_sql("DROP TABLE IF EXISTS _ss_names")
    ids = dict(conn.exec_driver_sql("SELECT run, run_id FROM _ss_ids").fetchall())
    return {n: ids[n] for n in names}, rename
