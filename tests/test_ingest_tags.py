"""Datasets and tags (issue 13 §3): every import tags its runs — the file or folder name by default, or
the tag given — on every path: files from disk, uploads, the bulk long-table path, the CLI, watched
folders and the inbox; eval imports tag the runs they create. The Fits page's datasets come from them."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import InputError
from services import ingest
from services.fits import ALL_RUNS, datasets
from services.ingest import check_tag, default_tag, ingest_paths, ingest_uploads

ROOT = Path(__file__).resolve().parents[1]
WIDE = "step,loss\n0,3.0\n1,2.5\n2,2.2\n"
LONG = "run,step,metric,value\nr1,0,loss,3.0\nr1,1,loss,2.5\nr2,0,loss,3.1\n"


def tags(store) -> dict:
    return {r.name: json.loads(r.tags or "[]") for r in store.runs()[["name", "tags"]].itertuples()}


def test_default_tag_is_the_file_or_folder_name():
    assert default_tag(["some/dir/sweep_a.csv"]) == "sweep_a"
    assert default_tag(["runs.tar.gz"]) == "runs"
    assert default_tag(["logs/"]) == "logs"
    assert default_tag(["C:\\exp\\wandb_export.csv", "other.csv"]) == "wandb_export"
    assert default_tag([]) == "upload"
    assert check_tag("  my sweep ", ["x.csv"]) == "my sweep" and check_tag("", ["x.csv"]) == "x"
    with pytest.raises(InputError, match="control character"):
        check_tag("a\nb", ["x.csv"])
    with pytest.raises(InputError, match="characters long"):
        check_tag("x" * 101, ["x.csv"])


def test_files_and_folders_get_their_name_or_the_given_tag(store, tmp_path):
    (tmp_path / "sweep_a.csv").write_text(WIDE)
    folder = tmp_path / "exp7"
    folder.mkdir()
    (folder / "run-b.csv").write_text(WIDE)
    ingest_paths(store, [tmp_path / "sweep_a.csv"])
    ingest_paths(store, [folder])
    (tmp_path / "c.csv").write_text(WIDE)
    ingest_paths(store, [tmp_path / "c.csv"], tag="baseline")
    assert sorted(tags(store).values()) == [["baseline"], ["exp7"], ["sweep_a"]]


def test_uploads_get_the_first_file_name_or_the_given_tag(store):
    ingest_uploads(store, [("wandb_run.csv", WIDE.encode())])
    ingest_uploads(store, [("second.csv", WIDE.encode())], tag="ablation 3")
    assert sorted(tags(store).values()) == [["ablation 3"], ["wandb_run"]]


@pytest.mark.parametrize("route", ["bulk", "importers"])
def test_long_tables_are_tagged_on_both_paths(store, tmp_path, monkeypatch, route):
    monkeypatch.setattr(ingest, "BULK_BYTES", 0 if route == "bulk" else 1 << 62)
    monkeypatch.delenv(ingest.BULK_BYTES_ENV, raising=False)
    path = tmp_path / "long_table.csv"
    path.write_text(LONG)
    ingest_paths(store, [path])
    ingest_uploads(store, [("up.csv", LONG.encode())], tag="uploaded", on_duplicate="rename")
    found = tags(store)
    assert found["r1"] == ["long_table"] and found["r2"] == ["long_table"]
    assert found["r1 (2)"] == ["uploaded"] and found["r2 (2)"] == ["uploaded"]


def test_cli_ingest_tag(any_db_url, tmp_path):  # DuckDB and PostgreSQL
    (tmp_path / "x.csv").write_text(WIDE)
    out = subprocess.run([sys.executable, "cli.py", "ingest", str(tmp_path / "x.csv"), "--tag", "from cli",
                          "--db", any_db_url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from db.store import Store

    s = Store(any_db_url)
    try:
        assert list(tags(s).values()) == [["from cli"]]
    finally:
        s.close()


def test_watched_folders_and_the_inbox_tag_their_runs(store, tmp_path):
    from services import watch as watch_service
    from services.watch import Watcher

    logs = tmp_path / "live_logs"
    logs.mkdir()
    (logs / "run-a.csv").write_text(WIDE)
    Watcher(store, [str(logs)], settle_s=0).scan()
    (tmp_path / "late.csv").write_text(WIDE)
    watch_service.hand_to_inbox(store.url, [tmp_path / "late.csv"], tag="handed over")
    (tmp_path / "plain.csv").write_text(WIDE)
    watch_service.hand_to_inbox(store.url, [tmp_path / "plain.csv"])
    report = Watcher(store, []).scan()
    assert [b["status"] for b in report.inbox] == ["imported", "imported"]
    assert tags(store) == {"run-a": ["live_logs"], "late": ["handed over"], "plain": ["plain"]}


def test_eval_imports_tag_the_runs_they_create(store, reference_dir):
    from services.evals import import_eval_paths

    import_eval_paths(store, [str(reference_dir / "obsscaling_base_llm_benchmark_eval.csv")], tags=["obs"])
    assert set(map(tuple, tags(store).values())) == {("obs",)}
    import_eval_paths(store, [str(reference_dir / "pythia_v1_zero_shot_evals.csv")])  # the default: its name
    assert set(map(tuple, tags(store).values())) == {("obs",), ("evals", "pythia_v1_zero_shot_evals")}


def test_fit_datasets_newest_import_first_and_never_all_by_default(store, tmp_path):
    for name in ("first.csv", "second.csv"):
        (tmp_path / name).write_text(WIDE)
        ingest_paths(store, [tmp_path / name])
    assert datasets(store) == ["second", "first"]
    assert ALL_RUNS not in datasets(store)
