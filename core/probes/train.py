"""One training run of a transformers causal LM on token blocks: the probes' training loop.

AdamW; linear warmup then cosine decay to 10 % of the peak over exactly the run's steps (Hoffmann
et al. 2022 §3 and Fig. A1: a cosine longer than the run overstates the loss of short runs, so
every IsoFLOP run gets a schedule matched to its own token budget); warmup of N tokens for an
N-parameter model (Porian et al. 2024 §3: long fixed warmups hurt small models), capped at a
tenth of the run. Records the loss curve by step, tokens, FLOPs and wall time; a periodic
held-out loss; the final held-out loss per domain.

Held-out loss is measured per domain and averaged with the weights of the TRAINING mixture (each
domain's share of the training blocks): the loss of held-out text drawn like the training text,
whatever the held-out sample's own proportions are (prose is 4 % of training but 15 % of held-out).

Under torchrun (core.probes.distributed) ``batch_size`` is the GLOBAL batch, split evenly over the
ranks; each rank takes its slice of the same seeded global batch, DDP or FSDP averages the
gradients, the logged losses are averaged over ranks and the held-out loss is summed over the
ranks' shares of the held-out blocks: steps, tokens and losses are those of one process (up to
float reduction order). The model is wrapped per ``TrainConfig.parallel``; the result records how.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F

from core.corpus import Blocks
from core.errors import ProbeError
from core.probes import distributed
from core.probes.devices import DeviceChoice, autocast, pick_device, synchronize
from core.progress import ProgressFn, report

METRIC_COLUMNS = ["name", "step", "tokens", "flops", "wall_time", "value"]  # = importers.base's

CheckpointFn = Callable[[torch.nn.Module, int], None]


@dataclass(frozen=True)
class TrainConfig:
    tokens: int  # D, the token budget: steps = tokens // (batch_size · seq_len)
    batch_size: int = 4  # sequences per optimizer step; small, so tiny budgets still get many steps
    #                      (4 × 128 tokens beat 8 × 128 by 0.14 nats at equal tokens, d=64, 100k tokens)
    lr: float = 1e-2  # peak learning rate; at d=64 and 100k tokens 1e-2 beat 3e-3 by 0.35 nats and
    #                   3e-2 by 0.36 nats (assets/run_demo_sweep.py's models; benchmarks/RESULTS_probes.md)
    min_lr_ratio: float = 0.1  # cosine ends at 10 % of peak (Hoffmann et al. 2022 §3)
    warmup_tokens: Optional[int] = None  # None = N tokens (Porian et al. 2024); see max_warmup_fraction
    max_warmup_fraction: float = 0.1  # warmup never takes more than this share of the steps
    weight_decay: float = 0.1  # AdamW decoupled decay on matrices only (GPT-3, Brown et al. 2020)
    beta1: float = 0.9
    beta2: float = 0.95  # shorter second-moment memory, steadier at small batch (GPT-3 / LLaMA)
    grad_clip: float = 1.0  # global-norm clip, as in GPT-3 and LLaMA
    eval_every: int = 0  # steps between held-out evaluations; 0 = about 6 per run
    eval_tokens: int = 4096  # held-out tokens per periodic evaluation (split evenly over domains);
    #                          bounded, so scoring stays a small share of a run's compute
    final_tokens_per_domain: int = 8192  # held-out tokens per domain scored at the end: the per-domain
    #                                      evals, and (mixture-weighted) the final eval_loss
    log_every: int = 0  # steps between train-loss points (mean since the last); 0 = ~100 per run
    seed: int = 0  # data order; model init is seeded by whoever builds the model
    device: str = "auto"  # auto | cuda | cuda:N | mps | cpu
    compile: bool = False  # torch.compile the model (cuda only; ignored elsewhere)
    parallel: str = "auto"  # under torchrun: ddp, fsdp, or auto = ddp unless the model's training state
    #                         does not fit one device (core.probes.distributed.choose_strategy)

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    metrics: pd.DataFrame  # METRIC_COLUMNS: train_loss, eval_loss, lr (and router_aux_loss for MoE)
    domain_loss: dict  # {domain: final held-out loss (nats/token)}
    steps: int
    tokens: int  # trained tokens: steps · batch_size · seq_len
    flops: float  # flops_per_token · tokens
    final_train_loss: float  # mean train loss over the last log interval
    final_eval_loss: float  # after the last step: domain_loss averaged with domain_weights
    domain_weights: dict  # {domain: share of the training blocks}, the weights of eval_loss
    wall_time_s: float  # training time, evaluations excluded
    settings: dict  # what was run: steps, warmup, schedule, batch, lr, epochs of data, device
    device: dict  # DeviceChoice.as_dict()


def schedule_steps(cfg: TrainConfig, seq_len: int, n_params: float) -> tuple:
    """(steps, warmup_steps) for a config: checked here so a bad config fails before any work."""
    tokens_per_step = cfg.batch_size * seq_len
    if cfg.batch_size < 1 or seq_len < 2:
        raise ProbeError(f"batch_size {cfg.batch_size} and seq_len {seq_len} must be ≥ 1 and ≥ 2.")
    steps = int(cfg.tokens // tokens_per_step)
    if steps < 1:
        raise ProbeError(f"A budget of {cfg.tokens:,.0f} tokens is zero steps of {tokens_per_step} tokens; "
                         "give more tokens or a smaller batch.")
    if not (cfg.lr > 0 and 0 <= cfg.min_lr_ratio <= 1):
        raise ProbeError(f"lr {cfg.lr} must be > 0 and min_lr_ratio {cfg.min_lr_ratio} within [0, 1].")
    warmup_tokens = n_params if cfg.warmup_tokens is None else cfg.warmup_tokens
    cap = max(1, int(cfg.max_warmup_fraction * steps))
    warmup = int(min(cap, max(1, round(warmup_tokens / tokens_per_step))))
    return steps, warmup


def lr_at(step: int, steps: int, warmup: int, peak: float, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine from ``peak`` to ``min_ratio·peak`` at the
    last step (step counts from 0)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    span = max(1, steps - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return peak * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def domain_weights(train_blocks: Blocks, domains) -> dict:
    """{domain: share of ``train_blocks``} over ``domains`` (renormalised; equal if none trained)."""
    counts = {d: 0 for d in domains}
    for d in train_blocks.domains:
        if d in counts:
            counts[d] += 1
    total = sum(counts.values())
    if total == 0:
        return {d: 1.0 / len(counts) for d in counts}
    return {d: c / total for d, c in counts.items()}


def domain_subsets(blocks: Blocks, blocks_per_domain: int) -> dict:
    """{domain: its first ``blocks_per_domain`` blocks}: fixed, so every evaluation scores the same text."""
    out = {}
    for domain in dict.fromkeys(blocks.domains):
        subset = blocks.of_domain(domain)
        out[domain] = subset.select(range(min(len(subset), max(1, blocks_per_domain))))
    return out


def heldout_loss(model, subsets: dict, weights: dict, choice: DeviceChoice) -> tuple:
    """(mixture-weighted loss, {domain: loss}) of ``model`` on per-domain held-out ``subsets``."""
    per_domain = {d: evaluate(model, b, choice) for d, b in subsets.items()}
    return sum(weights[d] * v for d, v in per_domain.items()), per_domain


def _loss(model, ids: torch.Tensor, choice: DeviceChoice) -> tuple:
    """(language-model loss, router aux loss or None) for ids # (B, T)."""
    with autocast(choice):
        out = model(input_ids=ids)
    logits = out.logits  # (B, T, V)
    lm = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))
    aux = getattr(out, "aux_loss", None)
    return lm, aux


