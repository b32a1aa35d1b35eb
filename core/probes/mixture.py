"""Mixture sweeps: train small models on a domain/general mixture at several domain ratios r_d and
record the held-out loss of each corpus — the data of the D-CPT law (Que et al. 2024, core/dcpt.py).

For each (model size N, tokens D, ratio r_d) of the grid, the training blocks are a seeded draw of
round(r_d·n) blocks of the DOMAIN corpus (one domain of the bundled corpus, e.g. python) and the rest
from the GENERAL corpus (the other domains, in their own proportions); core.probes.train trains the
model on them. The held-out loss is then scored per domain (the same held-out blocks for every run):

- ``domain_loss``  the held-out loss on the domain corpus;
- ``general_loss`` the held-out loss on the general corpus: the mean over its domains weighted by
  their shares of the general training pool (held-out text drawn like the general corpus).

Both are stored as final metric rows (and the per-domain losses as evals, as an IsoFLOP sweep does),
with the ratio in each run's config (``mixture_ratio``), so `cli.py fit --law dcpt_domain --metric
domain_loss` fits the law on data ScaleScope measured itself.

What differs from the paper: Que et al. CONTINUE pre-training a pre-trained general model; a CPU
sweep here trains each tiny model from scratch on the mixture (the law's form in N, D, r is the same
question: how each corpus's loss trades against the other's as r moves). Runs stay single-process
(core.probes.train handles torchrun the same way as for IsoFLOP sweeps).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch

from core.corpus import Blocks
from core.errors import ProbeError
from core.probes.devices import pick_device
from core.probes.model_configs import build_model, count_params, shape_for_params
from core.probes.sweep import EVAL_COLUMNS, ProbeRun, default_lr
from core.probes.train import TrainConfig, train_model
from core.progress import ProgressFn, report

SOURCE_FORMAT = "probe_mixture"
FLOPS_RULE = "6*N_active*D"


@dataclass(frozen=True)
class MixtureConfig:
    domain: str = "python"  # the domain corpus of the continual pre-training (a bundled-corpus domain)
    ratios: Sequence[float] = (0.1, 0.3, 0.5, 0.7, 0.9)  # domain shares r_d; 0 and 1 are left out: the
    #   law's r^η term is infinite there for η < 0, and each corpus must be seen to be fitted
    sizes: Sequence[float] = (7e4, 1.45e5)  # target active parameters (d = 16 and 32 on the bundled vocab)
    tokens: Sequence[float] = (1.2e5, 2.4e5)  # training tokens D per run: two values so the law sees D vary
    general_domains: Optional[Sequence[str]] = None  # None = every other domain of the corpus
    vocab_size: int = 4096  # the bundled tokenizer's vocabulary
    seq_len: int = 128
    batch_size: int = 4  # as the IsoFLOP sweep: tiny budgets still get tens of steps
    lr: Optional[float] = None  # None = core.probes.sweep.default_lr per shape
    min_steps: int = 20  # fewer steps is mostly warmup: refuse the run
    seed: int = 0  # model init, the mixture draw and data order
    device: str = "auto"
    eval_tokens: int = 2048  # held-out tokens of each periodic evaluation (the curve)
    final_tokens_per_domain: int = 8192  # held-out tokens per domain at the end (the fitted losses)
    name_prefix: str = "mixture"

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("ratios", "sizes", "tokens", "general_domains"):
            d[k] = None if d[k] is None else list(d[k])
        return d


@dataclass(frozen=True)
class MixtureRun:
    name: str
    n_target: float
    tokens: int
    ratio: float
    steps: int
    n_active: int
    shape: object = field(repr=False)
    counts: object = field(repr=False)


def run_name(cfg: MixtureConfig, n_active: int, tokens: int, ratio: float) -> str:
    return f"{cfg.name_prefix}-{cfg.domain}-r{ratio:.2f}-N{n_active}-D{tokens}-s{cfg.seed}"


def plan_mixture(cfg: MixtureConfig, domains: Sequence[str]) -> list:
    """The runs of the grid, checked before any training (ProbeError naming what is wrong)."""
    if cfg.domain not in domains:
        raise ProbeError(f"Domain {cfg.domain!r} is not in the corpus ({', '.join(domains)}); pick one of them.")
    general = general_domains(cfg, domains)
    if not general:
        raise ProbeError("The general corpus is empty: give --general domains other than the domain corpus.")
    bad = [r for r in cfg.ratios if not 0.0 < float(r) < 1.0]
    if bad or not cfg.ratios:
        raise ProbeError(f"Mixture ratios must lie strictly between 0 and 1 (got {list(cfg.ratios)}); e.g. "
                         "0.1,0.3,0.5,0.7,0.9.")
    if len(set(cfg.ratios)) < 3:
        raise ProbeError("Give at least 3 distinct mixture ratios: the D-CPT law needs them to be fitted.")
    runs = []
    for n in cfg.sizes:
        shape = shape_for_params(float(n), "dense", cfg.vocab_size, cfg.seq_len)
        counts = count_params(shape)
        for d in cfg.tokens:
            steps = int(d) // (cfg.batch_size * cfg.seq_len)
            if steps < cfg.min_steps:
                raise ProbeError(f"{int(d)} tokens give {steps} steps of {cfg.batch_size}×{cfg.seq_len} tokens, "
                                 f"fewer than {cfg.min_steps}; give more tokens.")
            tokens = steps * cfg.batch_size * cfg.seq_len
            for r in cfg.ratios:
                runs.append(MixtureRun(run_name(cfg, counts.active, tokens, float(r)), float(n), tokens, float(r),
                                       steps, counts.active, shape, counts))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ProbeError("Two runs of the mixture sweep share a name: give distinct sizes, tokens and ratios.")
    return runs


def general_domains(cfg: MixtureConfig, domains: Sequence[str]) -> list:
    chosen = list(cfg.general_domains) if cfg.general_domains else [d for d in domains if d != cfg.domain]
    unknown = [d for d in chosen if d not in domains or d == cfg.domain]
    if unknown:
        raise ProbeError(f"General domains {unknown} are not other domains of the corpus ({', '.join(domains)}).")
    return chosen


def mixture_blocks(train: Blocks, cfg: MixtureConfig, ratio: float, n_blocks: int, general: Sequence[str]) -> Blocks:
    """``n_blocks`` training blocks: round(r·n) drawn from the domain, the rest from the general pool,
    each without replacement while the pool lasts (then the pool is drawn again: extra epochs)."""
    rng = np.random.default_rng([cfg.seed, int(round(ratio * 1e6))])
    domain_idx = np.array([i for i, d in enumerate(train.domains) if d == cfg.domain])
    general_idx = np.array([i for i, d in enumerate(train.domains) if d in set(general)])
    n_dom = int(round(ratio * n_blocks))

    def draw(pool: np.ndarray, k: int) -> np.ndarray:
        if k == 0:
            return np.empty(0, dtype=np.int64)
        if len(pool) == 0:
            raise ProbeError("A mixture pool has no training blocks; pick domains present in the corpus.")
        reps = -(-k // len(pool))
        return np.concatenate([rng.permutation(pool) for _ in range(reps)])[:k]

    index = np.concatenate([draw(domain_idx, n_dom), draw(general_idx, n_blocks - n_dom)])
    return train.select(torch.as_tensor(index))


def general_weights(train: Blocks, general: Sequence[str]) -> dict:
    counts = {d: sum(1 for x in train.domains if x == d) for d in general}
    total = sum(counts.values()) or 1
    return {d: c / total for d, c in counts.items()}


def run_mixture(cfg: MixtureConfig, train_blocks: Blocks, heldout_blocks: Blocks, *,
                progress: Optional[ProgressFn] = None, corpus_info: Optional[dict] = None) -> list:
    """Train every run of the grid; returns ProbeRuns (plan order) with domain_loss and general_loss."""
    domains = list(dict.fromkeys(train_blocks.domains))
    runs = plan_mixture(cfg, domains)
    general = general_domains(cfg, domains)
    missing = [d for d in [cfg.domain, *general] if d not in set(heldout_blocks.domains)]
    if missing:
        raise ProbeError(f"The held-out set has no {', '.join(missing)} text to score; use the bundled corpus.")
    weights = general_weights(train_blocks, general)
    choice = pick_device(cfg.device)
    total = sum(r.steps for r in runs)
    done, out = 0, []
    for i, run in enumerate(runs, 1):
        def inner(step: int, steps: int, message: str, _base=done, _run=run, _i=i) -> None:
            report(progress, _base + step, total, f"run {_i}/{len(runs)} {_run.name}: {message}")

        blocks = mixture_blocks(train_blocks, cfg, run.ratio, run.steps * cfg.batch_size, general)
        lr = cfg.lr if cfg.lr is not None else default_lr(run.shape)
        tcfg = TrainConfig(tokens=run.tokens, batch_size=cfg.batch_size, lr=lr, seed=cfg.seed, device=cfg.device,
                           eval_tokens=cfg.eval_tokens, final_tokens_per_domain=cfg.final_tokens_per_domain,
                           eval_every=max(1, run.steps // 3))
        model = build_model(run.shape, seed=cfg.seed)
        result = train_model(model, blocks, heldout_blocks, tcfg, progress=inner, choice=choice)
        done += run.steps
        out.append(_to_probe_run(cfg, run, result, weights, corpus_info))
        del model
    return out


def _to_probe_run(cfg: MixtureConfig, run: MixtureRun, result, weights: dict, corpus_info) -> ProbeRun:
    losses = result.domain_loss
    general_loss = float(sum(w * losses[d] for d, w in weights.items()))
    domain_loss = float(losses[cfg.domain])
    last = result.metrics.iloc[-1]
    extra = pd.DataFrame([(name, float(result.steps), float(result.tokens), float(last["flops"]),
                           float(last["wall_time"]), value)
                          for name, value in (("domain_loss", domain_loss), ("general_loss", general_loss))],
                         columns=result.metrics.columns)
    config = {
        "probe": "mixture_sweep", "mixture_ratio": run.ratio, "domain": cfg.domain,
        "general_domains": list(weights), "general_weights": weights,
        "shape": run.shape.as_dict(), "params": run.counts.as_dict(),
        **result.settings, "hardware": result.device,
        "final_domain_loss": domain_loss, "final_general_loss": general_loss,
        "final_eval_loss": result.final_eval_loss, "wall_time_s": result.wall_time_s,
        "sweep": cfg.as_dict(),
    }
    if corpus_info:
        config["corpus"] = corpus_info
    evals = pd.DataFrame([(float(result.steps), f"heldout_{d}", "loss", float(v)) for d, v in losses.items()],
                         columns=EVAL_COLUMNS)
    return ProbeRun(
        name=run.name, source_format=SOURCE_FORMAT, arch="dense",
        n_params=float(run.counts.total), n_nonembedding_params=float(run.counts.nonembedding),
        n_active_params=float(run.counts.active), seq_len=cfg.seq_len,
        tokens_per_step=float(cfg.batch_size * cfg.seq_len), tokens=float(result.tokens),
        flops=6.0 * run.counts.active * result.tokens, flops_rule=FLOPS_RULE, config=config,
        tags=["probe", "mixture", f"domain={cfg.domain}", f"ratio={run.ratio:g}"],
        metrics=pd.concat([result.metrics, extra], ignore_index=True), evals=evals,
    )
