"""CLI: train an IsoFLOP sweep of small models, or measure a model's throughput and MFU (issue 6).

    python cli.py probe sweep --budgets 1e13 3e13 --sizes 2e5 5e5 [--arch dense|moe|both]
        [--experts 8 --top-k 2] [--max-steps N] [--device auto] [--corpus bundled|sample] [--db URL] [--json]
    python cli.py probe throughput --params 1e6 [--batch 8 --seq-len 128] [--dtype auto|fp32|bf16]
        [--device auto] [--compile] [--db URL] [--json]

The plan (runs, FLOPs, estimated time, device) goes to stderr before any work, then a progress bar.
Every check runs first: a size that does not fit its budget, too few or too many steps, an unknown
device or a run name already stored exit 2 with one line and store nothing. Ctrl-C stops the sweep
and stores nothing; a finished sweep lands whole (runs, curves, held-out evals per domain, MoE
routing snapshots) in one transaction.

Several processes (torch.distributed; core/probes/distributed.py has the details):

    torchrun --nproc_per_node=2 cli.py probe sweep --budgets 1e13 --sizes 2e5 5e5 [--parallel auto|ddp|fsdp]
    torchrun --nproc_per_node=2 cli.py probe throughput --params 1e6 --json [--fsdp]
    (python -m torch.distributed.run ... where the torchrun script is not on PATH)

- Each process takes cuda:LOCAL_RANK with NCCL, or the CPU with gloo (``--device cpu``; set
  OMP_NUM_THREADS or --threads so the processes share the cores). One process (no torchrun) runs
  exactly as before.
- ``--parallel`` (``--fsdp`` = ``--parallel fsdp``): ddp replicates the model on every rank; fsdp
  shards it (FSDP2 ``fully_shard``) for a model that does not fit one device; auto (default) picks
  fsdp when the estimated training memory exceeds 90 % of the device's, else ddp. A model that fits
  neither way is refused before any work, with the estimate in the message.
- sweep: ``--batch-size`` is the GLOBAL batch, split evenly over the processes (a multiple of
  their number), so every run has the steps, tokens and names of the one-process sweep and its
  losses agree with it up to float reduction order (MoE: the load-balancing loss is per rank).
- throughput: ``--batch`` is PER PROCESS (weak scaling); ``tokens_per_s`` is the global rate, all
  processes' tokens over the slowest one's time, and MFU is against the sum of their peaks.
- Only rank 0 opens the store, writes each run once, and prints (the plan, the progress bar and
  the one JSON document with ``world_size``); the other ranks print nothing and exit with rank
  0's status (2 when a check refused the job).
"""
from __future__ import annotations

import sys

from commands.common import add_common, emit, open_store
from core.errors import ProbeError, ScaleScopeError
from core.progress import text_bar

ARCHS = {"dense": ("dense",), "moe": ("moe",), "both": ("dense", "moe")}


def _numbers(values, what: str) -> list:
    from services.probes import parse_numbers

    return parse_numbers(" ".join(values), what)


def _common_device(p) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda, cuda:N or mps")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (cuda only; ignored elsewhere)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--parallel", choices=["auto", "ddp", "fsdp"], default="auto",
                   help="under torchrun: ddp, fsdp, or auto = fsdp when the model would not fit one device")
    p.add_argument("--fsdp", dest="parallel", action="store_const", const="fsdp",
                   help="shorthand for --parallel fsdp (shard the model over the torchrun processes)")


