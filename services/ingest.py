"""One import = one transaction: files or uploads → parsed runs → the Store.

Big long-format tables (and every Parquet long table) take the DuckDB-native path of
:mod:`db.bulk`; everything else goes through the importers and :meth:`Store.ingest`.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from core.errors import InputError
from db.bulk import ingest_long_table
from importers import detect_format, parse_file, parse_uploads
from db.store import Store

# Above this size a long CSV is read by DuckDB itself (pandas would need several times the memory).
BULK_BYTES = 32 * 1024 * 1024


def _bulk_candidate(path: Path, fmt: Optional[str]) -> bool:
    if path.suffix.lower() == ".parquet":
        return fmt in (None, "csv_long")
    if fmt not in (None, "csv_long") or path.stat().st_size < BULK_BYTES:
        return False
    return path.suffix.lower() in (".csv", ".tsv") and detect_format(str(path), path.name) == "csv_long"


def ingest_paths(store: Store, paths: Sequence[str | os.PathLike], fmt: Optional[str] = None,
                 on_duplicate: str = "error") -> list[dict]:
    """Import files/folders/zips from disk in one transaction; returns the runs added."""
    paths = [Path(p) for p in paths]
    for p in paths:
        if not p.exists():
            raise InputError(f"{p}: no such file or folder.")
    if len(paths) == 1 and paths[0].is_file() and _bulk_candidate(paths[0], fmt):
        return ingest_long_table(store, paths[0], on_duplicate=on_duplicate)
    parsed = []
    for p in paths:
        try:
            parsed.extend(parse_file(p, fmt=fmt))
        except InputError as exc:
            raise InputError(f"{p.name}: {exc}") from None
    return store.ingest(parsed, on_duplicate=on_duplicate)


def ingest_uploads(store: Store, files: Sequence[tuple[str, bytes]], fmt: Optional[str] = None,
                   on_duplicate: str = "error") -> list[dict]:
    """Import uploaded (name, bytes) pairs together, in one transaction; returns the runs added."""
    if len(files) == 1 and files[0][0].lower().endswith((".parquet", ".csv", ".tsv")):
        name, data = files[0]
        with tempfile.TemporaryDirectory(prefix="scalescope-upload-") as tmp:
            path = Path(tmp) / ("upload" + Path(name).suffix.lower())
            path.write_bytes(data)
            if len(data) and _bulk_candidate(path, fmt):
                return ingest_long_table(store, path, on_duplicate=on_duplicate)
    return store.ingest(parse_uploads(files, fmt=fmt), on_duplicate=on_duplicate)
