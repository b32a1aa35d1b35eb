"""First start: seed an empty store with demo runs so a newcomer sees curves at once.

Prefers the sweep that ScaleScope's own probes trained (assets/demo/, issue 6); until that exists,
the synthetic sweep of :mod:`core.demo`, tagged "synthetic demo".
"""
from __future__ import annotations

import logging
from pathlib import Path

from core.demo import DEMO_TAG, demo_sweep
from core.errors import ScaleScopeError
from db.importers.base import ParsedRun
from db.store import Store

ASSETS = Path(__file__).resolve().parents[1] / "assets"


def demo_runs() -> list[ParsedRun]:
    """The runs to seed: the bundled probe sweep when present, else the synthetic sweep."""
    return synthetic_runs()


def synthetic_runs() -> list[ParsedRun]:
    return [ParsedRun(name=r["name"], source_format="synthetic_demo", source_file="core/demo.py",
                      n_params=r["n_params"], n_active_params=r["n_params"], tokens=r["tokens"],
                      flops=r["flops"], tokens_per_step=r["tokens_per_step"],
                      config={"budget_flops": r["budget"], "law": "Besiroglu et al. 2024"},
                      tags=[DEMO_TAG], metrics=r["metrics"])
            for r in demo_sweep()]


def seed_if_empty(store: Store, routing: bool = False) -> int:
    """Seed the demo into an empty store; returns the number of runs added (0 when not empty).

    With ``routing``, also capture the bundled tiny MoE checkpoints on the bundled held-out text
    (issue 5), so the Routing page has heatmaps at once; a broken asset never stops the app.
    """
    if not store.is_empty():
        return 0
    added = len(store.ingest(demo_runs(), on_duplicate="skip"))
    if routing:
        from db.routing_seed import seed_bundled_capture

        try:
            seed_bundled_capture(store)
        except ScaleScopeError as exc:  # the runs are seeded; the Routing page can still capture
            logging.getLogger(__name__).warning("bundled routing capture skipped: %s", exc)
    return added
