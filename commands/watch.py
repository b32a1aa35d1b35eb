"""CLI: watch folders of live runs into the store (issue 11 §1), the twin of the Runs page's panel.

    python cli.py watch DIR... [--once] [--interval S] [--db URL] [--json]

``--once`` scans once and exits; ``--json`` prints {"runs": [{"name", "format", "n_metric_rows",
"added_rows"}...]} (per scan, one document a line, when not --once). Files that stopped are listed
with their reason on stderr (and under "errors" in the JSON).
"""
from __future__ import annotations

import json
import sys

from core.jsonable import jsonable
from core.validation import printable
from commands.common import add_common, open_store
from services import watch as watch_service


def register(sub) -> None:
    p = add_common(sub.add_parser("watch", help="import logs of live runs as they are written (incremental)"))
    p.add_argument("folders", nargs="+", metavar="DIR", help="folders of training logs to watch")
    p.add_argument("--once", action="store_true", help="scan once and exit")
    p.add_argument("--interval", type=float, help=f"seconds between scans (default ${watch_service.INTERVAL_ENV} "
                                                  f"or {watch_service.DEFAULT_INTERVAL_S:g})")
    p.set_defaults(handler=watch)


def _payload(report) -> dict:
    return {"runs": [{k: r[k] for k in ("name", "format", "n_metric_rows", "added_rows")} for r in report.runs],
            "errors": [{"path": p, "error": e} for p, e in report.errors.items()],
            "folders": [{"path": p, "error": e} for p, e in report.folders.items()],
            "inbox": report.inbox}


def _print(args, report) -> None:
    if args.json:
        sys.stdout.write(json.dumps(jsonable(_payload(report)), indent=2 if args.once else None, default=str) + "\n")
    else:
        for r in report.runs:
            print(f"{printable(r['name'])}: +{r['added_rows']} rows ({r['format']}, {r['n_metric_rows']} in all)")
        if args.once and not report.runs:
            print("nothing new")
    for path, reason in {**report.folders, **report.errors}.items():
        print(f"warning: {printable(reason)}", file=sys.stderr)
    sys.stdout.flush()


def watch(args) -> int:
    for folder in args.folders:
        watch_service.check_folder(folder)
    store = open_store(args)
    if args.once:
        _print(args, watch_service.watch_once(store, args.folders))
        return 0
    watch_service.run_forever(store, args.folders, interval=args.interval, on_report=lambda r: _print(args, r)
                              if (r.runs or r.errors or r.folders or r.inbox) else None)
    return 0
