"""Observational scaling (core/observational.py): PCA with missing values, capability scores,
per-family compute efficiency and back-tests, on synthetic data and the published base-model table."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core.downstream import DownstreamFitConfig
from core.errors import InputError
from core.observational import (
    PCAConfig, backtest_family_extrapolation, backtest_heldout_benchmark, benchmark_pca, eval_matrix,
    family_compute_efficiency,
)

REFERENCE = Path(__file__).resolve().parents[1] / "assets" / "reference"  # in the repo (assets/reference/README.md)
BENCHMARKS = ["MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "GSM8K", "XWinograd", "HumanEval"]


@pytest.fixture(scope="module")
def base_table() -> pd.DataFrame:
    table = pd.read_csv(REFERENCE / "obsscaling_base_llm_benchmark_eval.csv").set_index("Model")
    table["flops"] = table["FLOPs (1E21)"] * 1e21
    return table


@pytest.fixture(scope="module")
def base_pca(base_table):
    return benchmark_pca(base_table[BENCHMARKS])


def synthetic_matrix(seed: int = 0, n_models: int = 60, missing: float = 0.1):
    """Scores driven by one latent capability (plus a little noise): rank ~1 ground truth."""
    rng = np.random.default_rng(seed)
    capability = rng.normal(size=n_models)
    loadings = np.array([0.10, 0.08, 0.12, 0.05, 0.09, 0.07])
    truth = 0.5 + np.outer(capability, loadings) + rng.normal(0, 0.005, (n_models, loadings.size))
    observed = truth.copy()
    holes = rng.random(truth.shape) < missing
    holes[:, 0] = False  # keep every row usable
    observed[holes] = np.nan
    names = [f"m{i}" for i in range(n_models)]
    cols = [f"b{j}" for j in range(loadings.size)]
    return (pd.DataFrame(observed, index=names, columns=cols), pd.DataFrame(truth, index=names, columns=cols),
            capability, holes)


def test_synthetic_pca_fills_holes_and_recovers_the_latent_capability():
    observed, truth, capability, holes = synthetic_matrix()
    pca = benchmark_pca(observed)
    assert pca.imputation["n_missing"] == int(holes.sum()) > 0
    assert pca.imputation["converged"]
    assert pca.imputed.to_numpy().sum() == holes.sum()
    filled = pca.completed.to_numpy()[holes]
    assert np.max(np.abs(filled - truth.to_numpy()[holes])) < 0.03  # noise is 0.005, loadings ~0.1
    assert pca.explained_variance_ratio[0] > 0.95
    assert np.corrcoef(pca.capability.to_numpy(), capability)[0, 1] > 0.99  # sign fixed: higher = better
    assert (pca.loadings["PC1"] > 0).all()
    mean_filled = benchmark_pca(observed, PCAConfig(impute="mean"))
    err_mean = np.abs(mean_filled.completed.to_numpy()[holes] - truth.to_numpy()[holes]).mean()
    assert err_mean > 3 * np.abs(filled - truth.to_numpy()[holes]).mean()


def test_reference_pc1_explains_most_variance_and_reports_imputation(base_pca):
    assert base_pca.explained_variance_ratio[0] >= 0.80  # Ruan et al. 2024: PC1 ≈ 80%
    assert base_pca.explained_variance_ratio[:3].sum() > 0.95
    assert not base_pca.standardized  # all scores are fractions: raw PCA
    assert base_pca.imputation["n_missing"] == 40
    assert base_pca.imputation["per_benchmark"] == {"MMLU": 0, "ARC-C": 3, "HellaSwag": 0, "Winograd": 0,
                                                     "TruthfulQA": 0, "GSM8K": 0, "XWinograd": 16,
                                                     "HumanEval": 21}
    assert (base_pca.loadings["PC1"] > 0).all()  # every benchmark rises with capability
    z_scored = benchmark_pca(base_pca.completed, PCAConfig(standardize=True))
    assert 0.75 < z_scored.explained_variance_ratio[0] < base_pca.explained_variance_ratio[0]
    summary = json.loads(json.dumps(base_pca.to_dict()))
    assert len(summary["explained_variance_ratio"]) == 3 and len(summary["capability"]) == 148


def test_reference_capability_rises_with_compute_inside_families(base_table, base_pca):
    cap = base_pca.capability
    for family in ["Llama-2", "Qwen", "Qwen1.5", "Pythia", "OPT", "Llama-3.1", "BLOOM", "GPT-Neo/J"]:
        members = base_table[(base_table["Model Family"] == family) & base_table["flops"].notna()]
        ordered = cap[members.sort_values("flops").index].to_numpy()
        assert np.all(np.diff(ordered) > 0), f"{family}: capability not increasing with FLOPs: {ordered}"
    eff = family_compute_efficiency(cap, base_table["flops"], base_table["Model Family"])
    big = eff.table[eff.table["n_models"] >= 3]
    assert len(big) >= 20
    assert (big["spearman"] >= 0.8).mean() >= 0.85  # nearly every family: more compute, more capability
    assert (eff.table["slope"] > 0).mean() >= 0.9
    assert "RWKV" in eff.skipped and "Qwen2" in eff.skipped  # their FLOPs are not in the table
    assert "Qwen/Qwen2-72B" in eff.models_without_flops


def test_transform_projects_new_rows_even_with_holes(base_table, base_pca):
    some = base_table[BENCHMARKS].iloc[:5]
    complete = some.dropna()
    again = base_pca.transform(complete)
    assert again.to_numpy() == pytest.approx(base_pca.scores.loc[complete.index].to_numpy(), abs=1e-9)
    holey = complete.copy()
    holey.iloc[0, 0] = np.nan
    assert base_pca.transform(holey).iloc[0, 0] == pytest.approx(base_pca.capability.iloc[0], abs=0.1)


def test_reference_heldout_emergent_benchmark_backtest(base_table):
    emergent = pd.read_csv(REFERENCE / "obsscaling_base_llm_emergent_capability_eval.csv").set_index("Model")
    target = "arithmetic_2da_2_acc"
    matrix = base_table[BENCHMARKS].join(emergent[[target]], how="inner")
    bt = backtest_heldout_benchmark(matrix, target, base_table["flops"], n_components=2, floor=0.0,
                                    fit_config=DownstreamFitConfig(n_bootstrap=10))
    test = bt.predictions[bt.predictions["split"] == "test"]
    assert len(test) > 20 and (test["flops"] > bt.cutoff_flops).all()
    assert bt.mae_test < 0.05  # measured 0.005: larger models predicted from the smaller ones
    assert bt.explained_variance_ratio[0] > 0.75


def test_reference_family_extrapolation_backtest(base_table, base_pca):
    fb = backtest_family_extrapolation(base_pca, base_table["flops"], base_table["Model Family"])
    preds = fb.predictions.set_index("family")
    assert abs(preds.loc["Pythia", "capability_error"]) < 0.05
    assert abs(preds.loc["Llama-2", "capability_error"]) < 0.1
    assert fb.mae_benchmark < 0.08  # measured 0.056 over 23 held-out largest models
    assert "Qwen2" in fb.skipped
    assert np.isnan(fb.benchmark_errors.loc["meta-llama/Meta-Llama-3.1-405B-FP8", "XWinograd"]) \
        == bool(base_pca.imputed.loc["meta-llama/Meta-Llama-3.1-405B-FP8", "XWinograd"])


def test_eval_matrix_pivots_long_rows_at_the_last_step():
    evals = pd.DataFrame({
        "run": ["a", "a", "a", "a", "b", "b"],
        "step": [100, 200, 200, 200, np.nan, np.nan],
        "task": ["arc", "arc", "arc", "piqa", "arc", "piqa"],
        "metric": ["acc", "acc", "acc_norm", "acc", "acc", "acc"],
        "value": [0.2, 0.3, 0.35, 0.6, 0.4, 0.7],
    })
    m = eval_matrix(evals)
    assert m.loc["a", "arc"] == 0.3 and m.loc["a", "piqa"] == 0.6  # the metric both runs have, last step
    assert m.loc["b", "arc"] == 0.4
    assert eval_matrix(evals, metric="acc_norm").loc["a", "arc"] == 0.35


def test_bad_inputs_give_clear_messages(base_table):
    no_flops = pd.Series(np.nan, index=base_table.index)
    with pytest.raises(InputError, match="no model has FLOPs"):
        backtest_heldout_benchmark(base_table[BENCHMARKS], "MMLU", no_flops)
    with pytest.raises(InputError, match="not a column"):
        backtest_heldout_benchmark(base_table[BENCHMARKS], "BBH", base_table["flops"])
    with pytest.raises(InputError, match="non-numeric"):
        benchmark_pca(pd.DataFrame({"a": ["x", "0.2", "0.3"], "b": [0.1, 0.2, 0.3]}))
    with pytest.raises(InputError, match="at least 3 models"):
        benchmark_pca(pd.DataFrame({"a": [0.1, 0.2], "b": [0.3, 0.4]}))
    with pytest.raises(InputError, match="at least 2 benchmark"):
        benchmark_pca(pd.DataFrame({"a": [0.1, 0.2, 0.3]}))


def test_benchmarks_of_dropped_models_only_are_dropped_too():
    """A benchmark scored only by models that PCA drops (too few scores) must not reach the SVD."""
    rng = np.random.default_rng(3)
    skill = rng.uniform(0.2, 0.9, size=12)
    table = pd.DataFrame({f"b{j}": np.clip(skill + rng.normal(0, 0.03, 12), 0, 1) for j in range(4)},
                         index=[f"m{i}" for i in range(12)])
    table["only_sparse"] = np.nan
    sparse = pd.DataFrame({"only_sparse": [0.5, 0.6]}, index=["s0", "s1"])
    result = benchmark_pca(pd.concat([table, sparse]))
    assert "only_sparse" not in list(result.benchmarks)
    assert sorted(result.dropped_models) == ["s0", "s1"]
    assert result.explained_variance_ratio[0] > 0.8
