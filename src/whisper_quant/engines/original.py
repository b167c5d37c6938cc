"""The original: transformers' `WhisperForConditionalGeneration` in PyTorch, stock.

By default a clip goes through transformers' own long-form `generate` (whole-clip features
with their attention mask, `return_timestamps=True, return_segments=True`, the options'
temperatures and thresholds). transformers detects the language on the first window only,
so for `language_per_window` (and for `fixed_tokens`: generate cannot force the token
sequence every other engine decodes) the original follows the shared long-form loop instead,
with the same PyTorch model computing each window (torch_window.py).

What generate decided per window (temperature, average log-probability, no-speech
probability, skip) and how long its encoder calls and decoding steps took are read by
wrappers around the model's own methods, which only observe: the model computes what it
computes without them. A step is timed whole, as the shared loop's steps are: the model call
(decoder and projection to the vocabulary), the logits processors and generate's own
bookkeeping between two steps. The `pytorch` engine (pytorch.py) runs the same model through
the shared loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..audio import SAMPLE_RATE
from ..decoding import DecoderTiming, WindowResult, text_compression_ratio
from ..layout import ORIGINAL_DIR, SEED_DIR
from ..longform import N_FRAMES, LogMel, window_features
from ..longform_batched import ChunkQueue, chunk_features, in_order, segments_of, window_batch
from ..longform_options import LongFormResult, Segment, Timings, TranscribeOptions, WindowLanguage
from ..measure import Stopwatch
from ..vad import speech_chunks
from .base import Progress
from .names import ORIGINAL
from .onnx import initialise_onnxruntime, ort_session_options
from .pytorch import PyTorchEngine

# transformers judges fallback by a compression ratio over token ids; its documentation gives
# 1.35 as the value that corresponds to openai-whisper's 2.4 over text.
TRANSFORMERS_RATIO_PER_TEXT_RATIO = 1.35 / 2.4


@dataclass(frozen=True)
class _Call:
    seconds: float  # its own: the calls made inside it are recorded apart
    # "encoder"; or "language", "first" (a prompt on an empty cache) or "next"
    kind: str
    part: str  # "encoder", "model" (a whole model call) or "step" (the rest of a step)


class _CallLog:
    """Wall-clock seconds of generate's model calls and decoding steps, read by wrappers.

    The wrappers only read the clock and the call's arguments around the methods generate
    calls on the model instance: the encoder's and the whole model's `forward` (set on the
    instance; torch modules and Optimum's session wrappers both call `self.forward`), and
    `_has_unfinished_sequences`, which the decoding loop calls before every step and once
    after the last. A step is the time between two of those calls: the model call
    (decoder and projection to the vocabulary), the logits processors, the token choice and
    generate's bookkeeping. Calls nest (the no-speech check reruns the whole model, encoder
    included, inside a step's logits processing; language detection runs the encoder inside
    a model call), so each records only its own seconds, the ones inside it apart.
    """

    def __init__(self):
        self.calls: list[_Call] = []
        # Open calls, innermost last: [started, seconds of the calls inside it].
        self._open: list[list[float]] = []
        self._step: tuple[list[float], int] | None = None  # its frame, first call inside

    def wrap_forward(self, part, kind_of) -> None:
        forward = part.forward
        label = "encoder" if kind_of is None else "model"

        def timed(*args, **kwargs):
            kind = "encoder" if kind_of is None else kind_of(kwargs)  # before the call
            frame = self._enter()
            try:
                return forward(*args, **kwargs)
            finally:
                self._leave(frame, kind, label)

        part.forward = timed

    def wrap_steps(self, model) -> None:
        unfinished = model._has_unfinished_sequences

        def has_unfinished_sequences(*args, **kwargs):
            self._end_step()
            more = unfinished(*args, **kwargs)
            if more:
                self._step = (self._enter(), len(self.calls))
            return more

        model._has_unfinished_sequences = has_unfinished_sequences

    def _enter(self) -> list[float]:
        frame = [time.perf_counter(), 0.0]
        self._open.append(frame)
        return frame

    def _leave(self, frame: list[float], kind: str, part: str) -> None:
        elapsed = time.perf_counter() - frame[0]
        depth = next((i for i, f in enumerate(self._open) if f is frame), len(self._open))
        del self._open[depth:]
        if self._open:
            self._open[-1][1] += elapsed
        self.calls.append(_Call(elapsed - frame[1], kind, part))

    def _end_step(self) -> None:
        if self._step is None:
            return
        frame, first = self._step
        self._step = None
        # The step's own time goes with its model call: a prompt step or a later one.
        kind = next(
            (c.kind for c in self.calls[first:] if c.part == "model" and c.kind != "language"),
            "next",
        )
        self._leave(frame, kind, "step")

    def take(self) -> list[_Call]:
        self._end_step()
        calls, self.calls, self._open = self.calls, [], []
        return calls


def _kind(kwargs) -> str:
    # transformers' detect_language runs the model with use_cache=False; generation steps
    # use the cache, empty on a decoding's first (prompt) step.
    if kwargs.get("use_cache") is False:
        return "language"
    cache = kwargs.get("past_key_values")
    if cache is None or (hasattr(cache, "get_seq_length") and cache.get_seq_length() == 0):
        return "first"
    return "next"


@dataclass(frozen=True)
class _Attempt:
    """One decoding of one window by generate, as its fallback check saw it."""

    temperature: float
    needs_fallback: bool
    should_skip: bool
    avg_logprob: float
    no_speech_prob: float


class _FallbackLog:
    """Reads each of generate's fallback checks (`_need_fallback`), one per attempt."""

    def __init__(self, model):
        from transformers.generation.logits_process import WhisperNoSpeechDetection

        self.attempts: list[_Attempt] = []
        need, average = model._need_fallback, model._retrieve_avg_logprobs
        seen: dict[str, float] = {}

        def retrieve_avg_logprobs(scores, tokens, temperature):
            value = average(scores, tokens, temperature)
            seen["logprob"] = float(value)
            return value

        def need_fallback(seek_sequence, seek_outputs, index, processors, config, *rest):
            seen.clear()
            needs, skip = need(seek_sequence, seek_outputs, index, processors, config, *rest)
            if "logprob" not in seen and "sequences_scores" in seek_outputs[index]:
                seen["logprob"] = float(seek_outputs[index]["sequences_scores"])
            no_speech = next(
                (
                    p.no_speech_prob[index]
                    for p in processors or ()
                    if isinstance(p, WhisperNoSpeechDetection)
                ),
                math.nan,
            )
            temperature = rest[-1] if rest else 0.0
            self.attempts.append(
                _Attempt(
                    float(temperature or 0.0),
                    bool(needs),
                    bool(skip),
                    seen.get("logprob", math.nan),
                    float(no_speech),
                )
            )
            return needs, skip

        model._retrieve_avg_logprobs = retrieve_avg_logprobs
        model._need_fallback = need_fallback

    def take_windows(self, last_temperature: float) -> list[list[_Attempt]]:
        """The attempts grouped by window: a window ends with an attempt that needed no
        fallback, or with the last temperature."""
        windows: list[list[_Attempt]] = []
        current: list[_Attempt] = []
        for attempt in self.attempts:
            current.append(attempt)
            if not attempt.needs_fallback or attempt.temperature >= last_temperature:
                windows.append(current)
                current = []
        if current:
            windows.append(current)
        self.attempts = []
        return windows


