"""Routing metrics: pure numpy functions on one MoE layer's assignments.

Inputs, all for the same T tokens of one layer (core/routing/capture.layer_arrays gives them):
``expert_ids`` (T, k) int in rank order (rank 0 = largest routing weight), ``weights`` (T, k),
``token_ids`` (T,), ``domains`` (T,), and for consecutive-token rates ``doc_ids``/``positions`` (T,).
E (``n_experts``) is always passed explicitly so experts that never receive a token still count.
Each function names its source; where the literature leaves a choice open, the docstring says
which one is taken here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from core.errors import InputError


def _as_experts(expert_ids, n_experts: int) -> np.ndarray:
    ids = np.asarray(expert_ids)
    if ids.ndim == 1:
        ids = ids[:, None]  # (T,) → (T, 1): top-1 routing
    if ids.ndim != 2:
        raise InputError(f"expert ids must be a (tokens, k) array, got shape {ids.shape}")
    if ids.size and (ids.min() < 0 or ids.max() >= n_experts):
        raise InputError(f"expert ids must lie in 0..{n_experts - 1}; check n_experts")
    return ids.astype(np.int64, copy=False)


# ----------------------------------------------------------------------------- load balance


def expert_load(expert_ids, n_experts: int) -> np.ndarray:
    """Assignments per expert over all ranks, (E,) int64; sums to T·k."""
    ids = _as_experts(expert_ids, n_experts)
    return np.bincount(ids.reshape(-1), minlength=n_experts)


def load_fractions(counts) -> np.ndarray:
    """Each expert's share of the assignments, (E,); sums to 1 (all zeros for no assignments)."""
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else np.zeros_like(counts)


def coefficient_of_variation(counts) -> float:
    """std/mean of the per-expert load (population std), 0 when perfectly balanced.

    The load-imbalance measure of Shazeer et al. 2017 ("Outrageously Large Neural Networks",
    eq. 6, the CV² importance loss). All tokens on k of E experts gives √(E/k − 1)."""
    counts = np.asarray(counts, dtype=np.float64)
    mean = counts.mean()
    return float(counts.std() / mean) if mean > 0 else 0.0


def max_violation(counts) -> float:
    """MaxVio = max_i load_i / mean_i load_i − 1 (Wang et al. 2024, "Auxiliary-Loss-Free Load
    Balancing Strategy for Mixture-of-Experts"); 0 when balanced, E/k − 1 at worst."""
    counts = np.asarray(counts, dtype=np.float64)
    mean = counts.mean()
    return float(counts.max() / mean - 1.0) if mean > 0 else 0.0


def normalized_entropy(counts) -> float:
    """Shannon entropy of the load fractions divided by ln E: 1 when uniform, ln k / ln E when all
    tokens use the same k experts (the balance entropy reported e.g. in OLMoE's routing analysis)."""
    p = load_fractions(counts)
    n = len(p)
    if n < 2 or p.sum() == 0:
        return 0.0
    nz = p[p > 0]
    return float(-(nz * np.log(nz)).sum() / math.log(n))


def switch_aux_loss(expert_ids, n_experts: int, router_prob_mean=None, weights=None) -> float:
    """Load-balancing auxiliary loss E · Σ_i f_i · P_i (Fedus et al. 2021, Switch Transformer, eq. 4).

    f_i is expert i's share of the T·k assignments (for k = 1 the Switch definition; for top-k the
    GShard/Mixtral generalisation divided by k, so the balanced minimum is 1.0 for every k;
    transformers' ``load_balancing_loss_func`` reports k times this value). P_i is the mean router
    probability of expert i: pass ``router_prob_mean`` (E,) when the router's full distribution
    is known (capture records it as CaptureSummary.router_prob_mean). Without it P_i falls back
    to the mean of each token's renormalised top-k ``weights`` on expert i — a proxy that ignores
    the probability mass on unselected experts, so compare proxy values with proxy values only."""
    ids = _as_experts(expert_ids, n_experts)
    n_tokens = ids.shape[0]
    if n_tokens == 0:
        raise InputError("no tokens to compute the auxiliary loss on; capture some text first")
    f = load_fractions(expert_load(ids, n_experts))
    if router_prob_mean is not None:
        p = np.asarray(router_prob_mean, dtype=np.float64)
        if p.shape != (n_experts,):
            raise InputError(f"router_prob_mean must have shape ({n_experts},), got {p.shape}")
    else:
        if weights is None:
            raise InputError("switch_aux_loss needs router_prob_mean or the top-k weights")
        w = np.abs(np.asarray(weights, dtype=np.float64).reshape(ids.shape))
        w = w / np.clip(w.sum(axis=1, keepdims=True), 1e-20, None)  # (T, k), rows sum to 1
        p = np.bincount(ids.reshape(-1), weights=w.reshape(-1), minlength=n_experts) / n_tokens
    return float(n_experts * np.dot(f, p))


