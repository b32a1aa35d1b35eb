"""Log importers: turn an uploaded file, folder or zip into :class:`ParsedRun` objects.

Entry points (none touches the database; ``Store.ingest`` writes what they return):
- :func:`detect_format` — which of :data:`FORMATS` a file, folder, zip or byte string holds;
- :func:`parse_file` — parse a path (file, folder, or .zip) in a detected or given format;
- :func:`parse_upload` — parse uploaded bytes via a private temporary folder that is removed after;
- :func:`parse_uploads` — several uploaded files at once, so a trainer_state.json finds the
  config.json and a metrics.csv the hparams.yaml uploaded with it.

Every failure is an :class:`core.errors.InputError` with one line saying what is wrong and what to do.
"""
from __future__ import annotations

import os
import re
import tempfile
from typing import Iterable, Optional, Union

from core.errors import InputError
from importers import hf_trainer, lightning, summary, tabular, tensorboard_events
from importers.base import ParsedRun
from importers.derive import check_unique_names
from importers.naming import CHECKPOINT_DIR as _CHECKPOINT_DIR
from importers.naming import FIXED_NAMES as _FIXED_NAMES
from importers.naming import default_run_name as _default_run_name
from importers.naming import display_name as _display_name
from importers.naming import stem as _stem
from importers.detect import (
    FOLDER_FORMATS, TABULAR_EXTS, container_format, detect_format, is_zip, list_files,
)
from importers.safety import (
    DEFAULT_MAX_BYTES, SNIFF_BYTES, ZipLimits, check_not_empty, check_size, member_label, resolve_max_bytes,
    safe_extract_zip,
)

FORMATS = {
    "csv_long": "Long time series (CSV/TSV/JSONL): run, step, metric, value [, tokens, flops, wall_time]",
    "csv_wide": "Wide time series (CSV/TSV/JSONL): step + one column per metric [, run, tokens, flops, wall_time]",
    "summary": "Run-summary table, one row per finished run: N, D, loss / params, tokens, loss / C, N, D, loss",
    "wandb_export": "W&B web-UI CSV export: Step + '<run> - <metric>' columns (__MIN/__MAX kept as a band)",
    "wandb_history": "W&B run.history() CSV: _step, _runtime, _timestamp + metric columns",
    "tensorboard": "TensorBoard events.out.tfevents.* file, a folder, or a .zip of run folders (scalars)",
    "hf_trainer": "Hugging Face Trainer trainer_state.json (log_history), sized by the config.json beside it",
    "lightning": "PyTorch Lightning CSVLogger metrics.csv, with the hparams.yaml beside it",
    "bundle": "A folder or .zip of several logs; each file is detected on its own",
}

__all__ = ["FORMATS", "DEFAULT_MAX_BYTES", "ParsedRun", "detect_format", "parse_file", "parse_upload",
           "parse_uploads", "count_params_from_config"]

count_params_from_config = hf_trainer.count_params_from_config

_SINGLE_FILE = {
    "csv_long": lambda path, run, what, src: tabular.parse(path, "csv_long", run, what, src),
    "csv_wide": lambda path, run, what, src: tabular.parse(path, "csv_wide", run, what, src),
    "wandb_export": lambda path, run, what, src: tabular.parse(path, "wandb_export", run, what, src),
    "wandb_history": lambda path, run, what, src: tabular.parse(path, "wandb_history", run, what, src),
    "summary": summary.parse,
    "tensorboard": tensorboard_events.parse,
    "hf_trainer": hf_trainer.parse,
    "lightning": lightning.parse,
}


def _check_fmt(fmt: Optional[str]) -> Optional[str]:
    if fmt is None or fmt == "auto":
        return None
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return fmt


def _disk_name(display: str) -> str:
    """A file name that is safe to create in the private upload folder (the extension kept)."""
    safe = re.sub(r"[^\w.\-+=@ ]", "_", display)[-150:].strip() or "upload"
    return "upload" if safe in (".", "..") else safe


