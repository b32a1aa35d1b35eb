"""Browser: a newcomer's first session end to end (issue 13).

Cold start (a new server on an empty store) → upload a TensorBoard zip (written by torch's
SummaryWriter) and then a W&B chart export, two uploads in a row → compare two metrics in two
panels → fit the bundled Chinchilla data → open the planner at that fit → copy the link and open it
in a new browser context, which restores the plan.
"""
from __future__ import annotations

import re
import time
import zipfile

import numpy as np
import pytest

from tests.e2e.conftest import _need_chromium, screenshot, wait_idle
from tools.streamlit_server import start_streamlit, stop

pytestmark = pytest.mark.e2e

N_STAR = ".st-key-planner_n_params [data-testid=stMetricValue]"
# The first page must be interactive this soon after the browser's first request on a cold server.
# Issue 13 §1 asks ≤ 15 s for the e2e test once the demo ships precomputed; the bound here also
# covers a machine whose first start still seeds the demo (printed below, to be tightened then).
COLD_START_S = 120.0


@pytest.fixture
def cold_server(tmp_path):
    _need_chromium()
    # a newcomer's defaults (tests/conftest.py sets the test suite's synthetic demo): the full demo
    proc, url = start_streamlit(tmp_path / "newcomer.duckdb", SCALESCOPE_DEMO="probe", SCALESCOPE_SEED_ROUTING="1")
    yield url
    stop(proc)


def tensorboard_zip(tmp_path) -> "Path":
    """A zip of one run folder as torch's SummaryWriter writes it: train/loss and lr."""
    from torch.utils.tensorboard import SummaryWriter

    run_dir = tmp_path / "tb" / "newcomer-tb"
    writer = SummaryWriter(log_dir=str(run_dir))
    for step in range(0, 400, 4):
        writer.add_scalar("train/loss", 4.0 * (1 + step) ** -0.08 + 0.02 * np.sin(step), step)
        writer.add_scalar("lr", 3e-4 * min(1.0, (step + 1) / 40), step)
    writer.close()
    path = tmp_path / "newcomer-tb.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for f in run_dir.rglob("*"):
            zf.write(f, f.relative_to(run_dir.parent))
    return path


def wandb_export(tmp_path) -> "Path":
    """A W&B web-UI chart export (every cell quoted, __MIN/__MAX envelope columns beside the line)."""
    run = "newcomer-wandb"
    header = [f"{run} - train/loss", f"{run} - train/loss__MIN", f"{run} - train/loss__MAX", f"{run} - lr"]
    lines = ['"Step",' + ",".join(f'"{h}"' for h in header)]
    for step in range(0, 400, 5):
        loss = 4.2 * (1 + step) ** -0.09
        lines.append(",".join(f'"{v}"' for v in (step, loss, loss - 0.03, loss + 0.03, 2e-4)))
    path = tmp_path / "wandb_export.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def upload(page, path, gone: tuple = ()) -> str:
    """Put ``path`` in the uploader, press Import, return the success message. ``gone``: files of an
    earlier import, which must no longer wait in the uploader (they would be imported again)."""
    dropzone = page.locator("[data-testid=stFileUploaderDropzoneInput]")
    dropzone.set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for()
    wait_idle(page)  # the rerun the new file starts: the last import's message goes with it
    assert page.locator("[data-testid=stAlertContentSuccess]").filter(has_text="Imported").count() == 0
    waiting = page.locator("[data-testid=stFileUploader]").first.inner_text()
    assert path.name in waiting and not any(name in waiting for name in gone), waiting
    page.get_by_role("button", name="Import").click()
    wait_idle(page)
    assert page.locator("[data-testid=stAlertContentError]").count() == 0, \
        page.locator("[data-testid=stAlertContentError]").first.inner_text()
    message = page.locator("[data-testid=stAlertContentSuccess]").filter(has_text="Imported").first
    message.wait_for()
    # the import reruns the page with a fresh uploader; the old one goes when that run ends
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stFileUploaderDropzoneInput]').length === 1")
    return message.inner_text()


