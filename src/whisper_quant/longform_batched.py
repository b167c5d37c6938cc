"""The batched long-form path: a recording cut at pauses, its chunks decoded N at a time.

With `TranscribeOptions.batch_size` above 1 an engine does what faster-whisper's
`BatchedInferencePipeline.transcribe` (1.2.1) does, through the same shared decoding as the
sequential path (decoding.py):

1. The voice-activity detector (vad.py, faster-whisper's Silero VAD and its batched options)
   finds the speech; consecutive spans are merged into chunks of at most 30 s of speech, the
   pauses between them left out. Every engine gets the same chunks.
2. Each chunk's log-mel features are computed from its audio alone (`chunk_features`:
   transformers' extractor, unpadded) and zero-padded to a 3000-frame window.
3. `batch_size` windows at a time go through the encoder as one batch, and the decoder runs
   one row per window (`decoding.decode_windows`): the prompt is the window's start alone
   (no previous text), the same logit filters as the sequential path, greedy; a row that
   ends stops contributing to the later steps.
4. Each window's tokens are split into segments at timestamp pairs (`longform.split_window`)
   and their times mapped back to the recording (`vad.Chunk.original_time`). Segments carry
   their chunk's index (`Segment.window`) and start (`Segment.chunk_start`).
5. A window that ends on a timestamp pair before its audio ends leaves the rest of its chunk,
   from the pair's time on, to a window of its own in a later batch (`segments_of`,
   `ChunkQueue`): the sequential path's seek, within the chunk. Segments come out in
   recording order (`in_order`).

As faster-whisper's batched pipeline, and unlike the sequential path:

- One decoding per window at the first temperature (`temperatures[0]`; above 0 it samples):
  no temperature fallback, so the compression-ratio and log-probability thresholds are not
  applied, and no window is skipped as silence (the detector already left silence out).
  Each segment still reports its window's compression ratio, log-probability and no-speech
  probability.
- No previous-text prompt: windows are independent, so they can be decoded together.
- Language: a given language is used for every window; otherwise it is detected on the first
  window and used for all, or on every window with `language_per_window` (faster-whisper's
  `multilingual=True`). English-only models have none to detect.

Where it differs from faster-whisper's batched pipeline:

- Timestamps: decoded by default (`TranscribeOptions.timestamps`), as the sequential path;
  faster-whisper's batched `transcribe` defaults to `without_timestamps=True` (one segment
  per chunk). Its peer row in the benchmark is given the same setting.
- Decoding is greedy (`beam_size` must be 1); faster-whisper's batched default is a beam of 5.
- The first timestamp is limited to `max_initial_timestamp` (1 s); faster-whisper's batched
  path passes no limit of its own, so CTranslate2's default, also 1 s, applies.
- A window that ends on a timestamp pair (not on a single timestamp) before its audio ends
  is resumed from that pair (step 5), as the sequential path seeks. faster-whisper's batched
  pipeline never seeks: the speech after the pair is lost (its `_split_segments_by_timestamps`
  drops the tokens after the pair too). Whisper ends a full chunk this way when its last
  sentence runs to the window's end: on tiny.en's first chunk of the 1-minute sonnet
  recording the window ended at 22.95 s of 29.5 s and 7 s of verse was lost; resumed, it is
  transcribed. It costs an encoder pass per rest: 12-14 rests on the 33 chunks of the long
  set's four recordings (docs/batched.md). A rest is decoded alone (`ChunkQueue`).
- A rest is not decoded after a pair at 0.00 (it cannot move on) or when it is shorter than
  MIN_REST_S (1 s, mostly the VAD's padding): the tokens after the pair are kept as a last
  segment running to the window's end.
- Segment times are clamped to their chunk's audio before mapping (see vad.py), so they stay
  monotonic and within the clip.
- Features: transformers' extractor, as every engine here (faster-whisper computes its own in
  numpy and drops the last frame).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE
from .decoding import (
    DecoderTiming,
    GenerationRules,
    WindowModel,
    WindowResult,
    decode_windows,
    detect_languages,
    init_tokens,
)
from .longform import FRAME_S, N_FRAMES, RawSegment, judge, split_window, window_features
from .longform_options import (
    LongFormResult,
    Progress,
    Segment,
    Timings,
    TranscribeOptions,
    WindowLanguage,
)
from .tokens import SpecialTokens
from .vad import Chunk

# Samples per feature frame: the log-mel extractor's hop (160 at 16 kHz).
SAMPLES_PER_FRAME = round(SAMPLE_RATE * FRAME_S)
# A window's rest shorter than this is not decoded (see `segments_of`).
MIN_REST_S = 1.0


@dataclass(frozen=True)
class ChunkFeatures:
    """A window to decode: a chunk's speech spans and their log-mel features (not yet padded
    to a window). A chunk's first window holds the whole chunk; a window that ended early
    leaves the rest of it (`rest`) to a window of its own."""

    chunk: Chunk
    features: np.ndarray = field(repr=False)  # float32 (1, n_mels, frames)
    # For the rest of a chunk: where the whole chunk starts in the recording, seconds (its
    # segments carry it); None for a chunk's first window.
    resumed_from_s: float | None = None

    @property
    def chunk_start_s(self) -> float:
        """Where the chunk's first span starts in the recording, seconds."""
        return self.chunk.start_s if self.resumed_from_s is None else self.resumed_from_s

    @property
    def frames(self) -> int:
        return min(int(self.features.shape[-1]), N_FRAMES)

    def rest(self, seek: int) -> ChunkFeatures:
        """The window without its first `seek` frames (0 < seek < frames): its features from
        that frame on, as the sequential path slices a clip's features at its seek."""
        return ChunkFeatures(
            self.chunk.after(seek * SAMPLES_PER_FRAME),
            np.ascontiguousarray(self.features[..., seek:]),
            self.chunk_start_s,
        )


