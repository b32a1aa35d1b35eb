"""Inference compute (Wu et al. 2024, core/inference_compute.py) with a per-sample accuracy law
fitted to stored evals (issue 15): the Planner page's inference-compute panel and
``cli.py plan --inference-budget B --sample-law-from-evals BENCHMARK``.

One benchmark (a task and an accuracy-like metric) is read from the store with
``services.evals.load_evals``; each run's LAST evaluated checkpoint that has a parameter count
gives one point (N, accuracy), and ``core.inference_compute.fit_sample_accuracy`` fits a, b of
p_i(N) = σ(a + b·ln(N/1e9) − δ_i), δ_i ~ Normal(0, s), with the difficulty spread s held. The score
is read as the accuracy of ONE sample (a harness's greedy or log-likelihood accuracy is the nearest
stored quantity); the planner then combines k samples by voting or best-of-n.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from core.errors import InputError
from core.inference_compute import SampleAccuracyLaw, fit_sample_accuracy
from db.store import Store
from importers.evals import is_accuracy_like
from services.evals import load_evals, scaling_points, split_label

DEFAULT_SPREAD = SampleAccuracyLaw().spread  # the declared law's spread (core/inference_compute.py gives why)
MIN_SIZES = 2  # a, b: two unknowns, so at least two model sizes (core.inference_compute.fit_sample_accuracy)
LISTED = 6  # benchmarks named in an "unknown benchmark" message


@dataclass(frozen=True)
class SampleLawFit:
    """The fitted law and the points it came from (one per run: its last evaluated checkpoint)."""

    law: SampleAccuracyLaw
    task: str
    metric: str
    runs: tuple  # run names, by model size
    n_params: tuple  # each run's parameter count
    accuracy: tuple  # each run's score at its last evaluated checkpoint
    rmse: float  # root-mean-square error of the fitted dataset accuracy against the scores
    runs_without_params: tuple = field(default_factory=tuple)  # runs of the benchmark left out: no n_params

    @property
    def benchmark(self) -> str:
        return f"{self.task}/{self.metric}"

    @property
    def n_sizes(self) -> int:
        return len(set(self.n_params))

    def to_dict(self) -> dict:
        return {"benchmark": self.benchmark, "task": self.task, "metric": self.metric, **asdict(self.law),
                "spread_held": True, "rmse": self.rmse, "n_points": len(self.runs), "n_sizes": self.n_sizes,
                "checkpoint": "last evaluated checkpoint of each run",
                "points": [{"run": r, "n_params": n, "accuracy": a}
                           for r, n, a in zip(self.runs, self.n_params, self.accuracy)],
                "runs_without_params": list(self.runs_without_params)}


def _usable(evals: pd.DataFrame) -> pd.DataFrame:
    """Rows of an accuracy-like metric with a positive parameter count."""
    accuracy = evals["metric"].map(is_accuracy_like).astype(bool)
    return evals[accuracy & (pd.to_numeric(evals["n_params"], errors="coerce") > 0)]


def sample_law_benchmarks(store: Store) -> list:
    """'task/metric' of every stored benchmark with an accuracy-like metric and at least MIN_SIZES
    model sizes with a parameter count: those the fit takes first (every run's last score strictly
    between 0 and 1), then those it refuses (it says why), each by number of model sizes."""
    usable = _usable(load_evals(store))
    last = usable.assign(_step=usable["step"].fillna(np.inf))
    last = last[last["_step"] == last.groupby(["task", "metric", "run"])["_step"].transform("max")]
    summary = last.assign(edge=(last["value"] <= 0) | (last["value"] >= 1)).groupby(["task", "metric"]).agg(
        sizes=("n_params", "nunique"), edge=("edge", "any"))
    summary = summary[summary["sizes"] >= MIN_SIZES].reset_index()
    summary = summary.sort_values(["edge", "sizes", "task", "metric"], ascending=[True, False, True, True],
                                  kind="stable")
    return [f"{task}/{metric}" for task, metric in summary[["task", "metric"]].itertuples(index=False)]


def _resolve(evals: pd.DataFrame, benchmark: str) -> tuple:
    """(task, metric) named by 'task', 'task/metric' or 'task · metric' (the Evals page's label)."""
    spec = str(benchmark).strip()
    pairs = set(evals[["task", "metric"]].itertuples(index=False, name=None))
    tasks = {t for t, _ in pairs}
    if spec in tasks:  # a task alone: its one accuracy-like metric
        metrics = sorted(m for t, m in pairs if t == spec and is_accuracy_like(m))
        if len(metrics) == 1:
            return spec, metrics[0]
        if not metrics:
            raise InputError(f"Benchmark {spec!r} has no accuracy-like metric (acc, exact_match, score …); "
                             "the law fits accuracies.")
        raise InputError(f"Task {spec!r} has the metrics {', '.join(metrics)}; name one, e.g. {spec}/{metrics[0]}.")
    for task, metric in (split_label(spec), spec.rpartition("/")[::2]):
        if task and (task, metric) in pairs:
            if not is_accuracy_like(metric):
                raise InputError(f"{task}/{metric} is not an accuracy (acc, exact_match, score …); the law fits "
                                 "per-sample accuracies: pick an accuracy metric.")
            return task, metric
    known = sorted({f"{t}/{m}" for t, m in _usable(evals)[["task", "metric"]].itertuples(index=False)})
    hint = (f"give task/metric, e.g. {', '.join(known[:LISTED])}" if known else
            "the store holds no eval results with model sizes yet: import some on the Evals page or with "
            "python cli.py evals import")
    raise InputError(f"No stored eval results for benchmark {spec!r}; {hint}.")


def fit_sample_law_from_evals(store: Store, benchmark: str, spread: float = DEFAULT_SPREAD) -> SampleLawFit:
    """Fit the per-sample accuracy law's a, b (spread held) to one stored benchmark; InputError with
    one line when it cannot: unknown benchmark, not an accuracy, no parameter counts, fewer than two
    model sizes, or a score at 0 or 1 (the logistic law never reaches either)."""
    try:
        s = float(spread)
    except (TypeError, ValueError):
        s = math.nan
    if not math.isfinite(s) or s < 0:
        raise InputError(f"Difficulty spread {spread!r} must be a number ≥ 0 (logit units), e.g. {DEFAULT_SPREAD:g}.")
    evals = load_evals(store)
    task, metric = _resolve(evals, benchmark)
    name = f"{task}/{metric}"
    points, skipped = scaling_points(evals, task, metric, "n_params", checkpoints="last", group_by="run")
    if points.empty:
        n_models = len(skipped["runs_without_x"]) + int(skipped["n_nonpositive_x"])
        raise InputError(f"None of the {n_models} models with {name} results has a positive parameter "
                         "count; give the models' n_params (Runs page, or in the eval file) to fit the law.")
    points = points.sort_values(["x", "run"], kind="stable")
    n = points["x"].to_numpy(dtype=float)
    y = points["value"].to_numpy(dtype=float)
    if np.unique(n).size < MIN_SIZES:
        raise InputError(f"{name} has results for {np.unique(n).size} model size with a parameter count; the fit "
                         f"needs at least {MIN_SIZES} sizes.")
    edge = (y <= 0) | (y >= 1)
    if edge.any():
        bad = points[edge].iloc[0]
        raise InputError(f"{name}: {bad['run']} scores {bad['value']:g} at its last checkpoint; the law needs "
                         "accuracies strictly between 0 and 1 (a logistic never reaches them): pick another benchmark.")
    law = fit_sample_accuracy(n, y, s)
    rmse = float(np.sqrt(np.mean((law.accuracy(n) - y) ** 2)))
    return SampleLawFit(law=law, task=task, metric=metric, runs=tuple(map(str, points["run"])),
                        n_params=tuple(map(float, n)), accuracy=tuple(map(float, y)), rmse=rmse,
                        runs_without_params=tuple(skipped["runs_without_x"]))
