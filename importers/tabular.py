"""CSV, TSV and JSONL time series: long, wide, and the two W&B CSV layouts.

Layouts (column names matched case-insensitively; see ``STEP_ALIASES`` and friends):
- long (``csv_long``): ``[run,] step, metric, value [, tokens, flops, wall_time]``, a point a row;
- wide (``csv_wide``): ``[run,] step, <metric>, <metric>, ...``, empty cells where a metric was not
  logged at that step;
- W&B web-UI export (``wandb_export``): ``Step, "<run> - <metric>", "<run> - <metric>__MIN", ...``
  (the __MIN/__MAX envelope columns are kept as metrics ``<metric>__MIN`` / ``<metric>__MAX``, which
  the Runs page draws as a band; the run name is what comes before the last " - ");
- W&B ``run.history()`` CSV (``wandb_history``): ``_step, _runtime, _timestamp, <metric>...``, often
  with pandas' unnamed index column first.

Every file is first read into a :class:`Table` of strings (empty cell = missing), so that a
non-numeric cell, a literal ``nan`` and an empty cell are told apart and reported by column and row.
"""
from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from core.errors import InputError
from importers.base import ParsedRun
from importers.derive import check_unique_names, concat_metrics, finish_run, metrics_frame
from importers.safety import (
    SNIFF_BYTES, check_finite, check_non_negative, check_text_file, check_unique_columns, clean_name,
)

# Normalised names (lower case, runs of other characters as "_") that mean the same column.
STEP_ALIASES = ("step", "steps", "global_step", "iteration", "iter", "iters", "it", "trainer_global_step",
                "train_global_step")
RUN_ALIASES = ("run", "run_name", "run_id", "experiment")
METRIC_ALIASES = ("metric", "metric_name", "key", "tag", "name")
VALUE_ALIASES = ("value", "val", "y")
TOKENS_ALIASES = ("tokens", "tokens_seen", "num_input_tokens_seen", "consumed_tokens", "n_tokens", "num_tokens",
                  "total_tokens", "train_tokens", "trained_tokens")
FLOPS_ALIASES = ("flops", "flop", "total_flops", "train_flops", "training_flops", "compute")
WALL_ALIASES = ("wall_time", "walltime", "wall_clock", "time", "time_s", "elapsed", "elapsed_s", "runtime",
                "relative_time", "seconds")
# Run-level size columns a time-series file may carry (one value per run, repeated on its rows).
SIZE_COLUMN_ALIASES = {
    "n_params": ("n_params", "num_params", "params", "parameters", "n_parameters"),
    "n_nonembedding_params": ("n_nonembedding_params", "non_embedding_params", "nonembedding_params"),
    "n_active_params": ("n_active_params", "active_params"),
    "n_experts": ("n_experts", "num_experts"),
    "top_k": ("top_k", "topk", "num_experts_per_tok"),
    "seq_len": ("seq_len", "seq_length", "sequence_length", "context_length"),
    "tokens_per_step": ("tokens_per_step", "tokens_per_batch", "batch_tokens"),
}
# W&B envelope columns of a smoothed/grouped chart export.
WANDB_ENVELOPE = ("__MIN", "__MAX")
WANDB_SEPARATOR = " - "
# The index column pandas writes (blank header) or re-reads ("Unnamed: 0"): not a metric.
_PANDAS_INDEX = re.compile(r"^Unnamed: \d+$")
# Numbers as they appear in logs; used only to find the row behind a failed conversion.
_NUMBER = r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|nan|inf|infinity)\s*$"


def normalize(name: str) -> str:
    """'Model Size' -> 'model_size', 'trainer/global_step' -> 'trainer_global_step'."""
    return re.sub(r"[^a-z0-9]+", "_", str(name).lower()).strip("_")


def find_column(header: list[str], aliases: tuple, exclude: tuple = ()) -> Optional[int]:
    """Index of the first column whose normalised name is among ``aliases`` (in alias order)."""
    keys = [normalize(h) for h in header]
    for alias in aliases:
        for i, key in enumerate(keys):
            if key == alias and i not in exclude:
                return i
    return None


