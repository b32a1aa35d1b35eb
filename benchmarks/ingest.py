"""Benchmark: import 10M metric rows (1,000 runs × 10,000 steps) from CSV and Parquet, and the
downsampled query behind a 20-run chart.

Targets (issue 2): import ≤ 1.5× DuckDB's own `CREATE TABLE … AS SELECT * FROM read_csv(…)` on the
same file in the same run; peak RSS ≤ 2 GB; the 20-run chart query ≤ 200 ms.

    python benchmarks/ingest.py [--runs 1000] [--steps 10000]
"""
from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.bulk import ingest_long_table  # noqa: E402
from db.store import Store  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_files(work: Path, n_runs: int, n_steps: int) -> tuple[Path, Path]:
    csv, parquet = work / "metrics.csv", work / "metrics.parquet"
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE t AS SELECT 'run-' || lpad(CAST(r AS VARCHAR), 4, '0') AS run, s AS step,
        'loss' AS metric, 2.0 + 10.0 / (s + 1) + 0.01 * random() AS value, s * 524288.0 AS tokens
        FROM range({n_runs}) a(r), range({n_steps}) b(s)""")
    con.execute(f"COPY t TO '{csv}' (HEADER)")
    con.execute(f"COPY t TO '{parquet}' (FORMAT parquet)")
    con.close()
    return csv, parquet


def floor_seconds(path: Path, work: Path) -> float:
    db = work / "floor.duckdb"
    con = duckdb.connect(str(db))
    reader = f"read_parquet('{path}')" if path.suffix == ".parquet" else f"read_csv('{path}')"
    t0 = time.perf_counter()
    con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}")
    seconds = time.perf_counter() - t0
    con.close()
    db.unlink()
    return seconds


def chart_query(store: Store, n_rows: int) -> str:
    """Time the query behind a 20-run chart (by step, and by tokens on a log axis), 5 times each."""
    names = store.run_names()[:20]
    store.curves(names, "loss", "step")  # warm
    times = []
    for x in ("step", "tokens"):
        for _ in range(5):
            t0 = time.perf_counter()
            c = store.curves(names, "loss", x, max_points=2000, log_x=(x == "tokens"))
            times.append(time.perf_counter() - t0)
    return (f"20-run chart query ({len(c):,} points, {n_rows:,} rows stored): "
            f"median {sorted(times)[len(times) // 2] * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10000)
    args = ap.parse_args()
    n_rows = args.runs * args.steps
    work = Path(tempfile.mkdtemp(prefix="ss_bench_"))
    try:
        csv, parquet = make_files(work, args.runs, args.steps)
        print(f"{n_rows:,} rows; CSV {csv.stat().st_size / 1e6:.0f} MB, Parquet {parquet.stat().st_size / 1e6:.0f} MB")
        print(f"{'source':<8} {'floor s':>8} {'ours s':>8} {'ratio':>6} {'rows/s':>12} {'peak RSS MB':>12}")
        for path in (csv, parquet):
            floor = floor_seconds(path, work)
            store = Store(f"duckdb:///{work / ('ours_' + path.suffix[1:] + '.duckdb')}")
            t0 = time.perf_counter()
            added = ingest_long_table(store, path)
            ours = time.perf_counter() - t0
            assert sum(a["n_metric_rows"] for a in added) == n_rows
            print(f"{path.suffix[1:]:<8} {floor:8.2f} {ours:8.2f} {ours / floor:6.2f} {n_rows / ours:12,.0f} "
                  f"{peak_rss_mb():12.0f}")
            if path is parquet:
                print(chart_query(store, n_rows))
            store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
