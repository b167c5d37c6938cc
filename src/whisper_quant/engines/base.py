"""The engine interface: what every engine shares, and what each one supplies.

Every engine gets the same decoded audio, computes the same log-mel features of the whole
clip with the same code (transformers' WhisperFeatureExtractor, via `longform.log_mel`), and
is given the same `TranscribeOptions`. The ONNX engines (and the original, for languages
detected per window) supply a `WindowModel` (encoder output and per-step logits) to the one
long-form algorithm in longform.py; the original's default path is transformers' own
long-form `generate`, stock. So a difference in the results is the model's and runtime's.
"""

from __future__ import annotations

import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..audio import SAMPLE_RATE, is_silent
from ..decoding import GenerationRules, WindowModel
from ..layout import CONFIG_FILE, GENERATION_CONFIG_FILE, weight_bytes
from ..longform import LogMel, log_mel, transcribe
from ..longform_batched import chunk_features, transcribe_batched
from ..longform_options import (
    LongFormResult,
    Progress,
    Segment,
    TranscribeOptions,
    WindowLanguage,
    fit_to_model,
)
from ..measure import Stopwatch
from ..tokens import SpecialTokens, is_multilingual, special_tokens
from ..vad import speech_chunks

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 2
NOTICE_SILENT = "No speech detected: the clip is empty or silent, so nothing was transcribed."

# The sections that add up to a transcription's time, without overlap ("first_step" is
# part of "decoder"); the rest of its total is reported as "other".
TIMED_SECTIONS = ("features", "encoder", "cross_kv", "language", "decoder")


class EngineError(RuntimeError):
    """An engine cannot load or run; the message says why and what to do."""


@dataclass(frozen=True)
class Transcription:
    """One engine's transcript of one clip, its segments, and where the time went."""

    engine: str
    text: str
    language: str | None  # the first window's
    tokens: tuple[int, ...]  # every segment's tokens, timestamps included
    audio_s: float
    # Wall-clock seconds: "features", "encoder", ["cross_kv"], ["language"], "first_step",
    # "decoder" (every decoder step, the first steps included), "other" (the total minus
    # TIMED_SECTIONS) and "total".
    timings: Mapping[str, float]
    segments: tuple[Segment, ...] = ()
    windows: int = 0  # 30 s windows decoded (skipped ones included)
    fallback_windows: int = 0  # windows decoded again at a higher temperature
    skipped_windows: int = 0  # windows skipped as silence (no-speech rule)
    # Windows resumed after one ended early (language per window; batched: a chunk's rest)
    resumed_windows: int = 0
    tokens_decoded: int = 0  # tokens the decoder produced, fallback attempts included
    # Decoder calls after each decoding's prompt step (one token per row each); 0 where a
    # runtime's own loop does not time its steps apart.
    next_steps: int = 0
    notice: str = ""
    # Language identification: the first window's top languages, and every window's with
    # language per window; empty when the language was given or the model is English-only.
    window_languages: tuple[WindowLanguage, ...] = ()
    # Filled in by the worker process that ran the engine (see workers.py).
    peak_memory_bytes: int | None = None

    @property
    def latency_s(self) -> float:
        return self.timings.get("total", 0.0)

    @property
    def rtf(self) -> float:
        """Real-time factor: processing time over audio duration (below 1 is faster than real time)."""
        return self.latency_s / self.audio_s if self.audio_s else 0.0

    @property
    def tokens_per_s(self) -> float:
        decoder = self.timings.get("decoder", 0.0)
        return self.tokens_decoded / decoder if decoder else 0.0


