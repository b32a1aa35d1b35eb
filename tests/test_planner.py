"""Compute-optimal planner: closed form, numerical search, bands, MoE, budgets, presets, references.

Values are checked against closed forms (Hoffmann et al. 2022 eq. (4); the derivative of Kaplan's
eq. (1.5) along C = 6ND) and against numbers published by Hoffmann et al. 2022, Besiroglu et al.
2024 and Clark et al. 2022.
"""

import json
import math

import numpy as np
import pytest

from core.accelerators import (
    PEAK_THROUGHPUT,
    accelerators,
    budget_from_accelerators,
    days_for_flops,
    dtypes,
    peak_tflops,
)
from core.errors import PlanError
from core.laws import (
    ChinchillaParams,
    DataConstrainedParams,
    KaplanParams,
    chinchilla_loss,
    data_constrained_loss,
    effective_params,
    kaplan_loss_nd,
)
from core.planner import (
    MoEShape,
    Plan,
    bootstrap_bands,
    chinchilla_frontier,
    chinchilla_optimum,
    compute_for_loss,
    data_constrained_optimum,
    iso_flop_curve,
    iso_flop_optimum,
    kaplan_optimum,
    moe_optimum,
    params_from_fit,
    plan,
    plan_from_fit,
)
from core.presets import PRESETS, get_preset, list_presets
from core.reference_models import REFERENCE_MODELS, reference_model, reference_models

HOFFMANN = get_preset("hoffmann").params
HOFFMANN_UNROUNDED = get_preset("hoffmann_unrounded").params
EPOCH = get_preset("epoch").params
KAPLAN = get_preset("kaplan").params
CLARK = get_preset("clark_sbase").params
CHINCHILLA_LAWS = [HOFFMANN, HOFFMANN_UNROUNDED, EPOCH, get_preset("sardana_frankle").params]


# --------------------------------------------------------------------------------------------
# Closed form (Hoffmann et al. 2022 eq. (4))
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("law", CHINCHILLA_LAWS, ids=lambda p: f"a{p.alpha}-b{p.beta}")
@pytest.mark.parametrize("flops", [1e10, 1e15, 1e19, 5.76e23, 1e27, 1e32])
def test_closed_form_matches_numerical_iso_flop_minimum(law, flops):
    exact = chinchilla_optimum(flops, law)
    found = iso_flop_optimum(flops, lambda n, d: chinchilla_loss(n, d, law))
    assert found.method == "iso_flop_search" and exact.method == "closed_form"
    assert found.n_params == pytest.approx(exact.n_params, rel=1e-6)
    assert found.tokens == pytest.approx(exact.tokens, rel=1e-6)
    assert found.loss == pytest.approx(exact.loss, rel=1e-12)


def test_closed_form_spends_exactly_the_budget_and_reports_consistent_numbers():
    p = chinchilla_optimum(3.3e22, HOFFMANN_UNROUNDED)
    assert 6.0 * p.n_params * p.tokens == pytest.approx(3.3e22, rel=1e-14)
    assert p.flops == 3.3e22
    assert p.tokens_per_param == pytest.approx(p.tokens / p.n_params, rel=1e-15)
    assert p.loss == pytest.approx(
        float(chinchilla_loss(p.n_params, p.tokens, HOFFMANN_UNROUNDED)), rel=1e-15
    )
    g = (0.3392 * 406.4 / (0.2849 * 410.7)) ** (1 / (0.3392 + 0.2849))
    assert p.n_params == pytest.approx(g * (3.3e22 / 6) ** (0.2849 / (0.3392 + 0.2849)), rel=1e-14)


def test_closed_form_is_the_minimum_along_the_iso_flop_line():
    best = chinchilla_optimum(1e22, EPOCH)
    n = best.n_params * np.array([0.5, 0.9, 0.99, 1.01, 1.1, 2.0])
    _, loss = iso_flop_curve(1e22, EPOCH, n)
    assert np.all(loss > best.loss)


