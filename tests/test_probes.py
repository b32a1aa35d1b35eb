"""Small-model probes: devices, exact parameter counts, FLOPs vs FlopCounterMode, the training
schedule, a tiny IsoFLOP sweep on CPU, the throughput probe, and bad configs failing early."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core import corpus
from core.errors import Cancelled, ProbeError
from core.probes import devices, flops, model_configs, sweep, throughput, train
from core.probes.model_configs import ModelShape, build_model, count_model_params, count_params

torch.set_num_threads(1)

V = 4096  # the bundled tokenizer's vocabulary


@pytest.fixture(scope="module")
def blocks():
    """(train, held-out) blocks of 32 tokens from the committed held-out sample, split by document."""
    docs = corpus.load_heldout()
    per = corpus.by_domain(docs)
    train_docs = [d for ds in per.values() for d in ds[: max(1, len(ds) * 2 // 3)][:12]]
    held_docs = [d for ds in per.values() for d in ds[max(1, len(ds) * 2 // 3):][:3]]
    tok = corpus.load_tokenizer()
    return corpus.tokenize_blocks(train_docs, tok, 32), corpus.tokenize_blocks(held_docs, tok, 32)


# ------------------------------------------------------------------------------------------ devices
def test_device_selection_on_this_machine():
    cpu = devices.pick_device("cpu")
    assert (cpu.kind, cpu.device, cpu.dtype) == ("cpu", "cpu", "fp32")
    auto = devices.pick_device("auto")
    expected = "cuda" if torch.cuda.is_available() else ("mps" if devices._mps_available() else "cpu")
    assert auto.kind == expected
    assert auto.dtype == ("bf16" if expected == "cuda" else "fp32")
    assert auto.as_dict()["torch"] == torch.__version__


def test_unknown_or_absent_device_is_a_probe_error():
    with pytest.raises(ProbeError, match="Unknown device 'tpu'"):
        devices.pick_device("tpu")
    with pytest.raises(ProbeError, match="Unknown device"):
        devices.pick_device("cpu:1")
    if not torch.cuda.is_available():
        with pytest.raises(ProbeError, match="no CUDA GPU"):
            devices.pick_device("cuda")


# ------------------------------------------------------------------------------------------ counts
@pytest.mark.parametrize("shape", [
    ModelShape(64, 2, 2, 192, V, 64),  # dense, tied
    ModelShape(96, 2, 3, 256, V, 64, n_kv_heads=1, tie_embeddings=False),  # GQA, untied
    ModelShape(128, 4, 4, 192, V, 256, n_experts=8, top_k=2),  # the bundled tiny MoE
    ModelShape(64, 1, 2, 64, 500, 32, n_experts=4, top_k=1),
])
def test_exact_parameter_counts_match_the_built_model(shape):
    model = build_model(shape)
    counts = count_params(shape)
    assert counts == count_model_params(model)
    assert counts.total == sum(p.numel() for p in model.parameters())
    assert counts.embedding == shape.vocab_size * shape.d_model * (1 if shape.tie_embeddings else 2)
    if shape.arch == "moe":
        expert = 3 * shape.d_model * shape.d_ff * shape.n_layers
        assert counts.total - counts.active == (shape.n_experts - shape.top_k) * expert
    else:
        assert counts.active == counts.total


def test_tiny_moe_numbers():
    counts = count_params(ModelShape(128, 4, 4, 192, V, 256, n_experts=8, top_k=2))
    assert (counts.total, counts.nonembedding, counts.active) == (3_151_232, 2_626_944, 1_381_760)


def test_shape_for_params_hits_targets_and_grows_monotonically():
    previous = 0
    for target in [2e5, 5e5, 1e6, 2e6, 4e6]:
        shape = model_configs.shape_for_params(target, "dense", V, 128)
        n = count_params(shape).active
        assert abs(math.log(n / target)) < math.log(1.4), (target, n)
        assert n > previous
        previous = n
    gpt2_small = model_configs.shape_for_params(1.24e8, "dense", 50304, 1024)
    assert (gpt2_small.d_model, gpt2_small.n_layers, gpt2_small.n_heads) == (768, 12, 12)
    moe = model_configs.shape_for_params(1e6, "moe", V, 128, n_experts=8, top_k=2)
    assert moe.n_experts == 8 and moe.d_ff == model_configs.dense_ff(moe.d_model) // 2
    with pytest.raises(ProbeError, match="smallest"):
        model_configs.shape_for_params(3e4, "dense", V, 128)


def test_hf_configs_are_llama_and_qwen3_moe():
    dense = model_configs.hf_config(ModelShape(64, 2, 2, 192, V, 64))
    moe = model_configs.hf_config(ModelShape(64, 2, 2, 96, V, 64, n_experts=8, top_k=2))
    assert dense.model_type == "llama" and dense.tie_word_embeddings
    assert moe.model_type == "qwen3_moe" and (moe.num_experts, moe.num_experts_per_tok) == (8, 2)
    assert moe.head_dim == 32 and moe.moe_intermediate_size == 96
    with pytest.raises(ProbeError, match="divisible"):
        ModelShape(100, 1, 3, 64, V, 64).validate()


# ------------------------------------------------------------------------------------------ flops
def test_six_n_d():
    assert flops.training_flops(1e6, 2e7) == 1.2e14
    assert flops.tokens_for_budget(1.2e14, 1e6) == 2e7


@pytest.mark.parametrize("shape", [
    model_configs.shape_for_params(3.2e5, "dense", V, 128),  # demo-sweep sizes
    model_configs.shape_for_params(9e5, "dense", V, 128),
    ModelShape(128, 4, 4, 192, V, 128, n_experts=8, top_k=2),  # the bundled tiny MoE
    ModelShape(96, 2, 3, 256, V, 128, n_kv_heads=1, tie_embeddings=False),
])
def test_flops_formula_agrees_with_flop_counter(shape):
    model = build_model(shape, attn_implementation="eager", experts_implementation="eager")
    ids = torch.randint(0, V, (1, shape.seq_len))  # (B, T)
    per_token = flops.flops_per_token(shape)
    fwd = flops.measured_flops(model, ids) / ids.numel()
    both = flops.measured_flops(model, ids, backward=True) / ids.numel()
    assert fwd == pytest.approx(per_token.forward, rel=0.05)
    assert both == pytest.approx(per_token.train, rel=0.05)
    if shape.tie_embeddings:  # 6N (the recorded rule) then leaves out only attention's products
        assert 6 * count_params(shape).active == pytest.approx(per_token.train, rel=0.12)


# ------------------------------------------------------------------------------------------ train
def test_schedule_warms_up_then_cosines_to_ten_percent():
    steps, warmup = train.schedule_steps(train.TrainConfig(tokens=100 * 256, batch_size=8), 32, n_params=1_280)
    assert (steps, warmup) == (100, 5)  # N tokens of warmup = 1280 / 256 per step
    lrs = [train.lr_at(s, steps, warmup, 1e-3, 0.1) for s in range(steps)]
    assert lrs[0] == pytest.approx(2e-4) and lrs[warmup - 1] == pytest.approx(1e-3)
    assert lrs[-1] == pytest.approx(1e-4)
    assert all(a >= b for a, b in zip(lrs[warmup:], lrs[warmup + 1:]))
    capped = train.schedule_steps(train.TrainConfig(tokens=100 * 256, batch_size=8), 32, n_params=10 ** 9)
    assert capped == (100, 10)  # never more than a tenth of the run
    with pytest.raises(ProbeError, match="zero steps"):
        train.schedule_steps(train.TrainConfig(tokens=100, batch_size=8), 32, n_params=1000)


def test_training_lowers_loss_and_calls_checkpoints(blocks):
    train_blocks, held = blocks
    shape = ModelShape(64, 1, 2, 96, V, 32, n_experts=4, top_k=2)
    model = build_model(shape, seed=1)
    seen = []
    result = train.train_model(model, train_blocks, held, train.TrainConfig(
        tokens=30 * 8 * 32, batch_size=8, lr=3e-3, device="cpu", eval_tokens=256, final_tokens_per_domain=128),
        on_checkpoint=lambda m, step: seen.append((step, m.training)), checkpoint_steps=[10, 30])
    assert seen == [(10, False), (30, False)]
    assert result.steps == 30 and result.tokens == 30 * 256
    assert result.flops == 6 * count_params(shape).active * result.tokens
    m = result.metrics
    assert list(m.columns) == ["name", "step", "tokens", "flops", "wall_time", "value"]
    assert {"train_loss", "eval_loss", "lr", "router_aux_loss"} <= set(m["name"])
    evals = m[m.name == "eval_loss"].sort_values("step")
    assert evals["value"].iloc[-1] < evals["value"].iloc[0] - 0.5  # from ~ln(4096) = 8.3 down
    assert evals["value"].iloc[0] == pytest.approx(math.log(V), abs=0.3)
    assert set(result.domain_loss) == set(corpus.DOMAINS)
    shares = {d: train_blocks.domains.count(d) / len(train_blocks) for d in corpus.DOMAINS}
    assert result.domain_weights == pytest.approx(shares)  # the training mixture weighs the domains
    assert result.final_eval_loss == pytest.approx(sum(shares[d] * v for d, v in result.domain_loss.items()))
    assert evals["value"].iloc[-1] == result.final_eval_loss and evals["step"].iloc[-1] == 30
    assert result.settings["distributed"]["strategy"] == "single"  # one process: no DDP, no FSDP
    assert result.settings["distributed"]["world_size"] == 1 and result.settings["distributed"]["batch_per_rank"] == 8
    assert (m["wall_time"].diff().dropna() >= 0).sum() > 0


def test_training_can_be_cancelled(blocks):
    def stop(done, total, message):
        if done == 3:
            raise Cancelled("stopped by the test")

    with pytest.raises(Cancelled):
        train.train_model(build_model(ModelShape(32, 1, 1, 96, V, 32)), blocks[0], blocks[1],
                          train.TrainConfig(tokens=50 * 128, batch_size=4, device="cpu", eval_tokens=64),
                          progress=stop)


# ------------------------------------------------------------------------------------------ sweep
TINY = dict(sizes=[1.4e5, 3.2e5], vocab_size=V, seq_len=32, batch_size=4, min_steps=5, eval_tokens=128,
            final_tokens_per_domain=128, evals_per_run=2, device="cpu")


def test_tiny_isoflop_sweep_lands_runs_with_correct_n_d_and_flops(blocks, tmp_path):
    cfg = sweep.SweepConfig(budgets=[1.5e9, 3e9], **TINY)
    plan = sweep.plan_sweep(cfg, train_tokens=blocks[0].n_tokens, calibrate=False)
    assert len(plan.runs) == 4 and plan.est_seconds == 0
    calls = []
    runs = sweep.run_sweep(cfg, *blocks, plan=plan, progress=lambda d, t, m: calls.append((d, t)))
    assert [r.name for r in runs] == [p.name for p in plan.runs]
    assert calls[-1] == (sum(p.steps for p in plan.runs),) * 2
    for run, planned in zip(runs, plan.runs):
        counts = count_params(planned.shape)
        assert run.n_params == counts.total == count_model_params(build_model(planned.shape)).total
        assert run.n_active_params == run.n_params and run.n_nonembedding_params == counts.nonembedding
        assert run.tokens == planned.steps * 128 and run.tokens_per_step == 128
        assert abs(run.tokens - planned.budget / (6 * run.n_active_params)) <= 64  # C/(6N), whole steps
        assert run.flops == 6 * run.n_active_params * run.tokens
        assert run.source_format == "probe_sweep" and run.flops_rule == "6*N_active*D"
        assert run.config["budget_flops"] == planned.budget and run.config["hardware"]["kind"] == "cpu"
        assert run.config["seed"] == 0 and run.config["lr"] == sweep.default_lr(planned.shape)
        assert set(run.evals["task"]) == {f"heldout_{d}" for d in corpus.DOMAINS}
        assert (run.evals["metric"] == "loss").all() and (run.evals["value"] > 0).all()
        final = run.metrics[(run.metrics.name == "eval_loss")].sort_values("step").iloc[-1]
        assert final.tokens == run.tokens and final.flops == run.flops
        fields = run.parsed_run_fields()
        assert "evals" not in fields and fields["metrics"] is run.metrics
    table = sweep.runs_table(runs)
    assert len(table) == 4 and table["final_eval_loss"].notna().all()
    sweep.write_tables(runs, tmp_path)  # the demo's CSV format round-trips
    back = sweep.read_tables(tmp_path)
    for a, b in zip(runs, back):
        assert a.parsed_run_fields().keys() == b.parsed_run_fields().keys()
        assert (a.name, a.n_params, a.tokens, a.flops, a.n_experts, a.tags) == (b.name, b.n_params, b.tokens,
                                                                                 b.flops, b.n_experts, b.tags)
        assert a.config == b.config
        assert np.allclose(a.metrics["value"], b.metrics["value"]) and list(a.metrics["name"]) == list(b.metrics["name"])
        assert np.allclose(a.evals["value"], b.evals["value"])
    with pytest.raises(ProbeError, match="run_demo_sweep"):
        sweep.read_tables(tmp_path / "nowhere")


def test_moe_sweep_calls_the_routing_hook(blocks):
    cfg = sweep.SweepConfig(budgets=[1.5e9], archs=("moe",), moe_checkpoints=2, **{**TINY, "sizes": [1.4e5]})
    seen = []
    runs = sweep.run_sweep(cfg, *blocks, on_checkpoint=lambda m, step, name: seen.append((name, step)))
    (run,) = runs
    assert run.arch == "moe" and (run.n_experts, run.top_k) == (8, 2)
    assert run.n_active_params < run.n_params
    steps = run.config["steps"]
    assert seen == [(run.name, steps // 2), (run.name, steps)]


def test_bad_sweep_configs_fail_before_any_work(blocks):
    calls = []
    progress = lambda d, t, m: calls.append(d)  # noqa: E731
    too_big = sweep.SweepConfig(budgets=[1.5e9], **{**TINY, "sizes": [1.4e5, 4e6]})
    with pytest.raises(ProbeError, match="does not fit budget"):
        sweep.run_sweep(too_big, *blocks, progress=progress)
    with pytest.raises(ProbeError, match="Unknown device 'tpu'"):
        sweep.run_sweep(sweep.SweepConfig(budgets=[1.5e9], **{**TINY, "device": "tpu"}), *blocks, progress=progress)
    with pytest.raises(ProbeError, match="min_steps"):
        sweep.run_sweep(sweep.SweepConfig(budgets=[1.5e9], **{**TINY, "min_steps": 0}), *blocks, progress=progress)
    with pytest.raises(ProbeError, match="zero steps"):
        train.train_model(build_model(ModelShape(32, 1, 1, 96, V, 32)), *blocks,
                          train.TrainConfig(tokens=10, device="cpu"), progress=progress)
    with pytest.raises(ProbeError, match="passes over"):
        sweep.plan_sweep(sweep.SweepConfig(budgets=[1.5e9], **TINY), train_tokens=100, calibrate=False)
    with pytest.raises(ProbeError, match="Unknown architecture"):
        sweep.plan_sweep(sweep.SweepConfig(budgets=[1.5e9], archs=("ssm",), **TINY), calibrate=False)
    with pytest.raises(ProbeError, match="No compute budgets"):
        sweep.plan_sweep(sweep.SweepConfig(budgets=[], **TINY), calibrate=False)
    assert calls == []


def test_a_model_too_big_for_the_device_is_refused_before_any_work(monkeypatch):
    monkeypatch.setattr(devices, "memory_bytes", lambda choice: 4 * 2 ** 20)  # a 4 MiB device
    with pytest.raises(ProbeError, match="--fsdp"):  # one process: the message says how to shard it
        sweep.plan_sweep(sweep.SweepConfig(budgets=[1.5e9], **TINY), calibrate=False)
    with pytest.raises(ProbeError, match="needs about"):
        throughput.measure_throughput(ModelShape(64, 2, 2, 192, V, 64), device="cpu", iters=1)


def test_plan_estimates_time_from_measured_speed():
    cfg = sweep.SweepConfig(budgets=[1.5e9, 3e9], **TINY)
    plan = sweep.plan_sweep(cfg, flops_per_s=1e9)
    assert plan.total_flops == sum(r.flops for r in plan.runs)
    assert plan.est_seconds > plan.total_flops / 1e9  # training plus held-out scoring
    measured = sweep.plan_sweep(cfg)  # 3-step timings of the smallest and largest model
    assert set(measured.flops_per_s["dense"]) == {r.counts.active for r in plan.runs}
    assert all(0.05e9 < r < 2e12 for r in measured.flops_per_s["dense"].values())
    assert measured.est_seconds > 0


# ------------------------------------------------------------------------------------------ throughput
def test_cpu_throughput_probe_returns_sane_numbers():
    shape = ModelShape(64, 2, 2, 192, V, 64)
    results = throughput.measure_throughput(shape, batch_size=4, device="cpu", warmup=1, iters=2)
    fwd, both = results
    assert (fwd.kind, both.kind) == ("forward", "forward_backward")
    for r in results:
        assert r.device == "cpu" and r.dtype == "fp32"
        assert r.tokens_per_s > 100
        expected = (r.config["flops_per_token"] * r.tokens_per_s) / 1e12
        assert r.achieved_tflops == pytest.approx(expected)
        assert 0 < r.mfu < 1.5 and r.peak_source.startswith("measured")
        assert r.peak_memory_bytes >= 0 and r.config["compile"] is False
    assert fwd.tokens_per_s > both.tokens_per_s
    assert both.config["flops_per_token"] == pytest.approx(3 * fwd.config["flops_per_token"])
    with pytest.raises(ProbeError, match="Unknown throughput kind"):
        throughput.measure_throughput(shape, kinds=("backward",), device="cpu")


def test_gpu_names_map_to_the_accelerator_table():
    assert throughput.accelerator_for("NVIDIA H100 80GB HBM3") == "H100 SXM"
    assert throughput.accelerator_for("NVIDIA H100 PCIe") == "H100 PCIe"
    assert throughput.accelerator_for("NVIDIA H200") == "H200 SXM"
    assert throughput.accelerator_for("NVIDIA A100-SXM4-80GB") == "A100 SXM"
    assert throughput.accelerator_for("Intel Xeon") is None
    choice = devices.DeviceChoice("cuda", "cuda:0", "bf16", "NVIDIA H100 80GB HBM3", 1)
    peak, source = throughput.device_peak(choice)
    assert peak == 989.5 and "H100 SXM bf16" in source
