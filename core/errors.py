"""The one error hierarchy of ScaleScope.

Every message says what was wrong and what to do about it. Pages show it with ``st.error``;
the CLI prints it on one line to stderr and exits with status 2.
"""


class ScaleScopeError(Exception):
    """Base class: the message is shown to the user as it is, on one line."""

    def __init__(self, message: str):
        # One line in the UI and the CLI: fold any newline a caller let through.
        super().__init__(" ".join(str(message).split()))


class InputError(ScaleScopeError):
    """A file, value or argument the user gave cannot be used."""


class DuplicateRunError(InputError):
    """A run name already exists in the store and no duplicate policy was chosen."""


class FitError(ScaleScopeError):
    """A law cannot be fitted to the selected data."""


class PlanError(ScaleScopeError):
    """The planner cannot give an answer for these inputs."""


class RoutingError(ScaleScopeError):
    """A routing capture or analysis cannot be done with this model or corpus."""


class ProbeError(ScaleScopeError):
    """A probe configuration cannot be run."""


class StoreError(ScaleScopeError):
    """The database cannot be opened or upgraded."""


class StoreLockedError(StoreError):
    """Another process holds the DuckDB file (one writer process per file): ``cli.py ingest`` then
    hands its files to that process's inbox (services/watch.py) instead of failing."""


class DamagedStoreError(StoreError):
    """The database file is cut short, has corrupted blocks or lost ScaleScope's own records:
    the message says to restore a backup (``cli.py restore``)."""


class Cancelled(ScaleScopeError):
    """Long work stopped because the user asked it to."""
