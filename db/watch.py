"""Watched folders and what the watcher knows of each file (issue 11 §1): the ``watch_folders`` and
``watch_files`` tables, and the two writes a scan makes, each in one transaction with the file's new
state: append rows to a run (creating it the first time), or replace a run's rows whole.

Plain SQLAlchemy Core on the tables of db/schema.py, so it runs on DuckDB and PostgreSQL alike.
"""
from __future__ import annotations

import json
import time
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd
import sqlalchemy as sa

from core.errors import DuplicateRunError
from core.runs import ParsedRun
from db import schema
from db.runs import stored_tags
from db.store import Store, _metrics_frame, validate_parsed

# Rows of watch_files that the Runs page shows and the watcher reads back.
FILE_COLUMNS = ("path", "folder", "format", "runs", "size", "mtime", "inode", "consumed", "state", "status",
                "error", "n_rows", "updated_at")


# ------------------------------------------------------------------------------ folders
def folders(store: Store) -> list[str]:
    with store.read() as conn:
        return list(conn.execute(sa.select(schema.watch_folders.c.path).order_by(schema.watch_folders.c.path)).scalars())


def add_folder(store: Store, path: str) -> bool:
    """Keep ``path`` among the watched folders; False when it already was."""
    with store.write() as conn:
        if conn.execute(sa.select(schema.watch_folders.c.path).where(schema.watch_folders.c.path == path)).first():
            return False
        conn.execute(sa.insert(schema.watch_folders).values(path=path))
        return True


def remove_folder(store: Store, path: str) -> bool:
    """Stop watching ``path`` (its runs stay in the store; its files' states are forgotten)."""
    with store.write() as conn:
        gone = conn.execute(sa.delete(schema.watch_folders).where(schema.watch_folders.c.path == path)).rowcount
        conn.execute(sa.delete(schema.watch_files).where(schema.watch_files.c.folder == path))
        return bool(gone)


# ------------------------------------------------------------------------------ file states
def file_rows(store: Store, folder: Optional[str] = None) -> dict[str, dict]:
    """path -> the watch_files row (``runs`` and ``state`` decoded from JSON)."""
    stmt = sa.select(schema.watch_files)
    if folder is not None:
        stmt = stmt.where(schema.watch_files.c.folder == folder)
    with store.read() as conn:
        rows = conn.execute(stmt.order_by(schema.watch_files.c.path)).mappings().all()
    return {r["path"]: _decoded(r) for r in rows}


def _decoded(row) -> dict:
    out = dict(row)
    out["runs"] = json.loads(out["runs"] or "[]")
    out["state"] = json.loads(out["state"] or "{}")
    return out


def files_frame(store: Store) -> pd.DataFrame:
    """Every watched file with its status and reason, for the Runs page and the CLI."""
    rows = list(file_rows(store).values())
    cols = ["path", "folder", "format", "runs", "status", "error", "n_rows", "updated_at"]
    frame = pd.DataFrame([{c: r[c] for c in cols} for r in rows], columns=cols)
    frame["runs"] = frame["runs"].map(lambda names: ", ".join(names) if isinstance(names, list) else "")
    return frame


def _write_file_row(conn, row: dict) -> None:
    """Insert or update one watch_files row (portable: delete then insert, inside the caller's transaction)."""
    values = {k: row.get(k) for k in FILE_COLUMNS}
    values["runs"] = json.dumps(list(row.get("runs") or []))
    values["state"] = json.dumps(row.get("state") or {})
    values["updated_at"] = time.time()
    conn.execute(sa.delete(schema.watch_files).where(schema.watch_files.c.path == values["path"]))
    conn.execute(sa.insert(schema.watch_files).values(**values))


class StateMoved(Exception):
    """The file's stored state is no longer the one this scan started from: another watcher on the same
    (PostgreSQL) store stored its new rows first. Nothing was written; the next scan reads on from there."""


def _check_state(conn, path: str, expect) -> None:
    """Raise StateMoved unless the stored (consumed, inode) of ``path`` is ``expect`` (None: no row).
    On PostgreSQL the file's path is locked until the transaction ends, so two watchers take turns.
    The lock is an advisory one on the path, not the row: a first read finds no row to lock
    (SELECT ... FOR UPDATE locks nothing then), and two watchers both stored the file's first rows."""
    f = schema.watch_files
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtextextended(:path, 0))"), {"path": path})
    current = conn.execute(sa.select(f.c.consumed, f.c.inode).where(f.c.path == path)).first()
    if (None if current is None else tuple(current)) != (None if expect is None else tuple(expect)):
        raise StateMoved(path)


def expected_state(row: Optional[dict]):
    """What :func:`store_rows` and :func:`save_file` expect to find stored for a file read from ``row``."""
    return None if row is None else (row.get("consumed"), row.get("inode"))


