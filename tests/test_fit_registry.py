"""core/registry.py: every law declared once and read by fits, the planner, services and pages;
one Chinchilla closed form; the data-constrained law (Muennighoff et al. 2023) as a full citizen."""
import math
import re
from pathlib import Path

import numpy as np
import pytest

from core import laws
from core.errors import FitError, PlanError
from core.fitting.chinchilla import Approach3Settings, fit_chinchilla
from core.fitting.generic import fit_law
from core.inference_aware import chinchilla_quality
from core.laws import (
    BESIROGLU_2024,
    ChinchillaParams,
    DataConstrainedParams,
    chinchilla_loss,
    chinchilla_optimal,
    data_constrained_loss,
)
from core.planner import chinchilla_optimum, data_constrained_optimum, params_from_fit, plan, plan_from_fit
from core.registry import LAW_LIST, LAW_NAMES, LAWS, get_law, law_of, predict
from services import fits as fit_data

# Muennighoff et al. 2023's fitted law (their §5: α = β = 0.353, A 521, B 1488, E 1.87; R*_D 15.4, R*_N 5.3).
MUENNIGHOFF = DataConstrainedParams(chinchilla=ChinchillaParams(E=1.87, A=521.0, B=1488.0, alpha=0.353, beta=0.353),
                                    r_star_d=15.4, r_star_n=5.3)
# Chinchilla's G written out: αA/(βB), or the power 1/(α+β), whatever the names' prefixes.
HAND_G = re.compile(r"[\w.]*alpha\s*\*\s*[\w.]*A\s*/\s*\(\s*[\w.]*beta\s*\*\s*[\w.]*B\s*\)"
                    r"|\*\*\s*\(\s*1(\.0*)?\s*/\s*\(\s*[\w.]*alpha\s*\+\s*[\w.]*beta\s*\)")
DC_PARAMS = {"E": 1.87, "A": 521.0, "B": 1488.0, "alpha": 0.353, "beta": 0.353, "r_star_d": 15.4, "r_star_n": 5.3}


def test_every_law_is_declared_once_with_everything_the_layers_read():
    assert LAW_NAMES == tuple(law.key for law in LAW_LIST) and len(set(LAW_NAMES)) == len(LAW_NAMES)
    for law in LAW_LIST:
        assert law.label and law.latex and law.citation and law.param_names and law.inputs, law.key
        assert law.methods and (law.fit is None) == (law.methods[0] == "approach3"), law.key
        assert law.plannable == (law.params_type is not None and law.key != "routed"), law.key
    # the service and the page read the registry, not their own lists
    assert fit_data.METHODS == {k: law.methods for k, law in LAWS.items()}
    assert "data_constrained" in fit_data.METHODS
    with pytest.raises(FitError, match="unknown law 'mystery'"):
        get_law("mystery")


def test_loss_curve_laws_live_in_the_same_registry():
    """The schedule-aware laws (Tissue et al. 2024, Luo et al. 2025) are declared in core/registry.py
    too; the formulas module holds no list of its own, and the forecast CLI offers the registry's keys."""
    import core.loss_curve
    from commands import forecast as forecast_command
    from core.errors import InputError
    from core.registry import CURVE_LAWS, curve_law

    assert list(CURVE_LAWS) == ["lr-annealing", "multi-power"]
    for key, law in CURVE_LAWS.items():
        assert law.key == key and law.label and law.formula and "eq." in law.citation
        assert len(law.fit_names) == len(law.param_names) == len(law.lower) == len(law.upper)
    assert not hasattr(core.loss_curve, "CURVE_LAWS")
    with pytest.raises(InputError, match="unknown loss-curve law 'mystery'"):
        curve_law("mystery")
    sub = __import__("argparse").ArgumentParser().add_subparsers()
    forecast_command.register(sub)
    law_option = next(a for a in sub.choices["forecast"]._actions if "--law" in a.option_strings)
    assert list(law_option.choices) == list(CURVE_LAWS)


