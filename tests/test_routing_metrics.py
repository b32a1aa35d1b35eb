"""Routing metrics against closed forms and synthetic routers with known answers."""
from __future__ import annotations

import math

import numpy as np
import pytest

from core.errors import InputError
from core.routing import metrics

E, K = 8, 2


def random_routing(n_tokens: int, n_experts: int = E, top_k: int = K, seed: int = 0) -> np.ndarray:
    """Independent uniform top-k choices per token (distinct experts), (T, k)."""
    rng = np.random.default_rng(seed)
    return np.argsort(rng.random((n_tokens, n_experts)), axis=1)[:, :top_k]


def modular_routing(token_ids: np.ndarray, n_experts: int = E, top_k: int = K) -> np.ndarray:
    """Token x goes to experts {x mod E, x+1 mod E, …}: a perfectly vocabulary-specialised router."""
    return (token_ids[:, None] + np.arange(top_k)[None, :]) % n_experts


# ----------------------------------------------------------------------------- load balance


@pytest.mark.parametrize("n_experts, top_k", [(8, 2), (16, 4), (64, 8), (4, 1)])
def test_collapsed_routing_closed_forms(n_experts, top_k):
    experts = np.tile(np.arange(top_k), (1000, 1))  # every token → experts 0..k−1
    load = metrics.expert_load(experts, n_experts)
    assert load.sum() == 1000 * top_k and (load[:top_k] == 1000).all()
    assert metrics.coefficient_of_variation(load) == pytest.approx(math.sqrt(n_experts / top_k - 1))
    assert metrics.max_violation(load) == pytest.approx(n_experts / top_k - 1)
    expected_entropy = math.log(top_k) / math.log(n_experts)
    assert metrics.normalized_entropy(load) == pytest.approx(expected_entropy)
    assert metrics.token_drop_rate(experts, n_experts, capacity_factor=1.0) == pytest.approx(1 - top_k / n_experts)


def test_balanced_routing_is_ideal():
    experts = np.stack([np.arange(800) % E, (np.arange(800) + 1) % E], axis=1)  # every expert exactly 200
    load = metrics.expert_load(experts, E)
    assert (load == 200).all()
    np.testing.assert_allclose(metrics.load_fractions(load), 1 / E)
    assert metrics.coefficient_of_variation(load) == 0.0
    assert metrics.max_violation(load) == 0.0
    assert metrics.normalized_entropy(load) == pytest.approx(1.0)
    assert metrics.token_drop_rate(experts, E) == 0.0
    assert metrics.switch_aux_loss(experts, E, router_prob_mean=np.full(E, 1 / E)) == pytest.approx(1.0)


def test_random_routing_entropy_near_one():
    load = metrics.expert_load(random_routing(50_000), E)
    assert metrics.normalized_entropy(load) == pytest.approx(1.0, abs=1e-3)
    assert metrics.coefficient_of_variation(load) < 0.02


def test_drop_rate_counts_overflow_per_group():
    # Group 1: all tokens on expert 0; group 2: balanced. Capacity per group of 8 tokens, k=1, E=4: 2.
    experts = np.concatenate([np.zeros(8, dtype=int), np.arange(8) % 4])[:, None]
    assert metrics.token_drop_rate(experts, 4, capacity_factor=1.0, group_size=8) == pytest.approx(6 / 16)
    assert metrics.token_drop_rate(experts, 4, capacity_factor=2.0, group_size=8) == pytest.approx(4 / 16)
    # One group of 16: expert 0 holds 10 against capacity 4; experts 1..3 hold 2 each.
    assert metrics.token_drop_rate(experts, 4, capacity_factor=1.0) == pytest.approx(6 / 16)


