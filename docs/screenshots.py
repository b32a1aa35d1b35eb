"""Take the README's screenshots: a real server on a fresh demo store, Debian's Chromium.

    python docs/screenshots.py            # writes docs/screenshot.png and docs/<page>.png
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools.streamlit_server import CHROMIUM, CHROMIUM_ARGS, start_streamlit, stop, wait_idle  # noqa: E402

PAGES = ["", "fits", "planner", "evals", "routing", "probes"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    db = Path(tempfile.mkdtemp()) / "shots.duckdb"
    proc, url = start_streamlit(db)
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(180_000)
            for name in PAGES:
                if name and not (ROOT / "pages" / f"{name}.py").exists():
                    continue
                page.goto(f"{url}/{name}")
                wait_idle(page, timeout=180_000)
                page.wait_for_timeout(1500)
                out = ROOT / "docs" / ("screenshot.png" if not name else f"{name}.png")
                page.screenshot(path=str(out))
                print("wrote", out.relative_to(ROOT))
            browser.close()
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
