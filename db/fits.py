"""Stored fits: every fitted law with its exact selection, target, settings, parameters,
intervals and diagnostics, so re-running it reproduces the numbers (services/fits.refit).

A fit from core/fitting (a ``FitResult``) is stored by ``save_result`` in the layout of
``FitResult.to_stored`` (schema version 3): ``params`` keeps the law's parameters (Chinchilla: E, A,
B, alpha, beta), ``intervals`` their 95% bootstrap intervals (and those of the exponents a, b), and
``diagnostics`` everything else the result carries — ``bootstrap_samples`` (rows in the order of
``param_names``, which the planner reads for its bands), ``stderr``, ``objective``, ``n_points``,
``derived`` (a, b), ``optima`` (the table of N*, D*, tokens per parameter per budget, with intervals)
and ``method_diagnostics`` (the method's declared diagnostics). ``load_result`` gives the
``FitResult`` back. Fits stored by version 2 are rewritten to this layout when the store opens
(db/store.py MIGRATIONS, ``core.fitting.result.upgrade_stored_v2``).
"""
from __future__ import annotations

import json
from typing import Optional

import pandas as pd
import sqlalchemy as sa

from core.errors import InputError
from core.fitting.result import FitResult
from core.jsonable import jsonable
from db import schema
from db.store import Store

JSON_FIELDS = ("selection", "settings", "params", "intervals", "diagnostics")


def save_fit(store: Store, *, law: str, method: str, target: str, selection: dict, settings: dict,
             params: dict, intervals: dict, diagnostics: dict, name: Optional[str] = None) -> int:
    """Store one fit (one transaction); returns its id."""
    row = {"law": law, "method": method, "target": target, "name": name}
    for key, value in zip(JSON_FIELDS, (selection, settings, params, intervals, diagnostics)):
        row[key] = json.dumps(jsonable(value), allow_nan=False)
    with store.write() as conn:
        return int(conn.execute(sa.insert(schema.fits).values(**row).returning(schema.fits.c.id)).scalar_one())


def save_result(store: Store, result: FitResult, *, selection: dict, target: str, name: Optional[str] = None) -> int:
    """Store a core.fitting ``FitResult`` with the selection that produced it; returns the fit's id."""
    return save_fit(store, target=target, selection=selection, name=name, **result.to_stored())


def load_result(row: dict) -> FitResult:
    """A stored fit (``get_fit`` / a ``list_fits`` row) back as a ``FitResult``."""
    return FitResult.from_stored(row)


def list_fits(store: Store) -> pd.DataFrame:
    """All fits, newest first, with their JSON columns decoded."""
    with store.read() as conn:
        frame = pd.read_sql(sa.select(schema.fits).order_by(schema.fits.c.id.desc()), conn)
    for key in JSON_FIELDS:
        frame[key] = frame[key].map(lambda s: json.loads(s) if s else {})
    return frame


def get_fit(store: Store, fit_id: int) -> dict:
    """One stored fit as a dict with its JSON columns decoded; InputError when there is none."""
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
