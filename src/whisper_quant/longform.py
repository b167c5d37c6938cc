"""Whisper's long-form transcription (sequential 30-second windows), the same for every engine.

The algorithm is the one in the Whisper paper (section 3.8) as transformers 4.57 implements it
in `WhisperGenerationMixin.generate` for one audio: log-mel features of the whole audio, a
3000-frame window cut at `seek` (zero-padded at the end), decoded with timestamp tokens;
the window's tokens split into segments at each pair of consecutive timestamps; `seek` moved to
the last complete segment's end, or past the window when the window ends with a single
timestamp or has no pair of timestamps; temperature fallback when a window's compression ratio
or average log-probability looks wrong; windows skipped as silence when the no-speech
probability is high and the log-probability low; the previous windows' tokens as a
<|startofprev|> prompt. With `temperatures=(0.0,)` it gives the tokens and segments of
transformers' `generate(..., return_timestamps=True, return_segments=True)`, greedy or beam
search (tests check this on the real tiny.en and base, and on a tiny random model). An engine
supplies a `WindowModel` (decoding.py) and a `decode_text`; `log_mel` computes the features.

Where it deliberately differs from transformers or openai-whisper:

- Features: `log_mel` computes what transformers' long-form expects: for more than 30 s the
  whole audio, unpadded (`truncation=False, padding="longest"`); for 30 s or less the usual
  features padded to 30 s, whose 3000 frames all count as audio (transformers' `generate` on
  one clip does the same, so a window that ends with a single timestamp moves to 30 s).
  openai-whisper pads every audio with 30 s of silence before computing features and counts
  only the real frames.
- No-speech probability: Whisper's rule by default. transformers 4.57 reports 0 for
  English-only models, so it never skips their windows as silence (decoding.py explains why);
  `transformers_no_speech=True` reproduces that, and the parity tests use it for tiny.en.
- After the last temperature the last decoding stands even if it still fails the thresholds
  (both do this).
- Fallback judges the text compression ratio by default (openai-whisper's gzip ratio of the
  decoded text, for which the 2.4 threshold was chosen); `compression_ratio_kind="tokens"`
  uses transformers' ratio over token ids instead.
- Previous text: as transformers, the prompt is <|startofprev|> and the last 223 tokens of all
  earlier segments (timestamps included, a segment's repeated closing timestamp dropped). A
  window decoded at a temperature of `prompt_reset_on_temperature` or more leaves the next
  window without a prompt; the window after that is prompted with all earlier segments again
  (openai-whisper instead forgets everything before such a window, and resets only above the
  threshold, not at it).
- The limit on a window's tokens: the decoder's 448 positions minus the prompt, or
  `max_new_tokens` if smaller (transformers raises when prompt + max_new_tokens exceed 448).
- Early ends under `language_per_window` (our addition, like per-window language itself):
  openai-whisper and transformers move past the whole window when it ends with a single
  timestamp. A window that holds two languages is decoded in the one detected, and can stop
  writing early; the speech after its last segment then gets no transcript (on real English
  then Russian speech, 21 s were lost this way). With `early_end_resume_s` set (the app and
  the benchmark set it to 5 s for language per window), such a window that ended at least that
  many seconds before its end moves `seek` to its last segment's end instead, so the rest is
  decoded as a window of its own, with its own language. At most one window in a row is
  resumed this way, so each normal window adds at most one.
- Sampling is seeded with `seed` (numpy); see decoding.py for how sampling and beam search
  follow transformers (one sample per temperature, top-k 50; transformers' beam scores).
- `language_per_window=True` (multilingual models, no fixed language) detects the language on
  every window and prompts that window with it, and with previous text only since the last
  change of language; transformers and openai-whisper detect once, on the first 30 s.
- `fixed_tokens=N` is for benchmarks: every window is decoded with exactly N tokens, forced
  to `decoding.fixed_token_ids` (text tokens derived from the vocabulary alone, so the same
  ids for every engine of a model whatever its weights predict; no end token, no timestamps),
  after a prompt of the start tokens only (no previous text), in the given language or
  English (no detection), without fallback or skipping. Every engine then does the same work
  on the same tokens, with real or random weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .audio import SAMPLE_RATE
from .decoding import (
    TIME_PRECISION,
    DecoderTiming,
    GenerationRules,
    WindowModel,
    WindowResult,
    decode_window,
    detect_language,
    init_tokens,
    text_compression_ratio,
)
from .longform_options import (
    LongFormResult,
    Progress,
    Segment,
    Timings,
    TranscribeOptions,
    WindowLanguage,
)
from .tokens import SpecialTokens

# A window: 30 s of audio, 3000 feature frames of 10 ms; the encoder halves it to 1500.
N_SAMPLES = 30 * SAMPLE_RATE
N_FRAMES = 3000
FRAME_S = 0.01
INPUT_STRIDE = 2
# fixed_tokens on a multilingual model without a language: this one, never detected.
FIXED_TOKENS_LANGUAGE = "en"


# --- features -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LogMel:
    """Log-mel features of a whole audio, as transformers' long-form `generate` expects them."""

    features: np.ndarray = field(repr=False)  # float32 (1, n_mels, frames)
    frames: int  # the frames the windows cover (3000 for audio of 30 s or less)
    # (1, frames) for audio over 30 s: transformers wants it passed to `generate` with them.
    attention_mask: np.ndarray | None = field(default=None, repr=False)

    @property
    def long_form(self) -> bool:
        return self.frames > N_FRAMES


