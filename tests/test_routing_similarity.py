"""Expert similarity: closed forms, cloned experts, and the fused weight layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from core.errors import InputError
from core.routing import families, similarity
from core.routing.families import MoeLayer

torch.set_num_threads(1)
hf_logging.set_verbosity_error()

E, H, I = 8, 32, 48


@pytest.fixture(scope="module")
def mixtral():
    config = AutoConfig.for_model(
        "mixtral", hidden_size=H, intermediate_size=I, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, vocab_size=128, num_local_experts=E, num_experts_per_tok=2,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    return model, families.find_moe_layers(model, families.family_for("mixtral"))


def _assert_similarity_matrix(sim: np.ndarray):
    assert sim.shape == (E, E)
    np.testing.assert_allclose(sim, sim.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(sim), 1.0)
    assert (sim <= 1.0).all() and (sim >= -1.0).all()


def test_cosine_matrix_closed_forms():
    vectors = np.array([[1.0, 0, 0], [0, 2.0, 0], [-3.0, 0, 0], [0, 0, 0], [1.0, 1.0, 0]])
    sim = similarity.cosine_similarity_matrix(vectors)
    assert sim[0, 1] == 0.0 and sim[0, 2] == -1.0
    assert sim[0, 4] == pytest.approx(1 / np.sqrt(2))
    np.testing.assert_array_equal(sim[3], 0.0)  # an all-zero expert is like nothing
    np.testing.assert_array_equal(np.diag(sim), [1, 1, 1, 0, 1])


def test_weight_similarity_symmetric_diagonal_and_clones(mixtral):
    model, layers = mixtral
    layer = layers[1]
    with torch.no_grad():
        layer.experts.gate_up_proj[5] = layer.experts.gate_up_proj[2]
        layer.experts.down_proj[5] = layer.experts.down_proj[2]
        layer.router.weight[6] = layer.router.weight[1]
    sims = similarity.expert_weight_similarity(layer)
    assert set(sims) == {"gate", "up", "down"}
    for sim in sims.values():
        _assert_similarity_matrix(sim)
        assert sim[2, 5] == pytest.approx(1.0)
        assert abs(sim[0, 1]) < 0.3  # independent random matrices are nearly orthogonal
    router = similarity.router_similarity(layer)
    _assert_similarity_matrix(router)
    assert router[1, 6] == pytest.approx(1.0)


def test_gate_and_up_are_split_separately(mixtral):
    _, layers = mixtral
    layer = layers[0]
    with torch.no_grad():
        # Expert 3 keeps expert 0's gate rows but gets new up rows: gate similarity 1, up not.
        layer.experts.gate_up_proj[3, :I] = layer.experts.gate_up_proj[0, :I]
    weights = families.expert_weights(layer)
    assert weights["gate"].shape == (E, I, H) and weights["up"].shape == (E, I, H) and weights["down"].shape == (E, H, I)
    torch.testing.assert_close(weights["up"][4], layer.experts.gate_up_proj[4, I:].detach())
    sims = similarity.expert_weight_similarity(layer)
    assert sims["gate"][0, 3] == pytest.approx(1.0)
    assert sims["up"][0, 3] < 0.3


class _FakeExperts(nn.Module):
    """Expert tensors in another layout (gpt-oss style: transposed, gate/up interleaved)."""

    def __init__(self, gate, up, down, transposed: bool, concatenated: bool, has_gate: bool = True):
        super().__init__()
        self.is_transposed, self.is_concatenated, self.has_gate, self.has_bias = transposed, concatenated, has_gate, False
        self.num_experts = gate.shape[0]
        self.act_fn = nn.SiLU()
        if has_gate:
            if concatenated:
                fused = torch.cat([gate, up], dim=1)  # (E, 2I, H)
            else:
                fused = torch.stack([gate, up], dim=2).reshape(gate.shape[0], -1, gate.shape[2])  # rows g0,u0,g1,u1,…
            self.gate_up_proj = nn.Parameter(fused.transpose(1, 2) if transposed else fused)
        else:
            self.up_proj = nn.Parameter(up.transpose(1, 2) if transposed else up)
        self.down_proj = nn.Parameter(down.transpose(1, 2) if transposed else down)


@pytest.mark.parametrize("transposed, concatenated", [(False, True), (True, True), (True, False), (False, False)])
def test_fused_layouts_give_the_same_matrices_and_outputs(transposed, concatenated):
    torch.manual_seed(1)
    gate, up, down = torch.randn(4, 6, 5), torch.randn(4, 6, 5), torch.randn(4, 5, 6)  # (E, I, H), (E, H, I)
    layer = MoeLayer(0, nn.Identity(), nn.Linear(5, 4), _FakeExperts(gate, up, down, transposed, concatenated), 4, 2)
    weights = families.expert_weights(layer)
    torch.testing.assert_close(weights["gate"], gate)
    torch.testing.assert_close(weights["up"], up)
    torch.testing.assert_close(weights["down"], down)
    x = torch.randn(3, 5)
    expected = (nn.functional.silu(x @ gate[2].T) * (x @ up[2].T)) @ down[2].T
    torch.testing.assert_close(families.expert_forward(layer, 2, x), expected)


def test_ungated_experts_have_no_gate_matrix():
    up, down = torch.randn(4, 6, 5), torch.randn(4, 5, 6)
    layer = MoeLayer(0, nn.Identity(), nn.Linear(5, 4), _FakeExperts(up, up, down, False, True, has_gate=False), 4, 2)
    assert set(similarity.expert_weight_similarity(layer)) == {"up", "down"}


def test_output_similarity(mixtral):
    model, layers = mixtral
    layer = layers[1]
    with torch.no_grad():
        layer.experts.gate_up_proj[7] = layer.experts.gate_up_proj[4]
        layer.experts.down_proj[7] = 3.0 * layer.experts.down_proj[4]  # same direction, other scale
    input_ids = torch.randint(0, 128, (2, 12))
    mask = torch.ones_like(input_ids)
    mask[1, 8:] = 0  # 4 padding positions
    inputs = similarity.moe_layer_inputs(model, layers, input_ids, mask)
    assert set(inputs) == {0, 1} and inputs[1].shape == (20, H)
    sim = similarity.expert_output_similarity(layer, inputs[1])
    _assert_similarity_matrix(sim)
    assert sim[4, 7] == pytest.approx(1.0)
    # Hand computation for one pair: mean over tokens of cos(out_0(x), out_1(x)).
    x = inputs[1]
    a, b = families.expert_forward(layer, 0, x).double(), families.expert_forward(layer, 1, x).double()
    expected = torch.nn.functional.cosine_similarity(a, b, dim=-1).mean().item()
    assert sim[0, 1] == pytest.approx(expected, abs=1e-9)
    with pytest.raises(InputError):
        similarity.expert_output_similarity(layer, torch.zeros(0, H))
