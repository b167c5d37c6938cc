"""Transcription engines behind one interface: the original, its ONNX copies, and faster-whisper.

Every engine gets the same decoded audio, splits it with the same long-form method, computes
the same log-mel features with the same code, detects the language the same way and follows
the same decoding rules (prompt, suppressed tokens, greedy or beam search, token limit). What
differs is only the model and its runtime, so a difference in the results is theirs.
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

from .audio import SAMPLE_RATE, is_silent, split_for_long_form
from .layout import (
    BASELINE_DIR,
    CT2_DIR,
    DECODER_FILE,
    ENCODER_FILE,
    ONNX_FP32_DIR,
    ORIGINAL_DIR,
    QUANTIZED_DIR,
    weight_bytes,
)
from .measure import Stopwatch
from .tokens import SpecialTokens, is_multilingual, special_tokens

logger = logging.getLogger(__name__)

DEFAULT_THREADS = 2
# Whisper's decoder holds 448 positions; the prompt takes up to 4 of them.
MAX_NEW_TOKENS = 440
NOTICE_SILENT = "No speech detected: the clip is empty or silent, so nothing was transcribed."


class EngineError(RuntimeError):
    """An engine cannot load or run; the message says why and what to do."""


@dataclass(frozen=True)
class DecodingOptions:
    """Decoding settings, identical for every engine in a comparison."""

    language: str | None = None  # None: detect (multilingual models); English-only ignore it
    task: str = "transcribe"
    beam_size: int = 1
    max_new_tokens: int = MAX_NEW_TOKENS

    def __post_init__(self):
        if self.beam_size < 1:
            raise ValueError("beam_size must be at least 1")
        if not 1 <= self.max_new_tokens <= MAX_NEW_TOKENS:
            raise ValueError(f"max_new_tokens must be between 1 and {MAX_NEW_TOKENS}")


@dataclass(frozen=True)
class Transcription:
    """One engine's transcript of one clip, with where the time (and memory) went."""

    engine: str
    text: str
    language: str | None
    tokens: tuple[int, ...]
    audio_s: float
    # Wall-clock seconds: "features", "language", "encoder", "decoder" and "total".
    timings: Mapping[str, float]
    chunks: int = 1
    notice: str = ""
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
        return len(self.tokens) / decoder if decoder else 0.0


