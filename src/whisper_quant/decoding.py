"""Decoding one 30-second Whisper window in numpy, the same for every engine.

An engine supplies a `WindowModel` (its encoder, and a decoder with a key/value cache that
returns logits); everything else happens here: the prompt, the logit filters, greedy decoding,
sampling and beam search, the no-speech probability, language detection and the quality
figures the long-form loop (longform.py) judges a window by.

The pieces follow openai-whisper's `whisper/decoding.py` (an `Inference` over the model, a
`TokenDecoder` that picks tokens, `LogitFilter`s that mask logits, a ranker for finished beams),
and the arithmetic follows transformers 4.57 (`WhisperGenerationMixin.generate` with its
logits processors), so that with the same model this module picks the same tokens as
transformers' `generate`.

Where this module deliberately follows transformers rather than openai-whisper:

- Beam search is transformers' `_beam_search`: every step keeps the best 2 * beam_size
  candidates; a candidate ending in <|endoftext|> is accepted as a finished hypothesis only when
  it ranks among the best beam_size of them; a finished hypothesis scores
  sum(log-probs) / length ** length_penalty, where the length counts the generated tokens
  *including* the end token; the search stops as transformers' default (`early_stopping=False`)
  heuristic says: when the best running beam, normalised by the current length, cannot beat the
  worst kept finished hypothesis. openai-whisper instead collects `beam_size * patience`
  finished candidates and ranks them with a length that excludes the end token, and its
  `length_penalty` means ((5 + length) / 6) ** penalty; here it is length ** penalty.
- Beam search scores are log-softmax of the raw logits, with the filters then setting tokens to
  -inf without renormalising (transformers applies its processors to log-probabilities);
  openai-whisper filters the logits first and then takes the log-softmax.
- Sampling (temperature > 0) draws one sequence per temperature, with transformers' default
  top-k of 50 applied after dividing by the temperature; openai-whisper draws `best_of=5`
  sequences from the full distribution and keeps the most probable. The random generator is
  numpy's, seeded by the caller, so sampled tokens are reproducible but never equal to
  transformers' (torch's generator).
- The average log-probability of a window is the sum of the generated tokens' log-probs,
  the end token included, over the number of generated tokens, the end token included; a
  token's log-prob is the log-softmax of the filtered logits at temperature 1 (for sampling,
  over the top-k tokens), as transformers computes it. openai-whisper divides by
  (text tokens + 1): the same when a window ends with the end token.
- The no-speech probability is the softmax of the raw logits at the <|startoftranscript|>
  position (after any <|startofprev|> prompt) at the <|nospeech|> id: Whisper's rule, which
  openai-whisper follows, and transformers too when the window's start is longer than <|sot|>
  alone (multilingual models, or no timestamps). For English-only models with timestamps,
  transformers 4.57 reads it after its suppress processors have removed <|nocaptions|>, so it
  reports 0 and never skips a window as silence; `transformers_no_speech=True` reproduces that.
- Log-softmax is computed by numpy in float32. torch's float32 `log_softmax` can be off by a
  few 1e-5 on some rows (measured against float64 on tiny.en), so beam candidates within that
  distance of each other could rank differently; on the test clips the tokens are identical.
- Two compression ratios are offered: `text_compression_ratio` (openai-whisper: zlib over the
  UTF-8 bytes of the decoded text; its 2.4 threshold is meant for this one) and
  `token_compression_ratio` (transformers: zlib over the token ids written as little-endian
  integers, end token included).
- The timestamp rule "timestamps win when their summed probability beats every text token" is
  evaluated in float64 on the filtered logits (transformers: float32 log-softmax). Both are the
  same comparison; they could only disagree when the two sides are within float32 rounding.
"""

from __future__ import annotations

import math
import time
import zlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .tokens import SpecialTokens

# Whisper's decoder has 448 positions: prompt and generated tokens together.
N_TEXT_CTX = 448
# Seconds per timestamp token step (<|0.02|> follows <|0.00|>).
TIME_PRECISION = 0.02
# transformers' GenerationConfig default top_k, used when sampling (temperature > 0).
DEFAULT_TOP_K = 50
# transformers fills impossible beam scores with this instead of -inf, so sums stay finite.
_BEAM_FLOOR = np.float32(-1.0e9)


