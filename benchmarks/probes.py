"""CPU throughput of probe-sized models: tokens/s, achieved GFLOP/s and MFU, forward and fwd+bwd.

    nice -n 10 python benchmarks/probes.py [--threads 2] [--iters 5]
    OMP_NUM_THREADS=1 torchrun --standalone --nproc_per_node=2 benchmarks/probes.py --threads 1   # DDP on gloo

MFU on a CPU is relative to a MEASURED peak (fp32 1024³ matmul on the same threads, printed
first), not a datasheet number. The load average is printed too: on a shared machine it moves
every number here.

Under torchrun every process measures with DDP over gloo (core.probes.distributed): the batch is
per process, tokens/s is the job's global rate and MFU is against the sum of the processes'
measured peaks; rank 0 prints. Compare with one process on the same total threads.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.probes import distributed, throughput  # noqa: E402
from core.probes.devices import pick_device  # noqa: E402
from core.probes.model_configs import ModelShape, count_params  # noqa: E402

V = 4096
SHAPES = {
    "dense d64 L1 (demo sweep)": ModelShape(64, 1, 2, 192, V, 128),
    "dense d128 L2 (demo sweep)": ModelShape(128, 2, 4, 352, V, 128),
    "dense d192 L3": ModelShape(192, 3, 6, 512, V, 128),
    "dense d256 L4": ModelShape(256, 4, 8, 704, V, 128),
    "moe d128 L4 8x top-2 (bundled tiny MoE)": ModelShape(128, 4, 4, 192, V, 128, n_experts=8, top_k=2),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--iters", type=int, default=5)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    with distributed.session("cpu") as ctx:
        say = print if ctx.is_main else (lambda *a, **k: None)
        choice = pick_device("cpu")
        peak = throughput.measure_cpu_peak_tflops()  # this process's; measure_throughput sums them over ranks
        total_peak = distributed.peak_sum(peak, ctx)
        say(f"CPU: {choice.name}; torch {torch.__version__}; {ctx.world_size} process(es) × {args.threads} threads; "
            f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        say(f"measured fp32 matmul peak: {total_peak * 1e3:.1f} GFLOP/s (all processes)\n")
        header = (f"{'model':42s} {'params':>10s} {'active':>10s} {'kind':>16s} {'tokens/s':>10s} {'GFLOP/s':>8s} "
                  f"{'MFU':>6s} {'peak MB':>8s}")
        say(header)
        say("-" * len(header))
        for label, shape in SHAPES.items():
            counts = count_params(shape)
            for r in throughput.measure_throughput(shape, args.batch_size, device="cpu", iters=args.iters, warmup=2,
                                                   peak_tflops=peak):
                say(f"{label:42s} {counts.total:>10,} {counts.active:>10,} {r.kind:>16s} {r.tokens_per_s:>10,.0f} "
                    f"{r.achieved_tflops * 1e3:>8.1f} {r.mfu:>6.1%} {r.peak_memory_bytes / 2**20:>8.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
