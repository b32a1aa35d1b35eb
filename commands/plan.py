"""CLI: plan a training run for a budget (issue 4).

    python cli.py plan --flops 1e23 [--preset hoffmann|hoffmann_unrounded|epoch|kaplan|… | --fit ID]
                       [--inference-tokens T [--target-loss L | --reference-params N]]
                       [--experts E [--routed-preset clark_sbase | --routed-fit ID]] [--json]
    python cli.py plan --accelerator H100 --count 1024 --days 30 --mfu 0.4 [--dtype bf16] [--price 2.5]
    python cli.py plan --flops 1e22 --granularity 8|auto [--expansion 64] [--top-k K] [--fgmoe-fit ID] [--json]
    python cli.py plan --flops 1e22 --compare-moe [--expansion 64] [--fgmoe-fit ID] [--json]
    python cli.py plan --dcpt --n-params 1e9 --train-tokens 2e10 [--general-loss-max 2.5]
                       [--domain-fit ID --general-fit ID] [--json]
    python cli.py plan --inference-budget 1e15 [--strategy majority|best_of_n] [--tokens-per-sample 512]
                       [--sizes 1e9 7e9 34e9] [--accuracy-law A B SPREAD | --sample-law-from-evals BENCHMARK
                       [--sample-spread S]] [--json]

Prints N* (n_params), D* (tokens), tokens_per_param, loss and flops, with bootstrap interval bounds
when the fit stored them. Every number comes from core/planner.py, core/inference_aware.py and
core/accelerators.py, the functions the Planner page calls.

Which law a preset key or fit id means lives in core/law_choice.py, shared with pages/planner.py.
"""
from __future__ import annotations

import math

from commands.common import add_common, emit, open_store
from core.accelerators import accelerators, budget_from_accelerators
from core import format as fmt
from core.errors import PlanError
from core.inference_aware import inference_optimum, inference_optimum_for_model
from core.inference_compute import SampleAccuracyLaw
from core.laws import RoutedParams
from core.planner import MOE_COMPARISON_COLUMNS, compare_moe_laws, moe_comparison_table, moe_optimum, params_from_fit
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
    fg = p.add_argument_group("fine-grained MoE (Krajewski et al. 2024; core/fine_grained_moe.py)")
    fg.add_argument("--granularity", help="G ≥ 1, or 'auto' for the best of 1…64 → optimal active N and D, router "
                    "FLOPs counted")
    fg.add_argument("--expansion", default="64", help="expansion rate E: total expert params / one FFN (default 64)")
    fg.add_argument("--top-k", help="experts per token (default G: active = one FFN, as the paper)")
    fg.add_argument("--fgmoe-fit", help="id of a stored fine_grained_moe fit (default: the published constants)")
    fg.add_argument("--compare-moe", action="store_true", help="the budget through Krajewski et al. 2024 (best G and "
                    "G = 1), Clark et al. 2022's routed law (E = --expansion experts) and the dense Hoffmann et al. "
                    "2022 optimum: allocations side by side")
    dc = p.add_argument_group("domain mixture (D-CPT law, Que et al. 2024; core/dcpt.py): --dcpt needs no --flops")
    dc.add_argument("--dcpt", action="store_true", help="optimal domain ratio r_d at --n-params and --train-tokens")
    dc.add_argument("--n-params", help="model size N for --dcpt, e.g. 1e9")
    dc.add_argument("--train-tokens", help="training tokens D for --dcpt, e.g. 2e10")
    dc.add_argument("--general-loss-max", help="keep the general-corpus loss at most this (nats)")
    dc.add_argument("--domain-fit", help="id of a stored dcpt_domain fit (default: the demo law)")
    dc.add_argument("--general-fit", help="id of a stored dcpt_general fit (default: the demo law)")
    inf = p.add_argument_group("inference compute (Wu et al. 2024; core/inference_compute.py): no --flops needed")
    inf.add_argument("--inference-budget", help="inference FLOPs per problem → best model size and sample count")
    inf.add_argument("--strategy", default="majority", help="majority (voting) or best_of_n (oracle verifier)")
    inf.add_argument("--tokens-per-sample", default="512", help="generated tokens per sample (default 512)")
    inf.add_argument("--sizes", nargs="+", help="candidate model sizes (default: 70M … 70B)")
    inf.add_argument("--accuracy-law", nargs=3, metavar=("A", "B", "SPREAD"),
                     help="per-sample accuracy law σ(A + B·ln(N/1e9) − δ), δ ~ N(0, SPREAD) (default -3.7 0.47 2.5: Llemma on MATH)")
    inf.add_argument("--sample-law-from-evals", metavar="BENCHMARK",
                     help="fit A, B of that law to a stored benchmark, e.g. lambada_openai/acc (each model's last "
                          "evaluated checkpoint with a parameter count; an unknown name lists stored ones)")
    inf.add_argument("--sample-spread", metavar="S", help="difficulty spread held in that fit "
                     f"(default {SampleAccuracyLaw().spread:g}, the declared law's)")
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


