"""faster-whisper: the same embedded weights run by CTranslate2 with int8 compute.

It runs faster-whisper's own `WhisperModel.transcribe` on the CTranslate2 source of an
embedded model (`ct2/` beside the built folders), given the same long-form settings as the
other engines. faster-whisper computes its own features (numpy) and runs its own loop, so
only its total time is split off as "features + everything": its sections are not timed.

CTranslate2's int8 matrix products run on a library chosen by the CPU (its hardware support
and environment variable pages; `cpu/backend.cc`): its x86-64 wheels carry Intel MKL and
oneDNN and use MKL only on a genuine Intel CPU, oneDNN on others such as AMD; its ARM64 wheels
use Ruy. `CT2_USE_MKL` forces MKL on or off. The runtime note names the one this CPU gets.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Mapping
from dataclasses import replace

from ..hardware import CpuInfo, cpu_info
from ..layout import CT2_DIR, ORIGINAL_DIR
from ..longform import LogMel
from ..longform_options import LongFormResult, Segment, Timings, TranscribeOptions, WindowLanguage
from ..measure import Stopwatch
from .base import Engine, EngineError, Progress

ARM_MACHINES = ("aarch64", "arm64")


def int8_note(cpu: CpuInfo, machine: str, environ: Mapping[str, str]) -> str:
    """Which library runs CTranslate2's int8 products on `cpu`, and why, as the runtime says."""
    if machine.lower() in ARM_MACHINES:
        return "int8 compute; Ruy on this ARM CPU"
    forced = environ.get("CT2_USE_MKL", "")
    if forced:
        # CTranslate2 reads "1" or "true" as on, anything else as off.
        library = "Intel MKL" if forced.strip().lower() in ("1", "true") else "oneDNN"
        return f"int8 compute; {library} (CT2_USE_MKL={forced})"
    if cpu.vendor == "Intel":
        return "int8 compute; Intel MKL on this Intel CPU"
    if cpu.vendor == "AMD":
        return "int8 compute; oneDNN on this AMD CPU"
    return "int8 compute; Intel MKL on Intel CPUs, oneDNN on others"


class FasterWhisperEngine(Engine):
    """faster-whisper's `transcribe` with int8 compute on the same weights."""

    name = "faster-whisper"
    label = "faster-whisper (CTranslate2 int8)"
    subfolder = CT2_DIR
    metadata_subfolder = ORIGINAL_DIR
    supports_fixed_tokens = False  # its own loop cannot force tokens

    @classmethod
    def preload(cls) -> None:
        try:
            import faster_whisper  # noqa: F401
        except ImportError as e:
            raise EngineError("The faster-whisper engine needs: pip install faster-whisper") from e

    def load(self) -> None:
        self.preload()
        super().load()

    def _load(self) -> None:
        import ctranslate2
        from faster_whisper import WhisperModel

        self._ct2 = ctranslate2
        self.model = WhisperModel(
            str(self.folder), device="cpu", compute_type="int8", cpu_threads=self.threads
        )

    def runtime_details(self) -> dict:
        import faster_whisper

        return {
            "runtime": f"faster-whisper {faster_whisper.__version__}, CTranslate2 "
            f"{self._ct2.__version__} ({int8_note(cpu_info(), platform.machine(), os.environ)})",
            "graph_changes": [],
            "encoder_attention_fused": None,
        }

    def window_model(self, watch: Stopwatch):
        raise NotImplementedError("faster-whisper runs its own loop")

    def features(self, audio) -> LogMel:
        # faster-whisper computes its own features inside transcribe.
        return LogMel(audio[None, None, :], len(audio))

    def _batched(
        self, audio, options: TranscribeOptions, watch: Stopwatch, progress: Progress | None
    ) -> LongFormResult:
        """faster-whisper's `BatchedInferencePipeline` on the same model and threads, with
        the same batch size, temperature and timestamp setting: its own VAD (the same
        model and options as vad.py, so the same chunks), features and loop, all timed as
        decoding. Its segments name their chunk by its offset on the speech time line
        (`seek`); a chunk's start here is its first segment's start."""
        from faster_whisper import BatchedInferencePipeline

        started = time.perf_counter()
        segments, info = BatchedInferencePipeline(self.model).transcribe(
            audio,
            language=options.language if self.multilingual else None,
            task=options.task,
            beam_size=options.beam_size,
            temperature=options.temperatures[0],
            without_timestamps=not options.timestamps,
            max_new_tokens=options.max_new_tokens,
            multilingual=options.language_per_window,
            batch_size=options.batch_size,
        )
        return self._result(segments, info, started, chunked=True)

    def _long_form(
        self, mel: LogMel, options: TranscribeOptions, watch: Stopwatch, progress: Progress | None
    ) -> LongFormResult:
        if options.fixed_tokens is not None:
            raise ValueError("faster-whisper cannot decode a fixed number of tokens")
        audio = mel.features[0, 0]
        started = time.perf_counter()
        segments, info = self.model.transcribe(
            audio,
            language=options.language if self.multilingual else None,
            task=options.task,
            beam_size=options.beam_size,
            best_of=1,
            temperature=list(options.temperatures),
            compression_ratio_threshold=options.compression_ratio_threshold,
            log_prob_threshold=options.logprob_threshold,
            no_speech_threshold=options.no_speech_threshold,
            condition_on_previous_text=options.condition_on_previous_text,
            prompt_reset_on_temperature=options.prompt_reset_on_temperature,
            without_timestamps=not options.timestamps,
            max_initial_timestamp=options.max_initial_timestamp or 0.0,
            max_new_tokens=options.max_new_tokens,
            multilingual=options.language_per_window,
            vad_filter=False,
        )
        return self._result(segments, info, started)

    def _result(self, segments, info, started: float, *, chunked: bool = False) -> LongFormResult:
        """faster-whisper's segments (a generator: decoding happens here) as a result."""
        language = info.language if self.multilingual else "en"
        result = [
            Segment(
                start=s.start,
                end=s.end,
                text=s.text,
                tokens=tuple(s.tokens),
                language=language,
                temperature=s.temperature,
                avg_logprob=s.avg_logprob,
                no_speech_prob=s.no_speech_prob,
                compression_ratio=s.compression_ratio,
                window=s.seek,
            )
            for s in segments  # a generator: decoding happens here
        ]
        seconds = time.perf_counter() - started
        if chunked:  # chunk indices in order of their offsets, and where each starts
            index = {seek: i for i, seek in enumerate(dict.fromkeys(s.window for s in result))}
            starts: dict[int, float] = {}
            result = [
                replace(s, window=index[s.window], chunk_start=starts.setdefault(s.window, s.start))
                for s in result
            ]
        windows = len({s.window for s in result})
        # faster-whisper detects on the first 30 s only when no language is given (its
        # per-window detection is not reported); all_language_probs is that window's.
        probs = getattr(info, "all_language_probs", None) if self.multilingual else None
        detected = (WindowLanguage.from_probs(0, 0.0, dict(probs)),) if probs else ()
        return LongFormResult(
            segments=tuple(result),
            text="".join(s.text for s in result),
            tokens=tuple(t for s in result for t in s.tokens),
            language=language,
            windows=windows,
            fallback_windows=len({s.window for s in result if s.temperature > 0}),
            skipped_windows=0,
            # faster-whisper's sections are not exposed: everything counts as decoding.
            timings=Timings(
                next_steps_s=seconds, tokens_decoded=sum(len(s.tokens) for s in result)
            ),
            window_languages=detected,
        )