def pick(page, label: str, text: str) -> None:
    """Type ``text`` into the multiselect or selectbox labelled ``label`` and take the first match."""
    widget = page.locator("[data-testid=stMultiSelect], [data-testid=stSelectbox]").filter(
        has=page.get_by_text(label, exact=True)).first
    widget.locator("input").click()
    page.keyboard.type(text)
    option = page.get_by_role("option", name=re.compile(re.escape(text))).first
    try:
        option.wait_for(timeout=30_000)
    except Exception:
        screenshot(page, "newcomer_pick_failed")
        raise
    option.click()
    page.keyboard.press("Escape")
    wait_idle(page)


def test_newcomer_journey(cold_server, browser, tmp_path):
    url = cold_server
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.set_default_timeout(120_000)

    # -- cold start: the first page is interactive
    start = time.perf_counter()
    page.goto(url + "/")
    page.locator("[data-testid=stFileUploaderDropzoneInput]").wait_for(state="attached")
    wait_idle(page)
    first_page_s = time.perf_counter() - start
    print(f"\nnewcomer: first page interactive {first_page_s:.1f} s after the first request")
    assert first_page_s <= COLD_START_S

    # -- two uploads in a row: a TensorBoard zip, then a W&B export
    tb_zip = tensorboard_zip(tmp_path)
    tb_message = upload(page, tb_zip)
    assert tb_message.startswith("Imported 1 run(s): ") and "newcomer-tb" in tb_message
    wb_message = upload(page, wandb_export(tmp_path), gone=(tb_zip.name,))
    assert wb_message == "Imported 1 run(s): newcomer-wandb"

    # -- compare two metrics of the two runs in two panels
    page.get_by_label("Filter by name or tag").fill("newcomer")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_text(re.compile(r"^2 of \d+ runs match")).wait_for()
    pick(page, "Metrics (one panel each)", "lr")
    charts = page.locator("[data-testid=stPlotlyChart]")
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stPlotlyChart]').length === 2")
    svg_text = "els => els.map(e => e.textContent)"  # SVG text has no innerText
    titles = page.locator("[data-testid=stPlotlyChart] .gtitle").evaluate_all(svg_text)
    assert sorted(titles) == ["lr", "train/loss"], titles
    legend = charts.first.locator(".legendtext").evaluate_all(svg_text)
    assert any("newcomer-wandb" in t for t in legend) and any("newcomer-tb" in t for t in legend), legend
    assert "metric=lr" in page.url and "metric=train%2Floss" in page.url  # the view is in the link
    screenshot(page, "newcomer_two_panels")

    # -- fit the bundled Chinchilla data (quick settings: the page's defaults take ~35 s more)
    page.get_by_role("link", name="Fits").first.click()
    wait_idle(page)
    pick(page, "Dataset (tag)", "chinchilla")
    page.locator(".st-key-fit_bootstrap input").fill("100")
    page.keyboard.press("Enter")
    wait_idle(page)
    pick(page, "Start grid", "quick")
    page.locator(".st-key-fit_name input").fill("newcomer chinchilla")
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Fit", exact=True).click()
    wait_idle(page)
    stored = page.get_by_text(re.compile(r"^Stored fit #\d+")).first
    stored.wait_for()
    fit_id = int(re.search(r"#(\d+)", stored.inner_text()).group(1))
    assert page.get_by_role("button", name="Stop").count() == 0  # nothing stale once it is done

    # -- open the planner at the fit
    page.get_by_role("link", name="Planner").first.click()
    wait_idle(page)
    pick(page, "Scaling law", f"Fit #{fit_id}: newcomer chinchilla")
    page.wait_for_function(f"() => location.search.includes('law=fit-{fit_id}')")
    n_star = page.inner_text(N_STAR)
    link = page.url

    # -- the copied link restores the plan in a new browser context
    other = browser.new_context(viewport={"width": 1440, "height": 900})
    fresh = other.new_page()
    fresh.set_default_timeout(120_000)
    fresh.goto(link)
    wait_idle(fresh)
    fresh.wait_for_selector(N_STAR)
    shown_law = fresh.locator(".st-key-planner_law").evaluate(  # the selected option, wherever it is drawn
        "e => e.textContent + ' ' + [...e.querySelectorAll('input')].map(i => i.value + ' ' + (i.getAttribute('aria-label') || '')).join(' ')")
    assert f"Fit #{fit_id}: newcomer chinchilla" in shown_law, shown_law
    assert fresh.inner_text(N_STAR) == n_star
    assert fresh.get_by_text("Page not found").count() == 0
    screenshot(fresh, "newcomer_planner_from_link")
    other.close()
    context.close()
