"""Watched folders (issue 11 §1): logs of live runs land in the store while they are written.

A :class:`Watcher` scans its folders every few seconds (``SCALESCOPE_WATCH_INTERVAL``, default
1.5 s) in a background thread of the dashboard (or in ``cli.py watch``). The cost of a scan is
bounded: a file whose size and mtime are what the last scan stored is only stat'ed; a changed file
is read from where the last read stopped (importers/incremental.py) and what it adds is stored in
one transaction with its new state (db/watch.py), so a rescan never stores a row twice and a new
process resumes where the last one stopped.

Faults stay local: a file that breaks an import rule, cannot be read, or is not a regular file
stops with its reason kept beside it (``watch_files.error``); a folder that disappears or cannot be
listed is reported; the other files and folders go on, and nothing is half-imported.

The store itself may go away (a team store's PostgreSQL server stopped or out of reach): the scan
under way stops, :meth:`Watcher.try_scan` (the thread, ``cli.py watch``) reports it in one line and
the watcher retries every interval. Each file's rows are committed with its new state, so the first
scan after the server is back reads on from the state the store holds: nothing is lost or stored twice.

One scan reads at most ``SCALESCOPE_WATCH_MAX_BYTES`` (default importers.incremental.MAX_READ_BYTES)
of one file; a file with more to read is "catching up" and the next scans, which follow at once, go on.

The inbox: ``cli.py ingest`` on a DuckDB file held by a running dashboard (one writer process per
file) copies its files into a batch folder of the store's inbox (``<store>.inbox/`` beside the
file), which every Watcher on that store imports and then removes.
"""
from __future__ import annotations

import atexit
import json
import math
import os
import shutil
import stat
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import pandas as pd

from core.errors import InputError, ScaleScopeError, StoreError
from core.format import duration
from db import watch as watch_db
from db.dialects import scrub
from db.store import Store
from importers import hf_trainer, lightning, tensorboard_events
from importers.base import ParsedRun
from importers.derive import concat_metrics
from importers.incremental import (MAX_READ_BYTES, SETTLE_S, Read, is_watchable, read_file, state_from_json,
                                   state_to_json)
from services.ingest import check_tag, default_tag, ingest_paths, tag_runs

WATCH_ENV = "SCALESCOPE_WATCH"              # dir1:dir2 (os.pathsep-separated), watched by the dashboard
INTERVAL_ENV = "SCALESCOPE_WATCH_INTERVAL"  # seconds between scans
# 1.5 s: an append lands within interval + its read (~0.1 s for 10,000 rows), under the 2 s target;
# a scan of 1,000 unchanged files costs ~45 ms, so the watcher takes ~3% of one core.
DEFAULT_INTERVAL_S = 1.5
MAX_BYTES_ENV = "SCALESCOPE_WATCH_MAX_BYTES"  # the most bytes of one file read per scan
CATCHING_UP = "catching up"  # a file's status while more than one scan's cap is left to read
# Between the scans of a file that is catching up: no full interval (a 1 GiB file is 64 pieces), only a
# breath that lets the page's own writes and other watchers take the store between two pieces.
CATCH_UP_PAUSE_S = 0.1
LIVE_S = 120.0            # a run that grew within this many seconds is shown as live
MANIFEST = "manifest.json"  # written last into an inbox batch: the batch is complete

__all__ = ["Watcher", "ScanReport", "folders_from_env", "interval_from_env", "inbox_of", "hand_to_inbox",
           "add_folder", "remove_folder", "stored_folders", "files_frame", "live_runs",
           "change_marker", "LIVE_S", "max_bytes_from_env", "check_max_bytes"]


def folders_from_env() -> list[str]:
    raw = os.environ.get(WATCH_ENV, "").strip()
    return [p for p in raw.split(os.pathsep) if p.strip()] if raw else []


