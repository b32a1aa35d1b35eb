"""CLI: plan a training run for a budget (issue 4).

    python cli.py plan --flops 1e23 [--preset hoffmann|hoffmann_unrounded|epoch|kaplan|… | --fit ID]
                       [--inference-tokens T [--target-loss L | --reference-params N]]
                       [--experts E [--routed-preset clark_sbase | --routed-fit ID]] [--json]
    python cli.py plan --accelerator H100 --count 1024 --days 30 --mfu 0.4 [--dtype bf16] [--price 2.5]

Prints N* (n_params), D* (tokens), tokens_per_param, loss and flops, with bootstrap interval bounds
when the fit stored them. Every number comes from core/planner.py, core/inference_aware.py and
core/accelerators.py, the functions the Planner page calls.

Which law a preset key or fit id means lives in core/law_choice.py, shared with pages/planner.py.
"""
from __future__ import annotations

import math

from commands.common import add_common, emit, open_store
from core.accelerators import accelerators, budget_from_accelerators
from core.errors import PlanError
from core.inference_aware import inference_optimum, inference_optimum_for_model
from core.laws import RoutedParams
from core.planner import moe_optimum, params_from_fit
from core.registry import law_of
from core.presets import list_presets
from core.law_choice import (
    DEFAULT_PRESET, DEFAULT_ROUTED_PRESET, LawChoice, fit_for_planner, plan_for, preset_choice,
    resolve_accelerator, stored_fit_choice,
)

# --------------------------------------------------------------------------------------------
# The sub-command
# --------------------------------------------------------------------------------------------
def register(sub) -> None:
    p = add_common(sub.add_parser("plan", help="compute-optimal model size and tokens for a budget"))
    budget = p.add_argument_group("budget (give --flops, or --accelerator with --count/--days/--mfu)")
    budget.add_argument("--flops", help="training FLOPs, e.g. 1e23")
    budget.add_argument("--accelerator", help=f"e.g. H100 ({', '.join(accelerators())})")
    budget.add_argument("--dtype", default="bf16", help="precision of the peak throughput (default bf16)")
    budget.add_argument("--count", help="number of accelerators, e.g. 1024")
    budget.add_argument("--days", help="wall-clock training days, e.g. 30")
    budget.add_argument("--mfu", default="0.4", help="model FLOPs utilisation as a fraction (default 0.4)")
    budget.add_argument("--price", help="price per accelerator-hour → cost")
    law = p.add_mutually_exclusive_group()
    law.add_argument("--preset", help=f"published law (default {DEFAULT_PRESET}): "
                     + ", ".join(x.key for x in list_presets() if x.law != "routed"))
    law.add_argument("--fit", help="id of a stored fit (python cli.py fits)")
    p.add_argument("--unique-tokens", help="distinct tokens of the dataset, for a data-constrained law "
                   "(Muennighoff et al. 2023), e.g. 1e12")
    p.add_argument("--inference-tokens", help="lifetime inference demand in tokens → inference-aware plan")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--target-loss", help="quality target of the inference-aware plan (default: "
                        "the loss of this budget's compute-optimal model)")
    target.add_argument("--reference-params", help="target = the quality of the Chinchilla-optimal "
                        "model of this many parameters, e.g. 13e9 (Sardana & Frankle 2023)")
    p.add_argument("--experts", help="experts per routed layer (> 1 plans a routed MoE model)")
    routed = p.add_mutually_exclusive_group()
    routed.add_argument("--routed-preset", help=f"routed law for --experts (default {DEFAULT_ROUTED_PRESET})")
    routed.add_argument("--routed-fit", help="id of a stored routed fit for --experts")
    p.set_defaults(handler=run_plan)


def _number(flag: str, value) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise PlanError(f"{flag} {value!r} is not a number; e.g. {flag} 1e23.") from None
    if not math.isfinite(x):
        raise PlanError(f"{flag} {value!r} must be finite.")
    return x


def _budget(args):
    """(flops, Budget or None) from --flops or the accelerator options."""
    cluster = any(getattr(args, k) is not None for k in ("accelerator", "count", "days"))
    if args.flops is not None and cluster:
        raise PlanError("Give the budget once: either --flops, or --accelerator with --count and --days.")
    if args.flops is not None:
        return args.flops, None  # core.planner.check_flops validates it
    if not cluster:
        raise PlanError("No budget: give --flops (e.g. 1e23) or --accelerator H100 --count 1024 --days 30.")
    missing = [f"--{k}" for k in ("accelerator", "count", "days") if getattr(args, k) is None]
    if missing:
        raise PlanError(f"A cluster budget needs --accelerator, --count and --days; missing {', '.join(missing)}.")
    price = None if args.price is None else _number("--price", args.price)
    cluster_budget = budget_from_accelerators(resolve_accelerator(args.accelerator), args.count, args.days,
                                              args.mfu, dtype=args.dtype, price_per_hour=price)
    return cluster_budget.flops, cluster_budget