class Engine(ABC):
    """The interface every engine implements; subclasses supply encode, detect and decode."""

    name: ClassVar[str]
    label: ClassVar[str]
    # The subfolder of a built model this engine loads, and the one whose tokenizer, config
    # and generation config it reads (the same, unless its runtime keeps its own format).
    subfolder: ClassVar[str]
    metadata_subfolder: ClassVar[str | None] = None

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

    def prompt(self, language: str | None, task: str) -> list[int]:
        return self.special.prompt(language if self.multilingual else None, task)

    @abstractmethod
    def _load(self) -> None: ...

    # True where the runtime's own generate detects the language (the stock transformers
    # path): the shared loop then passes language None through to `_decode`.
    detects_language_itself: ClassVar[bool] = False

    @abstractmethod
    def _encode(self, features: np.ndarray, watch: Stopwatch) -> object:
        """What the decoder reads of one window's audio; times its parts in `watch`."""

    @abstractmethod
    def _language_probs(self, encoded: object) -> dict[int, float]:
        """Probabilities of the language tokens after <|startoftranscript|>."""

    @abstractmethod
    def _decode(
        self, encoded: object, language: str | None, options: DecodingOptions, watch: Stopwatch
    ) -> tuple[list[int], str | None]:
        """Generated token ids after the prompt, without the end-of-text token, and the
        language decoded in. Records the first decoder step's seconds as "first_step"."""

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

        from .tokens import load_tokenizer

        meta = self.model_dir / (self.metadata_subfolder or self.subfolder)
        self._tokenizer = load_tokenizer(meta)
        config = json.loads((meta / "config.json").read_text())
        generation = json.loads((meta / "generation_config.json").read_text())
        self.multilingual = is_multilingual(config["vocab_size"])
        self.special: SpecialTokens = special_tokens(
            self._tokenizer,
            multilingual=self.multilingual,
            lang_ids=list(generation.get("lang_to_id", {}).values()) or None,
        )
        self.suppress_tokens = np.array(generation.get("suppress_tokens") or [], dtype=np.int64)
        self.begin_suppress_tokens = np.array(
            generation.get("begin_suppress_tokens") or [], dtype=np.int64
        )
        self._features = WhisperFeatureExtractor.from_pretrained(meta)

    def warm_shared(self, audio: np.ndarray) -> None:
        """Run the steps every engine shares (features, detokenizing) once, without a model.

        Their first use touches code and caches (transformers computes features with torch)
        that would otherwise be charged to whichever model a worker loads: a worker calls
        this before its baseline reading, so memory held is the model's alone.
        """
        self.prepare()
        self.features(audio)
        self._tokenizer.decode([self.special.eot], skip_special_tokens=True)

    def load(self) -> None:
        if self._loaded:
            return
        self.prepare()
        self._load()
        self._loaded = True

    @property
    def languages(self) -> list[str]:
        return sorted(self.special.languages) if self.multilingual else ["en"]

    def features(self, audio: np.ndarray) -> np.ndarray:
        """Log-mel features of one chunk (at most 30 s), padded to 30 s: shape (1, mels, 3000)."""
        return self._features(
            audio, sampling_rate=SAMPLE_RATE, return_tensors="np"
        ).input_features.astype(np.float32)

    def transcribe(
        self, audio: np.ndarray, options: DecodingOptions | None = None, **fields
    ) -> Transcription:
        """Transcribe 16 kHz mono float32 `audio` of any length (long audio in 30 s chunks).

        `options` (default DecodingOptions()) with any of its `fields` replaced.
        """
        self.load()
        options = replace(options or DecodingOptions(), **fields)
        if self.multilingual:
            self.special.task_id(options.task)  # validates the task before any work
            if options.language is not None:
                self.special.language_id(options.language)
        elif options.task != "transcribe":
            raise ValueError(f"{self.model_dir.name} is English-only: it can only transcribe")
        audio = np.asarray(audio, dtype=np.float32)
        audio_s = len(audio) / SAMPLE_RATE
        if is_silent(audio):
            return Transcription(
                self.name,
                "",
                options.language,
                (),
                audio_s,
                {"total": 0.0},
                chunks=0,
                notice=NOTICE_SILENT,
            )

        watch = Stopwatch()
        started = time.perf_counter()
        tokens: list[int] = []
        language = options.language if self.multilingual else "en"
        chunks = split_for_long_form(audio)
        for chunk in chunks:
            with watch.section("features"):
                features = self.features(chunk)
            encoded = self._encode(features, watch)
            if language is None and not self.detects_language_itself:
                with watch.section("language"):
                    language = self.detect_language(encoded)
            # "decoder": every decoder step, the first ("first_step") included; language
            # detection inside a stock generate is recorded apart, as "language".
            detecting = watch.seconds.get("language", 0.0)
            decode_started = time.perf_counter()
            new, language = self._decode(encoded, language, options, watch)
            detected = watch.seconds.get("language", 0.0) - detecting
            watch.add("decoder", time.perf_counter() - decode_started - detected)
            tokens += new
        timings = dict(watch.seconds)
        timings["total"] = time.perf_counter() - started
        text = self._tokenizer.decode(tokens, skip_special_tokens=True).strip()
        return Transcription(
            self.name, text, language, tuple(tokens), audio_s, timings, chunks=len(chunks)
        )

    def detect_language(self, encoded: object) -> str:
        """The most probable language code (Whisper's method: one decoder step after SOT)."""
        probs = self._language_probs(encoded)
        best = max(probs, key=probs.get)
        return self.special.language_by_id[best]

    def disk_bytes(self) -> int:
        """Size on disk of the weight files this engine loads."""
        return weight_bytes(self.folder)

    def runtime_details(self) -> dict:
        """What runs, for load reports: runtime, graph changes, session options."""
        return {}


# --- original: transformers + PyTorch ----------------------------------------------------


class _CallTimes:
    """Wall-clock seconds of each call of a model part's `forward`, read by a wrapper.

    The wrapper only reads the clock around the part's own `forward` (set on the instance;
    torch modules and Optimum's session wrappers both call `self.forward`), so the part
    computes exactly what it computes without it. It lets a stock `generate` report its
    first decoder step apart from the rest.
    """

    def __init__(self, part):
        self.seconds: list[float] = []
        forward = part.forward

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return forward(*args, **kwargs)
            finally:
                self.seconds.append(time.perf_counter() - started)

        part.forward = timed

    def take(self) -> list[float]:
        seconds, self.seconds = self.seconds, []
        return seconds


