"""Schedule-aware loss-curve forecasting (issue 14): schedules, the two laws, the accuracy target,
the back-test on the bundled demo runs, and the CLI twin."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.errors import InputError
from core.curve_fit import CurveFitConfig, bound_warnings, forecast_curve, params_at_bounds
from core.loss_curve import annealing_area, curve_features, multi_power_loss, tissue_loss
from core.registry import CURVE_LAWS, curve_law
from core.runs import ParsedRun
from core.schedules import Schedule, check_against_logged, infer_schedule, lr_per_step
from services import forecast as forecast_service
from services.seed import seed_probe_demo

ROOT = Path(__file__).resolve().parents[1]


# ---- schedules ------------------------------------------------------------------------------------

def test_cosine_schedule_matches_its_closed_form():
    s = Schedule("cosine", total_steps=1000, peak_lr=1e-3, warmup_steps=100, final_lr=1e-4)
    lr = s.lr()
    assert lr[49] == pytest.approx(1e-3 * 50 / 100)           # warmup: linear to the peak
    assert lr[99] == pytest.approx(1e-3)                      # step W = peak
    mid = 100 + 450                                           # half-way through the decay: cos(π/2) = 0
    assert lr[mid - 1] == pytest.approx(1e-4 + 0.9e-3 * 0.5)
    assert lr[-1] == pytest.approx(1e-4)


def test_wsd_is_flat_then_decays_over_its_last_k_steps():
    s = Schedule("wsd", 1000, 2e-3, 50, 0.0, decay_steps=200)
    lr = s.lr()
    assert np.all(lr[50:800] == pytest.approx(2e-3))
    assert lr[899] == pytest.approx(1e-3)                     # linear decay, half-way
    assert lr[-1] == pytest.approx(0.0)


@pytest.mark.parametrize("declared", [
    Schedule("cosine", 5000, 3e-4, 200, 3e-5),
    Schedule("linear", 5000, 1e-3, 0, 0.0),
    Schedule("constant", 5000, 6e-4, 300),
    Schedule("wsd", 5000, 1e-3, 100, 1e-5, decay_steps=1000),
])
def test_infer_schedule_recovers_the_declared_one(declared):
    steps = np.arange(1, 5001, 7)
    inferred = infer_schedule(steps, declared.lr(steps), 5000)
    assert inferred.kind == declared.kind
    assert np.max(np.abs(inferred.lr() - declared.lr())) < 0.02 * declared.peak_lr


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_a_live_runs_schedule_is_inferred_to_its_planned_end(kind):
    """Logged to step 1,500 of 4,000: the final LR is fitted, not the last logged one (2.3e-4 here)."""
    declared = Schedule(kind, 4000, 3e-4, 200, 3e-5)
    steps = np.arange(1, 1501, 10)
    inferred = infer_schedule(steps, declared.lr(steps), 4000)
    assert inferred.kind == kind and inferred.total_steps == 4000
    assert inferred.final_lr == pytest.approx(3e-5, rel=0.03)
    assert np.max(np.abs(inferred.lr() - declared.lr())) < 0.01 * declared.peak_lr


def test_a_logged_lr_that_contradicts_the_declared_schedule_is_an_error():
    logged = Schedule("linear", 2000, 1e-3, 100).lr()
    with pytest.raises(InputError, match="contradicts the declared cosine schedule"):
        check_against_logged(Schedule("cosine", 2000, 1e-3, 100), np.arange(1, 2001), logged)
    with pytest.raises(InputError, match="declare the schedule"):
        lr_per_step(3000, None, np.arange(1, 2001), logged)


@pytest.mark.parametrize("bad", [dict(total_steps=1), dict(peak_lr=-1.0), dict(peak_lr=float("nan")),
                                 dict(final_lr=2.0), dict(warmup_steps=5000)])
def test_bad_schedules_are_refused(bad):
    args = dict(kind="cosine", total_steps=1000, peak_lr=1e-3, warmup_steps=10, final_lr=0.0) | bad
    with pytest.raises(InputError):
        Schedule(**args)


def test_annealing_area_has_tissues_closed_form_for_one_drop():
    """One drop Δ at step k (after warmup): m_i = Δ·λ^(i−k), S2(s) = Δ(1 − λ^(s−k+1))/(1 − λ)."""
    lam, delta, k = 0.999, 2e-4, 400
    lr = np.full(1000, 5e-4)
    lr[k - 1:] -= delta
    s2 = annealing_area(lr, warmup_steps=100, decay=lam)
    s = np.arange(k, 1001)
    assert np.allclose(s2[k - 1:], delta * (1 - lam ** (s - k + 1)) / (1 - lam), rtol=1e-10)
    assert np.all(s2[:k - 1] == 0)


def test_warmup_adds_nothing_to_the_annealing_area():
    lr = Schedule("constant", 500, 1e-3, 200).lr()
    assert np.all(annealing_area(lr, 200) == 0)


# ---- the accuracy target of the issue --------------------------------------------------------------

COSINE = Schedule("cosine", 10_000, 3e-4, 200, 3e-5)
TRUTH = (2.0, 0.35, 0.45, 0.58)  # L0, A, α, C


def _tissue_run(noise=0.004, seed=0):
    steps = np.arange(10, 10_001, 10)
    truth = tissue_loss(TRUTH, curve_features(COSINE.lr(), 200, steps))
    noisy = truth * (1 + noise * np.random.default_rng(seed).standard_normal(len(truth)))
    return steps, truth, noisy


def test_tissue_forecast_from_the_first_half_lands_within_one_percent_with_the_truth_inside():
    steps, truth, noisy = _tissue_run()
    half = steps <= 5000
    fc = forecast_curve(steps[half], noisy[half], COSINE.lr(), 200, CurveFitConfig(bootstrap=200, seed=0))
    assert fc.final_step == 10_000
    assert abs(fc.final_loss - truth[-1]) / truth[-1] < 0.01
    lo, hi = fc.interval
    assert lo <= truth[-1] <= hi
    assert fc.confidence == 0.95
    assert fc.params["alpha"] == pytest.approx(0.45, rel=0.1)
    assert fc.warnings == () and fc.at_bounds == ()  # every parameter pinned by half a run


def test_tissue_fit_is_exact_on_a_noiseless_curve():
    steps, truth, _ = _tissue_run(noise=0.0)
    fc = forecast_curve(steps[steps <= 6000], truth[steps <= 6000], COSINE.lr(), 200, CurveFitConfig(bootstrap=0))
    assert fc.final_loss == pytest.approx(truth[-1], rel=1e-5)
    for name, value in zip(("L0", "A", "alpha", "C"), TRUTH):
        assert fc.params[name] == pytest.approx(value, rel=1e-3)


def test_multi_power_recovers_its_own_curve():
    theta = (2.0, 0.35, 0.45, 400.0, 2.0, 0.5, 0.5)   # L0, A, α, B, C, β, γ
    steps = np.arange(10, 10_001, 10)
    truth = multi_power_loss(theta, curve_features(COSINE.lr(), 200, steps))
    noisy = truth * (1 + 0.004 * np.random.default_rng(0).standard_normal(len(truth)))
    seen = steps <= 6000
    fc = forecast_curve(steps[seen], noisy[seen], COSINE.lr(), 200, CurveFitConfig(law="multi-power", bootstrap=0))
    assert abs(fc.final_loss - truth[-1]) / truth[-1] < 0.01


def test_multi_power_interval_holds_the_truth_where_refits_from_the_best_fit_alone_missed():
    """Noise seed 3 of the benchmark's multi-power case: the best fit leaves β and γ at their bounds;
    refits started from it alone gave a 95% interval of [+0.11%, +0.19%] around a truth it missed.
    Each refit also tries one of the law's starts in turn (CurveLaw.bootstrap_restarts), so the band
    spans the law's other optima and holds the truth."""
    assert curve_law("multi-power").bootstrap_restarts == 1 and curve_law("lr-annealing").bootstrap_restarts == 0
    theta = (2.0, 0.35, 0.45, 400.0, 2.0, 0.5, 0.5)
    steps = np.arange(10, 10_001, 10)
    truth = multi_power_loss(theta, curve_features(COSINE.lr(), 200, steps))
    noisy = truth * (1 + 0.004 * np.random.default_rng(3).standard_normal(len(truth)))
    seen = steps <= 6000
    fc = forecast_curve(steps[seen], noisy[seen], COSINE.lr(), 200,
                        CurveFitConfig(law="multi-power", bootstrap=20, seed=3))
    lo, hi = fc.interval
    assert lo <= truth[-1] <= hi
    assert (hi - lo) / truth[-1] > 0.004  # was 0.0008: the band is no longer the best fit's alone


