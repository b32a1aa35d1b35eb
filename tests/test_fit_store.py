"""Fits in the store (db/fits.py, db/fit_data.py): selection → points, save / list / get, a stored
fit re-run from its recorded selection and settings gives the same numbers, bad input stores nothing."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.errors import FitError, InputError
from core.laws import BESIROGLU_2024
from services import fits as fit_data
from db.fits import delete_fit, get_fit, list_fits, load_result
from importers.base import ParsedRun
from services.seed import seed_if_empty


@pytest.fixture
def db_url(any_db_url):
    """Each test here runs on both engines: a DuckDB file and a PostgreSQL database (tests/conftest.py)."""
    return any_db_url


QUICK = dict(grid="quick", n_bootstrap=50)  # the full 4,500-start grid is tested in the core tests


@pytest.fixture
def demo(store):
    """The synthetic demo sweep (5 budgets × 6 sizes from Besiroglu et al.'s law, 1% noise)."""
    assert seed_if_empty(store) == 30
    return store


def summary_run(name, n, d, loss, **extra) -> ParsedRun:
    metrics = pd.DataFrame({"name": ["loss"], "step": [np.nan], "tokens": [d], "flops": [6 * n * d],
                            "wall_time": [np.nan], "value": [loss]})
    return ParsedRun(name=name, source_format="summary", n_params=n, n_active_params=n, tokens=d, flops=6 * n * d,
                     metrics=metrics, **extra)


def test_select_runs_by_filter_and_tag(demo):
    all_runs = fit_data.select_runs(demo)
    assert len(all_runs) == 30 and all_runs[0] == "demo-C1e18-N12.8M"
    assert fit_data.select_runs(demo, tags=["synthetic demo"]) == all_runs
    top = fit_data.select_runs(demo, name_contains="c1e20")  # case-insensitive, like the Runs page
    assert len(top) == 6 and all(r.startswith("demo-C1e20-") for r in top)
    assert fit_data.select_runs(demo, names=top[:2], name_contains="C1e20") == top[:2]
    assert fit_data.all_tags(demo) == ["synthetic demo"]
    unsized = summary_run("no-sizes", 1e8, 2e9, 3.0)
    unsized.n_params = unsized.n_active_params = None
    demo.ingest([unsized])
    assert fit_data.runs_with_sizes(demo, all_runs + ["no-sizes"]) == all_runs  # the page's default selection
    assert fit_data.runs_with_sizes(demo, all_runs, n_kind="nonembedding") == []
    with pytest.raises(InputError, match="no run matches filter 'nothing-like-this'"):
        fit_data.select_runs(demo, name_contains="nothing-like-this")
    with pytest.raises(InputError, match="No run named 'ghost'"):
        fit_data.select_runs(demo, names=["ghost"])


def test_points_for_each_target(demo):
    runs = fit_data.select_runs(demo, name_contains="C1e19")
    final = fit_data.load_fit_data(demo, runs)
    assert len(final) == 6 and list(final.run) == runs
    frame = demo.final_values("loss", runs).set_index("run").loc[runs]
    np.testing.assert_array_equal(final.y, frame["value"].to_numpy())
    np.testing.assert_allclose(final.flops, 1e19, rtol=1e-9)  # every run of this IsoFLOP slice
    np.testing.assert_allclose(final.tokens, 1e19 / (6 * final.n_params), rtol=1e-9)
    assert np.all(final.budget == 1e19)

    at_200 = fit_data.load_fit_data(demo, runs, fit_data.Target(kind="at_step", step=200))
    assert np.all(at_200.y > final.y)  # loss still falling at half the run
    np.testing.assert_allclose(at_200.tokens, final.tokens / 2, rtol=1e-9)

    curves = fit_data.load_fit_data(demo, runs, fit_data.Target(kind="curve", points_per_run=10), weight_by_run=True)
    per_run = pd.Series(curves.run).value_counts()
    assert set(per_run.index) == set(runs) and per_run.max() <= 11 and per_run.min() >= 5
    w = fit_data.weights_for(curves)
    totals = pd.Series(w).groupby(curves.run).sum()
    np.testing.assert_allclose(totals.to_numpy(), len(curves) / 6)  # every run weighs the same
    assert fit_data.weights_for(final) is None

    no_kaplan_n = fit_data.load_fit_data(demo, runs, n_kind="nonembedding")
    with pytest.raises(InputError, match=r"6 selected run\(s\) have no nonembedding parameter count"):
        no_kaplan_n.inputs("kaplan_n")
    with pytest.raises(InputError, match="have no 'loss' at step 12345"):
        fit_data.load_fit_data(demo, runs, fit_data.Target(kind="at_step", step=12345))


def test_save_list_get_and_planner_reads_the_samples(demo):
    runs = fit_data.select_runs(demo)
    data = fit_data.load_fit_data(demo, runs, selection_extra={"filter": {"tags": ["synthetic demo"]}})
    fit_id, result = fit_data.fit_and_save(demo, data, fit_data.FitOptions(seed=7, **QUICK), name="demo fit")

    # the demo's law is Besiroglu et al.'s: with 1% noise on 30 runs the exponents come back closely
    truth = BESIROGLU_2024
    assert result.params["alpha"] == pytest.approx(truth.alpha, abs=0.03)
    assert result.params["beta"] == pytest.approx(truth.beta, abs=0.03)
    assert result.params["E"] == pytest.approx(truth.E, abs=0.1)
    assert result.derived["a"] == pytest.approx(truth.a, abs=0.03)

    row = get_fit(demo, fit_id)
    assert (row["law"], row["method"], row["target"], row["name"]) == ("chinchilla", "approach3", "loss", "demo fit")
    assert set(row["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert row["params"] == result.params
    assert row["selection"]["runs"] == runs and row["selection"]["target"] == {"kind": "final", "metric": "loss",
                                                                              "points_per_run": 20}
    assert row["selection"]["filter"] == {"tags": ["synthetic demo"]} and row["selection"]["n_kind"] == "total"
    assert row["settings"]["seed"] == 7 and row["settings"]["n_bootstrap"] == 50 and row["settings"]["n_starts"] == 32
    samples = np.array(row["diagnostics"]["bootstrap_samples"])
    assert samples.shape == (50, 5) and row["diagnostics"]["param_names"] == ["E", "A", "B", "alpha", "beta"]
    lo, hi = row["intervals"]["alpha"]
    assert lo < result.params["alpha"] < hi
    assert row["diagnostics"]["n_points"] == 30 and row["diagnostics"]["objective"] == result.objective

    back = load_result(row)
    assert back.params == result.params and back.stderr == result.stderr
    np.testing.assert_array_equal(back.bootstrap_samples, result.bootstrap_samples)

    listed = list_fits(demo)
    assert listed["id"].tolist() == [fit_id] and listed["params"].iloc[0] == result.params

    # the planner's reader finds the samples in diagnostics and plans from the fit
    from commands.plan import fit_for_planner
    from core.planner import ChinchillaParams, params_from_fit

    for_planner = fit_for_planner(row)
    assert len(for_planner["bootstrap_samples"]) == 50
    assert params_from_fit(for_planner) == ChinchillaParams(**result.params)

    delete_fit(demo, fit_id)
    assert list_fits(demo).empty
    with pytest.raises(InputError, match=f"No fit with id {fit_id}"):
        get_fit(demo, fit_id)


@pytest.mark.parametrize("options", [
    fit_data.FitOptions(seed=3, drop_highest=2, fix_alpha_eq_beta=True, **QUICK),
    fit_data.FitOptions(law="kaplan_nd", method="huber_log", n_bootstrap=10),
    fit_data.FitOptions(law="chinchilla", method="approach2"),
], ids=["approach3", "kaplan_nd", "approach2"])
def test_refit_reproduces_the_stored_numbers_exactly(demo, options):
    data = fit_data.load_fit_data(demo, fit_data.select_runs(demo), weight_by_run=options.law == "kaplan_nd")
    fit_id, first = fit_data.fit_and_save(demo, data, options)
    again = fit_data.refit(demo, fit_id)
    assert again.params == first.params  # exactly: same points, grid, seed, resamples
    assert again.intervals == first.intervals and again.stderr == first.stderr
    np.testing.assert_array_equal(again.bootstrap_samples, first.bootstrap_samples)
    assert again.objective == first.objective or (np.isnan(again.objective) and np.isnan(first.objective))
    assert len(list_fits(demo)) == 1  # refit stores nothing


def test_backtest_of_a_stored_fit_holds_out_the_top_budget(demo):
    data = fit_data.load_fit_data(demo, fit_data.select_runs(demo))
    levels = fit_data.compute_levels(data.flops)
    np.testing.assert_allclose(levels, [1e18, 3e18, 1e19, 3e19, 1e20], rtol=1e-6)
    for options in (fit_data.FitOptions(drop_highest=1, **QUICK),
                    fit_data.FitOptions(law="kaplan_c", method="huber_log", n_bootstrap=0)):
        _, result = fit_data.fit_and_save(demo, data, options)
        bt, points = fit_data.backtest_fit(data, result, levels[-1])
        assert len(points) == result.n_points and (bt.n_train, bt.n_test) == (result.n_points - 6, 6)
        assert np.all(points.flops[bt.test_index] >= levels[-1])
        assert bt.mape_pct < 5.0 and bt.fit.n_points == bt.n_train
    _, iso = fit_data.fit_and_save(demo, data, fit_data.FitOptions(method="approach2"))
    with pytest.raises(InputError, match="back-test an Approach 3 fit"):
        fit_data.backtest_fit(data, iso, levels[-1])


def test_csv_selection_keeps_its_points_and_refits(store, reference_dir):
    path = reference_dir / "epoch_chinchilla_svg_extracted_data.csv"
    data = fit_data.load_csv_data(str(path))
    table = pd.read_csv(path)
    assert len(data) == 245 and data.selection["source"] == "csv"
    assert data.selection["file"] == "epoch_chinchilla_svg_extracted_data.csv" and len(data.selection["sha256"]) == 64
    np.testing.assert_allclose(data.n_params, table["Model Size"].to_numpy())
    np.testing.assert_allclose(data.tokens, table["Training FLOP"] / (6 * table["Model Size"]), rtol=1e-12)
    fit_id, first = fit_data.fit_and_save(store, data, fit_data.FitOptions(drop_highest=5, grid="quick", n_bootstrap=20))
    assert first.n_points == 240 and first.params["alpha"] == pytest.approx(0.3478, abs=0.0154)
    assert store.is_empty()  # the table's runs were not added
    assert json.loads(json.dumps(get_fit(store, fit_id)["selection"]))["n_rows"] == 245
    assert fit_data.refit(store, fit_id).params == first.params
    # Approach 1 from a table's final points: each run counts in its FLOP level's bin
    envelope = fit_data.run_fit(data, fit_data.FitOptions(method="approach1"))
    assert envelope.params["a"] == pytest.approx(0.5, abs=0.1) and envelope.n_points == 245


def test_budgets_parse_or_say_what_is_wrong():
    assert fit_data.parse_budgets("1e21, 5.76e23; 1e25") == (1e21, 5.76e23, 1e25)
    with pytest.raises(InputError, match="budgets must be numbers"):
        fit_data.parse_budgets("1e21, lots")
    with pytest.raises(InputError, match="at least one positive FLOP budget"):
        fit_data.parse_budgets("0, 1e21")


def test_bad_input_raises_and_stores_nothing(store):
    one_size = [summary_run(f"one-{i}", 1e8, d, 3.0 - 0.1 * i) for i, d in enumerate(np.geomspace(1e9, 1e11, 6))]
    few = [summary_run(f"few-{i}", n, 20 * n, 3.0 - 0.1 * i) for i, n in enumerate((1e8, 2e8, 4e8))]
    negative = [summary_run(f"neg-{i}", n, 20 * n, 3.0 - 0.5 * i) for i, n in enumerate(np.geomspace(1e7, 1e9, 8))]
    store.ingest(one_size + few + negative)
    opts = fit_data.FitOptions(**QUICK)

    cases = [
        ([r.name for r in one_size], opts, FitError, "same model size"),
        ([r.name for r in few], opts, FitError, "fewer than the 5 parameters"),
        ([r.name for r in negative], opts, FitError, r"loss must be positive but 2 values are ≤ 0"),
        ([r.name for r in few], fit_data.FitOptions(law="chinchilla", method="approach2"), FitError, "budget"),
        ([r.name for r in few], fit_data.FitOptions(law="kaplan_n", method="approach3"), InputError, "huber_log"),
    ]
    for runs, options, error, message in cases:
        data = fit_data.load_fit_data(store, runs)
        with pytest.raises(error, match=message):
            fit_data.fit_and_save(store, data, options)
    with pytest.raises(InputError, match="unknown start grid"):
        fit_data.fit_and_save(store, fit_data.load_fit_data(store, [r.name for r in negative]),
                              fit_data.FitOptions(grid="huge"))
    assert list_fits(store).empty