def token_drop_rate(expert_ids, n_experts: int, capacity_factor: float = 1.0, group_size: Optional[int] = None) -> float:
    """Share of (token, expert) assignments that would overflow expert capacity.

    Capacity per expert and group C = ⌊capacity_factor · k · G / E⌋ (Fedus et al. 2021, Switch
    Transformer, sec. 2.2 "expert capacity"; Lepikhin et al. 2020, GShard, for top-k). Tokens are
    split into consecutive groups of ``group_size`` (None: one group of all tokens); the rate is
    Σ_groups Σ_i max(0, load_i − C) / (T·k). Which tokens overflow does not change the rate."""
    if capacity_factor <= 0:
        raise InputError(f"capacity_factor must be positive, got {capacity_factor}")
    ids = _as_experts(expert_ids, n_experts)
    n_tokens, top_k = ids.shape
    if n_tokens == 0:
        return 0.0
    size = n_tokens if group_size is None else int(group_size)
    if size < 1:
        raise InputError(f"group_size must be at least 1, got {group_size}")
    dropped = 0
    for start in range(0, n_tokens, size):
        group = ids[start : start + size]
        capacity = int(capacity_factor * top_k * len(group) / n_experts)
        load = np.bincount(group.reshape(-1), minlength=n_experts)
        dropped += int(np.clip(load - capacity, 0, None).sum())
    return dropped / (n_tokens * top_k)


# ----------------------------------------------------------------------------- specialization


@dataclass
class VocabSpecialization:
    """Token-ID specialization of one layer (OLMoE, Muennighoff et al. 2024, sec. 5)."""

    score: float  # occurrence-weighted mean of `share` over the token ids kept
    token_ids: np.ndarray  # (U,) token ids seen at least min_count times
    counts: np.ndarray  # (U,) their occurrences
    top_expert: np.ndarray  # (U,) each one's most used expert
    share: np.ndarray  # (U,) share of its occurrences routed to that expert


def _token_expert_counts(ids: np.ndarray, token_ids: np.ndarray, n_experts: int, use_k: int):
    uniq, inverse, counts = np.unique(token_ids, return_inverse=True, return_counts=True)
    chosen = ids[:, :use_k]  # (T, use_k): experts are distinct within a token, so each counts once
    cells = inverse[:, None] * n_experts + chosen  # (T, use_k)
    table = np.bincount(cells.reshape(-1), minlength=len(uniq) * n_experts).reshape(len(uniq), n_experts)
    return uniq, counts, table  # table (U, E): occurrences of token u with expert e in its top-use_k


def vocab_specialization(expert_ids, token_ids, n_experts: int, top: str = "1", min_count: int = 10) -> VocabSpecialization:
    """For each token id x: the share of its occurrences routed to its most used expert.

    OLMoE (Muennighoff et al. 2024, sec. 5, "vocabulary specialization"): for token x and expert e,
    N(x, e) / N(x) where N(x, e) counts occurrences of x whose top-1 (``top="1"``) or top-k
    (``top="k"``) experts include e; the token's value is the max over e. Tokens seen fewer than
    ``min_count`` times are dropped, because a token seen once scores 1.0 by chance; the layer
    score is the occurrence-weighted mean. Compare with :func:`vocab_specialization_null`: under
    random routing the score is not k/E but the expected max share, which grows as counts shrink."""
    ids = _as_experts(expert_ids, n_experts)
    tokens = np.asarray(token_ids).reshape(-1)
    if len(tokens) != ids.shape[0]:
        raise InputError(f"{len(tokens)} token ids for {ids.shape[0]} routed tokens; pass the same tokens")
    if top not in ("1", "k"):
        raise InputError(f"top must be '1' or 'k', got {top!r}")
    use_k = 1 if top == "1" else ids.shape[1]
    uniq, counts, table = _token_expert_counts(ids, tokens, n_experts, use_k)
    keep = counts >= min_count
    uniq, counts, table = uniq[keep], counts[keep], table[keep]
    if len(uniq) == 0:
        return VocabSpecialization(float("nan"), uniq, counts, np.zeros(0, dtype=np.int64), np.zeros(0))
    top_expert = table.argmax(axis=1)
    best = table.max(axis=1)
    share = best / counts
    return VocabSpecialization(float(best.sum() / counts.sum()), uniq, counts, top_expert, share)


