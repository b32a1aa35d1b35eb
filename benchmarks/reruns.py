"""Server-side rerun time per page (issue 13 §8): ``python benchmarks/reruns.py [--repeats 5]``.

Each page runs under Streamlit's AppTest (the script as the server runs it, no browser) on a fresh
demo store in a temporary folder: one first run (imports, seeding, cold caches), one warm-up widget
change, then ``--repeats`` typical widget changes, each timed from the widget change to the end of
the script run (wall clock, and the process's CPU time, which a loaded shared machine inflates
less). Target: median ≤ 300 ms per page. Prints one table (and ``--json`` a JSON list).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMEOUT = 600


def change(at, kind: str, key: str, step: int, parse=str):
    """Change widget ``key`` (of AppTest element ``kind``) the way a user would; the AppTest, not run."""
    widget = {w.key: w for w in getattr(at, kind)}.get(key)
    if widget is None:
        raise LookupError(f"no {kind} {key!r} on the page")
    if kind == "checkbox":
        return widget.set_value(not widget.value)
    if kind == "number_input":
        return widget.set_value(widget.value + (1 if step % 2 else -1))
    if kind == "slider":
        lo, hi = widget.min, widget.max
        return widget.set_value(lo + (hi - lo) * (0.25 if step % 2 else 0.5))
    if kind == "selectbox":  # AppTest's select_index sets the label; set the value the label stands for
        options = list(widget.options)
        i = (options.index(widget.format_func(widget.value)) + 1) % len(options)
        return widget.set_value(parse(options[i]))
    # select_slider: its options are labels; the planner's are numbers written as 1e21, 2e21, ...
    options = list(widget.options)
    label = widget.format_func(widget.value)
    i = options.index(label) if label in options else 0
    return widget.set_value(float(options[(i + (1 if step % 2 else -1)) % len(options)]))


# page -> (file, the widget a user typically changes there: AppTest element kind, key)
PAGES = {
    "runs": ("pages/runs.py", "slider", "curve_smooth"),
    "fits": ("pages/fits.py", "selectbox", "confidence_level", lambda label: float(label.rstrip("%")) / 100),
    "planner": ("pages/planner.py", "select_slider", "planner_budget"),
    "evals": ("pages/evals.py", "checkbox", "evals_logy"),
    "routing": ("pages/routing.py", "selectbox", "routing_layer", lambda label: int(label.split()[-1])),
    "probes": ("pages/probes.py", "number_input", "sweep_seed"),
}


def measure(page: str, repeats: int) -> dict:
    from streamlit.testing.v1 import AppTest

    path, kind, key, *parse = PAGES[page]
    t0 = time.perf_counter()
    at = AppTest.from_file(str(ROOT / path), default_timeout=TIMEOUT).run()
    first = time.perf_counter() - t0
    if at.exception:
        return {"page": page, "error": at.exception[0].value.splitlines()[0]}
    times, cpu, what = [], [], key
    for step in range(repeats + 1):
        try:
            change(at, kind, key, step, *parse)
        except (LookupError, ValueError) as exc:
            return {"page": page, "first_s": first, "error": str(exc)}
        t, c = time.perf_counter(), time.process_time()
        at.run()
        dt, dc = time.perf_counter() - t, time.process_time() - c
        if at.exception:
            return {"page": page, "first_s": first, "error": at.exception[0].value.splitlines()[0]}
        if step:  # the first change warms what the first run did not reach
            times.append(dt)
            cpu.append(dc)
    return {"page": page, "widget": what, "first_s": round(first, 2), "median_ms": round(1000 * statistics.median(times)),
            "max_ms": round(1000 * max(times)),
            "cpu_median_ms": round(1000 * statistics.median(cpu)), "n": len(times)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed widget changes per page (default 5)")
    ap.add_argument("--pages", nargs="*", default=list(PAGES), choices=list(PAGES))
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="reruns_")
    os.environ["SCALESCOPE_DB_URL"] = f"duckdb:///{tmp}/demo.duckdb"
    rows = []
    for page in args.pages:
        rows.append(measure(page, args.repeats))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps(rows))
        return 0
    load = os.getloadavg()
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; {args.repeats} timed changes per page")
    print(f"{'page':<9}{'widget':<22}{'first s':>8}{'median ms':>11}{'max ms':>8}{'CPU ms':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['page']:<9}ERROR {r['error']}")
        else:
            print(f"{r['page']:<9}{r['widget']:<22}{r['first_s']:>8.2f}{r['median_ms']:>11}{r['max_ms']:>8}"
                  f"{r['cpu_median_ms']:>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
