"""The precomputed demo (issue 13 §1-2): assets/demo/snapshot/ restores into an empty store in well
under a second, holds what services/seed.py's build_demo computes (the probe demo sweep with its fit
and sweep row, the Chinchilla example runs fitted with Besiroglu et al. 2024's settings, the example
eval tables, the routing captures), and a snapshot that cannot be used falls back to computing."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from db import schema
from db.fits import list_fits, load_result
from db.store import Store
from services import seed
from services.backup import read_manifest
from services.fits import datasets, default_fit_id
from services.probes import list_sweeps


@pytest.fixture
def demo_store(db_url, monkeypatch):
    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")  # what a user's first start seeds
    s = Store(db_url, check=True)
    yield s
    s.close()


def tags_of(store) -> dict:
    return {r.name: json.loads(r.tags or "[]") for r in store.runs()[["name", "tags"]].itertuples()}


def test_snapshot_is_bundled_for_this_schema():
    manifest = read_manifest(seed.SNAPSHOT_DIR)  # checksums and columns checked
    assert manifest["schema_version"] == schema.SCHEMA_VERSION, \
        "the demo snapshot is stale: run `python assets/build_demo_snapshot.py`"


def test_first_start_restores_the_snapshot_quickly(demo_store):
    start = time.perf_counter()
    n = seed.seed_if_empty(demo_store, routing=True)
    seconds = time.perf_counter() - start
    assert seconds < 5.0  # ~0.2 s on a quiet 2-core machine; the whole budget is 5 s
    assert seed.seed_if_empty(demo_store) == 0  # only into an empty store
    tags = tags_of(demo_store)
    assert n == len(tags)
    demo_names = [r.name for r in seed.probe_demo()[0]]
    chinchilla = [r.name for r in seed.chinchilla_runs()]
    # the snapshot holds what the seeding code makes now (a stale snapshot fails here)
    assert [n for n, t in tags.items() if t == [seed.PROBE_DEMO_TAG]] == demo_names
    assert [n for n, t in tags.items() if t == [seed.EXAMPLE_TAG, seed.CHINCHILLA_TAG]] == chinchilla
    assert len(chinchilla) == 245
    assert any(seed.OBSSCALING_TAG in t for t in tags.values()) and any(seed.PYTHIA_TAG in t for t in tags.values())
    # The Fits page's datasets: the Chinchilla example first
    assert datasets(demo_store)[0] == seed.CHINCHILLA_TAG


def test_snapshot_fit_reproduces_besiroglu_et_al(demo_store):
    seed.seed_if_empty(demo_store)
    fits = list_fits(demo_store)
    example = fits[fits["id"] == default_fit_id(fits)].iloc[0]
    assert example["name"] == seed.EXAMPLE_FIT_NAME
    assert example["settings"]["n_starts"] == 4500 and example["settings"]["drop_highest"] == 5
    assert example["settings"]["delta"] == 1e-3
    published = {"E": (1.8172, 0.026), "A": (482.01, 124.5), "B": (2085.43, 1293.0),
                 "alpha": (0.3478, 0.0154), "beta": (0.3658, 0.0206)}
    stderr = example["diagnostics"]["stderr"]
    for k, (value, se) in published.items():
        assert abs(example["params"][k] - value) < 0.2 * se, k
        assert 0.5 * se < stderr[k] < 2.0 * se, k  # bootstrap spread like the paper's standard errors
    assert len(example["diagnostics"]["bootstrap_samples"]) >= 200  # the planner's bands
    assert load_result(example).warnings == []
    demo_fit = fits[fits["name"] == seed.DEMO_FIT_NAME]
    assert len(demo_fit) == 1 and demo_fit.iloc[0]["target"] == "eval_loss"


def test_snapshot_lists_the_demo_sweep_and_routing_captures(demo_store):
    from services.routing import list_captures

    seed.seed_if_empty(demo_store)
    sweeps = list_sweeps(demo_store).set_index("tag")
    assert sorted(sweeps.index) == sorted([seed.PROBE_DEMO_TAG, f"sweep={seed.MIXTURE_SWEEP_ID}"])
    assert sweeps.loc[seed.PROBE_DEMO_TAG, "n_runs"] == len(seed.probe_demo()[0])
    assert sweeps.loc[f"sweep={seed.MIXTURE_SWEEP_ID}", "n_runs"] == 20
    assert len(list_captures(demo_store)) >= 2


def test_snapshot_holds_the_mixture_sweep_and_its_dcpt_fits(demo_store):
    """Issue 15: the measured D-CPT mixture sweep is part of the demo, with Que et al. 2024's two laws
    fitted to it; the fits follow the data (more domain data: lower domain loss, higher general loss)."""
    from core import dcpt
    from core.probes.sweep import read_tables

    seed.seed_if_empty(demo_store)
    runs = read_tables(seed.DEMO_DIR, prefix="mixture")
    fits = list_fits(demo_store).set_index("name")
    domain = dcpt.params_from(fits.loc[seed.DCPT_FIT_NAMES["dcpt_domain"], "params"])
    general = dcpt.params_from(fits.loc[seed.DCPT_FIT_NAMES["dcpt_general"], "params"])
    assert fits.loc[seed.DCPT_FIT_NAMES["dcpt_domain"], "law"] == "dcpt_domain"
    assert len(fits.loc[seed.DCPT_FIT_NAMES["dcpt_general"], "diagnostics"]["bootstrap_samples"]) >= 100
    for r in runs:  # each stored law predicts its run's measured final loss to within 5%
        n, d, ratio = r.n_active_params, r.tokens, r.config["mixture_ratio"]
        assert abs(dcpt.domain_loss(n, d, ratio, domain) / r.config["final_domain_loss"] - 1) < 0.05, r.name
        assert abs(dcpt.general_loss(n, d, ratio, general) / r.config["final_general_loss"] - 1) < 0.05, r.name
    n, d = 1.45e5, 6e4
    assert dcpt.domain_loss(n, d, 0.1, domain) > dcpt.domain_loss(n, d, 0.9, domain)
    assert dcpt.general_loss(n, d, 0.1, general) < dcpt.general_loss(n, d, 0.9, general)


def test_unusable_snapshot_falls_back_to_computing(demo_store, tmp_path, monkeypatch):
    """A snapshot of another schema version is refused by the restore; the demo is computed instead
    (here with the expensive parts stubbed: the fallback path, not the fit, is under test)."""
    stale = tmp_path / "snapshot"
    stale.mkdir()
    manifest = json.loads((seed.SNAPSHOT_DIR / "manifest.json").read_text())
    (stale / "manifest.json").write_text(json.dumps(dict(manifest, schema_version=schema.SCHEMA_VERSION - 1)))
    monkeypatch.setattr(seed, "SNAPSHOT_DIR", stale)
    calls = []
    monkeypatch.setattr(seed, "seed_demo_fit", lambda store: calls.append("demo fit"))
    monkeypatch.setattr(seed, "seed_chinchilla_example", lambda store, n_bootstrap: calls.append("chinchilla"))
    monkeypatch.setattr(seed, "seed_example_evals", lambda store: calls.append("evals"))
    monkeypatch.setattr(seed, "seed_mixture_demo", lambda store: calls.append("mixture"))
    n = seed.seed_if_empty(demo_store)
    assert n == len(seed.probe_demo()[0]) and calls == ["demo fit", "chinchilla", "evals", "mixture"]
    assert np.all([t == [seed.PROBE_DEMO_TAG] for t in tags_of(demo_store).values()])


def test_without_a_snapshot_the_slow_part_runs_in_the_background(demo_store, tmp_path, monkeypatch):
    """No usable snapshot: the probe sweep's runs are stored at once, the fits and datasets follow in a
    background thread whose progress demo_status() reports; the first page never waits for them."""
    import threading

    monkeypatch.setattr(seed, "SNAPSHOT_DIR", tmp_path / "none")
    gate = threading.Event()
    calls = []

    def slow(name):
        def step(store, **_):
            gate.wait(30)
            calls.append(name)
        return step

    monkeypatch.setattr(seed, "seed_demo_fit", slow("demo fit"))
    monkeypatch.setattr(seed, "seed_chinchilla_example", slow("chinchilla"))
    monkeypatch.setattr(seed, "seed_example_evals", slow("evals"))
    monkeypatch.setattr(seed, "seed_mixture_demo", slow("mixture"))
    start = time.perf_counter()
    n = seed.seed_if_empty(demo_store, background=True)
    assert time.perf_counter() - start < 10.0 and n == len(seed.probe_demo()[0])
    assert seed.demo_status().startswith("Preparing the demo in the background: fitting the demo sweep (1 of 4)")
    gate.set()
    seed.wait_for_demo(30)
    assert seed.demo_status() is None and calls == ["demo fit", "chinchilla", "evals", "mixture"]


def test_the_app_shows_the_background_build_in_a_status_line(db_url, tmp_path, monkeypatch):
    import threading

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    monkeypatch.setattr(seed, "SNAPSHOT_DIR", tmp_path / "none")
    gate = threading.Event()
    monkeypatch.setattr(seed, "seed_demo_fit", lambda store: gate.wait(60))
    monkeypatch.setattr(seed, "seed_chinchilla_example", lambda store, n_bootstrap: None)
    monkeypatch.setattr(seed, "seed_example_evals", lambda store: None)
    try:
        at = AppTest.from_file("../app.py", default_timeout=120).run()
        assert not at.exception, [e.value for e in at.exception]
        assert any(c.value.startswith("Preparing the demo in the background") for c in at.sidebar.caption)
        assert at.title[0].value == "Runs"  # the first page is drawn meanwhile, with the sweep's runs
    finally:
        gate.set()
        seed.wait_for_demo(60)
