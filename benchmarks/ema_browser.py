"""Runs page in a real browser: key press on the EMA slider → the new smoothed curve on screen
(issue 13 §8: ≤ 500 ms).

    python benchmarks/ema_browser.py [--presses 10] [--runs 8] [--no-append]

Starts `streamlit run app.py` on a free port against a temporary database (the bundled demo, as a
first start seeds it; routing captures off, they play no part here), opens the Runs page in
Debian's Chromium through Playwright with ``--runs`` runs plotted, focuses the EMA smoothing slider
and presses ArrowRight ``--presses`` times (each press is one 0.01 step). For each press it times
  * key press → the drawn curves change (the SVG paths of the first panel's lines; the target), and
  * key press → the app reports its run finished (``data-test-script-state=notRunning``).
Two untimed presses first warm the caches (the first one also adds the faint raw curves). Prints a
Markdown table and appends it, with the machine, to benchmarks/RESULTS_ema.md (``--no-append`` only
prints).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.planner_browser import latency_table, machine, report  # noqa: E402  (one report format)
from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, IDLE, start_streamlit, stop  # noqa: E402

RESULTS = ROOT / "benchmarks" / "RESULTS_ema.md"
SLIDER = ".st-key-curve_smooth input[type=range]"
# The first panel's drawn lines: their SVG paths change when the smoothed curve does.
PATHS_JS = """() => { const c = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
  return c ? [...c.querySelectorAll('.scatterlayer path.js-line')].map(p => p.getAttribute('d')).join('|') : ''; }"""
TARGET_MS = 500.0


def wait_idle(page) -> None:
    page.wait_for_selector(IDLE, timeout=120_000)
    page.wait_for_timeout(300)
    page.wait_for_selector(IDLE, timeout=120_000)


def press(page) -> tuple[float, float]:
    """ArrowRight on the focused slider: (ms to new curves on screen, ms to run finished)."""
    before = page.evaluate(PATHS_JS)
    start = time.perf_counter()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(f"old => ({PATHS_JS})() !== old && ({PATHS_JS})() !== ''", arg=before,
                           polling="raf", timeout=60_000)
    to_curve = (time.perf_counter() - start) * 1000.0
    page.wait_for_selector(IDLE, timeout=60_000)
    to_idle = (time.perf_counter() - start) * 1000.0
    page.wait_for_timeout(400)  # let the run settle before the next press, as a reader would
    return to_curve, to_idle


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=10)
    parser.add_argument("--runs", type=int, default=8, help="runs plotted (the page's default is the first 8)")
    parser.add_argument("--no-append", action="store_true", help=f"print only; do not append to {RESULTS.name}")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_streamlit(Path(tmp) / "bench.duckdb", SCALESCOPE_SEED_ROUTING="0")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.goto(url + "/")
                wait_idle(page)
                page.wait_for_function(f"() => ({PATHS_JS})() !== ''", timeout=120_000)
                n_lines = page.evaluate(PATHS_JS).count("|") + 1
                page.locator(SLIDER).focus()
                press(page)  # warm-up: 0 → 0.01 adds the raw curves under the smoothed ones
                press(page)
                first = page.locator(SLIDER).get_attribute("aria-valuetext")
                timings = [press(page) for _ in range(args.presses)]
                last = page.locator(SLIDER).get_attribute("aria-valuetext")
                browser.close()
        finally:
            stop(proc)

    to_curve = [t[0] for t in timings]
    to_idle = [t[1] for t in timings]
    rows = [("key press → new smoothed curve on screen", to_curve, TARGET_MS),
            ("key press → app reports the run finished", to_idle, None)]
    lines = ["## Runs page in the browser: EMA slider key press → new curve (`python benchmarks/ema_browser.py`)",
             "",
             f"{args.presses} ArrowRight presses on the EMA smoothing slider (smoothing {first} → {last}, one 0.01 "
             f"step each) after two untimed warm-up presses; the Runs page's default view of the bundled demo "
             f"({n_lines} lines in the first panel: each run raw and smoothed). Streamlit server and headless Chromium on the "
             "same machine. The chart area is an st.fragment: a slider move reruns the charts alone, from curves "
             "cached per session until the store changes. Target from issue 13 §8: ≤ 500 ms from key press to "
             "the new curve, judged on the median.",
             "",
             f"Machine: {machine()}.",
             ""] + latency_table(rows) + [""]
    return report(lines, "Per press (ms to the new curve)", to_curve, RESULTS, TARGET_MS, append=not args.no_append)


if __name__ == "__main__":
    sys.exit(main())
