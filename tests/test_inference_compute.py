"""Compute-optimal inference (Wu et al. 2024; core/inference_compute.py): the voting formulas against
enumeration and Monte Carlo, the majority-vote limit (Wu et al. Theorem 1), the plan's sample
counts and budget, the paper's qualitative finding on a synthetic ground truth (their MATH/GSM8K
curves are not available here), the accuracy-law fit, and `cli.py plan --inference-budget` as JSON."""
from __future__ import annotations

import json
from math import comb

import numpy as np
import pytest

from cli import main
from core import inference_compute as ic
from core.errors import PlanError


def test_coverage_is_one_minus_all_samples_wrong():
    p = np.array([0.0, 0.01, 0.3, 0.9, 1.0])
    for k in (1, 2, 10, 1000):
        assert np.allclose(ic.coverage(p, k), 1 - (1 - p) ** k, atol=1e-15)
    rng = np.random.default_rng(0)
    hits = (rng.random((200_000, 5)) < 0.3).any(axis=1).mean()
    assert float(ic.coverage(0.3, 5)) == pytest.approx(hits, abs=3e-3)


def test_majority_vote_is_the_binomial_sum_with_ties_split():
    for p in (0.1, 0.45, 0.5, 0.6, 0.93):
        for k in range(1, 12):
            wins = sum(comb(k, j) * p ** j * (1 - p) ** (k - j) for j in range(k // 2 + 1, k + 1))
            tie = comb(k, k // 2) * (p * (1 - p)) ** (k // 2) if k % 2 == 0 else 0.0
            assert float(ic.majority_accuracy(p, k)) == pytest.approx(wins + 0.5 * tie, abs=1e-12), (p, k)
    assert float(ic.majority_accuracy(0.37, 1)) == pytest.approx(0.37)
    # Wu et al. Theorem 1: voting saturates at 1[p > ½] (here one competing answer)
    assert float(ic.majority_accuracy(0.55, 20_001)) > 0.999 and float(ic.majority_accuracy(0.45, 20_001)) < 1e-3
    rng = np.random.default_rng(1)
    votes = (rng.random((100_000, 7)) < 0.6).sum(axis=1)
    assert float(ic.majority_accuracy(0.6, 7)) == pytest.approx((votes >= 4).mean(), abs=4e-3)


def test_plan_spends_the_budget_on_whole_samples_and_picks_the_best():
    law = ic.SampleAccuracyLaw(a=-1.0, b=0.35, spread=1.5)
    sizes = (1e8, 1e9, 7e9, 34e9)
    result = ic.plan_inference(1e15, law, strategy="majority", tokens_per_sample=512, sizes=sizes)
    for choice in result.table:
        assert choice.samples == int(1e15 // (2 * choice.n_params * 512))
        assert choice.flops <= 1e15 and choice.flops == 2 * choice.n_params * 512 * choice.samples
        assert choice.accuracy == pytest.approx(float(ic.strategy_accuracy(law, choice.n_params, choice.samples,
                                                                           "majority")))
    assert result.best.accuracy == max(c.accuracy for c in result.table)
    with pytest.raises(PlanError, match="cannot run even the smallest"):
        ic.plan_inference(1e9, law, sizes=sizes)
    with pytest.raises(PlanError, match="strategy"):
        ic.plan_inference(1e15, law, strategy="vote", sizes=sizes)


@pytest.mark.parametrize("strategy", ic.STRATEGIES)
def test_smaller_models_with_more_samples_win_small_budgets_and_the_optimum_grows(strategy):
    """Wu et al. 2024 Fig. 1 / §4 on a synthetic ground truth: at small budgets a smaller model with
    more samples beats the largest model the budget affords; the optimal size grows with the budget."""
    # majority voting needs problems a small model solves more often than not (the former default law,
    # easier than the MATH-anchored default); best-of-n does not
    law = ic.SampleAccuracyLaw(0.0, 0.2, 0.5) if strategy == "majority" else ic.SampleAccuracyLaw(-1.0, 0.35, 1.5)
    sizes = (1.4e8, 4.1e8, 1e9, 2.8e9, 6.9e9, 12e9, 34e9)
    best_sizes = []
    beat_largest = False
    for budget in np.logspace(12.5, 17, 10):
        result = ic.plan_inference(budget, law, strategy=strategy, sizes=sizes)
        best_sizes.append(result.best.n_params)
        largest = max(result.table, key=lambda c: c.n_params)
        beat_largest |= result.best.n_params < largest.n_params and result.best.accuracy > largest.accuracy
    assert beat_largest
    if strategy == "majority":  # best-of-n with an oracle keeps favouring many small samples
        assert best_sizes == sorted(best_sizes) and best_sizes[-1] > best_sizes[0]


def test_a_tie_goes_to_the_smallest_size():
    """Sizes within ACCURACY_TIE of the best accuracy tie; the optimum is the smallest (cheapest) of them."""
    easy = ic.SampleAccuracyLaw(0.0, 0.2, 0.5)  # 38% per sample at 70M on every problem: coverage saturates
    result = ic.plan_inference(1e15, easy, strategy="best_of_n")
    assert [c.accuracy for c in result.table][:9] == pytest.approx([1.0] * 9, abs=1e-7)
    assert result.table[9].accuracy == pytest.approx(1 - 2.79e-5, abs=1e-7)  # 70B × 13: not within 1e-6
    assert result.best.n_params == 70e6 and result.best.samples == 13950
    assert result.tied_sizes == ic.DEFAULT_SIZES[:9]
    # majority voting, larger sizes better: 12B beats 6.9B by 5e-10 (a tie: the smaller 6.9B is chosen) at
    # 1e15 FLOPs, and by 2e-5 (a real gap: 12B is chosen) at 3.16e14
    law, sizes = ic.SampleAccuracyLaw(0.2, 1.0, 0.5), (6.9e9, 12e9, 34e9)
    near = ic.plan_inference(1e15, law, strategy="majority", sizes=sizes)
    top = max(near.table, key=lambda c: c.accuracy)
    assert top.n_params == 12e9 and 0 < top.accuracy - near.table[0].accuracy < 1e-9
    assert near.best.n_params == 6.9e9 and near.best.samples == 141 and near.tied_sizes == sizes
    far = ic.plan_inference(3.16e14, law, strategy="majority", sizes=sizes)
    assert far.table[1].accuracy - far.table[0].accuracy == pytest.approx(2.1e-5, abs=1e-6)
    assert far.best.n_params == 12e9 and far.best.samples == 25 and far.tied_sizes == (12e9,)


def test_default_law_is_anchored_on_llemma_and_not_saturated():
    """The default law gives Llemma 7B / 34B their MATH accuracies (18.0%, 25.0%), and at 1e15 FLOPs per
    problem best-of-n is a real trade-off: smaller models with more samples win, no size reaches 1.0."""
    law = ic.SampleAccuracyLaw()
    assert law.accuracy(np.array([7e9, 34e9])) == pytest.approx([0.180, 0.250], abs=0.002)
    bon = ic.plan_inference(1e15, law, strategy="best_of_n")
    accs = [c.accuracy for c in bon.table]
    assert accs == pytest.approx([0.9702, 0.9572, 0.9373, 0.9125, 0.9015, 0.8757, 0.8355, 0.8070, 0.7428, 0.6871],
                                 abs=1e-4)
    assert max(accs) < 0.99 and bon.best.n_params == 70e6 and bon.tied_sizes == (70e6,)
    maj = ic.plan_inference(1e15, law, strategy="majority")
    assert maj.best.n_params == 70e9 and maj.best.accuracy == pytest.approx(0.2530, abs=1e-4)


def test_fit_recovers_the_accuracy_law():
    truth = ic.SampleAccuracyLaw(a=-0.7, b=0.45, spread=2.0)
    sizes = np.array([1.4e8, 4.1e8, 1e9, 2.8e9, 6.9e9, 12e9])
    fitted = ic.fit_sample_accuracy(sizes, truth.accuracy(sizes), spread=2.0)
    assert fitted.a == pytest.approx(truth.a, abs=1e-6) and fitted.b == pytest.approx(truth.b, abs=1e-6)


def test_plan_cli_inference_budget_json_equals_core(capsys):
    rc = main(["plan", "--inference-budget", "3e14", "--strategy", "best_of_n", "--sizes", "1e9", "7e9", "34e9",
               "--accuracy-law", "-1", "0.35", "1.5", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    core = ic.plan_inference(3e14, ic.SampleAccuracyLaw(-1, 0.35, 1.5), strategy="best_of_n", sizes=(1e9, 7e9, 34e9))
    got = out["inference_compute"]
    assert got["best"] == pytest.approx({"n_params": core.best.n_params, "samples": core.best.samples,
                                         "accuracy": core.best.accuracy, "flops": core.best.flops})
    assert len(got["table"]) == len(core.table) and "Wu et al. 2024" in out["citation"]
    main(["plan", "--inference-budget", "1e15", "--strategy", "best_of_n", "--accuracy-law", "0", "0.2", "0.5"])
    text = capsys.readouterr().out
    assert "best: 70.0M params × 13950 samples → accuracy 100.0%" in text  # core/format.py
    assert "(9 sizes tie; chose the smallest (cheapest) size within 1e-06 of the best accuracy)" in text
    main(["plan", "--inference-budget", "1e15", "--strategy", "best_of_n", "--json"])  # the default law
    accs = [c["accuracy"] for c in json.loads(capsys.readouterr().out)["inference_compute"]["table"]]
    assert len(accs) == 10 and max(accs) == pytest.approx(0.9702, abs=1e-4) and min(accs) == pytest.approx(0.6871, abs=1e-4)
    rc = main(["plan", "--inference-budget", "-5"])
    err = capsys.readouterr().err
    assert rc == 2 and "Inference budget" in err and len(err.strip().splitlines()) == 1


def test_planner_page_panel_shows_the_core_plan(db_url, monkeypatch):
    """The Planner page's inference-compute panel (AppTest), beside the Sardana & Frankle view."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    page = str(Path(__file__).resolve().parents[1] / "pages" / "planner.py")
    at = AppTest.from_file(page, default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    headers = [h.value for h in at.subheader]
    assert headers.index("Inference compute: model size vs samples (Wu et al. 2024)") == \
        headers.index("Inference-aware plan (Sardana & Frankle 2023)") + 1
    for budget, strategy in ((1e15, "majority"), (1e13, "best_of_n")):
        at.select_slider(key="planner_ic_budget").set_value(budget).run()
        at.radio(key="planner_ic_strategy").set_value(strategy).run()
        assert not at.exception
        assert_panel_shows(at, ic.plan_inference(budget, ic.SampleAccuracyLaw(), strategy=strategy))
    # the synthetic demo stores no evals: the fitted law is one error line, and no plan
    at.radio(key="planner_ic_law_source").set_value("evals").run()
    assert_panel_refuses(at, "No stored eval results with model sizes and an accuracy-like metric to fit the law to; "
                             "import some on the Evals page (lm-evaluation-harness results, or a table with n_params).")


def assert_panel_shows(at, plan: ic.InferenceComputePlan) -> None:
    """The inference-compute panel's metrics are ``plan``'s (AppTest)."""
    from core import format as fmt

    shown = {m.label: m.value for m in at.metric}
    assert shown["Best model size"] == fmt.count(plan.best.n_params)
    assert shown["Samples per problem"] == f"{plan.best.samples:,}"
    assert shown["Accuracy"] == f"{plan.best.accuracy:.1%}"


def assert_panel_refuses(at, message: str) -> None:
    """The panel shows one st.error line, ``message``, and no plan (AppTest)."""
    assert not at.exception, [e.value for e in at.exception]
    assert [e.value for e in at.error] == [message]
    assert "Best model size" not in {m.label for m in at.metric}


# ------------------------------------------------------------------ the law fitted to stored evals
TRUTH = ic.SampleAccuracyLaw(a=-0.7, b=0.45, spread=2.5)  # the synthetic ground truth the evals are drawn from
SIZES = (1.4e8, 4.1e8, 1e9, 2.8e9, 6.9e9, 12e9)


@pytest.fixture
def eval_url(db_url):
    """A store whose evals follow TRUTH exactly at each model's last checkpoint (an earlier checkpoint
    scores half as much), beside benchmarks the fit must refuse, and a model without a size."""
    import pandas as pd

    from db.store import Store
    from services.evals import store_evals

    def row(run, task, metric, value, step=2000.0):
        return {"run": run, "step": step, "task": task, "metric": metric, "value": value, "stderr": float("nan")}

    rows = []
    for i, n in enumerate(SIZES):
        run, acc = f"model-{i}", float(TRUTH.accuracy(n))
        rows += [row(run, "synthmath", "acc", acc / 2, step=1000.0), row(run, "synthmath", "acc", acc),
                 row(run, "synthmath", "ppl", 10.0), row(run, "twometrics", "acc", acc),
                 row(run, "twometrics", "acc_norm", acc), row(run, "solved", "acc", 1.0 if i == 5 else 0.5)]
    rows += [row("nosize", "synthmath", "acc", 0.3), row("nosize", "unsized", "acc", 0.3),
             row("model-0", "onesize", "acc", 0.3)]
    store = Store(db_url)
    store_evals(store, pd.DataFrame(rows), models=pd.DataFrame({"run": [f"model-{i}" for i in range(len(SIZES))],
                                                                "n_params": SIZES}), tags=("synthetic evals",))
    store.close()
    return db_url


def test_law_fitted_to_stored_evals_recovers_the_truth(eval_url):
    from db.store import Store
    from services.inference import fit_sample_law_from_evals, sample_law_benchmarks

    store = Store(eval_url)
    try:
        assert sample_law_benchmarks(store) == ["synthmath/acc", "twometrics/acc", "twometrics/acc_norm",
                                                "solved/acc"]  # fit-able first; one size / no sizes: not listed
        for name in ("synthmath/acc", "synthmath", "synthmath · acc"):  # a task alone: its one accuracy metric
            fitted = fit_sample_law_from_evals(store, name)
            assert (fitted.task, fitted.metric, fitted.benchmark) == ("synthmath", "acc", "synthmath/acc")
            assert fitted.law.a == pytest.approx(TRUTH.a, abs=1e-6) and fitted.law.b == pytest.approx(TRUTH.b, abs=1e-6)
            assert fitted.law.spread == 2.5 and fitted.rmse < 1e-8
        assert fitted.n_params == SIZES and fitted.accuracy == pytest.approx(list(TRUTH.accuracy(np.array(SIZES))))
        assert fitted.runs == tuple(f"model-{i}" for i in range(6)) and fitted.runs_without_params == ("nosize",)
        # the plan with the fitted law is the plan with the truth
        for strategy in ic.STRATEGIES:
            got, want = (ic.plan_inference(1e15, law, strategy=strategy) for law in (fitted.law, TRUTH))
            assert (got.best.n_params, got.best.samples) == (want.best.n_params, want.best.samples)
            assert got.best.accuracy == pytest.approx(want.best.accuracy, abs=1e-6)
        # another spread is held as given: a, b move to make up for it, and the fit is no longer exact
        narrow = fit_sample_law_from_evals(store, "synthmath/acc", spread=1.0)
        assert narrow.law.spread == 1.0 and 1e-6 < narrow.rmse < 1e-3 and narrow.law.b < TRUTH.b - 0.1
    finally:
        store.close()


@pytest.mark.parametrize("name, spread, words", [
    ("nope", 2.5, "No stored eval results for benchmark 'nope'; give task/metric, e.g. onesize/acc"),
    ("synthmath/ppl", 2.5, "synthmath/ppl is not an accuracy"),
    ("twometrics", 2.5, "Task 'twometrics' has the metrics acc, acc_norm; name one, e.g. twometrics/acc"),
    ("onesize/acc", 2.5, "onesize/acc has results for 1 model size with a parameter count; the fit needs at least 2"),
    ("unsized/acc", 2.5, "None of the 1 models with unsized/acc results has a positive parameter count"),
    ("solved/acc", 2.5, "solved/acc: model-5 scores 1 at its last checkpoint; the law needs accuracies strictly "
                        "between 0 and 1"),
    ("synthmath/acc", -1.0, "Difficulty spread -1.0 must be a number ≥ 0"),
], ids=["unknown", "not-accuracy", "two-metrics", "one-size", "no-sizes", "score-at-1", "bad-spread"])
def test_bad_benchmarks_give_one_line(eval_url, name, spread, words):
    from core.errors import InputError
    from db.store import Store
    from services.inference import fit_sample_law_from_evals

    store = Store(eval_url)
    try:
        with pytest.raises(InputError) as err:
            fit_sample_law_from_evals(store, name, spread)
    finally:
        store.close()
    assert words in str(err.value) and "\n" not in str(err.value)


def test_plan_cli_sample_law_from_evals(eval_url, capsys):
    rc = main(["plan", "--inference-budget", "1e15", "--sample-law-from-evals", "synthmath/acc", "--db", eval_url,
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    fit = out["sample_law_fit"]
    assert fit["a"] == pytest.approx(TRUTH.a, abs=1e-6) and fit["b"] == pytest.approx(TRUTH.b, abs=1e-6)
    assert fit["spread"] == 2.5 and fit["n_points"] == 6 and fit["n_sizes"] == 6 and fit["benchmark"] == "synthmath/acc"
    assert fit["runs_without_params"] == ["nosize"] and len(fit["points"]) == 6
    want = ic.plan_inference(1e15, TRUTH, strategy="majority")
    assert out["inference_compute"]["best"]["n_params"] == want.best.n_params
    assert out["inference_compute"]["best"]["samples"] == want.best.samples
    assert out["inference_compute"]["law"]["a"] == pytest.approx(TRUTH.a, abs=1e-6)
    rc = main(["plan", "--inference-budget", "1e15", "--sample-law-from-evals", "synthmath", "--sample-spread", "2.5",
               "--db", eval_url])
    text = capsys.readouterr().out
    assert rc == 0 and ("accuracy law fitted to synthmath/acc (6 models, 6 sizes 140M–12.0B, last checkpoints): "
                        "a = -0.7000, b = 0.4500, s = 2.500 (held)") in text
    for args, words in ((["--sample-law-from-evals", "solved/acc"], "model-5 scores 1"),
                        (["--sample-law-from-evals", "nope"], "No stored eval results for benchmark 'nope'"),
                        (["--sample-law-from-evals", "unsized"], "has a positive parameter count"),
                        (["--sample-law-from-evals", "onesize"], "the fit needs at least 2 sizes"),
                        (["--sample-law-from-evals", "synthmath", "--accuracy-law", "0", "1", "2"], "Give one accuracy law"),
                        (["--sample-spread", "2"], "--sample-spread is the spread held")):
        rc = main(["plan", "--inference-budget", "1e15", *args, "--db", eval_url])
        captured = capsys.readouterr()
        assert rc == 2 and captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured
        assert captured.err.startswith("error: ") and words in captured.err, captured.err
    rc = main(["plan", "--sample-law-from-evals", "synthmath", "--db", eval_url])
    assert rc == 2 and "give --inference-budget too" in capsys.readouterr().err


def test_planner_page_plans_with_the_law_fitted_to_evals(eval_url, monkeypatch):
    """The inference-compute panel's "fitted to stored evals" choice (AppTest): the fitted a, b and the
    benchmark shown, the plan of the fitted law; a benchmark the fit refuses is one st.error line."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCALESCOPE_DB_URL", eval_url)
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "planner.py"), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    at.radio(key="planner_ic_law_source").set_value("evals").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="planner_ic_benchmark").options == ["synthmath/acc", "twometrics/acc",
                                                                 "twometrics/acc_norm", "solved/acc"]
    fit_caption = [c.value for c in at.caption if "fitted to synthmath/acc" in c.value]
    assert len(fit_caption) == 1 and "a = -0.7000, b = 0.4500, s = 2.500 (held); 6 models, 6 sizes from 140M to " \
                                      "12.0B" in fit_caption[0] and "1 model(s) without a parameter count" in fit_caption[0]
    assert_panel_shows(at, ic.plan_inference(1e15, TRUTH, strategy="majority"))
    at.selectbox(key="planner_ic_benchmark").set_value("solved/acc").run()
    assert_panel_refuses(at, "solved/acc: model-5 scores 1 at its last checkpoint; the law needs accuracies strictly "
                             "between 0 and 1 (a logistic never reaches them): pick another benchmark.")
