"""Scaling laws as plain, broadcasting numpy functions (no fitting here: see core/fitting/; each law's
declaration — label, formula, parameters, inputs, optimum — is core/registry.py).

Every law takes arrays (or scalars) and a frozen parameter dataclass and returns an ndarray of
losses. Units follow docs/ARCHITECTURE.md: ``n_params`` parameters (Kaplan's laws want the
NON-embedding count), ``tokens`` trained tokens D, ``flops`` training FLOPs C (≈ 6·N·D), loss in
nats per token.

Laws
- Chinchilla parametric loss, Hoffmann et al. 2022 eq. (2):      L(N, D) = E + A/N^α + B/D^β
- Kaplan et al. 2020 eqs. (1.1)-(1.3) and (1.5):                 L(N) = (N_c/N)^α_N, L(D) = (D_c/D)^α_D,
  L(C_min) = (C_c/C_min)^α_C,  L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D
- Power law with an irreducible term, Hestness et al. 2017:      y = E + A·x^(−α)
- Routed (MoE) law, Clark et al. 2022 eq. (1) with the saturating expert transform (their §4 / eq. (7)):
  log L = a log N + b log Ê + c log N log Ê + d
- Data-constrained law, Muennighoff et al. 2023 eqs. (5)-(6): repeated tokens and excess parameters
  decay in value; L = E + A/N'^α + B/D'^β with effective N', D'.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6·N·D (Kaplan et al. 2020 §2.1: ≈2 FLOPs/param/token forward, ≈4 backward)
# One PF-day in FLOPs (Kaplan et al. 2020 §1.3: 1 PF-day = 10^15 · 24 · 3600 FLOPs).
PF_DAY_FLOPS = 1e15 * 24 * 3600  # = 8.64e19


def _arr(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


# --------------------------------------------------------------------------------------------
# Chinchilla (Hoffmann et al. 2022)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChinchillaParams:
    """Hoffmann et al. 2022 eq. (2): L(N, D) = E + A/N^alpha + B/D^beta."""

    E: float  # irreducible loss (nats/token): the entropy of text the law cannot remove
    A: float  # scale of the model-size term
    B: float  # scale of the data term
    alpha: float  # exponent of model size N
    beta: float  # exponent of trained tokens D

    @property
    def a(self) -> float:
        """Exponent of N_opt ∝ C^a: a = β/(α+β) (Hoffmann et al. 2022 eq. (4))."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt ∝ C^b: b = α/(α+β) (Hoffmann et al. 2022 eq. (4))."""
        return self.alpha / (self.alpha + self.beta)


# Published values, for defaults, comparisons and tests.
# Hoffmann et al. 2022 Approach 3 (their §3.3 / eq. (10)).
HOFFMANN_2022 = ChinchillaParams(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# Besiroglu et al. 2024 "Chinchilla scaling: a replication attempt", Table 1 (refit on Epoch's data).
BESIROGLU_2024 = ChinchillaParams(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)


def chinchilla_loss(n_params, tokens, p: ChinchillaParams) -> np.ndarray:
    """Hoffmann et al. 2022 eq. (2): L = E + A·N^(−α) + B·D^(−β), broadcasting N against D."""
    n = _arr(n_params)
    d = _arr(tokens)
    return p.E + p.A * n ** (-p.alpha) + p.B * d ** (-p.beta)


def chinchilla_g(A, B, alpha, beta):
    """G = (αA / (βB))^(1/(α+β)) of Hoffmann et al. 2022 eq. (4), element-wise over parameter arrays."""
    A, B, alpha, beta = (_arr(v) for v in (A, B, alpha, beta))
    return (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))


def compute_optimal_nd(flops, A, B, alpha, beta, flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN):
    """Compute-optimal N*, D* of the Chinchilla law under C = k·N·D: THE closed form of ScaleScope.

    Hoffmann et al. 2022 eq. (4): N*(C) = G (C/6)^(β/(α+β)), D*(C) = G^(−1) (C/6)^(α/(α+β)) with
    G = (αA / (βB))^(1/(α+β)); D* = (C/6)/N* exactly. Broadcasts budgets against parameter arrays
    (bootstrap samples). Returns ``(n_opt, tokens_opt)``.
    """
    c = _arr(flops) / flops_per_param_token
    beta = _arr(beta)
    with np.errstate(all="ignore"):
        n_opt = chinchilla_g(A, B, alpha, beta) * c ** (beta / (_arr(alpha) + beta))
        return n_opt, c / n_opt


