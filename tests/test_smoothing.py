"""Tests for whisper_quant.smoothing: SmoothQuant keeps the fp32 graphs' outputs, smooths only
LayerNorms read by weight MatMuls alone, and measures every LayerNorm of a real model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from whisper_quant.layout import DECODER_FILE, ENCODER_FILE, ONNX_FP32_DIR
from whisper_quant.smoothing import activation_scales, smooth_model, torch_name


def _layer_norm_scales(model) -> dict[str, int]:
    """Each LayerNorm's module (torch_name) and its channel count, in every (sub)graph."""
    from whisper_quant.graphs import graph_and_subgraphs

    sizes = {i.name: i.dims[0] for i in model.graph.initializer}
    return {
        torch_name(node.input[1]): sizes[node.input[1]]
        for graph in graph_and_subgraphs(model.graph)
        for node in graph.node
        if node.op_type == "LayerNormalization"
    }


def _random_scales(model, rng) -> dict[str, np.ndarray]:
    # Channel maxima spread over four decades, as outlier channels make them.
    return {
        name: np.exp(rng.uniform(-4.6, 4.6, size)).astype(np.float32)
        for name, size in _layer_norm_scales(model).items()
    }


def _own_copies(model):
    """The export shares equal tensors through Identity nodes (the random model's LayerNorms
    are all ones and zeros); give each reader its own copy, as a trained model's are."""
    from whisper_quant.graphs import graph_and_subgraphs

    values = {i.name: i for i in model.graph.initializer}
    for graph in graph_and_subgraphs(model.graph):
        for node in [n for n in graph.node if n.op_type == "Identity" and n.input[0] in values]:
            if node.output[0] not in values:  # both decoder branches hold the same Identity
                copy = numpy_helper.to_array(values[node.input[0]]).copy()
                values[node.output[0]] = numpy_helper.from_array(copy, node.output[0])
                model.graph.initializer.append(values[node.output[0]])
            graph.node.remove(node)
    return model


def _run(model, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def test_smoothing_keeps_what_the_fp32_graphs_compute(built_tiny):
    rng = np.random.default_rng(0)
    folder = built_tiny.folder / ONNX_FP32_DIR
    encoder = _own_copies(onnx.load(str(folder / ENCODER_FILE)))
    decoder = _own_copies(onnx.load(str(folder / DECODER_FILE)))
    features = rng.standard_normal((1, 80, 3000)).astype(np.float32)
    (states,) = _run(encoder, {"input_features": features})
    feeds = {"input_ids": np.array([[1, 2, 3]], dtype=np.int64), "encoder_hidden_states": states}
    for value in decoder.graph.input:
        if value.name.startswith("past_key_values"):
            heads, width = (d.dim_value for d in value.type.tensor_type.shape.dim[1::2])
            length = states.shape[1] if ".encoder." in value.name else 0
            feeds[value.name] = np.zeros((1, heads, length, width), dtype=np.float32)
    feeds["use_cache_branch"] = np.array([False])
    logits, step_logits = _two_steps(decoder, feeds)
    before = {i.name: numpy_helper.to_array(i).copy() for i in encoder.graph.initializer}

    layers = len(_layer_norm_scales(encoder)) // 2
    assert smooth_model(encoder, _random_scales(encoder, rng), 0.65)
    smoothed = smooth_model(decoder, _random_scales(decoder, rng), 0.65)

    # Every LayerNorm before q/k/v and fc1, and the decoder's before its cross-attention query
    # and its output projection; the encoder's last one is its output and is left alone.
    assert len(smoothed) == 3 * layers + 1
    changed = [
        i.name
        for i in encoder.graph.initializer
        if not np.array_equal(before[i.name], numpy_helper.to_array(i))
    ]
    # Per layer: two LayerNorm scales, and q, k, v and fc1 (the random biases are zeros).
    assert len(changed) == 2 * layers + 4 * layers, changed
    (states_after,) = _run(encoder, {"input_features": features})
    scale = np.abs(states).max()
    np.testing.assert_allclose(states_after, states, atol=2e-4 * scale)
    feeds["encoder_hidden_states"] = states_after
    after, step_after = _two_steps(decoder, feeds)
    # Both branches of the merged decoder: the first step, and a step with the cache.
    np.testing.assert_allclose(after, logits, atol=2e-4 * np.abs(logits).max())
    np.testing.assert_allclose(step_after, step_logits, atol=2e-4 * np.abs(step_logits).max())


def _two_steps(decoder, feeds: dict) -> tuple[np.ndarray, np.ndarray]:
    """Logits of the prompt (no cache) and of one more token with the cache it returned."""
    names = [o.name for o in decoder.graph.output]
    first = dict(zip(names, _run(decoder, feeds), strict=True))
    step = dict(feeds, input_ids=np.array([[4]], dtype=np.int64))
    step["use_cache_branch"] = np.array([True])
    for name in feeds:
        if name.startswith("past_key_values"):
            step[name] = first[name.replace("past_key_values", "present")]
    return first["logits"], _run(decoder, step)[0]


def _graph(*nodes, weights: dict[str, np.ndarray], outputs: list[str]):
    width = 4
    initializers = [numpy_helper.from_array(a, n) for n, a in weights.items()]
    initializers += [
        numpy_helper.from_array(np.ones(width, np.float32), "ln.weight"),
        numpy_helper.from_array(np.zeros(width, np.float32), "ln.bias"),
    ]
    graph = helper.make_graph(
        [
            helper.make_node("LayerNormalization", ["x", "ln.weight", "ln.bias"], ["n"]),
            *nodes,
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, width])],
        [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outputs],
        initializers,
    )
    return helper.make_model(graph)


