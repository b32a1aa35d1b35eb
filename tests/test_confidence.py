"""The one interval level (core/format.CONFIDENCE, issue 13 §6): every core function that computes an
interval takes the level as a parameter and defaults to it."""
from __future__ import annotations

import inspect

import numpy as np
import pytest

from core import downstream, planner
from core.fitting.chinchilla import Approach3Settings, fit_chinchilla
from core.fitting.inputs import bootstrap_summaries, tails
from core.format import CONFIDENCE
from core.laws import BESIROGLU_2024, chinchilla_loss
from core.law_choice import INTERVAL_LEVEL, plan_for


def test_every_interval_defaults_to_the_one_level():
    assert INTERVAL_LEVEL == CONFIDENCE == 0.95
    assert inspect.signature(planner.bootstrap_bands).parameters["level"].default == CONFIDENCE
    assert inspect.signature(planner.plan_from_fit).parameters["level"].default == CONFIDENCE
    assert inspect.signature(plan_for).parameters["level"].default == CONFIDENCE
    assert downstream.DownstreamFitConfig().confidence == CONFIDENCE
    assert tails() == [2.5, 97.5] and tails(0.9) == pytest.approx([5.0, 95.0])
    with pytest.raises(Exception, match="between 0 and 1"):
        tails(95)


def test_bootstrap_summaries_at_a_level():
    v = np.random.default_rng(0).normal(size=4000)
    _, i95 = bootstrap_summaries({"x": v})
    _, i68 = bootstrap_summaries({"x": v}, 0.68)
    assert i95["x"] == pytest.approx(list(np.percentile(v, [2.5, 97.5])))
    assert i68["x"][0] > i95["x"][0] and i68["x"][1] < i95["x"][1]
    assert i68["x"][1] - i68["x"][0] == pytest.approx(2.0, abs=0.15)  # ±1σ


@pytest.fixture(scope="module")
def fit():
    n, d = np.meshgrid(np.logspace(7.5, 10.0, 6), np.logspace(9.0, 11.5, 6))
    n, d = n.ravel(), d.ravel()
    loss = chinchilla_loss(n, d, BESIROGLU_2024) * np.exp(np.random.default_rng(1).normal(0.0, 0.003, n.size))
    grid = dict(a_grid=(5.0, 15.0), b_grid=(5.0, 15.0), e_grid=(0.0, 1.0), alpha_grid=(0.5, 1.0), beta_grid=(0.5, 1.0))
    return fit_chinchilla(n, d, loss, Approach3Settings(**grid, n_bootstrap=60, seed=3))


def test_a_fit_gives_its_intervals_at_any_level(fit):
    assert fit.intervals_at() == pytest.approx(fit.intervals)  # stored at the default level
    narrow, wide = fit.intervals_at(0.68), fit.intervals_at(0.99)
    for k in ("E", "alpha", "beta", "a", "b"):
        assert wide[k][0] <= fit.intervals[k][0] <= narrow[k][0] <= narrow[k][1] <= fit.intervals[k][1] <= wide[k][1]
    o95, o68 = fit.optima_at(), fit.optima_at(0.68)
    assert [r.n_params_lo for r in o95] == pytest.approx([r.n_params_lo for r in fit.optima])
    assert all(a.n_params_lo <= b.n_params_lo and b.n_params_hi <= a.n_params_hi for a, b in zip(o95, o68))
    grid = np.geomspace(1e19, 1e23, 5)
    band95, band68 = fit.frontier(grid)[3], fit.frontier(grid, 0.68)[3]
    assert (band95[0] <= band68[0]).all() and (band68[1] <= band95[1]).all()
