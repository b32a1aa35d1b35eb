"""Eval results in the store (db/evals.py): attach to runs by name and step, create model entries
with their sizes, read back with tokens/FLOPs/loss at each eval's step, store and reload fits,
and leave the store unchanged on bad input."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import InputError
from services.evals import (
    fit_points, import_eval_paths, import_eval_uploads, load_eval_fit, load_evals, pca_matrix, save_eval_fit,
    scaling_points, store_evals,
)
from db.fits import list_fits
from importers.base import ParsedRun

RUN = "ft-125m"
TOKENS_PER_STEP = 1000.0
N_PARAMS = 1.25e8


def training_run() -> ParsedRun:
    """A logged training run: loss every 10 steps up to step 200."""
    steps = np.arange(0, 201, 10, dtype=float)
    tokens = steps * TOKENS_PER_STEP
    return ParsedRun(name=RUN, source_format="csv_long", n_params=N_PARAMS, n_active_params=N_PARAMS,
                     tokens_per_step=TOKENS_PER_STEP, tokens=tokens[-1], flops=6 * N_PARAMS * tokens[-1],
                     metrics=pd.DataFrame({"name": "loss", "step": steps, "tokens": tokens,
                                           "flops": 6 * N_PARAMS * tokens, "wall_time": steps,
                                           "value": 5.0 - steps / 100.0}))


def harness_results(run: str, revision: str, acc: float) -> dict:
    """The keys lm-evaluation-harness 0.4 writes in results_<date>.json."""
    return {
        "results": {"arc_easy": {"alias": "arc_easy", "acc,none": acc, "acc_stderr,none": 0.01,
                                 "acc_norm,none": acc - 0.02, "acc_norm_stderr,none": 0.01}},
        "versions": {"arc_easy": 1.0}, "n-shot": {"arc_easy": 0},
        "config": {"model": "hf", "model_args": f"pretrained={run},revision={revision},dtype=float",
                   "batch_size": "16"},
        "model_name": run, "model_revision": revision,
    }


def counts(store) -> tuple:
    with store.read() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM evals")).scalar_one(),
                conn.execute(sa.text("SELECT string_agg(coalesce(config, ''), '|' ORDER BY id) FROM runs")).scalar_one())


def test_harness_and_long_csv_attach_to_a_training_run_by_name_and_step(store, tmp_path):
    store.ingest([training_run()])
    results = tmp_path / "results_2024-06-01.json"
    results.write_text(json.dumps(harness_results(RUN, "step100", 0.41)))
    out = import_eval_paths(store, [str(results)])
    assert (out["rows"], out["runs_matched"], out["runs_created"], out["matched"]) == (2, 1, 0, [RUN])

    long_csv = tmp_path / "long.csv"
    long_csv.write_text("run,step,task,metric,value,stderr\n"
                        f"{RUN},155,arc_easy,acc,0.43,0.01\n"
                        f"{RUN},,arc_easy,acc,0.45,\n")
    assert import_eval_paths(store, [str(long_csv)])["rows"] == 2

    evals = load_evals(store).set_index(["metric", "step"], drop=False)
    at_100 = evals.loc[("acc", 100.0)]
    assert at_100["value"] == 0.41 and at_100["stderr"] == 0.01
    assert at_100["loss"] == pytest.approx(4.0)  # the logged loss at step 100
    assert at_100["tokens"] == 100 * TOKENS_PER_STEP
    assert at_100["flops"] == pytest.approx(6 * N_PARAMS * 100 * TOKENS_PER_STEP)
    at_155 = evals.loc[("acc", 155.0)]
    assert at_155["loss"] == pytest.approx(3.5)  # latest logged step ≤ 155 is 150
    assert at_155["tokens"] == 155 * TOKENS_PER_STEP  # 150's tokens would be wrong: step × tokens/step
    final = evals[(evals["metric"] == "acc") & evals["step"].isna()].iloc[0]
    assert final["loss"] == pytest.approx(3.0) and final["tokens"] == 200 * TOKENS_PER_STEP
    assert len(store.runs()) == 1  # attached, nothing created


def test_eval_past_the_runs_last_logged_step_is_refused_and_store_unchanged(store, tmp_path):
    store.ingest([training_run()])
    before = counts(store)
    results = tmp_path / "results.json"
    results.write_text(json.dumps(harness_results(RUN, "step5000", 0.5)))
    with pytest.raises(InputError, match=r"logged steps up to 200 but an eval is at step 5000"):
        import_eval_paths(store, [str(results)])
    assert counts(store) == before


def test_wide_csv_creates_models_with_sizes_family_and_reimport_replaces(store, tmp_path):
    wide = tmp_path / "leaderboard.csv"
    wide.write_text("Model,Model Family,Model Size (B),Pretraining Data Size (T),MMLU,ARC-C\n"
                    "a-1b,A,1,0.5,0.30,0.35\n"
                    "a-7b,A,7,0.5,0.45,0.50\n"
                    "b-3b,B,3,2,0.40,\n")
    out = import_eval_paths(store, [str(wide)])
    assert (out["rows"], out["runs_created"], out["runs_matched"]) == (5, 3, 0)
    runs = store.runs().set_index("name")
    assert runs.loc["a-7b", "n_params"] == 7e9 and runs.loc["a-7b", "tokens"] == 0.5e12
    assert runs.loc["a-7b", "flops"] == pytest.approx(6 * 7e9 * 0.5e12)  # no FLOPs column: 6ND
    assert runs.loc["a-7b", "flops_rule"] == "6*N*D" and runs.loc["a-7b", "source_format"] == "evals"
    evals = load_evals(store)
    assert dict(zip(evals["run"], evals["family"])) == {"a-1b": "A", "a-7b": "A", "b-3b": "B"}
    assert evals.loc[evals["run"] == "b-3b", "flops"].iloc[0] == pytest.approx(6 * 3e9 * 2e12)

    wide.write_text("Model,MMLU\na-7b,0.47\n")  # a corrected score: replaces, keeps the sizes
    again = import_eval_paths(store, [str(wide)])
    assert (again["rows"], again["rows_replaced"], again["runs_matched"], again["runs_created"]) == (1, 1, 1, 0)
    evals = load_evals(store)
    assert len(evals) == 5
    assert evals[(evals["run"] == "a-7b") & (evals["task"] == "MMLU")]["value"].tolist() == [0.47]
    assert store.runs().set_index("name").loc["a-7b", "n_params"] == 7e9


def test_upload_of_harness_results_without_sizes_then_sizes_fill_in(store):
    doc = harness_results("EleutherAI/pythia-160m", "step143000", 0.44)
    out = import_eval_uploads(store, [("results.json", json.dumps(doc).encode())])
    assert out["created"] == ["EleutherAI/pythia-160m"] and out["source_format"] == "lm_eval_harness"
    evals = load_evals(store)
    assert evals["step"].tolist() == [143000.0, 143000.0] and evals["flops"].isna().all()
    sizes = pd.DataFrame({"run": ["EleutherAI/pythia-160m"], "family": ["Pythia"], "n_params": [1.62e8],
                          "n_nonembedding_params": [np.nan], "tokens": [3e11], "flops": [np.nan]})
    store_evals(store, evals[["run", "step", "task", "metric", "value", "stderr"]], sizes)
    row = store.runs().iloc[0]
    assert row["n_params"] == 1.62e8 and row["tokens"] == 3e11 and json.loads(row["config"])["family"] == "Pythia"


@pytest.mark.parametrize("evals, models, message", [
    (pd.DataFrame({"run": ["m"], "step": [np.nan], "task": ["arc"], "metric": ["acc"], "value": [43.0],
                   "stderr": [np.nan]}), None, r"outside \[0, 1\].*divide percentages by 100"),
    (pd.DataFrame({"run": ["m"], "step": [np.nan], "task": ["arc"], "metric": ["acc"], "value": [np.nan],
                   "stderr": [np.nan]}), None, "missing, NaN or infinite"),
    (pd.DataFrame({"run": ["m", "m"], "step": [1.0, 1.0], "task": ["arc"] * 2, "metric": ["acc"] * 2,
                   "value": [0.1, 0.2], "stderr": [np.nan] * 2}), None, "given twice"),
    (pd.DataFrame({"run": ["new"], "step": [np.nan], "task": ["arc"], "metric": ["acc"], "value": [0.3],
                   "stderr": [np.nan]}),
     pd.DataFrame({"run": ["new"], "n_params": [-5.0]}), "n_params must be a positive"),
    (pd.DataFrame({"run": ["m"], "task": ["arc"], "metric": ["acc"], "value": [0.3]}), None, "lack the column 'step'"),
])
def test_bad_rows_raise_and_leave_the_store_unchanged(store, evals, models, message):
    store.ingest([training_run()])
    store_evals(store, pd.DataFrame({"run": [RUN], "step": [10.0], "task": ["arc"], "metric": ["acc"],
                                     "value": [0.3], "stderr": [0.01]}))
    before = counts(store)
    with pytest.raises(InputError, match=message):
        store_evals(store, evals, models)
    assert counts(store) == before


def test_results_file_without_results_is_refused(store, tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({"config": {"model_args": "pretrained=x"}}))
    with pytest.raises(InputError, match="no 'results' key"):
        import_eval_paths(store, [str(bad)])
    assert counts(store)[:2] == (0, 0)


def test_reference_tables_import_with_checkpoints_and_families(store, reference_dir):
    pythia = import_eval_paths(store, [str(reference_dir / "pythia_v1_zero_shot_evals.csv")])
    assert (pythia["rows"], pythia["runs_created"]) == (16 * 27 * 9, 16)  # 9 scores: 8 accuracies + LAMBADA ppl
    base = import_eval_paths(store, [str(reference_dir / "obsscaling_base_llm_benchmark_eval.csv")])
    assert (base["rows"], base["runs_created"], base["runs_matched"]) == (1144, 148, 0)  # 40 of 1184 cells empty
    emergent = import_eval_paths(store, [str(reference_dir / "obsscaling_base_llm_emergent_capability_eval.csv")])
    assert (emergent["rows"], emergent["runs_created"], emergent["runs_matched"]) == (613, 0, 84)

    runs = store.runs().set_index("name")
    assert runs.loc["pythia-160m", "tokens_per_step"] == 2_097_152  # constant tokens per checkpoint step
    evals = load_evals(store)
    row = evals[(evals["run"] == "pythia-160m") & (evals["step"] == 33000) & (evals["task"] == "piqa")].iloc[0]
    assert row["tokens"] == 33000 * 2_097_152
    assert row["flops"] == pytest.approx(6 * 162322944 * 33000 * 2_097_152, rel=1e-9)  # the file's 6ND
    llama = evals[evals["run"] == "meta-llama/Llama-2-7b-hf"]
    assert set(llama["family"]) == {"Llama-2"} and llama["flops"].iloc[0] == pytest.approx(84e21)
    assert len(llama) == 16  # 8 base benchmarks + 8 emergent scores, one run

    # PCA table: Pythia's tasks belong only to the Pythia runs, which have too few of the 23 tasks
    matrix, lower, sparse = pca_matrix(evals)
    assert lower == ["lambada_openai ppl"]
    assert set(sparse) == {"arc_challenge", "arc_easy", "lambada_openai", "logiqa", "piqa", "sciq",
                           "winogrande", "wsc"}
    assert "MMLU" in matrix.columns and "pythia-160m" in matrix.index


def test_scaling_points_fit_store_and_reload(store, reference_dir):
    import_eval_paths(store, [str(reference_dir / "obsscaling_base_llm_benchmark_eval.csv")])
    evals = load_evals(store)
    points, missing = scaling_points(evals, "MMLU", "score", "flops")
    assert len(points) == 123 and len(missing["runs_without_x"]) == 25  # the table gives no FLOPs for 25
    assert "Qwen/Qwen2-72B" in missing["runs_without_x"]
    assert points["group"].nunique() == 39  # families with FLOPs (checked against the CSV)
    fit = fit_points(points, "sigmoid", "flops", floor=0.25, n_bootstrap=20)
    assert fit.x_transform == "log10" and fit.params["floor"] == 0.25
    assert 0.6 < fit.params["ceiling"] <= 1.0 and fit.params["w"] > 0
    fit_id = save_eval_fit(store, fit, task="MMLU", metric="score", x="flops",
                           selection={"runs": sorted(points["run"])})
    stored = list_fits(store).set_index("id").loc[fit_id]
    assert stored["target"] == "MMLU/score" and stored["law"] == "sigmoid_floor_ceiling"
    assert stored["selection"]["x"] == "flops" and len(stored["selection"]["runs"]) == 123
    assert set(stored["intervals"]) == {"floor", "ceiling", "w", "w0"}
    again = load_eval_fit(store, fit_id)
    forecast, reloaded = fit.predict_interval([1e24]), again.predict_interval([1e24])
    assert reloaded.value == pytest.approx(forecast.value) and reloaded.lower == pytest.approx(forecast.lower)
    assert forecast.lower[0] < forecast.value[0] < forecast.upper[0]
    with pytest.raises(InputError, match="Unknown x-axis"):
        scaling_points(evals, "MMLU", "score", "depth")