_ANY = object()


def save_file(store: Store, row: dict, expect=_ANY) -> bool:
    """Record a file's state alone (unchanged rows, a partial line waiting, an error or a vanished file).
    With ``expect`` (see :func:`expected_state`), only if no other watcher moved it meanwhile."""
    try:
        with store.write() as conn:
            if expect is not _ANY:
                _check_state(conn, row["path"], expect)
            _write_file_row(conn, row)
        return True
    except (StateMoved, sa.exc.IntegrityError):
        return False


def save_stats(store: Store, stats: Sequence[tuple[str, int, float]]) -> None:
    """Record new (path, size, mtime) of files whose bytes did not change what is stored (one transaction)."""
    if not stats:
        return
    with store.write() as conn:
        for path, size, mtime in stats:
            conn.execute(sa.update(schema.watch_files).where(schema.watch_files.c.path == path)
                         .values(size=size, mtime=mtime))


def forget_files(store: Store, paths: Iterable[str]) -> None:
    paths = list(paths)
    if paths:
        with store.write() as conn:
            conn.execute(sa.delete(schema.watch_files).where(schema.watch_files.c.path.in_(paths)))


def _owners(conn) -> dict[str, set[str]]:
    """run name -> the watched files that feed it."""
    out: dict[str, set[str]] = {}
    for path, runs in conn.execute(sa.select(schema.watch_files.c.path, schema.watch_files.c.runs)):
        for name in json.loads(runs or "[]"):
            out.setdefault(name, set()).add(path)
    return out


# ------------------------------------------------------------------------------ the scan's writes
def store_rows(store: Store, row: dict, mode: str, parsed: Sequence[ParsedRun],
               replace: Iterable[str] = (), other_rows: Sequence[dict] = (),
               may_share: Callable[[str], bool] = lambda path: False, expect=_ANY) -> list[dict]:
    """Store what one file gave, and its new state ``row``, in ONE transaction.

    ``mode`` "append": each run's points are added to the stored run of that name (created the first
    time). "replace": the runs named in ``replace`` and in ``parsed`` lose all their rows first, so
    the file's runs hold exactly what it holds now. ``other_rows``: states of other files read for a
    replace (the other event files of a TensorBoard run), stored in the same transaction.
    ``row["n_rows"]`` becomes the stored rows of the file's runs. A run name the store holds from elsewhere (an
    upload, another tool) or that another watched file feeds is refused: the file stops, the other run
    is untouched; ``may_share(path)`` names the other files that may feed the same run (the event
    files of one TensorBoard folder, the checkpoints of one Trainer run). ``expect``: the file's stored
    state this read started from (:func:`expected_state`); when another watcher moved it meanwhile,
    StateMoved is raised and nothing is written, so several dashboards may watch one folder.
    Returns per run: name, format, n_metric_rows (total after), added_rows (this write's rows; a
    replace counts the rows it stored minus those it removed).
    """
    for p in parsed:
        validate_parsed(p)
    try:
        return _store_rows(store, row, mode, parsed, replace, other_rows, may_share, expect)
    except sa.exc.IntegrityError as exc:  # another watcher inserted this file's row or run first
        raise StateMoved(row["path"]) from exc


