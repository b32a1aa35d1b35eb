"""The team store on PostgreSQL (issue 11 §2): many writer processes, COPY round trips, curves computed by
the server, credentials never shown, and a server that goes away mid-import.

The store, ingest, fit, backup and CLI tests run on both engines through the ``any_db_url`` fixture
(tests/conftest.py); this file holds what only a server store has.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa

from core.errors import StoreError
from core.runs import ParsedRun
from db import dialects
from db.bulk import ingest_long_table
from db.store import Store

ROOT = Path(__file__).resolve().parents[1]
N_PROCESSES = 8
RUNS_PER_FILE, STEPS = 3, 400


def run_of(name: str, steps: int = STEPS, seed: int = 0) -> ParsedRun:
    rng = np.random.default_rng(seed)
    step = np.arange(steps, dtype=float)
    frames = [pd.DataFrame({"name": metric, "step": step, "tokens": step * 4096.0, "flops": np.nan,
                            "wall_time": step * 0.5, "value": 2.0 + 5.0 / (step + 1) + 0.01 * rng.random(steps)})
              for metric in ("loss", "val/loss")]
    return ParsedRun(name=name, source_format="csv", n_params=1e6, metrics=pd.concat(frames, ignore_index=True))


def write_long_csv(path: Path, prefix: str) -> None:
    rows = []
    for r in range(RUNS_PER_FILE):
        frame = run_of(f"{prefix}-run{r}", seed=r).metrics
        rows.append(frame.assign(run=f"{prefix}-run{r}").rename(columns={"name": "metric"})
                    [["run", "step", "metric", "value", "tokens", "wall_time"]])
    pd.concat(rows).to_csv(path, index=False)


def _import_worker(url: str, index: int, folder: str, start_at: float) -> None:
    """One writer process: opens the (maybe still empty) store, then imports its own file."""
    time.sleep(max(0.0, start_at - time.time()))  # all eight open the store at about the same moment
    store = Store(url)
    try:
        if index % 2:  # half through the bulk long-table path (COPY from a file DuckDB reads)
            path = Path(folder) / f"w{index}.csv"
            write_long_csv(path, f"w{index}")
            ingest_long_table(store, path)
        else:  # half through parsed runs (Store.ingest, COPY of Arrow batches)
            store.ingest([run_of(f"w{index}-run{r}", seed=r) for r in range(RUNS_PER_FILE)])
    finally:
        store.close()


# A worker process runs _import_worker from this file. Plain subprocesses, not multiprocessing's
# spawn: that re-runs the parent's __main__, which after an AppTest in the same session is a page.
WORKER = ("import importlib.util, sys; sys.path.insert(0, {root!r}); "
          "spec = importlib.util.spec_from_file_location('pg_worker', {path!r}); "
          "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
          "m._import_worker({url!r}, {index}, {folder!r}, {start_at!r})")


def test_eight_processes_import_while_a_reader_polls(pg_url, tmp_path):
    """Eight processes open one new PostgreSQL store at once and import different files while this
    process polls: every row exactly once, readers never see a run without all its rows, no error."""
    start_at = time.time() + 5.0
    workers = [subprocess.Popen([sys.executable, "-c", WORKER.format(
        root=str(ROOT), path=__file__, url=pg_url, index=i, folder=str(tmp_path), start_at=start_at)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for i in range(N_PROCESSES)]
    per_run = 2 * STEPS
    polls, seen_max = 0, 0
    reader = None
    try:
        while any(w.poll() is None for w in workers):
            try:
                reader = reader or Store(pg_url, create=False)
            except StoreError:  # the schema is not created yet
                time.sleep(0.05)
                continue
            runs = reader.runs()
            half = runs[runs["n_metric_rows"] != per_run]
            assert half.empty, f"a reader saw half an import: {half[['name', 'n_metric_rows']]}"
            seen_max = max(seen_max, len(runs))
            polls += 1
            time.sleep(0.02)
        errors = [w.communicate(timeout=120)[1] for w in workers]
        codes = [w.returncode for w in workers]
        assert codes == [0] * N_PROCESSES, f"exit codes {codes}; first failing worker's stderr:\n" + next(
            (e[-3000:] for c, e in zip(codes, errors) if c), "")
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    reader = reader or Store(pg_url, create=False)
    runs = reader.runs()
    assert len(runs) == N_PROCESSES * RUNS_PER_FILE and set(runs["n_metric_rows"]) == {per_run}
    with reader.read() as conn:
        total = conn.execute(sa.text("SELECT count(*) FROM metrics")).scalar_one()
        repeated = conn.execute(sa.text("SELECT count(*) FROM (SELECT run_id, name, step FROM metrics "
                                        "GROUP BY 1, 2, 3 HAVING count(*) > 1) AS d")).scalar_one()
        versions = conn.execute(sa.text("SELECT count(*) FROM schema_info")).scalar_one()
    assert total == N_PROCESSES * RUNS_PER_FILE * per_run and repeated == 0 and versions == 1
    assert polls > 0
    reader.close()


def test_copy_round_trips_awkward_names_and_values(pg_url):
    """COPY (CSV written by Arrow) keeps commas, quotes, newlines, non-ASCII text, NULLs and every float bit."""
    name = 'run "7", alpha,\nβ=0.5'
    run = run_of(name, steps=50)
    run.metrics.loc[3, "tokens"] = np.nan
    run.metrics.loc[4, "value"] = 1e-300
    run.metrics.loc[5, "value"] = 1.0 / 3.0
    run.metrics.loc[6, "name"] = "eval/acc,\"quoted\""
    store = Store(pg_url)
    store.ingest([run])
    back = store.metrics([name]).drop(columns="run")
    want = run.metrics.sort_values(["name", "step"]).reset_index(drop=True)
    back = back.sort_values(["name", "step"]).reset_index(drop=True)
    back = back.astype({c: "float64" for c in ("step", "tokens", "flops", "wall_time", "value")})  # all-NULL: None
    pd.testing.assert_frame_equal(back[want.columns], want, check_exact=True)
    store.close()


def test_curves_and_final_values_match_duckdb(pg_url, tmp_path):
    """The server's window-function downsampling gives DuckDB's curves, spikes and final points included."""
    runs = [run_of(f"r{i}", steps=3000, seed=i) for i in range(3)]
    runs[1].metrics.loc[1234, "value"] = 50.0  # a spike must survive as the bucket's max
    runs[2].metrics = pd.concat([runs[2].metrics, pd.DataFrame(
        {"name": ["loss"], "step": [np.nan], "tokens": [np.nan], "flops": [np.nan], "wall_time": [np.nan],
         "value": [1.5]})], ignore_index=True)  # a run-summary row (no step) counts as final
    stores = [Store(pg_url), Store(f"duckdb:///{tmp_path / 'same.duckdb'}")]
    for store in stores:
        store.ingest(runs)
    names = [r.name for r in runs]
    for x, log_x, points in (("step", False, 100), ("tokens", True, 57), ("wall_time", False, 2000)):
        pg, duck = (s.curves(names, "loss", x, max_points=points, log_x=log_x) for s in stores)
        pd.testing.assert_frame_equal(pg.astype({"n": "int64"}), duck.astype({"n": "int64"}), check_dtype=False)
    assert stores[0].curves(names, "loss", "step", max_points=100)["vmax"].max() == 50.0
    pg, duck = (s.final_values("loss").drop(columns=["tags", "config"]) for s in stores)
    pd.testing.assert_frame_equal(pg, duck, check_dtype=False)
    assert pg.loc[pg["run"] == "r2", "value"].item() == 1.5
    for store in stores:
        store.close()


# ------------------------------------------------------------------------------------------ credentials
def _with_password(url: str, password: str) -> str:
    parsed = sa.make_url(url).set(password=password)
    return parsed.render_as_string(hide_password=False)


def test_passwords_never_appear_in_errors_or_output(pg_url, pg_server, tmp_path):
    secret = "s3cr3t-Pa55word"
    good = _with_password(pg_url, secret)  # trust authentication accepts (and ignores) it
    store = Store(good)
    assert secret not in store.display_url and "***" in store.display_url
    store.close()
    missing_db = _with_password(pg_url.rsplit("/", 1)[0] + "/no_such_database", secret)
    refused = f"postgresql+psycopg://postgres:{secret}@127.0.0.1:1/x"  # nothing listens on port 1
    for url in (missing_db, refused):
        with pytest.raises(StoreError) as caught:
            Store(url)
        message = str(caught.value)
        assert secret not in message and "***" in message and "\n" not in message, message
    # The CLI: one line on stderr, without the password, exit 2; and the JSON it prints on success.
    env = {**os.environ, "SCALESCOPE_DB_URL": refused}
    proc = subprocess.run([sys.executable, "cli.py", "runs"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, env=env)
    assert proc.returncode == 2 and secret not in proc.stderr + proc.stdout, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    from services.backup import backup_store, restore_store

    source = Store(good)
    backup_store(source, tmp_path / "b")
    source.close()
    assert secret not in (tmp_path / "b" / "manifest.json").read_text()
    target = _with_password(pg_url.rsplit("/", 1)[0] + "/" + sa.make_url(pg_url).database, secret)
    assert secret not in str(restore_store(tmp_path / "b", target))


def test_connections_give_up_on_a_silent_host_in_seconds(pg_url):
    """libpq's connect_timeout is set (db.dialects.CONNECT_TIMEOUT_S), so an unreachable host is the
    one-line 'cannot be reached' error within seconds; a URL that sets its own value keeps it."""
    s = Store(pg_url)
    try:
        with s.engine.connect() as conn:
            dsn = conn.connection.dbapi_connection.info.dsn
        assert f"connect_timeout={dialects.CONNECT_TIMEOUT_S}" in dsn
    finally:
        s.close()
    own = dialects.POSTGRESQL.engine_options(pg_url + "?connect_timeout=3")
    assert "connect_args" not in own and own["pool_pre_ping"]


def test_a_deadlock_is_an_error_of_the_operation_not_a_lost_server():
    """A deadlock, serialization failure or lock conflict is a psycopg OperationalError too, but the
    server is there: it is not reported as 'cannot be reached' (the watcher would say the store went)."""
    import psycopg

    url = "postgresql+psycopg://u:secret@127.0.0.1:5/db"
    for error in (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure,
                  psycopg.errors.LockNotAvailable):
        assert dialects.POSTGRESQL.connection_lost(url, error("conflict")) is None
    lost = dialects.POSTGRESQL.connection_lost(url, psycopg.OperationalError("server closed the connection"))
    assert "cannot be reached" in str(lost) and "secret" not in str(lost)


def test_safe_url_and_scrub():
    url = "postgresql+psycopg://alice:hunter2@db.example:5432/team"
    assert dialects.safe_url(url) == "postgresql+psycopg://alice:***@db.example:5432/team"
    assert "hunter2" not in dialects.scrub(f"failed for {url} with password hunter2", url)
    assert dialects.safe_url("duckdb:///data/x.duckdb") == "duckdb:///data/x.duckdb"


# ------------------------------------------------------------------------------------ the server goes away
@pytest.fixture
def own_cluster(pg_server):
    """A cluster this test may stop and start (never the session's shared one)."""
    from tools.pg_cluster import PgCluster

    try:
        cluster = PgCluster.start()
    except RuntimeError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"cannot start a PostgreSQL cluster to stop: {exc}", pytrace=False)
        pytest.skip(f"cannot start a PostgreSQL cluster to stop: {exc}")
    yield cluster
    cluster.remove()


