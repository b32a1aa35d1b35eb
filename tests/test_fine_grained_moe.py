"""Fine-grained MoE (Krajewski et al. 2024; core/fine_grained_moe.py): the published constants, the
numeric optimum against the closed form it must reduce to without router cost (Hoffmann et al. 2022
eq. (4) with A = g/G^γ + a, B = b), exact recovery of the constants by the registry's fit on a
synthetic ground truth drawn from them, the FLOPs rule with the router, the paper's qualitative
claims, the comparison with Clark et al. 2022's routed law, and `cli.py plan --granularity` as JSON."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cli import main
from core import fine_grained_moe as fg
from core.errors import PlanError
from core.fitting.generic import fit_law
from core.laws import HOFFMANN_2022, compute_optimal_nd
from core.planner import compare_moe_laws, moe_comparison_rows, moe_comparison_table, moe_optimum, plan
from core.presets import get_preset
from core.registry import LAWS

P = fg.KRAJEWSKI_2024


def test_published_constants_and_registry_entry():
    assert (P.a, P.alpha, P.b, P.beta, P.g, P.gamma, P.c) == (18.1, 0.115, 30.8, 0.147, 2.1, 0.58, 0.47)
    law = LAWS["fine_grained_moe"]
    assert law.inputs == ("n_params", "tokens", "granularity") and "Krajewski et al. 2024" in law.citation
    assert law.plannable and law.plan_inputs == ("granularity",) and law.n_kind == "total"
    n, d, g = 1e9, 2e10, 8.0
    expected = 0.47 + (2.1 / 8 ** 0.58 + 18.1) / 1e9 ** 0.115 + 30.8 / 2e10 ** 0.147
    assert float(fg.fine_grained_loss(n, d, g, P)) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize("flops, granularity", [(1e19, 1.0), (1e22, 8.0), (1e25, 32.0)])
def test_optimum_without_router_is_the_chinchilla_closed_form(flops, granularity):
    got = fg.moe_plan(flops, P, fg.MoEShape(64, granularity), router=False)
    ratio = (4 + 8 * 64) / 12  # the law's N (every expert) per active parameter at E = 64, top-k = G
    assert float(fg.total_params(1.0, fg.MoEShape(64, granularity))) == pytest.approx(ratio, rel=1e-15)
    a_eff = (P.g * granularity ** -P.gamma + P.a) * ratio ** -P.alpha
    n_star, d_star = compute_optimal_nd(flops, a_eff, P.b, P.alpha, P.beta)
    assert got.n_active_params == pytest.approx(float(n_star), rel=1e-6)
    assert got.tokens == pytest.approx(float(d_star), rel=1e-6)
    # the registry's generic planner (C = 6·N·D, iso-FLOP search) agrees
    generic = plan(flops, P, granularity=granularity)
    assert generic.n_params == pytest.approx(float(n_star), rel=1e-6) and generic.method == "iso_flop_search"


def test_fit_recovers_the_published_constants_from_synthetic_data():
    n, d, g = (a.ravel() for a in np.meshgrid(np.logspace(7, 9, 4), np.logspace(9, 11, 3), [1, 2, 4, 8, 16],
                                              indexing="ij"))
    y = fg.fine_grained_loss(n, d, g, P)
    result = fit_law("fine_grained_moe", {"n_params": n, "tokens": d, "granularity": g}, y, n_bootstrap=0)
    for name in fg.FGMOE_PARAMS:
        assert result.params[name] == pytest.approx(getattr(P, name), rel=1e-4), name


def test_flops_rule_counts_the_router_as_the_paper_does():
    n, shape = 1e9, fg.MoEShape(expansion=64, granularity=8)
    d_model = (n * 64 / 12) ** (1 / 3)  # top-k = G: 12·d² per block, n_blocks = d/64
    assert fg.ASPECT_RATIO == 64
    assert float(fg.d_model_for(n, shape)) == pytest.approx(d_model, rel=1e-12)
    expected = 6 * n + 14 * d_model * (64 * 8) * (d_model / 64)
    assert float(fg.flops_per_token(n, shape)) == pytest.approx(expected, rel=1e-12)
    shares = [float(fg.router_share(n, fg.MoEShape(64, g))) for g in (1, 4, 16, 64)]
    assert shares == sorted(shares) and shares[0] > 0
    best = fg.moe_plan(1e22, P, shape)
    assert float(fg.flops_per_token(best.n_active_params, shape)) * best.tokens == pytest.approx(1e22, rel=1e-9)


def test_optima_follow_hoffmann_in_active_parameters_as_the_paper_says():
    """The law read at the model's TOTAL parameters (every expert): Krajewski et al. remark that their
    optimal active N and D follow Hoffmann et al.'s ~20 tokens per parameter for 1-10B active
    parameters, which this reading gives and the active reading (0.7 tokens per parameter) did not.
    The numbers at 1e22 FLOPs, G = 8 are those of a public implementation of the law evaluated by hand
    (same constants, N = d²·(8E + 4)·n_layers, d_model = 64·n_layers, FLOPs (12·d²·6 + 14·d·E·G)·n_layers)."""
    best = fg.moe_plan(1e22, P, fg.MoEShape(64, 8))
    assert best.n_active_params == pytest.approx(9.26e9, rel=2e-3)
    assert best.tokens == pytest.approx(1.75e11, rel=3e-3)
    assert best.n_total_params == pytest.approx(3.98e11, rel=2e-3)
    assert best.loss == pytest.approx(2.0230, abs=5e-5)
    for flops in (1e20, 1e21, 1e22):
        plan_g = fg.best_granularity(flops, P)[0]
        assert 5e8 < plan_g.n_active_params < 2e10 and 10 < plan_g.tokens_per_param < 40, plan_g


def test_paper_claims_finer_is_better_and_the_best_granularity_grows_with_budget():
    # at fixed N and D the loss falls with G (their eq. (4)); with the router counted an interior G wins
    losses = fg.fine_grained_loss(1e9, 2e10, np.array([1, 2, 4, 8, 16, 32]), P)
    assert np.all(np.diff(losses) < 0)
    best_g = []
    for flops in (1e19, 1e21, 1e23, 1e25):
        best, plans = fg.best_granularity(flops, P)
        assert best.granularity > 1  # "G = 1 (expert = FFN) is not optimal at almost any budget"
        assert best.loss < next(q for q in plans if q.granularity == 1).loss
        best_g.append(best.granularity)
    assert best_g == sorted(best_g)


def test_top_k_other_than_g_is_flagged_and_bad_shapes_are_refused():
    plan_k = fg.moe_plan(1e22, P, fg.MoEShape(64, 8, top_k=2))
    assert plan_k.top_k == 2 and any("extrapolation" in note for note in plan_k.notes)
    with pytest.raises(PlanError, match="top-k"):
        fg.moe_plan(1e22, P, fg.MoEShape(2, 1, top_k=4))
    with pytest.raises(PlanError, match="granularity"):
        fg.moe_plan(1e22, P, fg.MoEShape(64, 0.5))


def test_comparison_with_clark_and_the_dense_law():
    out = compare_moe_laws(1e22)
    assert out["krajewski_best"]["loss"] < out["krajewski_g1"]["loss"]
    # Clark et al. 2022 on Hoffmann's dense law: 64 experts beat the dense optimum (Wang et al. 2024's claim too)
    assert out["clark_routed"]["loss"] < out["dense_chinchilla"]["loss"]
    assert "Wang et al. 2024" in out["wang_2024"]
    for key in ("krajewski_best", "clark_routed"):
        assert out[key]["n_active_params"] > 0 and out[key]["tokens"] > 0


def test_comparison_table_at_1e22_flops():
    """compare_moe_laws at 1e22 FLOPs, row by row: Krajewski et al.'s best G (32, of 1…64) and G = 1 are the
    law's own optima (moe_plan; G = 8's 9.26B on 175B is checked above), Clark et al.'s row is
    moe_optimum with 64 experts on Hoffmann et al.'s law, the dense row Hoffmann et al. 2022 eq. (4)."""
    out = compare_moe_laws(1e22)
    rows = {r["view"]: r for r in moe_comparison_rows(out)}
    best, g1, clark, dense = (rows[v] for v in ("Krajewski et al. 2024, best G", "Krajewski et al. 2024, G = 1",
                                                  "Clark et al. 2022 routed, on Hoffmann et al. 2022",
                                                  "dense, Hoffmann et al. 2022"))
    assert best["granularity G"] == 32 and best["experts per layer"] == 64 * 32 and best["top-k"] == 32
    assert best["active N*"] == pytest.approx(9.07e9, rel=2e-3) and best["tokens D*"] == pytest.approx(1.657e11, rel=2e-3)
    assert best["tokens per active param (D/N)"] == pytest.approx(18.28, rel=2e-3)
    ref = fg.moe_plan(1e22, P, fg.MoEShape(64, 1))
    assert g1["active N*"] == pytest.approx(ref.n_active_params, rel=1e-12) == pytest.approx(1.215e10, rel=2e-3)
    assert g1["tokens D*"] == pytest.approx(ref.tokens, rel=1e-12) and g1["experts per layer"] == 64
    # Hoffmann et al. 2022 eq. (4), written out: N* = G·(C/6)^(β/(α+β)), G = (αA/(βB))^(1/(α+β))
    h = HOFFMANN_2022
    n_opt = (h.alpha * h.A / (h.beta * h.B)) ** (1 / (h.alpha + h.beta)) * (1e22 / 6) ** (h.beta / (h.alpha + h.beta))
    assert dense["active N*"] == pytest.approx(n_opt, rel=1e-9) == pytest.approx(5.16e9, rel=2e-3)
    assert dense["tokens D*"] == pytest.approx(1e22 / (6 * n_opt), rel=1e-9)
    assert dense["granularity G"] is None and dense["experts per layer"] is None
    moe = moe_optimum(1e22, HOFFMANN_2022, get_preset("clark_sbase").params, 64)
    assert clark["active N*"] == pytest.approx(moe.n_active_params, rel=1e-12) == pytest.approx(2.21e9, rel=3e-3)
    assert clark["tokens D*"] == pytest.approx(1e22 / (6 * moe.n_active_params), rel=1e-9)
    assert (clark["granularity G"], clark["experts per layer"], clark["top-k"]) == (1.0, 64, 1.0)
    # as written on the page and by the CLI (core.format)
    assert moe_comparison_table(out)[0] == {
        "view": "Krajewski et al. 2024, best G", "active N*": "9.07B", "tokens D*": "166B",
        "tokens per active param (D/N)": "18.3", "granularity G": "32", "experts per layer": "2,048", "top-k": "32"}
    assert moe_comparison_table(out)[3]["granularity G"] == "—"