def test_optimal_size_grows_as_c_to_the_beta_over_alpha_plus_beta():
    n1 = chinchilla_optimum(1e21, HOFFMANN_UNROUNDED).n_params
    n2 = chinchilla_optimum(1e23, HOFFMANN_UNROUNDED).n_params
    assert n2 / n1 == pytest.approx(100 ** (0.2849 / (0.3392 + 0.2849)), rel=1e-12)


def test_hoffmann_unrounded_gives_40b_at_gophers_budget():
    # Hoffmann et al. 2022 §3.3: Approach 3 puts the optimum for 5.76e23 FLOPs at ≈ 40B parameters.
    p = chinchilla_optimum(5.76e23, HOFFMANN_UNROUNDED)
    assert p.n_params == pytest.approx(40e9, rel=0.02)
    assert p.n_params == pytest.approx(40.31e9, rel=1e-3)
    assert p.tokens_per_param == pytest.approx(59.08, rel=1e-3)
    # The rounded exponents move the answer a lot (the preset's note says so): ≈ 32B.
    assert chinchilla_optimum(5.76e23, HOFFMANN).n_params == pytest.approx(32.19e9, rel=1e-3)


def test_besiroglu_gives_73b_and_18_tokens_per_param_at_chinchillas_budget():
    # Besiroglu et al. 2024: their refit puts Chinchilla's 5.88e23 FLOPs at ≈ 73B, ≈ 18 tokens/param,
    # close to the 70B / 1.4T Chinchilla actually was.
    p = chinchilla_optimum(5.88e23, EPOCH)
    assert p.n_params == pytest.approx(73e9, rel=0.01)
    assert p.tokens_per_param == pytest.approx(18.0, rel=0.03)
    chinchilla = reference_model("Chinchilla 70B")
    assert chinchilla.flops == pytest.approx(5.88e23, rel=1e-12)
    assert p.n_params == pytest.approx(chinchilla.n_params, rel=0.05)


def test_frontier_is_vectorised_and_equals_single_plans():
    budgets = np.logspace(18, 27, 10)
    n, d, loss = chinchilla_frontier(budgets, EPOCH)
    assert n.shape == d.shape == loss.shape == (10,)
    for c, ni, li in zip(budgets, n, loss):
        single = chinchilla_optimum(c, EPOCH)
        assert ni == pytest.approx(single.n_params, rel=1e-14)
        assert li == pytest.approx(single.loss, rel=1e-14)
    assert np.all(np.diff(loss) < 0)


def test_compute_for_loss_inverts_the_frontier():
    forward = chinchilla_optimum(2e23, HOFFMANN_UNROUNDED)
    back = compute_for_loss(forward.loss, HOFFMANN_UNROUNDED)
    assert back.flops == pytest.approx(2e23, rel=1e-9)
    assert back.n_params == pytest.approx(forward.n_params, rel=1e-9)


# --------------------------------------------------------------------------------------------
# Laws without a closed form
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flops", [1e18, 1e21, 1e23, 1e26])
def test_kaplan_search_matches_the_stationary_point_of_eq_1_5(flops):
    # Along D = C/(6N): inner = (N_c/N)^r + 6·D_c·N/C, r = α_N/α_D; d/dN = 0 at
    # N^(1+r) = r·N_c^r·C / (6·D_c).
    r = KAPLAN.alpha_N / KAPLAN.alpha_D
    n_exact = (r * KAPLAN.N_c**r * flops / (6.0 * KAPLAN.D_c)) ** (1.0 / (1.0 + r))
    p = kaplan_optimum(flops, KAPLAN)
    assert p.n_params == pytest.approx(n_exact, rel=1e-6)
    assert p.loss == pytest.approx(float(kaplan_loss_nd(n_exact, flops / (6 * n_exact), KAPLAN)), rel=1e-12)
    assert plan(flops, KAPLAN).n_params == p.n_params


