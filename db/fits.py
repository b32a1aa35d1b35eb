"""Stored fits: every fitted law with its exact selection, target, settings, parameters,
intervals and diagnostics, so re-running it reproduces the numbers (db/fit_data.refit).

A fit from core/fit (a ``FitResult``) is stored by ``save_result``: ``params`` keeps the law's
parameters (Chinchilla: E, A, B, alpha, beta), ``intervals`` their 95% bootstrap intervals (and the
derived quantities'), and ``diagnostics`` everything else the result carries — ``bootstrap_samples``
(rows in the order of ``param_names``, which the planner reads for its bands), ``stderr``,
``objective``, ``n_points``, ``derived``, ``warnings``, residuals and optimiser statistics.
``load_result`` gives the ``FitResult`` back.
"""
from __future__ import annotations

import json
from typing import Optional

import pandas as pd
import sqlalchemy as sa

from core.errors import InputError
from core.fit import FitResult
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


# FitResult fields kept inside ``diagnostics`` (besides the result's own diagnostics).
RESULT_FIELDS = ("stderr", "objective", "n_points", "bootstrap_samples", "derived", "param_names")


def save_result(store: Store, result: FitResult, *, selection: dict, target: str, name: Optional[str] = None) -> int:
    """Store a core.fit ``FitResult`` with the selection that produced it; returns the fit's id."""
    d = result.to_dict()
    diagnostics = dict(d["diagnostics"])
    diagnostics.update({k: d[k] for k in RESULT_FIELDS})
    return save_fit(store, law=d["law"], method=d["method"], target=target, selection=selection,
                    settings=d["settings"], params=d["params"], intervals=d["intervals"],
                    diagnostics=diagnostics, name=name)


def load_result(row: dict) -> FitResult:
    """A stored fit (``get_fit`` / a ``list_fits`` row) back as a ``FitResult``."""
    diagnostics = dict(row.get("diagnostics") or {})
    kept = {k: diagnostics.pop(k, None) for k in RESULT_FIELDS}
    return FitResult.from_dict({
        "law": row["law"], "method": row["method"], "params": row.get("params") or {},
        "intervals": row.get("intervals") or {}, "settings": row.get("settings") or {}, "diagnostics": diagnostics,
        "stderr": kept["stderr"], "objective": kept["objective"], "n_points": kept["n_points"] or 0,
        "bootstrap_samples": kept["bootstrap_samples"], "derived": kept["derived"], "param_names": kept["param_names"],
    })


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


def _jsonable(obj):
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot store {type(obj).__name__} in a fit")
