"""A studio server on 127.0.0.1 over a tiny trained run, and Debian's Chromium driven by Playwright.

No browser is downloaded: Playwright launches the system ``chromium`` (scripts/install.sh installs
it). Screenshots of each case go to ``$CHORDFLOW_SCREENSHOTS`` (default ``test-artifacts/studio``).
"""

from __future__ import annotations

import os
import shutil
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = Path(os.environ.get("CHORDFLOW_SCREENSHOTS", ROOT / "test-artifacts" / "studio"))
#: Longest a tiny-model generation (or page action) may take in the tests.
ACTION_TIMEOUT_MS = 120_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def studio_server(models_dir: Path, **options) -> Iterator[tuple[str, object]]:
    """(url, service) of a studio serving ``models_dir`` until the block ends."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from chordflow.studio.cli import serve, shutdown
    from chordflow.studio.config import StudioConfig

    config = StudioConfig(models_dir=models_dir, params=ROOT / "params.yaml", port=free_port(), **options)
    app, service = serve(config, block=False)
    try:
        yield f"http://127.0.0.1:{config.port}/", service
    finally:
        shutdown(app, service)


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError("Debian's chromium is not installed: run scripts/install.sh (make test does)")
    return path


@contextmanager
def browser_page() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(ACTION_TIMEOUT_MS)
            yield page
        finally:
            browser.close()


def screenshot(page, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    out = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(out), full_page=True)
    return out
