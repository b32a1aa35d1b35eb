"""Backups that round-trip: ``cli.py backup DIR`` and ``cli.py restore DIR --db URL``.

A backup is a portable folder: one Parquet file per table (:mod:`db.backup` writes and reads them)
and ``manifest.json`` with the schema version, each file's row count and SHA-256. The manifest is
written last, so a folder without one is an unfinished backup. A restore checks the whole folder
before it touches the target, then fills an empty store in one transaction.
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Optional

import pyarrow.parquet as pq

from core.errors import InputError
from db import backup as backup_db
from db.store import Store

MANIFEST = "manifest.json"
FORMAT = "scalescope-backup"
FORMAT_VERSION = 1

Progress = Optional[Callable[[int, int, str], None]]


def backup_store(store: Store, folder: str | Path, progress: Progress = None) -> dict:
    """Write the whole store to ``folder`` (new or empty); returns the manifest."""
    folder = Path(folder)
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        what = "is a file" if not folder.is_dir() else "is not empty"
        raise InputError(f"The backup folder {folder} {what}: give a new or empty folder, so no older backup "
                         "is overwritten or mixed in.")
    existed = folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        dumped = backup_db.dump(store, folder, progress)
    except BaseException:  # a damaged store, a full disk, Ctrl-C: leave no half backup behind
        for leftover in folder.iterdir():
            leftover.unlink()
        if not existed:
            folder.rmdir()
        raise
    manifest = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "schema_version": backup_db.SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source": backup_db.describe_url(store.url), "dialect": dumped["dialect"],
        "tables": dumped["tables"], "sequences": dumped["sequences"],
    }
    partial = folder / (MANIFEST + ".partial")
    partial.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(partial, folder / MANIFEST)  # last: a folder with a manifest is a whole backup
    return manifest


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a backup ``folder``, after checking that every file it names is there, whole,
    and has the columns this ScaleScope expects. Raises InputError (one line) otherwise."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"No backup folder at {folder}: give the folder `python cli.py backup DIR` wrote.")
    path = folder / MANIFEST
    if not path.is_file():
        raise InputError(f"{folder} has no {MANIFEST}: it is not a ScaleScope backup, or the backup did not "
                         "finish. Give the folder `python cli.py backup DIR` wrote.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{path} is damaged ({type(exc).__name__}: {exc}): use another backup.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"{path} is not a ScaleScope backup manifest (no \"format\": \"{FORMAT}\").")
    version = manifest.get("schema_version")
    if version != backup_db.SCHEMA_VERSION:
        raise InputError(f"The backup in {folder} has schema version {version!r}; this ScaleScope restores "
                         f"version {backup_db.SCHEMA_VERSION}: restore it with the ScaleScope that made it, then "
                         "open the store with this one to upgrade it.")
    entries = manifest.get("tables")
    if not isinstance(entries, dict):
        raise InputError(f"{path} is damaged: it lists no tables. Use another backup.")
    for table, expected in backup_db.table_columns().items():
        entry = entries.get(table)
        if not isinstance(entry, dict) or not isinstance(entry.get("file"), str) \
                or not isinstance(entry.get("rows"), int) or not isinstance(entry.get("sha256"), str):
            raise InputError(f"{path} is damaged: its entry for the {table} table is missing or incomplete. "
                             "Use another backup.")
        data = folder / entry["file"]
        if Path(entry["file"]).name != entry["file"] or not data.is_file():
            raise InputError(f"The backup in {folder} lacks {entry['file']} (the {table} table): use another "
                             "backup.")
        if backup_db.sha256(data) != entry["sha256"]:
            raise InputError(f"{data} does not match the checksum in {MANIFEST}: the backup is damaged; use "
                             "another backup.")
        try:
            columns = pq.read_schema(data).names
        except Exception as exc:  # pyarrow's errors for a file that is not Parquet
            raise InputError(f"{data} is not a readable Parquet file ({exc}): use another backup.") from None
        missing = [c for c in expected if c not in columns]
        if missing:
            raise InputError(f"{data} lacks the column(s) {', '.join(missing)} of the {table} table: use "
                             "another backup.")
    return manifest


def restore_store(folder: str | Path, url: Optional[str] = None, progress: Progress = None) -> dict:
    """Rebuild the backup in ``folder`` into the EMPTY store at ``url`` (created if missing).

    The backup is checked first, so a bad folder leaves the target untouched; a target with data is
    refused; a target file this call created is removed again if the restore fails.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    path = backup_db.store_file(url)
    created = path is not None and not path.exists()
    target = Store(url, create=True) if url else Store(create=True)
    try:
        counts = backup_db.load(target, folder, manifest, progress)
    except BaseException:
        target.close()
        if created:
            _remove_store_file(path)
        raise
    target.close()
    return {"url": target.display_url, "schema_version": manifest["schema_version"], "tables": counts,
            "rows": sum(counts.values()), "backup_created_at": manifest.get("created_at")}


def restore_into(store: Store, folder: str | Path, progress: Progress = None) -> dict:
    """Rebuild the backup in ``folder`` into an open, EMPTY ``store`` (one transaction): what first
    start does with the bundled demo snapshot (services/seed.py), on the store the app already holds."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    counts = backup_db.load(store, folder, manifest, progress)
    return {"url": store.display_url, "schema_version": manifest["schema_version"], "tables": counts,
            "rows": sum(counts.values()), "backup_created_at": manifest.get("created_at")}


def _remove_store_file(path: Path) -> None:
    for leftover in (path, path.with_name(path.name + ".wal")):
        try:
            leftover.unlink()
        except FileNotFoundError:
            pass

