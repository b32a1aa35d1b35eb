"""Eval results (issue 7): import glue, reading back with each eval's scale, fits (the SQL is in
db/evals.py and db/runs.py; this module decides what to store and how to read it).

- Each eval attaches to an existing run matched by name — and by step where the run has logged
  checkpoints: an eval past the run's last logged step is refused, since that checkpoint cannot
  exist (a wrong name or step) — or creates a model entry (source_format "evals") with the sizes
  the file gives. Per-checkpoint tokens/FLOPs a file gives (the Pythia table) are kept in the
  run's config as ``eval_checkpoints``.
- One import is one transaction: every check runs first, and any error rolls back, so a bad file
  leaves the store unchanged. Importing a score again for the same run, step, task and metric
  replaces the old one (counted as ``rows_replaced``).
- :func:`load_evals` returns every eval with the run's family and sizes and, at the eval's step,
  tokens, FLOPs and the training loss (a DuckDB ASOF join on the run's metrics).
"""
from __future__ import annotations

import json
import math
from typing import Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from core.downstream import DownstreamFit, DownstreamFitConfig, fit_downstream
from core.errors import InputError
from core.observational import PCAConfig, eval_matrix
from core.progress import ProgressFn
from db.evals import delete_same_scores, evals_with_scale, insert_evals
from db.fits import get_fit, save_fit
from db.runs import insert_runs, last_logged_steps, run_ids_named, runs_named, update_run_fields
from db.store import Store
from services.demo_names import OBSSCALING_TAG
from services.ingest import default_tag
from services.runs import run_tags
from importers.evals import (
    ParsedEvals, is_accuracy_like, merge_parsed, parse_eval_files, parse_eval_upload,
)

EVAL_COLUMNS = ["run", "step", "task", "metric", "value", "stderr"]
SIZE_KEYS = ("n_params", "n_nonembedding_params", "tokens", "flops")
# Scale axes an eval can be plotted against: column of load_evals -> axis title.
X_AXES = {"flops": "training compute (FLOPs)", "n_params": "parameters", "tokens": "training tokens",
          "loss": "training loss"}
# Metrics where lower is better: left out of the PCA (it assumes higher = more capable).
LOWER_IS_BETTER = ("ppl", "perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "ter",
                   "brier_score", "loss")
# Relative difference above which a file's size for an existing run is reported as a conflict.
SIZE_CONFLICT_RTOL = 0.01
# An eval step may sit this far past a run's last logged metric step (a checkpoint saved after
# the last log line) before it counts as a checkpoint the run does not have.
STEP_SLACK = 0.05


