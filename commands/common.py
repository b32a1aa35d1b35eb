"""Options and output shared by every CLI sub-command."""
from __future__ import annotations

import argparse
import json
import sys

from core.jsonable import jsonable
from services.runs import Store, open_store as _open


def open_store(args) -> Store:
    """The Store named by --db, else $SCALESCOPE_DB_URL, else the default file."""
    return _open(getattr(args, "db", None))


def add_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every sub-command takes."""
    p.add_argument("--db", help="database URL (default: $SCALESCOPE_DB_URL or duckdb:///data/scalescope.duckdb)")
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")
    return p


def emit(args, payload, text: str) -> None:
    """Print ``payload`` as JSON with --json, else the human-readable ``text``."""
    if getattr(args, "json", False):
        json.dump(jsonable(payload), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(text)


