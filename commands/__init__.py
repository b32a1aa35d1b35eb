"""CLI sub-commands, one module per feature. Each module has ``register(subparsers)``.

A module sets ``handler`` on each of its parsers; cli.py dispatches to it.
"""
from commands import runs

COMMAND_MODULES = [runs]
