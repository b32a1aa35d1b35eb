"""CLI: `evals import` and `evals pca`, as a user runs them (real subprocesses), plus bad input
through cli.main in this process (exit 2, one line on stderr, the store unchanged): every CLI
start imports scipy/pandas, seconds on a busy machine, so only the two main paths pay for one."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

import cli
from db.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db_url(any_db_url):
    """The tests that import into or read the store run on both engines (tests/conftest.py)."""
    return any_db_url


def run_cli(*args):
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def table_counts(db_url: str) -> tuple:
    store = Store(db_url)
    try:
        with store.read() as conn:
            return (conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one(),
                    conn.execute(sa.text("SELECT count(*) FROM evals")).scalar_one())
    finally:
        store.close()  # DuckDB: one process per file — let the next CLI process open it


def test_import_reference_tables_then_bad_file_exits_2_and_changes_nothing(db_url, reference_dir, tmp_path, capsys):
    files = [str(reference_dir / name) for name in ("pythia_v1_zero_shot_evals.csv",
                                                    "obsscaling_base_llm_benchmark_eval.csv",
                                                    "obsscaling_base_llm_emergent_capability_eval.csv")]
    proc = run_cli("evals", "import", *files, "--db", db_url, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    # 16 Pythia runs × 27 checkpoints × 9 scores; 1144 base scores (40 empty cells); 613 emergent
    assert out["rows"] == 3888 + 1144 + 613
    assert (out["runs_created"], out["runs_matched"]) == (16 + 148, 0)  # emergent models = base models
    assert out["source_format"] == "csv_wide" and len(out["source_files"]) == 3
    assert table_counts(db_url) == (164, 5645)

    # the harness file without 'results' goes through cli.main in this process (a CLI start costs
    # seconds); the subprocess path of an error is the same `error: …` line and exit status 2
    bad = tmp_path / "results_2024.json"
    bad.write_text(json.dumps({"config": {"model_args": "pretrained=EleutherAI/pythia-160m"}, "versions": {}}))
    assert cli.main(["evals", "import", str(bad), "--db", db_url]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "has no 'results' key" in captured.err and captured.out == ""
    assert table_counts(db_url) == (164, 5645)


def test_pca_of_the_reference_base_models(reference_dir):
    proc = run_cli("evals", "pca", "--csv", str(reference_dir / "obsscaling_base_llm_benchmark_eval.csv"), "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    ratio = out["explained_variance_ratio"]
    assert isinstance(ratio, list) and len(ratio) == 3
    assert ratio[0] >= 0.8  # Ruan et al. 2024: PC1 ≈ 80% on their base models (measured 0.851)
    assert ratio == sorted(ratio, reverse=True)
    assert set(out["loadings"]) == {"MMLU", "ARC-C", "HellaSwag", "Winograd", "TruthfulQA", "GSM8K",
                                    "XWinograd", "HumanEval"}
    assert all(row["PC1"] > 0 for row in out["loadings"].values())  # higher capability = better scores
    scores = out["capability_score"]
    assert len(scores) == 148
    assert scores["meta-llama/Llama-2-70b-hf"] > scores["meta-llama/Llama-2-13b-hf"] > scores["meta-llama/Llama-2-7b-hf"]
    assert out["imputation"]["n_missing"] == 40
    families = {row["family"]: row for row in out["family_efficiency"]["table"]}
    assert families["Llama-2"]["slope"] > 0 and families["Llama-2"]["n_models"] == 3


def test_import_text_output_pca_from_store_and_bad_inputs_in_process(db_url, tmp_path, capsys):
    wide = tmp_path / "board.csv"
    wide.write_text("model,family,params,flops,MMLU,ARC,HellaSwag\n"
                    "a-1,A,1e9,1e21,0.30,0.35,0.50\n"
                    "a-2,A,2e9,4e21,0.36,0.42,0.58\n"
                    "a-3,A,4e9,1.6e22,0.44,0.50,0.66\n"
                    "b-1,B,1e9,3e21,0.33,0.37,0.55\n")
    assert cli.main(["evals", "import", str(wide), "--db", db_url]) == 0
    assert capsys.readouterr().out.strip() == "stored 12 eval rows (csv_wide, 3 tasks): 0 run(s) matched, 4 created"

    assert cli.main(["evals", "pca", "--db", db_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["models"] == ["a-1", "a-2", "a-3", "b-1"] and out["explained_variance_ratio"][0] > 0.9
    assert out["capability_score"]["a-3"] > out["capability_score"]["a-2"] > out["capability_score"]["a-1"]

    store = Store(db_url)
    before = (store.runs()["name"].tolist(), len(store.runs()))
    percent = tmp_path / "percent.csv"
    percent.write_text("run,task,metric,value\nc-1,arc_easy,acc,43.5\n")
    one_column = tmp_path / "one.csv"
    one_column.write_text("model,MMLU\nx,0.3\ny,0.4\nz,0.5\n")
    cases = [
        (["evals", "import", str(percent), "--db", db_url], "outside [0, 1]"),
        (["evals", "import", str(tmp_path / "missing.json"), "--db", db_url], "does not exist"),
        (["evals", "pca", "--csv", str(one_column)], "at least 2 benchmark columns"),
        (["evals", "pca", "--csv", str(wide), "--components", "0"], "--components must be at least 1"),
    ]
    for argv, message in cases:
        assert cli.main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1 and message in captured.err
    assert (store.runs()["name"].tolist(), len(store.runs())) == before
