"""Learning-rate schedules: the LR at every optimiser step, declared or inferred from a logged LR.

Steps are counted from 1 (the LR used by the first update is ``lr[0]``). Every schedule has a linear
warmup from ``peak_lr / warmup_steps`` to ``peak_lr`` over ``warmup_steps`` steps, then:

- ``constant``: ``peak_lr`` to the end;
- ``linear``: linear decay from ``peak_lr`` to ``final_lr`` at ``total_steps``;
- ``cosine``: ``final + (peak − final)·½(1 + cos(π(s − W)/(T − W)))`` (Loshchilov & Hutter 2017, the
  form of the issue and of most LLM trainers);
- ``wsd``: warmup–stable–decay (Hu et al. 2024, MiniCPM): ``peak_lr`` until ``T − K``, then linear or
  cosine decay to ``final_lr`` over the last ``K = decay_steps`` steps.

A logged LR that contradicts the declared schedule is an error (:func:`check_against_logged`), never
a silent choice between them.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Optional

import numpy as np

from core.errors import InputError

KINDS = ("constant", "linear", "cosine", "wsd")
DECAY_SHAPES = ("linear", "cosine")
# A logged LR may differ from the declared one by float rounding and by trainers that log the LR of
# the *next* step; 5% of the peak tolerates both and still catches a wrong shape or horizon.
LOGGED_LR_TOLERANCE = 0.05


@dataclass(frozen=True)
class Schedule:
    kind: str                 # one of KINDS
    total_steps: int          # T: the step training ends at (the forecast's horizon)
    peak_lr: float            # the LR after warmup
    warmup_steps: int = 0     # W: linear warmup length; 0 = none
    final_lr: float = 0.0     # LR at step T for linear/cosine/wsd (many trainers use 0 or peak/10)
    decay_steps: int = 0      # K: length of the WSD decay phase (wsd only)
    decay_shape: str = "linear"  # WSD's decay: linear (MiniCPM) or cosine

    def __post_init__(self):
        check_schedule(self)

    def lr(self, steps=None) -> np.ndarray:
        """The LR at ``steps`` (default 1..T), shape (len(steps),)."""
        s = np.arange(1, self.total_steps + 1, dtype=np.float64) if steps is None else np.asarray(steps, float)
        return schedule_lr(self, s)

    def to_dict(self) -> dict:
        return asdict(self)


def check_schedule(s: Schedule) -> None:
    """Refuse a schedule that cannot be drawn, with a message that says which field to change."""
    if s.kind not in KINDS:
        raise InputError(f"unknown schedule {s.kind!r}; choose one of {', '.join(KINDS)}.")
    if not (isinstance(s.total_steps, (int, np.integer)) and s.total_steps >= 2):
        raise InputError(f"total steps must be a whole number ≥ 2 (got {s.total_steps!r}).")
    if not (math.isfinite(s.peak_lr) and s.peak_lr > 0):
        raise InputError(f"peak LR must be a positive number (got {s.peak_lr!r}).")
    if not (math.isfinite(s.final_lr) and 0 <= s.final_lr <= s.peak_lr):
        raise InputError(f"final LR must lie in [0, peak LR] (got {s.final_lr!r}).")
    if not (0 <= s.warmup_steps < s.total_steps):
        raise InputError(f"warmup steps must lie in [0, total steps) (got {s.warmup_steps!r}).")
    if s.kind == "wsd":
        if not (1 <= s.decay_steps <= s.total_steps - s.warmup_steps):
            raise InputError("a WSD schedule needs its decay steps K (--decay-steps) with 1 ≤ K ≤ total steps − warmup steps.")
        if s.decay_shape not in DECAY_SHAPES:
            raise InputError(f"WSD decay shape must be one of {', '.join(DECAY_SHAPES)}.")


def schedule_lr(s: Schedule, steps: np.ndarray) -> np.ndarray:
    """LR per step (steps ≥ 1, float array); after T the final LR holds."""
    steps = np.clip(np.asarray(steps, dtype=np.float64), 1, s.total_steps)
    lr = np.full_like(steps, s.peak_lr)
    W, T = s.warmup_steps, s.total_steps
    if W > 0:
        warm = steps <= W
        lr[warm] = s.peak_lr * steps[warm] / W
    if s.kind == "constant":
        return lr
    if s.kind == "wsd":
        start, shape = T - s.decay_steps, s.decay_shape
    else:
        start, shape = W, s.kind
    decay = steps > start
    frac = (steps[decay] - start) / max(T - start, 1)  # 0 at the decay's start, 1 at T
    if shape == "linear":
        lr[decay] = s.peak_lr + (s.final_lr - s.peak_lr) * frac
    else:
        lr[decay] = s.final_lr + (s.peak_lr - s.final_lr) * 0.5 * (1 + np.cos(np.pi * frac))
    return lr


def check_against_logged(s: Schedule, steps, logged_lr, tolerance: float = LOGGED_LR_TOLERANCE) -> None:
    """Raise if the logged LR (at ``steps``) departs from the declared schedule by > tolerance·peak."""
    steps = np.asarray(steps, dtype=np.float64)
    logged = np.asarray(logged_lr, dtype=np.float64)
    keep = np.isfinite(steps) & np.isfinite(logged) & (steps >= 1) & (steps <= s.total_steps)
    if not keep.any():
        return
    gap = np.abs(schedule_lr(s, steps[keep]) - logged[keep])
    worst = int(np.argmax(gap))
    if gap[worst] > tolerance * s.peak_lr:
        raise InputError(
            f"the logged LR contradicts the declared {s.kind} schedule: at step {int(steps[keep][worst])} "
            f"the log says {logged[keep][worst]:.4g}, the schedule {schedule_lr(s, steps[keep][worst:worst + 1])[0]:.4g}; "
            "fix the schedule (peak, warmup, total or decay steps) or drop it to use the logged LR.")


def infer_schedule(steps, logged_lr, total_steps: Optional[int] = None) -> Schedule:
    """The declared-schedule family member closest to a logged LR (least squares over kinds).

    Peak = the largest logged LR; warmup = the first step reaching 99% of it; final LR = the last
    logged value for decaying kinds. ``total_steps`` defaults to the last logged step, which is right
    for a finished run; for a live run give the planned horizon.
    """
    steps = np.asarray(steps, dtype=np.float64)
    lr = np.asarray(logged_lr, dtype=np.float64)
    keep = np.isfinite(steps) & np.isfinite(lr) & (steps >= 1)
    steps, lr = steps[keep], lr[keep]
    if len(steps) < 2:
        raise InputError("need at least 2 logged LR values to infer a schedule; declare it instead.")
    order = np.argsort(steps)
    steps, lr = steps[order], lr[order]
    peak = float(lr.max())
    if peak <= 0:
        raise InputError("the logged LR is never positive; declare the schedule instead.")
    T = int(total_steps or steps[-1])
    at_peak = int(np.argmax(lr >= 0.99 * peak))
    warmup = int(steps[at_peak]) if at_peak > 0 else 0
    warmup = min(warmup, T - 1)
    final = float(min(max(lr[-1], 0.0), peak))
    candidates = [Schedule("constant", T, peak, warmup)]
    if steps[-1] > warmup + 1:
        candidates += [Schedule("linear", T, peak, warmup, final), Schedule("cosine", T, peak, warmup, final)]
        below = np.nonzero((steps > warmup) & (lr < 0.99 * peak))[0]
        if len(below):
            k = max(1, min(T - warmup, int(T - steps[below[0]] + 1)))
            candidates += [Schedule("wsd", T, peak, warmup, final, k, shape) for shape in DECAY_SHAPES]
    candidates = [candidates[0]] + [_fit_final_lr(c, steps, lr) for c in candidates[1:]]
    errors = [float(np.mean((schedule_lr(c, steps) - lr) ** 2)) for c in candidates]
    return candidates[int(np.argmin(errors))]


def _fit_final_lr(s: Schedule, steps: np.ndarray, lr: np.ndarray) -> Schedule:
    """``s`` with the final LR that fits the logged LR best. The LR of a decaying schedule is affine
    in its final LR (η = g + final·h), so least squares is one division; a live run's last logged LR
    is not its final one when the horizon T lies beyond the log."""
    g = schedule_lr(replace(s, final_lr=0.0), steps)
    h = (schedule_lr(replace(s, final_lr=s.peak_lr), steps) - g) / s.peak_lr  # dη/d(final LR)
    weight = float(h @ h)
    if weight <= 0:
        return s
    final = float(h @ (lr - g)) / weight
    return replace(s, final_lr=float(min(max(final, 0.0), s.peak_lr)))


def lr_per_step(total_steps: int, schedule: Optional[Schedule] = None, logged_steps=None,
                logged_lr=None, declared: bool = True) -> np.ndarray:
    """The LR of every step 1..T: the logged LR (interpolated between logged steps) where the log
    covers, the schedule beyond it. Shape (T,). A ``declared`` schedule must agree with the log; one
    inferred from the log (``declared=False``) only extends it."""
    steps = np.arange(1, total_steps + 1, dtype=np.float64)
    if logged_steps is None or len(logged_steps) == 0:
        if schedule is None:
            raise InputError("no logged LR and no declared schedule: declare the schedule (kind, peak LR, "
                             "warmup, total steps).")
        return schedule_lr(schedule, steps)
    ls = np.asarray(logged_steps, dtype=np.float64)
    ll = np.asarray(logged_lr, dtype=np.float64)
    keep = np.isfinite(ls) & np.isfinite(ll)
    order = np.argsort(ls[keep])
    ls, ll = ls[keep][order], ll[keep][order]
    if schedule is not None and declared:
        check_against_logged(schedule, ls, ll)
    lr = np.interp(steps, ls, ll)
    beyond = steps > ls[-1]
    if beyond.any():
        if schedule is None:
            raise InputError(f"the logged LR ends at step {int(ls[-1])} but the forecast runs to step {total_steps}: "
                             "declare the schedule for the remaining steps.")
        lr[beyond] = schedule_lr(schedule, steps[beyond])
    return lr
