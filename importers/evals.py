"""Eval results: lm-evaluation-harness JSON, long and wide CSV tables, a folder or a zip of them.

Layouts
- ``lm_eval_harness``: the harness's results file. ``results`` → task → ``"<metric>,<filter>"``
  (v0.4: ``"acc,none"``, ``"acc_stderr,none"``, ``"exact_match,strict-match"`` …) or ``"<metric>"``
  (v0.3: ``"acc"``, ``"acc_stderr"``). The model comes from ``config.model_args``
  (``pretrained=…,revision=step1000``; a string or a dict), else ``model_name``; the checkpoint
  step from the revision or a ``step1000``/``checkpoint-1000`` path part; ``model_num_parameters``
  gives its size. A metric whose filter is not ``none`` is named ``"<metric>,<filter>"``.
- ``csv_long``: ``run|model, [step,] task, metric, value [, stderr]`` and optionally
  ``family, params, tokens, flops`` columns (one value per run).
- ``csv_wide``: a model column, one column per benchmark, optional ``step``, ``family``,
  ``params``, ``tokens``, ``flops`` (units in the header are applied: ``Model Size (B)``,
  ``Pretraining Data Size (T)``, ``FLOPs (1E21)``). A benchmark column ``<task>_<metric>`` with a
  known metric suffix (``lambada_openai_acc``, ``ipa_transliterate_2_bleu``) is split; any other
  column is a task scored as ``score`` (a fraction in [0, 1]); ``<column>_stderr`` is its stderr.

Nothing here touches the database: :class:`ParsedEvals` is what the store glue writes. Every
failure is an :class:`core.errors.InputError` whose one line says what was wrong and what to do.
"""
from __future__ import annotations

import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Iterable, Optional

import numpy as np
import pandas as pd

from core.errors import InputError
from importers.safety import (
    SNIFF_BYTES, check_not_empty, check_size, clean_name, member_label, read_text, require_text,
    resolve_max_bytes, safe_extract_zip,
)

EVAL_COLUMNS = ["run", "step", "task", "metric", "value", "stderr", "source_file"]
MODEL_COLUMNS = ["run", "family", "n_params", "n_nonembedding_params", "tokens", "flops"]
CHECKPOINT_COLUMNS = ["run", "step", "tokens", "flops"]

# Metrics whose values are fractions in [0, 1] (the harness's names; "score" is a wide table's
# un-suffixed benchmark column). Perplexities, BLEU, chrF, TER, bits-per-byte are not checked.
ACCURACY_METRICS = {
    "acc", "acc_norm", "acc_mutual_info", "accuracy", "exact_match", "em", "f1", "mc1", "mc2",
    "pass@1", "pass@10", "pass@100", "score", "exact", "quasi_exact_match", "contains",
}
# Suffixes that split a wide column "<task>_<metric>"; longest first so acc_norm beats acc.
WIDE_METRIC_SUFFIXES = sorted(
    ACCURACY_METRICS - {"score"} | {"ppl", "perplexity", "word_perplexity", "byte_perplexity",
                                   "bits_per_byte", "bleu", "chrf", "ter", "rouge1", "rouge2", "rougeL",
                                   "brier_score", "mcc"},
    key=len, reverse=True)
# Column aliases (normalised: lower case, units in brackets dropped, other characters → "_").
MODEL_ALIASES = ("run", "model", "model_name", "name", "run_name", "model_id")
STEP_ALIASES = ("step", "global_step", "checkpoint", "iteration", "revision_step")
TASK_ALIASES = ("task", "benchmark", "task_name", "dataset")
METRIC_ALIASES = ("metric", "metric_name", "measure")
VALUE_ALIASES = ("value", "score_value", "result", "val")
STDERR_ALIASES = ("stderr", "std_err", "se", "value_stderr")
FAMILY_ALIASES = ("family", "model_family", "series")
SIZE_ALIASES = {
    "n_params": ("n_params", "params", "params_total", "num_params", "parameters", "n_parameters",
                 "total_params", "model_size", "model_num_parameters"),
    "n_nonembedding_params": ("n_nonembedding_params", "params_nonembedding", "non_embedding_params",
                              "nonembedding_params"),
    "tokens": ("tokens", "n_tokens", "train_tokens", "training_tokens", "trained_tokens",
               "pretraining_data_size", "pretraining_tokens", "data_size"),
    "flops": ("flops", "flops_6nd_total", "flops_6nd", "training_flops", "train_flops", "compute",
              "total_flops"),
}
# Wide-table columns that describe the model, not a benchmark: ignored.
IGNORED_COLUMNS = ("deduped", "n_layers", "d_model", "n_heads", "n_head", "vocab_size", "seq_len",
                   "size", "source_path", "path", "file", "notes", "license", "url", "date", "revision",
                   "link", "type", "precision", "dtype", "architecture", "arch")