def test_data_constrained_with_ample_data_is_chinchilla():
    # With single-epoch data the law equals Chinchilla for N ≤ N_opt(D) and only penalises excess
    # parameters beyond it (second order), so the minimum stays at eq. (4)'s N*. The curvature jumps
    # there, which the search must survive without drifting.
    law = DataConstrainedParams(chinchilla=EPOCH)
    p = data_constrained_optimum(1e23, law, unique_tokens=1e15)
    assert p.n_params == pytest.approx(chinchilla_optimum(1e23, EPOCH).n_params, rel=1e-6)


def test_data_constrained_optimum_is_the_minimum_of_a_dense_grid():
    law = DataConstrainedParams(chinchilla=EPOCH)
    unique = 1e11  # far less than the ≈ 1.3T tokens the unconstrained optimum wants at 1e24
    p = data_constrained_optimum(1e24, law, unique_tokens=unique)
    n_grid = np.logspace(9, 13, 40001)
    losses = data_constrained_loss(n_grid, 1e24 / (6 * n_grid), unique, law)
    assert p.loss <= losses.min() + 1e-12
    assert p.n_params == pytest.approx(n_grid[np.argmin(losses)], rel=1e-3)
    assert p.tokens > unique  # it repeats data
    assert p.loss > chinchilla_optimum(1e24, EPOCH).loss  # and pays for it


# --------------------------------------------------------------------------------------------
# Mixture of experts (Clark et al. 2022)
# --------------------------------------------------------------------------------------------
def test_clark_preset_reproduces_the_papers_effective_parameter_numbers():
    # Clark et al. 2022: a 5M-parameter base with 128 experts is worth ≈ 55M dense parameters
    # (from rounded table coefficients we get 52M), and routing stops helping at N_cutoff ≈ 937B.
    assert float(effective_params(5e6, 128, CLARK)) == pytest.approx(55e6, rel=0.1)
    cutoff = math.exp(-CLARK.b / CLARK.c)  # b + c·ln N = 0
    assert cutoff == pytest.approx(937e9, rel=0.1)


def test_moe_with_one_expert_is_the_dense_optimum():
    dense = chinchilla_optimum(1e23, EPOCH)
    moe = moe_optimum(1e23, EPOCH, CLARK, n_experts=1)
    assert moe.n_active_params == pytest.approx(dense.n_params, rel=1e-6)
    assert moe.n_effective_params == pytest.approx(moe.n_active_params, rel=1e-12)
    assert moe.n_total_params == pytest.approx(moe.n_active_params, rel=1e-12)
    assert moe.loss == pytest.approx(dense.loss, rel=1e-12)


def test_moe_spends_flops_on_active_params_and_more_experts_help():
    plans = [
        moe_optimum(1e23, EPOCH, CLARK, n_experts=e, shape=MoEShape(expert_fraction=1 / 3))
        for e in (1, 8, 64)
    ]
    for p in plans:
        assert 6.0 * p.n_active_params * p.tokens == pytest.approx(1e23, rel=1e-12)
        assert p.n_total_params == pytest.approx(p.n_active_params * (1 + (p.n_experts - 1) / 3), rel=1e-12)
        assert p.loss == pytest.approx(
            float(chinchilla_loss(p.n_effective_params, p.tokens, EPOCH)), rel=1e-12
        )
    losses = [p.loss for p in plans]
    assert losses[0] > losses[1] > losses[2]
    assert plans[2].n_effective_params > plans[2].n_active_params
    # The optimum is a minimum: nudging the active size along the iso-FLOP line costs loss.
    p = plans[2]
    for factor in (0.97, 1.03):
        n = p.n_active_params * factor
        worse = float(chinchilla_loss(effective_params(n, 64, CLARK), 1e23 / (6 * n), EPOCH))
        assert worse > p.loss
    assert json.loads(json.dumps(p.to_dict()))["n_experts"] == 64.0


