"""Compute-optimal inference: a bigger model, or more samples from a smaller one? (Wu et al. 2024,
"Inference Scaling Laws: An Empirical Analysis of Compute-Optimal Inference for Problem-Solving with
Language Models", arXiv:2408.00724.)

For a fixed inference budget per problem, each model size N affords k = ⌊B / (2·N·T)⌋ samples of T
generated tokens (2 FLOPs per parameter per token forward: Kaplan et al. 2020 §2.1; Wu et al. §2
count inference compute the same way). The sampled answers are combined by

- best-of-n with an oracle verifier (coverage, Brown et al. 2024 "Large Language Monkeys" eq. (1);
  the upper bound of Wu et al.'s best-of-n with a reward model):  acc_i(k) = 1 − (1 − p_i)^k
- majority voting, by the binomial formula with one competing answer (the hardest case for voting:
  all wrong samples agree):  acc_i(k) = Σ_{j > k/2} C(k, j) p_i^j (1 − p_i)^(k − j)  (+ ½ the tie
  term for even k). As k → ∞ it tends to 1[p_i > ½]: Wu et al.'s Theorem 1 (voting saturates at the
  share of problems whose most likely answer is correct), which is why more samples stop paying and
  a larger model wins at large budgets.

The per-sample accuracy law (declared or fitted, ``SampleAccuracyLaw``): problem i of difficulty
δ_i is solved by one sample of a model of N parameters with probability

    p_i(N) = σ(a + b·ln(N / 1e9) − δ_i),   δ_i ~ Normal(0, s)   (s fixed: problem spread)

— a logistic in log model size, as downstream accuracy is modelled in core/downstream.py; the
difficulty spread makes the dataset's accuracy saturate the way Wu et al.'s MATH/GSM8K curves do.
Which form and why: Wu et al. do not publish a closed-form accuracy law (their laws are empirical
curves of Pythia/Llemma models on MATH500 and GSM8K, data we cannot fetch here); this form is ours,
the voting formulas are exact, and the tests check them against enumeration and Monte Carlo and the
plan's qualitative finding (smaller models with more samples win at small budgets, the optimal size
grows with the budget: Wu et al. Fig. 1/§4) on a synthetic ground truth.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional, Sequence

import numpy as np

from core.errors import InputError, PlanError
from core.registry import positive_number

INFERENCE_FLOPS_PER_PARAM_TOKEN = 2.0  # forward pass (Kaplan et al. 2020 §2.1)
STRATEGIES = ("majority", "best_of_n")
DIFFICULTY_POINTS = 64  # quantiles of the difficulty distribution: the dataset mean to ~1e-4
ACCURACY_TIE = 1e-6  # sizes within this (absolute) of the best accuracy tie; the smallest is chosen
MAX_SAMPLES = 1_000_000  # above this the voting sums are replaced by their normal approximation
DEFAULT_SIZES = (70e6, 160e6, 410e6, 1e9, 1.4e9, 2.8e9, 6.9e9, 12e9, 34e9, 70e9)  # Pythia-like + Llemma-34B, 70B


@dataclass(frozen=True)
class SampleAccuracyLaw:
    """p_i(N) = σ(a + b·ln(N/1e9) − δ_i), δ_i ~ N(0, spread): per-sample accuracy of problem i."""

    # Defaults: a declared law anchored on MATH. a, b are fit_sample_accuracy(spread=2.5) through Llemma
    # 7B 18.0% and 34B 25.0% single-sample MATH accuracy (Azerbayev et al. 2023, "Llemma", Table 1; Wu et
    # al. 2024 study Llemma on MATH500), rounded. The spread is ours: wide enough that oracle coverage
    # keeps growing over thousands of samples, as Brown et al. 2024 observe on MATH, instead of
    # saturating. (The former default, a=0, b=0.2, s=0.5, gave a 70M model 38% per sample on every
    # problem, so best-of-n at 1e15 FLOPs reached 1.0000 at every size and the optimum was a tie.)
    a: float = -3.7  # logit of a median problem's per-sample accuracy at 1B parameters
    b: float = 0.47  # slope of that logit per e-fold of model size
    spread: float = 2.5  # standard deviation of problem difficulty (logit units)

    def problem_probs(self, n_params) -> np.ndarray:
        """(..., Q) per-problem per-sample accuracies at each N (Q difficulty quantiles)."""
        from scipy.special import expit, ndtri  # scipy on first use (see core/search.py)

        q = (np.arange(DIFFICULTY_POINTS) + 0.5) / DIFFICULTY_POINTS
        delta = self.spread * ndtri(q)  # (Q,)
        logit = self.a + self.b * np.log(np.asarray(n_params, np.float64) / 1e9)
        return expit(logit[..., None] - delta)

    def accuracy(self, n_params) -> np.ndarray:
        """Dataset accuracy of ONE sample (the mean over problems)."""
        return self.problem_probs(n_params).mean(axis=-1)


def coverage(p, k) -> np.ndarray:
    """Best-of-k with an oracle verifier: 1 − (1 − p)^k (Brown et al. 2024 eq. (1)), broadcasting."""
    p = np.asarray(p, np.float64)
    k = np.asarray(k, np.float64)
    with np.errstate(divide="ignore"):
        return -np.expm1(k * np.log1p(-np.minimum(p, 1.0)))


def majority_accuracy(p, k) -> np.ndarray:
    """P(the correct answer wins a k-sample vote against one competing answer), ties split evenly.

    Σ_{j > k/2} C(k, j) p^j (1 − p)^(k − j) + ½·C(k, k/2) p^(k/2) (1 − p)^(k/2) [k even]: the binomial
    survival function (scipy.stats.binom), exact for k ≤ MAX_SAMPLES.
    """
    from scipy.stats import binom

    p = np.asarray(p, np.float64)
    k = np.asarray(k, np.float64)
    p, k = np.broadcast_arrays(p, k)
    k_int = np.floor(k)
    wins = binom.sf(np.floor(k_int / 2.0), k_int, p)  # P(X > ⌊k/2⌋)
    even = (k_int % 2 == 0)
    tie = np.where(even, binom.pmf(k_int / 2.0, k_int, p), 0.0)
    out = wins + 0.5 * tie
    return np.where(k_int >= 1, out, 0.0)


def strategy_accuracy(law: SampleAccuracyLaw, n_params, samples, strategy: str) -> np.ndarray:
    """Dataset accuracy with ``samples`` samples per problem combined by ``strategy``."""
    if strategy not in STRATEGIES:
        raise PlanError(f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    p = law.problem_probs(n_params)  # (..., Q)
    k = np.asarray(samples, np.float64)[..., None]
    per_problem = coverage(p, k) if strategy == "best_of_n" else majority_accuracy(p, k)
    return per_problem.mean(axis=-1)


@dataclass(frozen=True)
class InferenceChoice:
    n_params: float
    samples: int
    accuracy: float
    flops: float  # 2·N·T·k actually spent (≤ budget)


@dataclass(frozen=True)
class InferenceComputePlan:
    budget_flops: float  # per problem
    tokens_per_sample: float
    strategy: str
    best: InferenceChoice
    largest_single_sample: Optional[InferenceChoice]  # the biggest model the budget runs once
    table: tuple = field(default_factory=tuple)  # every candidate size's InferenceChoice (k ≥ 1)
    law: dict = field(default_factory=dict)
    tied_sizes: tuple = field(default_factory=tuple)  # n_params within ACCURACY_TIE of the best (best included)
    tie_rule: str = f"the smallest (cheapest) size within {ACCURACY_TIE:g} of the best accuracy"
    flops_rule: str = "2·N·T per sample (Kaplan et al. 2020 §2.1; Wu et al. 2024 §2)"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["table"] = [asdict(c) for c in self.table]
        return d


def _positive(value, what: str, example: str) -> float:
    return positive_number(value, f"{what} {value!r} must be a positive number, e.g. {example}.")


def plan_inference(budget_flops, law: SampleAccuracyLaw = SampleAccuracyLaw(), *, strategy: str = "majority",
                   tokens_per_sample: float = 512.0, sizes: Sequence[float] = DEFAULT_SIZES) -> InferenceComputePlan:
    """Wu et al. 2024's question for one budget: over the candidate ``sizes``, the model and number of
    samples k = ⌊B/(2·N·T)⌋ of highest accuracy under ``strategy``; sizes within ACCURACY_TIE of that
    accuracy tie, and the smallest of them is the optimum. Sizes the budget cannot run once are left
    out; PlanError when none fits."""
    budget = _positive(budget_flops, "Inference budget", "1e15 FLOPs per problem")
    t = _positive(tokens_per_sample, "Tokens per sample", "512")
    if strategy not in STRATEGIES:
        raise PlanError(f"Unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}.")
    ns = sorted({_positive(n, "Model size", "7e9") for n in sizes})
    if not ns:
        raise PlanError("Give at least one candidate model size, e.g. 1e9,7e9,34e9.")
    ks = np.floor(budget / (INFERENCE_FLOPS_PER_PARAM_TOKEN * np.array(ns) * t))
    ok = ks >= 1
    if not ok.any():
        raise PlanError(f"A budget of {budget:.3g} FLOPs cannot run even the smallest model ({ns[0]:.3g} params) "
                        f"once for {t:g} tokens ({INFERENCE_FLOPS_PER_PARAM_TOKEN * ns[0] * t:.3g} FLOPs); raise it.")
    ns_ok = np.array(ns)[ok]
    ks_ok = np.minimum(ks[ok], MAX_SAMPLES)
    acc = strategy_accuracy(law, ns_ok, ks_ok, strategy)
    table = tuple(InferenceChoice(float(n), int(k), float(a), float(INFERENCE_FLOPS_PER_PARAM_TOKEN * n * t * k))
                  for n, k, a in zip(ns_ok, ks_ok, acc))
    top = max(c.accuracy for c in table)
    tied = [c for c in table if c.accuracy >= top - ACCURACY_TIE]  # table is sorted by size: tied[0] smallest
    return InferenceComputePlan(budget_flops=budget, tokens_per_sample=t, strategy=strategy, best=tied[0],
                                largest_single_sample=table[-1], table=table, law=asdict(law),
                                tied_sizes=tuple(c.n_params for c in tied))


def fit_sample_accuracy(n_params, accuracy, spread: float = 2.0) -> SampleAccuracyLaw:
    """Fit a, b of the per-sample accuracy law to measured single-sample accuracies (one per model
    size), with the difficulty spread held at ``spread``: least squares on the accuracies."""
    from scipy.optimize import least_squares

    n = np.asarray(n_params, np.float64).reshape(-1)
    y = np.asarray(accuracy, np.float64).reshape(-1)
    if n.shape != y.shape or n.size < 2 or np.unique(n).size < 2:
        raise InputError("The accuracy fit needs single-sample accuracies of at least 2 model sizes.")
    if np.any(~np.isfinite(n)) or np.any(n <= 0) or np.any((y <= 0) | (y >= 1)):
        raise InputError("Model sizes must be positive and accuracies strictly between 0 and 1.")

    def resid(theta):
        return SampleAccuracyLaw(theta[0], theta[1], spread).accuracy(n) - y

    starts = [(a0, b0) for a0 in (-3.0, -1.0, 1.0) for b0 in (0.2, 0.8, 2.0)]
    best = min((least_squares(resid, s, method="lm", xtol=1e-14, ftol=1e-14) for s in starts),
               key=lambda r: float(np.sum(r.fun ** 2)))
    return SampleAccuracyLaw(float(best.x[0]), float(best.x[1]), float(spread))
