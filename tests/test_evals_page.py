"""The Evals page, run headless with streamlit.testing.v1.AppTest on a temporary store: the table
and its filters, score vs scale with a fitted law, a forecast and "store this fit", the PCA view,
and score vs training loss for evals attached to logged runs."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from services.evals import import_eval_paths, store_evals
from db.fits import list_fits
from services.seed import seed_if_empty

PAGE = str(Path(__file__).resolve().parents[1] / "pages" / "evals.py")
TIMEOUT = 120  # a busy CI machine: the first run imports plotly and scipy



def chart_spec(at: AppTest, key: str) -> dict:
    for element in at.get("plotly_chart"):
        spec = json.loads(element.proto.spec)
        if element.proto.id and key in element.proto.id:
            return spec
    raise AssertionError(f"no plotly chart with key {key!r}")


def values(array) -> list:
    """A Plotly spec array: a list, or Plotly 6+'s typed array {"dtype", "bdata" (base64)}."""
    if isinstance(array, dict) and "bdata" in array:
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=np.dtype(array["dtype"])).tolist()
    return list(array)


def texts(elements) -> list:
    return [e.value for e in elements]


def test_table_fit_forecast_store_and_pca_on_the_reference_table(page_store, reference_dir):
    import_eval_paths(page_store, [str(reference_dir / "obsscaling_base_llm_benchmark_eval.csv")])
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert "1144 of 1144 eval results · 148 runs · 8 tasks" in at.caption[0].value

    at.selectbox(key="evals_benchmark").set_value("MMLU · score")
    at.selectbox(key="evals_x").set_value("flops").run()
    assert any("25 run(s) have no training compute (FLOPs)" in w for w in texts(at.warning))
    spec = chart_spec(at, "evals_scaling_chart")
    assert spec["layout"]["xaxis"]["type"] == "log"
    assert sum(len(values(t["x"])) for t in spec["data"]) == 123  # one line per family, 123 models with FLOPs

    at.number_input(key="evals_floor").set_value(0.25)
    at.number_input(key="evals_bootstrap").set_value(20)
    at.button(key="evals_fit_button").click().run()
    assert not at.exception and not at.error
    forecast = [m for m in texts(at.markdown) if m.startswith("**Forecast:**")]
    assert len(forecast) == 1 and "95% interval" in forecast[0]
    params = next(d.value for d in at.dataframe if "parameter" in d.value.columns).set_index("parameter")
    assert params.loc["floor", "value"] == "0.2500" and 0.6 < float(params.loc["ceiling", "value"]) <= 1.0
    for name, row in params.iterrows():  # one format: value, ± s.e., [lo, hi] at the sidebar's level
        if row["95% interval"] != "—":
            lo, hi = (float(v) for v in row["95% interval"].strip("[]").split(", "))
            assert lo <= float(row["value"]) * (1 + 1e-3) + 1e-3 and float(row["value"]) <= hi * (1 + 1e-3) + 1e-3
    names = [t.get("name") for t in chart_spec(at, "evals_scaling_chart")["data"]]
    assert "sigmoid fit" in names and "forecast" in names and "95% band (bootstrap)" in names
    table = at.dataframe[0].value
    cells = table.astype(str).to_numpy().ravel()
    assert not {"None", "nan", "<NA>"} & set(cells) and not any("e+" in c for c in cells)
    assert table["flops"].str.fullmatch(r"\d\.\d\de\d+|—").all()

    # the interval level setting: the band, the forecast and the parameter intervals follow it
    at.selectbox(key="confidence_level").set_value(0.68).run()
    assert not at.exception
    names = [t.get("name") for t in chart_spec(at, "evals_scaling_chart")["data"]]
    assert "68% band (bootstrap)" in names
    assert "68% interval" in [m for m in texts(at.markdown) if m.startswith("**Forecast:**")][0]
    assert "68% interval" in next(d.value for d in at.dataframe if "parameter" in d.value.columns).columns
    at.selectbox(key="confidence_level").set_value(0.95).run()

    at.button(key="evals_store_fit").click().run()
    assert any("(target MMLU/score)" in s for s in texts(at.success))
    fits = list_fits(page_store)
    assert fits["target"].tolist() == ["MMLU/score"] and fits["law"].tolist() == ["sigmoid_floor_ceiling"]
    assert fits["params"].iloc[0]["floor"] == 0.25 and set(fits["intervals"].iloc[0]) == {"floor", "ceiling", "w", "w0"}

    # PCA view: PC1 of the eight benchmarks explains about 85% of the variance
    assert "**PC1 explains 85.1% of the variance**; the first three 97.4%." in texts(at.markdown)
    scree = chart_spec(at, "evals_scree")
    assert len(values(scree["data"][0]["y"])) == 8 and values(scree["data"][0]["y"])[0] == pytest.approx(0.851, abs=1e-3)
    heat = chart_spec(at, "evals_loadings")
    assert values(heat["data"][0]["x"]) == ["PC1", "PC2", "PC3"] and len(values(heat["data"][0]["y"])) == 8
    space = chart_spec(at, "evals_pc_space")
    assert "Llama-2" in {t["name"] for t in space["data"]}  # coloured by family
    styles = [(t["marker"]["color"], t["marker"]["symbol"]) for t in space["data"]]
    assert len(styles) >= 20 and len(set(styles)) == len(styles)  # every family its own colour × symbol

    # filtering the table by family narrows every view below it
    at.multiselect(key="evals_filter_families").set_value(["Llama-2", "Pythia"]).run()
    assert "of 1144 eval results · 11 runs" in at.caption[0].value