@pytest.mark.parametrize(
    "nodes, outputs",
    [
        # the LayerNorm's output also feeds an Add
        ([("MatMul", ["n", "w"], ["y"]), ("Add", ["n", "n"], ["z"])], ["y", "z"]),
        # the weight is also multiplied by another input
        ([("MatMul", ["n", "w"], ["y"]), ("MatMul", ["x", "w"], ["z"])], ["y", "z"]),
        # the LayerNorm's output is a graph output
        ([("MatMul", ["n", "w"], ["y"])], ["y", "n"]),
    ],
)
def test_a_layer_norm_with_another_reader_is_left_alone(nodes, outputs):
    weights = {"w": np.full((4, 4), 0.5, np.float32)}
    model = _graph(
        *(helper.make_node(op, i, o) for op, i, o in nodes), weights=weights, outputs=outputs
    )
    scales = {"model.encoder.ln": np.array([1, 10, 100, 1000], np.float32)}
    assert smooth_model(model, scales, 0.5) == []
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    assert np.array_equal(values["w"], weights["w"])
    assert np.array_equal(values["ln.weight"], np.ones(4, np.float32))


def test_a_layer_norm_read_by_weight_matmuls_alone_is_smoothed():
    rng = np.random.default_rng(1)
    # Two readers whose row (input channel) and column maxima differ.
    weights = {
        "w1": rng.uniform(0.1, 3.0, (4, 3)).astype(np.float32),
        "w2": rng.uniform(0.1, 3.0, (4, 2)).astype(np.float32),
    }
    model = _graph(
        helper.make_node("MatMul", ["n", "w1"], ["y"]),
        helper.make_node("MatMul", ["n", "w2"], ["z"]),
        helper.make_node("Shape", ["n"], ["s"]),
        weights=weights,
        outputs=["y", "z", "s"],
    )
    bias = np.array([1, -2, 3, -4], np.float32)
    next(i for i in model.graph.initializer if i.name == "ln.bias").CopyFrom(
        numpy_helper.from_array(bias, "ln.bias")
    )
    maxima = np.array([1, 10, 100, 1000], np.float32)
    assert smooth_model(model, {"model.encoder.ln": maxima}, 0.65) == ["model.encoder.ln"]
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    # smooth_ln_fcs: max|X_j|^alpha / max_k |W_jk|^(1 - alpha), the max over both readers.
    row_max = np.maximum(np.abs(weights["w1"]).max(axis=1), np.abs(weights["w2"]).max(axis=1))
    s = maxima.astype(np.float64) ** 0.65 / row_max**0.35
    np.testing.assert_allclose(values["ln.weight"], 1 / s, rtol=1e-6)
    np.testing.assert_allclose(values["ln.bias"], bias / s, rtol=1e-6)
    for name, weight in weights.items():
        np.testing.assert_allclose(values[name], weight * s[:, None], rtol=1e-6)


@pytest.mark.integration
def test_activation_maxima_cover_every_layer_norm_of_the_real_model(built_tiny_en, clip):
    from transformers import WhisperForConditionalGeneration

    from whisper_quant.quantizers import calibration_windows

    original = built_tiny_en.folder / "original"
    model = WhisperForConditionalGeneration.from_pretrained(original).eval()
    windows = calibration_windows([clip("goforward.wav")], original)
    scales = activation_scales(model, windows)
    names = {n for n, m in model.named_modules() if m.__class__.__name__ == "LayerNorm"}
    assert set(scales) == names and len(names) == 2 * 4 + 1 + 3 * 4 + 1
    assert all(v.shape == (384,) and (v > 0).all() for v in scales.values())
    # Outlier channels: the largest channel far above the median one somewhere in the model.
    assert max(float(v.max() / np.median(v)) for v in scales.values()) > 10


def test_smoothquant_is_a_build_input_only_when_asked_for(tmp_path, clip):
    from whisper_quant.build import BuildError, BuildOptions, _inputs
    from whisper_quant.cli import build_parser
    from whisper_quant.models import resolve_model
    from whisper_quant.recipes import SMOOTHING_ALPHA

    assert build_parser().parse_args(["--smoothquant"]).smoothquant == SMOOTHING_ALPHA
    assert build_parser().parse_args(["--smoothquant", "0.8"]).smoothquant == 0.8
    assert build_parser().parse_args([]).smoothquant is None
    spec = resolve_model("base")
    plain = _inputs(spec, BuildOptions(), "avx2")
    assert "smooth_alpha" not in plain and "calibration_sha256" not in plain
    smoothed = _inputs(spec, BuildOptions(smooth_alpha=0.65), "avx2")
    # The alpha and the clips its maxima come from decide the files: a change rebuilds.
    assert smoothed["smooth_alpha"] == 0.65 and len(smoothed["calibration_sha256"]) == 64
    with pytest.raises(BuildError, match="holds no audio"):
        _inputs(spec, BuildOptions(smooth_alpha=0.65, calibration=tmp_path), "avx2")
    (tmp_path / "goforward.wav").write_bytes(clip("goforward.wav").read_bytes())
    other = _inputs(spec, BuildOptions(smooth_alpha=0.65, calibration=tmp_path), "avx2")
    assert other["calibration_sha256"] != smoothed["calibration_sha256"]
