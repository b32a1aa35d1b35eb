"""No stale state (issue 13 §7), each under AppTest: what a finished job leaves on the page, and
widgets that lose their selection. The Runs page's cases are in tests/test_runs_page.py; the
uploader and deep links are browser cases (tests/e2e/test_newcomer_flow.py, test_deep_links_flow.py)."""
from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # a busy machine: the first run imports plotly, scipy, torch


def page(name: str) -> AppTest:
    at = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def leftovers(at: AppTest, stop_key: str) -> list:
    """A Stop button or a progress bar still on the page."""
    stops = [b for b in at.button if b.key == stop_key]
    return stops + list(at.get("progress"))


def test_fits_page_clears_stop_and_bar_when_the_fit_is_done(page_store):
    at = page("fits")
    at.number_input(key="fit_bootstrap").set_value(20)
    at.selectbox(key="fit_grid").set_value("quick")
    at.button(key="fit_button").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Stored fit #") for s in at.success)
    assert leftovers(at, "stop_button") == []


def test_probes_page_clears_stop_and_bar_after_a_throughput_probe(page_store):
    at = page("probes")
    at.selectbox(key="probe_device").set_value("cpu")
    at.radio(key="probe_mode").set_value("Throughput").run()
    at.text_input(key="thr_params").set_value("2e5")
    at.number_input(key="thr_batch").set_value(2)
    at.number_input(key="thr_seq_len").set_value(32)
    at.number_input(key="thr_iters").set_value(2).run()
    at.button(key="thr_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Stored probes #") for s in at.success)
    assert leftovers(at, "thr_stop") == []


def test_routing_page_clears_stop_and_bar_after_a_capture(page_store):
    at = page("routing")
    at.number_input(key="routing_max_tokens").set_value(200)
    at.button(key="routing_capture").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Stored capture(s)") for s in at.success)
    assert leftovers(at, "routing_stop") == []


def test_planner_target_quality_keeps_its_selection_across_a_law_switch(page_store):
    """The browser keeps a radio's selection by its label: labels quoting the law's loss changed with
    every law switch, and the radio showed nothing selected. The labels must not depend on the law."""
    at = page("planner")
    radio = at.radio(key="planner_target")
    before = list(radio.options)
    assert radio.value == "budget"
    at.selectbox(key="planner_law").set_value("hoffmann").run()
    assert at.radio(key="planner_target").options == before
    at.selectbox(key="planner_law").set_value("kaplan").run()  # not Chinchilla: the radio goes
    at.selectbox(key="planner_law").set_value("epoch").run()
    radio = at.radio(key="planner_target")
    assert radio.options == before and radio.value == "budget" and radio.index == 0
