"""core/fitting/ and core/registry.py: recovery of known laws, agreement with scipy, the published
Chinchilla replication, bootstrap behaviour, options, bad input and back-tests."""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from core.errors import Cancelled, FitError
from core.fitting.backtest import backtest, backtest_law
from core.fitting.chinchilla import (
    Approach3Settings,
    ChinchillaObjective,
    chinchilla_objective,
    fit_chinchilla,
    scipy_reference_fit,
)
from core.fitting.diagnostics import residual_diagnostics
from core.fitting.generic import fit_law
from core.fitting.inputs import weights_by_run
from core.fitting.result import FitResult, chinchilla_optima, exponents
from core.fitting.solver import NewtonOptions, batched_newton
from core.registry import LAW_NAMES
from core.laws import (
    BESIROGLU_2024,
    ChinchillaParams,
    KAPLAN_2020,
    RoutedParams,
    chinchilla_loss,
    chinchilla_optimal,
    kaplan_loss_n,
    kaplan_loss_nd,
    power_law_offset,
    routed_loss,
)

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "reference"  # in the repo (assets/reference/README.md)
EPOCH_CSV = REFERENCE / "epoch_chinchilla_svg_extracted_data.csv"

# A 3^5 = 243-start sub-grid of the 4,500-point grid (published data), and a 2^5 = 32-start one
# (synthetic data): both keep the tests fast and still find the optimum.
SMALL_GRID = dict(a_grid=(0.0, 10.0, 20.0), b_grid=(0.0, 10.0, 20.0), e_grid=(-1.0, 0.0, 1.0),
                  alpha_grid=(0.0, 1.0, 2.0), beta_grid=(0.0, 1.0, 2.0))
TINY_GRID = dict(a_grid=(5.0, 15.0), b_grid=(5.0, 15.0), e_grid=(0.0, 1.0), alpha_grid=(0.5, 1.0),
                 beta_grid=(0.5, 1.0))


def _sweep(p=BESIROGLU_2024, noise=0.0, seed=0):
    """6 sizes × 6 token counts from a known law, multiplicative log-normal noise."""
    n, d = np.meshgrid(np.logspace(7.5, 10.0, 6), np.logspace(9.0, 11.5, 6))
    n, d = n.ravel(), d.ravel()
    loss = chinchilla_loss(n, d, p) * np.exp(np.random.default_rng(seed).normal(0.0, noise, n.size))
    return n, d, loss


@pytest.fixture(scope="module")
def epoch_points():
    import pandas as pd

    df = pd.read_csv(EPOCH_CSV)
    n = df["Model Size"].to_numpy(float)
    flops = df["Training FLOP"].to_numpy(float)
    return n, flops / (6.0 * n), df["loss"].to_numpy(float)


# --------------------------------------------------------------------------------------------
# Recovery of known parameters
# --------------------------------------------------------------------------------------------
def test_noise_free_data_recovers_the_law_exactly():
    n, d, loss = _sweep()
    r = fit_chinchilla(n, d, loss, Approach3Settings(**TINY_GRID, n_bootstrap=0))
    for k in ("E", "A", "B", "alpha", "beta"):
        assert r.params[k] == pytest.approx(getattr(BESIROGLU_2024, k), rel=1e-6), k
    assert r.objective < 1e-20
    # The optimum lies outside this deliberately tiny start grid, and the fit says so.
    assert any("outside the start grid" in w for w in r.warnings)


def test_noisy_data_recovers_the_law_within_its_bootstrap_intervals():
    n, d, loss = _sweep(noise=0.003, seed=1)
    r = fit_chinchilla(n, d, loss, Approach3Settings(**TINY_GRID, n_bootstrap=100, seed=3))
    for k in ("E", "alpha", "beta"):
        true = getattr(BESIROGLU_2024, k)
        assert abs(r.params[k] - true) < 4 * r.stderr[k], k
        assert r.stderr[k] > 0
    assert r.params["alpha"] == pytest.approx(BESIROGLU_2024.alpha, abs=0.05)
    assert r.params["beta"] == pytest.approx(BESIROGLU_2024.beta, abs=0.05)
    assert r.bootstrap_samples.shape == (100, 5)


