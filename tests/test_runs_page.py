"""The Runs page under Streamlit's AppTest (no browser): table, curves, edits, errors."""
from __future__ import annotations

import os

import pytest
from streamlit.testing.v1 import AppTest


@pytest.fixture
def app(db_url, monkeypatch):
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def test_first_start_seeds_demo_and_draws_curves(app):
    assert [h.value for h in app.subheader][:2] == ["30 runs", "Curves"]
    assert any("synthetic demo" in c.value for c in app.caption)
    assert app.multiselect(key="curve_runs_").value[:1] == ["demo-C1e18-N12.8M"]
    assert app.selectbox(key="curve_metric").value == "loss"
    assert any("points drawn" in c.value for c in app.caption)


def test_filter_and_log_axes(app):
    app.text_input(key="runs_filter").input("C1e20").run()
    assert any(c.value.startswith("6 of 30 runs match") for c in app.caption)
    app.selectbox(key="curve_x").select("flops").run()
    app.checkbox(key="curve_logx").check().run()
    assert not app.exception
    assert not app.error


def test_delete_needs_confirmation(app):
    app.multiselect(key="delete_runs").select("demo-C1e18-N12.8M").run()
    assert app.button(key="delete_button").disabled
    app.checkbox(key="delete_sure").check().run()
    app.button(key="delete_button").click().run()
    assert [h.value for h in app.subheader][0] == "29 runs"


def test_first_start_seeds_the_bundled_probe_sweep(db_url, monkeypatch):
    """What a user's first start shows: the runs ScaleScope trained itself, labelled as such."""
    from services.seed import probe_demo

    demo = probe_demo()
    assert demo is not None, "assets/demo/ must be bundled"
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    assert not at.exception
    assert at.subheader[0].value == f"{len(demo[0])} runs"
    assert any("probe demo" in c.value and "run_demo_sweep" in c.value for c in at.caption)
    assert at.selectbox(key="curve_metric").value == "train_loss"