def test_plan_cli_granularity_json_equals_core(capsys):
    rc = main(["plan", "--flops", "1e22", "--granularity", "auto", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    best, plans = fg.best_granularity(1e22, P)
    got = out["fine_grained_moe"]
    assert got["granularity"] == best.granularity and got["n_active_params"] == pytest.approx(best.n_active_params)
    assert got["tokens"] == pytest.approx(best.tokens) and len(got["by_granularity"]) == len(plans)
    assert "14·d_model·(E·G)" in got["flops_rule"] and math.isfinite(got["router_flops_share"])
    rc = main(["plan", "--flops", "1e22", "--granularity", "8", "--top-k", "8", "--expansion", "16", "--json"])
    got = json.loads(capsys.readouterr().out)["fine_grained_moe"]
    ref = fg.moe_plan(1e22, P, fg.MoEShape(16, 8, 8))
    assert rc == 0 and got["n_active_params"] == pytest.approx(ref.n_active_params) and got["n_experts"] == 128
    rc = main(["plan", "--flops", "1e22", "--granularity", "0.3"])
    err = capsys.readouterr().err
    assert rc == 2 and "granularity" in err and len(err.strip().splitlines()) == 1


def test_planner_page_panel_shows_the_core_plan(db_url, monkeypatch):
    """The Planner page's fine-grained MoE panel (AppTest): the default budget's best-granularity plan."""
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from pages.planner import DEFAULT_BUDGET, human

    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    page = str(Path(__file__).resolve().parents[1] / "pages" / "planner.py")
    at = AppTest.from_file(page, default_timeout=180).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = {m.label: m.value for m in at.metric}
    best, _ = fg.best_granularity(DEFAULT_BUDGET, P)
    assert shown["Granularity G"] == f"{best.granularity:g}"
    assert shown["Active N* (fine-grained)"] == human(best.n_active_params)
    assert shown["Tokens D* (fine-grained)"] == human(best.tokens)
    assert shown["Loss (fine-grained)"] == f"{best.loss:.4f}"
    # the MoE views side by side: the table is core.planner.moe_comparison_table at this budget
    table = next(d.value for d in at.dataframe if "view" in d.value.columns)
    assert table.to_dict("records") == moe_comparison_table(compare_moe_laws(DEFAULT_BUDGET))
    assert any("compare allocations (active N*, D*, D/N), not losses" in c.value for c in at.caption)
    # a chosen granularity and top-k
    at.selectbox(key="planner_fg_granularity").set_value(4).run()
    at.selectbox(key="planner_fg_top_k").set_value(2).run()
    assert not at.exception
    ref = fg.moe_plan(DEFAULT_BUDGET, P, fg.MoEShape(64, 4, 2))
    assert {m.label: m.value for m in at.metric}["Active N* (fine-grained)"] == human(ref.n_active_params)
    assert any("extrapolation" in c.value for c in at.caption)


def test_fits_page_fits_runs_with_a_granularity(db_url, monkeypatch):
    """The Fits page (AppTest) fits the law to stored runs whose config carries 'granularity'."""
    from pathlib import Path

    import pandas as pd
    from streamlit.testing.v1 import AppTest

    from core.runs import ParsedRun
    from db.fits import list_fits
    from db.store import Store
    from services import fits as fit_data

    n, d, g = (a.ravel() for a in np.meshgrid(np.logspace(7, 9, 3), np.logspace(9, 11, 3), [1, 4, 16],
                                              indexing="ij"))
    y = fg.fine_grained_loss(n, d, g, P)
    runs = [ParsedRun(name=f"fgmoe-{i}", source_format="summary", arch="moe", n_params=n[i],
                      n_active_params=n[i] / 43, tokens=d[i], flops=6 * n[i] / 43 * d[i],
                      config={"granularity": float(g[i])},
                      tags=["fgmoe"], metrics=pd.DataFrame({"name": ["loss"], "step": [np.nan], "tokens": [d[i]],
                                                            "flops": [6 * n[i] / 43 * d[i]], "wall_time": [np.nan],
                                                            "value": [float(y[i])]}))
            for i in range(n.size)]
    store = Store(db_url)
    store.ingest(runs)
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    try:
        at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "pages" / "fits.py"),
                               default_timeout=240).run()
        assert not at.exception, [e.value for e in at.exception]
        at.selectbox(key="fit_law").set_value("fine_grained_moe").run()
        at.selectbox(key="fit_dataset").set_value(fit_data.ALL_RUNS).run()
        at.text_input(key="fit_filter").set_value("fgmoe-").run()
        at.number_input(key="fit_bootstrap").set_value(0).run()
        assert at.radio(key="fit_n_kind").value == "total"  # Krajewski et al.: every expert's parameters
        assert any("Krajewski et al. 2024" in c.value for c in at.caption)
        at.button(key="fit_button").click().run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        fits = list_fits(store)
        params = fits[fits["law"] == "fine_grained_moe"]["params"].iloc[0]
        for name in fg.FGMOE_PARAMS:
            assert params[name] == pytest.approx(getattr(P, name), rel=1e-3), name
    finally:
        store.close()
