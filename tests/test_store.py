"""The Store: transactions, duplicates, concurrency, downsampling, schema versions."""
from __future__ import annotations

import threading

import duckdb
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.errors import DuplicateRunError, InputError, StoreError
from db import schema
from importers.base import ParsedRun
from services.seed import probe_demo, seed_if_empty
from db.store import Store


@pytest.fixture
def db_url(any_db_url):
    """Each test here runs on both engines: a DuckDB file and a PostgreSQL database (tests/conftest.py)."""
    return any_db_url


def make_run(name, n_steps=100, n_params=1e6, value=None, **kw):
    step = np.arange(n_steps, dtype=float)
    metrics = pd.DataFrame({"name": "loss", "step": step, "tokens": np.nan, "flops": np.nan,
                            "wall_time": step * 0.1,
                            "value": value if value is not None else 2.0 + 1.0 / (step + 1)})
    return ParsedRun(name=name, source_format="csv_long", n_params=n_params, metrics=metrics, **kw)


def counts(store):
    with store.read() as conn:
        return (conn.execute(sa.text("SELECT count(*) FROM runs")).scalar_one(),
                conn.execute(sa.text("SELECT count(*) FROM metrics")).scalar_one())


def test_ingest_roundtrip_and_hostile_names(store):
    hostile = "'; DROP TABLE runs;--"
    added = store.ingest([make_run("a"), make_run(hostile, n_steps=7)])
    assert [a["name"] for a in added] == ["a", hostile]
    assert [a["n_metric_rows"] for a in added] == [100, 7]
    runs = store.runs()
    assert runs["name"].tolist() == ["a", hostile]
    assert runs["n_metric_rows"].tolist() == [100, 7]
    assert runs.loc[0, "n_active_params"] == 1e6  # dense: active = total
    m = store.metrics([hostile])
    assert len(m) == 7 and m["value"].iloc[-1] == pytest.approx(2.0 + 1 / 7)


def test_failed_import_leaves_store_unchanged(store):
    store.ingest([make_run("keep")])
    before = counts(store)
    bad = make_run("bad", value=np.r_[np.ones(99), np.nan])
    with pytest.raises(InputError, match="NaN"):
        store.ingest([make_run("fine"), bad])
    assert counts(store) == before
    with pytest.raises(InputError, match="negative"):
        r = make_run("neg")
        r.metrics.loc[3, "step"] = -1
        store.ingest([r])
    with pytest.raises(InputError, match="n_params"):
        store.ingest([make_run("negsize", n_params=-5)])
    with pytest.raises(InputError, match="twice"):
        store.ingest([make_run("x"), make_run("x")])
    assert counts(store) == before


def test_duplicate_policies(store):
    store.ingest([make_run("r", n_steps=10)])
    with pytest.raises(DuplicateRunError, match="skip, replace or rename"):
        store.ingest([make_run("r", n_steps=20)])
    assert store.ingest([make_run("r", n_steps=20)], on_duplicate="skip") == []
    assert store.runs()["n_metric_rows"].tolist() == [10]
    store.ingest([make_run("r", n_steps=30)], on_duplicate="replace")
    assert store.runs()["n_metric_rows"].tolist() == [30]
    added = store.ingest([make_run("r", n_steps=5)], on_duplicate="rename")
    assert added[0]["name"] == "r (2)"
    assert store.run_names() == ["r", "r (2)"]


def test_eight_threads_import_concurrently(store):
    errors = []

    def work(i):
        try:
            store.ingest([make_run(f"t{i}-{j}", n_steps=500 + i) for j in range(3)])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = store.runs()
    assert len(runs) == 24 and runs["name"].is_unique
    for i in range(8):
        assert runs.loc[runs["name"].str.startswith(f"t{i}-"), "n_metric_rows"].tolist() == [500 + i] * 3
    with store.read() as conn:
        dupes = conn.execute(sa.text(
            "SELECT count(*) FROM (SELECT run_id, step FROM metrics GROUP BY 1, 2 HAVING count(*) > 1) AS dup")).scalar_one()
    assert dupes == 0
    assert counts(store) == (24, sum(3 * (500 + i) for i in range(8)))


def test_reader_never_sees_half_an_import(store):
    """A reader polling during big imports sees each run with all of its rows or not at all."""
    seen_partial = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            runs = store.runs()
            bad = runs[(runs["n_metric_rows"] != 20000)]
            if len(bad):
                seen_partial.append(bad)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(5):
        store.ingest([make_run(f"big{i}-{j}", n_steps=20000) for j in range(2)])
    stop.set()
    t.join()
    assert seen_partial == []


