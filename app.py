"""ScaleScope: the dashboard's entry point. `streamlit run app.py`

Builds the navigation over the files in pages/ and opens the one shared Store.
"""
import sys
from pathlib import Path

import streamlit as st

# A local icon: a :material/...: favicon would make every browser fetch it from fonts.gstatic.com.
st.set_page_config(page_title="ScaleScope", page_icon=str(Path(__file__).resolve().parent / "assets" / "favicon.png"),
                   layout="wide")

from pages.common import APP_MARK, demo_status_line, get_store  # noqa: E402  (after set_page_config)
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
# Every page answers at /<name> (/fits, /planner, ...). The default page is served at / and still
# reserves its name without answering to it, so it is named "home" and a hidden twin answers at /runs.
PAGES = [st.Page(path, title=title, icon=icon, default=(i == 0),
                 url_path="home" if i == 0 else Path(path).stem)
         for i, (path, title, icon) in enumerate(PAGE_SPECS) if (HERE / path).exists()]
PAGES += [st.Page(PAGE_SPECS[0][0], title=PAGE_SPECS[0][1], icon=PAGE_SPECS[0][2],
                  url_path=Path(PAGE_SPECS[0][0]).stem, visibility="hidden")]

page = st.navigation(PAGES)
st.session_state[APP_MARK] = True  # this session goes through app.py (see pages.common)
get_store()  # open (and on first start, seed) the store before any page draws
demo_status_line()  # only while a demo without a usable snapshot is computed in the background
start_watcher(get_store(), watch_args(sys.argv[1:]))  # watched folders: one background scanner per process
page.run()
