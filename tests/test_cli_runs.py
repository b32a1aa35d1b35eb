"""CLI: ingest / runs / export / edit-run / delete-runs, as a user runs them (real subprocesses)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture
def db_url(any_db_url):
    """Each test here runs on both engines: a DuckDB file and a PostgreSQL database (tests/conftest.py)."""
    return any_db_url


ROOT = Path(__file__).resolve().parents[1]


def cli(*args, check=True, env=None):
    proc = subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env=None if env is None else {**os.environ, **env})
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


def one_error_line(proc) -> str:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, proc.stderr
    return proc.stderr


@pytest.mark.parametrize("bulk", ["0", str(1 << 40)], ids=["bulk", "small"])
def test_bad_names_and_limits_are_refused_by_both_paths(db_url, tmp_path, bulk):
    """The same one-line refusals whether the importers or DuckDB read the file (issue 12)."""
    env = {"SCALESCOPE_BULK_BYTES": bulk}
    ansi = tmp_path / "ansi.csv"
    ansi.write_bytes(b"run,step,metric,value\n\"a\x1b[31mred\",1,loss,2.0\n")
    assert "control characters" in one_error_line(cli("ingest", str(ansi), "--db", db_url, check=False, env=env))
    dup = tmp_path / "dup.csv"
    dup.write_text("run,step,metric,value,value\na,1,loss,2.0,3.0\n")
    assert "column 'value' appears twice" in one_error_line(cli("ingest", str(dup), "--db", db_url, check=False, env=env))
    big = tmp_path / "big.csv"
    big.write_text("run,step,metric,value\n" + "".join(f"b,{i},loss,1.5\n" for i in range(100)))
    proc = cli("ingest", str(big), "--db", db_url, check=False, env={**env, "SCALESCOPE_MAX_UPLOAD_BYTES": "1000"})
    assert "big.csv is 1.4 KB, over the 1000 B upload limit" in one_error_line(proc)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 40)
    err = one_error_line(cli("ingest", str(binary), "--db", db_url, check=False, env=env))
    assert err.count("binary.csv") == 1 and "is binary" in err  # not "binary.csv: binary.csv is binary"
    assert json.loads(cli("runs", "--db", db_url, "--json").stdout)["runs"] == []
    ok = json.loads(cli("ingest", str(big), "--db", db_url, "--json", env=env).stdout)["runs"]
    assert [r["name"] for r in ok] == ["b"]


def test_sparse_file_over_the_limit_is_called_over_the_limit(db_url, tmp_path):
    """An all-NUL 2 GiB file (sparse: nothing written) is over the 1 GiB limit, not 'binary'."""
    zeros = tmp_path / "zeros.csv"
    with open(zeros, "wb") as fh:
        fh.truncate(2 << 30)
    err = one_error_line(cli("ingest", str(zeros), "--db", db_url, check=False))
    assert "zeros.csv is 2.0 GB, over the 1.0 GB upload limit" in err and "binary" not in err


def test_runs_never_prints_control_characters(db_url):
    """A name stored before the rules (written past the importers) is printed with its escapes shown."""
    from core.runs import ParsedRun
    from db.store import Store

    store = Store(db_url)
    store.ingest([ParsedRun(name="evil\x1b[2J\x1b[31mred", source_format="csv_long", source_file="x.csv")])
    store.close()
    out = cli("runs", "--db", db_url).stdout
    assert "\x1b" not in out and "evil\\x1b[2J\\x1b[31mred" in out


def test_fit_csv_overflow_is_one_line_without_numpy_warnings(db_url, tmp_path):
    table = tmp_path / "huge.csv"
    table.write_text("N,D,loss\n" + "".join(f"1e308,1e308,{2 + i / 10}\n" for i in range(6)))
    proc = cli("fit", "--csv", str(table), "--bootstrap", "0", "--grid", "quick", "--db", db_url, check=False)
    err = one_error_line(proc)
    assert "overflow to infinity" in err and "Warning" not in proc.stderr


# DuckDB only: what it checks is the DuckDB file's per-process lock, which PostgreSQL has no counterpart of.
def test_a_command_closes_its_store_before_it_ends(tmp_path, long_csv):
    """cli.main closes what the command opened: another process can take the DuckDB file's lock at once
    (a store left to the interpreter's exit once aborted a torchrun rank in its C++ destructors)."""
    from cli import main
    from commands import common

    path = tmp_path / "closed.duckdb"
    assert main(["ingest", str(long_csv), "--db", f"duckdb:///{path}"]) == 0
    assert main(["runs", "--db", f"duckdb:///{path}", "--json"]) == 0
    assert common._OPENED == []
    other = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r}).close()"],
                           capture_output=True, text=True, timeout=60)
    assert other.returncode == 0, other.stderr