class OriginalEngine(PyTorchEngine):
    """The standard transformers path: `WhisperForConditionalGeneration.generate` in PyTorch."""

    name = ORIGINAL
    label = "Original (PyTorch fp32)"
    subfolder = ORIGINAL_DIR
    long_form = "transformers generate"

    def _load(self) -> None:
        super()._load()
        self._observe(self.model)

    def _observe(self, model) -> None:
        self._calls = _CallLog()
        self._calls.wrap_forward(model.get_encoder(), None)
        self._calls.wrap_forward(model, _kind)
        self._calls.wrap_steps(model)
        self._fallbacks = _FallbackLog(model)

    def _long_form(
        self, mel: LogMel, options: TranscribeOptions, watch: Stopwatch, progress: Progress | None
    ) -> LongFormResult:
        if options.language_per_window or options.fixed_tokens is not None:
            result = super()._long_form(mel, options, watch, progress)
            self._calls.take(), self._fallbacks.take_windows(0)
            return result
        return self._generate(mel, options)

    def _batched(
        self, audio, options: TranscribeOptions, watch: Stopwatch, progress: Progress | None
    ) -> LongFormResult:
        """The same chunks as every engine (longform_batched.py), `batch_size` windows per
        stock `generate` call on a batch of input features: one call each
        (`force_unique_generate_call`), no previous text, at the first temperature. Its
        tokens become segments as the shared path's do (`longform_batched.segments_of`),
        and a window that ends on a timestamp pair leaves the rest of its chunk to a later
        call, as there (`ChunkQueue`); generate does not return each window's
        log-probability or no-speech probability, so they are NaN."""
        torch = self._torch
        with watch.section("features"):
            chunks = chunk_features(self._features, audio, speech_chunks(audio))
        torch.manual_seed(options.seed)
        self._calls.take()
        eot, special = self.special.eot, self.special
        segments: list[Segment] = []
        tokens_decoded = 0
        language = options.language if self.multilingual else "en"
        first_language = language
        queue = ChunkQueue(chunks)
        while queue:
            first = queue.taken
            batch = queue.take(options.batch_size)
            if progress is not None:
                progress(first, queue.reached_s, len(audio) / SAMPLE_RATE)
            kwargs = {
                "input_features": torch.from_numpy(window_batch(batch)),
                "return_timestamps": options.timestamps,
                "temperature": options.temperatures[0],
                "condition_on_prev_tokens": False,
                "force_unique_generate_call": True,
                "return_dict_in_generate": True,
            }
            if self.multilingual:
                kwargs["language"] = options.language
                kwargs["task"] = options.task
            if options.max_new_tokens is not None:
                kwargs["max_new_tokens"] = options.max_new_tokens
            with torch.inference_mode():
                out = self.model.generate(**kwargs)
            rests = []
            for item, row in zip(batch, out.sequences.tolist(), strict=True):
                row_language = self._language_in(row) or language or "en"
                first_language = first_language or row_language
                start = 0
                while start < len(row) and eot < row[start] < special.timestamp_begin:
                    start += 1  # the prompt: <|sot|> [<|lang|> <|task|>] [<|notimestamps|>]
                generated = row[start:]
                ended = eot in generated
                tokens = tuple(generated[: generated.index(eot)] if ended else generated)
                tokens_decoded += len(tokens) + int(ended)
                text = self.decode_text(tokens)
                result = WindowResult(
                    tokens, ended, options.temperatures[0], math.nan, math.nan, 0.0,
                    DecoderTiming(),
                )  # fmt: skip
                done, rest = segments_of(
                    result,
                    item,
                    language=row_language,
                    compression_ratio=text_compression_ratio(text) if text else 0.0,
                    special=special,
                    text_of=self.decode_text,
                )
                segments += done
                rests.append(rest)
            queue.resume(rests)
        calls = self._calls.take()
        self._fallbacks.take_windows(0)
        ordered = in_order(segments)
        tokens = tuple(t for s in ordered for t in s.tokens)
        return LongFormResult(
            segments=ordered,
            text="".join(s.text for s in ordered),
            tokens=tokens,
            language=first_language,
            windows=queue.taken,
            fallback_windows=0,
            skipped_windows=0,
            timings=_call_timings(calls, tokens_decoded),
            resumed_windows=queue.resumed,
        )

    def _language_in(self, sequence: list[int]) -> str | None:
        """The language token after <|startoftranscript|> in a decoder sequence."""
        if not self.multilingual or self.special.sot not in sequence:
            return None
        index = sequence.index(self.special.sot) + 1
        return self.special.language_by_id.get(sequence[index]) if index < len(sequence) else None

    def untimed_languages(
        self, mel: LogMel, options: TranscribeOptions, result: LongFormResult
    ) -> tuple[WindowLanguage, ...]:
        """The first window's language probabilities, when stock generate detected it.

        generate's `detect_language` returns the chosen language, not its probabilities. They
        are computed again here, after the latency was measured, so this extra encoder pass and
        decoder step are in no timing: the same model and the same maths (the encoder on the
        first 3000 frames, one decoder step on <|startoftranscript|>; generate takes the
        argmax over the language tokens, whose softmax `detect_language` gives).
        """
        if options.language is not None or options.language_per_window or options.fixed_tokens:
            return ()  # the shared loop reported its own, or nothing was detected
        from ..decoding import detect_language
        from ..torch_window import TorchWindowModel

        model = TorchWindowModel(self.model)
        encoded = model.encode(window_features(mel.features, 0, min(mel.frames, N_FRAMES)))
        detection = detect_language(model, encoded, self.special)
        self._calls.take()  # the wrappers observed these calls: they are not generate's
        return (WindowLanguage.from_probs(0, 0.0, detection.probs),)

    def generate_kwargs(self, mel: LogMel, options: TranscribeOptions) -> dict:
        """transformers' long-form `generate` arguments for these options."""
        torch = self._torch
        ratio = options.compression_ratio_threshold
        if ratio is not None and options.compression_ratio_kind == "text":
            ratio *= TRANSFORMERS_RATIO_PER_TEXT_RATIO
        kwargs = {
            "input_features": torch.from_numpy(mel.features),
            "return_timestamps": options.timestamps,
            "return_segments": True,
            "condition_on_prev_tokens": options.condition_on_previous_text,
            "temperature": options.temperatures,
            "compression_ratio_threshold": ratio,
            "logprob_threshold": options.logprob_threshold,
            "no_speech_threshold": options.no_speech_threshold,
            "num_beams": options.beam_size,
        }
        if mel.attention_mask is not None:
            kwargs["attention_mask"] = torch.from_numpy(mel.attention_mask)
        if self.multilingual:
            kwargs["language"] = options.language
            kwargs["task"] = options.task
        if options.max_new_tokens is not None:
            kwargs["max_new_tokens"] = options.max_new_tokens
        if options.length_penalty is not None:
            kwargs["length_penalty"] = options.length_penalty
        return kwargs

    def _generate(self, mel: LogMel, options: TranscribeOptions) -> LongFormResult:
        torch = self._torch
        torch.manual_seed(options.seed)  # sampling at temperature > 0 can be repeated
        self._calls.take()
        with torch.inference_mode():
            out = self.model.generate(**self.generate_kwargs(mel, options))
        calls = self._calls.take()
        windows = self._fallbacks.take_windows(options.temperatures[-1])
        decoded = [w[-1] for w in windows if not w[-1].should_skip]
        segments, language = self._segments(out["segments"][0], decoded, options)
        tokens = tuple(t for t in out["sequences"][0].tolist() if t != self.special.eot)
        text = "".join(self.decode_text(s.tokens) for s in segments)
        decoder_calls = sum(c.part == "model" and c.kind in ("first", "next") for c in calls)
        timings = _call_timings(calls, decoder_calls)
        return LongFormResult(
            segments=tuple(segments),
            text=text,
            tokens=tokens,
            language=language,
            windows=len(windows),
            fallback_windows=sum(1 for w in windows if len(w) > 1),
            skipped_windows=sum(1 for w in windows if w[-1].should_skip),
            timings=timings,
        )

    def _segments(self, raw: list[dict], decoded: list[_Attempt], options: TranscribeOptions):
        """generate's segments as Segments; the language from each window's prompt."""
        segments: list[Segment] = []
        windows: dict[int, int] = {}
        language = options.language if self.multilingual else "en"
        for item in raw:
            window = windows.setdefault(id(item["result"]), len(windows))
            attempt = decoded[window] if window < len(decoded) else None
            window_language = self._prompt_language(item["result"]) or language
            language = language or window_language
            tokens = tuple(int(t) for t in item["tokens"].tolist())
            text = self.decode_text(tokens)
            segments.append(
                Segment(
                    start=float(item["start"]),
                    end=float(item["end"]),
                    text=text,
                    tokens=tokens,
                    language=window_language or "en",
                    temperature=attempt.temperature if attempt else math.nan,
                    avg_logprob=attempt.avg_logprob if attempt else math.nan,
                    no_speech_prob=attempt.no_speech_prob if attempt else math.nan,
                    compression_ratio=text_compression_ratio(text) if text else 0.0,
                    window=window,
                )
            )
        return segments, language

    def _prompt_language(self, result: dict) -> str | None:
        """The language token after <|startoftranscript|> in a window's decoder input."""
        if "sequences" not in result:
            return None
        return self._language_in(result["sequences"].tolist())


