"""IsoFLOP sweeps: for each compute budget C, train several model sizes N on D = C/(6N) tokens.

Hoffmann et al. 2022 §3.2 (Approach 2): along each IsoFLOP curve the loss has a minimum in N; the
minima across budgets trace the compute-optimal frontier, and the whole grid fits the parametric
law L(N, D) = E + A/N^α + B/D^β (their Approach 3). Dense runs use a Llama-style config, MoE runs
a Qwen3-MoE config; N is the ACTIVE parameter count throughout (tied embedding included, see
model_configs), so C = 6·N·D counts the compute each token really costs.

``plan_sweep`` checks everything and estimates the time before any training; ``run_sweep``
trains the runs and returns them as :class:`ProbeRun` — the fields of importers.base.ParsedRun
plus per-domain held-out evals — for the store to ingest.

Under torchrun every rank plans the same grid and trains every run together (core.probes.distributed:
the global batch ``batch_size`` is split over the ranks, so each run's steps, D and losses are
those of one process); ``plan_sweep`` picks DDP or FSDP per run from its memory estimate
(``SweepConfig.parallel``) and refuses a run that fits neither, before any training.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Mapping, Optional, Sequence, Union

import pandas as pd
import torch

from core.corpus import Blocks
from core.errors import ProbeError
from core.runs import ParsedRun
from core.probes import distributed
from core.probes.devices import DeviceChoice, autocast, pick_device, synchronize
from core.probes.flops import flops_per_token, tokens_for_budget
from core.probes.model_configs import (ModelShape, ParamCounts, build_model, count_params, shape_for_params)
from core.probes.train import TrainConfig, schedule_steps, train_model
from core.progress import ProgressFn, report

SOURCE_FORMAT = "probe_sweep"
FLOPS_RULE = "6*N_active*D"  # Kaplan et al. 2020 §2.1, N = active parameters incl. the tied embedding
EVAL_COLUMNS = ["step", "task", "metric", "value"]

# Sweep hook: on_checkpoint(model, step, run_name) — MoE runs call it at a few steps so a routing
# capture can snapshot the model (eval mode; do not modify it). Under torchrun EVERY rank calls it
# (an FSDP model's forward is collective); keep what it records on rank 0 only.
SweepCheckpointFn = Callable[[torch.nn.Module, int, str], None]


def default_lr(shape: ModelShape) -> float:
    """Peak AdamW learning rate by width: 1e-2 up to d = 128 (best of 3e-3 / 1e-2 / 3e-2 for the
    demo's d = 64 model), then ∝ 1/d as μP prescribes for Adam on hidden matrices (Yang et al.
    2021, Table 3): 5e-3 at d = 256, 1.7e-3 at d = 768."""
    return 1e-2 * min(1.0, 128 / shape.d_model)


@dataclass(frozen=True)
class SweepConfig:
    budgets: Sequence[float]  # compute budgets C (FLOPs), one IsoFLOP curve each
    # Model sizes (target ACTIVE parameters): one list for every budget, or {budget: [sizes]}
    # when larger budgets should try larger models. Each target is rounded to a regular shape.
    sizes: Union[Sequence[float], Mapping[float, Sequence[float]]]
    archs: Sequence[str] = ("dense",)  # "dense" and/or "moe"
    n_experts: int = 8  # experts per MoE layer (MoE runs only)
    top_k: int = 2  # experts per token (MoE runs only)
    vocab_size: int = 4096  # the bundled tokenizer's vocabulary
    seq_len: int = 128  # context length of every run
    batch_size: int = 4  # sequences per step: 512 tokens, so tiny budgets still get tens of steps
    lr: Optional[float] = None  # peak lr for every run; None = default_lr(shape) per run
    min_steps: int = 20  # a run with fewer optimizer steps is mostly warmup: refuse it
    max_epochs: float = 4.0  # refuse runs that would repeat the data more often (Muennighoff et al.
    #                          2023: up to ~4 epochs is nearly as good as fresh data)
    seed: int = 0  # model init and data order of every run
    device: str = "auto"  # auto | cuda | cuda:N | mps | cpu
    compile: bool = False  # torch.compile on cuda
    parallel: str = "auto"  # under torchrun: ddp, fsdp, or auto (fsdp for a run whose training state
    #                         would not fit one device; core.probes.distributed.choose_strategy)
    eval_tokens: int = 4096  # held-out tokens scored at each periodic evaluation (the curve)
    final_tokens_per_domain: int = 8192  # held-out tokens per domain at the end (evals, final loss)
    evals_per_run: int = 4  # periodic held-out evaluations per run (plus one at step 0)
    moe_checkpoints: int = 3  # routing snapshots per MoE run (evenly spaced, the last at the end)
    name_prefix: str = "probe"  # run names: <prefix>-<arch>-C<budget>-N<size>-s<seed>

    def as_dict(self) -> dict:
        """Plain JSON types (lists, str keys), so the dict survives a store or CSV round trip."""
        import json

        d = asdict(self)
        if isinstance(self.sizes, Mapping):
            d["sizes"] = {str(k): [float(x) for x in v] for k, v in self.sizes.items()}
        return json.loads(json.dumps(d))


@dataclass(frozen=True)
class PlannedRun:
    name: str
    arch: str
    budget: float  # the IsoFLOP budget C this run belongs to
    shape: ModelShape
    counts: ParamCounts
    steps: int
    warmup_steps: int
    tokens: int  # D actually trained: steps · batch · seq_len (C/(6N) rounded to whole steps)
    flops: float  # 6·N_active·D
    lr: float
    est_seconds: float = 0.0  # training + evaluation time expected on the chosen device
    parallel: Optional[str] = None  # how it trains under torchrun: "ddp" or "fsdp"; None in one process
    memory_bytes: float = 0.0  # estimated peak memory per rank (core.probes.distributed.train_memory_bytes)


@dataclass
class SweepPlan:
    runs: list  # [PlannedRun], budget by budget, small to large
    device: dict  # DeviceChoice.as_dict()
    total_flops: float  # training FLOPs of all runs
    est_seconds: float  # sum of the runs' estimates
    flops_per_s: dict  # {arch: {n_active: training FLOP/s}} the estimate was made from


@dataclass
class ProbeRun(ParsedRun):
    """One trained run: a :class:`core.runs.ParsedRun` (config holds budget, shape, lr schedule,
    hardware, seed, losses) plus its held-out evals."""

    source_format: str = SOURCE_FORMAT
    flops_rule: str = FLOPS_RULE
    evals: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=EVAL_COLUMNS))  # heldout_<domain>

    def parsed_run_fields(self) -> dict:
        """Keyword arguments for importers.base.ParsedRun (everything but ``evals``)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evals"}


