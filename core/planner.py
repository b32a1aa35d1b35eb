"""Compute-optimal allocation of a training budget: how many parameters N, how many tokens D.

Budget C in FLOPs with C = 6·N·D (Kaplan et al. 2020 §2.1: ≈2 FLOPs per parameter per token
forward, ≈4 backward). For the Chinchilla law L = E + A/N^α + B/D^β the optimum is closed form
(Hoffmann et al. 2022 eq. (4)):

    G = (αA / (βB))^(1/(α+β)),   N* = G·(C/6)^(β/(α+β)),   D* = C / (6·N*)

Other laws (Kaplan's joint L(N, D), Muennighoff's data-constrained law, a routed MoE law on top of
Chinchilla) are minimised numerically along the iso-FLOP line D = C/(6N): a log-spaced grid over
D/N brackets the minimum, Brent's method refines it, and a 3-point Newton step polishes it to
~1e-8 relative (a comparison-only search stalls near 1e-7 because the loss is flat at its minimum).

Every public function validates its inputs and raises :class:`core.errors.PlanError` with a one-line
message instead of returning NaN. Results are :class:`Plan` dataclasses (``to_dict()`` for --json).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable, Mapping, Optional, Union

import numpy as np
from scipy.optimize import minimize_scalar

from core.errors import PlanError
from core.laws import (
    ChinchillaParams,
    DataConstrainedParams,
    KaplanParams,
    RoutedParams,
    chinchilla_loss,
    data_constrained_loss,
    effective_params,
    kaplan_loss_nd,
)

FLOPS_PER_PARAM_TOKEN = 6.0  # C = 6·N·D (Kaplan et al. 2020 §2.1); also the MoE rule with N active
FLOPS_MIN = 1e10  # below this no language model worth planning exists (a 1M-param model on 1k tokens)
FLOPS_MAX = 1e32  # ~1e6 × the largest runs of 2024; beyond it the laws are pure extrapolation

LossFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # loss(n_params, tokens), broadcasting
Law = Union[ChinchillaParams, KaplanParams]


@dataclass(frozen=True)
class SearchConfig:
    """How the numerical iso-FLOP search looks for the minimum."""

    tokens_per_param_min: float = 1e-4  # search edge: far below any model trained (GPT-3 ≈ 1.7)
    tokens_per_param_max: float = 1e7  # search edge: far above Llama-3 8B's ≈ 1900
    grid_points: int = 89  # ≈ 8 points per decade of D/N: enough to bracket one smooth minimum
    brent_xatol: float = 1e-7  # Brent stops here (log N); the Newton polish does the rest
    polish_step: float = 1e-3  # log-N step of the Newton polish: float noise in the loss (~1e-16)
    # then moves the answer < 1e-10 and the finite-difference bias stays < 1e-7


DEFAULT_SEARCH = SearchConfig()


@dataclass(frozen=True)
class Plan:
    n_params: float  # N*: parameters (Kaplan law: non-embedding; MoE: see MoEPlan)
    tokens: float  # D*: training tokens
    tokens_per_param: float  # D*/N* (Chinchilla's "≈20 tokens per parameter")
    loss: float  # predicted loss at (N*, D*), nats/token
    flops: float  # training FLOPs 6·N*·D*: the budget itself
    intervals: Optional[dict] = None  # {"n_params"|"tokens"|"tokens_per_param"|"loss": (lo, hi)}
    interval_level: Optional[float] = None  # central probability the intervals cover, e.g. 0.9
    interval_samples: Optional[int] = None  # bootstrap fits the intervals were computed from
    method: str = "closed_form"  # "closed_form" (Hoffmann eq. 4) or "iso_flop_search"

    def to_dict(self) -> dict:
        """Plain floats, lists and None only: ready for ``json.dumps`` (the CLI's --json)."""
        d = asdict(self)
        for key in ("n_params", "tokens", "tokens_per_param", "loss", "flops"):
            d[key] = float(d[key])
        if self.intervals is not None:
            d["intervals"] = {k: [float(lo), float(hi)] for k, (lo, hi) in self.intervals.items()}
        return d


# --------------------------------------------------------------------------------------------
# Validation: every message says what was wrong and what to do
# --------------------------------------------------------------------------------------------
def _pow10(x: float) -> str:
    """1e+10 → '1e10' for messages."""
    return f"1e{round(math.log10(x))}"


def check_flops(flops) -> float:
    """The budget as a float in [FLOPS_MIN, FLOPS_MAX]; PlanError otherwise."""
    try:
        c = float(flops)
    except (TypeError, ValueError):
        raise PlanError(f"Budget {flops!r} is not a number; give training FLOPs, e.g. 1e23.") from None
    if not math.isfinite(c) or c <= 0:
        raise PlanError(
            f"Budget {flops!r} FLOPs must be positive and finite; give training FLOPs, e.g. 1e23."
        )
    if not FLOPS_MIN <= c <= FLOPS_MAX:
        raise PlanError(
            f"Budget {c:.3g} FLOPs is outside the plannable range {_pow10(FLOPS_MIN)}–{_pow10(FLOPS_MAX)}; "
            "give a training budget in FLOPs, e.g. 1e23 (Chinchilla used 5.76e23)."
        )
    return c


def _check_finite(name: str, values: Mapping[str, float]) -> None:
    bad = [
        k
        for k, v in values.items()
        if not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v)
    ]
    if bad:
        raise PlanError(
            f"The {name} law has non-finite parameters ({', '.join(bad)}); refit it or pick a preset."
        )


