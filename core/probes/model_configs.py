"""Model shapes for probes: a Llama-style dense config and a Qwen3-MoE config, sized to a target.

A :class:`ModelShape` is the few numbers that decide a model; ``hf_config`` turns it into a
transformers config (``LlamaConfig`` for dense, ``Qwen3MoeConfig`` for MoE) and ``build_model``
into a randomly initialised causal LM. ``count_params`` gives the exact total, embedding,
non-embedding (Kaplan et al. 2020's N) and active (per-token, MoE) counts from the shape alone;
tests check them against the built module.

Conventions. Input and output embeddings are tied by default: the one V×d matrix is then both the
lookup and the unembedding matmul, so 6·N_active·D counts the unembedding's compute (which
dominates tiny models) without counting the free lookup. Non-embedding counts exclude every V×d
matrix (tied or not), as Kaplan et al. 2020 §2 do.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Optional

import torch

from core.errors import ProbeError

ASPECT_RATIO = 64  # d_model / n_layers that shapes aim for: GPT-2 small's 768/12; Kaplan et al. 2020
#                    Fig. 5 finds loss within a few % over aspect ratios 20-200, so one ratio will do
MOE_AUX_LOSS_COEF = 0.01  # load-balancing loss weight α of Switch Transformer (Fedus et al. 2022 §2.2)


@dataclass(frozen=True)
class ModelShape:
    d_model: int  # residual width d
    n_layers: int  # decoder blocks
    n_heads: int  # query heads; head_dim = d_model // n_heads
    d_ff: int  # SwiGLU hidden width: the dense MLP's, or EACH expert's for MoE
    vocab_size: int  # rows of the (tied) embedding: the tokenizer's vocabulary
    seq_len: int  # context length trained on (RoPE: no position parameters, sets FLOPs of attention)
    n_kv_heads: Optional[int] = None  # key/value heads (GQA); None = n_heads (plain multi-head)
    n_experts: int = 0  # experts per MoE layer; 0 = dense
    top_k: int = 0  # experts each token is routed to (MoE only)
    tie_embeddings: bool = True  # share input embedding and LM head (see module note)

    @property
    def arch(self) -> str:
        return "moe" if self.n_experts > 0 else "dense"

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    def as_dict(self) -> dict:
        return asdict(self)

    def validate(self) -> "ModelShape":
        if min(self.d_model, self.n_layers, self.n_heads, self.d_ff, self.vocab_size, self.seq_len) < 1:
            raise ProbeError(f"Model shape {self} has a zero or negative size; every dimension must be ≥ 1.")
        if self.d_model % self.n_heads:
            raise ProbeError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}; "
                             "pick a head count that divides the width.")
        if self.n_heads % self.kv_heads:
            raise ProbeError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.kv_heads}.")
        if self.n_experts < 0 or (self.n_experts > 0 and not 1 <= self.top_k <= self.n_experts):
            raise ProbeError(f"top_k {self.top_k} must lie in 1..n_experts ({self.n_experts}) for an MoE shape.")
        return self


@dataclass(frozen=True)
class ParamCounts:
    total: int  # every parameter, the tied embedding once
    embedding: int  # V×d matrices: the embedding, plus the LM head when untied
    nonembedding: int  # total − embedding: Kaplan et al. 2020's N
    active: int  # used per token: total minus the (E − k) experts a token skips; = total for dense

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(shape: ModelShape) -> ParamCounts:
    """Exact parameter counts of ``build_model(shape)``, from the shape alone."""
    s = shape.validate()
    d, hd = s.d_model, s.head_dim
    attn = d * s.n_heads * hd + 2 * d * s.kv_heads * hd + s.n_heads * hd * d  # q, k, v, o (no biases)
    norms = 2 * d  # input and post-attention RMSNorm weights
    if s.arch == "moe":
        attn += 2 * hd  # Qwen3's per-head q_norm and k_norm
        expert = 3 * d * s.d_ff  # gate, up, down of one SwiGLU expert
        ffn_total = s.n_experts * expert + s.n_experts * d  # experts + router
        ffn_active = s.top_k * expert + s.n_experts * d  # the router runs for every expert logit
    else:
        ffn_total = ffn_active = 3 * d * s.d_ff
    embedding = s.vocab_size * d * (1 if s.tie_embeddings else 2)
    total = embedding + s.n_layers * (attn + norms + ffn_total) + d  # + final norm
    active = total - s.n_layers * (ffn_total - ffn_active)
    return ParamCounts(total=total, embedding=embedding, nonembedding=total - embedding, active=active)


def count_model_params(model: torch.nn.Module) -> ParamCounts:
    """The same counts read off a built module (shared tensors once), for checking count_params."""
    seen, total, embedding, inactive = set(), 0, 0, 0
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if "embed_tokens" in name or name.startswith("lm_head"):
            embedding += p.numel()
    cfg = model.config
    n_experts = getattr(cfg, "num_experts", 0) or 0
    if n_experts:
        for module in model.modules():
            if type(module).__name__.endswith("Experts"):
                expert_params = sum(p.numel() for p in module.parameters())
                inactive += expert_params * (n_experts - cfg.num_experts_per_tok) // n_experts
    return ParamCounts(total=total, embedding=embedding, nonembedding=total - embedding, active=total - inactive)


def hf_config(shape: ModelShape, eos_token_id: int = 0):
    """A transformers config: LlamaConfig (dense) or Qwen3MoeConfig (MoE) for ``shape``."""
    s = shape.validate()
    common = dict(
        vocab_size=s.vocab_size,
        hidden_size=s.d_model,
        num_hidden_layers=s.n_layers,
        num_attention_heads=s.n_heads,
        num_key_value_heads=s.kv_heads,
        head_dim=s.head_dim,  # Qwen3's default is 128 whatever the width: always set it
        max_position_embeddings=s.seq_len,
        tie_word_embeddings=s.tie_embeddings,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=eos_token_id,
        use_cache=False,  # training and scoring only; no generation cache
    )
    if s.arch == "dense":
        from transformers import LlamaConfig

        return LlamaConfig(intermediate_size=s.d_ff, **common)
    from transformers import Qwen3MoeConfig

    return Qwen3MoeConfig(
        intermediate_size=s.d_ff,  # only for dense layers, of which there are none
        moe_intermediate_size=s.d_ff,
        num_experts=s.n_experts,
        num_experts_per_tok=s.top_k,
        norm_topk_prob=True,  # top-k weights sum to 1, as in Mixtral and OLMoE-style routers
        decoder_sparse_step=1,  # every layer is MoE
        mlp_only_layers=[],
        router_aux_loss_coef=MOE_AUX_LOSS_COEF,
        output_router_logits=True,  # train with the load-balancing loss
        **common,
    )


def build_model(shape: ModelShape, seed: int = 0, attn_implementation: str = "sdpa",
                experts_implementation: Optional[str] = None, eos_token_id: int = 0):
    """A randomly initialised transformers causal LM for ``shape`` (deterministic for ``seed``).

    ``attn_implementation="eager"`` and ``experts_implementation="eager"`` make every matmul a
    plain mm/bmm, which FlopCounterMode counts (CPU SDPA and grouped_mm are not counted).
    """
    from transformers import AutoModelForCausalLM

    cfg = hf_config(shape, eos_token_id)
    kwargs = {"attn_implementation": attn_implementation}
    if shape.arch == "moe" and experts_implementation:
        kwargs["experts_implementation"] = experts_implementation
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(cfg, **kwargs)


def dense_ff(d_model: int) -> int:
    """SwiGLU width 8/3·d (Shazeer 2020; LLaMA, Touvron et al. 2023), rounded up to a multiple of 32."""
    return int(math.ceil(8 * d_model / 3 / 32) * 32)


def shape_for_params(target: float, arch: str = "dense", vocab_size: int = 4096, seq_len: int = 128,
                     n_experts: int = 8, top_k: int = 2, by: str = "active") -> ModelShape:
    """The shape whose ``by`` count ("active", "total" or "nonembedding") is closest to ``target``.

    Widths step by the head size (d = 16 with one 16-wide head, then 32s below d = 512, 64s to
    1024, 128s beyond); depth is d/ASPECT_RATIO
    ± 1 layer; the score is |log(N/target)| plus a small penalty for leaving ASPECT_RATIO, so
    neighbouring targets get neighbouring, regular shapes. MoE experts are
    fine-grained: each is 1/top_k of the dense SwiGLU width, so a token's expert compute equals
    the dense model's of the same width (granularity top_k, Krajewski et al. 2024).
    """
    if arch not in ("dense", "moe"):
        raise ProbeError(f"Unknown architecture {arch!r}; use dense or moe.")
    if by not in ("active", "total", "nonembedding"):
        raise ProbeError(f"Unknown parameter count {by!r}; use active, total or nonembedding.")
    if not target or target <= 0 or not math.isfinite(target):
        raise ProbeError(f"Target parameter count must be a positive number, got {target!r}.")
    best, best_score = None, math.inf
    # d = 16 exists for tiny budgets: with a 4096-token vocabulary the tied embedding is most of any
    # small model, and the demo sweep's lowest IsoFLOP curves bottom out below d = 32
    for d in [16] + list(range(32, 512, 32)) + list(range(512, 1024, 64)) + list(range(1024, 8193, 128)):
        head = 16 if d == 16 else 32 if d < 512 else 64
        aim = max(1, round(d / ASPECT_RATIO))
        for n_layers in (aim - 1, aim, aim + 1):
            ratio = d / max(n_layers, 1)
            if n_layers < 1 or (n_layers > 1 and not 32 <= ratio <= 128):
                continue
            ff = dense_ff(d)
            if arch == "moe":
                ff = max(16, int(math.ceil(ff / top_k / 16) * 16))
            shape = ModelShape(d, n_layers, d // head, ff, vocab_size, seq_len,
                               n_experts=n_experts if arch == "moe" else 0, top_k=top_k if arch == "moe" else 0)
            n = getattr(count_params(shape), by)
            score = abs(math.log(n / target)) + 0.1 * abs(math.log2(ratio / ASPECT_RATIO))
            if score < best_score:
                best, best_score = shape, score
    smallest = getattr(count_params(ModelShape(16, 1, 1, dense_ff(16), vocab_size, seq_len,
                                               n_experts=n_experts if arch == "moe" else 0,
                                               top_k=top_k if arch == "moe" else 0)), by)
    if target < 0.7 * smallest:
        raise ProbeError(f"No {arch} model has as few as {target:,.0f} {by} parameters with a "
                         f"{vocab_size}-token vocabulary (smallest: {smallest:,}); ask for a larger size.")
    return best


def with_seq_len(shape: ModelShape, seq_len: int) -> ModelShape:
    return replace(shape, seq_len=seq_len)