# --------------------------------------------------------------------------------------------
# Uncertainty bands from bootstrap samples
# --------------------------------------------------------------------------------------------
def _samples(n=1000, seed=0):
    rng = np.random.default_rng(seed)
    centre = np.array([EPOCH.E, EPOCH.A, EPOCH.B, EPOCH.alpha, EPOCH.beta])
    return centre * (1.0 + 0.02 * rng.standard_normal((n, 5)))


def _fit(samples=None):
    fit = {
        "law": "chinchilla",
        "params": {"E": EPOCH.E, "A": EPOCH.A, "B": EPOCH.B, "alpha": EPOCH.alpha, "beta": EPOCH.beta},
    }
    if samples is not None:
        fit["bootstrap_samples"] = samples.tolist()
    return fit


def test_bands_equal_percentiles_of_per_sample_closed_forms():
    samples = _samples(300)
    bands, used = bootstrap_bands(1e23, samples, level=0.9)
    assert used == 300
    per_sample = [chinchilla_optimum(1e23, ChinchillaParams(*row)) for row in samples]
    for key in ("n_params", "tokens", "tokens_per_param", "loss"):
        values = [getattr(p, key) for p in per_sample]
        assert bands[key][0] == pytest.approx(np.percentile(values, 5), rel=1e-12)
        assert bands[key][1] == pytest.approx(np.percentile(values, 95), rel=1e-12)


def test_plan_from_fit_carries_bands_around_the_point_estimate():
    p = plan_from_fit(1e23, _fit(_samples()), level=0.8)
    point = chinchilla_optimum(1e23, EPOCH)
    assert p.n_params == point.n_params and p.interval_level == 0.8 and p.interval_samples == 1000
    for key in ("n_params", "tokens", "tokens_per_param", "loss"):
        lo, hi = p.intervals[key]
        assert lo < getattr(p, key) < hi
    d = json.loads(json.dumps(p.to_dict()))
    assert d["intervals"]["n_params"] == [p.intervals["n_params"][0], p.intervals["n_params"][1]]


def test_identical_samples_give_a_zero_width_band():
    row = [EPOCH.E, EPOCH.A, EPOCH.B, EPOCH.alpha, EPOCH.beta]
    bands, _ = bootstrap_bands(1e22, [row] * 5)
    point = chinchilla_optimum(1e22, EPOCH)
    assert bands["n_params"][0] == pytest.approx(point.n_params, rel=1e-14)
    assert bands["n_params"][1] == pytest.approx(point.n_params, rel=1e-14)


def test_unusable_bootstrap_rows_are_dropped_not_turned_into_nan():
    samples = _samples(100)
    samples[:10, 3] = -0.1  # α ≤ 0
    samples[10:15, 4] = np.nan
    bands, used = bootstrap_bands(1e23, samples)
    assert used == 85
    assert all(math.isfinite(v) for lo_hi in bands.values() for v in lo_hi)


def test_fit_without_samples_plans_without_bands_and_kaplan_fits_work():
    assert plan_from_fit(1e23, _fit()).intervals is None
    kaplan_fit = {
        "law": "kaplan",
        "params": {"N_c": 8.8e13, "alpha_N": 0.076, "D_c": 5.4e13, "alpha_D": 0.095},
    }
    assert isinstance(params_from_fit(kaplan_fit), KaplanParams)
    assert plan_from_fit(1e23, kaplan_fit).n_params == pytest.approx(
        kaplan_optimum(1e23, KAPLAN).n_params, rel=1e-12
    )


# --------------------------------------------------------------------------------------------
# Bad input: a clear one-line PlanError, never NaN
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("flops", [0, -1e23, float("nan"), float("inf"), 1e5, 1e40, "lots", None])
def test_bad_budgets_are_refused(flops):
    with pytest.raises(PlanError, match="FLOPs|number") as err:
        chinchilla_optimum(flops, EPOCH)
    assert "\n" not in str(err.value) and "e.g." in str(err.value)


