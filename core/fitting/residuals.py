"""The residuals in log space of the laws fitted by the generic Huber fit (core/fitting/generic.py).

Each law of core/registry.py that is not fitted by Approach 3 declares a ``FitSpec`` here: the
optimiser's parameters θ, the residual r = log ŷ − log y with its Jacobian, θ → reported parameters,
and its default start grid. Papers are cited beside each law in core/laws.py and core/registry.py.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core import laws
from core.fitting.inputs import grid


@dataclass(frozen=True)
class FitSpec:
    """How the generic fitter fits one law in log space."""

    theta_names: tuple  # the optimiser's parameters
    # residual(theta (k,P), logs dict name->(n,), log_y (n,)) -> r (k,n) = log ŷ − log y, J (k,n,P).
    # ``logs`` holds log x for each input and the raw values under "<name>_raw".
    residual: Callable
    to_params: Callable  # theta (..., P) -> dict name -> (...) arrays
    starts: Callable  # (logs dict, log_y) -> (S, P) start grid
    check_grid: bool = False  # warn when the optimum lies outside the start grid (a grid that may miss basins)
    min_distinct: tuple = ()  # ((input, count, message), ...): refuse data with fewer distinct values
    gauss_newton: bool = False  # Hessian without the Σ c ∇²r term: for residuals whose J is itself numerical


def r_linear(column):
    """log ŷ = k − α·log x  (Kaplan's single-variable laws in log space), theta = (k, α)."""

    def residual(theta, logs, log_y):
        lx = logs[column]
        k, al = theta[:, 0:1], theta[:, 1:2]
        r = k - al * lx - log_y  # (k, n)
        jac = np.empty(r.shape + (2,))
        jac[..., 0] = 1.0
        jac[..., 1] = -lx
        return r, jac

    return residual



def kaplan_single(scale_name, exp_name):
    """(to_params, starts) of a single-variable Kaplan law L = (X_c/x)^α: X_c = exp(k/α)."""

    def to_params(theta):
        theta = np.asarray(theta, np.float64)
        k, al = theta[..., 0], theta[..., 1]
        with np.errstate(all="ignore"):
            return {scale_name: np.exp(k / al), exp_name: al}

    def starts(logs, log_y):
        return grid([float(np.mean(log_y)) + 1.0, float(np.mean(log_y)) + 3.0], [0.01, 0.05, 0.1, 0.3])

    return to_params, starts


def r_kaplan_nd(theta, logs, log_y):
    ln, ld = logs["n_params"], logs["tokens"]
    lnc, an, ldc, ad = (theta[:, j : j + 1] for j in range(4))
    q = an / ad
    u0 = q * (lnc - ln)  # (k, n)
    u1 = ldc - ld
    m = np.maximum(u0, u1)
    e0, e1 = np.exp(u0 - m), np.exp(u1 - m)
    s = e0 + e1
    lse = m + np.log(s)
    p0, p1 = e0 / s, e1 / s
    r = ad * lse - log_y
    jac = np.empty(r.shape + (4,))
    jac[..., 0] = an * p0  # ∂/∂log N_c
    jac[..., 1] = p0 * (lnc - ln)  # ∂/∂α_N
    jac[..., 2] = ad * p1  # ∂/∂log D_c
    jac[..., 3] = lse - q * p0 * (lnc - ln)  # ∂/∂α_D
    return r, jac


def r_power_offset(theta, logs, log_y):
    lx = logs["x"]
    e, a, al = theta[:, 0:1], theta[:, 1:2], theta[:, 2:3]
    u0 = a - al * lx
    m = np.maximum(u0, e)
    e0, e1 = np.exp(u0 - m), np.exp(e - m)
    s = e0 + e1
    p0, p1 = e0 / s, e1 / s
    r = m + np.log(s) - log_y
    jac = np.empty(r.shape + (3,))
    jac[..., 0] = p1
    jac[..., 1] = p0
    jac[..., 2] = -p0 * lx
    return r, jac


def power_offset_starts(logs, log_y):
    lx = logs["x"]
    y = np.exp(log_y)
    rows = []
    for e_off in (-3.0, -1.0, -0.3, -0.05):
        e = float(np.log(y.min())) + e_off
        resid = max(float(np.median(y)) - math.exp(e), 1e-12 * float(np.median(y)))
        for al in (0.05, 0.1, 0.25, 0.5, 1.0, 2.0):
            for a_off in (-2.0, 0.0, 2.0):
                rows.append((e, math.log(resid) + al * float(np.median(lx)) + a_off, al))
    return np.array(rows)


def log_e_hat(n_experts, s, m):
    """log Ê and its derivatives w.r.t. s = log e_start, m = log(e_max − e_start) (Clark et al. 2022)."""
    e_start = np.exp(s)
    e_max = e_start + np.exp(m)
    k = 1.0 / (1.0 / e_start - 1.0 / e_max)
    z = n_experts - 1.0 + k
    h = 1.0 / z + 1.0 / e_max  # 1/Ê
    dk_ds_start = k * k / e_start ** 2  # ∂K/∂E_start
    dk_dmax = -k * k / e_max ** 2  # ∂K/∂E_max
    dh_dstart = -dk_ds_start / z ** 2
    dh_dmax = -dk_dmax / z ** 2 - 1.0 / e_max ** 2
    dl_dstart, dl_dmax = -dh_dstart / h, -dh_dmax / h  # log Ê = −log h
    dl_ds = (dl_dstart + dl_dmax) * e_start  # E_start = e^s, E_max = e^s + e^m
    dl_dm = dl_dmax * np.exp(m)
    return -np.log(h), dl_ds, dl_dm


def r_routed(theta, logs, log_y):
    ln, ne = logs["n_params"], logs["n_experts_raw"]
    a, b, c, d, s, m = (theta[:, j : j + 1] for j in range(6))
    le, dle_ds, dle_dm = log_e_hat(ne, s, m)  # (k, n)
    r = a * ln + b * le + c * ln * le + d - log_y
    jac = np.empty(r.shape + (6,))
    jac[..., 0] = ln
    jac[..., 1] = le
    jac[..., 2] = ln * le
    jac[..., 3] = 1.0
    slope = b + c * ln
    jac[..., 4] = slope * dle_ds
    jac[..., 5] = slope * dle_dm
    return r, jac


def routed_to_params(theta):
    theta = np.asarray(theta, np.float64)
    e_start = np.exp(theta[..., 4])
    return {"a": theta[..., 0], "b": theta[..., 1], "c": theta[..., 2], "d": theta[..., 3],
            "e_start": e_start, "e_max": e_start + np.exp(theta[..., 5])}


def routed_starts(logs, log_y):
    """For each (E_start, E_max) on a small grid, solve the linear part (a, b, c, d) by least squares."""
    ln, ne = logs["n_params"], logs["n_experts_raw"]
    rows = []
    for e_start in (1.1, 1.5, 2.0, 4.0):
        for e_extra in (10.0, 100.0, 1000.0):
            s, m = math.log(e_start), math.log(e_extra)
            le = log_e_hat(ne, np.array(s), np.array(m))[0]
            X = np.stack([ln, le, ln * le, np.ones_like(ln)], axis=1)
            coef = np.linalg.lstsq(X, log_y, rcond=None)[0]
            rows.append((*coef, s, m))
    return np.array(rows)



def kaplan_nd_to_params(th):
    th = np.asarray(th, np.float64)
    return {"N_c": np.exp(th[..., 0]), "alpha_N": th[..., 1], "D_c": np.exp(th[..., 2]), "alpha_D": th[..., 3]}


def kaplan_nd_starts(logs, log_y):
    return grid([25.0, 30.0, 35.0], [0.05, 0.1, 0.2], [25.0, 30.0, 35.0], [0.05, 0.1, 0.2])


def power_offset_to_params(th):
    th = np.asarray(th, np.float64)
    return {"E": np.exp(th[..., 0]), "A": np.exp(th[..., 1]), "alpha": th[..., 2]}


# --------------------------------------------------------------------------------------------
# Data-constrained law (Muennighoff et al. 2023): residual through the closed formula, Jacobian by
# central differences (the min(N_opt(U_D), N) switch and nested exponentials make the analytic one
# long for no gain at these sizes); the fit then uses the Gauss-Newton Hessian (FitSpec.gauss_newton).
# --------------------------------------------------------------------------------------------
DATA_CONSTRAINED_THETA = ("a", "b", "e", "alpha", "beta", "log_r_star_d", "log_r_star_n")


def data_constrained_to_params(th):
    th = np.asarray(th, np.float64)
    return {"E": np.exp(th[..., 2]), "A": np.exp(th[..., 0]), "B": np.exp(th[..., 1]), "alpha": th[..., 3],
            "beta": th[..., 4], "r_star_d": np.exp(th[..., 5]), "r_star_n": np.exp(th[..., 6])}


def _data_constrained_log_pred(theta, n, d, u):
    """log L̂ (k, n) of Muennighoff et al. 2023 eqs. (5)-(6) for parameter rows ``theta`` (k, 7)."""
    p = {k: v[:, None] for k, v in data_constrained_to_params(theta).items()}
    with np.errstate(all="ignore"):
        return np.log(laws.data_constrained_loss(n, d, u, laws.DataConstrainedParams(
            chinchilla=laws.ChinchillaParams(E=p["E"], A=p["A"], B=p["B"], alpha=p["alpha"], beta=p["beta"]),
            r_star_d=p["r_star_d"], r_star_n=p["r_star_n"])))


def central_jacobian(log_pred: Callable, theta: np.ndarray, shape: tuple) -> np.ndarray:
    """∂ log_pred / ∂θ by central differences, step 1e-6·max(1, |θ_j|); theta (S, P), ``shape`` the
    residuals' (S, n) → (S, n, P).

    For laws whose analytic derivatives are not worth writing out (the data-constrained law, the
    registry's numeric fit specs in core/fitting/numeric.py); fitted with a Gauss-Newton Hessian."""
    jac = np.empty(tuple(shape) + (theta.shape[1],))
    for j in range(theta.shape[1]):
        h = 1e-6 * np.maximum(1.0, np.abs(theta[:, j]))
        tp, tm = theta.copy(), theta.copy()
        tp[:, j] += h
        tm[:, j] -= h
        with np.errstate(all="ignore"):  # far-off starts overflow; their objective is then inf and they stall
            jac[..., j] = (log_pred(tp) - log_pred(tm)) / (2 * h)[:, None]
    return jac


def r_data_constrained(theta, logs, log_y):
    n, d, u = logs["n_params_raw"], logs["tokens_raw"], logs["unique_tokens_raw"]
    theta = np.asarray(theta, np.float64)
    r = _data_constrained_log_pred(theta, n, d, u) - log_y
    return r, central_jacobian(lambda th: _data_constrained_log_pred(th, n, d, u), theta, r.shape)


def data_constrained_starts(logs, log_y):
    """Around published values (Besiroglu et al. 2024's Chinchilla law; R*_D 15.4, R*_N 5.3)."""
    return grid([5.0, 6.5], [6.0, 8.0], [0.3, 0.6], [0.3, 0.4], [0.3, 0.4], [2.0, 3.5], [1.0, 2.5])