@dataclass
class Table:
    header: list[str]   # column names as written (outer whitespace dropped), duplicates kept
    data: pa.Table      # one string column per header entry, position-aligned; null = empty cell
    what: str           # the file as the user knows it, for messages

    @property
    def n_rows(self) -> int:
        return self.data.num_rows

    def strings(self, i: int) -> pa.ChunkedArray:
        return self.data.column(i)

    def numeric(self, i: int, *, required: bool = False) -> np.ndarray:
        """Column ``i`` as float64, NaN where a cell is empty; refuses text, NaN and inf cells."""
        column = self.header[i]
        arr = pc.utf8_trim_whitespace(self.data.column(i))
        present = pc.is_valid(arr).to_numpy(zero_copy_only=False)
        if required and not present.all():
            row = int(np.argmin(present)) + 1
            raise InputError(f"{self.what}: column '{column}' is empty at row {row}; fill it in or remove the row")
        try:
            values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            ok = pc.match_substring_regex(arr, _NUMBER, ignore_case=True).to_numpy(zero_copy_only=False)
            bad = present & ~ok.astype(bool)
            row = int(np.argmax(bad)) + 1 if bad.any() else None
            cell = arr[row - 1].as_py() if row else None
            where = f" at row {row} ({cell[:40]!r})" if row else ""
            raise InputError(
                f"{self.what}: column '{column}' holds a non-numeric value{where}; numbers only in metric, step and size columns"
            )
        values = np.where(present, values, np.nan)
        check_finite(values, column, self.what, present=present)
        return values


# ---------------------------------------------------------------------------------------------
# reading

def sniff(path: str) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(SNIFF_BYTES)


def text_kind(head: bytes) -> str:
    """'json' for a JSON document, 'jsonl' for JSON lines, 'csv' otherwise (from the first bytes)."""
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff").lstrip()
    if text.startswith("["):
        return "json"
    if text.startswith("{"):
        first_line = text.split("\n", 1)[0]
        try:
            json.loads(first_line)
            return "jsonl"
        except ValueError:
            return "json"
    return "csv"


