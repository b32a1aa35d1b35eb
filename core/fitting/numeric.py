"""A FitSpec from a log-prediction alone: the residual's Jacobian by central differences.

For laws whose analytic Jacobian would be long for no gain at these sizes (the D-CPT law, the
fine-grained MoE law): ``numeric_spec(theta_names, log_pred, to_params, starts)`` gives the generic
Huber-in-log-space fit (core/fitting/generic.py) everything it needs, with the Gauss-Newton Hessian
(FitSpec.gauss_newton), as the data-constrained law does. Also ``nonneg_linear_starts``: for laws
linear in their scales once the exponents are fixed, a start per exponent row with the scales
solved by non-negative least squares.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from core.fitting.residuals import FitSpec, central_jacobian

LogPred = Callable[[np.ndarray, dict], np.ndarray]  # (theta (k, P), logs) -> log ŷ (k, n)


def numeric_spec(theta_names: Sequence[str], log_pred: LogPred, to_params: Callable, starts: Callable,
                 **options) -> FitSpec:
    """FitSpec with r = log_pred(θ) − log y and J by central differences (step 1e-6·max(1, |θ_j|))."""

    def residual(theta, logs, log_y):
        theta = np.asarray(theta, np.float64)
        with np.errstate(all="ignore"):  # far-off starts overflow; their objective is then inf and they stall
            r = log_pred(theta, logs) - log_y
        return r, central_jacobian(lambda th: log_pred(th, logs), theta, r.shape)

    return FitSpec(tuple(theta_names), residual, to_params, starts, gauss_newton=True, **options)


def logsumexp_rows(*terms: np.ndarray) -> np.ndarray:
    """log Σ exp(term) element-wise, stable (each term broadcast to a common shape)."""
    stacked = np.stack(np.broadcast_arrays(*terms))
    m = np.max(stacked, axis=0)
    m = np.where(np.isfinite(m), m, 0.0)
    return m + np.log(np.sum(np.exp(stacked - m), axis=0))


def nonneg_scales(columns: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares y ≈ columns @ s (columns (n, m)); zeros lifted to 1e-6·mean(y)."""
    from scipy.optimize import nnls  # scipy on first use (see core/search.py)

    scale = np.maximum(np.abs(columns).max(axis=0), 1e-300)
    try:
        s, _ = nnls(columns / scale, y)
    except (RuntimeError, ValueError):
        s = np.ones(columns.shape[1])
    s = s / scale
    floor = 1e-6 * float(np.mean(np.abs(y))) / scale
    return np.where(s > floor, s, floor)