def test_one_chinchilla_closed_form_everywhere():
    """Hoffmann et al. 2022 eq. (4) by hand; fits, planner and inference-aware code all agree with it."""
    p = BESIROGLU_2024
    c = 5.76e23
    g = (p.alpha * p.A / (p.beta * p.B)) ** (1 / (p.alpha + p.beta))
    n_star = g * (c / 6) ** (p.beta / (p.alpha + p.beta))
    d_star = g ** -1 * (c / 6) ** (p.alpha / (p.alpha + p.beta))
    assert chinchilla_optimal(c, p)[0] == pytest.approx(n_star, rel=1e-12)
    assert chinchilla_optimal(c, p)[1] == pytest.approx(d_star, rel=1e-12)
    assert chinchilla_optimum(c, p).n_params == pytest.approx(n_star, rel=1e-12)
    assert plan(c, p).method == "closed_form"
    assert chinchilla_quality(n_star, p) == pytest.approx(chinchilla_loss(n_star, d_star, p), rel=1e-12)
    rng = np.random.default_rng(0)
    n = np.geomspace(1e7, 1e10, 6).repeat(5)
    d = np.tile(np.geomspace(1e9, 3e11, 5), 6)
    loss = chinchilla_loss(n, d, p) * np.exp(rng.normal(0, 0.002, n.size))
    r = fit_chinchilla(n, d, loss, Approach3Settings(a_grid=(6.0,), b_grid=(7.0, 8.0), e_grid=(0.5,),
                                                     alpha_grid=(0.3,), beta_grid=(0.3,), n_bootstrap=0,
                                                     budgets=(c,)))
    fitted = r.chinchilla_params()
    assert r.optima[0].n_params == pytest.approx(chinchilla_optimal(c, fitted)[0], rel=1e-12)
    assert r.optima[0].n_params == pytest.approx(chinchilla_optimum(c, fitted).n_params, rel=1e-12)
    # ... and no module writes G = (αA / (βB))^(1/(α+β)) again: core/laws.py holds the one copy.
    root = Path(__file__).resolve().parents[1]
    sources = [f for pkg in ("core", "services", "db", "importers", "pages", "commands", "tools")
               for f in (root / pkg).rglob("*.py")] + [root / "app.py", root / "cli.py"]
    assert root / "core" / "demo.py" in sources
    copies = [f"{f.relative_to(root)}:{i}" for f in sources if f != root / "core" / "laws.py"
              for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if HAND_G.search(line)]
    assert not copies, f"Chinchilla's G by hand (call core.laws.compute_optimal_nd): {copies}"
    assert HAND_G.search("g = (cfg.alpha * cfg.A / (cfg.beta * cfg.B)) ** (1 / (cfg.alpha + cfg.beta))")


def test_predict_reads_the_registry_for_every_law():
    x = {"n_params": np.array([1e8, 1e9]), "tokens": np.array([2e9, 2e10]), "flops": np.array([1e18, 1e20]),
         "n_experts": np.array([1.0, 8.0]), "unique_tokens": np.array([1e9, 5e9]), "x": np.array([10.0, 100.0])}
    k = laws.KAPLAN_2020
    np.testing.assert_allclose(predict("kaplan_n", {"N_c": k.N_c, "alpha_N": k.alpha_N}, x), laws.kaplan_loss_n(x["n_params"], k))
    np.testing.assert_allclose(predict("kaplan_c", {"C_c": k.C_c, "alpha_C": k.alpha_C}, x), laws.kaplan_loss_c(x["flops"], k))
    np.testing.assert_allclose(predict("chinchilla", BESIROGLU_2024.__dict__, x),
                               chinchilla_loss(x["n_params"], x["tokens"], BESIROGLU_2024))
    with pytest.raises(FitError, match="needs inputs n_params, tokens, unique_tokens"):
        predict("data_constrained", DC_PARAMS, {"n_params": x["n_params"], "tokens": x["tokens"]})


# --------------------------------------------------------------------------------------------
# The data-constrained law (Muennighoff et al. 2023) through the registry
# --------------------------------------------------------------------------------------------
def _muennighoff_by_hand(n, d, u, p: DataConstrainedParams):
    """Muennighoff et al. 2023 eqs. (5)-(6) written out, for one point."""
    c = p.chinchilla
    r_d = d / u - 1
    d_eff = u + u * p.r_star_d * (1 - math.exp(-r_d / p.r_star_d))
    g = (c.alpha * c.A / (c.beta * c.B)) ** (1 / (c.alpha + c.beta))
    # the Chinchilla-optimal size whose optimal data is U_D: D* = G^-1 (C/6)^b = U_D
    c6 = (g * u) ** ((c.alpha + c.beta) / c.alpha)
    u_n = min(g * c6 ** (c.beta / (c.alpha + c.beta)), n)
    r_n = n / u_n - 1
    n_eff = u_n + u_n * p.r_star_n * (1 - math.exp(-r_n / p.r_star_n))
    return c.E + c.A / n_eff ** c.alpha + c.B / d_eff ** c.beta


def _dc_sweep():
    n, u, epochs = (a.ravel() for a in np.meshgrid(np.geomspace(1e7, 9e9, 8), np.geomspace(1e8, 1e11, 5),
                                                    [1.0, 4.0, 16.0, 60.0]))
    return n, u * epochs, u


def test_data_constrained_predict_matches_the_closed_formula():
    n, d, u = _dc_sweep()
    by_hand = np.array([_muennighoff_by_hand(*point, MUENNIGHOFF) for point in zip(n, d, u)])
    np.testing.assert_allclose(predict("data_constrained", DC_PARAMS, {"n_params": n, "tokens": d, "unique_tokens": u}),
                               by_hand, rtol=1e-12)
    np.testing.assert_allclose(by_hand, data_constrained_loss(n, d, u, MUENNIGHOFF), rtol=1e-12)
    # without repetition and with N below N_opt(U_D) it is the Chinchilla law
    assert _muennighoff_by_hand(1e8, 1e10, 1e10, MUENNIGHOFF) == pytest.approx(
        float(chinchilla_loss(1e8, 1e10, MUENNIGHOFF.chinchilla)), rel=1e-12)