def delimiter_for(path: str, first_line: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in (".tsv", ".tab"):
        return "\t"
    counts = {d: first_line.count(d) for d in (",", "\t", ";")}
    best = max(counts, key=counts.get)
    return best if counts[best] > 0 else ","


def header_from_head(head: bytes, filename: str) -> list[str]:
    """Column names of a CSV/TSV or JSONL file from its first bytes (JSONL: keys of the first records)."""
    if text_kind(head) == "jsonl":
        return _jsonl_keys(head)
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    lines = text.splitlines()
    first_line = lines[0] if lines else ""
    row = next(csv.reader([first_line], delimiter=delimiter_for(filename, first_line)), [])
    return [h.strip() for h in row]


def _jsonl_keys(head: bytes) -> list[str]:
    keys: dict[str, None] = {}
    for line in head.decode("utf-8", errors="ignore").lstrip("\ufeff").splitlines()[:50]:
        try:
            record = json.loads(line)
        except ValueError:
            break  # the sniff may cut the last line
        if isinstance(record, dict):
            keys.update(dict.fromkeys(str(k) for k in record))
    return list(keys)


def read_table(path: str, what: str) -> Table:
    """Read a CSV, TSV, JSONL or JSON-array file into a string :class:`Table`."""
    head = check_text_file(path, what)  # not empty, UTF-8, no NUL byte anywhere (core.validation)
    kind = text_kind(head)
    if kind == "csv":
        return _read_csv(path, what, head)
    if kind == "jsonl":
        with open(path, "rb") as fh:
            raw = fh.read()
        try:
            lines = raw.decode("utf-8-sig").splitlines()
        except UnicodeDecodeError as exc:
            raise InputError(f"{what} is not UTF-8 text (bad byte at offset {exc.start}); re-save it as UTF-8 and upload again")
        return _records_table(_jsonl_records(lines, what), what)
    try:
        with open(path, "rb") as fh:
            doc = json.loads(fh.read().decode("utf-8-sig"), parse_constant=_nonfinite)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON ({_short(exc)}); the file may be truncated, export it again")
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise InputError(f"{what} is a JSON document but not a list of records; upload a trainer_state.json, JSONL, or CSV")
    return _records_table(doc, what)


def _short(exc: BaseException, limit: int = 160) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[:limit] + "…"


def _read_csv(path: str, what: str, head: bytes) -> Table:
    text = head.decode("utf-8", errors="ignore").lstrip("\ufeff")
    lines = text.splitlines()
    first_line = lines[0] if lines else ""
    delimiter = delimiter_for(path, first_line)
    header = [h.strip() for h in next(csv.reader([first_line], delimiter=delimiter), [])]
    if not any(header):
        raise InputError(f"{what} has no header row; put column names (e.g. step,loss) on the first line")
    names = [f"c{i}" for i in range(len(header))]
    try:
        data = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "UTF8" in message or "utf8" in message.lower():
            raise InputError(f"{what} is not UTF-8 text; re-save it as UTF-8 and upload again")
        raise InputError(
            f"{what} is malformed or truncated ({_short(message.splitlines()[0] if message else exc)}); "
            f"every row needs as many fields as the header, export the file again"
        )
    if data.num_rows == 0:
        raise InputError(f"{what} has a header but no rows; export the log after the run has written points")
    return Table(header=header, data=data, what=what)


class _NonFinite(str):
    """A JSON NaN/Infinity literal, kept as text so the numeric check reports it by column and row."""


def _nonfinite(constant: str) -> _NonFinite:
    return _NonFinite({"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}.get(constant, constant))


def _jsonl_records(lines: list[str], what: str) -> list[dict]:
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line, parse_constant=_nonfinite)
        except ValueError as exc:
            raise InputError(
                f"{what}: line {n} is not valid JSON ({_short(exc, 80)}); the file may be truncated, export it again"
            )
        if not isinstance(record, dict):
            raise InputError(f"{what}: line {n} is not a JSON object; write one {{\"step\": ..., ...}} object per line")
        records.append(record)
    return records


def _cell(value) -> Optional[str]:
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _records_table(records: list[dict], what: str) -> Table:
    if not records:
        raise InputError(f"{what} holds no records; export the log after the run has written points")
    keys: dict[str, None] = {}
    for record in records:
        keys.update(dict.fromkeys(str(k) for k in record))
    header = list(keys)
    columns = {f"c{i}": pa.array([_cell(r.get(k)) for r in records], type=pa.string()) for i, k in enumerate(header)}
    return Table(header=[h.strip() for h in header], data=pa.table(columns), what=what)


# ---------------------------------------------------------------------------------------------
# shared: a long frame with a run per row -> ParsedRuns

def clean_strings(arr: pa.ChunkedArray, what: str) -> np.ndarray:
    """A string column as an object array of cleaned names (each distinct name checked once)."""
    encoded = pc.dictionary_encode(arr).combine_chunks()
    uniques = [clean_name(raw, what) for raw in encoded.dictionary.to_pylist()]
    lookup = np.asarray(uniques + [None], dtype=object)
    codes = encoded.indices.fill_null(len(uniques)).to_numpy(zero_copy_only=False)
    return lookup[codes]


def _require_filled(table: Table, i: int, what_to_do: str) -> None:
    present = pc.is_valid(table.strings(i)).to_numpy(zero_copy_only=False)
    if not present.all():
        row = int(np.argmin(present)) + 1
        raise InputError(f"{table.what}: column '{table.header[i]}' is empty at row {row}; {what_to_do}")


def _run_names(table: Table, i: Optional[int], default_run: str) -> np.ndarray:
    if i is None:
        return np.full(table.n_rows, default_run, dtype=object)
    _require_filled(table, i, "give every row a run name")
    return clean_strings(table.strings(i), f"{table.what}: run name")


def _size_columns(table: Table, used: set) -> dict[str, int]:
    found = {}
    for field_name, aliases in SIZE_COLUMN_ALIASES.items():
        i = find_column(table.header, aliases, exclude=tuple(used))
        if i is not None:
            found[field_name] = i
            used.add(i)
    return found


def _runs_from_points(
    points: pd.DataFrame,
    run_of_point: np.ndarray,
    sizes_by_row: dict[str, np.ndarray],
    run_of_row: np.ndarray,
    fmt: str,
    table: Table,
    source_file: str,
) -> list[ParsedRun]:
    """Split a long frame into runs (in order of first appearance) and finish each."""
    if len(points) == 0:
        raise InputError(f"{table.what} holds no metric values; check that the metric columns are filled in")
    runs = []
    groups = pd.Series(np.arange(len(points))).groupby(run_of_point, sort=False).indices
    row_groups = pd.Series(np.arange(len(run_of_row))).groupby(run_of_row, sort=False).indices if sizes_by_row else {}
    for name in pd.unique(run_of_point):
        run = ParsedRun(name=name, source_format=fmt, source_file=source_file)
        for field_name, values in sizes_by_row.items():
            mine = values[row_groups[name]]
            mine = mine[~np.isnan(mine)]
            if len(mine) == 0:
                continue
            if not np.all(mine == mine[0]):
                raise InputError(
                    f"{table.what}: run {name!r} has more than one {field_name} ({mine[0]:g} and "
                    f"{mine[mine != mine[0]][0]:g}); a size column must hold one value per run"
                )
            setattr(run, field_name, float(mine[0]))
        run.metrics = points.iloc[groups[name]].reset_index(drop=True)
        runs.append(finish_run(run, table.what))
    check_unique_names(runs, table.what)
    return runs


def _sizes_by_row(table: Table, size_cols: dict[str, int]) -> dict[str, np.ndarray]:
    out = {}
    for field_name, i in size_cols.items():
        values = table.numeric(i)
        check_non_negative(values, table.header[i], table.what)
        out[field_name] = values
    return out


def _optional_numeric(table: Table, i: Optional[int]) -> Optional[np.ndarray]:
    if i is None:
        return None
    values = table.numeric(i)
    check_non_negative(values, table.header[i], table.what)
    return values


def _require(table: Table, i: Optional[int], role: str, aliases: tuple, layout: str) -> int:
    if i is None:
        raise InputError(
            f"{table.what} has no {role} column (looked for {', '.join(aliases[:4])}); "
            f"a {layout} file needs one — found columns: {', '.join(table.header[:8])}"
        )
    return i


# ---------------------------------------------------------------------------------------------
# long: run, step, metric, value

def parse_long(table: Table, default_run: str, source_file: str = "", fmt: str = "csv_long") -> list[ParsedRun]:
    header = table.header
    check_unique_columns(header, table.what)  # the bulk path applies the same rule (db/bulk.py)
    run_i = find_column(header, RUN_ALIASES)
    step_i = _require(table, find_column(header, STEP_ALIASES), "step", STEP_ALIASES, "long")
    used = {i for i in (run_i, step_i) if i is not None}
    # 'name' is the metric (as in ParsedRun.metrics) unless a 'metric' column exists; then it is the run.
    metric_i = find_column(header, METRIC_ALIASES[:-1], exclude=tuple(used))
    if metric_i is None:
        metric_i = _require(table, find_column(header, ("name",), exclude=tuple(used)), "metric", METRIC_ALIASES, "long")
    used.add(metric_i)
    if run_i is None:
        run_i = find_column(header, ("name",), exclude=tuple(used))
        if run_i is not None:
            used.add(run_i)
    value_i = _require(table, find_column(header, VALUE_ALIASES, exclude=tuple(used)), "value", VALUE_ALIASES, "long")
    used.add(value_i)
    tokens_i = find_column(header, TOKENS_ALIASES, exclude=tuple(used))
    flops_i = find_column(header, FLOPS_ALIASES, exclude=tuple(used | {tokens_i}))
    wall_i = find_column(header, WALL_ALIASES, exclude=tuple(used | {tokens_i, flops_i}))
    used |= {i for i in (tokens_i, flops_i, wall_i) if i is not None}

    steps = table.numeric(step_i, required=True)
    check_non_negative(steps, header[step_i], table.what)
    values = table.numeric(value_i, required=True)
    _require_filled(table, metric_i, "name the metric on every row")
    metric_names = clean_strings(table.strings(metric_i), f"{table.what}: metric name")
    runs = _run_names(table, run_i, default_run)
    size_cols = _size_columns(table, used)
    points = metrics_frame(
        metric_names, steps, values,
        tokens=_optional_numeric(table, tokens_i),
        flops=_optional_numeric(table, flops_i),
        wall_time=_optional_numeric(table, wall_i),
    )
    return _runs_from_points(points, runs, _sizes_by_row(table, size_cols), runs, fmt, table, source_file)


# ---------------------------------------------------------------------------------------------
# wide: step + one column per metric

def _wide_points(
    table: Table,
    step_i: int,
    metric_cols: list[tuple[int, str]],
    runs: np.ndarray,
    tokens: Optional[np.ndarray],
    flops: Optional[np.ndarray],
    wall: Optional[np.ndarray],
) -> tuple[pd.DataFrame, np.ndarray]:
    steps = table.numeric(step_i, required=True)
    check_non_negative(steps, table.header[step_i], table.what)
    frames, run_parts = [], []
    for i, metric in metric_cols:
        values = table.numeric(i)
        keep = ~np.isnan(values)
        if not keep.any():
            continue
        frames.append(metrics_frame(
            metric, steps[keep], values[keep],
            tokens=None if tokens is None else tokens[keep],
            flops=None if flops is None else flops[keep],
            wall_time=None if wall is None else wall[keep],
        ))
        run_parts.append(runs[keep])
    points = concat_metrics(frames)
    run_of_point = np.concatenate(run_parts) if run_parts else np.empty(0, dtype=object)
    return points, run_of_point


def _check_duplicate_metrics(table: Table, metric_cols: list[tuple[int, str]]) -> None:
    seen = set()
    for _, metric in metric_cols:
        if metric in seen:
            raise InputError(f"{table.what}: column '{metric}' appears twice; rename or drop one of them")
        seen.add(metric)


def parse_wide(table: Table, default_run: str, source_file: str = "", fmt: str = "csv_wide") -> list[ParsedRun]:
    """Wide layout: every column that is not step, run, tokens, flops, wall time or a size is a metric."""
    header = table.header
    step_i = _require(table, find_column(header, STEP_ALIASES), "step", STEP_ALIASES, "wide")
    run_i = find_column(header, RUN_ALIASES)
    used = {i for i in (step_i, run_i) if i is not None}
    tokens_i = find_column(header, TOKENS_ALIASES, exclude=tuple(used))
    flops_i = find_column(header, FLOPS_ALIASES, exclude=tuple(used | {tokens_i}))
    wall_i = find_column(header, WALL_ALIASES, exclude=tuple(used | {tokens_i, flops_i}))
    used |= {i for i in (tokens_i, flops_i, wall_i) if i is not None}
    size_cols = _size_columns(table, used)
    metric_cols = [
        (i, clean_name(h, f"{table.what}: column name"))
        for i, h in enumerate(header)
        if i not in used and h and not _PANDAS_INDEX.match(h)
    ]
    if not metric_cols:
        raise InputError(f"{table.what} has a step column but no metric columns; add e.g. a 'loss' column")
    _check_duplicate_metrics(table, metric_cols)
    runs = _run_names(table, run_i, default_run)
    points, run_of_point = _wide_points(
        table, step_i, metric_cols, runs,
        _optional_numeric(table, tokens_i), _optional_numeric(table, flops_i), _optional_numeric(table, wall_i),
    )
    return _runs_from_points(points, run_of_point, _sizes_by_row(table, size_cols), runs, fmt, table, source_file)


# ---------------------------------------------------------------------------------------------
# W&B

def is_wandb_export_header(header: list[str]) -> bool:
    has_pair = any(WANDB_SEPARATOR in h and not h.endswith(WANDB_ENVELOPE) for h in header[1:])
    return bool(header) and has_pair and "Step" in header  # W&B writes it capitalised


def parse_wandb_export(table: Table, source_file: str = "") -> list[ParsedRun]:
    header = table.header
    step_i = next((i for i, h in enumerate(header) if h.lower() == "step"), None)
    if step_i is None:
        raise InputError(
            f"{table.what} is a W&B export without a 'Step' column; export the chart with Step as its x-axis"
        )
    by_run: dict[str, list[tuple[int, str]]] = {}
    seen: set[tuple[str, str]] = set()
    for i, h in enumerate(header):
        if i == step_i or WANDB_SEPARATOR not in h:
            continue  # envelope columns (__MIN/__MAX) are kept: metric '<metric>__MIN', drawn as a band
        if h.endswith(WANDB_ENVELOPE) and not _numeric_column(table, i):
            continue  # an envelope is an extra: one with stray text (W&B writes " " at gaps) is left out
        run_raw, metric_raw = h.rsplit(WANDB_SEPARATOR, 1)
        run = clean_name(run_raw, f"{table.what}: run name")
        metric = clean_name(metric_raw, f"{table.what}: metric name")
        if metric.startswith("_"):
            continue  # W&B's own bookkeeping (_step, _runtime) beside a run
        if (run, metric) in seen:
            raise InputError(
                f"{table.what} holds two runs named {run!r} (column '{h}' appears twice); "
                f"rename one run in W&B or export them separately"
            )
        seen.add((run, metric))
        by_run.setdefault(run, []).append((i, metric))
    if not by_run:
        raise InputError(f"{table.what} has no '<run> - <metric>' columns; export a W&B chart as CSV")
    frames, run_parts = [], []
    for run, cols in by_run.items():
        names = np.full(table.n_rows, run, dtype=object)
        points, run_of_point = _wide_points(table, step_i, cols, names, None, None, None)
        frames.append(points)
        run_parts.append(run_of_point)
    points = concat_metrics(frames)
    run_of_point = np.concatenate(run_parts)
    return _runs_from_points(points, run_of_point, {}, run_of_point, "wandb_export", table, source_file)


def _numeric_column(table: Table, i: int) -> bool:
    try:
        table.numeric(i)
    except InputError:
        return False
    return True


def _is_serialized_object(table: Table, i: int) -> bool:
    """True for a W&B media/histogram column: every filled cell is a JSON object or list."""
    arr = pc.drop_null(pc.utf8_trim_whitespace(table.strings(i)))
    if len(arr) == 0:
        return False
    starts = pc.or_(pc.starts_with(arr, "{"), pc.starts_with(arr, "["))
    return bool(pc.all(starts).as_py())


def parse_wandb_history(table: Table, default_run: str, source_file: str = "") -> list[ParsedRun]:
    header = table.header
    step_i = header.index("_step")
    run_i = find_column(header, RUN_ALIASES)
    wall_i = header.index("_runtime") if "_runtime" in header else (
        header.index("_timestamp") if "_timestamp" in header else None)
    used = {i for i in (step_i, run_i, wall_i) if i is not None}
    tokens_i = find_column(header, TOKENS_ALIASES, exclude=tuple(used))
    flops_i = find_column(header, FLOPS_ALIASES, exclude=tuple(used | {tokens_i}))
    used |= {i for i in (tokens_i, flops_i) if i is not None}
    metric_cols = []
    for i, h in enumerate(header):
        if i in used or not h or h.startswith("_") or _PANDAS_INDEX.match(h):
            continue  # pandas' index column, W&B bookkeeping (_wandb, _timestamp)
        if _is_serialized_object(table, i):
            continue  # media, tables and histograms are not scalar metrics
        metric_cols.append((i, clean_name(h, f"{table.what}: column name")))
    if not metric_cols:
        raise InputError(f"{table.what} is a W&B history without metric columns; export run.history() with its metrics")
    _check_duplicate_metrics(table, metric_cols)
    runs = _run_names(table, run_i, default_run)
    points, run_of_point = _wide_points(
        table, step_i, metric_cols, runs,
        _optional_numeric(table, tokens_i), _optional_numeric(table, flops_i), _optional_numeric(table, wall_i),
    )
    return _runs_from_points(points, run_of_point, {}, runs, "wandb_history", table, source_file)


def parse(path: str, fmt: str, default_run: str, what: str, source_file: str) -> list[ParsedRun]:
    """Parse one tabular file in layout ``fmt`` (csv_long, csv_wide, wandb_export, wandb_history)."""
    table = read_table(path, what)
    if fmt == "csv_long":
        return parse_long(table, default_run, source_file)
    if fmt == "csv_wide":
        return parse_wide(table, default_run, source_file)
    if fmt == "wandb_export":
        return parse_wandb_export(table, source_file)
    if fmt == "wandb_history":
        if "_step" not in table.header:
            raise InputError(f"{what} has no '_step' column; a W&B history CSV is run.history().to_csv()")
        return parse_wandb_history(table, default_run, source_file)
    raise ValueError(f"not a tabular format: {fmt}")