def log_mel(extractor, audio: np.ndarray) -> LogMel:
    """Features of 16 kHz mono `audio` from a transformers `WhisperFeatureExtractor`.

    Over 30 s: the whole audio without padding (`truncation=False, padding="longest",
    return_attention_mask=True`), as transformers' long-form documentation says. Otherwise
    the extractor's default, padded to 30 s. Pass `features` (and for long audio
    `attention_mask`) unchanged to transformers' `generate` to get the same windows.
    """
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim != 1:
        raise ValueError(f"Expected mono audio (one dimension), got shape {audio.shape}")
    if len(audio) > N_SAMPLES:
        out = extractor(
            audio,
            sampling_rate=SAMPLE_RATE,
            truncation=False,
            padding="longest",
            return_attention_mask=True,
            return_tensors="np",
        )
        mask = np.asarray(out["attention_mask"])
    else:
        out = extractor(audio, sampling_rate=SAMPLE_RATE, return_tensors="np")
        mask = None
    features = np.ascontiguousarray(out["input_features"], dtype=np.float32)
    return LogMel(features, features.shape[-1], mask)


def window_features(features: np.ndarray, seek: int, frames: int) -> np.ndarray:
    """`frames` (at most 3000) frames from `seek`, zero-padded to 3000 as transformers does."""
    chunk = features[:, :, seek : seek + frames]
    if chunk.shape[-1] < N_FRAMES:
        chunk = np.pad(chunk, ((0, 0), (0, 0), (0, N_FRAMES - chunk.shape[-1])))
    return np.ascontiguousarray(chunk, dtype=np.float32)


# --- the pieces of the loop ---------------------------------------------------------------


@dataclass(frozen=True)
class RawSegment:
    start: float
    end: float
    tokens: tuple[int, ...]


