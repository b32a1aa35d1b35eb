"""Hugging Face Trainer ``trainer_state.json`` (its ``log_history``), sized by the ``config.json`` beside it.

``log_history`` is a list of dicts, one per logging event: training entries (loss, grad_norm,
learning_rate, epoch), evaluation entries (eval_loss, eval_runtime, ...), and a last summary entry
(train_runtime, train_loss, total_flos). Every numeric key except ``step`` becomes a metric at that
entry's step; ``num_input_tokens_seen`` (logged when ``include_num_input_tokens_seen`` is on) gives
the tokens of each point, and ``train_runtime`` (on training entries in recent versions) its wall time.

Parameter counts come from the model config alone (:func:`count_params_from_config`), never by
instantiating weights: an uploaded config may describe a 70B model. Never read training_args.bin:
it is a pickle.
"""
from __future__ import annotations

import json
import math
import os
import re
from dataclasses import asdict, dataclass
from typing import Optional

import numpy as np

from core.errors import InputError
from importers.base import ParsedRun
from importers.derive import check_unique_names, finish_run, metrics_frame
from importers.safety import clean_name, member_label, read_text

STATE_FILE = "trainer_state.json"
CONFIG_FILE = "config.json"
TOKENS_KEY = "num_input_tokens_seen"
RUNTIME_KEY = "train_runtime"
_CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")
# trainer_state.json fields worth keeping with the run (all small scalars).
STATE_FIELDS = ("global_step", "max_steps", "num_train_epochs", "train_batch_size", "logging_steps", "eval_steps",
                "save_steps", "total_flos", "best_metric", "epoch")
# config.json fields worth keeping with the run.
CONFIG_FIELDS = ("model_type", "architectures", "hidden_size", "n_embd", "num_hidden_layers", "n_layer",
                 "num_attention_heads", "n_head", "num_key_value_heads", "intermediate_size", "n_inner",
                 "moe_intermediate_size", "vocab_size", "max_position_embeddings", "n_positions",
                 "num_local_experts", "num_experts", "num_experts_per_tok", "tie_word_embeddings", "torch_dtype", "dtype")


# ---------------------------------------------------------------------------------------------
# parameter counts from a config

@dataclass
class ParamCount:
    n_params: int                 # every parameter, embeddings included (tied matrices once)
    n_nonembedding_params: int    # without token/position embeddings and an untied output head (Kaplan's N)
    n_active_params: int          # used per token: all for dense, shared + top_k experts for MoE
    n_experts: Optional[int]      # routed experts per MoE layer; None for dense
    top_k: Optional[int]          # experts chosen per token; None for dense
    arch: str                     # "dense" or "moe"


def _get(cfg: dict, *keys, default=None):
    for key in keys:
        if cfg.get(key) is not None:
            return cfg[key]
    return default