def test_data_constrained_fit_recovers_the_ground_truth():
    n, d, u = _dc_sweep()
    y = data_constrained_loss(n, d, u, MUENNIGHOFF)
    r = fit_law("data_constrained", {"n_params": n, "tokens": d, "unique_tokens": u}, y, n_bootstrap=0)
    assert r.law == "data_constrained" and r.method == "huber_log"
    assert r.param_names == LAWS["data_constrained"].param_names
    for k, v in DC_PARAMS.items():
        assert r.params[k] == pytest.approx(v, rel=1e-6), k
    np.testing.assert_allclose(r.predict({"n_params": n, "tokens": d, "unique_tokens": u}), y, rtol=1e-9)
    # with noise and a bootstrap: intervals cover the truth of the well-identified parameters
    noisy = y * np.exp(np.random.default_rng(1).normal(0, 0.002, y.size))
    rb = fit_law("data_constrained", {"n_params": n, "tokens": d, "unique_tokens": u}, noisy, n_bootstrap=30, seed=2)
    for k in ("E", "alpha", "beta"):
        lo, hi = rb.intervals[k]
        assert lo <= rb.params[k] <= hi and abs(rb.params[k] - DC_PARAMS[k]) < 0.05 * DC_PARAMS[k], k


def test_data_constrained_plan_is_the_numeric_iso_flop_minimum():
    flops, u = 1e23, 5e10  # few unique tokens for this budget: repetition and excess parameters both matter
    best = plan(flops, MUENNIGHOFF, unique_tokens=u)
    assert best.method == "iso_flop_search" and law_of(MUENNIGHOFF).key == "data_constrained"
    assert best == data_constrained_optimum(flops, MUENNIGHOFF, u)
    n = best.n_params * np.geomspace(0.5, 2.0, 401)
    along = data_constrained_loss(n, flops / (6 * n), u, MUENNIGHOFF)
    assert best.loss <= along.min() + 1e-12
    assert best.n_params == pytest.approx(n[np.argmin(along)], rel=0.01)
    # a stored fit of the law plans through the registry too, and asks for U_D
    fit = {"law": "data_constrained", "params": DC_PARAMS}
    assert params_from_fit(fit) == MUENNIGHOFF
    assert plan_from_fit(flops, fit, unique_tokens=u).n_params == pytest.approx(best.n_params, rel=1e-12)
    with pytest.raises(PlanError, match="Unique tokens"):
        plan(flops, MUENNIGHOFF)


def test_data_constrained_inputs_come_from_the_run_config(store):
    from importers.base import ParsedRun
    import pandas as pd

    n, d, u = _dc_sweep()
    keep = np.arange(0, n.size, 4)
    runs = []
    for i in keep:
        metrics = pd.DataFrame({"name": ["loss"], "step": [np.nan], "tokens": [d[i]], "flops": [6 * n[i] * d[i]],
                                "wall_time": [np.nan], "value": [float(data_constrained_loss(n[i], d[i], u[i], MUENNIGHOFF))]})
        runs.append(ParsedRun(name=f"dc-{i}", source_format="summary", n_params=n[i], n_active_params=n[i],
                              tokens=d[i], flops=6 * n[i] * d[i], metrics=metrics, config={"unique_tokens": u[i]}))
    store.ingest(runs)
    data = fit_data.load_fit_data(store, [r.name for r in runs])
    inputs = data.inputs("data_constrained")
    np.testing.assert_allclose(inputs["unique_tokens"], u[keep])
    fit_id, result = fit_data.fit_and_save(store, data, fit_data.FitOptions(law="data_constrained", method="huber_log",
                                                                            n_bootstrap=0))
    assert result.params["alpha"] == pytest.approx(0.353, rel=1e-3)
    assert fit_data.refit(store, fit_id).params == result.params


def test_the_fit_frontier_is_the_closed_form_with_its_bootstrap_band():
    n = np.geomspace(1e7, 1e10, 6).repeat(5)
    d = np.tile(np.geomspace(1e9, 3e11, 5), 6)
    loss = chinchilla_loss(n, d, BESIROGLU_2024) * np.exp(np.random.default_rng(2).normal(0, 0.003, n.size))
    r = fit_chinchilla(n, d, loss, Approach3Settings(a_grid=(6.0,), b_grid=(7.0, 8.0), e_grid=(0.5,),
                                                     alpha_grid=(0.3,), beta_grid=(0.3,), n_bootstrap=30))
    flops = np.array([1e21, 5.76e23])
    n_opt, d_opt, best, band = r.frontier(flops)
    for j, c in enumerate(flops):
        plan_ = chinchilla_optimum(c, r.chinchilla_params())
        assert (n_opt[j], d_opt[j], best[j]) == pytest.approx((plan_.n_params, plan_.tokens, plan_.loss), rel=1e-12)
        assert band[0, j] <= best[j] <= band[1, j]
        assert r.optimum_at(5.76e23).n_params == pytest.approx(n_opt[1], rel=1e-12)
