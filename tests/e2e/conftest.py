"""Browser tests: a real `streamlit run app.py` on a free port, driven by Playwright in Debian's Chromium.

Each test session starts one server against a temporary DuckDB file. Where no Chromium is installed
the tests skip with a reason — except in CI (``CI`` set), where a missing browser is a failure.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

# The server starter and browser settings are shared with benchmarks/ and docs/screenshots.py;
# wait_idle is re-exported here for the test files.
from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_idle  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "tests" / "e2e" / "screenshots"


def _need_chromium():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        if os.environ.get("CI"):
            pytest.fail(f"Chromium not found at {CHROMIUM}; CI must install Debian's chromium package.")
        pytest.skip(f"Chromium not found at {CHROMIUM}: `apt-get install -y chromium` to run browser tests")


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


def stretched(seconds: float) -> float:
    """A latency bound ``seconds``, stretched when the machine is oversubscribed (more than 4 runnable
    processes per core over the last minute, as on a CI box shared by several jobs): a test still
    catches a slow path (a reload, a demo computed again) and not the neighbours' load. The targets
    themselves are measured on a quiet machine in benchmarks/."""
    per_core = os.getloadavg()[0] / (os.cpu_count() or 1)
    return seconds * max(1.0, per_core / 4.0)


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
