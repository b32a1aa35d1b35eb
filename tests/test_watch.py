"""Watched folders (issue 11 §1): incremental, idempotent reads of every format, the faults that
must stay local to one file or folder, the CLI twin and the inbox hand-over."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import InputError
from db import schema
from db.store import Store
from services import watch as watch_service
from services.watch import Watcher

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def logs(tmp_path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    return folder


@pytest.fixture
def watcher(store, logs) -> Watcher:
    # settle_s: a last line without newline waits (the tests append the rest themselves)
    return Watcher(store, [str(logs)], interval=0.2, settle_s=3600)


def rows(store, run) -> pd.DataFrame:
    return store.metrics([run]).sort_values(["name", "step"]).reset_index(drop=True)


def added(report) -> dict:
    return {r["name"]: r["added_rows"] for r in report.runs}


def append(path: Path, text: str) -> None:
    with open(path, "a") as fh:
        fh.write(text)


def status(store, path: Path) -> dict:
    from db.watch import file_rows

    return file_rows(store)[str(path)]


# ---------------------------------------------------------------------------------------- tables
def test_csv_append_half_line_and_idempotent_rescans(store, watcher, logs):
    path = logs / "run-a.csv"
    path.write_text("step,loss\n0,3.0\n1,2.9\n2,2.")  # the last line is still being written
    assert added(watcher.scan()) == {"run-a": 2}
    assert status(store, path)["status"] == "waiting"
    assert added(watcher.scan()) == {}  # nothing new: the half line waits
    append(path, "8\n3,2.7\n")
    assert added(watcher.scan()) == {"run-a": 2}
    for _ in range(3):  # rescans never store a row twice
        report = watcher.scan()
        assert report.runs == [] and report.files_read == 0
    assert rows(store, "run-a")["value"].tolist() == [3.0, 2.9, 2.8, 2.7]
    assert status(store, path)["status"] == "ok" and status(store, path)["n_rows"] == 4


def test_a_new_watcher_resumes_where_the_last_stopped(store, logs):
    path = logs / "resume.csv"
    path.write_text("step,loss\n0,3.0\n1,2.9\n")
    Watcher(store, [str(logs)]).scan()
    append(path, "2,2.8\n")
    assert added(Watcher(store, [str(logs)]).scan()) == {"resume": 1}  # state is kept in the store
    assert len(rows(store, "resume")) == 3


@pytest.mark.parametrize("name,first,rest", [
    ("t.tsv", "step\tloss\n0\t3.0\n1\t2.", "9\n2\t2.8\n"),
    ("j.jsonl", '{"step": 0, "loss": 3.0}\n{"step": 1, "lo', 'ss": 2.9}\n{"step": 2, "loss": 2.8}\n'),
    ("long.csv", "run,step,metric,value\nr1,0,loss,3.0\nr2,0,loss,4.0\nr1,1,lo", "ss,2.9\nr2,1,loss,3.9\nr3,0,loss,5\n"),
])
def test_tsv_jsonl_and_long_tables_append(store, watcher, logs, name, first, rest):
    path = logs / name
    path.write_text(first)
    watcher.scan()
    append(path, rest)
    watcher.scan()
    watcher.scan()
    total = sum(len(rows(store, n)) for n in store.run_names())
    assert total == (5 if name == "long.csv" else 3)
    if name == "long.csv":  # runs of one file keep to their own rows; a run that appears later is created
        assert rows(store, "r1")["value"].tolist() == [3.0, 2.9] and rows(store, "r3")["value"].tolist() == [5.0]


def test_a_last_line_without_newline_is_read_once_the_file_settles(store, logs):
    path = logs / "done.csv"
    path.write_text("step,loss\n0,3.0\n1,2.9")
    Watcher(store, [str(logs)], settle_s=3600).scan()
    assert len(rows(store, "done")) == 1
    old = time.time() - 120
    os.utime(path, (old, old))
    Watcher(store, [str(logs)], settle_s=60).scan()
    assert rows(store, "done")["value"].tolist() == [3.0, 2.9]


def test_rewritten_or_truncated_file_replaces_its_runs(store, watcher, logs):
    path = logs / "re.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{3 - i / 10}\n" for i in range(10)))
    watcher.scan()
    path.write_text("step,loss\n0,9.0\n1,8.0\n")  # rewritten from scratch, shorter
    report = watcher.scan()
    assert report.runs == [{"name": "re", "format": "csv_wide", "n_metric_rows": 2, "added_rows": -8}]
    assert rows(store, "re")["value"].tolist() == [9.0, 8.0]
    path.write_text("step,loss\n0,7.0\n1,6.0\n2,5.0\n3,4.0\n")  # rewritten, longer, same header
    watcher.scan()
    assert rows(store, "re")["value"].tolist() == [7.0, 6.0, 5.0, 4.0]
    tmp = logs / ".re.tmp"  # replaced atomically (a new inode)
    tmp.write_text("step,loss\n0,1.0\n")
    os.replace(tmp, path)
    watcher.scan()
    assert rows(store, "re")["value"].tolist() == [1.0]


def test_a_watched_runs_edited_tags_survive_a_rewrite(store, watcher, logs):
    """Tags edited after import (cli.py runs tag, the Runs table) stay when the watcher reads a
    rewritten file again whole: the run is recreated with the tags it had, not the folder's."""
    from services.runs import retag_runs, run_tags

    path = logs / "tagged.csv"
    path.write_text("step,loss\n0,3.0\n1,2.9\n")
    watcher.scan()
    tags = lambda: run_tags(store.runs().set_index("name").loc["tagged", "tags"])  # noqa: E731
    assert tags() == ["logs"]  # the watched folder's name
    retag_runs(store, ["tagged"], add=["ablation"], remove=["logs"])
    path.write_text("step,loss\n0,2.0\n")  # rewritten: the run is read again whole
    assert watcher.scan().runs[0]["n_metric_rows"] == 1
    assert tags() == ["ablation"] and rows(store, "tagged")["value"].tolist() == [2.0]


