"""Schedule-aware loss-curve laws: where a run will land, from its beginning and its LR schedule.

Two laws, each a function of the LR of every step ``lr`` (shape (T,), steps 1..T) and the warmup
length W:

- **LR annealing** (Tissue et al. 2024, "Scaling Law with Learning Rate Annealing", eq. 1):
  ``L(s) = L0 + A·S1(s)^(−α) − C·S2(s)`` with the forward area ``S1(s) = Σ_{i≤s} η_i`` and the
  annealing area ``S2(s) = Σ_{i≤s} m_i``, ``m_i = λ·m_{i−1} + (η_{i−1} − η_i)``; λ = 0.999 (the
  paper's default decay factor); m is 0 up to the end of warmup, so warmup adds nothing to S2.
- **Multi-power** (Luo et al. 2025, "A Multi-Power Law for Loss Curve Prediction Across Learning Rate
  Schedules", eq. 5): ``L(t) = L0 + A·(S1(t) + S_W)^(−α) − LD(t)``,
  ``LD(t) = B·Σ_{k=W+1..t} (η_{k−1} − η_k)·G(η_k^(−γ)·S_k(t))``, ``S_k(t) = Σ_{τ=k..t} η_τ``,
  ``G(x) = 1 − (C·x + 1)^(−β)``. ``S1 + S_W`` is the LR area including warmup, as in the paper.
  For long runs the decay steps are pooled into at most ``MAX_DECAY_BINS`` groups (each group's LR
  drop summed, its η and S_k taken at the group's middle): exact for step schedules, and within
  5e-5 relative on a cosine curve of 10⁵ steps (measured, 300 groups).

Fitting uses the robust machinery of the final-loss laws (Hoffmann et al. 2022, §D.2): Huber loss
(δ = 1e-3) on log loss, many starts, the best kept; the interval comes from a residual bootstrap.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from core.errors import FitError, InputError
from core.format import CONFIDENCE
from core.progress import ProgressFn, report

TISSUE_LAMBDA = 0.999   # Tissue et al. 2024's decay factor of the annealing momentum
HUBER_DELTA = 1e-3      # Hoffmann et al. 2022: Huber δ on log loss
MAX_DECAY_BINS = 300    # multi-power: pool decay steps beyond this (cost O(points × bins))
MAX_FIT_POINTS = 600    # a curve is averaged into at most this many points before fitting


def lr_area(lr: np.ndarray) -> np.ndarray:
    """S1 at every step: the cumulative LR sum including warmup. Shape (T,)."""
    return np.cumsum(lr)


def annealing_area(lr: np.ndarray, warmup_steps: int, decay: float = TISSUE_LAMBDA) -> np.ndarray:
    """Tissue et al.'s S2 at every step: Σ m_i, m_i = λ·m_{i−1} + (η_{i−1} − η_i), m = 0 through warmup."""
    from scipy.signal import lfilter  # lazily, like scipy.optimize below: keeps the first page fast

    drop = np.zeros_like(lr)
    drop[1:] = lr[:-1] - lr[1:]
    drop[: max(warmup_steps, 1)] = 0.0              # the first step has no previous LR
    momentum = lfilter([1.0], [1.0, -decay], drop)  # m_i = λ m_{i-1} + drop_i
    return np.cumsum(momentum)


@dataclass(frozen=True)
class CurveFeatures:
    """What a law needs at the evaluation steps ``steps`` (1-based, shape (M,))."""
    steps: np.ndarray          # (M,) evaluation steps
    s1: np.ndarray             # (M,) LR area up to each step
    s2: np.ndarray             # (M,) Tissue annealing area
    decay_drop: np.ndarray     # (K,) LR drop of each (pooled) decay step after warmup
    decay_lr: np.ndarray       # (K,) η_k of each decay step
    decay_tail: np.ndarray     # (M, K) S_k(t) = Σ_{τ=k..t} η_τ, 0 where k > t
    s1_end: float = 1.0        # S1 at the horizon T (the last step with a known LR)
    s2_end: float = 0.0        # S2 at the horizon
    end_tail: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (K,) S_k(T) of each decay step