def test_scores_against_training_loss_of_logged_runs(page_store):
    seed_if_empty(page_store)  # the synthetic demo sweep: 30 runs with loss curves
    runs = page_store.runs()
    final_loss = page_store.final_values("loss").set_index("run")["value"]
    demo = runs["name"].tolist()[:12]
    score = {r: float(np.clip(0.25 + 0.6 / (1 + np.exp(4 * (final_loss[r] - 3.2))), 0, 1)) for r in demo}
    store_evals(page_store, pd.DataFrame({"run": demo, "step": np.nan, "task": "hellaswag", "metric": "acc_norm",
                                          "value": [score[r] for r in demo], "stderr": 0.01}))
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert texts(at.info) == ["The PCA needs at least 2 benchmarks and 3 models with scores; the rows shown give "
                              "1 benchmark(s) and 12 model(s). Import more, or widen the filters."]
    at.selectbox(key="evals_x").set_value("loss").run()
    spec = chart_spec(at, "evals_scaling_chart")
    xs = [x for t in spec["data"] for x in values(t["x"])]
    assert sorted(xs) == pytest.approx(sorted(final_loss[demo].tolist()))  # each run's final training loss
    assert spec["layout"]["xaxis"]["type"] == "linear" and spec["layout"]["xaxis"]["title"]["text"] == "training loss"


def test_empty_store_invites_an_import(page_store):
    seed_if_empty(page_store)
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert texts(at.info) == ["No eval results yet: import a harness results file or an eval table above."]
    assert at.button(key="evals_import").disabled


def test_fresh_store_opens_on_the_observational_scaling_pca(page_store, monkeypatch):
    """The bundled demo: the Evals page opens on the observational-scaling dataset (not mixed with the
    Pythia or demo evals) and its PCA, with no error."""
    from services.seed import OBSSCALING_TAG

    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="evals_dataset").value == OBSSCALING_TAG
    assert at.caption[0].value.startswith("1144 of 1144 eval results · 148 runs · 8 tasks")
    assert any(c.value.startswith("148 models × 8 benchmarks") for c in at.caption)
    assert chart_spec(at, "evals_pc_space")["data"]


def test_thirty_families_are_distinct_and_names_are_escaped(page_store):
    """Issue 13 §9: ≥ 30 distinguishable families (palette × marker symbols), and a name with HTML
    shows literally in Plotly (escaped once, by pages.theme.name)."""
    from pages import theme

    rows = []
    for f in range(32):
        family = "<b>bold</b>" if f == 0 else f"fam-{f}"
        for k, n in enumerate((1e8, 1e9)):
            rows.append({"run": f"{family}-{k}", "step": np.nan, "task": "t", "metric": "acc", "value": 0.3 + 0.1 * k,
                         "stderr": np.nan, "family": family, "n_params": n})
    frame = pd.DataFrame(rows)
    styles = {(theme.family_style(i)["color"], theme.family_style(i)["symbol"]) for i in range(theme.N_FAMILIES)}
    assert theme.N_FAMILIES >= 30 and len(styles) == theme.N_FAMILIES
    assert all(c.lower() not in ("#000000", "black", "#ffffff", "white") for c in theme.QUALITATIVE)
    assert theme.name("<b>bold</b>") == "&lt;b&gt;bold&lt;/b&gt;"
    assert len(frame.groupby("family")) == 32