# --- what an engine implements -------------------------------------------------------------


class DecoderState(Protocol):
    """A decoder's key/value cache for `batch` rows reading the same audio."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """int64 (batch, n) tokens after the cached ones -> float32 logits (batch, n, vocab)."""
        ...

    def reorder(self, index: np.ndarray) -> None:
        """Keep or duplicate cache rows: row i becomes the old row index[i] (beam search)."""
        ...


class WindowModel(Protocol):
    """An engine's Whisper: the encoder, and decoder caches over its output."""

    def encode(self, features: np.ndarray) -> object:
        """float32 (1, n_mels, 3000) log-mel features -> the engine's own encoder output."""
        ...

    def decoder(self, encoded: object, batch: int) -> DecoderState:
        """A fresh, empty cache for `batch` rows, all reading `encoded`."""
        ...


# --- model constants and options -----------------------------------------------------------


@dataclass(frozen=True)
class GenerationRules:
    """What a model's generation_config.json says about decoding (the same for all engines)."""

    # Never generated (punctuation-like symbols, <|startofprev|>, the task tokens, ...).
    suppress_tokens: tuple[int, ...] = ()
    # Not generated as the first token: " " and <|endoftext|> in Whisper's configs.
    begin_suppress_tokens: tuple[int, ...] = ()
    # Decoder positions: prompt plus generated tokens never exceed this.
    max_length: int = N_TEXT_CTX

    @classmethod
    def from_generation_config(cls, config: Mapping | object) -> GenerationRules:
        """From generation_config.json as a dict, or a transformers `GenerationConfig`."""
        if not isinstance(config, Mapping):
            config = config.to_dict()
        return cls(
            suppress_tokens=tuple(config.get("suppress_tokens") or ()),
            begin_suppress_tokens=tuple(config.get("begin_suppress_tokens") or ()),
            max_length=min(int(config.get("max_length") or N_TEXT_CTX), N_TEXT_CTX),
        )


@dataclass(frozen=True)
class WindowOptions:
    """How to decode one window."""

    # 0: greedy (or beam search); above 0: sampling at this temperature.
    temperature: float = 0.0
    # Above 1: beam search (at temperature 0 only, as transformers).
    beam_size: int = 1
    # Finished beams score sum(logprobs) / length ** length_penalty; None means 1.0.
    length_penalty: float | None = None
    # Predict timestamp tokens (segments); False puts <|notimestamps|> in the prompt.
    timestamps: bool = True
    # The first timestamp may be at most this many seconds; None: no limit.
    max_initial_timestamp: float | None = 1.0
    # At most this many generated tokens (also bounded by the decoder's positions).
    max_new_tokens: int | None = None
    # Decode exactly this many tokens, forced to `fixed_token_ids` (the same for every engine
    # of a model): <|endoftext|> and timestamps are never chosen.
    fixed_tokens: int | None = None
    # Sampling keeps the k most probable tokens (transformers' default); None: all.
    top_k: int | None = DEFAULT_TOP_K
    # Reproduce transformers 4.57's no-speech probability for English-only models (0; see
    # `transformers_no_speech_probability`).
    transformers_no_speech: bool = False

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError("temperature must be 0 or more")
        if self.beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        if self.max_initial_timestamp is not None and self.max_initial_timestamp < 0:
            raise ValueError("max_initial_timestamp must be 0 or more (or None)")
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1 (or None)")
        if self.fixed_tokens is not None:
            if self.fixed_tokens < 1:
                raise ValueError("fixed_tokens must be at least 1 (or None)")
            if self.timestamps:
                raise ValueError("fixed_tokens needs timestamps=False (timestamps are suppressed)")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be at least 1 (or None)")

    @property
    def max_initial_timestamp_index(self) -> int | None:
        if self.max_initial_timestamp is None:
            return None
        return round(self.max_initial_timestamp / TIME_PRECISION)

    @property
    def uses_beam_search(self) -> bool:
        return self.beam_size > 1 and self.temperature == 0


