"""First start: give an empty store the demo, so a newcomer sees curves, fits and evals at once.

The demo (issue 13 §1-2) is shipped PRECOMPUTED: ``assets/demo/snapshot/`` is a backup folder (one
Parquet file per table and a manifest, :mod:`services.backup`) made by ``assets/build_demo_snapshot.py``
from :func:`build_demo` below; first start restores it into the empty store through the backup's fast
restore path (well under a second) instead of fitting and capturing for a minute. What it holds:

- "demo": the sweep ScaleScope's own probes trained (assets/demo/*.csv), with its held-out evals, its
  ``sweep`` row (listed under the Probes page's "Stored sweeps") and a Chinchilla fit of it;
- "example": public data from assets/reference/ (provenance there): Hoffmann et al.'s Chinchilla runs as
  Epoch AI extracted them, fitted with Besiroglu et al. 2024's settings (the Fits page opens on it, the
  Planner's default law takes its bootstrap bands); the observational-scaling base-model table (Ruan et
  al. 2024; the Evals page opens on its PCA) and the Pythia zero-shot evals;
- "sweep=demo-mixture": the D-CPT mixture sweep ScaleScope's probes trained (assets/demo/mixture_*.csv)
  and Que et al. 2024's domain- and general-loss laws fitted to it (the Planner's D-CPT panel);
- the routing captures of the bundled tiny MoE (services/routing_seed.py).

Without the snapshot (a checkout that has not built it) :func:`build_demo` computes the same at first
start. ``SCALESCOPE_DEMO=synthetic`` seeds the synthetic sweep of :mod:`core.demo` instead, tagged
"synthetic demo" (the page tests do: a known law, a few milliseconds).
"""
from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from core.demo import DEMO_TAG, demo_sweep
from core.errors import ScaleScopeError
from core.runs import ParsedRun
from db.evals import insert_evals
from db.probes import insert_probe
from db.store import Store, validate_parsed
from services.demo_names import (  # noqa: F401  (re-exported: seed.PROBE_DEMO_TAG, …)
    CHINCHILLA_TAG, DCPT_FIT_NAMES, DEMO_FIT_NAME, DEMO_SWEEP_ID, EXAMPLE_FIT_NAME, EXAMPLE_TAG, MIXTURE_SWEEP_ID,
    OBSSCALING_TAG, PROBE_DEMO_TAG, PYTHIA_TAG)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
REFERENCE = ASSETS / "reference"

DEMO_DIR = ASSETS / "demo"
SNAPSHOT_DIR = DEMO_DIR / "snapshot"  # the precomputed demo: a backup folder (services/backup.py)
CHINCHILLA_CSV = REFERENCE / "epoch_chinchilla_svg_extracted_data.csv"
OBSSCALING_CSV = REFERENCE / "obsscaling_base_llm_benchmark_eval.csv"
PYTHIA_CSV = REFERENCE / "pythia_v1_zero_shot_evals.csv"

Progress = Optional[Callable[[int, int, str], None]]


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
    """Store the bundled probe sweep (runs, curves and held-out evals) and its ``sweep`` probes row
    (so the Probes page lists it under "Stored sweeps") in one transaction."""
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
        if added:
            from services.probes import sweep_summary  # the probes row a sweep stores, as a trained sweep has it

            kept = [r for r in runs if r.name in ids]
            summary = sweep_summary(kept, DEMO_SWEEP_ID, {"bundled": "assets/demo (assets/run_demo_sweep.py)"})
            summary["config"].update(tag=PROBE_DEMO_TAG, runs=[r.name for r in kept], capture_ids=[])
            insert_probe(conn, **summary)
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
    fit_id, _ = fit_and_save(store, data, FitOptions(n_bootstrap=200, grid="coarse"), name=DEMO_FIT_NAME)
    return fit_id