class OriginalEngine(Engine):
    """The standard transformers path: `WhisperForConditionalGeneration.generate` in PyTorch.

    With no language given, `generate` detects it itself (one decoder pass on
    <|startoftranscript|>), as stock transformers does.
    """

    name = "original"
    label = "Original (PyTorch fp32)"
    subfolder = ORIGINAL_DIR
    detects_language_itself = True

    @classmethod
    def preload(cls) -> None:
        import torch  # noqa: F401
        import transformers.models.whisper.modeling_whisper  # noqa: F401

    def initialise_runtime(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            torch.nn.functional.linear(torch.ones(1, 16), torch.ones(16, 16))

    def _load(self) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration

        torch.set_num_threads(self.threads)
        self._torch = torch
        self.model = WhisperForConditionalGeneration.from_pretrained(
            self.folder, use_safetensors=True, dtype=torch.float32
        ).eval()
        self._decoder_calls = _CallTimes(self.model.get_decoder())

    def runtime_details(self) -> dict:
        return {
            "runtime": f"PyTorch {self._torch.__version__}",
            "threads": self._torch.get_num_threads(),
            "graph_changes": [],
            "encoder_attention_fused": False,
            "attention_implementation": self.model.config._attn_implementation,
        }

    def _encode(self, features: np.ndarray, watch: Stopwatch):
        with watch.section("encoder"), self._torch.inference_mode():
            return self.model.get_encoder()(self._torch.from_numpy(features))

    def _language_probs(self, encoded) -> dict[int, float]:
        torch = self._torch
        with torch.inference_mode():
            logits = self.model(
                encoder_outputs=encoded,
                decoder_input_ids=torch.tensor([[self.special.sot]]),
            ).logits[0, -1]
        ids = list(self.special.languages.values())
        probs = torch.softmax(logits[ids], dim=-1).tolist()
        return dict(zip(ids, probs, strict=True))

    def _decode(self, encoded, language, options: DecodingOptions, watch: Stopwatch):
        multilingual = self.multilingual
        self._decoder_calls.take()
        with self._torch.inference_mode():
            out = self.model.generate(
                encoder_outputs=encoded,
                language=language if multilingual else None,
                task=options.task if multilingual else None,
                max_new_tokens=options.max_new_tokens,
                num_beams=options.beam_size,
                do_sample=False,
                return_timestamps=False,
                # Its sequences then start with the prompt, the detected language in it.
                return_dict_in_generate=True,
            )
        calls = self._decoder_calls.take()
        generated = out.sequences[0].tolist()
        if multilingual and language is None:
            # generate's own detection: one decoder pass before the prompt's.
            language = self.special.language_by_id[generated[1]]
            watch.add("language", calls.pop(0))
        if calls:
            watch.add("first_step", calls[0])
        # transformers builds the prompt itself from language and task; a test checks that it
        # equals the one the other engines are given.
        prompt = self.prompt(language, options.task)
        if generated[: len(prompt)] == prompt:
            generated = generated[len(prompt) :]
        return [t for t in generated if t != self.special.eot], language


class OptimumEngine(OriginalEngine):
    """The recipe this project started from: Optimum's plain int8 recipe run by its `generate`.

    Optimum's default dynamic quantization (every quantizable operator, per-tensor) of the same
    export, loaded with `ORTModelForSpeechSeq2Seq` and onnxruntime's default session options
    (same thread count), decoded by transformers' `generate` like the original. Built only with
    `build_model.py --baseline`; it is the "before" of the README's before/after.
    """

    name = "optimum"
    label = "Plain recipe (Optimum int8)"
    subfolder = BASELINE_DIR

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
        self._decoder_calls = _CallTimes(self.model.decoder)

    def runtime_details(self) -> dict:
        import onnxruntime

        return {
            "runtime": f"onnxruntime {onnxruntime.__version__} via Optimum's generate",
            "graph_changes": [],
            "encoder_attention_fused": False,
            "session_options": self._session_options,
        }

    def _encode(self, features: np.ndarray, watch: Stopwatch):
        with watch.section("encoder"):
            return self.model.encoder(
                input_features=self._torch.from_numpy(features), attention_mask=None
            )


# --- ONNX Runtime: the quantized model and its fp32 export --------------------------------


def ort_session_options(threads: int, *, tuned: bool):
    """onnxruntime session options and their description, for every ONNX engine.

    `tuned` is what the studio's ONNX engines run with; untuned is onnxruntime's defaults
    with only the thread count set, as the plain Optimum recipe is usually run.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    described = {"intra_op_num_threads": threads}
    if tuned:
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The default arena keeps the encoder's largest activations for good: with it the
        # int8 model holds more memory than the fp32 original.
        options.enable_cpu_mem_arena = False
        # Spinning threads would keep a core busy between runs, slowing the feature
        # extraction and decoding-loop code that runs on the same two cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        described.update(
            inter_op_num_threads=1,
            execution_mode="ORT_SEQUENTIAL",
            graph_optimization_level="ORT_ENABLE_ALL",
            enable_cpu_mem_arena=False,
            **{"session.intra_op.allow_spinning": "0"},
        )
    else:
        described.update(
            graph_optimization_level="ORT_ENABLE_ALL (default)", enable_cpu_mem_arena=True
        )
    return options, described


def initialise_onnxruntime(threads: int, *, tuned: bool) -> None:
    """Run a one-operator model, so onnxruntime's one-off set-up (thread pools, kernel
    registries) happens before a worker's memory baseline."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((16, 16), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "init",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    options, _ = ort_session_options(threads, tuned=tuned)
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    session.run(None, {"x": np.ones((1, 16), np.float32)})


