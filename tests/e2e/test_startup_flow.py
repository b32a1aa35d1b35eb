"""Cold start in a real browser (issue 13 §1-2): a fresh store file, `streamlit run`, and the first page
is usable — its script run finished and the curves chart on screen — within 15 s of the browser's first
request (the target on a quiet machine is 5 s: benchmarks/startup.py); the Fits page then shows the
bundled Chinchilla example fit (Besiroglu et al. 2024: E ≈ 1.82) without a warning."""
from __future__ import annotations

import os
import re
import time

import pytest

from tests.e2e.conftest import start_streamlit, stop, stretched, wait_idle

CHART = "[data-testid=stPlotlyChart]"
FIRST_PAGE_S = 15.0  # the allowance for this test (5 s is the target: benchmarks/startup.py)


def selected(page, key: str) -> str:
    """The option a selectbox shows (its combobox input's value)."""
    return page.locator(f".st-key-{key}").get_by_role("combobox").input_value()


@pytest.fixture
def cold_server(tmp_path):
    db = tmp_path / "fresh.duckdb"  # a new file: the first start loads the bundled demo
    proc, url = start_streamlit(db, SCALESCOPE_DEMO="probe", SCALESCOPE_SEED_ROUTING="1")
    yield url
    stop(proc)


def test_cold_start_is_usable_quickly_and_fits_opens_on_the_example(browser, cold_server):
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        start = time.perf_counter()
        page.goto(cold_server, wait_until="commit")
        page.wait_for_selector(CHART, state="visible")
        wait_idle(page)
        elapsed = time.perf_counter() - start
        assert elapsed <= stretched(FIRST_PAGE_S), f"first page usable after {elapsed:.1f} s (load {os.getloadavg()[0]:.1f})"
        assert page.locator("h1").first.inner_text() == "Runs"
        assert page.locator("[data-testid=stException]").count() == 0

        page.goto(f"{cold_server}/fits", wait_until="commit")
        wait_idle(page)
        page.wait_for_selector(CHART, state="visible")
        body = page.locator("[data-testid=stMain]").inner_text()
        assert selected(page, "fit_dataset") == "chinchilla (Epoch AI)"  # one dataset preselected
        assert "Chinchilla runs (Hoffmann et al. 2022, via Epoch AI)" in selected(page, "shown_fit")  # its fit shown
        assert "245 of 245 matching runs selected." in body
        assert page.locator("[data-testid=stAlertContentWarning]").count() == 0
        assert page.locator("[data-testid=stAlertContentError]").count() == 0
        # E ≈ 1.82 in the parameter table (glide's accessible cells) or the page's text
        cells = page.locator("[data-testid=stDataFrame] td, [data-testid=stDataFrame] [role=gridcell]")
        texts = " ".join(cells.all_inner_texts()) + " " + body
        assert re.search(r"\b1\.81[5-9]\d*\b|\b1\.82\b", texts), texts[:2000]
        assert not errors, errors
    finally:
        context.close()
