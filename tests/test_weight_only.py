"""`graphs.weight_only`: each dynamic int8 MatMul computed in float32 from its int8 weights.

scripts/sensitivity.py's `detect:` variants run language detection through it (docs/
int8-languages.md section 9). The rewritten MatMul must equal x @ dequantized(W) exactly as
float arithmetic allows, and on Whisper's decoder it must leave no integer MatMul behind.
Without WEIGHT_ONLY_SESSION_CONFIG onnxruntime fuses the pair into MatMulNBits at accuracy
level 4, which quantizes the activations again: the first test fails then (measured: 1.24
largest difference from x @ dequantized(W)).
"""

from __future__ import annotations

import numpy as np
import pytest

from whisper_quant.graphs import WEIGHT_ONLY_SESSION_CONFIG, runtime_graphs, weight_only
from whisper_quant.layout import DECODER_FILE, ENCODER_FILE


def _session(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    for key, value in WEIGHT_ONLY_SESSION_CONFIG.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _dynamic_int8_matmul(tmp_path, per_channel: bool):
    """A MatMul + Add of random weights, quantized as Optimum quantizes (quantize_dynamic)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    rng = np.random.default_rng(0)
    weight = rng.standard_normal((64, 48)).astype(np.float32)
    weight[:, 3] *= 20  # one loud output channel: per-channel scales differ
    bias = rng.standard_normal(48).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y0"], name="/fc/MatMul"),
            helper.make_node("Add", ["y0", "b"], ["y"], name="/fc/Add"),
        ],
        "fc",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 48])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    source, target = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    onnx.save(model, str(source))
    quantize_dynamic(
        str(source), str(target), per_channel=per_channel, weight_type=QuantType.QUInt8
    )
    quantized = onnx.load(str(target))
    inits = {t.name: numpy_helper.to_array(t) for t in quantized.graph.initializer}
    q = next(v for k, v in inits.items() if k.endswith("_quantized"))
    scale = next(v for k, v in inits.items() if k.startswith("W") and k.endswith("_scale"))
    zero = next(v for k, v in inits.items() if k.startswith("W") and k.endswith("_zero_point"))
    dequantized = (q.astype(np.float32) - zero.astype(np.float32)) * scale
    return quantized.SerializeToString(), dequantized, bias, weight


@pytest.mark.parametrize("per_channel", [True, False])
def test_a_rewritten_matmul_is_x_times_the_dequantized_weights(tmp_path, per_channel):
    model, dequantized, bias, weight = _dynamic_int8_matmul(tmp_path, per_channel)
    rewritten, count = weight_only(model)
    assert count == 1
    import onnx

    ops = [n.op_type for n in onnx.load_from_string(rewritten).graph.node]
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops
    x = (np.random.default_rng(1).standard_normal((5, 64)) * 3).astype(np.float32)
    got = _session(rewritten).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, x @ dequantized + bias, rtol=1e-5, atol=1e-4)
    # The int8 original quantizes x too, so it is further from the float32 product.
    dynamic = _session(model).run(None, {"x": x})[0]
    exact = x @ weight + bias
    assert np.abs(got - exact).mean() < np.abs(dynamic - exact).mean()


@pytest.mark.integration
def test_whispers_int8_decoder_step_runs_without_integer_matmuls(built_tiny_en):
    import onnx

    folder = built_tiny_en.folder
    quantized = runtime_graphs(
        folder / "quantized" / ENCODER_FILE, folder / "quantized" / DECODER_FILE
    )
    fp32 = runtime_graphs(folder / "onnx-fp32" / ENCODER_FILE, folder / "onnx-fp32" / DECODER_FILE)
    integer = [n.op_type for n in onnx.load_from_string(quantized.decoder).graph.node].count(
        "MatMulInteger"
    )
    step, count = weight_only(quantized.decoder)
    assert count == integer > 0
    ops = [n.op_type for n in onnx.load_from_string(step).graph.node]
    assert "MatMulInteger" not in ops and "DynamicQuantizeLinear" not in ops

    rng = np.random.default_rng(0)
    features = (rng.standard_normal((1, 80, 3000)) * 0.5).astype(np.float32)
    hidden = _session(fp32.encoder).run(None, {"input_features": features})[0]
    cross_out = _session(fp32.cross).run(None, {"encoder_hidden_states": hidden})
    cross = dict(zip(fp32.cross_names, cross_out, strict=True))

    def logits(graph: bytes) -> np.ndarray:
        session = _session(graph)
        feeds = {"input_ids": np.array([[50257, 50362, 464]], np.int64), **cross}
        for i in session.get_inputs():
            if i.name.startswith("past_key_values.") and ".decoder." in i.name:
                feeds[i.name] = np.zeros((1, i.shape[1], 0, i.shape[3]), np.float32)
        outputs = session.run(None, feeds)
        names = [o.name for o in session.get_outputs()]
        return outputs[names.index("logits")]

    reference = logits(fp32.decoder)
    error_weight_only = np.abs(logits(step) - reference).mean()
    error_int8 = np.abs(logits(quantized.decoder) - reference).mean()
    assert 0 < error_weight_only < error_int8


@pytest.mark.integration
def test_an_onnx_engine_runs_the_graphs_and_session_config_its_hook_gives(built_tiny_en):
    """OnnxEngine._session_graph and session_config (sensitivity.py's `detect:` variants use
    them): the rewritten decoder step is what the engine's decoder session runs, and the
    config entry reaches the sessions and the run's description."""
    from whisper_quant.engines import OnnxEngine

    seen = []

    class WeightOnlyDecoder(OnnxEngine):
        session_config = WEIGHT_ONLY_SESSION_CONFIG

        def _session_graph(self, part: str, graph: bytes) -> bytes:
            seen.append(part)
            return weight_only(graph)[0] if part == "decoder" else graph

    plain, rewritten = OnnxEngine(built_tiny_en.folder), WeightOnlyDecoder(built_tiny_en.folder)
    plain.load()
    rewritten.load()
    assert sorted(seen) == ["cross", "decoder", "encoder"]
    details = rewritten.runtime_details()["session_options"]
    assert all(details[key] == value for key, value in WEIGHT_ONLY_SESSION_CONFIG.items())

    rng = np.random.default_rng(0)
    features = (rng.standard_normal((1, 80, 3000)) * 0.5).astype(np.float32)
    (hidden,) = plain.encoder.run(None, {"input_features": features})
    cross = dict(
        zip(
            plain.cross_names,
            plain.cross.run(plain.cross_names, {"encoder_hidden_states": hidden}),
            strict=True,
        )
    )
    feeds = {"input_ids": np.array([[50257, 50362, 464]], np.int64), **cross}
    for name in plain.self_past:
        feeds[name] = np.zeros((1, plain.heads, 0, plain.head_dim), np.float32)

    def logits(engine) -> np.ndarray:
        outputs = engine.decoder.run(None, feeds)
        return outputs[engine.output_names.index("logits")]

    folder = built_tiny_en.folder / "quantized"
    step = _session(
        weight_only(runtime_graphs(folder / ENCODER_FILE, folder / DECODER_FILE).decoder)[0]
    )
    expected = step.run(None, feeds)[[o.name for o in step.get_outputs()].index("logits")]
    np.testing.assert_allclose(logits(rewritten), expected, rtol=1e-5, atol=1e-4)
    assert np.abs(logits(plain) - expected).max() > 1e-3
