"""Downstream scaling: laws that connect loss or compute to benchmark scores, fitted robustly.

Laws (x is the scale variable the caller chooses: loss, log compute, pretraining tokens …)
- Sigmoid with a floor and a ceiling, the link Ruan et al. 2024 ("Observational scaling laws")
  use for "emergent" tasks:                              y = b + (c − b)·σ(w·x + w₀)
  Here ``floor`` = b (random-guess level), ``ceiling`` = c (best reachable score). ``x`` may be one
  column (metric vs loss, vs log10 FLOPs) or several (metric vs principal components, where
  ``w·x`` is a dot product); then the slopes are named w1 … wk.
- Log-law of Isik et al. 2024 ("Scaling laws for downstream task performance in machine
  translation") for BLEU/COMET-like scores:             f(D_p) = (log(A·D_p^α))^β
  with the natural log; we fit log_A = log A so A never overflows.
- Power law with an irreducible term for downstream cross-entropy (Isik et al. 2024;
  Hestness et al. 2017):                                  L(x) = E + A·x^(−α)

Every fit is bounded, multi-start (data-driven and random starts screened by their error, the
best few optimised), robust (scipy's ``soft_l1`` loss, its scale set from a plain least-squares
pass), and carries seedable bootstrap intervals. Nothing here touches Streamlit or a database.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from scipy.optimize import least_squares
from scipy.special import expit
from scipy.stats import norm

from core.errors import FitError, InputError
from core.format import CONFIDENCE
from core.laws import power_law_offset
from core.progress import ProgressFn, report

LAW_SIGMOID = "sigmoid_floor_ceiling"
LAW_LOG_LAW = "isik_log_law"
LAW_POWER = "power_law_irreducible"


# --------------------------------------------------------------------------------------------
# The laws as plain numpy functions of their reported parameters
# --------------------------------------------------------------------------------------------
def sigmoid_floor_ceiling(x, floor, ceiling, w, w0) -> np.ndarray:
    """Ruan et al. 2024 sigmoid link: y = b + (c − b)·σ(w·x + w₀), b = floor, c = ceiling.

    ``x`` is (n,) with scalar ``w``, or (n, k) with ``w`` of length k (a dot product per row).
    """
    xa = np.asarray(x, dtype=np.float64)
    wa = np.asarray(w, dtype=np.float64)
    z = xa @ wa if xa.ndim == 2 else xa * wa
    return floor + (ceiling - floor) * expit(z + w0)


def isik_log_law(x, log_A, alpha, beta) -> np.ndarray:
    """Isik et al. 2024 log-law: f(x) = (log(A·x^α))^β = (log A + α·ln x)^β, natural log.

    Where the base log(A·x^α) is not positive the law has no real value; we return 0 there
    (a score cannot be negative), which keeps the fit's objective defined everywhere.
    """
    base = log_A + alpha * np.log(np.asarray(x, dtype=np.float64))
    return np.power(np.clip(base, 0.0, None), beta)


def power_law_irreducible(x, E, A, alpha) -> np.ndarray:
    """Isik et al. 2024 (downstream cross-entropy) / Hestness et al. 2017: L(x) = E + A·x^(−α)."""
    return power_law_offset(x, E, A, alpha)


def _eval_sigmoid(x, p: dict) -> np.ndarray:
    w = p["w"] if "w" in p else np.asarray([p[f"w{j}"] for j in range(1, len(p) - 2)])  # w1 … wk
    return sigmoid_floor_ceiling(x, p["floor"], p["ceiling"], w, p["w0"])


# Law name -> f(x, params dict) -> ŷ, used by DownstreamFit.predict. Other core modules add
# their laws here (core/forgetting.py adds Kalajdzievski 2024's).
LAW_EVALUATORS: dict = {
    LAW_SIGMOID: _eval_sigmoid,
    LAW_LOG_LAW: lambda x, p: isik_log_law(x, p["log_A"], p["alpha"], p["beta"]),
    LAW_POWER: lambda x, p: power_law_irreducible(x, p["E"], p["A"], p["alpha"]),
}


# --------------------------------------------------------------------------------------------
# Settings and results
# --------------------------------------------------------------------------------------------
@dataclass
class DownstreamFitConfig:
    n_starts: int = 64  # random starting points drawn in the bounds besides the data-driven ones:
    #                     sigmoid and log-law surfaces have plateaus where a single start stalls
    n_polish: int = 6  # the starts with the lowest initial error are optimised (screening is one
    #                    evaluation each; an optimisation costs tens)
    n_bootstrap: int = 200  # resamples for the intervals: ~200 gives stable 95% percentiles
    confidence: float = CONFIDENCE  # two-sided level of every interval (the app's one level, core/format.py)
    seed: Optional[int] = 0  # fixes starts and resamples, so a fit repeats exactly
    robust_loss: str = "soft_l1"  # scipy least_squares loss: one broken eval should not drag the
    #                               curve; "linear" gives plain least squares
    robust_scale: Optional[float] = None  # residual size where the robust loss bends; None: 1.4826·MAD
    #                                       of a plain fit's residuals (a robust noise estimate)
    max_nfev: int = 400  # evaluations per start: plenty for 3-6 parameters, bounded for the UI


@dataclass
class Prediction:
    """A fitted curve at chosen x, with the bootstrap band of the curve (not of one new point)."""

    x: np.ndarray  # the x asked for, as given (before any log transform)
    value: np.ndarray  # the curve at the best-fit parameters
    lower: np.ndarray  # lower end of the band at ``confidence``
    upper: np.ndarray  # upper end
    confidence: float

    def to_dict(self) -> dict:
        return {"x": self.x.tolist(), "value": self.value.tolist(), "lower": self.lower.tolist(),
                "upper": self.upper.tolist(), "confidence": self.confidence}


@dataclass
class DownstreamFit:
    law: str  # LAW_SIGMOID, LAW_LOG_LAW or LAW_POWER
    params: dict  # reported parameters by name (see the law functions above)
    stderr: dict  # bootstrap standard deviation per parameter (asymptotic when no bootstrap)
    intervals: dict  # name -> (lower, upper) bootstrap percentile interval at ``confidence``
    confidence: float
    x_transform: str  # "none" or "log10": what the fit applied to x before the law
    n_points: int
    rmse: float  # root mean square residual of the best fit, in y units
    r2: float  # 1 − SS_res/SS_tot of the best fit
    settings: dict = field(default_factory=dict)  # config and bounds used, for the fits table
    diagnostics: dict = field(default_factory=dict)  # cost, starts, bootstrap successes, stderr method
    bootstrap_params: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # (n_ok, n_params)

    # ---- prediction ------------------------------------------------------------------------
    def _law_x(self, x) -> np.ndarray:
        xa = np.asarray(x, dtype=np.float64)
        if self.x_transform == "log10":
            if np.any(xa <= 0):
                raise InputError("x must be positive for a fit made on log10(x); give FLOPs/params > 0.")
            return np.log10(xa)
        return xa

    def _eval(self, x_law: np.ndarray, param_vector) -> np.ndarray:
        if self.law not in LAW_EVALUATORS:
            raise InputError(f"unknown law {self.law!r}; known: {sorted(LAW_EVALUATORS)} "
                             "(import core.forgetting for the forgetting law).")
        return LAW_EVALUATORS[self.law](x_law, dict(zip(self.params.keys(), param_vector)))

    def predict(self, x) -> np.ndarray:
        """The best-fit curve at ``x`` (raw units: the fit applies its own log transform)."""
        return self._eval(self._law_x(x), list(self.params.values()))

    def intervals_at(self, confidence: Optional[float] = None) -> dict:
        """name -> (lower, upper): each parameter's central ``confidence`` interval, percentiles of
        the bootstrap refits (the stored intervals when there were fewer than two)."""
        level = self.confidence if confidence is None else float(confidence)
        boot = np.asarray(self.bootstrap_params, dtype=np.float64)
        if boot.ndim != 2 or boot.shape[0] < 2 or boot.shape[1] != len(self.params):
            return dict(self.intervals)
        tail = 100 * (1 - level) / 2
        lower, upper = np.nanpercentile(boot, [tail, 100 - tail], axis=0)
        return {k: (float(lo), float(hi)) for k, lo, hi in zip(self.params, lower, upper)}

    def predict_interval(self, x, confidence: Optional[float] = None) -> Prediction:
        """The curve at ``x`` and its bootstrap band: percentiles of the resampled fits' curves."""
        level = self.confidence if confidence is None else float(confidence)
        xa = np.asarray(x, dtype=np.float64)
        x_law = self._law_x(xa)
        value = np.asarray(self._eval(x_law, list(self.params.values())), dtype=np.float64)
        if len(self.bootstrap_params) >= 2:
            curves = np.stack([self._eval(x_law, row) for row in self.bootstrap_params])
            tail = 100 * (1 - level) / 2
            lower, upper = np.percentile(curves, [tail, 100 - tail], axis=0)
        else:  # no bootstrap: a band of ± z·rmse, the residual spread
            z = norm.ppf(0.5 + level / 2)
            lower, upper = value - z * self.rmse, value + z * self.rmse
        return Prediction(x=xa, value=value, lower=np.asarray(lower), upper=np.asarray(upper),
                          confidence=level)

    # ---- storage -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """Plain JSON-able dict with the keys of the ``fits`` table (law, method, params, …)."""
        return {
            "law": self.law,
            "method": f"least_squares[{self.settings.get('robust_loss', 'soft_l1')}]+bootstrap",
            "params": {k: float(v) for k, v in self.params.items()},
            "stderr": {k: float(v) for k, v in self.stderr.items()},
            "intervals": {k: [float(a), float(b)] for k, (a, b) in self.intervals.items()},
            "confidence": self.confidence,
            "x_transform": self.x_transform,
            "n_points": self.n_points,
            "rmse": self.rmse,
            "r2": self.r2,
            "settings": dict(self.settings),
            "diagnostics": {**self.diagnostics,
                            "bootstrap_params": np.asarray(self.bootstrap_params).tolist()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> "DownstreamFit":
        """Rebuild a fit stored with :meth:`to_dict` (so a page can forecast from the fits table)."""
        diagnostics = dict(d.get("diagnostics", {}))
        boot = np.asarray(diagnostics.pop("bootstrap_params", []), dtype=np.float64)
        return cls(law=d["law"], params=dict(d["params"]), stderr=dict(d.get("stderr", {})),
                   intervals={k: tuple(v) for k, v in d.get("intervals", {}).items()},
                   confidence=float(d.get("confidence", CONFIDENCE)), x_transform=d.get("x_transform", "none"),
                   n_points=int(d.get("n_points", 0)), rmse=float(d.get("rmse", np.nan)),
                   r2=float(d.get("r2", np.nan)), settings=dict(d.get("settings", {})),
                   diagnostics=diagnostics, bootstrap_params=boot)


# --------------------------------------------------------------------------------------------
# The generic engine: a law in internal (well-scaled) coordinates
# --------------------------------------------------------------------------------------------
@dataclass
class LawProblem:
    """One law prepared for the data: internal coordinates are centred/scaled for the optimiser.

    Other core modules (core/forgetting.py) build one and call :func:`run_fit`; they register the
    law's evaluator in LAW_EVALUATORS so the result can predict."""

    law: str
    names: list  # reported parameter names, in order
    lower: np.ndarray  # bounds of the internal vector
    upper: np.ndarray
    starts: np.ndarray  # (m, p) internal starting points (data-driven ones first)
    model: Callable  # (theta, idx) -> ŷ at the data rows idx
    to_reported: Callable  # theta -> reported vector (len(names))
    settings: dict
    jacobian: Optional[Callable] = None  # (theta, idx) -> (n, p) dŷ/dθ; analytic is ~4x faster


def check_xy(x, y, what: str) -> tuple:
    try:
        xa = np.asarray(x, dtype=np.float64)
        ya = np.asarray(y, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{what}: x and y must be numbers ({exc}); remove text cells and retry.")
    if xa.ndim not in (1, 2) or xa.shape[0] != ya.shape[0]:
        raise InputError(f"{what}: x has {xa.shape[0] if xa.ndim else 0} rows but y has {len(ya)}; "
                         "give one x per score.")
    bad_x = ~np.isfinite(xa) if xa.ndim == 1 else ~np.isfinite(xa).all(axis=1)
    if bad_x.any():
        raise InputError(f"{what}: {int(bad_x.sum())} point(s) have no x value (a model with no size, "
                         "FLOPs or loss?); fill them in or drop those models.")
    if (~np.isfinite(ya)).any():
        raise InputError(f"{what}: {int((~np.isfinite(ya)).sum())} score(s) are missing or infinite; "
                         "drop them before fitting.")
    return xa, ya


def _solve(problem: LawProblem, y: np.ndarray, idx: np.ndarray, starts: np.ndarray, loss: str,
           f_scale: float, max_nfev: int, tol: float = 1e-8):
    """Best least_squares solution over ``starts``; returns (theta, cost) or (None, inf)."""
    best_theta, best_cost = None, np.inf
    yi = y[idx]
    for theta0 in starts:
        theta0 = np.clip(theta0, problem.lower, problem.upper)
        jac = "2-point" if problem.jacobian is None else (lambda t: problem.jacobian(t, idx))
        try:
            res = least_squares(lambda t: problem.model(t, idx) - yi, theta0, jac=jac,
                                bounds=(problem.lower, problem.upper), loss=loss, f_scale=f_scale,
                                max_nfev=max_nfev, method="trf", ftol=tol, xtol=tol)
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            continue
        if np.isfinite(res.cost) and res.cost < best_cost:
            best_theta, best_cost = res.x, float(res.cost)
    return best_theta, best_cost


def _numeric_jacobian(fn: Callable, theta: np.ndarray) -> np.ndarray:
    """Central differences of a vector function (small p: a handful of evaluations)."""
    f0 = np.asarray(fn(theta), dtype=np.float64)
    jac = np.empty((f0.size, theta.size))
    for j in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[j]))
        tp, tm = theta.copy(), theta.copy()
        tp[j] += h
        tm[j] -= h
        jac[:, j] = (np.asarray(fn(tp)) - np.asarray(fn(tm))) / (2 * h)
    return jac


def run_fit(problem: LawProblem, x_transform: str, y: np.ndarray, config: DownstreamFitConfig,
            progress: Optional[ProgressFn]) -> DownstreamFit:
    """Multi-start bounded least squares, a robust refit, then a seeded bootstrap."""
    cfg = config
    n, p = len(y), len(problem.lower)
    if n < p + 1:
        raise FitError(f"{problem.law} has {p} parameters but only {n} points were given; "
                       f"give at least {p + 1} points (models or checkpoints) or fix a parameter.")
    if not 0 < cfg.confidence < 1:
        raise InputError(f"confidence must be between 0 and 1, got {cfg.confidence}; use e.g. 0.95.")
    rng = np.random.default_rng(cfg.seed)
    idx_all = np.arange(n)
    total = 1 + cfg.n_bootstrap
    report(progress, 0, total, f"fitting {problem.law}")

    # 1) screen every start by its error, 2) plain least squares from the best few,
    # 3) a robust refit from the best solution.
    random_starts = problem.lower + rng.random((cfg.n_starts, p)) * (problem.upper - problem.lower)
    random_starts = np.where(np.isfinite(random_starts), random_starts, 0.0)
    starts = np.clip(np.vstack([problem.starts, random_starts]), problem.lower, problem.upper)
    with np.errstate(all="ignore"):
        sse = np.array([np.sum((problem.model(t, idx_all) - y) ** 2) for t in starts])
    sse = np.where(np.isfinite(sse), sse, np.inf)
    # screened multi-start: the best few overall, and always the best data-driven one
    chosen = list(np.argsort(sse, kind="stable")[: max(1, cfg.n_polish)])
    best_data = int(np.argmin(sse[: len(problem.starts)]))
    if best_data not in chosen:
        chosen.append(best_data)
    theta, cost = _solve(problem, y, idx_all, starts[chosen], "linear", 1.0, cfg.max_nfev)
    if theta is None:
        raise FitError(f"{problem.law}: no start converged; check that the scores vary with x "
                       "and that x is in the units the law expects.")
    resid = problem.model(theta, idx_all) - y
    span = float(np.ptp(y)) or 1.0
    scale = cfg.robust_scale or max(1.4826 * float(np.median(np.abs(resid - np.median(resid)))),
                                    1e-6 * span)
    if cfg.robust_loss != "linear":
        robust_theta, _ = _solve(problem, y, idx_all, theta[None, :], cfg.robust_loss, scale, cfg.max_nfev)
        theta = robust_theta if robust_theta is not None else theta
    fitted = problem.model(theta, idx_all)
    resid = fitted - y
    rmse = float(np.sqrt(np.mean(resid ** 2)))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = float(1 - np.sum(resid ** 2) / ss_tot) if ss_tot > 0 else float("nan")
    best = np.asarray(problem.to_reported(theta), dtype=np.float64)
    report(progress, 1, total, "bootstrap")

    # Bootstrap: resample points with replacement, refit from the best solution.
    boot = []
    n_distinct_needed = min(p + 1, n)  # a resample needs enough distinct points to pin the law
    for b in range(cfg.n_bootstrap):
        idx = rng.integers(0, n, n)
        if len(np.unique(idx)) < n_distinct_needed:
            continue
        # a resample only needs the spread of the estimate: looser tolerances, same optimum
        t_b, _ = _solve(problem, y, idx, theta[None, :], cfg.robust_loss, scale, cfg.max_nfev, tol=1e-6)
        if t_b is not None:
            boot.append(problem.to_reported(t_b))
        report(progress, 2 + b, total, "bootstrap")
    boot_arr = np.asarray(boot, dtype=np.float64).reshape(-1, len(best))
    tail = 100 * (1 - cfg.confidence) / 2

    if len(boot_arr) >= 10:
        stderr_vec = boot_arr.std(axis=0, ddof=1)
        lo, hi = np.percentile(boot_arr, [tail, 100 - tail], axis=0)
        stderr_method = "bootstrap"
    else:  # asymptotic: s²·(JᵀJ)⁻¹ in internal coordinates, mapped by the delta method
        jac = _numeric_jacobian(lambda t: problem.model(t, idx_all), theta)
        s2 = float(np.sum(resid ** 2)) / max(n - p, 1)
        cov_int = s2 * np.linalg.pinv(jac.T @ jac)
        g = _numeric_jacobian(lambda t: np.asarray(problem.to_reported(t)), theta)
        stderr_vec = np.sqrt(np.clip(np.diag(g @ cov_int @ g.T), 0, None))
        z = norm.ppf(0.5 + cfg.confidence / 2)
        lo, hi = best - z * stderr_vec, best + z * stderr_vec
        stderr_method = "asymptotic"
    report(progress, total, total, "done")

    names = problem.names
    return DownstreamFit(
        law=problem.law,
        params={k: float(v) for k, v in zip(names, best)},
        stderr={k: float(v) for k, v in zip(names, stderr_vec)},
        intervals={k: (float(a), float(b)) for k, a, b in zip(names, lo, hi)},
        confidence=cfg.confidence, x_transform=x_transform, n_points=n, rmse=rmse, r2=r2,
        settings={"n_starts": cfg.n_starts, "n_polish": cfg.n_polish, "n_bootstrap": cfg.n_bootstrap,
                  "seed": cfg.seed, "robust_loss": cfg.robust_loss, "robust_scale": scale,
                  "max_nfev": cfg.max_nfev, **problem.settings},
        diagnostics={"cost_least_squares": float(cost), "n_bootstrap_ok": int(len(boot_arr)),
                     "stderr_method": stderr_method},
        bootstrap_params=boot_arr,
    )


# --------------------------------------------------------------------------------------------
# Sigmoid with floor and ceiling (Ruan et al. 2024)
# --------------------------------------------------------------------------------------------
def fit_sigmoid(x, y, *, log_x: bool = False, floor: Optional[float] = None,
                ceiling: Optional[float] = None, y_bounds: Optional[tuple] = None,
                config: Optional[DownstreamFitConfig] = None,
                progress: Optional[ProgressFn] = None) -> DownstreamFit:
    """Fit y = floor + (ceiling − floor)·σ(w·x + w₀) (Ruan et al. 2024).

    x: (n,) — e.g. loss, or FLOPs with ``log_x=True`` (the law then sees log10 FLOPs) — or (n, k)
    for several predictors (principal components). ``floor``/``ceiling`` fix b/c when given (e.g.
    the random-guess accuracy 0.25 of a 4-way multiple-choice task). ``y_bounds`` bounds b and c;
    by default (0, 1) when every score is in [0, 1], else the observed range widened by its span.
    """
    cfg = config or DownstreamFitConfig()
    xa, ya = check_xy(x, y, "sigmoid fit")
    x_transform = "none"
    if log_x:
        if np.any(xa <= 0):
            raise InputError("sigmoid fit on log10(x): every x must be positive (FLOPs, params, tokens).")
        xa, x_transform = np.log10(xa), "log10"
    multi = xa.ndim == 2
    X = xa if multi else xa[:, None]  # (n, k)
    k = X.shape[1]
    mu, sd = X.mean(axis=0), X.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    U = (X - mu) / sd  # standardised predictors: slopes of order 1 for the optimiser

    if y_bounds is None:
        if ya.min() >= 0 and ya.max() <= 1:
            y_lo, y_hi = 0.0, 1.0
        else:
            span = float(np.ptp(ya)) or 1.0
            y_lo, y_hi = float(ya.min() - span), float(ya.max() + span)
    else:
        y_lo, y_hi = map(float, y_bounds)
    if floor is not None and ceiling is not None and not floor < ceiling:
        raise InputError(f"sigmoid fit: floor {floor} must be below ceiling {ceiling}; swap or free one.")
    for name, val in (("floor", floor), ("ceiling", ceiling)):
        if val is not None and not y_lo <= val <= y_hi:
            raise InputError(f"sigmoid fit: fixed {name} {val} is outside the score range "
                             f"[{y_lo}, {y_hi}]; pass y_bounds that contain it.")

    # internal theta = [floor?] [ceiling?] v_1..v_k v0 ; v are slopes on standardised x.
    free_floor, free_ceiling = floor is None, ceiling is None
    lo_fc, hi_fc = [], []
    if free_floor:
        lo_fc.append(y_lo)
        hi_fc.append(ceiling if ceiling is not None else y_hi)
    if free_ceiling:
        lo_fc.append(floor if floor is not None else y_lo)
        hi_fc.append(y_hi)
    slope_bound = 60.0  # on standardised x: a transition a few % of the x-range wide
    lower = np.array(lo_fc + [-slope_bound] * k + [-60.0])
    upper = np.array(hi_fc + [slope_bound] * k + [60.0])
    n_fc = len(lo_fc)

    def unpack(theta):
        i = 0
        b = floor
        c = ceiling
        if free_floor:
            b, i = theta[i], i + 1
        if free_ceiling:
            c, i = theta[i], i + 1
        return b, c, theta[i:i + k], theta[i + k]

    def model(theta, idx):
        b, c, v, v0 = unpack(theta)
        return b + (c - b) * expit(U[idx] @ v + v0)

    def jacobian(theta, idx):
        b, c, v, v0 = unpack(theta)
        s = expit(U[idx] @ v + v0)
        ds = (c - b) * s * (1 - s)
        cols = []
        if free_floor:
            cols.append(1 - s)
        if free_ceiling:
            cols.append(s)
        return np.column_stack(cols + [ds[:, None] * U[idx], ds])

    def to_reported(theta):
        b, c, v, v0 = unpack(theta)
        w = v / sd
        w0 = v0 - float(np.sum(v * mu / sd))
        if free_floor and free_ceiling and c < b:  # one curve, two labellings: keep ceiling ≥ floor
            b, c, w, w0 = c, b, -w, -w0
        return [b, c, *w, w0]

    # data-driven starts: floor/ceiling at the observed extremes, slope along the trend.
    corr = np.array([np.corrcoef(U[:, j], ya)[0, 1] if np.std(ya) > 0 else 0.0 for j in range(k)])
    direction = np.nan_to_num(corr) / max(float(np.abs(np.nan_to_num(corr)).max()), 1e-12)
    starts = []
    for scale in (1.0, 3.0, 8.0):
        for v0 in (-2.0, 0.0, 2.0):
            fc = []
            if free_floor:
                fc.append(float(np.clip(ya.min(), y_lo, hi_fc[0])))
            if free_ceiling:
                fc.append(float(np.clip(ya.max(), lo_fc[-1], y_hi)))
            starts.append(fc + list(scale * direction) + [v0])
    names = ["floor", "ceiling"] + (["w"] if not multi else [f"w{j + 1}" for j in range(k)]) + ["w0"]
    problem = LawProblem(
        law=LAW_SIGMOID, names=names, lower=lower, upper=upper, starts=np.asarray(starts),
        model=model, to_reported=to_reported, jacobian=jacobian,
        settings={"y_bounds": [y_lo, y_hi], "fixed_floor": floor, "fixed_ceiling": ceiling,
                  "n_predictors": k, "n_free_floor_ceiling": n_fc},
    )
    return run_fit(problem, x_transform, ya, cfg, progress)


# --------------------------------------------------------------------------------------------
# Log-law (Isik et al. 2024)
# --------------------------------------------------------------------------------------------
def fit_log_law(x, y, *, config: Optional[DownstreamFitConfig] = None,
                progress: Optional[ProgressFn] = None) -> DownstreamFit:
    """Fit f(x) = (log(A·x^α))^β (Isik et al. 2024 log-law); x e.g. pretraining tokens D_p.

    Scores must be ≥ 0 (BLEU, COMET×100, chrF …) and x > 0. Reported: log_A (natural log), alpha, beta.
    """
    cfg = config or DownstreamFitConfig()
    xa, ya = check_xy(x, y, "log-law fit")
    if xa.ndim != 1:
        raise InputError("log-law fit takes one x column (e.g. pretraining tokens); got several.")
    if np.any(xa <= 0):
        raise InputError("log-law fit: every x must be positive (tokens, parameters or FLOPs).")
    if np.any(ya < 0):
        raise InputError("log-law fit: scores must be ≥ 0 (BLEU-like); shift or use the sigmoid instead.")
    ell = np.log(xa)
    ell_lo, ell_hi = float(ell.min()), float(ell.max())
    if ell_hi == ell_lo:
        raise InputError("log-law fit: every x is the same; give scores at several sizes.")
    t = (ell - ell_lo) / (ell_hi - ell_lo)  # 0 at the smallest x, 1 at the largest
    # Internal θ = (y_lo, y_hi, β): the curve's values at the smallest and largest x, and β. The
    # base log(A·x^α) is linear in ln x, so base = y_lo^(1/β)·(1 − t) + y_hi^(1/β)·t. The ends are
    # pinned by the data and β only bends the curve: far better conditioned than (log A, α, β),
    # whose three directions nearly cancel, and the base stays ≥ 0 over the data.
    y_top = float(ya.max()) or 1.0
    tiny = 1e-9 * y_top

    def ends(theta):
        y_lo, y_hi, beta = theta
        return y_lo ** (1.0 / beta), y_hi ** (1.0 / beta)

    def model(theta, idx):
        b_lo, b_hi = ends(theta)
        return (b_lo * (1 - t[idx]) + b_hi * t[idx]) ** theta[2]

    def jacobian(theta, idx):
        y_lo, y_hi, beta = theta
        b_lo, b_hi = ends(theta)
        ti = t[idx]
        base = np.maximum(b_lo * (1 - ti) + b_hi * ti, 1e-300)
        f = base ** beta
        db_lo, db_hi = b_lo / (beta * y_lo), b_hi / (beta * y_hi)  # dB/dy = B/(β·y)
        dbase_dbeta = -(1 - ti) * b_lo * np.log(y_lo) / beta ** 2 - ti * b_hi * np.log(y_hi) / beta ** 2
        common = beta * f / base
        return np.column_stack([common * (1 - ti) * db_lo, common * ti * db_hi,
                                f * (np.log(base) + beta * dbase_dbeta / base)])

    def to_reported(theta):
        b_lo, b_hi = ends(theta)
        alpha = (b_hi - b_lo) / (ell_hi - ell_lo)  # base = log A + α·ln x
        return [b_lo - alpha * ell_lo, alpha, theta[2]]

    # data-driven starts: for a grid of β, y^(1/β) is linear in ln x — a line gives both ends.
    y_pos = np.clip(ya, tiny, None)
    starts = []
    for beta in (0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0):
        slope, icpt = np.polyfit(t, y_pos ** (1.0 / beta), 1)
        b_lo, b_hi = max(icpt, tiny ** (1 / beta)), max(icpt + slope, tiny ** (1 / beta))
        starts.append([b_lo ** beta, b_hi ** beta, beta])
    problem = LawProblem(
        law=LAW_LOG_LAW, names=["log_A", "alpha", "beta"],
        lower=np.array([tiny, tiny, 0.02]), upper=np.array([3 * y_top + 1, 3 * y_top + 1, 20.0]),
        starts=np.clip(np.asarray(starts), [tiny, tiny, 0.02], [3 * y_top + 1, 3 * y_top + 1, 20.0]),
        model=model, to_reported=to_reported, jacobian=jacobian, settings={"log": "natural"},
    )
    return run_fit(problem, "none", ya, cfg, progress)


# --------------------------------------------------------------------------------------------
# Power law with an irreducible term (downstream cross-entropy)
# --------------------------------------------------------------------------------------------
def fit_power_law(x, y, *, config: Optional[DownstreamFitConfig] = None,
                  progress: Optional[ProgressFn] = None) -> DownstreamFit:
    """Fit L(x) = E + A·x^(−α) (Isik et al. 2024) to a decreasing downstream loss.

    Bounds: 0 ≤ E ≤ max(L) when losses are ≥ 0 (cross-entropy), 0 ≤ α ≤ 5. Reported: E, A, alpha.
    """
    cfg = config or DownstreamFitConfig()
    xa, ya = check_xy(x, y, "power-law fit")
    if xa.ndim != 1:
        raise InputError("power-law fit takes one x column (tokens, parameters or FLOPs); got several.")
    if np.any(xa <= 0):
        raise InputError("power-law fit: every x must be positive (tokens, parameters or FLOPs).")
    ell = np.log(xa)
    ell_bar = float(ell.mean())
    u = ell - ell_bar

    def model(theta, idx):
        e, q, alpha = theta
        return e + np.exp(np.clip(q - alpha * u[idx], -700, 700))

    def jacobian(theta, idx):
        e, q, alpha = theta
        g = np.exp(np.clip(q - alpha * u[idx], -700, 700))
        return np.column_stack([np.ones_like(g), g, -u[idx] * g])

    def to_reported(theta):
        e, q, alpha = theta  # A·x^(−α) = exp(q − α(ln x − ℓ̄))  =>  ln A = q + α·ℓ̄
        return [e, float(np.exp(min(q + alpha * ell_bar, 700.0))), alpha]

    span = float(np.ptp(ya)) or 1.0
    e_lo = 0.0 if ya.min() >= 0 else float(ya.min() - span)
    e_hi = float(ya.max())
    starts = []
    for frac in (0.0, 0.5, 0.9, 0.99):
        e0 = e_lo + frac * (float(ya.min()) - e_lo)
        gap = np.clip(ya - e0, 1e-12, None)
        for alpha in (0.05, 0.15, 0.3, 0.6, 1.2):
            starts.append([e0, float(np.mean(np.log(gap) + alpha * u)), alpha])
    problem = LawProblem(
        law=LAW_POWER, names=["E", "A", "alpha"],
        lower=np.array([e_lo, -60.0, 0.0]), upper=np.array([e_hi, 60.0, 5.0]),
        starts=np.asarray(starts), model=model, to_reported=to_reported, jacobian=jacobian,
        settings={},
    )
    return run_fit(problem, "none", ya, cfg, progress)


# Law name (as the CLI / page name it) -> fitting function.
FITTERS = {"sigmoid": fit_sigmoid, "log_law": fit_log_law, "power_law": fit_power_law}


def fit_downstream(law: str, x, y, **kwargs) -> DownstreamFit:
    """Dispatch by name: ``law`` in FITTERS (sigmoid, log_law, power_law)."""
    if law not in FITTERS:
        raise InputError(f"unknown downstream law {law!r}; choose one of {', '.join(FITTERS)}.")
    return FITTERS[law](x, y, **kwargs)