def init_tokens(
    special: SpecialTokens, language: str | None, task: str, *, timestamps: bool
) -> list[int]:
    """The forced start of a window: <|sot|> [<|lang|> <|task|>] [<|notimestamps|>]."""
    tokens = [special.sot]
    if special.multilingual:
        if language is None:
            raise ValueError("A multilingual model needs a language (detect it first)")
        tokens += [special.language_id(language), special.task_id(task)]
    elif task != "transcribe":
        raise ValueError("An English-only model can only transcribe")
    if not timestamps:
        tokens.append(special.no_timestamps)
    return tokens


# --- numerics -----------------------------------------------------------------------------


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in x's dtype; a row of only -inf stays -inf."""
    peak = np.max(x, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0).astype(x.dtype)
    shifted = x - peak
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(x))


def _logsumexp(x: np.ndarray) -> float:
    peak = float(np.max(x)) if x.size else -math.inf
    if not math.isfinite(peak):
        return peak
    return peak + math.log(float(np.sum(np.exp(x - peak))))


def text_compression_ratio(text: str) -> float:
    """openai-whisper's: UTF-8 bytes of the text over their zlib-compressed size."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data))


def token_compression_ratio(tokens: Sequence[int], vocab_size: int) -> float:
    """transformers': token ids as little-endian integers over their zlib-compressed size."""
    width = int(math.log2(vocab_size) / 8) + 1
    data = b"".join(int(t).to_bytes(width, "little") for t in tokens)
    return len(data) / len(zlib.compress(data))


def no_speech_probability(logits_at_sot: np.ndarray, no_speech_token: int) -> float:
    """Probability of <|nospeech|> from the logits at the <|startoftranscript|> position."""
    return float(softmax(np.asarray(logits_at_sot, dtype=np.float32))[no_speech_token])


def transformers_no_speech_probability(
    logits_at_sot: np.ndarray, no_speech_token: int, rules: GenerationRules, *, beam: bool
) -> float:
    """The no-speech probability transformers 4.57 reports when <|sot|> starts the prompt
    alone (English-only models with timestamps).

    Its `WhisperNoSpeechDetection` then reads the scores of the first generated position
    after the suppress processors, which run before it; Whisper's generation configs
    suppress <|nocaptions|>, so the probability is 0 and no window is ever skipped. (With a
    longer start, multilingual or <|notimestamps|>, it reruns the model and reads the raw
    logits: `no_speech_probability`.) Beam search hands it log-probs, whose exponential it
    takes without renormalising.
    """
    scores = np.array(logits_at_sot, dtype=np.float32)[None]
    if beam:
        scores = log_softmax(scores)
    empty = np.zeros((1, 0), dtype=np.int64)
    SuppressTokens(rules.suppress_tokens).apply(scores, empty)
    SuppressBlank(rules.begin_suppress_tokens).apply(scores, empty)
    probs = np.exp(scores[0]) if beam else softmax(scores[0])
    return float(probs[no_speech_token])


# --- logit filters ------------------------------------------------------------------------


class LogitFilter(ABC):
    """Masks logits (or log-probs) in place before a token is chosen."""

    @abstractmethod
    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        """`logits` (rows, vocab); `generated` (rows, t): each row's tokens after the prompt."""


class SuppressBlank(LogitFilter):
    """The begin-suppress tokens (" " and <|endoftext|>) cannot be the first token."""

    def __init__(self, tokens: Sequence[int]):
        self.tokens = np.asarray(list(tokens), dtype=np.int64)

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        if generated.shape[1] == 0 and self.tokens.size:
            logits[:, self.tokens] = -np.inf


class SuppressTokens(LogitFilter):
    """These tokens, and every id from `from_id` on if given, are never generated."""

    def __init__(self, tokens: Sequence[int], *, from_id: int | None = None):
        self.tokens = np.asarray(list(tokens), dtype=np.int64)
        self.from_id = from_id

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        if self.tokens.size:
            logits[:, self.tokens] = -np.inf
        if self.from_id is not None:
            logits[:, self.from_id :] = -np.inf


