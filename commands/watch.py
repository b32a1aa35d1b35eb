"""CLI: watch folders of live runs into the store (issue 11 §1), the twin of the Runs page's panel.

    python cli.py watch DIR... [--once] [--interval S] [--max-bytes N] [--db URL] [--json]

``--once`` scans once and exits; ``--json`` prints {"runs": [{"name", "format", "n_metric_rows",
"added_rows"}...]} (per scan, one document a line, when not --once). Files that stopped are listed
with their reason on stderr (and under "errors" in the JSON); files read up to ``--max-bytes`` that
have more are "catching up" (the next scans go on; under "catching_up" in the JSON).

Without --once, a store that cannot be reached (its PostgreSQL server stopped) is not fatal: one
warning line when it goes, one when it is back, and the watcher goes on from the stored state.
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
    p.add_argument("--max-bytes", type=int, metavar="N",
                   help=f"the most bytes read from one file per scan (default ${watch_service.MAX_BYTES_ENV} or "
                        f"{watch_service.MAX_READ_BYTES}); a bigger file is read over several scans")
    p.set_defaults(handler=watch)


def _payload(report) -> dict:
    return {"runs": [{k: r[k] for k in ("name", "format", "n_metric_rows", "added_rows")} for r in report.runs],
            "errors": [{"path": p, "error": e} for p, e in report.errors.items()],
            "folders": [{"path": p, "error": e} for p, e in report.folders.items()],
            "inbox": report.inbox, "catching_up": report.catching_up, "store_error": report.store_error}


def _print(args, report) -> None:
    if args.json:
        sys.stdout.write(json.dumps(jsonable(_payload(report)), indent=2 if args.once else None, default=str) + "\n")
    else:
        for r in report.runs:
            print(f"{printable(r['name'])}: +{r['added_rows']} rows ({r['format']}, {r['n_metric_rows']} in all)")
        for f in report.catching_up:
            print(f"{printable(f['path'])}: catching up ({f['consumed']:,} of {f['size']:,} bytes read)")
        if args.once and not report.runs:
            print("nothing new")
    for path, reason in {**report.folders, **report.errors}.items():
        print(f"warning: {printable(reason)}", file=sys.stderr)
    sys.stdout.flush()


def _outages(args):
    """The report printer of a long watch: a store that cannot be reached is said once when it goes
    (its one line, on stderr and as "store_error" in the JSON) and once when it is back, not at each retry."""
    down = False

    def on_report(report) -> None:
        nonlocal down
        if report.store_error is not None:
            if not down:
                down = True
                if args.json:
                    _print(args, report)
                print(f"warning: {printable(report.store_error)}", file=sys.stderr, flush=True)
            return
        if down:
            down = False
            print("the store can be reached again: the watcher goes on from its stored state", file=sys.stderr,
                  flush=True)
        if report.runs or report.errors or report.folders or report.inbox or report.catching_up:
            _print(args, report)

    return on_report


def watch(args) -> int:
    for folder in args.folders:
        watch_service.check_folder(folder)
    max_bytes = None if args.max_bytes is None else watch_service.check_max_bytes(args.max_bytes)
    store = open_store(args)
    if args.once:
        _print(args, watch_service.watch_once(store, args.folders, max_bytes=max_bytes))
        return 0
    watch_service.run_forever(store, args.folders, interval=args.interval, on_report=_outages(args),
                              max_bytes=max_bytes)
    return 0
