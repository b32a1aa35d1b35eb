"""Fitting scaling laws: Approach 3 of Hoffmann et al. 2022 as replicated by Besiroglu et al. 2024,
with bootstrap uncertainty, and the same machinery for the other laws of core/laws.py.

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

Public API (see each docstring):
- ``Approach3Settings``, ``fit_chinchilla(n_params, tokens, loss, settings, weights, progress)``
- ``fit_law(law, inputs, y, ...)`` for "chinchilla", "kaplan_n", "kaplan_d", "kaplan_c",
  "kaplan_nd", "power_law_offset", "routed"; ``LAWS`` lists them with their inputs and parameters.
- ``FitResult`` (``to_dict`` / ``from_dict`` / ``predict`` / ``chinchilla_params``)
- ``weights_by_run(run_ids)``, ``compute_optimal(params, budgets)``, ``predict(law, params, inputs)``
- ``batched_newton(...)`` the solver; ``chinchilla_objective`` and ``scipy_reference_fit`` (a loop of
  scipy L-BFGS-B, one call per start: the reference the tests and benchmarks/fit.py compare with).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from core import laws
from core.backtest import fit_warnings, residual_diagnostics
from core.errors import FitError
from core.progress import ProgressFn, report

THETA_NAMES = ("a", "b", "e", "alpha", "beta")  # Approach 3 optimiser space: A=e^a, B=e^b, E=e^e
PARAM_NAMES = ("E", "A", "B", "alpha", "beta")  # reported parameters, also bootstrap_samples columns


# ============================================================================================
# Huber loss (Huber 1964), as scipy.special.huber(delta, r)
# ============================================================================================
def huber(r, delta: float) -> np.ndarray:
    """Huber_δ(r) = r²/2 for |r| ≤ δ, δ(|r| − δ/2) otherwise."""
    r = np.asarray(r, dtype=np.float64)
    absr = np.abs(r)
    return np.where(absr <= delta, 0.5 * r * r, delta * (absr - 0.5 * delta))


# ============================================================================================
# The batched solver
# ============================================================================================
@dataclass(frozen=True)
class NewtonOptions:
    """Stopping and safety settings of ``batched_newton``."""

    max_iter: int = 400  # Newton steps per start; starts that reach a minimum need ~15-40
    rtol: float = 1e-13  # converged when the Newton decrement gᵀ|H|⁻¹g/2 ≤ rtol·|f|: f then exact to ~13 digits
    atol: float = 1e-300  # absolute floor for the same test (a perfect fit has f = 0; the fits set a data scale)
    max_step: float = 4.0  # cap on a step's largest coordinate: flat starts (a = 25, α = 0) move fast but safely
    eig_floor: float = 1e-14  # |eigenvalues| below floor·max|λ| are raised to it (keeps steps finite; the cap does
    #                           the rest). Larger floors make starts crawl on plateaus where g and λ are both tiny.
    neg_curvature: float = 1e-13  # follow a negative-curvature direction (to max_step) when it can lower f by this·|f|
    neg_significant: float = 1e-9  # negative curvature above this·max|λ| is real (not rounding): not yet converged
    armijo: float = 1e-4  # sufficient-decrease constant of the backtracking line search
    max_halvings: int = 40  # a start with no decrease after this many halvings (step 2^-40) is stalled
    min_decrease: float = 1e-15  # a step lowering f by less than this·|f| is rounding noise: stalled


@dataclass
class BatchResult:
    """What ``batched_newton`` returns, one row per start."""

    theta: np.ndarray  # (S, P) final parameters
    objective: np.ndarray  # (S,) final objective
    n_iter: np.ndarray  # (S,) Newton steps taken
    status: np.ndarray  # (S,) 0 converged (decrement test), 1 stalled (no decrease possible), 2 hit max_iter

    @property
    def converged(self) -> np.ndarray:
        return self.status <= 1


FghFn = Callable[[np.ndarray, np.ndarray], tuple]  # (theta (k,P), rows (k,)) -> f (k,), g (k,P), H (k,P,P)
FFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (theta (k,P), rows (k,)) -> f (k,)


def _batched_cholesky_solve(hess, g):
    """Solve H x = g for a batch of small SPD matrices with a Cholesky factorisation vectorised
    over the batch (one numpy operation per matrix entry, not one LAPACK call per matrix).

    Returns (x (k, P), ok (k,)): ok is False where H is not numerically positive definite (a pivot
    ≤ 1e-12 · max diag), and x is then meaningless.
    """
    k, n_par = g.shape
    lower = np.zeros_like(hess)
    scale = np.abs(np.einsum("kii->ki", hess)).max(axis=1)  # (k,)
    ok = np.ones(k, dtype=bool)
    for j in range(n_par):
        pivot = hess[:, j, j] - (lower[:, j, :j] ** 2).sum(axis=1)
        ok &= pivot > 1e-12 * scale
        root = np.sqrt(np.where(ok, pivot, 1.0))
        lower[:, j, j] = root
        for i in range(j + 1, n_par):
            lower[:, i, j] = (hess[:, i, j] - (lower[:, i, :j] * lower[:, j, :j]).sum(axis=1)) / root
    z = np.empty_like(g)
    for i in range(n_par):  # forward: L z = g
        z[:, i] = (g[:, i] - (lower[:, i, :i] * z[:, :i]).sum(axis=1)) / lower[:, i, i]
    x = np.empty_like(g)
    for i in reversed(range(n_par)):  # backward: Lᵀ x = z
        x[:, i] = (z[:, i] - (lower[:, i + 1:, i] * x[:, i + 1:]).sum(axis=1)) / lower[:, i, i]
    return x, ok


def _newton_direction(f, g, hess, options: NewtonOptions):
    """Saddle-free Newton direction for a batch (Dauphin et al. 2014, with eigenvalue floors).

    d = −V |Λ|⁻¹ Vᵀ g over directions of positive or negligible curvature; along a direction of
    useful negative curvature (λ < 0 and |λ|·max_step²/2 > neg_curvature·|f|) the step goes the
    full max_step downhill instead, so starts leave saddles and flat ridges at once. Positive-
    definite Hessians (most iterations) take the plain Newton step from a batched Cholesky solve;
    only the others pay for an eigen-decomposition.
    Returns d (k, P) capped to max_step, the decrement gᵀ|H|⁻¹g (k,), and whether H had significant
    negative curvature (k,).
    """
    newton, pd = _batched_cholesky_solve(hess, g)
    d = -newton
    decrement = np.einsum("kp,kp->k", g, newton)
    significant = np.zeros(f.shape, dtype=bool)
    rest = np.flatnonzero(~pd | ~np.isfinite(decrement) | (decrement < 0))
    if rest.size:
        lam, vec = np.linalg.eigh(hess[rest])  # (r, P), (r, P, P)
        absl = np.abs(lam)
        scale = absl.max(axis=1, keepdims=True)
        floor = np.maximum(options.eig_floor * scale, 1e-300)
        gv = np.einsum("kpq,kp->kq", vec, g[rest])  # (r, P) gradient in the eigenbasis
        coef = -gv / np.maximum(absl, floor)
        neg = (lam < 0) & (-lam * options.max_step**2 > 2.0 * options.neg_curvature * np.abs(f[rest])[:, None])
        coef = np.where(neg, np.where(gv > 0, -options.max_step, options.max_step), coef)
        decrement[rest] = np.where(neg, 0.0, gv * gv / np.maximum(absl, floor)).sum(axis=1)
        significant[rest] = (neg & (-lam > options.neg_significant * scale)).any(axis=1)
        d[rest] = np.einsum("kpq,kq->kp", vec, coef)
    big = np.abs(d).max(axis=1)
    d *= np.minimum(1.0, options.max_step / np.maximum(big, 1e-300))[:, None]
    return d, decrement, significant


def batched_newton(
    fgh: FghFn,
    f_only: FFn,
    theta0: np.ndarray,
    options: NewtonOptions = NewtonOptions(),
    lower: Optional[np.ndarray] = None,
    upper: Optional[np.ndarray] = None,
    on_iter: Optional[Callable[[int, int], None]] = None,
) -> BatchResult:
    """Minimise S independent smooth problems at once with a damped, projected Newton method.

    ``fgh(theta, rows)`` returns the objective (k,), gradient (k, P) and exact Hessian (k, P, P) of
    the problems numbered ``rows`` at ``theta`` (k, P); ``f_only`` the objective alone. Each
    iteration takes every active start's saddle-free Newton direction (``_newton_direction``),
    tries the full step for all starts in one call, backtracks (halving, Armijo's condition) only
    the starts that need it, and evaluates derivatives once per start where it lands. With bounds, variables on a bound whose gradient points outward are held
    and trial points are projected onto the box (Bertsekas' projected Newton). A start stops when
    its Newton decrement gᵀ|H|⁻¹g/2 ≤ rtol·|f| with no useful negative curvature left (status 0,
    converged), when no step of any length lowers f (status 1, stalled: f is at its rounding floor),
    or at ``max_iter`` (status 2). ``on_iter(n_finished, S)`` is called after every iteration and
    may raise ``Cancelled``.
    """
    theta = np.array(theta0, dtype=np.float64, copy=True)
    n_starts, n_par = theta.shape
    lo = None if lower is None else np.broadcast_to(np.asarray(lower, np.float64), (n_par,))
    hi = None if upper is None else np.broadcast_to(np.asarray(upper, np.float64), (n_par,))
    boxed = lo is not None or hi is not None
    lo_c = lo if lo is not None else np.full(n_par, -np.inf)
    hi_c = hi if hi is not None else np.full(n_par, np.inf)
    if boxed:
        theta = np.clip(theta, lo_c, hi_c)
    rows_all = np.arange(n_starts)
    f, g, hess = fgh(theta, rows_all)  # (S,), (S, P), (S, P, P)
    bad = ~np.isfinite(f)
    n_iter = np.zeros(n_starts, dtype=np.int64)
    status = np.full(n_starts, 2, dtype=np.int64)
    status[bad] = 1
    f = np.where(bad, np.inf, f)
    active = rows_all[~bad]
    eye = np.eye(n_par)

    for _ in range(options.max_iter):
        if active.size == 0:
            break
        th, fa, ga, ha = theta[active], f[active], g[active], hess[active]
        if boxed:
            held = ((th <= lo_c) & (ga > 0)) | ((th >= hi_c) & (ga < 0))  # (k, P)
            if held.any():
                ga = np.where(held, 0.0, ga)
                ha = np.where(~held[:, :, None] & ~held[:, None, :], ha, 0.0) + held[:, :, None] * eye
        d, decrement, negative = _newton_direction(fa, ga, ha, options)
        done = (~negative) & (decrement <= 2.0 * np.maximum(options.rtol * np.abs(fa), options.atol))

        # Full step for everyone (objective only: derivatives cost ~5 objectives), then backtrack
        # the starts that need it by halving (interpolated lengths were tried: they made more,
        # smaller steps), and take derivatives once, where each start lands.
        trial = th + d
        if boxed:
            trial = np.clip(trial, lo_c, hi_c)
        f_t = f_only(trial, active)
        slope = np.einsum("kp,kp->k", ga, trial - th)  # ≤ 0
        ok = np.isfinite(f_t) & (f_t <= fa + options.armijo * slope)
        landed = [(np.flatnonzero(ok), trial[ok])]
        searching = np.flatnonzero(~ok & ~done)  # a converged start needs no shorter step
        step = np.full(active.size, 0.5)
        for _h in range(options.max_halvings):
            if searching.size == 0:
                break
            cand = th[searching] + step[searching, None] * d[searching]
            if boxed:
                cand = np.clip(cand, lo_c, hi_c)
            fc = f_only(cand, active[searching])
            slope = np.einsum("kp,kp->k", ga[searching], cand - th[searching])
            good = np.isfinite(fc) & (fc <= fa[searching] + options.armijo * slope)
            if good.any():
                landed.append((searching[good], cand[good]))
            searching = searching[~good]
            step[searching] *= 0.5
        idx = np.concatenate([i for i, _ in landed])
        if idx.size:
            pts = np.concatenate([c for _, c in landed])
            rows = active[idx]
            f_l, g_l, h_l = fgh(pts, rows)
            theta[rows], f[rows], g[rows], hess[rows] = pts, f_l, g_l, h_l
        stalled = np.zeros(active.size, dtype=bool)
        stalled[searching] = True  # no step of any length lowered f: it sits at its rounding floor
        # A step that lowered f by less than rounding (≤ 1e-15·|f|) is no progress either: a start
        # that can only creep like this is at the floating-point floor of its objective.
        stalled |= (fa - f[active]) <= options.min_decrease * np.abs(fa)
        n_iter[active] += 1
        finished = done | stalled
        status[active[done]] = 0
        status[active[stalled & ~done]] = 1
        active = active[~finished]
        if on_iter is not None:
            on_iter(n_starts - active.size, n_starts)
    return BatchResult(theta=theta, objective=f, n_iter=n_iter, status=status)


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
        if not (s.min(axis=1) > 1e-290).all():
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
        iu = np.triu_indices(5, 1)
        H[:, iu[1], iu[0]] = H[:, iu[0], iu[1]]
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
# Results
# ============================================================================================
def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if math.isfinite(v) else None  # strict JSON has no NaN/inf
    return obj


@dataclass
class FitResult:
    """One fitted law, everything needed to store, show and reproduce it."""

    law: str  # key of LAWS, e.g. "chinchilla"
    method: str  # "approach3" for Chinchilla, "huber_log" for the other laws
    params: dict  # name -> value; Chinchilla: E, A, B, alpha, beta
    stderr: dict  # name -> bootstrap standard error (params and derived quantities); {} when B = 0
    intervals: dict  # name -> [low, high] 95% bootstrap percentile interval; {} when B = 0
    objective: float  # the minimised Σ w·Huber_δ over the points used
    n_points: int  # points used (after dropping)
    settings: dict  # everything that reproduces the fit: seed, delta, grid, n_bootstrap, drops, ...
    diagnostics: dict  # residuals, warnings (list of str), optimiser statistics, dropped indices
    bootstrap_samples: np.ndarray  # (B, P) refitted params, columns = param_names (E, A, B, alpha, beta)
    derived: dict = field(default_factory=dict)  # point values: a, b, N_opt@C, D_opt@C, tokens_per_param@C
    param_names: tuple = PARAM_NAMES  # column order of bootstrap_samples

    @property
    def warnings(self) -> list:
        return list(self.diagnostics.get("warnings", []))

    def chinchilla_params(self) -> laws.ChinchillaParams:
        if self.law != "chinchilla":
            raise FitError(f"this fit is a {self.law} law, not chinchilla: refit with law='chinchilla'")
        return laws.ChinchillaParams(**{k: float(self.params[k]) for k in PARAM_NAMES})

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The fitted law at ``inputs`` (same names as the fit's inputs, e.g. n_params, tokens)."""
        return predict(self.law, self.params, inputs)

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (non-finite floats become null, samples a list of lists)."""
        return _jsonable({
            "law": self.law, "method": self.method, "params": self.params, "stderr": self.stderr,
            "intervals": self.intervals, "objective": self.objective, "n_points": self.n_points,
            "settings": self.settings, "diagnostics": self.diagnostics,
            "bootstrap_samples": np.asarray(self.bootstrap_samples, np.float64).reshape(-1, len(self.param_names)),
            "derived": self.derived, "param_names": list(self.param_names),
        })

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: Mapping) -> "FitResult":
        names = tuple(d.get("param_names") or PARAM_NAMES)
        samples = np.array([[np.nan if v is None else v for v in row] for row in d.get("bootstrap_samples") or []],
                           dtype=np.float64).reshape(-1, len(names))
        nan = lambda v: np.nan if v is None else v  # noqa: E731
        return cls(
            law=d["law"], method=d["method"], params={k: nan(v) for k, v in d["params"].items()},
            stderr={k: nan(v) for k, v in (d.get("stderr") or {}).items()},
            intervals={k: [nan(v[0]), nan(v[1])] for k, v in (d.get("intervals") or {}).items()},
            objective=nan(d["objective"]), n_points=int(d["n_points"]), settings=dict(d.get("settings") or {}),
            diagnostics=dict(d.get("diagnostics") or {}), bootstrap_samples=samples,
            derived=dict(d.get("derived") or {}), param_names=names,
        )


def compute_optimal(params: Mapping[str, np.ndarray], budgets: Sequence[float]) -> dict:
    """Derived quantities of a Chinchilla law, element-wise over arrays of parameters.

    a = β/(α+β), b = α/(α+β) (Hoffmann et al. 2022 eq. (4)); at each budget C:
    N* = G (C/6)^a with G = (αA/(βB))^(1/(α+β)), D* = C/(6N*), tokens per parameter D*/N*.
    Keys: "a", "b", "N_opt@C", "D_opt@C", "tokens_per_param@C" with C formatted as ``f"{C:.3g}"``.
    """
    A = np.asarray(params["A"], np.float64)
    B = np.asarray(params["B"], np.float64)
    al = np.asarray(params["alpha"], np.float64)
    be = np.asarray(params["beta"], np.float64)
    with np.errstate(all="ignore"):
        ssum = al + be
        out = {"a": be / ssum, "b": al / ssum}
        g = (al * A / (be * B)) ** (1.0 / ssum)
        for c in budgets:
            n_opt = g * (float(c) / 6.0) ** (be / ssum)
            d_opt = float(c) / (6.0 * n_opt)
            key = f"{float(c):.3g}"
            out[f"N_opt@{key}"] = n_opt
            out[f"D_opt@{key}"] = d_opt
            out[f"tokens_per_param@{key}"] = d_opt / n_opt
    return out


def _summaries(samples: Mapping[str, np.ndarray]) -> tuple[dict, dict]:
    stderr, intervals = {}, {}
    for k, v in samples.items():
        v = np.asarray(v, np.float64)
        v = v[np.isfinite(v)]
        if v.size < 2:
            stderr[k] = float("nan")
            intervals[k] = [float("nan"), float("nan")]
            continue
        stderr[k] = float(np.std(v, ddof=1))
        lo, hi = np.percentile(v, [2.5, 97.5])
        intervals[k] = [float(lo), float(hi)]
    return stderr, intervals


# ============================================================================================
# Input checks and options
# ============================================================================================
def _as_1d(name: str, values) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise FitError(f"{name} must be numbers: convert the column to numeric values and retry")
    return arr


def _check_positive(name: str, arr: np.ndarray) -> None:
    if np.isnan(arr).any():
        raise FitError(f"{name} contains NaN in {int(np.isnan(arr).sum())} rows: drop or fill those runs before fitting")
    if not np.isfinite(arr).all():
        raise FitError(f"{name} contains infinite values: drop those runs before fitting")
    if (arr <= 0).any():
        raise FitError(f"{name} must be positive but {int((arr <= 0).sum())} values are ≤ 0: drop those runs before fitting")


def weights_by_run(run_ids) -> np.ndarray:
    """Per-point weights giving every run the same total weight (points of a long curve share it).

    Normalised so the weights sum to the number of points (the objective keeps its scale).
    """
    ids = np.asarray(run_ids)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    w = 1.0 / counts[inverse]
    return w * (w.size / w.sum())


def _select(arrays: dict, target: np.ndarray, weights, drop_highest: int, n_par: int):
    """Apply drop-k-highest and weights; returns (arrays, target, weights, kept index)."""
    n = target.size
    if weights is not None:
        weights = _as_1d("weights", weights)
        if weights.size != n:
            raise FitError(f"weights has {weights.size} values for {n} points: give one weight per point")
        if not np.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise FitError("weights must be finite, non-negative and not all zero: fix the weights column")
    drop_highest = int(drop_highest)
    if drop_highest < 0:
        raise FitError("drop_highest must be ≥ 0")
    if n - drop_highest < n_par:
        raise FitError(f"{n} points minus {drop_highest} dropped leaves fewer than the {n_par} parameters: "
                       "select more runs or drop fewer points")
    order = np.argsort(target, kind="stable")
    kept = np.sort(order[: n - drop_highest])
    arrays = {k: v[kept] for k, v in arrays.items()}
    target = target[kept]
    if weights is not None:
        weights = weights[kept]
    return arrays, target, weights, kept


# ============================================================================================
# Approach 3 (Chinchilla law)
# ============================================================================================
def _grid(*axes) -> np.ndarray:
    mesh = np.meshgrid(*[np.asarray(a, np.float64) for a in axes], indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


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
    polish: bool = True  # re-run scipy L-BFGS-B (tight tolerances) from the winner; kept only if lower
    coarse_points: int = 60  # coarse phase on ~this many points when there are ≥ 2× as many (0: off); ~2× faster

    def starts(self) -> np.ndarray:
        """The start grid in the optimiser's space: (S, 5) columns a, b, e, α, β (or (S, 4) with α = β)."""
        if self.fix_alpha_eq_beta:
            return _grid(self.a_grid, self.b_grid, self.e_grid, self.alpha_grid)
        return _grid(self.a_grid, self.b_grid, self.e_grid, self.alpha_grid, self.beta_grid)

    def as_dict(self) -> dict:
        return {
            "delta": self.delta, "grid": {"a": list(self.a_grid), "b": list(self.b_grid), "e": list(self.e_grid),
                                          "alpha": list(self.alpha_grid), "beta": list(self.beta_grid)},
            "n_starts": int(self.starts().shape[0]), "n_bootstrap": self.n_bootstrap, "seed": self.seed,
            "drop_highest": self.drop_highest, "fix_alpha_eq_beta": self.fix_alpha_eq_beta,
            "budgets": list(self.budgets), "bounds": None if self.bounds is None else [list(b) for b in self.bounds],
            "max_iter": self.max_iter, "rtol": self.rtol, "polish": self.polish, "coarse_points": self.coarse_points,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> "Approach3Settings":
        g = d.get("grid", {})
        kw = dict(delta=d.get("delta", 1e-3), n_bootstrap=d.get("n_bootstrap", 1000), seed=d.get("seed", 0),
                  drop_highest=d.get("drop_highest", 0), fix_alpha_eq_beta=d.get("fix_alpha_eq_beta", False),
                  max_iter=d.get("max_iter", 400), rtol=d.get("rtol", 1e-13), polish=d.get("polish", True),
                  coarse_points=d.get("coarse_points", 60))
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


def _progress_cb(progress, offset: int, total: int, message: str):
    if progress is None:
        return None
    return lambda done, _n: report(progress, offset + done, total, message)


COARSE_RTOL = 1e-8  # the coarse phase only needs to reach the basin; the full phase converges to rtol


def _coarse_subset(log_flops: np.ndarray, n_points: int) -> Optional[np.ndarray]:
    """Every k-th point in order of compute (k = n // n_points), or None when n < 2·n_points."""
    n = log_flops.size
    if n_points <= 0 or n < 2 * n_points:
        return None
    order = np.argsort(log_flops, kind="stable")
    return np.sort(order[:: n // n_points])


def fit_chinchilla(n_params, tokens, loss, settings: Optional[Approach3Settings] = None, *,
                   weights=None, progress: Optional[ProgressFn] = None) -> FitResult:
    """Fit L(N, D) = E + A/N^α + B/D^β by Approach 3 (see the module docstring) with bootstrap.

    ``n_params``, ``tokens``, ``loss``: 1-D arrays, one row per (final) run; ``weights`` optional
    per-point weights (e.g. ``weights_by_run``). ``progress(done, total, message)`` is called as
    starts and resamples finish; raising ``Cancelled`` from it stops the fit.
    Returns a ``FitResult`` (law "chinchilla", method "approach3"); raises ``FitError`` on bad input.
    """
    s = settings or Approach3Settings()
    n = _as_1d("n_params", n_params)
    d = _as_1d("tokens", tokens)
    l = _as_1d("loss", loss)
    if not (n.size == d.size == l.size):
        raise FitError(f"n_params, tokens and loss have {n.size}, {d.size}, {l.size} rows: give one of each per run")
    for name, arr in (("n_params", n), ("tokens", d), ("loss", l)):
        _check_positive(name, arr)
    if s.delta <= 0:
        raise FitError("delta must be positive (1e-3 is the published choice)")
    n_par = 4 if s.fix_alpha_eq_beta else 5
    arrays, l_used, w_used, kept = _select({"n": n, "d": d}, l, weights, s.drop_highest, n_par)
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
    first = starts
    phase1_iter = np.zeros(n_starts, dtype=np.int64)
    if coarse is not None:
        sub_w = None if w_used is None else w_used[coarse]
        sub_sum = float(coarse.size if sub_w is None else sub_w.sum())
        coarse_obj = ChinchillaObjective(log_n[coarse], log_d[coarse], log_l[coarse], s.delta, sub_w, tie)
        coarse_opts = NewtonOptions(max_iter=s.max_iter, rtol=COARSE_RTOL, atol=COARSE_RTOL * 0.5 * s.delta**2 * sub_sum)
        phase1 = batched_newton(coarse_obj.fgh, coarse_obj.f, starts, coarse_opts, lo, hi,
                                _progress_cb(progress, 0, total, "grid starts (coarse)"))
        first, phase1_iter = phase1.theta, phase1.n_iter
    obj = ChinchillaObjective(log_n, log_d, log_l, s.delta, w_used, tie)
    grid = batched_newton(obj.fgh, obj.f, first, opts, lo, hi,
                          _progress_cb(progress, (n_phases - 1) * n_starts, total, "grid starts"))
    grid.n_iter = grid.n_iter + phase1_iter
    finite = np.isfinite(grid.objective)
    if not finite.any():
        raise FitError("no start reached a finite objective: check the data (loss in nats, sizes in parameters)")
    best_i = int(np.nanargmin(np.where(finite, grid.objective, np.inf)))
    best = grid.theta[best_i].copy()
    best_f = float(grid.objective[best_i])
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
                              _progress_cb(progress, n_phases * n_starts, total, "bootstrap"))
        samples_theta, boot_status = boot.theta, boot.status
    report(progress, total, total, "done")

    full = best if tie is None else tie @ best
    full_samples = samples_theta if tie is None else samples_theta @ tie.T  # (B, 5)
    params = {k: float(v) for k, v in _theta_to_params(full).items()}
    sp = _theta_to_params(full_samples)
    boot_cols = np.stack([sp[k] for k in PARAM_NAMES], axis=1) if n_boot else np.empty((0, 5))
    derived_point = {k: float(v) for k, v in compute_optimal(params, s.budgets).items()}
    stderr, intervals = {}, {}
    if n_boot:
        sample_map = dict(sp)
        sample_map.update(compute_optimal(sp, s.budgets))
        stderr, intervals = _summaries(sample_map)

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
                     "raise max_iter or inspect the data")
    near = np.abs(grid.objective - best_f) <= 1e-9 * abs(best_f) + 1e-15
    diagnostics = {
        "residuals": resid, "fitted": np.exp(resid + log_l), "kept_index": kept,
        "dropped_index": np.setdiff1d(np.arange(l.size), kept),
        "n_distinct_sizes": int(n_sizes), "n_distinct_tokens": int(np.unique(d_used).size),
        "residual_summary": residual_diagnostics(resid, {"n_params": n_used, "tokens": d_used, "flops": 6 * n_used * d_used}),
        "warnings": warns,
        "optimizer": {
            "solver": "batched saddle-free Newton, analytic Hessian, Armijo line search",
            "n_starts": n_starts, "best_start": starts[best_i], "best_start_index": best_i,
            "n_converged": int((grid.status <= 1).sum()), "n_max_iter": int((grid.status == 2).sum()),
            "n_starts_at_best": int(near.sum()), "iterations_max": int(grid.n_iter.max()),
            "iterations_mean": float(grid.n_iter.mean()), "polished_by_scipy": polished,
            "theta": full, "theta_names": list(THETA_NAMES),
        },
        "bootstrap": {"n": n_boot, "n_max_iter": int((boot_status == 2).sum()) if n_boot else 0},
    }
    settings_dict = s.as_dict()
    settings_dict["weights"] = None if weights is None else _as_1d("weights", weights)
    return FitResult(
        law="chinchilla", method="approach3", params=params, stderr=stderr, intervals=intervals,
        objective=best_f, n_points=int(l_used.size), settings=settings_dict, diagnostics=diagnostics,
        bootstrap_samples=boot_cols, derived=derived_point, param_names=PARAM_NAMES,
    )


def _polish(obj: ChinchillaObjective, theta, f_best, lo, hi):
    """scipy L-BFGS-B from the winner at tight tolerances; keep it only if the objective is lower."""
    from scipy.optimize import minimize

    rows = np.zeros(1, dtype=np.int64)

    def fun(th):
        f, g, _ = obj.fgh(th[None, :], rows)
        return float(f[0]), g[0]

    bounds = None if lo is None else list(zip(np.where(np.isfinite(lo), lo, None), np.where(np.isfinite(hi), hi, None)))
    if obj.weights.ndim != 1:
        return theta, f_best, False
    res = minimize(fun, theta, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"ftol": 1e-15, "gtol": 1e-15, "maxiter": 2000, "maxls": 50})
    if np.isfinite(res.fun) and res.fun < f_best:
        return np.asarray(res.x, np.float64), float(res.fun), True
    return theta, f_best, False


# ============================================================================================
# Other laws: a generic Huber-in-log-space fit with the same batched solver
# ============================================================================================
@dataclass(frozen=True)
class LawSpec:
    """A law the generic fitter knows: inputs, reported parameters, and its residual in log space."""

    name: str
    inputs: tuple  # names of the input arrays, e.g. ("n_params",)
    param_names: tuple  # reported parameters (FitResult.params keys, bootstrap_samples columns)
    theta_names: tuple  # optimiser's parameters
    formula: str  # shown to users, with the paper
    # residual(theta (k,P), logs dict name->(n,), log_y (n,)) -> r (k,n) = log ŷ − log y, J (k,n,P)
    residual: Callable
    to_params: Callable  # theta (..., P) -> dict name -> (...) arrays
    starts: Callable  # (logs dict, log_y) -> (S, P) start grid


def _r_linear(column):
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


def _kaplan_single(name, column, scale_name, exp_name, paper):
    def to_params(theta):
        theta = np.asarray(theta, np.float64)
        k, al = theta[..., 0], theta[..., 1]
        with np.errstate(all="ignore"):
            return {scale_name: np.exp(k / al), exp_name: al}

    def starts(logs, log_y):
        return _grid([float(np.mean(log_y)) + 1.0, float(np.mean(log_y)) + 3.0], [0.01, 0.05, 0.1, 0.3])

    return LawSpec(name, (column,), (scale_name, exp_name), ("k", exp_name),
                   f"L = ({scale_name}/x)^{exp_name} — {paper}", _r_linear(column), to_params, starts)


def _r_kaplan_nd(theta, logs, log_y):
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


def _r_power_offset(theta, logs, log_y):
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


def _power_offset_starts(logs, log_y):
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


def _log_e_hat(n_experts, s, m):
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


def _r_routed(theta, logs, log_y):
    ln, ne = logs["n_params"], logs["n_experts_raw"]
    a, b, c, d, s, m = (theta[:, j : j + 1] for j in range(6))
    le, dle_ds, dle_dm = _log_e_hat(ne, s, m)  # (k, n)
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


def _routed_to_params(theta):
    theta = np.asarray(theta, np.float64)
    e_start = np.exp(theta[..., 4])
    return {"a": theta[..., 0], "b": theta[..., 1], "c": theta[..., 2], "d": theta[..., 3],
            "e_start": e_start, "e_max": e_start + np.exp(theta[..., 5])}


def _routed_starts(logs, log_y):
    """For each (E_start, E_max) on a small grid, solve the linear part (a, b, c, d) by least squares."""
    ln, ne = logs["n_params"], logs["n_experts_raw"]
    rows = []
    for e_start in (1.1, 1.5, 2.0, 4.0):
        for e_extra in (10.0, 100.0, 1000.0):
            s, m = math.log(e_start), math.log(e_extra)
            le = _log_e_hat(ne, np.array(s), np.array(m))[0]
            X = np.stack([ln, le, ln * le, np.ones_like(ln)], axis=1)
            coef = np.linalg.lstsq(X, log_y, rcond=None)[0]
            rows.append((*coef, s, m))
    return np.array(rows)


LAWS: dict = {
    "kaplan_n": _kaplan_single("kaplan_n", "n_params", "N_c", "alpha_N", "Kaplan et al. 2020 eq. (1.1), N non-embedding"),
    "kaplan_d": _kaplan_single("kaplan_d", "tokens", "D_c", "alpha_D", "Kaplan et al. 2020 eq. (1.2)"),
    "kaplan_c": _kaplan_single("kaplan_c", "flops", "C_c", "alpha_C", "Kaplan et al. 2020 eq. (1.3), C in FLOPs"),
    "kaplan_nd": LawSpec(
        "kaplan_nd", ("n_params", "tokens"), ("N_c", "alpha_N", "D_c", "alpha_D"), ("log_N_c", "alpha_N", "log_D_c", "alpha_D"),
        "L = [(N_c/N)^(alpha_N/alpha_D) + D_c/D]^alpha_D — Kaplan et al. 2020 eq. (1.5), N non-embedding",
        _r_kaplan_nd,
        lambda th: {"N_c": np.exp(np.asarray(th)[..., 0]), "alpha_N": np.asarray(th)[..., 1],
                    "D_c": np.exp(np.asarray(th)[..., 2]), "alpha_D": np.asarray(th)[..., 3]},
        lambda logs, log_y: _grid([25.0, 30.0, 35.0], [0.05, 0.1, 0.2], [25.0, 30.0, 35.0], [0.05, 0.1, 0.2]),
    ),
    "power_law_offset": LawSpec(
        "power_law_offset", ("x",), ("E", "A", "alpha"), ("e", "a", "alpha"),
        "y = E + A·x^(−alpha) — Hestness et al. 2017 (y > 0 and decreasing in x)",
        _r_power_offset,
        lambda th: {"E": np.exp(np.asarray(th)[..., 0]), "A": np.exp(np.asarray(th)[..., 1]), "alpha": np.asarray(th)[..., 2]},
        _power_offset_starts,
    ),
    "routed": LawSpec(
        "routed", ("n_params", "n_experts"), ("a", "b", "c", "d", "e_start", "e_max"), ("a", "b", "c", "d", "log_e_start", "log_e_extra"),
        "log L = a log N + b log Ê + c log N log Ê + d, Ê saturating in E — Clark et al. 2022",
        _r_routed, _routed_to_params, _routed_starts,
    ),
}
LAW_NAMES = ("chinchilla",) + tuple(LAWS)


class _GenericObjective:
    """Σ w Huber_δ(r) for a LawSpec residual; Hessian = Σ wψ' J Jᵀ + Σ wψ ∇²r (∇²r by central differences of J)."""

    def __init__(self, spec: LawSpec, logs, log_y, delta, weights):
        self.spec, self.logs, self.log_y, self.delta = spec, logs, log_y, float(delta)
        self.weights = np.ones(log_y.size) if weights is None else np.asarray(weights, np.float64)

    def _w(self, rows):
        return self.weights if self.weights.ndim == 1 else self.weights[rows]

    def f(self, theta, rows):
        r, _ = self.spec.residual(theta, self.logs, self.log_y)
        out = (self._w(rows) * huber(r, self.delta)).sum(axis=1)
        return np.where(np.isfinite(out), out, np.inf)

    def fgh(self, theta, rows):
        r, jac = self.spec.residual(theta, self.logs, self.log_y)  # (k, n), (k, n, P)
        w = self._w(rows)
        w = np.broadcast_to(w, r.shape)
        d = self.delta
        absr = np.abs(r)
        inside = absr < d
        f = (w * np.where(inside, 0.5 * r * r, d * (absr - 0.5 * d))).sum(axis=1)
        c = w * np.clip(r, -d, d)  # (k, n)
        g = np.einsum("kn,knp->kp", c, jac)
        H = np.einsum("kn,knp,knq->kpq", w * inside, jac, jac)
        n_par = theta.shape[1]
        for p in range(n_par):  # second-order term Σ c ∇²r, column by column
            h = 1e-6 * np.maximum(1.0, np.abs(theta[:, p]))
            tp, tm = theta.copy(), theta.copy()
            tp[:, p] += h
            tm[:, p] -= h
            jp = self.spec.residual(tp, self.logs, self.log_y)[1]
            jm = self.spec.residual(tm, self.logs, self.log_y)[1]
            H[:, :, p] += np.einsum("kn,knq->kq", c, (jp - jm) / (2 * h)[:, None, None])
        H = 0.5 * (H + np.swapaxes(H, 1, 2))
        bad = ~np.isfinite(f)
        if bad.any():
            f = np.where(bad, np.inf, f)
            g = np.where(bad[:, None], 0.0, g)
            H = np.where(bad[:, None, None], np.eye(n_par), H)
        return f, g, H


def fit_law(law: str, inputs: Mapping[str, np.ndarray], y, *, weights=None, drop_highest: Optional[int] = None,
            n_bootstrap: Optional[int] = None, seed: Optional[int] = None, delta: Optional[float] = None,
            starts: Optional[np.ndarray] = None, settings: Optional[Approach3Settings] = None,
            progress: Optional[ProgressFn] = None) -> FitResult:
    """Fit any law of ``LAW_NAMES`` by Huber_δ loss on log y, multi-start, batched, with bootstrap.

    ``inputs`` maps the law's input names (``LAWS[law].inputs``; Chinchilla: n_params, tokens) to
    1-D arrays; ``y`` is the loss (or a positive metric that decreases towards E, for
    power_law_offset). Keywords left as None take their defaults: drop_highest 0, n_bootstrap 1000,
    seed 0, delta 1e-3 — for "chinchilla" the values of ``settings`` (then ``fit_chinchilla`` runs).
    ``starts`` optionally replaces the default start grid, in the law's ``theta_names`` space.
    Returns a ``FitResult`` (method "huber_log", or "approach3" for chinchilla); raises ``FitError``.
    """
    if law == "chinchilla":
        s = settings or Approach3Settings()
        given = {"n_bootstrap": n_bootstrap, "seed": seed, "delta": delta, "drop_highest": drop_highest}
        s = Approach3Settings(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                                 **{k: v for k, v in given.items() if v is not None}})
        _need(inputs, ("n_params", "tokens"), law)
        return fit_chinchilla(inputs["n_params"], inputs["tokens"], y, s, weights=weights, progress=progress)
    drop_highest = 0 if drop_highest is None else int(drop_highest)
    n_bootstrap = 1000 if n_bootstrap is None else int(n_bootstrap)
    seed = 0 if seed is None else int(seed)
    delta = 1e-3 if delta is None else float(delta)
    if delta <= 0 or n_bootstrap < 0:
        raise FitError("delta must be positive and n_bootstrap ≥ 0")
    if law not in LAWS:
        raise FitError(f"unknown law {law!r}: choose one of {', '.join(LAW_NAMES)}")
    spec = LAWS[law]
    _need(inputs, spec.inputs, law)
    target = _as_1d("y", y)
    arrays = {k: _as_1d(k, inputs[k]) for k in spec.inputs}
    for k, v in arrays.items():
        if v.size != target.size:
            raise FitError(f"{k} has {v.size} rows but y has {target.size}: give one value per point")
        _check_positive(k, v)
    _check_positive("y", target)
    n_par = len(spec.theta_names)
    n_total = target.size
    arrays, target, w_used, kept = _select(arrays, target, weights, drop_highest, n_par)
    first = spec.inputs[0]
    n_distinct = np.unique(arrays[first]).size
    if n_distinct < 2:
        raise FitError(f"all points have the same {first}: the law needs several distinct values")
    if target.size < n_par:
        raise FitError(f"{target.size} points for {n_par} parameters: select more runs")
    if law == "routed" and np.unique(arrays["n_experts"]).size < 3:
        raise FitError("the routed law needs at least 3 distinct expert counts: add runs with other counts")
    logs = {k: np.log(v) for k, v in arrays.items()}
    if law == "routed":
        logs["n_experts_raw"] = arrays["n_experts"]
    log_y = np.log(target)

    weight_sum = float(target.size if w_used is None else w_used.sum())
    opts = NewtonOptions(atol=NewtonOptions.rtol * 0.5 * delta**2 * weight_sum)  # see fit_chinchilla
    theta0 = spec.starts(logs, log_y) if starts is None else np.atleast_2d(np.asarray(starts, np.float64))
    n_starts = theta0.shape[0]
    total = n_starts + max(0, int(n_bootstrap))
    obj = _GenericObjective(spec, logs, log_y, delta, w_used)
    res = batched_newton(obj.fgh, obj.f, theta0, opts, on_iter=_progress_cb(progress, 0, total, "starts"))
    ok = np.isfinite(res.objective)
    if not ok.any():
        raise FitError(f"no start reached a finite objective for {law}: check units and that y decreases with the inputs")
    best_i = int(np.argmin(np.where(ok, res.objective, np.inf)))
    best, best_f = res.theta[best_i], float(res.objective[best_i])

    samples = np.empty((0, n_par))
    boot_status = np.empty(0, dtype=np.int64)
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        m = target.size
        counts = rng.multinomial(m, np.full(m, 1.0 / m), size=int(n_bootstrap)).astype(np.float64)
        wb = counts if w_used is None else counts * w_used
        bobj = _GenericObjective(spec, logs, log_y, delta, wb)
        boot = batched_newton(bobj.fgh, bobj.f, np.repeat(best[None], int(n_bootstrap), axis=0), opts,
                              on_iter=_progress_cb(progress, n_starts, total, "bootstrap"))
        samples, boot_status = boot.theta, boot.status
    report(progress, total, total, "done")

    params = {k: float(v) for k, v in spec.to_params(best).items()}
    stderr, intervals, boot_cols = {}, {}, np.empty((0, len(spec.param_names)))
    if n_bootstrap > 0:
        sp = spec.to_params(samples)
        boot_cols = np.stack([sp[k] for k in spec.param_names], axis=1)
        stderr, intervals = _summaries(sp)
    r_best = spec.residual(best[None], logs, log_y)[0][0]
    covariates = {k: arrays[k] for k in spec.inputs}
    warns = fit_warnings(
        theta=best, theta_names=spec.theta_names, grid_low=theta0.min(axis=0), grid_high=theta0.max(axis=0),
        lower=None, upper=None, n_distinct_sizes=n_distinct, term_values={}, target=target,
        bootstrap_theta=samples if n_bootstrap > 0 else None, scale_names=(), exponent_names=(), fixed_equal=False,
        check_grid=starts is None and law in ("power_law_offset", "kaplan_nd"),
    )
    if n_bootstrap > 0 and (boot_status == 2).any():
        warns.append(f"{int((boot_status == 2).sum())} of {n_bootstrap} bootstrap refits hit the iteration limit")
    diagnostics = {
        "residuals": r_best, "fitted": np.exp(r_best + log_y), "kept_index": kept,
        "dropped_index": np.setdiff1d(np.arange(n_total), kept),
        "residual_summary": residual_diagnostics(r_best, covariates), "warnings": warns,
        "optimizer": {"solver": "batched saddle-free Newton", "n_starts": n_starts, "best_start": theta0[best_i],
                      "n_converged": int((res.status <= 1).sum()), "theta": best, "theta_names": list(spec.theta_names)},
        "bootstrap": {"n": int(n_bootstrap), "n_max_iter": int((boot_status == 2).sum())},
        "formula": spec.formula,
    }
    settings_dict = {"delta": delta, "n_bootstrap": int(n_bootstrap), "seed": seed, "drop_highest": drop_highest,
                     "starts": theta0, "inputs": list(spec.inputs),
                     "weights": None if weights is None else _as_1d("weights", weights)}
    return FitResult(law=law, method="huber_log", params=params, stderr=stderr, intervals=intervals,
                     objective=best_f, n_points=int(target.size), settings=settings_dict, diagnostics=diagnostics,
                     bootstrap_samples=boot_cols, derived={}, param_names=spec.param_names)


def _need(inputs: Mapping, names: Sequence[str], law: str) -> None:
    missing = [k for k in names if k not in inputs]
    if missing:
        raise FitError(f"the {law} law needs inputs {', '.join(names)}; missing {', '.join(missing)}")


def predict(law: str, params: Mapping[str, float], inputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Evaluate a fitted law (params as in FitResult.params) at ``inputs`` (the law's input names)."""
    if law == "chinchilla":
        _need(inputs, ("n_params", "tokens"), law)
        return laws.chinchilla_loss(inputs["n_params"], inputs["tokens"],
                                    laws.ChinchillaParams(**{k: float(params[k]) for k in PARAM_NAMES}))
    if law not in LAWS:
        raise FitError(f"unknown law {law!r}: choose one of {', '.join(LAW_NAMES)}")
    _need(inputs, LAWS[law].inputs, law)
    p = {k: float(v) for k, v in params.items()}
    if law == "kaplan_n":
        return (p["N_c"] / np.asarray(inputs["n_params"], np.float64)) ** p["alpha_N"]
    if law == "kaplan_d":
        return (p["D_c"] / np.asarray(inputs["tokens"], np.float64)) ** p["alpha_D"]
    if law == "kaplan_c":
        return (p["C_c"] / np.asarray(inputs["flops"], np.float64)) ** p["alpha_C"]
    if law == "kaplan_nd":
        kp = laws.KaplanParams(N_c=p["N_c"], alpha_N=p["alpha_N"], D_c=p["D_c"], alpha_D=p["alpha_D"])
        return laws.kaplan_loss_nd(inputs["n_params"], inputs["tokens"], kp)
    if law == "power_law_offset":
        return laws.power_law_offset(inputs["x"], p["E"], p["A"], p["alpha"])
    return laws.routed_loss(inputs["n_params"], inputs["n_experts"], laws.RoutedParams(**p))
