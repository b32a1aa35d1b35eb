"""One import = one transaction: files or uploads → parsed runs → the Store.

Big long-format tables (and every Parquet long table) take the DuckDB-native path of
:mod:`db.bulk`; everything else goes through the importers and :meth:`Store.ingest`. Both paths
apply the same input rules (core.validation); the size limit is checked here first, before any
content is read, whichever path the file then takes.

Every import tags its runs (issue 13 §3): with the tag the user gave, else the name of the (first)
file or folder without its extension (:func:`default_tag`), so each upload is a dataset the Runs
and Fits pages select by. Tags a file itself carries (a W&B export's) are kept besides.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from core.errors import InputError
from core.runs import ParsedRun
from core.validation import check_file_size, check_not_empty, check_size, resolve_max_bytes
from db.bulk import ingest_long_table
from importers import detect_format, parse_file, parse_uploads
from db.store import Store

# Above this size a long CSV is read by DuckDB itself (pandas would need several times the memory).
BULK_BYTES = 32 * 1024 * 1024
# Changes that threshold for the process (tests send small files down the bulk path with it).
BULK_BYTES_ENV = "SCALESCOPE_BULK_BYTES"
BULK_SUFFIXES = (".parquet", ".csv", ".tsv")


def bulk_threshold() -> int:
    """Bytes from which a long CSV/TSV takes the bulk path: $SCALESCOPE_BULK_BYTES, else BULK_BYTES."""
    raw = os.environ.get(BULK_BYTES_ENV, "").strip()
    try:
        return int(float(raw)) if raw else BULK_BYTES
    except ValueError:
        raise InputError(f"{BULK_BYTES_ENV}={raw!r} is not a number of bytes; unset it or give e.g. 33554432")


MAX_TAG_CHARS = 100


def default_tag(names: Sequence[str | os.PathLike]) -> str:
    """The tag an import gets unless one is given: the first file or folder's name without its
    extension ("runs.zip" -> "runs", "logs/" -> "logs")."""
    for name in names:
        base = Path(str(name).replace("\\", "/").rstrip("/")).name
        stem = base.split(".", 1)[0] if not base.startswith(".") else base
        stem = stem.replace(",", " ").strip()  # a tag holds no comma (check_tag)
        if stem:
            return stem[:MAX_TAG_CHARS]
    return "upload"


def check_tag(tag: Optional[str], names: Sequence[str | os.PathLike]) -> str:
    """``tag`` trimmed (the default tag of ``names`` when it is None or blank); InputError for a
    tag with control characters, a comma, or over MAX_TAG_CHARS characters."""
    tag = (tag or "").strip()
    if not tag:
        return default_tag(names)
    if len(tag) > MAX_TAG_CHARS:
        raise InputError(f"The tag is {len(tag)} characters long; keep it to {MAX_TAG_CHARS}.")
    if any(ord(c) < 32 or ord(c) == 127 for c in tag):
        raise InputError("The tag holds a control character (a newline, a tab, ...): type it on one line.")
    if "," in tag:  # the Runs table lists a run's tags comma-separated and reads them back so
        raise InputError(f"The tag {tag!r} holds a comma, which separates tags in the Runs table: "
                         "use another character (e.g. ';' or '/'), or give each part as a tag of its own.")
    return tag


def tag_runs(runs: Sequence[ParsedRun], tag: str) -> list[ParsedRun]:
    """The runs, each carrying ``tag`` (after the tags it already has)."""
    for run in runs:
        if tag not in run.tags:
            run.tags = list(run.tags) + [tag]
    return list(runs)


def _bulk_candidate(path: Path, fmt: Optional[str], what: str) -> bool:
    if path.suffix.lower() == ".parquet":
        return fmt in (None, "csv_long")
    if fmt not in (None, "csv_long") or path.stat().st_size < bulk_threshold():
        return False
    return path.suffix.lower() in (".csv", ".tsv") and detect_format(str(path), what) == "csv_long"


def _about(name: str, exc: InputError) -> InputError:
    """The error, naming the file once: prefixed with its name only when the message lacks it."""
    message = str(exc)
    return exc if message.startswith(name) else InputError(f"{name}: {message}")


def ingest_paths(store: Store, paths: Sequence[str | os.PathLike], fmt: Optional[str] = None,
                 on_duplicate: str = "error", max_bytes: Optional[int] = None,
                 tag: Optional[str] = None) -> list[dict]:
    """Import files/folders/zips from disk in one transaction; returns the runs added. Every run gets
    ``tag`` (default: the first path's name, see :func:`default_tag`)."""
    paths = [Path(p) for p in paths]
    tag = check_tag(tag, paths)
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder; check the path")
    if len(paths) == 1 and paths[0].is_file():
        p = paths[0]
        check_file_size(p, p.name, max_bytes)  # size before content (a 2 GiB file is over the limit, not "binary")
        if _bulk_candidate(p, fmt, p.name):
            return ingest_long_table(store, p, on_duplicate=on_duplicate, what=p.name, max_bytes=max_bytes,
                                     tags=[tag])
    parsed = []
    for p in paths:
        try:
            parsed.extend(parse_file(p, fmt=fmt, max_bytes=max_bytes))
        except InputError as exc:
            raise _about(p.name, exc) from None
    return store.ingest(tag_runs(parsed, tag), on_duplicate=on_duplicate)


def ingest_uploads(store: Store, files: Sequence[tuple[str, bytes]], fmt: Optional[str] = None,
                   on_duplicate: str = "error", max_bytes: Optional[int] = None,
                   tag: Optional[str] = None) -> list[dict]:
    """Import uploaded (name, bytes) pairs together, in one transaction; returns the runs added. Every
    run gets ``tag`` (default: the first file's name, see :func:`default_tag`)."""
    tag = check_tag(tag, [name for name, _ in files])
    limit = resolve_max_bytes(max_bytes)
    for name, data in files:
        check_size(len(data), limit, Path(name.replace("\\", "/")).name or "upload")
    if len(files) == 1 and files[0][0].lower().endswith(BULK_SUFFIXES):
        name, data = files[0]
        display = Path(name.replace("\\", "/")).name or "upload"
        check_not_empty(len(data), display)
        with tempfile.TemporaryDirectory(prefix="scalescope-upload-") as tmp:
            path = Path(tmp) / ("upload" + Path(display).suffix.lower())
            path.write_bytes(data)
            if _bulk_candidate(path, fmt, display):
                return ingest_long_table(store, path, on_duplicate=on_duplicate, what=display, max_bytes=limit,
                                         tags=[tag])
    return store.ingest(tag_runs(parse_uploads(files, fmt=fmt, max_bytes=max_bytes), tag), on_duplicate=on_duplicate)
