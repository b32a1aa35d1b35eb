"""What every importer does once it has a run's points: derive tokens and FLOPs, check sizes.

Rules (recorded with the run as ``ParsedRun.flops_rule``):
- tokens = step × tokens_per_step, where a point has a step but no tokens and tokens_per_step is known;
- flops  = 6 · N_active · tokens (Kaplan et al. 2020 eq. 2.1; Hoffmann et al. 2022 use the same
  6ND), where a point has tokens but no FLOPs and the active parameter count is known;
- a dense run's active parameters are its total parameters;
- the run's own ``tokens`` / ``flops`` are the final (largest) values of its points.
"""
from __future__ import annotations

import json
import math
from contextvars import ContextVar
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from core.errors import InputError
from core.validation import UNIX_TIME_FLOOR
from importers.base import METRIC_COLUMNS, SIZE_FIELDS, ParsedRun, empty_metrics
from importers.safety import check_finite, check_non_negative, check_size_value

# FLOPs per parameter per token for one forward + backward pass (Kaplan et al. 2020, eq. 2.1).
FLOPS_PER_PARAM_TOKEN = 6.0
INTEGER_FIELDS = ("n_experts", "top_k", "seq_len")
# Unix-time wall-clock origins by run name, for a file read in pieces (importers/incremental.py): when
# set, finish_run measures wall times from the origin recorded here (recording the first piece's).
WALL_ORIGINS: ContextVar[Optional[dict]] = ContextVar("wall_origins", default=None)


def metrics_frame(
    name,
    step,
    value,
    tokens=None,
    flops=None,
    wall_time=None,
) -> pd.DataFrame:
    """A long metric frame (METRIC_COLUMNS, float64 except ``name``) from arrays or scalars."""
    value = np.asarray(value, dtype="float64")
    n = len(value)

    def col(x) -> np.ndarray:
        if x is None:
            return np.full(n, np.nan)
        arr = np.asarray(x, dtype="float64")
        return np.full(n, float(arr)) if arr.ndim == 0 else arr

    names = np.full(n, name, dtype=object) if isinstance(name, str) else np.asarray(name, dtype=object)
    return pd.DataFrame(
        {
            "name": names,
            "step": col(step),
            "tokens": col(tokens),
            "flops": col(flops),
            "wall_time": col(wall_time),
            "value": value,
        },
        columns=METRIC_COLUMNS,
    )


