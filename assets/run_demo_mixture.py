"""Run the demo D-CPT mixture sweep with ScaleScope's own probe code and write its measured runs.

    nice -n 10 python assets/run_demo_mixture.py                 # the committed demo (CPU, 2 threads)
    python assets/run_demo_mixture.py --ratios 0.2,0.5,0.8 --sizes 7e4 --tokens 6e4 --out /tmp/mix   # a pilot

Dense Llama-style models on the bundled corpus (core/probes/mixture.py): domain corpus `python`,
general corpus the other domains; for each size N, tokens D and domain ratio r_d one run. Writes to
--out (default assets/demo/) mixture_runs.csv, mixture_metrics.csv, mixture_evals.csv (the format of
core.probes.sweep.write_tables, read back by core.probes.sweep.read_tables), and prints the D-CPT fit
of both corpora's losses (core/dcpt.py) for assets/demo/README.md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from core import corpus  # noqa: E402
from core.probes import mixture, sweep  # noqa: E402


def _floats(text: str) -> list:
    return [float(x) for x in text.split(",") if x.strip()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    d = mixture.MixtureConfig()
    ap.add_argument("--domain", default=d.domain)
    ap.add_argument("--ratios", default=",".join(f"{r:g}" for r in d.ratios))
    ap.add_argument("--sizes", default=",".join(f"{n:g}" for n in d.sizes))
    ap.add_argument("--tokens", default=",".join(f"{t:g}" for t in d.tokens))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "assets" / "demo"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = mixture.MixtureConfig(domain=args.domain, ratios=tuple(_floats(args.ratios)),
                                sizes=tuple(_floats(args.sizes)), tokens=tuple(_floats(args.tokens)), device="cpu")
    t0 = time.time()
    train, heldout = corpus.bundled_blocks(cfg.seq_len)
    runs = mixture.run_mixture(cfg, train, heldout, progress=_progress(), corpus_info={"corpus": "bundled"})
    out = Path(args.out)
    sweep.write_tables(runs, out, prefix="mixture")  # mixture_runs.csv, mixture_metrics.csv, mixture_evals.csv
    print(f"{len(runs)} runs in {time.time() - t0:.0f} s; training {sum(r.config['wall_time_s'] for r in runs):.0f} s")
    for r in runs:
        print(f"{r.name}: domain {r.config['final_domain_loss']:.4f} general {r.config['final_general_loss']:.4f}")
    return 0


def _progress():
    last = {"t": 0.0}

    def report(done, total, message=""):
        if time.time() - last["t"] > 10 or done == total:
            last["t"] = time.time()
            print(f"{done}/{total} {message}", file=sys.stderr, flush=True)

    return report


if __name__ == "__main__":
    raise SystemExit(main())
