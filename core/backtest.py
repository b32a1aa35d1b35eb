"""Checking a fitted law: back-tests, residual diagnostics and the warnings a fit carries.

- ``backtest(...)`` / ``backtest_law(...)``: fit on the runs below a compute threshold, predict the
  runs above it, report the errors (RMSE of log loss, mean / max absolute percentage error, bias).
  Extrapolating to larger compute is what a scaling law is for, so this is its honest test.
- ``residual_diagnostics(residuals, covariates)``: size and structure of log-space residuals
  (a trend against log N, log D or log C means the law's form is wrong, not just noisy).
- ``fit_warnings(...)``: a parameter on a bound or outside the start grid, a term the data cannot
  identify, too few distinct model sizes. core/fit.py calls it for every fit.

This module imports core.fit lazily (inside the back-test functions) because core.fit imports the
diagnostics from here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from core.errors import FitError


# ============================================================================================
# Residual diagnostics
# ============================================================================================
def residual_diagnostics(residuals, covariates: Optional[Mapping[str, np.ndarray]] = None) -> dict:
    """Summaries of log-space residuals r = log L̂ − log L.

    Returns a dict: n, mean (bias; > 0 means the law over-predicts), std, rmse, mae, max_abs,
    mean_abs_pct (mean |L̂/L − 1| in %), and for each covariate name: ``trend[name]`` = slope of r
    against log(covariate) (per e-fold) with its Pearson correlation, and the lag-1 autocorrelation of
    r sorted by the covariate (near 0 for pure noise; large positive values mean systematic misfit).
    """
    r = np.asarray(residuals, np.float64).reshape(-1)
    out = {"n": int(r.size)}
    if r.size == 0:
        return out
    out.update({
        "mean": float(r.mean()), "std": float(r.std(ddof=1)) if r.size > 1 else 0.0,
        "rmse": float(np.sqrt(np.mean(r * r))), "mae": float(np.mean(np.abs(r))),
        "max_abs": float(np.max(np.abs(r))), "mean_abs_pct": float(100.0 * np.mean(np.abs(np.expm1(r)))),
    })
    trend = {}
    for name, values in (covariates or {}).items():
        x = np.log(np.asarray(values, np.float64).reshape(-1))
        if x.size != r.size or x.size < 3 or np.ptp(x) == 0:
            continue
        xc = x - x.mean()
        rc = r - r.mean()
        slope = float((xc @ rc) / (xc @ xc))
        denom = float(np.sqrt((xc @ xc) * (rc @ rc)))
        corr = float((xc @ rc) / denom) if denom > 0 else 0.0
        rs = r[np.argsort(x, kind="stable")] - r.mean()
        lag1 = float((rs[1:] @ rs[:-1]) / (rs @ rs)) if (rs @ rs) > 0 else 0.0
        trend[name] = {"slope_per_log": slope, "corr": corr, "lag1_autocorr": lag1}
    out["trend"] = trend
    return out


# ============================================================================================
# Warnings
# ============================================================================================
def fit_warnings(*, theta, theta_names: Sequence[str], grid_low=None, grid_high=None, lower=None, upper=None,
                 n_distinct_sizes: int, term_values: Mapping[str, np.ndarray], target,
                 bootstrap_theta=None, scale_names: Sequence[str] = (), exponent_names: Sequence[str] = (),
                 fixed_equal: bool = False, check_grid: bool = True) -> list:
    """Plain-language warnings about a fit (each says what is wrong and what to do).

    ``theta``: the optimum in the optimiser's space (names ``theta_names``); ``grid_low/high``: range
    of the start grid; ``lower/upper``: box bounds or None; ``term_values``: each additive term of
    the law evaluated on the data (name -> (n,)); ``target``: the fitted losses; ``bootstrap_theta``
    (B, P): refits; ``scale_names``: log-scale parameters (a = log A ...); ``exponent_names``.
    """
    theta = np.asarray(theta, np.float64)
    names = list(theta_names)
    warns = []
    if n_distinct_sizes < 3:
        hint = "" if fixed_equal else " or fix alpha = beta"
        warns.append(f"only {n_distinct_sizes} distinct model sizes: the exponents are weakly determined; "
                     f"add runs at other sizes{hint}")
    for j, name in enumerate(names):
        for bound, side in ((lower, "lower"), (upper, "upper")):
            if bound is None or not np.isfinite(bound[j]):
                continue
            if abs(theta[j] - bound[j]) <= 1e-8 * (1.0 + abs(bound[j])):
                warns.append(f"{name} = {theta[j]:.4g} sits on its {side} bound: the best fit lies outside the allowed "
                             "range; widen the bound or check the data")
        if check_grid and grid_low is not None and grid_high is not None:
            lo, hi = float(grid_low[j]), float(grid_high[j])
            margin = 0.1 * max(hi - lo, 1e-12)
            if theta[j] < lo - margin or theta[j] > hi + margin:
                warns.append(f"{name} = {theta[j]:.4g} lies outside the start grid [{lo:.4g}, {hi:.4g}]: the grid may "
                             "miss this basin; widen the grid and refit")
    for name in exponent_names:
        if name in names and theta[names.index(name)] <= 1e-3:
            warns.append(f"{name} ≈ {theta[names.index(name)]:.2g}: its term is constant over the data and cannot be "
                         "told apart from E (unidentifiable); fix it or add runs over a wider range")
    y = np.asarray(target, np.float64)
    spread = float(np.ptp(y)) if y.size else 0.0
    for term, values in term_values.items():
        values = np.asarray(values, np.float64)
        if spread > 0 and np.ptp(values) < 1e-2 * spread:
            warns.append(f"the term {term} varies by only {np.ptp(values):.2g} over the data ({100 * np.ptp(values) / spread:.2g}% "
                         "of the loss range): the data cannot identify it; widen the range of sizes / tokens")
    if "e" in names and y.size and np.exp(theta[names.index("e")]) < 1e-3 * float(y.min()):
        warns.append("E ≈ 0: the irreducible loss is not identified by these runs; treat E as unknown or add larger runs")
    if bootstrap_theta is not None and len(bootstrap_theta) > 1:
        bt = np.asarray(bootstrap_theta, np.float64)
        se = np.nanstd(bt, axis=0, ddof=1)
        for name in scale_names:
            j = names.index(name)
            if se[j] > 1.0:
                warns.append(f"log {name.upper()} has bootstrap standard error {se[j]:.2g} (a factor ~{np.exp(se[j]):.2g} "
                             f"in {name.upper()}): the data barely identify this term; add runs that vary it")
        for name in exponent_names:
            j = names.index(name)
            if se[j] > abs(theta[j]):
                warns.append(f"{name} has bootstrap standard error {se[j]:.2g} larger than its value {theta[j]:.2g}: "
                             "it is not identified; add sizes / token counts or fix alpha = beta")
    return warns


# ============================================================================================
# Back-tests
# ============================================================================================
@dataclass
class BacktestResult:
    """Fit below a compute threshold, predict above it."""

    threshold: float  # compute (FLOPs unless the caller chose another axis) separating train from test
    n_train: int
    n_test: int
    fit: object  # core.fit.FitResult on the training points
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
        from core.fit import _jsonable

        return _jsonable({
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
        train_residuals=fit.diagnostics.get("residual_summary", {}),
        test_residuals=residual_diagnostics(r, covariates_test),
    )


def backtest(n_params, tokens, loss, threshold: float, *, flops=None, settings=None, weights=None,
             progress=None) -> BacktestResult:
    """Approach 3 back-test: fit the Chinchilla law on runs with C < threshold, predict C ≥ threshold.

    ``flops`` defaults to 6·N·D. ``settings`` is an ``Approach3Settings`` (drop_highest applies to
    the training points only). Raises ``FitError`` when either side is empty or too small to fit.
    """
    from core.fit import fit_chinchilla

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
    """The same back-test for any law of core.fit.LAW_NAMES; ``compute`` is the axis to split on."""
    from core.fit import fit_law

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
