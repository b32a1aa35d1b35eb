"""Shared helpers for the pages (not a page itself): the one Store, errors, progress."""
from __future__ import annotations

import os
from contextlib import contextmanager

import streamlit as st

from core.errors import Cancelled, ScaleScopeError
from services.seed import seed_if_empty
from services.runs import Store, default_url


@st.cache_resource(show_spinner="Opening the database (first start: seeding the demo)…")
def _open_store(url: str) -> Store:
    store = Store(url, check=True)  # a damaged file is reported here, once, not by some later query
    seed_if_empty(store, routing=os.environ.get("SCALESCOPE_SEED_ROUTING", "1") != "0")
    return store


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


@contextmanager
def user_errors():
    """Show a ScaleScope error as one ``st.error`` line instead of a traceback."""
    try:
        yield
    except Cancelled as exc:
        st.warning(str(exc))
    except ScaleScopeError as exc:
        st.error(str(exc))


def progress_bar(label: str):
    """A core-style ``progress(done, total, message)`` callable drawing an ``st.progress`` bar."""
    bar = st.progress(0.0, text=label)

    def update(done: int, total: int, message: str = "") -> None:
        frac = 0.0 if total <= 0 else min(1.0, done / total)
        bar.progress(frac, text=f"{label} — {message}" if message else label)

    return update
