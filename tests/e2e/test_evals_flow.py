"""Browser: upload a wide CSV of evals on the Evals page, see the rows in the table and the PCA view.

The CSV names runs of the seeded demo sweep, so its scores attach to those runs (matched by name)
and no run is added: the other browser tests share this server and count its runs.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from services.seed import synthetic_runs
from tests.e2e.conftest import screenshot, wait_idle

pytestmark = pytest.mark.e2e


def eval_table(path) -> pd.DataFrame:
    """Eight demo runs, two families, four benchmarks driven by one capability (log parameters)."""
    runs = synthetic_runs()[::4][:8]
    capability = np.log10([r.n_params for r in runs])
    capability = (capability - capability.min()) / np.ptp(capability)
    noise = np.random.default_rng(0).normal(0, 0.01, (len(runs), 4))
    scores = np.clip(0.3 + np.outer(capability, [0.4, 0.3, 0.2, 0.35]) + noise, 0, 1)
    table = pd.DataFrame(scores, columns=["MMLU", "ARC-C", "HellaSwag", "PIQA"])
    table.insert(0, "family", ["sweep-A" if i % 2 == 0 else "sweep-B" for i in range(len(runs))])
    table.insert(0, "model", [r.name for r in runs])
    table.to_csv(path, index=False)
    return table


def test_upload_wide_csv_shows_table_and_pca(server, page, tmp_path):
    path = tmp_path / "leaderboard.csv"
    table = eval_table(path)

    page.goto(server["url"] + "/")  # the app's navigation first (as the planner flow does)
    wait_idle(page)
    page.goto(server["url"] + "/evals")
    wait_idle(page)
    page.get_by_role("heading", name="Evals").first.wait_for()
    dropzone = page.locator("[data-testid=stFileUploaderDropzoneInput]")
    if not dropzone.count():  # the import form is folded once the store holds evals
        page.get_by_text("Import eval results").click()
    dropzone.set_input_files(str(path))
    page.get_by_text("leaderboard.csv").first.wait_for()
    page.get_by_role("button", name="Import evals").click()
    wait_idle(page)
    page.get_by_text("Stored 32 eval rows (4 tasks): 8 run(s) matched, 0 created", exact=False).wait_for()

    page.get_by_text("32 of 32 eval results · 8 runs · 4 tasks", exact=False).wait_for()
    page.locator("[data-testid=stDataFrame]").first.wait_for()
    page.get_by_text("PC1 explains", exact=False).wait_for()
    # scaling, scree, loadings, PC space: Plotly's bundle loads lazily, so the charts may follow the text
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=stPlotlyChart]')]"
                           ".filter(c => c.querySelector('.main-svg')).length >= 4")
    page.wait_for_function(  # the PC1–PC2 scatter is coloured by family
        "() => ['sweep-A', 'sweep-B'].every(f => [...document.querySelectorAll('.legendtext')]"
        ".some(e => e.textContent === f))")
    assert table["model"].nunique() == 8
    page.get_by_text("Principal components of the benchmarks").scroll_into_view_if_needed()
    shot = screenshot(page, "evals_upload_pca")
    assert shot.stat().st_size > 10_000
