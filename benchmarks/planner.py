"""Time the computation behind one Planner slider move (issue 4: ≤ 5 ms; with bootstrap bands ≤ 50 ms).

    python benchmarks/planner.py [--repeats 300]

Prints one Markdown table (median and 95th percentile per case, in ms) and the machine it ran on.
The target is judged on the median: on a shared machine the p95 mostly measures the scheduler.
Only core/ is timed: the Streamlit rerun and the browser round trip are measured by the e2e test.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import scipy

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from core.accelerators import budget_from_accelerators  # noqa: E402
from core.inference_aware import inference_optimum_for_model  # noqa: E402
from core.laws import DataConstrainedParams, chinchilla_loss  # noqa: E402
from core.planner import (  # noqa: E402
    bootstrap_bands,
    chinchilla_frontier,
    chinchilla_optimum,
    data_constrained_optimum,
    iso_flop_curve,
    kaplan_optimum,
    moe_optimum,
    plan_from_fit,
)
from core.presets import get_preset  # noqa: E402

EPOCH = get_preset("epoch").params
KAPLAN = get_preset("kaplan").params
CLARK = get_preset("clark_sbase").params
SARDANA = get_preset("sardana_frankle").params

# What the page draws on each move (sizes the page is expected to use).
CURVE_N = np.logspace(8, 13, 200)  # loss vs N along the chosen budget's iso-FLOP line
FRONTIER_C = np.logspace(18, 27, 200)  # the compute-optimal frontier line
GRID_N, GRID_D = np.meshgrid(np.logspace(8, 13, 120), np.logspace(9, 14, 120))  # iso-loss contours


def _bootstrap_fit(n_samples: int, seed: int = 0) -> dict:
    """A fit as the store returns it: params plus ``bootstrap_samples`` as a JSON list of rows."""
    rng = np.random.default_rng(seed)
    centre = np.array([EPOCH.E, EPOCH.A, EPOCH.B, EPOCH.alpha, EPOCH.beta])
    rows = centre * (1.0 + 0.03 * rng.standard_normal((n_samples, 5)))
    params = dict(E=EPOCH.E, A=EPOCH.A, B=EPOCH.B, alpha=EPOCH.alpha, beta=EPOCH.beta)
    return {"law": "chinchilla", "params": params, "bootstrap_samples": rows.tolist()}


FIT_1000 = _bootstrap_fit(1000)
FIT_10000 = _bootstrap_fit(10000)
SAMPLES_1000 = np.asarray(FIT_1000["bootstrap_samples"])


def slider_move(flops: float, fit: dict | None = None) -> None:
    """Everything core computes when the budget slider moves: plan, inference plan, the three plots."""
    if fit is None:
        chinchilla_optimum(flops, EPOCH)
    else:
        plan_from_fit(flops, fit)
    inference_optimum_for_model(13e9, 2e12, EPOCH)
    iso_flop_curve(flops, EPOCH, CURVE_N)
    chinchilla_frontier(FRONTIER_C, EPOCH)
    chinchilla_loss(GRID_N, GRID_D, EPOCH)
    budget_from_accelerators("H100 SXM", 1024, 30, 0.4, price_per_hour=2.5)


CASES = [
    ("closed-form plan (Hoffmann eq. 4)", lambda c: chinchilla_optimum(c, EPOCH), None),
    ("iso-FLOP search: Kaplan L(N, D)", lambda c: kaplan_optimum(c, KAPLAN), None),
    (
        "iso-FLOP search: data-constrained",
        lambda c: data_constrained_optimum(c, DataConstrainedParams(EPOCH), 1e11),
        None,
    ),
    ("iso-FLOP search: MoE, 64 experts", lambda c: moe_optimum(c, EPOCH, CLARK, 64), None),
    (
        "inference-aware (13B quality, 2T tokens)",
        lambda c: inference_optimum_for_model(13e9, 2e12, SARDANA),
        None,
    ),
    (
        "plot data: curve 200 + frontier 200 + grid 120²",
        lambda c: (
            iso_flop_curve(c, EPOCH, CURVE_N),
            chinchilla_frontier(FRONTIER_C, EPOCH),
            chinchilla_loss(GRID_N, GRID_D, EPOCH),
        ),
        None,
    ),
    ("bootstrap bands, 1000 samples (ndarray)", lambda c: bootstrap_bands(c, SAMPLES_1000), None),
    ("ONE SLIDER MOVE (plan + inference + plots)", lambda c: slider_move(c), 5.0),
    ("ONE SLIDER MOVE with bands, 1000 samples", lambda c: slider_move(c, FIT_1000), 50.0),
    ("ONE SLIDER MOVE with bands, 10000 samples", lambda c: slider_move(c, FIT_10000), None),
]


def time_case(fn, repeats: int) -> tuple[float, float]:
    """Median and 95th percentile in ms; each call uses a different budget, as a dragged slider does."""
    budgets = np.logspace(18, 27, repeats)
    fn(1e23)  # warm caches and imports
    times = np.empty(repeats)
    for i, c in enumerate(budgets):
        t0 = time.perf_counter()
        fn(float(c))
        times[i] = time.perf_counter() - t0
    return float(np.median(times) * 1e3), float(np.percentile(times, 95) * 1e3)


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    load = ", load average %.2f" % os.getloadavg()[0] if hasattr(os, "getloadavg") else ""
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs{load}; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="calls per case (default 300)")
    args = parser.parse_args()
    print(f"Machine: {machine()}\n")
    print("| case | median ms | p95 ms | target ms | ok |")
    print("|---|---:|---:|---:|---|")
    failed = False
    for name, fn, target in CASES:
        median, p95 = time_case(fn, args.repeats)
        ok = "" if target is None else ("yes" if median <= target else "NO")
        failed |= ok == "NO"
        print(f"| {name} | {median:.3f} | {p95:.3f} | {'' if target is None else f'{target:g}'} | {ok} |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
