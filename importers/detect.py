"""Tell a log's format from its content (the extension is only a hint).

Order of the checks, first match wins:
1. zip magic -> the formats of its members; a folder likewise;
2. a TFRecord header whose CRC checks out (or a ``tfevents`` name) -> ``tensorboard``;
3. JSON with ``log_history`` -> ``hf_trainer``; a model config alone is refused with advice;
4. a table (CSV/TSV/JSONL/JSON records), by its column names:
   ``Step`` + ``"<run> - <metric>"`` -> ``wandb_export``; ``_step`` -> ``wandb_history``;
   ``epoch`` + ``step`` -> ``lightning``; step + metric + value -> ``csv_long``;
   a loss and a size (N/D/C) but no step -> ``summary``; step + other columns -> ``csv_wide``.
"""
from __future__ import annotations

import io
import json
import os
import zipfile
from typing import Optional, Union

from core.errors import InputError
from importers import hf_trainer, lightning, summary, tabular, tensorboard_events
from importers.safety import SNIFF_BYTES, check_not_empty, is_zip, require_text

# Loose files in a folder or zip that are read as tables.
TABULAR_EXTS = (".csv", ".tsv", ".tab", ".jsonl", ".ndjson")
# The formats a folder or zip can hold as run folders (each importer finds its own files).
FOLDER_FORMATS = ("tensorboard", "hf_trainer", "lightning")
TABLE_FORMATS = ("csv_long", "csv_wide", "summary", "wandb_export", "wandb_history", "lightning")
EXPECTED = (
    "expected step + metric columns, run/step/metric/value, an N/D/loss summary, a W&B CSV, "
    "events.out.tfevents, trainer_state.json, a Lightning metrics.csv, or a .zip of them; "
    "or choose the format explicitly"
)


