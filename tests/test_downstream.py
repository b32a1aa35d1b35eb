"""Downstream laws (core/downstream.py) and forgetting (core/forgetting.py): fits recover synthetic
ground truth, intervals are seeded and cover it, stored fits predict again, bad input is refused."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.downstream import (
    DownstreamFit, DownstreamFitConfig, fit_downstream, fit_log_law, fit_power_law, fit_sigmoid,
    isik_log_law, power_law_irreducible, sigmoid_floor_ceiling,
)
from core.errors import FitError, InputError
from core.forgetting import (
    fit_forgetting, fit_forgetting_vs_finetune_loss, forgetting_from_losses, forgetting_law,
)

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "reference"  # in the repo (assets/reference/README.md)
FAST = DownstreamFitConfig(n_bootstrap=40, seed=0)  # small enough for a quick suite


def test_law_functions_match_their_formulas():
    x = np.array([1.0, 10.0, 100.0])
    assert sigmoid_floor_ceiling(0.0, 0.25, 0.75, 2.0, 0.0) == pytest.approx(0.5)
    assert sigmoid_floor_ceiling(50.0, 0.25, 0.75, 2.0, 0.0) == pytest.approx(0.75)
    assert sigmoid_floor_ceiling(np.array([[1.0, 2.0]]), 0.0, 1.0, np.array([1.0, -0.5]), 0.0)[0] == pytest.approx(0.5)
    # Isik et al. 2024 eq. (1) with A = e, α = 1, β = 2: (1 + ln x)^2
    assert isik_log_law(x, 1.0, 1.0, 2.0) == pytest.approx((1 + np.log(x)) ** 2)
    assert power_law_irreducible(x, 1.5, 2.0, 0.5) == pytest.approx(1.5 + 2.0 / np.sqrt(x))


def test_sigmoid_vs_log_compute_recovers_ground_truth():
    rng = np.random.default_rng(1)
    flops = np.logspace(19, 25, 30)
    truth = dict(floor=0.25, ceiling=0.9, w=1.5, w0=-33.0)  # midpoint at 10^22 FLOPs
    y = sigmoid_floor_ceiling(np.log10(flops), **truth) + rng.normal(0, 0.01, flops.size)
    fit = fit_sigmoid(flops, y, log_x=True, config=FAST)
    for name, value in truth.items():
        assert fit.params[name] == pytest.approx(value, rel=0.03, abs=0.01), name
        lo, hi = fit.intervals[name]
        assert lo <= value <= hi, f"{name}: {value} outside {lo, hi}"
    assert fit.r2 > 0.99 and fit.x_transform == "log10"
    band = fit.predict_interval([1e22, 1e27])
    assert band.value[0] == pytest.approx(0.575, abs=0.01)
    assert band.lower[0] <= 0.575 <= band.upper[0]
    assert band.value[1] == pytest.approx(0.9, abs=0.02)


def test_sigmoid_vs_loss_decreasing_with_fixed_floor():
    rng = np.random.default_rng(2)
    loss = np.linspace(2.0, 4.0, 25)
    y = sigmoid_floor_ceiling(loss, 0.25, 0.8, -4.0, 11.0) + rng.normal(0, 0.005, loss.size)
    fit = fit_sigmoid(loss, y, floor=0.25, config=FAST)
    assert fit.params["floor"] == 0.25
    assert fit.params["ceiling"] == pytest.approx(0.8, abs=0.02)
    assert fit.params["w"] == pytest.approx(-4.0, rel=0.1)
    assert fit.params["w0"] == pytest.approx(11.0, rel=0.1)


def test_sigmoid_with_several_predictors():
    rng = np.random.default_rng(3)
    pcs = rng.normal(size=(40, 2))
    y = sigmoid_floor_ceiling(pcs, 0.25, 0.95, np.array([2.0, -1.0]), 0.5) + rng.normal(0, 0.01, 40)
    fit = fit_sigmoid(pcs, y, config=DownstreamFitConfig(n_bootstrap=0))
    assert fit.params["w1"] == pytest.approx(2.0, rel=0.1)
    assert fit.params["w2"] == pytest.approx(-1.0, rel=0.1)
    assert fit.diagnostics["stderr_method"] == "asymptotic"
    assert fit.predict(pcs) == pytest.approx(sigmoid_floor_ceiling(pcs, **{
        "floor": fit.params["floor"], "ceiling": fit.params["ceiling"],
        "w": np.array([fit.params["w1"], fit.params["w2"]]), "w0": fit.params["w0"]}))


def test_log_law_recovers_ground_truth():
    rng = np.random.default_rng(4)
    tokens = np.logspace(6, 12, 30)  # pretraining tokens D_p
    truth = dict(log_A=0.6, alpha=0.21, beta=2.0)  # BLEU from ~11 to ~39
    y = isik_log_law(tokens, **truth) + rng.normal(0, 0.05, tokens.size)
    fit = fit_log_law(tokens, y, config=DownstreamFitConfig(n_bootstrap=30))
    assert fit.params["beta"] == pytest.approx(2.0, rel=0.05)
    assert fit.params["alpha"] == pytest.approx(0.21, rel=0.05)
    assert fit.params["log_A"] == pytest.approx(0.6, abs=0.15)
    assert fit.predict([1e13])[0] == pytest.approx(isik_log_law(1e13, **truth), rel=0.02)


def test_power_law_recovers_ground_truth_and_shrugs_off_an_outlier():
    rng = np.random.default_rng(5)
    tokens = np.logspace(7, 11, 30)
    y = power_law_irreducible(tokens, 1.2, 80.0, 0.3) * (1 + rng.normal(0, 0.003, tokens.size))
    fit = fit_power_law(tokens, y, config=FAST)
    assert fit.params["E"] == pytest.approx(1.2, abs=0.02)
    assert fit.params["alpha"] == pytest.approx(0.3, rel=0.05)
    assert fit.params["A"] == pytest.approx(80.0, rel=0.3)
    broken = y.copy()
    broken[5] += 1.0  # one broken eval
    robust = fit_power_law(tokens, broken, config=FAST)
    plain = fit_power_law(tokens, broken, config=DownstreamFitConfig(n_bootstrap=0,
                                                                      robust_loss="linear"))
    assert abs(robust.params["alpha"] - 0.3) < 0.02
    assert abs(plain.params["alpha"] - 0.3) > abs(robust.params["alpha"] - 0.3)


def test_seed_fixes_the_intervals_and_dict_round_trip_predicts_the_same():
    rng = np.random.default_rng(6)
    flops = np.logspace(20, 24, 15)
    y = sigmoid_floor_ceiling(np.log10(flops), 0.0, 0.7, 2.0, -44.0) + rng.normal(0, 0.01, 15)
    cfg = DownstreamFitConfig(n_bootstrap=25, seed=11)
    a = fit_sigmoid(flops, y, log_x=True, config=cfg)
    b = fit_sigmoid(flops, y, log_x=True, config=cfg)
    assert a.intervals == b.intervals and a.stderr == b.stderr
    stored = json.loads(json.dumps(a.to_dict()))
    assert set(stored) >= {"law", "method", "params", "stderr", "intervals", "settings", "diagnostics"}
    again = DownstreamFit.from_dict(stored)
    x_new = [3e24, 1e25]
    assert again.predict(x_new) == pytest.approx(a.predict(x_new))
    assert again.predict_interval(x_new).lower == pytest.approx(a.predict_interval(x_new).lower)
    assert fit_downstream("sigmoid", flops, y, log_x=True, config=cfg).params == a.params


def test_reference_pythia_lambada_vs_compute():
    table = pd.read_csv(REFERENCE / "pythia_v1_zero_shot_evals.csv")
    final = table[table["step"] == 143000]  # 16 fully trained models (standard and deduped)
    flops = pd.to_numeric(final["flops_6ND_total"]).to_numpy(dtype=float)
    acc = final["lambada_openai_acc"].to_numpy()
    cfg = DownstreamFitConfig(n_bootstrap=20)
    fit = fit_sigmoid(flops, acc, log_x=True, config=cfg)
    assert fit.r2 > 0.97  # LAMBADA accuracy is a clean sigmoid of log compute across the suite
    assert fit.params["w"] > 0 and 0.65 < fit.params["ceiling"] < 0.8
    # forecast the 6.9B and 12B models from the smaller six sizes (measured error ≈ 0.02-0.05)
    small = final["params_total"].to_numpy() < 3e9
    forecast = fit_sigmoid(flops[small], acc[small], log_x=True, config=cfg).predict(flops[~small])
    assert np.max(np.abs(forecast - acc[~small])) < 0.06


def test_bad_inputs_are_refused_with_one_line():
    x = np.logspace(20, 24, 10)
    y = np.linspace(0.3, 0.6, 10)
    with_missing = x.copy()
    with_missing[3] = np.nan
    with pytest.raises(InputError, match="no x value .*model with no size"):
        fit_sigmoid(with_missing, y, log_x=True, config=FAST)
    with pytest.raises(InputError, match="positive"):
        fit_sigmoid(-x, y, log_x=True, config=FAST)
    with pytest.raises(FitError, match="at least 5 points"):
        fit_sigmoid(x[:3], y[:3], log_x=True, config=FAST)
    with pytest.raises(InputError, match="2 rows but y has 3"):
        fit_power_law(x[:2], y[:3], config=FAST)
    with pytest.raises(InputError, match="scores must be ≥ 0"):
        fit_log_law(x, -y, config=FAST)
    with pytest.raises(InputError, match="unknown downstream law"):
        fit_downstream("cubic", x, y)
    with pytest.raises(InputError, match="floor .* must be below ceiling"):
        fit_sigmoid(x, y, log_x=True, floor=0.8, ceiling=0.2, config=FAST)


# --------------------------------------------------------------------------------------------
# Forgetting (Kalajdzievski 2024)
# --------------------------------------------------------------------------------------------
def test_forgetting_law_recovers_ground_truth_in_params_and_steps():
    rng = np.random.default_rng(7)
    params = np.repeat([1e6, 4e6, 1.6e7, 6.4e7], 8)  # LoRA parameter counts
    steps = np.tile([50, 100, 200, 400, 800, 1600, 3200, 6400], 4)
    truth = dict(E=0.05, A=2e-4, alpha=0.4, beta=0.6)
    y = forgetting_law(params, steps, **truth)
    y = y + rng.normal(0, 0.01 * y.std(), y.size)
    fit = fit_forgetting(params, steps, y, config=DownstreamFitConfig(n_bootstrap=20))
    assert fit.params["alpha"] == pytest.approx(0.4, rel=0.05)
    assert fit.params["beta"] == pytest.approx(0.6, rel=0.05)
    assert fit.params["E"] == pytest.approx(0.05, abs=0.05)
    new = np.array([[1e8, 1e4]])
    assert fit.predict(new)[0] == pytest.approx(forgetting_law(1e8, 1e4, **truth), rel=0.02)
    assert DownstreamFit.from_dict(json.loads(json.dumps(fit.to_dict()))).predict(new) == pytest.approx(fit.predict(new))


def test_forgetting_helpers_and_bad_input():
    before = np.full(5, 2.0)
    after = np.array([2.1, 2.2, 2.35, 2.5, 2.7])
    assert forgetting_from_losses(after, before) == pytest.approx([0.1, 0.2, 0.35, 0.5, 0.7])
    ft_loss = np.array([1.9, 1.7, 1.45, 1.2, 0.9])
    line = fit_forgetting_vs_finetune_loss(ft_loss, forgetting_from_losses(after, before))
    assert line["slope"] < 0 and line["r"] < -0.99
    with pytest.raises(InputError, match="same number of parameters"):
        fit_forgetting(np.full(6, 1e6), np.arange(1, 7) * 100, np.linspace(0, 1, 6), config=FAST)
    with pytest.raises(InputError, match="step-0"):
        fit_forgetting([1e6, 2e6, 4e6, 8e6, 1e7], [0, 10, 20, 30, 40], np.linspace(0, 1, 5), config=FAST)
