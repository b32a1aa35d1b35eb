"""The numerical iso-FLOP search: minimise a law's loss along C = 6·N·D when no closed form exists.

Used by the law registry (core/registry.py) for every law without a closed-form optimum (Kaplan's
joint L(N, D), Muennighoff's data-constrained law, a routed MoE law on top of Chinchilla) and by
core/inference_aware.py. A log-spaced grid over D/N brackets the minimum, Brent's method refines it,
and a 3-point Newton step polishes it to ~1e-8 relative (a comparison-only search stalls near 1e-7
because the loss is flat at its minimum). Errors are :class:`core.errors.PlanError`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from core.errors import PlanError
from core.laws import FLOPS_PER_PARAM_TOKEN

LossFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # loss(n_params, tokens), broadcasting


@dataclass(frozen=True)
class SearchConfig:
    """How the numerical iso-FLOP search looks for the minimum."""

    tokens_per_param_min: float = 1e-4  # search edge: far below any model trained (GPT-3 ≈ 1.7)
    tokens_per_param_max: float = 1e7  # search edge: far above Llama-3 8B's ≈ 1900
    grid_points: int = 89  # ≈ 8 points per decade of D/N: enough to bracket one smooth minimum
    brent_xatol: float = 1e-7  # Brent stops here (log N); the Newton polish does the rest
    polish_step: float = 1e-3  # log-N step of the Newton polish: float noise in the loss (~1e-16)
    # then moves the answer < 1e-10 and the finite-difference bias stays < 1e-7


DEFAULT_SEARCH = SearchConfig()


def minimise_1d(
    objective: Callable[[np.ndarray], np.ndarray],
    lo: float,
    hi: float,
    search: SearchConfig = DEFAULT_SEARCH,
    edge_message: str = "",
) -> float:
    """The x in (lo, hi) minimising a smooth, vectorised ``objective(x_array) -> values``.

    Grid → bracket → Brent (scipy, bounded) → two Newton steps from central differences. Raises
    PlanError when the grid's minimum sits on an edge (no interior optimum) or nothing is finite.
    """
    grid = np.linspace(lo, hi, search.grid_points)
    with np.errstate(all="ignore"):
        values = np.asarray(objective(grid), dtype=np.float64)
    values = np.where(np.isfinite(values), values, np.inf)
    i = int(np.argmin(values))
    if not np.isfinite(values[i]):
        raise PlanError(
            "The law gives no finite loss anywhere along this budget's line; check the law's parameters."
        )
    if i == 0 or i == len(grid) - 1:
        raise PlanError(
            edge_message or "The loss has no interior minimum in the search range; check the law."
        )
    centre, left, right = grid[i], grid[i - 1] - grid[i], grid[i + 1] - grid[i]
    # scipy on first use only: the law registry (and through it db.store's migration) imports this
    # module, and `cli.py runs` must start without scipy.
    from scipy.optimize import minimize_scalar

    # Search in u = x − centre: Brent's relative tolerance then acts on |u| ≪ 1, not on |x| ≈ 25.
    def scalar(u: float) -> float:
        with np.errstate(all="ignore"):
            v = float(np.asarray(objective(np.array([centre + u])))[0])
        return v if math.isfinite(v) else math.inf

    u = minimize_scalar(
        scalar, bounds=(left, right), method="bounded", options={"xatol": search.brent_xatol}
    ).x
    h = search.polish_step
    for _ in range(2):  # Newton on central differences: x ← x − f'/f''
        with np.errstate(all="ignore"):
            f_minus, f_0, f_plus = np.asarray(
                objective(centre + u + np.array([-h, 0.0, h])), dtype=np.float64
            )
        curvature = (f_plus - 2.0 * f_0 + f_minus) / (h * h)
        slope = (f_plus - f_minus) / (2.0 * h)
        if not (math.isfinite(curvature) and curvature > 0 and math.isfinite(slope)):
            break
        step = -slope / curvature
        # Brent is already within ~1e-7, so a step larger than h is noise, not progress.
        if abs(step) > h or not left <= u + step <= right:
            break
        # Keep the step only if the loss did not rise beyond float noise: where the curvature jumps
        # (Muennighoff's min(N_opt(U_D), N) switch) central differences point slightly off the minimum.
        with np.errstate(all="ignore"):
            f_new = float(np.asarray(objective(np.array([centre + u + step])))[0])
        if not f_new <= f_0 + 16.0 * np.finfo(np.float64).eps * abs(f_0):
            break
        u += step
    return float(centre + u)


def iso_flop_argmin(flops: float, loss_fn: LossFn, search: SearchConfig = DEFAULT_SEARCH) -> tuple[float, float]:
    """(N*, D*) minimising ``loss_fn(N, C/(6N))`` over N: the numerical counterpart of Hoffmann eq. (4).

    The search spans D/N ∈ [search.tokens_per_param_min, search.tokens_per_param_max] in log N;
    ``flops`` must already be a checked, positive budget.
    """
    c = float(flops)
    c6 = c / FLOPS_PER_PARAM_TOKEN
    # N = sqrt(C / (6·r)) for tokens-per-parameter r: large r ↔ small N.
    lo = 0.5 * (math.log(c6) - math.log(search.tokens_per_param_max))
    hi = 0.5 * (math.log(c6) - math.log(search.tokens_per_param_min))

    def along_iso_flop(log_n: np.ndarray) -> np.ndarray:
        n = np.exp(log_n)
        return loss_fn(n, c6 / n)

    edge = (
        f"Along the {c:.3g}-FLOP line the loss keeps falling towards the edge of the search "
        f"(D/N from {search.tokens_per_param_min:g} to {search.tokens_per_param_max:g}); "
        "the law has no compute-optimal size there. Check the law's parameters."
    )
    n = math.exp(minimise_1d(along_iso_flop, lo, hi, search, edge))
    return n, c6 / n