_count, _flops = fmt.count, fmt.flops  # the app's one number format (core/format.py): 70.0B, 1.00e22


def _stored_params(args, stores: list, fit_id, law_keys: tuple) -> dict:
    """The params dict of stored fit ``fit_id``, which must be of one of ``law_keys``."""
    from services.fits import get_fit

    if not stores:
        stores.append(open_store(args))
    fit = get_fit(stores[0], int(_number("fit id", fit_id)))
    if fit.get("law") not in law_keys:
        raise PlanError(f"Fit #{fit_id} is a {fit.get('law')} fit; this needs a {' or '.join(law_keys)} fit.")
    return dict(fit["params"])


def _dcpt_plan(args) -> int:
    """plan --dcpt: Que et al. 2024's optimal domain ratio under a general-loss limit (core/dcpt.py)."""
    from core import dcpt

    if args.n_params is None or args.train_tokens is None:
        raise PlanError("--dcpt needs --n-params and --train-tokens, e.g. --n-params 1e9 --train-tokens 2e10.")
    stores: list = []
    try:
        domain = dcpt.DEMO_DOMAIN if args.domain_fit is None else dcpt.params_from(
            _stored_params(args, stores, args.domain_fit, ("dcpt_domain",)))
        general = dcpt.DEMO_GENERAL if args.general_fit is None else dcpt.params_from(
            _stored_params(args, stores, args.general_fit, ("dcpt_general",)))
    finally:
        for store in stores:
            store.close()
    limit = None if args.general_loss_max is None else _number("--general-loss-max", args.general_loss_max)
    mix = dcpt.optimal_ratio(_number("--n-params", args.n_params), _number("--train-tokens", args.train_tokens),
                             domain, general, limit)
    payload = {"dcpt": mix.to_dict(), "laws": {
        "domain": f"fit #{args.domain_fit}" if args.domain_fit else dcpt.DEMO_SOURCE,
        "general": f"fit #{args.general_fit}" if args.general_fit else dcpt.DEMO_SOURCE},
        "citation": "Que et al. 2024, D-CPT Law, its preferred parameterization; optimum of §4 (core/dcpt.py)"}
    emit(args, payload, "\n".join([
        f"D-CPT (Que et al. 2024) at N = {_count(mix.n_params)}, D = {_count(mix.tokens)}"
        + (f", general loss ≤ {fmt.loss(mix.general_loss_max)}" if mix.general_loss_max is not None else ""),
        f"  domain ratio r_d*  {fmt.number(mix.domain_ratio, 3)}" + ("  (the general-loss limit binds)" if mix.constrained else ""),
        f"  domain loss       {fmt.loss(mix.domain_loss)}",
        f"  general loss      {fmt.loss(mix.general_loss)}"]))
    return 0


def _inference_plan(args) -> int:
    """plan --inference-budget: model size vs samples at a per-problem budget (Wu et al. 2024)."""
    from core import inference_compute as ic

    fitted = None
    if args.sample_law_from_evals is not None:
        if args.accuracy_law is not None:
            raise PlanError("Give one accuracy law: --accuracy-law A B SPREAD, or --sample-law-from-evals BENCHMARK.")
        from services.inference import DEFAULT_SPREAD, fit_sample_law_from_evals  # only this needs the database

        spread = DEFAULT_SPREAD if args.sample_spread is None else _number("--sample-spread", args.sample_spread)
        fitted = fit_sample_law_from_evals(open_store(args), args.sample_law_from_evals, spread)
        law = fitted.law
    elif args.sample_spread is not None:
        raise PlanError("--sample-spread is the spread held in --sample-law-from-evals BENCHMARK; give both.")
    else:
        law = ic.SampleAccuracyLaw() if args.accuracy_law is None else ic.SampleAccuracyLaw(
            *(_number("--accuracy-law", v) for v in args.accuracy_law))
    sizes = ic.DEFAULT_SIZES if not args.sizes else [_number("--sizes", v) for v in args.sizes]
    result = ic.plan_inference(_number("--inference-budget", args.inference_budget), law, strategy=args.strategy,
                               tokens_per_sample=_number("--tokens-per-sample", args.tokens_per_sample), sizes=sizes)
    best = result.best
    lines = [f"inference compute (Wu et al. 2024), {result.strategy}, {_flops(result.budget_flops)} FLOPs per problem:",
             f"  best: {_count(best.n_params)} params × {best.samples} samples → accuracy {fmt.percent(best.accuracy)}"]
    if len(result.tied_sizes) > 1:
        lines.append(f"  ({len(result.tied_sizes)} sizes tie; chose {result.tie_rule})")
    lines += [f"  {_count(c.n_params):>8} × {c.samples:<8} {fmt.percent(c.accuracy)}" for c in result.table]
    payload = {"inference_compute": result.to_dict(),
               "citation": "Wu et al. 2024, Inference Scaling Laws; coverage Brown et al. 2024 eq. (1); "
                           "majority vote by the binomial formula (core/inference_compute.py)"}
    if fitted is not None:
        payload["sample_law_fit"] = fitted.to_dict()
        lines.insert(1, f"  accuracy law fitted to {fitted.benchmark} ({len(fitted.runs)} models, {fitted.n_sizes} sizes "
                        f"{fmt.count(min(fitted.n_params))}–{fmt.count(max(fitted.n_params))}, last checkpoints): "
                        f"a = {fmt.number(law.a)}, b = {fmt.number(law.b)}, s = {fmt.number(law.spread)} (held), "
                        f"RMSE {fmt.number(fitted.rmse, 3)}")
    emit(args, payload, "\n".join(lines))
    return 0