def test_switch_aux_loss_matches_transformers_up_to_k():
    import torch
    from transformers.models.mixtral.modeling_mixtral import load_balancing_loss_func

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(500, E)) * 2.0  # (T, E)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    experts = np.argsort(-probs, axis=1)[:, :K]
    ours = metrics.switch_aux_loss(experts, E, router_prob_mean=probs.mean(axis=0))
    theirs = float(load_balancing_loss_func((torch.tensor(logits, dtype=torch.float32),), E, K))
    assert ours * K == pytest.approx(theirs, rel=1e-5)
    assert ours > 1.0  # imbalanced by the random logits


def test_switch_aux_loss_proxy_from_weights():
    experts = np.tile([0, 1], (10, 1))
    weights = np.tile([0.75, 0.25], (10, 1))
    # f = (1/2, 1/2, 0, …); P ≈ (0.75, 0.25, 0, …): E · (0.375 + 0.125) = 4
    assert metrics.switch_aux_loss(experts, E, weights=weights) == pytest.approx(E * 0.5)
    with pytest.raises(InputError):
        metrics.switch_aux_loss(experts, E)


# ----------------------------------------------------------------------------- specialization


def test_modular_router_is_fully_vocab_specialised():
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, 100, size=20_000)
    experts = modular_routing(tokens)
    for top in ("1", "k"):
        result = metrics.vocab_specialization(experts, tokens, E, top=top, min_count=10)
        assert result.score == 1.0
        assert (result.share == 1.0).all()
        if top == "1":  # with top-k every one of the token's k experts ties at 1.0
            np.testing.assert_array_equal(result.top_expert, result.token_ids % E)
    null_mean, _ = metrics.vocab_specialization_null(experts, tokens, E, n_permutations=5)
    assert null_mean < 0.3


def test_random_router_vocab_specialisation_equals_its_null_not_k_over_e():
    rng = np.random.default_rng(2)
    tokens = rng.integers(0, 300, size=15_000)  # ~50 occurrences each
    experts = random_routing(15_000, seed=5)
    for top in ("1", "k"):
        observed = metrics.vocab_specialization(experts, tokens, E, top=top, min_count=10).score
        null_mean, null_std = metrics.vocab_specialization_null(experts, tokens, E, top=top, n_permutations=20)
        assert abs(observed - null_mean) < 4 * null_std + 1e-3
        # Expected max share of ~50 draws is well above the uniform share.
        assert observed > metrics.uniform_share(E, K, top) + 0.05


def test_vocab_min_count_filter():
    tokens = np.array([1] * 12 + [2] * 3)
    experts = np.concatenate([np.zeros(12, dtype=int), [1, 2, 3]])[:, None]
    result = metrics.vocab_specialization(experts, tokens, E, min_count=10)
    np.testing.assert_array_equal(result.token_ids, [1])
    assert result.score == 1.0 and result.counts[0] == 12
    assert math.isnan(metrics.vocab_specialization(experts, tokens, E, min_count=100).score)


def test_domain_specialisation_uniform_and_specialised():
    experts = random_routing(40_000, seed=7)
    domains = np.array(["code", "prose"])[np.arange(40_000) % 2]
    names, table = metrics.domain_specialization(experts, domains, E)
    assert names == ["code", "prose"]
    np.testing.assert_allclose(table, K / E, atol=0.01)
    np.testing.assert_allclose(table.sum(axis=1), K)
    _, top1 = metrics.domain_specialization(experts, domains, E, top="1")
    np.testing.assert_allclose(top1, 1 / E, atol=0.01)
    # A router that sends all code to experts 0, 1 has share 1.0 there.
    biased = np.where((domains == "code")[:, None], np.array([[0, 1]]), experts)
    _, table = metrics.domain_specialization(biased, domains, E)
    np.testing.assert_allclose(table[0, :2], 1.0)
    np.testing.assert_allclose(table[0, 2:], 0.0)


