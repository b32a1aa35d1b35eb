"""The other laws of the registry: a generic fit by Huber loss in log space, with the same batched
solver and bootstrap as Approach 3.

``fit_law(law, inputs, y, ...)`` fits any law of ``core.registry.LAW_NAMES``: "chinchilla" goes to
Approach 3 (core/fitting/chinchilla.py), every other law to its ``FitSpec`` (core/fitting/residuals.py):
Σ w·Huber_δ(log ŷ − log y), minimised from the law's start grid by ``batched_newton``.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from core.errors import FitError
from core.fitting.chinchilla import Approach3Settings, fit_chinchilla
from core.fitting.diagnostics import HuberDiagnostics, fit_warnings, residual_diagnostics
from core.fitting.inputs import (
    as_1d, bootstrap_summaries, check_positive, need_inputs, progress_callback, select_points,
)
from core.fitting.residuals import FitSpec
from core.fitting.result import FitResult
from core.fitting.solver import NewtonOptions, batched_newton, huber
from core.progress import ProgressFn, report
from core.registry import get_law


class _GenericObjective:
    """Σ w Huber_δ(r) for a FitSpec residual; Hessian = Σ wψ' J Jᵀ + Σ wψ ∇²r (∇²r by central differences of J;
    left out for a ``gauss_newton`` spec, whose J is itself numerical)."""

    def __init__(self, spec: FitSpec, logs, log_y, delta, weights):
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
        for p in range(0 if self.spec.gauss_newton else n_par):  # second-order term Σ c ∇²r, column by column
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
    """Fit any law of core.registry.LAW_NAMES by Huber_δ loss on log y, multi-start, batched, with bootstrap.

    ``inputs`` maps the law's input names (``LAWS[law].inputs``; Chinchilla: n_params, tokens) to
    1-D arrays; ``y`` is the loss (or a positive metric that decreases towards E, for
    power_law_offset). Keywords left as None take their defaults: drop_highest 0, n_bootstrap 1000,
    seed 0, delta 1e-3 — for "chinchilla" the values of ``settings`` (then ``fit_chinchilla`` runs).
    ``starts`` optionally replaces the default start grid, in the law's ``FitSpec.theta_names`` space.
    Returns a ``FitResult`` (method "huber_log", or "approach3" for chinchilla); raises ``FitError``.
    """
    entry = get_law(law)
    if entry.fit is None:  # the Chinchilla law: Approach 3
        s = settings or Approach3Settings()
        given = {"n_bootstrap": n_bootstrap, "seed": seed, "delta": delta, "drop_highest": drop_highest}
        s = Approach3Settings(**{**{f: getattr(s, f) for f in s.__dataclass_fields__},
                                 **{k: v for k, v in given.items() if v is not None}})
        need_inputs(inputs, ("n_params", "tokens"), law)
        return fit_chinchilla(inputs["n_params"], inputs["tokens"], y, s, weights=weights, progress=progress)
    drop_highest = 0 if drop_highest is None else int(drop_highest)
    n_bootstrap = 1000 if n_bootstrap is None else int(n_bootstrap)
    seed = 0 if seed is None else int(seed)
    delta = 1e-3 if delta is None else float(delta)
    if delta <= 0 or n_bootstrap < 0:
        raise FitError("delta must be positive and n_bootstrap ≥ 0")
    spec = entry.fit
    need_inputs(inputs, entry.inputs, law)
    target = as_1d("y", y)
    arrays = {k: as_1d(k, inputs[k]) for k in entry.inputs}
    for k, v in arrays.items():
        if v.size != target.size:
            raise FitError(f"{k} has {v.size} rows but y has {target.size}: give one value per point")
        check_positive(k, v)
    check_positive("y", target)
    n_par = len(spec.theta_names)
    n_total = target.size
    arrays, target, w_used, kept = select_points(arrays, target, weights, drop_highest, n_par)
    first = entry.inputs[0]
    n_distinct = np.unique(arrays[first]).size
    if n_distinct < 2:
        raise FitError(f"all points have the same {first}: the law needs several distinct values")
    if target.size < n_par:
        raise FitError(f"{target.size} points for {n_par} parameters: select more runs")
    for name, count, message in spec.min_distinct:
        if np.unique(arrays[name]).size < count:
            raise FitError(message)
    logs = {k: np.log(v) for k, v in arrays.items()}
    logs.update({f"{k}_raw": v for k, v in arrays.items()})
    log_y = np.log(target)

    weight_sum = float(target.size if w_used is None else w_used.sum())
    opts = NewtonOptions(atol=NewtonOptions.rtol * 0.5 * delta**2 * weight_sum)  # see fit_chinchilla
    theta0 = spec.starts(logs, log_y) if starts is None else np.atleast_2d(np.asarray(starts, np.float64))
    n_starts = theta0.shape[0]
    total = n_starts + max(0, int(n_bootstrap))
    obj = _GenericObjective(spec, logs, log_y, delta, w_used)
    res = batched_newton(obj.fgh, obj.f, theta0, opts, on_iter=progress_callback(progress, 0, total, "starts"))
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
                              on_iter=progress_callback(progress, n_starts, total, "bootstrap"))
        samples, boot_status = boot.theta, boot.status
    report(progress, total, total, "done")

    params = {k: float(spec.to_params(best)[k]) for k in entry.param_names}
    stderr, intervals, boot_cols = {}, {}, np.empty((0, len(entry.param_names)))
    if n_bootstrap > 0:
        sp = {k: spec.to_params(samples)[k] for k in entry.param_names}
        boot_cols = np.stack([sp[k] for k in entry.param_names], axis=1)
        stderr, intervals = bootstrap_summaries(sp)
    r_best = spec.residual(best[None], logs, log_y)[0][0]
    covariates = {k: arrays[k] for k in entry.inputs}
    warns = fit_warnings(
        theta=best, theta_names=spec.theta_names, grid_low=theta0.min(axis=0), grid_high=theta0.max(axis=0),
        lower=None, upper=None, n_distinct_sizes=n_distinct, term_values={}, target=target,
        bootstrap_theta=samples if n_bootstrap > 0 else None, scale_names=(), exponent_names=(), fixed_equal=False,
        check_grid=starts is None and spec.check_grid,
    )
    if n_bootstrap > 0 and (boot_status == 2).any():
        warns.append(f"{int((boot_status == 2).sum())} of {n_bootstrap} bootstrap refits hit the iteration limit: "
                     "the data leave some parameters free to trade off (flat directions), so their intervals "
                     "are unreliable; add runs at more sizes and token counts")
    diagnostics = HuberDiagnostics(
        residuals=r_best, fitted=np.exp(r_best + log_y), kept_index=kept,
        dropped_index=np.setdiff1d(np.arange(n_total), kept),
        residual_summary=residual_diagnostics(r_best, covariates), warnings=warns,
        optimizer={"solver": "batched saddle-free Newton", "n_starts": n_starts, "best_start": theta0[best_i],
                   "n_converged": int((res.status <= 1).sum()), "theta": best, "theta_names": list(spec.theta_names)},
        bootstrap={"n": int(n_bootstrap), "n_max_iter": int((boot_status == 2).sum())},
        formula=f"{entry.label} — {entry.citation}",
    )
    settings_dict = {"delta": delta, "n_bootstrap": int(n_bootstrap), "seed": seed, "drop_highest": drop_highest,
                     "starts": theta0, "inputs": list(entry.inputs),
                     "weights": None if weights is None else as_1d("weights", weights)}
    return FitResult(law=law, method="huber_log", params=params, stderr=stderr, intervals=intervals,
                     objective=best_f, n_points=int(target.size), settings=settings_dict, diagnostics=diagnostics,
                     bootstrap_samples=boot_cols, derived={}, param_names=entry.param_names)

