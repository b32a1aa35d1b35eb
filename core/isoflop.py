"""Compute-optimal scaling from runs: Approaches 1 and 2 of Hoffmann et al. 2022 (§3.1, §3.2).

- Approach 1 (training curves): at each FLOP level C, compare every run whose curve reaches C and
  take the one with the lowest loss there; its N and D are N_opt(C), D_opt(C). Power laws
  N_opt ∝ C^a and D_opt ∝ C^b are then fitted by least squares in log-log space.
- Approach 2 (IsoFLOP profiles): runs grouped by FLOP budget; in each budget a parabola
  L = c2·(ln N)² + c1·ln N + c0 is fitted, its vertex ln N* = −c1/(2 c2) gives N_opt(C), and
  D_opt = C/(6 N_opt); the same power laws follow.

Inputs are plain arrays or a DataFrame with columns ``n_params``, ``tokens``, ``flops``, ``loss``
and (Approach 1) ``run``; a missing ``flops`` is 6·N·D, a missing ``tokens`` is C/(6N). Results are
dataclasses with everything a page needs to plot the bins, parabolas and minima (``to_dict()``
gives JSON). Bad input raises ``FitError``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from core.errors import FitError
from core.jsonable import jsonable


# ============================================================================================
# Shared pieces
# ============================================================================================
@dataclass
class PowerLaw:
    """y = coefficient · C^exponent, fitted by ordinary least squares on (ln C, ln y)."""

    exponent: float
    coefficient: float
    r2: float  # coefficient of determination in log space
    n_points: int
    stderr: float = float("nan")  # standard error of the exponent (OLS); nan with 2 points

    def __call__(self, flops) -> np.ndarray:
        return self.coefficient * np.asarray(flops, np.float64) ** self.exponent

    def to_dict(self) -> dict:
        return {"exponent": self.exponent, "coefficient": self.coefficient, "r2": self.r2,
                "n_points": self.n_points, "stderr": self.stderr}


def fit_power_law(flops, values) -> PowerLaw:
    """OLS of ln(values) on ln(flops): the exponent and prefactor of values ∝ flops^exponent."""
    x = np.log(np.asarray(flops, np.float64))
    y = np.log(np.asarray(values, np.float64))
    if x.size < 2 or np.ptp(x) == 0:
        raise FitError("a power law needs at least 2 distinct FLOP budgets: add runs at more compute levels")
    slope, intercept = np.polyfit(x, y, 1)
    pred = slope * x + intercept
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    se = float("nan")
    if x.size > 2:
        se = float(np.sqrt(ss_res / (x.size - 2) / ((x - x.mean()) ** 2).sum()))
    return PowerLaw(exponent=float(slope), coefficient=float(np.exp(intercept)), r2=float(r2), n_points=int(x.size),
                    stderr=se)


def _column(data, name: str, given):
    if given is not None:
        return given
    if data is None:
        return None
    try:
        if name in data:
            return data[name]
    except TypeError:
        pass
    return None


def _inputs(data, n_params, tokens, flops, loss, flops_per_param_token: float):
    n = _column(data, "n_params", n_params)
    d = _column(data, "tokens", tokens)
    c = _column(data, "flops", flops)
    y = _column(data, "loss", loss)
    if n is None or y is None:
        raise FitError("n_params and loss are required: pass arrays or a table with those columns")
    n = np.asarray(n, np.float64).reshape(-1)
    y = np.asarray(y, np.float64).reshape(-1)
    if d is None and c is None:
        raise FitError("give tokens or flops for every point (the other is derived with C = 6·N·D)")
    d = None if d is None else np.asarray(d, np.float64).reshape(-1)
    c = None if c is None else np.asarray(c, np.float64).reshape(-1)
    if c is None:
        c = flops_per_param_token * n * d
    if d is None:
        d = c / (flops_per_param_token * n)
    for name, arr in (("n_params", n), ("tokens", d), ("flops", c), ("loss", y)):
        if arr.size != y.size:
            raise FitError(f"{name} has {arr.size} rows but loss has {y.size}: give one value per point")
        if not np.isfinite(arr).all():
            raise FitError(f"{name} contains NaN or infinite values: drop those rows first")
        if (arr <= 0).any():
            raise FitError(f"{name} must be positive: drop the rows with values ≤ 0")
    if y.size == 0:
        raise FitError("no points: select some runs first")
    return n, d, c, y


# ============================================================================================
# Approach 1: minimum over training curves at fixed FLOPs
# ============================================================================================
class _ExponentsMixin:
    """a and b of N_opt ∝ C^a, D_opt ∝ C^b (Hoffmann et al. 2022 eq. 4) from the fitted power laws."""

    @property
    def a(self) -> float:
        return self.n_params_law.exponent

    @property
    def b(self) -> float:
        return self.tokens_law.exponent


@dataclass
class Approach1Result(_ExponentsMixin):
    """Approach 1 of Hoffmann et al. 2022: lowest-loss run at each FLOP level (the envelope)."""

    levels: np.ndarray  # (K,) FLOP levels where the envelope was read
    bin_edges: np.ndarray  # (K+1,) log-midpoints between levels: a final-only run counts in its bin
    n_opt: np.ndarray  # (K,) parameters of the winning run at each level
    tokens_opt: np.ndarray  # (K,) tokens of the winning run at that level (interpolated along its curve)
    loss_min: np.ndarray  # (K,) the envelope: lowest loss at each level
    run_opt: list  # (K,) id of the winning run
    n_candidates: np.ndarray  # (K,) runs compared at each level
    n_params_law: PowerLaw  # N_opt ∝ C^a
    tokens_law: PowerLaw  # D_opt ∝ C^b
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return jsonable({
            "method": "approach1", "levels": self.levels, "bin_edges": self.bin_edges, "n_opt": self.n_opt,
            "tokens_opt": self.tokens_opt, "loss_min": self.loss_min, "run_opt": [str(r) for r in self.run_opt],
            "n_candidates": self.n_candidates, "a": self.a, "b": self.b,
            "n_params_law": self.n_params_law.to_dict(), "tokens_law": self.tokens_law.to_dict(),
            "warnings": self.warnings,
        })


def approach1(data=None, *, n_params=None, tokens=None, flops=None, loss=None, run=None, n_levels: int = 30,
              levels: Optional[Sequence[float]] = None, min_candidates: int = 2,
              flops_per_param_token: float = 6.0) -> Approach1Result:
    """Approach 1 from training curves (many points per run) or final points (one per run).

    Every run is a curve of (flops, loss) points. At each level C (``n_levels`` log-spaced levels
    over the range where at least ``min_candidates`` runs are available, or the given ``levels``),
    a run whose curve spans C contributes its loss interpolated linearly in ln C; a run with a
    single point contributes when that point falls in C's bin (``bin_edges``). The lowest loss wins.
    Levels with fewer than ``min_candidates`` runs are skipped.
    """
    n, d, c, y = _inputs(data, n_params, tokens, flops, loss, flops_per_param_token)
    r = _column(data, "run", run)
    if r is None:
        r = np.arange(y.size)  # no run column: every point is its own run (final points)
    r = np.asarray(r).reshape(-1)
    if r.size != y.size:
        raise FitError(f"run has {r.size} rows but loss has {y.size}: give one run id per point")
    run_ids, inverse = np.unique(r, return_inverse=True)
    curves = []
    for j, rid in enumerate(run_ids):
        idx = np.flatnonzero(inverse == j)
        order = idx[np.argsort(c[idx], kind="stable")]
        sizes = np.unique(n[order])
        if sizes.size > 1:
            raise FitError(f"run {rid!r} has several model sizes: one run must be one model")
        curves.append((rid, float(sizes[0]), np.log(c[order]), y[order], d[order]))

    log_c_all = np.log(c)
    if levels is None:
        if n_levels < 2:
            raise FitError("n_levels must be at least 2")
        fine = np.linspace(log_c_all.min(), log_c_all.max(), 400)
        half = 0.5 * (fine[1] - fine[0]) * (400 / max(n_levels, 2))
        cover = np.zeros(fine.size, dtype=int)
        for _, _, lc, _, _ in curves:
            if lc.size > 1:
                cover += (fine >= lc[0]) & (fine <= lc[-1])
            else:
                cover += np.abs(fine - lc[0]) <= half
        ok = np.flatnonzero(cover >= min_candidates)
        if ok.size == 0:
            raise FitError(f"no FLOP level is reached by {min_candidates} runs: add runs or lower min_candidates")
        log_levels = np.linspace(fine[ok[0]], fine[ok[-1]], n_levels)
    else:
        log_levels = np.log(np.asarray(levels, np.float64).reshape(-1))
        if log_levels.size < 2 or not np.isfinite(log_levels).all():
            raise FitError("give at least 2 positive FLOP levels")
        log_levels = np.sort(log_levels)
    mids = 0.5 * (log_levels[1:] + log_levels[:-1])
    first = log_levels[0] - (mids[0] - log_levels[0]) if mids.size else log_levels[0] - 0.5
    last = log_levels[-1] + (log_levels[-1] - mids[-1]) if mids.size else log_levels[-1] + 0.5
    edges = np.concatenate([[first], mids, [last]])

    keep_levels, n_opt, d_opt, l_min, r_opt, n_cand = [], [], [], [], [], []
    for k, lvl in enumerate(log_levels):
        best = None
        count = 0
        for rid, size, lc, ly, ld in curves:
            if lc.size > 1:
                if lvl < lc[0] or lvl > lc[-1]:
                    continue
                loss_here = float(np.interp(lvl, lc, ly))
                tokens_here = float(np.exp(np.interp(lvl, lc, np.log(ld))))
            else:
                if not (edges[k] <= lc[0] < edges[k + 1]):
                    continue
                loss_here, tokens_here = float(ly[0]), float(ld[0])
            count += 1
            if best is None or loss_here < best[0]:
                best = (loss_here, size, tokens_here, rid)
        if best is None or count < min_candidates:
            continue
        keep_levels.append(np.exp(lvl))
        l_min.append(best[0])
        n_opt.append(best[1])
        d_opt.append(best[2])
        r_opt.append(best[3])
        n_cand.append(count)
    if len(keep_levels) < 2:
        raise FitError("fewer than 2 FLOP levels had enough runs to compare: add runs or choose other levels")
    levels_arr = np.array(keep_levels)
    n_opt_arr, d_opt_arr = np.array(n_opt), np.array(d_opt)
    warns = []
    distinct = np.unique(n_opt_arr).size
    if distinct < 3:
        warns.append(f"only {distinct} distinct model sizes win across the levels: the exponent is coarse; "
                     "add model sizes between them")
    all_sizes = np.array(sorted({cv[1] for cv in curves}))
    if n_opt_arr[-1] == all_sizes.max():
        warns.append("the largest model wins at the highest level: the optimum may lie beyond the sizes trained")
    if n_opt_arr[0] == all_sizes.min():
        warns.append("the smallest model wins at the lowest level: the optimum may lie below the sizes trained")
    return Approach1Result(
        levels=levels_arr, bin_edges=np.exp(edges), n_opt=n_opt_arr, tokens_opt=d_opt_arr,
        loss_min=np.array(l_min), run_opt=r_opt, n_candidates=np.array(n_cand),
        n_params_law=fit_power_law(levels_arr, n_opt_arr), tokens_law=fit_power_law(levels_arr, d_opt_arr),
        warnings=warns,
    )


# ============================================================================================
# Approach 2: IsoFLOP profiles
# ============================================================================================
@dataclass
class IsoFlopProfile:
    """One budget's parabola L = c2·(ln N)² + c1·ln N + c0 and its vertex."""

    flops: float  # the budget C (geometric mean of the group's FLOPs)
    n_points: int
    coef: tuple  # (c2, c1, c0), numpy.polyfit order, x = ln N
    n_opt: float  # vertex: exp(−c1 / (2 c2)); nan when the parabola opens downwards
    tokens_opt: float  # C / (6 N_opt)
    loss_opt: float  # the parabola's value at the vertex
    n_min: float  # smallest N in the group
    n_max: float  # largest N in the group
    interior: bool  # the vertex lies inside [n_min, n_max]
    used: bool  # entered the power-law fit
    note: str = ""  # why a profile was not used

    def curve(self, n_params) -> np.ndarray:
        """The fitted parabola at ``n_params`` (for plotting)."""
        x = np.log(np.asarray(n_params, np.float64))
        return np.polyval(self.coef, x)

    def to_dict(self) -> dict:
        return jsonable({k: getattr(self, k) for k in ("flops", "n_points", "coef", "n_opt", "tokens_opt", "loss_opt",
                                                        "n_min", "n_max", "interior", "used", "note")})