def vocab_specialization_null(
    expert_ids, token_ids, n_experts: int, top: str = "1", min_count: int = 10, n_permutations: int = 20, seed: int = 0
) -> tuple[float, float]:
    """Permutation null of :func:`vocab_specialization`: (mean, std) of its score after shuffling
    which token id sits on which routed token. Shuffling keeps each token id's count and each
    expert's load but breaks any link between them, so the null is what chance alone gives."""
    rng = np.random.default_rng(seed)
    tokens = np.asarray(token_ids).reshape(-1)
    scores = [
        vocab_specialization(expert_ids, rng.permutation(tokens), n_experts, top, min_count).score
        for _ in range(n_permutations)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def domain_specialization(expert_ids, domains, n_experts: int, top: str = "k") -> tuple[list[str], np.ndarray]:
    """Share of each domain's tokens routed to each expert: (domain labels, (D, E) matrix).

    OLMoE (Muennighoff et al. 2024, sec. 5, "domain specialization"): N(D, e) / N(D) where N(D, e)
    counts tokens of domain D with expert e among their top-k (``top="k"``, rows sum to k,
    uniform routing gives k/E everywhere) or as top-1 (``top="1"``, rows sum to 1, uniform 1/E).
    See :func:`uniform_share` for the baseline."""
    ids = _as_experts(expert_ids, n_experts)
    labels = np.asarray(domains).astype(str).reshape(-1)
    if len(labels) != ids.shape[0]:
        raise InputError(f"{len(labels)} domain labels for {ids.shape[0]} routed tokens; pass the same tokens")
    use_k = 1 if top == "1" else ids.shape[1]
    names, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    cells = inverse[:, None] * n_experts + ids[:, :use_k]  # (T, use_k)
    table = np.bincount(cells.reshape(-1), minlength=len(names) * n_experts).reshape(len(names), n_experts)
    return [str(n) for n in names], table / counts[:, None]


def uniform_share(n_experts: int, top_k: int, top: str = "k") -> float:
    """The share every expert would get under uniform routing: k/E (top-k) or 1/E (top-1)."""
    return (top_k if top == "k" else 1) / n_experts


def coactivation(expert_ids, n_experts: int, normalize: bool = False) -> np.ndarray:
    """How often two experts are chosen for the same token, (E, E), symmetric, zero diagonal.

    Counts all C(k, 2) pairs within each token's top-k (OLMoE, Muennighoff et al. 2024, sec. 5,
    "co-activation"), so the upper triangle sums to T·C(k, 2). With ``normalize`` row i is divided
    by the number of tokens that chose expert i — the share of i's tokens that also chose j — and
    each row of an expert that was used sums to k − 1 (rows of unused experts stay 0)."""
    ids = _as_experts(expert_ids, n_experts)
    top_k = ids.shape[1]
    counts = np.zeros((n_experts, n_experts), dtype=np.int64)
    for a in range(top_k):
        for b in range(a + 1, top_k):
            pair = ids[:, a] * n_experts + ids[:, b]  # (T,)
            counts += np.bincount(pair, minlength=n_experts * n_experts).reshape(n_experts, n_experts)
    counts = counts + counts.T
    np.fill_diagonal(counts, 0)  # a token never picks the same expert twice; guard against bad traces
    if not normalize:
        return counts
    chosen = expert_load(ids, n_experts).astype(np.float64)  # tokens per expert (experts distinct per token)
    return np.divide(counts, chosen[:, None], out=np.zeros((n_experts, n_experts)), where=chosen[:, None] > 0)


# ----------------------------------------------------------------------------- dynamics


def router_saturation(experts_t, experts_final, k: Optional[int] = None) -> float:
    """Share of checkpoint t's top-k choices that the final checkpoint also makes for the same tokens.

    OLMoE (Muennighoff et al. 2024, sec. 5, "router saturation"): (1/T) Σ_tokens |S_t ∩ S_final| / k
    with S the token's top-k set. ``k`` uses only the first k ranks of both (k = 1: top-1
    saturation); default: all ranks. Rows must be the same tokens in the same order."""
    a, b = np.asarray(experts_t), np.asarray(experts_final)
    if a.ndim == 1:
        a, b = a[:, None], b[:, None]
    if a.shape[0] != b.shape[0]:
        raise InputError(f"the two checkpoints cover {a.shape[0]} and {b.shape[0]} tokens; align them on the same tokens")
    use_k = min(a.shape[1], b.shape[1]) if k is None else int(k)
    if use_k < 1 or use_k > min(a.shape[1], b.shape[1]):
        raise InputError(f"k must be between 1 and {min(a.shape[1], b.shape[1])}, got {k}")
    if a.shape[0] == 0:
        raise InputError("no tokens to compare; capture the same text with both checkpoints")
    a, b = a[:, :use_k], b[:, :use_k]
    shared = (a[:, :, None] == b[:, None, :]).any(axis=2).sum(axis=1)  # (T,)
    return float(shared.mean() / use_k)


@dataclass
class ConsecutiveRates:
    """Same-expert rates for consecutive tokens (Jiang et al. 2024, Mixtral of Experts, sec. 5)."""

    first_choice: float  # share of pairs (t, t+1) whose rank-0 experts are equal
    any_overlap: float  # share of pairs whose top-k sets share at least one expert
    n_pairs: int  # consecutive pairs counted
    random_first_choice: float  # 1/E
    random_any_overlap: float  # 1 − C(E−k, k)/C(E, k)


def random_consecutive_baselines(n_experts: int, top_k: int) -> tuple[float, float]:
    """Expected consecutive-token rates under independent uniform routing (Mixtral paper, sec. 5):
    same first choice 1/E; overlapping top-k sets 1 − C(E−k, k)/C(E, k) (46% for E=8, k=2)."""
    return 1.0 / n_experts, 1.0 - math.comb(n_experts - top_k, top_k) / math.comb(n_experts, top_k)


def consecutive_same_expert(expert_ids, n_experts: int, doc_ids=None, positions=None) -> ConsecutiveRates:
    """How often token t+1 goes to the same expert(s) as token t, against random baselines.

    Rows are tokens in text order; a pair counts only within one document (``doc_ids``) and, when
    ``positions`` is given, only for adjacent positions. Jiang et al. 2024 (Mixtral, sec. 5)
    report "first choice" and "first or second choice" repetition; the latter is read here as
    overlapping top-k sets, whose random rate is 1 − C(E−k, k)/C(E, k)."""
    ids = _as_experts(expert_ids, n_experts)
    pair_ok = np.ones(max(ids.shape[0] - 1, 0), dtype=bool)  # (T−1,)
    if doc_ids is not None:
        docs = np.asarray(doc_ids).reshape(-1)
        pair_ok &= docs[1:] == docs[:-1]
    if positions is not None:
        pos = np.asarray(positions).reshape(-1)
        pair_ok &= pos[1:] == pos[:-1] + 1
    prev, nxt = ids[:-1][pair_ok], ids[1:][pair_ok]  # (P, k) each
    base_first, base_any = random_consecutive_baselines(n_experts, ids.shape[1])
    n_pairs = int(pair_ok.sum())
    if n_pairs == 0:
        return ConsecutiveRates(float("nan"), float("nan"), 0, base_first, base_any)
    first = float((prev[:, 0] == nxt[:, 0]).mean())
    overlap = float((prev[:, :, None] == nxt[:, None, :]).any(axis=(1, 2)).mean())
    return ConsecutiveRates(first, overlap, n_pairs, base_first, base_any)


# ----------------------------------------------------------------------------- one-call summary


def layer_summary(expert_ids, token_ids, n_experts: int, min_count: int = 10) -> dict:
    """The per-layer numbers ``cli.py route --json`` prints: load, cv, max_vio, entropy and top-1
    vocab_specialization (tokens seen at least ``min_count`` times; None when none qualifies)."""
    load = expert_load(expert_ids, n_experts)
    vocab = vocab_specialization(expert_ids, token_ids, n_experts, "1", min_count).score
    return {
        "load": [int(x) for x in load],
        "cv": coefficient_of_variation(load),
        "max_vio": max_violation(load),
        "entropy": normalized_entropy(load),
        "vocab_specialization": None if math.isnan(vocab) else vocab,
    }
