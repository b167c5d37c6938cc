"""The batched long-form path on the real tiny.en: chunks at pauses, decoded N at a time."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_quant import vad
from whisper_quant.audio import SAMPLE_RATE, decode_audio
from whisper_quant.decoding import decode_window, decode_windows, init_tokens
from whisper_quant.engines import engine_class
from whisper_quant.longform_batched import chunk_features, transcribe_batched, window_batch
from whisper_quant.longform_options import TranscribeOptions
from whisper_quant.measure import Stopwatch
from whisper_quant.metrics import word_error_rate

pytestmark = pytest.mark.integration

CLIPS = ("cards-001.wav", "goforward.wav", "cards-005.wav", "cards-003.wav")
# Chunks this short cut the clip into several, so a batch of 2 holds different chunks.
SHORT_CHUNK_S = 4.0


@pytest.fixture(scope="module")
def recording(clip) -> np.ndarray:
    """Real speech: shipped clips joined by 0.6 s pauses (as scripts/long_clips.py joins)."""
    pause = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    parts = []
    for name in CLIPS:
        parts += [decode_audio(clip(name)), pause]
    return np.concatenate(parts[:-1])


@pytest.fixture(scope="module")
def engines(built_tiny_en):
    loaded = {}
    for name in ("original", "pytorch", "onnx-fp32", "quantized"):
        engine = engine_class(name)(built_tiny_en.folder)
        engine.load()
        loaded[name] = engine
    return loaded


def check_segments(segments, audio_s: float, chunks: int) -> None:
    assert segments
    starts = [s.start for s in segments]
    assert starts == sorted(starts)
    for before, after in zip(segments, segments[1:], strict=False):
        assert before.end <= after.start + 1e-9 or before.window == after.window
    for s in segments:
        assert 0 <= s.start <= s.end <= audio_s
        assert 0 <= s.window < chunks
        assert s.chunk_start is not None and s.chunk_start <= s.start
    windows = [s.window for s in segments]
    assert windows == sorted(windows)


@pytest.mark.parametrize("name", ["onnx-fp32", "quantized"])
def test_short_chunks_in_batches_of_two_through_the_shared_loop(engines, recording, name):
    engine = engines[name]
    chunks = vad.merge_spans(vad.speech_spans(recording, vad.BATCHED_VAD), SHORT_CHUNK_S)
    assert len(chunks) >= 3
    items = chunk_features(engine._features, recording, chunks)
    options = TranscribeOptions(batch_size=2)
    result = transcribe_batched(
        engine.window_model(Stopwatch()),
        items,
        special=engine.special,
        rules=engine.rules,
        decode_text=engine.decode_text,
        options=options,
    )
    check_segments(result.segments, len(recording) / SAMPLE_RATE, len(chunks))
    # A window that ended early left the rest of its chunk to a later batch.
    assert result.windows == len(chunks) + result.resumed_windows
    assert {s.window for s in result.segments} == set(range(len(chunks)))
    for s in result.segments:
        assert s.chunk_start == chunks[s.window].start_s
    sequential = engine.transcribe(recording)
    assert word_error_rate(sequential.text, result.text).rate <= 0.15
    assert result.timings.next_steps > 0 and result.timings.encoder_s > 0


@pytest.mark.parametrize("name", ["onnx-fp32", "quantized"])
def test_a_batch_decodes_each_window_as_it_decodes_alone(engines, recording, name):
    """Rows of one batch (finished ones dropped as they end) give each window's own tokens."""
    engine = engines[name]
    chunks = vad.merge_spans(vad.speech_spans(recording, vad.BATCHED_VAD), SHORT_CHUNK_S)[:3]
    items = chunk_features(engine._features, recording, chunks)
    model = engine.window_model(Stopwatch())
    options = TranscribeOptions().window_options(0.0)
    start = init_tokens(engine.special, None, "transcribe", timestamps=True)
    batched, timing = decode_windows(
        model,
        model.encode(window_batch(items)),
        [start] * len(items),
        special=engine.special,
        rules=engine.rules,
        options=options,
    )
    assert timing.next_steps >= max(len(r.tokens) for r in batched)
    for item, together in zip(items, batched, strict=True):
        alone = decode_window(
            model,
            model.encode(window_batch([item])),
            start,
            special=engine.special,
            rules=engine.rules,
            options=options,
        )
        assert together.tokens == alone.tokens
        assert together.ended == alone.ended
        # int8 quantizes activations with one scale per tensor, over the whole batch, so the
        # quantized engine's figures move a little with the rows beside them.
        tolerance = 5e-2 if name == "quantized" else 1e-3
        assert together.avg_logprob == pytest.approx(alone.avg_logprob, abs=tolerance)
        assert together.no_speech_prob == pytest.approx(alone.no_speech_prob, abs=tolerance)


@pytest.mark.parametrize("name", ["original", "pytorch", "onnx-fp32", "quantized"])
def test_every_engine_transcribes_in_batches(engines, recording, name):
    result = engines[name].transcribe(recording, batch_size=2)
    chunks = vad.speech_chunks(recording)
    assert result.windows == len(chunks) + result.resumed_windows
    check_segments(result.segments, len(recording) / SAMPLE_RATE, len(chunks))
    text = result.text.lower()
    assert "go forward" in text and "clubs" in text


def test_batch_size_one_is_the_sequential_loop(engines, recording):
    """batch_size=1 takes the sequential path: the same result as before the option existed
    (segments without a chunk start, windows of 30 s)."""
    engine = engines["quantized"]
    default = engine.transcribe(recording)
    explicit = engine.transcribe(recording, batch_size=1)
    assert explicit.segments == default.segments
    assert all(s.chunk_start is None for s in default.segments)
    assert default.windows == 1  # one 30 s window, no VAD chunks


def test_batched_options_are_checked():
    with pytest.raises(ValueError, match="batch_size"):
        TranscribeOptions(batch_size=0)
    with pytest.raises(ValueError, match="beam size"):
        TranscribeOptions(batch_size=2, beam_size=5)
    with pytest.raises(ValueError, match="fixed_tokens"):
        TranscribeOptions(batch_size=2, fixed_tokens=8)
