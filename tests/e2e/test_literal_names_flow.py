"""Browser: run and metric names written as Markdown show literally, and the page fetches nothing
from outside the app (issue 12 §2: `![t](http://host/x.png)` in a name made the browser fetch it)."""
from __future__ import annotations

from urllib.parse import urlsplit

import pandas as pd
import pytest

from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e

RUN = "![t](http://127.0.0.9/x.png)"
METRIC = "[click](http://127.0.0.9/)"


def outside_the_app(url: str, origin: str) -> bool:
    """True for a request anywhere but the app's own origin (data: and blob: URLs are in the page)."""
    parts, app = urlsplit(url), urlsplit(origin)
    if parts.scheme in ("data", "blob", "about"):
        return False
    return parts.netloc != app.netloc


def upload(page, path) -> None:
    page.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(path))
    page.get_by_text(path.name).first.wait_for()
    page.get_by_role("button", name="Import").click()
    wait_idle(page)


def test_markdown_in_names_shows_literally_and_fetches_nothing_outside(server, page, tmp_path):
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    path = tmp_path / "hostile_names.csv"
    pd.DataFrame({"run": RUN, "step": range(50), "metric": METRIC,
                  "value": [4.0 - 0.01 * s for s in range(50)]}).to_csv(path, index=False)

    page.goto(server["url"] + "/")
    wait_idle(page)
    upload(page, path)
    page.get_by_text(f"Imported 1 run(s): {RUN}", exact=True).wait_for()

    # the filter caption quotes the run name; the curve explorer picks the run and its one metric
    page.get_by_label("Filter by name or tag").fill("127.0.0.9")
    page.keyboard.press("Enter")
    wait_idle(page)
    caption = page.locator("[data-testid=stCaptionContainer]").filter(has_text="runs match").first
    assert caption.inner_text().strip().endswith(f"runs match: {RUN}")
    page.wait_for_function(
        "name => [...document.querySelectorAll('.legendtext')].some(e => e.textContent === name)", arg=RUN)
    assert page.get_by_text(METRIC, exact=True).count() >= 1  # the metric picker shows the name as written

    # the same file again: the duplicate-run error quotes the name, literally
    upload(page, path)
    alert = page.locator("[data-testid=stAlertContentError]").first
    alert.wait_for()
    assert f"'{RUN}'" in alert.inner_text() and "\n" not in alert.inner_text().strip()

    # nothing became an image, and nothing was requested outside the app
    assert page.locator("img[src*='127.0.0.9']").count() == 0
    # GitHub-flavoured Markdown still turns a bare URL in the text into a link to itself (the text is
    # literal, its target is what it says); a name never becomes a link with a hidden target ("click").
    links = page.evaluate("() => [...document.querySelectorAll('a[href*=\\'127.0.0.9\\']')]"
                          ".map(a => [a.textContent, a.getAttribute('href')])")
    assert all(text == href for text, href in links), links
    screenshot(page, "literal_names")
    outside = [u for u in requests if outside_the_app(u, server["url"])]
    assert requests and not outside, outside