# Header unit markers: "Model Size (B)" → ×1e9, "FLOPs (1E21)" → ×1e21.
UNIT_MULTIPLIERS = {"k": 1e3, "m": 1e6, "b": 1e9, "t": 1e12}
_UNIT_RE = re.compile(r"\(\s*(1e[+-]?\d+|[kmbt])\s*\)", re.IGNORECASE)
# A checkpoint step inside a revision or path: step1000, global_step1000, checkpoint-1000, iter_0001000.
_STEP_RE = re.compile(r"(?:^|[/_\-=.])(?:global_step|step|checkpoint|ckpt|iter)[_\-]?(\d+)(?=$|[/_\-.])",
                      re.IGNORECASE)
# Harness keys inside a task's results that are labels, not metrics.
_HARNESS_LABEL_KEYS = {"alias", "name", "task", "group", "sample_len", "samples", "sample_count"}
TEXT_EXTS = (".json", ".csv", ".tsv")


@dataclass
class ParsedEvals:
    evals: pd.DataFrame  # EVAL_COLUMNS: run, step (NaN = final/unknown), task, metric, value, stderr, source_file
    models: pd.DataFrame  # MODEL_COLUMNS, one row per run: sizes the file gives (NaN where it does not)
    checkpoints: pd.DataFrame = field(default_factory=lambda: _empty(CHECKPOINT_COLUMNS))  # per-step
    #                           tokens/FLOPs where the file gives them (the Pythia table does)
    source_format: str = ""  # lm_eval_harness, csv_long, csv_wide, or bundle (a folder/zip/several)
    source_files: list = field(default_factory=list)  # file names read (not server paths)
    warnings: list = field(default_factory=list)  # what was skipped and why, one line each

    def to_dict(self) -> dict:
        """Counts and warnings for the CLI's ``--json``."""
        return {"source_format": self.source_format, "source_files": list(self.source_files),
                "n_evals": int(len(self.evals)), "n_models": int(len(self.models)),
                "runs": sorted(map(str, self.models["run"])), "tasks": sorted(map(str, pd.unique(self.evals["task"]))),
                "warnings": list(self.warnings)}


def _empty(columns: list) -> pd.DataFrame:
    text = {"run", "task", "metric", "family", "source_file"}
    return pd.DataFrame({c: pd.Series(dtype=object if c in text else "float64") for c in columns})


def normalize(name: str) -> str:
    """Header → alias key: units in brackets dropped, lower case, other characters → '_'."""
    base = _UNIT_RE.sub("", str(name))
    return re.sub(r"[^0-9a-z@]+", "_", base.strip().lower()).strip("_")


def unit_multiplier(header: str) -> float:
    """'Model Size (B)' → 1e9, 'FLOPs (1E21)' → 1e21, no marker → 1."""
    m = _UNIT_RE.search(str(header))
    if not m:
        return 1.0
    tag = m.group(1).lower()
    return UNIT_MULTIPLIERS[tag] if tag in UNIT_MULTIPLIERS else float(tag)


def is_accuracy_like(metric: str) -> bool:
    """True for metrics whose values must be fractions in [0, 1] (acc, acc_norm, exact_match, f1 …)."""
    base = str(metric).split(",", 1)[0].strip().lower()
    return base in ACCURACY_METRICS or base.startswith("pass@")


