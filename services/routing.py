"""Routing captures: capture a model's routing (core.routing.capture) or import a trace, and store
it as one ``routing_captures`` row plus its assignments (the SQL is in db/routing.py).

A capture streams its assignment chunks to a temporary Parquet file (bounded memory), then lands
in ONE short transaction through DuckDB's Parquet reader — so a failed or cancelled capture
stores nothing and other sessions' writes are not held up while the model runs.

    capture_id = run_capture(store, "path/to/checkpoint", docs, corpus="my text")   # capture + store
    capture_id = import_trace(store, "trace.parquet", model_ref="my-moe")           # a trace made elsewhere
    capture_layer_summaries(store, capture_id)                                      # what `route --json` prints

``info`` (JSON) of each capture keeps what the page needs later: the MoE layer indices, the device,
the model folder and tokenizer used (for weight similarity and decoding), the mean router
probabilities per layer (for the Switch auxiliary loss), and ``model_group`` — the folder holding
a model's checkpoints — so the captures of one training run can be lined up for saturation.
"""
from __future__ import annotations

import json
import re
import shutil
import tempfile
from pathlib import Path
from typing import Optional, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import InputError
from core.progress import ProgressFn
from core.routing import metrics
from db.routing import (  # the storage of captures; pages and the CLI reach it through this module
    ASSIGNMENT_ARROW_SCHEMA, ASSIGNMENT_COLUMNS, capture_layers, delete_capture, get_capture, list_captures,
    load_assignments, store_capture_from_parquet,
)
from db.store import Store

ROOT = Path(__file__).resolve().parents[1]


class CaptureWriter:
    """Collects assignment chunks (``sink``), then ``commit(meta)`` stores them whole."""

    def __init__(self, store: Store):
        self.store = store
        self._dir = Path(tempfile.mkdtemp(prefix="ss_capture_"))
        self._path = self._dir / "assignments.parquet"
        self._writer: Optional[pq.ParquetWriter] = None
        self.n_rows = 0

    def sink(self, chunk: pd.DataFrame) -> None:
        missing = [c for c in ASSIGNMENT_COLUMNS if c not in chunk.columns]
        if missing:
            raise InputError(f"Routing rows lack the column {missing[0]!r}.")
        table = pa.Table.from_pandas(chunk[ASSIGNMENT_COLUMNS], schema=ASSIGNMENT_ARROW_SCHEMA, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._path, ASSIGNMENT_ARROW_SCHEMA)
        self._writer.write_table(table)
        self.n_rows += table.num_rows

    def commit(self, meta: dict) -> int:
        """Store the capture row and every chunk in one transaction; returns the capture id."""
        if self._writer is None or self.n_rows == 0:
            self.discard()
            raise InputError("The capture recorded no routing decisions: is the corpus empty?")
        self._writer.close()
        self._writer = None
        try:
            return store_capture_from_parquet(self.store, meta, self._path)
        finally:
            self.discard()

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        shutil.rmtree(self._dir, ignore_errors=True)


# ----------------------------------------------------------------------------- capture and import

_STEP_IN_NAME = re.compile(r"(?:step|checkpoint|ckpt|iter)[-_]?(\d+)$", re.IGNORECASE)


def display_path(path: str | Path) -> str:
    """A path as stored in ``model_ref``: relative to the project when inside it, else absolute."""
    resolved = Path(path).resolve()
    try:
        return resolved.relative_to(ROOT).as_posix()
    except ValueError:
        return str(resolved)


def checkpoint_step_of(model_dir: str | Path) -> Optional[int]:
    """The training step of a checkpoint folder, when it says: ``train_state.json`` "step" (the
    bundled checkpoints), ``trainer_state.json`` "global_step" (HF Trainer), else a folder name
    such as ``step-0060`` or ``checkpoint-1000``; None otherwise."""
    model_dir = Path(model_dir)
    for name, key in (("train_state.json", "step"), ("trainer_state.json", "global_step")):
        path = model_dir / name
        if path.is_file():
            try:
                value = json.loads(path.read_text(encoding="utf-8")).get(key)
            except (ValueError, OSError, AttributeError):
                value = None
            if isinstance(value, (int, float)) and value >= 0:
                return int(value)
    match = _STEP_IN_NAME.search(model_dir.name)
    return int(match.group(1)) if match else None


def model_group_of(model_dir: str | Path) -> str:
    """Which training run a checkpoint belongs to: the parent folder for a ``step-N`` /
    ``checkpoint-N`` folder, else the folder itself (one model, one group)."""
    model_dir = Path(model_dir)
    parent = model_dir.parent if _STEP_IN_NAME.search(model_dir.name) else model_dir
    return display_path(parent)


