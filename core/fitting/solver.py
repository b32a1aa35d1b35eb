"""The batched solver every fit shares: many small smooth problems minimised at once.

``batched_newton`` runs a damped (saddle-free) Newton method with exact Hessians, a per-start
Armijo line search and optional box bounds (projected Newton) over S starts as ONE vectorised
problem; ``huber`` is the robust loss of every fit (Huber 1964). The objectives live with their laws:
core/fitting/chinchilla.py (Approach 3) and core/fitting/generic.py (the other laws).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np


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
    status: np.ndarray  # (S,) 0 converged (decrement test), 1 stalled (no decrease possible), 2 hit max_iter,
    #                     3 retired by ``retire`` (merged into another start, or unable to beat the best minimum)

    @property
    def converged(self) -> np.ndarray:
        return self.status <= 1


FghFn = Callable[[np.ndarray, np.ndarray], tuple]  # (theta (k,P), rows (k,)) -> f (k,), g (k,P), H (k,P,P)
FFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (theta (k,P), rows (k,)) -> f (k,)
# (active rows (k,), theta (S,P), f (S,), status (S,)) -> (k,) bool: the active starts to stop now (status 3)
RetireFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


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
    retire: Optional[RetireFn] = None,
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
    or at ``max_iter`` (status 2). ``retire(active, theta, f, status)``, if given, is asked after
    every iteration which of the still active starts need not go on (status 3: theta and f stay where
    they stopped); core/fitting/triage.py merges starts that have met and stops those that cannot
    beat the best minimum found. ``on_iter(n_finished, S)`` is called after every iteration and
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
        if retire is not None and active.size:
            gone = retire(active, theta, f, status)
            status[active[gone]] = 3
            active = active[~gone]
        if on_iter is not None:
            on_iter(n_starts - active.size, n_starts)
    return BatchResult(theta=theta, objective=f, n_iter=n_iter, status=status)
