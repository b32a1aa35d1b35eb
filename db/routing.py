"""Stored routing captures: one ``routing_captures`` row per capture plus its ``routing_assignments``
(one row per token, MoE layer and rank).

Assignments arrive two ways, both through DuckDB's own readers, never row by row: a capture spooled
to a Parquet file (:func:`store_capture_from_parquet`, one short transaction), or a frame inside a
caller's write transaction (:func:`insert_capture` + :func:`insert_assignments`, a probe sweep's
snapshots). ``info`` is JSON text in the table and a dict everywhere else.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from core.errors import InputError
from db import dialects, schema
from db.store import Store

captures, assignments = schema.routing_captures, schema.routing_assignments
# The assignment columns a capture gives (the table's, less the capture id), and their stored types.
ASSIGNMENT_COLUMNS = [c.name for c in assignments.columns if c.name != "capture_id"]
ASSIGNMENT_ARROW_SCHEMA = pa.schema([(c, pa.string() if c == "domain" else pa.float64() if c == "weight"
                                      else pa.int32()) for c in ASSIGNMENT_COLUMNS])
# Columns of a capture row a caller gives (``info`` a dict); id and created_at come from the database.
CAPTURE_FIELDS = ("model_ref", "family", "corpus", "checkpoint_step", "n_layers", "n_experts", "top_k", "n_tokens")


# ----------------------------------------------------------------------------- writes
def insert_capture(conn, meta: dict) -> int:
    """Insert one capture row (:data:`CAPTURE_FIELDS` and ``info``) in an open write transaction; its id."""
    row = {k: meta.get(k) for k in CAPTURE_FIELDS}
    row["info"] = json.dumps(meta.get("info") or {}, default=str)
    return int(conn.execute(sa.insert(captures).values(**row).returning(captures.c.id)).scalar_one())


def insert_assignments(conn, capture_id: int, frame: pd.DataFrame) -> int:
    """Bulk-append one capture's assignments (:data:`ASSIGNMENT_COLUMNS`); returns the rows stored."""
    cols = {"capture_id": pa.array(np.full(len(frame), int(capture_id), dtype=np.int32))}
    for field in ASSIGNMENT_ARROW_SCHEMA:
        values = frame[field.name]
        cols[field.name] = (pa.array(values.astype(str).tolist(), type=field.type) if field.type == pa.string()
                            else pa.array(values.to_numpy(dtype=field.type.to_pandas_dtype()), type=field.type))
    return Store.bulk_insert(conn, assignments, pa.table(cols))


def store_capture_from_parquet(store: Store, meta: dict, path: str | Path) -> int:
    """Store a capture row and the assignments spooled in the Parquet file ``path`` (columns
    :data:`ASSIGNMENT_COLUMNS`) in one transaction; returns the capture id."""
    quoted = str(path).replace("'", "''")
    cols = ", ".join(ASSIGNMENT_COLUMNS)
    with store.write() as conn:
        capture_id = insert_capture(conn, meta)
        if conn.dialect.name == "postgresql":  # pyarrow reads the file, COPY stores the rows
            batches = pq.ParquetFile(path).iter_batches(batch_size=dialects.COPY_CHUNK_ROWS, columns=ASSIGNMENT_COLUMNS)
            dialects.copy_batches(conn, assignments.name, ["capture_id"] + ASSIGNMENT_COLUMNS, (
                pa.RecordBatch.from_arrays([pa.array(np.full(b.num_rows, capture_id, dtype=np.int32))]
                                           + b.columns, ["capture_id"] + ASSIGNMENT_COLUMNS) for b in batches))
            return capture_id
        conn.exec_driver_sql(f"INSERT INTO routing_assignments (capture_id, {cols}) "
                             f"SELECT {capture_id}, {cols} FROM read_parquet('{quoted}')")
    return capture_id


def delete_captures_in(conn, ids: Sequence[int]) -> None:
    """Delete captures and their assignments inside an open write transaction."""
    ids = [int(i) for i in ids]
    if ids:
        conn.execute(sa.delete(assignments).where(assignments.c.capture_id.in_(ids)))
        conn.execute(sa.delete(captures).where(captures.c.id.in_(ids)))


def delete_captures_of(conn, model_ref: str, source: str) -> None:
    """Delete, inside an open write transaction, the captures of ``model_ref`` whose ``info`` says
    they came from ``source`` (e.g. a probe sweep's snapshots of a run being replaced)."""
    rows = conn.execute(sa.select(captures.c.id, captures.c.info).where(captures.c.model_ref == model_ref)).all()
    delete_captures_in(conn, [i for i, info in rows if (json.loads(info or "{}") or {}).get("source") == source])


def delete_capture(store: Store, capture_id: int) -> None:
    """Delete one capture and its assignments; InputError when there is none."""
    get_capture(store, capture_id)
    with store.write() as conn:
        delete_captures_in(conn, [capture_id])


# ----------------------------------------------------------------------------- reads
def list_captures(store: Store) -> pd.DataFrame:
    """Every capture row, oldest first, with ``info`` parsed to a dict."""
    with store.read() as conn:
        frame = pd.read_sql(sa.select(captures).order_by(captures.c.id), conn)
    frame["info"] = frame["info"].map(lambda s: json.loads(s) if s else {})
    return frame


def get_capture(store: Store, capture_id: int) -> dict:
    """One capture row as a dict (``info`` parsed); InputError when there is none."""
    with store.read() as conn:
        row = conn.execute(sa.select(captures).where(captures.c.id == int(capture_id))).mappings().first()
    if row is None:
        raise InputError(f"No routing capture with id {capture_id}: list them with `python cli.py route --list`.")
    out = dict(row)
    out["info"] = json.loads(out["info"] or "{}")
    return out


def load_assignments(store: Store, capture_id: int, layer: Optional[int] = None) -> pd.DataFrame:
    """Assignments of one capture (optionally one layer), ordered by layer, doc, position, rank."""
    get_capture(store, capture_id)
    query = sa.select(*[assignments.c[c] for c in ASSIGNMENT_COLUMNS]).where(
        assignments.c.capture_id == int(capture_id))
    if layer is not None:
        query = query.where(assignments.c.layer == int(layer))
    query = query.order_by(assignments.c.layer, assignments.c.doc_id, assignments.c.position, assignments.c.rank)
    with store.read() as conn:
        return pd.read_sql(query, conn)


def capture_layers(store: Store, capture_id: int) -> list[int]:
    """The MoE layers a capture's assignments cover, in order."""
    with store.read() as conn:
        return list(conn.execute(sa.select(assignments.c.layer).distinct()
                                 .where(assignments.c.capture_id == int(capture_id))
                                 .order_by(assignments.c.layer)).scalars())
