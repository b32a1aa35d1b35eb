"""The Probes page under Streamlit's AppTest (no browser), on a temporary store: the device shown, a
tiny sweep configured, estimated, trained with a live loss chart and stored as runs, then "Fit this
sweep" opening the Fits page with the sweep selected; a throughput probe shown and stored; bad
configurations give one st.error before any work and store nothing."""
from __future__ import annotations

import base64
import json
from pathlib import Path

import numpy as np

import sqlalchemy as sa
import torch
from streamlit.testing.v1 import AppTest

from core import corpus
from db.probes import list_probes

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 180  # a busy machine: the first run imports plotly, torch and transformers



def chart(at: AppTest, key_part: str) -> dict:
    for c in at.get("plotly_chart"):
        if key_part in c.proto.id:
            return json.loads(c.proto.spec)
    raise AssertionError(f"no chart {key_part!r} in {[c.proto.id for c in at.get('plotly_chart')]}")


def values(array) -> np.ndarray:
    """A chart's x or y: a list, or Plotly's typed array ({"dtype", "bdata": base64})."""
    if isinstance(array, dict):
        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
    return np.asarray(array, dtype=np.float64)


def tiny_sweep(at: AppTest) -> AppTest:
    at.selectbox(key="probe_device").set_value("cpu")
    at.text_input(key="sweep_budgets").set_value("1.5e9, 3e9")
    at.text_input(key="sweep_sizes").set_value("1.4e5, 3.2e5")
    at.selectbox(key="sweep_seq_len").set_value(32)
    at.number_input(key="sweep_min_steps").set_value(5)
    at.selectbox(key="sweep_corpus").set_value("sample")
    at.number_input(key="sweep_final_tokens").set_value(128)
    return at.run()