class ApplyTimestampRules(LogitFilter):
    """Whisper's timestamp grammar (transformers' `WhisperTimeStampLogitsProcessor`).

    Timestamps come in pairs except right before <|endoftext|>; they never decrease and a
    segment cannot be empty; the first token is a timestamp of at most `max_initial_index`
    steps; and when the timestamps together are more probable than the most probable text
    token, a timestamp must come next.
    """

    def __init__(self, special: SpecialTokens, max_initial_index: int | None):
        self.eot = special.eot
        self.no_timestamps = special.no_timestamps
        self.begin = special.timestamp_begin
        self.max_initial_index = max_initial_index

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        begin = self.begin
        # <|notimestamps|> is what the prompt uses to turn timestamps off.
        logits[:, self.no_timestamps] = -np.inf
        for row, seq in zip(logits, generated, strict=True):
            last_was_timestamp = len(seq) >= 1 and seq[-1] >= begin
            penultimate_was_timestamp = len(seq) < 2 or seq[-2] >= begin
            if last_was_timestamp:
                if penultimate_was_timestamp:  # a pair just closed: text (or the end) next
                    row[begin:] = -np.inf
                else:  # an opening timestamp must be closed (or the window ends)
                    row[: self.eot] = -np.inf
            timestamps = seq[seq >= begin]
            if timestamps.size:
                # Never decreasing; a closing timestamp may repeat the opening one, any
                # other must move forward, so every segment advances the seek.
                if last_was_timestamp and not penultimate_was_timestamp:
                    last = int(timestamps[-1])
                else:
                    last = int(timestamps[-1]) + 1
                row[begin:last] = -np.inf
        if generated.shape[1] == 0:
            logits[:, :begin] = -np.inf
            if self.max_initial_index is not None:
                logits[:, begin + self.max_initial_index + 1 :] = -np.inf
        for row in logits:
            wide = row.astype(np.float64)
            if _logsumexp(wide[begin:]) > float(np.max(wide[:begin])):
                row[:begin] = -np.inf


class LogitFilters:
    """Filters applied in transformers' order: begin-suppress, suppress, timestamp rules.

    The timestamp rules go last because their "summed probability" test must see what the
    other filters removed.
    """

    def __init__(self, filters: Sequence[LogitFilter]):
        self.filters = list(filters)

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> np.ndarray:
        for f in self.filters:
            f.apply(logits, generated)
        return logits

    @classmethod
    def for_window(
        cls, special: SpecialTokens, rules: GenerationRules, options: WindowOptions
    ) -> LogitFilters:
        filters: list[LogitFilter] = [
            SuppressBlank(rules.begin_suppress_tokens),
            SuppressTokens(rules.suppress_tokens),
        ]
        if options.fixed_tokens is not None:
            # Equal work per window: never end, never emit a timestamp.
            filters.append(SuppressTokens([special.eot], from_id=special.timestamp_begin))
        if options.timestamps:
            filters.append(ApplyTimestampRules(special, options.max_initial_timestamp_index))
        return cls(filters)


# --- running the decoder ------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderTiming:
    """Where a window's decoder time went (wall clock, time.perf_counter)."""

    first_step_s: float = 0.0  # the prompt, in one call
    next_steps_s: float = 0.0  # every later call, one token per row each
    next_steps: int = 0

    def __add__(self, other: DecoderTiming) -> DecoderTiming:
        return DecoderTiming(
            self.first_step_s + other.first_step_s,
            self.next_steps_s + other.next_steps_s,
            self.next_steps + other.next_steps,
        )


