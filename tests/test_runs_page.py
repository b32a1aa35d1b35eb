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
    assert app.multiselect(key="curve_metrics").value == ["loss"]
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
    from db.store import Store

    s = Store(db_url)
    n_runs = len(s.run_names())
    s.close()
    assert at.subheader[0].value == f"{n_runs} runs" and n_runs > len(demo[0])  # with the bundled examples
    assert any("tagged **demo**" in c.value and "run_demo_sweep" in c.value for c in at.caption)
    assert any("tagged **example**" in c.value for c in at.caption)
    assert at.multiselect(key="curve_metrics").value == ["train_loss"]
    # every import is a dataset: the runs table filters by tag, the upload form names its tag
    at.selectbox(key="runs_dataset").set_value("demo").run()
    assert not at.exception
    assert f"{len(demo[0])} of {n_runs} runs tagged demo." in [c.value for c in at.caption]
    assert at.multiselect(key="curve_runs_|demo").value == [r.name for r in demo[0]][:8]
    assert at.text_input(key="upload_tag_0").placeholder == "the file's name"


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


# ---------------------------------------------------------------------------------------------
# the curve explorer at W&B's level (issue 13 §4) and no stale state (issue 13 §7)

def _run(name, metrics: dict, config=None, steps=range(0, 200, 2)):
    """A ParsedRun with ``metrics`` (name → f(step)) logged at ``steps``."""
    import numpy as np
    import pandas as pd

    from core.runs import ParsedRun

    steps = np.asarray(list(steps), float)
    rows = pd.concat([pd.DataFrame({"name": m, "step": steps, "value": [f(s) for s in steps]})
                      for m, f in metrics.items()], ignore_index=True)
    for col in ("tokens", "flops", "wall_time"):
        rows[col] = np.nan
    return ParsedRun(name=name, source_format="csv", config=config or {},
                     metrics=rows[["name", "step", "tokens", "flops", "wall_time", "value"]])


def _open(db_url, monkeypatch, **query):
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    at = AppTest.from_file("../app.py", default_timeout=120)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, at.exception
    return at