def test_sweep_from_the_page_lands_runs_and_opens_fits(page_store, monkeypatch):
    # Through app.py, so st.switch_page finds the Fits page. AppTest marks the app as a pages-folder
    # app before EVERY run, and pages.common then reruns each script run once (the deep-link fix a real
    # server needs only on its first request), which drops button clicks: switch that fix off here.
    import pages.common

    monkeypatch.setattr(pages.common, "_leave_pages_folder_mode", lambda: None)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("pages/probes.py").run()
    assert not at.exception and [t.value for t in at.title] == ["Probes"]
    assert any(i.value.startswith("Runs on **cpu** (cpu)") for i in at.info)
    n_demo = len(page_store.run_names())  # the first start seeded the demo

    tiny_sweep(at)
    assert not at.exception and not at.error
    plan = [m.value for m in at.markdown if "runs**" in m.value]
    assert len(plan) == 1 and plan[0].startswith("**4 runs**, 8.91e9 training FLOPs — estimated **")

    at.button(key="sweep_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    (success,) = [s.value for s in at.success]
    tag = success.split(" tagged ")[1].split(" ")[0]
    assert success.startswith("Stored 4 runs tagged sweep=")
    live = chart(at, "probe_live_loss")
    assert len(live["data"]) == 4 and live["layout"]["title"]["text"] == "Training loss (live)"
    assert all(len(trace["y"]) >= 5 and 5 < min(trace["y"]) < 9.5 for trace in live["data"])

    runs = page_store.runs()
    mine = runs[runs["tags"].str.contains(tag, regex=False)]
    assert len(runs) == n_demo + 4 and len(mine) == 4
    assert (mine["flops"] == 6 * mine["n_active_params"] * mine["tokens"]).all()
    with page_store.read() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM evals")).scalar_one() == 4 * len(corpus.DOMAINS)
    assert at.selectbox(key="sweep_shown").value == tag
    isoflop = chart(at, "sweep_isoflop_chart")
    assert sorted(t["name"] for t in isoflop["data"]) == ["C = 1.50e9", "C = 3.00e9"]  # core/format.py

    at.button(key="sweep_fit").click().run()
    assert not at.exception and [t.value for t in at.title] == ["Fits"]
    assert at.selectbox(key="fit_dataset").value == tag
    assert sorted(at.multiselect(key=f"fit_runs__{tag}").value) == sorted(mine["name"])
    assert at.selectbox(key="fit_metric").value == "eval_loss"
    assert at.session_state["fit_runs"] == mine["name"].tolist()


def test_bad_configurations_show_one_error_and_store_nothing(page_store):
    at = AppTest.from_file(str(ROOT / "pages" / "probes.py"), default_timeout=TIMEOUT).run()
    demo = page_store.run_names()  # the first start seeded the demo
    tiny_sweep(at)
    assert not at.error and not at.button(key="sweep_start").disabled
    at.text_input(key="sweep_sizes").set_value("1.4e5, 4e6").run()
    (error,) = [e.value for e in at.error]
    assert "does not fit budget" in error and "0 steps" in error and "\n" not in error
    assert at.button(key="sweep_start").disabled
    at.text_input(key="sweep_sizes").set_value("1.4e5")
    at.text_input(key="sweep_budgets").set_value("1e9, lots").run()
    assert [e.value for e in at.error] == ["Compute budgets: 'lots' is not a number; give numbers separated by "
                                           "commas, e.g. 1e11, 3e11."]
    at.text_input(key="sweep_budgets").set_value("1.5e9")
    at.number_input(key="sweep_max_steps").set_value(3).run()
    assert len(at.error) == 1 and "more than max_steps 3" in at.error[0].value
    at.number_input(key="sweep_max_steps").set_value(0)
    at.selectbox(key="probe_device").set_value("cuda").run()
    (error,) = [e.value for e in at.error]
    assert error.startswith("Device 'cuda' was asked for but torch sees no CUDA GPU")
    assert at.button(key="sweep_start").disabled

    at.selectbox(key="probe_device").set_value("cpu")
    at.radio(key="probe_mode").set_value("Throughput").run()
    at.selectbox(key="thr_dtype").set_value("bf16").run()
    (error,) = [e.value for e in at.error]
    assert "bf16 needs a CUDA GPU" in error and at.button(key="thr_start").disabled
    assert page_store.run_names() == demo and list_probes(page_store).empty


def test_throughput_probe_from_the_page(page_store):
    at = AppTest.from_file(str(ROOT / "pages" / "probes.py"), default_timeout=TIMEOUT).run()
    at.selectbox(key="probe_device").set_value("cpu")
    at.radio(key="probe_mode").set_value("Throughput").run()
    at.text_input(key="thr_params").set_value("2e5")
    at.number_input(key="thr_batch").set_value(2)
    at.number_input(key="thr_seq_len").set_value(32)
    at.number_input(key="thr_iters").set_value(2).run()
    assert not at.error and any(c.value.startswith("Shape: d_model 32, 1 layer, 1 head,") for c in at.caption)
    at.button(key="thr_start").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    metrics = {m.label: m.value for m in at.metric}
    assert set(metrics) == {"forward tokens/s", "fwd+bwd tokens/s", "fwd+bwd TFLOP/s", "fwd+bwd MFU", "peak memory"}
    rows = list_probes(page_store).set_index("kind")
    assert sorted(rows.index) == ["forward", "forward_backward"]
    both = rows.loc["forward_backward"]
    assert metrics["fwd+bwd tokens/s"] == f"{both['tokens_per_s']:,.0f}" and both["tokens_per_s"] > 100
    assert metrics["fwd+bwd MFU"] == f"{both['mfu']:.1%}" and 0 < both["mfu"] < 1.5
    assert both["config"]["batch_size"] == 2 and both["config"]["seq_len"] == 32 and both["dtype"] == "fp32"
    table = at.dataframe[-1].value  # the stored throughput probes, last on the page
    assert sorted(table["kind"]) == ["forward", "forward_backward"] and (table["tokens/s"].str.replace(",", "").astype(float) > 100).all()
    cells = table.astype(str).to_numpy().ravel()  # one format: no None, no raw 1.23e+04
    assert not {"None", "nan"} & set(cells) and not any("e+" in c for c in cells)


def test_the_demo_sweep_is_listed_under_stored_sweeps(page_store, monkeypatch):
    """A fresh store (the bundled demo snapshot) lists the probe demo sweep, its IsoFLOP chart drawn."""
    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    at = AppTest.from_file(str(ROOT / "pages" / "probes.py"), default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    # newest first: the demo's mixture sweep (stored after the IsoFLOP demo), then the IsoFLOP demo
    assert at.selectbox(key="sweep_shown").options == ["sweep=demo-mixture — 20 runs on AMD EPYC (5.76e11 FLOPs)",
                                                       "demo — 14 runs on AMD EPYC (5.00e13 FLOPs)"]
    at.selectbox(key="sweep_shown").set_value("demo").run()
    assert not at.exception and not at.error
    assert len(chart(at, "sweep_isoflop_chart")["data"]) == 3  # three budgets


def test_the_demo_mixture_sweep_shows_its_ratio_chart_and_opens_the_dcpt_fit(page_store, monkeypatch):
    """The demo's D-CPT mixture sweep (no FLOP budget: its runs vary the domain ratio) is drawn as final
    domain and general loss along r_d, one colour per (N, D), and "Fit this sweep" opens the Fits page
    on the D-CPT domain-loss law and the final domain loss."""
    import pages.common

    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    monkeypatch.setattr(pages.common, "_leave_pages_folder_mode", lambda: None)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT).run()
    at.switch_page("pages/probes.py").run()
    at.selectbox(key="sweep_shown").set_value("sweep=demo-mixture").run()
    assert not at.exception and not at.error
    mix = chart(at, "sweep_isoflop_chart")
    assert len(mix["data"]) == 8  # 2 sizes × 2 token counts, domain and general each
    domain = [t for t in mix["data"] if t["name"].endswith(": domain")]
    assert len(domain) == 4 and all(np.allclose(values(t["x"]), [0.1, 0.3, 0.5, 0.7, 0.9]) for t in domain)
    assert all(values(t["y"])[0] > values(t["y"])[-1] for t in domain)  # more domain data: lower domain loss
    table = next(d.value for d in at.dataframe if "mixture_ratio" in d.value.columns)
    assert {"final_domain_loss", "final_general_loss"} <= set(table.columns)
    assert "budget_flops" not in table.columns and len(table) == 20
    at.button(key="sweep_fit").click().run()
    assert not at.exception and [t.value for t in at.title] == ["Fits"]
    assert at.selectbox(key="fit_law").value == "dcpt_domain"
    assert at.selectbox(key="fit_metric").value == "domain_loss"