class Inference:
    """One window's decoder cache behind a stopwatch: the prompt once, then a token per row.

    Only the model's calls are timed (time.perf_counter), not the decoding around them.
    """

    def __init__(self, state: DecoderState, clock: Callable[[], float] = time.perf_counter):
        self.state = state
        self.clock = clock
        self.first_step_s = 0.0
        self.next_steps_s = 0.0
        self.next_steps = 0

    def prompt(self, tokens: np.ndarray) -> np.ndarray:
        """Run (rows, n) prompt tokens: logits (rows, n, vocab) at every prompt position."""
        started = self.clock()
        logits = self.state.step(np.ascontiguousarray(tokens, dtype=np.int64))
        self.first_step_s += self.clock() - started
        return logits

    def next(self, tokens: np.ndarray) -> np.ndarray:
        """Run one new token per row: logits (rows, vocab)."""
        started = self.clock()
        logits = self.state.step(np.asarray(tokens, dtype=np.int64).reshape(-1, 1))
        self.next_steps_s += self.clock() - started
        self.next_steps += 1
        return logits[:, -1]

    def reorder(self, index: np.ndarray) -> None:
        """Reorder the cache rows (beam search); timed with the later steps."""
        started = self.clock()
        self.state.reorder(np.asarray(index, dtype=np.int64))
        self.next_steps_s += self.clock() - started

    @property
    def timing(self) -> DecoderTiming:
        return DecoderTiming(self.first_step_s, self.next_steps_s, self.next_steps)


@dataclass(frozen=True)
class Hypothesis:
    """A decoded sequence: the generated tokens with the end token if it ended with one."""

    tokens: tuple[int, ...]
    # Per token: log-softmax of the filtered logits at temperature 1.
    logprobs: tuple[float, ...]
    # Beam search: transformers' length-normalised score; otherwise the sum of logprobs.
    score: float


class SequenceRanker:
    """transformers' score of a finished beam: sum of log-probs / length ** length_penalty.

    The length is the number of generated tokens including the end token. Computed in
    float32, as transformers keeps beam scores.
    """

    def __init__(self, length_penalty: float | None = None):
        self.length_penalty = 1.0 if length_penalty is None else float(length_penalty)

    def score(self, sum_logprob: np.ndarray | float, length: int) -> np.ndarray:
        return np.float32(sum_logprob) / np.float32(length**self.length_penalty)


class TokenDecoder(ABC):
    """Chooses tokens until the end token or the length limit."""

    @abstractmethod
    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        """`logits` (rows, vocab): the prompt's last position; at most `limit` tokens."""


class GreedyDecoder(TokenDecoder):
    """The most probable token (temperature 0) or one sampled token per step (above 0).

    Sampling follows transformers: filter, divide by the temperature, keep the top-k, then
    draw from the softmax with the numpy generator `rng`.
    """

    def __init__(
        self,
        eot: int,
        temperature: float = 0.0,
        *,
        rng: np.random.Generator | None = None,
        top_k: int | None = DEFAULT_TOP_K,
    ):
        if temperature > 0 and rng is None:
            raise ValueError("Sampling (temperature > 0) needs a numpy random Generator")
        self.eot = eot
        self.temperature = temperature
        self.rng = rng
        self.top_k = top_k

    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        tokens: list[int] = []
        logprobs: list[float] = []
        while True:
            scores = np.array(logits[:1], dtype=np.float32)
            filters.apply(scores, np.asarray([tokens], dtype=np.int64))
            token, kept = self._choose(scores[0])
            tokens.append(token)
            logprobs.append(float(log_softmax(kept)[token]))
            if token == self.eot or len(tokens) >= limit:
                break
            logits = inference.next(np.array([token]))
        return Hypothesis(tuple(tokens), tuple(logprobs), float(sum(logprobs)))

    def _choose(self, scores: np.ndarray) -> tuple[int, np.ndarray]:
        """The token, and the filtered logits its log-prob is taken from."""
        if self.temperature == 0:
            return int(np.argmax(scores)), scores
        warped = scores / np.float32(self.temperature)
        if self.top_k is not None and self.top_k < warped.size:
            kth = np.partition(warped, -self.top_k)[-self.top_k]
            warped = np.where(warped < kth, -np.inf, warped).astype(np.float32)
        probs = softmax(warped.astype(np.float64))
        cumulative = np.cumsum(probs)
        token = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        token = min(token, warped.size - 1)
        while probs[token] == 0:  # only reachable through rounding at the very top
            token -= 1
        # transformers multiplies its warped scores back by the temperature for the
        # log-probs: the filtered logits with the tokens outside the top-k removed.
        kept = np.where(np.isneginf(warped), -np.inf, scores).astype(np.float32)
        return token, kept


