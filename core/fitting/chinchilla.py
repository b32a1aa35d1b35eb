"""The Chinchilla law by Approach 3 of Hoffmann et al. 2022 as replicated by Besiroglu et al. 2024,
with bootstrap uncertainty (the other laws: core/fitting/generic.py; the solver: core/fitting/solver.py).

Approach 3 (Hoffmann et al. 2022 §3.3; Besiroglu et al. 2024 §2) minimises over θ = (a, b, e, α, β)

    Σ_i w_i · Huber_δ( LSE(a − α log N_i, b − β log D_i, e) − log L_i ),     δ = 1e-3,

so that A = exp(a), B = exp(b), E = exp(e) in L = E + A/N^α + B/D^β. The objective is ~1e-3 and
flat along ridges, so an optimiser with the usual relative tolerances stops early (near Hoffmann's
published values). Here every start of the 4,500-point grid is optimised at once as ONE batched,
vectorised problem: a damped (saddle-free) Newton method with exact, analytic gradients and
Hessians, a per-start Armijo line search, optional box bounds (projected Newton), and a stopping
rule on the Newton decrement relative to the objective (rtol = 1e-13 by default), i.e. convergence
to the last few digits of float64. With many points it runs coarse to fine: ~60 evenly spread
points carry every start into its basin, then all points converge each start tightly (every
result is a local minimum of the full objective). The bootstrap is the same batched problem with
one row of resampling weights per resample, started from the optimum. Measured against a loop of
scipy L-BFGS-B calls: benchmarks/fit.py.

Public: ``Approach3Settings``, ``fit_chinchilla(n_params, tokens, loss, settings, weights, progress)``,
``ChinchillaObjective``, ``chinchilla_objective`` and ``scipy_reference_fit`` (a loop of scipy L-BFGS-B,
one call per start: the reference the tests and benchmarks/fit.py compare with).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Mapping, Optional

import numpy as np

from core.errors import FitError
from core.fitting.diagnostics import Approach3Diagnostics, fit_warnings, residual_diagnostics
from core.fitting.inputs import (
    as_1d, bootstrap_summaries, check_positive, grid, progress_callback, select_points,
)
from core.fitting.result import PARAM_NAMES, FitResult, chinchilla_optima, exponents
from core.fitting.solver import NewtonOptions, batched_newton
from core.fitting.triage import StartTriage, TriageOptions, chinchilla_coords
from core.progress import ProgressFn, report

THETA_NAMES = ("a", "b", "e", "alpha", "beta")  # Approach 3 optimiser space: A=e^a, B=e^b, E=e^e
_LOWER = np.tril_indices(5, -1)  # the Hessian's lower triangle, copied from the upper one


# ============================================================================================
# The Approach 3 objective (analytic gradient and Hessian, batched over starts)
# ============================================================================================
class ChinchillaObjective:
    """Σ_i w_i Huber_δ(LSE(a − α x_i, b − β y_i, e) − log L_i) with x = log N, y = log D.

    ``weights`` is (n,) shared by all starts, or (S, n): one row per problem (bootstrap resamples).
    ``tie`` (5, P) maps a reduced parameter vector to (a, b, e, α, β) (fix α = β: P = 4).
    Rows are processed in chunks of ``chunk`` starts so that the
    (chunk, n) temporaries stay in cache: the work is memory-bound, not arithmetic-bound.
    Derivatives: with p = softmax(u) over the three terms and ∇u_k constant, ∇r = Σ_k p_k ∇u_k and
    ∇²r = Σ_k p_k ∇u_k ∇u_kᵀ − ∇r ∇rᵀ; so H = Σ w(ψ' − ψ) ∇r∇rᵀ + Σ wψ Σ_k p_k ∇u_k∇u_kᵀ with
    ψ = Huber', ψ' = 1{|r| < δ}. Every sum over points is a GEMM against the basis
    [1, x, y, x², xy, y²]; no (S, n, P, P) tensor is formed.
    """

    def __init__(self, log_n, log_d, log_loss, delta: float, weights=None, tie: Optional[np.ndarray] = None,
                 chunk: Optional[int] = None):
        self.x = np.asarray(log_n, np.float64)  # (n,)
        self.y = np.asarray(log_d, np.float64)  # (n,)
        self.t = np.asarray(log_loss, np.float64)  # (n,)
        self.delta = float(delta)
        n = self.x.size
        w = np.ones(n) if weights is None else np.asarray(weights, np.float64)
        self.weights = w  # (n,) or (S, n)
        self.unit_weights = weights is None  # all ones: _fgh_chunk skips multiplying by them
        self.tie = tie  # (5, P) or None
        # ~32k elements per temporary (256 KB): in cache, and enough work per numpy call.
        self.chunk = int(chunk) if chunk else max(16, 32768 // max(n, 1))
        x, y = self.x, self.y
        self.x_lo, self.x_hi = float(x.min()), float(x.max())
        self.y_lo, self.y_hi = float(y.min()), float(y.max())
        self.basis = np.stack([np.ones(n), x, y, x * x, x * y, y * y], axis=1)  # (n, 6)
        self.basis_x = np.ascontiguousarray(self.basis[:, [0, 1, 3]])  # (n, 3): 1, x, x²
        self.basis_y = np.ascontiguousarray(self.basis[:, [0, 2, 5]])  # (n, 3): 1, y, y²

    def _w(self, rows):
        return self.weights if self.weights.ndim == 1 else self.weights[rows]  # (n,) or (k, n)

    def _full(self, theta):
        theta = np.asarray(theta, np.float64)
        return theta if self.tie is None else theta @ self.tie.T  # (k, 5)

    def _terms(self, th5):
        """Residuals and the three exponentials of the log-sum-exp, shifted per start.

        The shift m_k = max_i max(a − αx_i, b − βy_i, e) is known in closed form from the extreme
        x and y, so the E term needs no per-point exponential and no per-point maximum is formed.
        Only if a start's terms spread over more than ~700 nats across the data (an absurd, far-off
        iterate) would every term underflow at some point; those chunks fall back to a per-point shift.
        """
        a, b, e, al, be = (th5[:, j : j + 1] for j in range(5))  # each (k, 1)
        m = np.maximum(np.maximum(a - np.minimum(al * self.x_lo, al * self.x_hi),
                                  b - np.minimum(be * self.y_lo, be * self.y_hi)), e)  # (k, 1)
        e0 = np.multiply(al, self.x)
        np.subtract(a - m, e0, out=e0)
        np.exp(e0, out=e0)  # (k, n) A N^-α / e^m
        e1 = np.multiply(be, self.y)
        np.subtract(b - m, e1, out=e1)
        np.exp(e1, out=e1)  # (k, n) B D^-β / e^m
        e2 = np.exp(e - m)  # (k, 1) E / e^m
        s = e0 + e1
        s += e2
        if not s.min() > 1e-290:  # one reduction: every start's smallest sum is above the floor
            return self._terms_pointwise(th5)
        r = np.log(s)
        r += m - self.t  # (k, n) residual in log loss: log prediction − log L
        return r, e0, e1, e2, s

    def _terms_pointwise(self, th5):
        a, b, e, al, be = (th5[:, j : j + 1] for j in range(5))
        u0 = a - al * self.x
        u1 = b - be * self.y
        m = np.maximum(np.maximum(u0, u1), e)  # (k, n) per-point shift: never underflows
        e0 = np.exp(u0 - m)
        e1 = np.exp(u1 - m)
        e2 = np.exp(e - m)
        s = e0 + e1 + e2
        return np.log(s) + m - self.t, e0, e1, e2, s

    def _f_chunk(self, th5, w):
        r = self._terms(th5)[0]
        absr = np.abs(r, out=r)
        t = np.minimum(absr, self.delta)
        absr -= 0.5 * t
        absr *= t  # Huber: t(|r| − t/2) with t = min(|r|, δ)
        return absr @ w if w.ndim == 1 else np.einsum("kn,kn->k", absr, w)

    def f(self, theta, rows) -> np.ndarray:
        th5 = self._full(theta)
        out = np.empty(th5.shape[0])
        for i in range(0, th5.shape[0], self.chunk):
            sl = slice(i, i + self.chunk)
            out[sl] = self._f_chunk(th5[sl], self._w(rows[sl]))
        return out

    def residuals(self, theta) -> np.ndarray:
        """Log-space residuals log L̂ − log L, (k, n)."""
        return self._terms(self._full(np.atleast_2d(theta)))[0]

    def fgh(self, theta, rows):
        th5 = self._full(theta)
        k = th5.shape[0]
        f = np.empty(k)
        g = np.empty((k, 5))
        H = np.empty((k, 5, 5))
        for i in range(0, k, self.chunk):
            sl = slice(i, i + self.chunk)
            f[sl], g[sl], H[sl] = self._fgh_chunk(th5[sl], self._w(rows[sl]))
        if self.tie is not None:
            g = g @ self.tie
            H = self.tie.T @ H @ self.tie
        return f, g, H

    def _fgh_chunk(self, th5, w):
        k = th5.shape[0]
        n = self.x.size
        r, e0, e1, e2, s = self._terms(th5)  # (k, n) each
        d = self.delta
        absr = np.abs(r)
        t = np.minimum(absr, d)
        hub = (absr - 0.5 * t) * t
        f = np.einsum("kn,kn->k", hub, np.broadcast_to(w, hub.shape)) if w.ndim > 1 else hub @ w
        c = np.clip(r, -d, d)
        if self.unit_weights:  # w ≡ 1: two passes over (k, n) fewer
            v = (absr < d).astype(np.float64)
        else:
            c *= w  # (k, n) w ψ
            v = (absr < d) * w
        v -= c  # (k, n) w (ψ' − ψ), the weight of ∇r∇rᵀ
        inv = np.reciprocal(s, out=s)
        p0 = np.multiply(e0, inv, out=e0)  # (k, n) softmax weights of the A, B and E terms
        p1 = np.multiply(e1, inv, out=e1)
        p2 = e2 * inv  # e2 is (k, 1) or (k, n)
        q = np.empty((6, k, n))  # per-point weights, each summed against basis columns
        np.multiply(c, p0, out=q[0])  # c p0       -> [1, x]        gradient of a, α
        np.multiply(c, p1, out=q[1])  # c p1       -> [1, y]        gradient of b, β
        np.multiply(c, p2, out=q[2])  # c p2       -> [1]           gradient of e
        vp2 = v * p2
        np.multiply(vp2, p0, out=q[4])  # v p0 p2  -> [1, x]
        np.multiply(vp2, p1, out=q[5])  # v p1 p2  -> [1, y]
        vp2 *= p2
        vp2 += q[2]
        q22 = vp2.sum(axis=1, dtype=np.float64)  # (k,) Σ v p2² + c p2
        vp0 = v * p0
        np.multiply(vp0, p1, out=q[3])  # v p0 p1  -> [1, x, y, xy]
        vp0 *= p0
        vp0 += q[0]  # q00 = v p0² + c p0 -> [1, x, x²]
        vp1 = np.multiply(v, p1, out=v)
        vp1 *= p1
        vp1 += q[1]  # q11 = v p1² + c p1 -> [1, y, y²]
        m = (q.reshape(6 * k, n) @ self.basis).reshape(6, k, 6)  # one GEMM: columns 1, x, y, x², xy, y²
        m00 = vp0 @ self.basis_x  # (k, 3): Σ q00·[1, x, x²]
        m11 = vp1 @ self.basis_y  # (k, 3): Σ q11·[1, y, y²]
        g = np.stack([m[0, :, 0], m[1, :, 0], m[2, :, 0], -m[0, :, 1], -m[1, :, 2]], axis=1)  # (k, 5)
        H = np.empty((k, 5, 5))
        H[:, 0, 0] = m00[:, 0]
        H[:, 0, 1] = m[3, :, 0]
        H[:, 0, 2] = m[4, :, 0]
        H[:, 0, 3] = -m00[:, 1]
        H[:, 0, 4] = -m[3, :, 2]
        H[:, 1, 1] = m11[:, 0]
        H[:, 1, 2] = m[5, :, 0]
        H[:, 1, 3] = -m[3, :, 1]
        H[:, 1, 4] = -m11[:, 1]
        H[:, 2, 2] = q22
        H[:, 2, 3] = -m[4, :, 1]
        H[:, 2, 4] = -m[5, :, 2]
        H[:, 3, 3] = m00[:, 2]
        H[:, 3, 4] = m[3, :, 4]
        H[:, 4, 4] = m11[:, 2]
        H[:, _LOWER[0], _LOWER[1]] = H[:, _LOWER[1], _LOWER[0]]
        return f, g, H


def chinchilla_objective(theta, log_n, log_d, log_loss, delta: float = 1e-3, weights=None):
    """One start's Approach 3 objective and its gradient, lean numpy (for scipy.optimize).

    ``theta`` = (a, b, e, α, β). Returns ``(f, grad)``; the same numbers as ``ChinchillaObjective``.
    """
    a, b, e, al, be = (float(v) for v in theta)
    u0 = a - al * log_n
    u1 = b - be * log_d
    m = np.maximum(np.maximum(u0, u1), e)
    e0 = np.exp(u0 - m)
    e1 = np.exp(u1 - m)
    e2 = np.exp(e - m)
    s = e0 + e1 + e2
    r = m + np.log(s) - log_loss
    absr = np.abs(r)
    w = 1.0 if weights is None else weights
    f = float(np.sum(w * np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))))
    c = w * np.clip(r, -delta, delta) / s
    c0 = c * e0
    c1 = c * e1
    grad = np.array([c0.sum(), c1.sum(), (c * e2).sum(), -(c0 @ log_n), -(c1 @ log_d)])
    return f, grad


def _plain_objective(theta, log_n, log_d, log_loss, delta, weights=None) -> float:
    """The objective as replication code usually writes it (no gradient): log of a sum of exps."""
    a, b, e, al, be = theta
    pred = np.log(np.exp(a - al * log_n) + np.exp(b - be * log_d) + np.exp(e))
    diff = log_loss - pred
    loss = np.where(np.abs(diff) <= delta, 0.5 * diff**2, delta * (np.abs(diff) - 0.5 * delta))
    return float(np.sum(loss if weights is None else weights * loss))


def scipy_reference_fit(starts, log_n, log_d, log_loss, delta: float = 1e-3, weights=None,
                        ftol: float = 1e-15, gtol: float = 1e-15, maxiter: int = 20000, jac: bool = True):
    """The usual reference: a Python loop of scipy L-BFGS-B, one call per start, tight tolerances.

    ``jac=True`` passes the analytic gradient (``chinchilla_objective``: the strongest version of
    the reference); ``jac=False`` is what replication code usually runs — the plain objective with
    scipy's finite-difference gradient. ``weights`` is (n,) or (S, n) (one row per start, e.g.
    bootstrap counts). Returns ``(theta (S, 5), objective (S,))`` (objective recomputed exactly).
    Used by tests and benchmarks/fit.py; not by the app.
    (scipy's ftol is relative to max(|f|, 1): with f ≈ 1e-3 its default 2.2e-9 stops ~1e-6 short.)
    """
    from scipy.optimize import minimize

    starts = np.atleast_2d(np.asarray(starts, np.float64))
    out_theta = np.empty_like(starts)
    out_f = np.empty(starts.shape[0])
    options = {"ftol": ftol, "gtol": gtol, "maxiter": maxiter, "maxfun": 2 * maxiter, "maxls": 50}
    for i, th0 in enumerate(starts):
        wi = None if weights is None else (weights if np.ndim(weights) == 1 else weights[i])
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            if jac:
                res = minimize(chinchilla_objective, th0, args=(log_n, log_d, log_loss, delta, wi), jac=True,
                               method="L-BFGS-B", options=options)
            else:
                res = minimize(_plain_objective, th0, args=(log_n, log_d, log_loss, delta, wi),
                               method="L-BFGS-B", options=options)
        out_theta[i] = res.x
        out_f[i] = chinchilla_objective(res.x, log_n, log_d, log_loss, delta, wi)[0]
    return out_theta, out_f



# ============================================================================================
# Approach 3: settings and the fit
# ============================================================================================
@dataclass(frozen=True)
class Approach3Settings:
    """How Approach 3 is run; everything here goes into FitResult.settings (reproducibility)."""

    delta: float = 1e-3  # Huber threshold of Hoffmann et al. 2022 / Besiroglu et al. 2024: robust to outliers
    a_grid: tuple = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)  # starts for a = log A (Besiroglu et al. 2024 grid)
    b_grid: tuple = (0.0, 5.0, 10.0, 15.0, 20.0, 25.0)  # starts for b = log B (same grid)
    e_grid: tuple = (-1.0, -0.5, 0.0, 0.5, 1.0)  # starts for e = log E (same grid)
    alpha_grid: tuple = (0.0, 0.5, 1.0, 1.5, 2.0)  # starts for α (same grid): 6·6·5·5·5 = 4,500 starts
    beta_grid: tuple = (0.0, 0.5, 1.0, 1.5, 2.0)  # starts for β (ignored when α = β is fixed)
    n_bootstrap: int = 1000  # resamples; 0 skips the bootstrap (no stderr / intervals)
    seed: int = 0  # seeds the bootstrap resampling: same seed, same numbers
    drop_highest: int = 0  # drop the k highest-loss points first (Besiroglu et al. drop 5 outliers)
    fix_alpha_eq_beta: bool = False  # tie α = β when there are too few sizes to separate them
    budgets: tuple = (1e21, 1e22, 5.76e23, 1e24, 1e25)  # FLOP budgets for N*, D*, tokens/param (5.76e23: Chinchilla)
    bounds: Optional[tuple] = None  # ((name, low, high), ...) over a, b, e, alpha, beta; None = unconstrained as published
    max_iter: int = 400  # Newton steps per start
    rtol: float = 1e-13  # Newton-decrement stopping rule relative to the objective (see NewtonOptions)
    polish: bool = True  # Newton from the winner down to the rounding floor (no decrement test); kept only if lower
    coarse_points: int = 60  # coarse phase on ~this many points when there are ≥ 2× as many (0: off); ~2× faster
    triage: bool = True  # merge starts whose paths meet, stop those that cannot beat the best minimum, and
    #                      converge each distinct coarse end point once (core/fitting/triage.py): ~3× faster,
    #                      same optimum; False runs every start to its own end as before

    def starts(self) -> np.ndarray:
        """The start grid in the optimiser's space: (S, 5) columns a, b, e, α, β (or (S, 4) with α = β)."""
        if self.fix_alpha_eq_beta:
            return grid(self.a_grid, self.b_grid, self.e_grid, self.alpha_grid)
        return grid(self.a_grid, self.b_grid, self.e_grid, self.alpha_grid, self.beta_grid)

    def as_dict(self) -> dict:
        return {
            "delta": self.delta, "grid": {"a": list(self.a_grid), "b": list(self.b_grid), "e": list(self.e_grid),
                                          "alpha": list(self.alpha_grid), "beta": list(self.beta_grid)},
            "n_starts": int(self.starts().shape[0]), "n_bootstrap": self.n_bootstrap, "seed": self.seed,
            "drop_highest": self.drop_highest, "fix_alpha_eq_beta": self.fix_alpha_eq_beta,
            "budgets": list(self.budgets), "bounds": None if self.bounds is None else [list(b) for b in self.bounds],
            "max_iter": self.max_iter, "rtol": self.rtol, "polish": self.polish, "coarse_points": self.coarse_points,
            "triage": self.triage,
        }

    def triage_options(self) -> TriageOptions:
        return TriageOptions()

    @classmethod
    def from_dict(cls, d: Mapping) -> "Approach3Settings":
        g = d.get("grid", {})
        kw = dict(delta=d.get("delta", 1e-3), n_bootstrap=d.get("n_bootstrap", 1000), seed=d.get("seed", 0),
                  drop_highest=d.get("drop_highest", 0), fix_alpha_eq_beta=d.get("fix_alpha_eq_beta", False),
                  max_iter=d.get("max_iter", 400), rtol=d.get("rtol", 1e-13), polish=d.get("polish", True),
                  coarse_points=d.get("coarse_points", 60),
                  triage=d.get("triage", False))  # fits stored before triage existed ran without it
        for name in ("a", "b", "e", "alpha", "beta"):
            if name in g:
                kw[f"{name}_grid"] = tuple(g[name])
        if "budgets" in d:
            kw["budgets"] = tuple(d["budgets"])
        if d.get("bounds"):
            kw["bounds"] = tuple(tuple(b) for b in d["bounds"])
        return cls(**kw)


_TIE_ALPHA_BETA = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=np.float64)


