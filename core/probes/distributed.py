"""Probes on several processes: ``torchrun``, DistributedDataParallel and FSDP.

Launch ``torchrun --nproc_per_node=K cli.py probe sweep|throughput ...`` (or ``python -m
torch.distributed.run``): torchrun sets WORLD_SIZE, RANK, LOCAL_RANK and the rendezvous address;
:func:`session` reads them, picks NCCL for CUDA devices and gloo for the CPU, initialises the
process group and destroys it on the way out. With WORLD_SIZE unset or 1 every function here is a
no-op and a probe runs exactly as in one process.

What each probe means on K processes (so its numbers mean what they mean in one process):

- Sweep training keeps the GLOBAL batch fixed and splits it: ``batch_size`` sequences per optimizer
  step in all, ``batch_size / K`` on each rank (``batch_size`` must be a multiple of K). Every rank
  draws the same permutation from the same seed and takes its own slice of each global batch;
  DDP (or FSDP's reduce-scatter) averages the ranks' mean-loss gradients, which is the gradient of
  the global batch's mean loss. Steps, tokens, D = C/(6N), the LR schedule and the run names are
  those of the one-process run, and its losses agree up to float reduction order. Logged training
  losses are the mean over ranks; held-out loss is summed over the ranks' shares of the held-out
  blocks (:func:`shard`, :func:`all_reduce`). One exception: an MoE run's load-balancing loss is
  computed on each rank's half of the batch (its balance statistics are per-shard), so MoE
  gradients differ slightly from one process's.
- Throughput keeps the PER-RANK batch fixed (weak scaling, what a scaling-efficiency check wants):
  each rank times ``batch_size`` sequences per pass; ``tokens_per_s`` is the global rate, all ranks'
  tokens over the slowest rank's time; MFU is against the sum of the ranks' peaks.
- Only rank 0 reports progress, opens the store, writes to it and prints (:func:`on_main` runs a
  step there and hands its errors to every rank, so no rank waits in a collective the others left).

Strategy per model (:func:`choose_strategy`): ``ddp`` replicates the model on every rank; ``fsdp``
shards parameters, gradients and optimizer state with FSDP2's ``fully_shard`` (per decoder layer,
then the root), for a model whose training state does not fit one device. ``auto`` takes ddp
unless :func:`train_memory_bytes` exceeds FIT_FRACTION of the device's memory.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, TypeVar

import torch

from core.errors import ProbeError, ScaleScopeError

STRATEGIES = ("auto", "ddp", "fsdp")
FIT_FRACTION = 0.9  # a model that needs more than this share of a device's memory does not fit it:
#                     the allocator's fragmentation, the CUDA context and the framework keep the rest
T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    world_size: int = 1  # processes in the job
    rank: int = 0  # this process, 0..world_size-1; rank 0 stores and prints
    local_rank: int = 0  # this process on its node: its GPU index
    local_world_size: int = 1  # processes on this node (they share its CPU memory)
    backend: Optional[str] = None  # "nccl" | "gloo" once initialised; None in one process

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def as_dict(self) -> dict:
        return asdict(self)


SINGLE = DistContext()


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def launched() -> DistContext:
    """What torchrun asked for (WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE), before any init."""
    world = max(1, _env_int("WORLD_SIZE", 1))
    if world == 1:
        return SINGLE
    return DistContext(world, _env_int("RANK", 0), _env_int("LOCAL_RANK", 0),
                       max(1, _env_int("LOCAL_WORLD_SIZE", world)), None)


def current() -> DistContext:
    """The initialised process group as a DistContext, or SINGLE when there is none."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return SINGLE
    env = launched()
    return DistContext(dist.get_world_size(), dist.get_rank(), env.local_rank, env.local_world_size,
                       str(dist.get_backend()))


def _family(requested: str) -> str:
    from core.probes.devices import _mps_available

    family = (requested or "auto").strip().lower().split(":", 1)[0]
    if family == "auto":
        return "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    return family


@contextlib.contextmanager
def session(device: str = "auto"):
    """Initialise the process group torchrun asked for (NCCL on CUDA, gloo on CPU), yield the
    DistContext, destroy the group on exit. In one process (or inside a group someone else
    initialised) it only yields the context."""
    env = launched()
    if not env.enabled:
        yield SINGLE
        return
    import torch.distributed as dist

    if dist.is_initialized():
        yield current()
        return
    if not dist.is_available():
        raise ProbeError("This torch build has no torch.distributed; run the probe in one process (without torchrun).")
    req = (device or "auto").strip().lower()
    family = _family(req)
    kwargs = {}
    if family == "mps":
        raise ProbeError("torch.distributed has no Apple GPU (mps) backend; under torchrun use --device cpu, "
                         "or run one process without torchrun.")
    if family == "cuda":
        if ":" in req:
            raise ProbeError(f"Under torchrun each process uses cuda:LOCAL_RANK; give --device cuda or auto, not {device}.")
        if not torch.cuda.is_available():
            raise ProbeError("Device 'cuda' was asked for but torch sees no CUDA GPU; use device auto or cpu.")
        count = torch.cuda.device_count()
        if env.local_rank >= count:
            raise ProbeError(f"torchrun started {env.local_world_size} processes on this node but it has {count} "
                             f"GPU(s); launch at most {count} with --nproc_per_node.")
        torch.cuda.set_device(env.local_rank)
        backend = "nccl"
        kwargs["device_id"] = torch.device("cuda", env.local_rank)
    else:
        backend = "gloo"
    dist.init_process_group(backend=backend, **kwargs)
    try:
        yield current()
        dist.barrier()  # leave together: a rank that exits while a peer still reads its socket aborts the peer
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


