"""Decoding one 30-second Whisper window in numpy, the same for every engine.

An engine supplies a `WindowModel` (its encoder, and a decoder with a key/value cache that
returns logits); everything else happens here and in the two modules this one composes: the
prompt, the logit filters (logit_filters.py), greedy decoding, sampling and beam search
(token_decoders.py), the no-speech probability, language detection and the quality figures
the long-form loop (longform.py) judges a window by.

The pieces follow openai-whisper's `whisper/decoding.py` (an `Inference` over the model, a
`TokenDecoder` that picks tokens, `LogitFilter`s that mask logits, a ranker for finished beams),
and the arithmetic follows transformers 4.57 (`WhisperGenerationMixin.generate` with its
logits processors), so that with the same model these modules pick the same tokens as
transformers' `generate`.

Where they deliberately follow transformers rather than openai-whisper:

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .logit_filters import (
    ApplyTimestampRules,
    LogitFilter,
    LogitFilters,
    SuppressBlank,
    SuppressTokens,
    log_softmax,
    softmax,
)
from .token_decoders import (
    DEFAULT_TOP_K,
    BatchGreedyDecoder,
    BeamSearchDecoder,
    DecoderState,
    DecoderTiming,
    ForcedDecoder,
    GreedyDecoder,
    Hypothesis,
    Inference,
    SequenceRanker,
    TokenDecoder,
)
from .tokens import SpecialTokens

# Whisper's decoder has 448 positions: prompt and generated tokens together.
N_TEXT_CTX = 448
# Seconds per timestamp token step (<|0.02|> follows <|0.00|>).
TIME_PRECISION = 0.02


# --- what an engine implements -------------------------------------------------------------
# With `DecoderState` (token_decoders.py), the key/value cache `WindowModel.decoder` returns.


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


# --- quality figures ----------------------------------------------------------------------


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


# --- one window ---------------------------------------------------------------------------


def window_filters(
    special: SpecialTokens, rules: GenerationRules, options: WindowOptions
) -> LogitFilters:
    """The filters of one window, in transformers' order (see `LogitFilters`)."""
    filters: list[LogitFilter] = [
        SuppressBlank(rules.begin_suppress_tokens),
        SuppressTokens(rules.suppress_tokens),
    ]
    if options.fixed_tokens is not None:
        # Equal work per window: never end, never emit a timestamp.
        filters.append(SuppressTokens([special.eot], from_id=special.timestamp_begin))
    if options.timestamps:
        filters.append(ApplyTimestampRules(special, options.max_initial_timestamp_index))
    return LogitFilters(filters)


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
    filters = window_filters(special, rules, options)
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
    return _window_result(
        hypothesis, special.eot, options.temperature, no_speech, vocab, inference.timing
    )


def _window_result(
    hypothesis: Hypothesis,
    eot: int,
    temperature: float,
    no_speech: float,
    vocab: int,
    timing: DecoderTiming,
) -> WindowResult:
    generated = hypothesis.tokens
    ended = bool(generated) and generated[-1] == eot
    return WindowResult(
        tokens=generated[:-1] if ended else generated,
        ended=ended,
        temperature=temperature,
        avg_logprob=float(np.float32(sum(hypothesis.logprobs)) / max(len(generated), 1)),
        no_speech_prob=no_speech,
        token_compression_ratio=token_compression_ratio(generated, vocab),
        timing=timing,
    )


def decode_windows(
    model: WindowModel,
    encoded: object,
    prompts: Sequence[Sequence[int]],
    *,
    special: SpecialTokens,
    rules: GenerationRules,
    options: WindowOptions,
    rng: np.random.Generator | None = None,
) -> tuple[list[WindowResult], DecoderTiming]:
    """Decode several windows at once: row i of `encoded` after `prompts[i]`.

    The batched path's decoding (longform_batched.py): greedy or sampling at
    `options.temperature` (`BatchGreedyDecoder`), the same filters, limits, no-speech
    probability and figures as `decode_window` gives each window alone. The prompts have one
    length (they differ at most in the language token). The decoder's time is the batch's,
    returned once; each result's `timing` is empty.
    """
    if options.uses_beam_search or options.fixed_tokens is not None:
        raise ValueError("Batched windows decode greedily or by sampling, without forced tokens")
    batch = np.asarray([list(p) for p in prompts], dtype=np.int64)
    if batch.ndim != 2 or not batch.shape[0]:
        raise ValueError("Expected one prompt per window, all of one length")
    sot_index = list(batch[0]).index(special.sot)
    limit = token_limit(rules, options, batch.shape[1])
    inference = Inference(model.decoder(encoded, batch.shape[0]))
    logits = inference.prompt(batch)
    if options.transformers_no_speech and sot_index == batch.shape[1] - 1:
        no_speech = [
            transformers_no_speech_probability(row, special.no_speech, rules, beam=False)
            for row in logits[:, sot_index]
        ]
    else:
        no_speech = [no_speech_probability(row, special.no_speech) for row in logits[:, sot_index]]
    vocab = logits.shape[-1]
    decoder = BatchGreedyDecoder(special.eot, options.temperature, rng=rng, top_k=options.top_k)
    hypotheses = decoder.decode(
        inference, logits[:, -1], window_filters(special, rules, options), limit
    )
    results = [
        _window_result(h, special.eot, options.temperature, p, vocab, DecoderTiming())
        for h, p in zip(hypotheses, no_speech, strict=True)
    ]
    return results, inference.timing


# --- language -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LanguageDetection:
    """Whisper's language detection: one decoder step after <|startoftranscript|>."""

    language: str
    # Language code -> probability (softmax over the language tokens only).
    probs: Mapping[str, float]
    seconds: float


def detect_languages(
    model: WindowModel,
    encoded: object,
    rows: int,
    special: SpecialTokens,
    clock: Callable[[], float] = time.perf_counter,
) -> list[LanguageDetection]:
    """`detect_language` for each of `rows` windows in `encoded`, in one decoder call; each
    detection's `seconds` is its share of the call."""
    if not special.multilingual:
        raise ValueError("An English-only model has no language tokens")
    started = clock()
    prompt = np.full((rows, 1), special.sot, dtype=np.int64)
    logits = model.decoder(encoded, rows).step(prompt)[:, -1]
    seconds = (clock() - started) / rows
    return [_language_of(row, special, seconds) for row in logits]


def _language_of(logits: np.ndarray, special: SpecialTokens, seconds: float) -> LanguageDetection:
    codes = list(special.languages)
    ids = np.array([special.languages[c] for c in codes], dtype=np.int64)
    chosen = np.asarray(logits, dtype=np.float32)[ids]
    probs = softmax(chosen.astype(np.float64))
    best = codes[int(np.argmax(chosen))]
    return LanguageDetection(best, dict(zip(codes, probs.tolist(), strict=True)), seconds)


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
    return _language_of(logits, special, seconds)
