"""Stored routing captures: one ``routing_captures`` row per capture plus its assignments.

A capture streams its assignment chunks to a temporary Parquet file (bounded memory), then lands
in ONE short transaction through DuckDB's Parquet reader — so a failed or cancelled capture
stores nothing and other sessions' writes are not held up while the model runs.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from core.errors import InputError
from db import schema
from db.store import Store

ASSIGNMENT_COLUMNS = ["layer", "doc_id", "position", "token_id", "domain", "rank", "expert", "weight"]
_ARROW_SCHEMA = pa.schema([("layer", pa.int32()), ("doc_id", pa.int32()), ("position", pa.int32()),
                           ("token_id", pa.int32()), ("domain", pa.string()), ("rank", pa.int32()),
                           ("expert", pa.int32()), ("weight", pa.float64())])


class CaptureWriter:
    """Collects assignment chunks (``sink``), then ``commit(meta)`` stores them whole."""

    def __init__(self, store: Store):
        self.store = store
        self._dir = Path(tempfile.mkdtemp(prefix="ss_capture_"))
        self._path = self._dir / "assignments.parquet"
        self._writer: Optional[pq.ParquetWriter] = None
        self.n_rows = 0

    def sink(self, chunk: pd.DataFrame) -> None:
        missing = [c for c in ASSIGNMENT_COLUMNS if c not in chunk.columns]
        if missing:
            raise InputError(f"Routing rows lack the column {missing[0]!r}.")
        table = pa.Table.from_pandas(chunk[ASSIGNMENT_COLUMNS], schema=_ARROW_SCHEMA, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, _ARROW_SCHEMA)
        self._writer.write_table(table)
        self.n_rows += table.num_rows

    def commit(self, meta: dict) -> int:
        """Store the capture row and every chunk in one transaction; returns the capture id."""
        if self._writer is None or self.n_rows == 0:
            self.discard()
            raise InputError("The capture recorded no routing decisions: is the corpus empty?")
        self._writer.close()
        self._writer = None
        keys = ("model_ref", "family", "corpus", "checkpoint_step", "n_layers", "n_experts", "top_k", "n_tokens")
        row = {k: meta.get(k) for k in keys}
        row["info"] = json.dumps(meta.get("info", {}), default=str)
        try:
            with self.store.write() as conn:
                capture_id = conn.execute(sa.insert(schema.routing_captures).values(**row)
                                          .returning(schema.routing_captures.c.id)).scalar_one()
                path = str(self._path).replace("'", "''")
                conn.exec_driver_sql(
                    f"INSERT INTO routing_assignments (capture_id, {', '.join(ASSIGNMENT_COLUMNS)}) "
                    f"SELECT {int(capture_id)}, {', '.join(ASSIGNMENT_COLUMNS)} FROM read_parquet('{path}')")
        finally:
            self.discard()
        return int(capture_id)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        shutil.rmtree(self._dir, ignore_errors=True)


def list_captures(store: Store) -> pd.DataFrame:
    with store.read() as conn:
        frame = pd.read_sql(sa.select(schema.routing_captures).order_by(schema.routing_captures.c.id), conn)
    frame["info"] = frame["info"].map(lambda s: json.loads(s) if s else {})
    return frame


def get_capture(store: Store, capture_id: int) -> dict:
    with store.read() as conn:
        row = conn.execute(sa.select(schema.routing_captures)
                           .where(schema.routing_captures.c.id == int(capture_id))).mappings().first()
    if row is None:
        raise InputError(f"No routing capture with id {capture_id}: list them with `python cli.py route --list`.")
    out = dict(row)
    out["info"] = json.loads(out["info"] or "{}")
    return out


def load_assignments(store: Store, capture_id: int, layer: Optional[int] = None) -> pd.DataFrame:
    """Assignments of one capture (optionally one layer), ordered by layer, doc, position, rank."""
    get_capture(store, capture_id)
    query = ("SELECT layer, doc_id, position, token_id, domain, rank, expert, weight FROM routing_assignments "
             "WHERE capture_id = :cid")
    params = {"cid": int(capture_id)}
    if layer is not None:
        query += " AND layer = :layer"
        params["layer"] = int(layer)
    with store.read() as conn:
        return pd.read_sql(sa.text(query + " ORDER BY layer, doc_id, position, rank"), conn, params=params)


def delete_capture(store: Store, capture_id: int) -> None:
    get_capture(store, capture_id)
    with store.write() as conn:
        conn.execute(sa.delete(schema.routing_assignments).where(schema.routing_assignments.c.capture_id == capture_id))
        conn.execute(sa.delete(schema.routing_captures).where(schema.routing_captures.c.id == capture_id))