def test_derived_quantities_match_the_closed_form():
    budgets = (1e21, 5.76e23)
    params = {k: getattr(BESIROGLU_2024, k) for k in ("A", "B", "alpha", "beta")}
    derived = exponents(params)
    optima = chinchilla_optima(params, budgets)
    n_opt, d_opt = chinchilla_optimal(np.array(budgets), BESIROGLU_2024)
    assert derived["a"] == pytest.approx(BESIROGLU_2024.a)
    assert derived["b"] == pytest.approx(BESIROGLU_2024.b)
    assert [row.budget for row in optima] == list(budgets)
    assert optima[1].n_params == pytest.approx(n_opt[1], rel=1e-12)
    assert optima[0].tokens == pytest.approx(d_opt[0], rel=1e-12)
    assert optima[0].tokens_per_param == pytest.approx(d_opt[0] / n_opt[0], rel=1e-12)


# --------------------------------------------------------------------------------------------
# The batched optimiser against scipy
# --------------------------------------------------------------------------------------------
def test_objective_gradient_and_hessian_are_exact():
    n, d, loss = _sweep(noise=0.01, seed=2)
    theta = np.array([[6.0, 7.5, 0.5, 0.33, 0.36], [3.0, 2.0, 0.1, 0.2, 0.1]])
    for delta in (1e3, 1e-9):  # all residuals inside / outside the Huber threshold: f is smooth there
        obj = ChinchillaObjective(np.log(n), np.log(d), np.log(loss), delta)
        rows = np.arange(2)
        f, g, h = obj.fgh(theta, rows)
        for j in range(2):
            f1, g1 = chinchilla_objective(theta[j], obj.x, obj.y, obj.t, delta)
            assert f[j] == pytest.approx(f1, rel=1e-13)
            np.testing.assert_allclose(g[j], g1, rtol=1e-10, atol=1e-14 * np.abs(g1).max())
        step = 1e-6
        numeric = np.stack([(obj.fgh(theta + step * e, rows)[1] - obj.fgh(theta - step * e, rows)[1]) / (2 * step)
                            for e in np.eye(5)], axis=2)
        np.testing.assert_allclose(numeric, h, rtol=1e-5, atol=1e-6 * np.abs(h).max())


def test_batched_optimiser_reaches_scipy_lbfgsb_optimum_on_the_same_starts(epoch_points):
    n, d, loss = epoch_points
    keep = np.argsort(loss)[:240]
    x, y, t = np.log(n[keep]), np.log(d[keep]), np.log(loss[keep])
    starts = Approach3Settings().starts()[7::450]  # 10 starts spread over the 4,500-point grid
    obj = ChinchillaObjective(x, y, t, 1e-3)
    batched = batched_newton(obj.fgh, obj.f, starts, NewtonOptions(atol=1e-13 * 0.5e-6 * 240))
    theta_ref, f_ref = scipy_reference_fit(starts, x, y, t)
    assert batched.objective.min() == pytest.approx(f_ref.min(), rel=1e-9)
    same = np.abs(batched.theta - theta_ref).max(axis=1) < 1e-4  # the two ended in the same minimum
    assert same.sum() >= 4
    np.testing.assert_allclose(batched.objective[same], f_ref[same], rtol=1e-9)
    assert batched.converged.all()


# --------------------------------------------------------------------------------------------
# Published replication (Besiroglu et al. 2024) on Epoch AI's data
# --------------------------------------------------------------------------------------------
def test_epoch_chinchilla_data_reproduces_besiroglu_estimates(epoch_points):
    n, d, loss = epoch_points
    assert loss.size == 245
    r = fit_chinchilla(n, d, loss, Approach3Settings(**SMALL_GRID, drop_highest=5, n_bootstrap=200, seed=0))
    assert r.n_points == 240
    published = {"E": (1.8172, 0.026), "A": (482.01, 124.5), "B": (2085.43, 1293.0),
                 "alpha": (0.3478, 0.0154), "beta": (0.3658, 0.0206)}
    for k, (value, se) in published.items():
        assert abs(r.params[k] - value) < se, (k, r.params[k])
        # Standard errors of the same size as theirs: neither collapsed nor blown up.
        assert 0.5 * se < r.stderr[k] < 2.0 * se, (k, r.stderr[k])
    assert r.derived["a"] == pytest.approx(0.513, abs=0.01)
    # Hoffmann et al.'s published values are far outside the intervals (the early-stopping failure).
    assert not (r.intervals["beta"][0] <= 0.28 <= r.intervals["beta"][1])
    assert r.objective == pytest.approx(1.0182740178e-3, rel=1e-8)
    assert r.warnings == []
    assert sorted(r.diagnostics.dropped_index.tolist()) == sorted(np.argsort(loss)[-5:].tolist())


