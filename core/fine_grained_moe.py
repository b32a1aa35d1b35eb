"""Fine-grained mixture of experts (Krajewski et al. 2024, "Scaling Laws for Fine-Grained Mixture of
Experts", arXiv:2402.07871).

Granularity G splits each expert of a standard MoE (expert = one dense FFN) into G smaller ones and
routes each token to G times as many of them, so the ACTIVE parameters stay those of the dense FFN
while the router chooses among E·G experts (E the expansion rate: total expert parameters / one
FFN). Their joint law (§5, eq. (4)) in the model's non-embedding parameters N — ALL of them, every
expert included (the paper fixes E = 64) —, tokens D and G:

    L(N, D, G) = c + (g / G^γ + a) · 1/N^α + b / D^β

with their fitted constants (§5.2): a = 18.1, α = 0.115, b = 30.8, β = 0.147, g = 2.1, γ = 0.58,
c = 0.47 (fitted at expansion rate E = 64, on C4).

FLOPs per token, the form we use (their §4 / Appendix, "model FLOPs" with the router counted):

    F = 6·N_active + c_r · d_model · (E·G) · n_blocks,    c_r = 14

6·N_active for the forward and backward pass of the active parameters (Kaplan et al. 2020 §2.1; their
12·d_model²·c_f·n_blocks with c_f = 6) and c_r = 14 FLOPs per router weight per token (the router
matmul forward and backward plus routing operations, their estimate). d_model and n_blocks follow
from N_active with a fixed aspect ratio d_model = 64·n_blocks, as a public implementation of this law
sizes its models (below). Per block a model holds attention 4·d² and E FFNs' worth of experts
8·E·d², of which one FFN's worth (k/G of it) is active: N = N_active·(4 + 8E)/(4 + 8k/G), 43× at
E = 64 and k = G. With the router counted, ever finer experts cost
compute, so the optimal G at a budget is finite and grows with the budget (their Fig. 1, Table 2).

Top-k: their law is fitted with top-k = G (k = G experts of size FFN/G active: active = one FFN).
``moe_plan`` accepts another k and counts active parameters with the active expert share k/G of one
FFN; the law is then applied to such a model — an extrapolation we flag in the result.

Which constants and why: we could not open the paper's PDF here; the form and the seven constants
are as we recall them from its §5 and the FLOPs form from its §4 (c_r = 14). A public implementation
of the law (the scaling-law sizing in the sigma-moe project's benchmark code) uses the same seven
constants, evaluates the law at the model's TOTAL parameters d²·(8E + 4)·n_layers with
d_model = 64·n_layers, and counts FLOPs per token as (12·d²·6 + 14·d·E·G)·n_layers — the form here.
The total-parameter reading is also the one that agrees with the paper's remark that its optimal
active N and D follow Hoffmann et al. 2022's ~20 tokens per parameter for 1–10B active parameters:
at 1e22 FLOPs and G = 8 it gives 9.3B active parameters on 175B tokens (19 per active parameter),
where evaluating the law at the active count gave 48B on 34B tokens (0.7 per parameter). The tests check the law
against these constants' own consequences (the closed-form optimum without router cost, Hoffmann et
al. 2022 eq. (4) with A = g/G^γ + a, B = b), the paper's qualitative claims (finer is better at
large budgets; G = 1 is not optimal at any budget we plan), and exact recovery on a synthetic
ground truth drawn from these constants.

Comparisons (``core.planner.compare_moe_laws``): Clark et al. 2022's routed law on a dense Chinchilla law (the
registry's ``routed`` and ``core.planner.moe_optimum``) and Wang et al. 2024 ("Scaling Laws Across
Model Architectures: A Comparative Analysis of Dense and MoE Models in Large Language Models"),
which find that dense and MoE models follow the same power-law form in N, D and C with similar
exponents, the MoE reaching a lower loss at equal compute; their constants are not reproduced here,
so their claim enters only as a qualitative check (the MoE optimum's loss below the dense one on the
same law family).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from core.budgets import check_flops
from core.errors import PlanError
from core.search import DEFAULT_SEARCH, SearchConfig, minimise_1d

ROUTER_FLOPS_PER_WEIGHT = 14.0  # c_r of Krajewski et al. 2024 §4: router FLOPs per weight per token
DENSE_FLOPS_PER_PARAM = 6.0  # c_f: forward + backward per active parameter per token (Kaplan et al. 2020 §2.1)
ASPECT_RATIO = 64.0  # d_model / n_blocks, as the public implementation sizes the law's models (docstring)
GRANULARITIES = (1, 2, 4, 8, 16, 32, 64)  # powers of 2 up to 64, the range the paper trains (G ≤ 16) and beyond
FGMOE_PARAMS = ("a", "alpha", "b", "beta", "g", "gamma", "c")


@dataclass(frozen=True)
class FineGrainedMoEParams:
    """Krajewski et al. 2024 eq. (4): L = c + (g/G^γ + a)/N^α + b/D^β (N all non-embedding parameters)."""

    a: float = 18.1  # scale of the model-size term at G → ∞
    alpha: float = 0.115  # exponent of N
    b: float = 30.8  # scale of the data term
    beta: float = 0.147  # exponent of D
    g: float = 2.1  # extra model-size scale at G = 1, shrinking as G^−γ
    gamma: float = 0.58  # exponent of granularity
    c: float = 0.47  # irreducible loss


KRAJEWSKI_2024 = FineGrainedMoEParams()


def fine_grained_loss(n_params, tokens, granularity, p: FineGrainedMoEParams) -> np.ndarray:
    """Krajewski et al. 2024 eq. (4): L(N, D, G) = c + (g/G^γ + a)·N^−α + b·D^−β, broadcasting; N the
    model's total non-embedding parameters (:func:`total_params` of its active ones)."""
    n = np.asarray(n_params, np.float64)
    d = np.asarray(tokens, np.float64)
    gr = np.asarray(granularity, np.float64)
    return p.c + (p.g * gr ** (-p.gamma) + p.a) * n ** (-p.alpha) + p.b * d ** (-p.beta)