def test_curves_downsampled_in_duckdb_keep_final_and_extremes(store):
    n = 100_000
    value = np.full(n, 3.0)
    value[12345] = 9.0  # a spike must survive as a bucket max
    store.ingest([make_run("long", n_steps=n, value=value)])
    c = store.curves(["long"], "loss", x="step", max_points=2000)
    assert len(c) <= 2000
    assert c["x"].iloc[-1] == n - 1  # final point kept
    assert c["vmax"].max() == 9.0
    assert c["n"].sum() == n
    logc = store.curves(["long"], "loss", x="step", max_points=500, log_x=True)
    assert len(logc) <= 500 and logc["x"].iloc[-1] == n - 1 and logc["x"].min() == 1
    with pytest.raises(InputError, match="x-axis"):
        store.curves(["long"], "loss", x="epochs")


def test_update_run_derives_tokens_and_flops(store):
    store.ingest([make_run("r", n_steps=11, n_params=None)])
    row = store.update_run("r", n_params=2e6, tokens_per_step=1000)
    assert row["tokens"] == 10 * 1000
    assert row["flops"] == pytest.approx(6 * 2e6 * 10_000)  # C = 6 N D (Kaplan et al. 2020)
    m = store.metrics(["r"])
    assert m["tokens"].tolist() == [s * 1000 for s in range(11)]
    assert m["flops"].iloc[-1] == pytest.approx(6 * 2e6 * 10_000)
    with pytest.raises(InputError, match="positive"):
        store.update_run("r", n_params=-1)
    with pytest.raises(InputError, match="No run named"):
        store.update_run("nope", n_params=1)


def test_final_values_and_delete(store):
    summary = pd.DataFrame({"name": ["loss"], "step": [np.nan], "tokens": [1e9], "flops": [6e15],
                            "wall_time": [np.nan], "value": [2.5]})
    store.ingest([make_run("curve", n_steps=50),
                  ParsedRun(name="summary", source_format="summary", n_params=1e6, tokens=1e9, flops=6e15,
                            metrics=summary)])
    fv = store.final_values("loss").set_index("run")
    assert fv.loc["curve", "value"] == pytest.approx(2.0 + 1 / 50)
    assert fv.loc["curve", "step"] == 49
    assert fv.loc["summary", "value"] == 2.5 and fv.loc["summary", "tokens"] == 1e9
    assert store.delete_runs(["curve"]) == 1
    assert counts(store) == (1, 1)


def test_seed_and_schema_version(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")  # what a user's first start seeds
    url = f"duckdb:///{tmp_path / 's.duckdb'}"
    s = Store(url)
    assert s.schema_version() == schema.SCHEMA_VERSION
    demo = probe_demo()
    expected = len(demo[0]) if demo else 30
    added = seed_if_empty(s)  # the bundled snapshot: the demo sweep and the example datasets
    assert added == len(s.run_names()) >= expected
    assert seed_if_empty(s) == 0  # only into an empty store
    # the demo sweep's runs (the store also holds the mixture sweep and the example datasets)
    fv = s.final_values("eval_loss" if demo else "loss", [r.name for r in demo[0]] if demo else None)
    assert len(fv) == expected
    # every demo run obeys C = 6·N_active·D exactly (Kaplan et al. 2020)
    assert np.allclose(fv["flops"], 6 * fv["n_active_params"] * fv["tokens"], rtol=1e-6)
    if demo:  # the probe sweep's held-out loss per domain comes along as evals
        with s.read() as conn:
            n_evals = conn.execute(sa.text("SELECT count(*) FROM evals WHERE source_file = "
                                           "'assets/demo/sweep_evals.csv'")).scalar_one()
        assert n_evals == len(demo[1])
        from db.fits import list_fits  # and a law fitted to them, so Fits and Planner open on one
        from services.seed import DEMO_FIT_NAME

        fits = list_fits(s)
        fit = fits[fits["name"] == DEMO_FIT_NAME].iloc[0]
        assert fit["target"] == "eval_loss" and fit["selection"]["runs"] == [r.name for r in demo[0]]
        a = fit["params"]["beta"] / (fit["params"]["alpha"] + fit["params"]["beta"])
        assert 0.3 < a < 0.7 and len(fit["diagnostics"]["bootstrap_samples"]) == 200
    s.close()


def test_older_file_is_upgraded_and_newer_refused(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))  # a pre-versioning file: runs + metrics only
    con.execute("CREATE SEQUENCE runs_id_seq; CREATE TABLE runs (id INTEGER PRIMARY KEY DEFAULT nextval('runs_id_seq'), "
                "name VARCHAR UNIQUE NOT NULL, source_format VARCHAR NOT NULL, source_file VARCHAR, arch VARCHAR, "
                "n_params DOUBLE, n_nonembedding_params DOUBLE, n_active_params DOUBLE, n_experts INTEGER, "
                "top_k INTEGER, seq_len INTEGER, tokens_per_step DOUBLE, tokens DOUBLE, flops DOUBLE, "
                "flops_rule VARCHAR, config VARCHAR, tags VARCHAR, created_at TIMESTAMP)")
    con.execute("CREATE TABLE metrics (run_id INTEGER, name VARCHAR, step DOUBLE, tokens DOUBLE, flops DOUBLE, "
                "wall_time DOUBLE, value DOUBLE)")
    con.execute("INSERT INTO runs (name, source_format, arch) VALUES ('old', 'csv', 'dense')")
    con.execute("INSERT INTO metrics VALUES (1, 'loss', 0, NULL, NULL, NULL, 3.0)")
    con.close()
    s = Store(f"duckdb:///{path}")
    assert s.schema_version() == schema.SCHEMA_VERSION
    assert s.run_names() == ["old"] and s.runs()["n_metric_rows"].tolist() == [1]
    with s.write() as conn:
        conn.execute(sa.update(schema.schema_info).values(version=schema.SCHEMA_VERSION + 1))
    s.close()
    with pytest.raises(StoreError, match="newer"):
        Store(f"duckdb:///{path}")


