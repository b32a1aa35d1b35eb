"""Application services: one module per feature (ingest, fits, evals, routing, probes, seed, runs).

They orchestrate pure computation (core/), log parsing (importers/) and persistence (db/); pages/
and commands/ call only this layer. See docs/ARCHITECTURE.md.
"""
