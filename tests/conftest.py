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