def split_window(
    tokens: Sequence[int], *, timestamp_begin: int, seek: int, window_frames: int
) -> tuple[list[RawSegment], int]:
    """A window's tokens (end token removed) as segments, and how many frames to seek on.

    transformers' `_retrieve_segment`: a segment ends at every pair of consecutive
    timestamps. If the window ends with a single timestamp, the last segment runs to it and
    the seek moves past the window; otherwise the tokens after the last pair are dropped and
    the seek moves to the last pair's time. With no pair, the whole window is one segment,
    ending at its last timestamp (or at the window's end) and the seek moves past it.
    """
    tokens = tuple(int(t) for t in tokens)
    time_offset = seek * TIME_PRECISION / INPUT_STRIDE
    is_timestamp = [t >= timestamp_begin for t in tokens]
    single_ending = is_timestamp[-2:] == [False, True]
    pair_ends = [i + 1 for i in range(len(tokens) - 1) if is_timestamp[i] and is_timestamp[i + 1]]
    if not pair_ends:
        stamps = [t for t in tokens if t >= timestamp_begin]
        end_pos: float = _window_positions(window_frames)
        if stamps and stamps[-1] != timestamp_begin:
            end_pos = float(stamps[-1] - timestamp_begin)
        segment = RawSegment(time_offset, time_offset + end_pos * TIME_PRECISION, tokens)
        return [segment], window_frames
    slices = list(pair_ends)
    if single_ending:
        slices.append(len(tokens))
    else:
        # The last segment keeps both timestamps of its closing pair.
        slices[-1] += 1
    segments, last = [], 0
    for i, current in enumerate(slices):
        part = tokens[last:current]
        is_last = i == len(slices) - 1
        end_token = part[-1] if not is_last or single_ending else part[-2]
        segments.append(
            RawSegment(
                time_offset + float(part[0] - timestamp_begin) * TIME_PRECISION,
                time_offset + float(end_token - timestamp_begin) * TIME_PRECISION,
                part,
            )
        )
        last = current
    if single_ending:
        return segments, window_frames
    return segments, (tokens[last - 2] - timestamp_begin) * INPUT_STRIDE


def _window_positions(window_frames: int) -> int:
    """Timestamp steps in a window of `window_frames` frames, computed as transformers does
    (a long tensor times 0.01, divided by 0.02: float32 arithmetic, then truncated)."""
    frames_s = np.float32(window_frames) * np.float32(FRAME_S)
    return int(frames_s / np.float32(TIME_PRECISION))


def previous_tokens(
    segments: Sequence[Sequence[int]], *, timestamp_begin: int, limit: int
) -> list[int]:
    """The last `limit` tokens of earlier segments, for the <|startofprev|> prompt.

    A segment that ends with two timestamps (the pair that closed its window) gives only the
    first: the next window starts at that time.
    """
    tokens: list[int] = []
    for segment in segments:
        segment = list(segment)
        if len(segment) > 2 and segment[-2] >= timestamp_begin:
            segment = segment[:-1]
        tokens.extend(segment)
    return tokens[-limit:] if limit > 0 else []


@dataclass(frozen=True)
class Verdict:
    """What the thresholds say about one decoding of a window."""

    compression_ratio: float
    needs_fallback: bool
    skip: bool


def judge(result: WindowResult, text: str, options: TranscribeOptions) -> Verdict:
    """transformers' `_need_fallback`: too repetitive or too improbable -> try the next
    temperature; improbable and probably silent -> skip the window instead."""
    if options.compression_ratio_kind == "text":
        ratio = text_compression_ratio(text)
    else:
        ratio = result.token_compression_ratio
    needs_fallback = False
    if options.compression_ratio_threshold is not None:
        needs_fallback = ratio > options.compression_ratio_threshold
    low_logprob = (
        options.logprob_threshold is not None and result.avg_logprob < options.logprob_threshold
    )
    needs_fallback = needs_fallback or low_logprob
    skip = (
        low_logprob
        and options.no_speech_threshold is not None
        and result.no_speech_prob > options.no_speech_threshold
    )
    return Verdict(ratio, needs_fallback and not skip, skip)


def window_prompt(
    start: Sequence[int],
    earlier: Sequence[Sequence[int]],
    *,
    special: SpecialTokens,
    rules: GenerationRules,
    condition: bool,
) -> tuple[list[int], int]:
    """A window's prompt, [<|startofprev|> earlier tokens] + `start`, and where <|sot|> is."""
    prompt: list[int] = []
    if condition and earlier:
        limit = rules.max_length // 2 - 1
        previous = previous_tokens(earlier, timestamp_begin=special.timestamp_begin, limit=limit)
        prompt = [special.prev, *previous]
    return prompt + list(start), len(prompt)


@dataclass(frozen=True)
class Decoded:
    """A window's kept decoding, what the thresholds said of it, and every attempt made."""

    result: WindowResult
    verdict: Verdict
    attempts: tuple[WindowResult, ...]
    # Wall-clock seconds of each attempt's whole decoding: its model calls (in
    # `attempt.timing`) and the logits filtering, token choice and bookkeeping around them.
    seconds: tuple[float, ...] = ()


