"""Inference-aware optimum: the cheapest model to train AND serve at a target quality.

Sardana & Frankle 2023, "Beyond Chinchilla-Optimal: Accounting for Inference in Language Model
Scaling Laws", eq. (2): for a target loss ℓ and a lifetime demand of D_inf inference tokens,

    minimise  6·N·D_tr + 2·N·D_inf    subject to    E + A/N^α + B/D_tr^β = ℓ

(6 FLOPs per parameter per training token, 2 per inference token). With D_inf = 0 this is the
Chinchilla optimum for loss ℓ; a larger D_inf favours a smaller model trained on more tokens.

How it is solved: write s = (A/N^α)/(ℓ − E), the share of the reducible loss left to the model-size
term. Then N = (A / (s(ℓ − E)))^(1/α) and D_tr = (B / ((1 − s)(ℓ − E)))^(1/β) satisfy the constraint
exactly for every s ∈ (0, 1), and the cost → ∞ at both ends, so the minimum is always interior.
We minimise log cost over z = logit(s) with the planner's grid → Brent → Newton search; all terms
are computed in logs, so no budget overflows. (At D_inf = 0 the answer is s = β/(α+β), the
Chinchilla optimum, Hoffmann et al. 2022 eq. (4).)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from core.errors import PlanError
from core.laws import ChinchillaParams, chinchilla_g
from core.registry import positive_number
from core.planner import (
    DEFAULT_SEARCH,
    FLOPS_PER_PARAM_TOKEN,
    Plan,
    SearchConfig,
    check_target_loss,
    check_chinchilla,
    compute_for_loss,
    minimise_1d,
)

INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0  # a forward pass: ≈2 FLOPs/param/token (Kaplan et al. 2020 §2.1)
INFERENCE_TOKENS_MAX = 1e20  # 10 million years of serving at 300k tokens/s: anything larger is a typo
_LOGIT_RANGE = 40.0  # z = logit(s) ∈ [−40, 40]: s within 4e-18 of 0 or 1, far past any optimum


@dataclass(frozen=True)
class InferencePlan:
    n_params: float  # parameters of the cheapest model (training + inference) reaching the target loss
    tokens: float  # its training tokens D_tr
    tokens_per_param: float  # D_tr / N
    loss: float  # the target loss, reached exactly
    inference_tokens: float  # lifetime inference demand D_inf the plan was made for
    training_flops: float  # 6·N·D_tr
    inference_flops: float  # 2·N·D_inf
    total_flops: float  # training + inference
    chinchilla: Plan  # the Chinchilla-optimal model of the same loss (training compute only)
    chinchilla_total_flops: float  # that model's training + inference FLOPs for the same D_inf
    flops_saving: float  # 1 − total_flops / chinchilla_total_flops: the fraction saved (≥ 0)

    def to_dict(self) -> dict:
        """Plain floats and a nested ``chinchilla`` plan: ready for ``json.dumps``."""
        d = {k: float(v) for k, v in asdict(self).items() if k != "chinchilla"}
        d["chinchilla"] = self.chinchilla.to_dict()
        return d


def chinchilla_quality(n_params: float, p: ChinchillaParams) -> float:
    """Loss of the Chinchilla-optimal model with ``n_params`` parameters (Hoffmann et al. 2022 eq. (4)).

    The budget whose optimum is N: C/6 = (N/G)^((α+β)/β); its tokens D = (C/6)/N.
    """
    check_chinchilla(p)
    n = positive_number(n_params, f"Reference model size {n_params!r} must be a positive number of parameters, e.g. 13e9.")
    log_g = math.log(chinchilla_g(p.A, p.B, p.alpha, p.beta))
    log_c6 = (math.log(n) - log_g) * (p.alpha + p.beta) / p.beta
    log_d = log_c6 - math.log(n)
    return p.E + p.A * math.exp(-p.alpha * math.log(n)) + p.B * math.exp(-p.beta * log_d)


def _check_inference_tokens(inference_tokens) -> float:
    try:
        t = float(inference_tokens)
    except (TypeError, ValueError):
        t = float("nan")
    if not math.isfinite(t) or t < 0:
        raise PlanError(
            f"Inference tokens {inference_tokens!r} must be ≥ 0; give the lifetime demand, e.g. 2e12."
        )
    if t > INFERENCE_TOKENS_MAX:
        raise PlanError(
            f"Inference demand {t:.3g} tokens is beyond {INFERENCE_TOKENS_MAX:.0e}; give a realistic lifetime demand."
        )
    return t


def inference_optimum(
    target_loss: float,
    inference_tokens: float,
    p: ChinchillaParams,
    search: SearchConfig = DEFAULT_SEARCH,
) -> InferencePlan:
    """Cheapest N, D_tr reaching ``target_loss`` when the model will serve ``inference_tokens``.

    Sardana & Frankle 2023 eq. (2); returns the plan and its saving against the Chinchilla-optimal
    model of the same loss serving the same demand.
    """
    check_chinchilla(p)
    target = check_target_loss(target_loss, p)
    d_inf = _check_inference_tokens(inference_tokens)
    baseline = compute_for_loss(target, p)  # also range-checks the compute this target needs

    reducible = math.log(target - p.E)
    log_a, log_b = math.log(p.A), math.log(p.B)
    log_train_k = math.log(FLOPS_PER_PARAM_TOKEN)
    log_inf = math.log(INFERENCE_FLOPS_PER_PARAM_TOKEN * d_inf) if d_inf > 0 else -math.inf

    def logs(z):
        """log N and log D_tr on the constraint surface at share s = expit(z)."""
        log_s = -np.logaddexp(0.0, -z)  # log expit(z), exact for large |z|
        log_1ms = -np.logaddexp(0.0, z)  # log (1 − expit(z))
        log_n = (log_a - log_s - reducible) / p.alpha
        log_d = (log_b - log_1ms - reducible) / p.beta
        return log_n, log_d

    def log_total_flops(z: np.ndarray) -> np.ndarray:  # log(6·N·D_tr + 2·N·D_inf)
        log_n, log_d = logs(z)
        return log_n + np.logaddexp(log_train_k + log_d, log_inf)

    z = minimise_1d(log_total_flops, -_LOGIT_RANGE, _LOGIT_RANGE, search)
    log_n, log_d = (float(v) for v in logs(np.float64(z)))
    n, d = math.exp(log_n), math.exp(log_d)
    training = FLOPS_PER_PARAM_TOKEN * n * d
    inference = INFERENCE_FLOPS_PER_PARAM_TOKEN * n * d_inf
    base_total = baseline.flops + INFERENCE_FLOPS_PER_PARAM_TOKEN * baseline.n_params * d_inf
    total = training + inference
    if not all(math.isfinite(v) and v > 0 for v in (n, d, training, base_total)):
        raise PlanError(
            "No finite inference-aware optimum for these inputs; try a target loss further above E."
        )
    return InferencePlan(
        n_params=n,
        tokens=d,
        tokens_per_param=d / n,
        loss=target,
        inference_tokens=d_inf,
        training_flops=training,
        inference_flops=inference,
        total_flops=total,
        chinchilla=baseline,
        chinchilla_total_flops=base_total,
        flops_saving=max(0.0, 1.0 - total / base_total),  # ≥ 0 by optimality; clip float noise at D_inf = 0
    )


def inference_optimum_for_model(
    reference_n_params: float,
    inference_tokens: float,
    p: ChinchillaParams,
    search: SearchConfig = DEFAULT_SEARCH,
) -> InferencePlan:
    """As :func:`inference_optimum`, with the target "the quality of the Chinchilla-optimal model
    of ``reference_n_params`` parameters" (Sardana & Frankle 2023's framing, e.g. "13B quality").
    """
    return inference_optimum(chinchilla_quality(reference_n_params, p), inference_tokens, p, search)