@pytest.mark.parametrize("name, value", [("SCALESCOPE_WATCH_MAX_BYTES", "nan"), ("SCALESCOPE_WATCH_MAX_BYTES", "inf"),
                                         ("SCALESCOPE_WATCH_MAX_BYTES", "1e400"), ("SCALESCOPE_WATCH_INTERVAL", "inf"),
                                         ("SCALESCOPE_WATCH_INTERVAL", "nan")])
def test_a_non_finite_setting_is_one_line(store, monkeypatch, name, value):
    from core.errors import InputError

    monkeypatch.setenv(name, value)
    with pytest.raises(InputError, match=f"{name}={value!r} is not a number") as err:
        Watcher(store, [])
    assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="--interval must be a number of seconds ≥ 0, not inf"):
        Watcher(store, [], interval=float("inf"), max_bytes=4096)


def test_lightning_metrics_csv_appends_and_a_new_column_rewrites(store, watcher, logs):
    run = logs / "lightning_logs" / "version_0"
    run.mkdir(parents=True)
    (run / "hparams.yaml").write_text("n_params: 1000000\ntokens_per_step: 2048\n")
    path = run / "metrics.csv"
    path.write_text("epoch,step,train_loss\n0,0,3.0\n0,1,2.9\n")
    watcher.scan()
    append(path, "0,2,2.8\n")
    watcher.scan()
    got = rows(store, "lightning_logs/version_0")
    assert got[got.name == "train_loss"]["value"].tolist() == [3.0, 2.9, 2.8]
    assert got[got.name == "train_loss"]["tokens"].tolist() == [0.0, 2048.0, 4096.0]  # sizes from hparams.yaml
    # CSVLogger rewrites the file with a wider header when a new metric is logged
    path.write_text("epoch,step,train_loss,val_loss\n0,0,3.0,\n0,1,2.9,\n0,2,2.8,\n0,3,2.7,2.75\n")
    watcher.scan()
    got = rows(store, "lightning_logs/version_0")
    assert got[got.name == "train_loss"]["value"].tolist() == [3.0, 2.9, 2.8, 2.7]
    assert got[got.name == "val_loss"]["value"].tolist() == [2.75]
    runs = store.runs().set_index("name")
    assert runs.loc["lightning_logs/version_0", "tokens"] == 3 * 2048.0  # the run's D follows its last point


def _trainer_state(steps) -> str:
    return json.dumps({"global_step": steps[-1], "log_history": [{"step": s, "loss": 3.0 - s / 1000} for s in steps]})


def test_trainer_state_rewritten_at_each_checkpoint(store, watcher, logs):
    out = logs / "hf-run"
    (out / "checkpoint-10").mkdir(parents=True)
    (out / "checkpoint-10" / "trainer_state.json").write_text(_trainer_state([5, 10]))
    watcher.scan()
    (out / "checkpoint-20").mkdir()
    (out / "checkpoint-20" / "trainer_state.json").write_text(_trainer_state([5, 10, 15, 20]))
    report = watcher.scan()
    assert report.runs == [{"name": "hf-run", "format": "hf_trainer", "n_metric_rows": 4, "added_rows": 2}]
    assert rows(store, "hf-run")["step"].tolist() == [5, 10, 15, 20]
    # a trainer_state.json at the run's root, rewritten in place
    (logs / "flat").mkdir()
    state = logs / "flat" / "trainer_state.json"
    state.write_text(_trainer_state([1]))
    watcher.scan()
    state.write_text(_trainer_state([1, 2, 3]))
    watcher.scan()
    watcher.scan()
    assert rows(store, "flat")["step"].tolist() == [1, 2, 3]


# ---------------------------------------------------------------------------------------- TensorBoard
def _writer(folder: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(folder))


