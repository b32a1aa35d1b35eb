"""Routing capture on tiny MoE models of each family, saved as safetensors and reloaded offline."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from core.errors import Cancelled, InputError, RoutingError
from core.routing import capture, families, metrics
from core.routing.capture import ASSIGNMENT_COLUMNS, capture_routing, load_moe_model

torch.set_num_threads(1)
hf_logging.set_verbosity_error()

VOCAB = 256
COMMON = dict(
    hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=8, vocab_size=VOCAB, max_position_embeddings=128, pad_token_id=0, bos_token_id=1, eos_token_id=2,
)
MLA = dict(q_lora_rank=16, kv_lora_rank=16, qk_rope_head_dim=8, qk_nope_head_dim=8, v_head_dim=8, num_key_value_heads=4)
# family → (config overrides, decoder layers that must be MoE)
FAMILY_CONFIGS = {
    "mixtral": (dict(num_local_experts=8, num_experts_per_tok=2), [0, 1]),
    "olmoe": (dict(num_experts=8, num_experts_per_tok=2), [0, 1]),
    "qwen2_moe": (
        dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
             decoder_sparse_step=1, mlp_only_layers=[0], num_hidden_layers=3),
        [1, 2],
    ),
    "qwen3_moe": (
        dict(num_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, decoder_sparse_step=2, mlp_only_layers=[]),
        [1],
    ),
    "deepseek_v3": (
        dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
             first_k_dense_replace=1, n_group=4, topk_group=2, num_hidden_layers=3, **MLA),
        [1, 2],
    ),
    "granitemoe": (dict(num_local_experts=8, num_experts_per_tok=2), [0, 1]),
}
# Same router/experts convention, checked in memory only (one smoke test each).
EXTRA_CONFIGS = {
    "phimoe": dict(num_local_experts=8, num_experts_per_tok=2),
    "flex_olmo": dict(num_experts=8, num_local_experts=8, num_experts_per_tok=2),
    "minimax": dict(num_local_experts=8, num_experts_per_tok=2, layer_types=["full_attention"] * 2),
    "deepseek_v2": dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                        first_k_dense_replace=1, n_group=4, topk_group=2, topk_method="group_limited_greedy", **MLA),
    "glm4_moe": dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                     first_k_dense_replace=1, n_group=4, topk_group=2),
    "dots1": dict(n_routed_experts=8, num_experts_per_tok=2, moe_intermediate_size=32, n_shared_experts=1,
                  first_k_dense_replace=1, n_group=4, topk_group=2, layer_types=["full_attention"] * 2),
    "granitemoeshared": dict(num_local_experts=8, num_experts_per_tok=2, shared_intermediate_size=32),
}

TEXT = (
    "the router sends every token to two experts and the experts compute a gated feed forward layer. "
    "def add(a, b):\n    return a + b\n# a python comment about lists and dicts\n"
    '{"id": 7, "name": "widget", "price": 3.5}\n'
)
CORPUS = [
    (TEXT[:120], "prose"),
    (TEXT[120:200], "python"),
    (TEXT[200:], "json"),
    (TEXT * 2, "prose"),  # longer than one window: split at seq_len
]


def _train_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator([TEXT] * 4, trainers.BpeTrainer(vocab_size=200, special_tokens=["[PAD]", "[UNK]"]))
    return tok


@pytest.fixture(scope="module")
def tokenizer():
    return _train_tokenizer()


def _build(model_type: str, overrides: dict, seed: int = 0):
    config = AutoConfig.for_model(model_type, **{**COMMON, **overrides})
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config).eval()
    # Non-zero routers (some families initialise them to zeros, which ties every expert).
    for layer in families.find_moe_layers(model, families.family_for(model_type)):
        torch.nn.init.normal_(layer.router.weight, std=0.5)
    return model


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """One checkpoint folder per family, written with safetensors."""
    folders = {}
    for family, (overrides, _) in FAMILY_CONFIGS.items():
        model = _build(family, overrides)
        if family == "deepseek_v3":
            # A strong load-balancing bias makes the selected experts differ from top-k of the logits.
            for layer in families.find_moe_layers(model, families.family_for(family)):
                layer.router.e_score_correction_bias.copy_(torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.6, 0.6]))
        folder = tmp_path_factory.mktemp(family)
        model.save_pretrained(folder, safe_serialization=True)
        folders[family] = folder
    return folders


class _ExpertsSpy:
    """Independent record of what each experts module received and returned."""

    def __init__(self, moe_layers):
        self.calls = {m.layer: [] for m in moe_layers}
        self.handles = [m.experts.register_forward_hook(self._hook(m.layer), with_kwargs=True) for m in moe_layers]

    def _hook(self, layer):
        def keep(module, args, kwargs, output):
            hidden, index, weights = args
            self.calls[layer].append((hidden.detach().clone(), index.clone(), weights.detach().clone(), output.detach().clone()))

        return keep

    def remove(self):
        for h in self.handles:
            h.remove()


def _capture(loaded, tokenizer, docs=CORPUS, **kw):
    chunks = []
    kw.setdefault("batch_size", 1)
    kw.setdefault("seq_len", 24)
    summary = capture_routing(loaded, tokenizer, docs, sink=chunks.append, **kw)
    return summary, pd.concat(chunks, ignore_index=True), chunks


@pytest.mark.parametrize("family", list(FAMILY_CONFIGS))
def test_capture_records_the_experts_that_ran(family, saved_models, tokenizer):
    loaded = load_moe_model(saved_models[family], device="cpu")
    expected_layers = FAMILY_CONFIGS[family][1]
    assert loaded.family.name == family
    assert [m.layer for m in loaded.moe_layers] == expected_layers

    spy = _ExpertsSpy(loaded.moe_layers)
    try:
        summary, frame, _ = _capture(loaded, tokenizer)  # batch_size=1: no padding, one experts call per window
    finally:
        spy.remove()

    n_tokens = sum(len(tokenizer.encode(t).ids) for t, _ in CORPUS)
    assert summary.layers == expected_layers and summary.n_layers == len(expected_layers)
    assert (summary.n_experts, summary.top_k, summary.n_tokens, summary.device) == (8, 2, n_tokens, "cpu")
    assert summary.n_rows == len(frame) == n_tokens * len(expected_layers) * 2
    assert list(frame.columns) == list(ASSIGNMENT_COLUMNS)
    assert frame["expert"].dtype == np.int32 and frame["weight"].dtype == np.float32
    assert summary.router_prob_mean.shape == (len(expected_layers), 8)
    np.testing.assert_allclose(summary.router_prob_mean.sum(axis=1), 1.0, rtol=1e-5)

    for moe in loaded.moe_layers:
        arrays = capture.layer_arrays(frame, moe.layer)
        assert arrays.expert_ids.shape == (n_tokens, 2)
        # Every token's experts are distinct and sorted by weight.
        assert (arrays.expert_ids[:, 0] != arrays.expert_ids[:, 1]).all()
        assert (arrays.weights[:, 0] >= arrays.weights[:, 1]).all()
        hidden = torch.cat([c[0] for c in spy.calls[moe.layer]])  # (N, H)
        ran = torch.cat([c[1] for c in spy.calls[moe.layer]]).numpy()  # (N, k) as the experts got them
        ran_w = torch.cat([c[2] for c in spy.calls[moe.layer]]).float().numpy()
        out = torch.cat([c[3] for c in spy.calls[moe.layer]])  # (N, H)
        # Rows are in (doc, position) order, which is also the order the windows ran.
        np.testing.assert_array_equal(np.sort(arrays.expert_ids, 1), np.sort(ran, 1))
        order = np.argsort(-ran_w, axis=1, kind="stable")
        np.testing.assert_allclose(arrays.weights, np.take_along_axis(ran_w, order, 1), rtol=1e-6)
        # Recompute the routed output from the recorded ids and weights with our own weight split.
        recomputed = torch.zeros_like(out)
        for rank in range(2):
            for e in range(8):
                rows = torch.from_numpy(arrays.expert_ids[:, rank] == e)
                if rows.any():
                    y = families.expert_forward(moe, e, hidden[rows])
                    recomputed[rows] += y * torch.tensor(arrays.weights[:, rank])[rows, None]
        torch.testing.assert_close(recomputed, out, rtol=1e-4, atol=1e-5)


def test_deepseek_records_biased_group_limited_choice_not_logit_topk(saved_models, tokenizer):
    loaded = load_moe_model(saved_models["deepseek_v3"], device="cpu")
    moe = loaded.moe_layers[0]
    logits = []
    handle = moe.router.register_forward_hook(lambda m, a, out: logits.append(out[0].detach().clone()))
    try:
        _, frame, _ = _capture(loaded, tokenizer)
    finally:
        handle.remove()
    chosen = np.sort(capture.layer_arrays(frame, moe.layer).expert_ids, 1)
    naive = np.sort(torch.topk(torch.cat(logits), 2, dim=-1).indices.numpy(), 1)
    differs = (chosen != naive).any(axis=1).mean()
    assert differs > 0.2  # the bias on experts 6, 7 changes many choices
    assert (chosen >= 6).any(axis=1).mean() > 0.5


@pytest.mark.parametrize("family", ["mixtral", "deepseek_v3"])
def test_padded_batches_give_the_same_assignments(family, saved_models, tokenizer):
    loaded = load_moe_model(saved_models[family], device="cpu")
    _, alone, _ = _capture(loaded, tokenizer, batch_size=1)
    summary, padded, chunks = _capture(loaded, tokenizer, batch_size=3)
    n_windows = sum(-(-len(tokenizer.encode(t).ids) // 24) for t, _ in CORPUS)
    assert n_windows > 3 and len(chunks) == -(-n_windows // 3)  # several windows of different lengths per batch
    key = ["layer", "doc_id", "position", "rank"]
    alone, padded = alone.sort_values(key, ignore_index=True), padded.sort_values(key, ignore_index=True)
    for column in ("layer", "doc_id", "position", "token_id", "rank", "expert"):
        np.testing.assert_array_equal(alone[column].to_numpy(), padded[column].to_numpy())
    np.testing.assert_allclose(alone["weight"], padded["weight"], rtol=1e-5, atol=1e-6)
    for layer in summary.layers:
        a, b = capture.layer_arrays(alone, layer), capture.layer_arrays(padded, layer)
        np.testing.assert_array_equal(metrics.expert_load(a.expert_ids, 8), metrics.expert_load(b.expert_ids, 8))


def test_rows_carry_doc_position_token_and_domain(saved_models, tokenizer):
    loaded = load_moe_model(saved_models["olmoe"], device="cpu")
    summary, frame, _ = _capture(loaded, tokenizer, seq_len=16)
    arrays = capture.layer_arrays(frame, 0)
    for doc_id, (text, domain) in enumerate(CORPUS):
        ids = tokenizer.encode(text).ids
        mine = arrays.doc_ids == doc_id
        np.testing.assert_array_equal(arrays.positions[mine], np.arange(len(ids)))
        np.testing.assert_array_equal(arrays.token_ids[mine], ids)
        assert set(arrays.domains[mine]) == {domain}
    assert summary.domains == ["prose", "python", "json"]
    assert summary.n_docs == 4 and not summary.truncated


def test_max_tokens_stops_early_and_progress_reports(saved_models, tokenizer):
    loaded = load_moe_model(saved_models["granitemoe"], device="cpu")
    seen = []
    summary, frame, _ = _capture(loaded, tokenizer, max_tokens=30, seq_len=16, progress=lambda d, t, m: seen.append((d, t)))
    assert summary.n_tokens == 30 and summary.truncated
    assert len(frame) == 30 * 2 * 2
    assert seen[-1] == (4, 4) and all(t == 4 for _, t in seen)


def test_cancel_stops_and_removes_hooks(saved_models, tokenizer):
    loaded = load_moe_model(saved_models["mixtral"], device="cpu")
    chunks = []

    def cancel(done, total, message):
        raise Cancelled("stopped by test")

    with pytest.raises(Cancelled):
        capture_routing(loaded, tokenizer, CORPUS, sink=chunks.append, batch_size=1, seq_len=16, progress=cancel)
    assert len(chunks) == 1  # whole batches only
    assert all(len(m.router._forward_hooks) == 0 for m in loaded.moe_layers)


def test_tokenizer_from_model_folder(saved_models, tokenizer, tmp_path):
    folder = tmp_path / "with_tok"
    model = AutoModelForCausalLM.from_pretrained(saved_models["qwen3_moe"], local_files_only=True)
    model.save_pretrained(folder, safe_serialization=True)
    PreTrainedTokenizerFast(tokenizer_object=tokenizer).save_pretrained(folder)
    loaded = load_moe_model(folder, device="cpu")
    by_folder, frame_a, _ = _capture(loaded, None)
    tok_file = tmp_path / "tokenizer.json"
    tokenizer.save(str(tok_file))
    by_file, frame_b, _ = _capture(loaded, tok_file)
    assert by_folder.n_tokens == by_file.n_tokens > 0
    np.testing.assert_array_equal(frame_a["expert"], frame_b["expert"])


def test_bf16_checkpoint_loads_as_float32_on_cpu(saved_models, tokenizer, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(saved_models["olmoe"], local_files_only=True).to(torch.bfloat16)
    model.save_pretrained(tmp_path, safe_serialization=True)
    loaded = load_moe_model(tmp_path, device="cpu")
    assert next(loaded.model.parameters()).dtype == torch.float32 and not loaded.model.training
    summary, frame, _ = _capture(loaded, tokenizer, docs=CORPUS[:1])
    assert summary.n_rows == len(frame) > 0


def test_model_without_tokenizer_needs_one(saved_models):
    loaded = load_moe_model(saved_models["mixtral"], device="cpu")
    with pytest.raises(RoutingError, match="no tokenizer"):
        capture_routing(loaded, None, CORPUS, sink=lambda f: None)


@pytest.mark.parametrize("model_type", list(EXTRA_CONFIGS))
def test_other_families_follow_the_same_convention(model_type, tokenizer):
    model = _build(model_type, EXTRA_CONFIGS[model_type])
    family = families.family_for(model_type)
    moe_layers = families.find_moe_layers(model, family)
    assert moe_layers and all(m.n_experts == 8 and m.top_k == 2 for m in moe_layers)
    spy = _ExpertsSpy(moe_layers)
    try:
        _, frame, _ = _capture(model, tokenizer, docs=CORPUS[:2])
    finally:
        spy.remove()
    for moe in moe_layers:
        ran = torch.cat([c[1] for c in spy.calls[moe.layer]]).numpy()
        np.testing.assert_array_equal(np.sort(capture.layer_arrays(frame, moe.layer).expert_ids, 1), np.sort(ran, 1))


# ----------------------------------------------------------------------------- bad input


def test_folder_without_config_or_weights(tmp_path, saved_models):
    with pytest.raises(RoutingError, match="does not exist"):
        load_moe_model(tmp_path / "missing")
    with pytest.raises(RoutingError, match="no config.json"):
        load_moe_model(tmp_path)
    (tmp_path / "config.json").write_text((saved_models["mixtral"] / "config.json").read_text())
    with pytest.raises(RoutingError, match="no weights"):
        load_moe_model(tmp_path)


def test_pickled_weights_are_refused(tmp_path, saved_models):
    (tmp_path / "config.json").write_text((saved_models["mixtral"] / "config.json").read_text())
    model = AutoModelForCausalLM.from_pretrained(saved_models["mixtral"], local_files_only=True)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(RoutingError, match="convert"):
        load_moe_model(tmp_path)


def test_remote_code_checkpoints_are_refused_without_suggesting_remote_code(tmp_path):
    """A config with an auto_map needs the checkpoint's own Python: refused, and the message says
    ScaleScope never runs it instead of passing on transformers' advice to enable remote code."""
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "my_moe", "architectures": ["MyMoe"],
        "auto_map": {"AutoConfig": "cfg.MyConfig", "AutoModelForCausalLM": "model.MyMoe"}}))
    (tmp_path / "cfg.py").write_text("raise SystemExit('remote code ran')\n")
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(RoutingError, match="never runs code from a checkpoint") as exc:
        load_moe_model(tmp_path)
    assert "trust_remote_code" not in str(exc.value) and "\n" not in str(exc.value)


