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
import os
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import numpy as np

from core.errors import InputError
from importers.base import ParsedRun
from importers.base import SIZE_FIELDS
from importers.derive import (FLOPS_PER_PARAM_TOKEN, check_unique_names, concat_metrics, finish_run, finish_sizes,
                              metrics_frame)
from importers.naming import default_run_name
from importers.safety import SNIFF_BYTES, check_not_empty, check_size, clean_name, is_zip, resolve_max_bytes
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


@dataclass
class SummaryRows:
    """A run-summary table read into columns: one entry per row (= per run), sizes already derived
    and checked the way each run's import checks them. What both ``parse_table`` (ParsedRuns for the
    store) and a fit of the table (services.fits.load_csv_data, no pandas frame per row) read."""

    what: str
    header: list[str]
    names: list[str]
    sizes: dict[str, list]  # SIZE_FIELDS: a value per row, None where unknown
    arch: list[str]
    flops_given: list[bool]
    losses: list[tuple[str, np.ndarray]]  # (metric, values per row, NaN = empty): "loss" first, then others
    loss_column: str  # the file's column behind the "loss" metric
    config: list[dict]  # the other columns (lr, seed, notes) per row

    @property
    def n_rows(self) -> int:
        return len(self.names)

    def metric(self, name: str) -> Optional[np.ndarray]:
        """The values of one metric per row (NaN where empty; the last column of that name that has a
        value, as in the run's metric frame), or None if no column holds it."""
        columns = [values for metric, values in self.losses if metric == name]
        if not columns:
            return None
        out = columns[0]
        for values in columns[1:]:
            out = np.where(np.isnan(values), out, values)
        return out


def read_file(path: str) -> Optional[SummaryRows]:
    """What ``importers.parse_file(path, fmt="summary")`` reads, as columns (same checks, same messages),
    for a plain file; None for a folder or a zip (parse_file reads those member by member)."""
    display = os.path.basename(os.path.abspath(path)) or path
    if os.path.isdir(path):
        return None
    if not os.path.isfile(path):
        raise InputError(f"{display} does not exist or is not a file; check the path")
    size = os.path.getsize(path)
    check_size(size, resolve_max_bytes(None), display)
    check_not_empty(size, display)
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if is_zip(head) or display.lower().endswith(".zip"):
        return None
    return read_rows(read_table(path, display), default_run_name(path, None))


def _finish_sizes(row: SimpleNamespace, what: str) -> None:
    """The run-level part of importers.derive.finish_run (same checks, same messages, same order), done on
    a row's sizes so that a fit needs no metric frame; finish_run repeats it unchanged on the ParsedRun."""
    where = f"{what} (run {row.name!r})"
    finish_sizes(row, what)
    if row.flops is None and row.tokens is not None and row.n_active_params is not None:
        with np.errstate(over="ignore"):
            flops = FLOPS_PER_PARAM_TOKEN * float(row.n_active_params) * float(row.tokens)
        if not math.isfinite(flops):
            raise InputError(f"{where}: the derived flops (6 · N_active · tokens) overflow to infinity; "
                             f"check the sizes, they are too large to be real")
        row.flops = flops


def read_rows(table: Table, default_run: str) -> SummaryRows:
    """Columns, aliases and every check of a run-summary table, the table read once column by column."""
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
    fields = {k: _size_values(table, i).tolist() for k, i in field_cols.items()}
    loss_values = [table.numeric(i, required=(i == losses[0])) for i in losses]
    names = clean_strings(table.strings(name_i), f"{table.what}: run name") if name_i is not None else None
    if name_i is not None and any(n is None for n in names):
        row = int(np.argmax([n is None for n in names])) + 1
        raise InputError(f"{table.what}: column '{header[name_i]}' is empty at row {row}; give every run a name")
    arch_cells = table.strings(arch_i).to_pylist() if arch_i is not None else None
    # Columns that are neither sizes nor losses (lr, seed, notes) are kept with the run as config.
    extra_cells = {i: table.strings(i).to_pylist() for i, h in enumerate(header) if i not in used and h}
    # Metric names of the other loss columns, checked at the first row that has a value (as each run's import did).
    metric_names: list[Optional[str]] = ["loss"] + [None] * (len(losses) - 1)

    keys = list(SIZE_FIELDS)
    out = SummaryRows(what=table.what, header=header, names=[], sizes={k: [] for k in keys}, arch=[],
                      flops_given=[], losses=[], loss_column=header[losses[0]], config=[])
    generated: dict[str, int] = {}
    for r in range(table.n_rows):
        row = SimpleNamespace(name="", arch="dense", **{k: None for k in keys})
        for k, v in fields.items():
            setattr(row, k, None if math.isnan(v[r]) else float(v[r]))
        arch = _arch(arch_cells[r], r + 1, table) if arch_cells is not None else None
        if arch:
            row.arch = arch
        elif row.n_experts is not None and row.n_experts > 1:
            row.arch = "moe"
        if row.arch == "dense" and row.n_active_params is None:
            row.n_active_params = row.n_params
        active = row.n_active_params
        given = row.flops is not None
        if given:
            if row.tokens is None and active:
                row.tokens = row.flops / (FLOPS_PER_PARAM_TOKEN * active)
            elif active is None and row.tokens:
                row.n_active_params = row.flops / (FLOPS_PER_PARAM_TOKEN * row.tokens)
                if row.arch == "dense" and row.n_params is None:
                    row.n_params = row.n_active_params
        if names is not None:
            row.name = names[r]
        else:
            parts = [f"N={_fmt(row.n_params)}" if row.n_params else None, f"D={_fmt(row.tokens)}" if row.tokens else None]
            base = (f"{default_run} " + " ".join(p for p in parts if p)) if any(parts) else f"{default_run} row {r + 1}"
            generated[base] = generated.get(base, 0) + 1
            row.name = base if generated[base] == 1 else f"{base} #{generated[base]}"
        for j in range(1, len(losses)):
            if metric_names[j] is None and not math.isnan(loss_values[j][r]):
                metric_names[j] = clean_name(header[losses[j]], f"{table.what}: column name")
        _finish_sizes(row, table.what)
        out.names.append(row.name)
        out.arch.append(row.arch)
        out.flops_given.append(given)
        for k in keys:
            out.sizes[k].append(getattr(row, k))
        out.config.append({header[i]: cells[r] for i, cells in extra_cells.items() if cells[r] is not None})
    # A column that is empty in every row gives no metric (each run's import skipped its empty cells).
    out.losses = [(m, v) for m, v in zip(metric_names, loss_values) if m is not None]
    check_unique_names([SimpleNamespace(name=name) for name in out.names], table.what)
    return out


def parse_table(table: Table, default_run: str, source_file: str = "") -> list[ParsedRun]:
    rows = read_rows(table, default_run)
    runs: list[ParsedRun] = []
    for r in range(rows.n_rows):
        run = ParsedRun(name=rows.names[r], source_format="summary", source_file=source_file, arch=rows.arch[r],
                        **{k: v[r] for k, v in rows.sizes.items()})
        if rows.flops_given[r]:
            run.flops_rule = "given"
        run.config = dict(rows.config[r])
        frames = [metrics_frame(metric, np.nan, [values[r]], tokens=run.tokens, flops=run.flops)
                  for metric, values in rows.losses if not math.isnan(values[r])]
        run.metrics = concat_metrics(frames)
        run.config.setdefault("loss_column", rows.loss_column)  # the column behind the "loss" metric
        runs.append(finish_run(run, rows.what))
    return runs
