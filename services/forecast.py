"""Where will this run land: a stored run's loss curve + its LR schedule → a forecast to the end.

The LR of every step comes from the run's logged LR metric where there is one (TensorBoard, HF
Trainer and W&B logs usually have it) and from the declared schedule beyond the log; a logged LR that
contradicts the declared schedule is an error (core.schedules). The laws are declared in core/registry.py (CURVE_LAWS) and fitted by core/curve_fit.py.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Optional

import numpy as np
import pandas as pd

from core.errors import InputError
from core.curve_fit import BacktestRow, CurveFitConfig, CurveForecast, backtest_curve, forecast_curve
from core.progress import ProgressFn
from core.registry import curve_law, predict
from core.schedules import Schedule, infer_schedule, lr_per_step
from services import runs as runs_service
from services.runs import Store

# Metric names trainers log the LR under: HF Trainer "learning_rate", Lightning "lr-AdamW",
# W&B/TensorBoard "train/lr", "lr", "optim/lr".
LR_PATTERN = re.compile(r"(^|[/_.-])(lr|learning[_ ]?rate)($|[/_.-])", re.IGNORECASE)
LOSS_CANDIDATES = ("loss", "train/loss", "train_loss", "training_loss", "val/loss", "eval/loss", "eval_loss")


def find_lr_metric(names) -> Optional[str]:
    """The run's LR metric: the first name that looks like one (shortest first), else None."""
    hits = sorted((n for n in names if LR_PATTERN.search(str(n))), key=len)
    return hits[0] if hits else None


def default_loss_metric(names) -> Optional[str]:
    for cand in LOSS_CANDIDATES:
        if cand in names:
            return cand
    losses = sorted((n for n in names if "loss" in str(n).lower()), key=len)
    return losses[0] if losses else None


# Config keys that hold a run's planned number of optimizer steps, most specific first: HF Trainer's and
# Lightning's max_steps (-1 there means "by epochs": ignored), common training-script names, and
# ScaleScope's own probe runs ("steps"). Looked up at the top level and one level down.
PLANNED_STEP_KEYS = ("max_steps", "total_steps", "num_training_steps", "train_steps", "training_steps", "steps")


def planned_steps(config) -> Optional[int]:
    """The planned end of training from a run's config (a dict or its JSON text); None if it says none."""
    if isinstance(config, str):
        try:
            config = json.loads(config or "{}")
        except ValueError:
            return None
    if not isinstance(config, dict):
        return None
    levels = [config] + [v for v in config.values() if isinstance(v, dict)]
    for key in PLANNED_STEP_KEYS:
        for level in levels:
            value = _number(level.get(key))
            if value is not None and value == int(value):
                return int(value)
    return None


@dataclass
class RunForecast:
    run: str
    metric: str
    lr_metric: Optional[str]
    schedule: Schedule
    schedule_source: str           # "declared", "inferred from <metric>", or "declared, checked against <metric>"
    forecast: CurveForecast
    on_track: Optional[dict] = None  # the stored Chinchilla fit's prediction for this run's N and D

    def to_dict(self) -> dict:
        out = {"run": self.run, "metric": self.metric, "lr_metric": self.lr_metric,
               "schedule": self.schedule.to_dict(), "schedule_source": self.schedule_source,
               **self.forecast.to_dict()}
        if self.on_track is not None:
            out["on_track"] = self.on_track
        return out


def _series(store: Store, run: str, metric: str) -> pd.DataFrame:
    frame = runs_service.metrics(store, [run], metric)
    frame = frame[np.isfinite(frame["step"].astype(float)) & np.isfinite(frame["value"].astype(float))]
    return frame.sort_values("step")


def forecast_run(store: Store, run: str, *, metric: Optional[str] = None, law: str = "lr-annealing",
                 lr_metric: Optional[str] = None, schedule: Optional[Schedule] = None,
                 total_steps: Optional[int] = None, bootstrap: Optional[int] = None, seed: int = 0,
                 progress: Optional[ProgressFn] = None, confidence: Optional[float] = None) -> RunForecast:
    """Fit ``law`` to ``run``'s ``metric`` curve and forecast its final value (its interval at
    ``confidence``, default the app's level, core.format.CONFIDENCE; ``bootstrap`` refits, default the
    law's own, core.registry.CURVE_LAWS)."""
    runs = runs_service.list_runs(store)
    if run not in set(runs["name"]):
        raise InputError(f"no run named {run!r}; `python cli.py runs` lists the stored runs.")
    names = runs_service.metric_names(store, [run])
    metric = metric or default_loss_metric(names)
    if metric is None or metric not in names:
        raise InputError(f"run {run!r} has no metric {metric!r}; pick one with --metric (it has: "
                         f"{', '.join(map(str, names[:12]))}).")
    curve = _series(store, run, metric)
    lr_metric = lr_metric or find_lr_metric(names)
    if lr_metric is not None and lr_metric not in names:
        raise InputError(f"run {run!r} has no LR metric {lr_metric!r}.")
    lr_frame = _series(store, run, lr_metric) if lr_metric else None
    planned = planned_steps(runs.set_index("name").loc[run, "config"]) if schedule is None and not total_steps else None
    if planned is not None and planned < curve["step"].max():
        planned = None  # a config that says less than the log holds is not this run's plan
    horizon = int(total_steps or (schedule.total_steps if schedule else 0) or planned or 0)
    declared = schedule is not None
    if schedule is None:
        if lr_frame is None or len(lr_frame) < 2:
            raise InputError(f"run {run!r} logs no LR: declare its schedule (--schedule, --peak-lr, --warmup-steps, "
                             "--total-steps).")
        schedule = infer_schedule(lr_frame["step"], lr_frame["value"], horizon or None)
        source = f"inferred from {lr_metric}" + (f", its end (step {planned:,}) from the run's config" if planned else "")
    else:
        source = "declared" + (f", checked against {lr_metric}" if lr_frame is not None and len(lr_frame) else "")
    T = horizon or schedule.total_steps
    if lr_frame is not None and len(lr_frame):
        lr = lr_per_step(T, schedule, lr_frame["step"].to_numpy(float), lr_frame["value"].to_numpy(float),
                         declared=declared)
    else:
        lr = lr_per_step(T, schedule)
    fc = forecast_curve(curve["step"].to_numpy(float), curve["value"].to_numpy(float), lr, schedule.warmup_steps,
                        CurveFitConfig(law=law, bootstrap=curve_law(law).bootstrap if bootstrap is None else bootstrap,
                                       seed=seed,
                                       **({} if confidence is None else {"confidence": confidence})),
                        progress=progress)
    return RunForecast(run, metric, lr_metric, schedule, source, fc)