def test_dense_models_are_refused(tmp_path):
    dense = AutoModelForCausalLM.from_config(AutoConfig.for_model("llama", **COMMON))
    dense.save_pretrained(tmp_path / "llama", safe_serialization=True)
    with pytest.raises(RoutingError, match="not a supported mixture-of-experts"):
        load_moe_model(tmp_path / "llama")
    overrides = dict(FAMILY_CONFIGS["qwen2_moe"][0], mlp_only_layers=[0, 1, 2])  # every layer dense
    _build("qwen2_moe", overrides).save_pretrained(tmp_path / "qwen_dense", safe_serialization=True)
    with pytest.raises(RoutingError, match="no MoE layers"):
        load_moe_model(tmp_path / "qwen_dense")


@pytest.mark.parametrize(
    "docs, message",
    [
        ([], "empty"),
        ([("", "a"), ("   ", "b")], "no text"),
        ([("fine", "a"), (b"caf\xe9", "b")], "not valid UTF-8"),
        ([("caf\udce9", "a")], "not valid UTF-8"),
        (["just text"], "pair"),
    ],
)
def test_bad_corpus_is_refused_before_anything_is_stored(docs, message, saved_models, tokenizer):
    loaded = load_moe_model(saved_models["mixtral"], device="cpu")
    chunks = []
    with pytest.raises(InputError, match=message):
        capture_routing(loaded, tokenizer, docs, sink=chunks.append)
    assert chunks == []