def _llama_like(cfg: dict) -> ParamCount:
    """Llama, Mistral, Qwen2, Mixtral, OLMoE, Qwen2-MoE, Qwen3-MoE: RMSNorm, gated MLP, GQA attention."""
    model_type = cfg.get("model_type", "llama")
    h = int(cfg["hidden_size"])
    n_layers = int(cfg["num_hidden_layers"])
    n_heads = int(cfg["num_attention_heads"])
    n_kv = int(_get(cfg, "num_key_value_heads", default=n_heads))
    head_dim = int(_get(cfg, "head_dim", default=h // n_heads))
    vocab = int(cfg["vocab_size"])
    tied = bool(cfg.get("tie_word_embeddings", False))

    q, kv, o = n_heads * head_dim, n_kv * head_dim, n_heads * head_dim
    attn = h * q + 2 * h * kv + o * h                      # q, k, v, o projections
    if model_type in ("qwen2", "qwen2_moe"):
        if cfg.get("qkv_bias", True):
            attn += q + 2 * kv                              # Qwen2: biases on q, k, v only
    elif cfg.get("attention_bias", False):
        attn += q + 2 * kv + h                              # biases on q, k, v and o
    if model_type == "olmoe":
        attn += h + (h // n_heads) * n_kv                   # q_norm over hidden, k_norm over kv width
    elif model_type == "qwen3_moe":
        attn += 2 * head_dim                                # q_norm, k_norm over one head

    def gated_mlp(width: int) -> int:
        return 3 * h * width + (2 * width + h if cfg.get("mlp_bias", False) else 0)

    n_experts = _get(cfg, "num_local_experts", "num_experts", "n_routed_experts")
    n_experts = int(n_experts) if n_experts else 0
    top_k = int(_get(cfg, "num_experts_per_tok", default=0))
    norms = 2 * h                                           # input and post-attention RMSNorm
    total_layers = active_layers = 0
    for layer in range(n_layers):
        sparse = n_experts > 0 and model_type in ("mixtral", "olmoe", "qwen2_moe", "qwen3_moe")
        if sparse and model_type in ("qwen2_moe", "qwen3_moe"):
            sparse = layer not in (cfg.get("mlp_only_layers") or []) and (layer + 1) % int(
                cfg.get("decoder_sparse_step", 1) or 1) == 0
        if sparse:
            width = int(_get(cfg, "moe_intermediate_size", "intermediate_size"))
            expert = gated_mlp(width)
            router = h * n_experts
            shared = 0
            if model_type == "qwen2_moe" and cfg.get("shared_expert_intermediate_size"):
                shared = gated_mlp(int(cfg["shared_expert_intermediate_size"])) + h  # + its sigmoid gate
            total_layers += attn + norms + router + shared + n_experts * expert
            active_layers += attn + norms + router + shared + top_k * expert
        else:
            dense = attn + norms + gated_mlp(int(cfg["intermediate_size"]))
            total_layers += dense
            active_layers += dense
    embed = vocab * h
    head = 0 if tied else vocab * h
    final_norm = h
    moe = n_experts > 0 and total_layers != active_layers
    return ParamCount(
        n_params=embed + head + total_layers + final_norm,
        n_nonembedding_params=total_layers + final_norm,
        n_active_params=embed + head + active_layers + final_norm,
        n_experts=n_experts if moe else None,
        top_k=top_k if moe else None,
        arch="moe" if moe else "dense",
    )


def _gpt2(cfg: dict) -> ParamCount:
    """GPT-2: learned positions, LayerNorm with bias, Conv1D projections with bias, tied head."""
    h = int(_get(cfg, "n_embd", "hidden_size"))
    n_layers = int(_get(cfg, "n_layer", "num_hidden_layers"))
    inner = int(_get(cfg, "n_inner", default=4 * h))
    vocab = int(cfg["vocab_size"])
    positions = int(_get(cfg, "n_positions", "max_position_embeddings", default=1024))
    layer = (2 * h) + (h * 3 * h + 3 * h) + (h * h + h) + (2 * h) + (h * inner + inner) + (inner * h + h)
    body = n_layers * layer + 2 * h  # + final LayerNorm
    embed = vocab * h + positions * h
    head = 0 if cfg.get("tie_word_embeddings", True) else vocab * h
    total = embed + head + body
    return ParamCount(total, body, total, None, None, "dense")


def _gpt_neox(cfg: dict) -> ParamCount:
    """GPT-NeoX / Pythia: rotary positions, LayerNorm with bias, fused QKV with bias, untied head."""
    h = int(cfg["hidden_size"])
    n_layers = int(cfg["num_hidden_layers"])
    inner = int(_get(cfg, "intermediate_size", default=4 * h))
    vocab = int(cfg["vocab_size"])
    bias = bool(cfg.get("attention_bias", True))
    attn = h * 3 * h + h * h + ((3 * h + h) if bias else 0)
    mlp = h * inner + inner + inner * h + h
    body = n_layers * (attn + mlp + 4 * h) + 2 * h  # two LayerNorms per layer, one final
    embed = vocab * h
    head = 0 if cfg.get("tie_word_embeddings", False) else vocab * h
    total = embed + head + body
    return ParamCount(total, body, total, None, None, "dense")


_FAMILIES = {
    "llama": _llama_like, "mistral": _llama_like, "qwen2": _llama_like, "mixtral": _llama_like,
    "olmoe": _llama_like, "qwen2_moe": _llama_like, "qwen3_moe": _llama_like,
    "gpt2": _gpt2, "gpt_neox": _gpt_neox,
}
SUPPORTED_MODEL_TYPES = tuple(_FAMILIES)


def count_params_from_config(config: dict) -> ParamCount:
    """Parameter counts of a Hugging Face model config (a config.json dict) without building the model.

    Supports model_type llama, mistral, qwen2, mixtral, olmoe, qwen2_moe, qwen3_moe, gpt2, gpt_neox.
    Raises InputError for another model_type or a config missing a needed field.
    """
    model_type = str(config.get("model_type", ""))
    family = _FAMILIES.get(model_type)
    if family is None:
        raise InputError(
            f"cannot count parameters of model_type {model_type!r}; supported: {', '.join(SUPPORTED_MODEL_TYPES)} "
            f"(enter the sizes by hand instead)"
        )
    try:
        return family(config)
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise InputError(f"config.json for {model_type} lacks or mistypes a size field ({exc}); upload the model's full config.json")


# ---------------------------------------------------------------------------------------------
# trainer_state.json

def _load_json(path: str, what: str) -> dict:
    text = read_text(path, what)
    try:
        doc = json.loads(text)  # NaN/Infinity literals parse to floats; checked per entry below
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON ({' '.join(str(exc).split())[:120]}); the file may be truncated, copy it again")
    if not isinstance(doc, dict):
        raise InputError(f"{what} is JSON but not an object; upload the trainer_state.json a Trainer checkpoint holds")
    return doc


def is_trainer_state(doc: dict) -> bool:
    return isinstance(doc, dict) and "log_history" in doc


def is_model_config(doc: dict) -> bool:
    return isinstance(doc, dict) and ("model_type" in doc or "architectures" in doc) and "log_history" not in doc


def _points(state: dict, what: str) -> tuple:
    history = state.get("log_history")
    if not isinstance(history, list):
        raise InputError(f"{what}: log_history is not a list; upload the trainer_state.json a Trainer checkpoint wrote")
    names, steps, tokens, walls, values = [], [], [], [], []
    for n, entry in enumerate(history, start=1):
        if not isinstance(entry, dict):
            raise InputError(f"{what}: log_history entry {n} is not an object; the file is damaged, copy it again")
        step = entry.get("step")
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step):
            raise InputError(f"{what}: log_history entry {n} has no numeric step; the file is damaged, copy it again")
        if step < 0:
            raise InputError(f"{what}: log_history entry {n} has a negative step ({step}); steps must be zero or more")
        seen_tokens = entry.get(TOKENS_KEY)
        seen_tokens = float(seen_tokens) if isinstance(seen_tokens, (int, float)) and not isinstance(seen_tokens, bool) else np.nan
        runtime = entry.get(RUNTIME_KEY)  # seconds since train() began, on training entries
        runtime = float(runtime) if isinstance(runtime, (int, float)) and not isinstance(runtime, bool) else np.nan
        for key, value in entry.items():
            if key in ("step", TOKENS_KEY) or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue  # strings and lists (e.g. a callback's notes) are not metrics
            if not math.isfinite(value):
                raise InputError(
                    f"{what}: log_history entry {n} (step {step}) has {key} = {value}; "
                    f"remove that entry or re-run with finite values"
                )
            names.append(clean_name(key, f"{what}: metric name"))
            steps.append(float(step))
            tokens.append(seen_tokens)
            walls.append(runtime)
            values.append(float(value))
    if not values:
        raise InputError(f"{what} has an empty log_history; save a checkpoint after at least one logging step")
    return names, steps, tokens, walls, values


def parse_state(state_path: str, config_path: Optional[str], name: str, what: str, source_file: str) -> ParsedRun:
    state = _load_json(state_path, what)
    if not is_trainer_state(state):
        raise InputError(f"{what} has no log_history; upload the trainer_state.json a Trainer checkpoint holds")
    names, steps, tokens, walls, values = _points(state, what)
    run = ParsedRun(name=name, source_format="hf_trainer", source_file=source_file)
    run.metrics = metrics_frame(np.asarray(names, dtype=object), steps, values, tokens=tokens, wall_time=walls)
    run.config = {"trainer": {k: state[k] for k in STATE_FIELDS if k in state and not isinstance(state[k], (dict, list))}}
    if config_path is not None:
        cfg_what = f"{what} (its config.json)"
        cfg = _load_json(config_path, cfg_what)
        run.config["model"] = {k: cfg[k] for k in CONFIG_FIELDS if k in cfg}
        if cfg.get("model_type") in _FAMILIES:
            counts = count_params_from_config(cfg)
            for key, value in asdict(counts).items():
                setattr(run, key, value)
    return finish_run(run, what)


def run_dir_of(rel_state: str) -> str:
    """'out/checkpoint-500/trainer_state.json' -> 'out' (checkpoints of one run share its folder)."""
    rel_dir = os.path.dirname(rel_state)
    if _CHECKPOINT_DIR.match(os.path.basename(rel_dir)):
        rel_dir = os.path.dirname(rel_dir)
    return rel_dir


def _global_step(path: str) -> float:
    try:
        with open(path, "rb") as fh:
            return float(json.loads(fh.read().decode("utf-8-sig")).get("global_step", -1))
    except (ValueError, UnicodeDecodeError, AttributeError, TypeError):
        return -1.0  # parse_state reports what is wrong with it


def find_config(root: str, rel_state: str, rel_files: list[str]) -> Optional[str]:
    """config.json beside the state, else in the run folder, else the only one in the upload."""
    rel_dir = os.path.dirname(rel_state)
    for candidate in (os.path.join(rel_dir, CONFIG_FILE), os.path.join(run_dir_of(rel_state), CONFIG_FILE)):
        if candidate in rel_files:
            return os.path.join(root, candidate)
    configs = [r for r in rel_files if os.path.basename(r) == CONFIG_FILE]
    return os.path.join(root, configs[0]) if len(configs) == 1 else None


def parse_folder(root: str, rel_files: list[str], root_name: str, what: str, source_file: str) -> list[ParsedRun]:
    """A run per folder holding trainer_state.json files; of a run's checkpoints the latest is read
    (its log_history holds every earlier entry)."""
    by_run: dict[str, list[str]] = {}
    for rel in rel_files:
        if os.path.basename(rel) == STATE_FILE:
            by_run.setdefault(run_dir_of(rel), []).append(rel)
    runs = []
    for rel_dir in sorted(by_run):
        latest = max(by_run[rel_dir], key=lambda r: (_global_step(os.path.join(root, r)), r))
        name = rel_dir.replace(os.sep, "/") if rel_dir else root_name
        runs.append(parse_state(
            os.path.join(root, latest), find_config(root, latest, rel_files), name,
            member_label(what, latest), member_label(source_file, latest),
        ))
    check_unique_names(runs, what)
    return runs


def parse(path: str, default_run: str, what: str, source_file: str) -> list[ParsedRun]:
    """A single trainer_state.json; a config.json in the same folder sizes it."""
    config = os.path.join(os.path.dirname(path), CONFIG_FILE)
    return [parse_state(path, config if os.path.isfile(config) else None, default_run, what, source_file)]
