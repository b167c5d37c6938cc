"""The page in a real headless Chromium: upload a clip, press Run, read what a person sees.

The screenshot taken here goes to the test's temporary folder; scripts/screenshot.py
refreshes docs/screenshot.png, the picture the README shows.
"""

from __future__ import annotations

import struct

import pytest
import studio_page

from whisper_quant.metrics import normalize_text
from whisper_quant.settings import Settings

# tiny.en's original and quantized engines both say "Go forward 10 meters." for goforward.wav
# (greedy decoding, so every run), which normalises to its reference "go forward ten meters".
GOFORWARD = "go forward 10 meters"
ENGINES = Settings().engines  # the app's engines by default: one table row each

pytestmark = [
    pytest.mark.browser,
    pytest.mark.integration,
    pytest.mark.skipif(
        not studio_page.CHROMIUM.exists(), reason=f"no Chromium at {studio_page.CHROMIUM}"
    ),
]


@pytest.fixture(scope="module")
def app_url(studio_app):
    """The session's shared app (conftest): its limits are far above these clips."""
    return studio_app.url


@pytest.fixture(scope="module")
def page(app_url):
    pytest.importorskip("playwright.sync_api")
    with studio_page.open_page(app_url) as page:
        yield page


def png_size(path) -> tuple[int, int]:
    """Width and height from a PNG's header (its IHDR chunk comes first)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", data[:16]
    return struct.unpack(">II", data[16:24])


def test_upload_run_and_read_both_transcripts_and_the_table(page, clip, references, tmp_path):
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Whisper Quantization Studio")).to_be_visible()
    studio_page.upload(page, clip("goforward.wav"), references["goforward.wav"])

    shown = studio_page.run(page)

    assert normalize_text(shown.original) == GOFORWARD, shown
    assert normalize_text(shown.quantized) == GOFORWARD, shown
    expect(page.locator("#results-table")).to_contain_text("Latency (ms)")
    for row in (studio_page.ORIGINAL_ROW, studio_page.QUANTIZED_ROW):
        expect(studio_page.table_cells(page, row)).to_have_count(1)
    # Every engine's transcript equals the reference's 4 words once normalised: no errors.
    expect(studio_page.table_cells(page, "0.0% (0/4)")).to_have_count(len(ENGINES))
    # Each engine's segments with their timestamps, and its SRT/VTT/JSON to download.
    expect(page.locator("#segments")).to_contain_text("0:00.0 → 0:02")
    # The file list shows each name and its extension apart ("tiny.en-quantized .srt").
    downloads = " ".join(page.locator("#downloads").inner_text().split())
    for engine in ENGINES:
        for extension in ("srt", "vtt", "json"):
            assert f"tiny.en-{engine} .{extension}" in downloads, downloads
    # The note under the table links to the method (the README on a Space, else this section).
    expect(page.get_by_role("link", name="How the figures are measured")).to_be_visible()
    expect(page.locator("#how-the-figures-are-measured")).to_have_count(1)

    saved = studio_page.screenshot(page, tmp_path / "screenshot.png")
    width, height = png_size(saved)
    assert width == studio_page.VIEWPORT["width"]
    assert height > studio_page.VIEWPORT["height"]  # the whole page, results and charts


# Four variants: three of the defaults and faster-whisper (tiny.en's ct2/ folder; a dev
# requirement).
FOUR_VARIANTS = [
    "Original (PyTorch fp32)",
    "ONNX fp32 (no quantization)",
    "Quantized (ONNX int8)",
    "faster-whisper (CTranslate2 int8)",
]


def test_four_variants_side_by_side_with_a_report_to_download(page, app_url, clip, references):
    from playwright.sync_api import expect

    page.goto(app_url)  # a fresh page: the first results to appear are this run's
    studio_page.choose_engines(page, FOUR_VARIANTS)
    studio_page.upload(page, clip("goforward.wav"), references["goforward.wav"])

    shown = studio_page.run(page)

    assert normalize_text(shown.original) == GOFORWARD, shown
    for label in FOUR_VARIANTS:  # a row each in the table
        expect(studio_page.table_cells(page, label)).to_have_count(1)
    expect(studio_page.table_cells(page, "0.0% (0/4)")).to_have_count(len(FOUR_VARIANTS))
    # Each variant's transcript, marked against the original's, in the variants view.
    variants = page.locator("#variants .variant")
    expect(variants).to_have_count(len(FOUR_VARIANTS))
    for i, label in enumerate(FOUR_VARIANTS):
        expect(variants.nth(i)).to_contain_text(label)
        assert GOFORWARD in normalize_text(variants.nth(i).locator(".variant-text").inner_text())
    # The run's report, as JSON and Markdown ("tiny.en-report .json": name and extension apart).
    expect(page.locator("#report-downloads")).to_contain_text("tiny.en-report")
    report = " ".join(page.locator("#report-downloads").inner_text().split())
    for extension in ("json", "md"):
        assert f"tiny.en-report .{extension}" in report, report
    # The share button is there (it copies a link; only useful where the app is public).
    expect(page.get_by_role("button", name="Share this run")).to_be_visible()


def test_an_english_only_model_offers_no_language_or_translation(page):
    from playwright.sync_api import expect

    one_clip = page.locator("#one-clip")
    expect(one_clip.get_by_label("Language", exact=True)).to_be_disabled()
    # Exact: "faster-whisper (CTranslate2 int8)", a variant, holds "translate" too.
    expect(one_clip.get_by_label("translate", exact=True)).to_be_disabled()


def test_running_without_audio_shows_a_message_not_a_traceback(page, app_url):
    from playwright.sync_api import expect

    page.goto(app_url)
    with pytest.raises(studio_page.StudioPageError, match=r"^Upload or record audio first\.$"):
        studio_page.run(page)
    expect(page.get_by_text("Traceback")).to_have_count(0)


def test_the_batch_tab_scores_several_clips_with_references(page, app_url, clip, tmp_path):
    from playwright.sync_api import expect

    refs = tmp_path / "refs.csv"
    refs.write_text(
        "file_name,transcription\n"
        "goforward.wav,go forward ten meters\n"
        "cards-001.wav,ten of clubs\n"
        "cards-003.wav,seven of clubs\n"
    )
    clips = [clip(name) for name in ("goforward.wav", "cards-001.wav", "cards-003.wav")]
    page.goto(app_url)  # a fresh page: the first results to appear are the batch's
    # Two of the default variants: the table has a row for each chosen one only.
    chosen = ["Original (PyTorch fp32)", "Quantized (ONNX int8)"]
    table = studio_page.run_batch(page, clips, refs, variants=chosen)
    expect(page.locator("#batch-summary")).to_contain_text("10 reference words")
    shown = page.locator("#batch-engines").inner_text()
    assert all(label in shown for label in chosen), shown
    assert "ONNX fp32 (no quantization)" not in shown, shown
    studio_page.screenshot(page, tmp_path / "batch.png")
    # Each clip, in order, with tiny.en's transcript of it (greedy, so every run).
    places = [table.index(c.name) for c in clips]
    assert places == sorted(places), table
    for said in ("Go forward 10 meters", "10 of clubs", "7 of clubs"):
        assert said in table, table
