"""Planner in a real browser: key press on the budget slider → updated N* on screen (issue 4: ≤ 300 ms).

    python benchmarks/planner_browser.py [--presses 10] [--no-append]

Starts `streamlit run app.py` on a free port against a temporary database (as tests/e2e/conftest.py
does), opens /planner in Debian's Chromium through Playwright, focuses the budget slider and presses
ArrowRight ``--presses`` times (each press is one 0.1-decade step). For each press it times
  * key press → the N* metric's text changes in the DOM (what the reader sees; the target), and
  * key press → the app reports its run finished (``data-test-script-state=notRunning``).
One untimed press first warms the caches. Prints a Markdown table and appends it, with the machine,
to benchmarks/RESULTS_planner.md (``--no-append`` only prints).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, IDLE, start_streamlit, stop, wait_idle  # noqa: E402  (one browser setup)

RESULTS = ROOT / "benchmarks" / "RESULTS_planner.md"
N_STAR = ".st-key-planner_n_params [data-testid=stMetricValue]"
BUDGET_SLIDER = 'input[type=range][aria-label^="Training budget"]'
TARGET_MS = 300.0


def press(page) -> tuple[float, float, str]:
    """ArrowRight on the focused slider: (ms to new N*, ms to run finished, the new N*)."""
    before = page.inner_text(N_STAR)
    start = time.perf_counter()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("([sel, old]) => { const e = document.querySelector(sel);"
                           " return e !== null && e.innerText !== old; }", arg=[N_STAR, before],
                           polling="raf", timeout=60_000)
    to_number = (time.perf_counter() - start) * 1000.0
    page.wait_for_selector(IDLE, timeout=60_000)
    to_idle = (time.perf_counter() - start) * 1000.0
    page.wait_for_timeout(400)  # let the run settle before the next press, as a reader would
    return to_number, to_idle, page.inner_text(N_STAR)


def machine() -> str:
    try:
        chromium = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except OSError:
        chromium = "chromium (version unknown)"
    from importlib.metadata import version

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (load average {load} "
            f"at the end), {platform.system()} {platform.release()}, Python {platform.python_version()}, "
            f"Streamlit {version('streamlit')}, Playwright {version('playwright')}, {chromium} headless")


def latency_table(rows) -> list[str]:
    """Markdown lines of a latency table: rows of (measure, values in ms, target ms or None), judged on the median."""
    lines = ["| measure | median ms | min ms | max ms | target ms | ok |", "|---|---:|---:|---:|---:|---|"]
    for name, values, target in rows:
        median = statistics.median(values)
        ok = "" if target is None else ("yes" if median <= target else "NO")
        lines.append(f"| {name} | {median:.0f} | {min(values):.0f} | {max(values):.0f} | "
                     f"{'' if target is None else f'{target:g}'} | {ok} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presses", type=int, default=10)
    parser.add_argument("--no-append", action="store_true", help=f"print only; do not append to {RESULTS.name}")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_streamlit(Path(tmp) / "bench.duckdb")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
                page.goto(url + "/")  # the app shell registers its pages on its first run
                wait_idle(page)
                page.goto(url + "/planner")
                wait_idle(page)
                page.locator(BUDGET_SLIDER).focus()
                press(page)  # warm-up: first run of the fragment, caches
                first = page.locator(BUDGET_SLIDER).get_attribute("aria-valuetext")
                timings = [press(page) for _ in range(args.presses)]
                last = page.locator(BUDGET_SLIDER).get_attribute("aria-valuetext")
                browser.close()
        finally:
            stop(proc)

    to_number = [t[0] for t in timings]
    to_idle = [t[1] for t in timings]
    rows = [("key press → updated N* on screen", to_number, TARGET_MS),
            ("key press → app reports the run finished", to_idle, None)]
    lines = ["## Planner in the browser: slider key press → updated N* (`python benchmarks/planner_browser.py`)",
             "",
             f"{args.presses} ArrowRight presses on the budget slider (budget {first} → {last} FLOPs, one "
             "0.1-decade step each) after one untimed warm-up press; Streamlit server and headless Chromium "
             "on the same machine. Target from issue 4: ≤ 300 ms from key press to the updated numbers, "
             "judged on the median.",
             "",
             f"Machine: {machine()}.",
             ""] + latency_table(rows) + [""]
    return report(lines, "Per press (ms to N*)", to_number, RESULTS, TARGET_MS, append=not args.no_append)


def report(lines: list[str], per_press_label: str, latencies_ms, results: Path, target_ms: float,
           append: bool = True) -> int:
    """Print the report (and append it to ``results``); exit status 0 when the median meets the target."""
    lines = lines + [f"{per_press_label}: " + ", ".join(f"{v:.0f}" for v in latencies_ms)]
    text = "\n".join(lines) + "\n"
    print(text)
    if append:
        with results.open("a") as f:
            f.write("\n" + text)
        print(f"appended to {results.relative_to(ROOT)}")
    return 0 if statistics.median(latencies_ms) <= target_ms else 1


if __name__ == "__main__":
    sys.exit(main())