@pytest.mark.parametrize(
    "law, words",
    [
        (ChinchillaParams(E=1.69, A=406.4, B=410.7, alpha=0.0, beta=0.28), "α"),
        (ChinchillaParams(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=-0.1), "β"),
        (ChinchillaParams(E=1.69, A=-1.0, B=410.7, alpha=0.34, beta=0.28), "A = -1"),
        (ChinchillaParams(E=-0.5, A=406.4, B=410.7, alpha=0.34, beta=0.28), "E = -0.5"),
        (ChinchillaParams(E=float("nan"), A=406.4, B=410.7, alpha=0.34, beta=0.28), "non-finite"),
    ],
)
def test_bad_laws_are_refused(law, words):
    for call in (
        lambda: chinchilla_optimum(1e23, law),
        lambda: plan_from_fit(1e23, {"params": law.__dict__}),
    ):
        with pytest.raises(PlanError, match=words):
            call()


def test_other_bad_inputs_are_refused():
    with pytest.raises(PlanError, match="irreducible"):
        compute_for_loss(1.5, HOFFMANN)
    with pytest.raises(PlanError, match="outside"):
        compute_for_loss(HOFFMANN.E + 1e-9, HOFFMANN)  # would need ≈ 1e60 FLOPs
    with pytest.raises(PlanError, match="routed"):
        plan(1e23, CLARK)
    with pytest.raises(PlanError, match="Expert count"):
        moe_optimum(1e23, EPOCH, CLARK, n_experts=0)
    with pytest.raises(PlanError, match="rows of"):
        bootstrap_bands(1e23, [[1.0, 2.0]])
    with pytest.raises(PlanError, match="usable"):
        bootstrap_bands(1e23, [[1.8, 400.0, 400.0, -0.3, 0.3]] * 10)
    with pytest.raises(PlanError, match="cannot use"):
        params_from_fit({"law": "mystery", "params": {"x": 1.0}})
    with pytest.raises(PlanError, match="Unique tokens"):
        data_constrained_optimum(1e23, DataConstrainedParams(chinchilla=EPOCH), unique_tokens=0)


def test_a_law_without_interior_optimum_is_refused():
    # Loss that only depends on N: the search runs into its edge instead of returning nonsense.
    with pytest.raises(PlanError, match="edge of the search"):
        iso_flop_optimum(1e23, lambda n, d: 2.0 + 100.0 * n**-0.3 + 0.0 * d)


def test_plan_to_dict_is_json_ready():
    d = json.loads(json.dumps(chinchilla_optimum(1e23, EPOCH).to_dict()))
    assert set(d) >= {"n_params", "tokens", "tokens_per_param", "loss", "flops", "intervals"}
    assert d["flops"] == 1e23 and d["intervals"] is None
    assert isinstance(chinchilla_optimum(1e23, EPOCH), Plan)


# --------------------------------------------------------------------------------------------
# Accelerator budgets
# --------------------------------------------------------------------------------------------
def test_budget_is_peak_times_count_times_seconds_times_mfu_and_cost_is_hours_times_price():
    b = budget_from_accelerators("H100 SXM", count=1024, days=30, mfu=0.4, dtype="bf16", price_per_hour=2.5)
    assert b.flops == pytest.approx(989.5e12 * 1024 * 30 * 86400 * 0.4, rel=1e-14)
    assert b.accelerator_hours == 1024 * 30 * 24
    assert b.cost == pytest.approx(1024 * 30 * 24 * 2.5)
    assert "datasheet" in b.source
    assert days_for_flops(b.flops, "H100 SXM", 1024, 0.4) == pytest.approx(30.0, rel=1e-12)
    # Chinchilla's budget on 1024 H100s at 40 % MFU takes ≈ 16.5 days.
    assert days_for_flops(5.76e23, "h100 sxm", 1024, 0.4) == pytest.approx(
        5.76e23 / (989.5e12 * 1024 * 0.4 * 86400)
    )
    custom = budget_from_accelerators("my chip", 8, 1, 0.5, peak_tflops_override=100.0)
    assert custom.flops == pytest.approx(100e12 * 8 * 86400 * 0.5) and custom.cost is None


