"""CLI: forecast where a run's loss curve lands, from its beginning and its LR schedule (issue 14).

    python cli.py forecast RUN [--metric M] [--law lr-annealing|multi-power] [--lr-metric NAME]
        [--schedule constant|linear|cosine|wsd] [--total-steps T] [--peak-lr P] [--warmup-steps W]
        [--final-lr F] [--decay-steps K] [--bootstrap B] [--backtest] [--db URL] [--json]

``--json`` prints {"run", "metric", "law", "params", "final_step", "final_loss", "interval": [lo, hi],
"confidence", "schedule", "schedule_source", ...}; with --backtest, "backtest": [{fraction,
observed_until, predicted, actual, error_pct}].
"""
from __future__ import annotations

import argparse
from dataclasses import asdict

from commands.common import add_common, emit, open_store
from core.errors import InputError
from core.registry import CURVE_LAWS
from core.progress import text_bar
from core.schedules import DECAY_SHAPES, KINDS, Schedule
from services import forecast as forecast_service


def register(sub) -> None:
    p = add_common(sub.add_parser("forecast", help="forecast a run's final loss from its curve and LR schedule",
                                  description="Fit a schedule-aware loss-curve law to a stored run and forecast "
                                              "its loss to the end of training, with a bootstrap interval."))
    p.add_argument("run", help="stored run name")
    p.add_argument("--metric", help="the loss metric (default: the run's loss)")
    p.add_argument("--law", choices=list(CURVE_LAWS), default="lr-annealing")
    p.add_argument("--lr-metric", metavar="NAME", help="the logged LR metric (default: found by name)")
    p.add_argument("--schedule", choices=KINDS, help="declared schedule (default: inferred from the logged LR)")
    p.add_argument("--total-steps", type=int, metavar="T", help="the step training ends at (the horizon)")
    p.add_argument("--peak-lr", type=float, metavar="P")
    p.add_argument("--warmup-steps", type=int, default=0, metavar="W")
    p.add_argument("--final-lr", type=float, default=0.0, metavar="F")
    p.add_argument("--decay-steps", type=int, default=0, metavar="K", help="WSD decay length")
    p.add_argument("--decay-shape", choices=DECAY_SHAPES, default="linear", help="WSD decay shape")
    p.add_argument("--bootstrap", type=int, metavar="B",
                   help="bootstrap refits for the interval (default: the law's, 100 LR annealing, 50 multi-power)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backtest", action="store_true", help="also fit on the first 20/40/60%% and report the error")
    p.set_defaults(handler=forecast)


def _schedule(args) -> Schedule | None:
    if args.schedule is None:
        return None
    if args.total_steps is None or args.peak_lr is None:
        raise InputError("a declared --schedule needs --total-steps and --peak-lr.")
    return Schedule(args.schedule, args.total_steps, args.peak_lr, args.warmup_steps, args.final_lr,
                    args.decay_steps, args.decay_shape)


def forecast(args: argparse.Namespace) -> int:
    if args.bootstrap is not None and args.bootstrap < 0:
        raise InputError("--bootstrap must be ≥ 0.")
    store = open_store(args)
    result = forecast_service.forecast_run(
        store, args.run, metric=args.metric, law=args.law, lr_metric=args.lr_metric, schedule=_schedule(args),
        total_steps=args.total_steps, bootstrap=args.bootstrap, seed=args.seed,
        progress=None if args.json else text_bar())
    payload = result.to_dict()
    lo, hi = result.forecast.interval
    text = (f"{result.run}: {result.metric} at step {result.forecast.final_step:,} → {result.forecast.final_loss:.4f} "
            f"[{lo:.4f}, {hi:.4f}] ({result.forecast.confidence:.0%}, {args.law}; schedule {result.schedule.kind}, "
            f"{result.schedule_source})")
    text += "".join(f"\nwarning: {w}" for w in result.forecast.warnings)
    if args.backtest:
        rows = forecast_service.backtest_run(store, args.run, metric=result.metric, law=args.law)
        payload["backtest"] = [asdict(r) for r in rows]
        text += "\n" + "\n".join(f"  fitted on first {r.fraction:.0%}: predicted {r.predicted:.4f}, "
                                 f"actual {r.actual:.4f} ({r.error_pct:+.2f}%)"
                                 + (f", at a bound: {', '.join(r.at_bounds)}" if r.at_bounds else "") for r in rows)
    emit(args, payload, text)
    return 0
