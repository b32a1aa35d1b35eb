"""Run names from file names (one home for the rule the importers and the summary reader share).

A file that does not name its run gets one from where it lies: a fixed-name file (HF Trainer's
trainer_state.json, Lightning's metrics.csv, a TensorBoard event file) is named after its folder
(a checkpoint-N/ folder after its parent's), any other file after its stem.
"""
from __future__ import annotations

import os
import re
from typing import Optional

from importers import hf_trainer, lightning, tensorboard_events

FIXED_NAMES = (hf_trainer.STATE_FILE, lightning.METRICS_FILE)  # files whose folder names the run
CHECKPOINT_DIR = re.compile(r"^checkpoint-\d+$")                # HF Trainer's checkpoint folders


def display_name(filename: str) -> str:
    """The last part of an uploaded file's name, as the user wrote it (for messages and run names)."""
    base = filename.replace("\\", "/").rstrip("/").split("/")[-1]
    return base or "upload"


def stem(name: str) -> str:
    """A file name without its extension (a TensorBoard event file's name is kept whole)."""
    if tensorboard_events.is_tfevents_name(name):
        return name
    base, ext = os.path.splitext(name)
    return base if base and ext else name


def default_run_name(path: str, filename: Optional[str]) -> str:
    """A run's name when the file does not give one: its folder for fixed names, else the file's stem."""
    base = display_name(filename) if filename else os.path.basename(path)
    fixed = base in FIXED_NAMES or tensorboard_events.is_tfevents_name(base)
    if fixed and filename is None:
        parent = os.path.dirname(os.path.abspath(path))
        if CHECKPOINT_DIR.match(os.path.basename(parent)):
            parent = os.path.dirname(parent)
        if os.path.basename(parent):
            return os.path.basename(parent)
    return stem(base)