def test_tensorboard_events_appended_and_new_files(store, watcher, logs):
    run = logs / "tb-run"
    w = _writer(run)
    for i in range(5):
        w.add_scalar("loss", 3.0 - i / 10, i)
    w.flush()
    assert added(watcher.scan()) == {"tb-run": 5}
    for i in range(5, 9):
        w.add_scalar("loss", 3.0 - i / 10, i)
    w.flush()
    assert added(watcher.scan()) == {"tb-run": 4}
    assert watcher.scan().runs == []
    w.close()
    w2 = _writer(run)  # the job restarts: a second event file in the same run folder
    w2.add_scalar("loss", 2.0, 9)
    w2.close()
    watcher.scan()
    got = rows(store, "tb-run")
    assert got["step"].tolist() == list(range(10))
    wall = got["wall_time"].to_numpy()
    assert wall[0] == 0 and (wall >= 0).all() and wall.max() < 600  # seconds since the run's first point


def test_tensorboard_half_record_waits_and_truncation_replaces(store, watcher, logs):
    w = _writer(logs / "tb")
    for i in range(6):
        w.add_scalar("loss", float(i), i)
    w.close()
    path = next((logs / "tb").glob("events.out.tfevents.*"))
    data = path.read_bytes()
    path.write_bytes(data[:-7])  # the last record is still being written
    assert added(watcher.scan()) == {"tb": 5}
    append_bytes = data[-7:]
    with open(path, "ab") as fh:
        fh.write(append_bytes)
    assert added(watcher.scan()) == {"tb": 1}
    # truncated back to its first records (a job restarted into the same file)
    cut = len(data) // 2
    path.write_bytes(data[:cut])
    watcher.scan()
    n = len(rows(store, "tb"))
    assert 0 < n < 6 and rows(store, "tb")["step"].tolist() == list(range(n))


# ---------------------------------------------------------------------------------------- the byte cap
CAP = 4096  # bytes of one file read per scan in these tests (the default is importers.incremental.MAX_READ_BYTES)


@pytest.fixture
def reads(monkeypatch) -> list:
    """Every (start, end) byte range the incremental reader takes from a file (the real reads, recorded)."""
    from importers import incremental

    seen, real = [], incremental._read_range

    def recorded(path, start, end):
        seen.append((start, end))
        return real(path, start, end)

    monkeypatch.setattr(incremental, "_read_range", recorded)
    return seen


def catch_up(watcher, store, path, reads) -> list[int]:
    """Scan until ``path`` is read to its end; returns how far each scan got. Checks on the way that
    each scan read at most the cap of new bytes and that a file with more to read says it catches up."""
    offsets = [status(store, path)["consumed"] if str(path) in watch_service.files_frame(store)["path"].tolist() else 0]
    for _ in range(100):
        reads.clear()
        report = watcher.scan()
        assert report.errors == {}
        row = status(store, path)
        assert max(end - start for start, end in reads) <= CAP  # each read of this scan, the piece included
        assert row["consumed"] - offsets[-1] <= CAP
        offsets.append(row["consumed"])
        if row["status"] != "catching up":
            return offsets
        assert report.catching_up == [{"path": str(path), "consumed": row["consumed"], "size": path.stat().st_size}]
    raise AssertionError("the file was never read to its end")


def test_a_file_several_times_the_cap_is_stored_over_several_scans(store, logs, reads):
    path = logs / "big.csv"
    path.write_text("step,loss,lr\n" + "".join(f"{i},{3 - i / 1e4:.6f},{1e-3:.6f}\n" for i in range(1000)))
    assert path.stat().st_size > 5 * CAP
    watcher = Watcher(store, [str(logs)], settle_s=3600, max_bytes=CAP)
    offsets = catch_up(watcher, store, path, reads)
    assert len(offsets) - 1 >= path.stat().st_size // CAP  # several scans, each its own transaction
    got = rows(store, "big")
    assert got[got.name == "loss"]["step"].tolist() == list(range(1000))  # every row exactly once
    assert status(store, path)["status"] == "ok" and status(store, path)["n_rows"] == 2000
    # a big append to the caught-up file goes the same way; a half line at its end then waits
    append(path, "".join(f"{i},{3 - i / 1e4:.6f},{1e-3:.6f}\n" for i in range(1000, 2000)) + "2000,1.")
    catch_up(watcher, store, path, reads)
    assert status(store, path)["status"] == "waiting"  # not catching up: the writer has not finished the line
    append(path, "5,0.001\n")
    watcher.scan()
    got = rows(store, "big")
    assert got[got.name == "loss"]["step"].tolist() == list(range(2001))
    assert watcher.scan().runs == [] and status(store, path)["status"] == "ok"