# --------------------------------------------------------------------------------------------
# Triage (core/fitting/triage.py): merged and stopped starts, the same optimum and bootstrap
# --------------------------------------------------------------------------------------------
# The full 4,500-start search with 1,000 resamples (seed 0) before triage existed (commit 4f3e2ff):
# every start run to its end, the winner polished by scipy L-BFGS-B.
BEFORE_TRIAGE = {
    "objective": 1.0182740178005974e-3,
    "params": {"E": 1.8172180988459499, "A": 477.82586720186373, "B": 2143.4173636680353,
               "alpha": 0.3473104987525805, "beta": 0.3671724326356271},
    "intervals": {"E": [1.771317519038596, 1.8688156887717118], "A": [287.28009062003935, 728.4115223327369],
                  "B": [1046.4634479255142, 5708.527058972946], "alpha": [0.31720374815776287, 0.3724746538315292],
                  "beta": [0.33239394894279356, 0.414339156710659], "a": [0.4806029085120597, 0.5560578077889955],
                  "b": [0.44394219221100456, 0.5193970914879403]},
}


@pytest.fixture(scope="module")
def full_triaged_fit(epoch_points):
    n, d, loss = epoch_points
    return fit_chinchilla(n, d, loss, Approach3Settings(drop_highest=5, n_bootstrap=1000, seed=0))


def test_triaged_search_returns_the_full_searchs_optimum_on_the_chinchilla_data(epoch_points, full_triaged_fit):
    n, d, loss = epoch_points
    full = fit_chinchilla(n, d, loss, Approach3Settings(drop_highest=5, n_bootstrap=0, triage=False))
    fast = full_triaged_fit
    opt = fast.diagnostics.optimizer
    assert opt["n_merged"] > 1000 and opt["n_pruned"] > 1000 and opt["n_second_phase"] < 500  # it did triage
    assert full.diagnostics.optimizer["n_merged"] == 0 and full.diagnostics.optimizer["n_pruned"] == 0
    assert opt["iterations_mean"] < 0.6 * full.diagnostics.optimizer["iterations_mean"]
    for result in (fast, full):
        assert result.objective == pytest.approx(BEFORE_TRIAGE["objective"], rel=1e-10)
        for k, value in BEFORE_TRIAGE["params"].items():
            assert result.params[k] == pytest.approx(value, rel=1e-6), k


def test_bootstrap_intervals_match_the_search_before_triage(full_triaged_fit):
    # Same seed, same resamples; each refit starts from the optimum (equal to ~1e-9), so every
    # bootstrap estimate and every interval end is the one computed before to ~1e-6.
    for k, (low, high) in BEFORE_TRIAGE["intervals"].items():
        assert full_triaged_fit.intervals[k][0] == pytest.approx(low, rel=1e-6), k
        assert full_triaged_fit.intervals[k][1] == pytest.approx(high, rel=1e-6), k
    q = np.quantile(full_triaged_fit.bootstrap_samples, [0.025, 0.5, 0.975], axis=0)
    assert np.isfinite(q).all() and full_triaged_fit.bootstrap_samples.shape == (1000, 5)


@pytest.mark.parametrize("noise, n_points, seed", [(0.0, 36, 0), (0.003, 36, 1), (0.02, 36, 2), (0.003, 150, 3),
                                                   (0.02, 150, 4)])
