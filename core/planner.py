"""Compute-optimal allocation of a training budget: how many parameters N, how many tokens D.

Budget C in FLOPs with C = 6·N·D (Kaplan et al. 2020 §2.1: ≈2 FLOPs per parameter per token
forward, ≈4 backward). For the Chinchilla law L = E + A/N^α + B/D^β the optimum is closed form
(Hoffmann et al. 2022 eq. (4)):

    G = (αA / (βB))^(1/(α+β)),   N* = G·(C/6)^(β/(α+β)),   D* = C / (6·N*)

(written once, ``core.laws.compute_optimal_nd``). Other laws (Kaplan's joint L(N, D), Muennighoff's
data-constrained law, a routed MoE law on top of Chinchilla) are minimised numerically along the
iso-FLOP line D = C/(6N) (core/search.py). Which of the two a law gets, its check and its loss are
declared in the law registry (core/registry.py); the planner only looks them up.

Every public function validates its inputs and raises :class:`core.errors.PlanError` with a one-line
message instead of returning NaN. Results are :class:`Plan` dataclasses (``to_dict()`` for --json).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping, Optional, Union

import numpy as np

from core import fine_grained_moe as fgmoe
from core.budgets import FLOPS_MAX, FLOPS_MIN, _pow10, check_flops  # noqa: F401  (re-exported)
from core.errors import PlanError
from core import format as fmt
from core.format import CONFIDENCE
from core.laws import (
    FLOPS_PER_PARAM_TOKEN,
    HOFFMANN_2022,
    ChinchillaParams,
    DataConstrainedParams,
    KaplanParams,
    RoutedParams,
    chinchilla_g,
    chinchilla_loss,
    compute_optimal_nd,
    effective_params,
)
from core.registry import (
    LAWS,
    check_chinchilla,
    check_kaplan,
    check_routed,
    check_unique_tokens,
    get_law,
    law_for_params,
    law_of,
)
from core.presets import get_preset
from core.search import DEFAULT_SEARCH, LossFn, SearchConfig, iso_flop_argmin, minimise_1d

__all__ = ["check_chinchilla", "check_kaplan", "check_routed", "minimise_1d", "SearchConfig", "DEFAULT_SEARCH",
           "LossFn"]  # re-exported: core.inference_aware and the pages import them from here


Law = Union[ChinchillaParams, KaplanParams, DataConstrainedParams]


@dataclass(frozen=True)
class Plan:
    n_params: float  # N*: parameters (Kaplan law: non-embedding; MoE: see MoEPlan)
    tokens: float  # D*: training tokens
    tokens_per_param: float  # D*/N* (Chinchilla's "≈20 tokens per parameter")
    loss: float  # predicted loss at (N*, D*), nats/token
    flops: float  # training FLOPs 6·N*·D*: the budget itself
    intervals: Optional[dict] = None  # {"n_params"|"tokens"|"tokens_per_param"|"loss": (lo, hi)}
    interval_level: Optional[float] = None  # central probability the intervals cover, e.g. 0.95
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
def check_law(law) -> Law:
    """The law checked by its registry entry; PlanError for laws with no compute-optimal plan alone."""
    entry = law_of(law)
    if not entry.plannable:
        raise PlanError(entry.not_plannable)
    return entry.check(law)


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
    n_opt, d_opt = compute_optimal_nd(flops, A, B, alpha, beta)
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
    g = chinchilla_g(p.A, p.B, p.alpha, p.beta)
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
# Numerical optimum (core/search.py)
# --------------------------------------------------------------------------------------------
def iso_flop_optimum(flops, loss_fn: LossFn, search: SearchConfig = DEFAULT_SEARCH) -> Plan:
    """Minimise ``loss_fn(N, C/(6N))`` over N for any law: the numerical counterpart of eq. (4).

    The search spans D/N ∈ [search.tokens_per_param_min, search.tokens_per_param_max] in log N.
    """
    c = check_flops(flops)
    n, d = iso_flop_argmin(c, loss_fn, search)
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
    return plan(flops, p, search)


def data_constrained_optimum(
    flops, p: DataConstrainedParams, unique_tokens: float, search: SearchConfig = DEFAULT_SEARCH
) -> Plan:
    """Optimum when only ``unique_tokens`` distinct tokens exist (Muennighoff et al. 2023 eqs. 5-6).

    Tokens beyond ``unique_tokens`` are repeated epochs and are worth less; the returned ``tokens``
    counts all tokens seen (epochs = tokens / unique_tokens).
    """
    check_chinchilla(p.chinchilla)
    check_unique_tokens(unique_tokens)
    return plan(flops, p, search, unique_tokens=unique_tokens)


def loss_function(law: Law, **extra) -> LossFn:
    """``loss(n_params, tokens)`` of a plannable law (registry ``loss_nd``): for contour grids and iso-FLOP
    curves. ``extra``: what the law needs besides N and D (the data-constrained law: unique_tokens)."""
    law = check_law(law)
    return law_of(law).loss_nd(law, extra)


def iso_flop_curve(flops, law: Law, n_params, **extra) -> tuple[np.ndarray, np.ndarray]:
    """Tokens D = C/(6N) and loss along the iso-FLOP line at each N of ``n_params`` (page plot)."""
    c = check_flops(flops)
    n = np.asarray(n_params, dtype=np.float64)
    tokens = c / (FLOPS_PER_PARAM_TOKEN * n)
    return tokens, np.asarray(loss_function(law, **extra)(n, tokens))


def plan(flops, law: Law, search: SearchConfig = DEFAULT_SEARCH, **extra) -> Plan:
    """The compute-optimal plan for any plannable law of the registry: its closed form where one
    exists (Chinchilla, Hoffmann et al. 2022 eq. (4)), else the iso-FLOP search. ``extra``: the
    law's ``plan_inputs`` (the data-constrained law: unique_tokens)."""
    law = check_law(law)
    entry = law_of(law)
    c = check_flops(flops)
    n, d, closed = entry.optimum(c, law, search, **extra)
    loss = float(np.asarray(entry.loss_nd(law, extra)(np.float64(n), np.float64(d))))
    return _finite_plan(Plan(n_params=n, tokens=d, tokens_per_param=d / n, loss=loss, flops=c,
                             method="closed_form" if closed else "iso_flop_search"))


