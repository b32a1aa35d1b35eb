"""Browser flow of the Planner (issue 4): move the budget slider with the keyboard, read N* off the page,
check it against core/planner.py; a link with query parameters opens the same plan.

N* is read from the metric in the keyed container ``.st-key-planner_n_params`` (four significant
digits with a K/M/B/T suffix). The latency printed is key press → the new N* in the DOM.
"""
from __future__ import annotations

import re
import time

import pytest

from core.planner import chinchilla_optimum
from core.presets import get_preset
from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e

N_STAR = ".st-key-planner_n_params [data-testid=stMetricValue]"
BUDGET_SLIDER = 'input[type=range][aria-label^="Training budget"]'
SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}


def parse_human(text: str) -> float:
    match = re.fullmatch(r"([0-9.]+)([KMBT]?)", text.strip())
    assert match, f"N* on screen is not a number: {text!r}"
    return float(match.group(1)) * SUFFIX.get(match.group(2), 1.0)


def open_planner(page, url: str) -> None:
    # The app shell (app.py's st.navigation) registers its pages on its first run; before any session
    # has run it, Streamlit serves /planner as a legacy pages/ script. Open the root first.
    page.goto(url + "/")
    wait_idle(page)
    page.goto(url + "/planner")
    wait_idle(page)
    page.wait_for_selector(N_STAR)


# N* is shown to 3 significant digits (core/format.py): a half unit of the last digit is at most 0.5%.
SHOWN_REL = 5e-3


def press_and_time(page, key: str) -> tuple[str, float]:
    """Press ``key`` on the focused slider; (new N* text, ms until it replaced the old one)."""
    before = page.inner_text(N_STAR)
    start = time.perf_counter()
    page.keyboard.press(key)
    page.wait_for_function("([sel, old]) => { const e = document.querySelector(sel);"
                           " return e !== null && e.innerText !== old; }", arg=[N_STAR, before])
    latency_ms = (time.perf_counter() - start) * 1000.0
    wait_idle(page)
    return page.inner_text(N_STAR), latency_ms


def test_budget_slider_moves_n_star_to_core_value(server, page):
    epoch = get_preset("epoch").params  # the page's default law
    open_planner(page, server["url"])
    slider = page.locator(BUDGET_SLIDER)
    assert slider.get_attribute("aria-valuetext") == "1e23"
    assert parse_human(page.inner_text(N_STAR)) == pytest.approx(chinchilla_optimum(1e23, epoch).n_params, rel=SHOWN_REL)

    slider.focus()
    shown, latency_ms = press_and_time(page, "ArrowRight")
    assert slider.get_attribute("aria-valuetext") == "1.25e23"  # one R10 step: 0.1 decade
    assert parse_human(shown) == pytest.approx(chinchilla_optimum(1.25e23, epoch).n_params, rel=SHOWN_REL)
    assert "budget=1.25e23" in page.url  # the link follows the slider
    print(f"\nplanner: key press → updated N* on screen: {latency_ms:.0f} ms")
    screenshot(page, "planner_after_key_press")


def test_link_with_query_params_opens_that_plan(server, page):
    hoffmann = get_preset("hoffmann_unrounded").params
    page.goto(server["url"] + "/")
    wait_idle(page)
    page.goto(server["url"] + "/planner?budget=5e23&law=hoffmann_unrounded&experts=8")
    wait_idle(page)
    page.wait_for_selector(N_STAR)
    assert page.locator(BUDGET_SLIDER).get_attribute("aria-valuetext") == "5e23"
    assert parse_human(page.inner_text(N_STAR)) == pytest.approx(chinchilla_optimum(5e23, hoffmann).n_params,
                                                                 rel=SHOWN_REL)
    assert page.locator(".st-key-planner_moe_active [data-testid=stMetricValue]").count() == 1
    assert not page.locator("[data-testid=stException]").count()
    assert "nan" not in page.inner_text("[data-testid=stMain]").lower().split()