def register(sub) -> None:
    probe = sub.add_parser("probe", help="train a small-model IsoFLOP sweep, or measure throughput/MFU")
    kinds = probe.add_subparsers(dest="probe_kind", required=True)

    p = add_common(kinds.add_parser("sweep", help="train an IsoFLOP grid: for each budget C, sizes N on D = C/(6N)"))
    p.add_argument("--budgets", nargs="+", metavar="C", help="compute budgets in FLOPs, e.g. 1e11 3e11 (IsoFLOP sweep)")
    p.add_argument("--sizes", nargs="+", required=True, metavar="N", help="target active parameter counts, e.g. 1.5e5 5e5")
    p.add_argument("--arch", choices=sorted(ARCHS), default="dense", help="dense (Llama-style), moe (Qwen3-MoE) or both")
    p.add_argument("--experts", type=int, default=8, help="experts per MoE layer (default 8)")
    p.add_argument("--top-k", type=int, default=2, help="experts per token (default 2)")
    p.add_argument("--seed", type=int, default=0, help="model init and data order (default 0)")
    p.add_argument("--seq-len", type=int, default=128, help="context length (default 128)")
    p.add_argument("--batch-size", type=int, default=4,
                   help="sequences per step (default 4); under torchrun the global batch, split over the processes")
    p.add_argument("--lr", type=float, help="peak learning rate for every run (default: by width, core.probes.sweep.default_lr)")
    p.add_argument("--min-steps", type=int, default=20, help="refuse runs with fewer steps (default 20)")
    p.add_argument("--max-steps", type=int, help="refuse runs with more steps (a guard against a long sweep)")
    p.add_argument("--eval-tokens", type=int, default=4096, help="held-out tokens per periodic evaluation (default 4096)")
    p.add_argument("--final-tokens-per-domain", type=int, default=8192,
                   help="held-out tokens per domain scored at the end (default 8192)")
    p.add_argument("--corpus", choices=["bundled", "sample"], default="bundled",
                   help="bundled: the full training text (~20 s to load); sample: the held-out sample split 2:1, "
                        "for quick tries")
    p.add_argument("--routing-snapshots", type=int, default=3, metavar="K",
                   help="routing captures per MoE run, evenly spaced (default 3; 0 = none)")
    p.add_argument("--name-prefix", default="probe", help="run names: PREFIX-arch-C…-N…-sSEED (default probe)")
    p.add_argument("--on-duplicate", choices=["replace", "rename"], help="when a run name exists (default: refuse)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and estimated time, train nothing")
    mix = p.add_argument_group("mixture sweep (D-CPT law, Que et al. 2024): --mixture replaces --budgets")
    mix.add_argument("--mixture", nargs="+", metavar="R", help="domain ratios r_d in (0, 1), e.g. 0.1 0.5 0.9: "
                     "train each size on each --tokens at each ratio; store domain_loss and general_loss")
    mix.add_argument("--tokens", nargs="+", metavar="D", help="training tokens per mixture run, e.g. 3e4 6e4")
    mix.add_argument("--domain", default="python", help="the domain corpus (a bundled domain; default python)")
    mix.add_argument("--general", nargs="+", metavar="DOMAIN", help="general-corpus domains (default: all others)")
    _common_device(p)
    p.set_defaults(handler=sweep)

    p = add_common(kinds.add_parser("throughput", help="forward and forward+backward tokens/s, TFLOP/s, MFU, peak memory"))
    p.add_argument("--params", type=float, required=True, help="target active parameter count, e.g. 1e6")
    p.add_argument("--arch", choices=["dense", "moe"], default="dense")
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--batch", type=int, default=8, help="sequences per pass (default 8); under torchrun per process")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per sequence (default 128)")
    p.add_argument("--dtype", choices=["auto", "fp32", "bf16"], default="auto",
                   help="auto: bf16 autocast on cuda, fp32 elsewhere (the only precisions the probe runs)")
    p.add_argument("--iters", type=int, default=5, help="timed passes per kind (default 5)")
    p.add_argument("--warmup", type=int, default=2, help="untimed passes first (default 2)")
    _common_device(p)
    p.set_defaults(handler=throughput)


def _set_threads(args) -> None:
    if args.threads is not None:
        if args.threads < 1:
            raise ProbeError(f"--threads must be at least 1 (got {args.threads}).")
        import torch

        torch.set_num_threads(args.threads)


def _sweep_bar():
    """core.progress.text_bar with the sweep's long messages shortened to what its line shows."""
    from services.probes import parse_progress

    bar = text_bar(sys.stderr)

    def draw(done: int, total: int, message: str = "") -> None:
        step = parse_progress(message)
        bar(done, total, step.short() if step else message)

    return draw


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def _on_every_rank(handler):
    """``handler(args, ctx)`` inside a torch.distributed session (nothing to set up in one process).
    A ScaleScopeError is raised on every rank (services use distributed.on_main); rank 0 prints it
    (cli.main), the other ranks exit 2 without a word."""

    def run(args) -> int:
        from core.probes import distributed  # torch: only probes pay for it

        main = distributed.launched().is_main
        try:
            with distributed.session(args.device) as ctx:
                return handler(args, ctx)
        except ScaleScopeError:
            if main:
                raise
            return 2

    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _say(ctx, message: str) -> None:
    """A line for the user on stderr, from rank 0 only."""
    if ctx.is_main:
        print(message, file=sys.stderr, flush=True)


