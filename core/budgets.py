"""The plannable range of training budgets and the one check of a budget the planners share
(core.planner, core.fine_grained_moe, core.inference_aware …): a module of its own so that a law's
module can check a budget without importing the planner, which imports every law through the registry."""
from __future__ import annotations

import math

from core.errors import PlanError

FLOPS_MIN = 1e10  # below this no language model worth planning exists (a 1M-param model on 1k tokens)
FLOPS_MAX = 1e32  # ~1e6 × the largest runs of 2024; beyond it the laws are pure extrapolation


def _pow10(x: float) -> str:
    """1e+10 → '1e10' for messages."""
    return f"1e{round(math.log10(x))}"


def check_flops(flops) -> float:
    """The budget as a float in [FLOPS_MIN, FLOPS_MAX]; PlanError otherwise."""
    try:
        c = float(flops)
    except (TypeError, ValueError):
        raise PlanError(f"Budget {flops!r} is not a number; give training FLOPs, e.g. 1e23.") from None
    if not math.isfinite(c) or c <= 0:
        raise PlanError(
            f"Budget {flops!r} FLOPs must be positive and finite; give training FLOPs, e.g. 1e23."
        )
    if not FLOPS_MIN <= c <= FLOPS_MAX:
        raise PlanError(
            f"Budget {c:.3g} FLOPs is outside the plannable range {_pow10(FLOPS_MIN)}–{_pow10(FLOPS_MAX)}; "
            "give a training budget in FLOPs, e.g. 1e23 (Chinchilla used 5.76e23)."
        )
    return c