def _store_rows(store, row, mode, parsed, replace, other_rows, may_share, expect) -> list[dict]:
    names = [p.name for p in parsed]
    now = time.time()
    out = []
    with store.write() as conn:
        if expect is not _ANY:
            _check_state(conn, row["path"], expect)
        # the run names first, as an import and a tag edit take them (db/runs.py): one lock order, no deadlock
        store.dialect.lock_run_names(conn, sorted(set(names) | set(replace)))
        runs_t, metrics_t = schema.runs, schema.metrics
        found = conn.execute(sa.select(runs_t.c.name, runs_t.c.id, runs_t.c.last_grew)
                             .where(runs_t.c.name.in_(names))).all()
        stored = {name: run_id for name, run_id, _ in found}
        owners = _owners(conn)
        # A run a watcher made whose files are no longer known (its folder was removed and added again):
        # this file, read from its start, takes it over and replaces its rows.
        adopted = [name for name, _, grew in found if grew is not None and name not in owners]
        for name in names:
            others = sorted(p for p in owners.get(name, ()) if p != row["path"] and not may_share(p))
            if others:
                raise DuplicateRunError(
                    f"The run {name!r} is already fed by the watched file {others[0]}: give one of the two "
                    "files another name or folder, and the watcher reads it at its next scan")
            if name in stored and name not in owners and name not in adopted:
                raise DuplicateRunError(
                    f"A run named {name!r} is already in the store and does not come from a watched file: "
                    "rename or delete that run, or move this file, and the watcher reads it at its next scan")
        before: dict[str, int] = {}
        if adopted:
            counts = _row_counts(conn, [stored[n] for n in adopted])
            before = {n: counts.get(stored[n], 0) for n in adopted}
            conn.execute(sa.delete(metrics_t).where(metrics_t.c.run_id.in_([stored[n] for n in adopted])))
        if mode == "replace":
            doomed = sorted(set(replace) | set(names))
            found = conn.execute(sa.select(runs_t.c.name, runs_t.c.id, runs_t.c.tags)
                                 .where(runs_t.c.name.in_(doomed))).all()
            ids = {name: run_id for name, run_id, _ in found}
            # a run read again whole keeps the tags it has in the store (edited after import, e.g. with
            # `cli.py runs tag`): only a run the file brings for the first time takes the folder's tag
            kept_tags = {name: stored_tags(tags) for name, _, tags in found}
            for p in parsed:
                if p.name in kept_tags:
                    p.tags = list(kept_tags[p.name])
            counts = _row_counts(conn, list(ids.values()))
            before = {n: counts.get(i, 0) for n, i in ids.items()}
            store._delete_runs(conn, list(ids))
            stored = {}
        for p in parsed:
            run_id = stored.get(p.name)
            if run_id is None:
                run_id = store.ingest_into(conn, [p], on_duplicate="error")[0]["id"]
                added = len(p.metrics)
            else:
                added = store.bulk_insert(conn, metrics_t, _metrics_frame(p.metrics, run_id))
                _follow_sizes(conn, run_id)
            conn.execute(sa.update(runs_t).where(runs_t.c.id == run_id).values(last_grew=now))
            total = _row_counts(conn, [run_id]).get(run_id, 0)
            out.append({"name": p.name, "format": p.source_format, "n_metric_rows": total,
                        "added_rows": added - before.get(p.name, 0)})
        _write_file_row(conn, dict(row, n_rows=sum(r["n_metric_rows"] for r in out)))
        for other in other_rows:
            _write_file_row(conn, other)
    return out


def _row_counts(conn, run_ids: list[int]) -> dict[int, int]:
    if not run_ids:
        return {}
    m = schema.metrics
    stmt = sa.select(m.c.run_id, sa.func.count()).where(m.c.run_id.in_(run_ids)).group_by(m.c.run_id)
    return {int(i): int(n) for i, n in conn.execute(stmt)}


def _follow_sizes(conn, run_id: int) -> None:
    """After an append: the new points get the tokens and FLOPs the run's sizes imply (as at import),
    and the run's own tokens/FLOPs follow its last point (a live run's D and C grow with it)."""
    runs_t, m = schema.runs, schema.metrics
    run = conn.execute(sa.select(runs_t).where(runs_t.c.id == run_id)).mappings().one()
    n_active = run["n_active_params"] or (run["n_params"] if run["arch"] == "dense" else None)
    mine = m.c.run_id == run_id
    if run["tokens_per_step"]:
        conn.execute(sa.update(m).where(mine, m.c.tokens.is_(None), m.c.step.is_not(None))
                     .values(tokens=m.c.step * float(run["tokens_per_step"])))
    if n_active:
        conn.execute(sa.update(m).where(mine, m.c.flops.is_(None), m.c.tokens.is_not(None))
                     .values(flops=m.c.tokens * (6.0 * float(n_active))))
    tokens, flops = conn.execute(sa.select(sa.func.max(m.c.tokens), sa.func.max(m.c.flops)).where(mine)).one()
    values = {}
    if tokens is not None:
        values["tokens"] = float(tokens)
        values["flops"] = 6.0 * float(n_active) * float(tokens) if n_active else (
            float(flops) if flops is not None else run["flops"])
    elif flops is not None:
        values["flops"] = float(flops)
    if values:
        conn.execute(sa.update(runs_t).where(runs_t.c.id == run_id).values(**values))


# ------------------------------------------------------------------------------ readers of the page
def live_runs(store: Store) -> pd.DataFrame:
    """Runs a watched file has grown: name and last_grew (Unix time), most recent first."""
    r = schema.runs
    stmt = sa.select(r.c.name, r.c.last_grew).where(r.c.last_grew.is_not(None)).order_by(r.c.last_grew.desc())
    with store.read() as conn:
        return pd.DataFrame(conn.execute(stmt).all(), columns=["name", "last_grew"])


def change_marker(store: Store) -> tuple:
    """A cheap value that changes whenever a run is added, removed or grown, or a watched file's
    status changes: the curve chart reruns only when it differs (two small aggregates)."""
    r, f = schema.runs, schema.watch_files
    with store.read() as conn:
        runs = conn.execute(sa.select(sa.func.count(), sa.func.max(r.c.id), sa.func.max(r.c.last_grew))).one()
        files = conn.execute(sa.select(sa.func.count(), sa.func.max(f.c.updated_at))).one()
    return tuple(runs) + tuple(files)