class Engine(ABC):
    """The interface every engine implements."""

    name: ClassVar[str]
    label: ClassVar[str]
    # The subfolder of a built model this engine loads, and the one whose tokenizer, config
    # and generation config it reads (the same, unless its runtime keeps its own format).
    subfolder: ClassVar[str]
    metadata_subfolder: ClassVar[str | None] = None
    # Whether it can decode `TranscribeOptions.fixed_tokens` (forced tokens through the shared
    # loop); engines that only run a library's own loop cannot.
    supports_fixed_tokens: ClassVar[bool] = True

    def __init__(self, model_dir: Path | str, *, threads: int = DEFAULT_THREADS):
        self.model_dir = Path(model_dir)
        self.folder = self.model_dir / self.subfolder
        self.threads = threads
        self._loaded = False

    # --- to implement --------------------------------------------------------------------

    @classmethod  # noqa: B027 - an optional hook, not an abstract method
    def preload(cls) -> None:
        """Import the engine's heavy libraries (so a worker can measure memory after imports)."""

    def initialise_runtime(self) -> None:  # noqa: B027 - an optional hook
        """Run a one-operator model so the runtime's own one-off set-up (thread pools,
        kernel registries) is done before a worker takes its memory baseline: that cost
        belongs to the library, like its import, not to the model."""

    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def window_model(self, watch: Stopwatch) -> WindowModel:
        """The model behind the shared loop; it may time its parts in `watch`."""

    def _long_form(
        self, mel: LogMel, options: TranscribeOptions, watch: Stopwatch, progress: Progress | None
    ) -> LongFormResult:
        """The whole clip, window by window: by default the shared long-form algorithm."""
        return transcribe(
            self.window_model(watch),
            mel.features,
            mel.frames,
            special=self.special,
            rules=self.rules,
            decode_text=self.decode_text,
            options=options,
            progress=progress,
        )

    def _batched(
        self,
        audio: np.ndarray,
        options: TranscribeOptions,
        watch: Stopwatch,
        progress: Progress | None,
    ) -> LongFormResult:
        """The clip cut at pauses into chunks decoded `options.batch_size` at a time
        (longform_batched.py); by default through the shared loop. The voice-activity
        detector and each chunk's features are timed together as "features"."""
        with watch.section("features"):
            chunks = chunk_features(self._features, audio, speech_chunks(audio))
        return transcribe_batched(
            self.window_model(watch),
            chunks,
            special=self.special,
            rules=self.rules,
            decode_text=self.decode_text,
            options=options,
            audio_s=len(audio) / SAMPLE_RATE,
            progress=progress,
        )

    def runtime_details(self) -> dict:
        """What runs, for load reports: runtime, graph changes, session options."""
        return {}

    def untimed_languages(
        self, mel: LogMel, options: TranscribeOptions, result: LongFormResult
    ) -> tuple[WindowLanguage, ...]:
        """Language identification the engine's own loop made but did not report, computed
        after its latency was measured; by default none (the shared loop reports its own in
        `result.window_languages`)."""
        return ()

    # --- shared --------------------------------------------------------------------------

    def prepare(self) -> None:
        """Load what every engine shares: tokenizer, configs and the feature extractor.

        Kept apart from the model so a worker can measure the model's memory alone.
        """
        if hasattr(self, "special"):
            return
        if not self.folder.is_dir():
            raise EngineError(f"{self.folder} does not exist: build the model first")
        from transformers import WhisperFeatureExtractor

        from ..tokens import load_tokenizer

        meta = self.model_dir / (self.metadata_subfolder or self.subfolder)
        self._tokenizer = load_tokenizer(meta)
        config = json.loads((meta / CONFIG_FILE).read_text())
        generation = json.loads((meta / GENERATION_CONFIG_FILE).read_text())
        self.multilingual = is_multilingual(config["vocab_size"])
        self.special: SpecialTokens = special_tokens(
            self._tokenizer,
            multilingual=self.multilingual,
            lang_ids=list(generation.get("lang_to_id", {}).values()) or None,
        )
        self.rules = GenerationRules.from_generation_config(generation)
        self._features = WhisperFeatureExtractor.from_pretrained(meta)

    def warm_shared(self, audio: np.ndarray) -> None:
        """Run the steps every engine shares (features, detokenizing) once, without a model.

        Their first use touches code and caches (transformers computes features with torch)
        that would otherwise be charged to whichever model a worker loads: a worker calls
        this before its baseline reading, so memory held is the model's alone.
        """
        self.prepare()
        log_mel(self._features, audio)
        self.decode_text([self.special.eot - 1])

    def load(self) -> None:
        if self._loaded:
            return
        self.prepare()
        self._load()
        self._loaded = True

    @property
    def languages(self) -> list[str]:
        return sorted(self.special.languages) if self.multilingual else ["en"]

    def decode_text(self, tokens) -> str:
        """Text of token ids; special and timestamp tokens (every id from <|endoftext|> on)
        are skipped, whether or not a model's tokenizer file marks them special."""
        eot = self.special.eot
        return self._tokenizer.decode([t for t in tokens if t < eot], skip_special_tokens=True)

    def features(self, audio: np.ndarray) -> LogMel:
        """Log-mel features of the whole clip, as the long-form algorithm takes them."""
        return log_mel(self._features, audio)

    def check(self, options: TranscribeOptions) -> TranscribeOptions:
        """The options this model can follow, or ValueError saying why not (`fit_to_model`)."""
        return fit_to_model(
            options,
            self.model_dir.name,
            multilingual=self.multilingual,
            languages=self.special.languages,
        )

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions | None = None,
        *,
        progress: Progress | None = None,
        **fields,
    ) -> Transcription:
        """Transcribe 16 kHz mono float32 `audio` of any length, window by window.

        `options` (default TranscribeOptions()) with any of its `fields` replaced.
        """
        self.load()
        options = self.check(replace(options or TranscribeOptions(), **fields))
        audio = np.asarray(audio, dtype=np.float32)
        audio_s = len(audio) / SAMPLE_RATE
        if is_silent(audio):
            return Transcription(
                self.name, "", options.language, (), audio_s, {"total": 0.0}, notice=NOTICE_SILENT
            )
        watch = Stopwatch()
        started = time.perf_counter()
        mel = None
        if options.batch_size > 1:
            result = self._batched(audio, options, watch, progress)
        else:
            with watch.section("features"):
                mel = self.features(audio)
            result = self._long_form(mel, options, watch, progress)
        total = time.perf_counter() - started
        timings = {"features": watch.seconds.get("features", 0.0)}
        own = watch.seconds
        # Engines that time their own parts (encoder, cross_kv) put them in `watch`.
        if own.get("encoder", result.timings.encoder_s):
            timings["encoder"] = own.get("encoder", result.timings.encoder_s)
        if "cross_kv" in own:
            timings["cross_kv"] = own["cross_kv"]
        if result.timings.language_s:
            timings["language"] = result.timings.language_s
        if result.timings.first_step_s:  # runtimes with their own loop do not report it
            timings["first_step"] = result.timings.first_step_s
        timings["decoder"] = result.timings.decoder_s
        # What no section timed: the loop's own work between the model calls.
        timings["other"] = max(total - sum(timings.get(k, 0.0) for k in TIMED_SECTIONS), 0.0)
        timings["total"] = total
        language = result.language if self.multilingual else "en"
        window_languages = result.window_languages
        if self.multilingual and not window_languages and mel is not None:
            window_languages = self.untimed_languages(mel, options, result)
        return Transcription(
            engine=self.name,
            text=result.text.strip(),
            language=language,
            tokens=result.tokens,
            audio_s=audio_s,
            timings=timings,
            segments=result.segments,
            windows=result.windows,
            fallback_windows=result.fallback_windows,
            skipped_windows=result.skipped_windows,
            resumed_windows=result.resumed_windows,
            tokens_decoded=result.timings.tokens_decoded,
            next_steps=result.timings.next_steps if result.timings.first_step_s else 0,
            window_languages=window_languages if self.multilingual else (),
        )

    def disk_bytes(self) -> int:
        """Size on disk of the weight files this engine loads."""
        return weight_bytes(self.folder)


def with_memory(result: Transcription, peak_bytes: int) -> Transcription:
    return replace(result, peak_memory_bytes=peak_bytes)
