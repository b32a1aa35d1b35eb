"""The D-CPT law: domain-specific continual pre-training (Que et al. 2024, "D-CPT Law:
Domain-specific Continual Pre-Training Scaling Law for Large Language Models", arXiv:2406.01375).

Continual pre-training mixes a domain corpus (code, maths, …) into a general corpus with ratio r
(the domain share of the training tokens). Que et al. fit the validation loss on EACH corpus as a
function of model size N, training tokens D and the mixture ratio, with one form (their §3.2, the
"D-CPT Law" parameterisation, the one they prefer; its equation number is not checked here):

    L(N, D, r) = E + A / N^α + B · r^η / D^β + C / (r + ε)^γ

- the domain-corpus loss L_d takes r = r_d, the domain ratio;
- the general-corpus loss L_g takes r = 1 − r_d, the general ratio (the paper fits the general loss
  in the general-corpus ratio with the same form).

The constrained optimum of their §4 ("usage 1"): the domain ratio r_d that minimises L_d subject to
L_g(N, D, 1 − r_d) ≤ L_max (the general ability must not fall below a floor), at a given N and D
(``optimal_ratio``).

Which form and why: the paper's PDF could not be reached while writing this. The form above is the
paper's own "preferred parameterization" as its arXiv HTML (2406.01375v1) and a public summary of it
state it, L(N, D, r) = E + A/N^α + B·r^η/D^β + C/(r + ε)^γ (checked 2026-11-29); its equation number
and its published constants were not checked, so no published number is reproduced. The tests check
the law on a synthetic ground truth (exact recovery of known parameters) and the optimum against a brute-force grid; the demo
(assets/demo/mixture_*.csv) is a sweep ScaleScope measured itself (core/probes/mixture.py), fitted
with this form. ε is a fitted parameter (bounded away from 0 by its log), so r = 0 stays finite.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional

import numpy as np

from core.errors import PlanError

DCPT_PARAMS = ("E", "A", "B", "C", "alpha", "beta", "eta", "gamma", "eps")
RATIO_GRID_POINTS = 2001  # grid over r ∈ [0, 1] before refining: spacing 5e-4, far below any useful precision


@dataclass(frozen=True)
class DCPTParams:
    """Que et al. 2024 (the D-CPT law): L = E + A/N^α + B·r^η/D^β + C/(r + ε)^γ (one set per corpus)."""

    E: float  # irreducible loss on this corpus (nats/token)
    A: float  # scale of the model-size term
    B: float  # scale of the data term (modulated by the ratio through r^η)
    C: float  # scale of the mixture term: loss rises as this corpus's share r falls
    alpha: float  # exponent of N
    beta: float  # exponent of D
    eta: float  # exponent of r inside the data term (either sign)
    gamma: float  # exponent of the mixture term
    eps: float  # ε > 0 keeps r = 0 finite


def dcpt_loss(n_params, tokens, ratio, p: DCPTParams) -> np.ndarray:
    """Que et al. 2024's D-CPT law at the ratio ``ratio`` of THIS corpus (r_d for L_d, 1 − r_d for L_g)."""
    n = np.asarray(n_params, np.float64)
    d = np.asarray(tokens, np.float64)
    r = np.asarray(ratio, np.float64)
    with np.errstate(divide="ignore"):
        return p.E + p.A * n ** (-p.alpha) + p.B * r ** p.eta * d ** (-p.beta) + p.C * (r + p.eps) ** (-p.gamma)


def domain_loss(n_params, tokens, domain_ratio, p: DCPTParams) -> np.ndarray:
    """L_d(N, D, r_d): the domain-corpus loss at domain ratio r_d."""
    return dcpt_loss(n_params, tokens, domain_ratio, p)


