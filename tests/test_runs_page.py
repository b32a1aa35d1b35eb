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


# ---------------------------------------------------------------------------------------------
# user strings are shown literally (issue 12 §2): never a link, an image the browser fetches, markup

HOSTILE_NAMES = ["![t](http://127.0.0.9/x.png)", "[click](http://127.0.0.9/)", "<img src=http://127.0.0.9/y.png>",
                 "$x^2$ **b** _i_ `c` ~~s~~", ":red[alert] :material/home:", "# heading", "1. item", "- item",
                 "> quote", "a\\b\\*c", "snake_case _em_ __strong__ x_", "&amp; &lt;",
                 "http://127.0.0.9/auto www.example.com a@b.co", "| a | b |"]


def rendered(markdown: str) -> str:
    """HTML of ``markdown`` by a CommonMark renderer (Streamlit's react-markdown follows CommonMark)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable(["table", "strikethrough"]).render(markdown)


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_literal_escapes_every_markdown_construct(name):
    import html
    import re

    from pages.common import literal

    out = rendered(f"Imported 1 run(s): {literal(name)}")
    assert "<img" not in out and "<a " not in out and "<code" not in out and "<em" not in out, out
    assert out.startswith("<p>") and out.count("<p>") == 1, out  # no heading, list, quote or table
    text = html.unescape(re.sub(r"<[^>]+>", "", out)).strip()
    assert text == f"Imported 1 run(s): {name}"


def test_user_errors_escape_the_message():
    def script():
        from core.errors import InputError
        from pages.common import user_errors

        with user_errors():
            raise InputError("x.csv: run '![t](http://127.0.0.9/x.png)' has a NaN; fix it")

    from pages.common import literal

    at = AppTest.from_function(script, default_timeout=60)
    at.run()
    assert not at.exception
    (error,) = at.error
    assert error.value == literal("x.csv: run '![t](http://127.0.0.9/x.png)' has a NaN; fix it")
    assert "<img" not in rendered(error.value)


def test_runs_page_shows_hostile_names_literally(db_url, monkeypatch):
    from db.store import Store
    from pages.common import literal
    from services.ingest import ingest_uploads

    store = Store(db_url)
    name, metric = HOSTILE_NAMES[0], HOSTILE_NAMES[1]
    data = f'run,step,metric,value\n"{name}",0,"{metric}",3.0\n"{name}",1,"{metric}",2.5\n'.encode()
    assert [a["name"] for a in ingest_uploads(store, [("t.csv", data)])] == [name]
    store.close()
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    at = AppTest.from_file("../app.py", default_timeout=120)
    at.run()
    at.text_input(key="runs_filter").input("127.0.0.9").run()
    assert not at.exception
    match = next(c.value for c in at.caption if "runs match" in c.value)
    assert match.endswith(f"runs match: {literal(name)}")
    assert "<img" not in rendered(match) and "<a " not in rendered(match)
    at.selectbox(key="curve_x").select("tokens").run()  # no tokens logged: the warning quotes the metric
    warning = next(w.value for w in at.warning if "have no" in w.value)
    assert literal(repr(metric)) in warning and "<a " not in rendered(warning)