def check_fine_grained(p: FineGrainedMoEParams) -> FineGrainedMoEParams:
    """PlanError unless every scale and exponent is finite, a, b, g ≥ 0 (a + g > 0, b > 0), α, β > 0."""
    if not isinstance(p, FineGrainedMoEParams):
        raise PlanError(f"This needs a fine-grained MoE law (Krajewski et al. 2024), got {type(p).__name__}.")
    values = asdict(p)
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise PlanError(f"The fine-grained MoE law has non-finite {', '.join(bad)}; refit it or use the preset.")
    if p.alpha <= 0 or p.beta <= 0 or p.b <= 0 or p.a < 0 or p.g < 0 or p.a + p.g <= 0:
        raise PlanError("The fine-grained MoE law needs α, β, b > 0 and a, g ≥ 0 (a + g > 0) for loss to fall "
                        "with N and D; refit it or use the Krajewski et al. preset.")
    return p


# --------------------------------------------------------------------------------------------
# FLOPs per token with the router (Krajewski et al. 2024 §4)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MoEShape:
    """What the planner chooses besides N and D."""

    expansion: float = 64.0  # E: total expert parameters / one dense FFN (the paper fits at E = 64)
    granularity: float = 1.0  # G: each FFN-sized expert split in G (G = 1: standard MoE)
    top_k: Optional[float] = None  # experts per token; None = G (the paper's setting: active = one FFN)

    @property
    def n_experts(self) -> float:
        return self.expansion * self.granularity  # experts per MoE layer: E·G

    @property
    def k(self) -> float:
        return self.granularity if self.top_k is None else float(self.top_k)


def check_shape(shape: MoEShape) -> MoEShape:
    for name, v in (("expansion rate E", shape.expansion), ("granularity G", shape.granularity),
                    ("top-k", shape.k)):
        if not (isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(v) and v >= 1):
            raise PlanError(f"The {name} {v!r} must be a number ≥ 1; e.g. E = 64, G = 8, top-k = G.")
    if shape.k > shape.n_experts:
        raise PlanError(f"top-k = {shape.k:g} exceeds the {shape.n_experts:g} experts per layer (E·G); lower it.")
    return shape


