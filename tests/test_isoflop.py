"""core/isoflop.py: Approaches 1 and 2 recover the compute-optimal exponents of a known law."""
import json

import numpy as np
import pandas as pd
import pytest

from core.errors import FitError
from core.isoflop import approach1, approach2, fit_power_law, group_budgets
from core.laws import HOFFMANN_2022, chinchilla_loss, chinchilla_optimal

LAW = HOFFMANN_2022  # a = β/(α+β) = 0.4516, b = 0.5484
BUDGETS = [1e18, 3e18, 1e19, 3e19, 1e20, 3e20, 1e21]


def _isoflop_sweep(noise=0.0, seed=0):
    """9 sizes over ±1 decade around the true optimum at each budget, final losses only."""
    rows = []
    for c in BUDGETS:
        n_opt, _ = chinchilla_optimal(c, LAW)
        for factor in np.logspace(-1, 1, 9):
            n = n_opt * factor
            rows.append((n, c / (6 * n), c, float(chinchilla_loss(n, c / (6 * n), LAW))))
    df = pd.DataFrame(rows, columns=["n_params", "tokens", "flops", "loss"])
    df["loss"] *= np.exp(np.random.default_rng(seed).normal(0.0, noise, len(df)))
    return df


def _training_curves():
    """40 model sizes, each trained over 4 decades of tokens: one curve (run) per size."""
    rows = []
    for run, n in enumerate(np.logspace(7, 10, 40)):
        for d in np.logspace(8, 12, 120):
            rows.append((n, d, 6 * n * d, float(chinchilla_loss(n, d, LAW)), f"run{run}"))
    return pd.DataFrame(rows, columns=["n_params", "tokens", "flops", "loss", "run"])


def test_approach2_recovers_the_exponents_of_a_synthetic_sweep():
    r = approach2(_isoflop_sweep(noise=0.002, seed=1))
    assert r.a == pytest.approx(LAW.a, abs=0.01)
    assert r.b == pytest.approx(LAW.b, abs=0.01)
    assert r.a + r.b == pytest.approx(1.0, abs=1e-9)  # D = C/(6N) makes the exponents sum to one
    assert len(r.profiles) == len(BUDGETS) and all(p.used for p in r.profiles)
    for p in r.profiles:
        c2, c1, _ = p.coef
        assert c2 > 0
        assert p.n_opt == pytest.approx(np.exp(-c1 / (2 * c2)))
        assert p.curve(p.n_opt) == pytest.approx(p.loss_opt)
        assert p.n_opt == pytest.approx(chinchilla_optimal(p.flops, LAW)[0], rel=0.1)
    assert r.warnings == []
    json.dumps(r.to_dict())


def test_approach2_reports_unusable_budgets():
    df = _isoflop_sweep()
    # A budget sampled only on one side of its optimum: the vertex is extrapolated and not used.
    extra_n = chinchilla_optimal(1e22, LAW)[0] * np.array([2.0, 4.0, 8.0, 16.0])
    extra = pd.DataFrame({"n_params": extra_n, "flops": 1e22})
    extra["tokens"] = 1e22 / (6 * extra_n)
    extra["loss"] = chinchilla_loss(extra["n_params"], extra["tokens"], LAW)
    r = approach2(pd.concat([df, extra], ignore_index=True))
    last = r.profiles[-1]
    assert last.flops == pytest.approx(1e22) and not last.used and not last.interior
    assert any("not used" in w for w in r.warnings)
    assert r.a == pytest.approx(LAW.a, abs=0.01)


def test_approach1_recovers_the_exponents_from_training_curves():
    df = _training_curves()
    r = approach1(df, levels=np.logspace(18, 21, 13))
    assert r.a == pytest.approx(LAW.a, abs=0.03)
    assert r.b == pytest.approx(LAW.b, abs=0.03)
    assert r.n_params_law.r2 > 0.98
    assert len(r.levels) == 13 and r.bin_edges.size == 14
    assert np.all(r.n_candidates >= 2)
    # The winner at each level really has the lowest loss among the curves reaching it.
    k = 6
    n_sizes = np.unique(df["n_params"])
    d_at = r.levels[k] / (6 * n_sizes)
    reach = (d_at >= 1e8) & (d_at <= 1e12)
    best = n_sizes[reach][np.argmin(chinchilla_loss(n_sizes[reach], d_at[reach], LAW))]
    assert r.n_opt[k] == best
    json.dumps(r.to_dict())


def test_approach1_with_final_points_only_uses_bins():
    df = _isoflop_sweep()  # one point per run: every point is its own run
    r = approach1(df, levels=BUDGETS)
    assert r.a == pytest.approx(LAW.a, abs=0.06)
    np.testing.assert_array_equal(r.n_candidates, np.full(len(BUDGETS), 9))


def test_group_budgets_and_power_law():
    gid = group_budgets([1e18, 1.05e18, 0.97e18, 1e19, 1.02e19, 5e20])
    assert gid.tolist() == [0, 0, 0, 1, 1, 2]
    gid = group_budgets([1e18, 1e19, 3e25], budgets=[1e18, 1e19])
    assert gid.tolist() == [0, 1, -1]
    law = fit_power_law([1e18, 1e19, 1e20], [2e8, 2e8 * 10**0.5, 2e9])
    assert law.exponent == pytest.approx(0.5)
    assert law(1e22) == pytest.approx(2e10)


def test_bad_input_raises_fit_error():
    df = _isoflop_sweep()
    with pytest.raises(FitError, match="budget"):
        approach2(df[df["flops"] == BUDGETS[0]])
    bad = df.copy()
    bad.loc[3, "loss"] = np.nan
    with pytest.raises(FitError, match="NaN"):
        approach2(bad)
    with pytest.raises(FitError, match="tokens or flops"):
        approach2(n_params=[1, 2, 3], loss=[3, 2, 1])
    with pytest.raises(FitError, match="positive"):
        approach1(n_params=[1e8, -1.0], tokens=[1e9, 1e9], loss=[3.0, 2.0])
