"""Per-family adapters: where a transformers 5.x MoE model keeps its routers and experts.

Every MoE family transformers 5.x ships in this table builds its sparse block the same way: a
router module (``gate`` or ``router``) returns ``(router_logits, top_k_weights, top_k_index)`` and
an experts module (``experts``) is then called as ``experts(hidden, top_k_index, top_k_weights)``.
We hook the router's *output*, so we record the experts it actually selected. For softmax routers
that is the top-k of the logits; for DeepSeek-V3-style routers (sigmoid scores plus a load-balancing
bias, and group-limited choice) it is not, and recomputing top-k from the logits would be wrong.

Expert weights live in fused 3-D tensors: ``gate_up_proj`` (E, 2·I, H) holding [gate; up] and
``down_proj`` (E, H, I); a few families store them transposed or interleave gate and up rows.
:func:`expert_weights` hides those layouts and always returns (E, out_features, in_features).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from core.errors import RoutingError

# Where the router's forward output keeps each piece (transformers 5.x convention for all families).
ROUTER_LOGITS, ROUTER_WEIGHTS, ROUTER_INDICES = 0, 1, 2


@dataclass(frozen=True)
class FamilySpec:
    name: str  # stored as routing_captures.family and shown to users
    model_types: tuple[str, ...]  # config.model_type values that belong to this family
    router_scores: str  # "softmax" or "sigmoid": how the router turns logits into probabilities
    block_names: tuple[str, ...] = ("mlp", "block_sparse_moe")  # decoder-layer child holding the sparse block
    router_names: tuple[str, ...] = ("gate", "router")  # sparse-block child that routes


# Tested families first (tests/test_routing_capture.py saves and reloads a tiny model of each); the
# rest follow the same router/experts convention in transformers 5.x and get an in-memory smoke test.
FAMILIES: tuple[FamilySpec, ...] = (
    FamilySpec("mixtral", ("mixtral",), "softmax"),
    FamilySpec("olmoe", ("olmoe",), "softmax"),
    FamilySpec("qwen2_moe", ("qwen2_moe",), "softmax"),
    FamilySpec("qwen3_moe", ("qwen3_moe",), "softmax"),
    # DeepSeek-V3 and models that reuse its architecture (Kimi-K2, Moonlight) keep model_type
    # "deepseek_v3": sigmoid scores + load-balancing bias + group-limited choice.
    FamilySpec("deepseek_v3", ("deepseek_v3",), "sigmoid"),
    FamilySpec("granitemoe", ("granitemoe",), "softmax"),
    # Same hooks, checked in memory only.
    FamilySpec("glm4_moe", ("glm4_moe",), "sigmoid"),  # DeepSeek-V3-style router
    FamilySpec("dots1", ("dots1",), "sigmoid"),  # DeepSeek-V3-style router
    FamilySpec("deepseek_v2", ("deepseek_v2",), "softmax"),  # softmax, optionally group-limited
    FamilySpec("granitemoeshared", ("granitemoeshared",), "softmax"),
    FamilySpec("phimoe", ("phimoe",), "softmax"),
    FamilySpec("flex_olmo", ("flex_olmo",), "softmax"),
    FamilySpec("minimax", ("minimax",), "softmax"),
)


@dataclass
class MoeLayer:
    """One sparse block of a model, located by its decoder-layer index."""

    layer: int  # index of the decoder layer in model.layers (dense layers have no MoeLayer)
    block: nn.Module  # the sparse block (router + experts [+ shared experts])
    router: nn.Module  # returns (router_logits, top_k_weights, top_k_index)
    experts: nn.Module  # fused expert weights: gate_up_proj / up_proj and down_proj
    n_experts: int  # routed experts E (shared experts are not routed, so not counted)
    top_k: int  # experts chosen per token k


def supported_model_types() -> list[str]:
    """The config.model_type values this module knows, sorted."""
    return sorted(t for f in FAMILIES for t in f.model_types)


def family_for(model_type: str) -> FamilySpec:
    """The family adapter for a config.model_type, or RoutingError naming the supported ones."""
    for family in FAMILIES:
        if model_type in family.model_types:
            return family
    raise RoutingError(
        f"model type '{model_type}' is not a supported mixture-of-experts family; "
        f"use one of: {', '.join(supported_model_types())}"
    )


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The model's list of decoder layers (``model.model.layers`` for every family above)."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), model)
    layers = getattr(base, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise RoutingError("cannot find the decoder layers (model.model.layers) of this model; use a causal LM checkpoint")
    return layers


def _child(module: nn.Module, names: tuple[str, ...]) -> nn.Module | None:
    for name in names:
        child = getattr(module, name, None)
        if isinstance(child, nn.Module):
            return child
    return None


def find_moe_layers(model: nn.Module, family: FamilySpec) -> list[MoeLayer]:
    """Every sparse block of ``model`` with its decoder-layer index; dense layers are skipped.

    A decoder layer counts as MoE when its block has both a router and an ``experts`` module.
    Qwen2/3-MoE (``mlp_only_layers``, ``decoder_sparse_step``) and DeepSeek-V3
    (``first_k_dense_replace``) put plain MLPs in some layers: those have neither."""
    found: list[MoeLayer] = []
    config = getattr(model, "config", None)
    for index, decoder_layer in enumerate(decoder_layers(model)):
        block = _child(decoder_layer, family.block_names)
        if block is None:
            continue
        router = _child(block, family.router_names)
        experts = getattr(block, "experts", None)
        if router is None or not isinstance(experts, nn.Module):
            continue
        n_experts = getattr(experts, "num_experts", None) or _fused(experts, "down_proj").shape[0]
        top_k = getattr(router, "top_k", None) or getattr(config, "num_experts_per_tok", None)
        if not top_k:
            raise RoutingError(f"cannot tell how many experts layer {index} picks per token; set num_experts_per_tok in config.json")
        found.append(MoeLayer(index, block, router, experts, int(n_experts), int(top_k)))
    return found


def router_probabilities(family: FamilySpec, router_logits: torch.Tensor) -> torch.Tensor:
    """Router probabilities over all experts from its logits, (N, E) float32, rows summing to 1.

    softmax routers: softmax(logits) (Switch Transformer, Fedus et al. 2021, eq. 1).
    sigmoid routers: s_i = sigmoid(logit_i) normalised by Σ_j s_j, the affinity DeepSeek-V3
    (DeepSeek-AI 2024, DeepSeek-V3 report, sec. 2.1.2) uses in its sequence-wise balance loss; the load-balancing bias
    only chooses experts and is not part of it."""
    logits = router_logits.float()  # (N, E)
    if family.router_scores == "sigmoid":
        scores = torch.sigmoid(logits)
        return scores / scores.sum(dim=-1, keepdim=True).clamp_min(1e-20)
    return torch.softmax(logits, dim=-1)


def router_weight(layer: MoeLayer) -> torch.Tensor:
    """The router's projection matrix, (E, H): row e scores expert e."""
    weight = getattr(layer.router, "weight", None)
    if weight is None:
        raise RoutingError(f"the router of layer {layer.layer} has no weight matrix; router similarity is not available")
    return weight.detach()