def general_loss(n_params, tokens, domain_ratio, p: DCPTParams) -> np.ndarray:
    """L_g(N, D, 1 − r_d): the general-corpus loss, whose ratio is the general share 1 − r_d."""
    return dcpt_loss(n_params, tokens, 1.0 - np.asarray(domain_ratio, np.float64), p)


def params_from(values: Mapping[str, float]) -> DCPTParams:
    """A DCPTParams from a fit's params dict; PlanError naming what is missing or not finite."""
    missing = [k for k in DCPT_PARAMS if k not in values]
    if missing:
        raise PlanError(f"A D-CPT law needs {', '.join(DCPT_PARAMS)}; missing {', '.join(missing)}. "
                        "Pick a D-CPT fit (law dcpt_domain or dcpt_general).")
    p = DCPTParams(**{k: float(values[k]) for k in DCPT_PARAMS})
    bad = [k for k, v in asdict(p).items() if not math.isfinite(v)]
    if bad:
        raise PlanError(f"The D-CPT law has non-finite {', '.join(bad)}; refit it.")
    if p.eps <= 0 or p.alpha <= 0 or p.beta <= 0:
        raise PlanError(f"The D-CPT law needs α, β, ε > 0 (got α = {p.alpha:g}, β = {p.beta:g}, ε = {p.eps:g}); "
                        "refit it.")
    return p


# Synthetic ground truth of the tests (NOT the paper's constants, which were unavailable here): round
# numbers of the size ScaleScope's tiny-model sweeps give.
SYNTHETIC_DOMAIN = DCPTParams(E=1.2, A=40.0, B=900.0, C=0.35, alpha=0.3, beta=0.45, eta=-0.2, gamma=0.6, eps=0.02)
SYNTHETIC_GENERAL = DCPTParams(E=2.0, A=60.0, B=700.0, C=0.15, alpha=0.3, beta=0.42, eta=-0.1, gamma=0.9, eps=0.05)
# The planner's default law: the D-CPT law fitted (Huber in log space, no bootstrap) on the measured demo sweep
# assets/demo/mixture_*.csv (20 runs: N ∈ {7.0e4, 1.4e5}, D ∈ {3.0e4, 6.0e4}, r_d ∈ {0.1, 0.3, …, 0.9}; RMS
# log residual 0.011 domain, 0.018 general). With two token counts β and B are poorly determined: plan
# near the demo's N and D only.
DEMO_DOMAIN = DCPTParams(E=3.185, A=7.827, B=7410.0, C=2.338, alpha=0.2466, beta=0.8895, eta=0.2664, gamma=0.139,
                         eps=0.06787)
DEMO_GENERAL = DCPTParams(E=0.4884, A=17.91, B=2.323e11, C=0.8443, alpha=0.1365, beta=2.619, eta=-0.2976,
                          gamma=0.7574, eps=0.3077)
DEMO_SOURCE = "the law fitted on the measured demo sweep assets/demo/mixture_*.csv (tiny models; core/dcpt.py)"


@dataclass(frozen=True)
class MixturePlan:
    """The domain ratio that minimises the domain loss with the general loss kept ≤ L_max."""

    n_params: float
    tokens: float
    general_loss_max: Optional[float]  # the constraint (None: unconstrained)
    domain_ratio: float  # r_d*
    domain_loss: float  # L_d at r_d*
    general_loss: float  # L_g at r_d*
    constrained: bool  # True when the constraint binds (r_d* on its boundary)
    unconstrained_ratio: float  # argmin of L_d alone over [0, 1]
    feasible_max_ratio: float  # the largest r_d with L_g ≤ L_max
    method: str = "grid + Brent/bisection on r_d ∈ [0, 1]"

    def to_dict(self) -> dict:
        return {k: (float(v) if isinstance(v, (int, float, np.floating)) and not isinstance(v, bool) else v)
                for k, v in asdict(self).items()}


def _positive(value, what: str) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        x = math.nan
    if not math.isfinite(x) or x <= 0:
        raise PlanError(f"{what} {value!r} must be a positive number.")
    return x


