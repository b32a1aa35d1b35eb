"""Shared helpers for the pages (not a page itself): the one Store, errors, progress."""
from __future__ import annotations

import os
import re
from contextlib import contextmanager

import streamlit as st

from core.errors import Cancelled, ScaleScopeError
from core.format import CONFIDENCE, CONFIDENCE_LEVELS, level as level_label
from services.seed import demo_status, seed_if_empty
from services.runs import Store, default_url, store_version


@st.cache_resource(show_spinner="Opening the database (first start: loading the bundled demo)…")
def _open_store(url: str) -> Store:
    store = Store(url, check=True)  # a damaged file is reported here, once, not by some later query
    # the bundled snapshot (~0.2 s); without a usable one, the slow part is computed in the background
    seed_if_empty(store, routing=os.environ.get("SCALESCOPE_SEED_ROUTING", "1") != "0", background=True)
    return store


def demo_status_line() -> None:
    """While the demo is computed in the background (no usable snapshot), a small status line in the
    sidebar that follows it, and one rerun of the page once it is done."""
    if demo_status() is None and not st.session_state.get("_demo_building"):
        return
    with st.sidebar:
        _demo_status_fragment()


@st.fragment(run_every=2.0)
def _demo_status_fragment() -> None:
    status = demo_status()
    if status:
        st.session_state["_demo_building"] = True
        st.caption(literal(status))
    elif st.session_state.pop("_demo_building", False):
        st.rerun()  # the demo is complete: redraw the page with it


APP_MARK = "_scalescope_via_app"  # set by app.py in every session it has run for


def _leave_pages_folder_mode() -> None:
    """Make a deep link (e.g. a shared /planner?... URL) go through app.py's st.navigation.

    Streamlit treats an app with a ``pages/`` folder as a v1 multipage app until the first
    ``st.navigation`` call; a first request for /planner would then run pages/planner.py alone
    (no shared layout, a raw file list in the sidebar). Switching that mode off and rerunning
    sends the request through app.py, which keeps the URL's page and query parameters.
    """
    from streamlit.runtime.pages_manager import PagesManager

    if not st.session_state.get(APP_MARK) and PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()


def get_store() -> Store:
    """The one Store of this server process, shared by all browser sessions (st.cache_resource)."""
    _leave_pages_folder_mode()
    with user_errors():  # damaged, foreign or locked file: its one-line message, never a traceback
        return _open_store(default_url())
    st.stop()  # not cached: the next rerun tries again (e.g. once the other process let go)


# What makes Markdown out of text (CommonMark + GFM + Streamlit): backslash escapes, code spans,
# emphasis and strikethrough, links and images ([...] — escaping the brackets disarms ![t](url) and
# [click](url) alike), autolinks and HTML (an escaped < opens neither), math ($) and character
# references (&amp;).
_MARKDOWN_INLINE = re.compile(r"([\\`*\[\]<~$&])")
# Underscores emphasise only at a word's edge: "max_steps" stays as it is, "_x_" is escaped.
_UNDERSCORES = re.compile(r"_+")
# What counts only at the start of a line: headings, lists, quotes, setext underlines.
_MARKDOWN_LINE_START = re.compile(r"^(\s*)(?:(\d{1,9})(?=[.)])|(?=[-+=#>]))")


def _inside_word(m: re.Match) -> bool:
    """A run of underscores with a letter or digit on both sides (it can neither open nor close emphasis)."""
    before, after = m.string[m.start() - 1:m.start()], m.string[m.end():m.end() + 1]
    return before.isalnum() and after.isalnum()


def literal(text: object) -> str:
    """``text`` escaped so that st.markdown, st.caption, st.error, st.success, st.warning, st.info and
    widget labels show it exactly as written: never a link, an image the browser fetches, or markup.

    Every user-supplied string (run, metric, column, tag, file, capture and fit names, and error
    messages quoting them) passes through here before it reaches a Markdown-rendering call.
    """
    text = " ".join(str(text).splitlines())  # one line: a newline could start a Markdown block
    text = _MARKDOWN_INLINE.sub(r"\\\1", text)
    text = _UNDERSCORES.sub(lambda m: m.group(0) if _inside_word(m) else "\\_" * len(m.group(0)), text)
    return _MARKDOWN_LINE_START.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}\\", text, count=1)


