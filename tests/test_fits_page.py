"""The Fits page under Streamlit's AppTest (no browser), on a temporary store seeded with the demo
sweep: fit, parameter table, plots, back-test, export, compare; Approach 2; a bad selection shows
one error and stores nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from core import format as fmt
from db.fits import get_fit, list_fits

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "fits.py")
TIMEOUT = 180  # a busy machine: the first run imports plotly, scipy and the fitting code



def open_page() -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def quick(at: AppTest, bootstrap: int = 50) -> AppTest:
    at.number_input(key="fit_bootstrap").set_value(bootstrap)
    at.selectbox(key="fit_grid").set_value("quick")
    return at


def chart_ids(at: AppTest) -> list:
    return [c.proto.id for c in at.get("plotly_chart")]


def assert_one_format(at: AppTest) -> None:
    """Every table cell in the app's format: no None, no NaN, no raw float such as 1.5332818850268969e+34."""
    for frame in at.dataframe:
        for value in frame.value.astype(str).to_numpy().ravel():
            assert value not in ("None", "nan", "NaN", "<NA>"), (frame.value.columns.tolist(), value)
            assert "e+" not in value and len(value) < 60, (frame.value.columns.tolist(), value)
            try:  # a plain number must be short (four or so significant digits), never a full float repr
                float(value)
                assert len(value.lstrip("-")) <= 8, value
            except ValueError:
                pass


def chart(at: AppTest, key: str) -> dict:
    for c in at.get("plotly_chart"):
        if key in c.proto.id:
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key!r} in {chart_ids(at)}")


def test_approach3_fit_table_plots_backtest_export_compare(page_store):
    at = open_page()
    assert [i.value for i in at.info] == ["No fit stored yet: choose runs and press Fit."]
    assert "30 of 30 matching runs selected." in [c.value for c in at.caption]

    quick(at).button(key="fit_button").click().run()
    assert not at.exception and not at.error
    fits = list_fits(page_store)
    assert len(fits) == 1
    fit_id = int(fits["id"].iloc[0])
    assert at.success[0].value == f"Stored fit #{fit_id}: 30 points, 0 warning(s)."

    stored = get_fit(page_store, fit_id)
    table = at.dataframe[0].value.set_index("name")
    assert table.index.tolist() == ["E", "A", "B", "alpha", "beta", "a", "b"]
    assert list(table.columns) == ["value", "± s.e.", "95% interval"]  # one format (core/format.py)
    assert table["value"].tolist()[:5] == [fmt.number(stored["params"][k]) for k in table.index[:5]]
    for name, (lo, hi) in stored["intervals"].items():
        if name in table.index:
            assert table.loc[name, "95% interval"] == fmt.interval(lo, hi)
            assert lo < stored["params"].get(name, stored["diagnostics"]["derived"].get(name)) < hi
    assert float(table.loc["alpha", "value"]) == pytest.approx(0.3478, abs=0.03)
    assert float(table.loc["a", "value"]) == pytest.approx(stored["params"]["beta"] / (stored["params"]["alpha"]
                                                                                       + stored["params"]["beta"]),
                                                           abs=1e-3)
    budgets = at.dataframe[1].value.set_index("budget C (FLOPs)")
    assert budgets.index.tolist() == ["1.00e21", "1.00e22", "5.76e23", "1.00e24", "1.00e25"]
    chinchilla = budgets.loc["5.76e23"]
    stored_row = next(r for r in stored["diagnostics"]["optima"] if r["budget"] == 5.76e23)
    assert chinchilla["N*"] == fmt.count(stored_row["n_params"])
    assert chinchilla["N* 95%"] == fmt.interval(stored_row["n_params_lo"], stored_row["n_params_hi"], "count")
    assert stored_row["n_params_lo"] < stored_row["n_params"] < stored_row["n_params_hi"]
    assert chinchilla["tokens/param"] == fmt.ratio(stored_row["tokens_per_param"])
    assert_one_format(at)
    # The fitted law as LaTeX with ± from the bootstrap, and the same LaTeX to copy (st.code)
    law = at.latex[-1].value
    assert rf"\alpha = {fmt.latex(stored['params']['alpha'])} \pm {fmt.latex(stored['diagnostics']['stderr']['alpha'], 3)}" in law
    assert rf"\frac{{{fmt.latex(stored['params']['A'])}}}{{N^{{{fmt.latex(stored['params']['alpha'])}}}}}" in law
    assert any(c.value == law.strip("$").strip() for c in at.code)
    # residuals per run, worst first, and the Approach 1/2 overlay on the IsoFLOP plot
    residuals = next(d.value for d in at.dataframe if "residual (log)" in d.value.columns)
    assert len(residuals) == 30 and set(residuals["used"]) == {"yes"}
    worst = residuals["residual (log)"].map(lambda v: abs(float(v)))
    assert worst.tolist() == sorted(worst, reverse=True)
    iso = chart(at, "fig_isoflop")["data"]
    assert any(t.get("name", "").startswith("Approach 1") for t in iso)
    assert sum(t.get("marker", {}).get("symbol") == "diamond" for t in iso) >= 3  # Approach 2's minima
    assert len(stored["diagnostics"]["bootstrap_samples"]) == 50 and stored["settings"]["n_starts"] == 32

    for key in ("fig_data_vs_fit", "fig_loss_vs_compute", "fig_isoflop", "fig_compute_optimal", "fig_residuals"):
        assert any(key in i for i in chart_ids(at)), key
    frontier = chart(at, "fig_loss_vs_compute")["data"]
    assert [t["name"] for t in frontier] == ["data", "95% bootstrap band", "efficient frontier L(N*(C), D*(C))"]
    assert "1e20" in chart(at, "fig_loss_vs_compute")["layout"]["xaxis"]["ticktext"]  # FLOPs read 1e20, not 10^20

    at.button(key="backtest_button").click().run()
    assert not at.exception and not at.error
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Fitted / held out"] == "24 / 6"  # the top budget (1e20) is held out
    assert float(metrics["Mean |error|"].rstrip("%")) < 3.0

    assert [b.label for b in at.get("download_button")][:2] == ["Parameters as JSON", "Parameters as CSV"]
    at.button(key="export_button").click().run()
    labels = [b.label for b in at.get("download_button")]
    # PNG and SVG through kaleido with the system Chromium; where none runs, the HTML fallback
    assert {"Figure as PNG", "Figure as SVG"} <= set(labels) or "Figure as HTML" in labels

    compare = at.dataframe[-1].value.set_index("quantity")
    assert list(compare.columns) == [f"#{fit_id} chinchilla · approach3 · loss"]
    assert compare.loc["alpha"].iloc[0].startswith(f"{fmt.number(stored['params']['alpha'])} ± ")


