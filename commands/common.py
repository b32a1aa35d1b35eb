"""Options and output shared by every CLI sub-command."""
from __future__ import annotations

import argparse
import json
import sys

from core.jsonable import jsonable
from services.runs import Store, default_url


# The stores this process's commands opened. cli.main closes them when the command ends, so that no
# database handle is left for the C++ destructors that run as the interpreter exits (a torchrun rank
# that ended with its DuckDB store still open aborted once: "terminate called without an active
# exception").
_OPENED: list[Store] = []


def open_store(args) -> Store:
    """The Store named by --db, else $SCALESCOPE_DB_URL, else the default file.

    Only a sub-command that stores new data may create the store; every other one needs an
    existing ScaleScope store and says so when the path names none (no empty store left behind).
    """
    store = Store(getattr(args, "db", None) or default_url(), create=_stores_new_data(args))
    _OPENED.append(store)
    return store


def close_stores() -> None:
    """Close every store :func:`open_store` opened (cli.main, when a command ends)."""
    while _OPENED:
        _OPENED.pop().close()


def _stores_new_data(args) -> bool:
    """Whether this sub-command adds data (ingest, fit, evals import, route capture/trace, probe, restore, watch)."""
    command = getattr(args, "command", None)
    if command == "evals":
        return getattr(args, "evals_command", None) == "import"
    if command == "route":
        return not getattr(args, "list", False) and getattr(args, "show", None) is None
    return command in ("ingest", "fit", "probe", "restore", "watch")


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