def _compare_moe(args) -> int:
    """plan --compare-moe: one budget through three MoE views and the dense optimum (core.planner.compare_moe_laws)."""
    from core.planner import check_flops

    for flag, given in (("--preset", args.preset), ("--fit", args.fit), ("--experts", args.experts),
                        ("--granularity", args.granularity), ("--top-k", args.top_k),
                        ("--inference-tokens", args.inference_tokens), ("--unique-tokens", args.unique_tokens),
                        ("--routed-preset", args.routed_preset), ("--routed-fit", args.routed_fit),
                        ("--target-loss", args.target_loss), ("--reference-params", args.reference_params)):
        if given is not None:
            raise PlanError(f"--compare-moe puts each paper's own law side by side (dense: Hoffmann et al. 2022); "
                            f"drop {flag}, or plan it without --compare-moe.")
    flops, _ = _budget(args)
    stores: list = []
    p = _fgmoe_params(args, stores)
    out = compare_moe_laws(check_flops(flops), p, _number("--expansion", args.expansion))
    table = moe_comparison_table(out)
    widths = {c: max(len(c), *(len(r[c]) for r in table)) for c in MOE_COMPARISON_COLUMNS}
    lines = [f"MoE views at {fmt.flops(out['flops'])} FLOPs (Krajewski et al. 2024: "
             + ("published constants" if args.fgmoe_fit is None else f"fit #{args.fgmoe_fit}") + "):",
             "  " + "  ".join(c.ljust(widths[c]) for c in MOE_COMPARISON_COLUMNS).rstrip()]
    lines += ["  " + "  ".join(r[c].ljust(widths[c]) for c in MOE_COMPARISON_COLUMNS).rstrip() for r in table]
    lines += ["The papers fit different data (C4 vs MassiveText): compare allocations, not losses."]
    lines += [f"note: {n}" for n in (*out["krajewski_best"]["notes"], out["wang_2024"])]
    emit(args, {"compare_moe": out, "table": table}, "\n".join(lines))
    return 0


def _fgmoe_params(args, stores: list):
    """The fine-grained MoE law: the published constants, or stored fit --fgmoe-fit."""
    from core import fine_grained_moe as fgm

    if args.fgmoe_fit is None:
        return fgm.KRAJEWSKI_2024
    params = _stored_params(args, stores, args.fgmoe_fit, ("fine_grained_moe",))
    return fgm.FineGrainedMoEParams(**{k: float(v) for k, v in params.items() if k in fgm.FGMOE_PARAMS})


def _fine_grained(args, flops, stores: list) -> tuple:
    """(payload, lines) of the fine-grained MoE plan at ``flops`` (Krajewski et al. 2024)."""
    from core import fine_grained_moe as fgm
    from core.planner import check_flops

    p = _fgmoe_params(args, stores)
    expansion = _number("--expansion", args.expansion)
    top_k = None if args.top_k is None else _number("--top-k", args.top_k)
    c = check_flops(flops)
    if str(args.granularity).strip().lower() == "auto":
        best, plans = fgm.best_granularity(c, p, expansion, top_k=top_k)
    else:
        best = fgm.moe_plan(c, p, fgm.MoEShape(expansion, _number("--granularity", args.granularity), top_k))
        plans = [best]
    payload = {**best.to_dict(), "by_granularity": [q.to_dict() for q in plans],
               "law": "fit #" + str(args.fgmoe_fit) if args.fgmoe_fit else "Krajewski et al. 2024 eq. (4), published"}
    lines = [f"fine-grained MoE (Krajewski et al. 2024), E = {fmt.number(best.expansion)}, G = {fmt.number(best.granularity)}, "
             f"top-k = {fmt.number(best.top_k)}:",
             f"  active params   {_count(best.n_active_params)}",
             f"  tokens          {_count(best.tokens)}",
             f"  total params    {_count(best.n_total_params)}",
             f"  router FLOPs    {fmt.percent(best.router_flops_share)} of training",
             f"  loss            {fmt.loss(best.loss)}"] + [f"  note: {n}" for n in best.notes]
    return payload, lines


