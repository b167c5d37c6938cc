"""A batched window that ends early leaves the rest of its chunk to a later batch, as the
sequential path seeks (longform.split_window); token-level, no model."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
from toy_tokens import ENGLISH, EOT, ts

from whisper_quant import longform_batched, vad
from whisper_quant.audio import SAMPLE_RATE
from whisper_quant.decoding import WindowResult
from whisper_quant.longform_batched import ChunkFeatures, ChunkQueue, in_order, segments_of
from whisper_quant.longform_options import TranscribeOptions
from whisper_quant.token_decoders import DecoderTiming

WORDS = (1, 2, 3)


def result(tokens) -> WindowResult:
    return WindowResult(tuple(tokens), True, 0.0, -0.2, 0.01, 1.0, DecoderTiming())


def chunk_item() -> ChunkFeatures:
    """20 s of speech: 2-12 s and 15-25 s of the recording, 2000 feature frames."""
    chunk = vad.Chunk(
        4,
        (
            vad.SpeechSpan(2 * SAMPLE_RATE, 12 * SAMPLE_RATE),
            vad.SpeechSpan(15 * SAMPLE_RATE, 25 * SAMPLE_RATE),
        ),
        40.0,
    )
    features = np.arange(2000, dtype=np.float32).reshape(1, 1, 2000)
    return ChunkFeatures(chunk, features)


def split(tokens):
    return segments_of(
        result(tokens),
        chunk_item(),
        language="en",
        compression_ratio=1.0,
        special=ENGLISH,
        text_of=lambda t: " ".join(str(x) for x in t if x < EOT),
    )


def test_a_window_ending_on_a_pair_leaves_the_rest_of_its_chunk():
    # Two segments (0-6 s, 6-13 s of the chunk), then words with no closing timestamp.
    segments, rest = split([ts(0), 1, 2, ts(6), ts(6), 3, ts(13), ts(13), 1, 2])
    assert [(s.start, s.end) for s in segments] == [(2.0, 8.0), (8.0, 18.0)]
    assert all(s.window == 4 and s.chunk_start == 2.0 for s in segments)
    # The words after the last pair are left to the next window, which starts at 13 s of
    # the chunk: 18 s of the recording, in the second span.
    assert rest is not None
    assert rest.chunk.index == 4
    assert rest.chunk.start_s == 18.0
    assert rest.chunk.original_time(0.0) == 18.0
    assert rest.chunk_start_s == 2.0  # its segments still carry the whole chunk's start
    assert np.array_equal(rest.features[0, 0], np.arange(1300, 2000, dtype=np.float32))
    assert rest.frames == 700


def test_a_window_ending_on_a_single_timestamp_is_done():
    segments, rest = split([ts(0), 1, 2, ts(6), ts(6), 3, ts(13)])
    assert rest is None
    assert [(s.start, s.end) for s in segments] == [(2.0, 8.0), (8.0, 18.0)]


def test_no_pair_and_no_timestamps_are_done():
    assert split([ts(0), 1, 2, 3])[1] is None
    segments, rest = split(list(WORDS))
    assert rest is None and len(segments) == 1


def test_a_pair_at_the_audios_end_drops_the_words_after_it():
    # The chunk's audio ends at 20 s: nothing is left to decode, as in the sequential path.
    segments, rest = split([ts(0), 1, ts(20), ts(20), 7, 8])
    assert rest is None
    assert [s.tokens for s in segments] == [(ts(0), 1, ts(20), ts(20))]


def test_a_rest_under_a_second_keeps_its_words_instead():
    # A pair at 19.2 s of 20 s: 0.8 s left, mostly the VAD's padding; not a window of its own.
    segments, rest = split([ts(0), 1, ts(19.2), ts(19.2), 2])
    assert rest is None
    assert segments[-1].tokens == (2,)
    assert (segments[-1].start, segments[-1].end) == (24.2, 25.0)
    # From 1 s on it is one.
    assert split([ts(0), 1, ts(19), ts(19), 2])[1].frames == 100


def test_a_pair_at_zero_keeps_its_words_rather_than_looping():
    segments, rest = split([ts(0), ts(0), 1, 2])
    assert rest is None
    assert segments[-1].tokens == (1, 2)
    assert segments[-1].end == 25.0  # to the window's end: the chunk's last sample


def test_the_queue_hands_out_chunks_then_what_they_left():
    first = chunk_item()
    _, rest = split([ts(0), 1, ts(5), ts(5), 2])
    queue = ChunkQueue([first, first, first])
    assert queue.take(2) == [first, first]
    queue.resume([None, rest])
    assert queue.take(2) == [first, rest]
    assert not queue and queue.taken == 4 and queue.resumed == 1
    assert queue.reached_s == 2.0  # progress does not go back to the resumed window's start


def test_segments_come_out_in_recording_order():
    earlier, _ = split([ts(0), 1, ts(5), ts(5), 2])
    resumed, _ = segments_of(
        result([ts(0), 2, ts(3)]),
        split([ts(0), 1, ts(5), ts(5), 2])[1],
        language="en",
        compression_ratio=1.0,
        special=ENGLISH,
        text_of=str,
    )
    later = [replace(s, window=5, start=30.0, end=31.0) for s in earlier]
    # As the batched loop collects them: the resumed window is decoded after chunk 5.
    ordered = in_order([*earlier, *later, *resumed])
    assert [s.window for s in ordered] == [4, 4, 5]
    assert [s.start for s in ordered] == [2.0, 7.0, 30.0]
    assert math.isclose(ordered[1].end, 10.0)


def test_the_batched_loop_decodes_a_rest_in_a_later_batch(monkeypatch):
    """transcribe_batched end to end with a scripted decoder: chunk 0 ends on a pair at 6 s,
    its rest is decoded in the next batch beside chunk 2, and the segments come out in
    recording order."""

    def item(index: int) -> ChunkFeatures:
        # 20 s of speech at 25 * index s; each frame's value names its chunk and frame.
        start = 25 * index * SAMPLE_RATE
        chunk = vad.Chunk(index, (vad.SpeechSpan(start, start + 20 * SAMPLE_RATE),), 20.0 * index)
        frames = 10000 * index + np.arange(2000, dtype=np.float32)
        return ChunkFeatures(chunk, np.broadcast_to(frames, (1, 2, 2000)).copy())

    script = {
        0.0: [ts(0), 1, ts(6), ts(6), 2],  # chunk 0: ends on a pair, 14 s left
        600.0: [ts(0), 3, ts(4)],  # its rest, from frame 600
        10000.0: [ts(0), 1, ts(10)],
        20000.0: [ts(0), 2, ts(3)],
    }
    batches = []

    class Model:
        def encode(self, features):
            return features

    def decode_windows(model, encoded, prompts, **_):
        keys = [float(row[0, 0]) for row in encoded]
        batches.append(keys)
        return [result(script[k]) for k in keys], DecoderTiming()

    monkeypatch.setattr(longform_batched, "decode_windows", decode_windows)
    out = longform_batched.transcribe_batched(
        Model(),
        [item(0), item(1), item(2)],
        special=ENGLISH,
        rules=None,
        decode_text=lambda t: " ".join(str(x) for x in t),
        options=TranscribeOptions(batch_size=2),
    )
    assert batches == [[0.0, 10000.0], [20000.0, 600.0]]
    assert out.windows == 4 and out.resumed_windows == 1
    assert [(s.window, s.start, s.end) for s in out.segments] == [
        (0, 0.0, 6.0),
        (0, 6.0, 10.0),
        (1, 25.0, 35.0),
        (2, 50.0, 53.0),
    ]
    assert [s.chunk_start for s in out.segments] == [0.0, 0.0, 25.0, 50.0]
    assert out.text == "1 3 1 2"