def optimal_ratio(n_params, tokens, domain: DCPTParams, general: DCPTParams,
                  general_loss_max: Optional[float] = None) -> MixturePlan:
    """Que et al. 2024 §4 (usage 1): argmin over r_d ∈ [0, 1] of L_d(N, D, r_d) s.t. L_g(N, D, 1 − r_d) ≤ L_max.

    A dense grid finds the feasible set and the best point on it; Brent's method refines an interior
    minimum and bisection the constraint's boundary (L_g = L_max), so the answer is exact to ~1e-10
    in r. PlanError when no ratio meets the constraint (it names the lowest reachable general loss).
    """
    from scipy.optimize import brentq, minimize_scalar  # scipy on first use (see core/search.py)

    n = _positive(n_params, "Model size N")
    d = _positive(tokens, "Training tokens D")
    grid = np.linspace(0.0, 1.0, RATIO_GRID_POINTS)
    with np.errstate(all="ignore"):  # r^η with η < 0 is infinite at r = 0: an end point no plan takes
        ld = np.nan_to_num(domain_loss(n, d, grid, domain), nan=np.inf)
        lg = np.nan_to_num(general_loss(n, d, grid, general), nan=np.inf)
    if not (np.isfinite(ld).any() and np.isfinite(lg).any()):
        raise PlanError("The D-CPT laws give no finite loss on r ∈ [0, 1]; check their parameters.")

    def refine_min(lo: float, hi: float) -> float:
        i = int(np.argmin(ld[(grid >= lo) & (grid <= hi)]))
        xs = grid[(grid >= lo) & (grid <= hi)]
        a, b = xs[max(0, i - 1)], xs[min(len(xs) - 1, i + 1)]
        if b <= a:
            return float(xs[i])
        res = minimize_scalar(lambda r: float(domain_loss(n, d, r, domain)), bounds=(a, b), method="bounded",
                              options={"xatol": 1e-12})
        best = min((float(res.x), float(xs[i])), key=lambda r: float(domain_loss(n, d, r, domain)))
        return best

    r_free = refine_min(0.0, 1.0)
    if general_loss_max is None:
        r_best, limit, r_max = r_free, None, 1.0
    else:
        limit = float(general_loss_max)
        if not math.isfinite(limit):
            raise PlanError(f"The general-loss limit {general_loss_max!r} must be a finite loss in nats.")
        ok = lg <= limit
        if not ok.any():
            raise PlanError(f"No mixture ratio keeps the general loss ≤ {limit:g}: the lowest this model reaches "
                            f"is {lg.min():.4f} (at r_d = {grid[int(np.argmin(lg))]:.3g}). Raise the limit, or "
                            "plan a larger N or D.")
        # The feasible set of r_d: with L_g rising in r_d (less general data) it is [0, r_max]; in general
        # take the feasible grid points and refine the boundary next to the best feasible point.
        feasible = np.where(ok, ld, np.inf)
        i = int(np.argmin(feasible))
        r_best = float(grid[i])
        f = lambda r: float(general_loss(n, d, r, general)) - limit  # noqa: E731
        # refine: an interior minimum of L_d inside the feasible run, else the boundary crossing next to it
        j_lo, j_hi = i, i
        while j_lo > 0 and ok[j_lo - 1]:
            j_lo -= 1
        while j_hi < len(grid) - 1 and ok[j_hi + 1]:
            j_hi += 1
        lo_edge, hi_edge = float(grid[j_lo]), float(grid[j_hi])
        if j_hi < len(grid) - 1:
            hi_edge = brentq(f, grid[j_hi], grid[j_hi + 1], xtol=1e-13)
        if j_lo > 0:
            lo_edge = brentq(f, grid[j_lo - 1], grid[j_lo], xtol=1e-13)
        if lo_edge <= r_free <= hi_edge:
            r_best = r_free
        else:
            r_best = min((lo_edge, hi_edge), key=lambda r: float(domain_loss(n, d, r, domain)))
        r_max = hi_edge
    ld_best = float(domain_loss(n, d, r_best, domain))
    lg_best = float(general_loss(n, d, r_best, general))
    return MixturePlan(n_params=n, tokens=d, general_loss_max=limit, domain_ratio=r_best, domain_loss=ld_best,
                       general_loss=lg_best, constrained=limit is not None and abs(r_best - r_free) > 1e-7,
                       unconstrained_ratio=r_free, feasible_max_ratio=r_max)