def test_token_ids_beyond_the_model_vocabulary(saved_models):
    class HugeIds:
        def encode(self, text):
            return [VOCAB + 5]

    loaded = load_moe_model(saved_models["mixtral"], device="cpu")
    with pytest.raises(InputError, match="embeddings"):
        capture_routing(loaded, HugeIds(), [("x", "a")], sink=lambda f: None)


def test_read_text_files(tmp_path):
    (tmp_path / "good.txt").write_text("hello world", encoding="utf-8")
    (tmp_path / "bad.txt").write_bytes("café".encode("latin-1"))
    docs = capture.read_text_files([tmp_path / "good.txt"], ["prose"])
    assert docs == [("hello world", "prose")]
    assert capture.read_text_files([tmp_path / "good.txt"]) == [("hello world", "good")]
    with pytest.raises(InputError, match="not valid UTF-8"):
        capture.read_text_files([tmp_path / "good.txt", tmp_path / "bad.txt"])


# ----------------------------------------------------------------------------- traces


def test_trace_round_trip_parquet_and_csv(saved_models, tokenizer, tmp_path):
    loaded = load_moe_model(saved_models["olmoe"], device="cpu")
    summary, frame, _ = _capture(loaded, tokenizer)
    frame.to_parquet(tmp_path / "t.parquet")
    frame.to_csv(tmp_path / "t.csv", index=False)
    for name in ("t.parquet", "t.csv"):
        back = capture.read_trace(tmp_path / name, n_experts=8)
        for column in ("layer", "doc_id", "position", "token_id", "rank", "expert"):
            assert back[column].dtype == np.int32
            np.testing.assert_array_equal(back[column], frame[column])
        np.testing.assert_allclose(back["weight"], frame["weight"], rtol=1e-6)
        assert list(back["domain"].astype(str)) == list(frame["domain"].astype(str))
        info = capture.trace_summary(back)
        assert (info.layers, info.n_experts, info.top_k, info.n_tokens) == (
            summary.layers, 8, 2, summary.n_tokens)


