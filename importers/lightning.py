"""PyTorch Lightning ``CSVLogger`` output: ``metrics.csv`` with ``hparams.yaml`` beside it.

CSVLogger writes ``<save_dir>/<name>/version_<n>/metrics.csv``: a header of every key ever logged
(sorted), ``epoch`` and ``step`` among them, and one row per logging call with empty cells for
the keys that call did not log. ``hparams.yaml`` holds ``save_hyperparameters()``; it is read with
``yaml.safe_load`` only (a file with Python object tags is refused, never constructed), kept as the
run's config, and searched for sizes (n_params, seq_len, batch size, ...).
"""
from __future__ import annotations

import os
from typing import Optional

import yaml

from core.errors import InputError
from importers.base import ParsedRun
from importers.derive import apply_sizes, check_unique_names, finish_run, sizes_from_hparams
from importers.safety import member_label, read_text
from importers.tabular import normalize, read_table, parse_wide

METRICS_FILE = "metrics.csv"
HPARAMS_FILE = "hparams.yaml"


def is_lightning_header(header: list[str]) -> bool:
    keys = {normalize(h) for h in header}
    return "epoch" in keys and "step" in keys


def read_hparams(path: str, what: str) -> dict:
    text = read_text(path, what)
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())[:120]
        raise InputError(
            f"{what} is not plain YAML ({first}); save hyper-parameters as plain numbers, strings, lists and maps"
        )
    if doc is None:
        return {}
    if not isinstance(doc, dict):
        raise InputError(f"{what} is not a mapping of hyper-parameters; it should read like 'lr: 0.001'")
    return {str(k): v for k, v in doc.items()}


def parse_run(metrics_path: str, hparams_path: Optional[str], name: str, what: str, source_file: str) -> ParsedRun:
    table = read_table(metrics_path, what)
    if not any(normalize(h) == "step" for h in table.header):
        raise InputError(f"{what} has no 'step' column; CSVLogger's metrics.csv always has one, upload that file")
    runs = parse_wide(table, name, source_file, fmt="lightning")
    if len(runs) != 1:
        raise InputError(f"{what} holds several runs; a Lightning metrics.csv belongs to one run")
    run = runs[0]
    if hparams_path is not None:
        hparams = read_hparams(hparams_path, f"{what} (its hparams.yaml)")
        run.config = hparams
        apply_sizes(run, sizes_from_hparams(hparams))
        run = finish_run(run, what)  # again: the sizes may now give tokens and FLOPs
    return run


def parse_folder(root: str, rel_files: list[str], root_name: str, what: str, source_file: str) -> list[ParsedRun]:
    """A run per folder that holds a metrics.csv (named after that folder)."""
    runs = []
    for rel in sorted(r for r in rel_files if os.path.basename(r) == METRICS_FILE):
        rel_dir = os.path.dirname(rel)
        hparams_rel = os.path.join(rel_dir, HPARAMS_FILE)
        runs.append(parse_run(
            os.path.join(root, rel),
            os.path.join(root, hparams_rel) if hparams_rel in rel_files else None,
            rel_dir.replace(os.sep, "/") if rel_dir else root_name,
            member_label(what, rel), member_label(source_file, rel),
        ))
    check_unique_names(runs, what)
    return runs


def parse(path: str, default_run: str, what: str, source_file: str) -> list[ParsedRun]:
    """A single metrics.csv; an hparams.yaml in the same folder adds config and sizes."""
    hparams = os.path.join(os.path.dirname(path), HPARAMS_FILE)
    return [parse_run(path, hparams if os.path.isfile(hparams) else None, default_run, what, source_file)]
