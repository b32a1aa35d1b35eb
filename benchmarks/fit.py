"""Benchmark: Approach 3 on Epoch AI's Chinchilla data (240 points after dropping the 5 highest losses),
the full 4,500-start grid plus 1,000 bootstrap refits, batched (core.fitting) against the usual reference:
a Python loop of scipy.optimize.minimize(method="L-BFGS-B") per start and per resample, tight
tolerances (ftol = gtol = 1e-15), same data, same process — with the analytic gradient (the strongest
form of the reference) and with scipy's finite-difference gradient (what replication code runs).

The references take minutes, so by default they run on a measured subset (a seeded random 1/``--ref-stride``
of the starts and ``--ref-resamples`` resamples; ``--fd-*`` for the finite-difference one) and their times
are extrapolated linearly to 4,500 + 1,000 problems; the output says so. ``--full-reference`` runs
all of it.

    python benchmarks/fit.py [--ref-stride 45] [--ref-resamples 50] [--full-reference] [--write]
    python benchmarks/fit.py --cli [--repeat 2]

``--cli`` measures end to end instead: ``python cli.py fit --csv ... --drop-highest 5`` (start-up, CSV,
the fit, storing it in a fresh DuckDB file) as a child process, against a child process that runs the
analytic-gradient reference loop the way a replication script does (start-up, numpy, scipy, pandas,
CSV, the loop over a measured subset, extrapolated like the in-process reference). Wall and CPU
time (user + system, from the kernel's accounting of the child) of each; best of ``--repeat``.

Prints a table; ``--write`` also writes benchmarks/RESULTS_fit.md (numbers and the machine).
"""
from __future__ import annotations

import os

# One thread everywhere: the machine is shared, and a fair comparison uses one core for both.
for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import scipy  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.fitting.chinchilla import Approach3Settings, fit_chinchilla, scipy_reference_fit  # noqa: E402

DATA = ROOT / "assets" / "reference" / "epoch_chinchilla_svg_extracted_data.csv"


def _clock():
    return time.perf_counter(), time.process_time()


def _since(start):
    w, c = _clock()
    return w - start[0], c - start[1]


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (f"{cpu}, {os.cpu_count()} logical CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}; "
            f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}; "
            "1 BLAS thread")