def test_parameters_at_a_bound_are_named_with_what_they_mean():
    law = curve_law("lr-annealing")
    assert params_at_bounds(law, (2.0, 0.35, 0.45, 0.3)) == []
    assert params_at_bounds(law, (0.0, 5.0, 0.1, 1.0)) == [("L0", "lower"), ("phi", "upper")]
    assert params_at_bounds(law, (2.0, 0.35, 0.45, 0.0)) == []  # no gain from the decay yet: not flagged
    assert params_at_bounds(law, (2.0, 0.35, 3.0, 0.3)) == [("alpha", "upper")]
    warnings = bound_warnings(law, (0.0, 5.0, 0.1, 1.0))
    assert warnings[0].startswith("the irreducible loss L0 sits at its bound 0")
    assert "likely too low" in warnings[1]


def test_a_forecast_that_falls_to_its_floor_says_so():
    """Fitted before the decay has told it anything, on a short noisy curve, the fit lets the decay
    remove all of the reducible loss (φ = 1): the forecast is L0, and the warning says why."""
    steps, _, noisy = _tissue_run(noise=0.0)
    rng = np.random.default_rng(3)
    seen = steps <= 1500
    shaped = noisy[seen] * (1 + 0.03 * rng.standard_normal(seen.sum())) - 4e-5 * steps[seen]  # bends down early
    fc = forecast_curve(steps[seen], shaped, COSINE.lr(), 200, CurveFitConfig(bootstrap=0))
    assert "phi" in fc.at_bounds
    assert fc.final_loss == pytest.approx(fc.params["L0"], rel=1e-6)  # all of the reducible loss removed
    assert any("likely too low" in w for w in fc.warnings)
    assert fc.to_dict()["warnings"] == list(fc.warnings)


