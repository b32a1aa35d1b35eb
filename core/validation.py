"""The input rules every import path applies: the importers (importers/) and the DuckDB bulk path
(db/bulk.py) both call these functions, so a file is accepted or refused the same way whichever
path reads it.

- size: a file over the upload limit (1 GiB, or $SCALESCOPE_MAX_UPLOAD_BYTES) is refused before
  anything looks at its content;
- text: a text log is UTF-8 and holds no NUL byte anywhere (a crash or a preallocated file leaves a
  tail of zeros after the last row: refused, never dropped silently);
- names: run, metric and column names are trimmed, non-empty, and free of control characters
  (an ANSI escape in a name would recolour a terminal that prints it);
- columns: a long table names each column once (``value`` twice is ambiguous).

Each check raises :class:`core.errors.InputError` with one line: what is wrong; what to do.
"""
from __future__ import annotations

import codecs
import os
import re
from typing import Iterable, Optional

from core.errors import InputError

# 1 GiB: a long pretraining log (10M metric rows) is a few hundred MB of CSV; more is a mistake.
DEFAULT_MAX_BYTES = 1 << 30
# Environment variable that changes the default limit for the whole process (pages and CLI).
MAX_BYTES_ENV = "SCALESCOPE_MAX_UPLOAD_BYTES"
# How much of a file detection and the binary check look at.
SNIFF_BYTES = 64 * 1024
# Chunk size of the full-file NUL scan.
_SCAN_BYTES = 1 << 20
# C0 controls and DEL: never part of a readable name.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


# ---------------------------------------------------------------------------------------------
# size

def resolve_max_bytes(max_bytes: Optional[int] = None) -> int:
    """The upload limit in bytes: ``max_bytes`` if given, else $SCALESCOPE_MAX_UPLOAD_BYTES, else 1 GiB."""
    if max_bytes is not None:
        value = max_bytes
    else:
        raw = os.environ.get(MAX_BYTES_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_BYTES
        try:
            value = int(float(raw))
        except ValueError:
            raise InputError(f"{MAX_BYTES_ENV}={raw!r} is not a number of bytes; set it to e.g. 1073741824")
    if value <= 0:
        raise InputError(f"the upload limit must be a positive number of bytes, not {value}; pass e.g. 1073741824")
    return int(value)


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"  # unreachable


def check_size(n_bytes: int, max_bytes: int, what: str) -> None:
    """Refuse a file (or a set of files) over the upload limit."""
    if n_bytes > max_bytes:
        raise InputError(
            f"{what} is {human_bytes(n_bytes)}, over the {human_bytes(max_bytes)} upload limit; "
            f"split it into smaller files or raise the limit ({MAX_BYTES_ENV})"
        )


def check_not_empty(n_bytes: int, what: str) -> None:
    if n_bytes == 0:
        raise InputError(f"{what} is empty; upload the log file itself, not an empty placeholder")


def check_file_size(path: str | os.PathLike, what: str, max_bytes: Optional[int] = None) -> int:
    """Refuse a file over the limit, then an empty one (size first: content is never read for it)."""
    size = os.path.getsize(path)
    check_size(size, resolve_max_bytes(max_bytes), what)
    check_not_empty(size, what)
    return size


# ---------------------------------------------------------------------------------------------
# text

def looks_binary(head: bytes) -> bool:
    """True when the first bytes are not UTF-8 text (a NUL byte, or bytes that do not decode)."""
    if b"\x00" in head:
        return True
    try:
        # final=False: a multi-byte character cut at the sniff boundary is not an error.
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return True
    return False


def require_text(head: bytes, what: str) -> None:
    """Refuse a file whose start is binary or not UTF-8."""
    if b"\x00" in head:
        raise InputError(f"{what} is binary, not a text log; upload CSV, TSV, JSONL, JSON, tfevents or a .zip of them")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8 and upload again"
        )


def nul_tail_error(offset: int, what: str) -> InputError:
    return InputError(
        f"{what} holds NUL bytes from byte {offset} on, after its text (a crash or a preallocated file "
        f"leaves them); cut the file after its last complete row or export it again"
    )


def check_no_nul(data: bytes, what: str) -> None:
    """Refuse text whose start is binary, or that holds a NUL byte anywhere after it."""
    require_text(data[:SNIFF_BYTES], what)
    at = data.find(b"\x00")
    if at >= 0:
        raise nul_tail_error(at, what)


def check_text_file(path: str | os.PathLike, what: str) -> bytes:
    """Refuse a text log that is binary, not UTF-8 at its start, or has NUL bytes anywhere; return its head.

    The whole file is scanned (in 1 MiB chunks): zeros after the last row are not data to drop.
    """
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
        check_not_empty(len(head), what)
        require_text(head, what)
        offset = len(head)
        while True:
            chunk = fh.read(_SCAN_BYTES)
            if not chunk:
                break
            at = chunk.find(b"\x00")
            if at >= 0:
                raise nul_tail_error(offset + at, what)
            offset += len(chunk)
    return head


# ---------------------------------------------------------------------------------------------
# names and columns

def clean_name(raw: object, what: str) -> str:
    """A run or metric name as the literal string the file holds (outer whitespace dropped).

    Nothing is escaped or evaluated here: storage uses bound parameters and the UI escapes on output.
    Control characters are refused because they make a name unreadable in tables and the CLI.
    """
    name = str(raw).strip()
    if not name:
        raise InputError(f"{what} is empty; give every run and metric a name")
    if CONTROL_CHARS.search(name):
        raise InputError(f"{what} {name!r} contains control characters; remove them from the name")
    return name


def check_unique_columns(header: Iterable[str], what: str) -> None:
    """Refuse a table that names a column twice (case and outer spaces ignored, as DuckDB does)."""
    seen: set[str] = set()
    for h in header:
        key = str(h).strip().lower()
        if not key:
            continue
        if key in seen:
            raise InputError(f"{what}: column '{str(h).strip()}' appears twice; rename or drop one of them")
        seen.add(key)


def printable(text: object) -> str:
    """``text`` with control characters written as escapes (``\\x1b``), for terminal output of
    names a store made before these rules may still hold."""
    return CONTROL_CHARS.sub(lambda m: f"\\x{ord(m.group(0)):02x}", str(text))


# Wall times above this many seconds (~31 years) are Unix timestamps, not durations: every import
# path stores them as seconds since the run's first logged point (importers/derive.py, db/bulk.py).
UNIX_TIME_FLOOR = 1e9


def wall_time_origin(min_wall_time) -> float:
    """What to subtract from a run's wall times: its first timestamp when they are Unix times, else 0."""
    if min_wall_time is None or min_wall_time != min_wall_time:  # None or NaN: no wall times
        return 0.0
    return float(min_wall_time) if min_wall_time > UNIX_TIME_FLOOR else 0.0