def _env_number(name: str, unit: str, example) -> Optional[float]:
    """The number in $``name``; None when it is unset or empty."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # nan, inf, 1e400: no interval or cap to wait for or read
        raise InputError(f"{name}={raw!r} is not a number of {unit}; set it to e.g. {example}")
    return value


def interval_from_env(default: float = DEFAULT_INTERVAL_S) -> float:
    value = _env_number(INTERVAL_ENV, "seconds", 2)
    if value is None:
        return default
    if not value > 0:
        raw = os.environ[INTERVAL_ENV].strip()
        raise InputError(f"{INTERVAL_ENV} must be a positive number of seconds, not {raw!r}")
    return value


def check_interval(value, what: str = "--interval") -> float:
    """A scan interval in seconds: finite and ≥ 0 (0: scan again at once; InputError naming ``what``
    otherwise, e.g. inf, which would never scan again)."""
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise InputError(f"{what} must be a number of seconds ≥ 0, not {value:g}; the default is "
                         f"{DEFAULT_INTERVAL_S:g}")
    return value


def max_bytes_from_env(default: int = MAX_READ_BYTES) -> int:
    value = _env_number(MAX_BYTES_ENV, "bytes", MAX_READ_BYTES)
    return default if value is None else check_max_bytes(int(value), MAX_BYTES_ENV)


def check_max_bytes(value: int, what: str = "--max-bytes") -> int:
    if value < 1024:  # below a few lines a piece is all overhead
        raise InputError(f"{what} must be at least 1024 bytes, not {value}; the default is {MAX_READ_BYTES}")
    return int(value)


def _norm(path: str | os.PathLike) -> str:
    return os.path.abspath(os.path.expanduser(os.fspath(path)))


def check_folder(path: str | os.PathLike) -> str:
    """The absolute path of a folder to watch, or InputError when it is not a folder."""
    if not str(path).strip():
        raise InputError("Give the folder to watch, e.g. /data/runs/exp1.")
    folder = _norm(path)
    if not os.path.isdir(folder):
        raise InputError(f"{folder} is not a folder (it does not exist, or is a file): give a folder of training logs.")
    return folder


# ------------------------------------------------------------------------ folders kept in the store
def add_folder(store: Store, path: str) -> str:
    """Keep a folder among the store's watched folders (the Runs page's panel). Returns its absolute path."""
    folder = check_folder(path)
    watch_db.add_folder(store, folder)
    return folder


def remove_folder(store: Store, path: str) -> bool:
    return watch_db.remove_folder(store, _norm(path))


def stored_folders(store: Store) -> list[str]:
    return watch_db.folders(store)


def files_frame(store: Store) -> pd.DataFrame:
    return watch_db.files_frame(store)


def live_runs(store: Store) -> pd.DataFrame:
    return watch_db.live_runs(store)


def change_marker(store: Store) -> tuple:
    return watch_db.change_marker(store)


# ------------------------------------------------------------------------ the inbox
def inbox_of(store: Store | str) -> Optional[Path]:
    """The inbox folder of a DuckDB store (``data/scalescope.inbox/`` for ``data/scalescope.duckdb``)."""
    url = store if isinstance(store, str) else store.url
    prefix = "duckdb:///"
    if not url.startswith(prefix):
        return None  # a server store takes writers at once: no hand-over needed
    path = Path(url[len(prefix):].split("?", 1)[0])
    return path.with_name(path.stem + ".inbox")


def hand_to_inbox(url: str, paths: Sequence[str | os.PathLike], fmt: Optional[str] = None,
                  on_duplicate: str = "error", tag: Optional[str] = None) -> Path:
    """Copy files or folders into a new batch of the store's inbox; returns the batch folder.

    The manifest is written last (atomically), so a watcher never imports a half-copied batch."""
    inbox = inbox_of(url)
    if inbox is None:
        raise StoreError(f"{url} is not a DuckDB file: it has no inbox.")
    sources = [Path(p) for p in paths]
    for p in sources:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; check the path")
    batch = inbox / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    (batch / "files").mkdir(parents=True)
    names = []
    for i, p in enumerate(sources):
        target = batch / "files" / (p.name if p.name not in names else f"{i}-{p.name}")
        (shutil.copytree if p.is_dir() else shutil.copy2)(p, target)
        names.append(target.name)
    tmp = batch / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps({"files": names, "format": fmt, "on_duplicate": on_duplicate,
                               "tag": check_tag(tag, sources)}))  # the tag of the paths as given
    os.replace(tmp, batch / MANIFEST)
    return batch


# ------------------------------------------------------------------------ scanning
@dataclass
class ScanReport:
    """What one scan did: the runs it grew (name, format, n_metric_rows, added_rows), the files
    it stopped (path -> reason), folder problems (folder -> reason), inbox batches imported/refused,
    the files read up to the byte cap that have more (path, consumed, size), and ``store_error``: the
    scan stopped as a whole because the store cannot be reached (one line; the watcher retries)."""
    runs: list[dict] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    folders: dict[str, str] = field(default_factory=dict)
    inbox: list[dict] = field(default_factory=list)
    catching_up: list[dict] = field(default_factory=list)
    store_error: Optional[str] = None
    files_seen: int = 0
    files_read: int = 0
    seconds: float = 0.0


def _run_name(folder: str, rel: str) -> str:
    """The run a file feeds, named as ``cli.py ingest FOLDER`` names it: event files, trainer_state.json
    (checkpoints of one run share its folder) and metrics.csv by their folder, tables by their path."""
    rel = rel.replace(os.sep, "/")
    base = os.path.basename(rel)
    root = os.path.basename(folder.rstrip("/")) or folder
    if tensorboard_events.is_tfevents_name(base) or base == lightning.METRICS_FILE:
        return os.path.dirname(rel) or root
    if base == hf_trainer.STATE_FILE:
        return hf_trainer.run_dir_of(rel) or root
    stem, ext = os.path.splitext(rel)
    return stem if stem and ext else rel


def _sharers(path: str, fmt: Optional[str]) -> Callable[[str], bool]:
    """Which other files may feed the run ``path`` feeds: the event files of its folder (a restarted
    job writes a new one), the trainer_state.json files of its run's checkpoints; for tables, none."""
    if fmt == "tensorboard":
        folder = os.path.dirname(path)
        return lambda other: os.path.dirname(other) == folder and tensorboard_events.is_tfevents_name(other)
    if fmt == "hf_trainer":
        run_dir = hf_trainer.run_dir_of(path)  # checkpoint-N/ folders belong to their parent's run
        return lambda other: os.path.basename(other) == hf_trainer.STATE_FILE and hf_trainer.run_dir_of(other) == run_dir
    return lambda other: False