def test_tensorboard_events_over_the_cap_end_at_a_record(store, logs, reads):
    w = _writer(logs / "tb-big")
    w.add_text("notes", "x" * (2 * CAP), 0)  # one record longer than the cap: read whole, alone
    for i in range(600):
        w.add_scalar("loss", 3.0 - i / 1000, i)
    w.close()
    path = next((logs / "tb-big").glob("events.out.tfevents.*"))
    assert path.stat().st_size > 5 * CAP
    watcher = Watcher(store, [str(logs)], settle_s=3600, max_bytes=CAP)
    offsets, largest = [0], []
    for _ in range(100):
        reads.clear()
        watcher.scan()
        offsets.append(status(store, path)["consumed"])
        largest.append(max(end - start for start, end in reads))
        if status(store, path)["status"] != "catching up":
            break
    steps = [b - a for a, b in zip(offsets, offsets[1:])]
    over = [i for i, n in enumerate(steps) if n > CAP]
    assert len(over) == 1 and 2 * CAP < steps[over[0]] < 2 * CAP + 200  # the text record alone, whole
    assert all(n <= CAP for i, n in enumerate(largest) if i not in over)  # every other scan within the cap
    assert status(store, path)["status"] == "ok" and rows(store, "tb-big")["step"].tolist() == list(range(600))


def test_a_line_longer_than_the_cap_stops_the_file(store, logs):
    path = logs / "wide.csv"
    path.write_text("step,loss\n0,3.0\n1," + "9" * (2 * CAP) + "\n2,2.8\n")
    report = Watcher(store, [str(logs)], settle_s=3600, max_bytes=CAP).scan()
    assert rows(store, "wide")["value"].tolist() == [3.0]  # the rows before it are stored
    reason = Watcher(store, [str(logs)], settle_s=3600, max_bytes=CAP).scan().errors[str(path)]
    assert report.errors == {} and "line longer than 4.0 KB" in reason and "after byte 16" in reason
    assert status(store, path)["status"] == "error"


def test_the_upload_limit_bounds_only_what_is_read_whole(store, logs, monkeypatch):
    """A log read in capped pieces may outgrow the upload limit (a long run); a document read whole may not."""
    monkeypatch.setenv("SCALESCOPE_MAX_UPLOAD_BYTES", str(2 * CAP))
    path = logs / "long-run.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{3 - i / 1e4:.6f}\n" for i in range(1000)))
    assert path.stat().st_size > 3 * CAP  # over the limit
    watcher = Watcher(store, [str(logs)], settle_s=3600, max_bytes=CAP)
    for _ in range(50):
        assert watcher.scan().errors == {}
        if status(store, path)["status"] == "ok":
            break
    assert rows(store, "long-run")["step"].tolist() == list(range(1000))
    (logs / "hf").mkdir()
    state = logs / "hf" / "trainer_state.json"
    state.write_text(_trainer_state(list(range(1, 1000))))
    assert "over the 8.0 KB upload limit" in watcher.scan().errors[str(state)]


def test_the_background_thread_catches_up_without_waiting_its_interval(store, logs):
    path = logs / "fast.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{3 - i / 1e4:.6f}\n" for i in range(3000)))
    assert path.stat().st_size > 9 * CAP
    watcher = Watcher(store, [str(logs)], interval=60, settle_s=3600, max_bytes=CAP).start()
    try:  # 10 pieces at one per 60 s interval would take 9 minutes
        deadline = time.time() + 30
        while time.time() < deadline and ("fast" not in store.run_names() or len(rows(store, "fast")) < 3000):
            time.sleep(0.1)
        assert rows(store, "fast")["step"].tolist() == list(range(3000))
    finally:
        watcher.stop()


def test_the_cap_from_the_environment_and_the_cli(monkeypatch, tmp_path, logs):
    monkeypatch.setenv(watch_service.MAX_BYTES_ENV, "65536")
    assert watch_service.max_bytes_from_env() == 65536
    for bad in ("lots", "100"):
        monkeypatch.setenv(watch_service.MAX_BYTES_ENV, bad)
        with pytest.raises(InputError, match=watch_service.MAX_BYTES_ENV):
            watch_service.max_bytes_from_env()
    monkeypatch.delenv(watch_service.MAX_BYTES_ENV)
    assert watch_service.max_bytes_from_env() == watch_service.MAX_READ_BYTES
    path = logs / "cli-big.csv"
    path.write_text("step,loss\n" + "".join(f"{i},{3 - i / 1e4:.6f}\n" for i in range(600)))
    db = f"duckdb:///{tmp_path / 'cap.duckdb'}"
    doc = json.loads(cli("watch", str(logs), "--once", "--db", db, "--json", "--max-bytes", str(CAP)).stdout)
    assert doc["runs"][0]["name"] == "cli-big" and doc["store_error"] is None
    assert doc["catching_up"] == [{"path": str(path), "consumed": doc["catching_up"][0]["consumed"],
                                   "size": path.stat().st_size}]
    assert 0 < doc["catching_up"][0]["consumed"] <= CAP
    out = cli("watch", str(logs), "--once", "--db", db, "--max-bytes", "10", check=False)
    assert out.returncode == 2 and "--max-bytes must be at least 1024 bytes" in out.stderr