def step_from_text(text: Optional[str]) -> float:
    """The checkpoint step in 'step1000', 'main' (NaN), '/ckpt/run/global_step200' (200) …"""
    if not text:
        return float("nan")
    m = _STEP_RE.search(str(text))
    return float(m.group(1)) if m else float("nan")


def _model_from_path(value: str) -> str:
    """'EleutherAI/pythia-160m' stays; a local path gives its last part that is not a checkpoint."""
    v = value.strip().rstrip("/")
    looks_local = v.startswith(("/", "./", "../", "~")) or v.count("/") >= 2
    if not looks_local:
        return v
    parts = [p for p in v.split("/") if p and p not in (".", "..", "~")]
    keep = [p for p in parts if np.isnan(step_from_text("/" + p)) and p.lower() not in ("checkpoints", "ckpt", "hf")]
    return keep[-1] if keep else parts[-1]


def parse_model_args(model_args) -> dict:
    """'pretrained=EleutherAI/pythia-160m,revision=step1000,dtype=float' → dict (a dict is kept)."""
    if model_args is None:
        return {}
    if isinstance(model_args, dict):
        return {str(k): v for k, v in model_args.items()}
    out = {}
    for part in str(model_args).split(","):
        if "=" in part:
            key, val = part.split("=", 1)
            out[key.strip()] = val.strip()
    return out


# --------------------------------------------------------------------------------------------
# Checks shared by every layout
# --------------------------------------------------------------------------------------------
def _finish(evals: pd.DataFrame, models: pd.DataFrame, checkpoints: pd.DataFrame, fmt: str,
            source_file: str, what: str, warnings: list) -> ParsedEvals:
    if evals.empty:
        raise InputError(f"{what} holds no eval scores; give a harness results file or a table with "
                         "a model column and score columns.")
    evals = evals[EVAL_COLUMNS].reset_index(drop=True)
    evals["value"] = evals["value"].astype("float64")
    evals["stderr"] = evals["stderr"].astype("float64")
    evals["step"] = evals["step"].astype("float64")
    acc = evals["metric"].map(is_accuracy_like).to_numpy(dtype=bool)
    out = acc & ((evals["value"] < 0) | (evals["value"] > 1)).to_numpy()
    if out.any():
        r = evals[out].iloc[0]
        raise InputError(f"{what}: {r['task']} {r['metric']} = {r['value']:g} for {r['run']} is outside "
                         f"[0, 1] ({int(out.sum())} such score(s)); accuracy-like scores must be fractions "
                         "— divide percentages by 100.")
    neg = (evals["stderr"] < 0).to_numpy()
    if neg.any():
        r = evals[neg].iloc[0]
        raise InputError(f"{what}: stderr of {r['task']} {r['metric']} for {r['run']} is negative "
                         f"({r['stderr']:g}); give a standard error ≥ 0 or leave it empty.")
    key = ["run", "step", "task", "metric"]
    dup = evals.assign(step=evals["step"].fillna(-1.0)).duplicated(key, keep=False)
    if dup.any():
        r = evals[dup.to_numpy()].iloc[0]
        raise InputError(f"{what} gives {r['task']} {r['metric']} for {r['run']} at step "
                         f"{r['step']:g} more than once; keep one score per run, step, task and metric.")
    for col in ("n_params", "n_nonembedding_params", "tokens", "flops"):
        bad = (models[col] < 0) | np.isinf(models[col])
        if bad.any():
            raise InputError(f"{what}: {col} of {models.loc[bad, 'run'].iloc[0]} is "
                             f"{models.loc[bad, col].iloc[0]:g}; sizes must be finite and ≥ 0.")
    return ParsedEvals(evals=evals, models=models[MODEL_COLUMNS].reset_index(drop=True),
                       checkpoints=checkpoints[CHECKPOINT_COLUMNS].reset_index(drop=True),
                       source_format=fmt, source_files=[source_file] if source_file else [],
                       warnings=warnings)


def _number(value, where: str, what: str) -> float:
    """A score cell → float; text that is not a number is an InputError naming the cell."""
    if isinstance(value, bool):
        raise InputError(f"{what}: {where} is {value}, not a number; give the score as a number.")
    if isinstance(value, (int, float, np.integer, np.floating)):
        return float(value)
    try:
        return float(str(value).strip())
    except ValueError:
        raise InputError(f"{what}: {where} is {str(value)[:40]!r}, not a number; fix that cell.")