def test_triaged_search_returns_the_full_searchs_optimum_on_synthetic_laws(noise, n_points, seed):
    # Random laws and sizes; 150 points take the coarse-to-fine path (merging, pruning, one full-data
    # run per distinct coarse end point), 36 points the single phase (merging and pruning only).
    rng = np.random.default_rng(seed)
    law = ChinchillaParams(E=float(rng.uniform(1.0, 3.0)), A=float(10 ** rng.uniform(2, 3.5)),
                           B=float(10 ** rng.uniform(2.5, 4)), alpha=float(rng.uniform(0.2, 0.8)),
                           beta=float(rng.uniform(0.2, 0.8)))
    n = 10 ** rng.uniform(7.5, 10.5, n_points)
    d = 10 ** rng.uniform(9.0, 12.0, n_points)
    loss = chinchilla_loss(n, d, law) * np.exp(rng.normal(0.0, noise, n_points))
    fits = {triage: fit_chinchilla(n, d, loss, Approach3Settings(**SMALL_GRID, n_bootstrap=0, triage=triage))
            for triage in (False, True)}
    # abs: noise-free data stop at f ≈ 1e-19 (the solver's absolute floor, rtol·δ²/2 per point), not at one value
    assert fits[True].objective == pytest.approx(fits[False].objective, rel=1e-10, abs=1e-17)
    # The same fitted law: its values at every point, and each parameter that the data pin down (a term
    # that vanishes, e.g. E → 0, may stop anywhere along its flat direction: 1e-16 and 3e-12 are both 0 here).
    np.testing.assert_allclose(fits[True].diagnostics.fitted, fits[False].diagnostics.fitted, rtol=1e-7)
    for k in ("E", "A", "B", "alpha", "beta"):
        assert fits[True].params[k] == pytest.approx(fits[False].params[k], rel=1e-5, abs=1e-9), k
    assert fits[True].diagnostics.optimizer["iterations_mean"] <= fits[False].diagnostics.optimizer["iterations_mean"]


