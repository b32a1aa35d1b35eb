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

This module holds the formulas, the schedule features they read and the ``CurveLaw`` record; the
laws themselves are declared once, in the law registry (``core.registry.CURVE_LAWS``), beside the
final-loss laws; core/curve_fit.py fits them to a logged curve and forecasts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np

from core.errors import InputError

TISSUE_LAMBDA = 0.999   # Tissue et al. 2024's decay factor of the annealing momentum
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


def tissue_fit_space(theta, f: CurveFeatures) -> np.ndarray:
    """The fit works on θ' = (L0, A, α, φ) with C = φ·A·S1(T)^(−α)/S2(T), φ ≤ 1: the forecast never
    falls below the irreducible L0, which an unconstrained C does when the observed part of the run
    has annealed too little to pin C down (seen on the short probe runs)."""
    L0, A, alpha, phi = theta
    return tissue_loss((L0, A, alpha, _tissue_c(phi, A, alpha, f)), f)


def tissue_to_law(theta, f: CurveFeatures) -> tuple:
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


def multi_power_fit_space(theta, f: CurveFeatures) -> np.ndarray:
    """θ' = (L0, A, α, φ, C, β, γ) with B from φ ≤ 1: as for the LR-annealing law, the forecast never
    falls below L0 however little of the decay the observed part of the run has seen."""
    L0, A, alpha, phi, C, beta, gamma = theta
    return multi_power_loss((L0, A, alpha, _multi_power_b(phi, A, alpha, C, beta, gamma, f), C, beta, gamma), f)


def multi_power_to_law(theta, f: CurveFeatures) -> tuple:
    L0, A, alpha, phi, C, beta, gamma = theta
    return (L0, A, alpha, _multi_power_b(phi, A, alpha, C, beta, gamma, f), C, beta, gamma)


def tissue_starts(f: CurveFeatures, loss: np.ndarray) -> list:
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


def multi_power_starts(f: CurveFeatures, loss: np.ndarray) -> list:
    """From the LR-annealing fit's (L0, A, α, φ): both laws split the same reducible loss, so its φ is
    a good first guess for the share the decay removes; C spans three decades (its scale depends on
    the LR's units through η^(−γ)·S_k)."""
    L0, A, alpha, phi = tissue_starts(f, loss)[0]
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
    # Starts each bootstrap refit tries besides the best fit (the law's own starts, in turn). The
    # multi-power law's seven parameters are weakly identified before the decay ends: refits from the
    # best fit alone stay in its optimum, and the 95% interval held the truth in 32 of 40 synthetic
    # runs; with one more start per refit, 35 of 40, at twice the cost (benchmarks/forecast.py). The
    # misses left are the fit's own bias, which no residual bootstrap sees.
    bootstrap_restarts: int = 0
    # Refits for a forecast's band unless asked otherwise (the Runs page, cli.py forecast): LR annealing
    # ~1 s for a demo run on a 2-core CPU with 100, interval stable to ~3 digits; the multi-power law's
    # refits cost ~10× more (seven parameters, a second start each): 50, as its coverage was measured.
    bootstrap: int = 100
    to_law: Optional[Callable] = None       # (θ', CurveFeatures) -> the law's θ

    def predict_fit(self, theta, f: CurveFeatures) -> np.ndarray:
        return (self.fit_predict or self.predict)(theta, f)

    def law_params(self, theta, f: CurveFeatures) -> tuple:
        return tuple(self.to_law(theta, f)) if self.to_law else tuple(theta)
