"""First start in a real browser: a cold `streamlit run app.py` on a FRESH store file → first page usable.

    python benchmarks/startup.py [--repeats 3] [--demo probe|synthetic]

Each repeat starts `streamlit run app.py` (tools/streamlit_server.py) against a new, empty DuckDB file,
waits until the server answers /_stcore/health, then opens the app's root in Debian's Chromium through
Playwright and times, from the browser's first request (``page.goto``):
  * until the app reports its first script run finished
    (``[data-testid=stApp][data-test-script-state=notRunning]``) AND the page's main chart
    (the first ``[data-testid=stPlotlyChart]``, the Runs page's curves) is visible — the target (≤ 5 s);
  * until a second browser tab, opened after that, is usable the same way (a later page load).
It also reports the process start → healthy server time, and how long the store-open full read of
db/store.py (``Store(check=True)``, the damaged-store check) takes on the seeded demo store.
Prints a Markdown table (results go in benchmarks/README.md by hand).
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

from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, IDLE, start_streamlit, stop  # noqa: E402

CHART = "[data-testid=stPlotlyChart]"
TARGET_S = 5.0


def usable(page, timeout_ms: float = 180_000) -> None:
    """The first script run has finished and the main chart is on screen."""
    page.wait_for_selector(IDLE, timeout=timeout_ms)
    page.wait_for_selector(CHART, state="visible", timeout=timeout_ms)
    page.wait_for_selector(IDLE, timeout=timeout_ms)


def one_start(browser, demo: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="scalescope-startup-") as tmp:
        db = Path(tmp) / "fresh.duckdb"
        t0 = time.perf_counter()
        proc, url = start_streamlit(db, SCALESCOPE_DEMO=demo, SCALESCOPE_SEED_ROUTING="1")
        healthy = time.perf_counter() - t0
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 900})
            page = context.new_page()
            start = time.perf_counter()
            page.goto(url, wait_until="commit")
            usable(page)
            first = time.perf_counter() - start
            # a later visitor: a new tab once the first page is up
            second_page = context.new_page()
            start = time.perf_counter()
            second_page.goto(url, wait_until="commit")
            usable(second_page)
            second = time.perf_counter() - start
            # whatever the background seeding still does: wait for it before stopping
            time.sleep(1.0)
            context.close()
        finally:
            stop(proc)
        check = store_check_seconds(db)
    return {"healthy": healthy, "first": first, "second": second, "check": check}


def store_check_seconds(db: Path) -> float:
    """Seconds of ``Store(check=True)`` (the full read the dashboard does on open) on the seeded file."""
    code = ("import sys, time; sys.path.insert(0, %r); from db.store import Store; t = time.perf_counter(); "
            "s = Store(%r, check=True); print(time.perf_counter() - t); s.close()") % (str(ROOT), f"duckdb:///{db}")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    try:
        return float(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return float("nan")


def machine() -> str:
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    from importlib.metadata import version

    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (load average {load}), "
            f"Python {platform.python_version()}, Streamlit {version('streamlit')}, Chromium headless")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--demo", default="probe", choices=["probe", "synthetic"],
                        help="SCALESCOPE_DEMO of the server (probe: the bundled demo users get)")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    rows = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for i in range(args.repeats):
                rows.append(one_start(browser, args.demo))
                r = rows[-1]
                print(f"start {i + 1}: server healthy {r['healthy']:.1f} s, first page usable {r['first']:.2f} s, "
                      f"second tab {r['second']:.2f} s, Store(check=True) {r['check']:.2f} s", flush=True)
        finally:
            browser.close()
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print()
    print("| measure (median of %d cold starts) | seconds |" % len(rows))
    print("|---|---|")
    print(f"| `streamlit run` → server healthy | {med['healthy']:.1f} |")
    print(f"| browser's first request → first page usable (target ≤ {TARGET_S:g} s) | {med['first']:.2f} |")
    print(f"| a second tab → usable (the page itself, everything warm) | {med['second']:.2f} |")
    print(f"| first start's own cost (first − second, per start) | "
          f"{statistics.median(r['first'] - r['second'] for r in rows):.2f} |")
    print(f"| `Store(check=True)` full read of the seeded store | {med['check']:.2f} |")
    print()
    print(f"Machine: {machine()}")
    return 0 if med["first"] <= TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