def test_triage_keeps_the_bootstrap_of_the_untriaged_fit(epoch_points):
    n, d, loss = epoch_points
    fits = [fit_chinchilla(n, d, loss, Approach3Settings(**SMALL_GRID, drop_highest=5, n_bootstrap=100, seed=3,
                                                         triage=triage)) for triage in (False, True)]
    np.testing.assert_allclose(fits[1].bootstrap_samples, fits[0].bootstrap_samples, rtol=1e-5)
    for k in fits[0].intervals:
        np.testing.assert_allclose(fits[1].intervals[k], fits[0].intervals[k], rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Bootstrap, serialisation, options
# --------------------------------------------------------------------------------------------
def test_bootstrap_is_reproducible_and_serialises():
    n, d, loss = _sweep(noise=0.003, seed=4)
    s = Approach3Settings(**TINY_GRID, n_bootstrap=40, seed=11)
    r1 = fit_chinchilla(n, d, loss, s)
    r2 = fit_chinchilla(n, d, loss, s)
    np.testing.assert_array_equal(r1.bootstrap_samples, r2.bootstrap_samples)
    r3 = fit_chinchilla(n, d, loss, Approach3Settings(**TINY_GRID, n_bootstrap=40, seed=12))
    assert not np.array_equal(r1.bootstrap_samples, r3.bootstrap_samples)
    text = json.dumps(r1.to_dict())
    back = FitResult.from_dict(json.loads(text))
    assert back.params == r1.params
    assert back.intervals == r1.intervals
    np.testing.assert_array_equal(back.bootstrap_samples, r1.bootstrap_samples)
    assert back.settings["seed"] == 11 and back.settings["n_bootstrap"] == 40
    assert Approach3Settings.from_dict(back.settings) == s
    for name in ("E", "A", "B", "alpha", "beta", "a", "b"):
        low, high = r1.intervals[name]
        assert low <= high
    for row, budget in ((r1.optimum_at(1e21), 1e21), (r1.optimum_at(5.76e23), 5.76e23)):
        assert row.budget == budget
        for quantity in ("n_params", "tokens", "tokens_per_param"):
            low, high = row.interval(quantity)
            assert low <= high
    assert [row.to_dict() for row in back.optima] == [row.to_dict() for row in r1.optima]
    assert back.chinchilla_params().alpha == r1.params["alpha"]
    np.testing.assert_allclose(back.predict({"n_params": n, "tokens": d}), chinchilla_loss(n, d, back.chinchilla_params()))


def test_duplicated_points_equal_weight_two():
    n, d, loss = _sweep(noise=0.003, seed=5)
    s = Approach3Settings(**TINY_GRID, n_bootstrap=0)
    doubled = fit_chinchilla(np.r_[n, n], np.r_[d, d], np.r_[loss, loss], s)
    weighted = fit_chinchilla(n, d, loss, s, weights=np.full(n.size, 2.0))
    for k in ("E", "A", "B", "alpha", "beta"):
        assert weighted.params[k] == pytest.approx(doubled.params[k], rel=1e-6)
    assert weighted.objective == pytest.approx(doubled.objective, rel=1e-9)


def test_fit_law_chinchilla_is_approach3():
    n, d, loss = _sweep(noise=0.003, seed=8)
    s = Approach3Settings(**TINY_GRID, n_bootstrap=0)
    via_law = fit_law("chinchilla", {"n_params": n, "tokens": d}, loss, settings=s)
    direct = fit_chinchilla(n, d, loss, s)
    assert via_law.method == "approach3" and via_law.params == direct.params
    assert via_law.settings["n_bootstrap"] == 0  # the settings' values are kept unless a keyword overrides


def test_weights_by_run_give_each_run_equal_total():
    w = weights_by_run(["a", "a", "a", "b", "c", "c"])
    assert w.sum() == pytest.approx(6.0)
    assert w[:3].sum() == pytest.approx(w[3]) == pytest.approx(w[4:].sum())


def test_fix_alpha_equal_beta_and_drop_highest():
    n, d, loss = _sweep(noise=0.003, seed=6)
    r = fit_chinchilla(n, d, loss, Approach3Settings(**TINY_GRID, n_bootstrap=20, fix_alpha_eq_beta=True,
                                                     drop_highest=3))
    assert r.params["alpha"] == r.params["beta"]
    assert np.all(r.bootstrap_samples[:, 3] == r.bootstrap_samples[:, 4])
    assert r.n_points == n.size - 3
    assert sorted(r.diagnostics.dropped_index.tolist()) == sorted(np.argsort(loss)[-3:].tolist())
    assert r.settings["fix_alpha_eq_beta"] is True


def test_bounds_hold_and_warn():
    n, d, loss = _sweep()
    r = fit_chinchilla(n, d, loss, Approach3Settings(**TINY_GRID, n_bootstrap=0, bounds=(("alpha", 0.4, 2.0),)))
    assert r.params["alpha"] == pytest.approx(0.4)
    assert any("alpha" in w and "lower bound" in w for w in r.warnings)


def test_progress_is_reported_and_cancel_stops_the_fit():
    n, d, loss = _sweep(noise=0.003)
    seen = []
    fit_chinchilla(n, d, loss, Approach3Settings(**TINY_GRID, n_bootstrap=10), progress=lambda *a: seen.append(a))
    assert seen[-1][0] == seen[-1][1] == 32 + 10
    assert all(done <= total for done, total, _ in seen)

    def cancel(done, total, message):
        if done > 0:
            raise Cancelled("stopped by the user")

    with pytest.raises(Cancelled):
        fit_chinchilla(n, d, loss, Approach3Settings(**TINY_GRID, n_bootstrap=10), progress=cancel)


def test_few_sizes_warn():
    n, d, loss = _sweep(noise=0.003)
    two = np.isin(n, np.unique(n)[[0, 5]])
    r = fit_chinchilla(n[two], d[two], loss[two], Approach3Settings(**TINY_GRID, n_bootstrap=0))
    assert any("distinct model sizes" in w for w in r.warnings)


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mutate, words", [
    (lambda n, d, l: (n[:4], d[:4], l[:4]), "parameters"),
    (lambda n, d, l: (np.full_like(n, 1e9), d, l), "same model size"),
    (lambda n, d, l: (n, d, np.where(np.arange(l.size) == 3, 0.0, l)), "positive"),
    (lambda n, d, l: (n, np.where(np.arange(d.size) == 3, -1.0, d), l), "positive"),
    (lambda n, d, l: (n, d, np.where(np.arange(l.size) == 3, np.nan, l)), "NaN"),
    (lambda n, d, l: (n, d[:-1], l), "rows"),
])
def test_bad_input_raises_fit_error(mutate, words):
    n, d, loss = _sweep()
    with pytest.raises(FitError, match=words):
        fit_chinchilla(*mutate(n, d, loss), Approach3Settings(**TINY_GRID, n_bootstrap=0))


def test_bad_input_for_other_laws():
    with pytest.raises(FitError, match="unknown law"):
        fit_law("nope", {"x": [1, 2, 3]}, [1, 2, 3])
    with pytest.raises(FitError, match="needs inputs"):
        fit_law("kaplan_n", {"tokens": [1, 2, 3]}, [1, 2, 3])
    with pytest.raises(FitError, match="drop"):
        fit_law("power_law_offset", {"x": [1.0, 2.0, 3.0, 4.0]}, [3.0, 2.0, 1.5, 1.2], drop_highest=2)


