"""Browser tests: a real `streamlit run app.py` on a free port, driven by Playwright in Debian's Chromium.

Each test session starts one server against a temporary DuckDB file. Where no Chromium is installed
the tests skip with a reason — except in CI (``CI`` set), where a missing browser is a failure.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("SCALESCOPE_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = ROOT / "tests" / "e2e" / "screenshots"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _need_chromium():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; CI must install Debian's chromium package.")
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` to run browser tests")


def start_streamlit(db_path: Path, **env_extra) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free localhost port against ``db_path``; waits until healthy.

    Shared by the browser tests, benchmarks/planner_browser.py and docs/screenshots.py. The
    server's output goes to ``db_path`` with a .log suffix.
    """
    port = _free_port()
    env = dict(os.environ, SCALESCOPE_DB_URL=f"duckdb:///{db_path}", PYTHONUNBUFFERED="1", **env_extra)
    log_path = db_path.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("streamlit did not become healthy within 90 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    _need_chromium()
    db = tmp_path_factory.mktemp("e2e") / "e2e.duckdb"
    # first start for real (routing captures seeded); the synthetic demo keeps page numbers fixed
    proc, url = start_streamlit(db, SCALESCOPE_SEED_ROUTING="1", SCALESCOPE_DEMO="synthetic")
    yield {"url": url, "db_url": f"duckdb:///{db}", "db": db}
    stop(proc)


@pytest.fixture(scope="session")
def browser():
    _need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    p = context.new_page()
    p.set_default_timeout(60_000)
    yield p
    context.close()


def wait_idle(page, timeout=120_000):
    """Wait until the app has finished its script run (Streamlit's own browser tests do this)."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=timeout)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
