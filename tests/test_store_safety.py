"""A damaged or foreign store fails clearly and is never written to by accident (issue 12 §3).

Real store files are cut short or have bytes overwritten; the CLI (real subprocesses) must answer
with one line on stderr, exit 2 and no traceback; the dashboard must show the line as its error page.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
from streamlit.testing.v1 import AppTest

import cli
from core.errors import DamagedStoreError, StoreError
from db.store import Store
from services.seed import seed_if_empty

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def assert_one_line(proc_or_pair, needle: str) -> None:
    code, err = (proc_or_pair.returncode, proc_or_pair.stderr) if hasattr(proc_or_pair, "stderr") else proc_or_pair
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert needle in err, err


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def good_store(tmp_path_factory) -> Path:
    """A closed store file with the synthetic demo (30 runs, 12,000 metric rows)."""
    path = tmp_path_factory.mktemp("good") / "good.duckdb"
    store = Store(f"duckdb:///{path}")
    seed_if_empty(store)
    RUN_NAMES[:] = store.run_names()
    store.close()
    assert len(RUN_NAMES) == 30
    return path


RUN_NAMES: list[str] = []


def damaged_copy(good: Path, folder: Path, name: str, change) -> Path:
    path = folder / name
    shutil.copy(good, path)
    with open(path, "r+b") as fh:
        change(fh, good.stat().st_size)
    return path


def export_all(path: Path, out: Path) -> subprocess.CompletedProcess:
    """`cli.py export` of every run: reads every metric row of the file."""
    return run_cli("export", "--runs", *RUN_NAMES, "--out", str(out), "--db", f"duckdb:///{path}")


@pytest.mark.parametrize("kind, where", [("truncate", 0.1), ("truncate", 0.5), ("truncate", 0.9),
                                         ("overwrite", 0.0), ("overwrite", 0.5)])
def test_damaged_file_one_line_exit_2(good_store, tmp_path, kind, where):
    def change(fh, size):
        if kind == "truncate":
            fh.truncate(int(size * where))
        else:  # 8 KiB of noise in the first data block, or in the middle of the file
            fh.seek(4096 if where == 0.0 else int(size * where) // 4096 * 4096)
            fh.write(os.urandom(8192))

    path = damaged_copy(good_store, tmp_path, "damaged.duckdb", change)
    url = f"duckdb:///{path}"
    # `runs` reads only what it lists: it either succeeds or meets the damage; never a traceback.
    listed = run_cli("runs", "--db", url)
    if listed.returncode != 0:
        assert_one_line(listed, "is damaged")
    exported = export_all(path, tmp_path / "out.csv")  # reads every metric row: must meet the damage
    assert_one_line(exported, f"The database file {path} is damaged")
    assert "cli.py restore" in exported.stderr  # and says what to do
    backed_up = run_cli("backup", str(tmp_path / "bk"), "--db", url)  # reads everything too
    assert_one_line(backed_up, "is damaged")
    assert not (tmp_path / "bk").exists()  # no half backup left behind
    with pytest.raises(DamagedStoreError, match="is damaged"):  # the dashboard's open: one full read
        Store(url, check=True).close()


def test_a_store_written_by_many_processes_in_turn_stays_healthy(tmp_path):
    """A checkpoint truncates the free blocks at the end of the file while the header still counts them:
    the fourth process to open such a file was refused as "cut short" (total, not used, blocks)."""
    url = f"duckdb:///{tmp_path / 'shared.duckdb'}"
    for i in range(6):
        log = tmp_path / f"r{i}.csv"
        log.write_text("step,loss\n1,3.0\n2,2.9\n")
        out = run_cli("ingest", str(log), "--db", url)
        assert out.returncode == 0 and f"added r{i} " in out.stdout, out.stderr
    listed = run_cli("runs", "--db", url)
    assert listed.returncode == 0, listed.stderr
    assert all(f"r{i} " in listed.stdout for i in range(6))
    with pytest.raises(DamagedStoreError, match="is damaged"):  # a real cut is still refused
        shutil.copy(tmp_path / "shared.duckdb", tmp_path / "cut.duckdb")
        with open(tmp_path / "cut.duckdb", "r+b") as fh:
            fh.truncate(3 * 4096 + 262_144)
        Store(f"duckdb:///{tmp_path / 'cut.duckdb'}", check=True).close()


def test_foreign_duckdb_file_is_refused_and_left_byte_for_byte(tmp_path, capsys):
    path = tmp_path / "crm.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE customers (id INTEGER, name VARCHAR)")
    con.execute("INSERT INTO customers VALUES (1, 'Ada'), (2, 'Grace')")
    con.close()
    before = digest(path)
    url = f"duckdb:///{path}"
    assert_one_line(run_cli("runs", "--db", url), "is not a ScaleScope store")
    long_csv = tmp_path / "long.csv"
    long_csv.write_text("run,step,metric,value\na,0,loss,3.0\n")
    # A writing command does not take the file over either.
    assert_one_line((cli.main(["ingest", str(long_csv), "--db", url]), capsys.readouterr().err), "customers")
    with pytest.raises(StoreError, match="not a ScaleScope store"):
        Store(url)
    assert digest(path) == before
    con = duckdb.connect(str(path), read_only=True)
    assert [r[0] for r in con.execute("SHOW TABLES").fetchall()] == ["customers"]
    con.close()


def edited_copy(good: Path, folder: Path, sql: str) -> Path:
    """A copy of the good store changed by ``sql`` behind ScaleScope's back."""
    path = folder / "edited.duckdb"
    shutil.copy(good, path)
    con = duckdb.connect(str(path))
    con.execute(sql)
    con.close()
    return path