# --------------------------------------------------------------------------------------------
# lm-evaluation-harness results JSON
# --------------------------------------------------------------------------------------------
def harness_run_and_step(doc: dict) -> tuple:
    """(run name or None, step or NaN) from a results file's config / model_name / revision."""
    config = doc.get("config") if isinstance(doc.get("config"), dict) else {}
    args = parse_model_args(config.get("model_args"))
    pretrained = args.get("pretrained") or args.get("model") or args.get("path") or args.get("engine")
    name = pretrained or doc.get("model_name") or config.get("model_name")
    if not name and isinstance(config.get("model"), str) and config.get("model") not in ("hf", "hf-auto", "vllm", "gpt2"):
        name = config["model"]
    run = _model_from_path(str(name)) if name else None
    step = step_from_text(args.get("revision") or doc.get("model_revision"))
    if np.isnan(step) and name:
        step = step_from_text(str(name))
    return run, step


def parse_harness_results(doc, what: str = "results file", *, run: Optional[str] = None,
                          step: Optional[float] = None, source_file: str = "") -> ParsedEvals:
    """Scores of one lm-evaluation-harness results document (already loaded from JSON)."""
    if not isinstance(doc, dict) or "results" not in doc:
        raise InputError(f"{what} has no 'results' key, so it is not an lm-evaluation-harness results "
                         "file; upload the results_*.json the harness wrote (not samples or a config).")
    results = doc["results"]
    if not isinstance(results, dict) or not results:
        raise InputError(f"{what}: 'results' is empty or not a task → metrics mapping; re-run the "
                         "harness or upload its results_*.json.")
    file_run, file_step = harness_run_and_step(doc)
    run_name = clean_name(run or file_run or os.path.splitext(os.path.basename(source_file or what))[0],
                          f"{what}: model name")
    step_value = float(step) if step is not None else file_step
    warnings, rows = [], []
    sections = [results] + ([doc["groups"]] if isinstance(doc.get("groups"), dict) else [])
    seen = set()
    for section in sections:
        for task, metrics in section.items():
            if task in seen and section is not results:
                continue
            seen.add(task)
            if not isinstance(metrics, dict):
                raise InputError(f"{what}: results[{task!r}] is not a metric → value mapping; upload "
                                 "an unmodified harness results file.")
            values, stderrs = {}, {}
            for key, val in metrics.items():
                if key in _HARNESS_LABEL_KEYS:
                    continue
                metric, _, filt = key.partition(",")
                is_stderr = metric.endswith("_stderr")
                if is_stderr:
                    metric = metric[: -len("_stderr")]
                name = metric if filt in ("", "none") else f"{metric},{filt}"
                if val is None or (isinstance(val, str) and val.strip().upper() in ("N/A", "NA", "")):
                    if not is_stderr:
                        warnings.append(f"{what}: {task} {name} has no value; skipped.")
                    continue
                if isinstance(val, (list, dict)):
                    warnings.append(f"{what}: {task} {key} is not a single number; skipped.")
                    continue
                number = _number(val, f"results[{task!r}][{key!r}]", what)
                (stderrs if is_stderr else values)[name] = number
            for name, value in values.items():
                rows.append({"run": run_name, "step": step_value, "task": str(task), "metric": name,
                             "value": value, "stderr": stderrs.get(name, np.nan),
                             "source_file": source_file})
    evals = pd.DataFrame(rows, columns=EVAL_COLUMNS) if rows else _empty(EVAL_COLUMNS)
    n_params = doc.get("model_num_parameters")
    models = pd.DataFrame([{"run": run_name, "family": None,
                            "n_params": float(n_params) if isinstance(n_params, (int, float)) and n_params > 0 else np.nan,
                            "n_nonembedding_params": np.nan, "tokens": np.nan, "flops": np.nan}],
                          columns=MODEL_COLUMNS)
    return _finish(evals, models, _empty(CHECKPOINT_COLUMNS), "lm_eval_harness", source_file, what, warnings)


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------
def _find(columns: list, aliases: tuple) -> Optional[str]:
    norm = {normalize(c): c for c in reversed(columns)}
    for alias in aliases:
        if alias in norm:
            return norm[alias]
    return None