def _skip(rel: str) -> bool:
    parts = rel.replace("\\", "/").split("/")
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def list_files(root: str) -> list[str]:
    """Files below ``root`` as relative paths; hidden files, __MACOSX and symlinked folders skipped."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        for name in sorted(filenames):
            rel = os.path.relpath(os.path.join(dirpath, name), root)
            if not _skip(rel) and os.path.isfile(os.path.join(dirpath, name)):
                out.append(rel)
    return out


def member_families(rel_files: list[str]) -> list[str]:
    """Which importers have files among a folder's or zip's members, in a fixed order."""
    found = []
    names = [os.path.basename(r) for r in rel_files if not _skip(r)]
    if any(tensorboard_events.is_tfevents_name(n) for n in names):
        found.append("tensorboard")
    if hf_trainer.STATE_FILE in names:
        found.append("hf_trainer")
    if lightning.METRICS_FILE in names:
        found.append("lightning")
    if any(n.lower().endswith(TABULAR_EXTS) and n != lightning.METRICS_FILE for n in names):
        found.append("table")
    return found


def container_format(rel_files: list[str], what: str) -> str:
    families = member_families(rel_files)
    if not families:
        raise InputError(f"{what} holds no log files ScaleScope reads; {EXPECTED}")
    if len(families) == 1 and families[0] in FOLDER_FORMATS:
        return families[0]
    return "bundle"


def classify_header(header: list[str], what: str = "the file") -> Optional[str]:
    """A table format from column names alone, or None."""
    if tabular.is_wandb_export_header(header):
        return "wandb_export"
    if "_step" in header:
        return "wandb_history"
    if lightning.is_lightning_header(header):
        return "lightning"
    step = tabular.find_column(header, tabular.STEP_ALIASES)
    if step is not None:
        value = tabular.find_column(header, tabular.VALUE_ALIASES, exclude=(step,))
        metric = tabular.find_column(header, tabular.METRIC_ALIASES, exclude=(step,))
        if value is not None and metric is not None:
            return "csv_long"
        if value is None and tabular.find_column(header, tabular.METRIC_ALIASES[:-1], exclude=(step,)) is not None:
            raise InputError(
                f"{what}: has step and metric columns but no value column; "
                f"a long file needs run, step, metric, value (or use one column per metric)"
            )
    if summary.looks_like_summary(header):
        return "summary"
    if step is not None and len([h for h in header if h]) > 1:
        return "csv_wide"
    return None


def _detect_json_doc(doc, what: str) -> str:
    if hf_trainer.is_trainer_state(doc):
        return "hf_trainer"
    if hf_trainer.is_model_config(doc):
        raise InputError(
            f"{what} is a model config, which holds no metrics; upload it together with the trainer_state.json beside it"
        )
    if isinstance(doc, list) and doc and all(isinstance(r, dict) for r in doc):
        keys = list(dict.fromkeys(str(k) for r in doc[:100] for k in r))
        fmt = classify_header(keys, what)
        if fmt:
            return fmt
        raise InputError(f"{what}: cannot tell the format from its keys ({', '.join(keys[:8])}); {EXPECTED}")
    raise InputError(f"{what} is JSON but neither a trainer_state.json nor a list of records; {EXPECTED}")


def _detect_bytes(head: bytes, filename: str, read_all, what: str) -> str:
    check_not_empty(len(head), what)
    if tensorboard_events.looks_like_tfevents(head) or (
        tensorboard_events.is_tfevents_name(filename) and b"\x00" in head[:SNIFF_BYTES]
    ):
        return "tensorboard"
    require_text(head, what)
    kind = tabular.text_kind(head)
    if kind == "jsonl":
        # A JSON document written on one line (json.dump without indent) reads as one JSON line.
        first = json.loads(head.decode("utf-8", errors="ignore").lstrip("\ufeff").lstrip().split("\n", 1)[0])
        if hf_trainer.is_trainer_state(first) or hf_trainer.is_model_config(first):
            kind = "json"
    if kind == "json":
        try:
            doc = json.loads(read_all().decode("utf-8-sig"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{what} is not valid JSON ({' '.join(str(exc).split())[:100]}); the file may be truncated, copy it again")
        return _detect_json_doc(doc, what)
    header = tabular.header_from_head(head, filename)
    fmt = classify_header(header, what)
    if fmt is None:
        shown = ", ".join(repr(h) for h in header[:8]) or "none"
        raise InputError(f"{what}: cannot tell the format (columns: {shown}); {EXPECTED}")
    return fmt


def detect_format(path_or_bytes: Union[str, os.PathLike, bytes], filename: Optional[str] = None) -> str:
    """The format key (see ``importers.FORMATS``) of a file, folder, zip or uploaded bytes.

    A zip or folder gives the one folder format it holds (tensorboard, hf_trainer, lightning) or
    ``bundle`` when it mixes formats or holds tables. Raises InputError when no format fits.
    """
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data = bytes(path_or_bytes)
        name = filename or "upload"
        what = os.path.basename(name.replace("\\", "/")) or "upload"
        head = data[:SNIFF_BYTES]
        if is_zip(head):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    members = [i.filename for i in zf.infolist() if not i.is_dir()]
            except zipfile.BadZipFile as exc:
                raise InputError(f"{what} is not a readable zip ({exc}); re-create the archive and upload again")
            return container_format(members, what)
        return _detect_bytes(head, name, lambda: data, what)

    path = os.fspath(path_or_bytes)
    name = filename or path
    what = filename or os.path.basename(path) or path
    if os.path.isdir(path):
        return container_format(list_files(path), what)
    if not os.path.isfile(path):
        raise InputError(f"{what} does not exist; check the path")
    with open(path, "rb") as fh:
        head = fh.read(SNIFF_BYTES)
    if is_zip(head):
        try:
            with zipfile.ZipFile(path) as zf:
                members = [i.filename for i in zf.infolist() if not i.is_dir()]
        except zipfile.BadZipFile as exc:
            raise InputError(f"{what} is not a readable zip ({exc}); re-create the archive and upload again")
        return container_format(members, what)

    def read_all() -> bytes:
        with open(path, "rb") as fh:
            return fh.read()

    return _detect_bytes(head, name, read_all, what)
