"""TensorBoard event files (``events.out.tfevents.*``): scalars only, read by tensorboard's own loader.

A run is a directory that holds event files (TensorBoard's own rule); its name is that directory's
path below the uploaded folder or zip. Every scalar tag becomes a metric; wall times become seconds
since the run's first point.

TensorBoard's loader quietly stops at a truncated or corrupt record (a live run may still be
writing it). An upload is a finished file, so the record framing is walked first
(TFRecord: uint64 length, masked CRC-32C of the length, data, masked CRC-32C of the data) and a
cut-short file or a record the loader refused is reported instead of silently dropping points.
"""
from __future__ import annotations

import math
import os
import struct
from typing import Optional

import numpy as np

from core.errors import InputError
from importers.base import ParsedRun
from importers.derive import check_unique_names, concat_metrics, finish_run, metrics_frame
from importers.safety import member_label

TFEVENTS_MARK = "tfevents"
_HEADER = 12  # uint64 length + uint32 masked CRC of the length


def _masked_crc32c(data: bytes) -> int:
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    return masked_crc32c(data)


def is_tfevents_name(filename: str) -> bool:
    return TFEVENTS_MARK in os.path.basename(filename)


def looks_like_tfevents(head: bytes) -> bool:
    """True when the first bytes are a TFRecord header whose length CRC checks out."""
    if len(head) < _HEADER:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    (crc,) = struct.unpack("<I", head[8:12])
    return 0 < length < (1 << 32) and _masked_crc32c(head[:8]) == crc


def count_records(path: str, what: str) -> int:
    """Walk the record framing of an event file; refuse a file that is empty, cut short or not TFRecord."""
    size = os.path.getsize(path)
    if size == 0:
        raise InputError(f"{what} is empty; upload an event file that TensorBoard has written to")
    n, offset = 0, 0
    with open(path, "rb") as fh:
        while offset < size:
            header = fh.read(_HEADER)
            if len(header) < _HEADER:
                raise InputError(f"{what} is truncated (a record header is cut short); copy the file again after the run has closed it")
            (length,) = struct.unpack("<Q", header[:8])
            (crc,) = struct.unpack("<I", header[8:12])
            if _masked_crc32c(header[:8]) != crc:
                raise InputError(f"{what} is corrupt or not a TensorBoard event file (bad record header at byte {offset}); upload the original events.out.tfevents file")
            end = offset + _HEADER + length + 4
            if end > size:
                raise InputError(f"{what} is truncated (the last record is cut short); copy the file again after the run has closed it")
            fh.seek(end)
            offset = end
            n += 1
    return n


def _scalar(value) -> Optional[float]:
    """A summary value's scalar, or None when it is an image, histogram, text, ..."""
    if value.HasField("simple_value"):
        return float(value.simple_value)
    if value.HasField("tensor"):
        from tensorboard.util import tensor_util

        tensor = value.tensor
        if tensor.tensor_shape.dim:
            return None
        try:
            array = tensor_util.make_ndarray(tensor)
        except Exception:  # an unusual dtype: not a scalar metric
            return None
        if array.dtype.kind in "fiu" and array.size == 1:
            return float(array.item())
    return None


def scalar_points(events, what: str) -> tuple[list[str], list[float], list[float], list[float], int]:
    """The scalar points of ``events`` (Event protos): (tags, steps, wall_times, values, events seen).

    Shared by the whole-file read below and the incremental reader (importers/incremental.py)."""
    tags: list[str] = []
    steps: list[float] = []
    walls: list[float] = []
    values: list[float] = []
    seen = 0
    for event in events:
        seen += 1
        if not event.HasField("summary"):
            continue
        for value in event.summary.value:
            scalar = _scalar(value)
            if scalar is None:
                continue
            if not math.isfinite(scalar):
                raise InputError(
                    f"{what}: tag '{value.tag}' holds {'NaN' if math.isnan(scalar) else 'an infinite value'} at step {event.step}; "
                    f"remove that point or log only finite values"
                )
            if event.step < 0:
                raise InputError(f"{what}: tag '{value.tag}' has a negative step ({event.step}); steps must be zero or more")
            tags.append(value.tag)
            steps.append(float(event.step))
            walls.append(float(event.wall_time))
            values.append(scalar)
    return tags, steps, walls, values, seen


def read_scalars(path: str, what: str) -> tuple[list[str], list[float], list[float], list[float]]:
    """All scalar points of one event file: (tags, steps, wall_times, values)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    expected = count_records(path, what)
    tags, steps, walls, values, seen = scalar_points(EventFileLoader(path).Load(), what)
    if seen < expected:
        raise InputError(
            f"{what} is corrupt (record {seen + 1} of {expected} fails its checksum); upload the original events.out.tfevents file"
        )
    return tags, steps, walls, values


def parse_run(paths: list[str], name: str, what: str, source_file: str) -> ParsedRun:
    """One run from the event files of one directory (read in name order, as TensorBoard does)."""
    frames = []
    for path in sorted(paths):
        file_what = what if len(paths) == 1 else f"{what}/{os.path.basename(path)}"
        tags, steps, walls, values = read_scalars(path, file_what)
        if values:
            frames.append(metrics_frame(np.asarray(tags, dtype=object), steps, values, wall_time=walls))
    if not frames:
        raise InputError(f"{what} holds no scalar summaries; log scalars with add_scalar / tf.summary.scalar")
    run = ParsedRun(name=name, source_format="tensorboard", source_file=source_file)
    run.metrics = concat_metrics(frames)
    return finish_run(run, what)


def parse_folder(root: str, rel_files: list[str], root_name: str, what: str, source_file: str) -> list[ParsedRun]:
    """Runs from the event files among ``rel_files`` (paths relative to ``root``), a run per directory."""
    by_dir: dict[str, list[str]] = {}
    for rel in rel_files:
        if is_tfevents_name(rel):
            by_dir.setdefault(os.path.dirname(rel), []).append(rel)
    runs = []
    for rel_dir in sorted(by_dir):
        name = rel_dir.replace(os.sep, "/") if rel_dir else root_name
        dir_what = member_label(what, rel_dir) if rel_dir else what
        dir_source = member_label(source_file, rel_dir) if rel_dir else source_file
        runs.append(parse_run([os.path.join(root, r) for r in by_dir[rel_dir]], name, dir_what, dir_source))
    check_unique_names(runs, what)
    return runs


def parse(path: str, default_run: str, what: str, source_file: str) -> list[ParsedRun]:
    """A single event file: one run named ``default_run``."""
    return [parse_run([path], default_run, what, source_file)]
