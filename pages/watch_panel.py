"""The Runs page's "Watched folders" panel and live-run following (issue 11 §1); not a page itself.

- :func:`start_watcher`: the one background Watcher of this server process (st.cache_resource),
  over the folders of ``streamlit run app.py -- --watch DIR [DIR...]`` and $SCALESCOPE_WATCH, plus
  the folders kept in the store and the store's inbox. app.py calls it before every page, so it also
  stops the page with one line when the store's database server cannot be reached.
- :func:`watch_panel`: add or remove a watched folder (kept in the store), each file's status and
  the reason a file stopped, shown literally.
- :func:`follow_live`: an ``st.fragment(run_every=...)`` that reads a cheap change marker of the
  store and reruns the page only when it changed, so the curve chart follows live runs.
"""
from __future__ import annotations

import argparse
import os
import time
from typing import Optional, Sequence

import pandas as pd
import streamlit as st

from core import format as fmt
from core.errors import ScaleScopeError
from pages.common import literal, user_errors
from services import watch as watch_service
from services.runs import Store, check_reachable

MARKER_KEY = "_watch_change_marker"


def watch_args(argv: Sequence[str]) -> list[str]:
    """Folders from the app's own arguments (``-- --watch DIR [DIR...]``) and $SCALESCOPE_WATCH."""
    parser = argparse.ArgumentParser(prog="app.py", add_help=False)
    parser.add_argument("--watch", nargs="+", action="extend", default=[], metavar="DIR")
    known, _ = parser.parse_known_args(list(argv))
    return list(dict.fromkeys(known.watch + watch_service.folders_from_env()))


@st.cache_resource(show_spinner=False)
def _watcher(url: str, folders: tuple[str, ...], _store: Store) -> watch_service.Watcher:
    return watch_service.Watcher(_store, folders).start()


def _start(store: Store, folders: Sequence[str]) -> Optional[watch_service.Watcher]:
    with user_errors():
        return _watcher(store.url, tuple(folders), store)
    return None


def start_watcher(store: Store, folders: Sequence[str]) -> Optional[watch_service.Watcher]:
    """Start (once per server process) the watcher of ``store``; None when the settings are wrong.

    app.py calls this before every page draws: a store whose database server cannot be reached (a
    team store's PostgreSQL server stopped) stops the page here with one line, the password masked,
    instead of a traceback from the page's first query. The watcher's thread retries on its own, and
    the page draws again at the next rerun once the server is back."""
    watcher = _start(store, folders)
    try:
        check_reachable(store)
    except ScaleScopeError as exc:
        retry = f" The watcher retries every {fmt.duration(watcher.interval)}." if watcher is not None else ""
        st.error(literal(f"{exc}{retry} Reload the page once the server is back."))
        st.stop()
    return watcher


def current_watcher(store: Store) -> Optional[watch_service.Watcher]:
    import sys

    return _start(store, watch_args(sys.argv[1:]))


def _ago(seconds: float) -> str:
    return f"{fmt.duration(max(0.0, seconds))} ago"


def live_caption(store: Store) -> None:
    """A line naming the runs that grew recently, and when each last grew."""
    live = watch_service.live_runs(store)
    now = time.time()
    recent = live[now - live["last_grew"] <= watch_service.LIVE_S]
    if len(recent):
        shown = ", ".join(f"{literal(n)} (grew {_ago(now - t)})" for n, t in zip(recent["name"].head(8), recent["last_grew"]))
        st.caption(f":green[● live] {shown}" + (" …" if len(recent) > 8 else ""))


def watch_panel(store: Store) -> None:
    """The "Watched folders" expander: folders, add/remove, per-file status and reasons."""
    watcher = current_watcher(store)
    stored = watch_service.stored_folders(store)
    process = watcher.folders if watcher is not None else []
    files = watch_service.files_frame(store)
    problems = int((files["status"] == "error").sum()) if len(files) else 0
    label = f"Watched folders ({len(set(stored) | set(process))})" + (f" — {problems} file(s) stopped" if problems else "")
    with st.expander(label, expanded=bool(problems)):
        if watcher is None:
            st.warning("The watcher is not running (see the message above).")
        else:
            st.caption(f"Scanned every {fmt.duration(watcher.interval)}; unchanged files are only stat'ed. Files handed over by "
                       f"`cli.py ingest` while this dashboard holds the store arrive through {literal(watcher.inbox)}."
                       if watcher.inbox else f"Scanned every {fmt.duration(watcher.interval)}.")
            if watcher.last_error:
                st.error(literal(watcher.last_error))
            for folder, reason in watcher.folder_errors.items():
                st.warning(literal(reason))
            for entry in reversed(watcher.inbox_log[-3:]):
                (st.success if entry["status"] == "imported" else st.error)(
                    literal(f"inbox {entry['batch']}: {entry['message']}"))
        for folder in process:
            st.markdown(f"- {literal(folder)} *(from --watch / {watch_service.WATCH_ENV})*")
        for folder in stored:
            c1, c2 = st.columns([5, 1])
            c1.markdown(f"- {literal(folder)}")
            if c2.button("Remove", key=f"watch_remove_{folder}"):
                with user_errors():
                    watch_service.remove_folder(store, folder)
                    st.rerun()
        c1, c2 = st.columns([5, 1])
        new = c1.text_input("Folder to watch", key="watch_new_folder", placeholder="/path/to/runs",
                            label_visibility="collapsed")
        if c2.button("Watch", key="watch_add", disabled=not new):
            with user_errors():
                folder = watch_service.add_folder(store, new)
                # the background scan reads it (a big folder's first import must not block the page)
                st.success(f"Watching {literal(folder)}: its runs appear within a few seconds.")
        if len(files):
            shown = files.assign(
                file=[os.path.relpath(p, f) for p, f in zip(files["path"], files["folder"])],
                updated=[_ago(time.time() - t) if pd.notna(t) else "" for t in files["updated_at"]],
            )[["file", "status", "runs", "n_rows", "format", "error", "updated", "folder"]]
            # a dataframe shows cell text as it is (no Markdown): file names and reasons stay literal
            st.dataframe(shown, hide_index=True, width="stretch", key="watch_files_table")
            for _, row in files[files["status"] == "error"].head(5).iterrows():
                st.error(literal(row["error"]))


def follow_live(store: Store, every: Optional[float] = None) -> None:
    """Rerun the page when the store changed (a watched run grew, a run came or went): checked every
    ``every`` seconds (the watch interval) by a fragment that draws only the live caption."""
    watcher = current_watcher(store)
    interval = every or (watcher.interval if watcher is not None else watch_service.interval_from_env())

    # The store as this full run draws it; a change made by this run itself (an import above) is
    # already in it, so the run's own messages are never wiped by a rerun.
    st.session_state[MARKER_KEY] = watch_service.change_marker(store)

    @st.fragment(run_every=interval)
    def _follow():
        try:
            if watch_service.change_marker(store) != st.session_state.get(MARKER_KEY):
                st.rerun()  # the whole page: the table, the metric list and the chart pick up the new rows
            live_caption(store)
        except ScaleScopeError as exc:  # the store's server went away while the page is open: one line,
            st.session_state[MARKER_KEY] = None  # and the whole page again once it is back
            st.error(literal(exc))

    _follow()