def _numeric_column(df: pd.DataFrame, col: str, what: str, *, scale: float = 1.0) -> np.ndarray:
    """A column of text cells → float64 (empty → NaN); a non-number names its row."""
    text = df[col].astype(object).where(df[col].notna(), "").astype(str).str.strip()
    numbers = pd.to_numeric(text.where(text != "", np.nan), errors="coerce")
    bad = numbers.isna() & (text != "") & ~text.str.lower().isin(["nan", "na", "n/a", "none", "-"])
    if bad.any():
        row = int(np.argmax(bad.to_numpy())) + 1
        raise InputError(f"{what}: column '{col}' holds {text[bad].iloc[0][:40]!r} at row {row}, "
                         "not a number; fix that cell or leave it empty.")
    values = numbers.to_numpy(dtype=np.float64) * scale
    if np.isinf(values).any():
        row = int(np.argmax(np.isinf(values))) + 1
        raise InputError(f"{what}: column '{col}' holds an infinite value at row {row}; give a number.")
    return values


def _run_column(df: pd.DataFrame, col: str, what: str) -> np.ndarray:
    names = df[col].astype(object)
    missing = names.isna() | (names.astype(str).str.strip() == "")
    if missing.any():
        raise InputError(f"{what}: column '{col}' is empty at row {int(np.argmax(missing.to_numpy())) + 1}; "
                         "give every row its model or run name.")
    return np.array([clean_name(v, f"{what}: model name") for v in names], dtype=object)


def _size_columns(columns: list) -> dict:
    found = {}
    for field_name, aliases in SIZE_ALIASES.items():
        col = _find(columns, aliases)
        if col is not None:
            found[field_name] = col
    return found


def _models_frame(runs: np.ndarray, steps: np.ndarray, family: Optional[np.ndarray], sizes: dict,
                  what: str) -> tuple:
    """One row per run (sizes at its last step) and per-step tokens/FLOPs checkpoints."""
    df = pd.DataFrame({"run": runs, "step": steps})
    df["family"] = family if family is not None else None
    for name in ("n_params", "n_nonembedding_params", "tokens", "flops"):
        df[name] = sizes.get(name, np.full(len(df), np.nan))
    order = df.assign(_s=df["step"].fillna(np.inf)).sort_values("_s", kind="stable")
    groups = order.groupby("run", sort=False)
    models = groups[["family", "n_params", "n_nonembedding_params"]].first()
    if family is not None:
        n_fams = groups["family"].nunique()
        if (n_fams > 1).any():
            run = n_fams.index[n_fams > 1][0]
            raise InputError(f"{what}: model {run} is listed in several families; give one family per model.")
    for name in ("n_params", "n_nonembedding_params"):
        lo, hi = groups[name].min(), groups[name].max()
        bad = hi > lo * (1 + 1e-6)
        if bad.any():
            run = bad.index[bad][0]
            raise InputError(f"{what}: model {run} has {name} {lo[run]:g} and {hi[run]:g}; give one size per model.")
    last = groups[["tokens", "flops"]].last()  # the final checkpoint's (last non-empty by step)
    models = models.join(last).reset_index()[MODEL_COLUMNS]
    ck = df[df["step"].notna() & (df["tokens"].notna() | df["flops"].notna())]
    checkpoints = ck[CHECKPOINT_COLUMNS].drop_duplicates(["run", "step"]) if len(ck) else _empty(CHECKPOINT_COLUMNS)
    return models, checkpoints