class OnnxEngine(Engine):
    """The int8 ONNX model run by onnxruntime, with a decoding loop that calls the sessions.

    The files are Optimum's (encoder + merged decoder); `graphs.runtime_graphs` regroups them
    into three sessions: the encoder (its attention fused), the cross-attention key/value
    projections, and one decoder step graph that runs every step, the prompt included. The
    loop feeds numpy arrays straight to the sessions: a decoded token costs the graph's work
    and little more. It follows the same rules as transformers' `generate` (a test checks it
    gives Optimum's output): the prompt, suppressed tokens, greedy or beam search.
    """

    name = "quantized"
    label = "Quantized (ONNX int8)"
    subfolder = QUANTIZED_DIR
    # The encoder's attention as onnxruntime's fused MultiHeadAttention (see graphs.py).
    # Off, the sessions compute exactly what Optimum's model computes from the same files.
    fuse_attention: bool = True

    @classmethod
    def preload(cls) -> None:
        import onnxruntime  # noqa: F401

    def initialise_runtime(self) -> None:
        initialise_onnxruntime(self.threads, tuned=True)

    def _load(self) -> None:
        import tempfile

        import onnxruntime as ort

        from .graphs import runtime_graphs

        graphs = runtime_graphs(
            self.folder / ENCODER_FILE,
            self.folder / DECODER_FILE,
            fuse_attention=self.fuse_attention,
        )
        options, self._session_options = ort_session_options(self.threads, tuned=True)
        providers = ["CPUExecutionProvider"]
        sessions = {}
        # Sessions are made from files: one made from bytes keeps the bytes for its lifetime.
        with tempfile.TemporaryDirectory(prefix="whisper-quant-") as tmp:
            for part in ("encoder", "cross", "decoder"):
                path = Path(tmp, f"{part}.onnx")
                path.write_bytes(getattr(graphs, part))
                sessions[part] = ort.InferenceSession(str(path), options, providers=providers)
        self.encoder, self.cross, self.decoder = (
            sessions["encoder"],
            sessions["cross"],
            sessions["decoder"],
        )
        self._cross_past = list(graphs.cross_names)
        self.attention_fused = graphs.fused_attention
        self._graph_changes = list(graphs.changes)
        del graphs
        inputs = {i.name: i for i in self.decoder.get_inputs()}
        self._self_past = [
            n for n in inputs if n.startswith("past_key_values.") and ".decoder." in n
        ]
        key = inputs[self._self_past[0]]
        self._heads, self._head_dim = key.shape[1], key.shape[3]
        self._output_names = [o.name for o in self.decoder.get_outputs()]

    def runtime_details(self) -> dict:
        import onnxruntime

        return {
            "runtime": f"onnxruntime {onnxruntime.__version__}",
            "graph_changes": self._graph_changes,
            "encoder_attention_fused": self.attention_fused,
            "fusion_requested": self.fuse_attention,
            "session_options": self._session_options,
        }

    def _encode(self, features: np.ndarray, watch: Stopwatch) -> dict[str, np.ndarray]:
        """The cross-attention keys and values of every decoder layer, by input name."""
        with watch.section("encoder"):
            (hidden,) = self.encoder.run(None, {"input_features": features})
        with watch.section("cross_kv"):
            outputs = self.cross.run(self._cross_past, {"encoder_hidden_states": hidden})
        return dict(zip(self._cross_past, outputs, strict=True))

    def _step(self, tokens: np.ndarray, cache: dict[str, np.ndarray]) -> np.ndarray:
        """Run `tokens` (batch, n) after the cached ones; updates the cache, returns logits."""
        outputs = self.decoder.run(None, {"input_ids": tokens, **cache})
        named = dict(zip(self._output_names, outputs, strict=True))
        for name in self._self_past:
            cache[name] = named[name.replace("past_key_values", "present")]
        return named["logits"][:, -1]

    def _first_step(self, cross: dict[str, np.ndarray], prompt_ids: np.ndarray):
        """Run the prompt on an empty self-attention cache: logits and the cache to go on with."""
        empty = np.zeros((prompt_ids.shape[0], self._heads, 0, self._head_dim), np.float32)
        cache = {**dict.fromkeys(self._self_past, empty), **cross}
        return self._step(prompt_ids, cache), cache

    def _language_probs(self, cross: dict[str, np.ndarray]) -> dict[int, float]:
        logits, _ = self._first_step(cross, np.array([[self.special.sot]], np.int64))
        ids = list(self.special.languages.values())
        chosen = logits[0, ids].astype(np.float64)
        probs = np.exp(chosen - chosen.max())
        probs /= probs.sum()
        return dict(zip(ids, probs.tolist(), strict=True))

    def _suppress(self, logits: np.ndarray, first: bool) -> np.ndarray:
        logits[:, self.suppress_tokens] = -np.inf
        if first:
            logits[:, self.begin_suppress_tokens] = -np.inf
        return logits

    def _decode(self, cross, language, options: DecodingOptions, watch: Stopwatch):
        prompt = self.prompt(language, options.task)
        with watch.section("first_step"):
            logits, cache = self._first_step(cross, np.array([prompt], np.int64))
        if options.beam_size > 1:
            return self._beam_search(cross, logits, cache, options), language
        eot = self.special.eot
        tokens: list[int] = []
        while True:
            token = int(np.argmax(self._suppress(logits, first=not tokens), axis=-1)[0])
            if token == eot:
                break
            tokens.append(token)
            if len(tokens) >= options.max_new_tokens:
                break
            logits = self._step(np.array([[token]], np.int64), cache)
        return tokens, language

    def _beam_search(self, cross, logits, cache, options: DecodingOptions) -> list[int]:
        """Beam search scored as transformers does: sum of log-probs over generated length."""
        beams, eot = options.beam_size, self.special.eot
        sequences: list[list[int]] = [[]]
        scores = np.zeros(1)
        finished: list[tuple[float, list[int]]] = []
        for step in range(options.max_new_tokens):
            logprobs = _log_softmax(self._suppress(logits.astype(np.float64), first=step == 0))
            candidates = (scores[:, None] + logprobs).ravel()
            order = np.argsort(-candidates)[: 2 * beams]
            vocab = logprobs.shape[1]
            alive: list[tuple[int, int, float]] = []
            for flat in order:
                beam, token = divmod(int(flat), vocab)
                score = float(candidates[flat])
                if token == eot:
                    finished.append((score / max(len(sequences[beam]), 1), sequences[beam]))
                else:
                    alive.append((beam, token, score))
                if len(alive) == beams:
                    break
            finished = sorted(finished, key=lambda f: -f[0])[:beams]
            # Done when no live beam can still beat the worst of the kept finished ones.
            if len(finished) == beams and finished[-1][0] >= alive[0][2] / (step + 1):
                break
            index = np.array([b for b, _, _ in alive])
            sequences = [sequences[b] + [t] for b, t, _ in alive]
            scores = np.array([s for _, _, s in alive])
            for name in self._self_past:
                cache[name] = cache[name][index]
            if cache[self._cross_past[0]].shape[0] != len(index):
                for name in self._cross_past:
                    cache[name] = np.repeat(cross[name], len(index), axis=0)
            logits = self._step(np.array([[t] for _, t, _ in alive], np.int64), cache)
        else:
            finished += [(s / len(q), q) for s, q in zip(scores, sequences, strict=True)]
        return max(finished, key=lambda f: f[0])[1]


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class OnnxFp32Engine(OnnxEngine):
    """The unquantized ONNX export with the same loop: what the runtime alone brings."""

    name = "onnx-fp32"
    label = "ONNX fp32 (no quantization)"
    subfolder = ONNX_FP32_DIR


