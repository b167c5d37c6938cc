"""The page in a real headless Chromium: upload a clip, press Run, read what a person sees.

Also saves docs/screenshot.png, the picture the README shows.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from app_server import ROOT, running_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = ROOT / "docs" / "screenshot.png"
RESULT_TIMEOUT_MS = 180_000

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM}"),
]


@pytest.fixture(scope="module")
def app_url(built_tiny_en, tmp_path_factory):
    log = tmp_path_factory.mktemp("app") / "app.log"
    with running_app(built_tiny_en.folder.parent, log) as url:
        yield url


@pytest.fixture(scope="module")
def page(app_url):
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(app_url)
        yield page
        browser.close()


def test_upload_run_and_read_both_transcripts_and_the_table(page, clip, references):
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Whisper Quantization Studio")).to_be_visible()
    page.set_input_files("input[type=file]", str(clip("goforward.wav")))
    page.get_by_label("Reference transcript (optional)").fill(references["goforward.wav"])
    # Wait for the upload to turn into a player before running.
    expect(page.locator("#run")).to_be_enabled()
    expect(page.get_by_text("goforward.wav").first).to_be_visible(timeout=30_000)
    page.locator("#run").click()

    forward = re.compile("forward", re.IGNORECASE)
    original = page.locator("#original-transcript textarea")
    expect(original).to_have_value(forward, timeout=RESULT_TIMEOUT_MS)
    quantized = page.locator("#quantized-transcript")
    expect(quantized).to_contain_text(forward, timeout=RESULT_TIMEOUT_MS)

    table = page.locator("#results-table")
    expect(table).to_contain_text("Original (PyTorch fp32)")
    expect(table).to_contain_text("Quantized (ONNX int8)")
    expect(table).to_contain_text("Latency (ms)")
    expect(table).to_contain_text("/4)")  # WER counted against the 4 reference words
    # The note under the table links to the method (the README on a Space, else this section).
    expect(page.get_by_role("link", name="How the figures are measured")).to_be_visible()
    expect(page.locator("#how-the-figures-are-measured")).to_have_count(1)

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(1000)  # let the charts finish drawing
    page.screenshot(path=str(SCREENSHOT), full_page=True)


def test_an_english_only_model_offers_no_language_or_translation(page):
    from playwright.sync_api import expect

    language = page.get_by_label("Language")
    expect(language).to_be_disabled()
    translate = page.get_by_label("translate")
    expect(translate).to_be_disabled()


def test_running_without_audio_shows_a_message_not_a_traceback(page, app_url):
    from playwright.sync_api import expect

    page.goto(app_url)
    page.locator("#run").click()
    expect(page.get_by_text("Upload or record audio first.")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Traceback")).to_have_count(0)