# --------------------------------------------------------------------------------------------
# Import
# --------------------------------------------------------------------------------------------
def _finite_or_none(value) -> Optional[float]:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _check_rows(evals: pd.DataFrame) -> pd.DataFrame:
    """Every check that needs no database; returns a clean copy (float step/value/stderr)."""
    missing = [c for c in EVAL_COLUMNS if c not in evals.columns]
    if missing:
        raise InputError(f"Eval rows lack the column {missing[0]!r}; give run, step, task, metric, value, stderr.")
    if evals.empty:
        raise InputError("The file holds no eval results; give a harness results file or an eval table.")
    frame = evals[EVAL_COLUMNS].copy().reset_index(drop=True)
    names = frame["run"].astype(object)
    empty = names.isna() | (names.astype(str).str.strip() == "")
    if empty.any():
        row = int(np.argmax(empty.to_numpy())) + 1
        raise InputError(f"Eval row {row} has no run/model name; name every row's model.")
    frame["run"] = names.astype(str).str.strip()
    for col in ("task", "metric"):
        blank = frame[col].isna() | (frame[col].astype(str).str.strip() == "")
        if blank.any():
            row = int(np.argmax(blank.to_numpy())) + 1
            raise InputError(f"Eval row {row} has no {col}; name the task and metric on every row.")
        frame[col] = frame[col].astype(str).str.strip()
    for col in ("step", "value", "stderr"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    bad = ~np.isfinite(frame["value"].to_numpy())
    if bad.any():
        r = frame[bad].iloc[0]
        raise InputError(f"The score of {r['task']} {r['metric']} for {r['run']} is missing, NaN or infinite; "
                         "fix that row and import again.")
    steps = frame["step"].to_numpy()
    if (steps[~np.isnan(steps)] < 0).any() or np.isinf(steps).any():
        raise InputError("An eval step is negative or infinite; steps count up from 0 (leave empty for a final model).")
    acc = frame["metric"].map(is_accuracy_like).to_numpy(dtype=bool)
    out = acc & ((frame["value"] < 0) | (frame["value"] > 1)).to_numpy()
    if out.any():
        r = frame[out].iloc[0]
        raise InputError(f"{r['task']} {r['metric']} = {r['value']:g} for {r['run']} is outside [0, 1]; "
                         "accuracy-like scores must be fractions — divide percentages by 100.")
    if (frame["stderr"] < 0).any():
        raise InputError("An eval stderr is negative; give a standard error ≥ 0 or leave it empty.")
    dup = frame.assign(step=frame["step"].fillna(-1.0)).duplicated(["run", "step", "task", "metric"])
    if dup.any():
        r = frame[dup.to_numpy()].iloc[0]
        raise InputError(f"{r['task']} {r['metric']} for {r['run']} at step {r['step']:g} is given twice; "
                         "keep one score per run, step, task and metric.")
    return frame


def _model_sizes(models: Optional[pd.DataFrame]) -> dict:
    """run -> {family, n_params, …} with only the known (finite, positive) sizes."""
    out: dict = {}
    if models is None or not len(models):
        return out
    if "run" not in models.columns:
        raise InputError("The model table lacks a 'run' column; give one row per model with its name.")
    for rec in models.drop_duplicates("run").to_dict("records"):
        info = {}
        fam = rec.get("family")
        if fam is not None and not (isinstance(fam, float) and math.isnan(fam)) and str(fam).strip():
            info["family"] = str(fam).strip()
        for key in SIZE_KEYS:
            if key not in rec or rec[key] is None or (isinstance(rec[key], float) and math.isnan(rec[key])):
                continue
            value = _finite_or_none(rec[key])
            if value is None or value <= 0:
                raise InputError(f"Model {rec['run']!r}: {key} must be a positive finite number, got {rec[key]!r}; "
                                 "fix it or leave it empty.")
            info[key] = value
        out[str(rec["run"]).strip()] = info
    return out


def _checkpoint_map(checkpoints: Optional[pd.DataFrame]) -> dict:
    """run -> sorted list of {step, tokens, flops} (NaN → None)."""
    out: dict = {}
    if checkpoints is None or not len(checkpoints):
        return out
    ck = checkpoints.dropna(subset=["step"]).sort_values(["run", "step"])
    for run, part in ck.groupby("run", sort=False):
        out[str(run)] = [{"step": float(r["step"]), "tokens": _finite_or_none(r.get("tokens")),
                          "flops": _finite_or_none(r.get("flops"))} for r in part.to_dict("records")]
    return out


def _tokens_per_step(points: list) -> Optional[float]:
    """The constant tokens/step of a run's checkpoints (Pythia: 2,097,152), else None."""
    ratios = [p["tokens"] / p["step"] for p in points if p["step"] > 0 and p["tokens"]]
    if len(ratios) < 2:
        return None
    lo, hi = min(ratios), max(ratios)
    return float(np.median(ratios)) if hi <= lo * (1 + 1e-6) else None


def _merge_checkpoints(old: list, new: list) -> list:
    by_step = {float(p["step"]): p for p in (old or [])}
    by_step.update({float(p["step"]): p for p in new})
    return [by_step[s] for s in sorted(by_step)]


def store_evals(store: Store, evals: pd.DataFrame, models: Optional[pd.DataFrame] = None,
                source_file: str = "", checkpoints: Optional[pd.DataFrame] = None,
                tags: Sequence[str] = ("evals",)) -> dict:
    """Attach eval rows to runs in ONE transaction.

    ``evals``: columns run, step (NaN = final model), task, metric, value, stderr [, source_file].
    ``models``: run, family, n_params, n_nonembedding_params, tokens, flops — sizes of a run that
    does not exist yet (it is created as a model entry), or that fill an existing run's empty sizes.
    ``checkpoints``: run, step, tokens, flops per evaluated checkpoint.
    ``tags``: the tags of the runs this import creates (a dataset's name, e.g. the bundled examples').
    Returns counts (rows, rows_replaced, runs_matched, runs_created), the run names, and warnings.
    """
    frame = _check_rows(evals)
    if "source_file" in evals.columns:
        files = evals["source_file"].reset_index(drop=True).astype(object)
        frame["source_file"] = files.where(files.notna() & (files.astype(str) != ""), source_file).astype(str)
    else:
        frame["source_file"] = source_file
    sizes = _model_sizes(models)
    ck_map = _checkpoint_map(checkpoints)
    run_names = list(pd.unique(frame["run"]))
    warnings: list = []

    with store.write() as conn:
        existing = runs_named(conn, run_names)
        # Match by step: an eval past a run's last logged step names a checkpoint it does not have.
        if existing:
            last_steps = last_logged_steps(conn, [r["id"] for r in existing.values()])
            for name, row in existing.items():
                last = last_steps.get(row["id"])
                if last is None:
                    continue
                steps = frame.loc[frame["run"] == name, "step"].dropna()
                if len(steps) and steps.max() > last * (1 + STEP_SLACK) + 1:
                    raise InputError(
                        f"Run {name!r} has logged steps up to {last:g} but an eval is at step {steps.max():g}; "
                        "the run has no such checkpoint — check the model name or the step in the file.")

        # Existing runs: fill empty sizes, add family and checkpoints to the config.
        for name, row in existing.items():
            info = sizes.get(name, {})
            updates = {}
            for key in SIZE_KEYS:
                if key not in info:
                    continue
                old = row.get(key)
                if old is None or (isinstance(old, float) and math.isnan(old)):
                    updates[key] = info[key]
                elif abs(old - info[key]) > SIZE_CONFLICT_RTOL * abs(old):
                    warnings.append(f"{name}: the store has {key} = {old:.4g}, the file {info[key]:.4g}; "
                                    "the store's value kept (edit it on the Runs page).")
            if "n_params" in updates and row.get("n_active_params") is None and row.get("arch") != "moe":
                updates["n_active_params"] = updates["n_params"]
            config = json.loads(row.get("config") or "{}") or {}
            changed = False
            if info.get("family") and not config.get("family"):
                config["family"], changed = info["family"], True
            if name in ck_map:
                config["eval_checkpoints"], changed = _merge_checkpoints(config.get("eval_checkpoints"),
                                                                         ck_map[name]), True
            if changed:
                updates["config"] = json.dumps(config, default=str)
            update_run_fields(conn, row["id"], updates)

        # New model entries, bulk-loaded; their ids come from the sequence.
        new_names = [n for n in run_names if n not in existing]
        if new_names:
            rows = []
            for name in new_names:
                info = sizes.get(name, {})
                n_params = info.get("n_params")
                tokens = info.get("tokens")
                flops = info.get("flops")
                rule = "as published" if flops is not None else None
                if flops is None and n_params is not None and tokens is not None:
                    flops, rule = 6.0 * n_params * tokens, "6*N*D"  # Kaplan et al. 2020, C ≈ 6ND
                config = {"family": info.get("family")}
                points = ck_map.get(name)
                if points:
                    config["eval_checkpoints"] = points
                rows.append({
                    "name": name, "source_format": "evals", "source_file": source_file or None, "arch": "dense",
                    "n_params": n_params, "n_nonembedding_params": info.get("n_nonembedding_params"),
                    "n_active_params": n_params, "tokens_per_step": _tokens_per_step(points) if points else None,
                    "tokens": tokens, "flops": flops, "flops_rule": rule,
                    "config": json.dumps(config, default=str), "tags": json.dumps(list(dict.fromkeys(tags))),
                })
            insert_runs(conn, rows)
        scores = frame.assign(run_id=frame["run"].map(run_ids_named(conn, run_names)))
        replaced = delete_same_scores(conn, scores) if existing else 0
        n = insert_evals(conn, scores)
    return {"rows": int(n), "rows_replaced": int(replaced), "runs_matched": len(existing),
            "runs_created": len(run_names) - len(existing),
            "matched": sorted(existing), "created": [n for n in run_names if n not in existing],
            "warnings": warnings}


def import_parsed(store: Store, parsed: ParsedEvals, tags: Sequence[str] = ("evals",)) -> dict:
    """Store one :class:`ParsedEvals` (one transaction); counts plus what the parser reported."""
    source = ", ".join(parsed.source_files[:3]) + (" …" if len(parsed.source_files) > 3 else "")
    result = store_evals(store, parsed.evals, parsed.models, source_file=source, checkpoints=parsed.checkpoints,
                         tags=tags)
    result["warnings"] = list(parsed.warnings) + result["warnings"]
    result["source_format"] = parsed.source_format
    result["source_files"] = list(parsed.source_files)
    result["tasks"] = sorted(map(str, pd.unique(parsed.evals["task"])))
    return result


def import_eval_paths(store: Store, paths: Sequence[str], *, run: Optional[str] = None,
                      step: Optional[float] = None, tags: Optional[Sequence[str]] = None) -> dict:
    """Files, folders or zips from disk → the store, all in one transaction. The runs it creates get
    ``tags`` (default: "evals" and the first path's name, services.ingest.default_tag)."""
    tags = tags if tags is not None else ("evals", default_tag(paths))
    return import_parsed(store, parse_eval_files(list(paths), run=run, step=step), tags=tags)


def import_eval_uploads(store: Store, files: Sequence[tuple], *, run: Optional[str] = None,
                        step: Optional[float] = None) -> dict:
    """Uploaded (name, bytes) pairs → the store, all in one transaction."""
    if not files:
        raise InputError("Nothing to import: choose at least one eval file.")
    parts = [parse_eval_upload(name, data, run=run, step=step) for name, data in files]
    return import_parsed(store, merge_parsed(parts, "upload"), tags=("evals", default_tag([n for n, _ in files])))


# --------------------------------------------------------------------------------------------
# Reading back
# --------------------------------------------------------------------------------------------
LOAD_COLUMNS = ["run", "family", "step", "task", "metric", "value", "stderr", "n_params", "tokens",
                "flops", "loss", "source_format", "source_file"]


def load_evals(store: Store, loss_metric: str = "loss") -> pd.DataFrame:
    """Every eval row with its run's family and sizes, and tokens/FLOPs/loss at the eval's step.

    Per row: tokens and FLOPs from the checkpoints the eval file gave, else the run's logged metric
    row at that step, else step × tokens_per_step and 6·N_active·D, else the latest logged row
    before the step scaled by step / its step; a final-model eval (no step) takes the run's totals.
    ``loss`` is ``loss_metric`` at the latest logged step ≤ the eval's (the run's last value for a
    final-model eval).
    """
    frame = evals_with_scale(store, loss_metric)
    if frame.empty:
        return pd.DataFrame({c: pd.Series(dtype=object if c in ("run", "family", "task", "metric",
                                                                  "source_format", "source_file")
                                          else "float64") for c in LOAD_COLUMNS})
    for col in ("step", "value", "stderr", "n_params", "n_active_params", "run_tokens", "run_flops",
                "tokens_per_step", "m_step", "m_tokens", "m_flops", "loss"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    configs = {rid: json.loads(c or "{}") or {} for rid, c in
               frame.drop_duplicates("run_id")[["run_id", "config"]].itertuples(index=False)}
    frame["family"] = frame["run_id"].map(lambda rid: configs[rid].get("family")).astype(object)
    ck_tokens, ck_flops = {}, {}
    for rid, cfg in configs.items():
        for p in cfg.get("eval_checkpoints") or []:
            ck_tokens[(rid, float(p["step"]))] = p.get("tokens")
            ck_flops[(rid, float(p["step"]))] = p.get("flops")
    keys = list(zip(frame["run_id"], frame["step"]))
    final = frame["step"].isna()
    # The logged metric row is at the eval's step, or the latest before it: scale its tokens and
    # FLOPs by step / logged step (a constant batch) where the run has no tokens_per_step.
    exact = frame["m_step"] == frame["step"]
    ratio = (frame["step"] / frame["m_step"]).where(frame["m_step"] > 0)
    tokens = pd.Series([ck_tokens.get(k) for k in keys], index=frame.index, dtype="float64")
    tokens = (tokens.fillna(frame["m_tokens"].where(exact)).fillna(frame["step"] * frame["tokens_per_step"])
              .fillna(frame["m_tokens"] * ratio))
    tokens = tokens.where(~final, frame["run_tokens"])
    flops = pd.Series([ck_flops.get(k) for k in keys], index=frame.index, dtype="float64")
    flops = (flops.fillna(frame["m_flops"].where(exact)).fillna(6.0 * frame["n_active_params"] * tokens)
             .fillna(frame["m_flops"] * ratio))
    flops = flops.where(~final, frame["run_flops"].fillna(6.0 * frame["n_active_params"] * frame["run_tokens"]))
    frame["tokens"], frame["flops"] = tokens, flops
    return frame[LOAD_COLUMNS].reset_index(drop=True)


ALL_DATASETS = "(all eval results)"  # the dataset choice that keeps every row


def eval_datasets(store: Store, evals: pd.DataFrame) -> tuple[list, dict]:
    """The tags of runs with eval rows, as datasets to show one at a time (the bundled
    observational-scaling table first, then by number of models), and run name -> its tags."""
    tags_of = {r.name: run_tags(r.tags) for r in store.runs()[["name", "tags"]].itertuples()}
    counts: dict = {}
    for run in pd.unique(evals["run"]):
        for tag in tags_of.get(run, []):
            counts[tag] = counts.get(tag, 0) + 1
    order = sorted(counts, key=lambda t: (t != OBSSCALING_TAG, -counts[t], t))
    return order, tags_of


def in_dataset(evals: pd.DataFrame, dataset: str, tags_of: dict) -> pd.DataFrame:
    """The eval rows of runs tagged ``dataset`` (every row for ALL_DATASETS)."""
    if dataset == ALL_DATASETS:
        return evals
    return evals[evals["run"].map(lambda r: dataset in tags_of.get(r, []))].reset_index(drop=True)


def filter_evals(evals: pd.DataFrame, *, tasks: Iterable[str] = (), families: Iterable[str] = (),
                 runs: Iterable[str] = ()) -> pd.DataFrame:
    """Rows whose task, family and run are among those chosen (an empty choice keeps all)."""
    keep = pd.Series(True, index=evals.index)
    tasks, families, runs = list(tasks), list(families), list(runs)
    if tasks:
        keep &= evals["task"].isin(tasks)
    if families:
        keep &= evals["family"].isin(families)
    if runs:
        keep &= evals["run"].isin(runs)
    return evals[keep].reset_index(drop=True)


def benchmark_labels(evals: pd.DataFrame) -> list:
    """'task · metric' choices, the most-covered first."""
    counts = evals.groupby(["task", "metric"]).size().sort_values(ascending=False, kind="stable")
    return [f"{t} · {m}" for t, m in counts.index]


def split_label(label: str) -> tuple:
    task, _, metric = label.rpartition(" · ")
    return task, metric


def scaling_points(evals: pd.DataFrame, task: str, metric: str, x: str, *, checkpoints: str = "last",
                   group_by: str = "family") -> tuple:
    """The points of one benchmark against one scale axis.

    ``checkpoints``: "last" keeps each run's latest evaluated checkpoint (a final-model eval counts
    as latest), "all" keeps every checkpoint. ``group_by``: "family" (a run without one is its own
    group) or "run". Returns (points with run, group, step, x, value, stderr; runs without a
    positive ``x``, with why).
    """
    if x not in X_AXES:
        raise InputError(f"Unknown x-axis {x!r}; choose one of {', '.join(X_AXES)}.")
    if checkpoints not in ("last", "all"):
        raise InputError(f"checkpoints must be 'last' or 'all', got {checkpoints!r}.")
    part = evals[(evals["task"] == task) & (evals["metric"] == metric)].copy()
    if part.empty:
        raise InputError(f"No eval results for {task} {metric}; pick a benchmark the table lists.")
    if checkpoints == "last":
        order = part["step"].fillna(np.inf)
        part = part[order == order.groupby(part["run"]).transform("max")]
    family = part["family"].where(part["family"].notna() & (part["family"].astype(str) != ""), None)
    part["group"] = family.fillna(part["run"]) if group_by == "family" else part["run"]
    part["x"] = pd.to_numeric(part[x], errors="coerce")
    ok = part["x"] > 0
    missing = sorted(map(str, part.loc[~ok & part["x"].isna(), "run"].unique()))
    zero = int((~ok & part["x"].notna()).sum())
    points = part.loc[ok, ["run", "group", "step", "x", "value", "stderr"]]
    points = points.sort_values(["group", "x"], kind="stable").reset_index(drop=True)
    return points, {"runs_without_x": missing, "n_nonpositive_x": zero}


def fit_points(points: pd.DataFrame, law: str, x: str, *, floor: Optional[float] = None,
               n_bootstrap: int = 200, seed: int = 0,
               progress: Optional[ProgressFn] = None) -> DownstreamFit:
    """Fit one downstream law to the points: the sigmoid sees log10 of FLOPs/params/tokens (the
    scale Ruan et al. 2024 use), loss as it is; the log-law and the power law take x itself."""
    if len(points) == 0:
        raise InputError(f"No points with a positive {x} to fit; import sizes (params, tokens or FLOPs) for the models.")
    config = DownstreamFitConfig(n_bootstrap=int(n_bootstrap), seed=seed)
    kwargs = {"config": config, "progress": progress}
    if law == "sigmoid":
        kwargs["log_x"] = x != "loss"
        if floor is not None:
            kwargs["floor"] = float(floor)
    return fit_downstream(law, points["x"].to_numpy(dtype=float), points["value"].to_numpy(dtype=float), **kwargs)


def eval_target(task: str, metric: str) -> str:
    """The ``target`` of a stored eval fit: the eval metric, 'task/metric'."""
    return f"{task}/{metric}"


def save_eval_fit(store: Store, fit: DownstreamFit, *, task: str, metric: str, x: str,
                  selection: dict, name: Optional[str] = None) -> int:
    """Store a downstream fit in ``fits`` (target = the eval metric, bootstrap intervals kept)."""
    d = fit.to_dict()
    diagnostics = dict(d["diagnostics"])
    diagnostics.update(stderr=d["stderr"], confidence=d["confidence"], x_transform=d["x_transform"],
                       n_points=d["n_points"], rmse=d["rmse"], r2=d["r2"])
    return save_fit(store, law=d["law"], method=d["method"], target=eval_target(task, metric),
                    selection={"task": task, "metric": metric, "x": x, **selection},
                    settings=d["settings"], params=d["params"], intervals=d["intervals"],
                    diagnostics=diagnostics, name=name)


def load_eval_fit(store: Store, fit_id: int) -> DownstreamFit:
    """A stored eval fit back as a :class:`DownstreamFit` (to forecast from it)."""
    row = get_fit(store, fit_id)
    diagnostics = dict(row["diagnostics"])
    top = {k: diagnostics.pop(k) for k in ("stderr", "confidence", "x_transform", "n_points", "rmse", "r2")
           if k in diagnostics}
    return DownstreamFit.from_dict({"law": row["law"], "params": row["params"], "intervals": row["intervals"],
                                    "settings": row["settings"], "diagnostics": diagnostics, **top})


# --------------------------------------------------------------------------------------------
# The model × benchmark table for the PCA
# --------------------------------------------------------------------------------------------
def higher_is_better(evals: pd.DataFrame) -> tuple:
    """Rows whose metric rises with capability, and the 'task metric' pairs left out."""
    base = evals["metric"].astype(str).str.split(",", n=1).str[0].str.lower()
    lower = base.isin(LOWER_IS_BETTER)
    dropped = sorted({f"{t} {m}" for t, m in evals.loc[lower, ["task", "metric"]].itertuples(index=False)})
    return evals[~lower], dropped


def model_table(evals: pd.DataFrame) -> pd.DataFrame:
    """One row per run (index): family, n_params, tokens, flops at its last evaluated checkpoint."""
    order = evals.assign(_s=evals["step"].fillna(np.inf)).sort_values("_s", kind="stable")
    cols = [c for c in ("family", "n_params", "tokens", "flops") if c in order.columns]
    return order.groupby("run", sort=False)[cols].last()


def pca_matrix(evals: pd.DataFrame, *, metric: Optional[str] = None,
               min_observed: float = PCAConfig.min_observed) -> tuple:
    """The run × task table the PCA takes, and what was left out of it.

    Lower-is-better metrics are left out (the PCA reads higher as more capable). A task that only
    models with too few benchmarks have (they are dropped by the PCA) is left out first, so that
    every column keeps scores — e.g. Pythia tasks beside a leaderboard's. Returns (matrix,
    left-out 'task metric' pairs, left-out tasks).
    """
    usable, lower = higher_is_better(evals)
    if usable.empty:
        raise InputError("Every eval metric here is lower-is-better (perplexity, loss …); the PCA needs "
                         "accuracy-like scores.")
    matrix = eval_matrix(usable, metric=metric)
    sparse: list = []
    while matrix.shape[1]:
        rows = matrix.notna().mean(axis=1) >= min_observed
        has_scores = matrix.loc[rows].notna().any(axis=0)
        if has_scores.all():
            break
        sparse += [str(c) for c in matrix.columns[~has_scores.to_numpy()]]
        matrix = matrix.loc[:, has_scores.to_numpy()]
    return matrix, lower, sparse
