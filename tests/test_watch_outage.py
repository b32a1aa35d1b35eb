"""A team store's PostgreSQL server that goes away while folders are watched, and comes back: the
watcher's thread, ``cli.py watch`` and the dashboard say so in one line (the password masked) and go
on; once the server is back every row is stored, exactly once.

The server here is a private throwaway cluster (tools/pg_cluster.py) that these tests stop and start;
the session's shared one (conftest.pg_server) is never stopped. The URL carries a password that the
cluster's trust authentication ignores, so every message can be checked for it.
"""
from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from db.store import Store
from services import watch as watch_service
from services.watch import Watcher

ROOT = Path(__file__).resolve().parents[1]
SECRET = "hunter2-outage"


@pytest.fixture(scope="module")
def cluster():
    from tools.pg_cluster import PgCluster

    try:
        cluster = PgCluster.start()
    except Exception as exc:  # not installed, or cannot start here (as conftest.pg_server)
        reason = f"cannot start a PostgreSQL cluster to stop: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the PostgreSQL cases must run there)", pytrace=False)
        pytest.skip(reason)
    yield cluster
    cluster.remove()


@pytest.fixture
def server(cluster):
    """The private cluster, running at the start of each test whatever the last one left."""
    if not (cluster.data / "postmaster.pid").exists():
        cluster.restart()
    yield cluster
    if not (cluster.data / "postmaster.pid").exists():
        cluster.restart()


@pytest.fixture
def url(server, request) -> str:
    """A fresh database on the private cluster, its URL carrying a password."""
    name = "outage_" + request.node.name.lower().replace("[", "_").replace("]", "")[:40]
    return server.create_database(name).replace("postgres@", f"postgres:{SECRET}@")


def lines(n: int, start: int = 0) -> str:
    return "".join(f"{i},{3 - i / 1e4:.6f}\n" for i in range(start, start + n))


def wait_for(condition, seconds: float = 15.0, every: float = 0.05):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not within {seconds} s: {condition.__doc__ or condition}")


def steps(store: Store, run: str) -> list[int]:
    got = store.metrics([run])
    return sorted(got["step"].astype(int).tolist())


def test_the_watcher_thread_says_why_it_waits_and_stores_every_row_once(server, url, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "live.csv"
    path.write_text("step,loss\n" + lines(400))  # ~6 pieces of 2 KiB: the server goes away mid-catch-up
    store = Store(url)
    watcher = Watcher(store, [str(logs)], interval=0.1, settle_s=3600, max_bytes=2048).start()
    try:
        wait_for(lambda: "live" in store.run_names() and len(steps(store, "live")) > 0)
        server.stop("immediate")  # as a crash would: no clean shutdown
        with open(path, "a") as fh:  # the job goes on writing while the store is away
            fh.write(lines(300, start=400))
        error = wait_for(lambda: watcher.last_error)
        assert "cannot be reached" in error and "The watcher retries every 0.1 s" in error, error
        assert SECRET not in error and "postgres:***@" in error and "\n" not in error
        time.sleep(0.5)  # several retries: the thread lives on
        assert watcher.running and SECRET not in (watcher.last_error or "")
        server.restart()
        wait_for(lambda: watcher.last_error is None and steps(store, "live") == list(range(700)), seconds=20)
        assert watch_service.files_frame(store)["status"].tolist() == ["ok"]
        assert watch_service.files_frame(store)["n_rows"].tolist() == [700]
    finally:
        watcher.stop()
        store.close()


def test_a_server_that_dies_inside_the_scans_write_loses_and_doubles_nothing(server, url, tmp_path, monkeypatch):
    """The server stops in the middle of the transaction that stores a piece (its rows are in, the file's
    new state is not): the transaction is lost whole, and the next scan reads that piece again."""
    from db import watch as watch_db

    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "mid.csv"
    path.write_text("step,loss\n" + lines(100))
    store = Store(url)
    watcher = Watcher(store, [str(logs)], settle_s=3600)
    try:
        assert watcher.try_scan().runs[0]["added_rows"] == 100
        with open(path, "a") as fh:
            fh.write(lines(50, start=100))
        real = watch_db._write_file_row

        def dies_first(conn, row):
            server.stop("immediate")
            return real(conn, row)

        monkeypatch.setattr(watch_db, "_write_file_row", dies_first)
        report = watcher.try_scan()
        monkeypatch.setattr(watch_db, "_write_file_row", real)
        assert report.runs == [] and "cannot be reached" in report.store_error and SECRET not in report.store_error
        server.restart()
        assert steps(store, "mid") == list(range(100))  # nothing of the lost piece
        report = watcher.try_scan()
        assert report.store_error is None and report.runs[0]["added_rows"] == 50
        assert steps(store, "mid") == list(range(150)) and watcher.try_scan().runs == []
    finally:
        store.close()


def _reader(stream, out: queue.Queue) -> threading.Thread:
    thread = threading.Thread(target=lambda: [out.put(line) for line in iter(stream.readline, "")], daemon=True)
    thread.start()
    return thread


def _next_line(out: queue.Queue, seconds: float = 20.0) -> str:
    return out.get(timeout=seconds)


def test_cli_watch_waits_for_the_server_and_goes_on(server, url, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    path = logs / "cli-run.csv"
    path.write_text("step,loss\n" + lines(10))
    proc = subprocess.Popen([sys.executable, "cli.py", "watch", str(logs), "--db", url, "--interval", "0.2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = queue.Queue(), queue.Queue()
    _reader(proc.stdout, stdout), _reader(proc.stderr, stderr)
    try:
        assert _next_line(stdout).startswith("cli-run: +10 rows")
        server.stop("immediate")
        with open(path, "a") as fh:
            fh.write(lines(5, start=10))
        warning = _next_line(stderr)
        assert warning.startswith("warning: The PostgreSQL database postgresql+psycopg://postgres:***@"), warning
        assert "cannot be reached" in warning and "The watcher retries every 0.2 s" in warning and SECRET not in warning
        time.sleep(1.0)  # five retries, and not one more line
        assert stderr.empty() and stdout.empty() and proc.poll() is None
        server.restart()
        assert _next_line(stderr) == "the store can be reached again: the watcher goes on from its stored state\n"
        assert _next_line(stdout).startswith("cli-run: +5 rows (csv_wide, 15 in all)")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    store = Store(url)
    assert steps(store, "cli-run") == list(range(15))
    store.close()


def test_the_dashboard_shows_one_line_while_the_server_is_away(server, url, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCALESCOPE_DB_URL", url)
    monkeypatch.setenv(watch_service.INTERVAL_ENV, "0.2")
    at = AppTest.from_file("../app.py", default_timeout=120)
    try:
        at.run()
        assert not at.exception and not at.error
        server.stop("immediate")
        at.run()
        assert not at.exception, [e.value for e in at.exception]  # no traceback: one line
        [error] = [e.value for e in at.error]
        assert "cannot be reached" in error and "The watcher retries every 0.2 s" in error, error
        assert SECRET not in error and "postgres:\\*\\*\\*@" in error
        server.restart()

        def page_is_back():
            at.run()
            return not at.exception and not at.error and at.title and at.title[0].value == "Runs"
        wait_for(page_is_back, seconds=20, every=0.2)  # the watcher's own line goes at its next scan
    finally:
        for watcher in list(watch_service._STARTED):
            if watcher.store.url == url:
                watcher.stop()
