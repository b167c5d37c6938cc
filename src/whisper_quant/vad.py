"""Voice activity detection: speech spans by Silero VAD, merged into chunks of at most 30 s.

The batched long-form path (longform_batched.py) cuts a recording at pauses, as
faster-whisper's `BatchedInferencePipeline` does (faster_whisper/vad.py, 1.2.1):

- `speech_probabilities`: Silero VAD v6 (the ONNX file faster-whisper ships in its wheel,
  `faster_whisper/assets/silero_vad_v6.onnx`; read from the installed package, nothing is
  fetched) on 512-sample frames, each with the 64 samples before it as context, run by
  onnxruntime on one thread, as `SileroVADModel` runs it.
- `speech_spans`: `get_speech_timestamps` line for line: a span opens at a frame of
  probability >= threshold and closes after `min_silence_duration_ms` below `neg_threshold`;
  a span longer than `max_speech_duration_s` is cut at its last silence of 98 ms or more,
  else just before the limit; spans are padded by `speech_pad_ms` (half the gap when two
  spans are closer than twice the pad).
- `merge_spans`: `collect_chunks`: consecutive spans go into one chunk while their summed
  length stays within `max_duration_s`. A chunk's audio is its spans' audio concatenated
  (the pauses between them are left out), so a chunk holds at most 30 s of speech.
- `Chunk.original_time`: `SpeechTimestampsMap`: a time in a chunk's concatenated audio back
  to the recording's time.

Where this differs from faster-whisper:
- `Chunk.original_time` clamps a time to the chunk's own audio before mapping it, and maps
  it through the chunk's own spans. faster-whisper maps through every span of the recording,
  so a timestamp the model places past the end of a chunk's audio lands in the next chunk's
  time (timestamps can then go backwards, or past the end of the clip); here they cannot.
- `Chunk.original_time` is not rounded (faster-whisper rounds to 0.01 s, which can put a
  segment's start before its chunk's first sample).
- `Chunk.spans` lists every span of the chunk. faster-whisper's metadata leaves out the span
  that opens a new chunk (its audio is the same; only its word-timestamp code reads them).
- The options and spans are frozen dataclasses; faster-whisper uses a mutable dataclass and
  dicts of sample indices.
"""

from __future__ import annotations

import bisect
import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE

# Silero VAD's frame and the context it is given from the frame before.
FRAME_SAMPLES = 512
CONTEXT_SAMPLES = 64
# A span longer than the limit is cut at a silence of at least this long (faster-whisper).
MIN_SILENCE_AT_MAX_SPEECH_MS = 98
# The package whose wheel ships the model, and the file in it.
MODEL_PACKAGE = "faster_whisper"
MODEL_FILE = Path("assets", "silero_vad_v6.onnx")
# Frames per session run (faster-whisper's encoder_batch_size).
RUN_FRAMES = 10000
# faster-whisper's chunk length: 30 s, a Whisper window.
CHUNK_S = 30.0


@dataclass(frozen=True)
class VadOptions:
    """faster-whisper's `VadOptions` (same names, same defaults)."""

    # Frames with a speech probability at or above this are speech.
    threshold: float = 0.5
    # Below this a frame is silence; None: max(threshold - 0.15, 0.01).
    neg_threshold: float | None = None
    # Spans this short or shorter are dropped.
    min_speech_duration_ms: int = 0
    # Longer spans are cut (at a silence of 98 ms or more when there is one).
    max_speech_duration_s: float = float("inf")
    # A span ends after this much silence.
    min_silence_duration_ms: int = 2000
    # Each span is padded by this much on both sides.
    speech_pad_ms: int = 400

    def __post_init__(self):
        if not 0 < self.threshold < 1:
            raise ValueError("threshold must be between 0 and 1")
        if self.max_speech_duration_s <= 0:
            raise ValueError("max_speech_duration_s must be more than 0")


# What `BatchedInferencePipeline.transcribe` passes when given no VAD parameters.
BATCHED_VAD = VadOptions(max_speech_duration_s=CHUNK_S, min_silence_duration_ms=160)


