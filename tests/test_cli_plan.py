"""`python cli.py plan` (issue 4): the numbers core/planner.py computes, as JSON; bad input → exit 2."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from core import format as fmt
from core.accelerators import budget_from_accelerators
from core.inference_aware import inference_optimum, inference_optimum_for_model
from core.laws import ChinchillaParams
from core.planner import bootstrap_bands, chinchilla_optimum, moe_optimum
from core.presets import get_preset

ROOT = Path(__file__).resolve().parents[1]
FITTED = ChinchillaParams(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)


@pytest.fixture
def db_url(any_db_url):
    """The tests that plan from a stored fit run on both engines (tests/conftest.py)."""
    return any_db_url


def cli(*args: str, db_url: str | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "cli.py", "plan", *args] + (["--db", db_url] if db_url else [])
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


def cli_json(*args: str, db_url: str | None = None) -> dict:
    done = cli(*args, "--json", db_url=db_url)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def assert_one_line_error(done: subprocess.CompletedProcess, words: str) -> None:
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr
    assert done.stdout == ""


def in_process(capsys, *args: str) -> subprocess.CompletedProcess:
    """cli.main in this process (no interpreter start-up): the same parser, handler and error path."""
    import cli

    code = cli.main(["plan", *args])
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(args, code, captured.out, captured.err)


@pytest.fixture
def fit_ids(store, db_url):
    """Two stored fits: one with bootstrap samples (in diagnostics), one with α ≤ 0."""
    from db.fits import save_fit

    rng = np.random.default_rng(7)
    centre = np.array([FITTED.E, FITTED.A, FITTED.B, FITTED.alpha, FITTED.beta])
    samples = (centre * (1 + 0.02 * rng.standard_normal((300, 5)))).tolist()
    common = dict(law="chinchilla", method="approach3", target="final loss", selection={}, settings={},
                  intervals={})
    good = save_fit(store, params=dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36),
                    diagnostics={"bootstrap_samples": samples}, **common)
    broken = save_fit(store, params=dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.0), diagnostics={}, **common)
    store.close()  # the CLI opens the file in its own process
    return {"good": good, "broken": broken, "samples": samples}


def test_hoffmann_unrounded_at_chinchilla_budget():
    out = cli_json("--flops", "5.76e23", "--preset", "hoffmann_unrounded")
    expected = chinchilla_optimum(5.76e23, get_preset("hoffmann_unrounded").params)
    assert out["n_params"] == pytest.approx(40.3e9, rel=2e-3)  # Hoffmann et al.'s Approach 3: ≈ 40B
    assert out["n_params"] == pytest.approx(expected.n_params, rel=1e-12)
    assert out["tokens"] == pytest.approx(expected.tokens, rel=1e-12)
    assert out["tokens_per_param"] == pytest.approx(expected.tokens_per_param, rel=1e-12)
    assert out["loss"] == pytest.approx(expected.loss, rel=1e-12)
    assert out["flops"] == 5.76e23
    assert out["intervals"] is None and out["law"]["key"] == "hoffmann_unrounded"


def test_stored_fit_gives_bootstrap_bounds(fit_ids, db_url, capsys):
    out = cli_json("--flops", "1e23", "--fit", str(fit_ids["good"]), db_url=db_url)
    assert out["n_params"] == pytest.approx(chinchilla_optimum(1e23, FITTED).n_params, rel=1e-12)
    intervals, used = bootstrap_bands(1e23, fit_ids["samples"], 0.95)
    assert out["interval_samples"] == used == 300 and out["interval_level"] == 0.95
    for key in ("n_params", "tokens", "tokens_per_param", "loss"):
        assert out["intervals"][key] == pytest.approx(list(intervals[key]), rel=1e-12)
    lo, hi = out["intervals"]["n_params"]
    assert lo < out["n_params"] < hi

    # α or β ≤ 0 in a stored fit: the planner's message, exit 2.
    broken = in_process(capsys, "--flops", "1e23", "--fit", str(fit_ids["broken"]), "--db", db_url)
    assert_one_line_error(broken, "β = 0")
    assert_one_line_error(in_process(capsys, "--flops", "1e23", "--fit", "999", "--db", db_url), "No fit with id 999")


def test_inference_tokens_sardana_frankle_example():
    law = get_preset("sardana_frankle").params
    out = cli_json("--flops", "1e23", "--preset", "sardana_frankle", "--inference-tokens", "2e12",
                   "--reference-params", "13e9")
    aware = out["inference"]
    assert aware["n_params"] == pytest.approx(7e9, rel=0.02)  # Sardana & Frankle 2023: ≈ 7B …
    assert aware["tokens"] == pytest.approx(1.25e12, rel=0.02)  # … on ≈ 1.25T tokens …
    assert aware["flops_saving"] == pytest.approx(0.17, abs=0.01)  # … saving ≈ 17 %
    assert aware["n_params"] == pytest.approx(inference_optimum_for_model(13e9, 2e12, law).n_params, rel=1e-12)

    # Default target: the loss of this budget's compute-optimal model.
    out = cli_json("--flops", "1e23", "--inference-tokens", "1e13")
    epoch = get_preset("epoch").params
    expected = inference_optimum(chinchilla_optimum(1e23, epoch).loss, 1e13, epoch)
    assert out["inference"]["n_params"] == pytest.approx(expected.n_params, rel=1e-12)
    assert out["inference"]["n_params"] < out["n_params"]  # inference demand favours a smaller model


def test_accelerator_budget_cost_and_experts():
    out = cli_json("--accelerator", "H100", "--count", "1024", "--days", "30", "--mfu", "0.4", "--price", "2.5",
                   "--experts", "8")
    budget = budget_from_accelerators("H100 SXM", 1024, 30, 0.4, price_per_hour=2.5)
    assert out["flops"] == pytest.approx(989.5e12 * 1024 * 30 * 86_400 * 0.4, rel=1e-12)
    assert out["budget"]["cost"] == pytest.approx(1024 * 30 * 24 * 2.5) == budget.cost
    epoch = get_preset("epoch").params
    assert out["n_params"] == pytest.approx(chinchilla_optimum(budget.flops, epoch).n_params, rel=1e-12)
    moe = moe_optimum(budget.flops, epoch, get_preset("clark_sbase").params, 8)
    assert out["moe"]["n_active_params"] == pytest.approx(moe.n_active_params, rel=1e-12)
    assert out["moe"]["n_total_params"] > out["moe"]["n_effective_params"] > out["moe"]["n_active_params"]


def test_text_output_names_the_numbers(capsys):
    done = in_process(capsys, "--flops", "1e22", "--preset", "epoch")
    assert done.returncode == 0, done.stderr
    expected = chinchilla_optimum(1e22, get_preset("epoch").params)
    assert f"n_params (N*)     {fmt.count(expected.n_params)}" in done.stdout  # the app's format: 1.23B
    assert "Besiroglu et al. 2024" in done.stdout


def test_bad_input_in_a_real_process_exits_2_with_one_line():
    assert_one_line_error(cli("--flops", "-1"), "must be positive")


@pytest.mark.parametrize("args, words", [
    (["--flops", "1e40"], "outside the plannable range"),
    (["--flops", "lots"], "is not a number"),
    (["--flops", "1e23", "--preset", "nope"], "Unknown law preset"),
    (["--flops", "1e23", "--preset", "kaplan", "--inference-tokens", "1e12"], "needs a Chinchilla law"),
    (["--flops", "1e23", "--inference-tokens", "1e12", "--target-loss", "1.5"], "irreducible loss"),
    (["--flops", "1e23", "--accelerator", "H100"], "either --flops"),
    (["--accelerator", "H100", "--count", "8"], "missing --days"),
    ([], "No budget"),
])
def test_bad_input_exits_2_with_one_line(capsys, args, words):
    assert_one_line_error(in_process(capsys, *args), words)


def test_compare_moe_prints_the_pages_table(capsys):
    """plan --compare-moe: core.planner.compare_moe_laws as JSON (a real process), and the Planner page's
    table (core.planner.moe_comparison_table) as text, at 1e22 FLOPs: Krajewski et al.'s best G = 32 has
    9.07B active parameters on 166B tokens, Clark et al.'s 64 experts 2.21B on 753B, the dense law 5.16B on 323B."""
    from core.planner import compare_moe_laws, moe_comparison_table

    out = cli_json("--flops", "1e22", "--compare-moe")
    want = compare_moe_laws(1e22)
    for view in ("krajewski_best", "krajewski_g1", "clark_routed", "dense_chinchilla"):
        for key in ("tokens", "tokens_per_param", "loss"):
            assert out["compare_moe"][view][key] == pytest.approx(want[view][key], rel=1e-12), (view, key)
    assert out["compare_moe"]["krajewski_best"]["granularity"] == 32
    assert out["compare_moe"]["krajewski_best"]["n_active_params"] == pytest.approx(9.07e9, rel=2e-3)
    assert out["table"] == moe_comparison_table(want) and "Wang et al. 2024" in out["compare_moe"]["wang_2024"]
    done = in_process(capsys, "--flops", "1e22", "--compare-moe")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "MoE views at 1.00e22 FLOPs (Krajewski et al. 2024: published constants):"
    assert lines[2].split() == ["Krajewski", "et", "al.", "2024,", "best", "G", "9.07B", "166B", "18.3", "32", "2,048",
                                "32"]
    assert lines[4].split()[-6:] == ["2.21B", "753B", "340.4", "1", "64", "1"]
    assert lines[5].split()[-6:] == ["5.16B", "323B", "62.6", "—", "—", "—"]
    assert "compare allocations, not losses" in done.stdout and "note: Wang et al. 2024" in done.stdout
    # another expansion rate E: Clark et al.'s expert count follows it, and the fit's E = 64 is flagged
    done = in_process(capsys, "--flops", "1e22", "--compare-moe", "--expansion", "16", "--json")
    got = json.loads(done.stdout)["compare_moe"]
    assert got["clark_routed"]["n_experts"] == 16 and got["krajewski_g1"]["n_experts"] == 16
    assert got["krajewski_best"]["notes"] == ["E = 16: the published constants were fitted at E = 64."]
    assert_one_line_error(in_process(capsys, "--flops", "1e22", "--compare-moe", "--preset", "epoch"), "drop --preset")
    assert_one_line_error(in_process(capsys, "--flops", "1e40", "--compare-moe"), "outside the plannable range")
    assert_one_line_error(in_process(capsys, "--compare-moe"), "No budget")


