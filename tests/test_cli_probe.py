"""`python cli.py probe sweep|throughput`: a tiny CPU sweep lands runs with exact N, D = C/(6N) and
C = 6ND (and prints them with --json); a throughput probe stores a probes row with sane numbers; bad
configurations exit 2 with one line on stderr and store nothing. The sweep and the throughput probe run on
both engines (``any_db_url``); bad configurations are refused before the store, on DuckDB."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from cli import main
from core import corpus
from core.probes.model_configs import count_params, shape_for_params
from db.probes import list_probes
from db.store import Store

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--seq-len", "32", "--batch-size", "4", "--min-steps", "5", "--eval-tokens", "128",
        "--final-tokens-per-domain", "128", "--corpus", "sample", "--device", "cpu", "--threads", "1"]


def counts(db_url: str) -> dict:
    store = Store(db_url)
    try:
        with store.read() as conn:
            return {t: int(conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one())
                    for t in ("runs", "metrics", "evals", "probes")}
    finally:
        store.close()


def test_tiny_sweep_lands_runs_with_exact_n_d_and_flops(any_db_url, capfd):
    rc = main(["probe", "sweep", "--budgets", "1.5e9", "3e9", "--sizes", "1.4e5,3.2e5", *TINY, "--db", any_db_url,
               "--json"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    payload = json.loads(out)
    assert "plan: 4 runs" in err and "estimated" in err and "[######" in err and "loss" in err
    assert payload["device"]["kind"] == "cpu" and payload["tag"] == f"sweep={payload['sweep']}"
    runs = payload["runs"]
    assert len(runs) == 4 and {r["budget_flops"] for r in runs} == {1.5e9, 3e9}
    store = Store(any_db_url)
    stored = store.runs().set_index("name")
    for r in runs:
        shape = shape_for_params(min((1.4e5, 3.2e5), key=lambda n: abs(n - r["n_active_params"])), "dense", 4096, 32)
        assert r["n_params"] == r["n_active_params"] == count_params(shape).total
        assert r["tokens"] == r["steps"] * 128 and abs(r["tokens"] - r["budget_flops"] / (6 * r["n_params"])) <= 64
        assert r["flops"] == 6 * r["n_params"] * r["tokens"]
        assert 5.0 < r["final_loss"] < 9.5 and r["final_train_loss"] > 0
        row = stored.loc[r["name"]]
        assert (row.n_params, row.tokens, row.flops) == (r["n_params"], r["tokens"], r["flops"])
        assert payload["tag"] in json.loads(row.tags)
    with store.read() as conn:
        n_evals = conn.execute(sa.text("SELECT count(*) FROM evals")).scalar_one()
    assert n_evals == 4 * len(corpus.DOMAINS)
    assert list_probes(store)["kind"].tolist() == ["sweep"]
    store.close()

    # the same sweep again: refused before any training, one line, nothing added
    rc = main(["probe", "sweep", "--budgets", "1.5e9", "3e9", "--sizes", "1.4e5,3.2e5", *TINY, "--db", any_db_url])
    out, err = capfd.readouterr()
    assert rc == 2 and "already exists" in err and "[#" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [err.splitlines()[-1]]
    assert counts(any_db_url)["runs"] == 4


def test_throughput_probe_stores_a_row_with_sane_numbers(any_db_url, capfd):
    rc = main(["probe", "throughput", "--params", "2e5", "--batch", "2", "--seq-len", "32", "--iters", "2",
               "--warmup", "1", "--device", "cpu", "--threads", "1", "--db", any_db_url, "--json"])
    out, err = capfd.readouterr()
    assert rc == 0, err
    payload = json.loads(out)
    assert payload["device"] == "cpu" and payload["dtype"] == "fp32" and payload["compile"] is False
    fwd, both = payload["results"]
    assert (fwd["kind"], both["kind"]) == ("forward", "forward_backward")
    assert both["flops_per_token"] == pytest.approx(3 * fwd["flops_per_token"])
    for r in (fwd, both):
        assert r["tokens_per_s"] > 100 and 0 < r["mfu"] < 1.5 and r["peak_memory_bytes"] >= 0
        assert r["achieved_tflops"] == pytest.approx(r["flops_per_token"] * r["tokens_per_s"] / 1e12)
        assert r["peak_source"].startswith("measured")
    assert fwd["tokens_per_s"] > both["tokens_per_s"]
    assert payload["world_size"] == 1 and payload["parallel"] == "single" and payload["global_batch"] == 2
    assert payload["tokens_per_s"] == both["tokens_per_s"]  # the headline: the training (fwd+bwd) rate
    store = Store(any_db_url)
    rows = list_probes(store).set_index("id")
    store.close()
    assert sorted(rows.index) == sorted([fwd["probe_id"], both["probe_id"]])
    assert rows.loc[both["probe_id"], "mfu"] == pytest.approx(both["mfu"])
    assert rows.loc[fwd["probe_id"], "tokens_per_s"] == pytest.approx(fwd["tokens_per_s"])
    assert "[##############################]" in err


@pytest.mark.parametrize("argv, message", [
    (["sweep", "--budgets", "1.5e9", "--sizes", "4e6"], "does not fit budget"),
    (["sweep", "--budgets", "1.5e9", "--sizes", "1.4e5", "--device", "tpu"], "Unknown device 'tpu'"),
    (["sweep", "--budgets", "1.5e9", "--sizes", "1.4e5", "--device", "cuda"], "no CUDA GPU"),
    (["sweep", "--budgets", "1.5e9", "--sizes", "1.4e5", "--min-steps", "0"], "zero steps"),
    (["sweep", "--budgets", "1.5e9", "--sizes", "1.4e5", "--max-steps", "0"], "zero steps"),
    (["sweep", "--budgets", "1.5e9", "--sizes", "1.4e5", *TINY, "--max-steps", "3"], "more than max_steps 3"),
    (["sweep", "--budgets", "lots", "--sizes", "1.4e5"], "'lots' is not a number"),
    (["throughput", "--params", "1e6", "--device", "cpu", "--dtype", "bf16"], "bf16 needs a CUDA GPU"),
    (["throughput", "--params", "1e6", "--device", "cpu", "--iters", "0"], "at least 1"),
    (["throughput", "--params", "10", "--device", "cpu"], "ask for a larger size"),
    (["throughput", "--params", "1e6", "--device", "cpu", "--fsdp"], "needs several processes"),
    (["sweep", "--budgets", "1.5e9", "--sizes", "1.4e5", *TINY, "--parallel", "ddp"], "torchrun --nproc_per_node"),
])
def test_bad_configurations_exit_2_with_one_line_and_store_nothing(db_url, capfd, argv, message):
    rc = main(["probe", *argv, "--db", db_url])
    out, err = capfd.readouterr()
    assert rc == 2 and out == ""
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and message in lines[-1]
    assert all(not line.startswith("[") for line in lines)  # no training or timing started
    assert counts(db_url) == {"runs": 0, "metrics": 0, "evals": 0, "probes": 0}


def test_cli_process_exits_2_on_a_size_that_does_not_fit(db_url):
    proc = subprocess.run([sys.executable, "cli.py", "probe", "sweep", "--budgets", "1e9", "--sizes", "5e6",
                           "--db", db_url], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ") and "does not fit budget" in proc.stderr
    assert counts(db_url)["runs"] == 0
