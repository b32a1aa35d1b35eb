"""The Fits page under Streamlit's AppTest (no browser), on a temporary store seeded with the demo
sweep: fit, parameter table, plots, back-test, export, compare; Approach 2; a bad selection shows
one error and stores nothing."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

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
    np.testing.assert_allclose(table["value"].iloc[:5], [stored["params"][k] for k in table.index[:5]])
    assert (table["95% low"] < table["value"]).all() and (table["value"] < table["95% high"]).all()
    assert table.loc["alpha", "value"] == pytest.approx(0.3478, abs=0.03)
    assert table.loc["a", "value"] == pytest.approx(stored["params"]["beta"] / (stored["params"]["alpha"]
                                                                                + stored["params"]["beta"]))
    budgets = at.dataframe[1].value.set_index("budget C (FLOPs)")
    assert budgets.index.tolist() == [1e21, 1e22, 5.76e23, 1e24, 1e25]
    chinchilla = budgets.loc[5.76e23]
    stored_row = next(r for r in stored["diagnostics"]["optima"] if r["budget"] == 5.76e23)
    assert chinchilla["N*"] == pytest.approx(stored_row["n_params"])
    assert (chinchilla["N* 95% low"], chinchilla["N* 95% high"]) == pytest.approx(
        (stored_row["n_params_lo"], stored_row["n_params_hi"]))
    assert chinchilla["N* 95% low"] < chinchilla["N*"] < chinchilla["N* 95% high"]
    assert chinchilla["tokens/param"] == pytest.approx(chinchilla["D*"] / chinchilla["N*"])
    assert len(stored["diagnostics"]["bootstrap_samples"]) == 50 and stored["settings"]["n_starts"] == 32

    for key in ("fig_data_vs_fit", "fig_loss_vs_compute", "fig_isoflop", "fig_compute_optimal", "fig_residuals"):
        assert any(key in i for i in chart_ids(at)), key
    frontier = chart(at, "fig_loss_vs_compute")["data"]
    assert [t["name"] for t in frontier] == ["data", "95% bootstrap band", "efficient frontier L(N*(C), D*(C))"]

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
    assert compare.loc["alpha"].iloc[0].startswith(f"{stored['params']['alpha']:.5g} ± ")


def test_approach2_shows_budgets_and_parabolas(page_store):
    at = open_page()
    at.selectbox(key="fit_method").set_value("approach2").run()
    at.button(key="fit_button").click().run()
    assert not at.exception and not at.error
    params = at.dataframe[0].value.set_index("name")
    assert params.loc["a", "value"] == pytest.approx(0.5126, abs=0.02)  # β/(α+β) of the demo's law
    profiles = at.dataframe[2].value
    assert profiles["flops"].tolist() == [1e18, 3e18, 1e19, 3e19, 1e20] and profiles["used"].all()
    stars = [t for t in chart(at, "fig_isoflop")["data"] if t.get("marker", {}).get("symbol") == "star"]
    assert len(stars) == 5
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
