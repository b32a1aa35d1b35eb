"""The synthetic demo sweep seeded into an empty store, so a newcomer sees curves at once.

Generated from a known law — Chinchilla's parametric form with Besiroglu et al. 2024's estimates
(E 1.8172, A 482.01, B 2085.43, α 0.3478, β 0.3658) — plus log-normal noise. Every run is tagged
"synthetic demo" and the UI says so. Issue 6 replaces it with runs ScaleScope trained itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from core.laws import compute_optimal_nd

DEMO_TAG = "synthetic demo"


@dataclass(frozen=True)
class DemoConfig:
    budgets: tuple = (1e18, 3e18, 1e19, 3e19, 1e20)       # FLOPs per IsoFLOP slice: 5 slices span 2 decades
    sizes_per_budget: int = 6                              # enough points for an IsoFLOP parabola
    steps: int = 400                                       # logged points per curve: small, still curve-like
    noise: float = 0.01                                    # relative (log) noise on final loss, like seed variance
    seed: int = 0                                          # reproducible demo
    E: float = 1.8172                                      # Besiroglu et al. 2024, Table 1
    A: float = 482.01
    B: float = 2085.43
    alpha: float = 0.3478
    beta: float = 0.3658


def demo_sweep(cfg: DemoConfig = DemoConfig()) -> list[dict]:
    """Return runs as dicts: name, n_params, tokens, flops, tokens_per_step and a ``metrics`` frame.

    Each curve follows L(N, d) = E + A/N^α + B/d^β as tokens d grow to D = C/(6N), multiplied by
    one run-level noise factor and small per-step noise. C = 6ND exactly (Kaplan et al. 2020).
    """
    rng = np.random.default_rng(cfg.seed)
    runs = []
    for budget in cfg.budgets:
        # Sizes around the compute-optimal N for this budget, spread over ±1 decade in log N.
        n_opt = float(compute_optimal_nd(budget, cfg.A, cfg.B, cfg.alpha, cfg.beta)[0])
        for n_params in n_opt * np.logspace(-0.8, 0.8, cfg.sizes_per_budget):
            n_params = float(np.round(n_params, -3))
            tokens = budget / (6 * n_params)
            tokens_per_step = tokens / cfg.steps
            step = np.arange(1, cfg.steps + 1, dtype=np.float64)
            d = step * tokens_per_step
            clean = cfg.E + cfg.A / n_params ** cfg.alpha + cfg.B / d ** cfg.beta
            run_noise = np.exp(rng.normal(0, cfg.noise))
            loss = clean * run_noise * np.exp(rng.normal(0, 0.004, size=step.size))
            loss[-1] = clean[-1] * run_noise
            name = f"demo-C{budget:.0e}-N{n_params / 1e6:.1f}M".replace("+", "")
            metrics = pd.DataFrame({"name": "loss", "step": step, "tokens": d, "flops": 6 * n_params * d,
                                    "wall_time": step * 0.5, "value": loss})
            runs.append({"name": name, "n_params": n_params, "tokens": d[-1], "flops": 6 * n_params * d[-1],
                         "tokens_per_step": tokens_per_step, "budget": budget, "metrics": metrics})
    return runs
