#!/usr/bin/env python
"""ScaleScope from a terminal: the same operations as the dashboard.

    python cli.py ingest FILE... [--tag NAME] [--format F] [--on-duplicate skip|replace|rename] [--db URL] [--json]
    python cli.py runs [--json]
    python cli.py runs tag NAME... [--add TAG] [--remove TAG] [--set TAG...] [--json]   (retag after import)
    python cli.py export --runs NAME... --out FILE [--format csv|parquet]
    python cli.py backup DIR [--db URL]          (then: python cli.py restore DIR --db URL)

``--json`` prints one JSON document to stdout. A bad input prints one line to stderr and exits 2.
Each feature adds its sub-commands in a module of commands/ (see commands/__init__.py).
"""
from __future__ import annotations

import argparse
import sys

from commands import modules_for
from commands.common import close_stores
from core.errors import ScaleScopeError


def build_parser(argv=None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the sub-command it names is loaded (fast start)."""
    parser = argparse.ArgumentParser(prog="cli.py", description="ScaleScope: scaling-law research from a terminal.")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in modules_for(sys.argv[1:] if argv is None else argv):
        module.register(sub)
    return parser


def main(argv=None) -> int:
    args = build_parser(argv).parse_args(argv)
    try:
        return args.handler(args) or 0
    except ScaleScopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; nothing was stored.", file=sys.stderr)
        return 130
    finally:
        close_stores()  # before the interpreter exits, not by its destructors


if __name__ == "__main__":
    sys.exit(main())
