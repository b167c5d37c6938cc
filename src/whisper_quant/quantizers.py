"""The recipes' quantizers: their presets, Optimum's dynamic int8, int4 weights, static int8.

Each quantizer writes one variant subfolder (layout.py) from the fp32 export and returns the
settings the manifest records for it. The dynamic int8 recipes (`quantized`, `int8-seed`) are
Optimum's ORTQuantizer with one of its `AutoQuantizationConfig` presets; int4 and static int8
are onnxruntime's own quantizers. The build pipeline (build.py) decides which run.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import re
from pathlib import Path

import numpy as np

from .graphs import activation_matmuls, graph_and_subgraphs, output_projections, walk
from .hardware import cpu_flags
from .layout import DECODER_FILE, ENCODER_FILE, ONNX_FILES, weight_bytes
from .onnx_files import link_graph, save_model, shape_inferred_without_copies
from .recipes import (
    CALIBRATION_METHOD,
    DECODER_ACCURACY_LEVEL,
    DECODER_BLOCK_BITS,
    DECODER_BLOCK_SIZE,
    INT4_ACCURACY_LEVEL,
    INT4_BLOCK_SIZE,
    INT4_SIZE_BUDGET,
    INT4_SYMMETRIC,
)
from .tokens import is_multilingual
from .weights import copy_preprocessing_files

logger = logging.getLogger(__name__)

# Optimum's `AutoQuantizationConfig` presets for dynamic int8.
QUANTIZATION_PRESETS = ("avx2", "avx512", "avx512_vnni", "arm64")
# The article's preset, which the int8-seed recipe uses on any CPU.
SEED_PRESET = "avx512_vnni"
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".webm")
# The shipped clips the quantized recipe was tuned on (the benchmark's tuning set); the
# evaluation set (eval/) is never used for calibration.
DEFAULT_CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"


class QuantizerError(RuntimeError):
    """A recipe cannot be built; the message says why."""


def resolve_quantization(requested: str, flags: set[str] | None = None) -> str:
    """`auto` picks the best preset this CPU supports; a named preset is taken as is."""
    if requested != "auto":
        if requested not in QUANTIZATION_PRESETS:
            raise QuantizerError(
                f"Unknown quantization {requested!r}; choose auto or one of: "
                + ", ".join(QUANTIZATION_PRESETS)
            )
        return requested
    flags = cpu_flags() if flags is None else flags
    if platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags:
        return "arm64"
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "avx512_vnni"
    if "avx512f" in flags:
        return "avx512"
    return "avx2"


def quantization_config(preset: str, per_channel: bool, nodes_to_exclude: list[str] | None = None):
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    factory = getattr(AutoQuantizationConfig, preset)
    return factory(is_static=False, per_channel=per_channel, nodes_to_exclude=nodes_to_exclude)


# --- dynamic int8 (Optimum's ORTQuantizer): the quantized and int8-seed recipes ---


def quantize_onnx(
    fp32_dir: Path,
    out_dir: Path,
    preset: str,
    per_channel: bool,
    *,
    plain: bool = False,
    size_budget: int | None = None,
    low_memory: bool = False,
    fp32_layers: int = 0,
) -> dict:
    """Dynamically quantize both graphs to int8 with Optimum's ORTQuantizer.

    Attention's activation x activation MatMuls stay in fp32 (see `activation_matmuls`), and
    so do a multilingual model's encoder convolutions and feed-forward outputs (see
    `fp32_convolutions`, `fp32_feed_forward_outputs`), and every weight MatMul of the first
    `fp32_layers` encoder layers (`fp32_encoder_layers`).
    With `per_channel`, every weight gets per-channel scales. The one exception is made only
    when the files would otherwise exceed `size_budget` bytes: the decoder's output projection
    then gets one scale, quantized in a second pass of the same quantizer. Its 51864 output
    channels' scales are a quarter MiB, which takes tiny.en's int8 files just past 40% of the
    original's bytes; base stays well under with them, and they keep base's transcripts
    closest to the original's (one 7 s clip read "gloves" for "clubs" with a single scale).

    `plain` is the recipe this project started from (every quantizable operator, attention
    MatMuls included, per-tensor), kept only to show what the changes bring.

    `low_memory` keeps onnxruntime from copying the weights for shape inference (see
    `onnx_files.shape_inferred_without_copies`); the graphs it writes are the same.
    """
    with _lean_quantizer() if low_memory else contextlib.nullcontext():
        return _quantize_both(
            fp32_dir, out_dir, preset, per_channel, plain, size_budget, fp32_layers
        )


def _quantize_both(
    fp32_dir: Path,
    out_dir: Path,
    preset: str,
    per_channel: bool,
    plain: bool,
    size_budget: int | None,
    fp32_layers: int = 0,
) -> dict:
    excluded = {n: [] if plain else activation_matmuls(fp32_dir / n) for n in ONNX_FILES}
    convolutions = [] if plain else fp32_convolutions(fp32_dir)
    feed_forward = [] if plain else fp32_feed_forward_outputs(fp32_dir)
    layers = fp32_encoder_layers(fp32_dir, fp32_layers)
    excluded[ENCODER_FILE] += convolutions + feed_forward
    added = [n for n in layers if n not in excluded[ENCODER_FILE]]
    excluded[ENCODER_FILE] += added
    if size_budget is not None and added:
        # Layers asked for in fp32 are paid for by the budget, not by the decoder's
        # per-channel scales (see `_budgeted_decoder`).
        size_budget += int8_savings(fp32_dir, added)
    per_tensor: dict[str, list[str]] = dict.fromkeys(ONNX_FILES, [])
    for name in ONNX_FILES:
        if name == DECODER_FILE and per_channel and size_budget is not None:
            per_tensor[name] = _budgeted_decoder(
                fp32_dir, out_dir, preset, excluded[name], size_budget
            )
        else:
            qconfig = quantization_config(preset, per_channel, excluded[name])
            _quantize(fp32_dir, name, out_dir, qconfig).rename(out_dir / name)
    qconfig = quantization_config(preset, per_channel, excluded[ENCODER_FILE])
    copy_preprocessing_files(fp32_dir, out_dir)
    return {
        "weights": str(qconfig.weights_dtype),
        "activations": str(qconfig.activations_dtype),
        "operators": list(qconfig.operators_to_quantize),
        "reduce_range": bool(qconfig.reduce_range),
        "symmetric_weights": bool(qconfig.weights_symmetric),
        "excluded": "MatMuls without a constant weight (attention scores), "
        + ", ".join(f"{len(v)} in {k}" for k, v in excluded.items()),
        "fp32_convolutions": convolutions,
        "fp32_feed_forward_outputs": feed_forward,
        **({"fp32_encoder_layers": layers} if layers else {}),
        "per_tensor": ", ".join(n for names in per_tensor.values() for n in sorted(set(names)))
        or "none",
        "size_budget_bytes": size_budget,
    }


def quantize_decoder_blocks(
    fp32_dir: Path,
    out_dir: Path,
    *,
    block_size: int = DECODER_BLOCK_SIZE,
    per_row_embedding: bool = True,
    source: Path | None = None,
) -> dict:
    """A decoder of 8-bit weight-only blocks with a per-row int8 embedding: measured as an
    alternative to the `quantized` recipe's dynamic int8 decoder (scripts/sensitivity.py's
    `blocks:` variants; docs/int8-languages.md section 6), not built by any recipe.

    Language identification is one decoder step, and on borderline clips a small shift of its
    logits changes the language. On base, 86 Mexican Spanish tuning prompts that eval/ does not
    hold: the dynamic int8 decoder, which quantizes each MatMul's input with one scale per call,
    moved the language probabilities by a mean KL of 0.0097 from onnx-fp32's and changed the
    top language on 4; no single group of its MatMuls was the cause. As MatMulNBits (8-bit
    weights, one scale per `block_size` input values, accuracy level DECODER_ACCURACY_LEVEL:
    int8 kernels that quantize the activations per block too) with the embedding at one scale
    per row: KL 0.0062 and 2 changes, near the fp32 decoder's 0.0051 and 1. But on eval/ Spanish
    it kept the original's language on 97 of 100 clips (94 before) with a CER difference of
    +0.8 [+0.0, +1.8] points (+0.3 [-0.8, +1.3] before), and end to end it was slower: the
    cross-attention key/value projections of a window (1500 rows) took 49 ms instead of 15 ms
    (the dynamic int8 MatMul uses AMX here), and a decoding step 8.6 ms instead of 7.5 ms.

    MatMuls without a constant weight (attention's scores) stay fp32, as MatMulNBits needs one.
    `source` is another decoder file to start from (e.g. one whose embedding is quantized).
    """
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    config = DefaultWeightOnlyQuantConfig(
        block_size=block_size,
        is_symmetric=True,
        accuracy_level=DECODER_ACCURACY_LEVEL,
        quant_format=QuantFormat.QOperator,
        op_types_to_quantize=("MatMul",),
        quant_axes=(("MatMul", 0),),
        bits=DECODER_BLOCK_BITS,
    )
    model = onnx.load(str(source or fp32_dir / DECODER_FILE))
    quantizer = MatMulNBitsQuantizer(model, algo_config=config)
    quantizer.process()
    model = quantizer.model.model
    rows = per_row_int8_embedding(model) if per_row_embedding else 0
    save_model(model, out_dir / DECODER_FILE)
    blocks = sum(node.op_type == "MatMulNBits" for node, _ in walk(model.graph))
    return {
        "method": "onnxruntime MatMulNBitsQuantizer (weight-only, QOperator)",
        "bits": DECODER_BLOCK_BITS,
        "block_size": block_size,
        "accuracy_level": DECODER_ACCURACY_LEVEL,
        "symmetric": True,
        "matmulnbits_nodes": blocks,
        "embedding": f"int8, one scale per row ({rows} rows)" if rows else "as in the source",
    }


def per_row_int8_embedding(model) -> int:
    """Store the token embedding as int8 with one fp32 scale per token row, in place.

    Each Gather of the embedding, in the merged decoder's branches too, becomes Gather(int8
    rows) -> Cast -> Mul by Gather(row scales): standard operators, exact for symmetric int8
    (scale = the row's largest magnitude / 127). Returns the embedding's row count.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graphs = list(graph_and_subgraphs(model.graph))
    top = {init.name: init for init in model.graph.initializer}
    names = {
        node.input[0]
        for graph in graphs
        for node in graph.node
        if node.op_type == "Gather" and node.input[0] in top and "embed_tokens" in node.input[0]
    }
    if len(names) != 1:
        raise QuantizerError(f"Expected one token embedding, found {sorted(names)}")
    (name,) = names
    weight = numpy_helper.to_array(top[name]).astype(np.float32)
    scale = np.abs(weight).max(axis=1, keepdims=True) / 127.0
    scale[scale == 0] = 1.0
    quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
    model.graph.initializer.remove(top[name])
    rows, scales = name + "_int8", name + "_row_scale"
    model.graph.initializer.extend(
        [numpy_helper.from_array(quantized, rows), numpy_helper.from_array(scale, scales)]
    )
    # A subgraph is rewritten before the graph holding it, which copies it with its node.
    for graph in reversed(graphs):
        nodes = []
        for node in graph.node:
            if node.op_type != "Gather" or node.input[0] != name:
                copy = onnx.NodeProto()
                copy.CopyFrom(node)
                nodes.append(copy)
                continue
            ids, out, prefix = node.input[1], node.output[0], node.name or node.output[0]
            nodes += [
                helper.make_node("Gather", [rows, ids], [prefix + "_q"], name=prefix + "_q"),
                helper.make_node(
                    "Cast",
                    [prefix + "_q"],
                    [prefix + "_f"],
                    name=prefix + "_cast",
                    to=TensorProto.FLOAT,
                ),
                helper.make_node("Gather", [scales, ids], [prefix + "_s"], name=prefix + "_s"),
                helper.make_node("Mul", [prefix + "_f", prefix + "_s"], [out], name=prefix),
            ]
        graph.ClearField("node")
        graph.node.extend(nodes)
    return int(weight.shape[0])


# Per-channel output-projection scales cost at least this many bytes per output channel more
# than one scale: a 4-byte float scale and a zero point of at least one byte (onnxruntime
# stores both as lists in the initializers). The one-scale decoder's second quantizer pass
# also keeps shape annotations (`value_info`) the per-channel file may lack: on the tiny
# random model 68.6 KB against 51.6 KB, the whole of the two files' other difference. The
# bound subtracts all of the one-scale file's annotations, and PROJECTION_SLACK_BYTES for
# names.
PER_CHANNEL_BYTES = 5
PROJECTION_SLACK_BYTES = 16 * 1024


# Which pass runs first is a guess: the per-channel decoder when the files' likely size (the
# fp32 decoder at a byte per four, plus the per-channel scales) is at least 2% under the
# budget (base: 123.8 MB guessed, 124.7 MB written, against 130.7 MB; every bigger model),
# else the one-scale decoder (tiny.en: 59.9 MB guessed against 60.4 MB, and its per-channel
# files land just over). A wrong guess costs one pass more, never a different file.
PER_CHANNEL_FIRST_MARGIN = 0.98


def _budgeted_decoder(
    fp32_dir: Path,
    out_dir: Path,
    preset: str,
    excluded: list[str],
    size_budget: int,
    per_channel_first: bool | None = None,
) -> list[str]:
    """The decoder with per-channel scales, unless the files would then exceed `size_budget`:
    the output projection then gets one scale (see `quantize_onnx`). Returns the projections
    quantized per tensor. The encoder is already in `out_dir`.

    When the guess (`PER_CHANNEL_FIRST_MARGIN`; `per_channel_first` overrides it) says the
    per-channel files fit, they are written first, and the one-scale decoder only if they do
    not. Otherwise the one-scale decoder is written first: when even it plus the per-channel
    scales' least possible bytes is over the budget (tiny.en, and any model whose vocabulary
    matrices dominate its weights), the per-channel pass, whose 51864-channel loop is most of
    the quantizer's time on a tiny model, would only be thrown away. Otherwise the
    per-channel decoder is written and kept if it fits. Every order writes the files of the
    per-channel pass followed by a size check, the order this function first had.
    """
    projections = output_projections(fp32_dir / DECODER_FILE)
    if per_channel_first is None:
        per_channel_first = (
            _likely_per_channel_bytes(fp32_dir, out_dir) <= PER_CHANNEL_FIRST_MARGIN * size_budget
        )
    per_channel = quantization_config(preset, True, excluded)
    if per_channel_first:
        _quantize(fp32_dir, DECODER_FILE, out_dir, per_channel).rename(out_dir / DECODER_FILE)
        if weight_bytes(out_dir) <= size_budget:
            return []
        _decoder_with_one_projection_scale(fp32_dir, out_dir, preset, excluded, projections)
        return projections
    _decoder_with_one_projection_scale(fp32_dir, out_dir, preset, excluded, projections)
    if least_per_channel_bytes(fp32_dir, out_dir) > size_budget:
        return projections
    aside = out_dir / (DECODER_FILE + ".one-scale")
    (out_dir / DECODER_FILE).replace(aside)
    ort_config = (out_dir / "ort_config.json").read_bytes()
    _quantize(fp32_dir, DECODER_FILE, out_dir, per_channel).rename(out_dir / DECODER_FILE)
    if weight_bytes(out_dir) > size_budget:
        aside.replace(out_dir / DECODER_FILE)
        (out_dir / "ort_config.json").write_bytes(ort_config)
        return projections
    aside.unlink()
    return []


def _likely_per_channel_bytes(fp32_dir: Path, out_dir: Path) -> int:
    """A guess at the per-channel files' bytes: the encoder already written, the fp32
    decoder's bytes (its graph and any external data) over four, and the per-channel scales."""
    decoder = sum(p.stat().st_size for p in fp32_dir.glob(DECODER_FILE + "*"))
    return weight_bytes(out_dir) + decoder // 4 + PER_CHANNEL_BYTES * _vocab_size(fp32_dir)


def least_per_channel_bytes(fp32_dir: Path, one_scale_dir: Path) -> int:
    """The fewest bytes the variant in `one_scale_dir` (its decoder's output projection at one
    scale) could take with per-channel projection scales instead."""
    without_annotations = weight_bytes(one_scale_dir) - _annotation_bytes(
        one_scale_dir / DECODER_FILE
    )
    extra_channels = _vocab_size(fp32_dir) - 1
    return without_annotations + PER_CHANNEL_BYTES * extra_channels - PROJECTION_SLACK_BYTES


def _decoder_with_one_projection_scale(
    fp32_dir: Path, out_dir: Path, preset: str, excluded: list[str], projections: list[str]
) -> None:
    """Per-channel scales everywhere but the output projection, which a second pass of the same
    quantizer gives one scale."""
    qconfig = quantization_config(preset, True, excluded + projections)
    written = _quantize(fp32_dir, DECODER_FILE, out_dir, qconfig)
    second = quantization_config(preset, False)
    second.nodes_to_quantize = projections
    # Each pass rewrites ort_config.json; keep the first pass's, which describes the
    # model (the manifest records both).
    ort_config = (out_dir / "ort_config.json").read_bytes()
    written = _quantize(out_dir, written.name, out_dir, second, replace=written)
    (out_dir / "ort_config.json").write_bytes(ort_config)
    written.replace(out_dir / DECODER_FILE)


def _annotation_bytes(path: Path) -> int:
    """Bytes of the shape annotations (`value_info`) in a graph and its subgraphs, with a
    few bytes of protobuf framing each."""
    import onnx

    return sum(
        len(info.SerializeToString()) + 4
        for graph in graph_and_subgraphs(onnx.load(str(path), load_external_data=False).graph)
        for info in graph.value_info
    )


def _vocab_size(fp32_dir: Path) -> int:
    """The exported model's vocabulary size (its config.json): the output projection's
    channels, and what tells a multilingual model."""
    import json

    return int(json.loads((fp32_dir / "config.json").read_text(encoding="utf-8"))["vocab_size"])


def _quantize(src_dir: Path, file_name: str, out_dir: Path, qconfig, replace: Path | None = None):
    """One ORTQuantizer pass; returns the file it wrote (it appends `_quantized`)."""
    from optimum.onnxruntime import ORTQuantizer

    with _quiet_requantize_warning(replace is not None):
        ORTQuantizer.from_pretrained(src_dir, file_name=file_name).quantize(
            save_dir=out_dir, quantization_config=qconfig
        )
    written = out_dir / file_name.replace(".onnx", "_quantized.onnx")
    if not written.is_file():
        raise QuantizerError(f"The quantizer did not write {written.name}")
    if replace is not None:
        replace.unlink()
    return written


@contextlib.contextmanager
def _quiet_requantize_warning(active: bool):
    """onnxruntime warns that a model 'is already quantized' on the output projection's pass,
    which is expected there: the rest of the graph was quantized by the first pass."""

    class Drop(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            return "already quantized" not in record.getMessage()

    drop = Drop()
    root = logging.getLogger()
    if active:
        root.addFilter(drop)
        for handler in root.handlers:
            handler.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        for handler in root.handlers:
            handler.removeFilter(drop)


@contextlib.contextmanager
def _lean_quantizer():
    """onnxruntime's quantizers shape-infer through `shape_inferred_without_copies`."""
    import onnxruntime.quantization.base_quantizer as base_quantizer
    import onnxruntime.quantization.onnx_quantizer as onnx_quantizer

    modules = (base_quantizer, onnx_quantizer)
    originals = [module.save_and_reload_model_with_shape_infer for module in modules]
    for module in modules:
        module.save_and_reload_model_with_shape_infer = shape_inferred_without_copies
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.save_and_reload_model_with_shape_infer = original


# --- int4 weights, static int8 ---


def quantize_int4(fp32_dir: Path, out_dir: Path, *, original_bytes: int) -> dict:
    """onnxruntime's MatMulNBitsQuantizer on both graphs: every MatMul with a constant weight
    becomes MatMulNBits, the token embedding's Gather becomes GatherBlockQuantized (both
    branches of the merged decoder included). Records the files' share of the original's
    `original_bytes` (the recipe aims at INT4_SIZE_BUDGET; a model whose vocabulary matrices
    dominate, stored twice in ONNX against once in the tied original, can exceed it)."""
    import onnx
    from onnxruntime.quantization import QuantFormat
    from onnxruntime.quantization.matmul_nbits_quantizer import (
        DefaultWeightOnlyQuantConfig,
        MatMulNBitsQuantizer,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, dict[str, int]] = {}
    for name in ONNX_FILES:
        config = DefaultWeightOnlyQuantConfig(
            block_size=INT4_BLOCK_SIZE,
            is_symmetric=INT4_SYMMETRIC,
            accuracy_level=INT4_ACCURACY_LEVEL,
            quant_format=QuantFormat.QOperator,
            op_types_to_quantize=("MatMul", "Gather"),
            # MatMul weights are blocked along their input axis (0); the embedding along its
            # model dimension (1), so each looked-up row dequantizes on its own.
            quant_axes=(("MatMul", 0), ("Gather", 1)),
        )
        quantizer = MatMulNBitsQuantizer(onnx.load(str(fp32_dir / name)), algo_config=config)
        quantizer.process()
        model = quantizer.model.model
        save_model(model, out_dir / name)
        kinds = {"MatMulNBits": 0, "GatherBlockQuantized": 0, "MatMul": 0}
        for node, _ in walk(model.graph):
            if node.op_type in kinds:
                kinds[node.op_type] += 1
        counts[name] = kinds
        del quantizer, model
    copy_preprocessing_files(fp32_dir, out_dir)
    written = weight_bytes(out_dir)
    return {
        "method": "onnxruntime MatMulNBitsQuantizer (weight-only, QOperator)",
        "bits": 4,
        "block_size": INT4_BLOCK_SIZE,
        "accuracy_level": INT4_ACCURACY_LEVEL,
        "symmetric": INT4_SYMMETRIC,
        "operators": ["MatMul -> MatMulNBits", "Gather -> GatherBlockQuantized"],
        "nodes": counts,
        "note": "MatMuls without a constant weight (attention scores) stay fp32",
        "share_of_original": round(written / original_bytes, 4),
        "within_budget": written <= INT4_SIZE_BUDGET * original_bytes,
    }


def fp32_convolutions(fp32_dir: Path) -> list[str]:
    """The encoder's two convolutions, kept in fp32 in multilingual models.

    They read the log-mel features directly. Quantized dynamically (one scale for each whole
    input), they shift the language probabilities: measured on base, an English-then-German
    clip with the language detected per window had German windows heard as Welsh ("cy") with
    int8 convolutions and all German with fp32 ones (tests/test_engines_real.py). They hold
    under 1% of the weights (2.7 MiB more in fp32 for base). English-only models detect no
    language, and tiny.en's int8 files are at its 40% size budget, so there they stay int8.
    """
    import onnx

    if not multilingual_export(fp32_dir):
        return []
    return [
        node.name
        for node, _ in walk(onnx.load(str(fp32_dir / ENCODER_FILE), load_external_data=False).graph)
        if node.op_type == "Conv"
    ]


# The second MatMul of each encoder layer's feed-forward block, as Optimum's export names it
# (the same for every Whisper size).
ENCODER_FC2 = re.compile(r"^/layers\.\d+/fc2/MatMul$")


def fp32_feed_forward_outputs(fp32_dir: Path) -> list[str]:
    """The encoder's `fc2` MatMuls, kept in fp32 in multilingual models.

    Their input is the GELU output, and dynamic quantization gives it one uint8 scale per call,
    set by its largest value: the few large activations leave the many small ones a handful of
    levels. Measured on base (docs/int8-languages.md, 24 windows of English, German, Russian
    and French speech), int8 `fc2` moved the language probabilities by a mean KL of 0.10 from
    onnx-fp32's and flipped the detected language on 3 windows (German heard as English or
    Welsh), on both the avx2 and the avx512_vnni preset; with only these six MatMuls in fp32,
    KL 0.003 and no flip. The encoder's attention, its `fc1`, and the whole decoder moved the
    probabilities 40-60x less. Cost on base: 43% of the original's bytes instead of 36%, and
    the int8 encoder 18-35% slower (the decoder is unchanged). English-only models detect no
    language and keep them in int8.
    """
    import onnx

    if not multilingual_export(fp32_dir):
        return []
    graph = onnx.load(str(fp32_dir / ENCODER_FILE), load_external_data=False).graph
    return [node.name for node, _ in walk(graph) if ENCODER_FC2.match(node.name)]


# Every weight MatMul of one encoder layer (its q/k/v/out projections, fc1 and fc2), as
# Optimum's export names them; the attention's activation MatMuls have other names.
ENCODER_LAYER_WEIGHTS = re.compile(r"^/layers\.(\d+)/(self_attn/(q|k|v|out)_proj|fc1|fc2)/MatMul$")


def fp32_encoder_layers(fp32_dir: Path, count: int) -> list[str]:
    """The weight MatMuls of the first `count` encoder layers (`build_model.py
    --fp32-encoder-layers`), kept in fp32.

    The int8 error that enters in the first layer is carried through every later one. On base,
    on 77 Spanish tuning prompts, layer 0 whole in fp32 took the language KL from onnx-fp32
    from 0.0077 to 0.0049 (avx2 preset) and, after SmoothQuant, to 0.0034 (avx2) and 0.0038
    (avx512_vnni), with no top-language flip; no other layer came close, and layer 0's
    attention or fc1 alone left flips (docs/int8-languages.md sections 10-11).
    """
    import onnx

    if count <= 0:
        return []
    graph = onnx.load(str(fp32_dir / ENCODER_FILE), load_external_data=False).graph
    return [
        node.name
        for node, _ in walk(graph)
        if (match := ENCODER_LAYER_WEIGHTS.match(node.name)) and int(match.group(1)) < count
    ]


def int8_savings(fp32_dir: Path, names: list[str]) -> int:
    """The bytes int8 would save on these MatMuls' fp32 weights: 3 of each weight's 4 bytes,
    what keeping them in fp32 adds to the int8 files, read from the graph's tensor shapes."""
    import onnx

    graph = onnx.load(str(fp32_dir / ENCODER_FILE), load_external_data=False).graph
    shapes = {t.name: list(t.dims) for t in graph.initializer}
    wanted = set(names)
    weights = sum(
        int(np.prod(shapes[name], dtype=np.int64))
        for node, _ in walk(graph)
        if node.name in wanted
        for name in node.input
        if name in shapes
    )
    return 3 * weights


def multilingual_export(fp32_dir: Path) -> bool:
    """Whether the exported model in `fp32_dir` is multilingual (from its vocabulary size)."""
    return is_multilingual(_vocab_size(fp32_dir))


def calibration_clips(folder: Path) -> list[Path]:
    """The audio files of a calibration folder, sorted; refuses a folder with none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise QuantizerError(f"Calibration folder {folder} does not exist")
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
    if not clips:
        raise QuantizerError(
            f"Calibration folder {folder} holds no audio ({', '.join(AUDIO_SUFFIXES)})"
        )
    return clips


def calibration_windows(clips: list[Path], preprocessing_dir: Path) -> list[np.ndarray]:
    """Log-mel features of every 30 s window of every clip, as the encoder receives them."""
    from transformers import WhisperFeatureExtractor

    from .audio import SAMPLE_RATE, decode_audio

    extractor = WhisperFeatureExtractor.from_pretrained(preprocessing_dir)
    window = extractor.n_samples
    windows = []
    for clip in clips:
        audio = decode_audio(clip, max_seconds=None)
        for start in range(0, max(len(audio), 1), window):
            features = extractor(
                audio[start : start + window], sampling_rate=SAMPLE_RATE, return_tensors="np"
            ).input_features
            windows.append(features.astype(np.float32))
    return windows


class _Windows:
    """onnxruntime's CalibrationDataReader over precomputed feature windows."""

    def __init__(self, windows: list[np.ndarray]):
        self._windows = iter(windows)

    def get_next(self):
        features = next(self._windows, None)
        return None if features is None else {"input_features": features}

    def rewind(self):  # pragma: no cover - MinMax reads the windows once
        raise NotImplementedError


def quantize_static_encoder(
    fp32_dir: Path,
    decoder_dir: Path,
    out_dir: Path,
    *,
    calibration_dir: Path,
    vnni: bool,
) -> dict:
    """The encoder in static QDQ int8, calibrated on `calibration_dir`'s clips, with the
    decoder of `decoder_dir` (the dynamic int8 one).

    Types follow onnxruntime's guidance for CPU inference: uint8 activations, int8 weights,
    per-channel; without VNNI, `reduce_range` (7-bit weights) avoids the saturation of AVX2's
    u8 x s8 multiply-add. Attention's activation x activation MatMuls stay fp32, and so do a
    multilingual model's convolutions, as in the dynamic recipe (measured here too: with a
    static int8 convolution, base heard seven German windows of the English-then-German clip
    as English).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    clips = calibration_clips(calibration_dir)
    windows = calibration_windows(clips, fp32_dir)
    excluded = activation_matmuls(fp32_dir / ENCODER_FILE) + fp32_convolutions(fp32_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    operators = ["MatMul", "Conv"]
    quantize_static(
        str(fp32_dir / ENCODER_FILE),
        str(out_dir / ENCODER_FILE),
        _Windows(windows),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=operators,
        per_channel=True,
        reduce_range=not vnni,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=excluded,
        calibrate_method=CalibrationMethod.MinMax,
        use_external_data_format=False,
    )
    link_graph(decoder_dir, DECODER_FILE, out_dir)
    copy_preprocessing_files(fp32_dir, out_dir)
    return {
        "method": "onnxruntime quantize_static, QDQ (encoder); decoder: the quantized recipe's",
        "calibration_method": CALIBRATION_METHOD,
        "calibration_folder": calibration_dir.name
        if calibration_dir != DEFAULT_CALIBRATION_DIR
        else "tests/data (the shipped tuning clips)",
        "calibration_clips": len(clips),
        "calibration_windows": len(windows),
        "activations": "QUInt8",
        "weights": "QInt8",
        "per_channel": True,
        "reduce_range": not vnni,
        "operators": operators,
        "excluded": "MatMuls without a constant weight (attention scores) and, in "
        "multilingual models, the convolutions: " + ", ".join(excluded),
    }