def _processes(ctx, parallel) -> str:
    return f" × {ctx.world_size} processes ({ctx.backend}, {parallel})" if ctx.enabled else ""


@_on_every_rank
def sweep(args, ctx) -> int:
    from core.probes import distributed
    from core.probes.devices import pick_device
    from core.probes.sweep import SweepConfig, plan_sweep
    from services import probes as probe_runs

    if args.mixture is not None:
        if ctx.enabled:
            raise ProbeError("A mixture sweep runs in one process: start it with python, not torchrun.")
        return _mixture_sweep(args)
    if not args.budgets:
        raise ProbeError("Give --budgets (an IsoFLOP sweep) or --mixture with --tokens (a D-CPT mixture sweep).")
    budgets = _numbers(args.budgets, "--budgets")
    sizes = _numbers(args.sizes, "--sizes")
    if args.max_steps is not None and args.max_steps < 1:
        raise ProbeError(f"--max-steps must be at least 1 (got {args.max_steps}): a run of zero steps trains nothing.")
    if args.routing_snapshots < 0:
        raise ProbeError(f"--routing-snapshots must be 0 or more (got {args.routing_snapshots}).")
    _set_threads(args)
    pick_device(args.device)  # an unknown or absent device fails before the corpus loads
    cfg_args = dict(budgets=budgets, sizes=sizes, archs=ARCHS[args.arch], n_experts=args.experts, top_k=args.top_k,
                    seq_len=args.seq_len, batch_size=args.batch_size, lr=args.lr, min_steps=args.min_steps,
                    seed=args.seed, device=args.device, compile=args.compile, eval_tokens=args.eval_tokens,
                    final_tokens_per_domain=args.final_tokens_per_domain, parallel=args.parallel,
                    moe_checkpoints=args.routing_snapshots, name_prefix=args.name_prefix)
    plan_sweep(SweepConfig(**cfg_args), calibrate=False)  # sizes vs budgets, before the corpus loads
    on_duplicate = args.on_duplicate or "error"
    store = distributed.on_main(lambda: open_store(args))  # None on the other ranks: they never open it
    _say(ctx, f"loading the {args.corpus} corpus…")
    data = probe_runs.load_corpus(args.corpus, args.seq_len)
    cfg = SweepConfig(vocab_size=data.vocab_size, **cfg_args)
    distributed.on_main(lambda: probe_runs.check_sweep(
        store, plan_sweep(cfg, train_tokens=data.train.n_tokens, calibrate=False), on_duplicate=on_duplicate,
        max_steps=args.max_steps))
    # a few timed steps on rank 0 give the time estimate; every rank then runs rank 0's plan
    plan = distributed.on_main(lambda: plan_sweep(cfg, train_tokens=data.train.n_tokens), share=True)
    device = plan.device
    strategies = sorted({r.parallel for r in plan.runs if r.parallel})
    _say(ctx, f"plan: {len(plan.runs)} runs, {plan.total_flops:.3g} FLOPs, estimated {_duration(plan.est_seconds)} on "
              f"{device['kind']} ({device['name']}, {device['dtype']}, {device['threads']} threads)"
              + _processes(ctx, "/".join(strategies)))
    dist_info = {"world_size": ctx.world_size, "backend": ctx.backend, "parallel": strategies or ["single"],
                 "batch_rule": "--batch-size is the global batch, split evenly over the processes"}
    if args.dry_run:
        if not ctx.is_main:
            return 0
        rows = [{"name": r.name, "arch": r.arch, "budget_flops": r.budget, "n_params": r.counts.total,
                 "n_active_params": r.counts.active, "tokens": r.tokens, "flops": r.flops, "steps": r.steps,
                 "lr": r.lr, "est_seconds": r.est_seconds, "parallel": r.parallel or "single",
                 "memory_bytes": r.memory_bytes} for r in plan.runs]
        emit(args, {"device": device, "est_seconds": plan.est_seconds, "total_flops": plan.total_flops, "runs": rows,
                    **dist_info},
             "\n".join(f"{r['name']}: N={r['n_active_params']:,} D={r['tokens']:,} steps={r['steps']} "
                       f"est {r['est_seconds']:.0f} s" for r in rows))
        return 0
    outcome = probe_runs.run_and_store_sweep(store, cfg, data, plan=plan,
                                             progress=_sweep_bar() if ctx.is_main else None,
                                             on_duplicate=on_duplicate, max_steps=args.max_steps)
    if not ctx.is_main:
        return 0
    table = outcome.table()
    runs = [{"name": r["name"], "arch": r["arch"], "budget_flops": r["budget_flops"], "n_params": r["n_params"],
             "n_nonembedding_params": r["n_nonembedding_params"], "n_active_params": r["n_active_params"],
             "tokens": r["tokens"], "flops": r["flops"], "steps": r["steps"],
             "final_train_loss": r["final_train_loss"], "final_loss": r["final_eval_loss"],
             "wall_time_s": r["wall_time_s"]} for r in table.to_dict("records")]
    stored = outcome.stored
    payload = {"sweep": stored["sweep_id"], "tag": stored["tag"], "probe_id": stored["probe_id"], "device": device,
               "est_seconds": plan.est_seconds, "seconds": outcome.seconds, "runs": runs,
               "routing_capture_ids": stored["capture_ids"], **dist_info}
    text = table[["name", "n_active_params", "tokens", "flops", "final_eval_loss", "wall_time_s"]].to_string(index=False)
    emit(args, payload, f"{text}\nstored {len(runs)} runs tagged {stored['tag']}"
         + (f" and {len(stored['capture_ids'])} routing snapshots" if stored["capture_ids"] else "")
         + f" ({_duration(outcome.seconds)}; estimated {_duration(plan.est_seconds)})")
    return 0