def run_plan(args) -> int:
    if args.dcpt:
        return _dcpt_plan(args)
    if args.inference_budget is not None:
        return _inference_plan(args)
    if args.sample_law_from_evals is not None or args.sample_spread is not None:
        raise PlanError("--sample-law-from-evals plans inference compute: give --inference-budget too, e.g. 1e15.")
    if args.compare_moe:
        return _compare_moe(args)
    flops, cluster_budget = _budget(args)
    stores: list = []
    try:
        choice = _law_choice(args, stores)
        extra = {} if args.unique_tokens is None else {"unique_tokens": _number("--unique-tokens", args.unique_tokens)}
        if "granularity" in law_of(choice.params).plan_inputs:  # a fine_grained_moe fit: G of its generic optimum
            g = args.granularity if args.granularity not in (None, "auto") else "1"
            extra["granularity"] = _number("--granularity", g)
        best = plan_for(flops, choice, **extra)
        payload = {**best.to_dict(), "law": {"key": choice.key, "label": choice.label,
                                            "citation": choice.citation}}
        lines = [f"law               {choice.label}",
                 f"                  {choice.citation}",
                 f"flops             {_flops(best.flops)}",
                 f"n_params (N*)     {_count(best.n_params)}",
                 f"tokens (D*)       {_count(best.tokens)}",
                 f"tokens_per_param  {fmt.ratio(best.tokens_per_param)}",
                 f"loss              {fmt.loss(best.loss)}"]
        if best.intervals:
            lines.append(f"{fmt.level(best.interval_level)} bootstrap intervals ({best.interval_samples} fits):")
            lines += [f"  {k:<16}{fmt.interval(lo, hi, fmt.kind_of(k))}" for k, (lo, hi) in best.intervals.items()]
        if cluster_budget is not None:
            payload["budget"] = cluster_budget.to_dict()
            lines.append(f"budget            {fmt.number(cluster_budget.count)} × {cluster_budget.accelerator} "
                         f"({cluster_budget.dtype}, {fmt.number(cluster_budget.peak_tflops)} TFLOP/s) × "
                         f"{fmt.number(cluster_budget.days)} days × MFU {fmt.percent(cluster_budget.mfu, 0)}")
            if cluster_budget.cost is not None:
                lines.append(f"cost              {fmt.integer(cluster_budget.cost)} "
                             f"({fmt.integer(cluster_budget.accelerator_hours)} accelerator-hours)")

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
            lines += [f"inference-aware (Sardana & Frankle 2023) for loss {fmt.loss(aware.loss)} and "
                      f"{_count(aware.inference_tokens)} inference tokens:",
                      f"  n_params        {_count(aware.n_params)}",
                      f"  tokens          {_count(aware.tokens)}",
                      f"  total_flops     {_flops(aware.total_flops)} (training {_flops(aware.training_flops)})",
                      f"  saving          {fmt.percent(aware.flops_saving)} of the Chinchilla-optimal model's "
                      f"{_flops(aware.chinchilla_total_flops)} FLOPs ({_count(aware.chinchilla.n_params)} params)"]

        if args.experts is not None:
            routed = _routed_law(args, stores)
            if law_of(choice.params).key != "chinchilla":
                raise PlanError(f"MoE plans scale a dense Chinchilla law; {choice.label} is not one. "
                                "Pick a Chinchilla preset or fit.")
            moe = moe_optimum(flops, choice.params, routed, args.experts)
            payload["moe"] = moe.to_dict()
            lines += [f"MoE with {fmt.integer(moe.n_experts)} experts (routed law, Clark et al. 2022):",
                      f"  active params   {_count(moe.n_active_params)}",
                      f"  effective       {_count(moe.n_effective_params)}",
                      f"  total params    {_count(moe.n_total_params)}",
                      f"  tokens          {_count(moe.tokens)}",
                      f"  loss            {fmt.loss(moe.loss)}"]
        if args.granularity is not None:
            payload["fine_grained_moe"], more = _fine_grained(args, flops, stores)
            lines += more
    finally:
        for store in stores:
            store.close()
    emit(args, payload, "\n".join(lines))
    return 0