def _trace(**changes):
    frame = pd.DataFrame(
        {"layer": [0, 0], "doc_id": [0, 0], "position": [0, 0], "token_id": [5, 5], "domain": ["a", "a"],
         "rank": [0, 1], "expert": [3, 1], "weight": [0.7, 0.3]}
    )
    for column, values in changes.items():
        frame[column] = values
    return frame


@pytest.mark.parametrize(
    "frame, message",
    [
        (_trace().drop(columns=["expert"]), "lacks column"),
        (_trace(expert=[-1, 2]), "between 0"),
        (_trace(expert=[9, 2]), "below n_experts"),
        (_trace(rank=[0, 0]), "repeats"),
        (_trace(weight=[0.5, float("nan")]), "finite"),
        (_trace(position=[0.5, 0.5]), "whole numbers"),
        (_trace(rank=[0, 2]), "all ranks"),
    ],
)
def test_bad_traces_are_refused(frame, message, tmp_path):
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError, match=message):
        capture.read_trace(path, n_experts=8)


def test_trace_file_problems(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        capture.read_trace(tmp_path / "none.csv")
    (tmp_path / "x.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(InputError, match="neither"):
        capture.read_trace(tmp_path / "x.json")


def test_pick_device_order():
    assert capture.pick_device("cpu").type == "cpu"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        expected = "mps"
    assert capture.pick_device().type == expected
