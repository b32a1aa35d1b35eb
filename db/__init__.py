"""Persistence for ScaleScope: the SQLAlchemy schema (schema.py), the Store (store.py: runs and
metrics, transactions, upgrades) and one repository per table family — fits.py, evals.py,
routing.py, probes.py, runs.py (run rows inside a caller's transaction) and bulk.py (long tables
read by DuckDB itself).

ALL SQL lives in this package; nothing outside it imports SQLAlchemy, the drivers or the schema
(``.importlinter``, checked by tests/test_layers.py)."""
