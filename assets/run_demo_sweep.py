"""Run the demo IsoFLOP sweep with ScaleScope's own probe code and write its measured runs.

    nice -n 10 python assets/run_demo_sweep.py            # the committed demo (CPU, 2 threads)
    python assets/run_demo_sweep.py --budgets 1e11 --sizes 1.4e5,3.2e5 --out /tmp/demo   # a pilot

Dense Llama-style models on the bundled corpus and tokenizer; for each budget C the sizes N whose
D = C/(6N) gives at least --min-steps steps (up to --per-budget of them, centred on the grid).
Writes to --out (default assets/demo/):
- sweep_runs.csv     one row per run: sizes, tokens, FLOPs, final losses, config and tags (JSON)
- sweep_metrics.csv  the curves: run, name, step, tokens, flops, wall_time, value
- sweep_evals.csv    final held-out loss per domain: run, step, task, metric, value
  (core.probes.sweep.read_tables turns the three back into ProbeRun objects, ready for the store)
- README.md          the command, the machine, and a Chinchilla-form fit of the runs
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from core import corpus  # noqa: E402
from core.probes import sweep  # noqa: E402
from core.probes.model_configs import count_params, shape_for_params  # noqa: E402

# Target sizes (active parameters, tied 4096×d embedding included) → shapes d/L = 16/1, 32/1, 64/1,
# 96/1, 128/2, 160/3. Budgets step by 3×. A first grid at C = 2e11-1.8e12 had every IsoFLOP minimum
# at its smallest model (runs data-limited: ≤ 5 tokens per parameter), so the budgets sit higher and
# the two lower curves reach down to d = 16: each curve's minimum then lies inside its sizes.
# ~6e13 FLOPs in all: ~20 min on 2 idle cores (the d ≤ 32 models are overhead-bound), longer on a
# busy machine; --resume keeps finished runs.
S = {"70k": 7e4, "144k": 1.45e5, "316k": 3.2e5, "504k": 5e5, "926k": 9.3e5, "1.6M": 1.6e6}
DEFAULT_GRID = {
    1e12: [S["70k"], S["144k"], S["316k"], S["504k"], S["926k"]],
    3e12: [S["70k"], S["144k"], S["316k"], S["504k"], S["926k"], S["1.6M"]],
    9e12: [S["316k"], S["504k"], S["926k"]],
}
DEFAULT_SIZES = ",".join(f"{v:g}" for v in S.values())


def _floats(text: str) -> list:
    return [float(x) for x in text.split(",") if x.strip()]


def grid_for(budgets, sizes, per_budget: int, tokens_per_step: int, min_steps: int, vocab: int, seq_len: int) -> dict:
    """{budget: sizes}: per budget, the largest ``per_budget`` sizes that still get ``min_steps``."""
    out = {}
    for c in budgets:
        fits = [n for n in sizes
                if c / (6 * count_params(shape_for_params(n, "dense", vocab, seq_len)).active) / tokens_per_step
                >= min_steps]
        out[c] = fits[-per_budget:]
    return out


def fit_summary(table: pd.DataFrame) -> dict:
    """Chinchilla-form fit (Hoffmann et al. 2022 Approach 3, core.fitting) and the IsoFLOP minima."""
    from core.fitting.chinchilla import Approach3Settings, fit_chinchilla

    res = fit_chinchilla(table["n_active_params"].to_numpy(), table["tokens"].to_numpy(),
                         table["final_eval_loss"].to_numpy(), Approach3Settings(n_bootstrap=200, budgets=(1e12, 1e13)))
    summary = {"law": "L = E + A/N^alpha + B/D^beta", "params": {k: float(v) for k, v in res.params.items()},
               "a (N_opt ~ C^a)": float(res.derived.get("a", np.nan)),
               "b (D_opt ~ C^b)": float(res.derived.get("b", np.nan)),
               "intervals": {k: [float(x) for x in v] for k, v in res.intervals.items()
                             if k in ("alpha", "beta", "E", "a", "b")},
               "warnings": res.warnings, "n_points": res.n_points}
    minima = {}
    for c, group in table.groupby("budget_flops"):
        best = group.loc[group["final_eval_loss"].idxmin()]
        interior = best["n_active_params"] not in (group["n_active_params"].min(), group["n_active_params"].max())
        minima[f"{c:.3g}"] = {"n_active_params": float(best["n_active_params"]), "loss": float(best["final_eval_loss"]),
                              "interior": bool(interior)}
    summary["isoflop_minima"] = minima
    return summary


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budgets", default="", help="compute budgets C in FLOPs, comma-separated "
                    "(default: the committed grid, DEFAULT_GRID)")
    ap.add_argument("--sizes", default=DEFAULT_SIZES, help="target active parameter counts, comma-separated "
                    "(with --budgets)")
    ap.add_argument("--per-budget", type=int, default=5, help="sizes per budget, largest that fit (with --budgets)")
    ap.add_argument("--min-steps", type=int, default=20, help="fewest optimizer steps a run may have")
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8, help="sequences per step (8 × 128: fewer, fuller "
                    "steps; per-step overhead dominates the smallest models on a CPU)")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "assets" / "demo"))
    ap.add_argument("--no-fit", action="store_true", help="skip the Chinchilla fit")
    ap.add_argument("--resume", action="store_true", help="keep the runs of this grid already in --out; "
                    "train only the missing ones (each run is seeded on its own, so the result is the same)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.time()

    tokenizer = corpus.load_tokenizer()
    vocab = tokenizer.get_vocab_size()
    train_blocks, heldout_blocks = corpus.bundled_blocks(args.seq_len, tokenizer=tokenizer)
    print(f"corpus: {train_blocks.n_tokens:,} train tokens, {heldout_blocks.n_tokens:,} held-out tokens "
          f"({time.time() - t_start:.0f}s)", flush=True)
    if args.budgets:
        grid = grid_for(_floats(args.budgets), _floats(args.sizes), args.per_budget, args.batch_size * args.seq_len,
                        args.min_steps, vocab, args.seq_len)
    else:
        grid = DEFAULT_GRID
    cfg = sweep.SweepConfig(budgets=list(grid), sizes=grid, vocab_size=vocab, seq_len=args.seq_len,
                            batch_size=args.batch_size, min_steps=args.min_steps, seed=args.seed, device=args.device,
                            name_prefix="demo")
    plan = sweep.plan_sweep(cfg, train_tokens=train_blocks.n_tokens)
    print(f"plan: {len(plan.runs)} runs, {plan.total_flops:.3g} FLOPs, estimated {plan.est_seconds / 60:.1f} min on "
          f"{plan.device['name']} ({plan.device['threads']} threads)", flush=True)
    for r in plan.runs:
        print(f"  {r.name:34s} d={r.shape.d_model:4d} L={r.shape.n_layers} N={r.counts.active:>9,} "
              f"D={r.tokens:>9,} steps={r.steps:5d} lr={r.lr:.2g} est {r.est_seconds:5.0f}s", flush=True)

    last = [0.0]

    def progress(done: int, total: int, message: str) -> None:
        if time.time() - last[0] > 30 or done == total:
            last[0] = time.time()
            print(f"  [{done}/{total}] {message}", flush=True)

    done = {}
    if args.resume and (out / sweep.RUNS_CSV).is_file():
        done = {r.name: r for r in sweep.read_tables(out)}
        print(f"resume: {sum(r.name in done for r in plan.runs)} of {len(plan.runs)} runs already in {out}")
    todo = sweep.SweepPlan(runs=[r for r in plan.runs if r.name not in done], device=plan.device,
                           total_flops=plan.total_flops, est_seconds=plan.est_seconds, flops_per_s=plan.flops_per_s)
    trained = sweep.run_sweep(cfg, train_blocks, heldout_blocks, plan=todo, progress=progress,
                              corpus_info={"tokenizer": "assets/tokenizer", "vocab_size": vocab,
                                           "train_tokens": train_blocks.n_tokens}) if todo.runs else []
    by_name = {**done, **{r.name: r for r in trained}}
    runs = [by_name[r.name] for r in plan.runs]  # plan order; runs of another grid are dropped
    train_minutes = sum(r.config["wall_time_s"] for r in runs) / 60

    sweep.write_tables(runs, out)  # sweep_runs.csv, sweep_metrics.csv, sweep_evals.csv (sweep.read_tables)
    table = sweep.runs_table(runs)
    print(table[["name", "n_active_params", "tokens", "flops", "final_eval_loss", "wall_time_s"]].to_string(index=False))

    fit = None if args.no_fit else fit_summary(table)
    if fit:
        print(json.dumps(fit, indent=2))
    given = [a for a in (sys.argv[1:] if argv is None else argv) if a != "--resume"]
    command = " ".join(["nice -n 10 python assets/run_demo_sweep.py", *given])
    lines = [
        "# Demo sweep (measured by ScaleScope's probe code)", "",
        f"Regenerate: `{command}` ({train_minutes:.1f} min of training in all, the sum of the runs' "
        "wall_time_s; held-out scoring and set-up add a few minutes).", "",
        f"Machine: {plan.device['name']}, {plan.device['threads']} torch threads, torch {plan.device['torch']}, "
        f"{plan.device['kind']} {plan.device['dtype']}.", "",
        f"{len(runs)} dense Llama-style runs, budgets {', '.join(f'{c:.3g}' for c in grid)} FLOPs (C = 6·N·D, "
        "N = active parameters incl. the tied 4096×d embedding), seq_len "
        f"{args.seq_len}, {args.batch_size * args.seq_len} tokens/step, cosine to 10 %, seed {args.seed}.", "",
        "Files: sweep_runs.csv (one row per run), sweep_metrics.csv (curves), sweep_evals.csv (held-out loss per domain).",
    ]
    if fit:
        p = fit["params"]
        lines += ["", "Chinchilla-form fit (core.fitting.chinchilla.fit_chinchilla, Approach 3, final held-out loss):",
                  f"E = {p['E']:.3f}, A = {p['A']:.4g}, B = {p['B']:.4g}, alpha = {p['alpha']:.3f}, "
                  f"beta = {p['beta']:.3f}; a = {fit['a (N_opt ~ C^a)']:.3f}, b = {fit['b (D_opt ~ C^b)']:.3f}.",
                  "IsoFLOP minima: " + "; ".join(f"C={c}: N={m['n_active_params']:,.0f} (loss {m['loss']:.3f}"
                                                 f"{', interior' if m['interior'] else ', at the edge'})"
                                                 for c, m in fit["isoflop_minima"].items())]
        (out / "fit.json").write_text(json.dumps(fit, indent=2) + "\n")
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