# ---------------------------------------------------------------------------------------- faults
def test_a_file_that_turns_bad_stops_only_that_file(store, watcher, logs):
    good, bad = logs / "good.csv", logs / "bad.csv"
    good.write_text("step,loss\n0,3.0\n")
    bad.write_text("step,loss\n0,3.0\n1,2.9\n")
    watcher.scan()
    append(bad, "2,nan\n3,2.7\n")  # a NaN row: refused, as any import refuses it
    append(good, "1,2.9\n")
    report = watcher.scan()
    assert added(report) == {"good": 1}
    reason = report.errors[str(bad)]
    assert "bad.csv" in reason and "NaN" in reason and "\n" not in reason
    assert status(store, bad)["status"] == "error" and status(store, bad)["error"] == reason
    assert rows(store, "bad")["value"].tolist() == [3.0, 2.9]  # nothing half-imported
    append(good, "2,2.8\n")
    assert added(watcher.scan()) == {"good": 1}  # the watcher goes on
    bad.write_text("step,loss\n0,1.0\n")  # fixed by rewriting it: read again whole
    watcher.scan()
    assert rows(store, "bad")["value"].tolist() == [1.0] and status(store, bad)["status"] == "ok"


def test_a_corrupt_event_file_stops_with_its_reason(store, watcher, logs):
    w = _writer(logs / "tb")
    w.add_scalar("loss", 1.0, 0)
    w.close()
    path = next((logs / "tb").glob("events.out.tfevents.*"))
    watcher.scan()
    with open(path, "ab") as fh:
        fh.write(b"\xff" * 40)
    report = watcher.scan()
    assert "corrupt" in report.errors[str(path)] and len(rows(store, "tb")) == 1


def test_a_folder_that_disappears_is_reported_and_the_others_go_on(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "ra.csv").write_text("step,loss\n0,1.0\n")
    (b / "rb.csv").write_text("step,loss\n0,1.0\n")
    watcher = Watcher(store, [str(a), str(b)], settle_s=3600)
    watcher.scan()
    (a / "ra.csv").unlink()
    a.rmdir()
    append(b / "rb.csv", "1,0.9\n")
    report = watcher.scan()
    assert "does not exist" in report.folders[str(a)] and added(report) == {"rb": 1}
    assert status(store, a / "ra.csv")["status"] == "gone"
    assert len(rows(store, "ra")) == 1  # its runs stay in the store
    assert watcher.folder_errors[str(a)] == report.folders[str(a)]


def test_a_file_deleted_while_it_is_read(store, watcher, logs, monkeypatch):
    from importers import incremental

    path = logs / "vanish.csv"
    path.write_text("step,loss\n0,1.0\n")
    watcher.scan()
    append(path, "1,0.9\n")
    real = incremental._read_range

    def delete_then_read(p, start, end):
        os.unlink(p)
        return real(p, start, end)

    monkeypatch.setattr(incremental, "_read_range", delete_then_read)
    report = watcher.scan()
    assert report.runs == [] and status(store, path)["status"] == "gone"
    assert len(rows(store, "vanish")) == 1


def test_a_fifo_or_unreadable_file_stops_with_a_reason(store, watcher, logs, monkeypatch):
    """chmod 000 does not stop root, so an unreadable file is a FIFO (never opened: it would block) and a
    read that raises PermissionError; the chmod case itself runs where the tests are not root."""
    os.mkfifo(logs / "pipe.csv")
    (logs / "ok.csv").write_text("step,loss\n0,1.0\n")
    report = watcher.scan()
    assert "not a regular file" in report.errors[str(logs / "pipe.csv")] and added(report) == {"ok": 1}

    from importers import incremental

    locked = logs / "locked.csv"
    locked.write_text("step,loss\n0,1.0\n")

    def denied(path, *a, **k):
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a, **k)

    real = incremental.read_file
    monkeypatch.setattr("services.watch.read_file", denied)
    report = watcher.scan()
    assert "Permission denied" in report.errors[str(locked)] and "permissions" in report.errors[str(locked)]


def test_a_run_name_taken_by_an_upload_is_not_touched(store, watcher, logs):
    from services.ingest import ingest_paths

    upload = logs.parent / "taken.csv"
    upload.write_text("step,loss\n0,5.0\n")
    ingest_paths(store, [upload])
    (logs / "taken.csv").write_text("step,loss\n0,1.0\n1,0.9\n")
    report = watcher.scan()
    assert "already in the store" in report.errors[str(logs / "taken.csv")]
    assert rows(store, "taken")["value"].tolist() == [5.0]


