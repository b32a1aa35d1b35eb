"""Inference-aware optimum (Sardana & Frankle 2023, "Beyond Chinchilla-Optimal").

Checked against Chinchilla's closed form (zero inference), the first-order condition of the
constrained problem, a brute-force scan, and the paper's worked example.
"""

import json
import math

import numpy as np
import pytest

from core.errors import PlanError
from core.inference_aware import (
    InferencePlan,
    chinchilla_quality,
    inference_optimum,
    inference_optimum_for_model,
)
from core.laws import ChinchillaParams, chinchilla_loss
from core.planner import chinchilla_optimum, compute_for_loss
from core.presets import get_preset

SARDANA = get_preset("sardana_frankle").params  # E 1.69, A 406.4, B 410.7, α 0.336, β 0.283
EPOCH = get_preset("epoch").params


def _tokens_on_constraint(n, target, p):
    """D_tr(N) from L(N, D_tr) = target: D = (B / (target − E − A/N^α))^(1/β)."""
    return (p.B / (target - p.E - p.A * n ** (-p.alpha))) ** (1.0 / p.beta)


def _total_flops(n, target, d_inf, p):
    return 6.0 * n * _tokens_on_constraint(n, target, p) + 2.0 * n * d_inf


@pytest.mark.parametrize("p", [SARDANA, EPOCH], ids=["sardana", "epoch"])
@pytest.mark.parametrize("reference_n", [1e9, 13e9, 70e9])
def test_zero_inference_is_the_chinchilla_optimum(p, reference_n):
    r = inference_optimum_for_model(reference_n, 0.0, p)
    assert r.n_params == pytest.approx(reference_n, rel=1e-6)
    assert r.tokens == pytest.approx(r.chinchilla.tokens, rel=1e-6)
    assert r.chinchilla.n_params == pytest.approx(reference_n, rel=1e-9)
    assert r.inference_flops == 0.0
    assert r.flops_saving == pytest.approx(0.0, abs=1e-12)
    # At D_inf = 0 the share of reducible loss left to the N term is β/(α+β) (Hoffmann eq. (4)).
    share = p.A * r.n_params ** (-p.alpha) / (r.loss - p.E)
    assert share == pytest.approx(p.beta / (p.alpha + p.beta), rel=1e-6)


def test_sardana_frankle_worked_example_13b_quality_with_2t_inference_tokens():
    # Sardana & Frankle 2023: the quality of a Chinchilla-optimal 13B model, served for 2T tokens,
    # is reached more cheaply by ≈ 7B parameters trained on ≈ 1.25T tokens, saving ≈ 17 % of FLOPs.
    r = inference_optimum_for_model(13e9, 2e12, SARDANA)
    assert r.n_params == pytest.approx(7e9, rel=0.03)
    assert r.tokens == pytest.approx(1.25e12, rel=0.03)
    assert r.flops_saving == pytest.approx(0.17, abs=0.01)
    # Our exact numbers, for the record (and to catch silent changes):
    assert r.n_params == pytest.approx(6.969e9, rel=1e-3)
    assert r.tokens == pytest.approx(1.2478e12, rel=1e-3)
    assert r.flops_saving == pytest.approx(0.1745, abs=1e-3)
    assert r.chinchilla.tokens == pytest.approx(576.5e9, rel=1e-3)  # the 13B baseline: ≈ 44 tokens/param


def test_plan_meets_the_target_and_adds_up():
    r = inference_optimum(2.1, 5e12, EPOCH)
    assert float(chinchilla_loss(r.n_params, r.tokens, EPOCH)) == pytest.approx(2.1, rel=1e-12)
    assert r.training_flops == pytest.approx(6 * r.n_params * r.tokens, rel=1e-14)
    assert r.inference_flops == pytest.approx(2 * r.n_params * 5e12, rel=1e-14)
    assert r.total_flops == pytest.approx(r.training_flops + r.inference_flops, rel=1e-14)
    base = compute_for_loss(2.1, EPOCH)
    assert r.chinchilla_total_flops == pytest.approx(base.flops + 2 * base.n_params * 5e12, rel=1e-12)
    assert r.flops_saving == pytest.approx(1 - r.total_flops / r.chinchilla_total_flops, rel=1e-12)