# --------------------------------------------------------------------------------------------
# Uncertainty from a fit's bootstrap samples
# --------------------------------------------------------------------------------------------
def bootstrap_bands(flops, samples, level: float = CONFIDENCE) -> tuple[dict, int]:
    """Central ``level`` percentile bands of N*, D*, D*/N*, L* over bootstrap fits, vectorised.

    ``samples``: rows [E, A, B, alpha, beta] (the fitting engine's ``bootstrap_samples``). Rows with
    non-finite or non-positive A, B, α, β are dropped; returns (intervals, rows used).
    """
    c = check_flops(flops)
    if not 0.0 < float(level) < 1.0:
        raise PlanError(f"Interval level {level!r} must be between 0 and 1, e.g. 0.95 for a 95% band.")
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


def params_from_fit(fit: Mapping) -> Union[ChinchillaParams, KaplanParams, RoutedParams, DataConstrainedParams]:
    """The planner's dataclass of a stored fit (``{"law": ..., "params": {...}}``), by its law's registry
    entry; a fit without a known law key is matched to the registry law whose parameters it carries."""
    params = fit.get("params") if isinstance(fit, Mapping) else None
    if not isinstance(params, Mapping):
        raise PlanError("The fit has no 'params' mapping; pick another fit or a preset.")
    key = fit.get("law")
    entry = get_law(key, PlanError) if key in LAWS else law_for_params(params)
    if entry is None or entry.params_type is None or not set(entry.param_names) <= set(params):
        raise PlanError(
            f"The fit of law {key!r} has parameters {sorted(params)} the planner cannot use; "
            "it needs E, A, B, alpha, beta (Chinchilla) or N_c, alpha_N, D_c, alpha_D (Kaplan)."
        )
    return entry.params_object(params)


