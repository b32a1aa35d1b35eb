"""FLOP counts of probe models: the 6·N·D rule and a per-token count with attention.

- Training compute C ≈ 6·N·D (Kaplan et al. 2020 §2.1; Hoffmann et al. 2022 §3): 2 FLOPs per
  parameter per token forward (a multiply and an add), twice that backward. For MoE, N is the
  ACTIVE count. This is the rule sweeps record (``flops_rule``).
- A finer per-token forward count adds attention's score and value products, which have no
  parameters: per layer 2·T·d_attn for Q·Kᵀ and 2·T·d_attn for A·V, so
  forward = 2·N_matmul + 4·L·T·d_attn, training = 3 × forward — PaLM appendix B
  (Chowdhery et al. 2022: 6N + 12·L·H·Q·T per token) and Kaplan et al. 2020 Table 1. T is the
  full context: implementations that skip the masked half of the causal score matrix do half of
  the attention term, but MFU conventionally counts it whole (PaLM appendix B).

``N_matmul`` is the parameters that enter a matmul for each token: every linear weight that runs
(for MoE: the router and top-k experts), plus the unembedding; not norm weights and not the
embedding lookup (free when tied embeddings double as the LM head, counted once then).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from core.probes.model_configs import ModelShape, count_params


def training_flops(n_params: float, tokens: float) -> float:
    """C = 6·N·D (Kaplan et al. 2020 §2.1). Give the ACTIVE parameter count for MoE."""
    return 6.0 * float(n_params) * float(tokens)


def tokens_for_budget(flops: float, n_params: float) -> float:
    """D = C / (6·N): the IsoFLOP token count for a model of N (active) parameters."""
    return float(flops) / (6.0 * float(n_params))


def matmul_params(shape: ModelShape) -> int:
    """Parameters that enter a matmul per token (see module note)."""
    counts = count_params(shape)
    d = shape.d_model
    norms = shape.n_layers * 2 * d + d + (shape.n_layers * 2 * shape.head_dim if shape.arch == "moe" else 0)
    lookup = 0 if shape.tie_embeddings else shape.vocab_size * d  # untied input embedding: a gather
    return counts.active - norms - lookup


@dataclass(frozen=True)
class FlopsPerToken:
    forward: float  # FLOPs of one token's forward pass at context length seq_len
    train: float  # forward + backward = 3 × forward (PaLM appendix B)
    attention_share: float  # share of forward spent on Q·Kᵀ and A·V (grows with T/d)
    seq_len: int


def flops_per_token(shape: ModelShape, seq_len: Optional[int] = None) -> FlopsPerToken:
    """Per-token FLOPs with attention: forward = 2·N_matmul + 4·L·T·d_attn (PaLM appendix B)."""
    t = int(seq_len or shape.seq_len)
    d_attn = shape.n_heads * shape.head_dim
    attention = 4.0 * shape.n_layers * t * d_attn  # Q·Kᵀ and A·V, 2 FLOPs per multiply-add, full T
    forward = 2.0 * matmul_params(shape) + attention
    return FlopsPerToken(forward=forward, train=3.0 * forward, attention_share=attention / forward, seq_len=t)


def measured_flops(model: torch.nn.Module, input_ids: torch.Tensor, backward: bool = False) -> float:
    """FLOPs torch counts for one forward (and backward) of ``model`` on ``input_ids`` # (B, T).

    Uses ``torch.utils.flop_counter.FlopCounterMode``, which counts matmul-like ops only. Build
    the model with eager attention and eager experts (``build_model(..., "eager", "eager")``):
    CPU SDPA kernels and grouped_mm are not counted.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        out = model(input_ids=input_ids)
        if backward:
            out.logits.float().sum().backward()
    return float(counter.get_total_flops())