def chunk_features(extractor, audio: np.ndarray, chunks: Sequence[Chunk]) -> list[ChunkFeatures]:
    """Each chunk's features from its own audio: transformers' `WhisperFeatureExtractor`
    without padding (`padding="longest"`), so the window is zero-padded after the features,
    as faster-whisper pads them and as the sequential path pads a clip's last window."""
    result = []
    for chunk in chunks:
        out = extractor(
            chunk.audio(audio),
            sampling_rate=SAMPLE_RATE,
            truncation=False,
            padding="longest",
            return_tensors="np",
        )
        features = np.ascontiguousarray(out["input_features"], dtype=np.float32)
        result.append(ChunkFeatures(chunk, features))
    return result


def window_batch(chunks: Sequence[ChunkFeatures]) -> np.ndarray:
    """float32 (len(chunks), n_mels, 3000): each chunk's features zero-padded to a window."""
    return np.concatenate([window_features(c.features, 0, c.frames) for c in chunks])


def segments_of(
    result: WindowResult,
    item: ChunkFeatures,
    *,
    language: str,
    compression_ratio: float,
    special: SpecialTokens,
    text_of: Callable[[Sequence[int]], str],
) -> tuple[list[Segment], ChunkFeatures | None]:
    """A chunk's decoding as segments, their times in the recording's time, and what is left
    of the chunk to decode, if anything.

    The sequential rule (`longform.split_window`, transformers' and openai-whisper's seek): a
    window that does not end with a single timestamp ends at its last timestamp pair, the
    tokens after the pair are dropped, and the rest of the chunk, from the pair's time on,
    is left to decode as a window of its own (returned; the caller decodes it in a later
    batch). A window that ends with a single timestamp, or has no pair, is done; so is one
    whose pair is at or past its audio's end (the tokens after the pair are dropped).

    Two rests are not decoded, and the tokens after the pair are kept instead, as a last
    segment from the pair to the window's end: a pair at 0.00, which cannot move the seek on,
    and a rest shorter than MIN_REST_S, which alone in a window would be mostly silence
    (the VAD pads speech by 0.4 s) with no no-speech check to skip it.
    """
    chunk = item.chunk
    raw, seek = split_window(
        result.tokens,
        timestamp_begin=special.timestamp_begin,
        seek=0,
        window_frames=item.frames,
    )
    rest = None
    if 0 < seek < item.frames and (item.frames - seek) * FRAME_S >= MIN_REST_S:
        rest = item.rest(seek)
    elif seek < item.frames:
        tail = result.tokens[sum(len(s.tokens) for s in raw) :]
        if any(t < special.eot for t in tail):
            end_s = item.frames * FRAME_S
            raw.append(RawSegment(min(raw[-1].end, end_s), end_s, tuple(tail)))
    segments = []
    for s in raw:
        start = chunk.original_time(s.start)
        end = max(chunk.original_time(s.end, is_end=True), start)
        segments.append(
            Segment(
                start=start,
                end=end,
                text=text_of(s.tokens),
                tokens=s.tokens,
                language=language,
                temperature=result.temperature,
                avg_logprob=result.avg_logprob,
                no_speech_prob=result.no_speech_prob,
                compression_ratio=compression_ratio,
                window=chunk.index,
                chunk_start=item.chunk_start_s,
            )
        )
    return segments, rest


