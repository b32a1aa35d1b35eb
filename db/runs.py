"""Run rows inside a caller's write transaction (``Store.write()``): the steps a feature needs when it
matches, fills or creates runs together with rows of its own (an eval import does, in one transaction).

The Store keeps the whole-run operations (ingest, edit, delete, the metric reads); these functions
take the open connection, so the caller's rows and these land or roll back together.
"""
from __future__ import annotations

import json
from typing import Iterable, Mapping, NamedTuple, Optional, Sequence

import pyarrow as pa
import sqlalchemy as sa

from core.errors import InputError
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


class TagEdit(NamedTuple):
    """What to do to one run's tags, in this order: replace them all by ``set_to`` (unless None), then
    append each of ``add`` it lacks, then take away each of ``remove``. Tags are checked by the caller
    (services.runs: the same rules as an import's tag)."""
    set_to: Optional[Sequence[str]] = None
    add: Sequence[str] = ()
    remove: Sequence[str] = ()

    def apply(self, tags: Sequence[str]) -> list[str]:
        """The tags after this edit (each once, in their order; added ones at the end)."""
        out = list(dict.fromkeys(tags if self.set_to is None else self.set_to))
        out += [t for t in dict.fromkeys(self.add) if t not in out]
        gone = set(self.remove)
        return [t for t in out if t not in gone]


def stored_tags(text) -> list[str]:
    """A run row's tags (the ``tags`` column is JSON text); [] when none or unreadable."""
    try:
        tags = json.loads(text or "[]")
    except (TypeError, ValueError):
        return []
    return [str(t) for t in tags] if isinstance(tags, list) else []


def edit_run_tags(conn, edits: Mapping[str, TagEdit]) -> list[dict]:
    """Edit the tags of the named runs inside the caller's write transaction (``Store.write()``).

    Every name must exist, else InputError naming the missing ones and nothing is written (the
    caller's transaction rolls back). The names are claimed first (PostgreSQL: advisory locks, as an
    import takes them), so two edits of one run never lose each other's tags. Returns one dict per
    run, in the order given: name, before, after (tag lists), changed."""
    names = list(edits)
    rows = runs_named(conn, names)
    missing = [n for n in names if n not in rows]
    if missing:
        shown = ", ".join(repr(n) for n in missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise InputError(f"No run{'s' if len(missing) > 1 else ''} named {shown} in the store; no tag was changed. "
                         "List runs with `python cli.py runs`.")
    out = []
    for name in names:
        before = stored_tags(rows[name]["tags"])
        after = edits[name].apply(before)
        if after != before:
            conn.execute(sa.update(schema.runs).where(schema.runs.c.id == rows[name]["id"])
                         .values(tags=json.dumps(after)))
        out.append({"name": name, "before": before, "after": after, "changed": after != before})
    return out