def _law_choice(args, store_holder: list) -> LawChoice:
    if args.fit is None:
        return preset_choice(args.preset or DEFAULT_PRESET)
    from services.fits import get_fit  # only a --fit needs the database

    store_holder.append(open_store(args))
    return stored_fit_choice(get_fit(store_holder[0], int(_number("--fit", args.fit))))


def _routed_law(args, store_holder: list) -> RoutedParams:
    if args.routed_fit is None:
        return preset_choice(args.routed_preset or DEFAULT_ROUTED_PRESET).params
    from services.fits import get_fit

    if not store_holder:
        store_holder.append(open_store(args))
    return params_from_fit(fit_for_planner(get_fit(store_holder[0], int(_number("--routed-fit", args.routed_fit)))))


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def run_plan(args) -> int:
    flops, cluster_budget = _budget(args)
    stores: list = []
    try:
        choice = _law_choice(args, stores)
        extra = {} if args.unique_tokens is None else {"unique_tokens": _number("--unique-tokens", args.unique_tokens)}
        best = plan_for(flops, choice, **extra)
        payload = {**best.to_dict(), "law": {"key": choice.key, "label": choice.label,
                                            "citation": choice.citation}}
        lines = [f"law               {choice.label}",
                 f"                  {choice.citation}",
                 f"flops             {_fmt(best.flops)}",
                 f"n_params (N*)     {_fmt(best.n_params)}",
                 f"tokens (D*)       {_fmt(best.tokens)}",
                 f"tokens_per_param  {best.tokens_per_param:.4g}",
                 f"loss              {best.loss:.4f}"]
        if best.intervals:
            lines.append(f"{best.interval_level:.0%} bootstrap intervals ({best.interval_samples} fits):")
            lines += [f"  {k:<16}{_fmt(lo)} – {_fmt(hi)}" for k, (lo, hi) in best.intervals.items()]
        if cluster_budget is not None:
            payload["budget"] = cluster_budget.to_dict()
            lines.append(f"budget            {cluster_budget.count:g} × {cluster_budget.accelerator} "
                         f"({cluster_budget.dtype}, {cluster_budget.peak_tflops:g} TFLOP/s) × "
                         f"{cluster_budget.days:g} days × MFU {cluster_budget.mfu:g}")
            if cluster_budget.cost is not None:
                lines.append(f"cost              {cluster_budget.cost:,.0f} "
                             f"({cluster_budget.accelerator_hours:,.0f} accelerator-hours)")

        if args.inference_tokens is not None:
            if law_of(choice.params).key != "chinchilla":
                raise PlanError("The inference-aware plan needs a Chinchilla law (E, A, B, α, β); "
                                f"{choice.label} is not one. Pick a Chinchilla preset or fit.")
            if args.reference_params is not None:
                aware = inference_optimum_for_model(args.reference_params, args.inference_tokens, choice.params)
            else:
                target = best.loss if args.target_loss is None else args.target_loss
                aware = inference_optimum(target, args.inference_tokens, choice.params)
            payload["inference"] = aware.to_dict()
            lines += [f"inference-aware (Sardana & Frankle 2023) for loss {aware.loss:.4f} and "
                      f"{_fmt(aware.inference_tokens)} inference tokens:",
                      f"  n_params        {_fmt(aware.n_params)}",
                      f"  tokens          {_fmt(aware.tokens)}",
                      f"  total_flops     {_fmt(aware.total_flops)} (training {_fmt(aware.training_flops)})",
                      f"  saving          {aware.flops_saving:.1%} of the Chinchilla-optimal model's "
                      f"{_fmt(aware.chinchilla_total_flops)} FLOPs ({_fmt(aware.chinchilla.n_params)} params)"]

        if args.experts is not None:
            routed = _routed_law(args, stores)
            if law_of(choice.params).key != "chinchilla":
                raise PlanError(f"MoE plans scale a dense Chinchilla law; {choice.label} is not one. "
                                "Pick a Chinchilla preset or fit.")
            moe = moe_optimum(flops, choice.params, routed, args.experts)
            payload["moe"] = moe.to_dict()
            lines += [f"MoE with {moe.n_experts:g} experts (routed law, Clark et al. 2022):",
                      f"  active params   {_fmt(moe.n_active_params)}",
                      f"  effective       {_fmt(moe.n_effective_params)}",
                      f"  total params    {_fmt(moe.n_total_params)}",
                      f"  tokens          {_fmt(moe.tokens)}",
                      f"  loss            {moe.loss:.4f}"]
    finally:
        for store in stores:
            store.close()
    emit(args, payload, "\n".join(lines))
    return 0
