"""The recipes' quantizers beyond Optimum's dynamic int8: int4 weights, static int8, mixes.

Each function writes one variant subfolder (layout.py) from the fp32 export and returns the
settings the manifest records for it. The dynamic int8 recipes (`quantized`, `int8-seed`)
are Optimum's ORTQuantizer, in build.py.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np

from .layout import DECODER_FILE, ENCODER_FILE, ONNX_FILES, weight_bytes
from .recipes import (
    CALIBRATION_METHOD,
    INT4_ACCURACY_LEVEL,
    INT4_BLOCK_SIZE,
    INT4_SIZE_BUDGET,
    INT4_SYMMETRIC,
)

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".opus", ".webm")
# The shipped clips the quantized recipe was tuned on (the benchmark's tuning set); the
# evaluation set (eval/) is never used for calibration.
DEFAULT_CALIBRATION_DIR = Path(__file__).resolve().parents[2] / "tests" / "data"
# onnxruntime's default name for a quantized model's external data is `<file>.data`; the
# layout's is `<file>_data`, as Optimum's export writes it.
EXTERNAL_DATA_FROM_BYTES = 2**31 - 2**26


class QuantizerError(RuntimeError):
    """A recipe cannot be built; the message says why."""


def link_variant(sources: dict[str, Path], out_dir: Path, preprocessing_from: Path) -> None:
    """Make a variant from existing graphs: `sources` maps each ONNX file name to the folder
    holding it. Files are hard-linked (no extra disk) where the file system allows."""
    from .weights import copy_preprocessing_files

    out_dir.mkdir(parents=True, exist_ok=True)
    for name in ONNX_FILES:
        folder = sources[name]
        for file in (name, name + "_data"):
            if (folder / file).is_file():
                _link(folder / file, out_dir / file)
    copy_preprocessing_files(preprocessing_from, out_dir)


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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

    from .graphs import walk
    from .weights import copy_preprocessing_files

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
        _save(model, out_dir / name)
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


def _save(model, path: Path) -> None:
    """Save a graph, its weights in `<file>_data` when it is past protobuf's 2 GB."""
    import onnx

    if model.ByteSize() < EXTERNAL_DATA_FROM_BYTES:
        onnx.save_model(model, str(path))
        return
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=path.name + "_data",
    )


def fp32_convolutions(fp32_dir: Path) -> list[str]:
    """The encoder's two convolutions, kept in fp32 in multilingual models.

    They read the log-mel features directly. Quantized dynamically (one scale for each whole
    input), they shift the language probabilities: measured on base, an English-then-German
    clip with the language detected per window had German windows heard as Welsh ("cy") with
    int8 convolutions and all German with fp32 ones (tests/test_engines_real.py). They hold
    under 1% of the weights (2.7 MiB more in fp32 for base). English-only models detect no
    language, and tiny.en's int8 files are at its 40% size budget, so there they stay int8.
    """
    import json

    import onnx

    from .graphs import walk
    from .tokens import is_multilingual

    config = json.loads((fp32_dir / "config.json").read_text(encoding="utf-8"))
    if not is_multilingual(config["vocab_size"]):
        return []
    return [
        node.name
        for node, _ in walk(onnx.load(str(fp32_dir / ENCODER_FILE), load_external_data=False).graph)
        if node.op_type == "Conv"
    ]


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

    from .graphs import activation_matmuls
    from .weights import copy_preprocessing_files

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
    for file in (DECODER_FILE, DECODER_FILE + "_data"):
        if (decoder_dir / file).is_file():
            _link(decoder_dir / file, out_dir / file)
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
