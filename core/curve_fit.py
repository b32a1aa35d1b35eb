"""Fit a schedule-aware loss-curve law (core.registry.CURVE_LAWS; formulas in core/loss_curve.py) to
a run's logged (step, loss) points and forecast its loss to the end of its LR schedule, with a
bootstrap interval; back-test it on a finished run.

Fitting uses the robust machinery of the final-loss laws (Hoffmann et al. 2022, §D.2): Huber loss
(δ = 1e-3) on log loss, many starts, the best kept; the interval comes from a moving-block residual
bootstrap (Künsch 1989).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from core.errors import FitError, InputError
from core.format import CONFIDENCE
from core.loss_curve import MAX_FIT_POINTS, CurveFeatures, CurveLaw, curve_features, lr_area
from core.progress import ProgressFn, report
from core.registry import curve_law

HUBER_DELTA = 1e-3      # Hoffmann et al. 2022: Huber δ on log loss


# A fit-space parameter at its bound was not pinned by the observed part of the run. Back-test of the
# 14 bundled demo runs (benchmarks/forecast.py): every LR-annealing forecast fitted on 40% or 60% of a
# run and more than 15% off had L0 or φ at a bound, and those without a flag were within 14%; the
# page and the CLI say so beside the number. (For the multi-power law the flags track the error less
# well: its β and γ are rarely pinned by short runs, and flagging them would say little.)
BOUND_TOLERANCE = 1e-4
EXTRAPOLATING = 0.95  # warn only when the horizon lies beyond the last fitted step by > 5% of the run
BOUND_MEANING = {
    ("L0", "lower"): "the irreducible loss L0 sits at its bound 0: the observed part of the run does not pin "
                     "it down, so the forecast may fall far too low",
    ("phi", "upper"): "the fitted LR decay removes all of the reducible loss by the end (its bound): the "
                      "observed part has annealed too little to pin that term down, so the forecast is likely "
                      "too low",
}


# The bounds worth a word. Not the amplitudes' (A, C: only signs), nor φ = 0 (no gain from the decay
# yet: a conservative forecast, not one that falls too low), nor the multi-power shape exponents β, γ.
WATCHED_BOUNDS = {("L0", "lower"), ("phi", "upper"), ("alpha", "lower"), ("alpha", "upper")}


def params_at_bounds(law: CurveLaw, theta_fit) -> list[tuple[str, str]]:
    """(fit-space name, "lower"|"upper") of each watched parameter the fit left at a bound."""
    hits = []
    for name, value, lo, hi in zip(law.fit_names, theta_fit, law.lower, law.upper):
        if value - lo <= BOUND_TOLERANCE * max(1.0, abs(lo)):
            hits.append((name, "lower"))
        elif np.isfinite(hi) and hi - value <= BOUND_TOLERANCE * max(1.0, abs(hi)):
            hits.append((name, "upper"))
    return [hit for hit in hits if hit in WATCHED_BOUNDS]


def bound_warnings(law: CurveLaw, theta_fit) -> list[str]:
    """One sentence per parameter at a bound, saying what it means for the forecast."""
    return [BOUND_MEANING.get((name, side), f"{name} sits at its {side} bound: the observed part of the run "
                                             "does not pin it down; treat the forecast with care")
            for name, side in params_at_bounds(law, theta_fit)]


# ---- fitting --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class CurveFitConfig:
    law: str = "lr-annealing"     # a key of CURVE_LAWS
    bootstrap: int = 200          # residual-bootstrap refits for the interval (0 = none)
    seed: int = 0                 # the bootstrap's seed: the same inputs give the same interval
    block: int = 10               # bootstrap block length in points: neighbouring log points are correlated
    confidence: float = CONFIDENCE
    skip_warmup: bool = True      # fit from the end of warmup: the first steps' transient is not a power law in S1


def average_points(steps, loss, max_points: int = MAX_FIT_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Sort, drop non-finite/non-positive, and average into ≤ max_points consecutive groups."""
    steps = np.asarray(steps, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    keep = np.isfinite(steps) & np.isfinite(loss) & (loss > 0) & (steps >= 1)
    steps, loss = steps[keep], loss[keep]
    order = np.argsort(steps, kind="stable")
    steps, loss = steps[order], loss[order]
    if len(steps) > max_points:
        groups = np.array_split(np.arange(len(steps)), max_points)
        steps = np.array([np.round(steps[g].mean()) for g in groups])
        loss = np.array([loss[g].mean() for g in groups])
    return steps.astype(np.int64), loss


def _solve(law: CurveLaw, f: CurveFeatures, log_loss: np.ndarray, starts: Sequence,
           f_scale: float = HUBER_DELTA) -> tuple[np.ndarray, float]:
    def residual(theta):
        pred = law.predict_fit(theta, f)
        return np.log(np.maximum(pred, 1e-12)) - log_loss

    from scipy import optimize  # on first fit only: the Runs page imports this module at start-up

    lo, hi = np.array(law.lower), np.array(law.upper)
    best, best_cost = None, np.inf
    for theta0 in starts:
        x0 = np.clip(np.asarray(theta0, dtype=np.float64), lo, np.where(np.isfinite(hi), hi, np.inf))
        x0 = np.where(x0 <= lo, lo + 1e-9 + 1e-6 * np.abs(lo), x0)
        x0 = np.minimum(x0, np.where(np.isfinite(hi), hi - 1e-9, x0))
        try:
            with np.errstate(all="ignore"):
                sol = optimize.least_squares(residual, x0, bounds=(lo, hi), loss="huber", f_scale=f_scale,
                                             x_scale="jac", max_nfev=400)
        except ValueError:
            continue
        if np.isfinite(sol.cost) and sol.cost < best_cost:
            best, best_cost = sol.x, float(sol.cost)
    if best is None:
        raise FitError(f"the {law.label} law could not be fitted to this curve; check that the loss falls "
                       "and the LR is right (peak, warmup).")
    return best, best_cost


@dataclass
class CurveForecast:
    law: str
    params: dict                       # law parameter name → value
    fit_steps: np.ndarray              # (M,) averaged points the law was fitted to
    fit_loss: np.ndarray               # (M,)
    steps: np.ndarray                  # (P,) steps of the forecast curve (to the horizon)
    loss: np.ndarray                   # (P,) forecast loss
    lo: np.ndarray                     # (P,) lower band (nan without bootstrap)
    hi: np.ndarray                     # (P,) upper band
    final_step: int
    final_loss: float
    interval: tuple                    # (lo, hi) of the final loss at the confidence level
    confidence: float
    n_bootstrap: int
    rmse_log: float                    # RMS of log residuals on the fitted points
    warnings: tuple = ()               # what the parameters at a bound mean for a forecast past the data
    at_bounds: tuple = ()              # the fit-space names of those parameters
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"law": self.law, "params": self.params, "final_step": self.final_step,
                "final_loss": self.final_loss, "interval": list(self.interval), "confidence": self.confidence,
                "n_bootstrap": self.n_bootstrap, "n_points": int(len(self.fit_steps)),
                "last_observed_step": int(self.fit_steps[-1]), "rmse_log": self.rmse_log,
                "warnings": list(self.warnings), "at_bounds": list(self.at_bounds), **self.extra}


