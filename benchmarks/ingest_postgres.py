"""Benchmark: the team store on PostgreSQL (issue 11 §3). Import 10M long-format metric rows
(1,000 runs × 10,000 steps) from CSV, and the downsampled query behind a 20-run chart.

Targets: import ≤ 1.5× PostgreSQL's own `COPY t FROM 'file' (FORMAT csv, HEADER)` of the same file
into a plain table (the floor), in the same run; peak RSS ≤ 2 GB; the 20-run chart query over the
10M stored rows ≤ 300 ms median.

    python benchmarks/ingest_postgres.py [--runs 1000] [--steps 10000] [--url postgresql+psycopg://...]

Without --url it starts a throwaway cluster (tools/pg_cluster.py: fsync off, default memory settings)
and removes it afterwards. With --url, the floor streams the file from here (the server may not see
this machine's files), as psql's \\copy does.
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from db.bulk import ingest_long_table  # noqa: E402
from db.store import Store  # noqa: E402
from ingest import chart_query, make_files  # noqa: E402  (benchmarks/ingest.py: the same files and query)
from tools.pg_cluster import PgCluster, admin, with_database  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def floor_seconds(server: str, csv: Path, local: bool) -> float:
    """PostgreSQL's own COPY of the file into a plain table of the file's columns, in a fresh database."""
    admin(server, 'DROP DATABASE IF EXISTS "floor" WITH (FORCE)', 'CREATE DATABASE "floor"')
    with psycopg.connect(libpq(with_database(server, "floor"))) as conn:
        conn.execute("CREATE TABLE t (run text, step double precision, metric text, value double precision, "
                     "tokens double precision)")
        conn.commit()
        t0 = time.perf_counter()
        if local:  # the server reads the file itself
            conn.execute(f"COPY t FROM '{csv}' (FORMAT csv, HEADER)")
        else:
            with conn.cursor().copy("COPY t FROM STDIN (FORMAT csv, HEADER)") as copy, open(csv, "rb") as fh:
                while block := fh.read(1 << 20):
                    copy.write(block)
        conn.commit()
        seconds = time.perf_counter() - t0
    admin(server, 'DROP DATABASE "floor" WITH (FORCE)')
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--url", help="a PostgreSQL server URL (any database); default: a throwaway cluster")
    ap.add_argument("--repeats", type=int, default=1, help="import rounds (floor and ours alternate)")
    args = ap.parse_args()
    n_rows = args.runs * args.steps
    work = Path(tempfile.mkdtemp(prefix="ss_bench_pg_"))
    os.chmod(work, 0o755)  # the local server reads the CSV for the floor
    cluster = None if args.url else PgCluster.start()
    server = args.url or cluster.url()
    try:
        csv, _ = make_files(work, args.runs, args.steps)
        os.chmod(csv, 0o644)
        print(f"{n_rows:,} rows; CSV {csv.stat().st_size / 1e6:.0f} MB; server {server.split('@')[-1]}")
        print(f"{'round':<6} {'floor s':>8} {'ours s':>8} {'ratio':>6} {'rows/s':>12} {'peak RSS MB':>12}")
        url = None
        for round_ in range(args.repeats):
            floor = floor_seconds(server, csv, local=cluster is not None)
            admin(server, 'DROP DATABASE IF EXISTS "ours" WITH (FORCE)', 'CREATE DATABASE "ours"')
            url = with_database(server, "ours")
            store = Store(url)
            t0 = time.perf_counter()
            added = ingest_long_table(store, csv)
            ours = time.perf_counter() - t0
            store.close()
            assert sum(a["n_metric_rows"] for a in added) == n_rows
            print(f"{round_ + 1:<6} {floor:8.2f} {ours:8.2f} {ours / floor:6.2f} {n_rows / ours:12,.0f} "
                  f"{peak_rss_mb():12.0f}")
        # Autovacuum analyses a freshly loaded table within a minute or so; do it now rather than wait.
        admin(url, "ANALYZE metrics")
        store = Store(url)
        print("PostgreSQL", chart_query(store, n_rows))
        store.close()
        # The same query on a DuckDB store of the same file, at the same moment: these machines are
        # shared, so the ratio tells more than either number.
        duck = Store(f"duckdb:///{work / 'same.duckdb'}")
        ingest_long_table(duck, csv)
        print("DuckDB    ", chart_query(duck, n_rows))
        duck.close()
    finally:
        if cluster is not None:
            cluster.remove()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