# Consecutive forced tokens step through the text vocabulary by this prime, so they are
# spread over it rather than one id repeated.
FIXED_TOKEN_STRIDE = 7919


def fixed_token_ids(count: int, special: SpecialTokens, rules: GenerationRules) -> tuple[int, ...]:
    """The `count` text tokens a `fixed_tokens` decoding forces, derived from the vocabulary
    alone: the same ids for every engine of a model, whatever its weights predict.

    Ids below <|endoftext|> that no filter removes (neither `suppress_tokens` nor
    `begin_suppress_tokens`), taken with a stride of FIXED_TOKEN_STRIDE, wrapping around.
    """
    banned = {*rules.suppress_tokens, *rules.begin_suppress_tokens}
    text = [t for t in range(special.eot) if t not in banned]
    return tuple(text[(1 + i * FIXED_TOKEN_STRIDE) % len(text)] for i in range(count))


class ForcedDecoder(TokenDecoder):
    """Feeds a fixed token sequence instead of choosing: identical work for every engine.

    Every step does what a greedy step does (the model's logits for every row, the filters,
    the log-softmax, the argmax it then ignores) and feeds the next forced token to every row,
    so the decoder runs exactly `len(tokens)` positions after the prompt. Beam search's
    reordering of rows is not done: all rows hold the same tokens.
    """

    def __init__(self, tokens: Sequence[int]):
        self.tokens = tuple(int(t) for t in tokens)

    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        tokens: list[int] = []
        logprobs: list[float] = []
        rows = logits.shape[0]
        for token in self.tokens[:limit]:
            scores = np.array(logits, dtype=np.float32)
            generated = np.array([tokens] * rows, dtype=np.int64).reshape(rows, len(tokens))
            filters.apply(scores, generated)
            np.argmax(scores[0])  # the choice a greedy step makes, for the same work
            tokens.append(token)
            logprobs.append(float(log_softmax(scores[0])[token]))
            if len(tokens) >= min(limit, len(self.tokens)):
                break
            logits = inference.next(np.full(rows, token, dtype=np.int64))
        return Hypothesis(tuple(tokens), tuple(logprobs), float(sum(logprobs)))


class BeamSearchDecoder(TokenDecoder):
    """transformers' beam search (`GenerationMixin._beam_search`, 4.57) for one audio.

    The inference runs `beam_size` rows from the prompt on. Each step: log-softmax the logits,
    filter them (no renormalisation), add the running beam scores, keep the best 2 * beam_size
    candidates; the best beam_size that do not end become the running beams; a candidate
    that ends (end token, or the length limit) is offered to the finished list only if it is
    among the best beam_size candidates, scored by `ranker`.
    """

    def __init__(
        self, eot: int, beam_size: int, ranker: SequenceRanker, *, early_stopping: bool = False
    ):
        self.eot = eot
        self.beam_size = beam_size
        self.ranker = ranker
        self.early_stopping = early_stopping

    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        beams, keep = self.beam_size, 2 * self.beam_size
        running = [_Beam((), ()) for _ in range(beams)]
        # All rows hold the same prompt: only the first may start, or the beams would repeat.
        running_scores = np.full(beams, _BEAM_FLOOR, dtype=np.float32)
        running_scores[0] = 0
        finished = _FinishedBeams(beams)
        improvable = True
        for step in range(limit):
            length = step + 1  # generated tokens once this step's token is added
            logprobs = log_softmax(np.asarray(logits, dtype=np.float32))
            generated = np.array([b.tokens for b in running], dtype=np.int64).reshape(beams, step)
            filters.apply(logprobs, generated)
            renormalised = log_softmax(logprobs)
            vocab = logprobs.shape[1]
            flat = (logprobs + running_scores[:, None]).ravel()
            top = _top_k(flat, keep)
            scores = flat[top]
            source, tokens = top // vocab, top % vocab
            ends = (tokens == self.eot) | (length >= limit)
            candidates = [
                running[b].extend(int(t), float(renormalised[b, t]))
                for b, t in zip(source, tokens, strict=True)
            ]

            # Finished hypotheses: only candidates ranked within the first beam_size.
            offered = ends & (np.arange(keep) < beams)
            final = self.ranker.score(scores, length).astype(np.float32)
            if finished.all_done and self.early_stopping:
                final = final + _BEAM_FLOOR
            if not improvable:
                final = final + _BEAM_FLOOR
            final = np.where(offered, final, final + _BEAM_FLOOR).astype(np.float32)
            finished.merge(final, offered, candidates)

            # Running beams: the best candidates that do not end.
            alive_scores = np.where(ends, scores + _BEAM_FLOOR, scores).astype(np.float32)
            chosen = _top_k(alive_scores, beams)
            running = [candidates[i] for i in chosen]
            running_scores = alive_scores[chosen]
            inference.reorder(source[chosen])

            best_possible = self.ranker.score(running_scores[0], length)
            improvable = improvable and finished.could_improve(best_possible)
            if not improvable or (finished.all_done and self.early_stopping) or ends.all():
                break
            logits = inference.next(tokens[chosen])
        return finished.best(fallback=running[0], fallback_score=float(running_scores[0]))


