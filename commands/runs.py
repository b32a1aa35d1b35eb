"""CLI: ingest logs, list, tag, edit, export and delete runs (issue 2).

    python cli.py runs [--json]
    python cli.py runs tag NAME... [--add TAG]... [--remove TAG]... [--set TAG]... [--json]
"""
from __future__ import annotations

import argparse

from core.errors import InputError, StoreLockedError
from core.validation import printable
from importers import FORMATS
from services.ingest import ingest_paths
from commands.common import add_common, emit, open_store
from services import runs as runs_service
from services.runs import DUPLICATE_POLICIES, EDITABLE_SIZE_FIELDS, default_url
from services.watch import hand_to_inbox


def register(sub) -> None:
    p = add_common(sub.add_parser("ingest", help="import training logs (one transaction for all files)"))
    p.add_argument("files", nargs="+", help="log files, folders or .zip archives")
    p.add_argument("--format", choices=sorted(FORMATS), help="skip detection and use this format")
    p.add_argument("--on-duplicate", choices=[d for d in DUPLICATE_POLICIES if d != "error"],
                   help="what to do when a run name exists (default: refuse the import)")
    p.add_argument("--tag", help="tag of the imported runs, the dataset the Runs and Fits pages select "
                                 "(default: the first file or folder's name without its extension)")
    p.set_defaults(handler=ingest)

    p = add_common(sub.add_parser("runs", help="list stored runs; `runs tag` changes their tags"))
    p.set_defaults(handler=list_runs)
    actions = p.add_subparsers(dest="runs_command", metavar="{tag}")
    p = _common_of_action(actions.add_parser(
        "tag", help="add, remove or set the tags (datasets) of stored runs, in one transaction"))
    p.add_argument("names", nargs="+", metavar="NAME", help="the runs to retag")
    p.add_argument("--add", action="append", default=[], metavar="TAG", help="give the runs this tag (repeatable)")
    p.add_argument("--remove", action="append", default=[], metavar="TAG",
                   help="take this tag away from the runs (repeatable)")
    p.add_argument("--set", action="append", default=None, metavar="TAG", dest="set_to",
                   help="replace the runs' tags by these, before --add/--remove (repeatable)")
    p.set_defaults(handler=tag_runs)

    p = add_common(sub.add_parser("export", help="write runs' metric rows to CSV or Parquet"))
    p.add_argument("--runs", nargs="+", required=True, metavar="NAME")
    p.add_argument("--out", required=True, help="output file")
    p.add_argument("--format", choices=["csv", "parquet"], help="default: from the file extension")
    p.set_defaults(handler=export)

    p = add_common(sub.add_parser("edit-run", help="fill in or fix a run's sizes"))
    p.add_argument("name")
    for field in EDITABLE_SIZE_FIELDS:
        p.add_argument(f"--{field.replace('_', '-')}", dest=field)
    p.set_defaults(handler=edit_run)

    p = add_common(sub.add_parser("delete-runs", help="delete runs and their metrics"))
    p.add_argument("names", nargs="+")
    p.set_defaults(handler=delete_runs)


def _common_of_action(p):
    """add_common's --db and --json on an action of a command that takes them too (``runs tag``): left
    unset unless given, so ``runs --db URL tag ...`` and ``runs tag ... --db URL`` both keep them
    (argparse copies every value an action's parser holds over the command's)."""
    add_common(p)
    for action in p._actions:
        if action.dest in ("db", "json"):
            action.default = argparse.SUPPRESS
    return p


def ingest(args) -> int:
    policy = args.on_duplicate or "error"
    try:
        store = open_store(args)
    except StoreLockedError:  # a running dashboard holds the DuckDB file: hand the files to its inbox
        batch = hand_to_inbox(args.db or default_url(), args.files, fmt=args.format, on_duplicate=policy,
                              tag=args.tag)
        emit(args, {"runs": [], "handed_to": str(batch)},
             f"the store is held by a running dashboard: handed {len(args.files)} file(s) to its inbox "
             f"({batch}); a dashboard (or `cli.py watch`) on this store imports them within a few seconds")
        return 0
    added = ingest_paths(store, args.files, fmt=args.format, on_duplicate=policy, tag=args.tag)
    emit(args, {"runs": [{k: a[k] for k in ("name", "format", "n_metric_rows")} for a in added]},
         "\n".join(f"added {printable(a['name'])} ({a['format']}, {a['n_metric_rows']} metric rows)" for a in added)
         or "nothing added")
    return 0


def list_runs(args) -> int:
    frame = runs_service.list_runs(open_store(args))
    cols = ["name", "source_format", "arch", "n_params", "n_active_params", "tokens", "flops", "n_metric_rows"]
    tags = frame["tags"].map(runs_service.run_tags) if len(frame) else frame["tags"]
    rows = [{**{("format" if c == "source_format" else c): r[c] for c in cols}, "tags": t}
            for r, t in zip(frame[cols].to_dict("records"), tags)]
    # A terminal must never receive a name's control characters (an ANSI escape would restyle it).
    text = frame[cols].assign(name=frame["name"].map(printable), tags=tags.map(_tag_list)).to_string(index=False) \
        if len(frame) else "no runs"
    emit(args, {"runs": rows}, text)
    return 0


def tag_runs(args) -> int:
    changes = runs_service.retag_runs(open_store(args), args.names, add=args.add, remove=args.remove,
                                      set_to=args.set_to)
    n = sum(c["changed"] for c in changes)
    # names and tags are the user's own strings: printed literally, their control characters escaped
    lines = [f"{printable(c['name'])}: " + (f"{_tag_list(c['before'])} -> {_tag_list(c['after'])}"
                                             if c["changed"] else f"unchanged ({_tag_list(c['after'])})")
             for c in changes]
    emit(args, {"runs": changes, "changed": n}, "\n".join(lines + [f"retagged {n} of {len(changes)} run(s)"]))
    return 0


def _tag_list(tags) -> str:
    return "[" + ", ".join(printable(t) for t in tags) + "]"


def export(args) -> int:
    fmt = args.format or ("parquet" if str(args.out).endswith(".parquet") else "csv")
    n = runs_service.export_metrics(open_store(args), args.runs, args.out, fmt)
    emit(args, {"rows": n, "path": str(args.out), "format": fmt}, f"wrote {n} rows to {args.out}")
    return 0


def edit_run(args) -> int:
    sizes = {f: getattr(args, f) for f in EDITABLE_SIZE_FIELDS if getattr(args, f) is not None}
    if not sizes:
        raise InputError("Nothing to edit: give at least one size, e.g. --n-params 1.2e8.")
    row = runs_service.update_run(open_store(args), args.name, **sizes)
    emit(args, {"run": row}, f"updated {args.name}: " + ", ".join(f"{k}={row[k]}" for k in sizes))
    return 0


def delete_runs(args) -> int:
    n = runs_service.delete_runs(open_store(args), args.names)
    emit(args, {"deleted": n}, f"deleted {n} run(s)")
    return 0