def _strip_single_top(root: str, rel_files: list[str]) -> tuple[str, list[str], Optional[str]]:
    """When every file sits in one top folder (a zipped logdir), step into it."""
    tops = {r.replace(os.sep, "/").split("/", 1)[0] for r in rel_files}
    if len(tops) == 1 and all("/" in r.replace(os.sep, "/") for r in rel_files) and not _CHECKPOINT_DIR.match(
            next(iter(tops))):
        top = tops.pop()
        return os.path.join(root, top), [r.replace(os.sep, "/").split("/", 1)[1] for r in rel_files], top
    return root, rel_files, None


def _parse_container(root: str, root_name: Optional[str], what: str, source_file: str,
                     fmt: Optional[str]) -> list[ParsedRun]:
    """Runs from a folder (an extracted zip, an upload set, or a folder on disk)."""
    rel_files = list_files(root)
    if not rel_files:
        raise InputError(f"{what} holds no files; zip the run folders themselves")
    root, rel_files, top = _strip_single_top(root, rel_files)
    if top is not None:
        root_name, what, source_file = top, member_label(what, top), member_label(source_file, top)
    detected = container_format(rel_files, what)
    wanted = fmt or detected
    families = FOLDER_FORMATS if wanted == "bundle" else ((wanted,) if wanted in FOLDER_FORMATS else ())

    runs: list[ParsedRun] = []
    if "tensorboard" in families:
        if root_name is None:  # an upload set: each loose event file is its own run
            loose = [r for r in rel_files if tensorboard_events.is_tfevents_name(r) and "/" not in r.replace(os.sep, "/")]
            for rel in loose:
                runs += tensorboard_events.parse(os.path.join(root, rel), rel, rel, rel)
            rest = [r for r in rel_files if r not in loose]
            runs += tensorboard_events.parse_folder(root, rest, "", what, source_file)
        else:
            runs += tensorboard_events.parse_folder(root, rel_files, root_name, what, source_file)
    if "hf_trainer" in families:
        runs += hf_trainer.parse_folder(root, rel_files, root_name or _stem(hf_trainer.STATE_FILE), what, source_file)
    if "lightning" in families:
        runs += lightning.parse_folder(root, rel_files, root_name or _stem(lightning.METRICS_FILE), what, source_file)

    table_fmt = fmt if fmt in _SINGLE_FILE and fmt not in FOLDER_FORMATS else None
    if wanted == "bundle" or table_fmt:
        for rel in rel_files:
            base = os.path.basename(rel)
            if not base.lower().endswith(TABULAR_EXTS) or base == lightning.METRICS_FILE:
                continue
            path = os.path.join(root, rel)
            member_what = member_label(what, rel)
            member_fmt = table_fmt or detect_format(path, member_what)
            runs += _SINGLE_FILE[member_fmt](path, _stem(rel.replace(os.sep, "/")), member_what,
                                             member_label(source_file, rel))
    if not runs:
        raise InputError(f"{what} holds no {FORMATS.get(wanted, wanted)} logs; choose another format or upload the log files")
    check_unique_names(runs, what)
    return runs


def _folder_bytes(root: str) -> int:
    return sum(os.path.getsize(os.path.join(root, r)) for r in list_files(root))


def parse_file(
    path: Union[str, os.PathLike],
    filename: Optional[str] = None,
    fmt: Optional[str] = None,
    max_bytes: Optional[int] = None,
) -> list[ParsedRun]:
    """Parse a log file, a folder of logs, or a .zip of them into runs.

    ``filename`` is the name the user knows the file by (an upload's name; default the path's
    base name), used in messages, run names and ``source_file``. ``fmt`` overrides detection (a key
    of :data:`FORMATS`). ``max_bytes`` caps the file and a zip's expanded size (default 1 GiB or
    $SCALESCOPE_MAX_UPLOAD_BYTES). Raises InputError for anything it cannot read.
    """
    path = os.fspath(path)
    fmt = _check_fmt(fmt)
    limit = resolve_max_bytes(max_bytes)
    display = _display_name(filename) if filename else (os.path.basename(os.path.abspath(path)) or path)
    if os.path.isdir(path):
        check_size(_folder_bytes(path), limit, display)
        return _parse_container(path, display, display, display, fmt)
    if not os.path.isfile(path):
        raise InputError(f"{display} does not exist or is not a file; check the path")
    size = os.path.getsize(path)
    check_size(size, limit, display)
    check_not_empty(size, display)
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if is_zip(head) or display.lower().endswith(".zip"):
        with tempfile.TemporaryDirectory(prefix="scalescope-zip-") as tmp:
            safe_extract_zip(path, tmp, display, ZipLimits(max_bytes=limit))
            return _parse_container(tmp, _stem(display), display, display, fmt)
    fmt = fmt or detect_format(path, display)
    if fmt == "bundle":
        raise InputError(f"{display} is a single file; 'bundle' is for a folder or .zip, choose the file's own format")
    runs = _SINGLE_FILE[fmt](path, _default_run_name(path, filename), display, display)
    check_unique_names(runs, display)
    return runs


