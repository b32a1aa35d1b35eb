"""What every importer returns: parsed runs, not yet stored (defined in :mod:`core.runs`).

An importer turns one uploaded file (or folder/zip) into a list of :class:`ParsedRun`. It never
touches the database; :meth:`db.store.Store.ingest` writes a whole list in one transaction.
"""
from core.runs import METRIC_COLUMNS, SIZE_FIELDS, ParsedRun, empty_metrics

__all__ = ["METRIC_COLUMNS", "SIZE_FIELDS", "ParsedRun", "empty_metrics"]
