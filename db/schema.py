"""The whole ScaleScope schema, one SQLAlchemy 2 module (see docs/ARCHITECTURE.md, data model).

duckdb-engine notes: integer ids come from explicit Sequences (DuckDB has no SERIAL); JSON is kept
as text (portable, and DuckDB's json functions read it).
"""
from __future__ import annotations

from sqlalchemy import (
    BigInteger, Column, DateTime, Double, Integer, MetaData, Sequence, String, Table, Text, func,
)

# Bump when a table or column changes, and add the upgrade step to db.store.MIGRATIONS.
SCHEMA_VERSION = 4  # 3: stored fits in the typed FitResult layout; 4: watched folders (runs.last_grew, watch_*)

metadata = MetaData()

schema_info = Table(
    "schema_info", metadata,
    Column("version", Integer, nullable=False),
)

run_id_seq = Sequence("runs_id_seq", metadata=metadata)
runs = Table(
    "runs", metadata,
    Column("id", Integer, run_id_seq, server_default=run_id_seq.next_value(), primary_key=True),
    Column("name", String, nullable=False, unique=True),
    Column("source_format", String, nullable=False),
    Column("source_file", String),
    Column("arch", String, nullable=False, default="dense"),  # dense | moe
    Column("n_params", Double),                 # total parameters, embeddings included
    Column("n_nonembedding_params", Double),    # Kaplan's N
    Column("n_active_params", Double),          # per token (MoE); = n_params for dense
    Column("n_experts", Integer),
    Column("top_k", Integer),
    Column("seq_len", Integer),
    Column("tokens_per_step", Double),
    Column("tokens", Double),                   # trained tokens D
    Column("flops", Double),                    # training FLOPs C
    Column("flops_rule", String),               # e.g. "6*N_active*D"
    Column("config", Text),                     # JSON
    Column("tags", Text),                       # JSON list
    Column("created_at", DateTime, server_default=func.now()),
    Column("last_grew", Double),                # Unix time a watched file last added rows (NULL: not watched)
)

# Long time series; no primary key: (run_id, name, step) is the natural key, bulk-loaded via Arrow.
# No index on run_id: rows arrive run by run, so DuckDB's zone maps already skip other runs, and an
# ART index would cost more at each bulk import than it saves (version 2 dropped it).
metrics = Table(
    "metrics", metadata,
    Column("run_id", Integer, nullable=False),
    Column("name", String, nullable=False),
    Column("step", Double),        # NULL for a run-summary row (final value, step unknown)
    Column("tokens", Double),
    Column("flops", Double),
    Column("wall_time", Double),   # seconds since the run's first logged point
    Column("value", Double, nullable=False),
)

eval_id_seq = Sequence("evals_id_seq", metadata=metadata)
evals = Table(
    "evals", metadata,
    Column("id", Integer, eval_id_seq, server_default=eval_id_seq.next_value(), primary_key=True),
    Column("run_id", Integer, nullable=False, index=True),
    Column("step", Double),
    Column("task", String, nullable=False),
    Column("metric", String, nullable=False),
    Column("value", Double, nullable=False),
    Column("stderr", Double),
    Column("source_file", String),
)

fit_id_seq = Sequence("fits_id_seq", metadata=metadata)
fits = Table(
    "fits", metadata,
    Column("id", Integer, fit_id_seq, server_default=fit_id_seq.next_value(), primary_key=True),
    Column("name", String),
    Column("law", String, nullable=False),
    Column("method", String, nullable=False),
    Column("target", String, nullable=False),
    Column("selection", Text),     # JSON: run names / filter / csv source
    Column("settings", Text),      # JSON: method settings incl. seed
    Column("params", Text),        # JSON
    Column("intervals", Text),     # JSON {name: [low, high]}
    Column("diagnostics", Text),   # JSON
    Column("created_at", DateTime, server_default=func.now()),
)

capture_id_seq = Sequence("routing_captures_id_seq", metadata=metadata)
routing_captures = Table(
    "routing_captures", metadata,
    Column("id", Integer, capture_id_seq, server_default=capture_id_seq.next_value(), primary_key=True),
    Column("model_ref", String, nullable=False),
    Column("family", String),
    Column("corpus", String),
    Column("checkpoint_step", Integer),
    Column("n_layers", Integer),
    Column("n_experts", Integer),
    Column("top_k", Integer),
    Column("n_tokens", BigInteger),
    Column("info", Text),          # JSON: layer indices, device, etc.
    Column("created_at", DateTime, server_default=func.now()),
)

routing_assignments = Table(
    "routing_assignments", metadata,
    Column("capture_id", Integer, nullable=False),  # no index: see metrics
    Column("layer", Integer, nullable=False),
    Column("doc_id", Integer, nullable=False),
    Column("position", Integer, nullable=False),
    Column("token_id", Integer, nullable=False),
    Column("domain", String),
    Column("rank", Integer, nullable=False),
    Column("expert", Integer, nullable=False),
    Column("weight", Double),
)

probe_id_seq = Sequence("probes_id_seq", metadata=metadata)
probes = Table(
    "probes", metadata,
    Column("id", Integer, probe_id_seq, server_default=probe_id_seq.next_value(), primary_key=True),
    Column("kind", String, nullable=False),       # throughput | sweep
    Column("device", String),
    Column("dtype", String),
    Column("config", Text),                       # JSON
    Column("tokens_per_s", Double),
    Column("achieved_tflops", Double),
    Column("mfu", Double),
    Column("peak_memory_bytes", Double),
    Column("created_at", DateTime, server_default=func.now()),
)

# Watched folders (issue 11 §1): the folders the Runs page's panel added (folders given with --watch or
# $SCALESCOPE_WATCH live only in the process), and what the watcher knows of each file it reads.
watch_folders = Table(
    "watch_folders", metadata,
    Column("path", String, primary_key=True),     # absolute path, as the user gave it resolved
    Column("added_at", DateTime, server_default=func.now()),
)

watch_files = Table(
    "watch_files", metadata,
    Column("path", String, primary_key=True),     # absolute path of the file
    Column("folder", String, nullable=False),     # the watched folder it was found in
    Column("format", String),                     # importer key (importers.FORMATS), once detected
    Column("runs", Text),                         # JSON list of the run names this file feeds
    Column("size", BigInteger),                   # size and mtime at the last scan: unchanged => not read
    Column("mtime", Double),
    Column("inode", BigInteger),                  # a new inode = the file was replaced: read it again whole
    Column("consumed", BigInteger),               # byte offset read up to (complete lines / records)
    Column("state", Text),                        # JSON: the reader's resume state (header, wall-time origin, ...)
    Column("status", String, nullable=False),     # ok | waiting | catching up | error | gone
    Column("error", Text),                        # why the file stopped (status error), literally
    Column("n_rows", BigInteger),                 # metric rows this file has stored
    Column("updated_at", Double),                 # Unix time of the last change of this row
)
