"""A real `streamlit run app.py` on a free localhost port, and the browser settings to drive it.

One starter for the browser tests (tests/e2e/conftest.py), benchmarks/planner_browser.py and
docs/screenshots.py, so all three see the app the same way. It imports nothing from the app: the
server is a subprocess, configured only through its environment (``SCALESCOPE_DB_URL`` and friends).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Debian's Chromium (Playwright's own browser download cannot work on these machines).
CHROMIUM = os.environ.get("SCALESCOPE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
# The script-run state Streamlit's own browser tests wait on.
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
HEALTH_TIMEOUT_S = 90.0  # a cold first start imports plotly, scipy and seeds the demo store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_streamlit(db_path: Path, **env_extra) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` on a free localhost port against ``db_path``; waits until healthy.

    Returns the process and its base URL; end it with :func:`stop`. ``env_extra`` are set in the
    server's environment (e.g. ``SCALESCOPE_DEMO="synthetic"``). The server's output goes to
    ``db_path`` with a .log suffix, and is shown if it exits before it is healthy.
    """
    port = free_port()
    env = dict(os.environ, SCALESCOPE_DB_URL=f"duckdb:///{db_path}", PYTHONUNBUFFERED="1", **env_extra)
    log_path = db_path.with_suffix(".log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1", "--server.headless", "true",
             "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + HEALTH_TIMEOUT_S
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{log_path.read_text()}")
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).status == 200:
                return proc, url
        except OSError:
            time.sleep(0.5)
    stop(proc)
    raise RuntimeError(f"streamlit did not become healthy within {HEALTH_TIMEOUT_S:.0f} s (log: {log_path})")


def stop(proc: subprocess.Popen) -> None:
    """Terminate the server, and kill it if it has not exited within 15 s."""
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=15)


def wait_idle(page, timeout: float = 120_000) -> None:
    """Wait until the app has finished its script run (a Playwright ``page``; ``timeout`` in ms).

    Waits twice, 300 ms apart, because a widget change can start a second run just after the first
    one ends (Streamlit's own browser tests do the same).
    """
    page.wait_for_selector(IDLE, timeout=timeout)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=timeout)