def _mixture_sweep(args) -> int:
    """probe sweep --mixture: sizes × --tokens × ratios on the bundled corpus (core/probes/mixture.py)."""
    from core.probes.devices import pick_device
    from core.probes.mixture import MixtureConfig, plan_mixture
    from services import probes as probe_runs

    if not args.tokens:
        raise ProbeError("A mixture sweep needs --tokens, e.g. --tokens 3e4 6e4.")
    ratios, sizes, tokens = (_numbers(v, f) for v, f in ((args.mixture, "--mixture"), (args.sizes, "--sizes"),
                                                          (args.tokens, "--tokens")))
    _set_threads(args)
    pick_device(args.device)
    cfg_args = dict(domain=args.domain, ratios=tuple(ratios), sizes=tuple(sizes), tokens=tuple(tokens),
                    general_domains=tuple(args.general) if args.general else None, seq_len=args.seq_len,
                    batch_size=args.batch_size, lr=args.lr, min_steps=args.min_steps, seed=args.seed,
                    device=args.device, final_tokens_per_domain=args.final_tokens_per_domain,
                    name_prefix="mixture" if args.name_prefix == "probe" else args.name_prefix)
    store = open_store(args)
    try:
        print(f"loading the {args.corpus} corpus…", file=sys.stderr, flush=True)
        data = probe_runs.load_corpus(args.corpus, args.seq_len)
        cfg = MixtureConfig(vocab_size=data.vocab_size, **cfg_args)
        planned = plan_mixture(cfg, list(dict.fromkeys(data.train.domains)))
        print(f"plan: {len(planned)} mixture runs, {sum(r.steps for r in planned):,} steps", file=sys.stderr, flush=True)
        if args.dry_run:
            rows = [{"name": r.name, "n_active_params": r.n_active, "tokens": r.tokens, "mixture_ratio": r.ratio,
                     "steps": r.steps} for r in planned]
            emit(args, {"runs": rows}, "\n".join(f"{r['name']}: steps={r['steps']}" for r in rows))
            return 0
        outcome = probe_runs.run_and_store_mixture(store, cfg, data, progress=_sweep_bar(),
                                                   on_duplicate=args.on_duplicate or "error", max_steps=args.max_steps)
    finally:
        store.close()
    runs = [{"name": name, "n_active_params": r.n_active_params, "tokens": r.tokens,
             "mixture_ratio": r.config["mixture_ratio"], "domain_loss": r.config["final_domain_loss"],
             "general_loss": r.config["final_general_loss"], "wall_time_s": r.config["wall_time_s"]}
            for name, r in zip(outcome.names, outcome.runs)]
    stored = outcome.stored
    emit(args, {"sweep": stored["sweep_id"], "tag": stored["tag"], "probe_id": stored["probe_id"], "kind": "mixture",
                "domain": cfg.domain, "seconds": outcome.seconds, "runs": runs},
         "\n".join(f"{r['name']}: domain {r['domain_loss']:.4f} general {r['general_loss']:.4f}" for r in runs)
         + f"\nstored {len(runs)} mixture runs tagged {stored['tag']} ({_duration(outcome.seconds)})")
    return 0