_KINDS = ("encoder", "language", "first", "next")


def _call_timings(calls, tokens_decoded: int) -> Timings:
    """Timings from the wrapped model calls of one transcription: seconds per kind, and the
    steps after each window's first."""
    seconds = {kind: sum(c.seconds for c in calls if c.kind == kind) for kind in _KINDS}
    return Timings(
        encoder_s=seconds["encoder"],
        language_s=seconds["language"],
        first_step_s=seconds["first"],
        next_steps_s=seconds["next"],
        next_steps=sum(c.part == "model" and c.kind == "next" for c in calls),
        tokens_decoded=tokens_decoded,
    )


class OptimumEngine(OriginalEngine):
    """The article's recipe as the article ran it: int8-seed's files through Optimum's `generate`.

    The int8-seed recipe's files (`AutoQuantizationConfig.avx512_vnni(is_static=False,
    per_channel=False)` on every operator), loaded with `ORTModelForSpeechSeq2Seq` and
    onnxruntime's default session options (same thread count), decoded by transformers'
    long-form `generate` like the original. The `int8-seed` engine runs the same files with the
    studio's loop, which separates the recipe from the loop. Built with `--recipes int8-seed`
    (or `--baseline`).
    """

    name = "optimum"
    label = "Article's recipe via Optimum's generate"
    subfolder = SEED_DIR
    supports_fixed_tokens = False  # only Optimum's generate, which cannot force tokens

    @classmethod
    def preload(cls) -> None:
        super().preload()
        import optimum.onnxruntime  # noqa: F401

    def initialise_runtime(self) -> None:
        super().initialise_runtime()
        initialise_onnxruntime(self.threads, tuned=False)

    def _load(self) -> None:
        import torch
        from optimum.onnxruntime import ORTModelForSpeechSeq2Seq

        torch.set_num_threads(self.threads)
        self._torch = torch
        options, self._session_options = ort_session_options(self.threads, tuned=False)
        self.model = ORTModelForSpeechSeq2Seq.from_pretrained(
            self.folder, provider="CPUExecutionProvider", session_options=options
        )
        self._observe(self.model)

    def untimed_languages(self, mel, options, result) -> tuple[WindowLanguage, ...]:
        return ()  # Optimum's generate does not expose its language probabilities

    def window_model(self, watch: Stopwatch):
        raise NotImplementedError(
            "The plain Optimum recipe runs only through Optimum's generate: no per-window "
            "language or fixed token counts"
        )

    def runtime_details(self) -> dict:
        import onnxruntime

        return {
            "runtime": f"onnxruntime {onnxruntime.__version__} via Optimum's generate",
            "graph_changes": [],
            "encoder_attention_fused": False,
            "session_options": self._session_options,
        }
