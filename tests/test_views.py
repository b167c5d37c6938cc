"""The result texts (views.py), without Gradio and without any engine."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from whisper_quant.batch import BatchClip, BatchResult, ClipResult
from whisper_quant.compare import Comparison
from whisper_quant.engines import Segment, TranscribeOptions
from whisper_quant.longform_options import WindowLanguage
from whisper_quant.metrics import DIFF_CHANGED
from whisper_quant.run_report import to_json, to_markdown
from whisper_quant.views import (
    NOT_COMPARABLE,
    RESULT_HEADERS,
    SPEECH_COVERAGE,
    SPEEDUP_VS_PYTORCH,
    SYNTHETIC_HEADING,
    batch_engine_rows,
    batch_summary,
    dropped_lines,
    language_label,
    language_table,
    measurement_note,
    notice,
    quantized_diff,
    result_rows,
    speedup_split,
    summary,
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


# --- the three-way split, speech coverage and language identification -----------------------

# engine: (label, latency s, segment spans); a 60 s clip, the original covering all of it.
CLIP_S = 60.0
FULL = ((0.0, 10.0), (10.0, 29.0), (29.0, 56.0), (56.0, 60.0))
SPLIT_ENGINES = {
    "original": ("Original (PyTorch fp32)", 4.0, FULL),
    "pytorch": ("PyTorch fp32, same loop", 2.0, FULL),
    "onnx-fp32": ("ONNX fp32 (no quantization)", 1.6, FULL),
    "quantized": ("Quantized (ONNX int8)", 0.8, FULL),
}
# The quantized engine's second window ended after one segment and the loop sought on:
# 27 s of the original's speech have no transcript (the skip issue 20 describes).
SKIPPING = ((0.0, 10.0), (10.0, 29.0), (56.0, 60.0))


def _engine_result(engine, label, latency, spans, languages=()):
    from test_run_report import _result

    base = _result("onnx-fp32")
    segments = tuple(
        Segment(start, end, f" words {i}", (1,), "en", 0.0, -0.2, 0.01, 1.1, int(start // 30))
        for i, (start, end) in enumerate(spans)
    )
    transcription = replace(
        base.transcription,
        engine=engine,
        audio_s=CLIP_S,
        timings={"total": latency, "decoder": latency / 2},
        segments=segments,
        window_languages=tuple(languages),
    )
    return replace(
        base,
        engine=engine,
        label=label,
        transcription=transcription,
        load=replace(base.load, engine=engine, label=label),
    )


def _split_comparison(engines=tuple(SPLIT_ENGINES), spans=None, languages=None, **options):
    spans, languages = spans or {}, languages or {}
    results = tuple(
        _engine_result(
            name,
            SPLIT_ENGINES[name][0],
            SPLIT_ENGINES[name][1],
            spans.get(name, SPLIT_ENGINES[name][2]),
            languages.get(name, ()),
        )
        for name in engines
    )
    return Comparison(
        model="base",
        audio_s=CLIP_S,
        language="en",
        reference="",
        results=results,
        order=tuple(engines),
        order_seed=7,
        options=TranscribeOptions(**options),
    )


def _rows(comparison) -> dict[str, dict]:
    return {row[0]: dict(zip(RESULT_HEADERS, row, strict=True)) for row in result_rows(comparison)}


def test_the_headline_is_against_pytorch_and_the_stock_figure_splits_three_ways():
    comparison = _split_comparison()
    text = speedup_split(comparison)
    # 4.0 / 0.8 = 5x stock = 2x (generate's passes: 4.0 / 2.0) x 1.25x (runtime: 2.0 / 1.6)
    # x 2x (int8: 1.6 / 0.8); like for like, 2.0 / 0.8 = 2.5x.
    assert text.startswith("Quantized vs PyTorch through the same loop (like for like): **2.50x**")
    assert "vs stock transformers generate (the original): 5.00x" in text
    assert "**2.00x** from generate's own extra passes (original → pytorch)" in text
    assert "**1.25x** from the runtime and graphs (pytorch → onnx-fp32)" in text
    assert "**2.00x** from int8 (onnx-fp32 → quantized)" in text
    assert NOT_COMPARABLE not in text
    assert text in summary(comparison)

    rows = _rows(comparison)
    assert rows["Quantized (ONNX int8)"][SPEEDUP_VS_PYTORCH] == "2.50x"
    assert rows["Quantized (ONNX int8)"]["Speed-up vs original"] == "5.00x"
    assert rows["Original (PyTorch fp32)"][SPEEDUP_VS_PYTORCH] == "0.50x"
    assert rows["PyTorch fp32, same loop"][SPEEDUP_VS_PYTORCH] == "1.00x"
    assert rows["Original (PyTorch fp32)"][SPEECH_COVERAGE] == "60.0 s (reference)"
    assert rows["Quantized (ONNX int8)"][SPEECH_COVERAGE] == "60.0 s (100.0%)"
    assert dropped_lines(comparison) == []


def test_without_pytorch_the_speedup_falls_back_to_the_original_and_says_so():
    comparison = _split_comparison(("original", "onnx-fp32", "quantized"))
    text = speedup_split(comparison)
    assert text.startswith("Quantized vs original (stock transformers generate): **5.00x**")
    assert "`pytorch` did not run" in text
    assert "**2.50x** from generate's passes, the runtime and graphs" in text
    rows = _rows(comparison)
    assert (
        rows["Quantized (ONNX int8)"][SPEEDUP_VS_PYTORCH]
        == "5.00x vs original (pytorch did not run)"
    )
    # Without onnx-fp32 either, the stock figure stands alone.
    alone = speedup_split(_split_comparison(("original", "quantized")))
    assert "**5.00x**" in alone and "Add `onnx-fp32`" in alone
    # With pytorch but without onnx-fp32: like for like, generate's passes apart.
    no_fp32 = speedup_split(_split_comparison(("original", "pytorch", "quantized")))
    assert "**2.50x**" in no_fp32 and "**2.00x** is generate's own extra passes" in no_fp32


def test_a_variant_that_left_out_speech_is_named_and_its_speedup_not_comparable():
    comparison = _split_comparison(spans={"quantized": SKIPPING})
    assert dropped_lines(comparison) == [
        "quantized did not transcribe 0:29-0:56 that the original transcribed (it covered 55% "
        "of the original's speech): it did less work, so its speed-up is not comparable."
    ]
    text = summary(comparison)
    assert "**Left out speech:** quantized did not transcribe 0:29-0:56" in text
    assert f"**2.50x** on this clip ({NOT_COMPARABLE})" in speedup_split(comparison)
    rows = _rows(comparison)
    quantized = rows["Quantized (ONNX int8)"]
    assert quantized["Speed-up vs original"] == f"5.00x ({NOT_COMPARABLE})"
    assert quantized[SPEEDUP_VS_PYTORCH] == f"2.50x ({NOT_COMPARABLE})"
    assert quantized[SPEECH_COVERAGE] == "33.0 s (55.0%)"
    onnx = rows["ONNX fp32 (no quantization)"]
    assert onnx[SPEEDUP_VS_PYTORCH] == "1.25x"
    assert NOT_COMPARABLE not in onnx["Speed-up vs original"]
    view = variants_view(comparison)
    assert f"speed-up vs original 5.00x ({NOT_COMPARABLE})" in view
    assert "speech covered 33.0 s (55.0%)" in view


def test_a_short_gap_is_where_segments_differ_not_speech_left_out():
    # 3 s missing (under MIN_DROPPED_S) and 95% covered: comparable, nothing named.
    spans = {"quantized": ((0.0, 10.0), (10.0, 29.0), (32.0, 56.0), (56.0, 60.0))}
    comparison = _split_comparison(spans=spans)
    assert dropped_lines(comparison) == []
    assert NOT_COMPARABLE not in speedup_split(comparison)
    assert _rows(comparison)["Quantized (ONNX int8)"][SPEECH_COVERAGE] == "57.0 s (95.0%)"
    # A dropped span above the threshold still comparable (over 90% covered) is named alone.
    spans = {"quantized": ((0.0, 24.0), (30.0, 60.0))}
    line = dropped_lines(_split_comparison(spans=spans))
    assert line == [
        "quantized did not transcribe 0:24-0:30 that the original transcribed (it covered 90% "
        "of the original's speech)."
    ]


def test_language_identification_side_by_side_per_window():
    first = WindowLanguage(0, 0.0, (("en", 0.9712), ("de", 0.0191), ("nl", 0.004)))
    second = WindowLanguage(1, 29.0, (("de", 0.88), ("en", 0.1), ("nl", 0.01)))
    shifted = WindowLanguage(1, 29.0, (("en", 0.51), ("de", 0.47), ("nl", 0.01)))
    comparison = _split_comparison(
        ("original", "quantized"),
        languages={"original": (first, second), "quantized": (first, shifted)},
        language_per_window=True,
    )
    table = language_table(comparison)
    assert "three most probable languages of every 30 s window" in table
    lines = table.splitlines()
    assert "| Engine | Window start | Top 3 |" in lines
    rows = [line for line in lines if line.startswith("| ") and "Window start" not in line]
    # Window by window, the engines side by side in the comparison's order.
    assert rows == [
        "| Original (PyTorch fp32) | 0:00.0 | English (en) 97.1% · German (de) 1.9% · Dutch (nl) 0.4% |",
        "| Quantized (ONNX int8) | 0:00.0 | English (en) 97.1% · German (de) 1.9% · Dutch (nl) 0.4% |",
        "| Original (PyTorch fp32) | 0:29.0 | German (de) 88.0% · English (en) 10.0% · Dutch (nl) 1.0% |",
        "| Quantized (ONNX int8) | 0:29.0 | English (en) 51.0% · German (de) 47.0% · Dutch (nl) 1.0% |",
    ]
    assert "Not reported by" not in table
    # An engine that reports none (Optimum's generate) is named; the first window only.
    once = _split_comparison(("original", "quantized"), languages={"original": (first,)})
    table = language_table(once)
    assert "of the first 30 s window" in table
    assert "Not reported by: Quantized (ONNX int8)." in table
    # English-only models (and a given language) detect nothing: nothing is shown.
    assert language_table(_split_comparison()) == ""


def test_the_run_report_has_coverage_and_language_identification():
    from test_run_report import _report

    first = WindowLanguage(0, 0.0, (("en", 0.97), ("de", 0.02), ("nl", 0.004)))
    comparison = _split_comparison(
        spans={"quantized": SKIPPING}, languages={"original": (first,), "quantized": (first,)}
    )
    report = _report(comparison)
    by_engine = {v.engine: v for v in report.variants}
    quantized = by_engine["quantized"]
    assert quantized.speedup_comparable is False
    assert quantized.dropped_spans == ((29.0, 56.0),)
    assert quantized.speech_coverage_vs_original == 0.55
    assert quantized.speedup_vs_pytorch == 2.5
    assert by_engine["onnx-fp32"].speedup_comparable is True
    assert by_engine["original"].speech_coverage_vs_original is None
    assert report.speedup["quantized_vs_pytorch"] == 2.5
    assert report.speedup["pytorch_vs_original"] == 2.0
    assert report.speedup["onnx_fp32_vs_pytorch"] == 1.25
    assert report.coverage_notes == tuple(dropped_lines(comparison))
    assert report.language_text == language_table(comparison)
    written = json.loads(to_json(report))
    languages = {v["engine"]: v["languages"] for v in written["variants"]}
    assert languages["quantized"] == [
        {"window": 0, "start_s": 0.0, "top": [["en", 0.97], ["de", 0.02], ["nl", 0.004]]}
    ]
    assert languages["pytorch"] == []
    markdown = to_markdown(report)
    assert "**Left out speech:** quantized did not transcribe 0:29-0:56" in markdown
    assert "## Language identification" in markdown and "English (en) 97.0%" in markdown
    assert "## Language identification" not in to_markdown(_report(_split_comparison()))


def test_a_batched_chunk_that_ended_early_is_named_beside_the_spans():
    """Without timestamps a batched chunk is one segment spanning it: the spans see nothing
    missing, so the words per chunk are compared with the original's (coverage.short_chunks)."""
    comparison = _split_comparison(batch_size=8, timestamps=False)

    def batched(result, words):
        segments = tuple(
            Segment(
                start,
                end,
                " " + " ".join(["word"] * n),
                (1,),
                "en",
                0.0,
                -0.2,
                0.01,
                1.1,
                i,
                chunk_start=start,
            )
            for i, ((start, end), n) in enumerate(
                zip(((0.0, 29.0), (30.0, 60.0)), words, strict=True)
            )
        )
        return replace(result, transcription=replace(result.transcription, segments=segments))

    words = {"original": (65, 60), "quantized": (7, 60)}
    results = tuple(batched(r, words.get(r.engine, (64, 60))) for r in comparison.results)
    comparison = replace(comparison, results=results)
    assert dropped_lines(comparison) == [
        "quantized wrote under half the original's words in chunk 0 (7 of the original's 65 "
        "words): its decoding of those chunks ended early."
    ]
    # Sequential windows are not compared word by word: their indices differ by engine.
    assert dropped_lines(_split_comparison()) == []
