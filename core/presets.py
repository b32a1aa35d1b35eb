"""Published scaling-law parameters the planner can start from, each with its citation.

The UI shows ``label`` in the law picker and ``citation`` beside every number it derives; the CLI
takes ``key`` (``--preset hoffmann|epoch|kaplan``). Fits stored in the database are the other
source of laws; they enter the planner through ``core.planner.params_from_fit``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Union

from core.errors import PlanError
from core.laws import (
    BESIROGLU_2024,
    HOFFMANN_2022,
    KAPLAN_2020,
    ChinchillaParams,
    KaplanParams,
    RoutedParams,
)

LawParams = Union[ChinchillaParams, KaplanParams, RoutedParams]

# Clark et al. 2022 fit eq. (1) with log base 10: their N_cutoff = 937B solves b + c·log10 N = 0,
# which is 10^(0.108/0.009) ≈ 1e12 only in base 10. ``core.laws.routed_loss`` uses natural logs,
# so the interaction c is divided by ln 10 and the intercept d multiplied by it; a and b (ratios of
# logs of the same base) are unchanged.
_LN10 = math.log(10.0)


@dataclass(frozen=True)
class LawPreset:
    key: str  # short id used by the CLI and the page URL (`--preset hoffmann`)
    label: str  # what the law picker shows
    law: str  # which loss the params feed: "chinchilla" | "kaplan" | "routed"
    params: LawParams  # the numbers, in core.laws' dataclasses (natural-log loss, FLOPs, tokens)
    citation: str  # paper and table/equation the numbers come from, shown beside each result
    note: str = ""  # what a reader must know before trusting the numbers (rounding, units)


PRESETS: dict[str, LawPreset] = {
    p.key: p
    for p in (
        LawPreset(
            key="hoffmann",
            label="Chinchilla — Hoffmann et al. 2022, Approach 3 (rounded)",
            law="chinchilla",
            params=HOFFMANN_2022,  # E 1.69, A 406.4, B 410.7, α 0.34, β 0.28
            citation="Hoffmann et al. 2022, 'Training Compute-Optimal Large Language Models', §3.3 eq. (10)",
            note="Exponents as printed (α 0.34, β 0.28); they round the fitted 0.3392 / 0.2849, "
            "which moves N* at Chinchilla's budget from ≈40B to ≈32B.",
        ),
        LawPreset(
            key="hoffmann_unrounded",
            label="Chinchilla — Hoffmann et al. 2022, Approach 3 (unrounded exponents)",
            law="chinchilla",
            params=ChinchillaParams(E=1.6934, A=406.4, B=410.7, alpha=0.3392, beta=0.2849),
            citation="Hoffmann et al. 2022, Approach 3 with the unrounded α 0.3392, β 0.2849, "
            "E 1.6934 (A, B as published); §3.3: N* ≈ 40B at Gopher's 5.76e23 FLOPs",
            note="Reproduces the paper's Approach 3 allocation (≈40B parameters for Chinchilla's budget).",
        ),
        LawPreset(
            key="epoch",
            label="Chinchilla replication — Besiroglu et al. 2024 (Epoch AI)",
            law="chinchilla",
            params=BESIROGLU_2024,  # E 1.8172, A 482.01, B 2085.43, α 0.3478, β 0.3658
            citation="Besiroglu et al. 2024, 'Chinchilla Scaling: A replication attempt', eq. (1) refit",
            note="Refit on data reconstructed from Hoffmann et al.'s Figure 4; ≈20 tokens per parameter "
            "(21.6 at 1e21 FLOPs, 18.4 at Chinchilla's 5.88e23).",
        ),
        LawPreset(
            key="sardana_frankle",
            label="Chinchilla law as used by Sardana & Frankle 2023",
            law="chinchilla",
            params=ChinchillaParams(E=1.69, A=406.4, B=410.7, alpha=0.336, beta=0.283),
            citation="Sardana & Frankle 2023, 'Beyond Chinchilla-Optimal: Accounting for Inference "
            "in Language Model Scaling Laws', §2 (Hoffmann et al.'s Approach 3 law)",
            note="Use this to reproduce the paper's inference-aware examples.",
        ),
        LawPreset(
            key="kaplan",
            label="Kaplan et al. 2020, L(N, D)",
            law="kaplan",
            params=KAPLAN_2020,  # N_c 8.8e13, α_N 0.076, D_c 5.4e13, α_D 0.095
            citation="Kaplan et al. 2020, 'Scaling Laws for Neural Language Models', eq. (1.5), Table 5",
            note="N is the NON-embedding parameter count. The planner minimises eq. (1.5) along "
            "C = 6ND; that is not Kaplan's §6 frontier (N ∝ C^0.73, from early-stopped L(N, S)).",
        ),
        LawPreset(
            key="clark_sbase",
            label="Routed MoE — Clark et al. 2022, S-BASE",
            law="routed",
            params=RoutedParams(
                a=-0.082, b=-0.108, c=0.009 / _LN10, d=1.104 * _LN10, e_start=1.847, e_max=314.478
            ),
            citation="Clark et al. 2022, 'Unified Scaling Laws for Routed Language Models', eq. (1), "
            "Table 3 (S-BASE), converted from log10 to natural logs",
            note="Fitted at a fixed 130B training tokens; beyond N ≈ 1e12 (their N_cutoff) the law "
            "predicts that routing no longer helps.",
        ),
    )
}

# Other names people type for the same presets.
_ALIASES = {
    "chinchilla": "hoffmann",
    "besiroglu": "epoch",
    "clark": "clark_sbase",
    "sardana": "sardana_frankle",
}


def get_preset(key: str) -> LawPreset:
    """The preset called ``key`` (or one of its aliases); PlanError naming the known keys otherwise."""
    name = _ALIASES.get(str(key).strip().lower(), str(key).strip().lower())
    if name not in PRESETS:
        raise PlanError(f"Unknown law preset {key!r}; choose one of: {', '.join(PRESETS)}.")
    return PRESETS[name]


def list_presets(law: Optional[str] = None) -> list[LawPreset]:
    """All presets in display order, or only those of one ``law`` ("chinchilla", "kaplan", "routed")."""
    return [p for p in PRESETS.values() if law is None or p.law == law]