@contextmanager
def user_errors():
    """Show a ScaleScope error as one ``st.error`` line instead of a traceback (escaped: the message
    may quote a run or file name, which must not render as Markdown)."""
    try:
        yield
    except Cancelled as exc:
        st.warning(literal(exc))
    except ScaleScopeError as exc:
        st.error(literal(exc))


def progress_bar(label: str):
    """A core-style ``progress(done, total, message)`` callable drawing an ``st.progress`` bar."""
    label = literal(label)  # the bar's text is Markdown; labels and messages may name runs or files
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int, message: str = "") -> None:
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        bar.progress(frac, text=f"{label} — {literal(message)}" if message else label)

    return update


# ------------------------------------------------------------------------------ interval level
CONFIDENCE_KEY = "confidence_level"  # session state: the level, kept across pages
CONFIDENCE_PARAM = "cl"  # the URL's query parameter: ?cl=90


def _level_from_url() -> float:
    raw = st.query_params.get(CONFIDENCE_PARAM)
    try:
        wanted = float(raw) / 100 if raw is not None else CONFIDENCE
    except ValueError:
        return CONFIDENCE
    return next((cl for cl in CONFIDENCE_LEVELS if abs(cl - wanted) < 1e-9), CONFIDENCE)


def confidence_level() -> float:
    """The one interval level of Fits, Planner and Evals: a sidebar select (68/90/95/99%, default 95%,
    core.format.CONFIDENCE), kept in session state across pages and in the URL as ``?cl=90`` (left
    out at the default), so a shared link shows the same intervals."""
    if CONFIDENCE_KEY not in st.session_state:
        st.session_state[CONFIDENCE_KEY] = _level_from_url()
    # Re-assigning the value keeps it when a page without this widget ran in between (Streamlit drops
    # the state of widgets not drawn in a run).
    st.session_state[CONFIDENCE_KEY] = st.session_state[CONFIDENCE_KEY]
    cl = st.sidebar.selectbox("Interval level", CONFIDENCE_LEVELS, format_func=level_label, key=CONFIDENCE_KEY,
                              help="Central probability of every interval and band on Fits, Planner and Evals "
                                   "(bootstrap percentiles). 95% is the level the scaling-law papers report.")
    if abs(cl - CONFIDENCE) < 1e-9:
        if CONFIDENCE_PARAM in st.query_params:
            del st.query_params[CONFIDENCE_PARAM]
    elif st.query_params.get(CONFIDENCE_PARAM) != f"{cl * 100:g}":
        st.query_params[CONFIDENCE_PARAM] = f"{cl * 100:g}"
    return float(cl)


# ------------------------------------------------------------------------------ query cache
@st.cache_data(show_spinner=False, max_entries=512)
def _cached_query(name: str, version: tuple, args: tuple, kwargs: tuple, _fn, _store):
    return _fn(_store, *args, **dict(kwargs))


def cached(fn, *args, **kwargs):
    """``fn(store, *args, **kwargs)`` through a cache keyed on the store's version
    (``services.runs.store_version``): a widget change reruns the page from cached query results,
    and any write to the store (an import, a fit, the watcher) makes the next call read afresh.
    ``fn`` is a services function taking the store first; its arguments must be hashable by
    st.cache_data (strings, numbers, tuples, lists, dicts, DataFrames)."""
    store = get_store()
    where = getattr(getattr(fn, "__code__", None), "co_filename", "")  # pages run as __main__: name the file
    return _cached_query(f"{fn.__module__}.{fn.__qualname__}@{where}", store_version(store), args,
                         tuple(sorted(kwargs.items())), _fn=fn, _store=store)
