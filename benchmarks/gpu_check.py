"""GPU check for the probes (issues 6 and 15): throughput/MFU of a ~125M dense and a comparable MoE in
bf16, with and without torch.compile, a short IsoFLOP sweep, then the 2-GPU DDP scaling case.
Prints a table; never gates CI.

    python benchmarks/gpu_check.py [--out DIR]      # on a lent GPU (~5 min; the DDP case needs ≥ 2 GPUs)
    python benchmarks/gpu_check.py --ddp-only       # only the DDP scaling case
    python benchmarks/gpu_check.py --dry-run        # the DDP case's code path, tiny, on CPU/gloo (~30 s)
    python benchmarks/gpu_check.py --tiny           # the MFU and sweep code path on CPU in ~1 min

Models: dense = GPT-2-small-shaped Llama (d 768, 12 layers, 12 heads, SwiGLU 2048, vocab 50304 tied:
123.6M params); MoE = the same trunk with 8 experts of width 1024, top-2 (123.7M active, 293.5M
total). MFU uses the dense bf16 datasheet peak from core/accelerators.py (PaLM appendix B FLOPs,
attention included). Target from the issue: dense fwd+bwd with compile ≥ 35 % MFU.

DDP scaling (issue 15): efficiency = tokens/s of 2 GPUs ÷ (2 × tokens/s of 1 GPU), target ≥ 90 %.
The same dense model, fwd+bwd (gradients all-reduced by DDP during backward; no optimizer step),
16 × 1024 tokens PER GPU (weak scaling, as core.probes.throughput does under torchrun), compiled
unless --eager. 1 GPU: this process; 2 GPUs: this script relaunched under torchrun
(``python -m torch.distributed.run --standalone --nproc_per_node=2 ... --ddp-worker``), rank 0
writing its result to a file. With fewer than 2 GPUs the case says so and the script exits 0.
``--dry-run`` runs the same path with a tiny model on 2 CPU processes over gloo: it checks the
script, and its efficiency (2 processes on a shared CPU) means nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core.probes import distributed, sweep, throughput  # noqa: E402
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
DDP_TARGET = 0.90  # issue 15: 2-GPU scaling efficiency of the dense 125M model
DDP_GPUS = 2
# (shape, per-GPU batch, timed iterations, warm-up) of the DDP case: full on GPUs, tiny for --dry-run
DDP_FULL = (FULL["dense-125M"], 16, 10, 3)
DDP_DRY = (TINY["dense-tiny"], 4, 3, 1)


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


# ------------------------------------------------------------------------------------------ DDP scaling
def _ddp_rate(dry_run: bool, compile_: bool) -> dict:
    """forward+backward tokens/s of the DDP case's model in THIS process (under torchrun: the job's)."""
    shape, batch, iters, warmup = DDP_DRY if dry_run else DDP_FULL
    (r,) = throughput.measure_throughput(shape, batch, device="cpu" if dry_run else "cuda", compile=compile_,
                                         kinds=("forward_backward",), warmup=warmup, iters=iters,
                                         parallel="ddp" if distributed.current().enabled else "auto")
    return {"tokens_per_s": r.tokens_per_s, "world_size": r.world_size, "parallel": r.parallel, "mfu": r.mfu,
            "device": r.device_name, "dtype": r.dtype, "compile": r.config["compile"], "batch_per_rank": batch,
            "seq_len": shape.seq_len, "params": count_params(shape).total, "iters": iters,
            "peak_memory_gib": r.peak_memory_bytes / 2 ** 30}


def ddp_worker(args) -> int:
    """One rank of the 2-process measurement (started by ddp_scaling through torchrun)."""
    if args.dry_run:
        torch.set_num_threads(1)
    with distributed.session("cpu" if args.dry_run else "cuda") as ctx:
        row = _ddp_rate(args.dry_run, not args.eager)
        if ctx.is_main:
            Path(args.result).write_text(json.dumps(row))
    return 0


def ddp_scaling(dry_run: bool, compile_: bool = True) -> dict:
    """The 2-GPU DDP scaling case: 1 GPU here, 2 under torchrun; efficiency against DDP_TARGET.
    Returns {"skipped": reason} when this machine has fewer than 2 GPUs (and not ``dry_run``)."""
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if not dry_run and n_gpus < DDP_GPUS:
        reason = (f"DDP scaling case skipped: it needs {DDP_GPUS} CUDA GPUs and this machine has {n_gpus} "
                  "(--dry-run runs its code path on CPU)")
        print(reason, flush=True)
        return {"skipped": reason, "gpus": n_gpus}
    if dry_run:
        torch.set_num_threads(1)  # as each of the 2 worker processes: the same cores, shared the same way
    one = _ddp_rate(dry_run, compile_)
    print(f"  DDP case, 1 {'process' if dry_run else 'GPU'}: {one['tokens_per_s']:,.0f} tokens/s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "ddp.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={DDP_GPUS}",
               str(Path(__file__).resolve()), "--ddp-worker", "--result", str(result)]
        cmd += ["--dry-run"] if dry_run else []
        cmd += [] if compile_ else ["--eager"]
        env = {**os.environ, "OMP_NUM_THREADS": "1"} if dry_run else dict(os.environ)
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not result.is_file():
            tail = (proc.stderr or proc.stdout)[-2000:]
            print(f"DDP case failed (exit {proc.returncode}):\n{tail}", flush=True)
            return {"error": f"torchrun exited {proc.returncode}", "stderr_tail": tail, "one": one}
        two = json.loads(result.read_text())
    efficiency = two["tokens_per_s"] / (DDP_GPUS * one["tokens_per_s"])
    verdict = "not judged (CPU dry run)" if dry_run else ("ok" if efficiency >= DDP_TARGET else "MISSED")
    print(f"  DDP case, {DDP_GPUS} {'processes' if dry_run else 'GPUs'}: {two['tokens_per_s']:,.0f} tokens/s → "
          f"scaling efficiency {efficiency:.1%} (target ≥ {DDP_TARGET:.0%}: {verdict})", flush=True)
    return {"one": one, "two": two, "world_size": two["world_size"], "efficiency": efficiency,
            "target": DDP_TARGET, "verdict": verdict, "dry_run": dry_run}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny shapes on CPU: check the script, not the GPU")
    ap.add_argument("--out", default="", help="folder for gpu_check.json")
    ap.add_argument("--no-sweep", action="store_true")
    ap.add_argument("--ddp-only", action="store_true", help="only the 2-GPU DDP scaling case")
    ap.add_argument("--dry-run", action="store_true",
                    help="only the DDP scaling case, tiny, on 2 CPU processes over gloo (checks the script)")
    ap.add_argument("--eager", action="store_true", help="DDP case without torch.compile")
    ap.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)  # one rank, under torchrun
    ap.add_argument("--result", default="", help=argparse.SUPPRESS)  # where rank 0 of the worker writes
    args = ap.parse_args(argv)
    if args.ddp_worker:
        return ddp_worker(args)
    if args.dry_run or args.ddp_only:
        print(f"torch {torch.__version__}; CUDA GPUs: {torch.cuda.device_count() if torch.cuda.is_available() else 0}",
              flush=True)
        result = ddp_scaling(args.dry_run, compile_=not args.eager)
        if args.out:
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "gpu_check.json").write_text(json.dumps({"ddp_scaling": result}, indent=2, default=str))
        return 1 if "error" in result else 0
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
    ddp = {"skipped": "--tiny runs on CPU; the DDP case's CPU path is --dry-run"} if args.tiny else \
        ddp_scaling(False, compile_=not args.eager)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(
            {"device": choice.as_dict(), "throughput": rows, "sweep": sweep_rows, "ddp_scaling": ddp}, indent=2,
            default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
