"""Benchmark: the watcher of live runs (issue 11 §3, "Watch").

Targets: a scan of 1,000 unchanged watched files ≤ 200 ms (the cost the dashboard pays every few
seconds); a 10,000-row append to a watched CSV lands in the store in ≤ 2 s.

- scan: 1,000 files in 100 run folders (800 CSV tables, 100 TensorBoard event files, 100 Lightning
  metrics.csv) are imported by a first scan; then the median of ``--repeats`` scans in which
  nothing changed (each file only stat'ed; one query for the stored states).
- append: a watched long-format CSV of 1,000 rows gets 10,000 more rows in one write; measured (a)
  as the one scan that reads and stores them, and (b) end to end, from the write to the rows being
  visible to a reader, with the watcher's background thread at its default interval (the wait for
  the next scan included: each write comes at a random moment of the interval, so the max is close
  to the worst case, a write just after a scan).

    python benchmarks/watch.py [--files 1000] [--rows 10000] [--repeats 20] [--interval S]
"""
from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.store import Store  # noqa: E402
from services.watch import Watcher  # noqa: E402


def make_folder(root: Path, n_files: int) -> None:
    from torch.utils.tensorboard import SummaryWriter

    n_dirs = max(1, n_files // 10)
    for d in range(n_dirs):
        run_dir = root / f"exp{d:03d}"
        run_dir.mkdir(parents=True)
        w = SummaryWriter(str(run_dir / "tb"))
        for s in range(20):
            w.add_scalar("loss", 3.0 - s / 100, s)
        w.close()
        (run_dir / "lightning").mkdir()
        (run_dir / "lightning" / "metrics.csv").write_text(
            "epoch,step,train_loss\n" + "".join(f"0,{s},{3 - s / 100}\n" for s in range(20)))
        for i in range(8):
            (run_dir / f"table{i}.csv").write_text("step,loss\n" + "".join(f"{s},{3 - s / 100}\n" for s in range(20)))


def bench_scan(work: Path, n_files: int, repeats: int) -> dict:
    logs = work / "scan"
    make_folder(logs, n_files)
    store = Store(f"duckdb:///{work / 'scan.duckdb'}")
    watcher = Watcher(store, [str(logs)])
    t0 = time.perf_counter()
    first = watcher.scan()
    first_s = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        report = watcher.scan()
        assert report.files_read == 0 and not report.runs, report
        times.append(report.seconds)
    store.close()
    return {"files": first.files_seen, "runs": len({r["name"] for r in first.runs}), "errors": len(first.errors),
            "first_s": first_s, "median_ms": 1000 * statistics.median(times), "max_ms": 1000 * max(times)}


def _rows(start: int, n: int) -> str:
    return "".join(f"big,{s},loss,{2.0 + 10.0 / (s + 1)}\n" for s in range(start, start + n))


def bench_append(work: Path, n_rows: int, interval: Optional[float], repeats: int) -> dict:
    logs = work / "append"
    logs.mkdir()
    path = logs / "big.csv"
    path.write_text("run,step,metric,value\n" + _rows(0, 1000))
    store = Store(f"duckdb:///{work / 'append.duckdb'}")
    watcher = Watcher(store, [str(logs)])
    watcher.scan()
    scans, ends, stored = [], [], 1000
    for _ in range(repeats):  # (a) the scan that reads and stores the append
        with open(path, "a") as fh:
            fh.write(_rows(stored, n_rows))
        report = watcher.scan()
        stored += n_rows
        assert report.runs[0]["added_rows"] == n_rows and report.runs[0]["n_metric_rows"] == stored, report
        scans.append(report.seconds)
    watcher = Watcher(store, [str(logs)], interval=interval).start()
    try:
        for _ in range(repeats):  # (b) end to end: write, then poll until a reader sees every row
            time.sleep(random.uniform(0, watcher.interval))
            with open(path, "a") as fh:
                fh.write(_rows(stored, n_rows))
            t0 = time.perf_counter()
            stored += n_rows
            while int(store.runs().set_index("name").loc["big", "n_metric_rows"]) < stored:
                time.sleep(0.01)
            ends.append(time.perf_counter() - t0)
    finally:
        watcher.stop()
    store.close()
    return {"interval": watcher.interval, "scan_median_s": statistics.median(scans), "scan_max_s": max(scans),
            "end_median_s": statistics.median(ends), "end_max_s": max(ends), "bytes": len(_rows(stored, n_rows))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1000)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--interval", type=float, help="seconds between scans (default: the watcher's own)")
    args = ap.parse_args()
    print(f"load average {os.getloadavg()[0]:.1f}; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="scalescope-bench-watch-") as tmp:
        scan = bench_scan(Path(tmp), args.files, args.repeats)
        print(f"scan: {scan['files']} files ({scan['runs']} runs, {scan['errors']} errors) imported by the first "
              f"scan in {scan['first_s']:.1f} s; unchanged: median {scan['median_ms']:.1f} ms, "
              f"max {scan['max_ms']:.1f} ms over {args.repeats} scans (target 200 ms)")
        app = bench_append(Path(tmp), args.rows, args.interval, args.repeats)
        print(f"append {args.rows:,} rows (~{app['bytes'] / 1e6:.1f} MB): the scan that stores them median "
              f"{app['scan_median_s'] * 1000:.0f} ms, max {app['scan_max_s'] * 1000:.0f} ms; write -> visible to a "
              f"reader with the thread at {app['interval']:g} s: median {app['end_median_s']:.2f} s, max "
              f"{app['end_max_s']:.2f} s (target 2 s)")


if __name__ == "__main__":
    main()