def parse_long_table(df: pd.DataFrame, what: str = "table", source_file: str = "") -> ParsedEvals:
    """``run|model, [step,] task, metric, value [, stderr, family, params, tokens, flops]``, a score a row."""
    cols = list(df.columns)
    run_col, task_col = _find(cols, MODEL_ALIASES), _find(cols, TASK_ALIASES)
    metric_col, value_col = _find(cols, METRIC_ALIASES), _find(cols, VALUE_ALIASES)
    for role, col in (("model/run", run_col), ("task", task_col), ("metric", metric_col), ("value", value_col)):
        if col is None:
            raise InputError(f"{what} has no {role} column; a long eval table needs run, task, metric, "
                             "value (and optionally step, stderr).")
    step_col, stderr_col = _find(cols, STEP_ALIASES), _find(cols, STDERR_ALIASES)
    runs = _run_column(df, run_col, what)
    steps = _numeric_column(df, step_col, what) if step_col else np.full(len(df), np.nan)
    values = _numeric_column(df, value_col, what)
    if np.isnan(values).any():
        raise InputError(f"{what}: column '{value_col}' is empty at row {int(np.argmax(np.isnan(values))) + 1}; "
                         "every row needs a score (drop rows without one).")
    for col in (task_col, metric_col):
        empty = df[col].isna() | (df[col].astype(str).str.strip() == "")
        if empty.any():
            raise InputError(f"{what}: column '{col}' is empty at row {int(np.argmax(empty.to_numpy())) + 1}; "
                             "name the task and metric on every row.")
    evals = pd.DataFrame({
        "run": runs, "step": steps, "task": df[task_col].astype(str).str.strip().to_numpy(dtype=object),
        "metric": df[metric_col].astype(str).str.strip().to_numpy(dtype=object), "value": values,
        "stderr": _numeric_column(df, stderr_col, what) if stderr_col else np.nan,
        "source_file": source_file,
    })
    size_cols = _size_columns(cols)
    sizes = {k: _numeric_column(df, c, what, scale=unit_multiplier(c)) for k, c in size_cols.items()}
    fam_col = _find(cols, FAMILY_ALIASES)
    family = df[fam_col].astype(object).where(df[fam_col].notna(), None).to_numpy() if fam_col else None
    models, checkpoints = _models_frame(runs, steps, family, sizes, what)
    return _finish(evals, models, checkpoints, "csv_long", source_file, what, [])


def _split_benchmark(col: str) -> tuple:
    """'lambada_openai_acc' → ('lambada_openai', 'acc'); 'MMLU' → ('MMLU', 'score')."""
    low = str(col).strip()
    for suffix in WIDE_METRIC_SUFFIXES:
        if low.lower().endswith("_" + suffix.lower()) and len(low) > len(suffix) + 1:
            return low[: -len(suffix) - 1], suffix
        if low.lower() == suffix.lower() and suffix not in ACCURACY_METRICS:
            return low, suffix  # a column named just "BLEU"
    return low, "score"


def parse_wide_table(df: pd.DataFrame, what: str = "table", source_file: str = "") -> ParsedEvals:
    """A model column, one column per benchmark, optional step / family / params / tokens / flops."""
    cols = list(df.columns)
    run_col = _find(cols, MODEL_ALIASES)
    if run_col is None:
        raise InputError(f"{what} has no model column; a wide eval table needs a 'model' (or 'run') "
                         "column and one column per benchmark.")
    step_col, fam_col = _find(cols, STEP_ALIASES), _find(cols, FAMILY_ALIASES)
    size_cols = _size_columns(cols)
    used = {run_col, step_col, fam_col, *size_cols.values()} - {None}
    runs = _run_column(df, run_col, what)
    steps = _numeric_column(df, step_col, what) if step_col else np.full(len(df), np.nan)
    warnings = []
    bench_cols, stderr_cols = [], {}
    for c in cols:
        if c in used or normalize(c) in IGNORED_COLUMNS:
            continue
        if normalize(c).endswith("_stderr"):
            stderr_cols[str(c)[: -len("_stderr")]] = c
            continue
        cells = df[c].dropna().astype(str).str.strip()
        cells = cells[cells != ""]
        if len(cells) and pd.to_numeric(cells, errors="coerce").isna().all():
            warnings.append(f"{what}: column '{c}' holds text, not scores; ignored.")
            continue
        bench_cols.append(c)
    if not bench_cols:
        raise InputError(f"{what} has no benchmark score columns besides the model/size columns; "
                         "add one numeric column per benchmark.")
    parts = []
    for c in bench_cols:
        values = _numeric_column(df, c, what)
        stderr = (_numeric_column(df, stderr_cols[c], what) if c in stderr_cols
                  else np.full(len(df), np.nan))
        keep = ~np.isnan(values)
        task, metric = _split_benchmark(c)
        parts.append(pd.DataFrame({"run": runs[keep], "step": steps[keep], "task": task, "metric": metric,
                                   "value": values[keep], "stderr": stderr[keep],
                                   "source_file": source_file}))
    evals = pd.concat(parts, ignore_index=True)
    sizes = {k: _numeric_column(df, c, what, scale=unit_multiplier(c)) for k, c in size_cols.items()}
    family = df[fam_col].astype(object).where(df[fam_col].notna(), None).to_numpy() if fam_col else None
    models, checkpoints = _models_frame(runs, steps, family, sizes, what)
    return _finish(evals, models, checkpoints, "csv_wide", source_file, what, warnings)


