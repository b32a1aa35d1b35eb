"""CLI: back the whole store up to a portable folder, and restore it into an empty store (issue 12).

    python cli.py backup DIR [--db URL] [--json]
    python cli.py restore DIR --db URL [--json]

A backup is one Parquet file per table plus manifest.json (schema version, row counts, checksums).
A restore checks the folder first and fills an EMPTY store (a new file is created) in one
transaction; ids and id sequences continue where the backed-up store left them.
"""
from __future__ import annotations

from commands.common import add_common, emit, open_store
from services.backup import backup_store, restore_store


def register(sub) -> None:
    p = add_common(sub.add_parser("backup", help="write the whole store to a folder (Parquet per table + manifest)"))
    p.add_argument("folder", metavar="DIR", help="a new or empty folder")
    p.set_defaults(handler=backup)

    p = add_common(sub.add_parser("restore", help="rebuild a backup folder into an empty store (--db URL)"))
    p.add_argument("folder", metavar="DIR", help="a folder written by `cli.py backup`")
    p.set_defaults(handler=restore)


def backup(args) -> int:
    store = open_store(args)
    try:
        manifest = backup_store(store, args.folder)
    finally:
        store.close()
    tables = manifest["tables"]
    rows = sum(t["rows"] for t in tables.values())
    emit(args, {"folder": str(args.folder), "schema_version": manifest["schema_version"], "rows": rows,
                "tables": {name: t["rows"] for name, t in tables.items()}},
         f"backed up {rows} rows of {len(tables)} tables (schema version {manifest['schema_version']}) "
         f"to {args.folder}")
    return 0


def restore(args) -> int:
    result = restore_store(args.folder, args.db)
    emit(args, {"folder": str(args.folder), **result},
         f"restored {result['rows']} rows of {len(result['tables'])} tables into {result['url']}")
    return 0
