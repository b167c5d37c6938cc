"""The ONNX engines: Optimum's export (fp32) and its int8 copy, run by onnxruntime.

The files are Optimum's (encoder + merged decoder); `graphs.runtime_graphs` regroups them at
load into three sessions: the encoder (its attention fused), the cross-attention key/value
projections, and one decoder step graph that runs every step, the prompt included. The
engine only supplies encoder outputs and per-step logits (`OnnxWindowModel`); the decoding
itself is the shared long-form algorithm (longform.py, decoding.py). numpy arrays go
straight to the sessions: a decoded token costs the graph's work and little more.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType

import numpy as np

from ..layout import DECODER_FILE, ENCODER_FILE, ONNX_FP32_DIR, QUANTIZED_DIR
from ..measure import Stopwatch
from ..recipes import RECIPES
from .base import Engine
from .names import ONNX_FP32, QUANTIZED


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


class OnnxDecoderState:
    """One decoding's self-attention cache, for `batch` rows reading the same audio."""

    def __init__(self, model: OnnxWindowModel, cross: dict[str, np.ndarray], batch: int):
        self.model = model
        # One encoded window read by every row (beam search), or one window per row
        # (batched windows).
        if next(iter(cross.values())).shape[0] != batch:
            cross = {name: np.repeat(value, batch, axis=0) for name, value in cross.items()}
        empty = np.zeros((batch, model.heads, 0, model.head_dim), np.float32)
        self.cache = {**dict.fromkeys(model.self_past, empty), **cross}

    def step(self, tokens: np.ndarray) -> np.ndarray:
        outputs = self.model.session.run(
            None, {"input_ids": np.ascontiguousarray(tokens, np.int64), **self.cache}
        )
        named = dict(zip(self.model.output_names, outputs, strict=True))
        for name in self.model.self_past:
            self.cache[name] = named[name.replace("past_key_values", "present")]
        return named["logits"]

    def reorder(self, index: np.ndarray) -> None:
        index = np.asarray(index, dtype=np.int64)
        for name, value in self.cache.items():
            self.cache[name] = value[index]


