"""The voice-activity detector against faster-whisper's, and the chunks' time mapping."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_quant import vad
from whisper_quant.audio import SAMPLE_RATE, decode_audio


def spoken_with_pauses(clip) -> np.ndarray:
    """Real speech: three shipped clips joined by 0.5 s and 2.5 s of silence."""
    parts = [
        decode_audio(clip(name)) for name in ("cards-001.wav", "goforward.wav", "cards-005.wav")
    ]
    short, long = np.zeros(SAMPLE_RATE // 2, np.float32), np.zeros(5 * SAMPLE_RATE // 2, np.float32)
    return np.concatenate([parts[0], short, parts[1], long, parts[2]])


@pytest.mark.parametrize(
    "options",
    [
        vad.BATCHED_VAD,
        vad.VadOptions(),
        vad.VadOptions(max_speech_duration_s=2.0, speech_pad_ms=30),
    ],
    ids=["batched", "defaults", "short-max"],
)
def test_spans_are_faster_whispers(clip, options):
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = spoken_with_pauses(clip)
    reference = get_speech_timestamps(audio, VadOptions(**vars(options)))
    spans = vad.speech_spans(audio, options)
    assert [(s.start, s.end) for s in spans] == [(r["start"], r["end"]) for r in reference]
    assert len(spans) >= 2


def test_chunks_are_faster_whispers(clip):
    from faster_whisper.vad import collect_chunks

    audio = spoken_with_pauses(clip)
    spans = vad.speech_spans(audio, vad.BATCHED_VAD)
    audios, metadata = collect_chunks(
        audio, [{"start": s.start, "end": s.end} for s in spans], max_duration=4.0
    )
    chunks = vad.merge_spans(spans, max_duration_s=4.0)
    assert len(chunks) == len(audios) >= 2
    for chunk, expected, meta in zip(chunks, audios, metadata, strict=True):
        np.testing.assert_array_equal(chunk.audio(audio), expected)
        assert chunk.speech_offset_s == pytest.approx(meta["offset"])
        assert chunk.duration_s == pytest.approx(meta["duration"])
    assert [c.index for c in chunks] == list(range(len(chunks)))


def test_the_model_is_the_one_faster_whisper_ships():
    from faster_whisper.utils import get_assets_path

    assert vad.model_path().samefile(f"{get_assets_path()}/silero_vad_v6.onnx")


def test_silence_has_no_speech():
    silence = np.zeros(3 * SAMPLE_RATE, np.float32)
    assert vad.speech_spans(silence) == ()
    assert vad.merge_spans(()) == ()


def test_original_time_skips_the_pauses_and_stays_in_the_chunk():
    # Speech at 1-2 s and 5-6 s of the recording: one chunk of 2 s.
    chunk = vad.Chunk(
        0,
        (
            vad.SpeechSpan(SAMPLE_RATE, 2 * SAMPLE_RATE),
            vad.SpeechSpan(5 * SAMPLE_RATE, 6 * SAMPLE_RATE),
        ),
        0.0,
    )
    assert chunk.duration_s == 2.0
    assert chunk.original_time(0.0) == 1.0
    assert chunk.original_time(0.5) == 1.5
    assert chunk.original_time(1.0) == 5.0  # a start at the joint: the second span
    assert chunk.original_time(1.0, is_end=True) == 2.0  # an end at the joint: the first
    assert chunk.original_time(1.5) == 5.5
    assert chunk.original_time(29.0) == 6.0  # past the chunk's audio: its end
    assert chunk.original_time(-1.0) == 1.0
    times = [chunk.original_time(t / 100) for t in range(0, 300)]
    assert times == sorted(times)


def test_after_leaves_out_the_decoded_speech_and_keeps_the_time_line():
    # Speech at 1-2 s and 5-6 s of the recording; 1.5 s of it decoded.
    chunk = vad.Chunk(
        3,
        (
            vad.SpeechSpan(SAMPLE_RATE, 2 * SAMPLE_RATE),
            vad.SpeechSpan(5 * SAMPLE_RATE, 6 * SAMPLE_RATE),
        ),
        10.0,
    )
    rest = chunk.after(SAMPLE_RATE * 3 // 2)
    assert rest.index == 3
    assert rest.spans == (vad.SpeechSpan(SAMPLE_RATE * 11 // 2, 6 * SAMPLE_RATE),)
    assert rest.speech_offset_s == 11.5
    assert rest.duration_s == 0.5
    for t in (0.0, 0.2, 0.5):
        assert rest.original_time(t) == chunk.original_time(1.5 + t)
    # Cut inside the first span: both spans stay, the first shortened.
    early = chunk.after(SAMPLE_RATE // 4)
    assert early.spans[0] == vad.SpeechSpan(SAMPLE_RATE * 5 // 4, 2 * SAMPLE_RATE)
    assert early.spans[1] == chunk.spans[1]
    recording = np.arange(7 * SAMPLE_RATE, dtype=np.float32)
    assert np.array_equal(early.audio(recording), chunk.audio(recording)[SAMPLE_RATE // 4 :])
    # Cut exactly at the joint: the second span alone, whole.
    joint = chunk.after(SAMPLE_RATE)
    assert joint.spans == (chunk.spans[1],)
    assert joint.original_time(0.0) == 5.0
    for samples in (0, chunk.samples, -1):
        with pytest.raises(ValueError, match="samples"):
            chunk.after(samples)
