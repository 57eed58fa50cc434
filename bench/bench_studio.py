"""The studio as a person times it: from the click on Generate to both variations playable.

    python bench/bench_studio.py [--models models] [--params params.yaml] [--seconds 10 60]
        [--screenshots bench/report/studio] [--json OUT]

Serves ``chordflow studio`` over ``--models`` (the demo checkpoint that ``make demo`` trains) on
127.0.0.1, drives Debian's Chromium headless (Playwright, no browser download) and, for each
duration: types a prompt and a chord progression, clicks Generate, and waits until the status says
"Generated" and both variations' audio links are in the page. The reference, in the same run: the
same request through the studio's service in Python (generation, chord re-analysis and figures, no
browser), so ``click_over_service`` is what the web layer adds. One warm-up request first (model load).
A screenshot of each finished page is saved to ``--screenshots``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import report_figures  # noqa: E402

PROMPT = "calm piano ballad with strings"
CHORDS = "C | G | Am | F"
BPM = 96.0
SEED = 0
#: Longest wait for one generation in the page.
TIMEOUT_MS = 900_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_seconds(service, model: str, seconds: float) -> float:
    """One request through the service alone (what the click triggers, minus the web)."""
    from chordflow.studio.request import parse_chords
    from chordflow.studio.request import StudioRequest

    settings = service.recommended(model)
    request = StudioRequest(prompt=PROMPT, model=model, chords=parse_chords(CHORDS, BPM, "4/4"), duration=seconds,
                            seed=SEED, cfg_coef_all=settings["cfg_coef_all"], cfg_coef_txt=settings["cfg_coef_txt"],
                            solver=settings["solver"], steps=settings["steps"], tolerance=settings["tolerance"])
    started = time.perf_counter()
    result = service.generate(request)
    assert len(result.variations) == 2
    return time.perf_counter() - started


def click_seconds(page, seconds: float, screenshot: Path) -> float:
    page.fill("#prompt textarea", PROMPT)
    page.fill("#chords textarea", CHORDS)
    page.fill("#bpm input", str(BPM))
    page.fill("#duration input", str(seconds))
    page.fill("#seed input", str(SEED))
    started = time.perf_counter()
    page.click("#generate")
    # the status line names the finished request ("Generated 2 × 60.0 s in ..."), not the one before
    page.wait_for_function("t => (document.querySelector('#status')?.innerText || '').includes(t)",
                           arg=f"Generated 2 × {seconds:.1f} s", timeout=TIMEOUT_MS)
    for number in range(2):
        page.locator(f"#audio_{number} a[download]").wait_for(timeout=TIMEOUT_MS)
    elapsed = time.perf_counter() - started
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--seconds", type=float, nargs="+", default=[10.0, 60.0])
    parser.add_argument("--screenshots", default="bench/report/studio")
    parser.add_argument("--json")
    args = parser.parse_args()
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    from playwright.sync_api import sync_playwright

    from chordflow.studio.cli import serve, shutdown
    from chordflow.studio.config import StudioConfig

    config = StudioConfig(models_dir=Path(args.models), params=Path(args.params), port=free_port())
    app, service = serve(config, block=False)
    model = service.catalog.names()[0]
    figures: dict = {"model": model, "cores": os.cpu_count(), "variations": 2}
    try:
        service_seconds(service, model, 2.0)  # warm-up: model and analysers loaded once, as in a served page
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), headless=True,
                                                 args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{config.port}/")
            page.wait_for_selector("#generate")
            for seconds in args.seconds:
                clicked = click_seconds(page, seconds, Path(args.screenshots) / f"studio_{seconds:g}s.png")
                reference = service_seconds(service, model, seconds)
                figures[f"{seconds:g}s"] = {"click_to_audio_s": round(clicked, 2), "service_s": round(reference, 2),
                                            "click_over_service": round(clicked / reference, 3)}
            browser.close()
    finally:
        shutdown(app, service)
    report_figures(figures, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