def check_chinchilla(p: ChinchillaParams) -> ChinchillaParams:
    """PlanError unless E ≥ 0 and A, B, α, β > 0 (otherwise loss does not fall with N or D)."""
    if not isinstance(p, ChinchillaParams):
        raise PlanError(
            f"This needs a Chinchilla law (E, A, B, α, β), got {type(p).__name__}; pick a Chinchilla preset or fit."
        )
    _check_finite("Chinchilla", asdict(p))
    if p.alpha <= 0 or p.beta <= 0:
        raise PlanError(
            f"The law has α = {p.alpha:g}, β = {p.beta:g}; both must be > 0 for loss to fall with "
            "model size and data. Refit with positive exponents or pick a preset."
        )
    if p.A <= 0 or p.B <= 0:
        raise PlanError(f"The law has A = {p.A:g}, B = {p.B:g}; both must be > 0. Refit it or pick a preset.")
    if p.E < 0:
        raise PlanError(
            f"The law has irreducible loss E = {p.E:g} < 0, impossible for cross-entropy; refit it."
        )
    return p


def check_kaplan(p: KaplanParams) -> KaplanParams:
    """PlanError unless every scale and exponent of Kaplan's law is positive."""
    if not isinstance(p, KaplanParams):
        raise PlanError(
            f"This needs a Kaplan law, got {type(p).__name__}; pick the Kaplan preset or a Kaplan fit."
        )
    _check_finite("Kaplan", asdict(p))
    bad = [k for k, v in asdict(p).items() if v <= 0]
    if bad:
        raise PlanError(
            f"The Kaplan law has non-positive {', '.join(bad)}; all must be > 0. Refit it or pick a preset."
        )
    return p


def check_routed(p: RoutedParams) -> RoutedParams:
    """PlanError unless the expert transform is defined and the dense law improves with N."""
    if not isinstance(p, RoutedParams):
        raise PlanError(
            f"This needs a routed (MoE) law, got {type(p).__name__}; pick the Clark et al. preset or a routed fit."
        )
    _check_finite("routed", asdict(p))
    if not 0 < p.e_start < p.e_max:
        raise PlanError(
            f"The routed law needs 0 < e_start < e_max, got e_start = {p.e_start:g}, e_max = {p.e_max:g}; refit it."
        )
    e1 = 1.0 / (1.0 / (1.0 / (1.0 / p.e_start - 1.0 / p.e_max)) + 1.0 / p.e_max)  # Ê(1) = e_start
    if p.a + p.c * math.log(e1) >= 0:
        raise PlanError(
            "The routed law's dense slope a + c·log Ê(1) is ≥ 0 (loss does not fall with N); refit it."
        )
    return p