def test_too_few_points_is_a_clear_error():
    with pytest.raises(InputError, match="at least 6 logged loss points"):
        forecast_curve([1, 2, 3], [3.0, 2.9, 2.8], COSINE.lr(), 200)


# ---- stored runs: service, back-test, CLI ---------------------------------------------------------

def _store_run(store, name="live", schedule=COSINE, upto=5000):
    steps, _, noisy = _tissue_run()
    keep = steps <= upto
    rows = pd.concat([
        pd.DataFrame({"name": "train/loss", "step": steps[keep].astype(float), "value": noisy[keep]}),
        pd.DataFrame({"name": "train/learning_rate", "step": steps[keep].astype(float),
                      "value": schedule.lr(steps[keep])}),
    ])
    for col in ("tokens", "flops", "wall_time"):
        rows[col] = np.nan
    store.ingest([ParsedRun(name=name, source_format="csv", metrics=rows[["name", "step", "tokens", "flops",
                                                                          "wall_time", "value"]])])


def test_forecast_run_uses_the_logged_lr_and_the_declared_horizon(store):
    _store_run(store)
    result = forecast_service.forecast_run(store, "live", schedule=COSINE, bootstrap=50)
    assert result.metric == "train/loss" and result.lr_metric == "train/learning_rate"
    assert result.schedule_source == "declared, checked against train/learning_rate"
    steps, truth, _ = _tissue_run()
    assert abs(result.forecast.final_loss - truth[-1]) / truth[-1] < 0.01


def test_forecast_run_refuses_a_contradicting_schedule(store):
    _store_run(store)
    with pytest.raises(InputError, match="contradicts"):
        forecast_service.forecast_run(store, "live", schedule=Schedule("linear", 10_000, 3e-4, 200), bootstrap=0)


def test_backtest_on_the_bundled_demo_runs(store):
    """The demo sweep has full curves and a logged LR: fit on 20/40/60% and compare with the mean loss
    of the last 10% of steps. The runs are short (176–560 steps) with ~10% step-to-step noise, so only
    the 60% column is a meaningful forecast; benchmarks/forecast.py prints the whole table."""
    seed_probe_demo(store)
    demo = [n for n in store.runs()["name"] if n.startswith("demo-dense")]
    assert len(demo) == 14
    sixty = {"lr-annealing": [], "multi-power": []}
    unflagged_misses = []
    for law in sixty:
        for name in demo:
            rows = forecast_service.backtest_run(store, name, metric="train_loss", law=law)
            assert [r.fraction for r in rows] == [0.2, 0.4, 0.6]
            assert all(r.actual > 0 and np.isfinite(r.predicted) for r in rows)
            sixty[law].append(abs(rows[2].error_pct))
            if law == "lr-annealing":  # beyond 20% of a run, a forecast far off is one that says so
                unflagged_misses += [(name, r.fraction, r.error_pct) for r in rows[1:]
                                     if abs(r.error_pct) > 15 and not r.at_bounds]
    assert unflagged_misses == []
    assert np.median(sixty["multi-power"]) < 4.0, sixty
    assert np.median(sixty["lr-annealing"]) < 8.0, sixty


