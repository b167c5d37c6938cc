"""SmoothQuant for dynamic int8: move the activations' outlier channels into the weights.

Dynamic int8 gives a MatMul's input one uint8 scale per call, set by its largest value, so a
few channels that are always large leave the others with a handful of levels. SmoothQuant
(Xiao et al. 2023, arXiv:2211.10438; its reference `smooth_ln_fcs`) divides each channel j of
a LayerNorm's output by s_j and multiplies row j of every weight that reads it by s_j:

    LN(x) W = (LN(x) / s) (diag(s) W),  s_j = max|X_j|^alpha / max_k |W_jk|^(1 - alpha)

exact in real arithmetic; LN(x) / s is LayerNorm with its scale and bias divided by s. max|X_j|
is measured on calibration audio (the original PyTorch model, `activation_scales`); alpha
moves the difficulty from the activations (alpha = 1: all of it into the weights) to the
weights, whose int8 scales are per output channel.

Only LayerNorms whose every reader is a weight MatMul are smoothed (q/k/v, the decoder's
cross-attention query, fc1, the output projection when its weight is its own); a LayerNorm
output that is also a graph output (the encoder's last) is left alone, and so is a weight
that anything else reads.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from .graphs import graph_and_subgraphs

MIN_SCALE = 1e-5  # as smooth_ln_fcs clamps both the weights' maxima and the scales


def torch_name(scale_initializer: str) -> str:
    """The PyTorch module of a LayerNorm's scale initializer in Optimum's export:
    `layers.0.final_layer_norm.weight` (encoder file) or
    `model.decoder.layers.0.final_layer_norm.weight_merged_0` (merged decoder)."""
    name = scale_initializer.removesuffix("_merged_0").removesuffix(".weight")
    return name if name.startswith("model.") else "model.encoder." + name


def activation_scales(model, features: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Per LayerNorm module of a transformers Whisper model: the largest |output| of each
    channel over every position of `features` (log-mel windows), encoder and generated
    tokens alike (greedy, timestamps, the language detected). `features`: (1, mels, frames)
    arrays, as quantizers.calibration_windows gives them."""
    import torch

    found: dict[str, np.ndarray] = {}

    def hook(name):
        def record(module, inputs, output):
            peak = output.detach().abs().reshape(-1, output.shape[-1]).amax(dim=0).numpy()
            found[name] = np.maximum(found[name], peak) if name in found else peak

        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.LayerNorm)
    ]
    try:
        with torch.inference_mode():
            for window in features:
                model.generate(torch.from_numpy(window), return_timestamps=True)
    finally:
        for handle in handles:
            handle.remove()
    return found


def calibration_maxima(original_dir: Path, clips: list[Path]) -> tuple[dict[str, np.ndarray], int]:
    """`activation_scales` of the original (transformers) in `original_dir` on every 30 s
    window of `clips`, and how many windows that was. The model is released on return."""
    from transformers import WhisperForConditionalGeneration

    from .quantizers import calibration_windows

    model = WhisperForConditionalGeneration.from_pretrained(original_dir).eval()
    windows = calibration_windows(clips, original_dir)
    return activation_scales(model, windows), len(windows)