@pytest.mark.parametrize("d_inf", [1e11, 2e12, 1e14])
def test_first_order_condition_holds(d_inf):
    # d/dN [6·N·D(N) + 2·N·D_inf] = 6·D + 6·N·D'(N) + 2·D_inf = 0 on L(N, D) = ℓ,
    # with D'(N) = −(α·A·N^(−α−1)) / (β·B·D^(−β−1)) from differentiating the constraint.
    p = SARDANA
    r = inference_optimum_for_model(30e9, d_inf, p)
    n, d = r.n_params, r.tokens
    d_prime = -(p.alpha * p.A * n ** (-p.alpha - 1)) / (p.beta * p.B * d ** (-p.beta - 1))
    residual = 6 * d + 6 * n * d_prime + 2 * d_inf
    assert abs(residual) / (6 * d + 2 * d_inf) < 1e-6


def test_solver_beats_a_brute_force_scan():
    target = chinchilla_quality(13e9, SARDANA)
    r = inference_optimum(target, 2e12, SARDANA)
    n_min = (SARDANA.A / (target - SARDANA.E)) ** (1 / SARDANA.alpha)  # below it no D reaches the target
    n_grid = np.logspace(math.log10(n_min) + 1e-6, math.log10(13e9), 200001)
    costs = _total_flops(n_grid, target, 2e12, SARDANA)
    assert r.total_flops <= costs.min() * (1 + 1e-12)
    assert r.n_params == pytest.approx(n_grid[np.argmin(costs)], rel=1e-3)


def test_more_inference_never_gives_a_larger_model():
    demands = [0.0, 1e9, 1e11, 1e12, 5e12, 2e13, 1e14, 1e15, 1e17]
    plans = [inference_optimum_for_model(70e9, t, EPOCH) for t in demands]
    sizes = [p.n_params for p in plans]
    tokens = [p.tokens for p in plans]
    savings = [p.flops_saving for p in plans]
    assert all(a >= b for a, b in zip(sizes, sizes[1:]))
    assert all(a < b for a, b in zip(sizes[1:], sizes[:-1]))  # strictly, once inference counts
    assert all(a <= b for a, b in zip(tokens, tokens[1:]))
    assert all(a <= b + 1e-12 for a, b in zip(savings, savings[1:]))
    assert all(math.isfinite(v) for p in plans for v in (p.n_params, p.tokens, p.total_flops))


def test_chinchilla_quality_is_the_loss_of_the_chinchilla_optimal_model():
    for n in (1e9, 13e9, 70e9):
        budget = compute_for_loss(chinchilla_quality(n, EPOCH), EPOCH)
        assert budget.n_params == pytest.approx(n, rel=1e-9)
        direct = chinchilla_optimum(budget.flops, EPOCH)
        assert chinchilla_quality(n, EPOCH) == pytest.approx(direct.loss, rel=1e-12)


def test_to_dict_is_json_ready():
    d = json.loads(json.dumps(inference_optimum_for_model(13e9, 2e12, SARDANA).to_dict()))
    assert {"n_params", "tokens", "total_flops", "flops_saving", "chinchilla"} <= set(d)
    assert d["chinchilla"]["n_params"] == pytest.approx(13e9)
    assert isinstance(inference_optimum(2.2, 0, EPOCH), InferencePlan)


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: inference_optimum(1.69, 1e12, SARDANA), "irreducible"),
        (lambda: inference_optimum(1.2, 1e12, SARDANA), "irreducible"),
        (lambda: inference_optimum(float("nan"), 1e12, SARDANA), "not finite"),
        (lambda: inference_optimum(1.69 + 1e-9, 1e12, SARDANA), "outside"),
        (lambda: inference_optimum(2.2, -5, SARDANA), "Inference tokens"),
        (lambda: inference_optimum(2.2, float("inf"), SARDANA), "Inference tokens"),
        (lambda: inference_optimum(2.2, 1e30, SARDANA), "realistic"),
        (lambda: inference_optimum_for_model(0, 1e12, SARDANA), "Reference model size"),
        (lambda: inference_optimum_for_model(-7e9, 1e12, SARDANA), "Reference model size"),
        (lambda: inference_optimum(2.2, 1e12, ChinchillaParams(1.69, 406.4, 410.7, -0.3, 0.28)), "α"),
        (lambda: inference_optimum(2.2, 1e12, ChinchillaParams(1.69, 406.4, 410.7, 0.34, 0.0)), "β"),
    ],
)
def test_bad_inputs_give_a_clear_plan_error(call, words):
    with pytest.raises(PlanError, match=words) as err:
        call()
    assert "\n" not in str(err.value)