# --- faster-whisper: CTranslate2 int8 on the same weights ---------------------------------


class FasterWhisperEngine(Engine):
    """The same embedded weights run by CTranslate2 with int8 compute (faster-whisper's core).

    It loads the CTranslate2 source of an embedded model (`ct2/` beside the built folders) and
    is given the same features, prompt and suppressed tokens as the other engines.
    """

    name = "faster-whisper"
    label = "faster-whisper (CTranslate2 int8)"
    subfolder = CT2_DIR
    metadata_subfolder = ORIGINAL_DIR

    @classmethod
    def preload(cls) -> None:
        try:
            import ctranslate2  # noqa: F401
        except ImportError as e:
            raise EngineError("The faster-whisper engine needs: pip install faster-whisper") from e

    def load(self) -> None:
        self.preload()
        super().load()

    def _load(self) -> None:
        import ctranslate2

        self._ct2 = ctranslate2
        self.model = ctranslate2.models.Whisper(
            str(self.folder), device="cpu", compute_type="int8", intra_threads=self.threads
        )

    def runtime_details(self) -> dict:
        return {
            "runtime": f"CTranslate2 {self._ct2.__version__} (int8 compute)",
            "graph_changes": [],
            "encoder_attention_fused": None,
        }

    def _encode(self, features: np.ndarray, watch: Stopwatch):
        with watch.section("encoder"):
            return self.model.encode(self._ct2.StorageView.from_array(features), to_cpu=True)

    def _language_probs(self, encoded) -> dict[int, float]:
        results = self.model.detect_language(encoded)[0]
        by_code = {code.strip("<|>"): p for code, p in results}
        return {tid: by_code.get(code, 0.0) for code, tid in self.special.languages.items()}

    def _decode(self, encoded, language, options: DecodingOptions, watch: Stopwatch):
        prompt = self.prompt(language, options.task)
        result = self.model.generate(
            encoded,
            [prompt],
            beam_size=options.beam_size,
            max_length=len(prompt) + options.max_new_tokens,
            suppress_tokens=self.suppress_tokens.tolist(),
            suppress_blank=True,
            return_scores=False,
            length_penalty=1.0,
        )[0]
        return [t for t in result.sequences_ids[0] if t != self.special.eot], language


ENGINES: dict[str, type[Engine]] = {
    cls.name: cls
    for cls in (OriginalEngine, OnnxEngine, OnnxFp32Engine, FasterWhisperEngine, OptimumEngine)
}
# ONNX fp32 runs by default so that every comparison shows which part of the speed-up is
# the runtime's and which is int8's.
DEFAULT_ENGINES = ("original", "onnx-fp32", "quantized")


def engine_class(name: str) -> type[Engine]:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"Unknown engine {name!r}; choose from: {', '.join(ENGINES)}") from None


def available_engines(model_dir: Path | str) -> list[str]:
    """Engines whose files a built model folder has (and whose packages are installed)."""
    names = []
    for name, cls in ENGINES.items():
        if not (Path(model_dir) / cls.subfolder).is_dir():
            continue
        try:
            cls.preload()
        except EngineError:
            continue
        names.append(name)
    return names


def with_memory(result: Transcription, peak_bytes: int) -> Transcription:
    return replace(result, peak_memory_bytes=peak_bytes)
