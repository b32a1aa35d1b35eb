"""Runs and their metric series: what the Runs page and ``cli.py runs/runs tag/edit-run/delete-runs/export`` do.

The Store (db/) owns the SQL; this module is the one door pages and commands use to reach it, so a
page never imports db/ (the ``ui-through-services`` contract in ``.importlinter`` enforces it).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import pandas as pd

from core.errors import InputError
from db.runs import TagEdit, edit_run_tags, stored_tags
from db.store import DUPLICATE_POLICIES, EDITABLE_SIZE_FIELDS, X_AXES, Store, default_url
from services.ingest import check_tag

__all__ = ["DUPLICATE_POLICIES", "EDITABLE_SIZE_FIELDS", "X_AXES", "Store", "default_url", "open_store",
           "list_runs", "update_run", "delete_runs", "metric_names", "metrics", "curves", "export_metrics",
           "store_version", "check_reachable", "run_tags", "retag_runs", "set_run_tags", "tags_from_text"]


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
    return stored_tags(tags_json)


# ---------------------------------------------------------------- tags after import
def _valid_tag(tag) -> str:
    """``tag`` trimmed, under the rules an import's tag follows (services.ingest.check_tag: at most
    MAX_TAG_CHARS characters, no control character), and not blank (an import would fall back to the
    file's name; here there is nothing to fall back to)."""
    if not isinstance(tag, str) or not tag.strip():
        raise InputError("A tag is empty: give every tag at least one visible character.")
    return check_tag(tag, ())


def _valid_tags(tags: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(_valid_tag(t) for t in tags))


def _edit_tags(store: Store, edits: Mapping[str, TagEdit]) -> list[dict]:
    """One write transaction: the edits land together, or (an unknown run) none of them."""
    if not edits:
        return []
    with store.write() as conn:
        return edit_run_tags(conn, edits)


def retag_runs(store: Store, names: Iterable[str], add: Iterable[str] = (), remove: Iterable[str] = (),
               set_to: Optional[Iterable[str]] = None) -> list[dict]:
    """Give the named runs (datasets, as the Runs, Fits and Evals pages select them) other tags, in one
    transaction: replace them all by ``set_to`` (when given), then add ``add``, then remove ``remove``.

    Every tag follows the rules of an import's tag (``check_tag``); an unknown run name, an empty tag,
    no name, nothing to do, or a tag both added and removed is an InputError and nothing changes.
    Returns, per run in the order named: name, before, after (tag lists) and changed."""
    names = list(dict.fromkeys(names))
    if not names:
        raise InputError("No run given: name the runs whose tags to change.")
    add, remove = _valid_tags(add), _valid_tags(remove)
    set_to = None if set_to is None else _valid_tags(set_to)
    if set_to is None and not add and not remove:
        raise InputError("Nothing to change: give a tag to add, remove or set.")
    both = [t for t in add if t in remove]
    if both:
        raise InputError(f"The tag {both[0]!r} is both added and removed: give it once.")
    edit = TagEdit(set_to=set_to, add=add, remove=remove)
    return _edit_tags(store, {n: edit for n in names})


def tags_from_text(text: Optional[str]) -> list[str]:
    """The tags of a comma-separated list as the Runs table shows them ("demo, sweep-2"), each checked
    like an import's tag; a blank text is no tag, an empty item between commas is refused."""
    if text is None or not str(text).strip():
        return []
    items = str(text).split(",")
    if any(not t.strip() for t in items):
        raise InputError("A tag in the list is empty (two commas in a row, or one at an end): separate "
                         "tags with single commas.")
    return _valid_tags(items)


def set_run_tags(store: Store, tags_of: Mapping[str, Iterable[str]]) -> list[dict]:
    """Replace the tags of each named run by its own list, all in one transaction (the Runs table's
    edits); checked and refused as :func:`retag_runs` does. Returns what :func:`retag_runs` returns."""
    return _edit_tags(store, {name: TagEdit(set_to=_valid_tags(tags)) for name, tags in tags_of.items()})