# ------------------------------------------------------------------------------------------
# Planning
# ------------------------------------------------------------------------------------------
def _sizes_for(cfg: SweepConfig, budget: float) -> list:
    if isinstance(cfg.sizes, Mapping):
        for key, sizes in cfg.sizes.items():
            if math.isclose(float(key), budget, rel_tol=1e-9):
                return list(sizes)
        raise ProbeError(f"No sizes given for budget {budget:.3g}; give sizes for every budget.")
    return list(cfg.sizes)


def run_name(cfg: SweepConfig, arch: str, budget: float, n_active: int) -> str:
    mant, exp = f"{budget:.1e}".split("e")
    size = f"{n_active / 1e6:.2f}M" if n_active >= 1e6 else f"{n_active / 1e3:.0f}k"
    return f"{cfg.name_prefix}-{arch}-C{mant}e{int(exp)}-N{size}-s{cfg.seed}"


def _check_config(cfg: SweepConfig) -> None:
    if not cfg.budgets:
        raise ProbeError("No compute budgets given; give at least one, e.g. --budgets 1e11,3e11.")
    for b in cfg.budgets:
        try:
            value = float(b)
        except (TypeError, ValueError):
            value = float("nan")
        if not (math.isfinite(value) and value > 0):
            raise ProbeError(f"Budget {b!r} is not a positive number of FLOPs; use e.g. 3e11.")
    for arch in cfg.archs:
        if arch not in ("dense", "moe"):
            raise ProbeError(f"Unknown architecture {arch!r}; use dense and/or moe.")
    if not cfg.archs:
        raise ProbeError("No architecture given; use dense and/or moe.")
    if "moe" in cfg.archs and not (cfg.n_experts >= 2 and 1 <= cfg.top_k <= cfg.n_experts):
        raise ProbeError(f"MoE needs n_experts ≥ 2 and 1 ≤ top_k ≤ n_experts (got {cfg.n_experts}, {cfg.top_k}).")
    if cfg.batch_size < 1 or cfg.seq_len < 8:
        raise ProbeError(f"batch_size {cfg.batch_size} must be ≥ 1 and seq_len {cfg.seq_len} ≥ 8.")
    if cfg.min_steps < 1:
        raise ProbeError(f"min_steps must be ≥ 1 (got {cfg.min_steps}): a run of zero steps trains nothing.")
    distributed.split_batch(cfg.batch_size)  # under torchrun the global batch must split evenly


