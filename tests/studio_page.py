"""The studio's page in a headless Chromium, used as a person uses it: load a clip (upload it or
click an example), press Run, wait for the results, read both transcripts, save a screenshot.

Shared by tests/test_app_browser.py and scripts/screenshot.py. Needs the Playwright package;
the browser is the system's Chromium, not one that Playwright downloads. Each helper expects
a page that has not shown results yet (a fresh `open_page`), so the first results to appear
are the ones asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
VIEWPORT = {"width": 1280, "height": 900}
LOAD_TIMEOUT_MS = 30_000  # an upload or an example clip to reach the audio player
RESULT_TIMEOUT_MS = 180_000  # both engines on one clip, on a busy 2-core machine
CHARTS_SETTLE_MS = 1_000  # the bar charts draw after the results arrive
CHOICES_SETTLE_MS = 1_000  # the page's load event may still refresh the variants' choices

REFERENCE_LABEL = "Reference transcript (optional)"
ORIGINAL_ROW = "Original (PyTorch fp32)"
QUANTIZED_ROW = "Quantized (ONNX int8)"


class StudioPageError(RuntimeError):
    """The page showed an error message instead of results."""


@dataclass(frozen=True)
class Transcripts:
    """Both transcripts as the page shows them."""

    original: str
    quantized: str


@contextlib.contextmanager
def open_page(url: str, chromium: Path = CHROMIUM) -> Iterator[Page]:
    """A new page of a headless `chromium`, at `url`; the browser closes at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(url)
            yield page
        finally:
            browser.close()


def upload(page: Page, clip: Path, reference: str | None = None) -> None:
    """Upload `clip` (and type `reference`, when given); return once the player holds it."""
    page.set_input_files("#audio input[type=file]", str(clip))
    if reference is not None:
        page.get_by_label(REFERENCE_LABEL).fill(reference)
    _wait_for_clip(page, clip.name)


def click_example(page: Page, label: str) -> None:
    """Click the example labelled `label`; return once its clip is in the player."""
    page.get_by_role("button", name=label, exact=True).click()
    _wait_for_clip(page, None)


def choose_engines(page: Page, labels: list[str], group: str = "#engines") -> None:
    """Tick exactly the variants labelled `labels` in the "Engines / variants" group
    `group` (the single-clip tab's, or "#batch-variants")."""
    choices = _engine_choices(page, group)
    for _ in range(3):
        for i in range(choices.count()):
            choice = choices.nth(i)
            choice.locator("input").set_checked(choice.inner_text().strip() in labels)
        # Ticked once the page's own load event (which refreshes the choices) has run.
        page.wait_for_timeout(CHOICES_SETTLE_MS)
        if sorted(checked_engines(page, group)) == sorted(labels):
            return
    raise StudioPageError(f"could not tick {labels}; ticked: {checked_engines(page, group)}")


def checked_engines(page: Page, group: str = "#engines") -> list[str]:
    """The labels of the ticked variants."""
    choices = _engine_choices(page, group)
    return [
        choices.nth(i).inner_text().strip()
        for i in range(choices.count())
        if choices.nth(i).locator("input").is_checked()
    ]


def _engine_choices(page: Page, group: str):
    """One label (holding its checkbox) per variant in an "Engines / variants" group."""
    return page.locator(f"{group} label").filter(has=page.locator("input[type=checkbox]"))


def run(page: Page) -> Transcripts:
    """Press Run and wait for the results table and both transcripts.

    Raises StudioPageError with the page's message when the app answers with an error.
    """
    from playwright.sync_api import expect

    page.locator("#run").click()
    # The engine's name in a table cell: the progress text above the table says
    # "Transcribing with Quantized (ONNX int8) ...", which an exact match does not take.
    result = table_cells(page, QUANTIZED_ROW)
    error = page.get_by_test_id("toast-text")
    expect(result.or_(error).first).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    if error.count():
        raise StudioPageError(" / ".join(error.all_inner_texts()))
    # Every output has its value once no output shows progress.
    expect(page.locator(".progress-text")).to_have_count(0, timeout=RESULT_TIMEOUT_MS)
    return transcripts(page)


def run_batch(
    page: Page, clips: list[Path], references: Path, variants: list[str] | None = None
) -> str:
    """Open the Batch tab, tick `variants` (labels; by default leave the app's choice),
    upload `clips` and `references`, press Run batch and wait for the results; return the
    per-clip table's visible text, whitespace folded.

    Raises StudioPageError with the page's message when the app answers with an error.
    """
    from playwright.sync_api import expect

    page.get_by_role("tab", name="Batch").click()
    if variants is not None:
        choose_engines(page, variants, group="#batch-variants")
    page.set_input_files("#batch-files input[type=file]", [str(c) for c in clips])
    page.set_input_files("#batch-references input[type=file]", str(references))
    for clip in clips:  # each upload shows its name (apart from its extension) once done
        expect(page.locator("#batch-files").get_by_text(clip.stem).first).to_be_visible(
            timeout=LOAD_TIMEOUT_MS
        )
    page.locator("#run-batch").click()
    result = page.locator("#batch-engines").get_by_text(QUANTIZED_ROW, exact=True)
    error = page.get_by_test_id("toast-text")
    expect(result.filter(visible=True).or_(error).first).to_be_visible(timeout=RESULT_TIMEOUT_MS)
    if error.count():
        raise StudioPageError(" / ".join(error.all_inner_texts()))
    expect(page.locator(".progress-text")).to_have_count(0, timeout=RESULT_TIMEOUT_MS)
    return " ".join(page.locator("#batch-clips").inner_text().split())


def table_cells(page: Page, text: str):
    """The results table's visible cells whose whole text is `text`.

    The table also keeps a hidden copy of every cell (to size its columns): not counted.
    """
    return page.locator("#results-table").get_by_text(text, exact=True).filter(visible=True)


def transcripts(page: Page) -> Transcripts:
    """The original transcript's text box, and the quantized one's highlighted words joined."""
    original = page.locator("#original-transcript textarea").input_value()
    # Words and the spaces between them, each in a token; the legend (changed, added,
    # missing) is outside the tokens.
    tokens = page.locator("#quantized-transcript .token-container .text")
    quantized = "".join(tokens.evaluate_all("nodes => nodes.map(n => n.textContent)"))
    return Transcripts(original, quantized)


def screenshot(page: Page, path: Path) -> Path:
    """Save the whole page as a PNG at `path`, once the charts have drawn."""
    path.parent.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(CHARTS_SETTLE_MS)
    page.screenshot(path=str(path), full_page=True)
    return path


def _wait_for_clip(page: Page, name: str | None) -> None:
    """Wait for the audio player's download link: to the file `name`, or to any file."""
    from playwright.sync_api import expect

    href = f'[href$="/{name}"]' if name else '[href*="/gradio_api/file="]'
    expect(page.locator(f"a{href}").first).to_be_attached(timeout=LOAD_TIMEOUT_MS)