# --------------------------------------------------------------------------------------------
# The other laws
# --------------------------------------------------------------------------------------------
def test_other_laws_recover_known_parameters():
    assert set(LAW_NAMES) >= {"chinchilla", "kaplan_n", "kaplan_d", "kaplan_c", "kaplan_nd", "power_law_offset", "routed"}
    n = np.logspace(7, 11, 20)
    r = fit_law("kaplan_n", {"n_params": n}, kaplan_loss_n(n, KAPLAN_2020), n_bootstrap=0)
    assert r.params["alpha_N"] == pytest.approx(0.076, rel=1e-6)
    assert r.params["N_c"] == pytest.approx(8.8e13, rel=1e-5)

    nn, dd = (a.ravel() for a in np.meshgrid(np.logspace(7, 10, 6), np.logspace(8, 11, 6)))
    r = fit_law("kaplan_nd", {"n_params": nn, "tokens": dd}, kaplan_loss_nd(nn, dd, KAPLAN_2020), n_bootstrap=0)
    for k in ("alpha_N", "alpha_D", "N_c", "D_c"):
        assert r.params[k] == pytest.approx(getattr(KAPLAN_2020, k), rel=1e-4), k

    x = np.logspace(1, 5, 30)
    noisy = power_law_offset(x, 1.7, 8.0, 0.4) * np.exp(np.random.default_rng(0).normal(0, 0.002, x.size))
    r = fit_law("power_law_offset", {"x": x}, noisy, n_bootstrap=50, seed=1)
    assert r.params["alpha"] == pytest.approx(0.4, abs=4 * r.stderr["alpha"] + 1e-3)
    assert r.params["E"] == pytest.approx(1.7, abs=4 * r.stderr["E"] + 1e-3)
    assert r.bootstrap_samples.shape == (50, 3)
    assert FitResult.from_dict(json.loads(json.dumps(r.to_dict()))).param_names == ("E", "A", "alpha")

    p = RoutedParams(a=-0.082, b=-0.108, c=0.009, d=1.104, e_start=1.847, e_max=314.7)
    nr, er = (a.ravel() for a in np.meshgrid(np.logspace(0, 3, 5), [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]))
    r = fit_law("routed", {"n_params": nr, "n_experts": er}, routed_loss(nr, er, p), n_bootstrap=0)
    for k in ("a", "b", "c", "d"):
        assert r.params[k] == pytest.approx(getattr(p, k), abs=1e-4), k
    assert r.params["e_start"] == pytest.approx(1.847, rel=1e-3)
    np.testing.assert_allclose(r.predict({"n_params": nr, "n_experts": er}), routed_loss(nr, er, p), rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Back-test and residual diagnostics (core/fitting/backtest.py, core/fitting/diagnostics.py)
# --------------------------------------------------------------------------------------------
def test_backtest_on_a_known_law_predicts_the_held_out_runs():
    n, d, loss = _sweep(noise=0.002, seed=7)
    bt = backtest(n, d, loss, threshold=1e20, settings=Approach3Settings(**TINY_GRID, n_bootstrap=0))
    flops = 6 * n * d
    assert bt.n_train == int((flops < 1e20).sum()) and bt.n_test == int((flops >= 1e20).sum())
    assert bt.rmse_log < 0.01 and bt.mape_pct < 1.0
    np.testing.assert_array_equal(np.sort(bt.test_index), np.flatnonzero(flops >= 1e20))
    json.dumps(bt.to_dict())
    with pytest.raises(FitError, match="threshold"):
        backtest(n, d, loss, threshold=1e30, settings=Approach3Settings(**TINY_GRID, n_bootstrap=0))

    x = np.logspace(1, 5, 40)
    bt = backtest_law("power_law_offset", {"x": x}, power_law_offset(x, 1.7, 8.0, 0.4), x, 1e4, n_bootstrap=0)
    assert bt.rmse_log < 1e-8


def test_residual_diagnostics_detect_a_trend():
    x = np.logspace(7, 10, 50)
    flat = residual_diagnostics(np.zeros(50) + 0.01, {"n_params": x})
    assert flat["mean"] == pytest.approx(0.01) and flat["rmse"] == pytest.approx(0.01)
    trend = residual_diagnostics(0.01 * np.log(x / 1e8), {"n_params": x})
    assert trend["trend"]["n_params"]["slope_per_log"] == pytest.approx(0.01)
    assert trend["trend"]["n_params"]["corr"] == pytest.approx(1.0)
    assert trend["mean_abs_pct"] == pytest.approx(100 * np.mean(np.abs(np.expm1(0.01 * np.log(x / 1e8)))))
    assert math.isfinite(trend["trend"]["n_params"]["lag1_autocorr"])