def chinchilla_optimal(flops, p: ChinchillaParams, flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN):
    """Compute-optimal split of a budget C under C = k·N·D (k = 6 by default), Hoffmann et al. 2022
    eq. (4) (``compute_optimal_nd``). Returns ``(n_opt, tokens_opt)`` as ndarrays shaped like ``flops``."""
    return compute_optimal_nd(flops, p.A, p.B, p.alpha, p.beta, flops_per_param_token)


# --------------------------------------------------------------------------------------------
# Kaplan et al. 2020
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KaplanParams:
    """Kaplan et al. 2020 Table 5 (defaults). N is the NON-embedding parameter count; C_c in FLOPs."""

    N_c: float = 8.8e13  # non-embedding parameters scale (Table 5: 8.8e13)
    alpha_N: float = 0.076  # exponent of N (Table 5)
    D_c: float = 5.4e13  # tokens scale (Table 5: 5.4e13)
    alpha_D: float = 0.095  # exponent of D (Table 5)
    C_c: float = 3.1e8 * PF_DAY_FLOPS  # compute scale: 3.1e8 PF-days for C_min (Table 5), in FLOPs
    alpha_C: float = 0.050  # exponent of C_min (Table 5)


KAPLAN_2020 = KaplanParams()


def kaplan_loss_n(n_params, p: KaplanParams) -> np.ndarray:
    """Kaplan et al. 2020 eq. (1.1): L(N) = (N_c/N)^α_N; N non-embedding, trained to convergence."""
    return (p.N_c / _arr(n_params)) ** p.alpha_N


def kaplan_loss_d(tokens, p: KaplanParams) -> np.ndarray:
    """Kaplan et al. 2020 eq. (1.2): L(D) = (D_c/D)^α_D; large model, early stopping."""
    return (p.D_c / _arr(tokens)) ** p.alpha_D


def kaplan_loss_c(flops, p: KaplanParams) -> np.ndarray:
    """Kaplan et al. 2020 eq. (1.3): L(C_min) = (C_c/C_min)^α_C with C in FLOPs (C_c converted)."""
    return (p.C_c / _arr(flops)) ** p.alpha_C


def kaplan_loss_nd(n_params, tokens, p: KaplanParams) -> np.ndarray:
    """Kaplan et al. 2020 eq. (1.5): L(N, D) = [(N_c/N)^(α_N/α_D) + D_c/D]^α_D."""
    n = _arr(n_params)
    d = _arr(tokens)
    return ((p.N_c / n) ** (p.alpha_N / p.alpha_D) + p.D_c / d) ** p.alpha_D


# --------------------------------------------------------------------------------------------
# Power law with an irreducible term (Hestness et al. 2017)
# --------------------------------------------------------------------------------------------
def power_law_offset(x, E, A, alpha) -> np.ndarray:
    """Hestness et al. 2017: y = E + A·x^(−α) (learning curves, downstream metrics, any one variable)."""
    return E + A * _arr(x) ** (-alpha)


# --------------------------------------------------------------------------------------------
# Routed / mixture-of-experts law (Clark et al. 2022)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoutedParams:
    """Clark et al. 2022 eq. (1) with saturation: log L = a log N + b log Ê + c log N log Ê + d."""

    a: float  # dense exponent on log N (negative: bigger is better)
    b: float  # exponent on the (transformed) expert count
    c: float  # interaction: the benefit of experts shrinks as N grows when c > 0
    d: float  # intercept (log-loss at N = 1, Ê = 1)
    e_start: float  # expert count below which adding experts helps little (Ê(1) = e_start)
    e_max: float  # saturation: Ê → e_max as the expert count E → ∞