def test_server_that_goes_away_mid_import_leaves_nothing_and_the_store_recovers(own_cluster, tmp_path, monkeypatch):
    url = own_cluster.create_database("goes_away")
    store = Store(url)
    store.ingest([run_of("before")])
    real_copy = dialects.copy_batches

    def dying_copy(conn, table, columns, batches):
        def stop_after_first(batches):
            for i, batch in enumerate(batches):
                if i == 1:
                    own_cluster.stop("immediate")  # mid-COPY: the first batch is already on the server
                yield batch
        return real_copy(conn, table, columns, stop_after_first(batches))

    monkeypatch.setattr(dialects, "copy_batches", dying_copy)
    monkeypatch.setattr(dialects, "COPY_CHUNK_ROWS", 100)
    csv = tmp_path / "long.csv"
    write_long_csv(csv, "bulk")
    attempts = [lambda: store.ingest([run_of("small-a"), run_of("small-b")]), lambda: ingest_long_table(store, csv)]
    for attempt in attempts:
        with pytest.raises(StoreError) as caught:
            attempt()
        message = str(caught.value)
        assert "cannot be reached" in message and "nothing of this operation was stored" in message, message
        assert "\n" not in message and "Traceback" not in message
        own_cluster.restart()
        # The same Store works again (pool_pre_ping replaces the dead connection) and holds no half import.
        assert store.run_names() == ["before"]
        assert store.runs()["n_metric_rows"].tolist() == [2 * STEPS]
    monkeypatch.setattr(dialects, "copy_batches", real_copy)
    store.ingest([run_of("small-a")])
    assert ingest_long_table(store, csv)[0]["n_metric_rows"] == 2 * STEPS
    assert store.run_names() == ["before", "small-a"] + [f"bulk-run{r}" for r in range(RUNS_PER_FILE)]
    # A read while the server is down: one line too, and the next read after the restart works.
    own_cluster.stop("immediate")
    with pytest.raises(StoreError, match="cannot be reached"):
        store.runs()
    own_cluster.restart()
    assert len(store.run_names()) == 2 + RUNS_PER_FILE
    store.close()


