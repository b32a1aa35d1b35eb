"""Stored fits: every fitted law with its exact selection, target, settings, parameters,
intervals and diagnostics, so re-running it reproduces the numbers."""
from __future__ import annotations

import json
from typing import Optional

import pandas as pd
import sqlalchemy as sa

from core.errors import InputError
from db import schema
from db.store import Store

JSON_FIELDS = ("selection", "settings", "params", "intervals", "diagnostics")


def save_fit(store: Store, *, law: str, method: str, target: str, selection: dict, settings: dict,
             params: dict, intervals: dict, diagnostics: dict, name: Optional[str] = None) -> int:
    """Store one fit (one transaction); returns its id."""
    row = {"law": law, "method": method, "target": target, "name": name}
    for key, value in zip(JSON_FIELDS, (selection, settings, params, intervals, diagnostics)):
        row[key] = json.dumps(value, default=_jsonable, allow_nan=False)
    with store.write() as conn:
        return int(conn.execute(sa.insert(schema.fits).values(**row).returning(schema.fits.c.id)).scalar_one())


def list_fits(store: Store) -> pd.DataFrame:
    """All fits, newest first, with their JSON columns decoded."""
    with store.read() as conn:
        frame = pd.read_sql(sa.select(schema.fits).order_by(schema.fits.c.id.desc()), conn)
    for key in JSON_FIELDS:
        frame[key] = frame[key].map(lambda s: json.loads(s) if s else {})
    return frame


def get_fit(store: Store, fit_id: int) -> dict:
    with store.read() as conn:
        row = conn.execute(sa.select(schema.fits).where(schema.fits.c.id == int(fit_id))).mappings().first()
    if row is None:
        raise InputError(f"No fit with id {fit_id}: list fits on the Fits page or with `python cli.py fits`.")
    out = dict(row)
    for key in JSON_FIELDS:
        out[key] = json.loads(out[key]) if out[key] else {}
    return out


def delete_fit(store: Store, fit_id: int) -> None:
    get_fit(store, fit_id)
    with store.write() as conn:
        conn.execute(sa.delete(schema.fits).where(schema.fits.c.id == int(fit_id)))


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a fit")