def backtest_run(store: Store, run: str, *, metric: Optional[str] = None, law: str = "lr-annealing",
                 fractions=(0.2, 0.4, 0.6)) -> list[BacktestRow]:
    """Fit on the first 20/40/60% of a finished run (its logged LR, its last step as horizon)."""
    names = runs_service.metric_names(store, [run])
    metric = metric or default_loss_metric(names)
    lr_metric = find_lr_metric(names)
    if metric is None or lr_metric is None:
        raise InputError(f"run {run!r} needs a loss and a logged LR for a back-test.")
    curve, lr_frame = _series(store, run, metric), _series(store, run, lr_metric)
    T = int(max(curve["step"].max(), lr_frame["step"].max()))
    schedule = infer_schedule(lr_frame["step"], lr_frame["value"], T)
    lr = lr_per_step(T, schedule, lr_frame["step"].to_numpy(float), lr_frame["value"].to_numpy(float),
                     declared=False)
    return backtest_curve(curve["step"].to_numpy(float), curve["value"].to_numpy(float), lr,
                          schedule.warmup_steps, fractions, CurveFitConfig(law=law, bootstrap=0))


def on_track(forecast_final: float, interval, predicted_by_law: float) -> dict:
    """Compare the forecast final loss with what a final-loss law predicts for the run's N and D."""
    lo, hi = interval
    if not math.isfinite(predicted_by_law):
        return {"law_prediction": None, "verdict": "unknown"}
    ahead = forecast_final <= predicted_by_law or (math.isfinite(lo) and lo <= predicted_by_law <= hi)
    return {"law_prediction": predicted_by_law, "verdict": "on track" if ahead else "behind",
            "gap": forecast_final - predicted_by_law}


def comparable_fit(fits: pd.DataFrame, runs: pd.DataFrame, run: str, metric: Optional[str] = None):
    """The stored Chinchilla fit to hold ``run`` against, or None: a law fitted on another dataset
    predicts another tokenizer's and corpus's loss (the Epoch Chinchilla fit says 17 nats for a 1M-
    parameter demo run), so only a fit whose selection holds the run, or shares a tag (its dataset)
    with it. Among those: one holding the run first, then one fitted on ``metric``, then the newest."""
    fits = fits[fits["law"] == "chinchilla"]
    if fits.empty or run not in set(runs["name"]):
        return None
    tags_of = dict(zip(runs["name"], runs["tags"].map(lambda text: set(runs_service.run_tags(text)))))
    ranked = []
    for _, fit in fits.iterrows():
        selected = (fit["selection"] or {}).get("runs") or []
        holds = run in selected
        shared = set().union(*(tags_of.get(name, set()) for name in selected)) & tags_of[run] if selected else set()
        if holds or shared:
            ranked.append(((holds, metric is not None and fit["target"] == metric, int(fit["id"])), fit))
    return max(ranked, key=lambda item: item[0])[1] if ranked else None


def law_prediction(store: Store, run: str, total_steps: Optional[int] = None,
                   metric: Optional[str] = None) -> Optional[dict]:
    """What a stored Chinchilla fit of ``run``'s own dataset (:func:`comparable_fit`) predicts for its
    final loss at its N and D.

    N is the run's parameter count of the kind the fit was made on (its selection's ``n_kind``); D is
    the run's tokens at the end of training: tokens per step × ``total_steps`` where both are known
    (a live run has not reached its D yet), else its stored token count. None when no such fit is
    stored or the run lacks a size. Returns {fit_id, fit, target, n_params, tokens, prediction}.
    """
    from services import fits as fits_service  # a sibling service: stored fits and their N kinds

    runs = runs_service.list_runs(store)
    fit = comparable_fit(fits_service.list_fits(store), runs, run, metric)
    if fit is None:
        return None
    row = runs.set_index("name").loc[run]
    n_kind = (fit["selection"] or {}).get("n_kind", "total")
    column = fits_service.N_KINDS.get(n_kind, "n_params")
    n = _number(row.get(column)) or _number(row.get("n_params"))
    per_step = _number(row.get("tokens_per_step"))
    d = per_step * total_steps if per_step and total_steps else _number(row.get("tokens"))
    if not n or not d:
        return None
    value = float(np.asarray(predict("chinchilla", fit["params"], {"n_params": np.array([n]),
                                                                    "tokens": np.array([d])}))[0])
    return {"fit_id": int(fit["id"]), "fit": str(fit["name"] or f"fit #{int(fit['id'])}"),
            "target": (fit["target"] or "loss"), "n_params": n, "tokens": d, "prediction": value}


def _number(v) -> Optional[float]:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None