def _theta_to_params(theta5) -> dict:
    a, b, e, al, be = np.moveaxis(np.asarray(theta5, np.float64), -1, 0)
    return {"E": np.exp(e), "A": np.exp(a), "B": np.exp(b), "alpha": al, "beta": be}


def _bounds_arrays(bounds, names, tie=None):
    if not bounds:
        return None, None
    lo = np.full(len(names), -np.inf)
    hi = np.full(len(names), np.inf)
    for name, low, high in bounds:
        if name not in names:
            raise FitError(f"unknown bound name {name!r}: use one of {', '.join(names)}")
        j = names.index(name)
        lo[j] = -np.inf if low is None else float(low)
        hi[j] = np.inf if high is None else float(high)
        if lo[j] > hi[j]:
            raise FitError(f"bound for {name} has low > high: swap them")
    if tie is not None:  # reduced space: alpha column stands for both
        lo = np.array([lo[0], lo[1], lo[2], max(lo[3], lo[4])])
        hi = np.array([hi[0], hi[1], hi[2], min(hi[3], hi[4])])
    return lo, hi


COARSE_RTOL = 1e-8  # the coarse phase only needs to reach the basin; the full phase converges to rtol


def _coarse_subset(log_flops: np.ndarray, n_points: int) -> Optional[np.ndarray]:
    """Every k-th point in order of compute (k = n // n_points), or None when n < 2·n_points."""
    n = log_flops.size
    if n_points <= 0 or n < 2 * n_points:
        return None
    order = np.argsort(log_flops, kind="stable")
    return np.sort(order[:: n // n_points])


END_CELL = 1e-4  # first-phase end points in the same cell of this width (scaled θ) are one point for the second


def _same_points(theta: np.ndarray, coords) -> np.ndarray:
    """A group number per row (0, 1, ...): rows whose scaled coordinates share a cell of width END_CELL."""
    if coords is None or theta.shape[0] == 0:
        return np.arange(theta.shape[0])
    pts = coords(theta)
    cells = np.where(np.isfinite(pts), np.floor(pts / END_CELL), np.nan)
    bad = ~np.isfinite(cells).all(axis=1)
    cells[bad] = -np.arange(1, bad.sum() + 1)[:, None] * 1e18  # far-off or non-finite points stay on their own
    return np.unique(cells, axis=0, return_inverse=True)[1].reshape(-1)


def _scaled_progress(progress, offset: int, total: int, n_run: int, n_units: int, message: str):
    """``on_iter`` for a phase that runs ``n_run`` problems on behalf of ``n_units`` progress units."""
    if progress is None:
        return None
    return lambda done, _n: report(progress, offset + (done * n_units) // max(n_run, 1), total, message)


def fit_chinchilla(n_params, tokens, loss, settings: Optional[Approach3Settings] = None, *,
                   weights=None, progress: Optional[ProgressFn] = None) -> FitResult:
    """Fit L(N, D) = E + A/N^α + B/D^β by Approach 3 (see the module docstring) with bootstrap.

    ``n_params``, ``tokens``, ``loss``: 1-D arrays, one row per (final) run; ``weights`` optional
    per-point weights (e.g. ``weights_by_run``). ``progress(done, total, message)`` is called as
    starts and resamples finish; raising ``Cancelled`` from it stops the fit.
    Returns a ``FitResult`` (law "chinchilla", method "approach3"); raises ``FitError`` on bad input.
    """
    s = settings or Approach3Settings()
    n = as_1d("n_params", n_params)
    d = as_1d("tokens", tokens)
    l = as_1d("loss", loss)
    if not (n.size == d.size == l.size):
        raise FitError(f"n_params, tokens and loss have {n.size}, {d.size}, {l.size} rows: give one of each per run")
    for name, arr in (("n_params", n), ("tokens", d), ("loss", l)):
        check_positive(name, arr)
    if s.delta <= 0:
        raise FitError("delta must be positive (1e-3 is the published choice)")
    n_par = 4 if s.fix_alpha_eq_beta else 5
    arrays, l_used, w_used, kept = select_points({"n": n, "d": d}, l, weights, s.drop_highest, n_par)
    n_used, d_used = arrays["n"], arrays["d"]
    n_sizes = np.unique(n_used).size
    if n_sizes < 2:
        raise FitError("all runs have the same model size: the law needs at least 2 (better ≥ 3) distinct sizes")
    if np.unique(d_used).size < 2:
        raise FitError("all runs have the same token count: the law needs several distinct amounts of data")
    if l_used.size < n_par:
        raise FitError(f"{l_used.size} points for {n_par} parameters: select more runs")

    log_n, log_d, log_l = np.log(n_used), np.log(d_used), np.log(l_used)
    tie = _TIE_ALPHA_BETA if s.fix_alpha_eq_beta else None
    lo, hi = _bounds_arrays(s.bounds, THETA_NAMES, tie)
    # Absolute floor of the stopping test: rtol times the objective of a fit whose every residual
    # sits at δ. Without it, noise-free data (f* = 0) would iterate to max_iter chasing f → 0.
    weight_sum = float(l_used.size if w_used is None else w_used.sum())
    opts = NewtonOptions(max_iter=s.max_iter, rtol=s.rtol, atol=s.rtol * 0.5 * s.delta**2 * weight_sum)
    starts = s.starts()  # (S, P)
    if lo is not None:
        starts = np.clip(starts, lo, hi)
    n_starts = starts.shape[0]
    n_boot = int(s.n_bootstrap)
    if n_boot < 0:
        raise FitError("n_bootstrap must be ≥ 0")
    coarse = _coarse_subset(log_n + log_d, s.coarse_points)  # None when the data are small
    n_phases = 1 if coarse is None else 2
    total = n_phases * n_starts + n_boot
    report(progress, 0, total, "fitting: grid of starts")

    # 1. All starts as one batched problem. Coarse to fine: an evenly spread subset of the points
    #    first carries every start into its basin at a fraction of the cost; then all points
    #    converge every start tightly, so each result is a local minimum of the full objective.
    #    With triage (core/fitting/triage.py) the first phase merges starts whose paths meet and
    #    stops those that cannot beat the best minimum so far, and the second phase runs once per
    #    distinct end point of the first (on the Chinchilla data ~4,500 starts → a few hundred).
    triage = StartTriage(n_starts, chinchilla_coords(log_n, log_d, tie), s.triage_options()) if s.triage else None
    obj = ChinchillaObjective(log_n, log_d, log_l, s.delta, w_used, tie)
    if coarse is not None:
        sub_w = None if w_used is None else w_used[coarse]
        sub_sum = float(coarse.size if sub_w is None else sub_w.sum())
        first_obj = ChinchillaObjective(log_n[coarse], log_d[coarse], log_l[coarse], s.delta, sub_w, tie)
        first_opts = NewtonOptions(max_iter=s.max_iter, rtol=COARSE_RTOL, atol=COARSE_RTOL * 0.5 * s.delta**2 * sub_sum)
        message = "grid starts (coarse)"
    else:
        first_obj, first_opts, message = obj, opts, "grid starts"
    phase1 = batched_newton(first_obj.fgh, first_obj.f, starts, first_opts, lo, hi,
                            progress_callback(progress, 0, total, message), retire=triage)
    if triage is not None:
        root, lost = triage.resolve()
    else:
        root, lost = np.arange(n_starts), np.zeros(n_starts, dtype=bool)
    n_steps = int(phase1.n_iter.sum())
    if coarse is not None:
        # Second phase: one run per distinct first-phase end point (merged and pruned starts excluded;
        # without triage every start runs, as the search always did).
        ends = np.flatnonzero((root == np.arange(n_starts)) & ~lost)
        group = _same_points(phase1.theta[ends], triage.coords if triage is not None else None)
        reps = ends[np.unique(group, return_index=True)[1]] if triage is not None else ends
        # The progress test again (no merging: these end points are all distinct): most of them
        # are minima far above the best, or starts drifting off to infinity.
        second_triage = None if triage is None else StartTriage(
            reps.size, triage.coords, replace(triage.options, merge=False))
        second = batched_newton(obj.fgh, obj.f, phase1.theta[reps], opts, lo, hi,
                                _scaled_progress(progress, n_starts, total, reps.size, n_starts, "grid starts"),
                                retire=second_triage)
        n_steps += int(second.n_iter.sum())
        if second_triage is not None:
            second.objective[second_triage.pruned] = np.inf
        end_theta = np.full((n_starts, n_par), np.nan)
        end_f = np.full(n_starts, np.inf)
        end_status = np.full(n_starts, 3, dtype=np.int64)
        rep_of = np.full(n_starts, -1)
        if triage is not None:
            rep_of[ends] = reps[group]
        else:
            rep_of[ends] = ends
        where = np.full(n_starts, -1)
        where[reps] = np.arange(reps.size)
        has = rep_of[root] >= 0
        k = where[rep_of[root[has]]]
        end_theta[has], end_f[has], end_status[has] = second.theta[k], second.objective[k], second.status[k]
    else:
        has = ~lost
        end_theta = np.where(has[:, None], phase1.theta[root], np.nan)
        end_f = np.where(has, phase1.objective[root], np.inf)
        end_status = np.where(has, phase1.status[root], 3)
    finite = np.isfinite(end_f)
    if not finite.any():
        raise FitError("no start reached a finite objective: check the data (loss in nats, sizes in parameters)")
    best_i = int(np.argmin(np.where(finite, end_f, np.inf)))
    best = end_theta[best_i].copy()
    best_f = float(end_f[best_i])
    polished = False
    if s.polish:
        best, best_f, polished = _polish(obj, best, best_f, lo, hi)

    # 2. Bootstrap: resampling counts as weights, one row per resample, all from the optimum.
    samples_theta = np.empty((0, n_par))
    boot_status = np.empty(0, dtype=np.int64)
    if n_boot > 0:
        rng = np.random.default_rng(s.seed)
        m = l_used.size
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=n_boot).astype(np.float64)  # (B, m)
        wb = counts if w_used is None else counts * w_used
        bobj = ChinchillaObjective(log_n, log_d, log_l, s.delta, wb, tie)
        boot = batched_newton(bobj.fgh, bobj.f, np.repeat(best[None, :], n_boot, axis=0), opts, lo, hi,
                              progress_callback(progress, n_phases * n_starts, total, "bootstrap"))
        samples_theta, boot_status = boot.theta, boot.status
    report(progress, total, total, "done")

    full = best if tie is None else tie @ best
    full_samples = samples_theta if tie is None else samples_theta @ tie.T  # (B, 5)
    params = {k: float(v) for k, v in _theta_to_params(full).items()}
    sp = _theta_to_params(full_samples)
    boot_cols = np.stack([sp[k] for k in PARAM_NAMES], axis=1) if n_boot else np.empty((0, 5))
    derived_point = {k: float(v) for k, v in exponents(params).items()}
    stderr, intervals = {}, {}
    if n_boot:
        sample_map = dict(sp)
        sample_map.update(exponents(sp))
        stderr, intervals = bootstrap_summaries(sample_map)
    optima = chinchilla_optima(params, s.budgets, sp if n_boot else None)

    resid = obj.residuals(best)[0]  # log L̂ − log L
    grid_lo = np.array([min(s.a_grid), min(s.b_grid), min(s.e_grid), min(s.alpha_grid), min(s.beta_grid)])
    grid_hi = np.array([max(s.a_grid), max(s.b_grid), max(s.e_grid), max(s.alpha_grid), max(s.beta_grid)])
    full_lo = None if lo is None else (lo if tie is None else tie @ lo)
    full_hi = None if hi is None else (hi if tie is None else tie @ hi)
    term_values = {
        "A/N^alpha": params["A"] * n_used ** (-params["alpha"]),
        "B/D^beta": params["B"] * d_used ** (-params["beta"]),
    }
    warns = fit_warnings(
        theta=full, theta_names=THETA_NAMES, grid_low=grid_lo, grid_high=grid_hi, lower=full_lo, upper=full_hi,
        n_distinct_sizes=n_sizes, term_values=term_values, target=l_used,
        bootstrap_theta=full_samples if n_boot else None,
        scale_names=("a", "b", "e"), exponent_names=("alpha", "beta"), fixed_equal=s.fix_alpha_eq_beta,
    )
    if n_boot and (boot_status == 2).any():
        warns.append(f"{int((boot_status == 2).sum())} of {n_boot} bootstrap refits hit the iteration limit: "
                     "the intervals may be too narrow; check the residuals and the data")
    near = np.abs(end_f - best_f) <= 1e-9 * abs(best_f) + 1e-15
    diagnostics = Approach3Diagnostics(
        residuals=resid, fitted=np.exp(resid + log_l), kept_index=kept,
        dropped_index=np.setdiff1d(np.arange(l.size), kept),
        n_distinct_sizes=int(n_sizes), n_distinct_tokens=int(np.unique(d_used).size),
        residual_summary=residual_diagnostics(resid, {"n_params": n_used, "tokens": d_used, "flops": 6 * n_used * d_used}),
        warnings=warns,
        optimizer={
            "solver": "batched saddle-free Newton, analytic Hessian, Armijo line search",
            "n_starts": n_starts, "best_start": starts[best_i], "best_start_index": best_i,
            "n_converged": int((end_status <= 1).sum()), "n_max_iter": int((end_status == 2).sum()),
            "n_starts_at_best": int(near.sum()), "iterations_max": int(phase1.n_iter.max()),
            "iterations_mean": n_steps / n_starts, "polished": polished,
            "n_merged": 0 if triage is None else int(triage.merged.sum()),
            "n_pruned": int(lost.sum()), "n_second_phase": int(reps.size) if coarse is not None else 0,
            "theta": full, "theta_names": list(THETA_NAMES),
        },
        bootstrap={"n": n_boot, "n_max_iter": int((boot_status == 2).sum()) if n_boot else 0},
    )
    settings_dict = s.as_dict()
    settings_dict["weights"] = None if weights is None else as_1d("weights", weights)
    return FitResult(
        law="chinchilla", method="approach3", params=params, stderr=stderr, intervals=intervals,
        objective=best_f, n_points=int(l_used.size), settings=settings_dict, diagnostics=diagnostics,
        bootstrap_samples=boot_cols, derived=derived_point, optima=optima, param_names=PARAM_NAMES,
    )


def _polish(obj: ChinchillaObjective, theta, f_best, lo, hi):
    """Newton from the winner with no decrement test, until no step lowers f (the rounding floor);
    kept only if the objective is lower. (It was a scipy L-BFGS-B run at ftol = gtol = 1e-15: the
    same end to ~1e-15 relative, but importing scipy.optimize cost a CLI fit ~0.3 s.)"""
    rows = np.zeros(1, dtype=np.int64)
    if obj.weights.ndim != 1:
        return theta, f_best, False
    res = batched_newton(obj.fgh, obj.f, np.asarray(theta, np.float64)[None, :],
                         NewtonOptions(max_iter=50, rtol=0.0, atol=0.0), lo, hi)
    f_new = float(obj.f(res.theta, rows)[0])
    if np.isfinite(f_new) and f_new < f_best:
        return res.theta[0].copy(), f_new, True
    return theta, f_best, False
