"""Take the README's screenshots of every page in the light AND the dark theme: a real server on a
fresh demo store, Debian's Chromium.

    python docs/screenshots.py                 # writes docs/screenshots/<page>-light.png and -dark.png
    python docs/screenshots.py --pages fits    # only some pages
    python docs/screenshots.py --themes dark   # only one theme

The theme is Streamlit's own config option ``theme.base``, given to the server through its
environment (``STREAMLIT_THEME_BASE=light`` / ``dark``): one server per theme, the second on the
store the first seeded, so both themes show the same data. No clicking through the settings menu,
whose layout changes between Streamlit versions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_idle  # noqa: E402

# page name -> its URL path ("" is the default page, Runs)
PAGES = {"runs": "", "fits": "fits", "planner": "planner", "evals": "evals", "routing": "routing",
         "probes": "probes"}
# pages whose picture starts at a heading instead of the top (the Fits page: the fitted law, its tables
# and plots rather than the run selection)
SCROLL_TO = {"fits": "Result"}
THEMES = ("light", "dark")
OUT = ROOT / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 1800}


PENDING = "[data-testid=stSkeleton], [data-testid=stSpinner]"


def settle(page, timeout_s: float = 240.0) -> None:
    """Wait until the page is drawn: the script run idle, no skeleton or spinner left (fragments and
    a cold first run draw after the main run), and Plotly's drawing done."""
    import time

    deadline = time.time() + timeout_s
    while True:
        wait_idle(page, timeout=timeout_s * 1000)
        page.wait_for_timeout(1500)
        if page.locator(PENDING).count() == 0 or time.time() > deadline:
            wait_idle(page, timeout=timeout_s * 1000)
            page.wait_for_timeout(1000)
            return


def shoot(theme: str, db: Path, pages: list[str]) -> list[Path]:
    from playwright.sync_api import sync_playwright

    written = []
    proc, url = start_streamlit(db, STREAMLIT_THEME_BASE=theme)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport=VIEWPORT, color_scheme=theme)
            page.set_default_timeout(240_000)
            page.goto(url)  # warm the server (imports, caches) before the first picture
            settle(page)
            for name in pages:
                if not (ROOT / "pages" / f"{name}.py").exists():
                    continue
                page.goto(f"{url}/{PAGES[name]}")
                settle(page)
                if name in SCROLL_TO:
                    page.get_by_role("heading", name=SCROLL_TO[name]).first.evaluate(
                        "e => e.scrollIntoView({block: 'start'})")
                    page.wait_for_timeout(1000)
                out = OUT / f"{name}-{theme}.png"
                page.screenshot(path=str(out))
                written.append(out)
                print("wrote", out.relative_to(ROOT), flush=True)
            browser.close()
    finally:
        stop(proc)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", nargs="*", default=list(PAGES), choices=list(PAGES))
    ap.add_argument("--themes", nargs="*", default=list(THEMES), choices=list(THEMES))
    args = ap.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    db = Path(tempfile.mkdtemp()) / "shots.duckdb"  # seeded by the first server, reused by the second
    for theme in args.themes:
        shoot(theme, db, args.pages)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
