"""CLI `fit` and `fits`: Epoch AI's Chinchilla table through --csv reproduces Besiroglu et al. 2024
(a real subprocess, with its progress bar), stored runs by name, and bad input → exit 2, one line,
nothing stored (in-process `cli.main`, which is what the subprocess runs, to keep the file fast). The tests
that store, read or delete fits run on both engines (``any_db_url``); bad input is refused before the store."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_epoch_csv_reproduces_besiroglu_and_is_stored(any_db_url, reference_dir, capsys):
    csv = reference_dir / "epoch_chinchilla_svg_extracted_data.csv"
    # The quick start grid (32 starts) reaches the same optimum as the full 4,500 (tested in core).
    proc = run_cli("fit", "--law", "chinchilla", "--method", "approach3", "--csv", str(csv), "--drop-highest", "5",
                   "--bootstrap", "100", "--grid", "quick", "--seed", "1", "--db", any_db_url, "--json")
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

    assert cli.main(["fits", "--db", any_db_url, "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["fits"]
    assert [(f["id"], f["law"], f["method"], f["source"], f["n_points"]) for f in listed] == [
        (1, "chinchilla", "approach3", csv.name, 240)]
    assert listed[0]["params"] == out["params"]
    store = Store(any_db_url)
    try:
        assert store.is_empty()  # --csv adds no runs
        stored = list_fits(store).iloc[0]
        assert stored["settings"]["seed"] == 1 and len(stored["diagnostics"]["bootstrap_samples"]) == 100
    finally:
        store.close()


def test_stored_runs_by_name_tag_and_listing(any_db_url, capsys):
    store = Store(any_db_url)
    from services.seed import seed_if_empty

    seed_if_empty(store)
    store.close()
    names = [f"demo-C1e{e}-N{n}" for e, n in ((18, "12.8M"), (18, "26.7M"))]
    assert cli.main(["fit", "--runs", *names, "--bootstrap", "0", "--grid", "quick", "--db", any_db_url, "--json"]) == 2
    assert "2 points minus 0 dropped" in capsys.readouterr().err

    assert cli.main(["fit", "--tag", "synthetic demo", "--filter", "e1", "--method", "approach2",
                     "--db", any_db_url, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["selection"]["n_runs"] == 24 and out["selection"]["filter"]["tags"] == ["synthetic demo"]
    assert out["params"]["a"] == pytest.approx(0.5126, abs=0.02)  # β/(α+β) of the demo's law

    assert cli.main(["fit", "--law", "kaplan_c", "--bootstrap", "20", "--name", "kaplan C", "--db", any_db_url]) == 0
    text = capsys.readouterr().out
    assert text.startswith("fit #2: kaplan_c by huber_log on 30 runs (30 points)") and "alpha_C =" in text

    assert cli.main(["fits", "--db", any_db_url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("#2    kaplan_c") and lines[1].startswith("#1    chinchilla       approach2")
    assert cli.main(["fits", "--delete", "2", "--db", any_db_url, "--json"]) == 0
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


def test_argument_errors_exit_2(any_db_url, capsys):
    assert cli.main(["fit", "--law", "kaplan_n", "--method", "approach3", "--db", any_db_url]) == 2
    assert "the kaplan_n law is fitted by huber_log" in capsys.readouterr().err
    assert cli.main(["fit", "--runs", "ghost", "--db", any_db_url]) == 2
    assert "No run named 'ghost'" in capsys.readouterr().err
    assert cli.main(["fits", "--delete", "99", "--db", any_db_url]) == 2
    assert "No fit with id 99" in capsys.readouterr().err


SUMMARY_TABLES = {
    "nd.csv": "N,D,loss\n1e8,2e9,3.1\n2e8,4e9,2.9\n1e8,2e9,3.0\n,,3.2\n,,3.3\n",
    "named.csv": "name,params,tokens,final_loss,val_loss,ppl,notes\na,125M,2.5B,3.3,3.4,,x\nb,1.3B,26B,2.7,,14,y\n",
    "cn_cd.csv": "arch,C,N,D,loss\ndense,6e18,1e8,,3.0\nmoe,1.2e20,,2e10,2.6\n,6e19,,1e10,2.7\n",
    "moe.csv": "n_params,n_active_params,n_nonembedding_params,tokens,n_experts,top_k,loss\n"
               "1e9,2e8,9e8,1e10,8,2,2.8\n5e8,,4e8,1e10,1,,2.9\n4e8,,,1e10,0,,2.95\n6e8,,,1e10,2.4,,2.9\n",
}


def _selection_read_run_by_run(path, metric, n_kind) -> dict:
    """load_csv_data's selection as it was built before the column-wise read: importers.parse_file's
    ParsedRuns (a pandas metric frame each), then a DataFrame of the points."""
    import hashlib
    import os

    import pandas as pd

    from core.errors import InputError
    from importers import parse_file
    from services.fits import Target

    rows = []
    for r in parse_file(path, fmt="summary"):
        values = r.metrics.loc[r.metrics["name"] == metric, "value"]
        if values.empty:
            raise InputError(f"{os.path.basename(path)}: row {r.name!r} has no {metric!r} value; fill it or drop the row")
        n = {"total": r.n_params, "nonembedding": r.n_nonembedding_params,
             "active": r.n_active_params if r.n_active_params is not None else r.n_params}[n_kind]
        rows.append((r.name, n, r.tokens, r.flops, r.n_experts or 1, float(values.iloc[-1])))
    frame = pd.DataFrame(rows, columns=["run", "n_params", "tokens", "flops", "n_experts", "y"])
    points = {c: pd.to_numeric(frame[c], errors="coerce").to_numpy(dtype=np.float64).tolist()
              for c in ("n_params", "tokens", "flops", "n_experts", "y")}
    return {"source": "csv", "file": os.path.basename(path), "sha256": hashlib.sha256(open(path, "rb").read()).hexdigest(),
            "n_rows": len(frame), "target": Target(metric=metric).to_dict(), "n_kind": n_kind, "weight_by_run": False,
            "runs": frame["run"].tolist(), "points": points}


@pytest.mark.parametrize("name", [*SUMMARY_TABLES, "epoch_chinchilla_svg_extracted_data.csv"])
def test_csv_selection_read_column_wise_equals_the_run_by_run_read(tmp_path, reference_dir, name):
    """load_csv_data reads the table once into columns (importers.summary.read_file): the same points,
    run names and selection JSON as the run-by-run read before it, and the same refusals."""
    from core.errors import InputError
    from services import fits as fit_data

    path = reference_dir / name
    if name in SUMMARY_TABLES:
        path = tmp_path / name
        path.write_text(SUMMARY_TABLES[name])
    for metric in ("loss", "val_loss", "ppl"):
        for n_kind in fit_data.N_KINDS:
            try:
                expected = _selection_read_run_by_run(str(path), metric, n_kind)
            except InputError as exc:
                with pytest.raises(InputError) as caught:
                    fit_data.load_csv_data(str(path), metric=metric, n_kind=n_kind)
                assert str(caught.value) == str(exc)
                continue
            got = fit_data.load_csv_data(str(path), metric=metric, n_kind=n_kind).selection
            assert json.dumps(got, sort_keys=True) == json.dumps(expected, sort_keys=True)


# DuckDB only: the check that the fit was stored is that the DuckDB driver was imported.
def test_fit_csv_starts_without_scipy(tmp_path):
    """`cli.py fit --csv` imports neither scipy (the fit is core.fitting's own Newton) nor torch or transformers,
    nor, on a DuckDB store, the PostgreSQL driver (~40 ms of start-up; db.dialects imports it lazily)."""
    path = tmp_path / "t.csv"
    path.write_text("N,D,loss\n" + "".join(f"{n:g},{20 * n * k:g},{1.7 + 400 / n ** 0.34 + 400 / (20 * n * k) ** 0.28:.6f}\n"
                                          for n in (1e7, 3e7, 1e8, 3e8) for k in (0.5, 1, 2)))
    proc = subprocess.run([sys.executable, "-X", "importtime", "cli.py", "fit", "--csv", str(path), "--grid", "quick",
                           "--bootstrap", "0", "--db", f"duckdb:///{tmp_path}/s.duckdb", "--json"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "importers.summary" in imported and "duckdb" in imported  # the table was read and the fit stored
    assert not {"torch", "transformers", "scipy", "scipy.optimize", "psycopg"} & imported
