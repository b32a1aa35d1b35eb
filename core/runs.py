"""A run as data, before it is stored: what importers parse and probes train.

An importer turns one uploaded file (or folder/zip) into a list of :class:`ParsedRun`; a probe
sweep produces :class:`core.probes.sweep.ProbeRun` (a ParsedRun with held-out evals). Neither
touches the database; :meth:`db.store.Store.ingest` writes a whole list in one transaction.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import pandas as pd

# Columns of ParsedRun.metrics, in this order. ``step`` may be NaN for a run-summary row (the
# final value of a finished run whose step count the file does not give).
METRIC_COLUMNS = ["name", "step", "tokens", "flops", "wall_time", "value"]

# Sizes a run may carry; all optional, all in plain units (parameters, tokens, FLOPs).
SIZE_FIELDS = [
    "n_params",               # total parameters, embeddings included
    "n_nonembedding_params",  # Kaplan et al. 2020's N
    "n_active_params",        # parameters used per token (MoE); equals n_params for dense
    "n_experts",              # experts per MoE layer (None for dense)
    "top_k",                  # experts chosen per token
    "seq_len",                # training sequence length, tokens
    "tokens_per_step",        # tokens consumed by one optimizer step (batch × seq_len)
    "tokens",                 # trained tokens D at the end of the run
    "flops",                  # training FLOPs C at the end of the run
]


@dataclass
class ParsedRun:
    name: str                       # unique run name in the store (user-visible)
    source_format: str              # importer key, e.g. "csv_long", "tensorboard"
    source_file: str = ""           # file name the run came from (not a server path)
    arch: str = "dense"             # "dense" or "moe"
    n_params: Optional[float] = None
    n_nonembedding_params: Optional[float] = None
    n_active_params: Optional[float] = None
    n_experts: Optional[int] = None
    top_k: Optional[int] = None
    seq_len: Optional[int] = None
    tokens_per_step: Optional[float] = None
    tokens: Optional[float] = None
    flops: Optional[float] = None
    flops_rule: str = "6*N_active*D"  # how flops were derived (Kaplan et al. 2020 eq. 2.1 / Hoffmann et al. 2022)
    config: dict = field(default_factory=dict)  # whatever hyper-parameters the file carries
    tags: list = field(default_factory=list)
    # long metric series: METRIC_COLUMNS; float64 except name (str)
    metrics: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=METRIC_COLUMNS))


def empty_metrics() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object" if c == "name" else "float64") for c in METRIC_COLUMNS})
