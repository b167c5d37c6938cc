"""Speech coverage: the pure span arithmetic, and the benchmark naming a span an engine left out.

The benchmark test runs `run_benchmark` on fake engines in place of the worker processes: the
original, pytorch and onnx-fp32 transcribe all of a 60 s clip, and quantized skips 0:29-0:56,
as the quantized base model did on a real English-then-German recording (its window at 26 s
ended after one segment and the loop sought to 56 s).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pytest

from whisper_quant import bench
from whisper_quant.audio import SAMPLE_RATE
from whisper_quant.coverage import (
    COMPARABLE_COVERAGE,
    ClipCoverage,
    aggregate,
    chunk_words,
    clip_coverage,
    clock,
    dropped_spans,
    format_span,
    gaps,
    intersect,
    merge,
    short_chunks,
    total,
)
from whisper_quant.engines import Segment, Transcription
from whisper_quant.report import bench_rows
from whisper_quant.report_markdown import markdown_report
from whisper_quant.workers import LoadReport

# --- the span arithmetic -------------------------------------------------------------------


def test_merge_joins_overlapping_and_touching_spans_and_clips_to_the_clip():
    spans = [(5.0, 8.0), (0.0, 2.0), (1.5, 3.0), (3.0, 4.0), (9.0, 9.0), (28.0, 30.0)]
    assert merge(spans) == [(0.0, 4.0), (5.0, 8.0), (28.0, 30.0)]
    # A short clip's last window can end at 30 s: nothing past the clip counts.
    assert merge(spans, limit=7.1) == [(0.0, 4.0), (5.0, 7.1)]
    assert total(merge(spans, limit=7.1)) == pytest.approx(6.1)


def test_intersect_and_gaps_of_sorted_spans():
    a = [(0.0, 10.0), (20.0, 30.0)]
    b = [(5.0, 25.0)]
    assert intersect(a, b) == [(5.0, 10.0), (20.0, 25.0)]
    assert intersect(a, []) == []
    assert gaps(a, 40.0) == [(10.0, 20.0), (30.0, 40.0)]
    assert gaps([], 12.0) == [(0.0, 12.0)]


def test_a_skipped_stretch_is_one_span_across_the_originals_own_pauses():
    """The original paused between its segments at 35-35.4 s: the stretch the other engine
    left out is still one span, from the original's first to last second inside it."""
    original = merge([(0, 10), (10, 29), (29, 35), (35.4, 56), (56, 60)])
    other = merge([(0, 10), (10, 29), (56.5, 60)])
    assert dropped_spans(original, other, 60.0) == [(29.0, 56.5)]


def test_differences_at_segment_boundaries_are_not_dropped_spans():
    original = merge([(0, 5.2), (5.6, 10), (12, 20)])
    other = merge([(0.4, 5.0), (5.0, 9.0), (12.5, 19.0)])
    assert dropped_spans(original, other, 20.0) == []
    # Five seconds of the original's speech is the limit.
    assert dropped_spans(original, merge([(0, 5.0)]), 20.0) == [(5.0, 20.0)]
    assert dropped_spans(merge([(0, 4.9)]), [], 20.0) == []
    assert dropped_spans(merge([(0, 5.0)]), [], 20.0) == [(0.0, 5.0)]


def test_clip_coverage_counts_what_both_cover_over_what_the_original_covers():
    c = clip_coverage([(0, 29), (29, 56), (56, 60)], [(0, 29), (56, 60)], 60.0)
    assert (c.covered_s, c.original_s, c.shared_s) == (33.0, 60.0, 33.0)
    assert c.coverage == pytest.approx(0.55)
    assert c.dropped == ((29.0, 56.0),)
    # Text the original did not have counts as covered but not as shared.
    extra = clip_coverage([(0, 10)], [(0, 10), (20, 30)], 30.0)
    assert extra.covered_s == 20.0 and extra.coverage == 1.0 and extra.dropped == ()
    assert clip_coverage([], [(0, 3)], 3.0).coverage is None


def test_aggregate_sums_seconds_over_clips_and_judges_comparability():
    dropped = ClipCoverage(33.0, 60.0, 33.0, ((29.0, 56.0),))
    whole = ClipCoverage(10.0, 10.0, 10.0, ())
    summed = aggregate([dropped, whole])
    assert summed.coverage == pytest.approx(43 / 70)
    assert summed.clips_with_dropped_span == 1 and not summed.comparable
    assert aggregate([whole]).comparable
    # Exactly the threshold still compares; nothing to cover compares too.
    edge = ClipCoverage(9.0, 10.0, 10.0 * COMPARABLE_COVERAGE, ())
    assert aggregate([edge]).comparable
    assert aggregate([]).coverage is None and aggregate([]).comparable


def test_spans_read_as_clock_times():
    assert format_span((29.0, 56.4)) == "0:29-0:56"
    assert clock(61.9) == "1:01" and clock(3725.0) == "1:02:05"