# Every watcher whose thread was started in this process, stopped at exit: Python ends a daemon thread
# that is still inside a DuckDB or psycopg call while the interpreter finalizes by unwinding it through
# C++ frames, which aborts the whole process ("FATAL: exception not rethrown", exit status 134).
_STARTED: "weakref.WeakSet[Watcher]" = weakref.WeakSet()
EXIT_JOIN_S = 10.0  # at exit, how long the running scans may take to finish, all watchers together


@atexit.register
def _stop_all_at_exit() -> None:
    """Runs after the non-daemon threads are joined and before the interpreter finalizes."""
    watchers = list(_STARTED)
    for watcher in watchers:
        watcher._stop.set()
    deadline = time.monotonic() + EXIT_JOIN_S
    for watcher in watchers:
        watcher.stop(timeout=max(0.0, deadline - time.monotonic()))


class Watcher:
    """Scans watched folders into a store. ``folders``: this process's folders (``--watch``,
    $SCALESCOPE_WATCH); the store's own list (the Runs page's panel) and its inbox are always added."""

    def __init__(self, store: Store, folders: Iterable[str] = (), interval: Optional[float] = None,
                 settle_s: float = SETTLE_S, inbox: bool = True, max_bytes: Optional[int] = None):
        self.store = store
        self.folders = [_norm(f) for f in folders]
        self.interval = interval_from_env() if interval is None else check_interval(interval)
        self.max_bytes = max_bytes_from_env() if max_bytes is None else check_max_bytes(max_bytes)
        self.settle_s = settle_s
        self.inbox = inbox_of(store) if inbox else None
        self.folder_errors: dict[str, str] = {}   # the last scan's folder problems, shown by the page
        self.inbox_log: list[dict] = []           # recent inbox batches: name, status, message
        self.last_report: Optional[ScanReport] = None
        self.last_error: Optional[str] = None     # a scan that failed as a whole (the store went away)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._scan_lock = threading.Lock()

    # -------------------------------------------------------------- the thread
    def start(self) -> "Watcher":
        """Scan in a daemon thread every ``interval`` seconds until :meth:`stop`."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="scalescope-watcher", daemon=True)
            self._thread.start()
            _STARTED.add(self)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _store_gone(self) -> bool:
        """A DuckDB store whose file was removed (a test's temporary store): the thread ends."""
        return self.inbox is not None and not self.inbox.parent.is_dir()

    def _loop(self) -> None:
        while not self._stop.is_set() and not self._store_gone():
            report = self.try_scan()
            self._stop.wait(CATCH_UP_PAUSE_S if report.catching_up else self.interval)

    def all_folders(self) -> list[str]:
        return list(dict.fromkeys(self.folders + watch_db.folders(self.store)))

    # -------------------------------------------------------------- one scan
    def try_scan(self) -> ScanReport:
        """:meth:`scan`, never raising (the thread and ``cli.py watch`` call this): a scan that fails as a
        whole (the store cannot be reached: its server stopped, the network went) returns a report whose
        ``store_error`` (also ``last_error``) is one line saying why and that the watcher retries.
        Each file's rows went in with its new state in one transaction, so the next scan reads on from
        the state the store holds: nothing the failed scan read is lost or stored twice."""
        retry = f"The watcher retries every {duration(self.interval)} and goes on from the state the store holds."
        try:
            report = self.scan()
        except ScaleScopeError as exc:  # the store's own one-line message (the URL's password masked)
            report = ScanReport(store_error=scrub(f"{exc} {retry}", self.store.url))
        except Exception as exc:  # never let the thread die: the next scan may succeed
            report = ScanReport(store_error=scrub(f"The watcher's scan failed ({type(exc).__name__}: "
                                                  f"{' '.join(str(exc).split())}). {retry}", self.store.url))
        self.last_error = report.store_error
        return report

    def scan(self) -> ScanReport:
        """Scan every folder once; returns what it did. Safe to call from any thread (one at a time)."""
        with self._scan_lock:
            t0 = time.perf_counter()
            report = ScanReport()
            if self.inbox is not None:
                self._scan_inbox(report)
            rows = watch_db.file_rows(self.store)
            touched: list[tuple[str, int, float]] = []
            for folder in self.all_folders():
                self._scan_folder(folder, rows, report, touched)
            watch_db.save_stats(self.store, touched)
            self.folder_errors = dict(report.folders)
            report.seconds = time.perf_counter() - t0
            self.last_report = report
            return report

    def _scan_folder(self, folder: str, rows: dict, report: ScanReport, touched: list) -> None:
        try:
            found = _list_files(folder)
        except OSError as exc:
            reason = (f"the folder {folder} does not exist (any more): its runs stay in the store; "
                      "remove it from the watched folders or create it again"
                      if isinstance(exc, FileNotFoundError) else
                      f"cannot list the folder {folder} ({exc.strerror or exc}): check its permissions")
            report.folders[folder] = reason
            for path, row in rows.items():
                if row["folder"] == folder and row["status"] != "gone":
                    self._save(dict(row, status="gone", error=reason), row)
            return
        seen = set()
        for path, rel, st in found:
            seen.add(path)
            report.files_seen += 1
            row = rows.get(path)
            if row is not None and row["size"] == st.st_size and row["mtime"] == st.st_mtime and row["status"] != "gone":
                if row["status"] == "waiting" and time.time() - st.st_mtime >= self.settle_s:
                    pass  # a last line without newline: read it now that the file has settled
                elif row["status"] == CATCHING_UP:
                    pass  # the last read stopped at the byte cap: read the next piece
                else:
                    continue  # unchanged: stat only
            report.files_read += 1
            self._scan_file(folder, path, rel, st, row, report, touched)
        for path, row in rows.items():
            if row["folder"] == folder and path not in seen and row["status"] != "gone":
                self._save(dict(row, status="gone", error="the file was deleted or moved; its rows stay in the store"), row)

    def _scan_file(self, folder: str, path: str, rel: str, st: os.stat_result, row: Optional[dict],
                   report: ScanReport, touched: list) -> None:
        what = rel.replace(os.sep, "/")
        base = dict(row or {}, path=path, folder=folder, size=st.st_size, mtime=st.st_mtime, inode=st.st_ino)
        base.setdefault("runs", [])
        base.setdefault("n_rows", 0)
        if not stat.S_ISREG(st.st_mode):
            self._fail(base, report, f"{what} is not a regular file (a FIFO, socket or device): the watcher "
                                     "reads only files; replace it with the log file itself", row)
            return
        prev = state_from_json(row["state"]) if row else None
        run_name = _run_name(folder, rel)
        others: list[dict] = []
        try:
            read = read_file(path, run_name, what, prev, settle_s=self.settle_s, max_bytes=self.max_bytes)
            if read.mode == "replace" and read.state.fmt == "tensorboard":
                others = self._reread_event_dir(folder, path, run_name, read)
        except InputError as exc:
            self._fail(base, report, str(exc), row)
            return
        except FileNotFoundError:
            self._save(dict(base, status="gone", error="the file was deleted while it was read; its rows stay"), row)
            return
        except OSError as exc:
            self._fail(base, report, f"{what} cannot be read ({exc.strerror or exc}): check its permissions", row)
            return
        state = read.state
        status = _status(state.consumed, st.st_size, read.more)
        more = [{"path": path, "consumed": state.consumed, "size": st.st_size}] if status == CATCHING_UP else []
        new = dict(base, format=state.fmt, consumed=state.consumed, inode=state.inode, state=state_to_json(state),
                   status=status, error=None)
        if read.mode == "nothing" or (read.mode == "append" and not read.runs):
            if row is not None and row["status"] == status and row.get("consumed") == state.consumed \
                    and row.get("error") is None:
                touched.append((path, st.st_size, st.st_mtime))
            else:
                self._save(new, row)
            report.catching_up.extend(more)
            return
        tag_runs(read.runs, default_tag([folder]))  # a new run is tagged with its watched folder's name
        names = [r.name for r in read.runs]
        new["runs"] = list(dict.fromkeys(list(base["runs"]) + names))
        try:
            stored = watch_db.store_rows(self.store, new, read.mode, read.runs,
                                         replace=base["runs"] if read.mode == "replace" else (), other_rows=others,
                                         may_share=_sharers(path, state.fmt), expect=watch_db.expected_state(row))
        except InputError as exc:  # a name taken by a run from elsewhere, or a rule the store checks
            self._fail(base, report, str(exc), row)
            return
        except watch_db.StateMoved:
            return  # another watcher of this store stored it first: the next scan reads on from its state
        report.runs.extend(stored)
        report.catching_up.extend(more)

    def _reread_event_dir(self, folder: str, path: str, run_name: str, read: Read) -> list[dict]:
        """An event file rewritten or truncated: its run is read again whole, from all its event files.
        Returns the other files' new states (stored with the run's rows)."""
        run_dir = os.path.dirname(path)
        frames, others = [r.metrics for r in read.runs], []
        for name in sorted(os.listdir(run_dir)):
            other = os.path.join(run_dir, name)
            if other == path or not tensorboard_events.is_tfevents_name(name) or not os.path.isfile(other):
                continue
            st = os.stat(other)
            piece = read_file(other, run_name, os.path.relpath(other, folder), None, settle_s=self.settle_s,
                              max_bytes=self.max_bytes)
            frames += [r.metrics for r in piece.runs]
            others.append({"path": other, "folder": folder, "format": "tensorboard", "runs": [run_name],
                           "size": st.st_size, "mtime": st.st_mtime, "inode": st.st_ino,
                           "consumed": piece.state.consumed, "state": state_to_json(piece.state),
                           "status": _status(piece.state.consumed, st.st_size, piece.more)})
        if not read.runs and any(len(f) for f in frames):
            read.runs.append(ParsedRun(name=run_name, source_format="tensorboard", source_file=os.path.relpath(path, folder)))
        if read.runs:
            read.runs[0].metrics = concat_metrics(frames)
        return others

    def _fail(self, row: dict, report: ScanReport, reason: str, stored: Optional[dict] = None) -> None:
        report.errors[row["path"]] = reason
        self._save(dict(row, status="error", error=reason), stored)

    def _save(self, row: dict, stored: Optional[dict] = None) -> None:
        """Record a file's row, unless another watcher of the store moved its state since ``stored``
        (the row this scan started from)."""
        row.setdefault("runs", [])
        row.setdefault("status", "ok")
        watch_db.save_file(self.store, row, expect=watch_db.expected_state(stored))

    # -------------------------------------------------------------- inbox
    def _scan_inbox(self, report: ScanReport) -> None:
        if not self.inbox.is_dir():
            return
        batches = [p for p in self.inbox.iterdir() if p.is_dir() and not p.name.endswith(".failed")]
        for batch in sorted(b for b in batches if (b / MANIFEST).is_file()):
            try:
                manifest = json.loads((batch / MANIFEST).read_text())
                files = [batch / "files" / n for n in manifest["files"]]
                added = ingest_paths(self.store, files, fmt=manifest.get("format"),
                                     on_duplicate=manifest.get("on_duplicate") or "error", tag=manifest.get("tag"))
                entry = {"batch": batch.name, "status": "imported", "runs": [a["name"] for a in added],
                         "message": f"imported {len(added)} run(s)"}
                shutil.rmtree(batch, ignore_errors=True)
            except (ScaleScopeError, OSError, ValueError, KeyError) as exc:
                message = str(exc) if isinstance(exc, ScaleScopeError) else f"unreadable batch ({exc})"
                entry = {"batch": batch.name, "status": "refused", "runs": [], "message": message}
                failed = batch.with_name(batch.name + ".failed")
                try:
                    (batch / "error.txt").write_text(message + "\n")
                    os.replace(batch, failed)
                except OSError:
                    shutil.rmtree(batch, ignore_errors=True)
            report.inbox.append(entry)
            self.inbox_log = (self.inbox_log + [entry])[-20:]


def _status(consumed: int, size: int, more: bool) -> str:
    """ok: read to its end; catching up: the read stopped at the byte cap; waiting: a partial line or record."""
    if consumed >= size:
        return "ok"
    return CATCHING_UP if more else "waiting"


def _list_files(folder: str) -> list[tuple[str, str, os.stat_result]]:
    """(path, path relative to ``folder``, stat) of the files the watcher reads below ``folder``;
    hidden files and folders skipped, symlinked folders not followed (as importers.detect.list_files).
    Raises OSError when ``folder`` itself cannot be listed."""
    out = []
    if not os.path.isdir(folder):
        raise FileNotFoundError(folder)
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            if current == folder:
                raise
            continue  # a sub-folder that vanished or is unreadable: its files show as gone
        for entry in sorted(entries, key=lambda e: e.name, reverse=True):
            if entry.name.startswith(".") or entry.name == "__MACOSX":
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    continue
                if not is_watchable(entry.name):
                    continue
                st = entry.stat()
            except OSError:
                continue  # deleted between listing and stat
            out.append((entry.path, os.path.relpath(entry.path, folder), st))
    return out


def watch_once(store: Store, folders: Iterable[str], settle_s: float = SETTLE_S,
               max_bytes: Optional[int] = None) -> ScanReport:
    """One scan of ``folders`` (and the store's own list and inbox): ``cli.py watch --once``. Raises
    StoreError when the store cannot be reached (one scan: nothing to retry)."""
    return Watcher(store, folders, interval=1.0, settle_s=settle_s, max_bytes=max_bytes).scan()


def run_forever(store: Store, folders: Iterable[str], interval: Optional[float] = None,
                on_report: Optional[Callable[[ScanReport], None]] = None, max_bytes: Optional[int] = None) -> None:
    """Scan every ``interval`` seconds in this thread until interrupted (``cli.py watch``); a store that
    cannot be reached is retried at each interval (``report.store_error``), never fatal."""
    watcher = Watcher(store, folders, interval=interval, max_bytes=max_bytes)
    while True:
        report = watcher.try_scan()
        if on_report is not None:
            on_report(report)
        time.sleep(CATCH_UP_PAUSE_S if report.catching_up else watcher.interval)