def sibling_checkpoints(model_dir: str | Path) -> list[Path]:
    """The checkpoint folders of ``model_dir``'s training run (itself included), oldest step first:
    folders beside it with a config.json whose name carries a step. Just ``[model_dir]`` when its
    name carries no step."""
    model_dir = Path(model_dir)
    if not _STEP_IN_NAME.search(model_dir.name) or not model_dir.parent.is_dir():
        return [model_dir]
    found = [p for p in model_dir.parent.iterdir()
             if p.is_dir() and _STEP_IN_NAME.search(p.name) and (p / "config.json").is_file()]
    if model_dir not in found:
        found.append(model_dir)
    return sorted(found, key=lambda p: (checkpoint_step_of(p) or 0, p.name))


def _tokenizer_path(tokenizer, model_dir: Optional[Path]) -> Optional[str]:
    """Where the tokenizer used for a capture lives (kept in info for decoding), or None."""
    if isinstance(tokenizer, (str, Path)):
        return str(Path(tokenizer).resolve())
    if tokenizer is None and model_dir is not None and (model_dir / "tokenizer.json").is_file():
        return str((model_dir / "tokenizer.json").resolve())
    return None


def run_capture(
    store: Store,
    model,
    docs: Sequence,
    *,
    corpus: str,
    model_ref: Optional[str] = None,
    checkpoint_step: Optional[int] = None,
    tokenizer=None,
    max_tokens: Optional[int] = None,
    batch_size: Optional[int] = None,
    seq_len: Optional[int] = None,
    progress: Optional[ProgressFn] = None,
    device=None,
    info: Optional[dict] = None,
) -> int:
    """Capture ``model``'s routing on ``docs`` and store it; returns the new capture id.

    ``model``: a checkpoint folder (loaded offline, safetensors only) or a loaded model
    (core.routing.capture.LoadedModel). ``docs``: (text, domain) pairs. ``tokenizer``: None for
    the model folder's own, or a path / tokenizer object. The step defaults to what the folder
    says (:func:`checkpoint_step_of`). Anything that goes wrong — a bad model or corpus, a
    cancel from ``progress``, the page's Stop — stores nothing."""
    from core.routing import capture  # torch/transformers: the CLI and listing pages start without them

    loaded = model if isinstance(model, capture.LoadedModel) else capture.load_moe_model(model, device=device)
    model_dir = loaded.model_dir
    options = {"max_tokens": max_tokens, "progress": progress, "device": device}
    if batch_size is not None:
        options["batch_size"] = batch_size
    # The checkpoint's own context length when it is shorter than the default window.
    positions = getattr(loaded.model.config, "max_position_embeddings", None)
    options["seq_len"] = seq_len or min(capture.DEFAULT_SEQ_LEN, positions or capture.DEFAULT_SEQ_LEN)
    writer = CaptureWriter(store)
    try:
        summary = capture.capture_routing(loaded, tokenizer, docs, sink=writer.sink, **options)
        if checkpoint_step is None and model_dir is not None:
            checkpoint_step = checkpoint_step_of(model_dir)
        meta = {
            "model_ref": model_ref or (display_path(model_dir) if model_dir is not None else type(loaded.model).__name__),
            "family": summary.family, "corpus": corpus, "checkpoint_step": checkpoint_step,
            "n_layers": summary.n_layers, "n_experts": summary.n_experts, "top_k": summary.top_k,
            "n_tokens": summary.n_tokens,
            "info": {
                "source": "capture", "layers": summary.layers, "device": summary.device,
                "seconds": round(summary.seconds, 3), "truncated": summary.truncated, "n_docs": summary.n_docs,
                "n_rows": summary.n_rows, "domains": summary.domains, "max_tokens": max_tokens,
                "seq_len": options["seq_len"],
                "model_dir": str(model_dir.resolve()) if model_dir is not None else None,
                "model_group": model_group_of(model_dir) if model_dir is not None else None,
                "tokenizer": _tokenizer_path(tokenizer, model_dir),
                "router_prob_mean": None if summary.router_prob_mean is None else summary.router_prob_mean.tolist(),
                **(info or {}),
            },
        }
    except BaseException:  # includes Streamlit's rerun/stop interrupting the script mid-capture
        writer.discard()
        raise
    return writer.commit(meta)