def _child(cmd) -> tuple:
    """Run ``cmd`` as a child process: (wall s, CPU s of the child, stdout)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed:\n{proc.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, proc.stdout


def reference_process(args) -> None:
    """The child of ``--cli``: a replication script's reference loop over a seeded subset, timed inside."""
    t_start = _clock()
    import pandas  # noqa: F401 (what such a script reads the table with)
    from scipy.optimize import minimize  # noqa: F401

    df = pd.read_csv(DATA)
    n_all = df["Model Size"].to_numpy(float)
    d_all = df["Training FLOP"].to_numpy(float) / (6.0 * n_all)
    l_all = df["loss"].to_numpy(float)
    keep = np.sort(np.argsort(l_all, kind="stable")[:240])
    x, y, t = np.log(n_all[keep]), np.log(d_all[keep]), np.log(l_all[keep])
    starts = Approach3Settings().starts()
    pick = np.sort(np.random.default_rng(1).choice(len(starts), len(starts) // args.ref_stride, replace=False))
    counts = np.random.default_rng(args.seed).multinomial(240, np.full(240, 1 / 240), size=args.bootstrap).astype(float)
    setup = _since(t_start)
    t0 = _clock()
    theta, f = scipy_reference_fit(starts[pick], x, y, t, 1e-3)
    grid = _since(t0)
    n_res = min(args.bootstrap, args.ref_resamples)
    t0 = _clock()
    scipy_reference_fit(np.repeat(theta[np.argmin(f)][None], n_res, axis=0), x, y, t, 1e-3, weights=counts[:n_res])
    boot = _since(t0)
    print(json.dumps({"setup": setup, "grid": grid, "boot": boot, "grid_scale": len(starts) / len(pick),
                      "boot_scale": args.bootstrap / n_res, "best": float(f.min())}))


def cli_benchmark(args) -> None:
    """End to end: ``cli.py fit --csv`` against the reference loop, each in its own process."""
    env_note = "1 BLAS thread (OPENBLAS/OMP/MKL_NUM_THREADS=1, inherited by the children)"
    print(f"machine: {_machine()}; {env_note}")
    ours, refs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeat):
            db = f"duckdb:///{tmp}/fit{i}.duckdb"
            wall, cpu, out = _child([sys.executable, "cli.py", "fit", "--csv", str(DATA), "--drop-highest", "5",
                                     "--bootstrap", str(args.bootstrap), "--seed", str(args.seed), "--db", db, "--json"])
            ours.append((wall, cpu, json.loads(out)["objective"]))
            print(f"cli.py fit: {wall:.2f} s wall, {cpu:.2f} s CPU, objective {ours[-1][2]:.16e}")
            wall, cpu, out = _child([sys.executable, str(Path(__file__).resolve()), "--reference-process",
                                     "--ref-stride", str(args.ref_stride), "--ref-resamples", str(args.ref_resamples),
                                     "--bootstrap", str(args.bootstrap), "--seed", str(args.seed)])
            r = json.loads(out)
            # The process as measured, plus the loop's unmeasured remainder at the measured pace.
            extra_wall = r["grid"][0] * (r["grid_scale"] - 1) + r["boot"][0] * (r["boot_scale"] - 1)
            extra_cpu = r["grid"][1] * (r["grid_scale"] - 1) + r["boot"][1] * (r["boot_scale"] - 1)
            refs.append((wall + extra_wall, cpu + extra_cpu, r["best"]))
            print(f"reference process: {wall:.2f} s wall, {cpu:.2f} s CPU measured ({len(Approach3Settings().starts()) // args.ref_stride} "
                  f"starts, {min(args.bootstrap, args.ref_resamples)} resamples); extrapolated to 4,500 starts + {args.bootstrap} resamples: "
                  f"{refs[-1][0]:.1f} s wall, {refs[-1][1]:.1f} s CPU")
    o_wall, o_cpu = min(w for w, _, _ in ours), min(c for _, c, _ in ours)
    r_wall, r_cpu = min(w for w, _, _ in refs), min(c for _, c, _ in refs)
    print(f"end to end (best of {args.repeat}): cli.py fit {o_wall:.2f} s wall / {o_cpu:.2f} s CPU; reference process "
          f"{r_wall:.1f} s wall / {r_cpu:.1f} s CPU; speed-up {r_wall / o_wall:.1f}x wall, {r_cpu / o_cpu:.1f}x CPU")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ref-stride", type=int, default=45, help="reference runs 1/k of the starts (default 45: 100 random starts)")
    ap.add_argument("--ref-resamples", type=int, default=50, help="reference runs this many of the 1,000 resamples")
    ap.add_argument("--fd-stride", type=int, default=90, help="finite-difference reference: 1/k of the starts (90: 50)")
    ap.add_argument("--fd-resamples", type=int, default=20, help="finite-difference reference: resamples measured")
    ap.add_argument("--full-reference", action="store_true", help="run the references on all 4,500 + 1,000 problems")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true", help="write benchmarks/RESULTS_fit.md")
    ap.add_argument("--cli", action="store_true", help="end to end: cli.py fit --csv vs a reference process")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each (ours and the reference alternate; the best counts)")
    ap.add_argument("--reference-process", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if not DATA.exists():
        sys.exit(f"reference data not found at {DATA}")
    if args.reference_process:
        return reference_process(args)
    if args.cli:
        return cli_benchmark(args)

    df = pd.read_csv(DATA)
    n_all = df["Model Size"].to_numpy(float)
    d_all = df["Training FLOP"].to_numpy(float) / (6.0 * n_all)
    l_all = df["loss"].to_numpy(float)
    settings = Approach3Settings(drop_highest=5, n_bootstrap=args.bootstrap, seed=args.seed)
    print(f"machine: {_machine()}")

    keep = np.sort(np.argsort(l_all, kind="stable")[:240])
    x, y, t = np.log(n_all[keep]), np.log(d_all[keep]), np.log(l_all[keep])
    starts = settings.starts()
    rng = np.random.default_rng(args.seed)  # the same resamples as the batched bootstrap
    counts = rng.multinomial(240, np.full(240, 1 / 240), size=args.bootstrap).astype(float)
    references: dict = {}
    best_ours = (float("inf"), float("inf"))
    # Ours and the references alternate, --repeat times; each keeps its best time (the machine is
    # shared: the best of a few runs is the one least disturbed by other work).
    for _rep in range(args.repeat):
        # ---- batched (ours) ---------------------------------------------------------------------
        t0 = _clock()
        result = fit_chinchilla(n_all, d_all, l_all, settings)
        ours_wall, ours_cpu = _since(t0)
        best_ours = (min(best_ours[0], ours_wall), min(best_ours[1], ours_cpu))
        opt = result.diagnostics.optimizer
        print(f"batched: {opt['n_starts']} starts + {args.bootstrap} resamples in {ours_wall:.2f} s wall, "
              f"{ours_cpu:.2f} s CPU; best objective {result.objective:.16e}; "
              f"{opt['n_starts_at_best']} starts reach it; {opt.get('n_merged', 0)} merged, {opt.get('n_pruned', 0)} stopped "
              f"by the progress test, {opt.get('n_second_phase', 0)} distinct coarse end points converged on all points; "
              f"{opt['iterations_mean']:.1f} Newton steps per start")

        # ---- references: a Python loop of scipy L-BFGS-B -----------------------------------------
        theta_opt = result.diagnostics.optimizer["theta"]
        for label, jac, stride_default, res_default in (
            ("scipy L-BFGS-B loop, analytic gradient", True, args.ref_stride, args.ref_resamples),
            ("scipy L-BFGS-B loop, finite differences", False, args.fd_stride, args.fd_resamples),
        ):
            stride = 1 if args.full_reference else max(1, stride_default)
            # A seeded random subset of len(starts)/stride starts: a plain stride would fix some grid axes.
            pick = np.sort(np.random.default_rng(1).choice(len(starts), len(starts) // stride, replace=False))
            ref_starts = starts[pick]
            t0 = _clock()
            _, f_ref = scipy_reference_fit(ref_starts, x, y, t, settings.delta, jac=jac)
            grid_wall, grid_cpu = _since(t0)
            n_res = args.bootstrap if args.full_reference else min(args.bootstrap, max(1, res_default))
            t0 = _clock()
            scipy_reference_fit(np.repeat(theta_opt[None], n_res, axis=0), x, y, t, settings.delta,
                                weights=counts[:n_res], jac=jac)
            boot_wall, boot_cpu = _since(t0)
            scale_grid, scale_boot = len(starts) / len(ref_starts), args.bootstrap / n_res
            extrapolated = scale_grid > 1 or scale_boot > 1
            note = (f"EXTRAPOLATED linearly from a measured subset: {len(ref_starts)} of {len(starts)} starts (a "
                    f"seeded random subset) took {grid_wall:.1f} s wall / {grid_cpu:.1f} s CPU and {n_res} of {args.bootstrap} "
                    f"resamples took {boot_wall:.1f} s wall / {boot_cpu:.1f} s CPU" if extrapolated else "measured in full")
            r = dict(label=label + (" (extrapolated)" if extrapolated else ""), note=note,
                     wall=grid_wall * scale_grid + boot_wall * scale_boot, cpu=grid_cpu * scale_grid + boot_cpu * scale_boot,
                     best=float(f_ref.min()), n_starts=len(ref_starts))
            old = references.setdefault(label, r)  # best of the repeats, wall and CPU each
            old["wall"], old["cpu"] = min(old["wall"], r["wall"]), min(old["cpu"], r["cpu"])
            print(f"{r['label']}: {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU — {note}; best objective over its "
                  f"{r['n_starts']} starts {r['best']:.16e}")

    ours_wall, ours_cpu = best_ours
    references = list(references.values())
    rows = [("batched Newton with triage (core.fitting)", ours_wall, ours_cpu, result.objective)]
    rows += [(r["label"], r["wall"], r["cpu"], r["best"]) for r in references]
    print()
    print(f"{'method':<58} {'wall s':>9} {'CPU s':>9} {'best objective':>24}")
    for name, w, c, f in rows:
        print(f"{name:<58} {w:>9.2f} {c:>9.2f} {f:>24.16e}")
    lines = []
    for r in references:
        no_worse = result.objective <= r["best"] * (1 + 1e-12)
        lines.append(f"vs {r['label']}: {r['wall'] / ours_wall:.1f}x wall, {r['cpu'] / ours_cpu:.1f}x CPU; "
                     f"batched objective no worse: {no_worse} (relative difference "
                     f"{(result.objective - r['best']) / r['best']:+.1e})")
        print("speed-up " + lines[-1])
    p, se = result.params, result.stderr
    estimates = ", ".join(f"{k} = {p[k]:.4g} ± {se.get(k, float('nan')):.2g}" for k in ("E", "A", "B", "alpha", "beta"))
    print("estimates (± bootstrap s.e.): " + estimates)

    if args.write:
        out = ROOT / "benchmarks" / "RESULTS_fit.md"
        out.write_text(
            "# Approach 3 fit benchmark (benchmarks/fit.py)\n\n"
            f"Machine: {_machine()}.\n\n"
            "Task: Epoch AI's Chinchilla data, 240 points after dropping the 5 highest losses; Huber δ = 1e-3 on\n"
            f"log L − LSE(a − α log N, b − β log D, e); the full {len(starts)}-start grid of Besiroglu et al. 2024,\n"
            f"then {args.bootstrap} bootstrap refits from the optimum (seed {args.seed}). References: a Python loop of\n"
            "`scipy.optimize.minimize(method=\"L-BFGS-B\")` per start and per resample, ftol = gtol = 1e-15,\n"
            "same data, same process, one BLAS thread — once with the analytic gradient (the strongest form of\n"
            "the reference) and once with scipy's finite-difference gradient (what replication code usually runs).\n\n"
            "| method | wall s | CPU s | best objective |\n|---|---:|---:|---:|\n"
            + "".join(f"| {name} | {w:.2f} | {c:.2f} | {f:.16e} |\n" for name, w, c, f in rows)
            + "\n" + f"Best of {args.repeat} alternating runs of each (wall and CPU each their own best).\n\n"
            + "".join(f"- Speed-up {line}.\n" for line in lines)
            + "".join(f"- {r['label']}: {r['note']}.\n" for r in references)
            + f"- Batched run: {opt['n_starts_at_best']} of {opt['n_starts']} starts reach the best objective "
              f"(counting those merged into a start that does; {opt.get('n_merged', 0)} merged in all); "
              f"{opt.get('n_pruned', 0)} stopped by the progress test (or merged into one it stopped); {opt.get('n_second_phase', 0)} distinct coarse end points converged on all 240 "
              f"points; {opt['iterations_mean']:.1f} Newton steps per start (coarse phase on {settings.coarse_points} "
              "points).\n"
            + f"- Estimates (± bootstrap s.e.): {estimates}.\n"
        )
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