def forecast_curve(steps, loss, lr: np.ndarray, warmup_steps: int, config: CurveFitConfig = CurveFitConfig(),
                   *, progress: Optional[ProgressFn] = None, n_curve: int = 200) -> CurveForecast:
    """Fit ``config.law`` to the observed (step, loss) points and forecast to step len(lr).

    ``lr``: the LR of every step 1..T (logged where known, the declared schedule after), shape (T,).
    """
    law = curve_law(config.law)
    lr = np.asarray(lr, dtype=np.float64)
    if lr.ndim != 1 or len(lr) < 2 or not np.all(np.isfinite(lr)) or np.any(lr < 0) or lr.max() <= 0:
        raise InputError("the LR per step must be finite, non-negative and positive somewhere.")
    fit_steps, fit_loss = average_points(steps, loss, law.max_points)
    if config.skip_warmup and warmup_steps > 0 and (fit_steps > warmup_steps).sum() >= len(law.param_names) + 2:
        fit_loss, fit_steps = fit_loss[fit_steps > warmup_steps], fit_steps[fit_steps > warmup_steps]
    fit_steps_in = fit_steps[fit_steps <= len(lr)]
    if len(fit_steps_in) < len(law.param_names) + 2:
        raise InputError(f"need at least {len(law.param_names) + 2} logged loss points before the horizon "
                         f"to fit the {law.label} law (have {len(fit_steps_in)}).")
    fit_loss = fit_loss[fit_steps <= len(lr)]
    fit_steps = fit_steps_in
    if lr[fit_steps - 1].min() <= 0 and lr_area(lr)[fit_steps[0] - 1] <= 0:
        raise InputError("the LR area is 0 at the first logged step; check the schedule's warmup.")
    f = curve_features(lr, warmup_steps, fit_steps)
    log_loss = np.log(fit_loss)
    theta, _ = _solve(law, f, log_loss, law.starts(f, fit_loss))
    # A logged curve is noisier than Hoffmann's final losses: rescale Huber's δ to the noise (1.345·σ,
    # σ from the residuals' MAD; Huber 1964's 95%-efficiency constant) so that outliers, not ordinary
    # step-to-step noise, are down-weighted; then refit from the first solution.
    first = np.log(np.maximum(law.predict_fit(theta, f), 1e-12)) - log_loss
    f_scale = max(HUBER_DELTA, 1.345 * 1.4826 * float(np.median(np.abs(first - np.median(first)))))
    theta, _ = _solve(law, f, log_loss, [theta], f_scale)
    T = len(lr)
    curve_steps = np.unique(np.round(np.geomspace(max(1, fit_steps[0]), T, n_curve)).astype(np.int64))
    curve_steps = np.union1d(curve_steps, [T])
    fc = curve_features(lr, warmup_steps, curve_steps)
    pred = law.predict_fit(theta, fc)
    fitted = law.predict_fit(theta, f)
    resid = np.log(np.maximum(fitted, 1e-12)) - log_loss
    rmse = float(np.sqrt(np.mean(resid ** 2)))

    lo = hi = np.full_like(pred, np.nan)
    interval = (float("nan"), float("nan"))
    if config.bootstrap > 0:
        rng = np.random.default_rng(config.seed)
        n, block = len(resid), max(1, min(config.block, len(resid) // 4 or 1))
        finals = np.empty((config.bootstrap, len(curve_steps)))
        pool = law.starts(f, fit_loss) if law.bootstrap_restarts else []
        for b in range(config.bootstrap):
            # moving-block bootstrap of the log residuals (Künsch 1989): keeps their correlation
            starts = rng.integers(0, n - block + 1, size=int(np.ceil(n / block)))
            res_b = np.concatenate([resid[s:s + block] for s in starts])[:n]
            log_b = np.log(np.maximum(fitted, 1e-12)) - res_b
            # each refit starts from the best fit and, for a weakly identified law, from some of its
            # usual starts in turn, so that a replicate can reach the law's other optima (the whole fit
            # is what the bootstrap must repeat; starting from θ alone narrows the interval)
            k = law.bootstrap_restarts
            theta_b, _ = _solve(law, f, log_b, [theta] + [pool[(b * k + j) % len(pool)] for j in range(k)], f_scale)
            finals[b] = law.predict_fit(theta_b, fc)
            report(progress, b + 1, config.bootstrap, f"bootstrap {b + 1}/{config.bootstrap}")
        tail = (1 - config.confidence) / 2
        lo, hi = np.quantile(finals, [tail, 1 - tail], axis=0)
        interval = (float(lo[-1]), float(hi[-1]))
    return CurveForecast(law.key, dict(zip(law.param_names, map(float, law.law_params(theta, f)))), fit_steps, fit_loss,
                         curve_steps, pred, lo, hi, int(T), float(pred[-1]), interval, config.confidence,
                         int(config.bootstrap), rmse,
                         tuple(bound_warnings(law, theta)) if fit_steps[-1] < EXTRAPOLATING * T else (),
                         tuple(name for name, _ in params_at_bounds(law, theta)))


@dataclass(frozen=True)
class BacktestRow:
    fraction: float        # share of the run's steps the law saw
    observed_until: int    # last step fitted
    predicted: float       # predicted mean loss over the run's last 10% of steps
    actual: float          # the logged mean loss over the same steps (a noisy per-step loss averages out)
    error_pct: float       # 100·(predicted − actual)/actual
    at_bounds: tuple = ()  # fit-space parameters the fit left at a bound (CurveForecast.at_bounds)

BACKTEST_WINDOW = 0.1      # the "final loss" of a logged curve: its mean over the last 10% of steps


def backtest_curve(steps, loss, lr: np.ndarray, warmup_steps: int, fractions=(0.2, 0.4, 0.6),
                   config: CurveFitConfig = CurveFitConfig(bootstrap=0)) -> list[BacktestRow]:
    """Fit on the first fraction of a finished run's steps and compare the forecast to its end."""
    steps = np.asarray(steps, dtype=np.float64)
    loss = np.asarray(loss, dtype=np.float64)
    T = len(lr)
    law = curve_law(config.law)
    ok = np.isfinite(steps) & np.isfinite(loss) & (steps >= 1) & (steps <= T)
    end = ok & (steps > (1 - BACKTEST_WINDOW) * T)
    if end.sum() < 1:
        raise InputError("the run has no logged loss in its last 10% of steps to back-test against.")
    actual = float(np.mean(loss[end]))
    window = curve_features(lr, warmup_steps, steps[end].astype(np.int64))
    rows = []
    for frac in fractions:
        cut = frac * T
        seen = ok & (steps <= cut)
        fc = forecast_curve(steps[seen], loss[seen], lr, warmup_steps, config)
        theta = np.array([fc.params[n] for n in law.param_names])
        predicted = float(np.mean(law.predict(theta, window)))
        rows.append(BacktestRow(float(frac), int(cut), predicted, actual, 100.0 * (predicted - actual) / actual,
                                fc.at_bounds))
    return rows