def test_approach2_shows_budgets_and_parabolas(page_store):
    at = open_page()
    at.selectbox(key="fit_method").set_value("approach2").run()
    at.button(key="fit_button").click().run()
    assert not at.exception and not at.error
    params = at.dataframe[0].value.set_index("name")
    assert float(params.loc["a", "value"]) == pytest.approx(0.5126, abs=0.02)  # β/(α+β) of the demo's law
    profiles = next(d.value for d in at.dataframe if "n_opt" in d.value.columns)
    assert profiles["flops"].tolist() == ["1.00e18", "3.00e18", "1.00e19", "3.00e19", "1.00e20"]
    assert profiles["used"].all()
    minima = [t for t in chart(at, "fig_isoflop")["data"] if t.get("marker", {}).get("symbol") == "diamond"]
    assert len(minima) == 5
    assert_one_format(at)
    assert "Back-test" not in [t.label for t in at.tabs]


def test_bad_selection_shows_one_error_and_stores_nothing(page_store):
    at = open_page()
    runs = next(m for m in at.multiselect if m.label == "Runs")
    runs.set_value(["demo-C1e18-N12.8M", "demo-C1e18-N26.7M", "demo-C1e18-N55.7M"])
    quick(at).button(key="fit_button").click().run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "3 points minus 0 dropped leaves fewer than the 5 parameters: select more runs or drop fewer points"]
    assert list_fits(page_store).empty


def test_a_data_constrained_fit_is_listed_fitted_and_shown(page_store):
    """The law of Muennighoff et al. 2023 reaches the page through its registry entry alone."""
    import pandas as pd

    from core.laws import ChinchillaParams, DataConstrainedParams, data_constrained_loss
    from core.registry import LAWS
    from importers.base import ParsedRun
    from services import fits as fit_data

    law = DataConstrainedParams(chinchilla=ChinchillaParams(E=1.87, A=521.0, B=1488.0, alpha=0.353, beta=0.353))
    n, u, epochs = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 9e9, 6), np.geomspace(1e8, 1e11, 4),
                                                    [1.0, 8.0, 40.0]))
    d = u * epochs
    runs = [ParsedRun(name=f"dc-{i}", source_format="summary", n_params=n[i], n_active_params=n[i], tokens=d[i],
                      flops=6 * n[i] * d[i], config={"unique_tokens": u[i]}, tags=["data-constrained"],
                      metrics=pd.DataFrame({"name": ["loss"], "step": [np.nan], "tokens": [d[i]],
                                            "flops": [6 * n[i] * d[i]], "wall_time": [np.nan],
                                            "value": [float(data_constrained_loss(n[i], d[i], u[i], law))]}))
            for i in range(n.size)]
    at = open_page()  # seeds the demo on first open; then our runs join it
    assert LAWS["data_constrained"].label in at.selectbox(key="fit_law").options
    page_store.ingest(runs)
    data = fit_data.load_fit_data(page_store, [r.name for r in runs])
    fit_id, result = fit_data.fit_and_save(page_store, data, fit_data.FitOptions(
        law="data_constrained", method="huber_log", n_bootstrap=0))
    assert result.params["r_star_d"] == pytest.approx(15.4, rel=1e-3)
    at = open_page()
    assert at.selectbox(key="shown_fit").value == fit_id
    assert any("Muennighoff et al. 2023" in c.value for c in at.caption)
    lines = [t for t in chart(at, "fig_data_vs_fit")["data"] if t.get("mode") == "lines"]
    assert len(lines) == 5  # the fitted law at five token counts (U_D held at its median)
    assert "Back-test" in [t.label for t in at.tabs] and "IsoFLOP" not in [t.label for t in at.tabs]


