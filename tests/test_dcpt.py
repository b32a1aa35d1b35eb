"""The D-CPT law (Que et al. 2024; core/dcpt.py): exact recovery on a synthetic ground truth (the
paper's data and constants are not available here, see the module note), the constrained optimal
domain ratio against brute force, the demo mixture sweep ScaleScope measured itself
(assets/demo/mixture_*.csv) fitted through the store and services, a tiny `probe sweep --mixture`,
and `cli.py plan --dcpt` / `cli.py fit --law dcpt_*` as JSON."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cli import main
from core import dcpt
from core.errors import PlanError
from core.fitting.generic import fit_law
from core.registry import LAWS, predict

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "assets" / "demo"


def grid_points():
    n, d, r = np.meshgrid([7e4, 1.45e5, 3.2e5], [1e5, 4e5], [0.1, 0.3, 0.5, 0.7, 0.9], indexing="ij")
    return n.ravel(), d.ravel(), r.ravel()


@pytest.mark.parametrize("key, truth", [("dcpt_domain", dcpt.SYNTHETIC_DOMAIN),
                                        ("dcpt_general", dcpt.SYNTHETIC_GENERAL)])
def test_fit_recovers_a_synthetic_ground_truth(key, truth):
    n, d, r = grid_points()
    general = key == "dcpt_general"
    y = (dcpt.general_loss if general else dcpt.domain_loss)(n, d, r, truth)
    result = fit_law(key, {"n_params": n, "tokens": d, "mixture_ratio": r}, y, n_bootstrap=0)
    for name, value in result.params.items():
        assert value == pytest.approx(getattr(truth, name), rel=1e-4), name
    # the registry's predict is the law: general loss at the general share 1 − r_d
    inputs = {"n_params": n, "tokens": d, "mixture_ratio": r}
    assert np.allclose(predict(key, result.params, inputs), y, rtol=1e-8)
    assert np.allclose(dcpt.general_loss(n, d, r, truth), dcpt.dcpt_loss(n, d, 1 - r, truth))


def test_optimal_ratio_matches_brute_force_with_and_without_the_constraint():
    n, d = 1.45e5, 4e5
    r = np.linspace(1e-6, 1 - 1e-6, 2_000_001)
    ld = dcpt.domain_loss(n, d, r, dcpt.SYNTHETIC_DOMAIN)
    lg = dcpt.general_loss(n, d, r, dcpt.SYNTHETIC_GENERAL)
    free = dcpt.optimal_ratio(n, d, dcpt.SYNTHETIC_DOMAIN, dcpt.SYNTHETIC_GENERAL)
    assert free.domain_loss <= ld.min() + 1e-9 and not free.constrained
    limit = float(np.interp(0.37, r, lg))  # the limit that binds at r_d = 0.37
    plan = dcpt.optimal_ratio(n, d, dcpt.SYNTHETIC_DOMAIN, dcpt.SYNTHETIC_GENERAL, limit)
    feasible = lg <= limit
    brute = r[feasible][np.argmin(ld[feasible])]
    assert plan.constrained and plan.domain_ratio == pytest.approx(brute, abs=2e-6)
    assert plan.domain_ratio == pytest.approx(0.37, abs=1e-5)
    assert plan.general_loss == pytest.approx(limit, abs=1e-9) and plan.general_loss <= limit + 1e-12
    # a loose limit does not bind; an impossible one is refused with the lowest reachable loss named
    loose = dcpt.optimal_ratio(n, d, dcpt.SYNTHETIC_DOMAIN, dcpt.SYNTHETIC_GENERAL, float(lg.max()) + 10)
    assert loose.domain_ratio == pytest.approx(free.domain_ratio, abs=1e-6) and not loose.constrained
    with pytest.raises(PlanError, match="lowest this model reaches"):
        dcpt.optimal_ratio(n, d, dcpt.SYNTHETIC_DOMAIN, dcpt.SYNTHETIC_GENERAL, float(lg.min()) - 0.1)


def test_registry_declares_both_corpora_with_citation_and_mixture_input():
    for key in ("dcpt_domain", "dcpt_general"):
        law = LAWS[key]
        assert law.inputs == ("n_params", "tokens", "mixture_ratio") and "Que et al. 2024" in law.citation
        assert law.param_names == dcpt.DCPT_PARAMS and not law.plannable


def _demo_store(url):
    """A store at ``url`` holding the committed demo mixture sweep (assets/demo/mixture_*.csv)."""
    from core.probes.sweep import read_tables
    from db.store import Store
    from services.probes import store_sweep

    runs = read_tables(DEMO, prefix="mixture")
    store = Store(url)
    store_sweep(store, runs, sweep_id="demo-mixture")
    yield store, runs
    store.close()


@pytest.fixture
def demo_store(db_url):
    """The demo mixture sweep in a DuckDB store."""
    yield from _demo_store(db_url)


@pytest.fixture
def any_demo_store(any_db_url):
    """The demo mixture sweep in a store on each engine (DuckDB and PostgreSQL): the CLI runs on both."""
    yield from _demo_store(any_db_url)


def test_demo_mixture_sweep_is_measured_and_the_law_fits_it(demo_store):
    from services import fits as fit_data

    store, runs = demo_store
    ratios = sorted({r.config["mixture_ratio"] for r in runs})
    assert len(ratios) >= 5 and len({r.n_active_params for r in runs}) >= 2 and len({r.tokens for r in runs}) >= 2
    assert all(r.source_format == "probe_mixture" and "mixture" in r.tags for r in runs)
    # measured, not made up: more domain data lowers the domain loss and raises the general loss
    for n in {r.n_active_params for r in runs}:
        for d in {r.tokens for r in runs}:
            cell = sorted((r for r in runs if r.n_active_params == n and r.tokens == d),
                          key=lambda r: r.config["mixture_ratio"])
            dom = [r.config["final_domain_loss"] for r in cell]
            gen = [r.config["final_general_loss"] for r in cell]
            assert dom[0] > dom[-1] and gen[0] < gen[-1]
    names = [r.name for r in runs]
    for key, metric in (("dcpt_domain", "domain_loss"), ("dcpt_general", "general_loss")):
        data = fit_data.load_fit_data(store, names, fit_data.Target(metric=metric), "active")
        assert np.allclose(np.sort(np.unique(data.mixture_ratio)), ratios)
        fit_id, result = fit_data.fit_and_save(store, data, fit_data.FitOptions(law=key, method="huber_log",
                                                                                 n_bootstrap=0))
        rms = float(np.sqrt(np.mean(np.log(result.predict(data.inputs(key)) / data.y) ** 2)))
        assert rms < 0.03, (key, rms, result.params)
        # the stored fit plans: the optimal ratio from the two fits is inside [0, 1]
        assert fit_id > 0


def test_plan_dcpt_cli_json_equals_core(capsys):
    rc = main(["plan", "--dcpt", "--n-params", "1.45e5", "--train-tokens", "6e4", "--general-loss-max", "5.2",
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0  # the default law: the fit of the measured demo sweep
    core = dcpt.optimal_ratio(1.45e5, 6e4, dcpt.DEMO_DOMAIN, dcpt.DEMO_GENERAL, 5.2).to_dict()
    assert out["dcpt"] == pytest.approx(core) and out["dcpt"]["constrained"] is True
    assert 0.5 < out["dcpt"]["domain_ratio"] < 0.7 and "demo sweep" in out["laws"]["domain"]
    assert "Que et al. 2024" in out["citation"]
    rc = main(["plan", "--dcpt", "--n-params", "1.45e5"])
    err = capsys.readouterr().err
    assert rc == 2 and "--train-tokens" in err


def test_fit_cli_on_the_demo_sweep_then_plan_from_both_fits(any_demo_store, any_db_url, capsys):
    store, runs = any_demo_store
    store.close()
    ids = {}
    for key, metric in (("dcpt_domain", "domain_loss"), ("dcpt_general", "general_loss")):
        rc = main(["fit", "--law", key, "--metric", metric, "--tag", "mixture", "--n-kind", "active",
                   "--bootstrap", "0", "--db", any_db_url, "--json"])
        captured = capsys.readouterr()
        assert rc == 0, captured.err
        out = json.loads(captured.out)
        assert out["law"] == key and set(out["params"]) == set(dcpt.DCPT_PARAMS) and out["n_points"] == len(runs)
        ids[key] = out["fit_id"]
    rc = main(["plan", "--dcpt", "--n-params", "1.45e5", "--train-tokens", "6e4", "--domain-fit",
               str(ids["dcpt_domain"]), "--general-fit", str(ids["dcpt_general"]), "--db", any_db_url, "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    plan = json.loads(captured.out)["dcpt"]
    assert 0.0 <= plan["domain_ratio"] <= 1.0 and np.isfinite(plan["domain_loss"])


def test_tiny_mixture_sweep_stores_domain_and_general_losses(any_db_url, capfd):
    import torch

    torch.set_num_threads(1)
    rc = main(["probe", "sweep", "--mixture", "0.2", "0.5", "0.8", "--sizes", "7e4", "--tokens", "1280",
               "--seq-len", "32", "--batch-size", "4", "--min-steps", "5", "--final-tokens-per-domain", "128",
               "--corpus", "sample", "--device", "cpu", "--threads", "1", "--db", any_db_url, "--json"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    payload = json.loads(out)
    assert payload["kind"] == "mixture" and [r["mixture_ratio"] for r in payload["runs"]] == [0.2, 0.5, 0.8]
    from db.store import Store

    store = Store(any_db_url)
    try:
        stored = store.runs().set_index("name")
        for r in payload["runs"]:
            assert 3.0 < r["domain_loss"] < 10 and 3.0 < r["general_loss"] < 10
            config = json.loads(stored.loc[r["name"], "config"])
            assert config["mixture_ratio"] == r["mixture_ratio"] and config["domain"] == "python"
            assert payload["tag"] in json.loads(stored.loc[r["name"], "tags"])
        finals = store.final_values("domain_loss", [r["name"] for r in payload["runs"]])
        assert np.allclose(finals["value"].to_numpy(), [r["domain_loss"] for r in payload["runs"]])
    finally:
        store.close()
    rc = main(["probe", "sweep", "--mixture", "0.5", "1.0", "0.2", "--sizes", "7e4", "--tokens", "1280",
               "--corpus", "sample", "--device", "cpu", "--db", any_db_url])
    _, err = capfd.readouterr()
    assert rc == 2 and "strictly between 0 and 1" in err


def test_planner_page_dcpt_panel_from_stored_fits(db_url, monkeypatch):
    """The Planner page's D-CPT panel (AppTest): two stored fits → the core's constrained optimum."""
    from dataclasses import asdict, replace

    from streamlit.testing.v1 import AppTest

    from db.fits import save_fit
    from db.store import Store

    domain = replace(dcpt.SYNTHETIC_DOMAIN, C=0.5)
    general = replace(dcpt.SYNTHETIC_GENERAL, E=2.1)
    store = Store(db_url)
    common = dict(method="huber_log", target="final domain_loss", selection={}, settings={}, intervals={},
                  diagnostics={})
    ids = [save_fit(store, law="dcpt_domain", params=asdict(domain), name="domain", **common),
           save_fit(store, law="dcpt_general", params=asdict(general), name="general", **common)]
    store.close()
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    at = AppTest.from_file(str(ROOT / "pages" / "planner.py"), default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = {m.label: m.value for m in at.metric}
    limit = at.number_input(key="planner_dcpt_limit").value
    demo = dcpt.optimal_ratio(1.45e5, 6e4, dcpt.DEMO_DOMAIN, dcpt.DEMO_GENERAL, limit)
    assert shown["Domain ratio r_d*"] == f"{demo.domain_ratio:.3f}"
    at.selectbox(key="planner_dcpt_domain").set_value(f"fit-{ids[0]}").run()
    at.selectbox(key="planner_dcpt_general").set_value(f"fit-{ids[1]}").run()
    at.number_input(key="planner_dcpt_limit").set_value(float(general_loss_at(general, 0.3))).run()
    assert not at.exception and not at.error
    core = dcpt.optimal_ratio(1.45e5, 6e4, domain, general, float(general_loss_at(general, 0.3)))
    shown = {m.label: m.value for m in at.metric}
    assert shown["Domain ratio r_d*"] == f"{core.domain_ratio:.3f}" and shown["Limit binds"] == "yes"
    assert shown["Domain loss"] == f"{core.domain_loss:.4f}" and shown["General loss"] == f"{core.general_loss:.4f}"


def general_loss_at(general, ratio):
    return round(float(dcpt.general_loss(1.45e5, 6e4, ratio, general)), 4)


def test_fits_page_fits_the_demo_mixture_sweep(demo_store, db_url, monkeypatch):
    """The Fits page (AppTest) offers the D-CPT laws from the registry and fits the demo sweep's domain loss."""
    from streamlit.testing.v1 import AppTest

    from db.fits import list_fits
    from services import fits as fit_data

    store, runs = demo_store
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    at = AppTest.from_file(str(ROOT / "pages" / "fits.py"), default_timeout=240).run()
    assert not at.exception, [e.value for e in at.exception]
    at.selectbox(key="fit_law").set_value("dcpt_domain").run()
    at.selectbox(key="fit_dataset").set_value(fit_data.ALL_RUNS).run()
    at.text_input(key="fit_filter").set_value("mixture-python").run()
    at.selectbox(key="fit_metric").set_value("domain_loss").run()
    at.number_input(key="fit_bootstrap").set_value(0).run()
    assert any("Que et al. 2024" in c.value for c in at.caption)
    at.button(key="fit_button").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    fits = list_fits(store)
    assert fits["law"].tolist() == ["dcpt_domain"]
    assert at.success[0].value.startswith(f"Stored fit #{int(fits['id'].iloc[0])}: {len(runs)} points")
