"""Throughput probe: tokens/s, achieved TFLOP/s and MFU of a model shape on a device.

MFU (model FLOPs utilisation, Chowdhery et al. 2022 PaLM appendix B) = achieved model FLOP/s ÷
the device's peak, with model FLOPs per token from core.probes.flops (attention included, full
context, forward ×3 for forward+backward). Rematerialisation and optimizer work are not model
FLOPs, so they lower MFU rather than raise it; the forward+backward probe runs no optimizer step.

Peaks: GPUs use the dense datasheet peak from core.accelerators (the planner's table). A CPU has
no such entry, so its "peak" is MEASURED here: the FLOP/s of a large fp32 matmul on the same
threads (``peak_source`` says so); CPU MFU is therefore relative to what this CPU's BLAS reaches.

Peak memory: cuda reports torch's max allocated bytes; on cpu it is the growth of the process's
resident memory over its level before the model was built, sampled every few milliseconds.

Under torchrun (core.probes.distributed) the PER-RANK batch is fixed (weak scaling): every rank
times ``batch_size`` sequences through a DDP (or FSDP) model; ``tokens_per_s`` is the job's rate,
all ranks' tokens over the slowest rank's timed seconds; MFU divides by the sum of the ranks'
peaks (each rank measures its own on a CPU, all at once); peak memory is the largest rank's.
"""
from __future__ import annotations

import threading
import time
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch

from core.errors import ProbeError
from core.probes import distributed
from core.probes.devices import DeviceChoice, autocast, pick_device, synchronize
from core.probes.flops import flops_per_token
from core.probes.model_configs import ModelShape, build_model, count_params
from core.progress import ProgressFn, report

KINDS = ("forward", "forward_backward")


@dataclass
class ThroughputResult:
    kind: str  # "forward" or "forward_backward"
    device: str  # "cuda" | "mps" | "cpu"
    device_name: str  # the hardware, e.g. "NVIDIA H100 80GB HBM3"
    dtype: str  # "bf16" (autocast) or "fp32"
    tokens_per_s: float
    achieved_tflops: float  # model FLOPs per token × tokens/s / 1e12
    mfu: Optional[float]  # achieved / peak; None when no peak is known
    peak_tflops: Optional[float]  # the device peak used for MFU
    peak_source: str  # datasheet row or "measured: ..." (cpu)
    peak_memory_bytes: int
    config: dict  # shape, batch, seq_len, compile, params, flops/token, iterations, seconds
    world_size: int = 1  # processes that ran it (torchrun); tokens_per_s is all of theirs
    parallel: str = "single"  # "single", "ddp" or "fsdp"

    def as_dict(self) -> dict:
        return asdict(self)


# torch.cuda.get_device_name fragments → core.accelerators names (the first match wins).
_GPU_NAMES = (("GB200", "GB200"), ("B200", "B200"), ("H200", "H200 SXM"), ("H100 PCIe", "H100 PCIe"),
              ("H100", "H100 SXM"), ("A100", "A100 SXM"), ("V100", "V100 SXM2"), ("MI325X", "MI325X"),
              ("MI300X", "MI300X"), ("MI250X", "MI250X"))


def accelerator_for(device_name: str) -> Optional[str]:
    """The core.accelerators name for a torch device name, or None."""
    for fragment, name in _GPU_NAMES:
        if fragment.lower() in device_name.lower():
            return name
    return None


def measure_cpu_peak_tflops(size: int = 1024, seconds: float = 0.5) -> float:
    """TFLOP/s of repeated fp32 ``size``³ matmuls on the current torch threads (2·size³ each)."""
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    torch.mm(a, b)  # warm-up: BLAS thread pool and caches
    n, t0 = 0, time.perf_counter()
    while True:
        torch.mm(a, b)
        n += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds and n >= 3:
            break
    return 2.0 * size ** 3 * n / elapsed / 1e12


def device_peak(choice: DeviceChoice, peak_tflops: Optional[float] = None) -> tuple:
    """(peak TFLOP/s or None, where it comes from) for MFU on ``choice``."""
    if peak_tflops is not None:
        return float(peak_tflops), "given by the caller"
    if choice.kind == "cpu":
        peak = measure_cpu_peak_tflops()
        return peak, f"measured: fp32 1024x1024 matmul on {torch.get_num_threads()} threads (no CPU datasheet peak)"
    name = accelerator_for(choice.name)
    if name is None:
        return None, f"no peak listed for {choice.name}; pass peak_tflops to get an MFU"
    try:
        from core import accelerators
        from core.errors import PlanError

        dtype = choice.dtype if choice.dtype != "fp32" else "tf32"
        row = accelerators.peak_row(name, dtype)
        return row.peak_tflops, f"{row.accelerator} {row.dtype}: {row.source}"
    except (ImportError, PlanError) as e:
        return None, f"no peak for {choice.name} {choice.dtype} ({e}); pass peak_tflops to get an MFU"


class _RssSampler:
    """Peak resident-memory growth of this process while active (Linux /proc; 0 elsewhere)."""

    def __init__(self, interval_s: float = 0.005):
        self.interval_s = interval_s
        self.baseline = self._rss()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss() -> int:
        try:
            with open("/proc/self/statm") as f:
                import os

                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.interval_s)

    def __enter__(self) -> "_RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)