def plan_sweep(cfg: SweepConfig, train_tokens: Optional[int] = None, flops_per_s: Optional[float] = None,
               calibrate: bool = True) -> SweepPlan:
    """Lay out the grid and check it, before any training.

    Raises ProbeError for an unknown device or architecture, a size no shape can reach, or a
    size that does not fit its budget (fewer than ``min_steps`` steps, or more than
    ``max_epochs`` passes over ``train_tokens``). The time estimate uses ``flops_per_s`` when
    given, else a 3-step timing of the smallest and largest model on the device (``calibrate``),
    else 0.
    """
    _check_config(cfg)
    choice = pick_device(cfg.device)
    ctx = distributed.current()
    capacity = distributed.capacity_bytes(choice, ctx)
    per_rank = distributed.split_batch(cfg.batch_size, ctx)
    tokens_per_step = cfg.batch_size * cfg.seq_len
    runs: list = []
    for arch in cfg.archs:
        for budget in sorted(float(b) for b in cfg.budgets):
            sizes = _sizes_for(cfg, budget)
            if not sizes:
                raise ProbeError(f"No model sizes for budget {budget:.3g}; give at least one.")
            shapes = []
            for target in sorted(sizes):
                shape = shape_for_params(float(target), arch, cfg.vocab_size, cfg.seq_len, cfg.n_experts, cfg.top_k)
                if shape not in shapes:  # two targets can round to the same shape
                    shapes.append(shape)
            for shape in shapes:
                counts = count_params(shape)
                d_tokens = tokens_for_budget(budget, counts.active)
                steps = int(round(d_tokens / tokens_per_step))
                if steps < cfg.min_steps:
                    raise ProbeError(
                        f"A {arch} model of {counts.active:,} active parameters does not fit budget {budget:.3g}: "
                        f"D = C/(6N) = {d_tokens:,.0f} tokens is {steps} steps of {tokens_per_step} tokens "
                        f"(minimum {cfg.min_steps}); drop this size or raise the budget.")
                tokens = steps * tokens_per_step
                if train_tokens and tokens > cfg.max_epochs * train_tokens:
                    raise ProbeError(
                        f"A {arch} model of {counts.active:,} parameters at budget {budget:.3g} needs {tokens:,} "
                        f"tokens, {tokens / train_tokens:.1f} passes over the {train_tokens:,}-token corpus "
                        f"(limit {cfg.max_epochs:g}); use a larger size or a smaller budget.")
                lr = cfg.lr if cfg.lr is not None else default_lr(shape)
                tc = _train_config(cfg, tokens, lr)
                steps_chk, warmup = schedule_steps(tc, cfg.seq_len, counts.active)
                need = lambda shards, _s=shape, _n=counts.total: distributed.train_memory_bytes(  # noqa: E731
                    _n, _s.d_model, _s.n_layers, _s.vocab_size, per_rank, cfg.seq_len, choice.dtype, shards=shards)
                name = run_name(cfg, arch, budget, counts.active)
                strategy = distributed.choose_strategy(cfg.parallel, need, capacity, ctx, what=f"Run {name}")
                runs.append(PlannedRun(name, arch, budget, shape, counts, steps_chk, warmup, tokens,
                                       6.0 * counts.active * tokens, lr, parallel=strategy,
                                       memory_bytes=need(ctx.world_size if strategy == "fsdp" else 1)))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ProbeError("Two runs of the sweep would share a name; give distinct budgets and sizes.")
    rates: dict = {}  # {arch: {n_active: FLOP/s}}
    if flops_per_s is None and calibrate:
        for arch in cfg.archs:
            mine = [r for r in runs if r.arch == arch]
            for run in {min(mine, key=lambda r: r.counts.active), max(mine, key=lambda r: r.counts.active)}:
                rates.setdefault(arch, {})[run.counts.active] = measure_train_flops_per_s(
                    run.shape, cfg.batch_size, cfg.seq_len, choice)
    elif flops_per_s:
        rates = {arch: {1: float(flops_per_s)} for arch in cfg.archs}
    runs = [_with_estimate(r, cfg, rates, ctx.world_size) for r in runs]
    return SweepPlan(runs=runs, device=choice.as_dict(), total_flops=sum(r.flops for r in runs),
                     est_seconds=sum(r.est_seconds for r in runs), flops_per_s=rates)