def seed_mixture_demo(store: Store) -> list[int]:
    """The D-CPT mixture sweep ScaleScope's probes trained (assets/demo/mixture_*.csv, made by
    assets/run_demo_mixture.py: 2 sizes × 2 token counts × 5 domain ratios), stored as a sweep with its
    per-domain held-out losses; then Que et al. 2024's two laws fitted to its final domain and general
    losses (Huber in log space, 200 bootstrap resamples), so the Planner's D-CPT panel offers laws
    fitted on data ScaleScope measured. Returns the two fit ids (none when the files are absent)."""
    if not all((DEMO_DIR / name).is_file() for name in ("mixture_runs.csv", "mixture_metrics.csv", "mixture_evals.csv")):
        return []
    from core.probes.sweep import read_tables  # torch: only a first start that computes the demo pays for it
    from services.fits import FitOptions, Target, fit_and_save, load_fit_data
    from services.probes import store_sweep

    runs = read_tables(DEMO_DIR, prefix="mixture")
    store_sweep(store, runs, sweep_id=MIXTURE_SWEEP_ID,
                extra={"sweep_kind": "mixture", "bundled": "assets/demo (assets/run_demo_mixture.py)"})
    names = [r.name for r in runs]
    fit_ids = []
    for law, metric in (("dcpt_domain", "domain_loss"), ("dcpt_general", "general_loss")):
        data = load_fit_data(store, names, Target(metric=metric), "active")
        fit_id, _ = fit_and_save(store, data, FitOptions(law=law, method="huber_log", n_bootstrap=200, seed=0),
                                 name=DCPT_FIT_NAMES[law])
        fit_ids.append(fit_id)
    return fit_ids


def chinchilla_runs() -> list[ParsedRun]:
    """Hoffmann et al. 2022's training runs as Epoch AI extracted them (assets/reference/): one run per
    point, with N, D = C/(6N), C and a final "loss" summary point (the run-summary importer reads it)."""
    from importers import parse_file

    runs = parse_file(CHINCHILLA_CSV, fmt="summary")
    for run in runs:
        run.name = run.name.replace(CHINCHILLA_CSV.stem, "chinchilla", 1)
        run.source_file = f"assets/reference/{CHINCHILLA_CSV.name}"
        run.tags = [EXAMPLE_TAG, CHINCHILLA_TAG]
    return runs


def seed_chinchilla_example(store: Store, n_bootstrap: int = 1000, progress: Progress = None) -> int:
    """Store the Chinchilla runs and fit them as Besiroglu et al. 2024 did (Approach 3, Huber δ = 1e-3,
    the published 4,500-start grid, the 5 highest-loss points dropped, bootstrap); returns the fit id."""
    from services.fits import FitOptions, Target, fit_and_save, load_fit_data  # scipy: only when fitting

    runs = chinchilla_runs()
    store.ingest(runs, on_duplicate="skip")
    data = load_fit_data(store, [r.name for r in runs], Target(kind="final", metric="loss"), n_kind="total",
                         selection_extra={"filter": {"tags": [CHINCHILLA_TAG]}})
    fit_id, _ = fit_and_save(store, data, FitOptions(grid="full", drop_highest=5, n_bootstrap=n_bootstrap, seed=0),
                             name=EXAMPLE_FIT_NAME, progress=progress)
    return fit_id


def seed_example_evals(store: Store) -> dict:
    """The bundled eval tables as datasets: the observational-scaling base models and Pythia."""
    from services.evals import import_eval_paths

    return {tag: import_eval_paths(store, [str(path)], tags=[EXAMPLE_TAG, tag])["rows"]
            for tag, path in ((OBSSCALING_TAG, OBSSCALING_CSV), (PYTHIA_TAG, PYTHIA_CSV))}


def build_demo(store: Store, routing: bool = True, n_bootstrap: int = 1000, progress: Progress = None) -> int:
    """Compute the whole demo into an empty store (what the snapshot holds); returns the runs added.
    Minutes of CPU: assets/build_demo_snapshot.py runs it once, first start restores its result."""
    say = progress or (lambda done, total, message: None)
    say(0, 5, "probe demo sweep")
    added = seed_probe_demo(store)  # first: the Runs page opens on the first runs stored, these
    if added:
        seed_demo_fit(store)
    say(1, 5, "Chinchilla example runs and fit (4,500 starts, bootstrap)")
    seed_chinchilla_example(store, n_bootstrap=n_bootstrap)
    say(2, 5, "example eval tables and the D-CPT mixture sweep with its fits")
    seed_example_evals(store)
    seed_mixture_demo(store)
    if routing:
        say(3, 5, "routing captures of the bundled MoE")
        from services.routing_seed import seed_bundled_capture  # torch: only when routing is seeded

        try:
            seed_bundled_capture(store)
        except ScaleScopeError as exc:  # the runs are seeded; the Routing page can still capture
            logging.getLogger(__name__).warning("bundled routing capture skipped: %s", exc)
    say(5, 5, "done")
    return len(store.run_names())


def has_snapshot(folder: Optional[Path] = None) -> bool:
    return (Path(folder or SNAPSHOT_DIR) / "manifest.json").is_file()


