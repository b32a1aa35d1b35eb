"""GPU check for the probes (issue 6): throughput/MFU of a ~125M dense and a comparable MoE in bf16,
with and without torch.compile, then a short IsoFLOP sweep. Prints a table; never gates CI.

    python benchmarks/gpu_check.py [--out DIR]      # on a lent GPU (~5 min)
    python benchmarks/gpu_check.py --tiny           # the same code path on CPU in ~1 min

Models: dense = GPT-2-small-shaped Llama (d 768, 12 layers, 12 heads, SwiGLU 2048, vocab 50304 tied:
123.6M params); MoE = the same trunk with 8 experts of width 1024, top-2 (123.7M active, 293.5M
total). MFU uses the dense bf16 datasheet peak from core/accelerators.py (PaLM appendix B FLOPs,
attention included). Target from the issue: dense fwd+bwd with compile ≥ 35 % MFU.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.probes import sweep, throughput  # noqa: E402
from core.probes.devices import pick_device  # noqa: E402
from core.probes.model_configs import ModelShape, count_params  # noqa: E402

FULL = {
    "dense-125M": ModelShape(768, 12, 12, 2048, 50304, 1024),
    "moe-125M-active": ModelShape(768, 12, 12, 1024, 50304, 1024, n_experts=8, top_k=2),
}
TINY = {
    "dense-tiny": ModelShape(64, 2, 2, 192, 4096, 64),
    "moe-tiny": ModelShape(64, 2, 2, 96, 4096, 64, n_experts=8, top_k=2),
}


def throughput_rows(shapes: dict, batch_size: int, iters: int, device: str) -> list:
    rows = []
    for name, shape in shapes.items():
        for compile_ in (False, True):
            t0 = time.time()
            try:
                results = throughput.measure_throughput(shape, batch_size, device=device, compile=compile_,
                                                        warmup=3, iters=iters)
            except Exception as e:  # a compile failure is a result too: record it and go on
                rows.append({"model": name, "compile": compile_, "error": f"{type(e).__name__}: {e}"[:300]})
                traceback.print_exc()
                continue
            for r in results:
                rows.append({"model": name, "compile": r.config["compile"], "kind": r.kind, "device": r.device_name,
                             "dtype": r.dtype, "batch": batch_size, "seq_len": shape.seq_len,
                             "params": count_params(shape).total, "active": count_params(shape).active,
                             "tokens_per_s": r.tokens_per_s, "tflops": r.achieved_tflops, "mfu": r.mfu,
                             "peak_tflops": r.peak_tflops, "peak_memory_gib": r.peak_memory_bytes / 2**30,
                             "seconds": time.time() - t0})
            print(f"  {name} compile={compile_}: {time.time() - t0:.0f}s", flush=True)
    return rows


def short_sweep(tiny: bool, device: str) -> list:
    from core import corpus

    seq_len = 32 if tiny else 256
    train_blocks, heldout_blocks = corpus.bundled_blocks(seq_len)
    if tiny:
        cfg = sweep.SweepConfig(budgets=[1.5e9, 3e9], sizes=[1.45e5, 3.2e5], seq_len=32, batch_size=4, min_steps=5,
                                eval_tokens=256, final_tokens_per_domain=256, device=device, name_prefix="gpucheck")
    else:  # ~1-2 min on an H100: 2 budgets × 3 sizes (d ≈ 192..384), ≤ 3 passes over the corpus
        cfg = sweep.SweepConfig(budgets=[3e13, 1e14], sizes=[2e6, 4e6, 8e6], seq_len=seq_len, batch_size=32,
                                min_steps=50, device=device, name_prefix="gpucheck")
    plan = sweep.plan_sweep(cfg, train_tokens=train_blocks.n_tokens)
    print(f"  sweep: {len(plan.runs)} runs, estimated {plan.est_seconds:.0f}s", flush=True)
    t0 = time.time()
    runs = sweep.run_sweep(cfg, train_blocks, heldout_blocks, plan=plan)
    print(f"  sweep took {time.time() - t0:.0f}s", flush=True)
    table = sweep.runs_table(runs)
    return table[["name", "n_active_params", "tokens", "flops", "steps", "final_eval_loss", "wall_time_s"]].to_dict("records")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: check the script, not the GPU")
    ap.add_argument("--out", default="", help="folder for gpu_check.json")
    ap.add_argument("--no-sweep", action="store_true")
    args = ap.parse_args(argv)
    device = "cpu" if args.tiny else "auto"
    if args.tiny:
        torch.set_num_threads(2)
    choice = pick_device(device)
    print(f"device: {choice.name} ({choice.kind}, {choice.dtype}); torch {torch.__version__}", flush=True)
    if choice.kind == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    rows = throughput_rows(TINY if args.tiny else FULL, 2 if args.tiny else 16, 3 if args.tiny else 10, device)
    header = f"{'model':18s} {'compile':>7s} {'kind':>16s} {'tokens/s':>12s} {'TFLOP/s':>8s} {'MFU':>6s} {'mem GiB':>8s}"
    print("\n" + header + "\n" + "-" * len(header))
    for r in rows:
        if "error" in r:
            print(f"{r['model']:18s} {str(r['compile']):>7s} ERROR {r['error']}")
            continue
        mfu = "n/a" if r["mfu"] is None else f"{r['mfu']:.1%}"
        print(f"{r['model']:18s} {str(r['compile']):>7s} {r['kind']:>16s} {r['tokens_per_s']:>12,.0f} "
              f"{r['tflops']:>8.2f} {mfu:>6s} {r['peak_memory_gib']:>8.2f}")
    sweep_rows = [] if args.no_sweep else short_sweep(args.tiny, device)
    for r in sweep_rows:
        print(f"  {r['name']:36s} N={r['n_active_params']:>12,.0f} D={r['tokens']:>12,.0f} "
              f"loss={r['final_eval_loss']:.3f} {r['wall_time_s']:.0f}s")
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(
            {"device": choice.as_dict(), "throughput": rows, "sweep": sweep_rows}, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
