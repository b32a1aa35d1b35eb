"""Options and output shared by every CLI sub-command."""
from __future__ import annotations

import argparse
import json
import math
import sys

from services.runs import Store, open_store as _open


def open_store(args) -> Store:
    """The Store named by --db, else $SCALESCOPE_DB_URL, else the default file."""
    return _open(getattr(args, "db", None))


def add_common(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options every sub-command takes."""
    p.add_argument("--db", help="database URL (default: $SCALESCOPE_DB_URL or duckdb:///data/scalescope.duckdb)")
    p.add_argument("--json", action="store_true", help="print one JSON document to stdout")
    return p


def _clean(obj):
    """Make numpy scalars and NaN JSON-safe (NaN → null)."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):
        try:
            obj = obj.item()
        except (ValueError, AttributeError):
            obj = obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def emit(args, payload, text: str) -> None:
    """Print ``payload`` as JSON with --json, else the human-readable ``text``."""
    if getattr(args, "json", False):
        json.dump(_clean(payload), sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(text)


