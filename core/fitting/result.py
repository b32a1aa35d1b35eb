"""The typed result of a fit: ``FitResult`` with its table of compute-optimal allocations
(``BudgetOptimum`` rows) and the declared diagnostics of its method (core/fitting/diagnostics.py).

``to_dict`` / ``from_dict`` are its JSON form (``core.jsonable``: non-finite floats become null);
``to_stored`` / ``from_stored`` its columns in the ``fits`` table (schema version 3), and
``upgrade_stored_v2`` rewrites a fit stored by schema version 2 — where budget quantities were string
keys such as ``"N_opt@1e+21"`` in ``derived``/``intervals`` and the result's fields were mixed into
``diagnostics`` — into that shape (db/store.py's migration calls it).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Mapping, Optional, Sequence

import numpy as np

from core import laws
from core.errors import FitError
from core.fitting.inputs import bootstrap_summaries, tails
from core.format import CONFIDENCE
from core.fitting.diagnostics import diagnostics_from_dict
from core.jsonable import jsonable
from core.registry import CHINCHILLA_PARAMS, predict

PARAM_NAMES = CHINCHILLA_PARAMS  # Approach 3's reported parameters, also bootstrap_samples columns


# ============================================================================================
# Compute-optimal allocations: a small table, one row per budget
# ============================================================================================
@dataclass
class BudgetOptimum:
    """N*, D* and D*/N* at one FLOP budget, each with its interval (stored at the app's level, 95%;
    NaN without a bootstrap; ``FitResult.optima_at`` recomputes them at another level)."""

    budget: float  # training FLOPs C
    n_params: float  # N*: compute-optimal parameters
    tokens: float  # D* = C/(6N*)
    tokens_per_param: float  # D*/N*
    n_params_lo: float = math.nan  # 2.5% bootstrap percentile of N*
    n_params_hi: float = math.nan  # 97.5%
    tokens_lo: float = math.nan
    tokens_hi: float = math.nan
    tokens_per_param_lo: float = math.nan
    tokens_per_param_hi: float = math.nan

    QUANTITIES = ("n_params", "tokens", "tokens_per_param")

    def interval(self, quantity: str) -> tuple[float, float]:
        return getattr(self, f"{quantity}_lo"), getattr(self, f"{quantity}_hi")

    def to_dict(self) -> dict:
        return jsonable({f.name: getattr(self, f.name) for f in fields(self)})

    @classmethod
    def from_dict(cls, d: Mapping) -> "BudgetOptimum":
        return cls(**{f.name: (math.nan if d.get(f.name) is None else float(d[f.name]))
                      for f in fields(cls) if f.name in d})


def chinchilla_optima(params: Mapping[str, float], budgets: Sequence[float],
                      samples: Optional[Mapping[str, np.ndarray]] = None, level: float = CONFIDENCE) -> list:
    """The ``BudgetOptimum`` table of a Chinchilla law (Hoffmann et al. 2022 eq. (4),
    ``core.laws.compute_optimal_nd``); with bootstrap ``samples`` (name -> (B,)) their central
    ``level`` intervals."""
    rows = []
    for c in budgets:
        c = float(c)
        n, d = (float(v) for v in laws.compute_optimal_nd(c, params["A"], params["B"], params["alpha"], params["beta"]))
        row = BudgetOptimum(budget=c, n_params=n, tokens=d, tokens_per_param=d / n)
        if samples is not None and len(np.asarray(samples["A"])) >= 2:
            ns, ds = laws.compute_optimal_nd(c, samples["A"], samples["B"], samples["alpha"], samples["beta"])
            for name, v in (("n_params", ns), ("tokens", ds), ("tokens_per_param", ds / ns)):
                v = np.asarray(v, np.float64)
                v = v[np.isfinite(v)]
                lo, hi = np.percentile(v, tails(level)) if v.size >= 2 else (math.nan, math.nan)
                setattr(row, f"{name}_lo", float(lo))
                setattr(row, f"{name}_hi", float(hi))
        rows.append(row)
    return rows


def exponents(params: Mapping[str, np.ndarray]) -> dict:
    """a = β/(α+β), b = α/(α+β): N* ∝ C^a, D* ∝ C^b (Hoffmann et al. 2022 eq. (4)), element-wise."""
    al = np.asarray(params["alpha"], np.float64)
    be = np.asarray(params["beta"], np.float64)
    with np.errstate(all="ignore"):
        return {"a": be / (al + be), "b": al / (al + be)}


# ============================================================================================
# The result
# ============================================================================================
@dataclass
class FitResult:
    """One fitted law, everything needed to store, show and reproduce it."""

    law: str  # key of core.registry.LAWS, e.g. "chinchilla"
    method: str  # "approach3" / "approach1" / "approach2" for Chinchilla, "huber_log" for the other laws
    params: dict  # name -> value; Chinchilla: E, A, B, alpha, beta (Approaches 1-2: a, b, N_coef, D_coef)
    stderr: dict  # name -> bootstrap standard error (params and exponents a, b); {} when B = 0
    intervals: dict  # name -> [low, high] 95% interval (params and exponents a, b); {} when B = 0
    objective: float  # the minimised Σ w·Huber_δ over the points used (NaN for Approaches 1-2)
    n_points: int  # points used (after dropping)
    settings: dict  # everything that reproduces the fit: seed, delta, grid, n_bootstrap, drops, ...
    diagnostics: object  # the method's declared diagnostics (core.fitting.diagnostics.DIAGNOSTICS)
    bootstrap_samples: np.ndarray  # (B, P) refitted params, columns = param_names
    derived: dict = field(default_factory=dict)  # scalar derived quantities: exponents a, b of N* ∝ C^a, D* ∝ C^b
    optima: list = field(default_factory=list)  # BudgetOptimum per budget of settings["budgets"]
    param_names: tuple = PARAM_NAMES  # column order of bootstrap_samples

    @property
    def warnings(self) -> list:
        return list(getattr(self.diagnostics, "warnings", None) or [])

    def chinchilla_params(self) -> laws.ChinchillaParams:
        if self.law != "chinchilla":
            raise FitError(f"this fit is a {self.law} law, not chinchilla: refit with law='chinchilla'")
        return laws.ChinchillaParams(**{k: float(self.params[k]) for k in PARAM_NAMES})

    def predict(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """The fitted law at ``inputs`` (same names as the fit's inputs, e.g. n_params, tokens)."""
        return predict(self.law, self.params, inputs)

    def optimum_at(self, budget: float) -> Optional[BudgetOptimum]:
        """The table's row for ``budget`` (None when the fit did not evaluate it)."""
        for row in self.optima:
            if math.isclose(row.budget, float(budget), rel_tol=1e-9):
                return row
        return None

    def samples_by_name(self) -> dict:
        """The bootstrap samples as name -> (B,), with the exponents a, b of a Chinchilla fit."""
        samples = np.asarray(self.bootstrap_samples, np.float64).reshape(-1, len(self.param_names))
        out = {k: samples[:, j] for j, k in enumerate(self.param_names)}
        if {"alpha", "beta"} <= set(out):
            out.update(exponents(out))
        return out

    def intervals_at(self, level: float = CONFIDENCE) -> dict:
        """name -> [low, high]: the central ``level`` bootstrap interval of each parameter (and the
        exponents a, b); the stored intervals (95%) when the fit kept no samples."""
        samples = self.samples_by_name()
        if not samples or len(next(iter(samples.values()))) < 2:
            return dict(self.intervals)
        return bootstrap_summaries(samples, level)[1]

    def optima_at(self, level: float = CONFIDENCE) -> list:
        """The ``BudgetOptimum`` table with intervals at ``level`` (recomputed from the bootstrap
        samples for a Chinchilla fit; the stored table otherwise)."""
        samples = self.samples_by_name()
        if self.law != "chinchilla" or not self.optima or "A" not in samples or len(samples["A"]) < 2:
            return list(self.optima)
        return chinchilla_optima(self.params, [r.budget for r in self.optima], samples, level)

    def frontier(self, flops, level: float = CONFIDENCE) -> tuple:
        """The compute-optimal frontier of a Chinchilla-law fit over budgets ``flops`` (K,):
        (N*(C), D*(C), L*(C) = L(N*, D*)) by Hoffmann et al. 2022 eq. (4), and the central ``level``
        band of L*(C) over the bootstrap samples, (2, K) — None without samples."""
        p = self.chinchilla_params()
        flops = np.asarray(flops, np.float64)
        n_opt, d_opt = laws.chinchilla_optimal(flops, p)
        best = laws.chinchilla_loss(n_opt, d_opt, p)
        samples = np.asarray(self.bootstrap_samples, np.float64)
        if samples.shape[0] < 2:
            return n_opt, d_opt, best, None
        sp = {k: samples[:, j][None, :] for j, k in enumerate(self.param_names)}  # (1, B) against budgets (K, 1)
        n, d = laws.compute_optimal_nd(flops[:, None], sp["A"], sp["B"], sp["alpha"], sp["beta"])
        with np.errstate(all="ignore"):
            losses = sp["E"] + sp["A"] * n ** (-sp["alpha"]) + sp["B"] * d ** (-sp["beta"])  # (K, B)
            band = np.nanpercentile(losses, tails(level), axis=1)
        return n_opt, d_opt, best, band

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (non-finite floats become null, samples a list of lists)."""
        return jsonable({
            "law": self.law, "method": self.method, "params": self.params, "stderr": self.stderr,
            "intervals": self.intervals, "objective": self.objective, "n_points": self.n_points,
            "settings": self.settings, "diagnostics": self.diagnostics,
            "bootstrap_samples": np.asarray(self.bootstrap_samples, np.float64).reshape(-1, len(self.param_names)),
            "derived": self.derived, "optima": [row.to_dict() for row in self.optima],
            "param_names": list(self.param_names),
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
            objective=nan(d.get("objective")), n_points=int(d.get("n_points") or 0),
            settings=dict(d.get("settings") or {}),
            diagnostics=diagnostics_from_dict(d["method"], d.get("diagnostics")), bootstrap_samples=samples,
            derived={k: nan(v) for k, v in (d.get("derived") or {}).items()},
            optima=[BudgetOptimum.from_dict(r) for r in d.get("optima") or []], param_names=names,
        )

    # ---------------------------------------------------------------- the fits table (schema version 3)
    STORED_IN_DIAGNOSTICS = ("stderr", "objective", "n_points", "bootstrap_samples", "param_names", "derived",
                             "optima")

    def to_stored(self) -> dict:
        """The ``fits`` columns: params, intervals, settings as themselves; ``diagnostics`` holds the
        rest of the result (the fields of STORED_IN_DIAGNOSTICS) and the method's diagnostics under
        ``"method_diagnostics"``."""
        d = self.to_dict()
        diagnostics = {k: d[k] for k in self.STORED_IN_DIAGNOSTICS}
        diagnostics["method_diagnostics"] = d["diagnostics"]
        return {"law": d["law"], "method": d["method"], "params": d["params"], "intervals": d["intervals"],
                "settings": d["settings"], "diagnostics": diagnostics}

    @classmethod
    def from_stored(cls, row: Mapping) -> "FitResult":
        """A ``fits`` row (JSON columns decoded) back as a FitResult."""
        diagnostics = dict(row.get("diagnostics") or {})
        return cls.from_dict({
            "law": row["law"], "method": row["method"], "params": row.get("params") or {},
            "intervals": row.get("intervals") or {}, "settings": row.get("settings") or {},
            "diagnostics": diagnostics.get("method_diagnostics"),
            **{k: diagnostics.get(k) for k in cls.STORED_IN_DIAGNOSTICS},
        })


# ============================================================================================
# Schema version 2 → 3
# ============================================================================================
V2_RESULT_FIELDS = ("stderr", "objective", "n_points", "bootstrap_samples", "derived", "param_names")
_V2_BUDGET_NAMES = {"N_opt": "n_params", "D_opt": "tokens", "tokens_per_param": "tokens_per_param"}


def upgrade_stored_v2(intervals: Mapping, diagnostics: Mapping, settings: Mapping) -> tuple[dict, dict]:
    """The (intervals, diagnostics) columns of a fit stored by schema version 2, in version 3's shape.

    Version 2 kept budget quantities as string keys ("N_opt@1e+21", "D_opt@…", "tokens_per_param@…")
    in ``derived`` and ``intervals`` (and ``stderr``), and the FitResult fields inside ``diagnostics``
    beside the method's own keys. Budgets come back exact from ``settings["budgets"]`` when listed.
    """
    diag = dict(diagnostics or {})
    kept = {k: diag.pop(k, None) for k in V2_RESULT_FIELDS}
    exact = {f"{float(b):.3g}": float(b) for b in (settings or {}).get("budgets") or []}

    def split(mapping):
        plain, per_budget = {}, {}
        for k, v in (mapping or {}).items():
            name, at, key = k.partition("@")
            if at and name in _V2_BUDGET_NAMES:
                per_budget.setdefault(key, {})[_V2_BUDGET_NAMES[name]] = v
            else:
                plain[k] = v
        return plain, per_budget

    derived, point = split(kept["derived"])
    new_intervals, bands = split(intervals)
    stderr, _ = split(kept["stderr"])
    optima = []
    for key, values in point.items():
        row = {"budget": exact.get(key, float(key)), **values}
        for q, (lo, hi) in bands.get(key, {}).items():
            row[f"{q}_lo"], row[f"{q}_hi"] = lo, hi
        optima.append(BudgetOptimum.from_dict(row).to_dict())
    new_diag = {"stderr": stderr, "objective": kept["objective"], "n_points": kept["n_points"],
                "bootstrap_samples": kept["bootstrap_samples"], "param_names": kept["param_names"],
                "derived": derived, "optima": optima, "method_diagnostics": diag}
    return new_intervals, new_diag
