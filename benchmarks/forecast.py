"""Loss-curve forecasting accuracy (issue 14 §1): `python benchmarks/forecast.py`

1. The issue's target: a run drawn from the LR-annealing law (Tissue et al. 2024) with a cosine
   schedule (10,000 steps, peak 3e-4, warmup 200, final 3e-5) and 0.4% multiplicative noise, fitted on
   its first half: final-loss error and whether the truth is inside the 95% interval, over many
   noise seeds (coverage of the interval), and the time per forecast (200 bootstrap refits).
2. The same for the multi-power law (Luo et al. 2025) on a curve drawn from itself, fitted on 60%.
3. The back-test on the 14 bundled demo runs (full curves, logged LR): fitted on the first 20/40/60%
   of each run's steps, the error of the predicted mean loss over its last 10% of steps.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.curve_fit import CurveFitConfig, forecast_curve  # noqa: E402
from core.loss_curve import curve_features, multi_power_loss, tissue_loss  # noqa: E402
from core.schedules import Schedule  # noqa: E402
from services import forecast as forecast_service  # noqa: E402
from services.runs import open_store  # noqa: E402
from services.seed import seed_probe_demo  # noqa: E402

COSINE = Schedule("cosine", 10_000, 3e-4, 200, 3e-5)
STEPS = np.arange(10, 10_001, 10)


def synthetic(law: str, truth_theta, fit_until: int, seeds: int, bootstrap: int) -> None:
    predict = tissue_loss if law == "lr-annealing" else multi_power_loss
    truth = predict(truth_theta, curve_features(COSINE.lr(), 200, STEPS))
    errors, inside, seconds = [], 0, []
    for seed in range(seeds):
        noisy = truth * (1 + 0.004 * np.random.default_rng(seed).standard_normal(len(truth)))
        seen = STEPS <= fit_until
        t0 = time.perf_counter()
        fc = forecast_curve(STEPS[seen], noisy[seen], COSINE.lr(), 200,
                            CurveFitConfig(law=law, bootstrap=bootstrap, seed=seed))
        seconds.append(time.perf_counter() - t0)
        errors.append(100 * (fc.final_loss - truth[-1]) / truth[-1])
        inside += fc.interval[0] <= truth[-1] <= fc.interval[1]
    errors = np.abs(errors)
    print(f"{law:13s} fit on ≤ step {fit_until}: |error| median {np.median(errors):.2f}%, max {errors.max():.2f}%; "
          f"truth inside the 95% interval {inside}/{seeds}; {np.median(seconds):.2f} s per forecast "
          f"({bootstrap} bootstrap refits)")


def backtest() -> None:
    store = open_store(f"duckdb:///{tempfile.mkdtemp()}/bench.duckdb")
    seed_probe_demo(store)
    names = [n for n in store.runs()["name"] if n.startswith("demo-dense")]
    print(f"\nback-test on the {len(names)} bundled demo runs (error % of the mean loss over the last 10% of steps)")
    print(f"{'run':32s} {'law':13s} {'20%':>8s} {'40%':>8s} {'60%':>8s}")
    print("(* = the fit left L0, α or φ at a bound: the page and the CLI warn beside such a forecast)")
    table, flagged = {}, {}
    for law in ("lr-annealing", "multi-power"):
        for name in names:
            rows = forecast_service.backtest_run(store, name, metric="train_loss", law=law)
            table.setdefault(law, []).append([r.error_pct for r in rows])
            flagged.setdefault(law, []).append([bool(r.at_bounds) for r in rows])
            print(f"{name:32s} {law:13s} " + " ".join(f"{r.error_pct:+8.2f}{'*' if r.at_bounds else ' '}" for r in rows))
    for law, rows in table.items():
        err, flag = np.abs(rows), np.array(flagged[law])
        med = np.median(err, axis=0)
        print(f"median |error| {law:13s}: 20% {med[0]:.1f}%, 40% {med[1]:.1f}%, 60% {med[2]:.1f}%")
        for col, frac in ((1, "40%"), (2, "60%")):
            clean = err[~flag[:, col], col]
            print(f"  {frac}: {int(flag[:, col].sum())} flagged (median |error| {np.median(err[flag[:, col], col]):.1f}%),"
                  f" {len(clean)} not (median {np.median(clean):.1f}%, max {clean.max():.1f}%)")


if __name__ == "__main__":
    synthetic("lr-annealing", (2.0, 0.35, 0.45, 0.58), 5000, seeds=40, bootstrap=200)
    synthetic("multi-power", (2.0, 0.35, 0.45, 400.0, 2.0, 0.5, 0.5), 6000, seeds=20, bootstrap=50)
    backtest()