def test_not_a_database(tmp_path):
    bad = tmp_path / "junk.duckdb"
    bad.write_bytes(b"\x00\x01 this is not duckdb" * 100)
    with pytest.raises(StoreError, match="Cannot open"):
        Store(f"duckdb:///{bad}")


def test_version_1_file_loses_its_bulk_indexes_and_keeps_its_data(tmp_path):
    """A file written by schema version 1 (ART index on metrics.run_id) is upgraded in place."""
    path = tmp_path / "v1.duckdb"
    s = Store(f"duckdb:///{path}")
    s.ingest([make_run("kept", n_steps=12)])
    with s.write() as conn:  # recreate what version 1 had
        conn.exec_driver_sql("CREATE INDEX ix_metrics_run_id ON metrics (run_id)")
        conn.execute(sa.update(schema.schema_info).values(version=1))
    s.close()
    s = Store(f"duckdb:///{path}")
    assert s.schema_version() == schema.SCHEMA_VERSION == 4
    with s.read() as conn:
        names = [r[0] for r in conn.exec_driver_sql("SELECT index_name FROM duckdb_indexes()").fetchall()]
    assert "ix_metrics_run_id" not in names
    assert s.runs()["n_metric_rows"].tolist() == [12]
    s.close()


def test_seed_synthetic_on_request(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALESCOPE_DEMO", "synthetic")
    s = Store(f"duckdb:///{tmp_path / 's.duckdb'}")
    assert seed_if_empty(s) == 30
    fv = s.final_values("loss")
    assert np.allclose(fv["flops"], 6 * fv["n_params"] * fv["tokens"], rtol=1e-9)
    assert all("synthetic demo" in t for t in fv["tags"])
    s.close()


def test_bundled_probe_sweep_fits_with_sensible_exponents(tmp_path, monkeypatch):
    """The demo that first start seeds (runs ScaleScope trained itself) gives a sensible law."""
    from core.fitting.chinchilla import Approach3Settings, fit_chinchilla

    demo = probe_demo()
    if demo is None:
        pytest.skip("assets/demo/ is not bundled in this checkout")
    monkeypatch.setenv("SCALESCOPE_DEMO", "probe")
    s = Store(f"duckdb:///{tmp_path / 's.duckdb'}")
    seed_if_empty(s)
    fv = s.final_values("eval_loss", [r.name for r in demo[0]])  # not the mixture sweep's runs
    fit = fit_chinchilla(fv["n_active_params"], fv["tokens"], fv["value"],
                         Approach3Settings(n_bootstrap=0, a_grid=(0.0, 5.0, 10.0), b_grid=(0.0, 5.0, 10.0),
                                           e_grid=(0.0, 1.0), alpha_grid=(0.5, 1.0), beta_grid=(0.5, 1.0)))
    # N_opt ∝ C^a with a = β/(α+β): Chinchilla-like allocation (Hoffmann et al. find a ≈ 0.5)
    assert 0.3 < fit.params["beta"] / (fit.params["alpha"] + fit.params["beta"]) < 0.7
    assert 0 < fit.params["alpha"] < 1.5 and 0 < fit.params["beta"] < 1.5
    s.close()


@pytest.mark.parametrize("url", ["duckdb:///:memory:", "duckdb://", "sqlite:///x.db"])
def test_in_memory_and_foreign_urls_are_refused(url):
    with pytest.raises(StoreError, match="needs a file"):
        Store(url)