# ------------------------------------------------------------------------------------------ collectives
def _device(ctx: DistContext) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if ctx.backend == "nccl" else torch.device("cpu")


def all_reduce(values: Sequence[float], op: str = "sum", ctx: Optional[DistContext] = None) -> list:
    """``values`` reduced over ranks ("sum", "max" or "mean"), as Python floats (float64 on the wire)."""
    ctx = ctx or current()
    if not ctx.enabled:
        return [float(v) for v in values]
    import torch.distributed as dist

    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    if op == "mean":
        t /= ctx.world_size
    return t.cpu().tolist()


def mean_over_ranks(tensors: Sequence[torch.Tensor], ctx: Optional[DistContext] = None) -> list:
    """Detached scalar tensors averaged over ranks in one all-reduce (``.item()`` in one process)."""
    ctx = ctx or current()
    if not ctx.enabled:
        return [float(t.item()) for t in tensors]
    import torch.distributed as dist

    t = torch.stack([x.detach().reshape(()).to(torch.float64) for x in tensors]).to(_device(ctx))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return (t / ctx.world_size).cpu().tolist()


def on_main(fn: Callable[[], T], ctx: Optional[DistContext] = None, share: bool = False) -> Optional[T]:
    """Run ``fn`` on rank 0 only; return its result there and None on the other ranks (with
    ``share``, every rank gets rank 0's result: it must pickle).

    An error ``fn`` raises is raised on EVERY rank (the same ScaleScopeError, or a ProbeError naming
    it), so a check that fails on rank 0 stops the whole job before anyone trains.
    """
    ctx = ctx or current()
    if not ctx.enabled:
        return fn()
    import torch.distributed as dist

    result, error, payload = None, None, [None]
    if ctx.is_main:
        try:
            result = fn()
            payload = [("ok", result if share else None)]
        except Exception as exc:  # noqa: BLE001 - handed to every rank, then raised here as it was
            error = exc
            shared = exc if isinstance(exc, ScaleScopeError) else ProbeError(
                f"rank 0 failed: {type(exc).__name__}: {exc}")
            payload = [("error", shared)]
    dist.broadcast_object_list(payload, src=0, device=_device(ctx))
    if error is not None:
        raise error
    status, value = payload[0]
    if status == "error":
        raise value
    return result if ctx.is_main else value


def shard(n: int, ctx: Optional[DistContext] = None) -> range:
    """This rank's share of ``n`` items: every world_size-th from its rank (all of them in one process)."""
    ctx = ctx or current()
    return range(ctx.rank, n, ctx.world_size)


def split_batch(global_batch: int, ctx: Optional[DistContext] = None) -> int:
    """Sequences per rank when the global batch is split evenly; ProbeError when it does not split."""
    ctx = ctx or current()
    if global_batch % ctx.world_size:
        raise ProbeError(f"A global batch of {global_batch} sequences does not split evenly over {ctx.world_size} "
                         f"processes; give a batch size that is a multiple of {ctx.world_size}.")
    return global_batch // ctx.world_size


# ------------------------------------------------------------------------------------------ memory and strategy
def train_memory_bytes(n_params: float, d_model: int, n_layers: int, vocab_size: int, batch_size: int, seq_len: int,
                       dtype: str = "fp32", optimizer: bool = True, shards: int = 1) -> float:
    """Estimated peak bytes on one rank to train a decoder of ``n_params`` (total) parameters on a
    (batch_size, seq_len) batch per rank.

    - State: fp32 weights and gradients (4 + 4 bytes a parameter) plus AdamW's two moments (8), all
      divided by ``shards`` under FSDP, which then also holds one all-gathered layer (weights and
      gradients) at a time.
    - Activations: 34·b·T·d bytes per layer in 16-bit (Korthikanti et al. 2022 eq. 1, without its
      5·a·T/d term: SDPA keeps no T×T score matrix), doubled in fp32.
    - Logits: b·T·V in the compute dtype, their fp32 copy for the loss, and its gradient.
    A dense-equivalent estimate: an MoE's experts count in the parameters, not the activations.
    """
    act_scale = 1.0 if dtype == "bf16" else 2.0
    state_per_param = 16.0 if optimizer else 8.0
    state = state_per_param * n_params / max(1, shards)
    if shards > 1:
        state += 8.0 * n_params / max(1, n_layers)
    activations = 34.0 * batch_size * seq_len * d_model * n_layers * act_scale
    logits = batch_size * seq_len * vocab_size * ((2.0 if dtype == "bf16" else 4.0) + 4.0 + 4.0)
    return state + activations + logits