def plan_from_fit(flops, fit: Mapping, level: float = CONFIDENCE, search: SearchConfig = DEFAULT_SEARCH, **extra) -> Plan:
    """Plan from a stored fit; with ``bootstrap_samples`` (Chinchilla form) the plan carries bands.
    ``extra``: the law's ``plan_inputs`` (the data-constrained law: unique_tokens)."""
    law = params_from_fit(fit)
    best = plan(flops, law, search, **extra)
    samples = fit.get("bootstrap_samples")
    if samples is None or len(samples) == 0 or law_of(law).closed_form is None:
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


def compare_moe_laws(flops, p: fgmoe.FineGrainedMoEParams = fgmoe.KRAJEWSKI_2024, expansion: float = 64.0) -> dict:
    """One budget through three MoE views: Krajewski et al. 2024 at the best G and at G = 1, and Clark
    et al. 2022's routed law on Hoffmann et al. 2022's dense law (core.planner.moe_optimum, E experts),
    next to the dense Chinchilla optimum. The papers fit different data (C4 vs MassiveText), so
    compare allocations (active N*, D*, D/N), not loss values across papers."""
    best, plans = fgmoe.best_granularity(flops, p, expansion)
    g1 = next(q for q in plans if q.granularity == 1.0)
    dense = chinchilla_optimum(flops, HOFFMANN_2022)
    clark = moe_optimum(flops, HOFFMANN_2022, get_preset("clark_sbase").params, expansion)
    return {
        "flops": float(flops),
        "krajewski_best": best.to_dict(), "krajewski_g1": g1.to_dict(),
        "clark_routed": clark.to_dict(), "dense_chinchilla": dense.to_dict(),
        "wang_2024": "Wang et al. 2024: dense and MoE follow the same power-law form with similar exponents and "
                     "the MoE reaches lower loss at equal compute; constants not reproduced (qualitative only).",
    }


# The comparison as a table, the same on the Planner page and in `cli.py plan --compare-moe`: one row
# per view; each column's core.format kind (None: text). Allocations only: the papers fit different
# data (C4 vs MassiveText), so their losses are not comparable across rows.
MOE_COMPARISON_COLUMNS = {"view": None, "active N*": "count", "tokens D*": "count",
                          "tokens per active param (D/N)": "ratio", "granularity G": "number",
                          "experts per layer": "integer", "top-k": "integer"}


def moe_comparison_rows(out: Mapping) -> list[dict]:
    """The rows of ``compare_moe_laws``' result, numbers unformatted (None where a view has no such
    quantity). Clark et al.'s experts are whole FFNs (G = 1 in Krajewski et al.'s terms), top-1."""
    best, g1, clark, dense = (out[k] for k in ("krajewski_best", "krajewski_g1", "clark_routed", "dense_chinchilla"))

    def row(view, n, d, g, experts, top_k):
        return dict(zip(MOE_COMPARISON_COLUMNS, (view, n, d, d / n, g, experts, top_k)))

    return [
        row("Krajewski et al. 2024, best G", best["n_active_params"], best["tokens"], best["granularity"],
            best["n_experts"], best["top_k"]),
        row("Krajewski et al. 2024, G = 1", g1["n_active_params"], g1["tokens"], g1["granularity"], g1["n_experts"],
            g1["top_k"]),
        row("Clark et al. 2022 routed, on Hoffmann et al. 2022", clark["n_active_params"], clark["tokens"], 1.0,
            clark["n_experts"], 1.0),
        row("dense, Hoffmann et al. 2022", dense["n_params"], dense["tokens"], None, None, None),
    ]


def moe_comparison_table(out: Mapping) -> list[dict]:
    """``moe_comparison_rows`` with every number written by core.format (an em dash where missing)."""
    return [{col: value if kind is None else fmt.value(value, kind) for (col, kind), value
             in zip(MOE_COMPARISON_COLUMNS.items(), row.values())} for row in moe_comparison_rows(out)]
