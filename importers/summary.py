"""Run-summary tables: one row per finished run, the form scaling-law data is shared in.

``N, D, loss`` / ``params, tokens, loss`` / ``C, N, D, loss`` (Kaplan et al. 2020; Hoffmann et al.
2022, Table A9), column names matched case-insensitively with common aliases ("Model Size",
"Training FLOP", n_params, ...). Sizes may be written with a suffix (125M, 1.3B, 300B). Each row
becomes a run with one summary point per loss column: step unknown (NaN), tokens = D, flops = C.

Missing sizes follow from C = 6·N_active·D: with C and N the tokens are C/(6N), with C and D the
(active) parameters are C/(6D). When the file gives C, the run's flops_rule is "given".
"""
from __future__ import annotations

import math
import re
from typing import Optional

import numpy as np

from core.errors import InputError
from importers.base import ParsedRun
from importers.derive import FLOPS_PER_PARAM_TOKEN, check_unique_names, concat_metrics, finish_run, metrics_frame
from importers.safety import clean_name
from importers.tabular import STEP_ALIASES, Table, clean_strings, find_column, normalize, read_table

# Normalised column names for each field, most specific first.
ALIASES = {
    "n_params": ("n_params", "n", "params", "parameters", "num_params", "n_parameters", "num_parameters",
                 "model_size", "model_params", "total_params", "total_parameters", "param_count", "nparams", "size"),
    "n_nonembedding_params": ("n_nonembedding_params", "non_embedding_params", "nonembedding_params",
                              "n_non_embedding_params", "non_embedding_parameters", "n_nonembed"),
    "n_active_params": ("n_active_params", "active_params", "activated_params", "n_active", "active_parameters"),
    "tokens": ("d", "tokens", "n_tokens", "num_tokens", "training_tokens", "train_tokens", "tokens_trained",
               "total_tokens", "data", "data_size", "dataset_size"),
    "flops": ("c", "flops", "flop", "compute", "training_flop", "training_flops", "training_compute",
              "training_compute_flop", "training_compute_flops", "total_flops", "compute_flops"),
    "n_experts": ("n_experts", "num_experts", "experts", "e", "num_local_experts", "n_routed_experts"),
    "top_k": ("top_k", "topk", "k", "num_experts_per_tok", "experts_per_token"),
    "seq_len": ("seq_len", "sequence_length", "seq_length", "context_length", "ctx_len", "block_size"),
    "tokens_per_step": ("tokens_per_step", "tokens_per_batch", "batch_tokens"),
}
LOSS_ALIASES = ("loss", "final_loss", "l", "eval_loss", "val_loss", "validation_loss", "test_loss",
                "final_eval_loss", "final_val_loss", "train_loss", "final_train_loss")
NAME_ALIASES = ("name", "run", "run_name", "model", "model_name", "id")
ARCH_ALIASES = ("arch", "architecture", "type", "model_type")
SIZE_KEYS = ("n_params", "n_nonembedding_params", "n_active_params", "tokens", "flops")
# Suffixes in "125M", "1.3B", "300B", "2T" (B = billion, as in the papers' tables; G for giga).
SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_SIZE = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*([kKmMbBgGtT]?)\s*$")


def loss_columns(header: list[str]) -> list[int]:
    """Indices of loss-like columns, the primary one (by LOSS_ALIASES order) first."""
    primary = find_column(header, LOSS_ALIASES)
    if primary is None:
        return []
    others = [i for i, h in enumerate(header) if i != primary and re.search(r"loss|perplexity|ppl", normalize(h))]
    return [primary] + others


def looks_like_summary(header: list[str]) -> bool:
    """A loss column, at least one size column, and no step column."""
    if find_column(header, STEP_ALIASES) is not None or not loss_columns(header):
        return False
    return any(find_column(header, ALIASES[k]) is not None for k in SIZE_KEYS)


def _size_values(table: Table, i: int) -> np.ndarray:
    """A size column as float64 (NaN where empty); accepts 125M / 1.3B / 2e9."""
    column = table.header[i]
    out = np.full(table.n_rows, np.nan)
    for row, cell in enumerate(table.strings(i).to_pylist(), start=1):
        if cell is None or not cell.strip():
            continue
        match = _SIZE.match(cell)
        if not match:
            low = cell.strip().lower()
            if low in ("nan", "inf", "+inf", "-inf", "infinity", "-infinity"):
                raise InputError(
                    f"{table.what}: column '{column}' holds {'NaN' if 'nan' in low else 'an infinite value'} at row {row}; "
                    f"give a finite number or leave the cell empty"
                )
            raise InputError(
                f"{table.what}: column '{column}' holds a non-numeric value at row {row} ({cell[:40]!r}); "
                f"write sizes as numbers such as 125000000, 1.25e8 or 125M"
            )
        value = float(match.group(1)) * SUFFIX.get(match.group(2).lower(), 1.0)
        if value < 0:
            raise InputError(
                f"{table.what}: column '{column}' holds a negative value ({value:g}) at row {row}; sizes must be zero or more"
            )
        out[row - 1] = value
    return out