def test_interval_level_setting_excluding_points_and_refitting(page_store):
    at = quick(open_page()).button(key="fit_button").click().run()
    fit_id = int(list_fits(page_store)["id"].iloc[0])
    stored = get_fit(page_store, fit_id)
    assert at.selectbox(key="confidence_level").value == fmt.CONFIDENCE

    # the sidebar's level changes every interval on the page (from the stored bootstrap samples)
    at.selectbox(key="confidence_level").set_value(0.68).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("name")
    assert "68% interval" in table.columns
    lo68, hi68 = (float(v) for v in table.loc["alpha", "68% interval"].strip("[]").split(", "))
    lo95, hi95 = stored["intervals"]["alpha"]
    assert lo95 < lo68 < hi68 < hi95
    assert "N* 68%" in at.dataframe[1].value.columns
    assert [t["name"] for t in chart(at, "fig_loss_vs_compute")["data"]][1] == "68% bootstrap band"
    assert at.query_params["cl"] == "68"

    # a click (or box/lasso) on the chart toggles the picked runs' exclusion; the same selection seen
    # again on a later rerun changes nothing
    def pick(*points):
        at.session_state[f"fig_data_vs_fit_{fit_id}"] = {"selection": {
            "points": [{"customdata": [i]} for i in points], "point_indices": list(points), "box": [], "lasso": []}}
        at.run()
        assert not at.exception
        return at.multiselect(key=f"fit_excluded_{fit_id}").value

    assert len(pick(0, 3)) == 2
    assert len(pick(0, 3)) == 2
    assert len(pick(0)) == 1  # a new pick: run 0 comes back

    # points picked on the chart are marked (hollow) and a refit leaves them out, stored as a new fit
    runs = sorted(r for r in stored["selection"]["runs"])[:2]
    at.multiselect(key=f"fit_excluded_{fit_id}").set_value(runs).run()
    hollow = [t for t in chart(at, "fig_data_vs_fit")["data"] if t.get("marker", {}).get("symbol") == "circle-open"]
    assert len(hollow) == 1 and len(hollow[0]["x"]) == 2
    refit = at.button(key="refit_without_button")
    assert refit.label == "Refit without 2 points"
    refit.click().run()
    assert not at.exception and not at.error
    fits = list_fits(page_store)
    assert len(fits) == 2
    new_id = int(fits["id"].max())
    new = get_fit(page_store, new_id)
    assert sorted(new["selection"]["excluded"]) == runs and len(new["selection"]["runs"]) == 28
    assert new["settings"]["seed"] == stored["settings"]["seed"]
    assert new["settings"]["n_bootstrap"] == stored["settings"]["n_bootstrap"]
    assert at.selectbox(key="shown_fit").value == new_id
    assert at.success[0].value.startswith(f"Stored fit #{new_id}: the same law, settings and seed on 28 points")
    assert at.button(key="refit_without_button").label == "Refit without 0 points"


def test_opens_on_the_chinchilla_example_fit_and_one_dataset(page_store, monkeypatch):
    """A fresh store (the bundled demo snapshot): the Fits page preselects the Chinchilla example dataset
    and shows its well-identified fit; the probe demo sweep's fit explains its weak identification in
    one sentence, offering no control the page does not have."""
    from services.seed import CHINCHILLA_TAG, DEMO_FIT_NAME, EXAMPLE_FIT_NAME, PROBE_DEMO_TAG

    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    at = open_page()
    assert at.selectbox(key="fit_dataset").value == CHINCHILLA_TAG
    assert "245 of 245 matching runs selected." in [c.value for c in at.caption]
    fits = list_fits(page_store)
    example = int(fits.loc[fits["name"] == EXAMPLE_FIT_NAME, "id"].iloc[0])
    assert at.selectbox(key="shown_fit").value == example
    table = at.dataframe[0].value.set_index("name")
    assert float(str(table.loc["E", "value"]).split()[0]) == pytest.approx(1.8172, abs=0.005)  # number or text
    assert not at.warning and not at.error

    demo = int(fits.loc[fits["name"] == DEMO_FIT_NAME, "id"].iloc[0])
    at.selectbox(key="shown_fit").set_value(demo).run()
    assert not at.exception and not at.error
    assert len(at.warning) == 1
    sentence = at.warning[0].value
    assert "identify the law only weakly" in sentence and sentence.count(". ") == 0
    assert "max_iter" not in sentence and not any("max_iter" in c.value for c in at.caption)

    at.selectbox(key="fit_dataset").set_value(PROBE_DEMO_TAG).run()
    assert "14 of 14 matching runs selected." in [c.value for c in at.caption]
    at.selectbox(key="fit_dataset").set_value("(all runs)").run()
    assert not at.exception
