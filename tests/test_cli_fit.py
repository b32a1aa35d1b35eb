"""CLI `fit` and `fits`: Epoch AI's Chinchilla table through --csv reproduces Besiroglu et al. 2024
(a real subprocess, with its progress bar), stored runs by name, and bad input → exit 2, one line,
nothing stored (in-process `cli.main`, which is what the subprocess runs, to keep the file fast)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from db.fits import list_fits
from db.store import Store

ROOT = Path(__file__).resolve().parents[1]
# Besiroglu et al. 2024, Table 1: estimate and standard error.
PUBLISHED = {"E": (1.8172, 0.026), "A": (482.01, 124.5), "B": (2085.43, 1293.0), "alpha": (0.3478, 0.0154),
             "beta": (0.3658, 0.0206)}


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_epoch_csv_reproduces_besiroglu_and_is_stored(db_url, reference_dir, capsys):
    csv = reference_dir / "epoch_chinchilla_svg_extracted_data.csv"
    # The quick start grid (32 starts) reaches the same optimum as the full 4,500 (tested in core).
    proc = run_cli("fit", "--law", "chinchilla", "--method", "approach3", "--csv", str(csv), "--drop-highest", "5",
                   "--bootstrap", "100", "--grid", "quick", "--seed", "1", "--db", db_url, "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["n_points"] == 240 and out["fit_id"] == 1 and out["method"] == "approach3"
    for name, (value, se) in PUBLISHED.items():
        assert abs(out["params"][name] - value) < se, (name, out["params"][name])
        low, high = out["intervals"][name]
        assert low < out["params"][name] < high
    # bootstrap errors of the published size, not collapsed to zero
    assert 0.010 < out["stderr"]["alpha"] < 0.022 and 0.014 < out["stderr"]["beta"] < 0.030
    assert 0.0009 < out["objective"] < 0.0012
    # the compute-optimal allocations: one row per budget, each quantity with its bootstrap interval
    assert [row["budget"] for row in out["optima"]] == [1e21, 1e22, 5.76e23, 1e24, 1e25]
    for row in out["optima"]:
        assert row["n_params_lo"] < row["n_params"] < row["n_params_hi"]
        assert row["tokens"] * row["n_params"] * 6 == pytest.approx(row["budget"], rel=1e-12)
    assert out["selection"]["file"] == csv.name and out["selection"]["n_runs"] == 245
    assert "bootstrap" in proc.stderr and "100/132" not in proc.stdout  # the bar is on stderr only

    assert cli.main(["fits", "--db", db_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["fits"]
    assert [(f["id"], f["law"], f["method"], f["source"], f["n_points"]) for f in listed] == [
        (1, "chinchilla", "approach3", csv.name, 240)]
    assert listed[0]["params"] == out["params"]
    store = Store(db_url)
    try:
        assert store.is_empty()  # --csv adds no runs
        stored = list_fits(store).iloc[0]
        assert stored["settings"]["seed"] == 1 and len(stored["diagnostics"]["bootstrap_samples"]) == 100
    finally:
        store.close()


def test_stored_runs_by_name_tag_and_listing(db_url, capsys):
    store = Store(db_url)
    from services.seed import seed_if_empty

    seed_if_empty(store)
    store.close()
    names = [f"demo-C1e{e}-N{n}" for e, n in ((18, "12.8M"), (18, "26.7M"))]
    assert cli.main(["fit", "--runs", *names, "--bootstrap", "0", "--grid", "quick", "--db", db_url, "--json"]) == 2
    assert "2 points minus 0 dropped" in capsys.readouterr().err

    assert cli.main(["fit", "--tag", "synthetic demo", "--filter", "e1", "--method", "approach2",
                     "--db", db_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["selection"]["n_runs"] == 24 and out["selection"]["filter"]["tags"] == ["synthetic demo"]
    assert out["params"]["a"] == pytest.approx(0.5126, abs=0.02)  # β/(α+β) of the demo's law

    assert cli.main(["fit", "--law", "kaplan_c", "--bootstrap", "20", "--name", "kaplan C", "--db", db_url]) == 0
    text = capsys.readouterr().out
    assert text.startswith("fit #2: kaplan_c by huber_log on 30 runs (30 points)") and "alpha_C =" in text

    assert cli.main(["fits", "--db", db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("#2    kaplan_c") and lines[1].startswith("#1    chinchilla       approach2")
    assert cli.main(["fits", "--delete", "2", "--db", db_url, "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"deleted": 2}


@pytest.mark.parametrize("rows, message", [
    ("N,D,loss\n1e8,1e9,3.1\n1e8,2e9,3.0\n1e8,4e9,2.9\n1e8,8e9,2.8\n1e8,1e10,2.7\n1e8,3e10,2.6\n",
     "all runs have the same model size"),
    ("N,D,loss\n1e8,1e9,3.1\n2e8,2e9,nan\n4e8,4e9,2.9\n8e8,8e9,2.8\n1e9,1e10,2.7\n2e9,3e10,2.6\n",
     "column 'loss' holds NaN at row 2"),
    ("N,D,loss\n1e8,1e9,3.1\n2e8,2e9,3.0\n4e8,4e9,2.9\n", "fewer than the 5 parameters"),
    ("N,D,loss\n1e8,1e9,3.1\n2e8,2e9,-3.0\n4e8,4e9,2.9\n8e8,8e9,2.8\n1e9,1e10,2.7\n2e9,3e10,2.6\n",
     "loss must be positive"),
], ids=["one-size", "nan", "too-few", "negative"])
def test_bad_input_exits_2_with_one_line_and_stores_nothing(db_url, tmp_path, capsys, rows, message):
    path = tmp_path / "bad.csv"
    path.write_text(rows)
    assert cli.main(["fit", "--csv", str(path), "--bootstrap", "10", "--grid", "quick", "--db", db_url, "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and message in captured.err
    assert captured.err.startswith("error: ")
    store = Store(db_url)
    try:
        assert list_fits(store).empty and store.is_empty()
    finally:
        store.close()


def test_argument_errors_exit_2(db_url, capsys):
    assert cli.main(["fit", "--law", "kaplan_n", "--method", "approach3", "--db", db_url]) == 2
    assert "the kaplan_n law is fitted by huber_log" in capsys.readouterr().err
    assert cli.main(["fit", "--runs", "ghost", "--db", db_url]) == 2
    assert "No run named 'ghost'" in capsys.readouterr().err
    assert cli.main(["fits", "--delete", "99", "--db", db_url]) == 2
    assert "No fit with id 99" in capsys.readouterr().err
