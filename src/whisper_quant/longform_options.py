"""Long-form options and results: the frozen dataclasses every engine and view shares.

`TranscribeOptions` carries openai-whisper's defaults to every engine unchanged;
`fit_to_model` checks a model's language rules once, where options are built; `Segment`,
`WindowLanguage`, `Timings` and `LongFormResult` are what the loop in longform.py returns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace

from .decoding import DEFAULT_TOP_K, N_TEXT_CTX, WindowOptions
from .tokens import TASKS

# openai-whisper's defaults.
DEFAULT_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
COMPRESSION_RATIO_KINDS = ("text", "tokens")
# fixed_tokens: the decoder's 448 positions minus the longest start (sot, language, task,
# notimestamps).
MAX_FIXED_TOKENS = N_TEXT_CTX - 4
# early_end_resume_s as the app and the benchmark set it for language per window: a window
# that ends this many seconds or more before its end resumes at its last segment.
EARLY_END_RESUME_S = 5.0


@dataclass(frozen=True)
class TranscribeOptions:
    """Long-form settings; the defaults are openai-whisper's."""

    # Language code; None detects it (multilingual models). English-only models use "en".
    language: str | None = None
    # "transcribe" or "translate" (to English; multilingual models only).
    task: str = "transcribe"
    # Above 1: beam search at temperature 0 (sampling temperatures always use one sample).
    beam_size: int = 1
    # Tried in order while a window fails the thresholds; (0.0,) turns fallback off.
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    # Fallback when the window's compression ratio is above this (None: never).
    compression_ratio_threshold: float | None = 2.4
    # Which ratio: "text" (openai-whisper, gzip of the text) or "tokens" (transformers).
    compression_ratio_kind: str = "text"
    # Fallback when the window's average log-prob is below this (None: never).
    logprob_threshold: float | None = -1.0
    # Skip a window as silence when no-speech prob is above this and the average log-prob is
    # below `logprob_threshold` (None, or no logprob_threshold: never skip).
    no_speech_threshold: float | None = 0.6
    # Prompt each window with the previous windows' tokens (<|startofprev|>).
    condition_on_previous_text: bool = True
    # A window decoded at this temperature or above leaves the next one without a prompt.
    prompt_reset_on_temperature: float = 0.5
    # Detect the language on every window (multilingual models, language=None).
    language_per_window: bool = False
    # The first timestamp of a window is at most this many seconds (None: no limit).
    max_initial_timestamp: float | None = 1.0
    # Finished beams score sum(logprobs) / length ** length_penalty; None means 1.0.
    length_penalty: float | None = None
    # Seed of the numpy generator used when sampling (temperature > 0).
    seed: int = 0
    # At most this many tokens per window (also bounded by the 448 decoder positions).
    max_new_tokens: int | None = None
    # Benchmarks: decode exactly N forced tokens per window (see the module's docstring).
    fixed_tokens: int | None = None
    # Predict timestamps (segments); False: one segment per window, <|notimestamps|>.
    timestamps: bool = True
    # Sampling keeps the k most probable tokens (transformers' default 50); None: all.
    top_k: int | None = DEFAULT_TOP_K
    # Reproduce transformers 4.57's no-speech probability: 0 for English-only models, so
    # their windows are never skipped (see decoding.transformers_no_speech_probability).
    transformers_no_speech: bool = False
    # With language_per_window: a window that ends with a single timestamp at least this many
    # seconds before its end resumes at its last segment's end (None: past the window, as
    # openai-whisper and transformers do). See the module's docstring.
    early_end_resume_s: float | None = None
    # Above 1: the batched path (longform_batched.py): the recording cut at pauses by a
    # voice-activity detector into chunks of at most 30 s, decoded this many at a time,
    # greedily, at the first temperature, without previous text. 1: the sequential windows.
    batch_size: int = 1

    def __post_init__(self):
        temperatures = tuple(float(t) for t in self.temperatures)
        object.__setattr__(self, "temperatures", temperatures)
        if not temperatures or any(not t >= 0 for t in temperatures):
            raise ValueError("temperatures must be one or more values of 0 or more")
        if self.task not in TASKS:
            raise ValueError(f"Unknown task {self.task!r}; choose one of: {', '.join(TASKS)}")
        if self.beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        if self.compression_ratio_kind not in COMPRESSION_RATIO_KINDS:
            raise ValueError(
                f"compression_ratio_kind must be one of: {', '.join(COMPRESSION_RATIO_KINDS)}"
            )
        if self.no_speech_threshold is not None and not 0 <= self.no_speech_threshold <= 1:
            raise ValueError("no_speech_threshold must be between 0 and 1 (or None)")
        if self.language_per_window and self.language is not None:
            raise ValueError(
                "Language per window detects the language itself: choose auto-detect, "
                "or turn language per window off to fix a language."
            )
        # A forced decoding's prompt is at most 4 tokens: sot, language, task, notimestamps.
        limits = {"max_new_tokens": N_TEXT_CTX - 1, "fixed_tokens": MAX_FIXED_TOKENS}
        for name, limit in limits.items():
            value = getattr(self, name)
            if value is not None and not 1 <= value <= limit:
                raise ValueError(f"{name} must be between 1 and {limit} (or None)")
        if self.max_initial_timestamp is not None and self.max_initial_timestamp < 0:
            raise ValueError("max_initial_timestamp must be 0 or more (or None)")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be at least 1 (or None)")
        if self.early_end_resume_s is not None and not self.early_end_resume_s > 0:
            raise ValueError("early_end_resume_s must be more than 0 (or None)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.batch_size > 1 and self.beam_size > 1:
            raise ValueError("Batched windows decode greedily: set the beam size to 1.")
        if self.batch_size > 1 and self.fixed_tokens is not None:
            raise ValueError("fixed_tokens decodes sequential windows: set batch_size to 1.")

    def window_options(self, temperature: float) -> WindowOptions:
        return WindowOptions(
            temperature=temperature,
            beam_size=self.beam_size,
            length_penalty=self.length_penalty,
            timestamps=self.timestamps and self.fixed_tokens is None,
            max_initial_timestamp=self.max_initial_timestamp,
            max_new_tokens=self.max_new_tokens,
            fixed_tokens=self.fixed_tokens,
            top_k=self.top_k,
            transformers_no_speech=self.transformers_no_speech,
        )


def fit_to_model(
    options: TranscribeOptions, model: str, *, multilingual: bool, languages: Collection[str]
) -> TranscribeOptions:
    """`options` as `model` follows them, or ValueError saying what it cannot do.

    The one home of the model's rules, applied where options meet a model (the app's menus,
    `Engine.transcribe`); `transcribe` below trusts its options. An English-only model
    transcribes English only and has no language token to set (language None, nothing to
    detect per window); a multilingual one knows `languages` (any, when empty: not built yet).
    The task itself is checked where options are built (`TranscribeOptions`).
    """
    if not multilingual:
        if options.task != "transcribe":
            raise ValueError(f"{model} is English-only: it can transcribe but not translate.")
        if options.language is not None and options.language.strip().lower() != "en":
            raise ValueError(f"{model} is English-only: choose auto-detect or en.")
        return replace(options, language=None, language_per_window=False)
    if options.language is None:
        return options
    code = options.language.strip().lower()
    if languages and code not in languages:
        raise ValueError(f"{model} does not know the language {options.language!r}.")
    return replace(options, language=code)


@dataclass(frozen=True)
class Segment:
    """A stretch of speech between two timestamps; window-level figures repeat on each."""

    start: float  # seconds from the start of the audio
    end: float
    text: str
    tokens: tuple[int, ...]  # timestamps included, as transformers returns them
    language: str
    temperature: float  # of the decoding that produced the window
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float  # the kind the fallback judged (options.compression_ratio_kind)
    window: int  # index of the window it came from (the batched path: of its chunk)
    # The batched path: where the segment's chunk starts in the audio, seconds (its first
    # speech span; vad.Chunk.start_s). None for sequential windows.
    chunk_start: float | None = None


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds of the model calls (time.perf_counter), over all windows."""

    encoder_s: float = 0.0
    language_s: float = 0.0
    # The prompt step of each decoding (fallback attempts included).
    first_step_s: float = 0.0
    # The rest of each decoding: every later step whole (the decoder call with the logits
    # filtering and token choice around it), and how many steps (one token per row each).
    next_steps_s: float = 0.0
    next_steps: int = 0
    # Tokens of each decoding's result, end tokens and discarded fallback attempts included.
    tokens_decoded: int = 0

    @property
    def decoder_s(self) -> float:
        return self.first_step_s + self.next_steps_s


# Language identification keeps the most probable languages of each window detected.
TOP_LANGUAGES = 3


@dataclass(frozen=True)
class WindowLanguage:
    """A window's language identification: its most probable languages, best first.

    Probabilities are the softmax over the language tokens after <|startoftranscript|>
    (decoding.detect_language), rounded to 4 decimals.
    """

    window: int  # index of the window (0: the first)
    start_s: float  # where the window starts in the audio, seconds
    top: tuple[tuple[str, float], ...]  # (code, probability), at most TOP_LANGUAGES

    @classmethod
    def from_probs(
        cls, window: int, start_s: float, probs: Mapping[str, float], n: int = TOP_LANGUAGES
    ) -> WindowLanguage:
        best = sorted(probs.items(), key=lambda item: (-item[1], item[0]))[:n]
        return cls(
            window, round(float(start_s), 2), tuple((c, round(float(p), 4)) for c, p in best)
        )


@dataclass(frozen=True)
class LongFormResult:
    segments: tuple[Segment, ...]
    text: str  # decode_text of every segment's text tokens, not stripped
    tokens: tuple[int, ...]  # every segment's tokens in order (transformers' `sequences`)
    language: str | None  # the first window's (per-window languages are on the segments)
    windows: int  # windows decoded, skipped ones included
    fallback_windows: int  # windows decoded more than once (temperature fallback)
    skipped_windows: int  # windows skipped as silence
    timings: Timings
    # Windows that ended early and were resumed at their last segment (early_end_resume_s);
    # batched: windows decoded for the rest of a chunk after a window ended on a timestamp pair.
    resumed_windows: int = 0
    # Each language detection made: the first window's, and every window's with
    # language_per_window; none when the language was given or the model is English-only.
    window_languages: tuple[WindowLanguage, ...] = ()


# How the decoding of a clip reports its progress: progress(window, seek seconds, total
# seconds), called before each 30 s window. The only `Progress` type: the app's progress bar
# (fraction done, message) is `service.ProgressBar`.
Progress = Callable[[int, float, float], None]