def d_model_for(n_active, shape: MoEShape = MoEShape(), aspect: float = ASPECT_RATIO) -> np.ndarray:
    """d_model of a model with ``n_active`` active non-embedding parameters.

    Per block: attention 4·d² plus the active FFN share (k/G of one 8·d² FFN); n_blocks = d/aspect,
    so N = n_blocks·(4 + 8k/G)·d² = (4 + 8k/G)·d³/aspect.
    """
    per = 4.0 + 8.0 * shape.k / shape.granularity
    return (np.asarray(n_active, np.float64) * aspect / per) ** (1.0 / 3.0)


def total_params(n_active, shape: MoEShape = MoEShape()) -> np.ndarray:
    """All non-embedding parameters of a model with ``n_active`` active ones — the law's N. Per block
    attention 4·d² and E·G experts of FFN/G each (8·E·d²) against 4·d² + (k/G)·8·d² active."""
    return np.asarray(n_active, np.float64) * (4.0 + 8.0 * shape.expansion) / (4.0 + 8.0 * shape.k / shape.granularity)


def flops_per_token(n_active, shape: MoEShape = MoEShape(), aspect: float = ASPECT_RATIO,
                    router_flops: float = ROUTER_FLOPS_PER_WEIGHT) -> np.ndarray:
    """F = 6·N + c_r·d_model·(E·G)·n_blocks (Krajewski et al. 2024 §4), n_blocks = d_model/aspect."""
    n = np.asarray(n_active, np.float64)
    d = d_model_for(n, shape, aspect)
    return DENSE_FLOPS_PER_PARAM * n + router_flops * d * shape.n_experts * (d / aspect)


def router_share(n_active, shape: MoEShape = MoEShape(), aspect: float = ASPECT_RATIO) -> np.ndarray:
    """The router's share of the training FLOPs per token."""
    f = flops_per_token(n_active, shape, aspect)
    return 1.0 - DENSE_FLOPS_PER_PARAM * np.asarray(n_active, np.float64) / f


# --------------------------------------------------------------------------------------------
# The compute-optimal plan
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FineGrainedPlan:
    n_active_params: float  # N*: active non-embedding parameters
    tokens: float  # D*
    tokens_per_param: float
    loss: float
    flops: float  # the budget: F(N*)·D*
    granularity: float
    expansion: float
    n_experts: float  # E·G experts per MoE layer
    top_k: float
    d_model: float
    n_blocks: float
    router_flops_share: float  # router FLOPs / all training FLOPs
    n_total_params: float  # all parameters stored: attention + E·G experts of FFN/G each
    flops_rule: str = "F = 6·N_active + 14·d_model·(E·G)·n_blocks per token (Krajewski et al. 2024 §4)"
    method: str = "iso_flop_search"
    notes: tuple = field(default_factory=tuple)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["notes"] = list(self.notes)
        return {k: (float(v) if isinstance(v, (int, float, np.floating)) else v) for k, v in d.items()}


def moe_plan(flops, p: FineGrainedMoEParams = KRAJEWSKI_2024, shape: MoEShape = MoEShape(), *,
             router: bool = True, search: SearchConfig = DEFAULT_SEARCH) -> FineGrainedPlan:
    """Compute-optimal active N and D for a budget and a chosen (E, G, top-k): minimise the law (at the
    model's total parameters) along C = F(N_active)·D over log N_active (core/search.py's grid → Brent
    → Newton). ``router=False`` drops the router term: C = 6·N_active·D, where the optimum is Hoffmann
    et al. 2022 eq. (4) in N_active with A = (g/G^γ + a)·r^−α, r = N/N_active, B = b."""
    c = check_flops(flops)
    check_fine_grained(p)
    check_shape(shape)
    rf = ROUTER_FLOPS_PER_WEIGHT if router else 0.0

    def fpt(n):
        return flops_per_token(n, shape, router_flops=rf)

    def along(log_n):
        n = np.exp(log_n)
        return fine_grained_loss(total_params(n, shape), c / fpt(n), shape.granularity, p)

    c6 = c / DENSE_FLOPS_PER_PARAM
    lo = 0.5 * (math.log(c6) - math.log(search.tokens_per_param_max))
    hi = 0.5 * (math.log(c6) - math.log(search.tokens_per_param_min))
    edge = (f"Along the {c:.3g}-FLOP line the fine-grained MoE loss has no interior minimum in the search "
            "range; check the law's parameters.")
    n = math.exp(minimise_1d(along, lo, hi, search, edge))
    f = float(fpt(n))
    d = c / f
    dm = float(d_model_for(n, shape))
    blocks = dm / ASPECT_RATIO
    total = float(total_params(n, shape))  # attention + E·G experts of FFN/G each = E FFNs per block
    notes = []
    if shape.k != shape.granularity:
        notes.append(f"top-k = {shape.k:g} ≠ G = {shape.granularity:g}: the law was fitted with top-k = G; it is "
                     "applied here to a model it was not fitted on, an extrapolation.")
    if shape.expansion != 64:
        notes.append(f"E = {shape.expansion:g}: the published constants were fitted at E = 64.")
    return FineGrainedPlan(
        n_active_params=n, tokens=d, tokens_per_param=d / n,
        loss=float(fine_grained_loss(total, d, shape.granularity, p)), flops=c, granularity=float(shape.granularity),
        expansion=float(shape.expansion), n_experts=float(shape.n_experts), top_k=float(shape.k), d_model=dm,
        n_blocks=blocks, router_flops_share=float(1.0 - DENSE_FLOPS_PER_PARAM * n / f) if router else 0.0,
        n_total_params=total, notes=tuple(notes),
        flops_rule=FineGrainedPlan.flops_rule if router else "C = 6·N_active·D (router not counted)")


