"""Guards every importer puts between an uploaded file and the rest of ScaleScope.

An upload is hostile until shown otherwise: it may be empty, binary, cut short, larger than the
server can hold, a zip that expands a thousandfold or writes outside its folder, or carry names
made to look like SQL or HTML. Each check here raises :class:`core.errors.InputError` with one line
saying what is wrong and what to do. Names are data: they are kept as the literal strings the file
holds and never evaluated, formatted into code, or unpickled.
"""
from __future__ import annotations

import math
import os
import stat
import zipfile
import zlib
from dataclasses import dataclass
from typing import Optional

import numpy as np

from core.errors import InputError
# The rules shared with the bulk path (db/bulk.py) live in core.validation; re-exported here.
from core.validation import (  # noqa: F401
    DEFAULT_MAX_BYTES, MAX_BYTES_ENV, SNIFF_BYTES, check_file_size, check_no_nul, check_not_empty, check_size,
    check_text_file, check_unique_columns, clean_name, human_bytes, looks_binary, require_text, resolve_max_bytes,
)

@dataclass
class ZipLimits:
    max_bytes: int = DEFAULT_MAX_BYTES  # total bytes after extraction: the same budget as one upload
    max_members: int = 10_000           # a run folder holds a handful of files; 10k is a zip bomb's shape
    max_ratio: float = 100.0            # logs compress 3-20x; past 100x the archive was built to expand
    ratio_floor_bytes: int = 1 << 20    # below 1 MiB expanded, a high ratio (a zip of zeros) is harmless


def read_text(path: str, what: str) -> str:
    """The whole file as text (UTF-8, a leading BOM dropped), or an InputError saying why not."""
    with open(path, "rb") as fh:
        data = fh.read()
    check_not_empty(len(data), what)
    check_no_nul(data, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"{what} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8 and upload again"
        )


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


ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a zip's local-file and empty-archive signatures


def is_zip(head: bytes) -> bool:
    """Whether a file's first bytes are a zip archive's."""
    return head[:4] in ZIP_MAGIC