def test_scalescope_tables_without_version_table_are_refused(good_store, tmp_path):
    path = edited_copy(good_store, tmp_path, "DROP TABLE schema_info")
    before = digest(path)
    proc = run_cli("runs", "--db", f"duckdb:///{path}")
    assert_one_line(proc, f"The database file {path} is damaged (it has ScaleScope tables")
    assert "restore" in proc.stderr
    with pytest.raises(DamagedStoreError, match="no schema_info"):
        Store(f"duckdb:///{path}")
    assert digest(path) == before


@pytest.mark.parametrize("sql, says", [("DELETE FROM schema_info", "holds 0 row(s)"),
                                       ("INSERT INTO schema_info VALUES (1)", "holds 2 row(s)"),
                                       ("DROP TABLE probes", "lacks the table(s) probes")])
def test_lost_records_are_refused(good_store, tmp_path, sql, says):
    path = edited_copy(good_store, tmp_path, sql)
    before = digest(path)
    with pytest.raises(DamagedStoreError, match=re.escape(says)):
        Store(f"duckdb:///{path}")
    assert digest(path) == before


def test_opening_a_current_store_writes_nothing(good_store, tmp_path):
    path = tmp_path / "copy.duckdb"
    shutil.copy(good_store, path)
    before = digest(path)
    proc = run_cli("runs", "--db", f"duckdb:///{path}", "--json")
    assert proc.returncode == 0, proc.stderr
    Store(f"duckdb:///{path}").close()
    assert digest(path) == before


def test_read_only_commands_on_a_missing_path_say_so_and_create_nothing(tmp_path, capsys):
    missing = tmp_path / "no" / "such" / "store.duckdb"
    url = f"duckdb:///{missing}"
    commands = [
        ["runs"], ["export", "--runs", "a", "--out", str(tmp_path / "o.csv")], ["fits"],
        ["plan", "--flops", "1e21", "--fit", "1"], ["evals", "pca"], ["route", "--list"], ["route", "--show", "1"],
        ["edit-run", "a", "--n-params", "1e6"], ["delete-runs", "a"], ["fits", "--delete", "1"],
        ["backup", str(tmp_path / "bk")],
    ]
    for args in commands:
        code = cli.main([*args, "--db", url])
        assert_one_line((code, capsys.readouterr().err), "does not exist")
        assert not (tmp_path / "no").exists(), args
    assert not (tmp_path / "bk").exists()
    # A command that stores data still creates a new store where it is asked to.
    long_csv = tmp_path / "long.csv"
    long_csv.write_text("run,step,metric,value\na,0,loss,3.0\n")
    assert cli.main(["ingest", str(long_csv), "--db", url]) == 0
    assert missing.is_file()


# ----------------------------------------------------------------------------------- the dashboard
def _dashboard(url: str, monkeypatch) -> AppTest:
    monkeypatch.setenv("SCALESCOPE_DB_URL", url)
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    return at


def test_dashboard_shows_one_line_for_a_damaged_file(good_store, tmp_path, monkeypatch):
    path = damaged_copy(good_store, tmp_path, "damaged.duckdb",
                        lambda fh, size: (fh.seek(size // 2 // 4096 * 4096), fh.write(os.urandom(8192))))
    at = _dashboard(f"duckdb:///{path}", monkeypatch)
    assert not at.exception, at.exception
    assert len(at.error) == 1
    text = at.error[0].value.replace("\\", "")  # st.error shows its text literally (Markdown escaped)
    assert f"The database file {path} is damaged" in text and "cli.py restore" in text
    assert "Traceback" not in text and "\n" not in text
    assert not at.subheader  # no page drawn under the error


def test_dashboard_shows_the_lock_message_alone(good_store, tmp_path, monkeypatch):
    path = tmp_path / "held.duckdb"
    shutil.copy(good_store, path)
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); time.sleep(120)", str(path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        at = _dashboard(f"duckdb:///{path}", monkeypatch)
        assert not at.exception, at.exception
        assert len(at.error) == 1
        text = at.error[0].value.replace("\\", "")
        assert "is open in another process" in text and "Traceback" not in text
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.1)
    Store(f"duckdb:///{path}").close()  # free again once the other process let go
