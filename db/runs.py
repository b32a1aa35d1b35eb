"""Run rows inside a caller's write transaction (``Store.write()``): the steps a feature needs when it
matches, fills or creates runs together with rows of its own (an eval import does, in one transaction).

The Store keeps the whole-run operations (ingest, edit, delete, the metric reads); these functions
take the open connection, so the caller's rows and these land or roll back together.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import pyarrow as pa
import sqlalchemy as sa

from db import dialects, schema
from db.store import Store

# Columns a bulk-created run row may give (the rest take their defaults: id, created_at, ...).
RUN_ARROW_SCHEMA = pa.schema([
    ("name", pa.string()), ("source_format", pa.string()), ("source_file", pa.string()), ("arch", pa.string()),
    ("n_params", pa.float64()), ("n_nonembedding_params", pa.float64()), ("n_active_params", pa.float64()),
    ("tokens_per_step", pa.float64()), ("tokens", pa.float64()), ("flops", pa.float64()),
    ("flops_rule", pa.string()), ("config", pa.string()), ("tags", pa.string())])


def runs_named(conn, names: Iterable[str]) -> dict[str, dict]:
    """The stored run rows among ``names``: name -> row (every column, JSON left as text).

    In a write transaction this also claims the names until it ends (PostgreSQL: advisory locks),
    so a caller that creates the missing runs next cannot race another process creating them."""
    names = list(names)
    dialects.for_conn(conn).lock_run_names(conn, names)
    rows = conn.execute(sa.select(schema.runs).where(schema.runs.c.name.in_(list(names)))).mappings()
    return {r["name"]: dict(r) for r in rows}


def run_ids_named(conn, names: Iterable[str]) -> dict[str, int]:
    """name -> id of the stored runs among ``names`` (absent names are left out)."""
    return dict(conn.execute(sa.select(schema.runs.c.name, schema.runs.c.id)
                             .where(schema.runs.c.name.in_(list(names)))).all())


def last_logged_steps(conn, run_ids: Sequence[int]) -> dict[int, float]:
    """run id -> the largest step of its metric rows (runs with no stepped rows are left out)."""
    if not run_ids:
        return {}
    stmt = sa.select(schema.metrics.c.run_id, sa.func.max(schema.metrics.c.step)).where(
        schema.metrics.c.run_id.in_(list(run_ids)), schema.metrics.c.step.is_not(None)
    ).group_by(schema.metrics.c.run_id)
    return dict(conn.execute(stmt).all())


def update_run_fields(conn, run_id: int, values: dict) -> None:
    """Set columns of one run row (no derived tokens/FLOPs follow: see ``Store.update_run`` for that)."""
    if values:
        conn.execute(sa.update(schema.runs).where(schema.runs.c.id == int(run_id)).values(**values))


def insert_runs(conn, rows: Sequence[dict]) -> int:
    """Bulk-create run rows (keys of :data:`RUN_ARROW_SCHEMA`); their ids come from the sequence."""
    return Store.bulk_insert(conn, schema.runs, pa.Table.from_pylist(list(rows), schema=RUN_ARROW_SCHEMA))