@dataclass
class Approach2Result(_ExponentsMixin):
    """Approach 2 of Hoffmann et al. 2022: IsoFLOP parabolas and the power laws of their minima."""

    profiles: list  # IsoFlopProfile per budget, ascending FLOPs
    n_params_law: PowerLaw  # N_opt ∝ C^a over the used profiles
    tokens_law: PowerLaw  # D_opt ∝ C^b
    budget_of_point: np.ndarray  # (n,) index into profiles for each input point (-1: not in any budget)
    warnings: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return jsonable({
            "method": "approach2", "profiles": [p.to_dict() for p in self.profiles], "a": self.a, "b": self.b,
            "n_params_law": self.n_params_law.to_dict(), "tokens_law": self.tokens_law.to_dict(),
            "budget_of_point": self.budget_of_point, "warnings": self.warnings,
        })


def group_budgets(flops, budgets: Optional[Sequence[float]] = None, gap_dex: float = 0.05,
                  tolerance_dex: float = 0.1) -> np.ndarray:
    """Assign points to FLOP budgets; returns (n,) group ids (−1: none).

    With ``budgets``: the nearest budget in log10 within ``tolerance_dex``. Without: sorted log10
    FLOPs are split wherever consecutive values differ by more than ``gap_dex`` (0.05 dex ≈ 12%).
    """
    lc = np.log10(np.asarray(flops, np.float64))
    if budgets is not None:
        lb = np.log10(np.asarray(budgets, np.float64).reshape(-1))
        dist = np.abs(lc[:, None] - lb[None, :])
        nearest = dist.argmin(axis=1)
        return np.where(dist[np.arange(lc.size), nearest] <= tolerance_dex, nearest, -1)
    order = np.argsort(lc, kind="stable")
    breaks = np.concatenate([[0], np.cumsum(np.diff(lc[order]) > gap_dex)])
    out = np.empty(lc.size, dtype=int)
    out[order] = breaks
    return out