@dataclass(frozen=True)
class _Beam:
    """A beam's generated tokens and each one's log-prob."""

    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]

    def extend(self, token: int, logprob: float) -> _Beam:
        return _Beam((*self.tokens, token), (*self.logprobs, logprob))


class _FinishedBeams:
    """transformers' list of `beam_size` finished slots, best first, -1e9 while empty."""

    def __init__(self, size: int):
        self.scores = np.full(size, _BEAM_FLOOR, dtype=np.float32)
        self.done = np.zeros(size, dtype=bool)
        self.beams: list[_Beam | None] = [None] * size

    @property
    def all_done(self) -> bool:
        return bool(self.done.all())

    def merge(self, scores: np.ndarray, offered: np.ndarray, candidates: list[_Beam]) -> None:
        """Keep the best of the kept slots and the candidates (not offered ones score -1e9)."""
        size = len(self.scores)
        merged = np.concatenate([self.scores, scores]).astype(np.float32)
        chosen = _top_k(merged, size)
        beams = self.beams + [c if o else None for c, o in zip(candidates, offered, strict=True)]
        done = np.concatenate([self.done, offered])
        self.scores, self.done = merged[chosen], done[chosen]
        self.beams = [beams[i] for i in chosen]

    def could_improve(self, best_possible: np.ndarray) -> bool:
        """transformers' heuristic: a running beam could still beat a kept finished one."""
        worst = np.where(self.done, np.min(self.scores), _BEAM_FLOOR)
        return bool(np.any(np.float32(best_possible) > worst))

    def best(self, fallback: _Beam, fallback_score: float) -> Hypothesis:
        """The best finished hypothesis (the best running beam if none finished)."""
        beam, score = self.beams[0], float(self.scores[0])
        if not self.done[0] or beam is None:
            beam, score = fallback, fallback_score
        return Hypothesis(beam.tokens, beam.logprobs, score)


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first; equal values by lower index first."""
    k = min(k, values.size)
    part = np.argpartition(-values, k - 1)[:k] if k < values.size else np.arange(values.size)
    return part[np.lexsort((part, -values[part]))]


# --- one window ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowResult:
    """One decoding of one window."""

    # Generated tokens, timestamps included, the end token removed.
    tokens: tuple[int, ...]
    # Whether the decoding stopped at <|endoftext|> (not at the length limit).
    ended: bool
    temperature: float
    # Mean log-prob of the generated tokens, the end token included (transformers' rule).
    avg_logprob: float
    no_speech_prob: float
    # transformers' token-id compression ratio (end token included).
    token_compression_ratio: float
    timing: DecoderTiming


def token_limit(rules: GenerationRules, options: WindowOptions, prompt_length: int) -> int:
    """How many tokens a window may generate after a prompt of `prompt_length` tokens."""
    room = rules.max_length - prompt_length
    if room < 1:
        raise ValueError(f"A {prompt_length}-token prompt leaves no room in {rules.max_length}")
    wanted = options.fixed_tokens or options.max_new_tokens
    if options.fixed_tokens is not None and options.fixed_tokens > room:
        raise ValueError(f"fixed_tokens={options.fixed_tokens} exceeds the {room} positions left")
    return min(room, wanted) if wanted else room


def decode_window(
    model: WindowModel,
    encoded: object,
    prompt: Sequence[int],
    *,
    special: SpecialTokens,
    rules: GenerationRules,
    options: WindowOptions,
    sot_index: int | None = None,
    rng: np.random.Generator | None = None,
) -> WindowResult:
    """Decode one window after `prompt` ([<|startofprev|> ...] <|sot|> ... ).

    `sot_index` is the position of <|startoftranscript|> in the prompt (found if None); the
    no-speech probability is read there. Beam search runs `beam_size` rows from the start,
    as transformers does, so its logits are computed in the same batch shape.
    """
    prompt = list(prompt)
    if sot_index is None:
        sot_index = prompt.index(special.sot)
    rows = options.beam_size if options.uses_beam_search else 1
    limit = token_limit(rules, options, len(prompt))
    inference = Inference(model.decoder(encoded, rows))
    logits = inference.prompt(np.tile(np.asarray(prompt, dtype=np.int64), (rows, 1)))
    if options.transformers_no_speech and sot_index == len(prompt) - 1:
        no_speech = transformers_no_speech_probability(
            logits[0, sot_index], special.no_speech, rules, beam=options.uses_beam_search
        )
    else:
        no_speech = no_speech_probability(logits[0, sot_index], special.no_speech)
    vocab = logits.shape[-1]
    filters = LogitFilters.for_window(special, rules, options)
    decoder: TokenDecoder
    if options.fixed_tokens is not None:
        decoder = ForcedDecoder(fixed_token_ids(options.fixed_tokens, special, rules))
    elif options.uses_beam_search:
        decoder = BeamSearchDecoder(
            special.eot, options.beam_size, SequenceRanker(options.length_penalty)
        )
    else:
        decoder = GreedyDecoder(special.eot, options.temperature, rng=rng, top_k=options.top_k)
    hypothesis = decoder.decode(inference, logits[:, -1], filters, limit)
    generated = hypothesis.tokens
    ended = bool(generated) and generated[-1] == special.eot
    return WindowResult(
        tokens=generated[:-1] if ended else generated,
        ended=ended,
        temperature=options.temperature,
        avg_logprob=float(np.float32(sum(hypothesis.logprobs)) / max(len(generated), 1)),
        no_speech_prob=no_speech,
        token_compression_ratio=token_compression_ratio(generated, vocab),
        timing=inference.timing,
    )


# --- language -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LanguageDetection:
    """Whisper's language detection: one decoder step after <|startoftranscript|>."""

    language: str
    # Language code -> probability (softmax over the language tokens only).
    probs: Mapping[str, float]
    seconds: float


def detect_language(
    model: WindowModel,
    encoded: object,
    special: SpecialTokens,
    clock: Callable[[], float] = time.perf_counter,
) -> LanguageDetection:
    """The most probable language token after <|startoftranscript|> for this window's audio.

    transformers takes the argmax of the logits restricted to the language tokens; the softmax
    over the same tokens (openai-whisper) has the same argmax and gives the probabilities.
    """
    if not special.multilingual:
        raise ValueError("An English-only model has no language tokens")
    started = clock()
    logits = model.decoder(encoded, 1).step(np.array([[special.sot]], dtype=np.int64))[0, -1]
    seconds = clock() - started
    codes = list(special.languages)
    ids = np.array([special.languages[c] for c in codes], dtype=np.int64)
    chosen = np.asarray(logits, dtype=np.float32)[ids]
    probs = softmax(chosen.astype(np.float64))
    best = codes[int(np.argmax(chosen))]
    return LanguageDetection(best, dict(zip(codes, probs.tolist(), strict=True)), seconds)