# ---------------------------------------------------------------------------------------- store side
def test_folders_kept_in_the_store_and_the_change_marker(store, logs):
    assert watch_service.add_folder(store, str(logs)) == str(logs)
    with pytest.raises(Exception, match="not a folder"):
        watch_service.add_folder(store, str(logs / "nope"))
    watcher = Watcher(store, [], settle_s=3600)  # the store's own list is watched
    (logs / "m.csv").write_text("step,loss\n0,1.0\n")
    before = watch_service.change_marker(store)
    watcher.scan()
    grown = watch_service.change_marker(store)
    assert grown != before
    watcher.scan()
    assert watch_service.change_marker(store) == grown  # no change: no rerun of the chart
    live = watch_service.live_runs(store)
    assert live["name"].tolist() == ["m"] and time.time() - live["last_grew"].iloc[0] < 60
    assert watch_service.remove_folder(store, str(logs)) and watch_service.stored_folders(store) == []
    assert len(rows(store, "m")) == 1


def test_unchanged_files_are_only_stated(store, logs):
    for i in range(50):
        (logs / f"r{i}.csv").write_text("step,loss\n0,1.0\n")
    watcher = Watcher(store, [str(logs)], settle_s=3600)
    assert watcher.scan().files_read == 50
    report = watcher.scan()
    assert report.files_seen == 50 and report.files_read == 0


def test_version_3_store_gains_the_watch_tables(tmp_path):
    path = tmp_path / "v3.duckdb"
    s = Store(f"duckdb:///{path}")
    with s.write() as conn:
        conn.exec_driver_sql("DROP TABLE watch_files")
        conn.exec_driver_sql("DROP TABLE watch_folders")
        conn.exec_driver_sql("ALTER TABLE runs DROP COLUMN last_grew")
        conn.execute(sa.update(schema.schema_info).values(version=3))
    s.close()
    s = Store(f"duckdb:///{path}")
    assert s.schema_version() == 4
    with s.read() as conn:
        cols = set(conn.exec_driver_sql("SELECT * FROM runs LIMIT 0").keys())
        tables = set(sa.inspect(conn).get_table_names())
    assert "last_grew" in cols and {"watch_files", "watch_folders"} <= tables
    s.close()


