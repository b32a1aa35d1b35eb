"""First start: seed an empty store with demo runs so a newcomer sees curves at once.

Prefers the sweep that ScaleScope's own probes trained (assets/demo/, issue 6, tagged "probe demo");
without it, the synthetic sweep of :mod:`core.demo`, tagged "synthetic demo".
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pandas as pd

from core.demo import DEMO_TAG, demo_sweep
from core.errors import ScaleScopeError
from core.runs import ParsedRun
from db.evals import insert_evals
from db.store import Store, validate_parsed

ASSETS = Path(__file__).resolve().parents[1] / "assets"


DEMO_DIR = ASSETS / "demo"
PROBE_DEMO_TAG = "probe demo"


def probe_demo() -> tuple[list[ParsedRun], pd.DataFrame] | None:
    """The sweep ScaleScope's own probes trained (assets/demo/, made by assets/run_demo_sweep.py):
    its runs with their curves, and the per-domain held-out losses as eval rows. None if absent."""
    files = [DEMO_DIR / f for f in ("sweep_runs.csv", "sweep_metrics.csv", "sweep_evals.csv")]
    if not all(f.is_file() for f in files):
        return None
    table, metrics, evals = (pd.read_csv(f) for f in files)
    curves = dict(tuple(metrics.groupby("run")))
    runs = []
    for row in table.to_dict("records"):
        config = json.loads(row.get("config_json") or "{}")
        def size(key, cast=float):
            value = row.get(key)
            return None if value is None or pd.isna(value) else cast(value)
        runs.append(ParsedRun(
            name=row["name"], source_format="probe_sweep", source_file="assets/demo/sweep_runs.csv",
            arch=row.get("arch") or "dense", n_params=size("n_params"),
            n_nonembedding_params=size("n_nonembedding_params"), n_active_params=size("n_active_params"),
            n_experts=size("n_experts", int), top_k=size("top_k", int), seq_len=size("seq_len", int),
            tokens_per_step=size("tokens_per_step"), tokens=size("tokens"), flops=size("flops"),
            flops_rule=row.get("flops_rule") or "6*N_active*D", config=config, tags=[PROBE_DEMO_TAG],
            metrics=curves[row["name"]].drop(columns=["run"]).reset_index(drop=True)))
    return runs, evals


def seed_probe_demo(store: Store) -> int:
    """Store the bundled probe sweep (runs, curves and held-out evals) in one transaction."""
    demo = probe_demo()
    if demo is None:
        return 0
    runs, evals = demo
    for run in runs:
        validate_parsed(run)
    with store.write() as conn:
        added = store.ingest_into(conn, runs, "skip")
        ids = {a["parsed_name"]: a["id"] for a in added}
        rows = evals[evals["run"].isin(ids)]
        insert_evals(conn, rows.assign(run_id=rows["run"].map(ids), source_file="assets/demo/sweep_evals.csv"))
    return len(added)


def synthetic_runs() -> list[ParsedRun]:
    return [ParsedRun(name=r["name"], source_format="synthetic_demo", source_file="core/demo.py",
                      n_params=r["n_params"], n_active_params=r["n_params"], tokens=r["tokens"],
                      flops=r["flops"], tokens_per_step=r["tokens_per_step"],
                      config={"budget_flops": r["budget"], "law": "Besiroglu et al. 2024"},
                      tags=[DEMO_TAG], metrics=r["metrics"])
            for r in demo_sweep()]


def seed_demo_fit(store: Store) -> int:
    """Fit Chinchilla's law (Approach 3, coarse start grid, 200 bootstrap resamples) to the bundled
    sweep's final held-out losses and store it, so the Fits and Planner pages open on a law fitted
    to runs ScaleScope trained itself. Returns the fit id."""
    from services.fits import FitOptions, Target, fit_and_save, load_fit_data  # scipy: only a first start fits

    names = [r.name for r in probe_demo()[0]]
    data = load_fit_data(store, names, Target(kind="final", metric="eval_loss"), n_kind="active")
    fit_id, _ = fit_and_save(store, data, FitOptions(n_bootstrap=200, grid="coarse"),
                             name="demo sweep (bundled, trained by ScaleScope)")
    return fit_id


def seed_if_empty(store: Store, routing: bool = False) -> int:
    """Seed the demo into an empty store; returns the number of runs added (0 when not empty).

    ``SCALESCOPE_DEMO=synthetic`` picks the synthetic sweep even when the probe sweep is bundled
    (the tests do, so their numbers do not move when the bundled sweep is regenerated).
    With ``routing``, also capture the bundled tiny MoE checkpoints on the bundled held-out text
    (issue 5), so the Routing page has heatmaps at once; a broken asset never stops the app.
    """
    if not store.is_empty():
        return 0
    use_probe = os.environ.get("SCALESCOPE_DEMO", "probe") != "synthetic"
    added = use_probe and seed_probe_demo(store)
    if added:
        seed_demo_fit(store)
    else:
        added = len(store.ingest(synthetic_runs(), on_duplicate="skip"))
    if routing:
        from services.routing_seed import seed_bundled_capture  # torch: only when routing is seeded

        try:
            seed_bundled_capture(store)
        except ScaleScopeError as exc:  # the runs are seeded; the Routing page can still capture
            logging.getLogger(__name__).warning("bundled routing capture skipped: %s", exc)
    return added
