"""What the Routing page shows, computed from stored assignments: pure pandas/numpy, no Streamlit.

The page (pages/routing.py) reads widgets, calls these helpers and draws; the CLI uses the same
numbers. Inputs are assignment frames with the columns of ``core.routing.capture.ASSIGNMENT_COLUMNS``
(one row per token, MoE layer and rank), as ``services.routing.load_assignments`` returns them.

- corpora: :func:`sample_by_domain` (a balanced sample of the bundled corpus),
  :func:`documents_from_uploads` (uploaded files, one domain per file);
- tables: :func:`captures_table`, :func:`layer_metrics`, :func:`compare_layer_metrics`;
- heatmaps: :func:`load_matrix`, :func:`similarity_by_layer`;
- the token view: :func:`load_decoder`, :func:`token_pieces`, :func:`token_view`,
  :func:`token_html`, :func:`preferred_tokens`;
- dynamics: :func:`aligned_experts`, :func:`saturation_series`.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd

from core.errors import InputError, RoutingError
from core.routing import metrics
from core.routing.capture import RoutingArrays, layer_arrays

Decode = Callable[[list], str]  # token ids → text

# ----------------------------------------------------------------------------- corpora


def sample_by_domain(docs: Sequence, tokens_per_domain: int, encode: Callable[[str], list]) -> list[tuple[str, str]]:
    """About ``tokens_per_domain`` tokens of each domain, documents in corpus order, domains in order
    of first appearance: (text, domain) pairs.

    The bundled held-out file lists its domains one after another, so a plain ``max_tokens`` cut
    would keep only the first domain. Here each domain gets its own budget; the document that
    crosses it is cut at the longest prefix that fits the budget (a binary search on characters),
    so a capture capped at ``n_domains · tokens_per_domain`` sees every domain. ``docs`` are
    (text, domain) pairs or objects with ``.text`` and ``.domain`` (core.corpus.Document)."""
    if tokens_per_domain < 1:
        raise InputError(f"tokens per domain must be at least 1, got {tokens_per_domain}")
    pairs = [(d.text, d.domain) if hasattr(d, "text") else (d[0], d[1]) for d in docs]
    used: dict[str, int] = {}
    out: list[tuple[str, str]] = []
    for text, domain in pairs:
        left = tokens_per_domain - used.get(domain, 0)
        if left <= 0 or not text.strip():
            continue
        n_tokens = len(encode(text))
        if n_tokens > left:
            text = _longest_prefix(text, left, encode)
            n_tokens = len(encode(text))
        if text.strip():
            out.append((text, domain))
            used[domain] = used.get(domain, 0) + n_tokens
    if not out:
        raise InputError("the corpus has no text; give documents with text")
    return out


def _longest_prefix(text: str, max_tokens: int, encode: Callable[[str], list]) -> str:
    """The longest prefix of ``text`` that encodes to at most ``max_tokens`` tokens (≈ log2(len) encodes)."""
    low, high = 0, len(text)  # text[:low] fits; text[:high + 1] does not
    while low < high:
        middle = (low + high + 1) // 2
        if len(encode(text[:middle])) <= max_tokens:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def documents_from_uploads(files: Sequence[tuple[str, bytes]], domains: Optional[Sequence[str]] = None) -> list[tuple[str, str]]:
    """Uploaded text files as a corpus, one document and one domain per file.

    ``files``: (file name, content bytes). The domain defaults to the file name without its
    extension. InputError names the file that is empty or not UTF-8."""
    if not files:
        raise InputError("no text files uploaded; upload at least one UTF-8 text file")
    if domains is not None and len(domains) != len(files):
        raise InputError(f"{len(domains)} domain name(s) for {len(files)} file(s); give one domain per file, comma-separated")
    docs = []
    for i, (name, content) in enumerate(files):
        try:
            text = bytes(content).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name} is not valid UTF-8 (byte {exc.start}); re-save it as UTF-8 text") from None
        if not text.strip():
            raise InputError(f"{name} is empty; upload files with text")
        docs.append((text, domains[i] if domains is not None else Path(name).stem))
    return docs


def parse_domains(text: str, n_files: int) -> Optional[list[str]]:
    """Domain names typed as "python, prose, …" (one per file); None when left empty."""
    names = [part.strip() for part in (text or "").split(",")]
    if not any(names):
        return None
    if len(names) != n_files or not all(names):
        raise InputError(f"give {n_files} non-empty domain name(s), comma-separated, one per file (got {text!r})")
    return names


# ----------------------------------------------------------------------------- tables


def capture_label(row) -> str:
    """A one-line name for a stored capture: "#3 tiny-moe/step-0060 · step 60 · 4096 tokens · corpus"."""
    step = row.get("checkpoint_step")
    step_text = f" · step {int(step)}" if step is not None and not pd.isna(step) else ""
    return f"#{int(row['id'])} {row['model_ref']}{step_text} · {int(row['n_tokens'])} tokens · {row['corpus']}"


def captures_table(captures: pd.DataFrame) -> pd.DataFrame:
    """The stored captures as shown in the page's table: one row per capture."""
    columns = ["id", "model_ref", "family", "checkpoint_step", "corpus", "n_layers", "n_experts", "top_k", "n_tokens"]
    if captures.empty:
        return pd.DataFrame(columns=columns + ["device", "created_at"])
    out = captures[columns].copy()
    out["device"] = captures["info"].map(lambda info: info.get("device") or info.get("source", ""))
    out["created_at"] = captures.get("created_at")
    return out.reset_index(drop=True)