def _figures(at) -> dict:
    import json

    return {c.proto.id.split("curve_chart_")[-1] if "curve_chart_" in c.proto.id else c.proto.id: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def _values(v) -> list:
    """A trace's x or y as a list (Plotly sends numpy arrays as base64 typed arrays)."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        return np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"]).tolist()
    return list(v)


@pytest.fixture
def three_runs(store):
    import math

    store.ingest([_run(name, {"loss": lambda s, k=k: 4 - k * math.log1p(s) / 10 + 0.05 * math.sin(s),
                              "accuracy": lambda s, k=k: k * s / 400},
                       config={"lr": lr})
                  for k, (name, lr) in enumerate([("alpha", 1e-3), ("beta", 1e-3), ("gamma", 3e-4)], start=1)])
    return store


def test_view_comes_from_the_url_and_draws_one_panel_per_metric(three_runs, db_url, monkeypatch):
    at = _open(db_url, monkeypatch, run=["alpha", "gamma"], metric=["loss", "accuracy"], x="step", smooth="0.6")
    assert at.multiselect(key="curve_runs_").value == ["alpha", "gamma"]
    assert at.multiselect(key="curve_metrics").value == ["loss", "accuracy"]
    assert at.slider(key="curve_smooth").value == pytest.approx(0.6)
    figs = _figures(at)
    assert {"loss", "accuracy"} <= set(figs)
    colour = {}
    for metric in ("loss", "accuracy"):
        fig = figs[metric]
        assert fig["layout"]["hovermode"] == "x unified"  # one hover lists every run at the cursor
        raw = [d for d in fig["data"] if d["name"].endswith("(raw)")]
        smooth = [d for d in fig["data"] if d["name"] in ("alpha", "gamma")]
        assert len(raw) == 2 and all(d["opacity"] < 0.5 and d["hoverinfo"] == "skip" for d in raw)
        assert len(smooth) == 2
        for d in smooth:  # one colour per run, the same in every panel, raw and smoothed alike
            colour.setdefault(d["name"], d["line"]["color"])
            assert d["line"]["color"] == colour[d["name"]]
        for d in raw:
            assert d["line"]["color"] == colour[d["name"][:-len(" (raw)")]]
        # both panels share the x-axis range
        assert fig["layout"]["xaxis"]["range"] == figs["loss"]["layout"]["xaxis"]["range"]
    assert colour["alpha"] != colour["gamma"]
    # the view goes back into the URL as it changes
    at.slider(key="curve_smooth").set_value(0.3).run()
    at.multiselect(key="curve_metrics").set_value(["accuracy"]).run()
    url = {k: [v] if isinstance(v, str) else list(v) for k, v in at.query_params.items()}
    assert url["smooth"] == ["0.3"] and url["metric"] == ["accuracy"] and url["run"] == ["alpha", "gamma"]


def test_colour_by_config_key_shares_a_colour_per_value(three_runs, db_url, monkeypatch):
    at = _open(db_url, monkeypatch, run=["alpha", "beta", "gamma"], metric=["loss"])
    at.selectbox(key="curve_colour").select("lr").run()
    fig = _figures(at)["loss"]
    lines = {d["legendgroup"]: d["line"]["color"] for d in fig["data"] if d.get("legendgroup")}
    by_run = [d for d in fig["data"] if "hovertemplate" in d]
    colours = {d["hovertemplate"].split(":")[0]: d["line"]["color"] for d in by_run}
    assert colours["alpha"] == colours["beta"] != colours["gamma"]
    assert set(lines) == {"0.001", "0.0003"}
    assert sorted(d["name"] for d in by_run if d.get("showlegend")) == ["lr=0.0003", "lr=0.001"]


def test_wandb_envelope_is_drawn_as_a_band(store, db_url, monkeypatch):
    from services.ingest import ingest_uploads

    text = ('"Step","r1 - train/loss","r1 - train/loss__MIN","r1 - train/loss__MAX"\n'
            + "".join(f'"{s}","{4 - s / 100}","{3.9 - s / 100}","{4.1 - s / 100}"\n' for s in range(0, 100, 5)))
    ingest_uploads(store, [("wandb_export.csv", text.encode())])
    at = _open(db_url, monkeypatch, run=["r1"])
    assert at.multiselect(key="curve_metrics").options == ["train/loss"]  # envelopes go with their metric
    fig = _figures(at)["train/loss"]
    (band,) = [d for d in fig["data"] if d.get("fill") == "toself"]
    assert max(_values(band["y"])) == pytest.approx(4.1) and min(_values(band["y"])) == pytest.approx(3.9 - 0.95)


def test_clearing_the_runs_shows_a_hint_and_export_follows_the_plot(three_runs, db_url, monkeypatch):
    at = _open(db_url, monkeypatch)
    assert at.multiselect(key="export_runs").value == at.multiselect(key="curve_runs_").value
    at.multiselect(key="curve_runs_").set_value([]).run()
    assert not at.exception
    assert any("No run selected" in i.value for i in at.info)  # not a bare "Choose an option"
    assert not at.get("plotly_chart")
    assert at.multiselect(key="export_runs").value == []  # the export follows what is plotted
    at.multiselect(key="curve_runs_").set_value(["beta"]).run()
    assert at.multiselect(key="export_runs").value == ["beta"]
    assert at.multiselect(key="curve_metrics").value == ["loss"]
    assert "loss" in _figures(at)


def test_runs_table_leaves_out_empty_columns(three_runs, db_url, monkeypatch):
    at = _open(db_url, monkeypatch)
    frame = at.dataframe(key="runs_table").value
    assert "n_experts" not in frame.columns and "top_k" not in frame.columns  # no run has them: no None column
    assert {"name", "n_metric_rows", "tags", "n_params", "tokens_per_step"} <= set(frame.columns)  # to fill in
    at.text_input(key="runs_filter").input("alpha").run()
    assert list(at.dataframe(key="runs_table").value.columns) == list(frame.columns)  # a filter moves no column


def test_runs_table_shows_missing_sizes_as_a_dash(three_runs, db_url, monkeypatch):
    import json

    import pandas as pd

    three_runs.update_run("alpha", n_params=1.2e8)  # one run with a size, two without
    table = _open(db_url, monkeypatch).dataframe(key="runs_table")
    assert table.proto.placeholder == "—"  # an empty cell reads "—", not a grey "None"
    sizes = table.value.set_index("name")["n_params"]
    assert sizes["alpha"] == 1.2e8 and sizes[["beta", "gamma"]].isna().all()
    assert pd.api.types.is_numeric_dtype(sizes)  # missing stays NaN in a number column: it sorts as numbers
    assert json.loads(table.proto.columns)["n_params"]["type_config"]["type"] == "number"


# ---------------------------------------------------------------------------------------------
# forecast on the Runs page (issue 14 §1)

def test_forecast_of_a_demo_run_with_the_stored_fit_and_backtest(store, db_url, monkeypatch):
    from services.seed import probe_demo, seed_demo_fit, seed_probe_demo

    seed_probe_demo(store)
    seed_demo_fit(store)
    run = probe_demo()[0][0].name
    at = _open(db_url, monkeypatch)
    at.selectbox(key="forecast_run").select(run).run()
    assert at.radio(key="forecast_mode").value.startswith("inferred")
    at.toggle(key="forecast_on").set_value(True).run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    final = next(v for k, v in metrics.items() if k.startswith("Forecast train_loss at step"))
    assert 2.0 < float(final) < 6.0
    assert 2.0 < float(metrics["Stored fit predicts"]) < 6.0  # the demo sweep's own fit, a loss of its corpus
    assert metrics["Verdict"] in ("on track", "behind")
    fig = next(f for k, f in _figures(at).items() if "forecast_chart" in k)
    assert any(d.get("line", {}).get("dash") == "dash" for d in fig["data"])       # the forecast, dashed
    assert any(d.get("fill") == "toself" for d in fig["data"])                      # its band
    assert any(d.get("name") == "stored fit's prediction" for d in fig["data"])
    table = next(d.value for d in at.dataframe if "fitted on" in d.value.columns)
    assert table["fitted on"].tolist() == ["20%", "40%", "60%"]
    assert all(b == "—" or set(b.split(", ")) <= {"L0", "alpha", "phi"} for b in table["at a bound"])


def _cosine_lr(s):
    """A cosine from 3e-4 to 3e-5 over 4,000 steps, no warmup: the LR the forecast tests log."""
    import math

    return 3e-5 + (3e-4 - 3e-5) * 0.5 * (1 + math.cos(math.pi * s / 4000))


def _forecast_declared(store, db_url, monkeypatch, name, loss, upto=1500):
    """Log ``loss`` and the cosine LR of ``name`` up to step ``upto``, open the page and forecast it with
    that cosine declared; the AppTest after the run."""
    store.ingest([_run(name, {"train/loss": loss, "lr": _cosine_lr}, steps=range(10, upto, 10))])
    at = _open(db_url, monkeypatch)
    at.selectbox(key="forecast_run").select(name).run()
    at.radio(key="forecast_mode").set_value("declared here").run()
    at.number_input(key="forecast_total").set_value(4000).run()
    at.number_input(key="forecast_peak").set_value(3e-4).run()
    at.number_input(key="forecast_final").set_value(3e-5).run()
    at.toggle(key="forecast_on").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    return at


def test_a_forecast_the_curve_does_not_pin_down_says_so(store, db_url, monkeypatch):
    """A curve still bending down early in its cosine leaves L0 unpinned (at its bound 0): the panel
    warns beside the number that it may fall far too low (core.curve_fit.params_at_bounds)."""
    at = _forecast_declared(store, db_url, monkeypatch, "bending",
                            lambda s: 2.0 + 0.35 * (1 + 3e-4 * s) ** -0.45 - 4e-5 * s)
    assert [w.value for w in at.warning] == ["The irreducible loss L0 sits at its bound 0: the observed part of "
                                             "the run does not pin it down, so the forecast may fall far too low."]


def test_an_inferred_schedule_runs_to_the_end_the_config_plans(store, db_url, monkeypatch):
    """A live run with max_steps in its config: the horizon input starts there and the forecast reaches it."""
    loss = lambda s: 2.0 + 0.35 * (1 + 3e-4 * s) ** -0.45
    run = _run("planned", {"train/loss": loss, "lr": _cosine_lr}, config={"max_steps": 4000}, steps=range(10, 1500, 10))
    store.ingest([run])
    at = _open(db_url, monkeypatch)
    at.selectbox(key="forecast_run").select("planned").run()
    assert at.radio(key="forecast_mode").value.startswith("inferred")
    assert at.number_input(key="forecast_horizon:planned").value == 4000
    at.toggle(key="forecast_on").set_value(True).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(m.label == "Forecast train/loss at step 4,000" for m in at.metric)
    assert any("T = 4,000)" in c.value for c in at.caption)  # the inferred schedule carried on to T


def test_picking_another_run_forgets_the_last_runs_schedule(store, db_url, monkeypatch):
    """A run without a logged LR (declared mode, T = 2 × its 190 steps) then one with it: the mode goes
    back to inferred and T to the new run's own default, not the last run's 380."""
    loss = lambda s: 2.0 + 0.35 * (1 + 3e-4 * s) ** -0.45
    store.ingest([_run("no-lr", {"train/loss": loss}, steps=range(10, 200, 10)),
                  _run("with-lr", {"train/loss": loss, "lr": _cosine_lr}, steps=range(10, 1500, 10))])
    at = _open(db_url, monkeypatch)
    at.selectbox(key="forecast_run").select("no-lr").run()
    assert at.radio(key="forecast_mode").value == "declared here"
    assert at.number_input(key="forecast_total").value == 380
    at.selectbox(key="forecast_run").select("with-lr").run()
    assert at.radio(key="forecast_mode").value.startswith("inferred")
    at.radio(key="forecast_mode").set_value("declared here").run()
    assert at.number_input(key="forecast_total").value == 2980


def test_forecast_follows_a_growing_run(store, db_url, monkeypatch):
    """A watched run that grows is forecast again on the next run of the page (what follow_live triggers)."""
    loss = lambda s: 2.0 + 0.35 * (1 + 3e-4 * s) ** -0.45
    at = _forecast_declared(store, db_url, monkeypatch, "live", loss)
    before = next(c.value for c in at.caption if "interval of the final" in c.value)
    store.ingest([_run("live", {"train/loss": loss, "lr": _cosine_lr}, steps=range(10, 3000, 10))], on_duplicate="replace")
    at.run()
    after = next(c.value for c in at.caption if "interval of the final" in c.value)
    assert before != after


def test_chart_builders_pass_plotlys_validation():
    """The pages draw these figures unvalidated (pages.curves.as_figure): they must be valid."""
    import numpy as np
    import pandas as pd
    import plotly.graph_objects as go

    from pages import curves as charts

    x = np.arange(50.0)
    raw = pd.concat([pd.DataFrame({"run": r, "x": x, "value": 3 + k - x / 50}) for k, r in enumerate(["a", "<b>"])])
    band = raw.assign(lo=raw["value"] - 0.1, hi=raw["value"] + 0.1)[["run", "x", "lo", "hi"]]
    colours, groups = charts.run_colours(["a", "<b>"], {"a": 1e-3, "<b>": None})
    for log_x in (False, True):
        fig = go.Figure(charts.panel_figure("loss", raw, raw, colours, groups, x_title="tokens", log_x=log_x,
                                            log_y=True, envelope=band, span=(1.0, 49.0), group_title="lr"))
        assert fig.layout.yaxis.type == "log" and (fig.layout.xaxis.type == "log") == log_x
        assert len(fig.data) >= 4  # per run: faint raw + smoothed line, plus the envelope band
        names = " ".join(str(t.name) for t in fig.data)
        assert "<b>" not in names  # a run named "<b>" reaches Plotly escaped, never as markup
        assert all(len(t.x) == len(t.y) for t in fig.data if t.x is not None)
    bands = pd.DataFrame({"group": "1", "x": x, "mean": x, "lo": x, "hi": x, "n_runs": 2})
    fig = go.Figure(charts.group_figure("loss", bands, "lr", x_title="flops", log_x=True, log_y=False))
    assert fig.layout.xaxis.type == "log" and len(fig.data) >= 2  # mean line and its min-max band
    fig = go.Figure(charts.forecast_figure(pd.DataFrame({"step": x, "value": x}), x, x, x - 1, x + 1,
                                           metric="loss", law_prediction=2.0, final_step=49))
    dashed = [t for t in fig.data if getattr(t, "line", None) is not None and t.line.dash == "dash"]
    assert dashed and list(dashed[0].y) == list(x)  # the forecast is the dashed curve


def test_filtering_after_a_link_plots_the_filtered_runs(three_runs, db_url, monkeypatch):
    """The link's runs are the first view only: a filter typed afterwards picks the runs it shows."""
    at = _open(db_url, monkeypatch, run=["alpha"])
    assert at.multiselect(key="curve_runs_").value == ["alpha"]
    at.text_input(key="runs_filter").input("gamma").run()
    assert at.multiselect(key="curve_runs_gamma").value == ["gamma"]
