"""The Planner page (issue 4) under Streamlit's AppTest: numbers on screen equal core/planner.py's.

One temporary database for the module, with the stored fits the tests need written BEFORE the
first page run (the page then holds the file open through its cached Store).
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import format as fmt
from core.inference_aware import inference_optimum, inference_optimum_for_model
from core.laws import ChinchillaParams
from core.planner import bootstrap_bands, chinchilla_optimum, moe_optimum
from core.presets import get_preset

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "planner.py")
EPOCH = get_preset("epoch").params  # the page's default law
HOFFMANN = get_preset("hoffmann_unrounded").params
SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}
GOOD = ChinchillaParams(E=1.8, A=480.0, B=2000.0, alpha=0.35, beta=0.36)


def parse_human(text: str) -> float:
    """'40.3B' → 4.03e10 (core/format.py's three-significant-digit K/M/B/T format)."""
    match = re.fullmatch(r"(-?[0-9.]+(?:e[+-]?\d+)?)([KMBT]?)", text.strip())
    assert match, f"not a number on screen: {text!r}"
    return float(match.group(1)) * SUFFIX.get(match.group(2), 1.0)


@pytest.fixture(scope="module")
def fits(tmp_path_factory):
    """A temp database with three fits; yields their ids. SCALESCOPE_DB_URL points the page at it."""
    from db.fits import save_fit
    from db.store import Store

    url = f"duckdb:///{tmp_path_factory.mktemp('planner_page') / 'page.duckdb'}"
    store = Store(url)
    rng = np.random.default_rng(4)
    centre = np.array([GOOD.E, GOOD.A, GOOD.B, GOOD.alpha, GOOD.beta])
    samples = (centre * (1 + 0.02 * rng.standard_normal((200, 5)))).tolist()
    common = dict(method="approach3", target="final loss", selection={}, settings={}, intervals={})
    ids = {
        "bootstrap": save_fit(store, law="chinchilla", params=dict(E=GOOD.E, A=GOOD.A, B=GOOD.B, alpha=GOOD.alpha,
                                                                   beta=GOOD.beta),
                              diagnostics={"bootstrap_samples": samples}, name="with bootstrap", **common),
        "negative_alpha": save_fit(store, law="chinchilla", params=dict(E=1.8, A=480.0, B=2000.0, alpha=-0.1,
                                                                        beta=0.36),
                                   diagnostics={}, name="broken", **common),
        "data_constrained": save_fit(store, law="data_constrained", params=dict(
            E=1.87, A=521.0, B=1488.0, alpha=0.353, beta=0.353, r_star_d=15.4, r_star_n=5.3),
            diagnostics={}, name="repeated data", **{**common, "method": "huber_log"}),
    }
    store.close()
    mp = pytest.MonkeyPatch()
    mp.setenv("SCALESCOPE_DB_URL", url)
    yield {**ids, "samples": samples}
    mp.undo()


def run_page(fits, **query) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def metric(at: AppTest, label: str) -> str:
    values = [m.value for m in at.metric if m.label == label]
    assert len(values) == 1, f"metric {label!r}: {[m.label for m in at.metric]}"
    return values[0]


def no_nan_on_screen(at: AppTest) -> None:
    shown = [m.value for m in at.metric] + [c.value for c in at.caption] + [m.value for m in at.markdown]
    assert not any(re.search(r"\b(nan|inf)\b", str(s), re.I) for s in shown), shown


def test_default_state_shows_core_plan_and_writes_the_link(fits):
    at = run_page(fits)
    best = chinchilla_optimum(1e23, EPOCH)
    assert not at.error
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(best.n_params, rel=5e-3)
    assert parse_human(metric(at, "D* (tokens)")) == pytest.approx(best.tokens, rel=5e-3)
    assert float(metric(at, "Tokens / parameter")) == pytest.approx(best.tokens_per_param, rel=5e-3)
    assert float(metric(at, "Loss (nats/token)")) == pytest.approx(best.loss, abs=5e-5)
    assert metric(at, "FLOPs (6·N*·D*)") == "1.00e23"  # core/format.py: three significant digits
    # Zero inference: the inference-aware model is the Chinchilla-optimal one, saving 0 %.
    assert parse_human(metric(at, "Model size")) == pytest.approx(best.n_params, rel=5e-3)
    assert metric(at, "Saving vs Chinchilla-optimal") == "0.0%"
    assert at.query_params["budget"] == "1e23" and at.query_params["law"] == "epoch"
    no_nan_on_screen(at)


def test_moving_the_budget_changes_n_star_to_core_value(fits):
    at = run_page(fits)
    before = metric(at, "N* (parameters)")
    at.select_slider(key="planner_budget").set_value(3.15e25).run()
    after = metric(at, "N* (parameters)")
    assert after != before
    assert parse_human(after) == pytest.approx(chinchilla_optimum(3.15e25, EPOCH).n_params, rel=5e-3)
    assert metric(at, "FLOPs (6·N*·D*)") == "3.15e25"
    assert at.query_params["budget"] == "3.15e25"


def test_link_with_query_params_restores_the_plan(fits):
    at = run_page(fits, budget="3.15e24", law="hoffmann_unrounded", inference_tokens="2e13", experts="8")
    assert at.select_slider(key="planner_budget").value == 3.15e24
    assert at.selectbox(key="planner_law").value == "hoffmann_unrounded"
    assert at.select_slider(key="planner_inference").value == 2e13
    assert at.select_slider(key="planner_experts").value == 8
    best = chinchilla_optimum(3.15e24, HOFFMANN)
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(best.n_params, rel=5e-3)
    moe = moe_optimum(3.15e24, HOFFMANN, get_preset("clark_sbase").params, 8)
    assert parse_human(metric(at, "Active parameters")) == pytest.approx(moe.n_active_params, rel=5e-3)
    assert parse_human(metric(at, "Total parameters")) == pytest.approx(moe.n_total_params, rel=5e-3)
    aware = inference_optimum(best.loss, 2e13, HOFFMANN)
    assert parse_human(metric(at, "Model size")) == pytest.approx(aware.n_params, rel=5e-3)
    assert metric(at, "Saving vs Chinchilla-optimal") == f"{aware.flops_saving:.1%}"
    assert aware.flops_saving > 0.01  # a real saving, not the zero-inference case


def test_sardana_frankle_worked_example_on_the_page(fits):
    at = run_page(fits, law="sardana_frankle", inference_tokens="2e12")
    at.radio(key="planner_target").set_value("model").run()
    at.number_input(key="planner_reference_params").set_value(13e9).run()
    expected = inference_optimum_for_model(13e9, 2e12, get_preset("sardana_frankle").params)
    assert parse_human(metric(at, "Model size")) == pytest.approx(expected.n_params, rel=5e-3)
    assert parse_human(metric(at, "Model size")) == pytest.approx(7e9, rel=0.03)
    assert parse_human(metric(at, "Training tokens")) == pytest.approx(1.25e12, rel=0.03)
    assert metric(at, "Saving vs Chinchilla-optimal") == f"{expected.flops_saving:.1%}" == "17.4%"


def test_stored_fit_shows_bootstrap_bands(fits):
    at = run_page(fits, law=f"fit-{fits['bootstrap']}", budget="1e22")
    assert not at.error
    intervals, used = bootstrap_bands(1e22, fits["samples"], 0.95)  # the app's one level (core/format.py)
    lo, hi = intervals["n_params"]
    band = next(c.value for c in at.caption if c.value.startswith("95% band") and "B" in c.value)
    shown_lo, shown_hi = (parse_human(x) for x in band.split(":")[1].strip().strip("[]").split(", "))
    assert shown_lo == pytest.approx(lo, rel=5e-3) and shown_hi == pytest.approx(hi, rel=5e-3)
    assert any(f"of {used} bootstrap fits" in c.value for c in at.caption)
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(chinchilla_optimum(1e22, GOOD).n_params,
                                                                       rel=5e-3)


def test_bad_inputs_show_an_error_never_nan(fits):
    # A fit with α ≤ 0: the PlanError message, no plan.
    at = run_page(fits, law=f"fit-{fits['negative_alpha']}")
    assert any("α = -0.1" in e.value and "must be > 0" in e.value for e in at.error), [e.value for e in at.error]
    assert not [m for m in at.metric if m.label == "N* (parameters)"]
    no_nan_on_screen(at)

    # An absurd budget in a link: an error, and the default budget instead.
    at = run_page(fits, budget="1e40")
    assert any("outside the slider" in e.value for e in at.error)
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(chinchilla_optimum(1e23, EPOCH).n_params,
                                                                       rel=5e-3)
    # A target loss below the law's irreducible loss E.
    at.radio(key="planner_target").set_value("loss").run()
    at.number_input(key="planner_target_loss").set_value(1.5).run()
    assert any("irreducible loss E = 1.8172" in e.value for e in at.error), [e.value for e in at.error]
    no_nan_on_screen(at)

    # A cluster beyond the plannable range (1e7 B200 for 1e5 days): the budget's PlanError.
    at = run_page(fits, mode="cluster", accelerator="B200", dtype="fp8", count="1e7", days="1e5", mfu="0.5")
    assert any("outside the plannable range" in e.value for e in at.error), [e.value for e in at.error]
    no_nan_on_screen(at)


def test_cluster_budget_and_cost(fits):
    at = run_page(fits, mode="cluster", accelerator="H100", count="1024", days="30", mfu="0.4", price="2")
    assert not at.error, [e.value for e in at.error]
    flops = 989.5e12 * 1024 * 30 * 86_400 * 0.4
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(chinchilla_optimum(flops, EPOCH).n_params,
                                                                       rel=5e-3)
    assert parse_human(metric(at, "Cost")) == pytest.approx(1024 * 30 * 24 * 2.0, rel=5e-3)
    assert at.query_params["accelerator"] == "H100 SXM" and at.query_params["count"] == "1024"
    assert math.isclose(float(metric(at, "FLOPs (6·N*·D*)")), flops, rel_tol=5e-3)


def test_kaplan_law_plans_by_search_and_explains_what_it_cannot_do(fits):
    from core.planner import kaplan_optimum

    at = run_page(fits, law="kaplan", budget="1e21")
    assert not at.error, [e.value for e in at.error]
    expected = kaplan_optimum(1e21, get_preset("kaplan").params)
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(expected.n_params, rel=5e-3)
    assert any("numerical minimisation" in c.value for c in at.caption)
    assert any("needs a Chinchilla law" in i.value for i in at.info)  # no inference-aware plan for Kaplan
    no_nan_on_screen(at)


def test_link_values_outside_the_widgets_are_reported_not_crashing(fits):
    at = run_page(fits, mode="cluster", count="1e9", days="abc", mfu="0.01", experts="3", law="fit-999")
    messages = " ".join(e.value for e in at.error)
    for words in ("accelerator count '1e9'", "days 'abc'", "MFU '0.01'", "experts '3'", "law 'fit-999'"):
        assert words in messages, messages
    # Defaults stand in: 1024 × H100 SXM × 30 days × MFU 0.4 with the default law.
    flops = 989.5e12 * 1024 * 30 * 86_400 * 0.4
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(chinchilla_optimum(flops, EPOCH).n_params,
                                                                       rel=5e-3)


def test_a_data_constrained_fit_plans_with_the_unique_tokens_given(fits):
    """Muennighoff et al. 2023's law, planned through its registry entry: the page asks for U_D."""
    from core.laws import DataConstrainedParams
    from core.planner import data_constrained_optimum

    at = run_page(fits, law=f"fit-{fits['data_constrained']}", budget="1e23")
    at.number_input(key="planner_unique_tokens").set_value(5e10).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    law = DataConstrainedParams(chinchilla=ChinchillaParams(E=1.87, A=521.0, B=1488.0, alpha=0.353, beta=0.353),
                                r_star_d=15.4, r_star_n=5.3)
    expected = data_constrained_optimum(1e23, law, 5e10)
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(expected.n_params, rel=5e-3)
    assert metric(at, "Loss (nats/token)") == f"{expected.loss:.4f}"


def test_the_interval_level_setting_changes_the_bands(fits):
    """One interval level (issue 13 §6): the sidebar's 68/90/95/99% (also ?cl= in a link) sets the bands."""
    at = run_page(fits, law=f"fit-{fits['bootstrap']}", budget="1e22", cl="68")
    assert not at.error and at.selectbox(key="confidence_level").value == 0.68
    intervals, _ = bootstrap_bands(1e22, fits["samples"], 0.68)
    band = next(c.value for c in at.caption if c.value.startswith("68% band") and "B" in c.value)
    assert band == f"68% band: [{fmt.count(intervals['n_params'][0])}, {fmt.count(intervals['n_params'][1])}]"
    at.selectbox(key="confidence_level").set_value(0.99).run()
    assert any(c.value.startswith("99% band") for c in at.caption)
    wide, _ = bootstrap_bands(1e22, fits["samples"], 0.99)
    assert wide["n_params"][0] < intervals["n_params"][0] and intervals["n_params"][1] < wide["n_params"][1]
    assert at.query_params["cl"] == "99"
    for m in at.metric:  # one format on every metric: no raw floats, no None
        assert "e+" not in m.value and "None" not in m.value and "nan" not in m.value.lower(), m.value


def test_default_law_is_the_bundled_chinchilla_fit_with_bands(page_store, monkeypatch):
    """A fresh store: the default law is Besiroglu et al.'s refit as the bundled example fit, with
    bootstrap bands; it agrees with the published preset."""
    from services.fits import default_fit_id, list_fits

    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    at = AppTest.from_file(PAGE, default_timeout=120).run()
    assert not at.exception and not at.error
    example = default_fit_id(list_fits(page_store))
    assert at.selectbox(key="planner_law").value == f"fit-{example}"
    assert any(c.value.startswith("95% band") for c in at.caption)
    assert any("bootstrap fits" in c.value for c in at.caption)
    assert parse_human(metric(at, "N* (parameters)")) == pytest.approx(chinchilla_optimum(1e23, EPOCH).n_params,
                                                                       rel=0.05)
