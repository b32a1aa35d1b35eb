"""Stored probe measurements (throughput / MFU) — the planner reads measured MFU from here."""
from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from db import schema
from db.store import Store


def save_probe(store: Store, *, kind: str, device: str, dtype: str, config: dict, tokens_per_s: float,
               achieved_tflops: float, mfu: float | None, peak_memory_bytes: float | None) -> int:
    with store.write() as conn:
        return int(conn.execute(sa.insert(schema.probes).values(
            kind=kind, device=device, dtype=dtype, config=json.dumps(config, default=str),
            tokens_per_s=tokens_per_s, achieved_tflops=achieved_tflops, mfu=mfu,
            peak_memory_bytes=peak_memory_bytes).returning(schema.probes.c.id)).scalar_one())


def list_probes(store: Store) -> pd.DataFrame:
    with store.read() as conn:
        frame = pd.read_sql(sa.select(schema.probes).order_by(schema.probes.c.id.desc()), conn)
    frame["config"] = frame["config"].map(lambda s: json.loads(s) if s else {})
    return frame
