"""Browser load (issue 12 §5): five sessions (one browser, five contexts) use different pages while a
bulk import runs in one of them; none sees an error or a traceback, and the import lands whole."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from tests.e2e.conftest import start_streamlit, stop, wait_idle

pytestmark = pytest.mark.e2e

RUNS = ("load-a", "load-b", "load-c")
STEPS = 100_000  # 300k metric rows, ~10 MB of CSV: the DuckDB bulk path (threshold lowered below)
PAGES = ["/", "/fits", "/planner", "/evals", "/probes"]


@pytest.fixture(scope="module")
def load_server(tmp_path_factory):
    """A server of its own: the bulk threshold lowered to 1 MiB, so a 10 MB upload takes db/bulk.py."""
    db = tmp_path_factory.mktemp("load") / "load.duckdb"
    proc, url = start_streamlit(db, SCALESCOPE_SEED_ROUTING="0", SCALESCOPE_DEMO="synthetic",
                                SCALESCOPE_BULK_BYTES=str(1 << 20))
    yield proc, url, db
    stop(proc)


def problems(page) -> list[str]:
    """Errors and tracebacks the page shows."""
    found = [e.inner_text() for e in page.locator("[data-testid=stException]").all()]
    found += [e.inner_text() for e in page.locator("[data-testid=stAlertContentError]").all()]
    if "Traceback" in page.locator("body").inner_text():
        found.append("a traceback in the page text")
    return found


def test_five_sessions_while_an_import_runs(load_server, browser, tmp_path):
    proc, url, db = load_server
    path = tmp_path / "load.csv"
    steps = np.arange(STEPS)
    pd.concat([pd.DataFrame({"run": run, "step": steps, "metric": "loss", "value": 4.0 - steps / STEPS - i * 0.1,
                             "tokens": steps * 4096.0}) for i, run in enumerate(RUNS)]).to_csv(path, index=False)
    assert path.stat().st_size > 1 << 20

    contexts = [browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in PAGES]
    js_errors: list[str] = []
    try:
        pages = []
        for context, where in zip(contexts, PAGES):
            page = context.new_page()
            page.set_default_timeout(120_000)
            page.on("pageerror", lambda exc: js_errors.append(str(exc)))
            page.goto(url + where)
            pages.append(page)
        for page in pages:
            wait_idle(page)

        importer = pages[0]
        importer.locator("[data-testid=stFileUploaderDropzoneInput]").set_input_files(str(path))
        importer.get_by_text(path.name).first.wait_for()
        importer.get_by_role("button", name="Import").click()
        # while the import runs, the other four sessions keep using their pages
        for _ in range(2):
            for page in pages[1:]:
                page.reload()
                wait_idle(page)
        wait_idle(importer)
        # the success line may be gone already (the page reruns when the store changes): the heading counts
        importer.get_by_role("heading", name=f"{30 + len(RUNS)} runs").wait_for()
        for page in pages[1:]:
            page.reload()
            wait_idle(page)
        for page, where in zip(pages, PAGES):
            assert not problems(page), (where, problems(page))
        assert not js_errors, js_errors
    finally:
        for context in contexts:
            context.close()

    stop(proc)  # the server holds the DuckDB file: stop it, then count what landed
    from db.store import Store

    store = Store(f"duckdb:///{db}")
    try:
        with store.read() as conn:
            counts = dict(conn.execute(sa.text(
                "SELECT r.name, count(*) FROM metrics m JOIN runs r ON r.id = m.run_id "
                "WHERE r.name LIKE 'load-%' GROUP BY r.name")).fetchall())
        assert counts == {run: STEPS for run in RUNS}
        assert store.runs().set_index("name").loc["load-a", "tokens"] == (STEPS - 1) * 4096.0
    finally:
        store.close()