def smooth_model(model, scales: dict[str, np.ndarray], alpha: float) -> list[str]:
    """Smooth every eligible LayerNorm of an ONNX model in place; returns their modules."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    readers: dict[str, list] = defaultdict(list)  # value name -> nodes reading it
    layer_norms: dict[str, list] = defaultdict(list)  # scale initializer -> its LN nodes
    graph_outputs = set()
    for graph in graph_and_subgraphs(model.graph):
        graph_outputs |= {o.name for o in graph.output}
        for node in graph.node:
            for name in node.input:
                readers[name].append(node)
            if node.op_type == "LayerNormalization":
                layer_norms[node.input[1]].append(node)
    smoothed = []
    for scale_name, nodes in sorted(layer_norms.items()):
        weights = _weights_read(nodes, readers, initializers, graph_outputs)
        module = torch_name(scale_name)
        if weights is None or module not in scales:
            continue
        bias_name = nodes[0].input[2]
        arrays = {w: numpy_helper.to_array(initializers[w]) for w in weights}
        weight_max = np.max([np.abs(a).max(axis=1) for a in arrays.values()], axis=0)
        s = scales[module].astype(np.float64) ** alpha / np.maximum(weight_max, MIN_SCALE) ** (
            1 - alpha
        )
        s = np.maximum(s, MIN_SCALE)
        for name in (scale_name, bias_name):
            value = numpy_helper.to_array(initializers[name]).astype(np.float64)
            _replace(initializers[name], (value / s).astype(np.float32))
        for name, array in arrays.items():
            _replace(initializers[name], (array.astype(np.float64) * s[:, None]).astype(np.float32))
        smoothed.append(module)
    return smoothed


def _weights_read(nodes, readers, initializers, graph_outputs) -> list[str] | None:
    """The weight initializers the LayerNorm `nodes` (one per branch of the merged decoder)
    feed, if every reader of their output is a MatMul by a weight that nothing else reads (or
    a Shape) and their scale and bias are their own; else None."""
    outputs = {node.output[0] for node in nodes}
    weights = set()
    for node in nodes:
        if len(node.input) < 3 or node.output[0] in graph_outputs:
            return None
        for reader in readers[node.output[0]]:
            if reader.op_type == "Shape":  # reads the shape alone, which smoothing keeps
                continue
            if reader.op_type != "MatMul" or reader.input[0] != node.output[0]:
                return None
            if reader.input[1] not in initializers:
                return None
            weights.add(reader.input[1])
    if not weights:
        return None
    # Each weight is read only as the B of MatMuls whose A is this LayerNorm's output.
    for weight in weights:
        if any(
            r.op_type != "MatMul" or r.input[1] != weight or r.input[0] not in outputs
            for r in readers[weight]
        ):
            return None
    # Its scale and bias: initializers of its own (an export can share equal tensors between
    # LayerNorms through Identity nodes, and those are left alone).
    for i in (1, 2):
        names = {n.input[i] for n in nodes}
        if len(names) != 1 or any(
            name not in initializers or len(readers[name]) != len(nodes) for name in names
        ):
            return None
    return sorted(weights)


def _replace(initializer, array: np.ndarray) -> None:
    from onnx import numpy_helper

    initializer.CopyFrom(numpy_helper.from_array(array, initializer.name))


def smooth_export(fp32_dir: Path, out_dir: Path, scales: dict[str, np.ndarray], alpha: float):
    """Write `out_dir` with fp32_dir's encoder and decoder smoothed (and its other files);
    returns the modules smoothed per file."""
    import onnx

    from .layout import ONNX_FILES
    from .onnx_files import save_model
    from .weights import copy_preprocessing_files

    out_dir.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in ONNX_FILES:
        model = onnx.load(str(fp32_dir / name))
        done[name] = smooth_model(model, scales, alpha)
        save_model(model, out_dir / name)
    copy_preprocessing_files(fp32_dir, out_dir)
    return done


def smooth_for_int8(
    original_dir: Path, fp32_dir: Path, out_dir: Path, clips: list[Path], alpha: float
) -> dict:
    """The `quantized` recipe's first step on a multilingual model: activation maxima of the
    original (transformers) on every 30 s window of `clips`, then `fp32_dir` smoothed into
    `out_dir`. Returns what the manifest records."""
    from .quantizers import QuantizerError

    scales, windows = calibration_maxima(original_dir, clips)
    done = smooth_export(fp32_dir, out_dir, scales, alpha)
    if not all(done.values()):
        raise QuantizerError(
            "SmoothQuant found no LayerNorm to smooth in "
            + ", ".join(name for name, modules in done.items() if not modules)
            + " (an export whose names smoothing.torch_name does not know)"
        )
    return {
        "smoothing": f"SmoothQuant, alpha {alpha:g}, activation maxima of {windows} "
        f"windows of {len(clips)} calibration clips",
        "smoothed_layer_norms": {name: len(modules) for name, modules in done.items()},
    }
