"""Guards every importer puts between an uploaded file and the rest of ScaleScope.

An upload is hostile until shown otherwise: it may be empty, binary, cut short, larger than the
server can hold, a zip that expands a thousandfold or writes outside its folder, or carry names
made to look like SQL or HTML. Each check here raises :class:`core.errors.InputError` with one line
saying what is wrong and what to do. Names are data: they are kept as the literal strings the file
holds and never evaluated, formatted into code, or unpickled.
"""
from __future__ import annotations

import codecs
import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from core.errors import InputError

# 1 GiB: a long pretraining log (10M metric rows) is a few hundred MB of CSV; more is a mistake.
DEFAULT_MAX_BYTES = 1 << 30
# Environment variable that changes the default limit for the whole process (pages and CLI).
MAX_BYTES_ENV = "SCALESCOPE_MAX_UPLOAD_BYTES"
# How much of a file detection and the binary check look at.
SNIFF_BYTES = 64 * 1024


@dataclass
class ZipLimits:
    max_bytes: int = DEFAULT_MAX_BYTES  # total bytes after extraction: the same budget as one upload
    max_members: int = 10_000           # a run folder holds a handful of files; 10k is a zip bomb's shape
    max_ratio: float = 100.0            # logs compress 3-20x; past 100x the archive was built to expand
    ratio_floor_bytes: int = 1 << 20    # below 1 MiB expanded, a high ratio (a zip of zeros) is harmless


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


def read_text(path: str, what: str) -> str:
    """The whole file as text (UTF-8, a leading BOM dropped), or an InputError saying why not."""
    with open(path, "rb") as fh:
        data = fh.read()
    check_not_empty(len(data), what)
    require_text(data[:SNIFF_BYTES], what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8 and upload again"
        )


def clean_name(raw: object, what: str) -> str:
    """A run or metric name as the literal string the file holds (outer whitespace dropped).

    Nothing is escaped or evaluated here: storage uses bound parameters and the UI escapes on output.
    Control characters are refused because they make a name unreadable in tables and the CLI.
    """
    name = str(raw).strip()
    if not name:
        raise InputError(f"{what} is empty; give every run and metric a name")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        raise InputError(f"{what} {name!r} contains control characters; remove them from the name")
    return name


def member_label(what: str, rel: str) -> str:
    """'logs.zip' + 'run1/metrics.csv' -> 'logs.zip/run1/metrics.csv' (messages and source_file)."""
    rel = rel.replace(os.sep, "/")
    return f"{what}/{rel}" if what else rel


def first_bad_row(mask: np.ndarray) -> int:
    """1-based data row of the first True in ``mask`` (header not counted)."""
    return int(np.argmax(mask)) + 1


def check_finite(values: np.ndarray, column: str, what: str, *, present: Optional[np.ndarray] = None) -> None:
    """Refuse NaN or ±inf among the cells that hold a value (``present``; default: all cells)."""
    bad = ~np.isfinite(values)
    if present is not None:
        bad &= present
    if bad.any():
        row = first_bad_row(bad)
        kind = "NaN" if np.isnan(values[row - 1]) else "an infinite value"
        raise InputError(
            f"{what}: column '{column}' holds {kind} at row {row}; remove that row or leave the cell empty"
        )


def check_non_negative(values: np.ndarray, column: str, what: str) -> None:
    """Refuse negative steps, sizes, tokens or FLOPs (NaN cells are ignored)."""
    with np.errstate(invalid="ignore"):
        bad = values < 0
    if bad.any():
        row = first_bad_row(bad)
        raise InputError(
            f"{what}: column '{column}' holds a negative value ({values[row - 1]:g}) at row {row}; "
            f"steps and sizes must be zero or more"
        )


def check_size_value(value: Optional[float], field: str, what: str) -> None:
    """Refuse a run-level size that is NaN, infinite or negative."""
    if value is None:
        return
    if not math.isfinite(float(value)):
        raise InputError(f"{what}: {field} is {value}; give a finite number or leave it out")
    if float(value) < 0:
        raise InputError(f"{what}: {field} is negative ({value:g}); sizes must be zero or more")


# ---------------------------------------------------------------------------------------------
# zip archives

def _member_problem(info: zipfile.ZipInfo) -> Optional[str]:
    """Why a member must not be extracted, or None."""
    name = info.filename
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path"
    if ".." in parts:
        return "a '..' path that points outside the archive"
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return None


def check_zip(zf: zipfile.ZipFile, archive_bytes: int, what: str, limits: ZipLimits) -> int:
    """Check a zip's table of contents before anything is extracted; return its expanded size."""
    infos = zf.infolist()
    if len(infos) > limits.max_members:
        raise InputError(
            f"{what} holds {len(infos)} files, more than the {limits.max_members} allowed; zip only the run folders you need"
        )
    total = 0
    for info in infos:
        problem = _member_problem(info)
        if problem:
            raise InputError(f"{what} member {info.filename!r} is {problem}; re-create the zip from the run folders themselves")
        total += info.file_size
    if total > limits.max_bytes:
        raise InputError(
            f"{what} expands to {human_bytes(total)}, over the {human_bytes(limits.max_bytes)} limit; "
            f"zip fewer runs or raise the limit ({MAX_BYTES_ENV})"
        )
    ratio = total / max(archive_bytes, 1)
    if total > limits.ratio_floor_bytes and ratio > limits.max_ratio:
        raise InputError(
            f"{what} expands {ratio:.0f}x (limit {limits.max_ratio:.0f}x), which looks like a zip bomb; "
            f"upload the log files without that archive"
        )
    return total


def safe_extract_zip(zip_path: str, dest_dir: str, what: str, limits: Optional[ZipLimits] = None) -> list[str]:
    """Extract a checked zip into ``dest_dir``; return the extracted files' paths relative to it.

    Sizes in the zip's header are not trusted: bytes are counted while they are written and the
    extraction stops at the limit.
    """
    limits = limits or ZipLimits()
    try:
        zf = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{what} is not a readable zip ({exc}); re-create the archive and upload again")
    extracted: list[str] = []
    written = 0
    dest_root = os.path.realpath(dest_dir)
    with zf:
        check_zip(zf, os.path.getsize(zip_path), what, limits)
        for info in zf.infolist():
            if info.is_dir():
                continue
            rel = info.filename.replace("\\", "/")
            target = os.path.realpath(os.path.join(dest_root, rel))
            if not target.startswith(dest_root + os.sep):
                raise InputError(f"{what} member {info.filename!r} points outside the archive; re-create the zip")
            try:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while True:
                        chunk = src.read(1 << 20)
                        if not chunk:
                            break
                        written += len(chunk)
                        if written > limits.max_bytes:
                            raise InputError(
                                f"{what} expands past the {human_bytes(limits.max_bytes)} limit; "
                                f"zip fewer runs or raise the limit ({MAX_BYTES_ENV})"
                            )
                        dst.write(chunk)
            except InputError:
                raise
            except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
                raise InputError(f"{what} is truncated or corrupt at {info.filename!r} ({exc}); re-create the zip")
            except (OSError, NotImplementedError, RuntimeError) as exc:
                raise InputError(f"{what} member {info.filename!r} cannot be extracted ({exc}); re-create the zip without it")
            extracted.append(rel)
    return extracted

