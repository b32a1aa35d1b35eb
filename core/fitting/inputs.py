"""Input checks, point selection, weights, bootstrap summaries and progress shared by every fit."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from core.errors import FitError
from core.format import CONFIDENCE
from core.progress import report


def tails(level: float = CONFIDENCE) -> list:
    """The percentiles bounding a central ``level`` interval: 0.95 → [2.5, 97.5]."""
    level = float(level)
    if not 0.0 < level < 1.0:
        raise FitError(f"interval level {level!r} must be between 0 and 1, e.g. 0.95 for a 95% interval")
    tail = round(50.0 * (1.0 - level), 10)  # 0.95 → exactly 2.5: the stored fits' percentiles
    return [tail, 100.0 - tail]


def bootstrap_summaries(samples: Mapping[str, np.ndarray], level: float = CONFIDENCE) -> tuple[dict, dict]:
    """Per name: the bootstrap standard error and central ``level`` percentile interval of its finite
    samples."""
    stderr, intervals = {}, {}
    for k, v in samples.items():
        v = np.asarray(v, np.float64)
        v = v[np.isfinite(v)]
        if v.size < 2:
            stderr[k] = float("nan")
            intervals[k] = [float("nan"), float("nan")]
            continue
        stderr[k] = float(np.std(v, ddof=1))
        lo, hi = np.percentile(v, tails(level))
        intervals[k] = [float(lo), float(hi)]
    return stderr, intervals


def as_1d(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FitError(f"{name} must be numbers: convert the column to numeric values and retry")
    return arr


def check_positive(name: str, arr: np.ndarray) -> None:
    if np.isnan(arr).any():
        raise FitError(f"{name} contains NaN in {int(np.isnan(arr).sum())} rows: drop or fill those runs before fitting")
    if not np.isfinite(arr).all():
        raise FitError(f"{name} contains infinite values: drop those runs before fitting")
    if (arr <= 0).any():
        raise FitError(f"{name} must be positive but {int((arr <= 0).sum())} values are ≤ 0: drop those runs before fitting")


def weights_by_run(run_ids) -> np.ndarray:
    """Per-point weights giving every run the same total weight (points of a long curve share it).

    Normalised so the weights sum to the number of points (the objective keeps its scale).
    """
    ids = np.asarray(run_ids)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * (w.size / w.sum())


def select_points(arrays: dict, target: np.ndarray, weights, drop_highest: int, n_par: int):
    """Apply drop-k-highest and weights; returns (arrays, target, weights, kept index)."""
    n = target.size
    if weights is not None:
        weights = as_1d("weights", weights)
        if weights.size != n:
            raise FitError(f"weights has {weights.size} values for {n} points: give one weight per point")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise FitError("weights must be finite, non-negative and not all zero: fix the weights column")
    drop_highest = int(drop_highest)
    if drop_highest < 0:
        raise FitError("drop_highest must be ≥ 0")
    if n - drop_highest < n_par:
        raise FitError(f"{n} points minus {drop_highest} dropped leaves fewer than the {n_par} parameters: "
                       "select more runs or drop fewer points")
    order = np.argsort(target, kind="stable")
    kept = np.sort(order[: n - drop_highest])
    arrays = {k: v[kept] for k, v in arrays.items()}
    target = target[kept]
    if weights is not None:
        weights = weights[kept]
    return arrays, target, weights, kept



def grid(*axes) -> np.ndarray:
    """Every combination of the axes' values, one row per start: (∏ len(axis), len(axes))."""
    mesh = np.meshgrid(*[np.asarray(a, np.float64) for a in axes], indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def progress_callback(progress, offset: int, total: int, message: str):
    """``on_iter`` for batched_newton that reports ``offset + done`` of ``total`` to ``progress``."""
    if progress is None:
        return None
    return lambda done, _n: report(progress, offset + done, total, message)


def need_inputs(inputs: Mapping, names: Sequence[str], law: str) -> None:
    """FitError naming the missing inputs of ``law``."""
    missing = [k for k in names if k not in inputs]
    if missing:
        raise FitError(f"the {law} law needs inputs {', '.join(names)}; missing {', '.join(missing)}")