def capacity_bytes(choice, ctx: Optional[DistContext] = None) -> Optional[float]:
    """Memory one rank may use on ``choice``: the GPU's, or the node's RAM shared by its ranks."""
    from core.probes.devices import memory_bytes

    ctx = ctx or current()
    total = memory_bytes(choice)
    if total is None:
        return None
    return total / ctx.local_world_size if choice.kind == "cpu" else float(total)


def choose_strategy(requested: str, need: Callable[[int], float], capacity: Optional[float],
                    ctx: Optional[DistContext] = None, what: str = "This model") -> Optional[str]:
    """None (one process), "ddp" or "fsdp" for ``requested`` ("auto", "ddp" or "fsdp").

    ``need(shards)`` is the per-rank memory estimate with the state split ``shards`` ways. Raises
    ProbeError for ddp/fsdp asked for outside torchrun, and for a model that does not fit the way
    it would run (with the way out in the message).
    """
    ctx = ctx or current()
    requested = (requested or "auto").lower()
    if requested not in STRATEGIES:
        raise ProbeError(f"Unknown parallel strategy {requested!r}; use auto, ddp or fsdp.")
    gib = lambda b: f"{b / 2 ** 30:.1f} GiB"  # noqa: E731
    limit = None if capacity is None else FIT_FRACTION * capacity
    whole = need(1)
    if not ctx.enabled:
        if requested != "auto":
            raise ProbeError(f"--parallel {requested} needs several processes: launch with "
                             "torchrun --nproc_per_node=K (K ≥ 2), or leave it at auto.")
        if limit is not None and whole > limit:
            raise ProbeError(f"{what} needs about {gib(whole)} to train, more than {FIT_FRACTION:.0%} of the device's "
                             f"{gib(capacity)}; shard it: torchrun --nproc_per_node=K cli.py probe ... --fsdp.")
        return None
    if requested == "ddp" or (requested == "auto" and (limit is None or whole <= limit)):
        if limit is not None and whole > limit:
            raise ProbeError(f"{what} needs about {gib(whole)} per rank replicated (DDP), more than "
                             f"{FIT_FRACTION:.0%} of {gib(capacity)}; use --parallel fsdp (or auto).")
        return "ddp"
    sharded = need(ctx.world_size)
    if limit is not None and sharded > limit:
        raise ProbeError(f"{what} needs about {gib(sharded)} per rank even sharded over {ctx.world_size} processes "
                         f"(FSDP), more than {FIT_FRACTION:.0%} of {gib(capacity)}; launch more processes or "
                         "choose a smaller model or batch.")
    return "fsdp"


def wrap_model(model: torch.nn.Module, strategy: Optional[str], choice) -> torch.nn.Module:
    """The module to run forward/backward through: ``model`` itself (one process), a DDP wrapper,
    or ``model`` sharded in place by FSDP2 (each decoder layer, then the root). Build the optimizer
    from ``model.parameters()`` AFTER this call: FSDP replaces them with sharded DTensors."""
    if strategy is None:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [torch.device(choice.device).index] if choice.kind == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)
    if strategy == "fsdp":
        try:
            from torch.distributed.fsdp import fully_shard
        except ImportError:  # FSDP2 is public from torch 2.6; the project pins a newer torch
            raise ProbeError(f"FSDP needs torch.distributed.fsdp.fully_shard (torch ≥ 2.6); this is torch "
                             f"{torch.__version__}. Use --parallel ddp.") from None
        layers = getattr(getattr(model, "model", None), "layers", None)
        for layer in layers or []:
            fully_shard(layer)
        fully_shard(model)
        return model
    raise ProbeError(f"Unknown parallel strategy {strategy!r}; use ddp or fsdp.")


def describe(strategy: Optional[str], ctx: Optional[DistContext] = None, **extra) -> dict:
    """What a result records about how it ran: world size, backend, strategy (``single`` in one process)."""
    ctx = ctx or current()
    return {"world_size": ctx.world_size, "backend": ctx.backend, "strategy": strategy or "single", **extra}


def peak_sum(peak: Optional[float], ctx: Optional[DistContext] = None) -> Optional[float]:
    """The job's peak: the ranks' peaks summed (None if any rank has none)."""
    ctx = ctx or current()
    if not ctx.enabled:
        return peak
    total, missing = all_reduce([0.0 if peak is None else peak, 1.0 if peak is None else 0.0], "sum", ctx)
    return None if missing > 0 or not math.isfinite(total) else total