def check_law(law) -> Law:
    if isinstance(law, ChinchillaParams):
        return check_chinchilla(law)
    if isinstance(law, KaplanParams):
        return check_kaplan(law)
    if isinstance(law, RoutedParams):
        raise PlanError(
            "A routed law alone has no data term; plan MoE models with moe_optimum(dense law, routed law)."
        )
    raise PlanError(
        f"The planner does not know laws of type {type(law).__name__}; use a Chinchilla or Kaplan law."
    )


def _finite_plan(plan: Plan) -> Plan:
    """Last guard: a plan with NaN/inf (overflow at extreme inputs) never reaches the screen."""
    values = (plan.n_params, plan.tokens, plan.tokens_per_param, plan.loss, plan.flops)
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise PlanError(
            "The law gives no finite optimum for this budget; try a budget nearer 1e18–1e27 FLOPs."
        )
    return plan


# --------------------------------------------------------------------------------------------
# Closed form (Hoffmann et al. 2022 eq. (4))
# --------------------------------------------------------------------------------------------
def _closed_form(flops, E, A, B, alpha, beta):
    """N*, D*, L* broadcasting over budgets and/or parameter arrays (Hoffmann et al. 2022 eq. (4))."""
    c6 = np.asarray(flops, dtype=np.float64) / FLOPS_PER_PARAM_TOKEN
    g = (alpha * A / (beta * B)) ** (1.0 / (alpha + beta))
    n_opt = g * c6 ** (beta / (alpha + beta))
    d_opt = c6 / n_opt
    loss = E + A * n_opt ** (-alpha) + B * d_opt ** (-beta)
    return n_opt, d_opt, loss


