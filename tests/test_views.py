"""The result texts (views.py), without Gradio and without any engine."""

from __future__ import annotations

from whisper_quant.views import language_label, measurement_note


def test_language_labels():
    assert language_label("de") == "German (de)"
    assert language_label("haw") == "Hawaiian (haw)"
    assert language_label("xx") == "xx"


def test_measurement_note_links_to_the_method():
    assert "(#how-the-figures-are-measured)" in measurement_note(None)
    url = "https://example.org/README.md"
    assert f"({url}#how-the-figures-are-measured)" in measurement_note(url)
    assert "single run" in measurement_note(None)
