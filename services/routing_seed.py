"""First start: capture the bundled tiny MoE's checkpoints on the bundled held-out sample.

A newcomer opens the Routing page and sees real heatmaps — and saturation across checkpoints —
without a download. Every checkpoint folder under assets/models/<model>/step-NNNN is captured on
the same balanced sample (core.routing.views.sample_by_domain), so their tokens line up.

    from services.routing_seed import seed_bundled_capture
    seed_bundled_capture(store)   # a few seconds on a CPU; [] when the store already has captures
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Optional

from services.routing import checkpoint_step_of, display_path, list_captures, run_capture
from db.store import Store

ASSETS = Path(__file__).resolve().parents[1] / "assets"
MODELS = ASSETS / "models"
BUNDLED_TOKENIZER = ASSETS / "tokenizer" / "tokenizer.json"
DEFAULT_SEED_TOKENS = 4096  # 2 checkpoints × 4096 tokens: ~1 s of capture on one CPU core, ~33k rows each


def bundled_checkpoints(models_dir: Path = MODELS) -> list[Path]:
    """Checkpoint folders of the bundled models (a config.json and safetensors weights), ordered
    by model, then training step."""
    if not models_dir.is_dir():
        return []
    found = [p.parent for p in models_dir.glob("*/*/config.json") if any(p.parent.glob("*.safetensors"))]
    return sorted(found, key=lambda p: (p.parent.name, checkpoint_step_of(p) or 0, p.name))


def bundled_tokenizer(model_dir: Path) -> Path:
    """The tokenizer of a bundled checkpoint: its own tokenizer.json, else assets/tokenizer."""
    own = Path(model_dir) / "tokenizer.json"
    return own if own.is_file() else BUNDLED_TOKENIZER


def bundled_corpus_label(tokens_per_domain: int) -> str:
    """The corpus name stored with captures of the bundled sample (the sample size is part of it:
    two samples of different size number their documents differently)."""
    return f"bundled held-out sample, {tokens_per_domain} tokens/domain"


def bundled_documents(max_tokens: int, tokenizer: Path = BUNDLED_TOKENIZER) -> tuple[list, str]:
    """A balanced sample of assets/corpus/heldout.jsonl, about ``max_tokens`` tokens over all its
    domains: ((text, domain) pairs, corpus label)."""
    # torch (core.corpus, core.routing.capture): the pages that only list captures start without it
    from core.corpus import DOMAINS, load_heldout
    from core.routing.capture import load_tokenizer
    from core.routing.views import sample_by_domain

    docs = load_heldout()
    n_domains = len({d.domain for d in docs}) or len(DOMAINS)
    per_domain = max(1, math.ceil(max_tokens / n_domains))
    encode = load_tokenizer(tokenizer)
    return sample_by_domain(docs, per_domain, encode), bundled_corpus_label(per_domain)


def seed_bundled_capture(store: Store, max_tokens: int = DEFAULT_SEED_TOKENS,
                         checkpoints: Optional[list[Path]] = None) -> list[int]:
    """Capture every bundled checkpoint on the bundled held-out sample; returns the capture ids.

    Does nothing (returns []) when the store already holds a capture — a user who deleted the
    bundled ones is not given them back — or when no checkpoint is bundled."""
    if not list_captures(store).empty:
        return []
    checkpoints = bundled_checkpoints() if checkpoints is None else checkpoints
    if not checkpoints:
        return []
    tokenizer = bundled_tokenizer(checkpoints[-1])
    docs, corpus = bundled_documents(max_tokens, tokenizer)
    ids = []
    for folder in checkpoints:
        ids.append(run_capture(store, folder, docs, corpus=corpus, model_ref=display_path(folder),
                               tokenizer=bundled_tokenizer(folder), max_tokens=max_tokens,
                               info={"bundled": True}))
    return ids
