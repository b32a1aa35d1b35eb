"""CLI sub-commands, one module per feature, each with ``register(subparsers)``.

``SUBCOMMANDS`` maps each sub-command to the module that defines it, so that ``python cli.py runs``
imports only what ``runs`` needs (not scipy, torch or transformers). A module sets ``handler`` on
each of its parsers; cli.py dispatches to it.
"""
import importlib

SUBCOMMANDS = {
    "ingest": "runs", "runs": "runs", "export": "runs", "edit-run": "runs", "delete-runs": "runs",
    "fit": "fit", "fits": "fit",
    "plan": "plan",
    "forecast": "forecast",
    "evals": "evals",
    "route": "route",
    "probe": "probe",
    "backup": "backup", "restore": "backup",
    "watch": "watch",
}


def modules_for(argv) -> list:
    """The command modules to load for ``argv``: the one named by its sub-command, else all."""
    first = next((a for a in argv if not a.startswith("-")), None)
    names = [SUBCOMMANDS[first]] if first in SUBCOMMANDS else sorted(set(SUBCOMMANDS.values()), key=_order)
    return [m for m in (_load(n) for n in names) if m is not None]


def _order(name: str) -> int:
    return list(dict.fromkeys(SUBCOMMANDS.values())).index(name)


def _load(name: str):
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:  # a feature module not in this checkout
        if exc.name == f"{__name__}.{name}":
            return None
        raise