@pytest.mark.parametrize("n_words", [3, 200])
def test_binary_copy_encoding_keeps_every_value(pg_url, n_words):
    """The numpy-built binary COPY rows (db/dialects.py) for few and many distinct strings, NULLs in
    text and float columns, multi-byte text: what the server stores is what was sent."""
    import psycopg

    rng = np.random.default_rng(n_words)
    pool = [f"w{i}" * (i % 4 + 1) for i in range(n_words)] + [None, "", "héllo, \"wörld\"\n"]
    words = [pool[i] for i in rng.integers(0, len(pool), 5000)]
    floats = rng.normal(size=5000)
    floats[rng.random(5000) < 0.3] = np.nan
    batch = pa.record_batch({"a": pa.array(words), "b": pa.array(floats, from_pandas=True),
                             "c": pa.array(np.arange(len(words), dtype=np.int32))})
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        conn.execute("CREATE TABLE t (a text, b float8, c int4)")
        with conn.cursor().copy("COPY t FROM STDIN (FORMAT binary)") as copy:
            copy.write(dialects._BINARY_SIGNATURE + dialects._binary_rows(batch) + dialects._BINARY_TRAILER)
        got = sorted(conn.execute("SELECT c, a, b FROM t").fetchall())
    assert got == [(i, words[i], None if np.isnan(floats[i]) else floats[i]) for i in range(5000)]


# ----------------------------------------------------------------------------------- pages on the server
PAGES = ("runs", "fits", "planner", "evals", "probes", "routing")


def test_the_dashboard_and_every_page_open_on_a_postgresql_store(pg_url, monkeypatch):
    """First start seeds the demo into an empty PostgreSQL database, then each page draws without an
    exception: the same pages, services and Store as on DuckDB."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SCALESCOPE_DB_URL", pg_url)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=240).run()
    assert not at.exception, [e.value for e in at.exception]
    assert any(h.value.endswith(" runs") for h in at.subheader), [h.value for h in at.subheader]
    for page in PAGES:
        at = AppTest.from_file(str(ROOT / "pages" / f"{page}.py"), default_timeout=240).run()
        assert not at.exception, (page, [e.value for e in at.exception])
    store = Store(pg_url, create=False)
    assert len(store.run_names()) > 0 and store.schema_version() >= 3
    store.close()
