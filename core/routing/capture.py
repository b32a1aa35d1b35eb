"""Capture which experts a local MoE checkpoint's routers pick for each token of a text corpus.

    loaded = load_moe_model("path/to/checkpoint")              # offline, safetensors only
    chunks = []
    summary = capture_routing(loaded, None, [("def f(): ...", "python")], sink=chunks.append)

The router of every MoE layer is hooked (core/routing/families.py), the corpus runs through the
decoder in fixed-size batches, and each batch's assignments go to ``sink`` as one pandas DataFrame
with the columns of :data:`ASSIGNMENT_COLUMNS`, one row per (token, MoE layer, rank). Nothing is
kept between batches except per-expert running sums, so memory does not grow with the corpus.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from core.errors import InputError, RoutingError
from core.progress import ProgressFn, report
from core.routing import families
from core.routing.families import FamilySpec, MoeLayer

# One row per (token, MoE layer, rank); the same columns as the routing_assignments table.
ASSIGNMENT_COLUMNS = ("layer", "doc_id", "position", "token_id", "domain", "rank", "expert", "weight")
INT_COLUMNS = ("layer", "doc_id", "position", "token_id", "rank", "expert")

DEFAULT_BATCH_SIZE = 8  # windows per forward pass: big enough to keep matmuls busy on CPU, small for a laptop GPU
DEFAULT_SEQ_LEN = 512  # tokens per window; longer documents are cut into windows that do not see each other
PAD_ID = 0  # any id works: padding sits right of the real tokens, the causal mask hides it, and its rows are dropped

Doc = tuple  # (text: str | bytes, domain: str)
Sink = Callable[[pd.DataFrame], None]


@dataclass
class LoadedModel:
    """A MoE checkpoint ready for capture."""

    model: torch.nn.Module  # the transformers causal LM, in eval mode
    family: FamilySpec  # which adapter found its routers
    moe_layers: list[MoeLayer]  # its sparse blocks, in decoder order
    model_dir: Optional[Path]  # where it came from (the tokenizer is looked for there)
    device: torch.device  # where its weights live


@dataclass
class CaptureSummary:
    """What one capture recorded; everything a routing_captures row needs except model/corpus names."""

    family: str  # adapter name, e.g. "mixtral" ("external" for traces read from a file)
    layers: list[int]  # decoder-layer index of each MoE layer captured, ascending
    n_experts: int  # routed experts per layer E
    top_k: int  # experts chosen per token k
    n_tokens: int  # real (non-padding) tokens routed through every MoE layer
    n_docs: int  # documents that contributed at least one token
    n_rows: int  # rows handed to the sink = n_tokens · n_layers · top_k
    device: str  # "cuda", "mps" or "cpu"; "" for traces read from a file
    seconds: float = 0.0  # wall time of the capture
    truncated: bool = False  # True when max_tokens stopped the capture before the corpus ended
    domains: list[str] = field(default_factory=list)  # domain labels in order of first appearance
    # Mean router probability of each expert over the captured tokens, (n_layers, E): the P_i of
    # the Switch auxiliary loss (metrics.switch_aux_loss). None when the trace came from a file.
    router_prob_mean: Optional[np.ndarray] = None

    @property
    def n_layers(self) -> int:
        return len(self.layers)


# ----------------------------------------------------------------------------- devices and loading


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the one asked for, else cuda > mps > cpu."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _check_checkpoint_dir(model_dir: Path) -> None:
    if not model_dir.is_dir():
        raise RoutingError(f"model folder {model_dir} does not exist; give the folder that holds config.json and *.safetensors")
    if not (model_dir / "config.json").is_file():
        raise RoutingError(f"{model_dir} has no config.json; give a Hugging Face checkpoint folder (save_pretrained writes one)")
    has_safetensors = any(model_dir.glob("*.safetensors")) or (model_dir / "model.safetensors.index.json").is_file()
    if has_safetensors:
        return
    pickled = sorted(p.name for p in model_dir.glob("*.bin")) + sorted(p.name for p in model_dir.glob("*.pt"))
    if pickled:
        raise RoutingError(
            f"{model_dir} holds only pickled weights ({pickled[0]}); ScaleScope loads safetensors only — convert with "
            "model.save_pretrained(dir, safe_serialization=True) in a trusted environment"
        )
    raise RoutingError(f"{model_dir} has no weights (*.safetensors); save the model with save_pretrained into this folder")


def _remote_code_refusal(model_dir: Path, exc: Exception) -> str | None:
    """The refusal for a checkpoint that needs its own Python code (transformers' own message would tell
    the user to enable remote code, which ScaleScope never does)."""
    text = str(exc)
    if "trust_remote_code" not in text and "custom code" not in text:
        return None
    return (f"{model_dir} needs modelling code shipped with the checkpoint (an auto_map in config.json); "
            "ScaleScope never runs code from a checkpoint, remote code stays off: use a model family that "
            "transformers itself implements")


def load_moe_model(
    model_dir: str | Path,
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedModel:
    """Load a local Hugging Face MoE checkpoint for capture: offline, safetensors only, no remote code.

    ``dtype`` defaults to float32 on CPU (bf16 matmuls are slow there) and to the checkpoint's own
    dtype elsewhere. Raises RoutingError for a missing folder, config or weights, pickled-only
    weights, an unsupported family, or a model without MoE layers."""
    from transformers import AutoConfig, AutoModelForCausalLM

    model_dir = Path(model_dir)
    _check_checkpoint_dir(model_dir)
    try:
        config = AutoConfig.from_pretrained(model_dir, local_files_only=True, trust_remote_code=False)
    except Exception as exc:  # transformers raises several types for a config it cannot read
        raise RoutingError(_remote_code_refusal(model_dir, exc)
                           or f"cannot read {model_dir / 'config.json'} ({exc}); check that it is a transformers config") from exc
    family = families.family_for(config.model_type)
    target = pick_device(device)
    if dtype is None:
        dtype = torch.float32 if target.type == "cpu" else "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, use_safetensors=True, trust_remote_code=False, dtype=dtype
        )
    except Exception as exc:
        raise RoutingError(_remote_code_refusal(model_dir, exc)
                           or f"cannot load the weights in {model_dir} ({exc}); check the folder is a complete checkpoint") from exc
    model.to(target).eval()
    moe_layers = families.find_moe_layers(model, family)
    if not moe_layers:
        raise RoutingError(f"{model_dir} ({config.model_type}) has no MoE layers; routing needs a mixture-of-experts model")
    return LoadedModel(model, family, moe_layers, model_dir, target)


def _as_loaded(model) -> LoadedModel:
    if isinstance(model, LoadedModel):
        return model
    config = getattr(model, "config", None)
    if config is None:
        raise RoutingError("capture needs a transformers model or the result of load_moe_model")
    family = families.family_for(config.model_type)
    moe_layers = families.find_moe_layers(model, family)
    if not moe_layers:
        raise RoutingError(f"this {config.model_type} model has no MoE layers; routing needs a mixture-of-experts model")
    device = next(model.parameters()).device
    path = getattr(model, "name_or_path", "") or ""
    return LoadedModel(model, family, moe_layers, Path(path) if path and Path(path).is_dir() else None, device)


# ----------------------------------------------------------------------------- tokenizers and corpora


def load_tokenizer(tokenizer=None, model_dir: str | Path | None = None) -> Callable[[str], list[int]]:
    """An ``encode(text) -> token ids`` function.

    ``tokenizer`` may be a transformers tokenizer, a ``tokenizers.Tokenizer``, a path to a
    tokenizer.json or to a folder with one; when it is None the model folder's own tokenizer is
    loaded (AutoTokenizer, offline). Special tokens are added the way the tokenizer does by default."""
    if tokenizer is None:
        if model_dir is None or not any((Path(model_dir) / n).is_file() for n in ("tokenizer.json", "tokenizer_config.json")):
            raise RoutingError(
                "the model folder has no tokenizer; pass one, e.g. the bundled assets/tokenizer/tokenizer.json"
            )
        tokenizer = Path(model_dir)
    if isinstance(tokenizer, (str, Path)):
        path = Path(tokenizer)
        if path.is_dir():
            from transformers import AutoTokenizer

            try:
                tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
            except Exception as exc:
                raise RoutingError(f"cannot load the tokenizer in {path} ({exc}); pass a tokenizer.json instead") from exc
        elif path.is_file():
            from tokenizers import Tokenizer

            try:
                tokenizer = Tokenizer.from_file(str(path))
            except Exception as exc:
                raise RoutingError(f"cannot read tokenizer file {path} ({exc}); give a tokenizers JSON file") from exc
        else:
            raise RoutingError(f"tokenizer {path} does not exist; give a tokenizer.json or a folder with one")
    try:
        from tokenizers import Tokenizer
    except ImportError:  # pragma: no cover - tokenizers ships with transformers
        Tokenizer = ()
    if isinstance(tokenizer, Tokenizer):
        return lambda text: tokenizer.encode(text).ids
    if hasattr(tokenizer, "encode"):
        return lambda text: list(tokenizer.encode(text))
    raise RoutingError(f"cannot use a {type(tokenizer).__name__} as tokenizer; pass a tokenizers.Tokenizer or a path")


def _checked_docs(docs: Sequence[Doc]) -> list[tuple[str, str]]:
    """The corpus as (str, domain) pairs; InputError for an empty corpus or non-UTF-8 text."""
    if docs is None or len(docs) == 0:
        raise InputError("the corpus is empty; give at least one document with text")
    checked: list[tuple[str, str]] = []
    for i, doc in enumerate(docs):
        if not isinstance(doc, (tuple, list)) or len(doc) != 2:
            raise InputError(f"document {i} is not a (text, domain) pair; pass a list of (text, domain)")
        text, domain = doc
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(f"document {i} is not valid UTF-8 (byte {exc.start}); re-save it as UTF-8 text") from exc
        elif isinstance(text, str):
            try:
                text.encode("utf-8")  # lone surrogates (from errors="surrogateescape" reads) cannot be encoded
            except UnicodeEncodeError as exc:
                raise InputError(f"document {i} is not valid UTF-8 (character {exc.start}); re-save it as UTF-8 text") from exc
        else:
            raise InputError(f"document {i} text is a {type(text).__name__}; give str or UTF-8 bytes")
        checked.append((text, str(domain)))
    if not any(text.strip() for text, _ in checked):
        raise InputError("the corpus has no text (every document is empty); give documents with text")
    return checked


def read_text_files(paths: Sequence[str | Path], domains: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """Read text files as a corpus, one document per file; the domain defaults to the file's stem.

    Raises InputError for a missing file, a file that is not UTF-8, or a corpus with no text."""
    paths = [Path(p) for p in paths]
    if domains is not None and len(domains) != len(paths):
        raise InputError(f"{len(domains)} domains for {len(paths)} files; give one domain per file")
    docs = []
    for i, path in enumerate(paths):
        if not path.is_file():
            raise InputError(f"text file {path} does not exist; check the path")
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{path} is not valid UTF-8 (byte {exc.start}); re-save it as UTF-8 text") from exc
        docs.append((text, domains[i] if domains is not None else path.stem))
    return _checked_docs(docs)


# ----------------------------------------------------------------------------- capture


@dataclass
class _Window:
    doc_id: int  # index of the document in the corpus
    start: int  # position of the window's first token in its document
    ids: list[int]  # token ids


class _Windows:
    """Documents cut into windows of at most seq_len tokens, tokenized lazily, up to max_tokens."""

    def __init__(self, docs, encode, seq_len: int, max_tokens: Optional[int], vocab_size: Optional[int]):
        self.docs, self.encode, self.seq_len, self.vocab_size = docs, encode, seq_len, vocab_size
        self.budget = math.inf if max_tokens is None else max_tokens  # tokens still allowed
        self.truncated = False  # set when the budget ran out before the corpus did

    def __iter__(self) -> Iterator[_Window]:
        for doc_id, (text, _) in enumerate(self.docs):
            ids = self.encode(text)
            if ids and self.vocab_size is not None and max(ids) >= self.vocab_size:
                raise InputError(
                    f"the tokenizer produced token id {max(ids)} but the model has only {self.vocab_size} embeddings; "
                    "use the tokenizer the model was trained with"
                )
            for start in range(0, len(ids), self.seq_len):
                if self.budget <= 0:
                    self.truncated = True
                    return
                piece = ids[start : start + int(min(self.seq_len, self.budget))]
                self.truncated = len(piece) < min(self.seq_len, len(ids) - start)
                self.budget -= len(piece)
                yield _Window(doc_id, start, piece)


class _RouterTap:
    """Forward hooks that keep the latest router output of each MoE layer."""

    def __init__(self, moe_layers: list[MoeLayer]):
        self.outputs: list = [None] * len(moe_layers)
        self.handles = [
            layer.router.register_forward_hook(self._hook(slot)) for slot, layer in enumerate(moe_layers)
        ]

    def _hook(self, slot: int):
        def keep(module, args, output):
            if not isinstance(output, (tuple, list)) or len(output) < 3:
                raise RoutingError(
                    f"router {type(module).__name__} did not return (logits, weights, indices); this model's router is not supported"
                )
            self.outputs[slot] = output

        return keep

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _decoder(model: torch.nn.Module) -> torch.nn.Module:
    """The decoder without the LM head: routing needs no vocabulary logits, which cost a big matmul."""
    base = getattr(model, getattr(model, "base_model_prefix", "model"), None)
    return base if isinstance(base, torch.nn.Module) else model


def capture_routing(
    model,
    tokenizer,
    docs: Sequence[Doc],
    *,
    sink: Sink,
    max_tokens: Optional[int] = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seq_len: int = DEFAULT_SEQ_LEN,
    progress: Optional[ProgressFn] = None,
    device: str | torch.device | None = None,
) -> CaptureSummary:
    """Run ``docs`` through ``model`` and hand every router decision to ``sink``, batch by batch.

    ``model``: a :class:`LoadedModel` or a transformers MoE causal LM. ``tokenizer``: see
    :func:`load_tokenizer` (None uses the model folder's). ``docs``: (text, domain) pairs; text is
    str or UTF-8 bytes. ``sink(frame)`` receives one DataFrame per batch with the columns of
    :data:`ASSIGNMENT_COLUMNS` (int32 ids, float32 weight, categorical domain), one row per
    (token, MoE layer, rank), rank 0 being the expert with the largest routing weight; padding
    never appears. ``doc_id`` is the document's index in ``docs``, ``position`` the token's index
    in its document. Documents longer than ``seq_len`` are cut into windows that are run
    independently. ``progress(done_docs, n_docs, message)`` may raise Cancelled; the sink then
    has received whole batches only.

    Raises InputError for an empty or non-UTF-8 corpus, RoutingError for a model it cannot route."""
    if batch_size < 1 or seq_len < 1:
        raise InputError(f"batch_size and seq_len must be at least 1 (got {batch_size}, {seq_len})")
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"max_tokens must be at least 1 (got {max_tokens}); leave it out to use the whole corpus")
    corpus = _checked_docs(docs)
    loaded = _as_loaded(model)
    encode = load_tokenizer(tokenizer, loaded.model_dir)
    target = pick_device(device) if device is not None else loaded.device
    if target != loaded.device:
        loaded.model.to(target)
        loaded.device = target

    moe_layers = loaded.moe_layers
    layer_ids = np.array([m.layer for m in moe_layers], dtype=np.int32)  # (L,)
    n_layers, top_k, n_experts = len(moe_layers), moe_layers[0].top_k, moe_layers[0].n_experts
    domains = list(dict.fromkeys(domain for _, domain in corpus))
    domain_code = {d: i for i, d in enumerate(domains)}
    doc_domain = np.array([domain_code[d] for _, d in corpus], dtype=np.int32)  # (n_docs,)
    vocab_size = getattr(loaded.model.config, "vocab_size", None)
    decoder = _decoder(loaded.model)

    prob_sums = np.zeros((n_layers, n_experts), dtype=np.float64)
    n_tokens = n_rows = 0
    docs_seen: set[int] = set()
    stopped_early = False
    started = time.perf_counter()
    tap = _RouterTap(moe_layers)
    try:
        batch: list[_Window] = []
        windows_source = _Windows(corpus, encode, seq_len, max_tokens, vocab_size)
        windows = iter(windows_source)
        exhausted = False
        while not exhausted:
            window = next(windows, None)
            if window is not None:
                batch.append(window)
            exhausted = window is None
            if not batch or (len(batch) < batch_size and not exhausted):
                continue
            frame, probs = _run_batch(decoder, tap, batch, loaded, layer_ids, doc_domain, domains, target)
            prob_sums += probs
            n_tokens += sum(len(w.ids) for w in batch)
            n_rows += len(frame)
            docs_seen.update(w.doc_id for w in batch)
            sink(frame)
            last_doc = batch[-1].doc_id
            batch = []
            report(progress, last_doc + (1 if exhausted else 0), len(corpus), f"{n_tokens} tokens")
        stopped_early = windows_source.truncated
    finally:
        tap.remove()
    if n_tokens == 0:
        raise InputError("the corpus produced no tokens; give documents with text")
    report(progress, len(corpus), len(corpus), f"{n_tokens} tokens")
    return CaptureSummary(
        family=loaded.family.name,
        layers=[int(x) for x in layer_ids],
        n_experts=n_experts,
        top_k=top_k,
        n_tokens=n_tokens,
        n_docs=len(docs_seen),
        n_rows=n_rows,
        device=target.type,
        seconds=time.perf_counter() - started,
        truncated=stopped_early,
        domains=domains,
        router_prob_mean=prob_sums / n_tokens,
    )


@torch.inference_mode()
def _run_batch(decoder, tap: _RouterTap, batch: list[_Window], loaded: LoadedModel, layer_ids, doc_domain, domains, device):
    """One forward pass; returns its assignment rows and the per-layer sums of router probabilities."""
    lengths = [len(w.ids) for w in batch]
    width = max(lengths)
    input_ids = torch.full((len(batch), width), PAD_ID, dtype=torch.long)  # (B, T)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)  # (B, T)
    for row, w in enumerate(batch):
        input_ids[row, : len(w.ids)] = torch.tensor(w.ids, dtype=torch.long)
        attention_mask[row, : len(w.ids)] = 1
    decoder(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device), use_cache=False)

    valid = attention_mask.reshape(-1).bool().to(device)  # (B·T,), right padding: real tokens first in each row
    expert_ids, weights, prob_sums = [], [], []
    for slot, output in enumerate(tap.outputs):
        if output is None:
            raise RoutingError(f"the router of layer {int(layer_ids[slot])} did not run; this model's forward is not supported")
        logits, top_w, top_i = output[families.ROUTER_LOGITS], output[families.ROUTER_WEIGHTS], output[families.ROUTER_INDICES]
        top_w = top_w.reshape(-1, top_w.shape[-1])[valid].float()  # (N, k)
        top_i = top_i.reshape(-1, top_i.shape[-1])[valid]  # (N, k)
        # Rank 0 = largest routing weight (DeepSeek-V3 returns its top-k unsorted).
        top_w, order = torch.sort(top_w, dim=-1, descending=True, stable=True)
        expert_ids.append(torch.gather(top_i, 1, order))
        weights.append(top_w)
        probs = families.router_probabilities(loaded.family, logits.reshape(-1, logits.shape[-1])[valid])  # (N, E)
        prob_sums.append(probs.sum(dim=0).double())
    tap.outputs = [None] * len(tap.outputs)

    experts_np = torch.stack(expert_ids).to(torch.int32).cpu().numpy()  # (L, N, k)
    weights_np = torch.stack(weights).cpu().numpy()  # (L, N, k) float32
    n_layers, n_tok, top_k = experts_np.shape

    doc_ids = np.concatenate([np.full(len(w.ids), w.doc_id, dtype=np.int32) for w in batch])  # (N,)
    positions = np.concatenate([np.arange(w.start, w.start + len(w.ids), dtype=np.int32) for w in batch])  # (N,)
    token_ids = np.concatenate([np.asarray(w.ids, dtype=np.int32) for w in batch])  # (N,)

    def per_row(values: np.ndarray) -> np.ndarray:  # (N,) → (L·N·k,) in (layer, token, rank) order
        return np.tile(np.repeat(values, top_k), n_layers)

    frame = pd.DataFrame(
        {
            "layer": np.repeat(layer_ids, n_tok * top_k),
            "doc_id": per_row(doc_ids),
            "position": per_row(positions),
            "token_id": per_row(token_ids),
            "domain": pd.Categorical.from_codes(per_row(doc_domain[doc_ids]), categories=domains),
            "rank": np.tile(np.arange(top_k, dtype=np.int32), n_layers * n_tok),
            "expert": experts_np.reshape(-1),
            "weight": weights_np.reshape(-1),
        }
    )
    return frame, torch.stack(prob_sums).cpu().numpy()


# ----------------------------------------------------------------------------- traces and arrays


def read_trace(path: str | Path, n_experts: Optional[int] = None) -> pd.DataFrame:
    """Read routing assignments produced elsewhere (Parquet or CSV with :data:`ASSIGNMENT_COLUMNS`).

    Validates columns, types and ranges: ids are non-negative integers, ``rank`` runs 0..k−1,
    ``expert`` is below ``n_experts`` when given, ``weight`` is finite, and (layer, doc_id,
    position, rank) is unique. Returns the frame with the dtypes :func:`capture_routing` produces."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"trace file {path} does not exist; check the path")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        elif suffix in (".csv", ".gz"):
            frame = pd.read_csv(path, encoding="utf-8")
        else:
            raise InputError(f"trace {path.name} is neither .parquet nor .csv; export the trace in one of those")
    except InputError:
        raise
    except UnicodeDecodeError as exc:
        raise InputError(f"trace {path.name} is not valid UTF-8; re-save it as UTF-8") from exc
    except Exception as exc:
        raise InputError(f"cannot read trace {path.name} ({exc}); check the file is valid Parquet/CSV") from exc
    return validate_trace(frame, n_experts=n_experts, name=path.name)


def validate_trace(frame: pd.DataFrame, n_experts: Optional[int] = None, name: str = "trace") -> pd.DataFrame:
    """Check an assignments frame and return it with canonical dtypes (see :func:`read_trace`)."""
    missing = [c for c in ASSIGNMENT_COLUMNS if c not in frame.columns]
    if missing:
        raise InputError(f"{name} lacks column(s) {', '.join(missing)}; a trace needs {', '.join(ASSIGNMENT_COLUMNS)}")
    if len(frame) == 0:
        raise InputError(f"{name} has no rows; give a trace with at least one assignment")
    out = {}
    for column in INT_COLUMNS:
        values = frame[column]
        if values.isna().any() or not pd.api.types.is_numeric_dtype(values):
            raise InputError(f"{name}: column '{column}' must hold integers without blanks")
        as_float = values.to_numpy(dtype=np.float64)
        if not np.all(np.isfinite(as_float)) or np.any(as_float != np.round(as_float)):
            raise InputError(f"{name}: column '{column}' must hold whole numbers")
        if as_float.min() < 0 or as_float.max() > np.iinfo(np.int32).max:
            raise InputError(f"{name}: column '{column}' must be between 0 and 2^31−1")
        out[column] = as_float.astype(np.int32)
    weights = pd.to_numeric(frame["weight"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(weights)):
        raise InputError(f"{name}: column 'weight' must hold finite numbers")
    if n_experts is not None and out["expert"].max() >= n_experts:
        raise InputError(f"{name}: expert id {out['expert'].max()} is not below n_experts={n_experts}; check the trace")
    clean = pd.DataFrame(
        {
            "layer": out["layer"],
            "doc_id": out["doc_id"],
            "position": out["position"],
            "token_id": out["token_id"],
            "domain": pd.Categorical(frame["domain"].fillna("").astype(str)),
            "rank": out["rank"],
            "expert": out["expert"],
            "weight": weights.astype(np.float32),
        }
    )
    key = clean[["layer", "doc_id", "position", "rank"]]
    if key.duplicated().any():
        raise InputError(f"{name}: (layer, doc_id, position, rank) repeats; each token has one row per rank and layer")
    top_k = int(clean["rank"].max()) + 1
    per_token = clean.groupby(["layer", "doc_id", "position"], sort=False, observed=True).size()
    if (per_token != top_k).any():
        raise InputError(f"{name}: some tokens do not have all ranks 0..{top_k - 1}; each token needs k rows per layer")
    return clean


def trace_summary(frame: pd.DataFrame, family: str = "external") -> CaptureSummary:
    """A CaptureSummary for an assignments frame (e.g. one from :func:`read_trace`)."""
    layers = sorted(int(x) for x in np.unique(frame["layer"].to_numpy()))
    top_k = int(frame["rank"].max()) + 1
    n_tokens = len(frame) // (len(layers) * top_k)
    domain = frame["domain"]
    domains = list(domain.cat.categories) if isinstance(domain.dtype, pd.CategoricalDtype) else list(dict.fromkeys(domain))
    return CaptureSummary(
        family=family,
        layers=layers,
        n_experts=int(frame["expert"].max()) + 1,
        top_k=top_k,
        n_tokens=n_tokens,
        n_docs=int(frame["doc_id"].nunique()),
        n_rows=len(frame),
        device="",
        domains=[str(d) for d in domains],
    )


@dataclass
class RoutingArrays:
    """One layer's assignments as the arrays core/routing/metrics.py takes, tokens in (doc, position) order."""

    expert_ids: np.ndarray  # (T, k) int, rank order
    weights: np.ndarray  # (T, k) float32
    token_ids: np.ndarray  # (T,)
    domains: np.ndarray  # (T,) str
    doc_ids: np.ndarray  # (T,)
    positions: np.ndarray  # (T,)


def layer_arrays(frame: pd.DataFrame, layer: int) -> RoutingArrays:
    """Pick one layer out of an assignments frame and reshape it to (tokens, k) arrays."""
    rows = frame[frame["layer"].to_numpy() == layer]
    if len(rows) == 0:
        raise InputError(f"layer {layer} is not in this capture; choose one of {sorted(np.unique(frame['layer']))}")
    order = np.lexsort((rows["rank"].to_numpy(), rows["position"].to_numpy(), rows["doc_id"].to_numpy()))
    rows = rows.iloc[order]
    top_k = int(rows["rank"].max()) + 1
    if len(rows) % top_k:
        raise InputError(f"layer {layer} has {len(rows)} rows, not a multiple of k={top_k}; check the trace")
    first = slice(None, None, top_k)  # one row per token: its rank-0 row
    return RoutingArrays(
        expert_ids=rows["expert"].to_numpy().reshape(-1, top_k),
        weights=rows["weight"].to_numpy(dtype=np.float32).reshape(-1, top_k),
        token_ids=rows["token_id"].to_numpy()[first],
        domains=rows["domain"].astype(str).to_numpy()[first],
        doc_ids=rows["doc_id"].to_numpy()[first],
        positions=rows["position"].to_numpy()[first],
    )