class OnnxWindowModel:
    """The three sessions behind the shared loop's `WindowModel` interface."""

    def __init__(self, engine: OnnxEngine, watch: Stopwatch):
        self.engine, self.watch = engine, watch
        self.session = engine.decoder
        self.self_past = engine.self_past
        self.heads, self.head_dim = engine.heads, engine.head_dim
        self.output_names = engine.output_names

    def encode(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """The cross-attention keys and values of every decoder layer, by input name, for
        (rows, n_mels, 3000) features: one row per window."""
        engine = self.engine
        with self.watch.section("encoder"):
            (hidden,) = engine.encoder.run(None, {"input_features": features})
        with self.watch.section("cross_kv"):
            outputs = engine.cross.run(engine.cross_names, {"encoder_hidden_states": hidden})
        return dict(zip(engine.cross_names, outputs, strict=True))

    def decoder(self, encoded: dict[str, np.ndarray], batch: int) -> OnnxDecoderState:
        return OnnxDecoderState(self, encoded, batch)


class OnnxEngine(Engine):
    """The int8 ONNX model run by onnxruntime (and, subclassed, every other recipe)."""

    name = QUANTIZED
    label = RECIPES[QUANTIZED_DIR].label
    subfolder = QUANTIZED_DIR
    # The encoder's attention as onnxruntime's fused MultiHeadAttention (see graphs.py).
    # Off, the sessions compute exactly what Optimum's model computes from the same files.
    fuse_attention: bool = True
    # Session config entries added to the tuned options of every session (none by default).
    session_config: Mapping[str, str] = MappingProxyType({})
    # With a path prefix, onnxruntime's profiler records every node of every session
    # (scripts/decoder_profile.py); each session's `end_profiling()` writes its JSON under
    # `<prefix>-<part>` (the file names are stamped to the second, so the parts need their
    # own prefixes). Off by default: the profiler timestamps every node, which costs time.
    profile_prefix: str | None = None

    @classmethod
    def preload(cls) -> None:
        import onnxruntime  # noqa: F401

    def _session_graph(self, part: str, graph: bytes) -> bytes:
        """The graph bytes a part's session is made from: `runtime_graphs`' as they are.
        A subclass may rewrite them (scripts/sensitivity.py's weight-only detection does)."""
        return graph

    def initialise_runtime(self) -> None:
        initialise_onnxruntime(self.threads, tuned=True)

    def _load(self) -> None:
        import onnxruntime as ort

        from ..graphs import runtime_graphs

        graphs = runtime_graphs(
            self.folder / ENCODER_FILE,
            self.folder / DECODER_FILE,
            fuse_attention=self.fuse_attention,
        )
        options, self._session_options = ort_session_options(self.threads, tuned=True)
        for key, value in self.session_config.items():
            options.add_session_config_entry(key, value)
            self._session_options[key] = value
        if self.profile_prefix is not None:
            options.enable_profiling = True
            self._session_options["enable_profiling"] = True
        providers = ["CPUExecutionProvider"]
        sessions = {}
        # Sessions are made from files: one made from bytes keeps the bytes for its lifetime.
        with tempfile.TemporaryDirectory(prefix="whisper-quant-") as tmp:
            for part in ("encoder", "cross", "decoder"):
                path = Path(tmp, f"{part}.onnx")
                path.write_bytes(self._session_graph(part, getattr(graphs, part)))
                if self.profile_prefix is not None:
                    options.profile_file_prefix = f"{self.profile_prefix}-{part}"
                sessions[part] = ort.InferenceSession(str(path), options, providers=providers)
        self.encoder, self.cross, self.decoder = (
            sessions["encoder"],
            sessions["cross"],
            sessions["decoder"],
        )
        self.cross_names = list(graphs.cross_names)
        self.attention_fused = graphs.fused_attention
        self._graph_changes = list(graphs.changes)
        del graphs
        inputs = {i.name: i for i in self.decoder.get_inputs()}
        self.self_past = [
            n for n in inputs if n.startswith("past_key_values.") and ".decoder." in n
        ]
        key = inputs[self.self_past[0]]
        self.heads, self.head_dim = key.shape[1], key.shape[3]
        self.output_names = [o.name for o in self.decoder.get_outputs()]

    def window_model(self, watch: Stopwatch) -> OnnxWindowModel:
        return OnnxWindowModel(self, watch)

    def runtime_details(self) -> dict:
        import onnxruntime

        return {
            "runtime": f"onnxruntime {onnxruntime.__version__}",
            "graph_changes": self._graph_changes,
            "encoder_attention_fused": self.attention_fused,
            "fusion_requested": self.fuse_attention,
            "session_options": self._session_options,
        }


class OnnxFp32Engine(OnnxEngine):
    """The unquantized ONNX export with the same loop: what the runtime alone brings."""

    name = ONNX_FP32
    label = RECIPES[ONNX_FP32_DIR].label
    subfolder = ONNX_FP32_DIR


class _RecipeEngine(OnnxEngine):
    """A recipe's variant: the same sessions and loop on its own subfolder's files."""

    recipe: str

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        recipe = RECIPES[cls.recipe]
        cls.name, cls.label, cls.subfolder = recipe.name, recipe.label, recipe.name


class SeedEngine(_RecipeEngine):
    """The article's int8 configuration, run by the studio's loop."""

    recipe = "int8-seed"


class EncoderInt8Engine(_RecipeEngine):
    """Only the encoder in int8."""

    recipe = "int8-encoder"


class DecoderInt8Engine(_RecipeEngine):
    """Only the decoder in int8."""

    recipe = "int8-decoder"


class Int4Engine(_RecipeEngine):
    """4-bit weight-only MatMulNBits and GatherBlockQuantized."""

    recipe = "int4-weights"


class StaticInt8Engine(_RecipeEngine):
    """The encoder in static QDQ int8, the dynamic int8 decoder."""

    recipe = "int8-static"


RECIPE_ENGINES: tuple[type[OnnxEngine], ...] = (
    SeedEngine,
    EncoderInt8Engine,
    DecoderInt8Engine,
    Int4Engine,
    StaticInt8Engine,
)