@dataclass(frozen=True)
class SpeechSpan:
    """Speech from sample `start` to sample `end` (exclusive) of the recording."""

    start: int
    end: int

    @property
    def samples(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class Chunk:
    """Consecutive speech spans decoded as one window: their audio, concatenated."""

    index: int
    spans: tuple[SpeechSpan, ...]
    # Where the chunk starts on the time line of all speech concatenated (faster-whisper's
    # "offset"), seconds.
    speech_offset_s: float

    @property
    def samples(self) -> int:
        return sum(s.samples for s in self.spans)

    @property
    def duration_s(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def start_s(self) -> float:
        """Where the chunk's first span starts in the recording, seconds."""
        return self.spans[0].start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        return self.spans[-1].end / SAMPLE_RATE

    def audio(self, audio: np.ndarray) -> np.ndarray:
        return np.concatenate([audio[s.start : s.end] for s in self.spans]).astype(np.float32)

    def after(self, samples: int) -> Chunk:
        """The same chunk without its first `samples` samples of speech (0 < samples <
        `self.samples`): what is left to decode after a window that ended early. It keeps
        the chunk's index, so its segments carry the same chunk."""
        if not 0 < samples < self.samples:
            raise ValueError(f"samples must be between 0 and {self.samples}, got {samples}")
        spans, skip = [], samples
        for span in self.spans:
            if skip >= span.samples:
                skip -= span.samples
                continue
            spans.append(SpeechSpan(span.start + skip, span.end))
            skip = 0
        return Chunk(self.index, tuple(spans), self.speech_offset_s + samples / SAMPLE_RATE)

    def original_time(self, seconds: float, *, is_end: bool = False) -> float:
        """A time in the chunk's audio (0 to `duration_s`) as a time in the recording.

        A time past the chunk's audio is taken as its end. A time exactly at the joint of two
        spans maps to the end of the first if `is_end`, else the start of the second (as
        faster-whisper's `SpeechTimestampsMap.get_chunk_index`).
        """
        sample = int(min(max(seconds, 0.0), self.duration_s) * SAMPLE_RATE)
        ends = np.cumsum([s.samples for s in self.spans]).tolist()
        if is_end and sample in ends:
            index = ends.index(sample)
        else:
            index = min(bisect.bisect(ends, sample), len(ends) - 1)
        before = ends[index - 1] if index else 0
        silence = self.spans[index].start - before  # samples left out before this span
        return (sample + silence) / SAMPLE_RATE


def model_path() -> Path:
    """The Silero VAD ONNX file in the installed faster-whisper wheel (not imported)."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "The voice-activity detector's model ships with faster-whisper: "
            "pip install -r requirements.txt"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / MODEL_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: reinstall faster-whisper")
    return path


@functools.lru_cache(maxsize=1)
def _session():
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.log_severity_level = 4
    return ort.InferenceSession(
        str(model_path()), providers=["CPUExecutionProvider"], sess_options=options
    )


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero VAD's speech probability for each 512-sample frame of 16 kHz `audio`.

    The audio is padded with zeros to a whole number of frames plus one more frame when it
    already is a whole number (faster-whisper pads by 512 - len % 512).
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"Expected mono audio (one dimension), got shape {audio.shape}")
    padded = np.pad(audio, (0, FRAME_SAMPLES - audio.shape[0] % FRAME_SAMPLES))
    frames = padded.reshape(-1, FRAME_SAMPLES)
    # Each frame is given the last 64 samples of the frame before (zeros for the first).
    context = np.roll(frames[:, -CONTEXT_SAMPLES:], 1, axis=0)
    context[0] = 0
    inputs = np.ascontiguousarray(np.concatenate([context, frames], axis=1), dtype=np.float32)
    h = np.zeros((1, 1, 128), dtype=np.float32)
    c = np.zeros((1, 1, 128), dtype=np.float32)
    session = _session()
    outputs = []
    for i in range(0, inputs.shape[0], RUN_FRAMES):
        out, h, c = session.run(None, {"input": inputs[i : i + RUN_FRAMES], "h": h, "c": c})
        outputs.append(out)
    return np.concatenate(outputs, axis=0).reshape(-1)


def speech_spans(
    audio: np.ndarray, options: VadOptions = VadOptions(), *, probs: np.ndarray | None = None
) -> tuple[SpeechSpan, ...]:
    """The speech in 16 kHz `audio`, as faster-whisper's `get_speech_timestamps` finds it.

    `probs` are `speech_probabilities(audio)`, computed when not given.
    """
    sr = SAMPLE_RATE
    frame = FRAME_SAMPLES
    length = len(audio)
    probs = speech_probabilities(audio) if probs is None else probs
    min_speech = sr * options.min_speech_duration_ms / 1000
    pad = sr * options.speech_pad_ms / 1000
    max_speech = sr * options.max_speech_duration_s - frame - 2 * pad
    min_silence = sr * options.min_silence_duration_ms / 1000
    min_silence_at_max = sr * MIN_SILENCE_AT_MAX_SPEECH_MS / 1000
    threshold = options.threshold
    neg_threshold = options.neg_threshold
    if neg_threshold is None:
        neg_threshold = max(threshold - 0.15, 0.01)

    spans: list[list[int]] = []  # [start, end] while they are adjusted
    triggered = False
    start = 0
    temp_end = prev_end = next_start = 0
    for i, prob in enumerate(probs):
        at = frame * i
        if prob >= threshold and temp_end:
            temp_end = 0
            if next_start < prev_end:
                next_start = at
        if prob >= threshold and not triggered:
            triggered = True
            start = at
            continue
        if triggered and at - start > max_speech:
            if prev_end:
                spans.append([start, prev_end])
                # Silence was reached (below neg_threshold) and speech has not resumed.
                if next_start < prev_end:
                    triggered = False
                else:
                    start = next_start
                prev_end = next_start = temp_end = 0
            else:
                spans.append([start, at])
                prev_end = next_start = temp_end = 0
                triggered = False
                continue
        if prob < neg_threshold and triggered:
            if not temp_end:
                temp_end = at
            if at - temp_end > min_silence_at_max:  # not cut in a very short silence
                prev_end = temp_end
            if at - temp_end < min_silence:
                continue
            if temp_end - start > min_speech:
                spans.append([start, temp_end])
            prev_end = next_start = temp_end = 0
            triggered = False
            continue
    if triggered and length - start > min_speech:
        spans.append([start, length])

    for i, span in enumerate(spans):
        if i == 0:
            span[0] = int(max(0, span[0] - pad))
        if i != len(spans) - 1:
            gap = spans[i + 1][0] - span[1]
            if gap < 2 * pad:
                span[1] += int(gap // 2)
                spans[i + 1][0] = int(max(0, spans[i + 1][0] - gap // 2))
            else:
                span[1] = int(min(length, span[1] + pad))
                spans[i + 1][0] = int(max(0, spans[i + 1][0] - pad))
        else:
            span[1] = int(min(length, span[1] + pad))
    return tuple(SpeechSpan(int(s), int(e)) for s, e in spans)


def merge_spans(spans: Sequence[SpeechSpan], max_duration_s: float = CHUNK_S) -> tuple[Chunk, ...]:
    """Consecutive spans in chunks of at most `max_duration_s` of speech (`collect_chunks`).

    A span that would take a chunk past the limit starts the next one; `speech_spans` with
    `max_speech_duration_s` at the same limit makes every span fit in one chunk.
    """
    limit = max_duration_s * SAMPLE_RATE
    chunks: list[Chunk] = []
    current: list[SpeechSpan] = []
    offset = 0  # samples of speech in the chunks before
    for span in spans:
        if current and sum(s.samples for s in current) + span.samples > limit:
            chunks.append(Chunk(len(chunks), tuple(current), offset / SAMPLE_RATE))
            offset += sum(s.samples for s in current)
            current = []
        current.append(span)
    if current:
        chunks.append(Chunk(len(chunks), tuple(current), offset / SAMPLE_RATE))
    return tuple(chunks)


def speech_chunks(
    audio: np.ndarray, options: VadOptions = BATCHED_VAD, max_duration_s: float = CHUNK_S
) -> tuple[Chunk, ...]:
    """The chunks of `audio` the batched path decodes: spans by `options`, then merged."""
    return merge_spans(speech_spans(audio, options), max_duration_s)