def test_peak_table_has_a_source_per_row_and_dense_numbers():
    assert len({(r.accelerator, r.dtype) for r in PEAK_THROUGHPUT}) == len(PEAK_THROUGHPUT)
    assert all(r.source and r.peak_tflops > 0 for r in PEAK_THROUGHPUT)
    for name in ("A100 SXM", "H100 SXM", "H200 SXM", "B200", "MI300X", "TPU v5e", "TPU v5p"):
        assert name in accelerators() and "bf16" in dtypes(name)
    assert peak_tflops("A100 SXM") == 312.0 and peak_tflops("TPU v5p") == 459.0
    assert peak_tflops("H100 SXM", "fp8") == 2 * peak_tflops("H100 SXM", "bf16")


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(accelerator="Z80", count=1, days=1, mfu=0.4), "Unknown accelerator"),
        (dict(accelerator="TPU v5e", count=1, days=1, mfu=0.4, dtype="fp8"), "No 'fp8' peak"),
        (dict(accelerator="A100 SXM", count=0, days=1, mfu=0.4), "count"),
        (dict(accelerator="A100 SXM", count=8, days=-2, mfu=0.4), "days"),
        (dict(accelerator="A100 SXM", count=8, days=1, mfu=40), "fraction"),
        (dict(accelerator="A100 SXM", count=8, days=1, mfu=0.4, price_per_hour=-1), "Price"),
    ],
)
def test_bad_cluster_inputs_are_refused(kwargs, words):
    with pytest.raises(PlanError, match=words):
        budget_from_accelerators(**kwargs)


# --------------------------------------------------------------------------------------------
# Presets and reference models
# --------------------------------------------------------------------------------------------
def test_presets_hold_the_published_numbers_with_citations():
    assert HOFFMANN == ChinchillaParams(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
    assert HOFFMANN_UNROUNDED == ChinchillaParams(E=1.6934, A=406.4, B=410.7, alpha=0.3392, beta=0.2849)
    assert EPOCH == ChinchillaParams(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
    assert (KAPLAN.N_c, KAPLAN.alpha_N, KAPLAN.D_c, KAPLAN.alpha_D) == (8.8e13, 0.076, 5.4e13, 0.095)
    assert all(p.citation and p.law in ("chinchilla", "kaplan", "routed") for p in PRESETS.values())
    assert get_preset("besiroglu") is get_preset("EPOCH")
    assert [p.key for p in list_presets("kaplan")] == ["kaplan"]
    with pytest.raises(PlanError, match="hoffmann"):
        get_preset("gpt5")


def test_reference_models_are_sourced_and_consistent():
    assert len(REFERENCE_MODELS) >= 15
    assert all(m.source and m.n_params > 0 and m.tokens > 0 for m in REFERENCE_MODELS)
    assert reference_model("chinchilla 70b").tokens_per_param == pytest.approx(20.0)
    assert reference_model("GPT-3 175B").tokens == 300e9 and reference_model("Gopher 280B").n_params == 280e9
    assert reference_model("LLaMA-2 7B").tokens == 2e12 and reference_model("Llama-3 8B").tokens == 15e12
    for m in reference_models(moe=True):
        assert m.n_active_params < m.n_params
        assert m.flops == pytest.approx(6 * m.n_active_params * m.tokens)
    assert json.loads(json.dumps(reference_model("DeepSeek-V3").to_dict()))["active_params"] == 37e9
    with pytest.raises(PlanError, match="Unknown reference model"):
        reference_model("HAL 9000")