def _train_config(cfg: SweepConfig, tokens: int, lr: float, parallel: Optional[str] = None) -> TrainConfig:
    steps = tokens // (cfg.batch_size * cfg.seq_len)
    return TrainConfig(tokens=tokens, batch_size=cfg.batch_size, lr=lr, seed=cfg.seed, device=cfg.device,
                       compile=cfg.compile, parallel=parallel or cfg.parallel, eval_tokens=cfg.eval_tokens,
                       final_tokens_per_domain=cfg.final_tokens_per_domain,
                       eval_every=max(1, steps // max(1, cfg.evals_per_run)))


def _rate_for(rates: dict, n_active: int) -> float:
    """Interpolate measured FLOP/s in log N between the calibrated sizes (constant outside)."""
    if not rates:
        return 0.0
    pts = sorted(rates.items())
    if len(pts) == 1 or n_active <= pts[0][0]:
        return pts[0][1]
    if n_active >= pts[-1][0]:
        return pts[-1][1]
    (n0, r0), (n1, r1) = pts[0], pts[-1]
    w = (math.log(n_active) - math.log(n0)) / (math.log(n1) - math.log(n0))
    return math.exp((1 - w) * math.log(r0) + w * math.log(r1))


def _with_estimate(run: PlannedRun, cfg: SweepConfig, rates: dict, world_size: int = 1) -> PlannedRun:
    # one process's measured rate × the ranks: ideal scaling (the all-reduce is not in the estimate)
    rate = _rate_for(rates.get(run.arch, {}), run.counts.active) * world_size
    if rate <= 0:
        return run
    # scoring: evals_per_run + 1 passes of eval_tokens and the final per-domain pass (5 domains),
    # forward only = 1/3 of a training token's FLOPs
    eval_tokens = cfg.eval_tokens * (cfg.evals_per_run + 1) + 5 * cfg.final_tokens_per_domain
    seconds = (run.flops + 2.0 * run.counts.active * eval_tokens) / rate
    return PlannedRun(**{**run.__dict__, "est_seconds": seconds})


def measure_train_flops_per_s(shape: ModelShape, batch_size: int, seq_len: int, choice: DeviceChoice,
                              steps: int = 3) -> float:
    """Training FLOP/s (6·N_active per token) of ``shape`` on the device, from a few AdamW steps on
    random tokens (the first one, warm-up, untimed)."""
    model = build_model(shape).to(choice.device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ids = torch.randint(0, shape.vocab_size, (batch_size, seq_len), device=choice.device)  # (B, T)
    elapsed = 0.0
    for i in range(steps + 1):
        synchronize(choice)
        t0 = time.perf_counter()
        with autocast(choice):
            logits = model(input_ids=ids).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
                                                 ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        synchronize(choice)
        if i > 0:
            elapsed += time.perf_counter() - t0
    return 6.0 * count_params(shape).active * batch_size * seq_len * steps / max(elapsed, 1e-9)


# ------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------
def checkpoint_steps(steps: int, n: int) -> list:
    """``n`` evenly spaced steps in 1..steps, the last one = steps."""
    if n <= 0:
        return []
    return sorted({max(1, round(steps * (i + 1) / n)) for i in range(n)})


def run_sweep(cfg: SweepConfig, train_blocks: Blocks, heldout_blocks: Blocks, *,
              plan: Optional[SweepPlan] = None, progress: Optional[ProgressFn] = None,
              on_checkpoint: Optional[SweepCheckpointFn] = None, corpus_info: Optional[dict] = None) -> list:
    """Train every run of the sweep; returns a list of ProbeRun in plan order.

    ``progress(done_steps, total_steps, message)`` covers the whole sweep and may raise Cancelled
    (runs finished so far are dropped with the rest: a sweep lands whole or not at all).
    ``on_checkpoint(model, step, run_name)`` is called for MoE runs at ``cfg.moe_checkpoints``
    evenly spaced steps. ``corpus_info`` is stored in each run's config (e.g. the corpus manifest).
    Under torchrun every rank calls this with the same plan and returns the same runs; give
    ``progress`` on rank 0 only (a Cancelled raised on one rank alone would leave the others waiting).
    """
    max_id = int(train_blocks.ids.max())
    if max_id >= cfg.vocab_size:
        raise ProbeError(f"Token id {max_id} is outside the model vocabulary ({cfg.vocab_size}); set vocab_size "
                         "to the tokenizer's vocabulary size.")
    plan = plan or plan_sweep(cfg, train_tokens=train_blocks.n_tokens, calibrate=False)
    choice = pick_device(cfg.device)
    total_steps = sum(r.steps for r in plan.runs)
    done_before = 0
    results = []
    for index, run in enumerate(plan.runs, 1):
        def inner(done: int, total: int, message: str, _base=done_before, _run=run, _i=index) -> None:
            report(progress, _base + done, total_steps, f"run {_i}/{len(plan.runs)} {_run.name}: {message}")

        hook, ckpts = None, []
        if run.arch == "moe" and on_checkpoint is not None:
            ckpts = checkpoint_steps(run.steps, cfg.moe_checkpoints)
            hook = lambda model, step, _name=run.name: on_checkpoint(model, step, _name)  # noqa: E731
        model = build_model(run.shape, seed=cfg.seed)
        fpt = flops_per_token(run.shape, cfg.seq_len)
        result = train_model(model, train_blocks, heldout_blocks, _train_config(cfg, run.tokens, run.lr, run.parallel),
                             progress=inner, on_checkpoint=hook, checkpoint_steps=ckpts, choice=choice)
        done_before += run.steps
        results.append(_to_probe_run(cfg, run, result, fpt, corpus_info))
        del model
    return results


def _to_probe_run(cfg: SweepConfig, run: PlannedRun, result, fpt, corpus_info) -> ProbeRun:
    config = {
        "probe": "isoflop_sweep",
        "budget_flops": run.budget,
        "shape": run.shape.as_dict(),
        "params": run.counts.as_dict(),
        "lr_rule": "fixed" if cfg.lr is not None else "default_lr: 1e-2·min(1, 128/d)",
        **result.settings,
        "hardware": result.device,
        "final_train_loss": result.final_train_loss,
        "final_eval_loss": result.final_eval_loss,
        "wall_time_s": result.wall_time_s,
        "train_flops_per_token_with_attention": fpt.train,  # PaLM appendix B; 6N is the recorded rule
        "sweep": cfg.as_dict(),
    }
    if corpus_info:
        config["corpus"] = corpus_info
    evals = pd.DataFrame([(float(result.steps), f"heldout_{d}", "loss", float(v))
                          for d, v in result.domain_loss.items()], columns=EVAL_COLUMNS)
    moe = run.arch == "moe"
    return ProbeRun(
        name=run.name, arch=run.arch,
        n_params=float(run.counts.total), n_nonembedding_params=float(run.counts.nonembedding),
        n_active_params=float(run.counts.active),
        n_experts=run.shape.n_experts if moe else None, top_k=run.shape.top_k if moe else None,
        seq_len=cfg.seq_len, tokens_per_step=float(cfg.batch_size * cfg.seq_len),
        tokens=float(result.tokens), flops=6.0 * run.counts.active * result.tokens,
        config=config, tags=["probe", "isoflop", f"budget={run.budget:.3g}"],
        metrics=result.metrics, evals=evals,
    )


def runs_table(runs: Sequence[ProbeRun]) -> pd.DataFrame:
    """One row per run (sizes, budget, final losses): what the demo CSV and the CLI print."""
    rows = []
    for r in runs:
        rows.append({
            "name": r.name, "source_format": r.source_format, "arch": r.arch,
            "budget_flops": r.config.get("budget_flops"),
            "n_params": r.n_params, "n_nonembedding_params": r.n_nonembedding_params,
            "n_active_params": r.n_active_params, "n_experts": r.n_experts, "top_k": r.top_k,
            "d_model": r.config["shape"]["d_model"], "n_layers": r.config["shape"]["n_layers"],
            "seq_len": r.seq_len, "tokens_per_step": r.tokens_per_step, "tokens": r.tokens, "flops": r.flops,
            "flops_rule": r.flops_rule, "steps": r.config.get("steps"), "lr": r.config.get("lr"),
            "warmup_steps": r.config.get("warmup_steps"), "final_train_loss": r.config.get("final_train_loss"),
            "final_eval_loss": r.config.get("final_eval_loss"), "wall_time_s": r.config.get("wall_time_s"),
            "device": r.config["hardware"]["name"], "seed": r.config.get("seed"),
            **{f"eval_{row.task}": row.value for row in r.evals.itertuples()},
        })
    return pd.DataFrame(rows)


RUNS_CSV, METRICS_CSV, EVALS_CSV = "sweep_runs.csv", "sweep_metrics.csv", "sweep_evals.csv"


def table_names(prefix: str = "sweep") -> tuple[str, str, str]:
    """The three CSV names of a sweep written with ``prefix`` (assets/demo/ holds "sweep" and "mixture")."""
    return f"{prefix}_runs.csv", f"{prefix}_metrics.csv", f"{prefix}_evals.csv"


def write_tables(runs: Sequence[ProbeRun], folder, prefix: str = "sweep") -> list:
    """Write runs as three CSVs in ``folder`` (runs with their config as JSON, long metrics, evals),
    named by :func:`table_names`; :func:`read_tables` reads them back. Returns the paths written."""
    import json
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / name for name in table_names(prefix)]
    table = runs_table(runs)
    table["config_json"] = [json.dumps(r.config, sort_keys=True) for r in runs]
    table["tags_json"] = [json.dumps(list(r.tags)) for r in runs]
    table.to_csv(paths[0], index=False)
    pd.concat([r.metrics.assign(run=r.name) for r in runs])[
        ["run", "name", "step", "tokens", "flops", "wall_time", "value"]].to_csv(paths[1], index=False)
    pd.concat([r.evals.assign(run=r.name) for r in runs])[["run", *EVAL_COLUMNS]].to_csv(paths[2], index=False)
    return paths


def read_tables(folder, prefix: str = "sweep") -> list:
    """ProbeRuns from the CSVs of :func:`write_tables` (e.g. assets/demo/, to seed a store)."""
    import json
    from pathlib import Path

    folder = Path(folder)
    paths = [folder / name for name in table_names(prefix)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ProbeError(f"{folder} lacks {', '.join(missing)}; regenerate it with `python assets/run_demo_sweep.py`"
                         " (or assets/run_demo_mixture.py for the mixture sweep).")
    table, metrics, evals = (pd.read_csv(p) for p in paths)
    opt_int = lambda v: None if pd.isna(v) else int(v)  # noqa: E731
    runs = []
    for row in table.itertuples(index=False):
        config = json.loads(row.config_json)
        tags = json.loads(row.tags_json) if "tags_json" in table.columns else \
            ["probe", "isoflop", f"budget={float(row.budget_flops):.3g}"]
        m = metrics[metrics["run"] == row.name].drop(columns="run").reset_index(drop=True)
        e = evals[evals["run"] == row.name].drop(columns="run").reset_index(drop=True)
        runs.append(ProbeRun(
            name=row.name, source_format=getattr(row, "source_format", SOURCE_FORMAT), arch=row.arch,
            n_params=float(row.n_params), n_nonembedding_params=float(row.n_nonembedding_params),
            n_active_params=float(row.n_active_params), n_experts=opt_int(row.n_experts), top_k=opt_int(row.top_k),
            seq_len=int(row.seq_len), tokens_per_step=float(row.tokens_per_step), tokens=float(row.tokens),
            flops=float(row.flops), flops_rule=row.flops_rule, config=config, tags=tags,
            metrics=m[["name", "step", "tokens", "flops", "wall_time", "value"]].astype(
                {"step": "float64", "tokens": "float64", "flops": "float64", "wall_time": "float64",
                 "value": "float64"}),
            evals=e[EVAL_COLUMNS]))
    return runs