def parse_eval_table(df: pd.DataFrame, what: str = "table", source_file: str = "") -> ParsedEvals:
    """Long (task + metric + value columns) or wide (a model column + benchmark columns)."""
    if df.shape[1] == 0 or len(df) == 0:
        raise InputError(f"{what} has no rows; give a header and one row per model (or per score).")
    cols = list(df.columns)
    if all(_find(cols, a) for a in (TASK_ALIASES, METRIC_ALIASES, VALUE_ALIASES)):
        return parse_long_table(df, what, source_file)
    if _find(cols, MODEL_ALIASES):
        return parse_wide_table(df, what, source_file)
    raise InputError(f"{what} has columns {[str(c) for c in cols[:6]]}, an unknown eval layout; use "
                     "run, step, task, metric, value (long) or a model column plus one column per benchmark (wide).")


def _read_csv_text(text: str, what: str, sep: Optional[str] = None) -> pd.DataFrame:
    if sep is None:
        first = text.lstrip().split("\n", 1)[0]
        sep = "\t" if first.count("\t") > first.count(",") else ","
    try:
        # Every cell as text: _numeric_column tells an empty cell from a non-number by row.
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                           skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        raise InputError(f"{what} is not a readable CSV ({str(exc).splitlines()[0][:120]}); "
                         "check the delimiter and quoting.")


# --------------------------------------------------------------------------------------------
# Files, folders, zips, uploads
# --------------------------------------------------------------------------------------------
def parse_eval_text(text: str, filename: str, *, run: Optional[str] = None, step: Optional[float] = None,
                    what: Optional[str] = None) -> ParsedEvals:
    """One file's text: JSON → harness results; anything else → a CSV/TSV table."""
    what = what or filename
    stripped = text.lstrip()
    if not stripped:
        raise InputError(f"{what} is empty; upload the results file itself.")
    if stripped[0] in "{[" or filename.lower().endswith(".json"):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"{what} is not valid JSON (line {exc.lineno}: {exc.msg}); upload the "
                             "harness's results file unmodified.")
        return parse_harness_results(doc, what, run=run, step=step, source_file=filename)
    sep = "\t" if filename.lower().endswith((".tsv", ".tab")) else None
    return parse_eval_table(_read_csv_text(text, what, sep), what, source_file=filename)


def merge_parsed(parts: list, what: str = "upload") -> ParsedEvals:
    """Several parsed files as one: later files win a repeated (run, step, task, metric), with a
    warning; a model's sizes are the first non-empty ones given."""
    if not parts:
        raise InputError(f"{what} holds no eval results; upload harness results_*.json or eval CSVs.")
    if len(parts) == 1:
        return parts[0]
    warnings = [w for p in parts for w in p.warnings]
    evals = pd.concat([p.evals for p in parts], ignore_index=True)
    key = evals.assign(step=evals["step"].fillna(-1.0))[["run", "step", "task", "metric"]]
    dup = key.duplicated(keep="last")
    if dup.any():
        warnings.append(f"{what}: {int(dup.sum())} score(s) given in more than one file; the last file's kept.")
        evals = evals[~dup.to_numpy()].reset_index(drop=True)
    models = pd.concat([p.models for p in parts], ignore_index=True)
    models = models.groupby("run", sort=False, as_index=False).first()[MODEL_COLUMNS]
    checkpoints = pd.concat([p.checkpoints for p in parts if len(p.checkpoints)] or [_empty(CHECKPOINT_COLUMNS)],
                            ignore_index=True).drop_duplicates(["run", "step"], keep="last")
    formats = {p.source_format for p in parts}
    return ParsedEvals(evals=evals, models=models, checkpoints=checkpoints.reset_index(drop=True),
                       source_format=formats.pop() if len(formats) == 1 else "bundle",
                       source_files=[f for p in parts for f in p.source_files], warnings=warnings)


