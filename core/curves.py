"""Curve transforms for the Runs page: TensorBoard-style smoothing and grouping of runs."""
from __future__ import annotations

import numpy as np
import pandas as pd

from core.errors import InputError


def debiased_ema(values: np.ndarray, weight: float) -> np.ndarray:
    """Exponential moving average with TensorBoard's debiasing.

    s_t = w·s_{t-1} + (1−w)·y_t with s_0 = 0, divided by (1 − w^t) so early points are not pulled
    towards zero (the same bias correction as Adam, Kingma & Ba 2015, sec. 3). ``weight`` in [0, 1):
    0 returns the input unchanged. NaNs are skipped (carried through as NaN).
    """
    if not 0.0 <= weight < 1.0:
        raise InputError(f"Smoothing weight must be in [0, 1), got {weight}.")
    y = np.asarray(values, dtype=np.float64)
    if weight == 0.0 or y.size == 0:
        return y.copy()
    out = np.empty_like(y)
    acc, n = 0.0, 0
    for i, v in enumerate(y):  # sequential by nature; curves are downsampled to ≤ ~2,000 points first
        if np.isnan(v):
            out[i] = np.nan
            continue
        n += 1
        acc = weight * acc + (1.0 - weight) * v
        out[i] = acc / (1.0 - weight ** n)
    return out


def smooth_curves(curves: pd.DataFrame, weight: float) -> pd.DataFrame:
    """Apply :func:`debiased_ema` to each run's ``value`` (columns run, x, value), ordered by x."""
    if weight == 0 or curves.empty:
        return curves
    parts = []
    for _, part in curves.groupby("run", sort=False):
        part = part.sort_values("x").copy()
        part["value"] = debiased_ema(part["value"].to_numpy(), weight)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def group_band(curves: pd.DataFrame, group_of: dict, n_grid: int = 300, log_x: bool = False) -> pd.DataFrame:
    """Mean and min–max band per group of runs, on a common x grid.

    Each run is linearly interpolated (in log x when ``log_x``) onto ``n_grid`` points spanning the
    x range that every run of the group covers, so the band never extrapolates a run.
    Returns columns group, x, mean, lo, hi, n_runs.
    """
    rows = []
    frame = curves.assign(group=curves["run"].map(group_of))
    for group, part in frame.dropna(subset=["group"]).groupby("group", sort=True):
        per_run = [(r.sort_values("x")["x"].to_numpy(float), r.sort_values("x")["value"].to_numpy(float))
                   for _, r in part.groupby("run")]
        per_run = [(x, y) for x, y in per_run if len(x) > 0]
        if not per_run:
            continue
        lo = max(x[0] for x, _ in per_run)
        hi = min(x[-1] for x, _ in per_run)
        if hi < lo:
            continue
        if log_x and lo > 0:
            grid = np.geomspace(lo, hi, n_grid) if hi > lo else np.array([lo])
            stack = np.vstack([np.interp(np.log(grid), np.log(x), y) for x, y in per_run])
        else:
            grid = np.linspace(lo, hi, n_grid) if hi > lo else np.array([lo])
            stack = np.vstack([np.interp(grid, x, y) for x, y in per_run])
        rows.append(pd.DataFrame({"group": str(group), "x": grid, "mean": stack.mean(0),
                                  "lo": stack.min(0), "hi": stack.max(0), "n_runs": len(per_run)}))
    if not rows:
        return pd.DataFrame(columns=["group", "x", "mean", "lo", "hi", "n_runs"])
    return pd.concat(rows, ignore_index=True)