def approach2(data=None, *, n_params=None, tokens=None, flops=None, loss=None,
              budgets: Optional[Sequence[float]] = None, gap_dex: float = 0.05, tolerance_dex: float = 0.1,
              min_points: int = 3, require_interior: bool = True,
              flops_per_param_token: float = 6.0) -> Approach2Result:
    """Approach 2 from final points of IsoFLOP sweeps (several sizes per FLOP budget).

    Points are grouped by ``group_budgets``. Each group with ≥ ``min_points`` distinct sizes gets a
    parabola in ln N; groups whose parabola opens downwards, or (with ``require_interior``) whose
    vertex lies outside the sampled sizes, are reported but not used.
    """
    n, d, c, y = _inputs(data, n_params, tokens, flops, loss, flops_per_param_token)
    gid = group_budgets(c, budgets, gap_dex, tolerance_dex)
    profiles: list = []
    point_profile = np.full(y.size, -1)
    groups = sorted(set(gid[gid >= 0].tolist()), key=lambda g: float(np.exp(np.mean(np.log(c[gid == g])))))
    warns = []
    for g in groups:
        idx = np.flatnonzero(gid == g)
        budget = float(budgets[g]) if budgets is not None else float(np.exp(np.mean(np.log(c[idx]))))
        x = np.log(n[idx])
        sizes = np.unique(n[idx]).size
        nan = float("nan")
        if sizes < min_points:
            profiles.append(IsoFlopProfile(budget, int(idx.size), (nan, nan, nan), nan, nan, nan, float(n[idx].min()),
                                           float(n[idx].max()), False, False, f"only {sizes} distinct sizes"))
            point_profile[idx] = len(profiles) - 1
            continue
        c2, c1, c0 = np.polyfit(x, y[idx], 2)
        if c2 <= 0:
            profiles.append(IsoFlopProfile(budget, int(idx.size), (float(c2), float(c1), float(c0)), nan, nan, nan,
                                           float(n[idx].min()), float(n[idx].max()), False, False,
                                           "parabola opens downwards: no minimum"))
            point_profile[idx] = len(profiles) - 1
            continue
        x_opt = -c1 / (2.0 * c2)
        n_opt = float(np.exp(x_opt))
        interior = bool(x.min() <= x_opt <= x.max())
        used = interior or not require_interior
        profiles.append(IsoFlopProfile(
            flops=budget, n_points=int(idx.size), coef=(float(c2), float(c1), float(c0)), n_opt=n_opt,
            tokens_opt=budget / (flops_per_param_token * n_opt), loss_opt=float(np.polyval((c2, c1, c0), x_opt)),
            n_min=float(n[idx].min()), n_max=float(n[idx].max()), interior=interior, used=used,
            note="" if interior else "minimum outside the sampled sizes (extrapolated)"))
        point_profile[idx] = len(profiles) - 1
    used = [p for p in profiles if p.used]
    skipped = [p for p in profiles if not p.used]
    if skipped:
        warns.append(f"{len(skipped)} of {len(profiles)} budgets not used: "
                     + "; ".join(f"{p.flops:.3g} FLOPs: {p.note}" for p in skipped))
    if len(used) < 2:
        raise FitError(f"only {len(used)} FLOP budget(s) have a usable IsoFLOP minimum: sweep at least 3 sizes "
                       "around the optimum at 2 or more budgets")
    if len(used) < 3:
        warns.append("only 2 budgets: the exponents have no error estimate; add budgets")
    fl = np.array([p.flops for p in used])
    return Approach2Result(
        profiles=profiles, n_params_law=fit_power_law(fl, [p.n_opt for p in used]),
        tokens_law=fit_power_law(fl, [p.tokens_opt for p in used]), budget_of_point=point_profile, warnings=warns,
    )
