"""Importers: every format from files the real tools wrote (or their documented layout), and every
kind of bad input refused with one line that says what is wrong and what to do."""
from __future__ import annotations

import io
import json
import math
import os
import shutil
import stat
import tempfile
import zipfile

import numpy as np
import pytest
import torch

from core.errors import InputError
from importers import (
    FORMATS, count_params_from_config, detect_format, parse_file, parse_upload, parse_uploads,
)
from importers.base import METRIC_COLUMNS
from importers.safety import ZipLimits, check_zip, safe_extract_zip

torch.set_num_threads(1)

HOSTILE = "'; DROP TABLE runs;--"


def write(path, text: str | bytes) -> str:
    os.makedirs(os.path.dirname(str(path)) or ".", exist_ok=True)
    mode = "wb" if isinstance(text, bytes) else "w"
    with open(path, mode, **({} if mode == "wb" else {"encoding": "utf-8", "newline": ""})) as fh:
        fh.write(text)
    return str(path)


def one_line_error(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and message.strip() == message and len(message) < 400
    return message


def by_name(runs):
    return {r.name: r for r in runs}


def points(run, metric):
    m = run.metrics[run.metrics["name"] == metric].sort_values("step")
    return m


def check_frame(run):
    assert list(run.metrics.columns) == METRIC_COLUMNS
    for c in METRIC_COLUMNS[1:]:
        assert run.metrics[c].dtype == np.float64, c


# ---------------------------------------------------------------------------------------------
# fixtures written by the real tools

@pytest.fixture(scope="module")
def tb_logdir(tmp_path_factory):
    """Two runs written by torch's SummaryWriter, plus non-scalar summaries that must be skipped."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("tb") / "logs"
    for run, offset in (("run_a", 0.0), ("run_b", 1.0)):
        writer = SummaryWriter(log_dir=str(root / run))
        for step in range(10):
            writer.add_scalar("train/loss", 4.0 + offset - 0.25 * step, step)
            writer.add_scalar("lr", 1e-3, step, new_style=True)  # tensor-style scalar (TF2 layout)
        writer.add_histogram("weights", np.arange(10.0), 9)
        writer.add_text("note", "not a scalar", 9)
        writer.close()
    return root


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    """A real 4-step transformers.Trainer run of a tiny Llama on random tokens, checkpoint saved."""
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    out = tmp_path_factory.mktemp("hf") / "tiny-llama"
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=64, max_position_embeddings=64)
    model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(0)
    data = []
    for _ in range(16):
        ids = torch.randint(0, 64, (16,), generator=gen)
        data.append({"input_ids": ids, "labels": ids.clone()})
    args = TrainingArguments(
        output_dir=str(out), max_steps=4, per_device_train_batch_size=2, per_device_eval_batch_size=4,
        logging_steps=1, save_strategy="steps", save_steps=4, eval_strategy="steps", eval_steps=2,
        report_to=[], use_cpu=True, learning_rate=1e-3, include_num_input_tokens_seen=True,
        dataloader_num_workers=0, disable_tqdm=True, seed=0,
    )
    Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:4]).train()
    n_params = sum(p.numel() for p in model.parameters())
    return out, n_params


# ---------------------------------------------------------------------------------------------
# CSV / TSV / JSONL time series

def test_wide_csv_with_runs_sizes_and_derived_tokens_flops(tmp_path):
    path = write(tmp_path / "sweep.csv",
                 "run,step,loss,eval_loss,n_params,tokens_per_step\n"
                 "a,0,5.0,,1000000,1000\n"
                 "a,10,4.0,4.2,1000000,1000\n"
                 "b,0,6.0,,,\n"
                 "b,10,5.5,5.6,,\n")
    assert detect_format(path) == "csv_wide"
    runs = by_name(parse_file(path))
    assert list(runs) == ["a", "b"]
    a, b = runs["a"], runs["b"]
    check_frame(a)
    assert a.source_format == "csv_wide" and a.source_file == "sweep.csv"
    assert a.n_params == 1e6 and a.n_active_params == 1e6 and a.tokens_per_step == 1000
    loss = points(a, "loss")
    assert loss["value"].tolist() == [5.0, 4.0]
    assert loss["tokens"].tolist() == [0.0, 10_000.0]
    assert loss["flops"].tolist() == [0.0, 6 * 1e6 * 10_000]
    assert points(a, "eval_loss")["value"].tolist() == [4.2]  # the empty cell at step 0 is no point
    assert a.tokens == 10_000 and a.flops == 6e10 and a.flops_rule == "6*N_active*D"
    assert b.n_params is None and b.tokens is None and b.flops is None
    assert points(b, "eval_loss")["value"].tolist() == [5.6]


def test_pandas_index_column_is_not_a_metric(tmp_path):
    path = write(tmp_path / "df.csv", ",step,loss\n0,1,2.5\n1,2,2.0\n")
    (run,) = parse_file(path)
    assert set(run.metrics["name"]) == {"loss"} and run.metrics["value"].tolist() == [2.5, 2.0]
    path = write(tmp_path / "df2.csv", "Unnamed: 0,step,loss\n0,1,2.5\n")
    assert set(parse_file(path)[0].metrics["name"]) == {"loss"}


def test_wide_file_without_run_column_is_one_run_named_after_the_file(tmp_path):
    path = write(tmp_path / "llama-125m.txt", "step\tloss\ttokens\twall_time\n1\t3.5\t4096\t12.5\n2\t3.25\t8192\t20\n")
    assert detect_format(path) == "csv_wide"  # content, not the .txt extension
    (run,) = parse_file(path)
    assert run.name == "llama-125m"
    assert run.metrics["value"].tolist() == [3.5, 3.25]
    assert run.metrics["tokens"].tolist() == [4096.0, 8192.0]
    assert run.metrics["wall_time"].tolist() == [12.5, 20.0]
    assert run.tokens == 8192.0 and run.flops is None


def test_long_csv_and_tsv_and_jsonl(tmp_path):
    csv_path = write(tmp_path / "long.csv",
                     "run,step,metric,value,tokens\nx,1,loss,3.5,100\nx,2,loss,3.1,200\nx,2,acc,0.5,200\ny,1,loss,4.0,\n")
    assert detect_format(csv_path) == "csv_long"
    runs = by_name(parse_file(csv_path))
    assert points(runs["x"], "loss")["value"].tolist() == [3.5, 3.1]
    assert points(runs["x"], "acc")["value"].tolist() == [0.5]
    assert runs["x"].tokens == 200.0
    assert points(runs["y"], "loss")["step"].tolist() == [1.0]

    tsv_path = write(tmp_path / "metrics.tsv", "name\tstep\tvalue\nloss\t5\t2.5\n")  # name = the metric
    assert detect_format(tsv_path) == "csv_long"
    (run,) = parse_file(tsv_path)
    assert run.name == "metrics" and run.metrics["name"].tolist() == ["loss"] and run.metrics["value"].tolist() == [2.5]

    jsonl = "\n".join(json.dumps(r) for r in [
        {"run": "j", "step": 0, "metric": "loss", "value": 2.0},
        {"run": "j", "step": 1, "metric": "loss", "value": 1.5, "wall_time": 3.0},
    ]) + "\n"
    jsonl_path = write(tmp_path / "long.jsonl", jsonl)
    assert detect_format(jsonl_path) == "csv_long"
    (run,) = parse_file(jsonl_path)
    assert run.name == "j" and run.metrics["value"].tolist() == [2.0, 1.5]
    assert math.isnan(run.metrics["wall_time"][0]) and run.metrics["wall_time"][1] == 3.0

    wide_jsonl = write(tmp_path / "wide.jsonl", '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5, "ppl": 12.2}\n')
    assert detect_format(wide_jsonl) == "csv_wide"
    (run,) = parse_file(wide_jsonl)
    assert points(run, "ppl")["value"].tolist() == [12.2]


# ---------------------------------------------------------------------------------------------
# W&B

def test_wandb_ui_export(tmp_path):
    # The web UI's "Export CSV" of a line chart: every cell quoted, envelope columns beside each line.
    text = (
        '"Step","llama 125M - lr 3e-4 - train/loss","llama 125M - lr 3e-4 - train/loss__MIN",'
        '"llama 125M - lr 3e-4 - train/loss__MAX","moe-8x - train/loss","moe-8x - train/loss__MIN","moe-8x - train/loss__MAX"\n'
        '"0","4.5","4.4","4.6","4.8","4.7","4.9"\n'
        '"100","3.5","3.4","3.6","",""," "\n'
        '"200","3.0","2.9","3.1","3.9","3.8","4.0"\n'
    )
    path = write(tmp_path / "wandb_export_2024.csv", text)
    assert detect_format(path) == "wandb_export"
    runs = by_name(parse_file(path))
    assert set(runs) == {"llama 125M - lr 3e-4", "moe-8x"}
    dense = runs["llama 125M - lr 3e-4"]
    assert dense.source_format == "wandb_export"
    assert points(dense, "train/loss")[["step", "value"]].values.tolist() == [[0, 4.5], [100, 3.5], [200, 3.0]]
    assert points(runs["moe-8x"], "train/loss")["step"].tolist() == [0.0, 200.0]
    # the envelope is kept as metrics '<metric>__MIN' / '__MAX' (the Runs page draws them as a band)
    assert set(dense.metrics["name"]) == {"train/loss", "train/loss__MIN", "train/loss__MAX"}
    assert points(dense, "train/loss__MAX")["value"].tolist() == [4.6, 3.6, 3.1]
    assert set(runs["moe-8x"].metrics["name"]) == {"train/loss", "train/loss__MIN"}  # a " " cell: that envelope is left out


def test_wandb_history_csv(tmp_path):
    # pandas' run.history().to_csv(): unnamed index first, W&B bookkeeping columns, a media column.
    text = (
        ",_step,_runtime,_timestamp,loss,lr,samples\n"
        '0,0,1.5,1700000000.5,4.0,0.001,"{\'_type\': \'image-file\', \'path\': \'a.png\'}"\n'
        "1,1,2.5,1700000001.5,3.5,0.001,\n"
        "2,2,3.5,1700000002.5,,0.0005,\n"
    )
    path = write(tmp_path / "history.csv", text)
    assert detect_format(path) == "wandb_history"
    (run,) = parse_file(path)
    assert run.name == "history" and run.source_format == "wandb_history"
    assert sorted(set(run.metrics["name"])) == ["loss", "lr"]
    loss = points(run, "loss")
    assert loss[["step", "value", "wall_time"]].values.tolist() == [[0, 4.0, 1.5], [1, 3.5, 2.5]]
    assert points(run, "lr")["value"].tolist() == [0.001, 0.001, 0.0005]


# ---------------------------------------------------------------------------------------------
# run-summary tables

def test_summary_rows_are_the_columns_of_the_parsed_runs(tmp_path):
    """importers.summary.read_file (the column-wise read a fit uses) gives each run's name, derived and
    checked sizes and loss values exactly as parse_file's runs hold them; a zip is left to parse_file."""
    from importers import summary
    from importers.base import SIZE_FIELDS

    path = write(tmp_path / "mixed.csv",
                 "arch,C,N,D,n_experts,loss,eval_loss\ndense,6e18,1e8,,,3.0,\nmoe,1.2e20,,2e10,8,2.6,2.7\n"
                 ",6e19,,1e10,2.4,2.7,2.8\n,,3e8,6e9,,2.9,\n")
    rows = summary.read_file(str(path))
    runs = parse_file(path)
    assert rows.names == [r.name for r in runs] and rows.n_rows == 4
    for field_name in SIZE_FIELDS:
        assert rows.sizes[field_name] == [getattr(r, field_name) for r in runs], field_name
    assert rows.arch == [r.arch for r in runs] and [r.flops_rule == "given" for r in runs] == rows.flops_given
    for metric in ("loss", "eval_loss"):
        want = [r.metrics.loc[r.metrics["name"] == metric, "value"].tolist() for r in runs]
        assert [[v] if not math.isnan(v) else [] for v in rows.metric(metric)] == want
    assert rows.metric("ppl") is None
    archive = tmp_path / "t.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(path, "mixed.csv")
    assert summary.read_file(str(archive)) is None
    with pytest.raises(InputError, match="ghost.csv does not exist"):
        summary.read_file(str(tmp_path / "ghost.csv"))


def test_summary_tables_with_aliases_suffixes_and_derivations(tmp_path):
    nd = write(tmp_path / "chinchilla.csv", "N,D,loss\n1e8,2e9,3.1\n125M,300B,2.9\n")
    assert detect_format(nd) == "summary"
    first, second = parse_file(nd)
    assert first.n_params == 1e8 and first.tokens == 2e9 and first.flops == 6 * 1e8 * 2e9
    assert first.metrics[["value", "tokens", "flops"]].values.tolist() == [[3.1, 2e9, 1.2e18]]
    assert math.isnan(first.metrics["step"][0])
    assert second.n_params == 1.25e8 and second.tokens == 3e11
    assert first.name != second.name and first.name.startswith("chinchilla")

    aliased = write(tmp_path / "paper.csv",
                    "Name,Model Size,Training Tokens,Training FLOP,Final Loss,lr\nsmall,1.0e7,2.0e8,1.3e16,3.9,0.003\n")
    (run,) = parse_file(aliased)
    assert run.name == "small" and run.n_params == 1e7 and run.tokens == 2e8
    assert run.flops == 1.3e16 and run.flops_rule == "given"  # the file's own compute is kept
    assert run.config == {"lr": "0.003", "loss_column": "Final Loss"}

    cn = write(tmp_path / "iso.csv", "C,N,loss\n6e18,1e8,3.1\n")
    (run,) = parse_file(cn)
    assert run.tokens == pytest.approx(6e18 / (6 * 1e8))  # D = C / (6N)

    moe = write(tmp_path / "moe.csv",
                "run,params,n_active_params,tokens,loss,arch,num_experts,top_k,n_nonembedding_params\n"
                "moe-a,8e8,2e8,1e10,2.5,MoE,8,2,7e8\n"
                "dense-b,2e8,,1e10,2.7,dense,,,\n")
    runs = by_name(parse_file(moe))
    assert runs["moe-a"].arch == "moe" and runs["moe-a"].n_experts == 8 and runs["moe-a"].top_k == 2
    assert runs["moe-a"].flops == 6 * 2e8 * 1e10  # active parameters, not total
    assert runs["moe-a"].n_nonembedding_params == 7e8
    assert runs["dense-b"].arch == "dense" and runs["dense-b"].flops == 6 * 2e8 * 1e10


# ---------------------------------------------------------------------------------------------
# TensorBoard

def test_tensorboard_file_folder_and_zip(tb_logdir, tmp_path):
    event_file = next((tb_logdir / "run_a").glob("events.out.tfevents.*"))
    assert detect_format(str(event_file)) == "tensorboard"
    (single,) = parse_file(str(event_file))
    assert single.name == "run_a" and single.source_format == "tensorboard"
    check_frame(single)
    loss = points(single, "train/loss")
    assert loss["step"].tolist() == list(range(10))
    assert loss["value"].tolist() == pytest.approx([4.0 - 0.25 * s for s in range(10)])
    assert points(single, "lr")["value"].tolist() == pytest.approx([1e-3] * 10)  # tensor-style scalars read
    assert set(single.metrics["name"]) == {"train/loss", "lr"}  # histogram and text skipped
    wall = single.metrics["wall_time"]
    assert wall.min() == 0.0 and wall.max() < 60  # seconds since the first point, not Unix time

    assert detect_format(str(tb_logdir)) == "tensorboard"
    runs = by_name(parse_file(str(tb_logdir)))
    assert set(runs) == {"run_a", "run_b"}
    assert points(runs["run_b"], "train/loss")["value"].iloc[0] == pytest.approx(5.0)

    archive = shutil.make_archive(str(tmp_path / "logs"), "zip", root_dir=tb_logdir.parent, base_dir="logs")
    with open(archive, "rb") as fh:
        data = fh.read()
    assert detect_format(data, "logs.zip") == "tensorboard"
    runs = by_name(parse_upload(data, "logs.zip"))
    assert set(runs) == {"run_a", "run_b"}
    assert runs["run_a"].source_file == "logs.zip/logs/run_a"


def test_tensorboard_nan_scalar_and_loose_event_files_uploaded_together(tb_logdir, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(tmp_path / "diverged"))
    writer.add_scalar("loss", 3.0, 0)
    writer.add_scalar("loss", float("nan"), 1)
    writer.close()
    with pytest.raises(InputError, match="tag 'loss' holds NaN at step 1") as exc:
        parse_file(str(tmp_path / "diverged"))
    one_line_error(exc)

    uploads = [(p.name, p.read_bytes()) for p in sorted(tb_logdir.glob("run_*/events.out.tfevents.*"))]
    runs = parse_uploads(uploads)
    assert sorted(r.name for r in runs) == sorted(name for name, _ in uploads)  # one run per loose file
    assert all(r.source_format == "tensorboard" and len(r.metrics) == 20 for r in runs)


def test_tensorboard_truncated_and_corrupt_files_are_refused(tb_logdir, tmp_path):
    event_file = next((tb_logdir / "run_a").glob("events.out.tfevents.*"))
    data = event_file.read_bytes()
    truncated = write(tmp_path / "cut" / event_file.name, data[:-7])
    with pytest.raises(InputError, match="truncated") as exc:
        parse_file(truncated)
    one_line_error(exc)

    corrupt = bytearray(data)
    corrupt[len(data) // 2] ^= 0xFF  # a byte inside some record's data or header
    path = write(tmp_path / "bad" / event_file.name, bytes(corrupt))
    with pytest.raises(InputError, match="corrupt") as exc:
        parse_file(path)
    one_line_error(exc)


# ---------------------------------------------------------------------------------------------
# Hugging Face Trainer

def test_hf_trainer_state_from_a_real_run(hf_run, tmp_path):
    out, n_params = hf_run
    state = out / "checkpoint-4" / "trainer_state.json"
    assert detect_format(str(state)) == "hf_trainer"
    (run,) = parse_file(str(state))
    assert run.name == "tiny-llama" and run.source_format == "hf_trainer"
    check_frame(run)
    assert run.n_params == n_params  # counted from config.json, weights never built
    assert run.n_active_params == n_params and run.arch == "dense"
    assert run.n_nonembedding_params == n_params - 2 * 64 * 32  # untied embedding and head
    loss = points(run, "loss")
    assert loss["step"].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert loss["tokens"].tolist() == [32.0, 64.0, 96.0, 128.0]  # num_input_tokens_seen: 2 × 16 per step
    assert loss["flops"].tolist() == [6.0 * n_params * t for t in (32, 64, 96, 128)]
    assert ((loss["value"] > 3.0) & (loss["value"] < 5.0)).all()  # ln(64) ≈ 4.16 for random tokens
    assert points(run, "eval_loss")["step"].tolist() == [2.0, 4.0]
    assert {"learning_rate", "grad_norm", "epoch"} <= set(run.metrics["name"])
    assert run.tokens == 128.0 and run.flops == 6.0 * n_params * 128
    assert run.config["trainer"]["global_step"] == 4 and run.config["model"]["model_type"] == "llama"
    wall = loss["wall_time"].to_numpy()
    assert (wall > 0).all() and (np.diff(wall) >= 0).all()  # train_runtime of each training entry

    # The whole output folder zipped: the latest checkpoint is the run, named after the folder.
    archive = shutil.make_archive(str(tmp_path / "tiny"), "zip", root_dir=out.parent, base_dir=out.name)
    (zipped,) = parse_file(archive)
    assert zipped.name == "tiny-llama" and zipped.n_params == n_params
    assert len(zipped.metrics) == len(run.metrics)

    # Uploaded side by side, trainer_state.json finds its config.json.
    files = [(p, (out / "checkpoint-4" / p).read_bytes()) for p in ("trainer_state.json", "config.json")]
    (uploaded,) = parse_uploads(files)
    assert uploaded.n_params == n_params and uploaded.name == "trainer_state"
    (alone,) = parse_upload(files[0][1], "trainer_state.json")
    assert alone.n_params is None and alone.flops is None  # no config: sizes left for the user


def _count_by_modules(model, top_k=None, n_experts=None):
    """Total, non-embedding and active parameters of an instantiated model, counted from its modules."""
    total = embed = active = 0
    for name, p in model.named_parameters():
        n = p.numel()
        total += n
        if any(k in name for k in ("embed_tokens", "lm_head", "wte", "wpe", "embed_in", "embed_out")):
            embed += n
        routed = ".experts." in name and "shared_expert" not in name
        active += n * top_k / n_experts if routed else n
    return total, total - embed, active


@pytest.mark.parametrize("family", ["llama", "llama_tied_bias", "mistral", "qwen2", "gpt2", "gpt_neox",
                                    "mixtral", "olmoe", "qwen2_moe", "qwen3_moe"])
def test_count_params_from_config_matches_the_real_modules(family):
    import transformers as tf

    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, vocab_size=96,
                 max_position_embeddings=64, intermediate_size=48)
    configs = {
        "llama": lambda: tf.LlamaConfig(num_key_value_heads=2, **small),
        "llama_tied_bias": lambda: tf.LlamaConfig(num_key_value_heads=4, tie_word_embeddings=True,
                                                  attention_bias=True, mlp_bias=True, head_dim=16, **small),
        "mistral": lambda: tf.MistralConfig(num_key_value_heads=2, **small),
        "qwen2": lambda: tf.Qwen2Config(num_key_value_heads=2, **small),
        "gpt2": lambda: tf.GPT2Config(n_embd=32, n_layer=2, n_head=4, vocab_size=96, n_positions=64),
        "gpt_neox": lambda: tf.GPTNeoXConfig(**small),
        "mixtral": lambda: tf.MixtralConfig(num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, **small),
        "olmoe": lambda: tf.OlmoeConfig(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2, **small),
        "qwen2_moe": lambda: tf.Qwen2MoeConfig(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                               moe_intermediate_size=24, shared_expert_intermediate_size=40,
                                               mlp_only_layers=[0], **small),
        "qwen3_moe": lambda: tf.Qwen3MoeConfig(num_key_value_heads=2, num_experts=4, num_experts_per_tok=2,
                                               moe_intermediate_size=24, **small),
    }
    config = configs[family]()
    config_dict = json.loads(config.to_json_string())  # what config.json holds
    model = tf.AutoModelForCausalLM.from_config(config)
    count = count_params_from_config(config_dict)
    moe = family in ("mixtral", "olmoe", "qwen2_moe", "qwen3_moe")
    total, non_embedding, active = _count_by_modules(model, 2, 4) if moe else _count_by_modules(model)
    assert count.n_params == total
    assert count.n_nonembedding_params == non_embedding
    assert count.n_active_params == active
    assert count.arch == ("moe" if moe else "dense")
    assert (count.n_experts, count.top_k) == ((4, 2) if moe else (None, None))


# ---------------------------------------------------------------------------------------------
# Lightning CSVLogger (its documented layout, written by hand: lightning is not a dependency)

LIGHTNING_METRICS = (
    "epoch,step,train_loss,val_loss\n"
    "0,49,2.31,\n"
    "0,99,2.10,\n"
    "0,99,,2.05\n"
    "1,149,1.95,\n"
)


def test_lightning_metrics_with_hparams(tmp_path):
    version = tmp_path / "lightning_logs" / "version_0"
    metrics = write(version / "metrics.csv", LIGHTNING_METRICS)
    write(version / "hparams.yaml", "lr: 0.001\nbatch_size: 8\nseq_len: 128\nmodel:\n  n_params: 1000000\nstarted: 2024-01-02\n")
    assert detect_format(metrics) == "lightning"
    (run,) = parse_file(metrics)
    assert run.name == "version_0" and run.source_format == "lightning"
    assert run.config == {"lr": 0.001, "batch_size": 8, "seq_len": 128, "model": {"n_params": 1000000},
                          "started": "2024-01-02"}  # YAML's date kept as JSON text
    assert run.n_params == 1e6 and run.seq_len == 128 and run.tokens_per_step == 8 * 128
    train = points(run, "train_loss")
    assert train[["step", "value"]].values.tolist() == [[49, 2.31], [99, 2.10], [149, 1.95]]
    assert train["tokens"].tolist() == [49 * 1024.0, 99 * 1024.0, 149 * 1024.0]
    assert train["flops"].tolist() == [6e6 * 49 * 1024, 6e6 * 99 * 1024, 6e6 * 149 * 1024]
    assert points(run, "val_loss")["value"].tolist() == [2.05]
    assert run.tokens == 149 * 1024.0

    write(tmp_path / "lightning_logs" / "version_1" / "metrics.csv", LIGHTNING_METRICS)
    archive = shutil.make_archive(str(tmp_path / "ll"), "zip", root_dir=tmp_path, base_dir="lightning_logs")
    assert detect_format(archive) == "lightning"
    runs = by_name(parse_file(archive))
    assert set(runs) == {"version_0", "version_1"}
    assert runs["version_0"].n_params == 1e6 and runs["version_1"].n_params is None


def test_lightning_hparams_with_python_tags_are_refused(tmp_path):
    write(tmp_path / "v" / "metrics.csv", LIGHTNING_METRICS)
    write(tmp_path / "v" / "hparams.yaml", "opt: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(InputError, match="not plain YAML") as exc:
        parse_file(str(tmp_path / "v" / "metrics.csv"))
    one_line_error(exc)


# ---------------------------------------------------------------------------------------------
# bundles, upload sets, hostile names

def test_zip_bundle_of_mixed_logs_and_hostile_names(tb_logdir, tmp_path):
    buf = io.BytesIO()
    event_file = next((tb_logdir / "run_a").glob("events.out.tfevents.*"))
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.write(event_file, f"{HOSTILE}/{event_file.name}")
        zf.writestr("tables/<script>alert(1)</script>.csv", "step,loss\n1,2.0\n")
        zf.writestr("tables/summary.csv", 'name,N,D,loss\n"Robert""); DROP TABLE runs;--",1e6,1e8,4.0\n')
        zf.writestr("__MACOSX/._junk.csv", "\x00\x01")
    assert detect_format(buf.getvalue(), "mixed.zip") == "bundle"
    runs = by_name(parse_upload(buf.getvalue(), "mixed.zip"))
    assert set(runs) == {HOSTILE, "tables/<script>alert(1)</script>", 'Robert"); DROP TABLE runs;--'}
    assert runs[HOSTILE].source_format == "tensorboard"
    assert runs["tables/<script>alert(1)</script>"].metrics["value"].tolist() == [2.0]


def test_hostile_names_in_a_csv_are_kept_literally(tmp_path):
    path = write(tmp_path / "x.csv", f'run,step,metric,value\n"{HOSTILE}",1,"loss; DELETE FROM metrics",2.0\n')
    (run,) = parse_file(path)
    assert run.name == HOSTILE and run.metrics["name"].tolist() == ["loss; DELETE FROM metrics"]
    bad = write(tmp_path / "ctl.csv", 'run,step,metric,value\n"a\x1b[31mred",1,loss,2.0\n')
    with pytest.raises(InputError, match="control characters") as exc:
        parse_file(bad)
    one_line_error(exc)


def test_upload_uses_a_private_temp_folder_and_removes_it(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    runs = parse_upload(b"step,loss\n1,2.0\n", "../../etc/passwd.csv")
    assert [r.name for r in runs] == ["passwd"] and runs[0].source_file == "passwd.csv"
    assert os.listdir(tmp_path) == []
    with pytest.raises(InputError):
        parse_upload(b"step,loss\n1,nan\n", "bad.csv")
    assert os.listdir(tmp_path) == []  # removed on failure too


def test_upload_set_pairs_lightning_hparams_and_refuses_duplicate_run_names(tmp_path):
    runs = parse_uploads([
        ("metrics.csv", LIGHTNING_METRICS.encode()),
        ("hparams.yaml", b"n_params: 2000000\ntokens_per_step: 512\n"),
        ("other.csv", b"step,loss\n1,3.0\n"),
    ])
    runs = by_name(runs)
    assert set(runs) == {"metrics", "other"}
    assert runs["metrics"].n_params == 2e6 and runs["metrics"].tokens == 149 * 512.0
    with pytest.raises(InputError, match="two runs named 'a'") as exc:
        parse_uploads([("a.csv", b"step,loss\n1,3.0\n"), ("a.tsv", b"step\tloss\n1\t3.0\n")])
    one_line_error(exc)


# ---------------------------------------------------------------------------------------------
# bad input: one line, what is wrong and what to do

def _zip_bytes(members) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for info, payload in members:
            zf.writestr(info, payload)
    return buf.getvalue()


BAD_FILES = [
    ("empty.csv", b"", "is empty"),
    ("binary.csv", bytes(range(256)) * 4, "binary"),
    ("latin1.csv", "step,loss\n1,caf\xe9\n".encode("latin-1"), "not UTF-8"),
    ("ragged.csv", b"step,loss,eval_loss\n1,2.0,3.0\n2,1.9", "malformed or truncated"),
    ("cut.jsonl", b'{"step": 1, "loss": 2.0}\n{"step": 2, "lo', "line 2 is not valid JSON"),
    ("unknown.csv", b"alpha,beta\n1,2\n", "cannot tell the format"),
    ("header_only.csv", b"step,loss\n", "no rows"),
    ("long_no_value.csv", b"run,step,metric\na,1,loss\n", "no value column"),
    ("text.csv", b"step,loss\n1,2.0\n2,abc\n", "column 'loss' holds a non-numeric value at row 2"),
    ("nan.csv", b"step,loss\n1,2.0\n2,2.0\n3,nan\n", "column 'loss' holds NaN at row 3"),
    ("inf.csv", b"step,loss\n1,inf\n", "column 'loss' holds an infinite value at row 1"),
    ("nan.jsonl", b'{"step": 1, "loss": NaN}\n', "column 'loss' holds NaN at row 1"),
    ("neg_step.csv", b"step,loss\n1,2.0\n-5,1.0\n", "column 'step' holds a negative value (-5) at row 2"),
    ("no_step.csv", b"step,loss\n1,2.0\n,1.0\n", "column 'step' is empty at row 2"),
    ("neg_size.csv", b"N,D,loss\n-1e8,2e9,3.0\n", "column 'N' holds a negative value"),
    ("nan_size.csv", b"N,D,loss\nnan,2e9,3.0\n", "column 'N' holds NaN at row 1"),
    ("text_size.csv", b"N,D,loss\nbig,2e9,3.0\n", "column 'N' holds a non-numeric value at row 1"),
    ("dup_summary.csv", b"name,N,D,loss\na,1e8,2e9,3.0\na,2e8,2e9,2.9\n", "two runs named 'a'"),
    ("dup_wandb.csv", b'Step,r - loss,r - loss\n1,2.0,2.1\n', "two runs named 'r'"),
    ("dup_column.csv", b"step,loss,loss\n1,2.0,2.1\n", "column 'loss' appears twice"),
    ("config.json", json.dumps({"model_type": "llama", "hidden_size": 8}).encode(), "model config"),
    ("trainer_state.json", b'{"global_step": 4, "log_history": [{"loss": 2.0, "st', "not valid JSON"),
    ("nan_state.json", b'{"log_history": [{"loss": NaN, "step": 1}]}', "entry 1 (step 1) has loss = nan"),
    ("neg_state.json", b'{"log_history": [{"loss": 2.0, "step": -1}]}', "negative step"),
    ("fake.events.out.tfevents.1.host", b"\x00" * 40, "not a TensorBoard event file"),
    ("cut.zip", _zip_bytes([("run.csv", "step,loss\n1,2.0\n" * 50)])[:60], "not a readable zip"),
    ("no_step_state.json", b'{"log_history": [{"loss": 2.0}]}', "entry 1 has no numeric step"),
    ("wandb_no_step.csv", b'Step,r - loss\n1,2.0\n,2.1\n', "column 'Step' is empty at row 2"),
]


@pytest.mark.parametrize("filename,data,expected", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_input_is_refused_with_one_line(filename, data, expected):
    with pytest.raises(InputError) as exc:
        parse_upload(data, filename)
    message = one_line_error(exc)
    assert expected in message, message
    assert "; " in message  # what is wrong; what to do


@pytest.mark.parametrize("filename,data,expected", BAD_FILES, ids=[b[0] for b in BAD_FILES])
@pytest.mark.parametrize("route", ["small", "bulk"])
def test_bad_input_is_refused_alike_by_both_import_paths(store, tmp_path, monkeypatch, route, filename, data, expected):
    """services.ingest with the bulk threshold at 0 (every long CSV to db/bulk.py) and out of reach."""
    import services.ingest as ingest

    monkeypatch.setattr(ingest, "BULK_BYTES", 0 if route == "bulk" else 1 << 62)
    path = tmp_path / filename
    path.write_bytes(data)
    for attempt in (lambda: ingest.ingest_paths(store, [path]), lambda: ingest.ingest_uploads(store, [(filename, data)])):
        with pytest.raises(InputError) as exc:
            attempt()
        message = one_line_error(exc)
        assert expected in message, message
        assert message.count(filename) <= 1, message  # never "binary.csv: binary.csv is binary"
    assert store.run_names() == []


NEW_BAD_FILES = [  # beside BAD_FILES: rules the bulk path shares since issue 12 (core/validation.py)
    ("dup_value.csv", b"run,step,metric,value,value\na,1,loss,2.0,3.0\n", "column 'value' appears twice"),
    ("nul_tail.csv", b"step,loss\n" + b"".join(b"%d,1.5\n" % i for i in range(20000)) + b"\x00" * 70000,
     "holds NUL bytes from byte 188900 on"),
    ("nul_tail.jsonl", b'{"step": 1, "loss": 2.0}\n' * 3000 + b"\x00" * 10, "holds NUL bytes from byte 75000 on"),
    ("ansi_metric.csv", b"step,lo\x1b[2Jss\n1,2.0\n", "control characters"),
    ("blank_metric.csv", b"run,step,metric,value\na,1,   ,2.0\n", "metric name is empty"),
    ("huge_sizes.csv", b"N,D,loss\n1e308,1e308,2.0\n", "overflow to infinity"),
]


@pytest.mark.parametrize("filename,data,expected", NEW_BAD_FILES, ids=[b[0] for b in NEW_BAD_FILES])
def test_more_bad_input_is_refused_with_one_line(filename, data, expected, recwarn):
    with pytest.raises(InputError) as exc:
        parse_upload(data, filename)
    message = one_line_error(exc)
    assert expected in message, message
    assert "; " in message
    assert not [w for w in recwarn if "overflow" in str(w.message)]  # no numpy RuntimeWarning on the way


def test_names_are_trimmed(tmp_path):
    path = write(tmp_path / "ws.csv", "run,step,metric,value\n  a  ,1,  loss ,2.0\na,2,loss,1.0\n")
    (run,) = parse_file(path)
    assert run.name == "a" and run.metrics["name"].tolist() == ["loss", "loss"]


def test_over_the_size_limit(tmp_path, monkeypatch):
    data = b"step,loss\n" + b"".join(b"%d,1.0\n" % i for i in range(200))
    with pytest.raises(InputError, match="over the 1.0 KB upload limit") as exc:
        parse_upload(data, "big.csv", max_bytes=1024)
    one_line_error(exc)
    path = write(tmp_path / "big.csv", data)
    monkeypatch.setenv("SCALESCOPE_MAX_UPLOAD_BYTES", "1024")
    with pytest.raises(InputError, match="upload limit"):
        parse_file(path)
    monkeypatch.delenv("SCALESCOPE_MAX_UPLOAD_BYTES")
    assert len(parse_file(path)[0].metrics) == 200


def _symlink_info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


@pytest.mark.parametrize("members,expected", [
    ([("../evil.csv", "step,loss\n1,2\n")], "'..' path"),
    ([("ok/../../evil.csv", "step,loss\n1,2\n")], "'..' path"),
    ([(zipfile.ZipInfo("/etc/evil.csv"), "step,loss\n1,2\n")], "absolute path"),
    ([(_symlink_info("run/link.csv"), "/etc/passwd")], "symbolic link"),
    ([("bomb.csv", "step,loss\n" + "1,2.0\n" * 1_000_000)], "zip bomb"),
    ([("notes.txt", "hello")], "holds no log files"),
], ids=["dotdot", "nested-dotdot", "absolute", "symlink", "ratio", "no-logs"])
def test_hostile_zips_are_refused(members, expected, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(InputError) as exc:
        parse_upload(_zip_bytes(members), "evil.zip")
    assert expected in one_line_error(exc)
    assert os.listdir(tmp_path) == []  # nothing extracted anywhere


def test_zip_member_count_and_expanded_size_limits(tmp_path):
    data = _zip_bytes([(f"r{i}.csv", "step,loss\n1,2\n") for i in range(6)])
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        with pytest.raises(InputError, match="holds 6 files, more than the 5 allowed"):
            check_zip(zf, len(data), "many.zip", ZipLimits(max_members=5))
    payload = "step,loss\n" + "".join(f"{i},{i % 7}.5\n" for i in range(400))
    big = write(tmp_path / "big.zip", _zip_bytes([("run.csv", payload)]))
    assert os.path.getsize(big) < 2048 < len(payload)
    with pytest.raises(InputError, match="expands to .* over the 2.0 KB limit") as exc:
        parse_file(big, max_bytes=2048)
    one_line_error(exc)
    out = tmp_path / "out"
    out.mkdir()
    assert safe_extract_zip(big, str(out), "big.zip") == ["run.csv"]
    assert (out / "run.csv").read_text() == payload


def test_format_override_and_unknown_format_key(tmp_path):
    path = write(tmp_path / "odd.csv", "step,metric,value\n1,2.0,3.0\n")
    assert detect_format(path) == "csv_long"
    (run,) = parse_file(path, fmt="csv_wide")  # the user knows better: two metric columns
    assert sorted(set(run.metrics["name"])) == ["metric", "value"]
    with pytest.raises(InputError, match="unknown format 'parquet'") as exc:
        parse_file(path, fmt="parquet")
    one_line_error(exc)
    assert set(FORMATS) >= {"csv_long", "csv_wide", "summary", "wandb_export", "wandb_history", "tensorboard",
                            "hf_trainer", "lightning", "bundle"}
