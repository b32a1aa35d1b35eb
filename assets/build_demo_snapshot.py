"""Build the precomputed demo that first start restores: assets/demo/snapshot/ (issue 13 §1).

    python assets/build_demo_snapshot.py [--bootstrap 1000] [--no-routing]

Runs the seeding code of services/seed.py (:func:`services.seed.build_demo`: the probe demo sweep and
its fit, the Chinchilla example runs fitted with Besiroglu et al. 2024's settings, the example eval
tables, the D-CPT mixture sweep and its two fits, the bundled MoE's routing captures) into a temporary DuckDB file, then writes that store as a
backup folder (services/backup.py: one Parquet file per table and a manifest with checksums). A backup
restored into an empty store IS the demo, so first start loads it through the backup's fast restore
path instead of computing it. Re-run after changing the seeding code, the bundled data or the schema
(a snapshot of another schema version is refused, and first start falls back to computing).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from db.store import Store  # noqa: E402
from services.backup import backup_store  # noqa: E402
from services.seed import SNAPSHOT_DIR, build_demo  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of the Chinchilla fit")
    parser.add_argument("--no-routing", action="store_true", help="leave the routing captures out")
    parser.add_argument("--out", type=Path, default=SNAPSHOT_DIR)
    args = parser.parse_args()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scalescope-demo-") as tmp:
        store = Store(f"duckdb:///{Path(tmp) / 'demo.duckdb'}")
        n = build_demo(store, routing=not args.no_routing, n_bootstrap=args.bootstrap,
                       progress=lambda done, total, what: print(f"[{done}/{total}] {what} "
                                                                f"({time.perf_counter() - start:.0f} s)", flush=True))
        staging = args.out.with_name(args.out.name + ".new")
        shutil.rmtree(staging, ignore_errors=True)
        manifest = backup_store(store, staging)
        store.close()
    shutil.rmtree(args.out, ignore_errors=True)
    staging.rename(args.out)
    size = sum(p.stat().st_size for p in args.out.iterdir())
    rows = {t: e["rows"] for t, e in manifest["tables"].items()}
    print(f"{n} runs; {rows}; {size / 1e6:.2f} MB in {args.out} ({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
