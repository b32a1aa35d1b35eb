"""Browser: start a capture of the bundled tiny MoE from the Routing page, then see its heatmaps and
the token view (text coloured by top expert, with the routing in each token's hover title)."""
from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e
CAPTURE_TIMEOUT = 240_000  # the server's first capture imports transformers: tens of seconds on a busy machine


def test_capture_the_bundled_model_and_see_the_heatmaps(server, page):
    page.goto(server["url"] + "/")  # the first request of a session opens (and seeds) the store
    wait_idle(page)
    page.locator("[data-testid=stSidebarNav] a", has_text="Routing").click()
    page.get_by_role("heading", name="Routing").first.wait_for()
    wait_idle(page)
    new_capture = page.locator("[data-testid=stExpander]", has_text="New capture").first
    if new_capture.locator("details[open]").count() == 0:  # closed once the store holds captures
        new_capture.locator("summary").click()
    max_tokens = page.get_by_label("Max tokens")
    max_tokens.fill("300")
    max_tokens.press("Enter")
    wait_idle(page)

    page.get_by_role("button", name="Capture", exact=True).click()
    page.get_by_text(re.compile(r"^Stored capture\(s\) #\d+\.$")).wait_for(timeout=CAPTURE_TIMEOUT)
    wait_idle(page, timeout=CAPTURE_TIMEOUT)
    assert page.locator("[data-testid=stAlertContentError]").count() == 0
    # the new capture is the one shown: at most 300 tokens of the bundled sample, through 4 MoE layers
    summary = page.get_by_text(re.compile(r"^qwen3_moe · 4 MoE layers · 8 experts, top-2 · \d+ tokens"))
    n_tokens = int(re.search(r"top-2 · (\d+) tokens", summary.first.inner_text()).group(1))
    assert 290 <= n_tokens <= 300

    # heatmaps: load, weight similarity, co-activation, domain specialization (Plotly draws them in SVG)
    page.wait_for_function("() => document.querySelectorAll('[data-testid=stPlotlyChart] .heatmaplayer').length >= 4",
                           timeout=60_000)
    for title in ("Share of each layer's assignments per expert", "Cosine similarity of gate projection, layer 2",
                  "Co-activation, layer 2", "Domain specialization, layer 2"):
        assert page.locator(".gtitle", has_text=title).count() == 1, title
    domains = page.locator("[data-testid=stPlotlyChart]", has=page.locator(".gtitle", has_text="Domain specialization"))
    for domain in ("python", "c", "prose", "json", "csv"):
        assert domains.locator(".ytick text", has_text=re.compile(rf"^{domain}$")).count() == 1, domain

    # the token view: every token a coloured span whose hover title names its top-2 experts and weights
    tokens = page.locator("span.ss-token")
    tokens.first.wait_for()
    assert tokens.count() >= 50
    title = tokens.first.get_attribute("title")
    assert re.search(r"· id \d+ · position 0 · layer 2 · experts \d \(0\.\d\d\), \d \(0\.\d\d\)$", title), title
    assert tokens.first.evaluate("e => getComputedStyle(e).backgroundColor") != "rgba(0, 0, 0, 0)"
    tokens.first.scroll_into_view_if_needed()
    shot = screenshot(page, "routing_capture")
    assert shot.stat().st_size > 10_000
