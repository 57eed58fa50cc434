"""The studio as a person uses it: Debian's Chromium (headless, Playwright) against the app on
127.0.0.1 over a tiny trained run. Each case saves a screenshot (browser_helpers.SCREENSHOTS)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
import soundfile as sf

from browser_helpers import browser_page, screenshot, studio_server
from studio_helpers import train_tiny_run

pytestmark = pytest.mark.browser
SHORT_SECONDS = 2.0
#: Generated audio may end short of the asked duration by less than one codec frame.
DURATION_TOLERANCE_S = 0.05
#: Long enough for a short generation left running at shutdown to have written its outputs.
LATE_OUTPUT_WAIT_S = 10.0


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("studio")
    train_tiny_run(root)
    return root


@pytest.fixture(scope="module")
def studio(models):
    with studio_server(models / "models") as (url, service):
        yield url, service


@pytest.fixture
def page(studio):
    url, _ = studio
    with browser_page() as page:
        page.goto(url)
        page.wait_for_selector("#generate")
        yield page


def _status_has(page, text: str, timeout_ms: int = 120_000) -> str:
    page.wait_for_function("t => (document.querySelector('#status')?.innerText || '').includes(t)", arg=text,
                           timeout=timeout_ms)
    return page.inner_text("#status")


def _fill(page, prompt: str, chords: str, duration: float, steps: int | None = None) -> None:
    page.fill("#prompt textarea", prompt)
    page.fill("#chords textarea", chords)
    page.fill("#duration input", str(duration))
    if steps is not None:
        if not page.locator("#steps input").is_visible():
            page.click("text=Guidance and solver")
        page.fill("#steps input", str(steps))


def test_the_page_loads_with_its_fields(page, studio):
    for element in ("prompt", "model", "chords", "bpm", "meter", "duration", "seed", "drums_file", "melody_file",
                    "song_file", "generate", "interrupt", "extract_song"):
        assert page.locator(f"#{element}").count() == 1, element
    assert "tiny" in page.inner_text("#model") or page.input_value("#model input") == "tiny"
    screenshot(page, "01_load")


def test_generate_gives_both_variations_of_the_asked_duration_and_the_chord_figure(page):
    _fill(page, "calm piano", "(C, 0.0), (G, 1.0)", SHORT_SECONDS)
    page.click("#generate")
    status = _status_has(page, "Generated")
    assert "2 ×" in status
    for number in range(2):
        link = page.locator(f"#audio_{number} a[download]")
        link.wait_for()
        response = page.request.get(link.get_attribute("href"))
        assert response.ok
        audio, rate = sf.read(io.BytesIO(response.body()))
        assert abs(len(audio) / rate - SHORT_SECONDS) < DURATION_TOLERANCE_S
        figure = page.locator(f"#chord_figure_{number} img")
        figure.wait_for()
        assert page.request.get(figure.get_attribute("src")).ok
    downloads = page.inner_text("#download_0").replace("\n", "")
    assert "variation_0.wav" in downloads and "variation_0.json" in downloads
    screenshot(page, "02_generate")


def test_a_song_upload_shows_its_extracted_chords(page, models):
    song = sorted((models / "features" / "audio").glob("*.wav"))[0]
    page.locator("#song_file input[type=file]").set_input_files(str(song))
    page.wait_for_timeout(500)
    page.click("#extract_song")
    _status_has(page, "Extracted the controls")
    extracted = page.input_value("#song_chords textarea")
    assert extracted.startswith("(") and "," in extracted
    assert page.input_value("#chords textarea") == extracted
    page.locator("#song_figure img").wait_for()
    screenshot(page, "03_song")


def test_a_malformed_chord_string_is_a_message_and_the_next_request_works(page):
    _fill(page, "calm piano", "(C, 0.0), (Qx7, 1.0)", SHORT_SECONDS)
    page.click("#generate")
    status = _status_has(page, "Error")
    assert "Qx7" in status and "Traceback" not in page.content()
    screenshot(page, "04_malformed_chords")
    page.fill("#chords textarea", "(C, 0.0), (F, 1.0)")
    page.click("#generate")
    _status_has(page, "Generated")
    screenshot(page, "04_after_malformed")


def test_interrupt_stops_a_long_generation(page, studio):
    _fill(page, "calm piano", "C | G | Am F", 300, steps=1000)
    started = time.perf_counter()
    page.click("#generate")
    page.get_by_text("sampling").first.wait_for(timeout=60_000)  # the sampler is running
    page.click("#interrupt")
    _status_has(page, "Interrupted", timeout_ms=60_000)
    assert time.perf_counter() - started < 60  # a full run would take minutes
    screenshot(page, "05_interrupt")
    _fill(page, "calm piano", "(C, 0.0)", SHORT_SECONDS, steps=4)
    page.click("#generate")
    _status_has(page, "Generated")


def test_stopping_mid_generation_leaves_no_files_behind(models):
    """A request still running when the server stops is interrupted, and gradio's copies of its late
    outputs cannot bring the removed work folder back."""
    with studio_server(models / "models") as (url, service):
        with browser_page() as page:
            page.goto(url)
            page.wait_for_selector("#generate")
            _fill(page, "calm piano", "C | G | Am F", 10, steps=40)  # a few seconds of work left at shutdown
            page.click("#generate")
            page.get_by_text("sampling").first.wait_for(timeout=60_000)
    time.sleep(LATE_OUTPUT_WAIT_S)
    assert not service.work_dir.exists(), sorted(p.name for p in service.work_dir.rglob("*"))
