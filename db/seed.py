"""First start: seed an empty store with demo runs so a newcomer sees curves at once.

Prefers the sweep that ScaleScope's own probes trained (assets/demo/, issue 6); until that exists,
the synthetic sweep of :mod:`core.demo`, tagged "synthetic demo".
"""
from __future__ import annotations

from pathlib import Path

from core.demo import DEMO_TAG, demo_sweep
from db.importers.base import ParsedRun
from db.store import Store

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def synthetic_runs() -> list[ParsedRun]:
    return [ParsedRun(name=r["name"], source_format="synthetic_demo", source_file="core/demo.py",
                      n_params=r["n_params"], n_active_params=r["n_params"], tokens=r["tokens"],
                      flops=r["flops"], tokens_per_step=r["tokens_per_step"],
                      config={"budget_flops": r["budget"], "law": "Besiroglu et al. 2024"},
                      tags=[DEMO_TAG], metrics=r["metrics"])
            for r in demo_sweep()]


def seed_if_empty(store: Store) -> int:
    """Seed the demo into an empty store; returns the number of runs added (0 when not empty)."""
    if not store.is_empty():
        return 0
    return len(store.ingest(synthetic_runs(), on_duplicate="skip"))