class ChunkQueue:
    """The windows still to decode: the chunks in order, then the rest of each window that
    ended early (`segments_of`), in the order they were left. A rest is a window of its
    own: joined to another chunk's rest, a segment running across the joint put one
    chunk's words at the other's time (quantized tiny.en on the 1-, 3- and 10-minute
    recordings: WER 5.1% with rests alone, 6.7% with a batch's rests joined)."""

    def __init__(self, chunks: Sequence[ChunkFeatures]):
        self._pending = list(chunks)
        self.taken = 0  # windows handed out so far
        self.resumed = 0  # of them, rests of earlier windows
        self.reached_s = 0.0  # the latest batch start handed out, seconds into the recording

    def __bool__(self) -> bool:
        return bool(self._pending)

    def take(self, rows: int) -> list[ChunkFeatures]:
        batch, self._pending = self._pending[:rows], self._pending[rows:]
        self.taken += len(batch)
        # A rest starts before the chunks taken earlier: progress never goes back.
        if batch:
            self.reached_s = max(self.reached_s, batch[0].chunk.start_s)
        return batch

    def resume(self, rests: Sequence[ChunkFeatures | None]) -> None:
        """Queue what one batch's windows left (None: a window that left nothing)."""
        for rest in rests:
            if rest is not None:
                self._pending.append(rest)
                self.resumed += 1


def in_order(segments: Sequence[Segment]) -> tuple[Segment, ...]:
    """Segments in recording order: by chunk, then by start (a chunk's rest is decoded after
    later chunks). The sort is stable, so equal starts keep their order."""
    return tuple(sorted(segments, key=lambda s: (s.window, s.start)))


def transcribe_batched(
    model: WindowModel,
    chunks: Sequence[ChunkFeatures],
    *,
    special: SpecialTokens,
    rules: GenerationRules,
    decode_text: Callable[[Sequence[int]], str],
    options: TranscribeOptions,
    audio_s: float = 0.0,
    progress: Progress | None = None,
) -> LongFormResult:
    """Decode `chunks` `options.batch_size` at a time (see the module's docstring).

    `model.encode` is given (rows, n_mels, 3000) features and `model.decoder(encoded, rows)`
    one cache row per window. `progress(windows, start_s, audio_s)` is called before each
    batch: the windows handed out before it and the latest batch start so far.
    """
    rows_per_batch = max(options.batch_size, 1)
    eot = special.eot
    temperature = options.temperatures[0]
    window_options = options.window_options(temperature)
    rng = np.random.default_rng(options.seed)
    language = options.language if special.multilingual else "en"
    detect = special.multilingual and language is None
    first_language: str | None = language
    detections: list[WindowLanguage] = []
    segments: list[Segment] = []
    encoder_s = language_s = decoding_s = 0.0
    decoder = DecoderTiming()
    tokens_decoded = 0

    def text_of(tokens: Sequence[int]) -> str:
        return decode_text([t for t in tokens if t < eot])

    queue = ChunkQueue(chunks)
    while queue:
        first = queue.taken
        batch = queue.take(rows_per_batch)
        if progress is not None:
            progress(first, queue.reached_s, audio_s)
        started = time.perf_counter()
        encoded = model.encode(window_batch(batch))
        encoder_s += time.perf_counter() - started

        languages = [language] * len(batch)
        if detect and (options.language_per_window or first_language is None):
            found = detect_languages(model, encoded, len(batch), special)
            language_s += sum(d.seconds for d in found)
            if not options.language_per_window:
                found = found[:1]
                language = first_language = found[0].language
                languages = [language] * len(batch)
            else:
                languages = [d.language for d in found]
                first_language = first_language or languages[0]
            detections += [
                WindowLanguage.from_probs(item.chunk.index, item.chunk.start_s, d.probs)
                for item, d in zip(batch, found, strict=False)
            ]

        prompts = [
            init_tokens(special, lang, options.task, timestamps=window_options.timestamps)
            for lang in languages
        ]
        started = time.perf_counter()
        results, timing = decode_windows(
            model,
            encoded,
            prompts,
            special=special,
            rules=rules,
            options=window_options,
            rng=rng,
        )
        decoding_s += time.perf_counter() - started
        decoder = decoder + timing
        rests: list[ChunkFeatures | None] = []
        for item, result, lang in zip(batch, results, languages, strict=True):
            tokens_decoded += len(result.tokens) + int(result.ended)
            ratio = judge(result, text_of(result.tokens), options).compression_ratio
            done, rest = segments_of(
                result,
                item,
                language=lang or "en",
                compression_ratio=ratio,
                special=special,
                text_of=text_of,
            )
            segments += done
            rests.append(rest)
        queue.resume(rests)

    ordered = in_order(segments)
    tokens = tuple(t for s in ordered for t in s.tokens)
    return LongFormResult(
        segments=ordered,
        text=text_of(tokens),
        tokens=tokens,
        language=first_language,
        windows=queue.taken,
        fallback_windows=0,
        skipped_windows=0,
        timings=Timings(
            encoder_s,
            language_s,
            decoder.first_step_s,
            # Every later step whole: the model call and the filtering and choice around it.
            max(decoding_s - decoder.first_step_s, decoder.next_steps_s),
            decoder.next_steps,
            tokens_decoded,
        ),
        resumed_windows=queue.resumed,
        # A rest's detection is made after later chunks': back in recording order.
        window_languages=tuple(sorted(detections, key=lambda d: (d.window, d.start_s))),
    )