def _arch(cell: Optional[str], row: int, table: Table) -> Optional[str]:
    if cell is None or not cell.strip():
        return None
    low = cell.strip().lower()
    if "moe" in low or "mixture" in low or "sparse" in low:
        return "moe"
    if "dense" in low:
        return "dense"
    raise InputError(f"{table.what}: arch at row {row} is {cell[:40]!r}; write 'dense' or 'moe'")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def parse(path: str, default_run: str, what: str, source_file: str) -> list[ParsedRun]:
    table = read_table(path, what)
    return parse_table(table, default_run, source_file)


def parse_table(table: Table, default_run: str, source_file: str = "") -> list[ParsedRun]:
    header = table.header
    losses = loss_columns(header)
    if not losses:
        raise InputError(
            f"{table.what} has no loss column (looked for {', '.join(LOSS_ALIASES[:5])}); "
            f"a run-summary table needs one, e.g. N,D,loss"
        )
    used = set(losses)
    name_i = find_column(header, NAME_ALIASES, exclude=tuple(used))
    used |= {name_i} if name_i is not None else set()
    arch_i = find_column(header, ARCH_ALIASES, exclude=tuple(used))
    used |= {arch_i} if arch_i is not None else set()
    field_cols: dict[str, int] = {}
    for field_name, aliases in ALIASES.items():
        i = find_column(header, aliases, exclude=tuple(used))
        if i is not None:
            field_cols[field_name] = i
            used.add(i)
    if not any(k in field_cols for k in SIZE_KEYS):
        raise InputError(
            f"{table.what} has a loss column but no size column; add N (params), D (tokens) or C (FLOPs)"
        )
    fields = {k: _size_values(table, i) for k, i in field_cols.items()}
    loss_values = {i: table.numeric(i, required=(i == losses[0])) for i in losses}
    names = clean_strings(table.strings(name_i), f"{table.what}: run name") if name_i is not None else None
    if name_i is not None and any(n is None for n in names):
        row = int(np.argmax([n is None for n in names])) + 1
        raise InputError(f"{table.what}: column '{header[name_i]}' is empty at row {row}; give every run a name")
    arch_cells = table.strings(arch_i).to_pylist() if arch_i is not None else None
    # Columns that are neither sizes nor losses (lr, seed, notes) are kept with the run as config.
    extra_cells = {i: table.strings(i).to_pylist() for i, h in enumerate(header) if i not in used and h}

    runs: list[ParsedRun] = []
    generated: dict[str, int] = {}
    for r in range(table.n_rows):
        value = {k: (None if math.isnan(v[r]) else float(v[r])) for k, v in fields.items()}
        run = ParsedRun(name="", source_format="summary", source_file=source_file)
        for k, v in value.items():
            setattr(run, k, v)
        arch = _arch(arch_cells[r], r + 1, table) if arch_cells is not None else None
        if arch:
            run.arch = arch
        elif run.n_experts is not None and run.n_experts > 1:
            run.arch = "moe"
        if run.arch == "dense" and run.n_active_params is None:
            run.n_active_params = run.n_params
        active = run.n_active_params
        if run.flops is not None:
            run.flops_rule = "given"
            if run.tokens is None and active:
                run.tokens = run.flops / (FLOPS_PER_PARAM_TOKEN * active)
            elif active is None and run.tokens:
                run.n_active_params = run.flops / (FLOPS_PER_PARAM_TOKEN * run.tokens)
                if run.arch == "dense" and run.n_params is None:
                    run.n_params = run.n_active_params
        run.config = {header[i]: cells[r] for i, cells in extra_cells.items() if cells[r] is not None}
        if names is not None:
            run.name = names[r]
        else:
            parts = [f"N={_fmt(run.n_params)}" if run.n_params else None, f"D={_fmt(run.tokens)}" if run.tokens else None]
            base = (f"{default_run} " + " ".join(p for p in parts if p)) if any(parts) else f"{default_run} row {r + 1}"
            generated[base] = generated.get(base, 0) + 1
            run.name = base if generated[base] == 1 else f"{base} #{generated[base]}"
        frames = []
        for j, i in enumerate(losses):
            loss = loss_values[i][r]
            if math.isnan(loss):
                continue
            metric = "loss" if j == 0 else clean_name(header[i], f"{table.what}: column name")
            frames.append(metrics_frame(metric, np.nan, [loss], tokens=run.tokens, flops=run.flops))
        run.metrics = concat_metrics(frames)
        run.config.setdefault("loss_column", header[losses[0]])  # the column behind the "loss" metric
        runs.append(finish_run(run, table.what))
    check_unique_names(runs, table.what)
    return runs