@_on_every_rank
def throughput(args, ctx) -> int:
    from core.probes import distributed
    from core.probes.devices import pick_device
    from core.probes.model_configs import count_params
    from services import probes as probe_runs

    _set_threads(args)
    choice = pick_device(args.device)
    probe_runs.check_dtype(choice, args.dtype)
    if args.batch < 1 or args.iters < 1 or args.warmup < 0:
        raise ProbeError(f"--batch {args.batch} and --iters {args.iters} must be at least 1, --warmup at least 0.")
    shape = probe_runs.throughput_shape(args.params, args.arch, n_experts=args.experts, top_k=args.top_k,
                                        seq_len=args.seq_len)
    counts = count_params(shape)
    store = distributed.on_main(lambda: open_store(args))  # None on the other ranks: they never open it
    _say(ctx, f"throughput: {shape.arch} d={shape.d_model} L={shape.n_layers} N={counts.total:,} "
              f"(active {counts.active:,}), batch {args.batch}×{args.seq_len} on {choice.kind} ({choice.name}, "
              f"{choice.dtype})" + _processes(ctx, f"--parallel {args.parallel}"))
    results, ids = probe_runs.run_and_store_throughput(
        store, shape, batch_size=args.batch, seq_len=args.seq_len, device=args.device, dtype=args.dtype,
        compile=args.compile, iters=args.iters, warmup=args.warmup,
        progress=text_bar(sys.stderr) if ctx.is_main else None, parallel=args.parallel)
    if not ctx.is_main:
        return 0
    rows = [{"probe_id": i, "kind": r.kind, "tokens_per_s": r.tokens_per_s, "achieved_tflops": r.achieved_tflops,
             "mfu": r.mfu, "peak_tflops": r.peak_tflops, "peak_source": r.peak_source,
             "peak_memory_bytes": r.peak_memory_bytes, "flops_per_token": r.config["flops_per_token"]}
            for r, i in zip(results, ids)]
    training = next((r for r in rows if r["kind"] == "forward_backward"), rows[-1])
    payload = {"device": choice.kind, "device_name": choice.name, "dtype": choice.dtype,
               "compile": results[0].config["compile"], "shape": shape.as_dict(), "n_params": counts.total,
               "n_active_params": counts.active, "batch": args.batch, "seq_len": args.seq_len,
               "world_size": ctx.world_size, "backend": ctx.backend, "parallel": results[0].parallel,
               "global_batch": args.batch * ctx.world_size,
               "tokens_per_s": training["tokens_per_s"],  # forward+backward, all processes together
               "results": rows}
    text = "\n".join(f"{r['kind']:>16}: {r['tokens_per_s']:,.0f} tokens/s, {r['achieved_tflops']:.4g} TFLOP/s, "
                     f"MFU {'n/a' if r['mfu'] is None else format(r['mfu'], '.1%')}, "
                     f"peak memory {r['peak_memory_bytes'] / 2 ** 20:.0f} MiB (probe #{r['probe_id']})" for r in rows)
    if ctx.enabled:
        text += f"\n(all {ctx.world_size} processes together, {args.batch} sequences each per pass; {results[0].parallel})"
    emit(args, payload, text)
    return 0
