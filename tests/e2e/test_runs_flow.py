"""Browser: upload a log on the Runs page, see the run in the table and its curve in the chart."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e


def test_upload_shows_run_in_table_and_chart(server, page, tmp_path):
    run = "e2e-upload-run"
    path = tmp_path / "upload.csv"
    pd.DataFrame({"run": run, "step": range(200), "metric": "loss",
                  "value": [4.0 - 0.005 * s for s in range(200)]}).to_csv(path, index=False)

    page.goto(server["url"] + "/")
    wait_idle(page)
    # first start seeded the synthetic demo, labelled as such
    page.get_by_text("synthetic demo", exact=False).first.wait_for()

    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(path))
    page.get_by_text("upload.csv").first.wait_for()
    page.get_by_role("button", name="Import").click()
    wait_idle(page)
    page.get_by_text(f"Imported 1 run(s): {run}").wait_for()

    # the table lists it: filter the table by name (the grid itself is drawn on a canvas)
    page.get_by_label("Filter by name or tag").fill("e2e-upload")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_text(re.compile(rf"^1 of \d+ runs match: {run}$")).wait_for()
    page.locator("[data-testid=stDataFrame]").first.wait_for()

    # the curve explorer follows the filter: the run's line is in the Plotly chart
    chart = page.locator("[data-testid=stPlotlyChart]").first
    chart.wait_for()
    page.wait_for_function(
        "name => [...document.querySelectorAll('.legendtext')].some(e => e.textContent === name)", arg=run)
    shot = screenshot(page, "runs_upload")
    assert shot.stat().st_size > 10_000


def runs_heading(page) -> int:
    """The Runs page's "N runs" heading: the store's run count as the server sees it."""
    text = page.get_by_role("heading").filter(has_text=re.compile(r"^\d+ runs$")).first.inner_text()
    return int(text.split()[0])


def test_bad_upload_shows_one_line_error_and_changes_nothing(server, page, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("run,step,metric,value\nx,0,loss,3.0\nx,1,loss,inf\n")
    page.goto(server["url"] + "/")
    wait_idle(page)
    before = runs_heading(page)
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(path))
    page.get_by_text("broken.csv").first.wait_for()
    page.get_by_role("button", name="Import").click()
    wait_idle(page)
    alert = page.locator("[data-testid=stAlertContentError]").first
    alert.wait_for()
    text = alert.inner_text().strip()
    assert "broken.csv" in text and "\n" not in text
    page.reload()
    wait_idle(page)
    assert runs_heading(page) == before
