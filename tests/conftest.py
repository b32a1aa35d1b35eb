"""Shared fixtures: temporary DuckDB stores (never :memory:, which each thread sees empty)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The public reference tables the tests check against live in the repo (assets/reference/README.md).
REFERENCE = ROOT / "assets" / "reference"

# AppTests open the app on a fresh store each time: skip the bundled routing capture there (it
# takes seconds). The browser tests' server turns it back on, so first start is tested for real.
os.environ.setdefault("SCALESCOPE_SEED_ROUTING", "0")
# Page tests are written against the synthetic demo (a known law); the bundled probe sweep is
# seeded by default for users and tested on its own in test_store.py.
os.environ.setdefault("SCALESCOPE_DEMO", "synthetic")

# Hypothesis: the default profile keeps the property tests (tests/test_fuzz_importers.py) quick;
# the "ci" profile runs many more examples: HYPOTHESIS_PROFILE=ci, or pytest --hypothesis-profile=ci.
try:
    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings
except ImportError:  # pragma: no cover - hypothesis is in requirements.txt
    pass
else:
    hypothesis_settings.register_profile(
        "ci", max_examples=400, deadline=None,  # 4x the default: about a minute more in CI
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    if os.environ.get("HYPOTHESIS_PROFILE"):
        hypothesis_settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])


@pytest.fixture
def db_url(tmp_path) -> str:
    return f"duckdb:///{tmp_path / 'scalescope.duckdb'}"


@pytest.fixture
def store(db_url):
    from db.store import Store

    s = Store(db_url)
    yield s
    s.close()


@pytest.fixture
def reference_dir() -> Path:
    return REFERENCE


@pytest.fixture
def page_store(db_url, monkeypatch):
    """The store a page under AppTest opens (pages.common.get_store reads SCALESCOPE_DB_URL).

    Pages seed an empty store on first open; the test process holds the same file, which is fine
    because AppTest runs the page in this process.
    """
    from db.store import Store

    monkeypatch.setenv("SCALESCOPE_DB_URL", db_url)
    s = Store(db_url)
    yield s
    s.close()


# ---------------------------------------------------------------- PostgreSQL (issue 11 §2)
# The PostgreSQL cases use $SCALESCOPE_TEST_PG_URL when set (a server URL; each test gets its own
# database there), else a throwaway cluster started here for the session (tools/pg_cluster.py).
# Without either they skip with the reason, except under CI ($CI set), where they fail.
@pytest.fixture(scope="session")
def pg_server():
    """The URL of a PostgreSQL server the tests may create databases on."""
    url = os.environ.get("SCALESCOPE_TEST_PG_URL")
    if url:
        yield url
        return
    from tools.pg_cluster import PgCluster

    try:
        cluster = PgCluster.start()
    except Exception as exc:  # not installed, or cannot start here
        reason = f"no PostgreSQL server for the PostgreSQL cases: {exc}"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: the PostgreSQL cases must run there)", pytrace=False)
        pytest.skip(reason)
    try:
        yield cluster.url()
    finally:
        cluster.remove()


@pytest.fixture
def new_db_url(request, tmp_path):
    """A factory: ``new_db_url(engine, name)`` is the URL of a new, empty store on ``engine`` — a
    temporary DuckDB file, or a fresh PostgreSQL database (dropped after the test)."""
    import uuid

    from tools.pg_cluster import admin, with_database

    made = []

    def make(engine: str = "duckdb", name: str = "scalescope") -> str:
        if engine == "duckdb":
            return f"duckdb:///{tmp_path / name}.duckdb"
        server = request.getfixturevalue("pg_server")
        database = f"ss_test_{uuid.uuid4().hex[:12]}"
        admin(server, f'CREATE DATABASE "{database}"')
        made.append((server, database))
        return with_database(server, database)

    yield make
    for server, database in made:
        admin(server, f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def pg_url(new_db_url) -> str:
    """A fresh, empty PostgreSQL database for one test, dropped afterwards."""
    return new_db_url("postgresql")


@pytest.fixture(params=["duckdb", "postgresql"])
def any_db_url(request, new_db_url) -> str:
    """A new store's URL on each engine: a temporary DuckDB file, and a fresh PostgreSQL database.
    A test file runs its tests on both by defining ``db_url`` from it."""
    return new_db_url(request.param)
