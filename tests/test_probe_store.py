"""Probes into the store (db/probe_runs.py): a tiny CPU sweep lands whole — runs with exact N,
D = C/(6N) and C = 6ND, curves, per-domain held-out evals, a sweep tag and a ``sweep`` probes row —
in one transaction; duplicates are refused before training, a cancel or a failure stores nothing;
MoE runs keep routing snapshots; a throughput probe stores one row per pass kind."""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import sqlalchemy as sa
import torch

from core import corpus
from core.errors import Cancelled, DuplicateRunError, ProbeError
from core.probes.model_configs import count_params
from core.probes.sweep import ProbeRun, SweepConfig, plan_sweep
from services import probes as probe_runs, routing
from importers.base import ParsedRun
from db.probes import list_probes

torch.set_num_threads(1)

TINY = dict(sizes=[1.4e5, 3.2e5], vocab_size=4096, seq_len=32, batch_size=4, min_steps=5, eval_tokens=128,
            final_tokens_per_domain=128, evals_per_run=2, device="cpu")


@pytest.fixture(scope="module")
def data() -> probe_runs.ProbeCorpus:
    return probe_runs.load_corpus("sample", 32)


def count(store, table: str) -> int:
    with store.read() as conn:
        return int(conn.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def test_sample_corpus_splits_by_source_file(data):
    train_docs, held_docs = probe_runs.sample_split(corpus.load_heldout())
    source = lambda d: d.doc_id.split("#", 1)[0]  # noqa: E731
    assert not {source(d) for d in train_docs} & {source(d) for d in held_docs}
    assert {d.domain for d in held_docs} == {d.domain for d in train_docs} == set(corpus.DOMAINS)
    assert data.vocab_size == 4096 and data.train.seq_len == data.heldout.seq_len == 32
    assert data.train.n_tokens > 2 * data.heldout.n_tokens > 0
    assert data.info["train_tokens"] == data.train.n_tokens and data.info["corpus"] == "sample"


def test_tiny_sweep_lands_whole_with_sizes_evals_and_tag(store, data):
    cfg = SweepConfig(budgets=[1.5e9, 3e9], **TINY)
    calls = []
    outcome = probe_runs.run_and_store_sweep(store, cfg, data, progress=lambda d, t, m: calls.append((d, t, m)))
    stored = outcome.stored
    assert stored["tag"] == f"sweep={stored['sweep_id']}" and len(stored["runs"]) == 4
    assert calls[-1][0] == calls[-1][1] == sum(r.steps for r in outcome.plan.runs)
    step = probe_runs.parse_progress(calls[-1][2])
    assert (step.run_index, step.n_runs, step.step, step.steps) == (4, 4, outcome.plan.runs[-1].steps,
                                                                    outcome.plan.runs[-1].steps)

    runs = store.runs().set_index("name")
    for planned in outcome.plan.runs:
        row = runs.loc[planned.name]
        counts = count_params(planned.shape)
        assert (row.n_params, row.n_active_params, row.n_nonembedding_params) == (
            counts.total, counts.active, counts.nonembedding)
        assert row.tokens == planned.steps * 128 and row.tokens_per_step == 128 and row.seq_len == 32
        assert abs(row.tokens - planned.budget / (6 * row.n_active_params)) <= 64  # D = C/(6N), whole steps
        assert row.flops == 6 * row.n_active_params * row.tokens and row.flops_rule == "6*N_active*D"
        assert row.source_format == "probe_sweep" and stored["tag"] in json.loads(row.tags)
        config = json.loads(row.config)
        assert config["budget_flops"] == planned.budget and config["hardware"]["kind"] == "cpu"
        assert config["corpus"]["corpus"] == "sample"
    # curves: train and held-out loss by step, with tokens and FLOPs
    final = store.final_values("eval_loss", run_names=[r.name for r in outcome.plan.runs]).set_index("run")
    for planned in outcome.plan.runs:
        assert final.loc[planned.name, "step"] == planned.steps
        assert final.loc[planned.name, "tokens"] == runs.loc[planned.name, "tokens"]
        assert final.loc[planned.name, "flops"] == runs.loc[planned.name, "flops"]
        assert 5.0 < final.loc[planned.name, "value"] < math.log(4096) + 1
    assert set(store.metric_names()) >= {"train_loss", "eval_loss", "lr"}
    # held-out loss per domain, as evals at the last step
    with store.read() as conn:
        evals = pd.read_sql(sa.text("SELECT r.name, e.step, e.task, e.metric, e.value FROM evals e "
                                    "JOIN runs r ON r.id = e.run_id"), conn)
    assert len(evals) == 4 * len(corpus.DOMAINS)
    assert set(evals["task"]) == {f"heldout_{d}" for d in corpus.DOMAINS} and set(evals["metric"]) == {"loss"}
    for run in outcome.runs:
        mine = evals[evals["name"] == run.name].set_index("task")["value"].sort_index()
        assert mine.to_dict() == pytest.approx(run.evals.set_index("task")["value"].sort_index().to_dict())
        assert (evals.loc[evals["name"] == run.name, "step"] == run.config["steps"]).all()
    # the sweep's probes row: training throughput over all runs
    sweeps = probe_runs.list_sweeps(store)
    assert len(sweeps) == 1 and sweeps.loc[0, "tag"] == stored["tag"]
    assert sweeps.loc[0, "runs"] == [r.name for r in outcome.plan.runs]
    row = list_probes(store).iloc[0]
    wall = sum(r.config["wall_time_s"] for r in outcome.runs)
    assert row["kind"] == "sweep" and row["dtype"] == "fp32" and pd.isna(row["mfu"])
    assert row["tokens_per_s"] == pytest.approx(sum(r.tokens for r in outcome.runs) / wall)
    assert row["achieved_tflops"] == pytest.approx(sum(r.flops for r in outcome.runs) / wall / 1e12)
    table = probe_runs.sweep_runs(store, stored["tag"])
    assert sorted(table["name"]) == sorted(r.name for r in outcome.plan.runs)
    assert (table["final_eval_loss"] > 0).all() and set(table["budget_flops"]) == {1.5e9, 3e9}


def test_duplicates_refused_before_training_then_renamed_or_replaced(store, data):
    cfg = SweepConfig(budgets=[1.5e9], **{**TINY, "sizes": [1.4e5]})
    first = probe_runs.run_and_store_sweep(store, cfg, data)
    (name,) = first.names
    calls = []
    with pytest.raises(DuplicateRunError, match="already exists"):
        probe_runs.run_and_store_sweep(store, cfg, data, progress=lambda d, t, m: calls.append(d))
    assert calls == [] and store.run_names() == [name]
    renamed = probe_runs.run_and_store_sweep(store, cfg, data, on_duplicate="rename")
    assert renamed.names == [f"{name} (2)"] and store.run_names() == [name, f"{name} (2)"]
    assert count(store, "evals") == 2 * len(corpus.DOMAINS)
    replaced = probe_runs.run_and_store_sweep(store, cfg, data, on_duplicate="replace")
    assert replaced.names == [name] and sorted(store.run_names()) == [name, f"{name} (2)"]
    assert count(store, "evals") == 2 * len(corpus.DOMAINS) and len(probe_runs.list_sweeps(store)) == 3
    with pytest.raises(ProbeError, match="max_steps 3"):
        probe_runs.run_and_store_sweep(store, cfg, data, on_duplicate="rename", max_steps=3)
    with pytest.raises(ProbeError, match="does not fit budget"):
        probe_runs.run_and_store_sweep(store, SweepConfig(budgets=[1.5e9], **{**TINY, "sizes": [4e6]}), data)
    assert len(store.run_names()) == 2


def test_cancel_stores_nothing(store, data):
    cfg = SweepConfig(budgets=[1.5e9, 3e9], **TINY)

    def stop(done, total, message):
        if probe_runs.parse_progress(message).run_index == 2:
            raise Cancelled("Sweep stopped.")

    with pytest.raises(Cancelled):
        probe_runs.run_and_store_sweep(store, cfg, data, progress=stop)
    assert [count(store, t) for t in ("runs", "metrics", "evals", "probes")] == [0, 0, 0, 0]


def probe_run(name: str, value: float = 3.0) -> ProbeRun:
    metrics = pd.DataFrame({"name": ["eval_loss"] * 2, "step": [0.0, 10.0], "tokens": [0.0, 1280.0],
                            "flops": [0.0, 7.68e8], "wall_time": [0.0, 1.0], "value": [8.0, value]})
    evals = pd.DataFrame({"step": [10.0], "task": ["heldout_python"], "metric": ["loss"], "value": [value]})
    return ProbeRun(name=name, n_params=1e5, n_nonembedding_params=1e4, n_active_params=1e5, seq_len=32,
                    tokens_per_step=128.0, tokens=1280.0, flops=7.68e8,
                    config={"wall_time_s": 1.0, "hardware": {"name": "cpu", "dtype": "fp32"}},
                    metrics=metrics, evals=evals)


def test_store_is_one_transaction(store):
    store.ingest([ParsedRun(name="b", source_format="test", metrics=probe_run("b").metrics)])
    with pytest.raises(DuplicateRunError):
        probe_runs.store_sweep(store, [probe_run("a"), probe_run("b")])  # "a" inserted, then "b" collides
    assert store.run_names() == ["b"] and count(store, "evals") == 0 and count(store, "probes") == 0
    with pytest.raises(Exception, match="NaN"):
        probe_runs.store_sweep(store, [probe_run("c"), probe_run("d", value=float("nan"))])
    assert store.run_names() == ["b"] and count(store, "metrics") == 2
    stored = probe_runs.store_sweep(store, [probe_run("c"), probe_run("d")], sweep_id="manual")
    assert [r["name"] for r in stored["runs"]] == ["c", "d"] and stored["tag"] == "sweep=manual"
    assert [r["n_evals"] for r in stored["runs"]] == [1, 1] and count(store, "evals") == 2


def test_moe_sweep_keeps_routing_snapshots(store, data):
    cfg = SweepConfig(budgets=[1.5e9], archs=("moe",), moe_checkpoints=2, **{**TINY, "sizes": [1.4e5]})
    outcome = probe_runs.run_and_store_sweep(store, cfg, data, routing_tokens=256)
    (run,) = outcome.runs
    steps = run.config["steps"]
    assert run.arch == "moe" and store.runs().loc[0, "n_active_params"] < store.runs().loc[0, "n_params"]
    captures = routing.list_captures(store).sort_values("checkpoint_step").reset_index(drop=True)
    assert captures["id"].tolist() == sorted(outcome.stored["capture_ids"]) and len(captures) == 2
    assert captures["checkpoint_step"].tolist() == [steps // 2, steps]
    assert set(captures["model_ref"]) == {run.name} and set(captures["corpus"]) == {probe_runs.ROUTING_CORPUS}
    assert (captures["n_tokens"] == 256).all() and (captures["n_experts"] == 8).all() and (captures["top_k"] == 2).all()
    info = captures.loc[0, "info"]
    assert info["model_group"] == run.name and info["source"] == "probe_sweep"
    assert info["sweep"] == outcome.stored["tag"] and len(info["domains"]) == len(corpus.DOMAINS)
    n_layers = run.config["shape"]["n_layers"]
    assert count(store, "routing_assignments") == 2 * 256 * n_layers * 2
    same = routing.captures_like(store, int(captures.loc[1, "id"]))
    assert same["checkpoint_step"].tolist() == [steps // 2, steps]
    tokens = [routing.load_assignments(store, int(i), layer=0).query("rank == 0")["token_id"].tolist()
              for i in captures["id"]]
    assert tokens[0] == tokens[1]  # the same held-out tokens at every checkpoint: saturation lines them up


def test_throughput_probe_stores_one_row_per_pass_kind(store):
    with pytest.raises(ProbeError, match="bf16"):
        probe_runs.run_and_store_throughput(store, probe_runs.throughput_shape(2e5, seq_len=32), device="cpu",
                                            dtype="bf16")
    with pytest.raises(ProbeError, match="Unknown device"):
        probe_runs.run_and_store_throughput(store, probe_runs.throughput_shape(2e5, seq_len=32), device="tpu")
    assert count(store, "probes") == 0
    shape = probe_runs.throughput_shape(2e5, seq_len=32)
    results, ids = probe_runs.run_and_store_throughput(store, shape, batch_size=2, seq_len=32, device="cpu",
                                                       iters=2, warmup=1)
    rows = list_probes(store, kinds=["forward", "forward_backward"]).set_index("id").loc[ids]
    assert rows["kind"].tolist() == ["forward", "forward_backward"]
    for r, (_, row) in zip(results, rows.iterrows()):
        assert row["device"] == r.device_name and row["dtype"] == "fp32" and row["config"]["device_kind"] == "cpu"
        assert row["tokens_per_s"] == pytest.approx(r.tokens_per_s) and row["tokens_per_s"] > 100
        assert row["achieved_tflops"] == pytest.approx(row["config"]["flops_per_token"] * row["tokens_per_s"] / 1e12)
        assert 0 < row["mfu"] < 1.5 and row["peak_memory_bytes"] >= 0
        assert row["config"]["n_active_params"] == count_params(shape).active and row["config"]["batch_size"] == 2
    table = probe_runs.throughput_table(store)
    assert table["id"].tolist() == sorted(ids, reverse=True) and (table["tokens/s"] > 100).all()


def test_input_parsing():
    assert probe_runs.parse_numbers("1e11, 3e11 1e12", "b") == [1e11, 3e11, 1e12]
    for bad, match in [("", "at least one"), ("1e11, x", "'x' is not a number"), ("-5", "positive"),
                       ("nan", "positive")]:
        with pytest.raises(ProbeError, match=match):
            probe_runs.parse_numbers(bad, "Budgets")
    step = probe_runs.parse_progress("run 2/4 probe-dense-C1.5e9-N144k-s0: step 3/14 loss 7.512")
    assert step == probe_runs.SweepStep(2, 4, "probe-dense-C1.5e9-N144k-s0", 3, 14, 7.512)
    assert step.short() == "run 2/4 step 3/14 loss 7.512" and len(step.short()) <= 40
    assert probe_runs.parse_progress("forward pass 1/3") is None
    plan = plan_sweep(SweepConfig(budgets=[1.5e9], **TINY), calibrate=False)
    with pytest.raises(ProbeError, match="at least 1"):
        probe_runs.check_sweep(None, plan, max_steps=0)