def load_matrix(frame: pd.DataFrame, n_experts: int) -> tuple[list[int], np.ndarray]:
    """Assignments per (MoE layer, expert) over all ranks: (layer indices, (L, E) counts)."""
    layers = sorted(int(x) for x in np.unique(frame["layer"].to_numpy()))
    counts = np.zeros((len(layers), n_experts), dtype=np.int64)
    for row, layer in enumerate(layers):
        experts = frame["expert"].to_numpy()[frame["layer"].to_numpy() == layer]
        counts[row] = metrics.expert_load(experts, n_experts)
    return layers, counts


def _probs_for(router_prob_mean, layers: list[int], layer: int, n_experts: int):
    """The capture's mean router probability of one layer, or None (then the proxy is used)."""
    if router_prob_mean is None:
        return None
    table = np.asarray(router_prob_mean, dtype=np.float64)
    if table.shape != (len(layers), n_experts):
        return None
    return table[layers.index(layer)]


def layer_metrics(
    frame: pd.DataFrame,
    n_experts: int,
    *,
    capacity_factor: float = 1.0,
    router_prob_mean=None,
    min_count: int = 10,
    n_permutations: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per MoE layer: load balance, specialization and consecutive-token rates.

    Columns: layer, tokens, cv, max_vio, entropy, aux_loss (+ aux_loss_from: "router" when the
    capture recorded the mean router probabilities, "top-k weights" for the proxy),
    drop_rate (at ``capacity_factor``, the capture as one group), vocab_top1 and its permutation
    null (mean, std; tokens seen at least ``min_count`` times), vocab_topk, consecutive
    first-choice and top-k-overlap rates with their random baselines. Sources are in
    core/routing/metrics.py."""
    layers = sorted(int(x) for x in np.unique(frame["layer"].to_numpy()))
    rows = []
    for layer in layers:
        arrays = layer_arrays(frame, layer)
        ids = arrays.expert_ids
        load = metrics.expert_load(ids, n_experts)
        probs = _probs_for(router_prob_mean, layers, layer, n_experts)
        vocab = metrics.vocab_specialization(ids, arrays.token_ids, n_experts, "1", min_count)
        null_mean, null_std = metrics.vocab_specialization_null(
            ids, arrays.token_ids, n_experts, "1", min_count, n_permutations=n_permutations, seed=seed)
        consecutive = metrics.consecutive_same_expert(ids, n_experts, arrays.doc_ids, arrays.positions)
        rows.append({
            "layer": layer,
            "tokens": int(ids.shape[0]),
            "cv": metrics.coefficient_of_variation(load),
            "max_vio": metrics.max_violation(load),
            "entropy": metrics.normalized_entropy(load),
            "aux_loss": metrics.switch_aux_loss(ids, n_experts, router_prob_mean=probs, weights=arrays.weights),
            "aux_loss_from": "router" if probs is not None else "top-k weights",
            "drop_rate": metrics.token_drop_rate(ids, n_experts, capacity_factor),
            "vocab_top1": vocab.score,
            "vocab_top1_null": null_mean,
            "vocab_top1_null_std": null_std,
            "vocab_tokens": int(len(vocab.token_ids)),
            "vocab_topk": metrics.vocab_specialization(ids, arrays.token_ids, n_experts, "k", min_count).score,
            "same_first": consecutive.first_choice,
            "same_first_random": consecutive.random_first_choice,
            "overlap_topk": consecutive.any_overlap,
            "overlap_topk_random": consecutive.random_any_overlap,
        })
    return pd.DataFrame(rows)


COMPARED_METRICS = ("cv", "max_vio", "entropy", "aux_loss", "drop_rate", "vocab_top1")


def compare_layer_metrics(table_a: pd.DataFrame, table_b: pd.DataFrame,
                          columns: Sequence[str] = COMPARED_METRICS) -> pd.DataFrame:
    """Two :func:`layer_metrics` tables side by side on their layers: ``<metric> A``, ``<metric> B``
    and ``Δ <metric>`` = B − A; layers only one capture has get blanks for the other."""
    a = table_a.set_index("layer")[list(columns)]
    b = table_b.set_index("layer")[list(columns)]
    out = a.add_suffix(" A").join(b.add_suffix(" B"), how="outer")
    for column in columns:
        out[f"Δ {column}"] = out[f"{column} B"] - out[f"{column} A"]
    ordered = [f"{c} {s}" for c in columns for s in ("A", "B")] + [f"Δ {c}" for c in columns]
    return out[ordered].reset_index()


# ----------------------------------------------------------------------------- weights


def similarity_by_layer(loaded) -> dict[int, dict[str, np.ndarray]]:
    """{decoder layer: {"gate", "up", "down", "router": (E, E) cosine similarity}} for a loaded
    checkpoint (core.routing.capture.LoadedModel); see core/routing/similarity.py (Lo et al. 2024)."""
    from core.routing import similarity

    out: dict[int, dict[str, np.ndarray]] = {}
    for moe_layer in loaded.moe_layers:
        matrices = similarity.expert_weight_similarity(moe_layer)
        try:
            matrices["router"] = similarity.router_similarity(moe_layer)
        except RoutingError:
            pass  # a router without a weight matrix: the expert matrices still stand
        out[moe_layer.layer] = matrices
    return out


# ----------------------------------------------------------------------------- token view


def load_decoder(tokenizer_path: str | Path | None) -> Optional[Decode]:
    """``decode(ids) -> text`` from a tokenizer.json (or a folder with one); None when there is none.

    Raises RoutingError for a file the ``tokenizers`` library cannot read."""
    if not tokenizer_path:
        return None
    path = Path(tokenizer_path)
    if path.is_dir():
        path = path / "tokenizer.json"
    if not path.is_file():
        return None
    from tokenizers import Tokenizer

    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises its own Exception type
        raise RoutingError(f"cannot read tokenizer {path} ({exc}); give a tokenizers JSON file") from exc
    return lambda ids: tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def token_pieces(token_ids: Sequence[int], decode: Decode) -> list[str]:
    """The text each token adds, so that ``"".join(pieces) == decode(token_ids)``.

    Byte-level BPE tokens may hold part of a UTF-8 character: decoding one id alone then gives
    U+FFFD. Each piece is therefore the growth of the decoded prefix; a token that ends inside a
    character gets "" and the character goes to the token that completes it."""
    pieces, shown = [], ""
    ids = [int(i) for i in token_ids]
    for end in range(1, len(ids) + 1):
        text = decode(ids[:end])
        if text.endswith("\ufffd") and end < len(ids) and text.startswith(shown):
            pieces.append("")  # incomplete character: wait for the next token
            continue
        pieces.append(text[len(shown):] if text.startswith(shown) else decode(ids[end - 1 : end]))
        shown = text
    return pieces


def token_view(arrays: RoutingArrays, doc_id: int, decode: Optional[Decode] = None, max_tokens: int = 400) -> pd.DataFrame:
    """The first ``max_tokens`` tokens of one document, in order, with their routing in this layer.

    Columns: position, token_id, piece (its text; "⟨id⟩" without a decoder), expert (rank 0),
    weight (its routing weight), choices ("e (w), …" in rank order)."""
    rows = np.flatnonzero(arrays.doc_ids == doc_id)[:max_tokens]
    if len(rows) == 0:
        raise InputError(f"document {doc_id} has no tokens in this capture; choose another document")
    token_ids = arrays.token_ids[rows]
    pieces = token_pieces(token_ids, decode) if decode is not None else [f"⟨{int(t)}⟩" for t in token_ids]
    experts, weights = arrays.expert_ids[rows], arrays.weights[rows]  # (n, k) each
    return pd.DataFrame({
        "position": arrays.positions[rows].astype(int),
        "token_id": token_ids.astype(int),
        "piece": pieces,
        "expert": experts[:, 0].astype(int),
        "weight": weights[:, 0].astype(float),
        "choices": [", ".join(f"{int(e)} ({w:.2f})" for e, w in zip(er, wr)) for er, wr in zip(experts, weights)],
    })


# ColorBrewer Set3: twelve light, mutually distinct colours on which dark text stays readable.
_SET3 = ("#8dd3c7", "#ffffb3", "#bebada", "#fb8072", "#80b1d3", "#fdb462", "#b3de69", "#fccde5", "#d9d9d9",
         "#bc80bd", "#ccebc5", "#ffed6f")


def expert_colors(n_experts: int) -> list[str]:
    """One light background colour per expert: ColorBrewer Set3 up to 12 experts, evenly spaced
    light hues beyond (many experts cannot all be told apart by colour; the hover says which)."""
    if n_experts <= len(_SET3):
        return list(_SET3[:n_experts])
    return [f"hsl({round(360 * e / n_experts)}, 70%, 80%)" for e in range(n_experts)]


def token_html(view: pd.DataFrame, n_experts: int, layer: int) -> str:
    """The text of :func:`token_view` with each token's background in its top expert's colour and
    a hover title giving token, id, position and every chosen expert with its weight."""
    colors = expert_colors(n_experts)
    spans = []
    for row in view.itertuples(index=False):
        title = (f"{row.piece!r} · id {row.token_id} · position {row.position} · layer {layer} · "
                 f"experts {row.choices}")
        spans.append(f'<span class="ss-token" data-expert="{row.expert}" style="background:{colors[row.expert]}" '
                     f'title="{html.escape(title, quote=True)}">{html.escape(row.piece)}</span>')
    legend = " ".join(f'<span style="background:{c};padding:0 6px;border-radius:3px">expert {e}</span>'
                      for e, c in enumerate(colors))
    return (f'<div class="ss-token-legend" style="margin-bottom:6px;font-size:0.85em">{legend}</div>'
            f'<div class="ss-token-view" style="font-family:monospace;white-space:pre-wrap;line-height:1.7;'
            f'color:#111;max-height:420px;overflow-y:auto">{"".join(spans)}</div>')


def preferred_tokens(arrays: RoutingArrays, n_experts: int, decode: Optional[Decode] = None, top_n: int = 8,
                     min_count: int = 5, top: str = "1") -> pd.DataFrame:
    """The tokens each expert prefers: for every expert e, the ``top_n`` token ids x (seen at least
    ``min_count`` times) with the largest share N(x, e)/N(x) of their occurrences routed to e
    (top-1 or top-k, as in OLMoE's vocabulary specialization), ties broken by N(x, e).

    Long form, sorted by expert then rank: expert, rank, token_id, token, share, routed (N(x, e)),
    count (N(x))."""
    ids = np.asarray(arrays.expert_ids)
    use_k = 1 if top == "1" else ids.shape[1]
    uniq, inverse, counts = np.unique(arrays.token_ids, return_inverse=True, return_counts=True)
    cells = inverse.reshape(-1, 1) * n_experts + ids[:, :use_k]  # (T, use_k)
    table = np.bincount(cells.reshape(-1), minlength=len(uniq) * n_experts).reshape(len(uniq), n_experts)  # (U, E)
    keep = counts >= min_count
    uniq, counts, table = uniq[keep], counts[keep], table[keep]
    rows = []
    for expert in range(n_experts):
        routed = table[:, expert]
        share = routed / np.maximum(counts, 1)
        order = np.lexsort((-routed, -share))  # share desc, then routed desc
        order = [i for i in order if routed[i] > 0][:top_n]
        for rank, i in enumerate(order):
            token = decode([int(uniq[i])]) if decode is not None else f"⟨{int(uniq[i])}⟩"
            rows.append({"expert": expert, "rank": rank, "token_id": int(uniq[i]), "token": token,
                         "share": float(share[i]), "routed": int(routed[i]), "count": int(counts[i])})
    return pd.DataFrame(rows, columns=["expert", "rank", "token_id", "token", "share", "routed", "count"])


def preferred_tokens_summary(long: pd.DataFrame, n_experts: int) -> pd.DataFrame:
    """One row per expert: its preferred tokens as "'tok' 92% (31)" joined, "—" when none qualifies."""
    out = []
    for expert in range(n_experts):
        part = long[long["expert"] == expert]
        tokens = ", ".join(f"{t!r} {s:.0%} ({c})" for t, s, c in zip(part["token"], part["share"], part["count"]))
        out.append({"expert": expert, "preferred tokens (share of their occurrences, count)": tokens or "—"})
    return pd.DataFrame(out)


# ----------------------------------------------------------------------------- dynamics


def aligned_experts(frame_a: pd.DataFrame, frame_b: pd.DataFrame, layer: int) -> tuple[np.ndarray, np.ndarray]:
    """The (T, k) expert ids of two captures' layer on the tokens both saw: the same (document,
    position) holding the same token id. Rows correspond; InputError when they share no token."""
    a, b = layer_arrays(frame_a, layer), layer_arrays(frame_b, layer)
    key_a = a.doc_ids.astype(np.int64) << 32 | a.positions.astype(np.int64)
    key_b = b.doc_ids.astype(np.int64) << 32 | b.positions.astype(np.int64)
    _, ia, ib = np.intersect1d(key_a, key_b, assume_unique=True, return_indices=True)
    same = a.token_ids[ia] == b.token_ids[ib]
    ia, ib = ia[same], ib[same]
    if len(ia) == 0:
        raise InputError(f"the two captures share no tokens in layer {layer}; capture the same text with both checkpoints")
    return a.expert_ids[ia], b.expert_ids[ib]


def saturation_series(captures: Sequence[tuple[int, Optional[float], pd.DataFrame]], final_index: int = -1) -> pd.DataFrame:
    """Router saturation (OLMoE, Muennighoff et al. 2024, sec. 5) of every checkpoint against the
    final one, per layer, on the tokens both captured.

    ``captures``: (capture id, checkpoint step, assignments frame), in training order; the one at
    ``final_index`` (default: the last) is the reference and scores 1.0. Returns one row per
    (capture, layer): capture_id, step, layer, saturation (top-k sets), saturation_top1, tokens."""
    if len(captures) < 2:
        raise InputError("saturation needs captures of at least two checkpoints of the same model on the same text")
    final_id, _, final_frame = captures[final_index]
    layers = sorted(int(x) for x in np.unique(final_frame["layer"].to_numpy()))
    rows = []
    for capture_id, step, frame in captures:
        for layer in layers:
            if layer not in set(np.unique(frame["layer"].to_numpy()).tolist()):
                continue
            ids_t, ids_final = aligned_experts(frame, final_frame, layer)
            rows.append({"capture_id": int(capture_id), "step": None if step is None else float(step), "layer": layer,
                         "saturation": metrics.router_saturation(ids_t, ids_final),
                         "saturation_top1": metrics.router_saturation(ids_t, ids_final, k=1),
                         "tokens": int(ids_t.shape[0])})
    return pd.DataFrame(rows)


def capture_agreement(frame_a: pd.DataFrame, frame_b: pd.DataFrame) -> pd.DataFrame:
    """Per shared layer, how much two captures agree on the same tokens: router saturation of A
    against B (top-k and top-1) and the number of shared tokens. Empty when no layer is shared
    or the captures saw different text."""
    layers = sorted(set(np.unique(frame_a["layer"]).tolist()) & set(np.unique(frame_b["layer"]).tolist()))
    rows = []
    for layer in layers:
        try:
            ids_a, ids_b = aligned_experts(frame_a, frame_b, int(layer))
        except InputError:
            continue
        k = min(ids_a.shape[1], ids_b.shape[1])
        rows.append({"layer": int(layer), "agreement_topk": metrics.router_saturation(ids_a[:, :k], ids_b[:, :k]),
                     "agreement_top1": metrics.router_saturation(ids_a, ids_b, k=1), "tokens": int(ids_a.shape[0])})
    return pd.DataFrame(rows, columns=["layer", "agreement_topk", "agreement_top1", "tokens"])


def finite_or_none(value) -> Optional[float]:
    """A float for display/JSON, None for NaN (e.g. vocab specialization with no frequent token)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)
