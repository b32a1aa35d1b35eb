"""Persistence for ScaleScope: the SQLAlchemy schema, the Store, and log-format importers.

No SQL lives outside this package."""