def ratio_curves(n_params, tokens, domain: DCPTParams, general: DCPTParams, points: int = 201) -> dict:
    """L_d and L_g along r_d ∈ [0, 1] (the page's plot)."""
    r = np.linspace(0.0, 1.0, points)
    return {"domain_ratio": r, "domain_loss": domain_loss(n_params, tokens, r, domain),
            "general_loss": general_loss(n_params, tokens, r, general)}


# --------------------------------------------------------------------------------------------
# The fit (core/fitting/generic.py through the registry's FitSpec): θ = log scales, exponents, log ε
# --------------------------------------------------------------------------------------------
DCPT_THETA = ("log_E", "log_A", "log_B", "log_C", "alpha", "beta", "eta", "gamma", "log_eps")


def dcpt_theta_to_params(theta) -> dict:
    th = np.asarray(theta, np.float64)
    out = {k: np.exp(th[..., i]) for i, k in enumerate(("E", "A", "B", "C"))}
    out.update({k: th[..., 4 + i] for i, k in enumerate(("alpha", "beta", "eta", "gamma"))})
    out["eps"] = np.exp(th[..., 8])
    return out


def _corpus_ratio(logs: Mapping, general: bool) -> np.ndarray:
    r = np.asarray(logs["mixture_ratio_raw"], np.float64)
    return 1.0 - r if general else r


def dcpt_log_pred(general: bool):
    """log L̂ (k, n) of the D-CPT law as a stable log-sum-exp of its four terms, for θ rows (k, 9)."""
    from core.fitting.numeric import logsumexp_rows

    def log_pred(theta, logs):
        ln, ld = logs["n_params"], logs["tokens"]
        r = _corpus_ratio(logs, general)
        t = [theta[:, j:j + 1] for j in range(9)]
        with np.errstate(divide="ignore"):
            log_r = np.log(r)
        data_term = np.where(r > 0, t[2] + t[6] * log_r - t[5] * ld, np.where(t[6] > 0, -np.inf, np.inf))
        return logsumexp_rows(t[0] + 0 * ln, t[1] - t[4] * ln, data_term,
                              t[3] - t[7] * np.log(r + np.exp(t[8])))

    return log_pred


def dcpt_starts(general: bool):
    """A start per exponent row (α, β, η, γ, ε on a small grid) with E, A, B, C ≥ 0 by NNLS."""
    from core.fitting.inputs import grid
    from core.fitting.numeric import nonneg_scales

    def starts(logs, log_y):
        n, d = logs["n_params_raw"], logs["tokens_raw"]
        r = _corpus_ratio(logs, general)
        y = np.exp(log_y)
        rows = []
        for alpha, beta, eta, gamma, eps in grid((0.2, 0.5), (0.2, 0.5), (-0.3, 0.0, 0.3), (0.3, 1.0), (0.02, 0.2)):
            with np.errstate(all="ignore"):
                cols = np.stack([np.ones_like(y), n ** -alpha, np.where(r > 0, r ** eta, 0.0) * d ** -beta,
                                 (r + eps) ** -gamma], axis=1)
            if not np.all(np.isfinite(cols)):
                continue
            s = nonneg_scales(cols, y)
            rows.append((*np.log(s), alpha, beta, eta, gamma, math.log(eps)))
        return np.array(rows)

    return starts
