"""What a fit reports besides its parameters: residual diagnostics, plain-language warnings, and the
declared shape of each method's diagnostics (one dataclass per method, ``DIAGNOSTICS``).

- ``residual_diagnostics(residuals, covariates)``: size and structure of log-space residuals
  (a trend against log N, log D or log C means the law's form is wrong, not just noisy).
- ``fit_warnings(...)``: a parameter on a bound or outside the start grid, a term the data cannot
  identify, too few distinct model sizes. Every fit calls it.
- ``Approach3Diagnostics``, ``HuberDiagnostics``, ``Approach1Diagnostics``, ``Approach2Diagnostics``:
  ``FitResult.diagnostics`` for methods approach3, huber_log, approach1, approach2.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Mapping, Optional, Sequence

import numpy as np

from core.jsonable import jsonable


# ============================================================================================
# Residual diagnostics
# ============================================================================================
def residual_diagnostics(residuals, covariates: Optional[Mapping[str, np.ndarray]] = None) -> dict:
    """Summaries of log-space residuals r = log L̂ − log L.

    Returns a dict: n, mean (bias; > 0 means the law over-predicts), std, rmse, mae, max_abs,
    mean_abs_pct (mean |L̂/L − 1| in %), and for each covariate name: ``trend[name]`` = slope of r
    against log(covariate) (per e-fold) with its Pearson correlation, and the lag-1 autocorrelation of
    r sorted by the covariate (near 0 for pure noise; large positive values mean systematic misfit).
    """
    r = np.asarray(residuals, np.float64).reshape(-1)
    out = {"n": int(r.size)}
    if r.size == 0:
        return out
    out.update({
        "mean": float(r.mean()), "std": float(r.std(ddof=1)) if r.size > 1 else 0.0,
        "rmse": float(np.sqrt(np.mean(r * r))), "mae": float(np.mean(np.abs(r))),
        "max_abs": float(np.max(np.abs(r))), "mean_abs_pct": float(100.0 * np.mean(np.abs(np.expm1(r)))),
    })
    trend = {}
    for name, values in (covariates or {}).items():
        x = np.log(np.asarray(values, np.float64).reshape(-1))
        if x.size != r.size or x.size < 3 or np.ptp(x) == 0:
            continue
        xc = x - x.mean()
        rc = r - r.mean()
        slope = float((xc @ rc) / (xc @ xc))
        denom = float(np.sqrt((xc @ xc) * (rc @ rc)))
        corr = float((xc @ rc) / denom) if denom > 0 else 0.0
        rs = r[np.argsort(x, kind="stable")] - r.mean()
        lag1 = float((rs[1:] @ rs[:-1]) / (rs @ rs)) if (rs @ rs) > 0 else 0.0
        trend[name] = {"slope_per_log": slope, "corr": corr, "lag1_autocorr": lag1}
    out["trend"] = trend
    return out


# ============================================================================================
# Warnings
# ============================================================================================
def fit_warnings(*, theta, theta_names: Sequence[str], grid_low=None, grid_high=None, lower=None, upper=None,
                 n_distinct_sizes: int, term_values: Mapping[str, np.ndarray], target,
                 bootstrap_theta=None, scale_names: Sequence[str] = (), exponent_names: Sequence[str] = (),
                 fixed_equal: bool = False, check_grid: bool = True) -> list:
    """Plain-language warnings about a fit (each says what is wrong and what to do).

    ``theta``: the optimum in the optimiser's space (names ``theta_names``); ``grid_low/high``: range
    of the start grid; ``lower/upper``: box bounds or None; ``term_values``: each additive term of
    the law evaluated on the data (name -> (n,)); ``target``: the fitted losses; ``bootstrap_theta``
    (B, P): refits; ``scale_names``: log-scale parameters (a = log A ...); ``exponent_names``.
    """
    theta = np.asarray(theta, np.float64)
    names = list(theta_names)
    warns = []
    if n_distinct_sizes < 3:
        hint = "" if fixed_equal else " or fix alpha = beta"
        warns.append(f"only {n_distinct_sizes} distinct model sizes: the exponents are weakly determined; "
                     f"add runs at other sizes{hint}")
    for j, name in enumerate(names):
        for bound, side in ((lower, "lower"), (upper, "upper")):
            if bound is None or not np.isfinite(bound[j]):
                continue
            if abs(theta[j] - bound[j]) <= 1e-8 * (1.0 + abs(bound[j])):
                warns.append(f"{name} = {theta[j]:.4g} sits on its {side} bound: the best fit lies outside the allowed "
                             "range; check the data")
        if check_grid and grid_low is not None and grid_high is not None:
            lo, hi = float(grid_low[j]), float(grid_high[j])
            margin = 0.1 * max(hi - lo, 1e-12)
            if theta[j] < lo - margin or theta[j] > hi + margin:
                warns.append(f"{name} = {theta[j]:.4g} lies outside the start grid [{lo:.4g}, {hi:.4g}]: the grid may "
                             "miss this basin; refit with the full start grid")
    for name in exponent_names:
        if name in names and theta[names.index(name)] <= 1e-3:
            warns.append(f"{name} ≈ {theta[names.index(name)]:.2g}: its term is constant over the data and cannot be "
                         "told apart from E (unidentifiable); fix it or add runs over a wider range")
    y = np.asarray(target, np.float64)
    spread = float(np.ptp(y)) if y.size else 0.0
    for term, values in term_values.items():
        values = np.asarray(values, np.float64)
        if spread > 0 and np.ptp(values) < 1e-2 * spread:
            warns.append(f"the term {term} varies by only {np.ptp(values):.2g} over the data ({100 * np.ptp(values) / spread:.2g}% "
                         "of the loss range): the data cannot identify it; widen the range of sizes / tokens")
    if "e" in names and y.size and np.exp(theta[names.index("e")]) < 1e-3 * float(y.min()):
        warns.append("E ≈ 0: the irreducible loss is not identified by these runs; treat E as unknown or add larger runs")
    if bootstrap_theta is not None and len(bootstrap_theta) > 1:
        bt = np.asarray(bootstrap_theta, np.float64)
        se = np.nanstd(bt, axis=0, ddof=1)
        for name in scale_names:
            j = names.index(name)
            if se[j] > 1.0:
                warns.append(f"log {name.upper()} has bootstrap standard error {se[j]:.2g} (a factor ~{np.exp(se[j]):.2g} "
                             f"in {name.upper()}): the data barely identify this term; add runs that vary it")
        for name in exponent_names:
            j = names.index(name)
            if se[j] > abs(theta[j]):
                warns.append(f"{name} has bootstrap standard error {se[j]:.2g} larger than its value {theta[j]:.2g}: "
                             "it is not identified; add sizes / token counts or fix alpha = beta")
    return warns


# ============================================================================================
# The declared diagnostics of each method
# ============================================================================================
class _Diagnostics:
    """Common behaviour: ``to_dict`` (JSON) and ``from_dict`` (arrays back to numpy, unknown keys dropped)."""

    ARRAYS: tuple = ()  # fields stored as JSON lists and given back as float arrays
    INDEX_ARRAYS: tuple = ()  # fields given back as integer arrays

    def to_dict(self) -> dict:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, d: Optional[Mapping]):
        d = dict(d or {})
        kw = {}
        for f in fields(cls):
            if f.name not in d:
                continue
            v = d[f.name]
            if f.name in cls.ARRAYS and v is not None:
                v = np.array([np.nan if x is None else x for x in v], dtype=np.float64)
            elif f.name in cls.INDEX_ARRAYS and v is not None:
                v = np.asarray(v, dtype=np.int64)
            kw[f.name] = v
        return cls(**kw)

    @property
    def has_residuals(self) -> bool:
        return getattr(self, "residuals", None) is not None


@dataclass
class _PointDiagnostics(_Diagnostics):
    """Shared by the parametric fits (Approach 3, Huber in log space): per-point results."""

    residuals: Optional[np.ndarray] = None  # (n_kept,) log ŷ − log y at the optimum
    fitted: Optional[np.ndarray] = None  # (n_kept,) ŷ at the points used
    kept_index: Optional[np.ndarray] = None  # indices of the input points used (after drop-highest)
    dropped_index: Optional[np.ndarray] = None  # indices dropped as the k highest
    residual_summary: dict = field(default_factory=dict)  # residual_diagnostics on the points used
    warnings: list = field(default_factory=list)  # plain-language warnings (fit_warnings)
    optimizer: dict = field(default_factory=dict)  # solver statistics: starts, convergence, best start, θ
    bootstrap: dict = field(default_factory=dict)  # {"n": resamples, "n_max_iter": refits at the iteration cap}

    ARRAYS = ("residuals", "fitted")
    INDEX_ARRAYS = ("kept_index", "dropped_index")


@dataclass
class Approach3Diagnostics(_PointDiagnostics):
    """Approach 3 (Hoffmann et al. 2022 §3.3): the Chinchilla law by Huber loss on log L."""

    n_distinct_sizes: int = 0  # distinct N among the points used (< 3: exponents weakly determined)
    n_distinct_tokens: int = 0  # distinct D among the points used


@dataclass
class HuberDiagnostics(_PointDiagnostics):
    """Any other law of the registry, fitted by Huber loss on log y."""

    formula: str = ""  # the law's formula with its paper, as fitted


@dataclass
class Approach1Diagnostics(_Diagnostics):
    """Approach 1 (Hoffmann et al. 2022 §3.1): the lowest-loss run at each FLOP level (core/isoflop.py)."""

    levels: list = field(default_factory=list)  # FLOP levels where the envelope was read
    bin_edges: list = field(default_factory=list)  # level bins' edges (K+1)
    n_opt: list = field(default_factory=list)  # parameters of the winning run per level
    tokens_opt: list = field(default_factory=list)  # its tokens at that level
    loss_min: list = field(default_factory=list)  # the envelope: lowest loss per level
    run_opt: list = field(default_factory=list)  # winning run per level
    n_candidates: list = field(default_factory=list)  # runs compared per level
    a: Optional[float] = None  # exponent of N_opt ∝ C^a
    b: Optional[float] = None  # exponent of D_opt ∝ C^b
    n_params_law: dict = field(default_factory=dict)  # the fitted power law N_opt(C)
    tokens_law: dict = field(default_factory=dict)  # the fitted power law D_opt(C)
    warnings: list = field(default_factory=list)
    method: str = "approach1"


@dataclass
class Approach2Diagnostics(_Diagnostics):
    """Approach 2 (Hoffmann et al. 2022 §3.2): IsoFLOP parabolas per budget (core/isoflop.py)."""

    profiles: list = field(default_factory=list)  # IsoFlopProfile.to_dict() per budget, ascending FLOPs
    a: Optional[float] = None  # exponent of N_opt ∝ C^a
    b: Optional[float] = None  # exponent of D_opt ∝ C^b
    n_params_law: dict = field(default_factory=dict)
    tokens_law: dict = field(default_factory=dict)
    budget_of_point: Optional[np.ndarray] = None  # (n,) index into profiles per point (-1: none)
    warnings: list = field(default_factory=list)
    method: str = "approach2"

    INDEX_ARRAYS = ("budget_of_point",)


DIAGNOSTICS = {"approach3": Approach3Diagnostics, "huber_log": HuberDiagnostics,
               "approach1": Approach1Diagnostics, "approach2": Approach2Diagnostics}


def diagnostics_from_dict(method: str, d: Optional[Mapping]):
    """The declared diagnostics of ``method`` from their JSON form."""
    return DIAGNOSTICS.get(method, HuberDiagnostics).from_dict(d)