def decode_with_fallback(
    model: WindowModel,
    encoded: object,
    prompt: Sequence[int],
    sot_index: int,
    *,
    special: SpecialTokens,
    rules: GenerationRules,
    options: TranscribeOptions,
    rng: np.random.Generator,
    text_of: Callable[[Sequence[int]], str],
) -> Decoded:
    """Decode at each temperature in turn until the thresholds are met; the last stands.

    `fixed_tokens` decodes once, at the first temperature, and neither falls back nor skips.
    """
    attempts: list[WindowResult] = []
    seconds: list[float] = []
    for temperature in options.temperatures:
        started = time.perf_counter()
        result = decode_window(
            model,
            encoded,
            prompt,
            special=special,
            rules=rules,
            options=options.window_options(temperature),
            sot_index=sot_index,
            rng=rng,
        )
        seconds.append(time.perf_counter() - started)
        attempts.append(result)
        verdict = judge(result, text_of(result.tokens), options)
        if options.fixed_tokens:
            verdict = Verdict(verdict.compression_ratio, needs_fallback=False, skip=False)
        if not verdict.needs_fallback:
            break
    return Decoded(result, verdict, tuple(attempts), tuple(seconds))


# --- the loop -----------------------------------------------------------------------------


class _Clock:
    """Adds up the seconds and counts of the model calls."""

    def __init__(self):
        self.encoder_s = 0.0
        self.language_s = 0.0
        self.decoder = DecoderTiming()
        self.decoding_s = 0.0  # every decoding whole (Decoded.seconds)
        self.tokens = 0

    def timings(self) -> Timings:
        # A decoding's time past its prompt call is its later steps, each timed whole: the
        # model call and the logits filtering and token choice around it.
        return Timings(
            self.encoder_s,
            self.language_s,
            self.decoder.first_step_s,
            max(self.decoding_s - self.decoder.first_step_s, self.decoder.next_steps_s),
            self.decoder.next_steps,
            self.tokens,
        )


def _same_language_tail(
    segments: Sequence[Segment], language: str | None, options: TranscribeOptions
) -> Sequence[Segment]:
    """The segments the previous-text prompt may draw on.

    With the language detected per window, only those since the last change of language: a
    prompt in another language pulls the decoder back into it (seen on base: a German window
    after an English sonnet, prompted with the sonnet, came out as English-like text until
    temperature 1.0). With one language for the whole clip, all of them, as transformers.
    """
    if not options.language_per_window:
        return segments
    start = len(segments)
    while start > 0 and segments[start - 1].language == language:
        start -= 1
    return segments[start:]


