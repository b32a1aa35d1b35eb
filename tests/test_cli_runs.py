"""CLI: ingest / runs / export / edit-run / delete-runs, as a user runs them (real subprocesses)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, check=True):
    proc = subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def long_csv(tmp_path):
    rows = [{"run": r, "step": s, "metric": "loss", "value": 4.0 - 0.01 * s} for r in ("a", "b") for s in range(30)]
    path = tmp_path / "long.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_ingest_runs_export_edit_delete(db_url, long_csv, tmp_path):
    out = json.loads(cli("ingest", str(long_csv), "--db", db_url, "--json").stdout)
    assert out["runs"] == [{"name": "a", "format": "csv_long", "n_metric_rows": 30},
                           {"name": "b", "format": "csv_long", "n_metric_rows": 30}]
    runs = json.loads(cli("runs", "--db", db_url, "--json").stdout)["runs"]
    assert [r["name"] for r in runs] == ["a", "b"]
    assert set(runs[0]) >= {"name", "format", "n_params", "tokens", "flops", "n_metric_rows"}

    edited = json.loads(cli("edit-run", "a", "--n-params", "1e6", "--tokens-per-step", "1000",
                            "--db", db_url, "--json").stdout)["run"]
    assert edited["tokens"] == 29_000 and edited["flops"] == pytest.approx(6 * 1e6 * 29_000)

    target = tmp_path / "out.parquet"
    assert json.loads(cli("export", "--runs", "a", "b", "--out", str(target), "--db", db_url, "--json").stdout)["rows"] == 60
    assert len(pd.read_parquet(target)) == 60

    assert json.loads(cli("delete-runs", "b", "--db", db_url, "--json").stdout)["deleted"] == 1
    assert [r["name"] for r in json.loads(cli("runs", "--db", db_url, "--json").stdout)["runs"]] == ["a"]


def test_duplicates_and_bad_input_exit_2_store_unchanged(db_url, long_csv, tmp_path):
    cli("ingest", str(long_csv), "--db", db_url)
    dup = cli("ingest", str(long_csv), "--db", db_url, check=False)
    assert dup.returncode == 2 and dup.stderr.count("\n") == 1 and "already exists" in dup.stderr
    renamed = json.loads(cli("ingest", str(long_csv), "--on-duplicate", "rename", "--db", db_url, "--json").stdout)
    assert [r["name"] for r in renamed["runs"]] == ["a (2)", "b (2)"]

    binary = tmp_path / "weights.csv"
    binary.write_bytes(bytes(range(256)) * 40)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    nan = tmp_path / "nan.csv"
    nan.write_text("run,step,metric,value\nz,0,loss,3.0\nz,1,loss,nan\n")
    for bad in (binary, empty, nan, tmp_path / "missing.csv"):
        proc = cli("ingest", str(bad), "--db", db_url, check=False)
        assert proc.returncode == 2, bad
        assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    # a good file next to a bad one: nothing of the batch lands
    proc = cli("ingest", str(long_csv), str(nan), "--on-duplicate", "rename", "--db", db_url, check=False)
    assert proc.returncode == 2
    names = [r["name"] for r in json.loads(cli("runs", "--db", db_url, "--json").stdout)["runs"]]
    assert names == ["a", "b", "a (2)", "b (2)"]


def test_runs_commands_start_without_heavy_imports():
    """`cli.py runs` loads only its own sub-command: no torch, transformers or scipy at start-up."""
    proc = subprocess.run([sys.executable, "-X", "importtime", "cli.py", "runs", "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "db.store" in imported
    assert not {"torch", "transformers", "scipy"} & imported
