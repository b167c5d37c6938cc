"""The contract of a built model folder: what `build_model.py` writes and the runtime reads.

A built model is a folder `<models dir>/<name>/` holding one subfolder per variant and a
manifest:

    original/        fp32 safetensors + config, generation config, tokenizer, preprocessor
    onnx-fp32/       Optimum's ONNX export: ENCODER_FILE + DECODER_FILE (merged, with cache)
    quantized/       the same two files, dynamically quantized to int8
    <recipe>/        one more subfolder per recipe built with `--recipes` (int8-seed,
                     int8-encoder, int8-decoder, int4-weights, int8-static; see recipes.py),
                     each holding the same two files and the preprocessing files
    ct2/             the CTranslate2 source (model.bin), for the faster-whisper engine
    manifest.json    source, settings, every file's size and sha256 (see manifest.py)

The builder (build.py) writes this layout; the engines, workers and comparison import only
this module to find their files, never the builder.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODELS_DIR = Path("models")

# Variant subfolders.
ORIGINAL_DIR = "original"
ONNX_FP32_DIR = "onnx-fp32"
QUANTIZED_DIR = "quantized"
# The article's recipe: run by the studio's loop (int8-seed) and by Optimum's generate.
SEED_DIR = "int8-seed"
CT2_DIR = "ct2"
# A build's scratch folder: a multilingual model's smoothed fp32 export (smoothing.py), which
# the `quantized` recipe is quantized from; deleted before the manifest is written.
SMOOTHED_FP32_DIR = ".smoothed-fp32"

# The ONNX files of a variant, as Optimum's `main_export` names them.
ENCODER_FILE = "encoder_model.onnx"
DECODER_FILE = "decoder_model_merged.onnx"
ONNX_FILES = (ENCODER_FILE, DECODER_FILE)
# The CTranslate2 weights file.
CT2_MODEL_FILE = "model.bin"
# Per-variant files read by every engine (copied into each ONNX variant too).
CONFIG_FILE = "config.json"
GENERATION_CONFIG_FILE = "generation_config.json"
TOKENIZER_FILE = "tokenizer.json"

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1

# The files whose bytes count as a variant's weights (its "size on disk").
WEIGHT_PATTERNS = ("*.safetensors", "*.onnx", "*.onnx_data", CT2_MODEL_FILE)


def model_folder(models_dir: Path | str, name: str) -> Path:
    return Path(models_dir) / name


def built_models(models_dir: Path | str = DEFAULT_MODELS_DIR) -> list[str]:
    """Names of the model folders in `models_dir` that have a manifest."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    return [
        folder.name
        for folder in sorted(models_dir.iterdir())
        if folder.is_dir() and not folder.name.startswith(".") and (folder / MANIFEST).is_file()
    ]


def build_command(name: str, models_dir: Path | str = DEFAULT_MODELS_DIR) -> str:
    """The command a user runs to (re)build a model, for error messages."""
    extra = "" if Path(models_dir) == DEFAULT_MODELS_DIR else f" --output-dir {models_dir}"
    return f"python build_model.py --model {name}{extra} --force"


def weight_bytes(folder: Path | str) -> int:
    """Bytes of the weight files an engine loads from a variant subfolder."""
    return sum(p.stat().st_size for pattern in WEIGHT_PATTERNS for p in Path(folder).glob(pattern))
