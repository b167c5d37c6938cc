"""The result texts (views.py), without Gradio and without any engine."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from whisper_quant.batch import BatchClip, BatchResult, ClipResult
from whisper_quant.metrics import DIFF_CHANGED
from whisper_quant.views import (
    SYNTHETIC_HEADING,
    batch_engine_rows,
    batch_summary,
    language_label,
    measurement_note,
    notice,
    quantized_diff,
    variants_view,
)


def test_language_labels():
    assert language_label("de") == "German (de)"
    assert language_label("haw") == "Hawaiian (haw)"
    assert language_label("xx") == "xx"


def test_measurement_note_links_to_the_method():
    assert "(#how-the-figures-are-measured)" in measurement_note(None)
    url = "https://example.org/README.md"
    assert f"({url}#how-the-figures-are-measured)" in measurement_note(url)
    assert "single run" in measurement_note(None)


# The page's texts for one comparison, from the run report's fake four-engine comparison.
def test_the_quantized_diff_and_the_variants_view_mark_words_against_the_original():
    from test_run_report import _comparison

    comparison = _comparison()
    diff = quantized_diff(comparison)
    assert "".join(piece for piece, _ in diff if piece).strip()
    assert any(label == DIFF_CHANGED for _, label in diff), diff
    assert quantized_diff(_comparison(("original", "onnx-fp32"))) == []

    view = variants_view(comparison)
    assert view.count('<div class="variant" ') == 4
    assert "the reference for the others" in view
    assert '<mark class="changed"' in view and "vs original" in view
    assert variants_view(replace(comparison, results=())) == ""


def test_the_notice_is_bold_when_there_is_one():
    from test_run_report import _comparison

    assert notice(_comparison()) == ""
    assert notice(replace(_comparison(), notice="No speech.")) == "**No speech.**"


def test_the_batch_summary_says_what_ran_what_failed_and_if_weights_are_synthetic():
    ran = ClipResult(BatchClip("a.wav", np.zeros(16_000), "hello"), comparison=object())
    failed = ClipResult(BatchClip("b.wav", None, None, error="not audio"), comparison=None)
    result = BatchResult("tiny.en", (ran, failed), engines=(), reference_words=1)
    text = batch_summary(result)
    assert text.startswith("**tiny.en** · 2 clips, 1 transcribed · WER rests on 1 reference")
    assert text.endswith("Not decoded: b.wav: not audio")
    synthetic = batch_summary(replace(result, synthetic=True))
    assert synthetic.startswith(SYNTHETIC_HEADING) and "references are not scored" in synthetic
    assert batch_engine_rows(result) == []