def best_granularity(flops, p: FineGrainedMoEParams = KRAJEWSKI_2024, expansion: float = 64.0,
                     granularities: Sequence[float] = GRANULARITIES, top_k: Optional[float] = None,
                     search: SearchConfig = DEFAULT_SEARCH) -> tuple[FineGrainedPlan, list]:
    """The plan of lowest loss over ``granularities`` (top-k = G unless given), and every plan."""
    plans = [moe_plan(flops, p, MoEShape(expansion, float(g), top_k), search=search) for g in granularities
             if top_k is None or top_k <= expansion * g]
    if not plans:
        raise PlanError("No granularity fits the chosen top-k; lower top-k or allow larger G.")
    return min(plans, key=lambda q: q.loss), plans


# --------------------------------------------------------------------------------------------
# The fit (core/fitting/generic.py through the registry's FitSpec)
# --------------------------------------------------------------------------------------------
FGMOE_THETA = ("log_a", "alpha", "log_b", "beta", "log_g", "gamma", "log_c")


def fgmoe_theta_to_params(theta) -> dict:
    th = np.asarray(theta, np.float64)
    return {"a": np.exp(th[..., 0]), "alpha": th[..., 1], "b": np.exp(th[..., 2]), "beta": th[..., 3],
            "g": np.exp(th[..., 4]), "gamma": th[..., 5], "c": np.exp(th[..., 6])}


def fgmoe_log_pred(theta, logs):
    """log L̂ (k, n) of eq. (4): log-sum-exp of c, (g/G^γ + a)/N^α and b/D^β."""
    from core.fitting.numeric import logsumexp_rows

    ln, ld, lg = logs["n_params"], logs["tokens"], logs["granularity"]
    t = [theta[:, j:j + 1] for j in range(7)]
    model_scale = np.logaddexp(t[4] - t[5] * lg, t[0])  # log(g·G^−γ + a)
    return logsumexp_rows(t[6] + 0 * ln, model_scale - t[1] * ln, t[2] - t[3] * ld)


def fgmoe_starts(logs, log_y):
    """A start per (α, β, γ) on a grid with c, a, g, b ≥ 0 by NNLS (the law is linear in them)."""
    from core.fitting.inputs import grid
    from core.fitting.numeric import nonneg_scales

    n, d, gr = logs["n_params_raw"], logs["tokens_raw"], logs["granularity_raw"]
    y = np.exp(log_y)
    rows = []
    for alpha, beta, gamma in grid((0.08, 0.15, 0.3), (0.1, 0.2, 0.4), (0.3, 0.6, 1.0)):
        cols = np.stack([np.ones_like(y), n ** -alpha, gr ** -gamma * n ** -alpha, d ** -beta], axis=1)
        c, a, g, b = nonneg_scales(cols, y)
        rows.append((math.log(a), alpha, math.log(b), beta, math.log(g), gamma, math.log(c)))
    return np.array(rows)