def measure_throughput(shape: ModelShape, batch_size: int = 8, seq_len: Optional[int] = None, *,
                       device: str = "auto", compile: bool = False, kinds: Sequence[str] = KINDS,
                       warmup: int = 2, iters: int = 5, peak_tflops: Optional[float] = None,
                       seed: int = 0, progress: Optional[ProgressFn] = None, parallel: str = "auto") -> list:
    """Time ``iters`` forward (and forward+backward) passes of a random ``shape`` model on a
    (batch_size, seq_len) batch after ``warmup`` untimed ones; one ThroughputResult per kind.

    ``compile`` applies torch.compile on cuda (ignored elsewhere, and recorded as such).
    Under torchrun ``batch_size`` is per rank and ``parallel`` (auto, ddp, fsdp) says how the model
    is spread; see the module note. ``peak_tflops`` is one device's peak.
    Raises ProbeError before any work for an unknown device or kind, non-positive sizes, or a
    model that does not fit the device.
    """
    choice = pick_device(device)
    seq_len = int(seq_len or shape.seq_len)
    for k in kinds:
        if k not in KINDS:
            raise ProbeError(f"Unknown throughput kind {k!r}; use forward and/or forward_backward.")
    if batch_size < 1 or seq_len < 2 or iters < 1 or warmup < 0:
        raise ProbeError(f"batch_size {batch_size}, seq_len {seq_len} and iters {iters} must be positive.")
    shape.validate()
    ctx = distributed.current()
    counts = count_params(shape)
    strategy = distributed.choose_strategy(
        parallel, lambda shards: distributed.train_memory_bytes(
            counts.total, shape.d_model, shape.n_layers, shape.vocab_size, batch_size, seq_len, choice.dtype,
            optimizer=False, shards=shards),
        distributed.capacity_bytes(choice, ctx), ctx, what=f"A model of {counts.total:,} parameters")
    compiled = bool(compile and choice.kind == "cuda")
    peak, peak_source = device_peak(choice, peak_tflops)
    if ctx.enabled:
        peak = distributed.peak_sum(peak, ctx)
        peak_source = f"{ctx.world_size} × ({peak_source})"
    fpt = flops_per_token(shape, seq_len)
    if choice.kind == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(choice.device)
    results = []
    total_work = len(kinds) * (warmup + iters)
    done = 0
    with _RssSampler() as rss:
        model = build_model(shape, seed=seed).to(choice.device)
        wrapped = distributed.wrap_model(model, strategy, choice)
        runner = torch.compile(wrapped) if compiled else wrapped
        ids = torch.randint(0, shape.vocab_size, (batch_size, seq_len), device=choice.device)  # (B, T)
        for kind in kinds:
            backward = kind == "forward_backward"
            wrapped.train(backward)
            elapsed = 0.0
            for i in range(warmup + iters):
                synchronize(choice)
                t0 = time.perf_counter()
                with torch.set_grad_enabled(backward):
                    with autocast(choice):
                        logits = runner(input_ids=ids).logits  # (B, T, V)
                    if backward:
                        loss = torch.nn.functional.cross_entropy(
                            logits[:, :-1].reshape(-1, logits.shape[-1]).float(), ids[:, 1:].reshape(-1))
                        loss.backward()
                        model.zero_grad(set_to_none=True)
                synchronize(choice)
                if i >= warmup:
                    elapsed += time.perf_counter() - t0
                done += 1
                report(progress, done, total_work, f"{kind} pass {i + 1}/{warmup + iters}")
            rank_tokens_per_s = batch_size * seq_len * iters / max(elapsed, 1e-12)
            (elapsed,) = distributed.all_reduce([elapsed], "max", ctx)  # the job takes the slowest rank's time
            tokens_per_s = ctx.world_size * batch_size * seq_len * iters / max(elapsed, 1e-12)
            flops = fpt.train if backward else fpt.forward
            achieved = flops * tokens_per_s / 1e12
            results.append(ThroughputResult(
                kind=kind, device=choice.kind, device_name=choice.name, dtype=choice.dtype,
                tokens_per_s=tokens_per_s, achieved_tflops=achieved,
                mfu=(achieved / peak) if peak else None, peak_tflops=peak, peak_source=peak_source,
                peak_memory_bytes=0, world_size=ctx.world_size, parallel=strategy or "single",
                config={"shape": shape.as_dict(), "arch": shape.arch, "batch_size": batch_size, "seq_len": seq_len,
                        "global_batch_size": batch_size * ctx.world_size, "tokens_per_s_rank0": rank_tokens_per_s,
                        "distributed": distributed.describe(strategy, ctx, batch_rule="batch_size per rank (weak scaling)"),
                        "compile": compiled, "n_params": counts.total, "n_active_params": counts.active,
                        "flops_per_token": flops, "attention_share": fpt.attention_share, "iters": iters,
                        "warmup": warmup, "seconds": elapsed, "threads": torch.get_num_threads(),
                        "torch": torch.__version__,
                        "flops_rule": "PaLM appendix B: 2·N_matmul + 4·L·T·d_attn per token forward, ×3 fwd+bwd"}))
        del model, wrapped, runner
    peak_memory = (torch.cuda.max_memory_allocated(choice.device) if choice.kind == "cuda" else rss.growth)
    (peak_memory,) = distributed.all_reduce([peak_memory], "max", ctx)  # the largest rank's
    for r in results:
        r.peak_memory_bytes = int(peak_memory)
    return results