def concat_metrics(frames: Iterable[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_metrics()
    out = pd.concat(frames, ignore_index=True)
    return out.astype({c: "float64" for c in METRIC_COLUMNS if c != "name"})


def finish_sizes(run, what: str) -> None:
    """The run-level checks of finish_run on anything with the size attributes (a ParsedRun, or a
    summary-table row read without a metric frame): sizes valid, integer fields whole, a router with
    more than one expert means MoE, a dense run's active parameters are its parameters."""
    for field_name in SIZE_FIELDS:
        check_size_value(getattr(run, field_name), field_name, f"{what} (run {run.name!r})")
    for field_name in INTEGER_FIELDS:
        value = getattr(run, field_name)
        if value is not None:
            setattr(run, field_name, int(round(float(value))))
    if run.n_experts is not None and run.n_experts > 1 and run.arch == "dense":
        run.arch = "moe"
    if run.arch == "dense" and run.n_active_params is None and run.n_params is not None:
        run.n_active_params = run.n_params


def finish_run(run: ParsedRun, what: str) -> ParsedRun:
    """Check a parsed run's sizes and points, then fill the tokens and FLOPs they imply."""
    finish_sizes(run, what)

    m = run.metrics if run.metrics is not None else empty_metrics()
    m = m.reset_index(drop=True)
    for c in METRIC_COLUMNS[1:]:
        m[c] = m[c].astype("float64")
    m["name"] = m["name"].astype(object)
    where = f"{what} (run {run.name!r})"
    # A backstop: importers check cells with file rows; here rows count the run's points.
    for c in ("step", "tokens", "flops", "wall_time"):
        values = m[c].to_numpy()
        check_finite(values, c, where, present=~np.isnan(values))  # NaN means "not known" here
        check_non_negative(values, c, where)
    check_finite(m["value"].to_numpy(), "value", where)

    # Products of huge (finite) sizes overflow to inf: refused below with one line, not a numpy warning.
    with np.errstate(over="ignore", invalid="ignore"):
        if run.tokens_per_step is not None:
            fill = m["tokens"].isna() & m["step"].notna()
            m.loc[fill, "tokens"] = m.loc[fill, "step"] * float(run.tokens_per_step)
        if run.n_active_params is not None:
            fill = m["flops"].isna() & m["tokens"].notna()
            m.loc[fill, "flops"] = FLOPS_PER_PARAM_TOKEN * float(run.n_active_params) * m.loc[fill, "tokens"]
    for c, rule in (("tokens", "step × tokens_per_step"), ("flops", "6 · N_active · tokens")):
        values = m[c].to_numpy()
        if np.isinf(values).any():
            raise InputError(f"{where}: the derived {c} ({rule}) overflow to infinity; "
                             f"check the sizes, they are too large to be real")

    wall = m["wall_time"]
    if wall.notna().any() and wall.min() > UNIX_TIME_FLOOR:
        origins = WALL_ORIGINS.get()
        origin = float(wall.min()) if origins is None else origins.setdefault(run.name, float(wall.min()))
        m["wall_time"] = wall - origin  # seconds since the run's first logged point

    if run.tokens is None and m["tokens"].notna().any():
        run.tokens = float(m["tokens"].max())
    if run.flops is None:
        if run.tokens is not None and run.n_active_params is not None:
            run.flops = FLOPS_PER_PARAM_TOKEN * float(run.n_active_params) * float(run.tokens)
        elif m["flops"].notna().any():
            run.flops = float(m["flops"].max())
    if run.flops is not None and not math.isfinite(float(run.flops)):
        raise InputError(f"{where}: the derived flops (6 · N_active · tokens) overflow to infinity; "
                         f"check the sizes, they are too large to be real")
    run.metrics = m
    # The store keeps config as JSON: YAML dates, sets or bytes become their text.
    run.config = json.loads(json.dumps(run.config, default=str))
    return run


def check_unique_names(runs: list[ParsedRun], what: str) -> None:
    """Refuse two runs with the same name inside one upload."""
    seen: set[str] = set()
    for run in runs:
        if run.name in seen:
            raise InputError(
                f"{what} holds two runs named {run.name!r}; rename one of them (or its folder) so each run name is unique"
            )
        seen.add(run.name)


# ---------------------------------------------------------------------------------------------
# sizes from a hyper-parameter dict (Lightning hparams.yaml, a summary row's extra columns)

_HPARAM_ALIASES = {
    "n_params": ("n_params", "num_params", "n_parameters", "num_parameters", "params", "parameters", "model_size"),
    "n_nonembedding_params": ("n_nonembedding_params", "non_embedding_params", "nonembedding_params",
                              "n_non_embedding_params"),
    "n_active_params": ("n_active_params", "active_params", "activated_params", "num_active_params"),
    "n_experts": ("n_experts", "num_experts", "num_local_experts", "n_routed_experts"),
    "top_k": ("top_k", "topk", "num_experts_per_tok", "moe_top_k", "experts_per_token"),
    "seq_len": ("seq_len", "seq_length", "max_seq_len", "sequence_length", "block_size", "context_length",
                "max_seq_length", "n_ctx"),
    "tokens_per_step": ("tokens_per_step", "tokens_per_batch", "batch_tokens"),
}
_BATCH_ALIASES = ("global_batch_size", "batch_size", "train_batch_size")
_ACCUM_ALIASES = ("accumulate_grad_batches", "gradient_accumulation_steps", "grad_accum")


def flatten(d: dict, prefix: str = "") -> dict:
    """{"model": {"n_layer": 2}} -> {"model.n_layer": 2}."""
    out: dict = {}
    for key, value in d.items():
        full = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, full + "."))
        else:
            out[full] = value
    return out


def _number(value) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(float(value)) else None
    return None


def sizes_from_hparams(hparams: dict) -> dict:
    """Size fields named in a hyper-parameter dict (any nesting; the last key part is matched).

    tokens_per_step comes from an explicit value, else batch size × sequence length
    (× gradient accumulation) when both are given.
    """
    by_leaf: dict[str, float] = {}
    for key, value in flatten(hparams).items():
        number = _number(value)
        if number is not None:
            by_leaf.setdefault(str(key).rsplit(".", 1)[-1].lower(), number)
    sizes: dict = {}
    for field_name, aliases in _HPARAM_ALIASES.items():
        for alias in aliases:
            if alias in by_leaf:
                sizes[field_name] = by_leaf[alias]
                break
    if "tokens_per_step" not in sizes and "seq_len" in sizes:
        batch = next((by_leaf[a] for a in _BATCH_ALIASES if a in by_leaf), None)
        if batch is not None:
            accum = next((by_leaf[a] for a in _ACCUM_ALIASES if a in by_leaf), 1.0)
            sizes["tokens_per_step"] = batch * sizes["seq_len"] * accum
    return sizes


def apply_sizes(run: ParsedRun, sizes: dict) -> None:
    """Set the size fields ``sizes`` names on ``run`` where the run does not have them yet."""
    for field_name, value in sizes.items():
        if field_name in SIZE_FIELDS and getattr(run, field_name) is None and value is not None:
            setattr(run, field_name, value)