def parse_upload(
    data: bytes,
    filename: str,
    fmt: Optional[str] = None,
    max_bytes: Optional[int] = None,
) -> list[ParsedRun]:
    """Parse one uploaded file (its bytes and the name the browser gave) into runs.

    The bytes are written to a private temporary folder (mode 0700) that is removed afterwards;
    the uploaded name is only used for messages and run names, never as a path.
    """
    display = _display_name(filename)
    check_size(len(data), resolve_max_bytes(max_bytes), display)
    check_not_empty(len(data), display)
    with tempfile.TemporaryDirectory(prefix="scalescope-upload-") as tmp:
        path = os.path.join(tmp, _disk_name(display))
        _write(path, data)
        return parse_file(path, filename=display, fmt=fmt, max_bytes=max_bytes)


def parse_uploads(
    files: Iterable[tuple[str, bytes]],
    fmt: Optional[str] = None,
    max_bytes: Optional[int] = None,
) -> list[ParsedRun]:
    """Parse several uploaded files together: ``[(filename, data), ...]``.

    Zips are parsed one by one. A trainer_state.json, metrics.csv or event file is placed beside
    the config.json / hparams.yaml uploaded with it, so they pair as they would in a run folder;
    every other file is parsed alone. Run names must be unique across the whole set.
    """
    files = list(files)
    if not files:
        raise InputError("no files were uploaded; choose one or more log files")
    fmt = _check_fmt(fmt)
    limit = resolve_max_bytes(max_bytes)
    runs: list[ParsedRun] = []
    loose: dict[str, tuple[str, bytes]] = {}  # name on disk -> (name as uploaded, bytes)
    for filename, data in files:
        display = _display_name(filename)
        check_size(len(data), limit, display)
        check_not_empty(len(data), display)
        if is_zip(data[:4]) or display.lower().endswith(".zip"):
            runs += parse_upload(data, display, fmt=fmt, max_bytes=max_bytes)
            continue
        disk = _disk_name(display)
        if disk in loose:
            raise InputError(f"two uploaded files are named {display!r}; upload them in separate batches or zip their folders")
        loose[disk] = (display, data)
    if loose:
        with tempfile.TemporaryDirectory(prefix="scalescope-upload-") as tmp:
            paired = [d for d in loose if _belongs_in_run_folder(d)]
            if (fmt is not None and fmt not in FOLDER_FORMATS) or not any(
                    d in _FIXED_NAMES or tensorboard_events.is_tfevents_name(d) for d in paired):
                paired = []  # nothing to pair, or the user chose a table format for every file
            if paired:
                folder = os.path.join(tmp, "set")
                os.makedirs(folder)
                for disk in paired:
                    _write(os.path.join(folder, disk), loose[disk][1])
                runs += _parse_container(folder, None, "", "", fmt)
            for disk, (display, data) in loose.items():
                if disk in paired:
                    continue
                path = os.path.join(tmp, disk)
                _write(path, data)
                runs += parse_file(path, filename=display, fmt=fmt, max_bytes=max_bytes)
    check_unique_names(runs, "the uploaded files")
    return runs


def _belongs_in_run_folder(name: str) -> bool:
    return name in _FIXED_NAMES or name in (hf_trainer.CONFIG_FILE, lightning.HPARAMS_FILE) or (
        tensorboard_events.is_tfevents_name(name))


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)
