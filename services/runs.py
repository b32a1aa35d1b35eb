"""Runs and their metric series: what the Runs page and ``cli.py runs/edit-run/delete-runs/export`` do.

The Store (db/) owns the SQL; this module is the one door pages and commands use to reach it, so a
page never imports db/ (the ``ui-through-services`` contract in ``.importlinter`` enforces it).
"""
from __future__ import annotations

import json
from typing import Iterable, Optional, Sequence

import pandas as pd

from db.store import DUPLICATE_POLICIES, EDITABLE_SIZE_FIELDS, X_AXES, Store, default_url

__all__ = ["DUPLICATE_POLICIES", "EDITABLE_SIZE_FIELDS", "X_AXES", "Store", "default_url", "open_store",
           "list_runs", "update_run", "delete_runs", "metric_names", "metrics", "curves", "export_metrics",
           "store_version", "check_reachable"]


def open_store(url: Optional[str] = None) -> Store:
    """The Store at ``url``, else $SCALESCOPE_DB_URL, else the default DuckDB file."""
    return Store(url) if url else Store()


def check_reachable(store: Store) -> None:
    """Raise StoreError, one line with the password masked, when the store's database server cannot
    be reached now (a team store's PostgreSQL server stopped); nothing for a DuckDB file."""
    store.ping()


def store_version(store: Store) -> tuple:
    """A cheap value that changes whenever the stored data does (``Store.version``): the pages'
    query caches are keyed on it, so a widget change reuses results and any write refreshes them."""
    return store.version()


def list_runs(store: Store) -> pd.DataFrame:
    """Every run with its sizes and number of metric rows (one row per run)."""
    return store.runs()


def update_run(store: Store, name: str, **sizes) -> dict:
    """Edit a run's sizes; derived tokens/FLOPs follow (see ``Store.update_run``)."""
    return store.update_run(name, **sizes)


def delete_runs(store: Store, names: Iterable[str]) -> int:
    return store.delete_runs(names)


def metric_names(store: Store, run_names: Optional[Iterable[str]] = None) -> list[str]:
    return store.metric_names(run_names)


def metrics(store: Store, run_names: Iterable[str], metric: Optional[str] = None) -> pd.DataFrame:
    return store.metrics(run_names, metric)


def curves(store: Store, run_names: Sequence[str], metric: str, x: str = "step", max_points: int = 2000,
           log_x: bool = False) -> pd.DataFrame:
    """Downsampled curves, computed inside the database (see ``Store.curves``)."""
    return store.curves(run_names, metric, x=x, max_points=max_points, log_x=log_x)


def export_metrics(store: Store, run_names: Sequence[str], out: str, fmt: str) -> int:
    return store.export_metrics(run_names, out, fmt)


def run_tags(tags_json) -> list:
    """A stored run's tags (the runs table keeps them as JSON text); [] when none or unreadable."""
    try:
        return list(json.loads(tags_json or "[]"))
    except (TypeError, ValueError):
        return []
