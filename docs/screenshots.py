"""Take the README's screenshots: a real server on a fresh demo store, Debian's Chromium.

    python docs/screenshots.py            # writes docs/screenshot.png and docs/<page>.png
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.e2e.conftest import CHROMIUM, CHROMIUM_ARGS, _free_port, wait_idle  # noqa: E402

PAGES = ["", "fits", "planner", "evals", "routing", "probes"]


def main() -> None:
    from playwright.sync_api import sync_playwright

    port = _free_port()
    db = Path(tempfile.mkdtemp()) / "shots.duckdb"
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true"], cwd=ROOT,
                            env=dict(os.environ, SCALESCOPE_DB_URL=f"duckdb:///{db}"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1800})
            page.set_default_timeout(180_000)
            for name in PAGES:
                if name and not (ROOT / "pages" / f"{name}.py").exists():
                    continue
                page.goto(f"http://127.0.0.1:{port}/{name}")
                wait_idle(page, timeout=180_000)
                page.wait_for_timeout(1500)
                out = ROOT / "docs" / ("screenshot.png" if not name else f"{name}.png")
                page.screenshot(path=str(out))
                print("wrote", out.relative_to(ROOT))
            browser.close()
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()