def test_the_fit_a_run_is_held_against_is_one_of_its_own_dataset():
    """Never a law of another corpus (the Epoch Chinchilla fit predicts 17 nats for a demo run): a fit
    holding the run, else one sharing a tag with it, else none; then the forecast metric, then newest."""
    runs = pd.DataFrame({"name": ["live", "a", "b", "c", "paper"],
                         "tags": ['["sweep"]', '["sweep"]', '["sweep"]', '["other"]', '["chinchilla"]']})
    fits = pd.DataFrame([
        {"id": 5, "law": "chinchilla", "target": "loss", "selection": {"runs": ["paper"]}},
        {"id": 4, "law": "kaplan", "target": "loss", "selection": {"runs": ["live", "a"]}},
        {"id": 3, "law": "chinchilla", "target": "eval_loss", "selection": {"runs": ["a", "b"]}},
        {"id": 2, "law": "chinchilla", "target": "loss", "selection": {"runs": ["a", "c"]}},
        {"id": 1, "law": "chinchilla", "target": "loss", "selection": {"runs": ["c"]}},
    ])
    pick = lambda run, metric=None: (lambda f: None if f is None else int(f["id"]))(
        forecast_service.comparable_fit(fits, runs, run, metric))
    assert pick("live") == 3             # shares the tag: newest such Chinchilla fit (not #5, another corpus)
    assert pick("live", "loss") == 2     # the forecast metric's fit first
    assert pick("a", "loss") == 2 and pick("b", "loss") == 3  # a fit holding the run beats the metric
    assert pick("paper") == 5
    assert pick("nobody") is None
    lonely = pd.concat([runs, pd.DataFrame({"name": ["solo"], "tags": ['["mine"]']})])
    assert forecast_service.comparable_fit(fits, lonely, "solo") is None


def test_planned_steps_come_from_the_runs_config():
    planned = forecast_service.planned_steps
    assert planned({"max_steps": 4000, "steps": 10}) == 4000          # the most specific key first
    assert planned('{"trainer": {"max_steps": 5000}}') == 5000         # JSON text, one level down
    assert planned({"max_steps": -1, "num_training_steps": 900}) == 900  # HF's -1: "by epochs"
    assert planned({"steps": 2336}) == 2336                            # ScaleScope's probe runs
    for nothing in ({}, {"max_steps": 2.5}, {"max_steps": "many"}, "not json", None, [4000]):
        assert planned(nothing) is None


def test_a_live_run_is_forecast_to_the_end_its_config_plans(store):
    """No --total-steps, no declared schedule: the LR inferred from the log, carried to max_steps."""
    steps, truth, noisy = _tissue_run()
    keep = steps <= 5000
    rows = pd.concat([
        pd.DataFrame({"name": "train/loss", "step": steps[keep].astype(float), "value": noisy[keep]}),
        pd.DataFrame({"name": "train/learning_rate", "step": steps[keep].astype(float), "value": COSINE.lr(steps[keep])}),
    ])
    for col in ("tokens", "flops", "wall_time"):
        rows[col] = np.nan
    store.ingest([ParsedRun(name="planned", source_format="csv", config={"max_steps": 10_000},
                            metrics=rows[["name", "step", "tokens", "flops", "wall_time", "value"]])])
    result = forecast_service.forecast_run(store, "planned", bootstrap=0)
    assert result.forecast.final_step == 10_000 and result.schedule.kind == "cosine"
    assert result.schedule_source == "inferred from train/learning_rate, its end (step 10,000) from the run's config"
    assert abs(result.forecast.final_loss - truth[-1]) / truth[-1] < 0.01


def _cli(*args, db):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), "forecast", *args, "--db", db],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


@pytest.fixture
def any_store(any_db_url):
    """A store on each engine (DuckDB and PostgreSQL): the CLI tests below run on both."""
    from db.store import Store

    s = Store(any_db_url)
    yield s
    s.close()


def test_cli_forecast_json(any_store, any_db_url):
    _store_run(any_store)
    any_store.close()
    out = _cli("live", "--schedule", "cosine", "--total-steps", "10000", "--peak-lr", "3e-4", "--warmup-steps",
               "200", "--final-lr", "3e-5", "--bootstrap", "40", "--json", db=any_db_url)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for key in ("run", "metric", "law", "params", "final_step", "final_loss", "interval"):
        assert key in doc
    assert doc["run"] == "live" and doc["law"] == "lr-annealing" and doc["final_step"] == 10_000
    assert doc["warnings"] == [] and doc["at_bounds"] == []  # half of a clean run pins every parameter
    lo, hi = doc["interval"]
    assert lo <= doc["final_loss"] <= hi
    _, truth, _ = _tissue_run()
    assert abs(doc["final_loss"] - truth[-1]) / truth[-1] < 0.01


@pytest.mark.parametrize("args, message", [
    (["nope"], "no run named 'nope'"),
    (["live", "--schedule", "cosine"], "needs --total-steps and --peak-lr"),
    (["live", "--schedule", "linear", "--total-steps", "10000", "--peak-lr", "3e-4", "--warmup-steps", "200"],
     "contradicts"),
    (["live", "--metric", "accuracy"], "has no metric"),
])
def test_cli_forecast_bad_input_is_one_line(any_store, any_db_url, args, message):
    _store_run(any_store)
    any_store.close()
    out = _cli(*args, db=any_db_url)
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1 and "Traceback" not in out.stderr
