"""Forgetting during fine-tuning (Kalajdzievski 2024, "Scaling laws for forgetting when
fine-tuning large language models", arXiv:2401.05605).

The paper measures forgetting as the rise of the pre-training-data cross-entropy caused by
fine-tuning, finds it inversely linear in the fine-tuning loss, and fits it as a shifted
power law in the number of fine-tuned parameters P and of update steps N. We use the form

    F(P, N) = E + A·(P^α·N)^β

— a power law in the single "effective amount of fine-tuning" P^α·N, shifted by E. With β > 0
forgetting grows without bound; β < 0 with A < 0 is the saturating shape the inverse-linear link to
a power-law fine-tuning loss implies. Both signs are allowed and the data pick. (We could read only
the paper's abstract while writing this; the equation is our reading of its "shifted power law in
the number of parameters fine-tuned and the number of update steps" — compare your fitted α, β with
the paper's before quoting them.)
"""
from __future__ import annotations

from typing import Optional

import numpy as np

from core.downstream import (LAW_EVALUATORS, DownstreamFit, DownstreamFitConfig, LawProblem,
                             check_xy, run_fit)
from core.errors import InputError
from core.progress import ProgressFn

LAW_FORGETTING = "kalajdzievski_forgetting"


def forgetting_law(n_params_finetuned, steps, E, A, alpha, beta) -> np.ndarray:
    """F(P, N) = E + A·(P^α·N)^β (Kalajdzievski 2024; see the module note on the form)."""
    p = np.asarray(n_params_finetuned, dtype=np.float64)
    n = np.asarray(steps, dtype=np.float64)
    return E + A * np.exp(beta * (alpha * np.log(p) + np.log(n)))


def forgetting_from_losses(loss_after, loss_before) -> np.ndarray:
    """Forgetting as the rise of the pre-training-data loss: L(after fine-tuning) − L(base model)."""
    return np.asarray(loss_after, dtype=np.float64) - np.asarray(loss_before, dtype=np.float64)


LAW_EVALUATORS[LAW_FORGETTING] = lambda x, p: forgetting_law(
    np.asarray(x)[:, 0], np.asarray(x)[:, 1], p["E"], p["A"], p["alpha"], p["beta"])


def fit_forgetting(n_params_finetuned, steps, forgetting, *, config: Optional[DownstreamFitConfig] = None,
                   progress: Optional[ProgressFn] = None) -> DownstreamFit:
    """Fit F(P, N) = E + A·(P^α·N)^β to runs that carry both P (fine-tuned parameters, e.g. LoRA
    parameter count) and N (update steps).

    Returns a :class:`core.downstream.DownstreamFit` whose ``predict`` takes an (n, 2) array of
    [P, N] rows. Bounds: 0 ≤ α ≤ 5, −3 ≤ β ≤ 3; E and A free.
    """
    cfg = config or DownstreamFitConfig()
    p = np.asarray(n_params_finetuned, dtype=np.float64).reshape(-1)
    n = np.asarray(steps, dtype=np.float64).reshape(-1)
    if p.shape != n.shape:
        raise InputError(f"forgetting fit: {len(p)} parameter counts but {len(n)} step counts; "
                         "give both numbers for every run.")
    x, y = check_xy(np.column_stack([p, n]), forgetting, "forgetting fit")
    if np.any(x <= 0):
        raise InputError("forgetting fit: fine-tuned parameters and steps must be positive for "
                         "every run; drop the step-0 (not yet fine-tuned) points.")
    if np.ptp(np.log(p)) == 0:
        raise InputError("forgetting fit: every run fine-tunes the same number of parameters, so α "
                         "cannot be fitted; add runs with other LoRA ranks (or fit steps alone).")
    lp, ln = np.log(p), np.log(n)
    lp_bar, ln_bar = float(lp.mean()), float(ln.mean())

    def model(theta, idx):
        e, a_c, alpha, beta = theta  # A·(P^α N)^β = a_c·exp(β·u), u = α(ln P − m_P) + (ln N − m_N)
        u = alpha * (lp[idx] - lp_bar) + (ln[idx] - ln_bar)
        return e + a_c * np.exp(np.clip(beta * u, -700, 700))

    def jacobian(theta, idx):
        e, a_c, alpha, beta = theta
        dlp = lp[idx] - lp_bar
        u = alpha * dlp + (ln[idx] - ln_bar)
        g = np.exp(np.clip(beta * u, -700, 700))
        return np.column_stack([np.ones_like(g), g, a_c * g * beta * dlp, a_c * g * u])

    def to_reported(theta):
        e, a_c, alpha, beta = theta
        return [e, a_c * float(np.exp(np.clip(-beta * (alpha * lp_bar + ln_bar), -700, 700))), alpha, beta]

    span = float(np.ptp(y)) or 1.0
    starts = []
    for beta in (-1.0, -0.3, 0.2, 0.5, 1.0):
        for alpha in (0.1, 0.5, 1.0):
            u = alpha * (lp - lp_bar) + (ln - ln_bar)
            design = np.column_stack([np.ones_like(u), np.exp(beta * u)])
            (e0, a0), *_ = np.linalg.lstsq(design, y, rcond=None)  # E and A are linear given α, β
            starts.append([e0, a0, alpha, beta])
    big = 1e3 * (span + float(np.abs(y).max()))
    problem = LawProblem(
        law=LAW_FORGETTING, names=["E", "A", "alpha", "beta"],
        lower=np.array([-big, -big, 0.0, -3.0]), upper=np.array([big, big, 5.0, 3.0]),
        starts=np.asarray(starts), model=model, to_reported=to_reported, jacobian=jacobian,
        settings={"x_columns": ["n_params_finetuned", "steps"]},
    )
    return run_fit(problem, "none", y, cfg, progress)


def fit_forgetting_vs_finetune_loss(finetune_loss, forgetting) -> dict:
    """Kalajdzievski 2024's inverse-linear link: forgetting ≈ intercept + slope·(fine-tuning loss), slope < 0.

    Returns {"slope", "intercept", "r"} (r: Pearson correlation; near −1 for the paper's runs).
    """
    x, y = check_xy(finetune_loss, forgetting, "forgetting vs fine-tuning loss")
    if len(y) < 3 or np.ptp(x) == 0:
        raise InputError("forgetting vs fine-tuning loss needs at least 3 runs with different losses.")
    slope, intercept = np.polyfit(x, y, 1)
    return {"slope": float(slope), "intercept": float(intercept),
            "r": float(np.corrcoef(x, y)[0, 1])}