def test_coactivation_properties():
    n_experts, top_k = 8, 3
    experts = random_routing(5_000, n_experts, top_k, seed=11)
    counts = metrics.coactivation(experts, n_experts)
    assert (counts == counts.T).all() and (np.diag(counts) == 0).all()
    assert np.triu(counts).sum() == 5_000 * math.comb(top_k, 2)
    normalised = metrics.coactivation(experts, n_experts, normalize=True)
    np.testing.assert_allclose(normalised.sum(axis=1), top_k - 1)
    # Under random routing P(j chosen | i chosen) = (k−1)/(E−1) off the diagonal.
    off = normalised[~np.eye(n_experts, dtype=bool)]
    np.testing.assert_allclose(off, (top_k - 1) / (n_experts - 1), atol=0.03)


def test_coactivation_hand_example():
    experts = np.array([[0, 1], [1, 0], [2, 3]])
    counts = metrics.coactivation(experts, 4)
    expected = np.zeros((4, 4), dtype=int)
    expected[0, 1] = expected[1, 0] = 2
    expected[2, 3] = expected[3, 2] = 1
    np.testing.assert_array_equal(counts, expected)
    normalised = metrics.coactivation(np.array([[0, 1], [0, 2]]), 4, normalize=True)
    np.testing.assert_allclose(normalised[0], [0, 0.5, 0.5, 0])
    np.testing.assert_allclose(normalised[3], 0)  # unused expert


# ----------------------------------------------------------------------------- dynamics


def test_router_saturation():
    final = random_routing(1000, seed=1)
    assert metrics.router_saturation(final, final) == 1.0
    swapped = final[:, ::-1]  # same sets, other order
    assert metrics.router_saturation(swapped, final) == 1.0
    assert metrics.router_saturation(swapped, final, k=1) == 0.0
    one_shared = np.tile([[0, 2]], (10, 1))
    assert metrics.router_saturation(one_shared, np.tile([[0, 1]], (10, 1))) == 0.5
    other = random_routing(50_000, seed=2)
    expected = K / E  # independent random top-k sets share k·k/E experts on average, /k
    assert metrics.router_saturation(other, random_routing(50_000, seed=3)) == pytest.approx(expected, abs=0.01)


def test_random_consecutive_rates_match_mixtral_baselines():
    experts = random_routing(60_000, seed=9)
    doc_ids = np.arange(60_000) // 1000
    positions = np.arange(60_000) % 1000
    rates = metrics.consecutive_same_expert(experts, E, doc_ids, positions)
    assert rates.n_pairs == 60_000 - 60
    assert rates.random_first_choice == pytest.approx(1 / 8)
    assert rates.random_any_overlap == pytest.approx(1 - (6 / 8) * (5 / 7))  # Mixtral paper: ≈ 46%
    assert rates.first_choice == pytest.approx(rates.random_first_choice, abs=0.01)
    assert rates.any_overlap == pytest.approx(rates.random_any_overlap, abs=0.01)


def test_consecutive_rates_of_a_sticky_router_and_boundaries():
    experts = np.tile([[3, 5]], (10, 1))
    rates = metrics.consecutive_same_expert(experts, E, doc_ids=[0] * 5 + [1] * 5)
    assert (rates.first_choice, rates.any_overlap, rates.n_pairs) == (1.0, 1.0, 8)
    gaps = metrics.consecutive_same_expert(experts, E, positions=[0, 2, 4, 6, 8, 9, 10, 11, 12, 13])
    assert gaps.n_pairs == 5


def test_layer_summary_for_cli():
    tokens = np.repeat(np.arange(10), 20)
    experts = modular_routing(tokens)
    summary = metrics.layer_summary(experts, tokens, E)
    assert summary["load"] == list(metrics.expert_load(experts, E))
    assert summary["vocab_specialization"] == 1.0
    assert set(summary) == {"load", "cv", "max_vio", "entropy", "vocab_specialization"}


def test_bad_metric_inputs():
    with pytest.raises(InputError, match="0..7"):
        metrics.expert_load(np.array([[0, 8]]), E)
    with pytest.raises(InputError, match="token ids"):
        metrics.vocab_specialization(np.zeros((3, 2), dtype=int), np.zeros(2), E)
    with pytest.raises(InputError, match="align"):
        metrics.router_saturation(np.zeros((3, 2)), np.zeros((4, 2)))