def test_fit_for_planner_reads_samples_wherever_the_fit_keeps_them():
    from core.law_choice import fit_for_planner

    params = dict(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)
    row = [1.8, 480.0, 2000.0, 0.35, 0.36]
    # FitResult.to_dict() layout: samples at the top level, columns named by param_names.
    top = fit_for_planner({"law": "chinchilla", "params": params, "bootstrap_samples": [row[::-1]],
                           "param_names": ["beta", "alpha", "B", "A", "E"]})
    assert top["bootstrap_samples"] == [row]
    # db.fits.save_fit layout: samples inside diagnostics, already [E, A, B, alpha, beta].
    assert fit_for_planner({"params": params, "diagnostics": {"bootstrap_samples": [row]}})["bootstrap_samples"] == [row]
    # A law whose samples are not Chinchilla's five parameters gives no bands, not wrong ones.
    routed = fit_for_planner({"params": {"a": -0.08}, "bootstrap_samples": [[1, 2]], "param_names": ["a", "b"]})
    assert routed["bootstrap_samples"] is None


def test_a_data_constrained_fit_plans_with_unique_tokens(store, db_url, capsys):
    """Muennighoff et al. 2023's law from a stored fit, through the registry: --unique-tokens is its U_D."""
    from core.laws import DataConstrainedParams
    from core.planner import data_constrained_optimum
    from db.fits import save_fit

    params = dict(E=1.87, A=521.0, B=1488.0, alpha=0.353, beta=0.353, r_star_d=15.4, r_star_n=5.3)
    fit_id = save_fit(store, law="data_constrained", method="huber_log", target="final loss", selection={},
                      settings={}, intervals={}, params=params, diagnostics={})
    store.close()
    law = DataConstrainedParams(chinchilla=ChinchillaParams(E=1.87, A=521.0, B=1488.0, alpha=0.353, beta=0.353),
                                r_star_d=15.4, r_star_n=5.3)
    done = in_process(capsys, "--flops", "1e23", "--fit", str(fit_id), "--unique-tokens", "5e10", "--db", db_url,
                      "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    expected = data_constrained_optimum(1e23, law, 5e10)
    assert out["n_params"] == pytest.approx(expected.n_params, rel=1e-12)
    assert out["method"] == "iso_flop_search"
    assert_one_line_error(in_process(capsys, "--flops", "1e23", "--fit", str(fit_id), "--db", db_url),
                          "needs unique_tokens")