def _list_files(root: str) -> list:
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            if not name.startswith(".") and os.path.isfile(full) and not os.path.islink(full):
                out.append(os.path.relpath(full, root))
    return out


def _parse_folder(root: str, what: str, run: Optional[str], step: Optional[float]) -> ParsedEvals:
    files = _list_files(root)
    parts, warnings = [], []
    for rel in files:
        label = member_label(what, rel)
        if not rel.lower().endswith(TEXT_EXTS):
            warnings.append(f"{label}: not a .json/.csv/.tsv eval file; skipped.")
            continue
        text = read_text(os.path.join(root, rel), label)
        try:
            parts.append(parse_eval_text(text, rel.replace(os.sep, "/"), run=run, step=step, what=label))
        except InputError as exc:
            # A config or sample file beside the results is skipped; a broken results file is not.
            if rel.lower().endswith(".json") and "has no 'results' key" in str(exc):
                warnings.append(f"{label}: no 'results' key (not a harness results file); skipped.")
                continue
            raise
    merged = merge_parsed(parts, what)
    merged.warnings = warnings + merged.warnings
    return merged


def parse_eval_file(path: str, *, run: Optional[str] = None, step: Optional[float] = None,
                    max_bytes: Optional[int] = None, what: Optional[str] = None) -> ParsedEvals:
    """A harness results .json, an eval .csv/.tsv, a folder of them, or a .zip of them.

    ``run``/``step`` override the model name and checkpoint a harness file would give.
    """
    what = what or os.path.basename(os.path.normpath(path)) or "upload"
    limit = resolve_max_bytes(max_bytes)
    if os.path.isdir(path):
        check_size(sum(os.path.getsize(os.path.join(path, r)) for r in _list_files(path)), limit, what)
        return _parse_folder(path, what, run, step)
    if not os.path.isfile(path):
        raise InputError(f"{what} does not exist; give the path of a results file, CSV, folder or zip.")
    n_bytes = os.path.getsize(path)
    check_not_empty(n_bytes, what)
    check_size(n_bytes, limit, what)
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        with tempfile.TemporaryDirectory(prefix="scalescope-evals-") as tmp:
            safe_extract_zip(path, tmp, what)
            return _parse_folder(tmp, what, run, step)
    require_text(head, what)
    return parse_eval_text(read_text(path, what), os.path.basename(path), run=run, step=step, what=what)


def parse_eval_upload(filename: str, data: bytes, *, run: Optional[str] = None,
                      step: Optional[float] = None, max_bytes: Optional[int] = None) -> ParsedEvals:
    """Uploaded bytes (Streamlit's file_uploader) → ParsedEvals, via a private temporary file."""
    display = str(filename).replace("\\", "/").rstrip("/").split("/")[-1] or "upload"
    safe = re.sub(r"[^\w.\-+=@ ]", "_", display)[-150:].strip() or "upload"
    with tempfile.TemporaryDirectory(prefix="scalescope-evals-") as tmp:
        path = os.path.join(tmp, "upload" if safe in (".", "..") else safe)
        with open(path, "wb") as fh:
            fh.write(data)
        return parse_eval_file(path, run=run, step=step, max_bytes=max_bytes, what=display)


def parse_eval_files(paths: Iterable[str], **kwargs) -> ParsedEvals:
    """Several paths (files, folders, zips) as one :class:`ParsedEvals` (see :func:`merge_parsed`)."""
    parts = [parse_eval_file(p, **kwargs) for p in paths]
    return merge_parsed(parts, "files")
