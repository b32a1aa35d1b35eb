"""Progress reporting and cancellation shared by long work (fits, captures, probes).

Long functions in core take an optional ``progress`` callable ``progress(done, total, message)``.
It may raise :class:`core.errors.Cancelled` to stop the work; the work then leaves nothing
half-written. Pages pass a callable that drives ``st.progress``; the CLI passes a text bar.
"""
from __future__ import annotations

import sys
from typing import Callable, Optional

ProgressFn = Callable[[int, int, str], None]


def no_progress(done: int, total: int, message: str = "") -> None:
    """The default: report nothing, never cancel."""


def report(progress: Optional[ProgressFn], done: int, total: int, message: str = "") -> None:
    """Call ``progress`` when one was given."""
    if progress is not None:
        progress(done, total, message)


def text_bar(stream=None, width: int = 30) -> ProgressFn:
    """A progress callable that draws a one-line bar on ``stream`` (default: the current stderr)."""

    def draw(done: int, total: int, message: str = "") -> None:
        out = stream if stream is not None else sys.stderr
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        filled = int(round(frac * width))
        out.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {message[:40]:<40}")
        if done >= total:
            out.write("\n")
        out.flush()

    return draw