def _fused(experts: nn.Module, name: str) -> torch.Tensor:
    tensor = getattr(experts, name, None)
    if not isinstance(tensor, torch.Tensor) or tensor.dim() != 3:
        raise RoutingError(
            f"expert module {type(experts).__name__} has no fused 3-D '{name}' tensor; "
            "this expert layout is not supported"
        )
    return tensor.detach()


def expert_weights(layer: MoeLayer) -> dict[str, torch.Tensor]:
    """Per-expert weight matrices as {"gate", "up", "down"} → (E, out_features, in_features).

    Handles transformers 5.x fused layouts: ``gate_up_proj`` (E, 2I, H) concatenated [gate; up]
    (default), interleaved [g0, u0, g1, u1, …] (``is_concatenated=False``, gpt-oss), or stored
    transposed (E, H, 2I) (``is_transposed=True``); ungated experts (``has_gate=False``) have only
    ``up_proj`` and give no "gate" entry."""
    experts = layer.experts
    transposed = bool(getattr(experts, "is_transposed", False))

    def as_out_in(t: torch.Tensor) -> torch.Tensor:
        return t.transpose(1, 2) if transposed else t  # (E, out, in)

    weights: dict[str, torch.Tensor] = {}
    if getattr(experts, "has_gate", True):
        gate_up = as_out_in(_fused(experts, "gate_up_proj"))  # (E, 2I, H)
        if getattr(experts, "is_concatenated", True):
            gate, up = gate_up.chunk(2, dim=1)  # (E, I, H) each
        else:
            gate, up = gate_up[:, 0::2], gate_up[:, 1::2]  # (E, I, H) each
        weights["gate"], weights["up"] = gate, up
    else:
        weights["up"] = as_out_in(_fused(experts, "up_proj"))  # (E, I, H)
    weights["down"] = as_out_in(_fused(experts, "down_proj"))  # (E, H, I)
    return weights


def expert_forward(layer: MoeLayer, expert: int, hidden: torch.Tensor) -> torch.Tensor:
    """One routed expert applied to hidden states (N, H) → (N, H), before the routing weight.

    Computed from :func:`expert_weights` as down(act(gate·x) ⊙ up·x) (the SwiGLU FFN of
    Shazeer 2020 that all families above use), so it is independent of the experts' kernel."""
    experts = layer.experts
    if getattr(experts, "has_bias", False) or getattr(experts, "has_post_expert_norm", False):
        raise RoutingError(f"experts of layer {layer.layer} use biases or a post-norm; per-expert outputs are not supported")
    weights = expert_weights(layer)
    act = getattr(experts, "act_fn", None)
    if act is None:
        raise RoutingError(f"experts of layer {layer.layer} have no act_fn; per-expert outputs are not supported")
    x = hidden.to(weights["down"].dtype)  # (N, H)
    up = x @ weights["up"][expert].T  # (N, I)
    inner = act(x @ weights["gate"][expert].T) * up if "gate" in weights else act(up)  # (N, I)
    return inner @ weights["down"][expert].T  # (N, H)