# --- the benchmark, on fake engines ----------------------------------------------------------

CLIP_S = 60.0
EVERYTHING = ((0.0, 10.0), (10.0, 20.0), (20.0, 29.0), (29.0, 40.0), (40.0, 56.0), (56.0, 60.0))
# Latency per engine, and the segments each gives.
FAKE = {
    "original": (4.0, EVERYTHING),
    "pytorch": (2.0, EVERYTHING),
    "onnx-fp32": (1.6, EVERYTHING),
    "quantized": (0.4, EVERYTHING[:3] + EVERYTHING[-1:]),
}


def _transcription(engine: str) -> Transcription:
    latency, spans = FAKE[engine]
    segments = tuple(
        Segment(start, end, f" words {i}", (1, 2), "en", 0.0, -0.2, 0.01, 1.2, int(start // 30))
        for i, (start, end) in enumerate(spans)
    )
    timings = {
        "features": 0.05 * latency,
        "encoder": 0.3 * latency,
        "first_step": 0.05 * latency,
        "decoder": 0.6 * latency,
        "other": 0.05 * latency,
        "total": latency,
    }
    return Transcription(
        engine=engine,
        text="".join(s.text for s in segments).strip(),
        language="en",
        tokens=(1, 2) * len(segments),
        audio_s=CLIP_S,
        timings=timings,
        segments=segments,
        windows=2,
        tokens_decoded=40,
        next_steps=38,
    )


@dataclass(frozen=True)
class _Result:
    engine: str
    transcription: Transcription


@dataclass(frozen=True)
class _Comparison:
    results: tuple[_Result, ...]
    order: tuple[str, ...]
    order_seed: int


class FakeStudio:
    """Stands in for compare.Studio: each engine answers with its fixed transcription."""

    def __init__(self, model_dir, engines, *, threads):
        self.engines = tuple(engines)

    def start(self, on_engine=None):
        return []

    def compare(self, audio, options, *, order_seed):
        results = tuple(_Result(name, _transcription(name)) for name in self.engines)
        return _Comparison(results, self.engines, order_seed)

    def reports(self):
        return {
            name: LoadReport(name, name, name, 2, 1, 300 * 2**20, 400 * 2**20, 90 * 2**20, 1.0, 1.0)
            for name in self.engines
        }

    def close(self):
        pass


@pytest.fixture
def fake_report(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "Studio", FakeStudio)
    audio = np.zeros(int(CLIP_S * SAMPLE_RATE), np.float32)
    clips = [bench.Clip("long.wav", tmp_path / "long.wav", None, audio)]
    return bench.run_benchmark(tmp_path, clips, list(FAKE), repeat=2)


def test_the_benchmark_names_the_span_an_engine_left_out(fake_report):
    quantized = fake_report.engines["quantized"]
    assert quantized.speech_covered_s == 33.0
    assert quantized.speech_coverage_vs_original == pytest.approx(33 / 60)
    assert quantized.clips_with_dropped_span == 1
    assert quantized.clip_coverage["long.wav"]["dropped_spans"] == [[29.0, 56.0]]
    assert quantized.speedup_comparable is False
    for name in ("original", "pytorch", "onnx-fp32"):
        engine = fake_report.engines[name]
        assert engine.speech_coverage_vs_original == 1.0, name
        assert engine.clips_with_dropped_span == 0 and engine.speedup_comparable, name
        assert engine.clip_coverage["long.wav"]["dropped_spans"] == [], name
    summary = fake_report.summary
    assert summary["speedup_comparable"] is False
    assert summary["onnx-fp32_speedup_comparable"] is True
    assert summary["speech_coverage_vs_original"] == pytest.approx(0.55)
    data = fake_report.to_dict()
    assert data["engines"]["quantized"]["speech_coverage_vs_original"] == pytest.approx(0.55)
    assert "coverage" in data["methods"]


def test_the_speed_up_splits_three_ways_and_the_headline_is_against_pytorch(fake_report):
    summary = fake_report.summary
    split = summary["speedup_split"]
    assert split == {
        "original_to_pytorch": pytest.approx(2.0),
        "pytorch_to_onnx-fp32": pytest.approx(1.25),
        "onnx-fp32_to_quantized": pytest.approx(4.0),
    }
    assert np.prod(list(split.values())) == pytest.approx(summary["speedup"]) == 10.0
    assert summary["speedup_vs_pytorch"] == pytest.approx(5.0)
    assert summary["onnx-fp32_speedup_vs_pytorch"] == pytest.approx(1.25)
    assert "pytorch_speedup_vs_pytorch" not in summary
    # The two-way keys stay, and still multiply back to the stock figure.
    assert summary["speedup_from_runtime"] * summary["speedup_from_int8"] == pytest.approx(10.0)


def test_the_markdown_shows_coverage_and_marks_the_speed_up_not_comparable(fake_report):
    labels = {e.label: name for name, e in fake_report.engines.items()}
    rows = {labels[row[0]]: row for row in bench_rows(fake_report)}
    assert rows["quantized"][4] == "10.00x (not comparable)"
    assert rows["quantized"][6] == "5.00x (not comparable)"
    assert rows["quantized"][7] == "55.0% (1 clip with a dropped span)"
    assert rows["onnx-fp32"][6] == "1.25x" and rows["onnx-fp32"][7] == "100.0%"
    markdown = markdown_report(fake_report)
    assert "Speech covered (of original's)" in markdown
    assert (
        "quantized did not transcribe 0:29-0:56 of long.wav that the original transcribed "
        "(it covered 55% of the original's speech): it did less work, so its speed-up is "
        "not comparable." in markdown
    )
    assert "Quantized vs pytorch (the same model through the same loop): **5.00x**" in markdown
    assert "(not comparable); vs the stock original (transformers generate) 10.00x" in markdown
    assert "generate's own extra passes) 2.00x" in markdown
    assert "pytorch to onnx-fp32 (the runtime and graphs) 1.25x" in markdown
    assert "onnx-fp32 to quantized (int8) 4.00x" in markdown


def test_the_sections_add_up_to_the_latency_with_other(fake_report):
    for name, engine in fake_report.engines.items():
        assert engine.median_section_s["other"] == pytest.approx(0.05 * FAKE[name][0])
        assert engine.section_share == pytest.approx(0.95), name


# --- batched chunks without timestamps ----------------------------------------------------------


def _chunk_segment(chunk: int, start: float, end: float, words: int) -> Segment:
    text = " " + " ".join(["word"] * words)
    return Segment(start, end, text, (1,), "en", 0.0, -0.2, 0.01, 1.2, chunk, chunk_start=start)


def test_words_per_chunk_only_for_batched_segments():
    batched = (_chunk_segment(0, 0.0, 28.0, 60), _chunk_segment(1, 30.0, 58.0, 5))
    rest = _chunk_segment(1, 50.0, 58.0, 3)  # a resumed rest keeps its chunk's index
    assert chunk_words(batched + (rest,)) == {0: 60, 1: 8}
    sequential = Segment(0.0, 28.0, " a b", (1,), "en", 0.0, -0.2, 0.01, 1.2, 0)
    assert chunk_words((sequential,)) is None
    assert chunk_words(()) is None


def test_a_chunk_with_under_half_the_originals_words_is_short():
    original = {0: 65, 1: 60, 2: 10, 3: 40}
    engine = {0: 7, 1: 30, 2: 0}  # chunk 3 missing: 0 words
    # Chunk 1 (exactly half) is not short; chunk 2 has too few words to judge.
    assert short_chunks(original, engine) == [(0, 65, 7), (3, 40, 0)]
    assert short_chunks(original, original) == []


BATCHED = {
    "original": [(0, 0.0, 28.0, 65), (1, 30.0, 58.0, 60)],
    "onnx-fp32": [(0, 0.0, 28.0, 65), (1, 30.0, 58.0, 61)],
    "quantized": [(0, 0.0, 28.0, 7), (1, 30.0, 58.0, 60)],
}


class BatchedStudio(FakeStudio):
    """Engines answering as the batched path without timestamps does: one segment per chunk."""

    def compare(self, audio, options, *, order_seed):
        results = []
        for name in self.engines:
            segments = tuple(_chunk_segment(*chunk) for chunk in BATCHED[name])
            results.append(
                _Result(
                    name,
                    replace(
                        _transcription(name),
                        text="".join(s.text for s in segments).strip(),
                        segments=segments,
                    ),
                )
            )
        return _Comparison(tuple(results), self.engines, order_seed)


def test_the_benchmark_names_a_batched_chunk_that_ended_early(monkeypatch, tmp_path):
    monkeypatch.setattr(bench, "Studio", BatchedStudio)
    audio = np.zeros(int(CLIP_S * SAMPLE_RATE), np.float32)
    clips = [bench.Clip("long.wav", tmp_path / "long.wav", None, audio)]
    report = bench.run_benchmark(tmp_path, clips, list(BATCHED), repeat=1)
    quantized = report.engines["quantized"]
    # Its one segment spans the chunk: the spans see nothing missing.
    assert quantized.clip_coverage["long.wav"]["dropped_spans"] == []
    assert quantized.clip_coverage["long.wav"]["short_chunks"] == [[0, 65, 7]]
    assert quantized.clips_with_short_chunk == 1
    fp32 = report.engines["onnx-fp32"]
    assert fp32.clips_with_short_chunk == 0 and fp32.clip_coverage["long.wav"]["short_chunks"] == []
    markdown = markdown_report(report)
    assert "quantized wrote under half the original's words in chunk 0 of long.wav" in markdown
    assert "(7 of the original's 65 words)" in markdown
    assert "short_chunks" in report.to_dict()["methods"]["coverage"]
