"""Closed-form checks of core/laws.py: every law against its formula and its limits."""
import math

import numpy as np
import pytest

from core import laws
from core.laws import (
    BESIROGLU_2024,
    HOFFMANN_2022,
    KAPLAN_2020,
    ChinchillaParams,
    DataConstrainedParams,
    KaplanParams,
    RoutedParams,
    chinchilla_loss,
    chinchilla_optimal,
    data_constrained_loss,
    effective_params,
    kaplan_loss_c,
    kaplan_loss_d,
    kaplan_loss_n,
    kaplan_loss_nd,
    power_law_offset,
    routed_loss,
    saturating_experts,
)

ROUTED = RoutedParams(a=-0.082, b=-0.108, c=0.009, d=1.104, e_start=1.847, e_max=314.7)


def test_chinchilla_loss_matches_hand_computation_and_broadcasts():
    n, d = 1e9, 2e10
    expected = 1.69 + 406.4 / n**0.34 + 410.7 / d**0.28
    assert chinchilla_loss(n, d, HOFFMANN_2022) == pytest.approx(expected, rel=1e-14)
    grid = chinchilla_loss(np.array([1e8, 1e9, 1e10])[:, None], np.array([2e10, 1e11])[None, :], HOFFMANN_2022)
    assert grid.shape == (3, 2)
    assert grid[1, 0] == pytest.approx(expected, rel=1e-14)
    assert np.all(np.diff(grid, axis=0) < 0) and np.all(np.diff(grid, axis=1) < 0)  # more N or D, less loss


def test_chinchilla_exponents_a_b():
    assert BESIROGLU_2024.a == pytest.approx(0.3658 / (0.3478 + 0.3658))
    assert BESIROGLU_2024.a + BESIROGLU_2024.b == pytest.approx(1.0)


def test_chinchilla_optimal_spends_the_budget_at_the_isoflop_minimum():
    flops = np.array([1e20, 5.76e23])
    n_opt, d_opt = chinchilla_optimal(flops, HOFFMANN_2022)
    np.testing.assert_allclose(6 * n_opt * d_opt, flops, rtol=1e-12)
    for c, n in zip(flops, n_opt):
        best = chinchilla_loss(n, c / (6 * n), HOFFMANN_2022)
        for f in (0.9, 1.1):
            assert chinchilla_loss(n * f, c / (6 * n * f), HOFFMANN_2022) > best
    # Hoffmann et al.'s own Approach 3 puts Chinchilla's 5.76e23 budget near 40B parameters.
    assert 2e10 < n_opt[1] < 6e10


def test_kaplan_single_variable_laws_are_one_at_their_scales():
    assert kaplan_loss_n(KAPLAN_2020.N_c, KAPLAN_2020) == pytest.approx(1.0)
    assert kaplan_loss_d(KAPLAN_2020.D_c, KAPLAN_2020) == pytest.approx(1.0)
    assert kaplan_loss_c(KAPLAN_2020.C_c, KAPLAN_2020) == pytest.approx(1.0)
    assert KAPLAN_2020.C_c == pytest.approx(3.1e8 * 8.64e19)  # PF-days converted to FLOPs
    assert kaplan_loss_n(1e9, KAPLAN_2020) == pytest.approx((8.8e13 / 1e9) ** 0.076, rel=1e-14)


def test_kaplan_nd_reduces_to_the_single_variable_laws():
    p = KaplanParams()
    assert kaplan_loss_nd(1e9, 1e30, p) == pytest.approx(kaplan_loss_n(1e9, p), rel=1e-6)
    assert kaplan_loss_nd(1e30, 1e10, p) == pytest.approx(kaplan_loss_d(1e10, p), rel=1e-6)
    n, d = 3e8, 4e9
    expected = ((8.8e13 / n) ** (0.076 / 0.095) + 5.4e13 / d) ** 0.095
    assert kaplan_loss_nd(n, d, p) == pytest.approx(expected, rel=1e-14)


def test_power_law_offset():
    x = np.array([1.0, 10.0, 100.0])
    np.testing.assert_allclose(power_law_offset(x, 1.5, 2.0, 0.5), [3.5, 1.5 + 2 / math.sqrt(10), 1.7], rtol=1e-14)


def test_saturating_experts_fixed_points_and_limits():
    assert saturating_experts(1.0, 1.847, 314.7) == pytest.approx(1.847, rel=1e-12)
    e = np.array([1, 2, 8, 64, 512, 1e9])
    e_hat = saturating_experts(e, 1.847, 314.7)
    assert np.all(np.diff(e_hat) > 0)
    assert e_hat[-1] == pytest.approx(314.7, rel=1e-6)
    # Without saturation (E_max → ∞) the transform is a shift: Ê = E − 1 + E_start.
    np.testing.assert_allclose(saturating_experts(e[:5], 2.0, 1e300), e[:5] + 1.0, rtol=1e-12)


def test_routed_loss_formula_and_effective_params():
    n, e = 1e2, 64.0
    e_hat = saturating_experts(e, ROUTED.e_start, ROUTED.e_max)
    log_l = ROUTED.a * math.log(n) + ROUTED.b * math.log(e_hat) + ROUTED.c * math.log(n) * math.log(e_hat) + ROUTED.d
    assert routed_loss(n, e, ROUTED) == pytest.approx(math.exp(log_l), rel=1e-13)
    n_bar = effective_params(n, e, ROUTED)
    # The dense model of size N̄ has the routed model's loss, and more experts means a larger N̄.
    assert routed_loss(n_bar, 1.0, ROUTED) == pytest.approx(routed_loss(n, e, ROUTED), rel=1e-12)
    assert effective_params(n, 1.0, ROUTED) == pytest.approx(n, rel=1e-12)
    assert effective_params(n, 8.0, ROUTED) < n_bar


def test_data_constrained_law_without_repetition_is_chinchilla():
    p = DataConstrainedParams(HOFFMANN_2022)
    n, d = 3e8, 2e10  # fewer parameters than the compute-optimal size for 2e10 tokens: no excess either
    assert data_constrained_loss(n, d, d, p) == pytest.approx(chinchilla_loss(n, d, HOFFMANN_2022), rel=1e-12)
    # Four epochs over a quarter of the data are worth less than fresh data, but more than one epoch.
    repeated = data_constrained_loss(n, d, d / 4, p)
    assert chinchilla_loss(n, d, HOFFMANN_2022) < repeated < chinchilla_loss(n, d / 4, HOFFMANN_2022)
    # Parameters beyond what the unique data can use are worth less too (Muennighoff et al. eq. 6).
    big = 1e11
    assert data_constrained_loss(big, d, d, p) > chinchilla_loss(big, d, HOFFMANN_2022)


def test_params_are_frozen():
    with pytest.raises(Exception):
        HOFFMANN_2022.E = 2.0  # type: ignore[misc]
    assert isinstance(laws.ChinchillaParams(1, 2, 3, 0.3, 0.3), ChinchillaParams)