def chinchilla_frontier(flops, p: ChinchillaParams) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The compute-optimal frontier for an array of budgets: (N*, D*, loss*), each shaped like ``flops``.

    For the page's frontier line; budgets are not range-checked here (pass a sensible grid).
    """
    check_chinchilla(p)
    return _closed_form(flops, p.E, p.A, p.B, p.alpha, p.beta)


def chinchilla_optimum(flops, p: ChinchillaParams) -> Plan:
    """Closed-form compute-optimal N*, D* for budget ``flops`` (Hoffmann et al. 2022 eq. (4))."""
    c = check_flops(flops)
    check_chinchilla(p)
    n, d, loss = (float(x) for x in _closed_form(c, p.E, p.A, p.B, p.alpha, p.beta))
    return _finite_plan(Plan(n_params=n, tokens=d, tokens_per_param=d / n, loss=loss, flops=c))


def compute_for_loss(target_loss: float, p: ChinchillaParams) -> Plan:
    """The cheapest (training-compute-optimal) model reaching ``target_loss``: the inverse frontier.

    Along the frontier L* − E = (A·G^(−α) + B·G^β)·(C/6)^(−αβ/(α+β)) (Hoffmann et al. 2022 eq. (4)
    substituted into eq. (2)), solved for C.
    """
    check_chinchilla(p)
    target = check_target_loss(target_loss, p)
    g = (p.alpha * p.A / (p.beta * p.B)) ** (1.0 / (p.alpha + p.beta))
    k = p.A * g ** (-p.alpha) + p.B * g**p.beta
    gamma = p.alpha * p.beta / (p.alpha + p.beta)
    log_c6 = (math.log(k) - math.log(target - p.E)) / gamma
    log_c = log_c6 + math.log(FLOPS_PER_PARAM_TOKEN)
    if not math.log(FLOPS_MIN) <= log_c <= math.log(FLOPS_MAX):
        raise PlanError(
            f"Reaching loss {target:g} under this law needs ≈ 1e{log_c / math.log(10):.0f} FLOPs, outside "
            f"{_pow10(FLOPS_MIN)}–{_pow10(FLOPS_MAX)}; choose a target loss "
            + (f"further above E = {p.E:g}." if log_c > math.log(FLOPS_MAX) else "nearer E, a better model.")
        )
    return chinchilla_optimum(math.exp(log_c), p)


def check_target_loss(target_loss, p: ChinchillaParams) -> float:
    try:
        t = float(target_loss)
    except (TypeError, ValueError):
        raise PlanError(
            f"Target loss {target_loss!r} is not a number; give a loss in nats, e.g. 2.0."
        ) from None
    if not math.isfinite(t):
        raise PlanError(f"Target loss {target_loss!r} is not finite; give a loss in nats, e.g. 2.0.")
    if t <= p.E:
        raise PlanError(
            f"Target loss {t:g} is at or below the law's irreducible loss E = {p.E:g}; no finite model "
            "reaches it. Choose a target above E."
        )
    return t


# --------------------------------------------------------------------------------------------
# Numerical 1-D minimisation (shared with core.inference_aware)
# --------------------------------------------------------------------------------------------
def minimise_1d(
    objective: Callable[[np.ndarray], np.ndarray],
    lo: float,
    hi: float,
    search: SearchConfig = DEFAULT_SEARCH,
    edge_message: str = "",
) -> float:
    """The x in (lo, hi) minimising a smooth, vectorised ``objective(x_array) -> values``.

    Grid → bracket → Brent (scipy, bounded) → two Newton steps from central differences. Raises
    PlanError when the grid's minimum sits on an edge (no interior optimum) or nothing is finite.
    """
    grid = np.linspace(lo, hi, search.grid_points)
    with np.errstate(all="ignore"):
        values = np.asarray(objective(grid), dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.inf)
    i = int(np.argmin(values))
    if not np.isfinite(values[i]):
        raise PlanError(
            "The law gives no finite loss anywhere along this budget's line; check the law's parameters."
        )
    if i == 0 or i == len(grid) - 1:
        raise PlanError(
            edge_message or "The loss has no interior minimum in the search range; check the law."
        )
    centre, left, right = grid[i], grid[i - 1] - grid[i], grid[i + 1] - grid[i]

    # Search in u = x − centre: Brent's relative tolerance then acts on |u| ≪ 1, not on |x| ≈ 25.
    def scalar(u: float) -> float:
        with np.errstate(all="ignore"):
            v = float(np.asarray(objective(np.array([centre + u])))[0])
        return v if math.isfinite(v) else math.inf

    u = minimize_scalar(
        scalar, bounds=(left, right), method="bounded", options={"xatol": search.brent_xatol}
    ).x
    h = search.polish_step
    for _ in range(2):  # Newton on central differences: x ← x − f'/f''
        with np.errstate(all="ignore"):
            f_minus, f_0, f_plus = np.asarray(
                objective(centre + u + np.array([-h, 0.0, h])), dtype=np.float64
            )
        curvature = (f_plus - 2.0 * f_0 + f_minus) / (h * h)
        slope = (f_plus - f_minus) / (2.0 * h)
        if not (math.isfinite(curvature) and curvature > 0 and math.isfinite(slope)):
            break
        step = -slope / curvature
        # Brent is already within ~1e-7, so a step larger than h is noise, not progress.
        if abs(step) > h or not left <= u + step <= right:
            break
        # Keep the step only if the loss did not rise beyond float noise: where the curvature jumps
        # (Muennighoff's min(N_opt(U_D), N) switch) central differences point slightly off the minimum.
        with np.errstate(all="ignore"):
            f_new = float(np.asarray(objective(np.array([centre + u + step])))[0])
        if not f_new <= f_0 + 16.0 * np.finfo(np.float64).eps * abs(f_0):
            break
        u += step
    return float(centre + u)


def iso_flop_optimum(flops, loss_fn: LossFn, search: SearchConfig = DEFAULT_SEARCH) -> Plan:
    """Minimise ``loss_fn(N, C/(6N))`` over N for any law: the numerical counterpart of eq. (4).

    The search spans D/N ∈ [search.tokens_per_param_min, search.tokens_per_param_max] in log N.
    """
    c = check_flops(flops)
    c6 = c / FLOPS_PER_PARAM_TOKEN
    # N = sqrt(C / (6·r)) for tokens-per-parameter r: large r ↔ small N.
    lo = 0.5 * (math.log(c6) - math.log(search.tokens_per_param_max))
    hi = 0.5 * (math.log(c6) - math.log(search.tokens_per_param_min))

    def along_iso_flop(log_n: np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        return loss_fn(n, c6 / n)

    edge = (
        f"Along the {c:.3g}-FLOP line the loss keeps falling towards the edge of the search "
        f"(D/N from {search.tokens_per_param_min:g} to {search.tokens_per_param_max:g}); "
        "the law has no compute-optimal size there. Check the law's parameters."
    )
    log_n = minimise_1d(along_iso_flop, lo, hi, search, edge)
    n = math.exp(log_n)
    d = c6 / n
    loss = float(np.asarray(loss_fn(np.float64(n), np.float64(d))))
    return _finite_plan(
        Plan(n_params=n, tokens=d, tokens_per_param=d / n, loss=loss, flops=c, method="iso_flop_search")
    )


def kaplan_optimum(flops, p: KaplanParams, search: SearchConfig = DEFAULT_SEARCH) -> Plan:
    """Minimum of Kaplan et al. 2020 eq. (1.5) L(N, D) along C = 6ND; N is non-embedding parameters.

    Note: this is the optimum of the joint law under C = 6ND, not Kaplan's §6 frontier
    (N ∝ C^0.73), which came from early-stopped runs; the joint law gives N ∝ C^(α_D/(α_N+α_D)).
    """
    check_kaplan(p)
    return iso_flop_optimum(flops, lambda n, d: kaplan_loss_nd(n, d, p), search)


def data_constrained_optimum(
    flops, p: DataConstrainedParams, unique_tokens: float, search: SearchConfig = DEFAULT_SEARCH
) -> Plan:
    """Optimum when only ``unique_tokens`` distinct tokens exist (Muennighoff et al. 2023 eqs. 5-6).

    Tokens beyond ``unique_tokens`` are repeated epochs and are worth less; the returned ``tokens``
    counts all tokens seen (epochs = tokens / unique_tokens).
    """
    check_chinchilla(p.chinchilla)
    try:
        u = float(unique_tokens)
    except (TypeError, ValueError):
        u = float("nan")
    if not math.isfinite(u) or u <= 0:
        raise PlanError(
            f"Unique tokens {unique_tokens!r} must be a positive number; give the dataset size, e.g. 1e12."
        )
    if not (p.r_star_d > 0 and p.r_star_n > 0):
        raise PlanError(
            "The data-constrained law needs R*_D, R*_N > 0 (Muennighoff et al.: 15.4, 5.3); refit it."
        )
    return iso_flop_optimum(flops, lambda n, d: data_constrained_loss(n, d, u, p), search)


def loss_function(law: Law) -> LossFn:
    """``loss(n_params, tokens)`` for a Chinchilla or Kaplan law: for contour grids and iso-FLOP curves."""
    law = check_law(law)
    if isinstance(law, ChinchillaParams):
        return lambda n, d: chinchilla_loss(n, d, law)
    return lambda n, d: kaplan_loss_nd(n, d, law)


def iso_flop_curve(flops, law: Law, n_params) -> tuple[np.ndarray, np.ndarray]:
    """Tokens D = C/(6N) and loss along the iso-FLOP line at each N of ``n_params`` (page plot)."""
    c = check_flops(flops)
    n = np.asarray(n_params, dtype=np.float64)
    tokens = c / (FLOPS_PER_PARAM_TOKEN * n)
    return tokens, np.asarray(loss_function(law)(n, tokens))


def plan(flops, law: Law, search: SearchConfig = DEFAULT_SEARCH) -> Plan:
    """The compute-optimal plan for either law: closed form for Chinchilla, search for Kaplan."""
    law = check_law(law)
    if isinstance(law, ChinchillaParams):
        return chinchilla_optimum(flops, law)
    return kaplan_optimum(flops, law, search)


# --------------------------------------------------------------------------------------------
# Uncertainty from a fit's bootstrap samples
# --------------------------------------------------------------------------------------------
def bootstrap_bands(flops, samples, level: float = 0.9) -> tuple[dict, int]:
    """Central ``level`` percentile bands of N*, D*, D*/N*, L* over bootstrap fits, vectorised.

    ``samples``: rows [E, A, B, alpha, beta] (the fitting engine's ``bootstrap_samples``). Rows with
    non-finite or non-positive A, B, α, β are dropped; returns (intervals, rows used).
    """
    c = check_flops(flops)
    if not 0.0 < float(level) < 1.0:
        raise PlanError(f"Interval level {level!r} must be between 0 and 1, e.g. 0.9 for a 90 % band.")
    try:
        rows = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise PlanError(
            "Bootstrap samples must be rows of five numbers [E, A, B, alpha, beta]; refit to regenerate them."
        ) from None
    if rows.ndim != 2 or rows.shape[1] != 5:
        raise PlanError(
            f"Bootstrap samples have shape {rows.shape}; expected rows of [E, A, B, alpha, beta]. Refit to regenerate them."
        )
    ok = np.all(np.isfinite(rows), axis=1) & np.all(rows[:, 1:] > 0, axis=1) & (rows[:, 0] >= 0)
    used = int(ok.sum())
    if used < 2:
        raise PlanError(
            f"Only {used} of {len(rows)} bootstrap fits are usable (positive A, B, α, β); refit with more samples."
        )
    e, a, b, alpha, beta = rows[ok].T
    n, d, loss = _closed_form(c, e, a, b, alpha, beta)
    stacked = np.stack([n, d, d / n, loss])  # (4, S)
    tail = 50.0 * (1.0 - float(level))
    lo, hi = np.percentile(stacked, [tail, 100.0 - tail], axis=1)  # each (4,)
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
        raise PlanError(
            "The bootstrap fits give no finite optimum at this budget; try a budget nearer 1e18–1e27 FLOPs."
        )
    keys = ("n_params", "tokens", "tokens_per_param", "loss")
    return {k: (float(lo[j]), float(hi[j])) for j, k in enumerate(keys)}, used


def params_from_fit(fit: Mapping) -> Union[ChinchillaParams, KaplanParams, RoutedParams]:
    """The law dataclass of a stored fit (``{"law": ..., "params": {...}}``), chosen by its parameter names."""
    params = fit.get("params") if isinstance(fit, Mapping) else None
    if not isinstance(params, Mapping):
        raise PlanError("The fit has no 'params' mapping; pick another fit or a preset.")
    for cls in (ChinchillaParams, RoutedParams, KaplanParams):
        names = [f for f in cls.__dataclass_fields__]
        required = names if cls is not KaplanParams else ["N_c", "alpha_N", "D_c", "alpha_D"]
        if all(k in params for k in required):
            try:
                return cls(**{k: float(params[k]) for k in names if k in params})
            except (TypeError, ValueError):
                raise PlanError(
                    f"The fit's parameters are not all numbers: {dict(params)}; refit it."
                ) from None
    raise PlanError(
        f"The fit of law {fit.get('law')!r} has parameters {sorted(params)} the planner cannot use; "
        "it needs E, A, B, alpha, beta (Chinchilla) or N_c, alpha_N, D_c, alpha_D (Kaplan)."
    )


def plan_from_fit(flops, fit: Mapping, level: float = 0.9, search: SearchConfig = DEFAULT_SEARCH) -> Plan:
    """Plan from a stored fit; with ``bootstrap_samples`` (Chinchilla form) the plan carries bands."""
    law = params_from_fit(fit)
    best = plan(flops, law, search)
    samples = fit.get("bootstrap_samples")
    if samples is None or len(samples) == 0 or not isinstance(law, ChinchillaParams):
        return best
    intervals, used = bootstrap_bands(flops, samples, level)
    return Plan(
        **{**asdict(best), "intervals": intervals, "interval_level": float(level), "interval_samples": used}
    )


# --------------------------------------------------------------------------------------------
# Mixture of experts: routed law (Clark et al. 2022) on top of a dense Chinchilla law
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MoEShape:
    expert_fraction: float = 1.0 / 3.0  # share of the dense base's parameters copied per expert:
    # Clark et al. 2022 route every other layer's FFN, and an FFN holds ≈ 2/3 of a layer → ≈ 1/3


@dataclass(frozen=True)
class MoEPlan:
    n_experts: float  # experts per routed layer (1 = dense)
    n_active_params: float  # parameters used per token (the dense base; top-1 routing)
    n_effective_params: float  # dense size with the same loss: Clark et al. 2022 §5 N̄(N, E)
    n_total_params: float  # all parameters stored: N·(1 + f·(E − 1)), f = MoEShape.expert_fraction
    tokens: float  # training tokens D*
    tokens_per_param: float  # D*/N_active
    loss: float  # predicted loss: Chinchilla law at (N̄, D*)
    flops: float  # training FLOPs from ACTIVE parameters: 6·N_active·D*
    method: str = "iso_flop_search"

    def to_dict(self) -> dict:
        return {
            k: (float(v) if isinstance(v, (float, int, np.floating)) else v) for k, v in asdict(self).items()
        }


def moe_optimum(
    flops,
    dense: ChinchillaParams,
    routed: RoutedParams,
    n_experts: float,
    shape: MoEShape = MoEShape(),
    search: SearchConfig = DEFAULT_SEARCH,
) -> MoEPlan:
    """Compute-optimal active size and tokens for an E-expert routed model.

    Loss = Chinchilla(N̄(N_active, E), D) with N̄ Clark et al. 2022's effective parameter count
    (§5); FLOPs = 6·N_active·D. Clark et al. fitted at a fixed 130B tokens, so treating N̄ as a size
    multiplier at every D is an assumption of this planner. With E = 1, N̄ = N: the dense optimum.
    """
    check_chinchilla(dense)
    check_routed(routed)
    try:
        e = float(n_experts)
    except (TypeError, ValueError):
        e = float("nan")
    if not math.isfinite(e) or e < 1:
        raise PlanError(f"Expert count {n_experts!r} must be ≥ 1 (1 = dense); give e.g. 8 or 64.")
    if not 0 <= shape.expert_fraction <= 1:
        raise PlanError(
            f"Expert fraction {shape.expert_fraction:g} must be in [0, 1]; ≈ 1/3 for Clark et al.'s layout."
        )

    def loss_fn(n_active, tokens):
        return chinchilla_loss(effective_params(n_active, e, routed), tokens, dense)

    best = iso_flop_optimum(flops, loss_fn, search)
    n_eff = float(effective_params(best.n_params, e, routed))
    return MoEPlan(
        n_experts=e,
        n_active_params=best.n_params,
        n_effective_params=n_eff,
        n_total_params=best.n_params * (1.0 + shape.expert_fraction * (e - 1.0)),
        tokens=best.tokens,
        tokens_per_param=best.tokens_per_param,
        loss=best.loss,
        flops=best.flops,
    )
