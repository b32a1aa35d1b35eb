"""ScaleScope: the dashboard's entry point. `streamlit run app.py`

Builds the navigation over the files in pages/ and opens the one shared Store.
"""
import sys
from pathlib import Path

import streamlit as st

# A local icon: a :material/...: favicon would make every browser fetch it from fonts.gstatic.com.
st.set_page_config(page_title="ScaleScope", page_icon=str(Path(__file__).resolve().parent / "assets" / "favicon.png"),
                   layout="wide")

from pages.common import APP_MARK, get_store  # noqa: E402  (after set_page_config)
from pages.watch_panel import start_watcher, watch_args  # noqa: E402

HERE = Path(__file__).resolve().parent
# (file, title, icon) in the order a researcher uses them.
PAGE_SPECS = [
    ("pages/runs.py", "Runs", ":material/show_chart:"),
    ("pages/fits.py", "Fits", ":material/function:"),
    ("pages/planner.py", "Planner", ":material/tune:"),
    ("pages/evals.py", "Evals", ":material/leaderboard:"),
    ("pages/routing.py", "Routing", ":material/alt_route:"),
    ("pages/probes.py", "Probes", ":material/science:"),
]
PAGES = [st.Page(path, title=title, icon=icon, default=(i == 0))
         for i, (path, title, icon) in enumerate(PAGE_SPECS) if (HERE / path).exists()]

page = st.navigation(PAGES)
st.session_state[APP_MARK] = True  # this session goes through app.py (see pages.common)
get_store()  # open (and on first start, seed) the store before any page draws
start_watcher(get_store(), watch_args(sys.argv[1:]))  # watched folders: one background scanner per process
page.run()