def curve_features(lr: np.ndarray, warmup_steps: int, steps) -> CurveFeatures:
    lr = np.asarray(lr, dtype=np.float64)
    steps = np.asarray(steps, dtype=np.int64)
    if steps.min() < 1 or steps.max() > len(lr):
        raise InputError(f"steps must lie in 1..{len(lr)} (the LR is known for those steps only).")
    area = lr_area(lr)
    s2 = annealing_area(lr, warmup_steps)
    drop = np.zeros_like(lr)
    drop[1:] = lr[:-1] - lr[1:]
    drop[: max(warmup_steps, 1)] = 0.0
    k_idx = np.nonzero(drop != 0)[0]                 # 0-based index of step k = idx + 1
    if len(k_idx) > MAX_DECAY_BINS:
        groups = np.array_split(k_idx, MAX_DECAY_BINS)
        mids = np.array([g[len(g) // 2] for g in groups])
        d = np.array([drop[g].sum() for g in groups])
    else:
        mids, d = k_idx, drop[k_idx]
    before_k = np.where(mids > 0, area[np.maximum(mids - 1, 0)], 0.0)  # Σ_{τ<k} η_τ
    tail = area[steps - 1][:, None] - before_k[None, :]                  # (M, K)
    tail = np.where(mids[None, :] <= (steps - 1)[:, None], tail, 0.0)
    return CurveFeatures(steps, area[steps - 1], s2[steps - 1], d, lr[mids], tail, float(area[-1]), float(s2[-1]),
                         area[-1] - before_k)


# ---- the laws -------------------------------------------------------------------------------------

def tissue_loss(theta, f: CurveFeatures) -> np.ndarray:
    """θ = (L0, A, α, C)."""
    L0, A, alpha, C = theta
    return L0 + A * f.s1 ** (-alpha) - C * f.s2


def _tissue_c(phi, A, alpha, f: CurveFeatures) -> float:
    """C from φ ∈ [0, 1]: the share of the reducible loss A·S1(T)^(−α) that annealing removes by T."""
    return phi * A * f.s1_end ** (-alpha) / f.s2_end if f.s2_end > 0 else 0.0


def _tissue_fit_space(theta, f: CurveFeatures) -> np.ndarray:
    """The fit works on θ' = (L0, A, α, φ) with C = φ·A·S1(T)^(−α)/S2(T), φ ≤ 1: the forecast never
    falls below the irreducible L0, which an unconstrained C does when the observed part of the run
    has annealed too little to pin C down (seen on the short probe runs)."""
    L0, A, alpha, phi = theta
    return tissue_loss((L0, A, alpha, _tissue_c(phi, A, alpha, f)), f)


def _tissue_to_law(theta, f: CurveFeatures) -> tuple:
    L0, A, alpha, phi = theta
    return (L0, A, alpha, _tissue_c(phi, A, alpha, f))


def _loss_drop(C, beta, gamma, f: CurveFeatures, tail: np.ndarray) -> np.ndarray:
    """LD / B: Σ_k (η_{k−1} − η_k)·G(η_k^(−γ)·S_k(t)) for each row of ``tail`` (M, K) → (M,)."""
    if not len(f.decay_drop):
        return np.zeros(tail.shape[0])
    x = f.decay_lr[None, :] ** (-gamma) * tail                       # (M, K)
    g = 1.0 - (C * x + 1.0) ** (-beta)
    return (g * f.decay_drop[None, :]).sum(axis=1)


def multi_power_loss(theta, f: CurveFeatures) -> np.ndarray:
    """θ = (L0, A, α, B, C, β, γ)."""
    L0, A, alpha, B, C, beta, gamma = theta
    return L0 + A * f.s1 ** (-alpha) - B * _loss_drop(C, beta, gamma, f, f.decay_tail)


def _multi_power_b(phi, A, alpha, C, beta, gamma, f: CurveFeatures) -> float:
    """B from φ ∈ [0, 1]: the share of the reducible loss A·S1(T)^(−α) the decay removes by T."""
    unit = _loss_drop(C, beta, gamma, f, f.end_tail[None, :])[0] if len(f.decay_drop) else 0.0
    return phi * A * f.s1_end ** (-alpha) / unit if unit > 0 else 0.0


def _multi_power_fit_space(theta, f: CurveFeatures) -> np.ndarray:
    """θ' = (L0, A, α, φ, C, β, γ) with B from φ ≤ 1: as for the LR-annealing law, the forecast never
    falls below L0 however little of the decay the observed part of the run has seen."""
    L0, A, alpha, phi, C, beta, gamma = theta
    return multi_power_loss((L0, A, alpha, _multi_power_b(phi, A, alpha, C, beta, gamma, f), C, beta, gamma), f)


def _multi_power_to_law(theta, f: CurveFeatures) -> tuple:
    L0, A, alpha, phi, C, beta, gamma = theta
    return (L0, A, alpha, _multi_power_b(phi, A, alpha, C, beta, gamma, f), C, beta, gamma)


def _tissue_starts(f: CurveFeatures, loss: np.ndarray) -> list:
    """Variable projection: for each α on a grid, (L0, A, C) by linear least squares; best few kept."""
    found = []
    for alpha in np.linspace(0.05, 1.5, 30):
        X = np.column_stack([np.ones_like(f.s1), f.s1 ** (-alpha), -f.s2])
        coef, *_ = np.linalg.lstsq(X, loss, rcond=None)
        coef = np.maximum(coef, [0.0, 1e-12, 0.0])
        err = float(np.mean((X @ coef - loss) ** 2))
        reducible = coef[1] * f.s1_end ** (-alpha)
        phi = min(1.0, coef[2] * f.s2_end / reducible) if reducible > 0 else 0.0
        found.append((err, [coef[0], coef[1], alpha, phi]))
    found.sort(key=lambda t: t[0])
    return [theta for _, theta in found[:4]]


def _multi_power_starts(f: CurveFeatures, loss: np.ndarray) -> list:
    """From the LR-annealing fit's (L0, A, α, φ): both laws split the same reducible loss, so its φ is
    a good first guess for the share the decay removes; C spans three decades (its scale depends on
    the LR's units through η^(−γ)·S_k)."""
    L0, A, alpha, phi = _tissue_starts(f, loss)[0]
    mean_lr = float(np.mean(f.decay_lr)) if len(f.decay_lr) else 1.0
    starts = []
    for c_scale in (0.1, 1.0, 10.0):
        C = c_scale / (mean_lr ** 0.5 * 100)   # C·η^(−½)·S_k ≈ c_scale when S_k ≈ 100 steps of η
        for phi0 in sorted({min(max(phi, 0.05), 0.95), 0.3}):
            starts.append([L0, A, alpha, phi0, C, 0.5, 0.5])
    return starts


@dataclass(frozen=True)
class CurveLaw:
    key: str
    label: str
    formula: str                      # LaTeX
    citation: str
    param_names: tuple
    fit_names: tuple                  # names of the fit-space θ' (φ replaces the annealing amplitude)
    predict: Callable                 # (theta, CurveFeatures) -> (M,): the law in its own parameters
    starts: Callable                  # (CurveFeatures, loss) -> list of fit-space θ'
    lower: tuple                      # bounds of the fit-space θ'
    upper: tuple
    max_points: int = MAX_FIT_POINTS  # curve points kept for the fit (the multi-power sum costs points × bins)
    fit_predict: Optional[Callable] = None  # (θ', CurveFeatures) -> (M,) when the fit space differs
    to_law: Optional[Callable] = None       # (θ', CurveFeatures) -> the law's θ

    def predict_fit(self, theta, f: CurveFeatures) -> np.ndarray:
        return (self.fit_predict or self.predict)(theta, f)

    def law_params(self, theta, f: CurveFeatures) -> tuple:
        return tuple(self.to_law(theta, f)) if self.to_law else tuple(theta)


CURVE_LAWS = {
    "lr-annealing": CurveLaw(
        "lr-annealing", "LR annealing (Tissue et al. 2024)",
        r"L(s) = L_0 + A\,S_1^{-\alpha} - C\,S_2",
        "Tissue et al. 2024, Scaling Law with Learning Rate Annealing, eq. 1",
        ("L0", "A", "alpha", "C"), ("L0", "A", "alpha", "phi"), tissue_loss, _tissue_starts,
        (0.0, 0.0, 1e-3, 0.0), (np.inf, np.inf, 3.0, 1.0),
        fit_predict=_tissue_fit_space, to_law=_tissue_to_law),
    "multi-power": CurveLaw(
        "multi-power", "Multi-power (Luo et al. 2025)",
        r"L(t) = L_0 + A\,(S_1+S_W)^{-\alpha} - B\sum_k (\eta_{k-1}-\eta_k)\,G(\eta_k^{-\gamma} S_k(t))",
        "Luo et al. 2025, A Multi-Power Law for Loss Curve Prediction Across LR Schedules, eq. 5",
        ("L0", "A", "alpha", "B", "C", "beta", "gamma"), ("L0", "A", "alpha", "phi", "C", "beta", "gamma"),
        multi_power_loss, _multi_power_starts,
        (0.0, 0.0, 1e-3, 0.0, 0.0, 0.1, 0.1), (np.inf, np.inf, 3.0, 1.0, np.inf, 2.0, 1.0), 150,
        fit_predict=_multi_power_fit_space, to_law=_multi_power_to_law),
}


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


def curve_law(key: str) -> CurveLaw:
    if key not in CURVE_LAWS:
        raise InputError(f"unknown loss-curve law {key!r}; choose one of {', '.join(CURVE_LAWS)}.")
    return CURVE_LAWS[key]


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
        for b in range(config.bootstrap):
            # moving-block bootstrap of the log residuals (Künsch 1989): keeps their correlation
            starts = rng.integers(0, n - block + 1, size=int(np.ceil(n / block)))
            res_b = np.concatenate([resid[s:s + block] for s in starts])[:n]
            log_b = np.log(np.maximum(fitted, 1e-12)) - res_b
            theta_b, _ = _solve(law, f, log_b, [theta], f_scale)
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