def saturating_experts(n_experts, e_start, e_max) -> np.ndarray:
    """Clark et al. 2022 saturating transform of the expert count E:

        1/Ê = 1 / (E − 1 + (1/E_start − 1/E_max)^(−1)) + 1/E_max

    so that Ê(1) = E_start, Ê ≈ E − 1 + E_start for E_start ≪ E ≪ E_max, and Ê → E_max as E → ∞.
    (Some restatements write E_start − 1 in the inner term; we follow the form whose fixed point
    Ê(1) = E_start gives E_start its name. ``routed_loss`` only depends on log Ê, so the choice
    shifts fitted b, c, d but not the fit quality.)
    """
    e = _arr(n_experts)
    inner = 1.0 / (1.0 / e_start - 1.0 / e_max)
    return 1.0 / (1.0 / (e - 1.0 + inner) + 1.0 / e_max)


def routed_loss(n_params, n_experts, p: RoutedParams) -> np.ndarray:
    """Clark et al. 2022: L = exp(a log N + b log Ê + c log N log Ê + d), N the dense (base) size."""
    log_n = np.log(_arr(n_params))
    log_e = np.log(saturating_experts(n_experts, p.e_start, p.e_max))
    return np.exp(p.a * log_n + p.b * log_e + p.c * log_n * log_e + p.d)


def effective_params(n_params, n_experts, p: RoutedParams) -> np.ndarray:
    """Clark et al. 2022 §5 effective parameter count N̄: the dense size with the routed model's loss.

    Solves routed_loss(N̄, 1) = routed_loss(N, E) for N̄ (E = 1 is the dense model):
    log N̄ = (log L(N, E) − b log Ê(1) − d) / (a + c log Ê(1)).
    """
    log_l = np.log(routed_loss(n_params, n_experts, p))
    log_e1 = float(np.log(saturating_experts(1.0, p.e_start, p.e_max)))
    return np.exp((log_l - p.b * log_e1 - p.d) / (p.a + p.c * log_e1))


# --------------------------------------------------------------------------------------------
# Data-constrained law (Muennighoff et al. 2023)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConstrainedParams:
    """Muennighoff et al. 2023 eqs. (5)-(6) on top of a Chinchilla law (their fitted R*_D, R*_N)."""

    chinchilla: ChinchillaParams  # the base law L = E + A/N'^α + B/D'^β
    r_star_d: float = 15.4  # decay constant of repeated epochs' value (their fit: 15.4)
    r_star_n: float = 5.3  # decay constant of excess parameters' value (their fit: 5.3)


def data_constrained_loss(n_params, tokens, unique_tokens, p: DataConstrainedParams) -> np.ndarray:
    """Muennighoff et al. 2023: repeated data is worth less.

    R_D = D/U_D − 1 (repetitions), D' = U_D + U_D R*_D (1 − exp(−R_D/R*_D))  (eq. 5);
    U_N = min(N_opt(U_D), N) the params worth the unique data, R_N = N/U_N − 1,
    N' = U_N + U_N R*_N (1 − exp(−R_N/R*_N))  (eq. 6);  L = E + A/N'^α + B/D'^β.
    N_opt(U_D) is the Chinchilla compute-optimal size whose optimal data equals U_D.
    """
    n = _arr(n_params)
    d = _arr(tokens)
    u_d = np.minimum(_arr(unique_tokens), d)
    r_d = d / u_d - 1.0
    d_eff = u_d + u_d * p.r_star_d * (1.0 - np.exp(-r_d / p.r_star_d))
    c = p.chinchilla
    g = chinchilla_g(c.A, c.B, c.alpha, c.beta)
    # D_opt = G^-1 (C/6)^b and N_opt = G (C/6)^a  =>  N_opt = G (G·U_D)^(a/b) at D_opt = U_D.
    n_for_unique = g * (g * u_d) ** (c.a / c.b)
    u_n = np.minimum(n_for_unique, n)
    r_n = n / u_n - 1.0
    n_eff = u_n + u_n * p.r_star_n * (1.0 - np.exp(-r_n / p.r_star_n))
    return c.E + c.A * n_eff ** (-c.alpha) + c.B * d_eff ** (-c.beta)