@torch.no_grad()
def evaluate(model, blocks: Blocks, choice: DeviceChoice, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy (nats/token) over ``blocks``.

    Under torchrun every rank scores its share of the blocks (distributed.shard) and the sums are
    all-reduced; every rank runs the same number of forward passes (an idle one scores a block it
    then ignores), as FSDP's all-gathers need.
    """
    was_training = model.training
    model.eval()
    mine = distributed.shard(len(blocks))
    per_rank = math.ceil(len(blocks) / max(1, mine.step))
    total, count = 0.0, 0
    for start in range(0, per_rank, batch_size):
        index = mine[start:start + batch_size]
        ids = blocks.ids[list(index) or [0]].to(choice.device)  # (B, T)
        lm, _ = _loss(model, ids, choice)
        n = len(index) * (ids.shape[1] - 1)
        total += float(lm) * n
        count += n
    total, count = distributed.all_reduce([total, count])
    model.train(was_training)
    return total / max(count, 1)


def train_model(model: torch.nn.Module, train_blocks: Blocks, heldout_blocks: Blocks, cfg: TrainConfig, *,
                flops_per_token: Optional[float] = None, progress: Optional[ProgressFn] = None,
                on_checkpoint: Optional[CheckpointFn] = None, checkpoint_steps: Sequence[int] = (),
                choice: Optional[DeviceChoice] = None) -> TrainResult:
    """Train ``model`` (a transformers causal LM) on ``train_blocks`` for ``cfg.tokens`` tokens.

    ``flops_per_token`` defaults to 6·N_active (the 6ND rule); ``on_checkpoint(model, step)`` is
    called after the steps in ``checkpoint_steps`` (1-based, model in eval mode). ``progress`` is
    called every step and may raise Cancelled. Returns the curves and final losses.
    """
    from core.probes.model_configs import count_model_params

    choice = choice or pick_device(cfg.device)
    ctx = distributed.current()
    seq_len = train_blocks.seq_len
    counts = count_model_params(model)
    n_active = counts.active
    steps, warmup = schedule_steps(cfg, seq_len, n_active)
    per_rank = distributed.split_batch(cfg.batch_size, ctx)
    mc = model.config
    strategy = distributed.choose_strategy(
        cfg.parallel, lambda shards: distributed.train_memory_bytes(
            counts.total, mc.hidden_size, mc.num_hidden_layers, mc.vocab_size, per_rank, seq_len, choice.dtype,
            shards=shards),
        distributed.capacity_bytes(choice, ctx), ctx, what=f"A model of {counts.total:,} parameters")
    if len(train_blocks) < cfg.batch_size:
        raise ProbeError(f"Only {len(train_blocks)} training blocks for a batch of {cfg.batch_size}; give more text.")
    if len(heldout_blocks) == 0:
        raise ProbeError("The held-out set is empty; give held-out documents to score the model on.")
    fpt = 6.0 * n_active if flops_per_token is None else float(flops_per_token)
    tokens_per_step = cfg.batch_size * seq_len
    eval_every = cfg.eval_every or max(1, steps // 6)
    log_every = cfg.log_every or max(1, steps // 100)
    checkpoint_steps = set(int(s) for s in checkpoint_steps)

    model.to(choice.device)
    model.train()
    wrapped = distributed.wrap_model(model, strategy, choice)  # before the optimizer: FSDP swaps the parameters
    forward_model = torch.compile(wrapped) if (cfg.compile and choice.kind == "cuda") else wrapped
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=1e-8)
    weights = domain_weights(train_blocks, dict.fromkeys(heldout_blocks.domains))
    n_domains = len(weights)
    eval_subsets = domain_subsets(heldout_blocks, cfg.eval_tokens // seq_len // n_domains)
    final_subsets = domain_subsets(heldout_blocks, cfg.final_tokens_per_domain // seq_len)
    generator = torch.Generator().manual_seed(cfg.seed)
    order = torch.randperm(len(train_blocks), generator=generator)
    cursor, epochs = 0, 0

    rows: list = []
    def record(name: str, step: int, value: float, wall: float) -> None:
        rows.append((name, float(step), float(step * tokens_per_step), float(step * tokens_per_step * fpt),
                     float(wall), float(value)))

    wall = 0.0
    sum_loss, sum_aux, n_logged = 0.0, 0.0, 0
    last_train = float("nan")
    record("eval_loss", 0, heldout_loss(model, eval_subsets, weights, choice)[0], 0.0)
    for step in range(1, steps + 1):
        synchronize(choice)
        t0 = time.perf_counter()
        if cursor + cfg.batch_size > len(order):
            order = torch.randperm(len(train_blocks), generator=generator)
            cursor, epochs = 0, epochs + 1
        batch = order[cursor:cursor + cfg.batch_size]  # the global batch: the same on every rank
        ids = train_blocks.ids[batch[ctx.rank * per_rank:(ctx.rank + 1) * per_rank]].to(choice.device)  # (B/W, T)
        cursor += cfg.batch_size
        lr = lr_at(step - 1, steps, warmup, cfg.lr, cfg.min_lr_ratio)
        for group in optimizer.param_groups:
            group["lr"] = lr
        lm, aux = _loss(forward_model, ids, choice)
        loss = lm if aux is None else lm + model.config.router_aux_loss_coef * aux
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        # the global batch's mean losses (one all-reduce under torchrun); also waits for the step
        lm_value, aux_value = distributed.mean_over_ranks([lm, lm if aux is None else aux], ctx)
        synchronize(choice)
        wall += time.perf_counter() - t0
        if not math.isfinite(lm_value):
            raise ProbeError(f"Training diverged at step {step} (loss {lm_value}); lower the learning rate "
                             f"(now {cfg.lr:g}).")
        sum_loss += lm_value
        sum_aux += 0.0 if aux is None else aux_value
        n_logged += 1
        if step % log_every == 0 or step == steps:
            last_train = sum_loss / n_logged
            record("train_loss", step, last_train, wall)
            record("lr", step, lr, wall)
            if aux is not None:
                record("router_aux_loss", step, sum_aux / n_logged, wall)
            sum_loss, sum_aux, n_logged = 0.0, 0.0, 0
        if step % eval_every == 0 and step < steps:
            record("eval_loss", step, heldout_loss(model, eval_subsets, weights, choice)[0], wall)
        if on_checkpoint is not None and step in checkpoint_steps:
            model.eval()
            on_checkpoint(model, step)
            model.train()
        report(progress, step, steps, f"step {step}/{steps} loss {lm_value:.3f}")

    eval_loss, domain_loss = heldout_loss(model, final_subsets, weights, choice)
    record("eval_loss", steps, eval_loss, wall)
    model.eval()
    metrics = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    tokens = steps * tokens_per_step
    settings = {
        "steps": steps, "warmup_steps": warmup, "tokens_per_step": tokens_per_step, "seq_len": seq_len,
        "batch_size": cfg.batch_size, "lr": cfg.lr, "min_lr_ratio": cfg.min_lr_ratio,
        "schedule": "linear warmup, cosine to min_lr_ratio over the run (Hoffmann et al. 2022)",
        "warmup_rule": "N tokens (Porian et al. 2024), at most max_warmup_fraction of steps"
        if cfg.warmup_tokens is None else f"{cfg.warmup_tokens} tokens",
        "weight_decay": cfg.weight_decay, "betas": [cfg.beta1, cfg.beta2], "grad_clip": cfg.grad_clip,
        "seed": cfg.seed, "epochs_of_data": tokens / max(1, train_blocks.n_tokens),
        "eval_blocks": sum(len(b) for b in eval_subsets.values()),
        "final_blocks": sum(len(b) for b in final_subsets.values()),
        "eval_loss_weights": "training-mixture share of each domain", "domain_weights": weights, "compile": bool(cfg.compile and choice.kind == "cuda"),
        "flops_per_token": fpt,
        "distributed": distributed.describe(strategy, ctx, batch_per_rank=per_rank,
                                            batch_rule="global batch fixed, split evenly over ranks"),
    }
    return TrainResult(metrics=metrics, domain_loss=domain_loss, steps=steps, tokens=tokens, flops=fpt * tokens,
                       final_train_loss=last_train, final_eval_loss=eval_loss, domain_weights=weights,
                       wall_time_s=wall,
                       settings=settings, device=choice.as_dict())
