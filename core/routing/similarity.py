"""How alike the experts of one MoE layer are: by weights, by router rows, by outputs.

Lo et al. 2024 ("A Closer Look into Mixture-of-Experts in Large Language Models") compare experts
by the cosine similarity of their weight matrices and of their router (gate) rows, and by the
similarity of their outputs on the same inputs. All matrices here are (E, E), symmetric, with 1 on
the diagonal for any expert whose weights are not all zero; an all-zero expert gets 0 everywhere.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from core.errors import InputError
from core.routing import families
from core.routing.families import MoeLayer


def cosine_similarity_matrix(vectors) -> np.ndarray:
    """Pairwise cosine similarity of the rows of an (E, D) array (each expert flattened), (E, E)."""
    if isinstance(vectors, torch.Tensor):
        vectors = vectors.detach().float().cpu().numpy()
    x = np.asarray(vectors, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)  # (E, D)
    norms = np.linalg.norm(x, axis=1, keepdims=True)  # (E, 1)
    unit = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    sim = np.clip(unit @ unit.T, -1.0, 1.0)  # (E, E)
    nonzero = norms[:, 0] > 0
    sim[np.diag_indices_from(sim)] = np.where(nonzero, 1.0, 0.0)  # exact 1, not 1 − rounding
    return sim


def expert_weight_similarity(layer: MoeLayer) -> dict[str, np.ndarray]:
    """Cosine similarity of flattened expert matrices, separately for "gate", "up" and "down".

    Lo et al. 2024, analysis of static parameters (expert weight matrices). Fused transformers 5.x
    layouts are split by :func:`core.routing.families.expert_weights`; ungated experts give no
    "gate" entry."""
    return {name: cosine_similarity_matrix(w.reshape(w.shape[0], -1)) for name, w in families.expert_weights(layer).items()}


def router_similarity(layer: MoeLayer) -> np.ndarray:
    """Cosine similarity of the router's rows (one per expert), (E, E) (Lo et al. 2024, analysis
    of static parameters: gate embeddings): experts whose rows point the same way get the same tokens."""
    return cosine_similarity_matrix(families.router_weight(layer))


@torch.inference_mode()
def expert_output_similarity(layer: MoeLayer, hidden) -> np.ndarray:
    """Mean over tokens of the cosine between two experts' outputs on the same hidden state, (E, E).

    Lo et al. 2024, analysis of dynamic behaviours (outputs of experts on the same inputs). ``hidden`` (N, H) are
    inputs of this layer's experts, e.g. from :func:`moe_layer_inputs`; every expert is applied
    to every token (routing ignored), before its routing weight."""
    x = torch.as_tensor(hidden)
    if x.dim() != 2 or x.shape[0] == 0:
        raise InputError(f"hidden states must be a non-empty (tokens, hidden) array, got shape {tuple(x.shape)}")
    outputs = torch.stack([families.expert_forward(layer, e, x) for e in range(layer.n_experts)]).double()  # (E, N, H)
    norms = outputs.norm(dim=-1, keepdim=True)  # (E, N, 1)
    unit = torch.where(norms > 0, outputs / norms.clamp_min(1e-300), torch.zeros_like(outputs))
    sim = torch.einsum("anh,bnh->ab", unit, unit) / x.shape[0]  # (E, E)
    sim = sim.clamp(-1.0, 1.0).cpu().numpy()
    return (sim + sim.T) / 2  # exact symmetry despite summation order


@torch.inference_mode()
def moe_layer_inputs(
    model: torch.nn.Module,
    moe_layers: Sequence[MoeLayer],
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    max_tokens: int = 512,
) -> dict[int, torch.Tensor]:
    """The hidden states each MoE layer's experts receive for a batch, {layer index: (N, H)}.

    Runs one forward pass of ``input_ids`` (B, T) with hooks on the experts modules; padding
    (``attention_mask`` 0) is dropped and at most ``max_tokens`` tokens are kept per layer."""
    if input_ids.dim() == 1:
        input_ids = input_ids[None]  # (1, T)
    device = next(model.parameters()).device
    keep = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).reshape(-1).bool()  # (B·T,)
    seen: dict[int, torch.Tensor] = {}

    def hook_for(layer: MoeLayer):
        def grab(module, args, kwargs):
            hidden = args[0] if args else kwargs["hidden_states"]
            hidden = hidden.reshape(-1, hidden.shape[-1])  # (B·T, H)
            seen[layer.layer] = hidden[keep.to(hidden.device)][:max_tokens].detach().cpu()

        return grab

    handles = [m.experts.register_forward_pre_hook(hook_for(m), with_kwargs=True) for m in moe_layers]
    try:
        mask = None if attention_mask is None else attention_mask.to(device)
        model(input_ids=input_ids.to(device), attention_mask=mask, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return seen
