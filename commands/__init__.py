"""CLI sub-commands, one module per feature, each with ``register(subparsers)``.

Every module in this package that defines ``register`` is picked up; a module sets ``handler`` on
each of its parsers and cli.py dispatches to it.
"""
import importlib
import pkgutil

COMMAND_MODULES = []
for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: (m.name != "runs", m.name)):
    _module = importlib.import_module(f"{__name__}.{_info.name}")
    if hasattr(_module, "register"):
        COMMAND_MODULES.append(_module)
