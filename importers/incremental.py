"""Incremental, idempotent reads of log files that are still being written (watched folders, issue 11 §1).

The watcher (services/watch.py) keeps a :class:`FileState` per file (stored in the ``watch_files``
table, so a new process resumes where the last one stopped) and asks :func:`read_file` what is new:

- ``append``: the points after the last read. TensorBoard: the records after the last complete one
  (the TFRecord framing is walked from the stored byte offset; a record still being written waits).
  CSV/TSV/JSONL and Lightning ``metrics.csv``: the lines after the last complete line, read with the
  header kept in the state; a half-written last line waits for the next scan (or is read once the
  file has not changed for ``settle_s``: a finished file whose last line lacks its newline).
- ``replace``: the file's runs, read whole. Whole documents (``trainer_state.json``, rewritten at each
  checkpoint; a JSON array; a run-summary table) are always read whole; so is a file that was
  rewritten from scratch (a new inode, its first line or the bytes before the offset changed) or
  truncated.
- ``nothing``: unchanged, or only a partial line or record so far.

One read takes at most ``max_bytes`` (:data:`MAX_READ_BYTES` by default) of new bytes, ending at the
last complete line or TFRecord inside them; the rest waits for the next scan (``Read.more``), so a
multi-GB append, or a big file dropped into a folder, is stored in pieces of bounded memory and write
time. A TFRecord longer than the cap is read whole (its length is in its header: such a record, e.g. an
image summary, is legitimate; one over the upload size limit stops the file); a text line longer than
the cap stops the file (no metrics log has one).
Whole documents (``trainer_state.json``, a JSON array, a run-summary table) cannot be read in pieces:
the cap does not apply to them; the upload size limit (``SCALESCOPE_MAX_UPLOAD_BYTES``) does, and to
them only: a log read in capped pieces may grow past it (a long run's event file or CSV).

Every piece goes through the same parsers, and therefore the same input rules (core/validation.py,
importers/safety.py), as a whole-file import. A piece that breaks a rule raises InputError: the
watcher stops that file and shows the reason. Nothing here touches the database.
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from core.errors import InputError
from importers import hf_trainer, lightning, summary, tabular, tensorboard_events
from importers.base import ParsedRun
from importers.derive import WALL_ORIGINS, check_unique_names, finish_run, metrics_frame
from importers.detect import TABULAR_EXTS, detect_format
from importers.safety import check_file_size, check_size, human_bytes, resolve_max_bytes

# Formats whose rows are read as appended lines; the others are read whole at each change.
APPENDABLE = ("csv_long", "csv_wide", "wandb_export", "wandb_history", "lightning")
# Bytes before the offset that must be unchanged for an append (else the file was rewritten).
TAIL_BYTES = 64
# A last line without its newline is read once the file has been still this long (seconds).
SETTLE_S = 30.0
# At most this many new bytes of one file are read per scan. Measured (DuckDB, 2 cores): a 16 MiB wide
# CSV (step + 4 metrics) is 1.7M metric rows, read and stored in ~1 s with ~0.5 GB of peak memory;
# 64 MiB took 6 s and 1.5 GB. A scan stays near the watch interval, and the write it holds stays short.
MAX_READ_BYTES = 16 << 20
_HEADER = 12  # TFRecord: uint64 length + masked CRC-32C of the length


@dataclass
class FileState:
    """What the watcher remembers of one file between scans."""
    consumed: int = 0                 # bytes read: complete lines / records
    inode: Optional[int] = None       # a new inode means the file was replaced
    fmt: Optional[str] = None         # importer key, once detected
    extra: dict = field(default_factory=dict)  # header line, fingerprints, wall-time origins by run


@dataclass
class Read:
    mode: str                         # "append" | "replace" | "nothing"
    runs: list[ParsedRun]
    state: FileState
    rewritten: bool = False           # read again from byte 0 after a rewrite or truncation
    more: bool = False                # stopped at the byte cap: complete lines or records follow


def is_watchable(name: str) -> bool:
    """A file the watcher reads: an event file, a trainer_state.json, or a table (CSV/TSV/JSONL)."""
    return (tensorboard_events.is_tfevents_name(name) or name == hf_trainer.STATE_FILE
            or name.lower().endswith(TABULAR_EXTS))


def read_file(path: str, run_name: str, what: str, prev: Optional[FileState] = None,
              settle_s: float = SETTLE_S, max_bytes: int = MAX_READ_BYTES) -> Read:
    """What is new in ``path`` since ``prev`` (None: never read). ``run_name`` names a run the file
    does not name itself; ``what`` is the file as the user knows it (messages, ``source_file``).
    ``max_bytes``: the most new bytes read this time (lines and records; see the module's docstring).

    Raises InputError for a file that breaks an import rule, OSError when it cannot be read.
    """
    st = os.stat(path)
    if st.st_size == 0:  # just created: nothing written yet
        return Read("nothing", [], prev or FileState(inode=st.st_ino))
    base = os.path.basename(path)
    if tensorboard_events.is_tfevents_name(base):
        return _read_tfevents(path, st, run_name, what, prev, max_bytes)
    if base == hf_trainer.STATE_FILE:
        return _read_whole(path, st, prev, what, "hf_trainer",
                           lambda: _parse_path(path, "hf_trainer", run_name, what, path))
    return _read_table(path, st, run_name, what, prev, settle_s, max_bytes)


# --------------------------------------------------------------------------------------- helpers
def _digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=12).hexdigest()


def _read_range(path: str, start: int, end: int) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(start)
        return fh.read(max(0, end - start))


def _rewritten(path: str, st: os.stat_result, prev: FileState) -> bool:
    """True when the file is not ``prev``'s file grown at its end: replaced, truncated, or changed before the offset."""
    if prev.inode is not None and st.st_ino != prev.inode:
        return True
    if st.st_size < prev.consumed:
        return True
    header = (prev.extra.get("header") or "").encode("utf-8")
    if header and _read_range(path, 0, len(header)) != header:
        return True  # a new first line: e.g. Lightning's CSVLogger rewrites the file when a metric is new
    tail = prev.extra.get("tail")
    if tail is not None and prev.consumed:
        return _digest(_read_range(path, max(0, prev.consumed - TAIL_BYTES), prev.consumed)) != tail
    return False


def _state(st: os.stat_result, path: str, consumed: int, fmt: str, extra: dict) -> FileState:
    extra = dict(extra, tail=_digest(_read_range(path, max(0, consumed - TAIL_BYTES), consumed)) if consumed else None)
    return FileState(consumed=consumed, inode=st.st_ino, fmt=fmt, extra=extra)


@contextmanager
def _wall_origins(extra: dict):
    """Wall times of every piece measured from the run's first point (kept in the state)."""
    origins = extra.setdefault("wall_origins", {})
    token = WALL_ORIGINS.set(origins)
    try:
        yield
    finally:
        WALL_ORIGINS.reset(token)


def _read_whole(path: str, st: os.stat_result, prev: Optional[FileState], what: str, fmt: str, parse) -> Read:
    if prev is not None and prev.consumed == st.st_size and prev.inode == st.st_ino and not _rewritten(path, st, prev):
        return Read("nothing", [], prev)
    check_file_size(path, what)  # read whole: the upload size limit first, as for every import
    runs = parse()
    return Read("replace", runs, _state(st, path, st.st_size, fmt, {}), rewritten=prev is not None)


# --------------------------------------------------------------------------------------- TensorBoard
def _records(data: bytes, start: int, what: str) -> tuple[list[bytes], int]:
    """Complete records of ``data`` (read from byte ``start``) and the bytes they span; a record cut
    short at the end is left for the next read, a record whose checksum fails is refused."""
    crc = tensorboard_events._masked_crc32c
    out, pos = [], 0
    while pos + _HEADER <= len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        if crc(data[pos:pos + 8]) != length_crc:
            raise InputError(f"{what} is corrupt or not a TensorBoard event file (bad record header at byte "
                             f"{start + pos}); the watcher stopped reading it")
        end = pos + _HEADER + length + 4
        if end > len(data):
            break  # still being written
        body = data[pos + _HEADER:end - 4]
        (body_crc,) = struct.unpack("<I", data[end - 4:end])
        if crc(body) != body_crc:
            raise InputError(f"{what} is corrupt (the record at byte {start + pos} fails its checksum); "
                             "the watcher stopped reading it")
        out.append(body)
        pos = end
    return out, pos


def _events(records: list[bytes]):
    """Event protos through TensorBoard's own read-time compat layers (as its EventFileLoader does)."""
    from tensorboard import data_compat, dataclass_compat
    from tensorboard.compat.proto import event_pb2

    initial_metadata: dict = {}
    for record in records:
        event = data_compat.migrate_event(event_pb2.Event.FromString(record))
        yield from dataclass_compat.migrate_event(event, initial_metadata)


def _read_tfevents(path: str, st: os.stat_result, run_name: str, what: str, prev: Optional[FileState],
                   max_bytes: int) -> Read:
    rewritten = prev is not None and _rewritten(path, st, prev)
    start = 0 if prev is None or rewritten else prev.consumed
    if st.st_size == start:
        return Read("nothing", [], prev or FileState(inode=st.st_ino, fmt="tensorboard"))
    end = min(st.st_size, start + max(max_bytes, _HEADER))
    data = _read_range(path, start, end)
    records, used = _records(data, start, what)
    if not records and end < st.st_size:  # one record longer than the cap (checked header): read it whole
        (length,) = struct.unpack("<Q", data[:8])
        check_size(length, resolve_max_bytes(), f"the record at byte {start} of {what}")  # an upload's budget
        end = min(st.st_size, start + _HEADER + length + 4)
        data = _read_range(path, start, end)
        records, used = _records(data, start, what)
    more = end < st.st_size
    extra = {} if prev is None or rewritten else dict(prev.extra)
    if not records:  # only a partial record so far (a rewritten file: its run is emptied)
        state = prev if prev is not None and not rewritten else FileState(inode=st.st_ino, fmt="tensorboard")
        return Read("replace" if rewritten else "nothing", [], state, rewritten=rewritten, more=more)
    tags, steps, walls, values, _ = tensorboard_events.scalar_points(_events(records), what)
    runs = []
    if values:
        run = ParsedRun(name=run_name, source_format="tensorboard", source_file=what)
        run.metrics = metrics_frame(np.asarray(tags, dtype=object), steps, values, wall_time=walls)
        with _wall_origins(extra):
            runs = [finish_run(run, what)]
    state = _state(st, path, start + used, "tensorboard", extra)
    return Read("replace" if rewritten else "append", runs, state, rewritten=rewritten, more=more)


# --------------------------------------------------------------------------------------- tables
def _complete(data: bytes, settled: bool) -> int:
    """How many bytes of ``data`` are complete lines (all of it once the file has settled)."""
    if settled and data and not data.endswith(b"\n"):
        return len(data)
    return data.rfind(b"\n") + 1


def _parse_path(path: str, fmt: str, run_name: str, what: str, source: str) -> list[ParsedRun]:
    """The format's own parser on ``path`` (a private copy of a piece, or ``source`` itself); the
    files read beside a log (hparams.yaml, config.json) are looked up beside ``source``."""
    beside = os.path.dirname(source)
    if fmt == "lightning":
        hparams = os.path.join(beside, lightning.HPARAMS_FILE)
        return [lightning.parse_run(path, hparams if os.path.isfile(hparams) else None, run_name, what, what)]
    if fmt == "hf_trainer":
        config = os.path.join(beside, hf_trainer.CONFIG_FILE)
        return [hf_trainer.parse_state(path, config if os.path.isfile(config) else None, run_name, what, what)]
    if fmt == "summary":
        return summary.parse(path, run_name, what, what)
    return tabular.parse(path, fmt, run_name, what, what)


def _parse_bytes(data: bytes, real_path: str, fmt: str, run_name: str, what: str) -> list[ParsedRun]:
    """Parse ``data`` (a header and complete lines) with the format's own parser, from a private copy."""
    with tempfile.TemporaryDirectory(prefix="scalescope-watch-") as tmp:
        copy = os.path.join(tmp, "piece" + os.path.splitext(real_path)[1].lower())
        with open(copy, "wb") as fh:
            fh.write(data)
        runs = _parse_path(copy, fmt, run_name, what, real_path)
    check_unique_names(runs, what)
    return runs


def _capped(path: str, st: os.stat_result, start: int, max_bytes: int, settled: bool,
            what: str) -> tuple[bytes, int, bool]:
    """Up to ``max_bytes`` of ``path`` from ``start``: (the bytes, how many are complete lines, whether
    more follow). A last line without its newline counts once the file has settled and the read
    reached its end; a chunk cut by the cap that holds no newline at all is a line longer than the cap."""
    end = min(st.st_size, start + max_bytes)
    data = _read_range(path, start, end)
    more = start + len(data) < st.st_size
    used = _complete(data, settled and not more)
    if more and used == 0:
        raise _line_too_long(what, start, max_bytes)
    return data, used, more


def _line_too_long(what: str, start: int, max_bytes: int) -> InputError:
    return InputError(f"{what} has a line longer than {human_bytes(max_bytes)} (after byte {start}), the most the "
                      "watcher reads of one file per scan: a metrics log has no such line; check the file, or "
                      "import it with `python cli.py ingest`")


def _read_table(path: str, st: os.stat_result, run_name: str, what: str, prev: Optional[FileState],
                settle_s: float, max_bytes: int) -> Read:
    settled = time.time() - st.st_mtime >= settle_s
    appending = (prev is not None and prev.fmt in APPENDABLE and prev.consumed > 0
                 and not _rewritten(path, st, prev))
    if appending:
        if st.st_size == prev.consumed:
            return Read("nothing", [], prev)
        data, used, more = _capped(path, st, prev.consumed, max_bytes, settled, what)
        if not data[:used].strip():  # only blank lines, or a partial line so far
            state = _state(st, path, prev.consumed + used, prev.fmt, prev.extra) if used else prev
            return Read("nothing", [], state, more=more)
        header = prev.extra.get("header", "").encode("utf-8")
        piece_what = f"{what} (lines after byte {prev.consumed})"
        extra = dict(prev.extra)
        with _wall_origins(extra):
            runs = _parse_bytes(header + data[:used], path, prev.fmt, run_name, piece_what)
        for run in runs:
            run.source_file = what
        return Read("append", runs, _state(st, path, prev.consumed + used, prev.fmt, extra), more=more)

    rewritten = prev is not None and prev.consumed > 0
    document = tabular.text_kind(tabular.sniff(path)) == "json"
    if document:
        check_file_size(path, what)  # detection reads a JSON document whole
    fmt = detect_format(path, what)
    if fmt not in APPENDABLE or document:
        return _read_whole(path, st, None if rewritten else prev, what, fmt,
                           lambda: _parse_path(path, fmt, run_name, what, path))
    data, used, more = _capped(path, st, 0, max_bytes, settled, what)
    kind = tabular.text_kind(data[:4096])
    newline = data.find(b"\n")
    header = b"" if kind == "jsonl" or newline < 0 else data[:newline + 1]
    # A header so far, no complete row (a rewritten file: its runs are emptied until rows come).
    if (kind != "jsonl" and newline < 0 and not settled) or not data[len(header):used].strip():
        if more:  # the cap cut the first row: it would never be read whole
            raise _line_too_long(what, len(header), max_bytes)
        return Read("replace" if rewritten else "nothing", [], FileState(inode=st.st_ino, fmt=fmt), rewritten=rewritten)
    extra = {"header": header.decode("utf-8", errors="replace")}
    with _wall_origins(extra):  # the bytes read above, not the file again: it may have grown since
        runs = _parse_bytes(data[:used], path, fmt, run_name, what)
    for run in runs:
        run.source_file = what
    return Read("replace" if rewritten else "append", runs, _state(st, path, used, fmt, extra), rewritten=rewritten,
                more=more)


def state_to_json(state: FileState) -> dict:
    return {"consumed": state.consumed, "inode": state.inode, "fmt": state.fmt, "extra": state.extra}


def state_from_json(doc: Optional[dict]) -> Optional[FileState]:
    if not doc:
        return None
    return FileState(consumed=int(doc.get("consumed") or 0), inode=doc.get("inode"), fmt=doc.get("fmt"),
                     extra=dict(doc.get("extra") or {}))
