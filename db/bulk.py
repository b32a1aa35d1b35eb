"""The fast path for big long-format tables: DuckDB reads the file itself, inside the store's
own transaction, so millions of metric rows never pass through pandas or Python objects.

Long format: one row per (run, step, metric) with columns ``run, step, metric, value`` and optional
``tokens, flops, wall_time`` (names matched case-insensitively; a few aliases below). CSV/TSV and
Parquet. Validation happens in SQL before anything is kept; the transaction rolls back on any error.
"""
from __future__ import annotations

import json
from pathlib import Path

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
    """Import a long metrics table through DuckDB in one transaction; returns the runs added."""
    path = Path(path)
    if on_duplicate not in DUPLICATE_POLICIES:
        raise InputError(f"Unknown duplicate policy {on_duplicate!r}: choose one of {', '.join(DUPLICATE_POLICIES)}.")
    if not path.is_file() or path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty or missing: choose a file with a header and data rows.")
    with store.write() as conn:
        try:
            cols = _map_columns(conn, _reader(path))
        except sa.exc.DBAPIError as exc:
            raise InputError(f"{path.name} cannot be read as a table ({str(exc.orig).splitlines()[0]}); "
                             "check the delimiter and that it is text.") from None
        q = lambda k: f'"{cols[k]}"' if k in cols else "NULL"  # noqa: E731
        try:
            conn.exec_driver_sql(
                f"CREATE OR REPLACE TEMP TABLE _ss_stage AS SELECT CAST({q('run')} AS VARCHAR) AS run, "
                f"CAST({q('metric')} AS VARCHAR) AS metric, TRY_CAST({q('step')} AS DOUBLE) AS step, "
                f"TRY_CAST({q('value')} AS DOUBLE) AS value, TRY_CAST({q('tokens')} AS DOUBLE) AS tokens, "
                f"TRY_CAST({q('flops')} AS DOUBLE) AS flops, TRY_CAST({q('wall_time')} AS DOUBLE) AS wall_time, "
                f"{q('step')} IS NOT NULL AND TRY_CAST({q('step')} AS DOUBLE) IS NULL AS bad_step, "
                f"TRY_CAST({q('value')} AS DOUBLE) IS NULL AS bad_value "
                f"FROM {_reader(path)}")
        except sa.exc.DBAPIError as exc:
            raise InputError(f"{path.name}: a row does not fit the table ({str(exc.orig).splitlines()[0]}); "
                             "check that every row has the same columns and numbers where numbers belong.") from None
        try:
            _validate_stage(conn, path.name)
            return _move_stage(conn, path, on_duplicate, source_format)
        finally:
            conn.exec_driver_sql("DROP TABLE IF EXISTS _ss_stage")


def _validate_stage(conn, filename: str) -> None:
    n, bad_value, bad_step, neg, nonfinite, no_run = conn.exec_driver_sql(
        "SELECT count(*), count(*) FILTER (bad_value), count(*) FILTER (bad_step), "
        "count(*) FILTER (step < 0 OR tokens < 0 OR flops < 0), "
        "count(*) FILTER (NOT isfinite(value) OR NOT isfinite(step)), "
        "count(*) FILTER (run IS NULL OR trim(run) = '' OR metric IS NULL) FROM _ss_stage").one()
    if n == 0:
        raise InputError(f"{filename} has a header but no data rows.")
    checks = [(bad_value, "bad_value", "a value that is empty or not a number"),
              (bad_step, "bad_step", "a step that is not a number"),
              (neg, "step < 0 OR tokens < 0 OR flops < 0", "a negative step, tokens or flops"),
              (nonfinite, "NOT isfinite(value) OR NOT isfinite(step)", "a NaN or infinite value"),
              (no_run, "run IS NULL OR trim(run) = '' OR metric IS NULL", "an empty run or metric name")]
    for count, cond, what in checks:
        if count:
            row = conn.exec_driver_sql(
                f"SELECT rn FROM (SELECT row_number() OVER () AS rn, * FROM _ss_stage) WHERE {cond} LIMIT 1"
            ).scalar()
            raise InputError(f"{filename}: {count} row(s) have {what} (first at data row {row}); "
                             "fix or remove them and import again.")


def _move_stage(conn, path: Path, on_duplicate: str, source_format: str) -> list[dict]:
    names = [r[0] for r in conn.exec_driver_sql("SELECT DISTINCT run FROM _ss_stage ORDER BY 1").fetchall()]
    existing = set(conn.execute(sa.select(schema.runs.c.name)).scalars())
    clash = [n for n in names if n in existing]
    rename = {}
    if clash:
        if on_duplicate == "error":
            raise DuplicateRunError(f"A run named {clash[0]!r} already exists: choose skip, replace or rename "
                                    "for duplicates.")
        if on_duplicate == "skip":
            conn.execute(sa.text("DELETE FROM _ss_stage WHERE run IN :n").bindparams(
                sa.bindparam("n", expanding=True)), {"n": clash})
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
        return []
    import pyarrow as pa

    final = [rename.get(n, n) for n in names]
    conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_names (run VARCHAR, final VARCHAR)")
    Store.bulk_insert(conn, sa.table("_ss_names"), pa.table({"run": names, "final": final}))
    returned = conn.exec_driver_sql(
        "INSERT INTO runs (name, source_format, source_file, arch, flops_rule, config, tags) "
        f"SELECT final, ?, ?, 'dense', 'as logged', '{{}}', '[]' FROM _ss_names RETURNING id, name",
        (source_format, path.name)).fetchall()
    by_final = {name: run_id for run_id, name in returned}
    ids = {n: by_final[f] for n, f in zip(names, final)}
    conn.exec_driver_sql("CREATE OR REPLACE TEMP TABLE _ss_ids AS "
                         "SELECT n.run, r.id AS run_id FROM _ss_names n JOIN runs r ON r.name = n.final")
    conn.exec_driver_sql("DROP TABLE IF EXISTS _ss_names")
    conn.exec_driver_sql(
        "INSERT INTO metrics (run_id, name, step, tokens, flops, wall_time, value) "
        "SELECT i.run_id, s.metric, s.step, s.tokens, s.flops, s.wall_time, s.value "
        "FROM _ss_stage s JOIN _ss_ids i ON i.run = s.run")
    rows = conn.exec_driver_sql(
        "SELECT i.run_id, count(*), NULL, NULL FROM _ss_stage s JOIN _ss_ids i ON i.run = s.run "
        "GROUP BY i.run_id").fetchall()
    counts = {run_id: n_rows for run_id, n_rows, _, _ in rows}
    conn.exec_driver_sql(
        "UPDATE runs SET tokens = t.tokens, flops = t.flops FROM (SELECT run_id, max(tokens) AS tokens, "
        "max(flops) AS flops FROM metrics WHERE run_id IN (SELECT run_id FROM _ss_ids) GROUP BY run_id) t "
        "WHERE runs.id = t.run_id")
    conn.exec_driver_sql("DROP TABLE IF EXISTS _ss_ids")
    return [{"id": i, "name": rename.get(n, n), "format": source_format, "n_metric_rows": counts.get(i, 0)}
            for n, i in ids.items()]