def restore_snapshot(store: Store, folder: Optional[Path] = None, progress: Progress = None) -> int:
    """Load the precomputed demo into the empty ``store`` (the backup restore's fast path, one
    transaction); returns the runs restored."""
    from services.backup import restore_into

    return restore_into(store, folder or SNAPSHOT_DIR, progress)["tables"]["runs"]


def seed_if_empty(store: Store, routing: bool = False, progress: Progress = None, background: bool = False) -> int:
    """Seed the demo into an empty store; returns the number of runs added (0 when not empty).

    The bundled snapshot when there is one (a fraction of a second), else the demo computed here.
    ``SCALESCOPE_DEMO=synthetic`` picks the synthetic sweep even when the probe sweep is bundled
    (the tests do, so their numbers do not move when the bundled sweep is regenerated).
    With ``routing``, also capture the bundled tiny MoE checkpoints on the bundled held-out text
    (issue 5), so the Routing page has heatmaps at once; a broken asset never stops the app (the
    snapshot carries its captures already).
    When the demo must be computed, ``background`` stores the probe sweep's runs at once and leaves
    the slow rest (fits, example datasets, captures: a minute or two) to a daemon thread, whose
    progress :func:`demo_status` reports (the dashboard shows it in a status line): the first page
    is never held up by it.
    """
    if not store.is_empty():
        return 0
    use_probe = os.environ.get("SCALESCOPE_DEMO", "probe") != "synthetic"
    if use_probe and has_snapshot():
        try:
            return restore_snapshot(store, progress=progress)
        except ScaleScopeError as exc:  # e.g. a snapshot of an older schema: compute the demo instead
            if not store.is_empty():  # another process seeded it meanwhile (a shared PostgreSQL store)
                return 0
            logging.getLogger(__name__).warning("bundled demo snapshot not used (%s): run "
                                                "`python assets/build_demo_snapshot.py`; computing the demo", exc)
    added = use_probe and seed_probe_demo(store)
    if not added:
        added = len(store.ingest(synthetic_runs(), on_duplicate="skip"))
    steps = ([("fitting the demo sweep", seed_demo_fit),
              ("fitting the Chinchilla example (Besiroglu et al. 2024 settings)",
               lambda s: seed_chinchilla_example(s, n_bootstrap=200)),
              ("importing the example eval tables", seed_example_evals),
              ("storing the D-CPT mixture sweep and fitting its laws", seed_mixture_demo)] if use_probe else [])
    if routing:
        steps.append(("capturing the bundled MoE's routing", _seed_routing))
    if background and use_probe:  # (the synthetic demo's tests expect its captures at once: not in the background)
        thread = threading.Thread(target=_run_steps, args=(store, steps, True), name="scalescope-demo", daemon=True)
        _BACKGROUND.update(thread=thread, status=f"Preparing the demo in the background: {steps[0][0]} "
                                                 f"(1 of {len(steps)})…")
        thread.start()
        return added
    _run_steps(store, steps)
    return len(store.run_names())


# The background demo build of this process (seed_if_empty(background=True)): its thread and a line
# saying what it is doing, None once it is done.
_BACKGROUND: dict = {"thread": None, "status": None}


def demo_status() -> Optional[str]:
    """What the background demo build is doing now (one line), or None when none is running."""
    return _BACKGROUND["status"]


def wait_for_demo(timeout: Optional[float] = None) -> None:
    """Block until the background demo build (if any) has finished."""
    thread = _BACKGROUND["thread"]
    if thread is not None:
        thread.join(timeout)


def _run_steps(store: Store, steps: list, background: bool = False) -> None:
    log = logging.getLogger(__name__)
    try:
        for i, (what, step) in enumerate(steps):
            if background:
                _BACKGROUND["status"] = f"Preparing the demo in the background: {what} ({i + 1} of {len(steps)})…"
            try:
                step(store)
            except ScaleScopeError as exc:  # the runs are seeded; the pages can still fit and capture
                log.warning("demo step skipped (%s): %s", what, exc)
            except Exception:  # a background thread has no caller to tell: log it, go on with the next step
                if not background:
                    raise
                log.exception("demo step failed (%s)", what)
    finally:
        if background:
            _BACKGROUND["status"] = None


def _seed_routing(store: Store) -> None:
    from services.routing_seed import seed_bundled_capture  # torch: only when routing is seeded

    seed_bundled_capture(store)