def store_trace(store: Store, frame: pd.DataFrame, *, model_ref: str, corpus: str = "",
                checkpoint_step: Optional[int] = None, n_experts: Optional[int] = None,
                info: Optional[dict] = None) -> int:
    """Store a validated assignments frame (core.routing.capture.validate_trace) as a capture."""
    from core.routing import capture  # torch (see run_capture)

    if not model_ref or not str(model_ref).strip():
        raise InputError("give the trace a model name (e.g. the checkpoint it came from)")
    summary = capture.trace_summary(frame)
    experts = summary.n_experts if n_experts is None else int(n_experts)
    if experts < summary.n_experts:
        raise InputError(f"the trace uses expert {summary.n_experts - 1} but n_experts is {experts}; "
                         "give the model's expert count")
    writer = CaptureWriter(store)
    try:
        writer.sink(frame)
        meta = {"model_ref": str(model_ref).strip(), "family": summary.family, "corpus": corpus,
                "checkpoint_step": checkpoint_step, "n_layers": summary.n_layers, "n_experts": experts,
                "top_k": summary.top_k, "n_tokens": summary.n_tokens,
                "info": {"source": "trace", "layers": summary.layers, "device": "", "n_docs": summary.n_docs,
                         "n_rows": summary.n_rows, "domains": summary.domains, "model_dir": None,
                         "model_group": None, "tokenizer": None, "router_prob_mean": None, **(info or {})}}
    except BaseException:
        writer.discard()
        raise
    return writer.commit(meta)


def import_trace(store: Store, path: str | Path, *, model_ref: Optional[str] = None, corpus: str = "",
                 checkpoint_step: Optional[int] = None, n_experts: Optional[int] = None) -> int:
    """Read a routing trace made elsewhere (Parquet/CSV with the assignment columns) and store it;
    the model name defaults to the file name."""
    from core.routing import capture  # torch (see run_capture)

    path = Path(path)
    frame = capture.read_trace(path, n_experts=n_experts)
    return store_trace(store, frame, model_ref=model_ref or path.stem, corpus=corpus or path.name,
                       checkpoint_step=checkpoint_step, n_experts=n_experts, info={"source_file": path.name})


# ----------------------------------------------------------------------------- summaries


def router_prob_mean(capture: dict):
    """The capture's mean router probability per (layer, expert) as a nested list, or None."""
    return (capture.get("info") or {}).get("router_prob_mean")


def capture_layer_summaries(store: Store, capture_id: int, min_count: int = 10) -> list[dict]:
    """Per MoE layer, what ``cli.py route --json`` prints: layer, load (assignments per expert),
    cv, max_vio, entropy, vocab_specialization (top-1, tokens seen at least ``min_count`` times).
    One layer is read at a time, so memory follows one layer's rows."""
    from core.routing import capture as capture_mod  # torch (see run_capture)

    capture = get_capture(store, capture_id)
    layers = (capture.get("info") or {}).get("layers")
    if not layers:
        layers = capture_layers(store, capture_id)
    out = []
    for layer in layers:
        arrays = capture_mod.layer_arrays(load_assignments(store, capture_id, layer=int(layer)), int(layer))
        out.append({"layer": int(layer),
                    **metrics.layer_summary(arrays.expert_ids, arrays.token_ids, int(capture["n_experts"]), min_count)})
    return out


def captures_like(store: Store, capture_id: int) -> pd.DataFrame:
    """The stored captures of the same training run and corpus as ``capture_id`` (itself included),
    oldest checkpoint first: what saturation across checkpoints lines up."""
    captures = list_captures(store)
    row = captures[captures["id"] == int(capture_id)]
    if row.empty:
        raise InputError(f"No routing capture with id {capture_id}: list them with `python cli.py route --list`.")
    group = row["info"].iloc[0].get("model_group")
    corpus = row["corpus"].iloc[0]
    if not group:
        return row.reset_index(drop=True)
    same = captures[(captures["info"].map(lambda i: i.get("model_group")) == group) & (captures["corpus"] == corpus)]
    return same.sort_values(["checkpoint_step", "id"], na_position="first").reset_index(drop=True)


def model_dir_of(capture: dict) -> Optional[Path]:
    """The checkpoint folder a capture came from, if it is still there (a project-relative
    ``model_ref`` is tried too, so a moved checkout still finds its bundled checkpoints)."""
    info = capture.get("info") or {}
    candidates = [info.get("model_dir"), ROOT / str(capture.get("model_ref") or "")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "config.json").is_file():
            return Path(candidate)
    return None


def tokenizer_of(capture: dict) -> Optional[Path]:
    """The tokenizer a capture was made with (for decoding its token ids), if it is still there."""
    info = capture.get("info") or {}
    path = info.get("tokenizer")
    if path and Path(path).exists():
        return Path(path)
    model_dir = model_dir_of(capture)
    if model_dir is not None and (model_dir / "tokenizer.json").is_file():
        return model_dir / "tokenizer.json"
    if path:  # a bundled tokenizer in a moved checkout
        moved = ROOT / "assets" / "tokenizer" / Path(path).name
        if Path(path).parent.name == "tokenizer" and moved.is_file():
            return moved
    return None
