"""Browser flow of the Fits page (issue 3): fit Chinchilla Approach 3 to the seeded demo sweep with
a small bootstrap, see the parameter table and the plots, download the parameters; a Stop press
abandons a long fit and stores nothing."""
from __future__ import annotations

import pandas as pd
import pytest

from core.laws import BESIROGLU_2024
from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e


def open_fits(page, url: str) -> None:
    page.goto(url + "/")  # the app's navigation registers its pages on its first run
    wait_idle(page)
    page.goto(url + "/fits")
    wait_idle(page)


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label`` (its list opens from the "Open" button;
    a press that lands while the page re-renders is lost, so it is retried)."""
    box = page.locator("[data-testid=stSelectbox]").filter(has_text=label)
    item = page.get_by_role("option", name=option)
    for _ in range(5):
        box.get_by_role("button", name="Open").click()
        try:
            item.wait_for(state="attached", timeout=3_000)
            break
        except Exception:
            page.keyboard.press("Escape")
    item.click()
    wait_idle(page)
    assert box.get_by_role("combobox").input_value() == option


def test_fit_demo_runs_shows_table_and_plots(server, page, tmp_path):
    open_fits(page, server["url"])
    # other browser tests may add runs to this server's store: fit only the synthetic demo sweep
    page.get_by_label("Filter by name or tag").fill("synthetic demo")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_text("30 of 30 matching runs selected.").wait_for()
    bootstrap = page.get_by_role("spinbutton", name="Bootstrap resamples B")
    bootstrap.fill("50")
    bootstrap.press("Enter")
    wait_idle(page)
    choose(page, "Start grid", "quick 32 starts")

    page.get_by_role("button", name="Fit", exact=True).click()
    page.get_by_text("30 points, 0 warning(s).", exact=False).wait_for(timeout=120_000)
    wait_idle(page)
    assert not page.locator("[data-testid=stException]").count()
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    page.wait_for_function(  # the loss-vs-compute chart draws the efficient frontier and its band
        "() => ['efficient frontier L(N*(C), D*(C))', '95% bootstrap band'].every(n =>"
        " [...document.querySelectorAll('.legendtext')].some(e => e.textContent === n))")
    assert page.locator("[data-testid=stPlotlyChart] .main-svg").count() >= 1

    with page.expect_download() as download:
        page.get_by_role("button", name="Parameters as CSV").click()
    path = tmp_path / "params.csv"
    download.value.save_as(path)
    table = pd.read_csv(path).set_index("name")
    assert table.loc[["E", "A", "B", "alpha", "beta"], "kind"].eq("parameter").all()
    assert table.loc["alpha", "value"] == pytest.approx(BESIROGLU_2024.alpha, abs=0.03)
    assert table.loc["beta", "value"] == pytest.approx(BESIROGLU_2024.beta, abs=0.03)
    assert (table.loc["alpha", "95% low"] < table.loc["alpha", "value"] < table.loc["alpha", "95% high"])
    page.get_by_role("heading", name="Result").first.evaluate("e => e.scrollIntoView()")
    shot = screenshot(page, "fits_approach3")
    assert shot.stat().st_size > 20_000


def test_stop_abandons_the_fit(server, page):
    open_fits(page, server["url"])
    page.get_by_label("Filter by name or tag").fill("synthetic demo")
    page.keyboard.press("Enter")
    wait_idle(page)
    before = page.locator("[data-testid=stSelectbox]").filter(has_text="Stored fit").inner_text()
    # the full grid and 1,000 resamples: long enough to press Stop while it runs
    page.get_by_role("button", name="Fit", exact=True).click()
    page.locator("[data-testid=stProgress]").first.wait_for()
    page.get_by_role("button", name="Stop").click()
    page.get_by_text("Fit stopped: nothing was stored.").wait_for()
    wait_idle(page)
    assert page.locator("[data-testid=stSelectbox]").filter(has_text="Stored fit").inner_text() == before
