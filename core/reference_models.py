"""Well-known language models as reference points on the planner's (N, D) plots.

Sizes and token counts are the ones the papers state (nominal sizes: "70B" is 70e9). Training FLOPs
are estimated the way ScaleScope estimates everything, C ≈ 6·N_active·D (Kaplan et al. 2020 §2.1),
not the papers' own accounting, so that all points sit on the same iso-FLOP lines.
Models whose training token count was never published (Mistral, Mixtral, GPT-4, …) are left out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from core.errors import PlanError


@dataclass(frozen=True)
class ReferenceModel:
    name: str  # as the papers and the plot legend call it
    n_params: float  # total parameters as published (for MoE: all experts)
    tokens: float  # training tokens as published
    year: int  # publication year, to colour points by era
    source: str  # the paper or report stating n_params and tokens
    n_active_params: Optional[float] = None  # MoE only: parameters used per token

    @property
    def active_params(self) -> float:
        """Parameters per token: the total for a dense model."""
        return self.n_params if self.n_active_params is None else self.n_active_params

    @property
    def tokens_per_param(self) -> float:
        """D/N with N the parameters per token (what Chinchilla's ≈20 refers to)."""
        return self.tokens / self.active_params

    @property
    def flops(self) -> float:
        """Training FLOPs estimated as 6·N_active·D (Kaplan et al. 2020 §2.1)."""
        return 6.0 * self.active_params * self.tokens

    def to_dict(self) -> dict:
        return {
            **asdict(self),
            "active_params": self.active_params,
            "tokens_per_param": self.tokens_per_param,
            "flops": self.flops,
        }


_HOFFMANN_T1 = " (also Hoffmann et al. 2022, Table 1)"
_LLAMA = "Touvron et al. 2023a, 'LLaMA: Open and Efficient Foundation Language Models', Table 2"
_LLAMA2 = "Touvron et al. 2023b, 'Llama 2: Open Foundation and Fine-Tuned Chat Models', Table 1"
_LLAMA3 = "Meta AI 2024, 'Introducing Meta Llama 3' (over 15T tokens); Dubey et al. 2024"

# fmt: off
R = ReferenceModel  # rows below: name, total params, training tokens, year, source[, active params]
REFERENCE_MODELS: tuple[ReferenceModel, ...] = (
    R("GPT-3 175B", 175e9, 300e9, 2020, "Brown et al. 2020, 'Language Models are Few-Shot Learners'" + _HOFFMANN_T1),
    R("Gopher 280B", 280e9, 300e9, 2021, "Rae et al. 2021, 'Scaling Language Models: … Gopher'" + _HOFFMANN_T1),
    R("Chinchilla 70B", 70e9, 1.4e12, 2022, "Hoffmann et al. 2022, 'Training Compute-Optimal LLMs', Table 1"),
    R("MT-NLG 530B", 530e9, 270e9, 2022, "Smith et al. 2022, 'Megatron-Turing NLG 530B'" + _HOFFMANN_T1),
    R("PaLM 540B", 540e9, 780e9, 2022, "Chowdhery et al. 2022, 'PaLM: Scaling Language Modeling with Pathways'"),
    R("OPT-175B", 175e9, 180e9, 2022, "Zhang et al. 2022, 'OPT: Open Pre-trained Transformer Language Models'"),
    R("BLOOM 176B", 176e9, 366e9, 2022, "BigScience Workshop 2022, 'BLOOM: A 176B-Parameter … Language Model'"),
    R("Pythia 12B", 12e9, 300e9, 2023, "Biderman et al. 2023, 'Pythia: A Suite for Analyzing LLMs'"),
    R("LLaMA 7B", 7e9, 1.0e12, 2023, _LLAMA),
    R("LLaMA 65B", 65e9, 1.4e12, 2023, _LLAMA),
    R("LLaMA-2 7B", 7e9, 2.0e12, 2023, _LLAMA2),
    R("LLaMA-2 13B", 13e9, 2.0e12, 2023, _LLAMA2),
    R("LLaMA-2 70B", 70e9, 2.0e12, 2023, _LLAMA2),
    R("Falcon 180B", 180e9, 3.5e12, 2023, "Almazrouei et al. 2023, 'The Falcon Series of Open Language Models'"),
    R("OLMo 7B", 7e9, 2.46e12, 2024, "Groeneveld et al. 2024, 'OLMo: Accelerating the Science of LMs'"),
    R("Gemma 7B", 7e9, 6.0e12, 2024, "Gemma Team 2024, 'Gemma: Open Models Based on Gemini Research'"),
    R("Llama-3 8B", 8e9, 15e12, 2024, _LLAMA3),
    R("Llama-3 70B", 70e9, 15e12, 2024, _LLAMA3),
    R("Llama-3.1 405B", 405e9, 15.6e12, 2024, "Dubey et al. 2024, 'The Llama 3 Herd of Models'"),
    # Mixture of experts: n_active_params is what the FLOPs and tokens-per-parameter use.
    R("OLMoE-1B-7B", 6.9e9, 5.1e12, 2024, "Muennighoff et al. 2024, 'OLMoE: Open Mixture-of-Experts LMs'", 1.3e9),
    R("DeepSeek-V3", 671e9, 14.8e12, 2024, "DeepSeek-AI 2024, 'DeepSeek-V3 Technical Report'", 37e9),
)
del R
# fmt: on


def reference_models(moe: Optional[bool] = None) -> list[ReferenceModel]:
    """All reference models; only the MoE ones with ``moe=True``, only dense with ``moe=False``."""
    return [m for m in REFERENCE_MODELS if moe is None or (m.n_active_params is not None) == moe]


def reference_model(name: str) -> ReferenceModel:
    """The model called ``name`` (case-insensitive); PlanError listing the names otherwise."""
    for m in REFERENCE_MODELS:
        if m.name.lower() == str(name).strip().lower():
            return m
    raise PlanError(
        f"Unknown reference model {name!r}; choose one of: {', '.join(m.name for m in REFERENCE_MODELS)}."
    )
