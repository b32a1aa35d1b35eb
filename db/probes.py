"""Stored probe measurements: throughput / MFU rows (the planner reads measured MFU from here) and
one summary row per stored sweep (its runs live in ``runs``; the row says which and how fast).

Kinds: ``forward`` and ``forward_backward`` (a throughput probe stores one row per pass kind, so the
planner can offer the fwd+bwd MFU for training), and ``sweep`` (no MFU: a sweep's ``tokens_per_s``
and ``achieved_tflops`` are its training throughput over all runs).
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

import pandas as pd
import sqlalchemy as sa

from db import schema
from db.store import Store

THROUGHPUT_KINDS = ("forward", "forward_backward")
SWEEP_KIND = "sweep"


def insert_probe(conn, *, kind: str, device: str, dtype: str, config: dict, tokens_per_s: Optional[float],
                 achieved_tflops: Optional[float], mfu: Optional[float], peak_memory_bytes: Optional[float]) -> int:
    """Insert one probes row inside an open write transaction (``Store.write()``); returns its id."""
    return int(conn.execute(sa.insert(schema.probes).values(
        kind=kind, device=device, dtype=dtype, config=json.dumps(config, default=str),
        tokens_per_s=tokens_per_s, achieved_tflops=achieved_tflops, mfu=mfu,
        peak_memory_bytes=peak_memory_bytes).returning(schema.probes.c.id)).scalar_one())


def save_probe(store: Store, *, kind: str, device: str, dtype: str, config: dict, tokens_per_s: float,
               achieved_tflops: float, mfu: float | None, peak_memory_bytes: float | None) -> int:
    """Store one probes row in its own transaction; returns its id."""
    with store.write() as conn:
        return insert_probe(conn, kind=kind, device=device, dtype=dtype, config=config, tokens_per_s=tokens_per_s,
                            achieved_tflops=achieved_tflops, mfu=mfu, peak_memory_bytes=peak_memory_bytes)


def list_probes(store: Store, kinds: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Stored probes, newest first (``config`` parsed to a dict); only ``kinds`` when given."""
    query = sa.select(schema.probes).order_by(schema.probes.c.id.desc())
    if kinds is not None:
        query = query.where(schema.probes.c.kind.in_(list(kinds)))
    with store.read() as conn:
        frame = pd.read_sql(query, conn)
    frame["config"] = frame["config"].map(lambda s: json.loads(s) if s else {})
    return frame