def transcribe(
    model: WindowModel,
    features: np.ndarray,
    frames: int | None = None,
    *,
    special: SpecialTokens,
    rules: GenerationRules,
    decode_text: Callable[[Sequence[int]], str],
    options: TranscribeOptions | None = None,
    progress: Progress | None = None,
) -> LongFormResult:
    """Transcribe the audio behind `features` (1, n_mels, n) window by window.

    `frames` is how many frames the windows cover (default: all; pass `LogMel.frames`).
    `decode_text` turns text token ids into text (an engine's tokenizer, skipping nothing:
    it is only given ids below <|endoftext|>). `progress(window, seek_s, total_s)` is called
    before each window. `options` are followed as given: they were fitted to the model where
    they met it (`fit_to_model`).
    """
    options = options or TranscribeOptions()
    features = np.asarray(features, dtype=np.float32)
    if features.ndim != 3 or features.shape[0] != 1:
        raise ValueError(f"Expected features of shape (1, n_mels, frames), got {features.shape}")
    total = features.shape[-1] if frames is None else int(frames)
    if not 0 <= total <= features.shape[-1]:
        raise ValueError(f"frames={frames} is outside the {features.shape[-1]} feature frames")

    eot, timestamp_begin = special.eot, special.timestamp_begin
    rng = np.random.default_rng(options.seed)
    clock = _Clock()
    fixed = options.fixed_tokens is not None
    language = options.language if special.multilingual else "en"
    if fixed and language is None:
        language = FIXED_TOKENS_LANGUAGE  # detection could differ between engines
    detect = special.multilingual and not fixed
    first_language: str | None = language
    segments: list[Segment] = []
    detections: list[WindowLanguage] = []
    # Forced windows are prompted with their start alone: the same prompt for every window.
    condition = options.condition_on_previous_text and not fixed
    windows = fallback_windows = skipped = resumed = 0
    seek = 0
    resumed_last = False

    def text_of(tokens: Sequence[int]) -> str:
        return decode_text([t for t in tokens if t < eot])

    while seek < total:
        if progress is not None:
            progress(windows, seek * FRAME_S, total * FRAME_S)
        window_frames = min(total - seek, N_FRAMES)
        chunk = window_features(features, seek, window_frames)
        started = time.perf_counter()
        encoded = model.encode(chunk)
        clock.encoder_s += time.perf_counter() - started

        if detect and (language is None or options.language_per_window):
            detection = detect_language(model, encoded, special)
            clock.language_s += detection.seconds
            language = detection.language
            detections.append(WindowLanguage.from_probs(windows, seek * FRAME_S, detection.probs))
            if first_language is None:
                first_language = language

        start = init_tokens(
            special, language, options.task, timestamps=options.window_options(0).timestamps
        )
        prompt, sot_index = window_prompt(
            start,
            [s.tokens for s in _same_language_tail(segments, language, options)],
            special=special,
            rules=rules,
            condition=condition,
        )
        decoded = decode_with_fallback(
            model,
            encoded,
            prompt,
            sot_index,
            special=special,
            rules=rules,
            options=options,
            rng=rng,
            text_of=text_of,
        )
        for attempt in decoded.attempts:
            clock.decoder = clock.decoder + attempt.timing
            clock.tokens += len(attempt.tokens) + int(attempt.ended)
        clock.decoding_s += sum(decoded.seconds)
        result, verdict = decoded.result, decoded.verdict
        fallback_windows += len(decoded.attempts) > 1
        # transformers: prompt the next window only after a low-temperature decoding.
        condition = (
            options.condition_on_previous_text
            and not fixed
            and result.temperature < options.prompt_reset_on_temperature
        )
        windows += 1

        if verdict.skip:
            skipped += 1
            seek += window_frames
            continue
        raw, offset = split_window(
            result.tokens, timestamp_begin=timestamp_begin, seek=seek, window_frames=window_frames
        )
        segments += [
            Segment(
                start=s.start,
                end=s.end,
                text=text_of(s.tokens),
                tokens=s.tokens,
                language=language,
                temperature=result.temperature,
                avg_logprob=result.avg_logprob,
                no_speech_prob=result.no_speech_prob,
                compression_ratio=verdict.compression_ratio,
                window=windows - 1,
            )
            for s in raw
        ]
        early = _early_end_offset(raw, seek, offset, window_frames, options)
        resumed_last = early is not None and not resumed_last
        if resumed_last:
            resumed += 1
            offset = early
        seek += offset

    tokens = tuple(t for s in segments for t in s.tokens)
    return LongFormResult(
        segments=tuple(segments),
        text=text_of(tokens),
        tokens=tokens,
        language=first_language,
        windows=windows,
        fallback_windows=fallback_windows,
        skipped_windows=skipped,
        timings=clock.timings(),
        resumed_windows=resumed,
        window_languages=tuple(detections),
    )


def _early_end_offset(
    raw: Sequence[RawSegment],
    seek: int,
    offset: int,
    window_frames: int,
    options: TranscribeOptions,
) -> int | None:
    """Frames to the last segment's end when a per-window-language window ended early (see
    `TranscribeOptions.early_end_resume_s`), else None: the seek stays as `split_window` says."""
    if not (options.language_per_window and options.early_end_resume_s) or not raw:
        return None
    if offset != window_frames:  # ended on a pair: the seek is already at the last segment
        return None
    start_s = seek * FRAME_S
    last_end_s = raw[-1].end - start_s
    if window_frames * FRAME_S - last_end_s < options.early_end_resume_s:
        return None
    frames = int(round(last_end_s / FRAME_S))
    return frames if 0 < frames < window_frames else None
