"""Probes under torchrun on CPU (gloo): a 2-process sweep stores each run once and its losses, as
printed and as stored (read back through services/), match the one-process sweep of the same config; `probe throughput` prints one JSON document with
world_size 2 and the global tokens/s; FSDP trains the same numbers; gpu_check's DDP case dry-runs.

Tolerance for the loss comparison: the global batch is fixed and split over the ranks, so each
rank's mean-loss gradient averaged by DDP (or reduce-scattered by FSDP) is the one-process gradient
of the same seeded batch, up to float32 summation order (~1e-7 relative per reduction). AdamW over
the ≤ 30 steps of these runs amplifies that little: measured agreement was 2e-7 (DDP) and 7e-7
(FSDP) relative on the final held-out loss. 1e-4 leaves two orders of margin for other BLAS paths,
while a real bug (ranks not syncing gradients, or all ranks training on the same half of a batch)
moves these losses by 1e-3 or more.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
import torch

from cli import main
from core.errors import ProbeError
from core.probes import distributed
from db.store import Store

torch.set_num_threads(1)
ROOT = Path(__file__).resolve().parents[1]
TINY = ["--seq-len", "32", "--batch-size", "4", "--min-steps", "5", "--eval-tokens", "128",
        "--final-tokens-per-domain", "128", "--corpus", "sample", "--device", "cpu", "--threads", "1"]
SWEEP = ["probe", "sweep", "--budgets", "1.5e9", "3e9", "--sizes", "1.4e5", *TINY, "--json"]
RTOL = 1e-4  # see the module note


def torchrun(*args: str, nproc: int = 2, timeout: int = 240) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc_per_node=N`` (``python -m torch.distributed.run`` without the script)."""
    launcher = [shutil.which("torchrun")] if shutil.which("torchrun") else [sys.executable, "-m", "torch.distributed.run"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([*launcher, "--standalone", f"--nproc_per_node={nproc}", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def stored(db_url: str) -> dict:
    store = Store(db_url)
    try:
        with store.read() as conn:
            names = [r[0] for r in conn.execute(sa.text("SELECT name FROM runs ORDER BY name"))]
            probes = [r[0] for r in conn.execute(sa.text("SELECT kind FROM probes"))]
            configs = {r[0]: json.loads(r[1]) for r in conn.execute(sa.text("SELECT name, config FROM runs"))}
            evals = conn.execute(sa.text("SELECT count(*) FROM evals")).scalar_one()
        return {"names": names, "probes": probes, "configs": configs, "evals": evals}
    finally:
        store.close()


def stored_losses(db_url: str) -> dict:
    """Each stored run's final losses, read back through services/ (what `cli.py runs/export` and the
    Runs and Evals pages read): the last train_loss and eval_loss metric rows, with their step, and
    the held-out loss per domain from the evals table."""
    from services import evals as evals_service
    from services import runs as runs_service

    store = runs_service.open_store(db_url)
    try:
        names = sorted(runs_service.list_runs(store)["name"])
        out = {name: {} for name in names}
        for metric in ("train_loss", "eval_loss"):
            rows = runs_service.metrics(store, names, metric).sort_values(["run", "step"])
            for name, last in rows.groupby("run").tail(1).set_index("run").iterrows():
                out[name][metric] = float(last["value"])
                out[name][f"{metric}_step"] = int(last["step"])
        for row in evals_service.load_evals(store).itertuples():
            out[row.run][f"{row.task}/{row.metric}"] = float(row.value)
        return out
    finally:
        store.close()


def assert_same_stored_losses(db_url: str, single_url: str) -> None:
    """The losses the distributed sweep STORED match the one-process sweep's stored ones (RTOL)."""
    got, want = stored_losses(db_url), stored_losses(single_url)
    assert got.keys() == want.keys() and len(want) == 2
    for name, one in want.items():
        assert got[name].keys() == one.keys() and len(one) == 4 + 5, name  # 2 metrics + steps, 5 domains
        for key, value in one.items():
            if key.endswith("_step"):
                assert got[name][key] == value, (name, key)
            else:
                assert got[name][key] == pytest.approx(value, rel=RTOL), (name, key)


@pytest.fixture(scope="module")
def single_url(tmp_path_factory) -> str:
    return f"duckdb:///{tmp_path_factory.mktemp('single') / 'single.duckdb'}"


@pytest.fixture(scope="module")
def single(single_url):
    """The one-process sweep every distributed one is compared with (run in this process, stored at
    ``single_url``)."""
    url = single_url
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([*SWEEP, "--db", url])
    assert rc == 0, err.getvalue()
    return {r["name"]: r for r in json.loads(out.getvalue())["runs"]}


def assert_same_losses(payload: dict, single: dict) -> None:
    runs = {r["name"]: r for r in payload["runs"]}
    assert runs.keys() == single.keys()
    for name, r in runs.items():
        one = single[name]
        assert (r["steps"], r["tokens"], r["flops"]) == (one["steps"], one["tokens"], one["flops"])
        assert r["final_loss"] == pytest.approx(one["final_loss"], rel=RTOL), name
        assert r["final_train_loss"] == pytest.approx(one["final_train_loss"], rel=RTOL), name


def test_torchrun_sweep_stores_each_run_once_with_the_single_process_losses(tmp_path, single, single_url):
    url = f"duckdb:///{tmp_path / 'ddp.duckdb'}"
    proc = torchrun("cli.py", *SWEEP, "--db", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout)  # exactly one JSON document: rank 0's
    assert payload["world_size"] == 2 and payload["backend"] == "gloo" and payload["parallel"] == ["ddp"]
    assert_same_losses(payload, single)
    assert_same_stored_losses(url, single_url)
    kept = stored_losses(url)  # what was stored is what rank 0 printed
    for r in payload["runs"]:
        assert kept[r["name"]]["eval_loss"] == pytest.approx(r["final_loss"], rel=1e-12)
        assert kept[r["name"]]["train_loss"] == pytest.approx(r["final_train_loss"], rel=1e-12)
    db = stored(url)
    assert db["names"] == sorted(single) and db["probes"] == ["sweep"]  # each run once, one sweep row
    assert db["evals"] == len(single) * 5  # held-out loss per domain, once per run
    for config in db["configs"].values():
        assert config["distributed"] == {"world_size": 2, "backend": "gloo", "strategy": "ddp", "batch_per_rank": 2,
                                         "batch_rule": "global batch fixed, split evenly over ranks"}
    assert proc.stderr.count("plan: 2 runs") == 1  # rank 0 alone speaks


def test_torchrun_sweep_under_fsdp_trains_the_same_numbers(tmp_path, single, single_url):
    url = f"duckdb:///{tmp_path / 'fsdp.duckdb'}"
    proc = torchrun("cli.py", *SWEEP, "--fsdp", "--db", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout)
    assert payload["parallel"] == ["fsdp"]
    assert_same_losses(payload, single)
    assert stored(url)["names"] == sorted(single)
    assert_same_stored_losses(url, single_url)


def test_torchrun_throughput_prints_one_json_document_with_the_global_rate(tmp_path):
    url = f"duckdb:///{tmp_path / 'thr.duckdb'}"
    proc = torchrun("cli.py", "probe", "throughput", "--params", "1e6", "--json", "--db", url)
    assert proc.returncode == 0, proc.stderr[-3000:]
    payload = json.loads(proc.stdout)  # raises if two ranks printed, or anything else did
    assert payload["world_size"] == 2 and payload["backend"] == "gloo" and payload["parallel"] == "ddp"
    assert payload["global_batch"] == 2 * payload["batch"]
    fwd, both = payload["results"]
    assert payload["tokens_per_s"] == both["tokens_per_s"] > 100
    assert 0 < both["mfu"] < 1.5 and both["peak_source"].startswith("2 × (measured")
    assert fwd["tokens_per_s"] > both["tokens_per_s"]
    rows = Store(url)
    try:
        with rows.read() as conn:
            kept = conn.execute(sa.text("SELECT kind, tokens_per_s, config FROM probes ORDER BY id")).all()
    finally:
        rows.close()
    assert [k for k, _, _ in kept] == ["forward", "forward_backward"]  # stored once, by rank 0
    assert kept[1][1] == pytest.approx(both["tokens_per_s"]) and json.loads(kept[1][2])["world_size"] == 2


def test_a_refused_sweep_stops_every_rank_with_one_error_line(tmp_path):
    proc = torchrun("cli.py", "probe", "sweep", "--budgets", "1.5e9", "--sizes", "1.4e5", *TINY, "--batch-size", "3",
                    "--db", f"duckdb:///{tmp_path / 'bad.duckdb'}")
    assert proc.returncode != 0 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "does not split evenly over 2 processes" in errors[0]


def test_gpu_check_imports_and_its_ddp_dry_run_works(tmp_path):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    if torch.cuda.device_count() < 2:  # the real case says why it cannot run, and does not fail
        assert "skipped" in gpu_check.ddp_scaling(False)
    result = gpu_check.ddp_scaling(True)
    assert "error" not in result, result
    assert result["world_size"] == 2 and result["two"]["parallel"] == "ddp" and result["one"]["parallel"] == "single"
    assert result["efficiency"] > 0 and result["verdict"].startswith("not judged")
    assert result["efficiency"] == pytest.approx(result["two"]["tokens_per_s"] / (2 * result["one"]["tokens_per_s"]))


# ------------------------------------------------------------------------------------------ one process
def test_one_process_is_not_distributed_and_refuses_ddp_or_fsdp():
    ctx = distributed.current()
    assert not ctx.enabled and ctx.is_main and distributed.launched() == distributed.SINGLE
    assert list(distributed.shard(5)) == [0, 1, 2, 3, 4] and distributed.split_batch(4) == 4
    assert distributed.on_main(lambda: 7) == 7
    assert distributed.all_reduce([1.5, 2.0], "max") == [1.5, 2.0]
    need = lambda shards: 100.0 / shards  # noqa: E731
    assert distributed.choose_strategy("auto", need, 1e9) is None
    with pytest.raises(ProbeError, match="torchrun --nproc_per_node"):
        distributed.choose_strategy("fsdp", need, 1e9)
    with pytest.raises(ProbeError, match="--fsdp"):  # does not fit: the message says how to shard it
        distributed.choose_strategy("auto", need, 50.0)


def test_strategy_follows_the_memory_estimate_on_several_ranks():
    two = distributed.DistContext(world_size=2, rank=1, local_rank=1, local_world_size=2, backend="gloo")
    assert not two.is_main and list(distributed.shard(5, two)) == [1, 3]
    assert distributed.split_batch(4, two) == 2
    with pytest.raises(ProbeError, match="multiple of 2"):
        distributed.split_batch(3, two)
    need = lambda shards: 100.0 / shards  # noqa: E731
    assert distributed.choose_strategy("auto", need, 1000.0, two) == "ddp"
    assert distributed.choose_strategy("auto", need, 100.0, two) == "fsdp"  # 100 > 90 % of 100; 50 fits
    assert distributed.choose_strategy("fsdp", need, 1000.0, two) == "fsdp"
    with pytest.raises(ProbeError, match="even sharded over 2"):
        distributed.choose_strategy("auto", need, 50.0, two)
    with pytest.raises(ProbeError, match="use --parallel fsdp"):
        distributed.choose_strategy("ddp", need, 100.0, two)
    with pytest.raises(ProbeError, match="Unknown parallel strategy"):
        distributed.choose_strategy("zero3", need, 100.0, two)


def test_memory_estimate_counts_state_activations_and_logits():
    # 125M dense, batch 16 × 1024 in bf16: 16 B/param of state + 34·b·T·d·L + 12 B per logit ≈ 20 GB
    est = distributed.train_memory_bytes(123.6e6, 768, 12, 50304, 16, 1024, "bf16")
    assert est == pytest.approx(16 * 123.6e6 + 34 * 16 * 1024 * 768 * 12 + 16 * 1024 * 50304 * 10)
    assert 15e9 < est < 25e9
    sharded = distributed.train_memory_bytes(123.6e6, 768, 12, 50304, 16, 1024, "bf16", shards=8)
    assert sharded < est and distributed.train_memory_bytes(1e6, 64, 2, 4096, 4, 32, optimizer=False) < \
        distributed.train_memory_bytes(1e6, 64, 2, 4096, 4, 32)
