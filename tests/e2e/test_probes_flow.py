"""Browser: on the Probes page, measure the throughput of a tiny model on this machine's device and
see tokens/s and MFU appear, then the stored probe in the table."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e


def fill(page, label: str, value: str) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(value)
    box.press("Enter")
    wait_idle(page)


def test_throughput_probe_shows_tokens_per_s_and_mfu(server, page):
    page.goto(server["url"] + "/probes?probe=throughput")  # straight to the throughput probe
    wait_idle(page, timeout=120_000)  # the first visit imports torch and transformers in the server
    page.get_by_role("heading", name="Probes", exact=True).wait_for()
    page.get_by_text(re.compile(r"^Runs on (cpu|cuda|mps) \(")).first.wait_for()
    expect(page.get_by_label("Throughput", exact=True)).to_be_checked()
    fill(page, "Model size N (active parameters)", "2e5")
    fill(page, "Batch (sequences)", "2")
    fill(page, "Sequence length", "32")
    fill(page, "Timed passes", "2")
    page.get_by_text(re.compile(r"^Shape: d_model 32, 1 layer, 1 head,")).wait_for()

    page.get_by_role("button", name="Measure throughput").click()
    wait_idle(page, timeout=120_000)
    assert page.locator("[data-testid=stAlertContentError]").count() == 0
    metrics = page.locator("[data-testid=stMetric]")
    metrics.nth(4).wait_for()
    assert metrics.count() == 5
    values = {metrics.nth(i).locator("[data-testid=stMetricLabel]").inner_text().strip():
              metrics.nth(i).locator("[data-testid=stMetricValue]").inner_text().strip() for i in range(5)}
    assert float(values["forward tokens/s"].replace(",", "")) > 100
    assert float(values["fwd+bwd tokens/s"].replace(",", "")) > 100
    mfu = float(values["fwd+bwd MFU"].rstrip("%"))
    assert 0 < mfu < 150
    page.get_by_text(re.compile(r"^Stored probes #\d+, #\d+ on ")).wait_for()
    page.locator("[data-testid=stDataFrame]").first.wait_for()  # the stored throughput probes
    shot = screenshot(page, "probes_throughput")
    assert shot.stat().st_size > 10_000