# ---------------------------------------------------------------------------------------- CLI and inbox
def cli(*args, check=True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "cli.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def test_cli_watch_once_json(tmp_path, logs):
    db = f"duckdb:///{tmp_path / 'cli.duckdb'}"
    (logs / "c.csv").write_text("step,loss\n0,3.0\n1,2.9\n")
    (logs / "broken.csv").write_text("step,loss\n0,inf\n")
    out = cli("watch", str(logs), "--once", "--db", db, "--json")
    doc = json.loads(out.stdout)
    assert doc["runs"] == [{"name": "c", "format": "csv_wide", "n_metric_rows": 2, "added_rows": 2}]
    assert "broken.csv" in doc["errors"][0]["error"] and "broken.csv" in out.stderr
    append(logs / "c.csv", "2,2.8\n")
    doc = json.loads(cli("watch", str(logs), "--once", "--db", db, "--json").stdout)
    assert doc["runs"] == [{"name": "c", "format": "csv_wide", "n_metric_rows": 3, "added_rows": 1}]
    doc = json.loads(cli("watch", str(logs), "--once", "--db", db, "--json").stdout)
    assert doc["runs"] == []  # a new process: nothing twice
    out = cli("watch", str(logs / "missing"), "--once", "--db", db, check=False)
    assert out.returncode == 2 and "not a folder" in out.stderr


def test_ingest_on_a_held_store_hands_files_to_the_inbox(tmp_path, logs):
    db_path = tmp_path / "held.duckdb"
    db = f"duckdb:///{db_path}"
    Store(db).close()
    (logs / "first.csv").write_text("step,loss\n0,1.0\n")
    holder = subprocess.Popen([sys.executable, "cli.py", "watch", str(logs), "--db", db, "--interval", "0.3"],
                              cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().startswith("first: +1 rows")  # it has scanned: it holds the file
        upload = tmp_path / "pushed.csv"
        upload.write_text("step,loss\n0,3.0\n1,2.5\n")
        out = cli("ingest", str(upload), "--db", db, check=False)
        assert out.returncode == 0 and "handed 1 file(s) to its inbox" in out.stdout, out.stdout + out.stderr
        inbox = watch_service.inbox_of(db)
        deadline = time.time() + 30
        while any(inbox.iterdir()) and time.time() < deadline:
            time.sleep(0.2)
        assert not any(inbox.iterdir())  # imported, then removed
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    s = Store(db)
    assert s.metrics(["pushed"])["value"].tolist() == [3.0, 2.5]
    s.close()


def test_an_inbox_batch_that_fails_is_kept_with_its_reason(store, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("step,loss\n0,nan\n")
    batch = watch_service.hand_to_inbox(store.url, [bad])
    report = Watcher(store, []).scan()
    assert report.inbox[0]["status"] == "refused" and "NaN" in report.inbox[0]["message"]
    failed = batch.with_name(batch.name + ".failed")
    assert "NaN" in (failed / "error.txt").read_text() and not batch.exists()
    assert Watcher(store, []).scan().inbox == []  # not retried


def test_background_thread_follows_a_growing_file(store, logs):
    path = logs / "bg.csv"
    path.write_text("step,loss\n0,1.0\n")
    watcher = Watcher(store, [str(logs)], interval=0.1, settle_s=3600).start()
    try:
        deadline = time.time() + 20
        while "bg" not in store.run_names() and time.time() < deadline:
            time.sleep(0.05)
        append(path, "1,0.9\n")
        while len(rows(store, "bg")) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert rows(store, "bg")["value"].tolist() == [1.0, 0.9]
    finally:
        watcher.stop()
    assert not watcher.running


def test_watch_tables_and_writes_on_both_engines(any_db_url, tmp_path):
    """The watch repository is plain SQLAlchemy Core: append, replace, states and the marker on DuckDB
    and PostgreSQL (the PostgreSQL case skips with its reason where no server can start, not in CI)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    s = Store(any_db_url)
    try:
        watcher = Watcher(s, [str(logs)], settle_s=3600)
        path = logs / "both.csv"
        path.write_text("step,loss\n0,3.0\n1,2.9\n")
        marker = watch_service.change_marker(s)
        assert added(watcher.scan()) == {"both": 2}
        append(path, "2,2.8\n")
        assert added(watcher.scan()) == {"both": 1} and watcher.scan().runs == []
        path.write_text("step,loss\n0,1.0\n")
        assert watcher.scan().runs[0]["n_metric_rows"] == 1
        assert watch_service.change_marker(s) != marker
        assert watch_service.files_frame(s)["status"].tolist() == ["ok"]
        watch_service.add_folder(s, str(logs))
        assert watch_service.stored_folders(s) == [str(logs)]
    finally:
        s.close()


def test_two_watched_files_never_feed_one_run(store, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "same.csv").write_text("step,loss\n0,1.0\n")
    (b / "same.csv").write_text("step,loss\n0,9.0\n1,8.0\n")
    report = Watcher(store, [str(a), str(b)], settle_s=3600).scan()
    assert added(report) == {"same": 1} and "already fed by the watched file" in report.errors[str(b / "same.csv")]
    assert rows(store, "same")["value"].tolist() == [1.0]


# ---------------------------------------------------------------------------------------- the Runs page
def test_runs_page_panel_adds_a_folder_and_shows_reasons_literally(db_url, monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    logs = tmp_path / "page-logs"
    logs.mkdir()
    (logs / "ok.csv").write_text("step,loss\n0,1.0\n")
    (logs / "[x](http:evil) bad.csv").write_text("step,loss\n0,nan\n")
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    monkeypatch.setenv(watch_service.INTERVAL_ENV, "0.2")
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    at.text_input(key="watch_new_folder").input(str(logs)).run()
    at.button(key="watch_add").click().run()
    assert any("Watching" in s.value for s in at.success)
    deadline = time.time() + 30
    while time.time() < deadline:
        at.run()
        if any("bad.csv" in e.value for e in at.error):
            break
        time.sleep(0.3)
    reason = next(e.value for e in at.error if "bad.csv" in e.value)
    assert "\\[x\\]" in reason and "NaN" in reason  # the file name is escaped, never a link
    assert any("● live" in c.value and "ok" in c.value for c in at.caption)
    assert at.button(key=f"watch_remove_{logs}")
    at.button(key=f"watch_remove_{logs}").click().run()
    assert not at.exception
    s = Store(db_url)
    assert watch_service.stored_folders(s) == [] and "ok" in s.run_names()
    s.close()


def test_two_watchers_of_one_folder_store_every_row_once(any_db_url, tmp_path):
    """Several dashboards may watch one folder of a team store: each file's state is checked (and on
    PostgreSQL locked) in the transaction that stores its rows, so a row is stored once."""
    import threading

    logs = tmp_path / "shared"
    logs.mkdir()
    path = logs / "shared-run.csv"
    path.write_text("step,loss\n")
    stores = [Store(any_db_url), Store(any_db_url)]
    watchers = [Watcher(s, [str(logs)], interval=0.01, settle_s=3600) for s in stores]
    errors = []

    def scan_until(stop, watcher):
        while not stop.is_set():
            try:
                watcher.scan()
            except Exception as exc:  # noqa: BLE001 (any failure fails the test below)
                errors.append(exc)

    stop = threading.Event()
    threads = [threading.Thread(target=scan_until, args=(stop, w)) for w in watchers]
    for t in threads:
        t.start()
    try:
        for step in range(60):
            append(path, f"{step},{3 - step / 100}\n")
            time.sleep(0.01)
        time.sleep(1.0)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    for w in watchers:
        w.scan()
    assert errors == []
    got = rows(stores[0], "shared-run")
    assert got["step"].tolist() == list(range(60))
    for s in stores:
        s.close()


def test_a_files_first_rows_are_stored_once_when_two_watchers_race(any_db_url, tmp_path):
    """The race the test above hits about once in twenty CI runs, made certain: watcher A has checked
    that a file has no stored state yet, and holds its transaction open while watcher B reads the
    same first rows. B must wait for A and then stand back (StateMoved), not store the rows again.
    There is no row to lock yet, so PostgreSQL needs a lock on the path itself."""
    import threading

    from core.runs import ParsedRun
    from db import watch as watch_db

    path = str(tmp_path / "race.csv")
    frame = pd.DataFrame({"name": "loss", "step": [0.0, 1.0], "tokens": None, "flops": None,
                          "wall_time": None, "value": [3.0, 2.9]})
    row = {"path": path, "folder": str(tmp_path), "format": "csv", "size": 20, "mtime": 1.0, "inode": 7,
           "consumed": 20, "state": {}, "status": "ok", "runs": ["race"]}
    a, b = Store(any_db_url), Store(any_db_url)
    outcome = []

    def watcher_b():
        try:
            watch_db.store_rows(b, dict(row), "append", [ParsedRun(name="race", source_format="csv_long",
                                                                   metrics=frame.copy())], expect=None)
            outcome.append("stored")
        except watch_db.StateMoved:
            outcome.append("stood back")

    try:
        second = threading.Thread(target=watcher_b)
        with a.write() as conn:
            watch_db._check_state(conn, path, None)
            second.start()
            time.sleep(0.5)  # B reads and checks now, while A has not written
            a.ingest_into(conn, [ParsedRun(name="race", source_format="csv_long", metrics=frame.copy())],
                          on_duplicate="error")
            watch_db._write_file_row(conn, row)
        second.join(30)
        assert outcome == ["stood back"]
        assert rows(a, "race")["step"].tolist() == [0, 1]
    finally:
        a.close()
        b.close()


def test_a_folder_removed_and_added_again_takes_its_runs_back(store, logs):
    (logs / "again.csv").write_text("step,loss\n0,1.0\n1,0.9\n")
    watch_service.add_folder(store, str(logs))
    Watcher(store, [], settle_s=3600).scan()
    watch_service.remove_folder(store, str(logs))
    append(logs / "again.csv", "2,0.8\n")
    watch_service.add_folder(store, str(logs))
    report = Watcher(store, [], settle_s=3600).scan()
    assert report.errors == {} and report.runs[0]["n_metric_rows"] == 3 and report.runs[0]["added_rows"] == 1
    assert rows(store, "again")["value"].tolist() == [1.0, 0.9, 0.8]


EXIT_WHILE_SCANNING = """
import sys, time
from pathlib import Path
from services.runs import open_store
from services.watch import Watcher
root = Path(sys.argv[1])
logs = root / "logs"
logs.mkdir()
for i in range(200):
    (logs / f"r{i}.csv").write_text("step,loss\\n" + "".join(f"{s},{3 - s / 1000}\\n" for s in range(50)))
watcher = Watcher(open_store(f"duckdb:///{root}/s.duckdb"), [str(logs)], interval=0.0).start()
time.sleep(float(sys.argv[2]))
print("running at exit:", watcher.running)
"""


@pytest.mark.parametrize("seconds", [0.7, 1.2, 2.0])
def test_a_process_that_exits_while_its_watcher_scans_exits_cleanly(tmp_path, seconds):
    """Without the exit hook, Python kills the daemon thread inside a DuckDB call while it finalizes and
    the process aborts (status 134, "FATAL: exception not rethrown"): 4 of 7 such exits did here."""
    out = subprocess.run([sys.executable, "-c", EXIT_WHILE_SCANNING, str(tmp_path), str(seconds)],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "running at exit: True"


def test_watch_args_reads_the_apps_own_arguments_and_the_environment(monkeypatch, capsys):
    """``streamlit run app.py -- --watch DIR [DIR...]``: every --watch flag counts, the first mention
    of a folder keeps its place, other arguments are left to whoever reads them, $SCALESCOPE_WATCH adds."""
    from pages.watch_panel import watch_args

    monkeypatch.delenv(watch_service.WATCH_ENV, raising=False)
    assert watch_args([]) == [] and watch_args(["--server.port", "8502"]) == []
    assert watch_args(["--watch", "a", "b", "--other", "x", "--watch", "c", "--watch=a"]) == ["a", "b", "c"]
    monkeypatch.setenv(watch_service.WATCH_ENV, os.pathsep.join(["c", "d", " "]))
    assert watch_args(["--watch", "a", "c"]) == ["a", "c", "d"]
    assert watch_args([]) == ["c", "d"]
    # --watch without a folder is argparse's usage error (exit status 2), not a silent empty list
    with pytest.raises(SystemExit) as exited:
        watch_args(["--watch"])
    assert exited.value.code == 2 and "--watch" in capsys.readouterr().err
