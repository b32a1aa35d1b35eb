"""Which law the planner uses: a published preset or a stored fit, as one ``LawChoice``.

Shared by pages/planner.py and the CLI's ``plan``: which law a preset key or fit id means, where a
stored fit keeps its bootstrap samples, and which accelerator a short name means. Pure: stored fits
come in as dicts (``db.fits.get_fit``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional

from core.accelerators import accelerators
from core.errors import PlanError
from core.format import CONFIDENCE
from core.planner import params_from_fit, plan, plan_from_fit
from core.registry import law_of
from core.presets import get_preset

# Besiroglu et al. 2024 refit Approach 3 on Hoffmann et al.'s own data and found the published
# parameters inconsistent with Approaches 1-2; their refit gives the ≈20 tokens per parameter all
# three approaches agree on, so it is the default law of the page and the CLI.
DEFAULT_PRESET = "epoch"
DEFAULT_ROUTED_PRESET = "clark_sbase"
INTERVAL_LEVEL = CONFIDENCE  # the app's one interval level (core/format.py): bands beside N*, D*, loss
BOOTSTRAP_COLUMNS = ("E", "A", "B", "alpha", "beta")  # row layout core.planner.bootstrap_bands reads


@dataclass(frozen=True)
class LawChoice:
    """A law the planner can use, whether a published preset or a stored fit."""

    key: str  # "epoch" for a preset, "fit-12" for stored fit 12 (the page URL's ``law`` value)
    label: str  # what the picker shows
    params: object  # a plannable core.laws dataclass (core.registry: ChinchillaParams, KaplanParams, ...)
    citation: str  # where the numbers come from, shown beside every result
    note: str = ""
    fit: Optional[dict] = None  # for fits: {"law", "params", "bootstrap_samples"} as plan_from_fit reads it

    @property
    def has_bands(self) -> bool:
        return bool(self.fit and self.fit.get("bootstrap_samples"))


def _find(stored: Mapping, name: str):
    """``name`` at the top level of a stored fit, or inside its diagnostics/settings/intervals."""
    for place in (stored, stored.get("diagnostics"), stored.get("settings"), stored.get("intervals")):
        if isinstance(place, Mapping) and place.get(name) is not None:
            return place[name]
    return None


def fit_for_planner(stored: Mapping) -> dict:
    """A stored fit (``db.fits.get_fit``) in the shape ``core.planner.plan_from_fit`` reads.

    The fitting engine's ``FitResult.to_dict()`` puts ``bootstrap_samples`` (rows in the order of
    ``param_names``) at its top level; a fit saved through ``db.fits.save_fit`` keeps them in
    ``diagnostics``. Both are accepted; columns are reordered to [E, A, B, alpha, beta].
    """
    samples = _find(stored, "bootstrap_samples")
    names = _find(stored, "param_names")
    if samples is not None and names is not None and list(names) != list(BOOTSTRAP_COLUMNS):
        if all(c in names for c in BOOTSTRAP_COLUMNS):
            order = [list(names).index(c) for c in BOOTSTRAP_COLUMNS]
            samples = [[row[i] for i in order] for row in samples]
        else:  # not a Chinchilla fit: its samples cannot give N*/D* bands
            samples = None
    return {"law": stored.get("law"), "params": stored.get("params"), "bootstrap_samples": samples or None}


def fit_label(fit_id, name, law, method, target) -> str:
    title = name if isinstance(name, str) and name else f"{law} fit"
    return f"Fit #{int(fit_id)}: {title} ({method}, target {target})"


def preset_choice(key: str) -> LawChoice:
    preset = get_preset(key)
    return LawChoice(key=preset.key, label=preset.label, params=preset.params,
                     citation=preset.citation, note=preset.note)


def stored_fit_choice(stored: Mapping) -> LawChoice:
    """A stored fit as a law choice; PlanError when its parameters are unusable."""
    fit = fit_for_planner(stored)
    return LawChoice(
        key=f"fit-{int(stored['id'])}",
        label=fit_label(stored["id"], stored.get("name"), stored.get("law"), stored.get("method"),
                        stored.get("target")),
        params=params_from_fit(fit),
        citation=f"ScaleScope fit #{int(stored['id'])}: law {stored.get('law')}, method "
                 f"{stored.get('method')}, target {stored.get('target')}",
        fit=fit,
    )


def plan_for(flops, choice: LawChoice, level: float = INTERVAL_LEVEL, **extra):
    """The compute-optimal Plan for ``choice``, with bootstrap bands when the fit stored samples.
    ``level``: the bands' central probability. ``extra``: what the law's optimum needs besides the
    budget (registry ``plan_inputs``, e.g. unique_tokens)."""
    law = law_of(choice.params)
    if law.key == "routed":
        raise PlanError(f"{choice.label} is a routed (MoE) law: pick a dense law and set the expert "
                        "count instead (the routed law then scales the dense one).")
    missing = [k for k in law.plan_inputs if extra.get(k) is None]
    if missing:
        raise PlanError(f"{choice.label} needs {', '.join(missing)} to plan (e.g. --unique-tokens 1e12): "
                        "give the size of the dataset.")
    if choice.fit is not None:
        return plan_from_fit(flops, choice.fit, level=level, **extra)
    return plan(flops, choice.params, **extra)


def resolve_accelerator(name: str) -> str:
    """The accelerator table's name for ``name``: exact (any case), else the first row that starts
    with it ("H100" → "H100 SXM": the table lists the SXM part, the one clusters train on, first)."""
    wanted = str(name).strip().lower()
    names = accelerators()
    for known in names:
        if known.lower() == wanted:
            return known
    for known in names:
        if wanted and known.lower().startswith(wanted + " "):
            return known
    raise PlanError(f"Unknown accelerator {name!r}; choose one of: {', '.join(names)}.")
