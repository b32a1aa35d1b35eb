"""Checking a fitted law by extrapolation: fit on the runs below a compute threshold, predict the
runs above it, report the errors (RMSE of log loss, mean / max absolute percentage error, bias).
Extrapolating to larger compute is what a scaling law is for, so this is its honest test.

- ``backtest(...)``: Approach 3 (Chinchilla law); ``backtest_law(...)``: any law of the registry.
Residual diagnostics and warnings are core/fitting/diagnostics.py (every fit computes them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from core.errors import FitError
from core.fitting.chinchilla import fit_chinchilla
from core.fitting.diagnostics import residual_diagnostics
from core.fitting.generic import fit_law
from core.fitting.result import FitResult
from core.jsonable import jsonable


@dataclass
class BacktestResult:
    """Fit below a compute threshold, predict above it."""

    threshold: float  # compute (FLOPs unless the caller chose another axis) separating train from test
    n_train: int
    n_test: int
    fit: FitResult  # the law refitted on the training points
    test_index: np.ndarray  # (n_test,) indices into the input arrays
    observed: np.ndarray  # (n_test,) losses above the threshold
    predicted: np.ndarray  # (n_test,) the law's predictions there
    rmse_log: float  # sqrt(mean((log L̂ − log L)²)) on the test points
    mape_pct: float  # mean |L̂/L − 1| in percent
    max_ape_pct: float  # worst |L̂/L − 1| in percent
    bias_log: float  # mean(log L̂ − log L): > 0 means the law over-predicts the loss at scale
    train_residuals: dict = field(default_factory=dict)  # residual_diagnostics on the training points
    test_residuals: dict = field(default_factory=dict)  # residual_diagnostics on the test points

    def to_dict(self) -> dict:
        return jsonable({
            "threshold": self.threshold, "n_train": self.n_train, "n_test": self.n_test,
            "fit": self.fit.to_dict(), "test_index": self.test_index, "observed": self.observed,
            "predicted": self.predicted, "rmse_log": self.rmse_log, "mape_pct": self.mape_pct,
            "max_ape_pct": self.max_ape_pct, "bias_log": self.bias_log,
            "train_residuals": self.train_residuals, "test_residuals": self.test_residuals,
        })


def _split(compute: np.ndarray, threshold: float):
    if not np.isfinite(compute).all() or (compute <= 0).any():
        raise FitError("compute must be positive and finite for every point: fix the flops column")
    train = np.flatnonzero(compute < threshold)
    test = np.flatnonzero(compute >= threshold)
    if test.size == 0:
        raise FitError(f"no point has compute ≥ {threshold:.3g}: lower the threshold so some runs are held out")
    if train.size == 0:
        raise FitError(f"no point has compute < {threshold:.3g}: raise the threshold so some runs are fitted")
    return train, test


def _score(fit, inputs_test, y_test, threshold, train, test, covariates_test) -> BacktestResult:
    pred = np.asarray(fit.predict(inputs_test), np.float64)
    r = np.log(pred) - np.log(y_test)
    ape = np.abs(pred / y_test - 1.0) * 100.0
    return BacktestResult(
        threshold=float(threshold), n_train=int(train.size), n_test=int(test.size), fit=fit, test_index=test,
        observed=y_test, predicted=pred, rmse_log=float(np.sqrt(np.mean(r * r))), mape_pct=float(ape.mean()),
        max_ape_pct=float(ape.max()), bias_log=float(r.mean()),
        train_residuals=dict(fit.diagnostics.residual_summary or {}),
        test_residuals=residual_diagnostics(r, covariates_test),
    )


def backtest(n_params, tokens, loss, threshold: float, *, flops=None, settings=None, weights=None,
             progress=None) -> BacktestResult:
    """Approach 3 back-test: fit the Chinchilla law on runs with C < threshold, predict C ≥ threshold.

    ``flops`` defaults to 6·N·D. ``settings`` is an ``Approach3Settings`` (drop_highest applies to
    the training points only). Raises ``FitError`` when either side is empty or too small to fit.
    """
    n = np.asarray(n_params, np.float64).reshape(-1)
    d = np.asarray(tokens, np.float64).reshape(-1)
    y = np.asarray(loss, np.float64).reshape(-1)
    c = 6.0 * n * d if flops is None else np.asarray(flops, np.float64).reshape(-1)
    train, test = _split(c, threshold)
    w = None if weights is None else np.asarray(weights, np.float64)[train]
    fit = fit_chinchilla(n[train], d[train], y[train], settings, weights=w, progress=progress)
    return _score(fit, {"n_params": n[test], "tokens": d[test]}, y[test], threshold, train, test,
                  {"n_params": n[test], "tokens": d[test], "flops": c[test]})


def backtest_law(law: str, inputs: Mapping[str, np.ndarray], y, compute, threshold: float, **fit_kwargs) -> BacktestResult:
    """The same back-test for any law of core.registry.LAW_NAMES; ``compute`` is the axis to split on."""
    y = np.asarray(y, np.float64).reshape(-1)
    c = np.asarray(compute, np.float64).reshape(-1)
    train, test = _split(c, threshold)
    arrays = {k: np.asarray(v, np.float64).reshape(-1) for k, v in inputs.items()}
    w = fit_kwargs.pop("weights", None)
    if w is not None:
        w = np.asarray(w, np.float64)[train]
    fit = fit_law(law, {k: v[train] for k, v in arrays.items()}, y[train], weights=w, **fit_kwargs)
    test_inputs = {k: v[test] for k, v in arrays.items()}
    return _score(fit, test_inputs, y[test], threshold, train, test, dict(test_inputs))
