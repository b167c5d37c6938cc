"""The quantization recipes: what each ONNX variant of a built model holds, by name.

A recipe names a variant subfolder of a built model (layout.py), the engine that runs it
(engines/) and how each of its two graphs (encoder, merged decoder) was made. The names are
fixed: scripts, the page and the `compare` API's `engines` input use them.

- onnx-fp32:    Optimum's export, unquantized: what the runtime alone brings.
- int8-seed:    the article's configuration, `AutoQuantizationConfig.avx512_vnni(
                is_static=False, per_channel=False)` on every quantizable operator (attention's
                activation x activation MatMuls included), run by the studio's loop. The
                `optimum` engine runs the same files through Optimum's `generate`.
- quantized:    the studio's dynamic int8: per-channel weight scales, the preset that fits
                the CPU (`--quantization auto`), attention's activation MatMuls kept in fp32.
- int8-encoder: the `quantized` encoder with the fp32 decoder.
- int8-decoder: the fp32 encoder with the `quantized` decoder.
- int4-weights: onnxruntime's 4-bit weight-only quantization: MatMuls with a constant weight
                become MatMulNBits, the token embedding's Gather becomes GatherBlockQuantized.
- int8-static:  the encoder statically quantized (QDQ, activation ranges calibrated on clips),
                with the `quantized` decoder. onnxruntime's static calibrator records ranges
                of the top-level graph only, and every node of Optimum's merged decoder sits
                inside the branches of one `If`, so a static pass would leave the decoder
                unquantized; the decoder is therefore the dynamic one.
"""

from __future__ import annotations

from dataclasses import dataclass

# How one graph of a variant was made.
FP32 = "fp32"
INT8_DYNAMIC = "int8 dynamic"  # the `quantized` recipe's graphs
INT8_SEED = "int8 dynamic, article's config"
INT8_STATIC = "int8 static (QDQ, calibrated)"
INT4_WEIGHTS = "int4 weights (MatMulNBits)"

# The 8-bit weight-block decoder measured against the `quantized` recipe's (quantizers.py,
# `quantize_decoder_blocks`; no recipe builds it): MatMulNBits in blocks of 64 along each
# weight's input axis, accuracy level 4 (int8 kernels whose activations are quantized per
# block of the same 64 values instead of one scale per call).
DECODER_BLOCK_BITS = 8
DECODER_BLOCK_SIZE = 64
DECODER_ACCURACY_LEVEL = 4

# onnxruntime's MatMulNBits settings. Block size 64 keeps tiny.en's int4 files under a
# quarter of its fp32 weights: with 32, the fp32 scales (4 bytes per block) of the two
# 51864 x 384 vocabulary matrices (the embedding's Gather and the output projection) take it
# to 26%. Accuracy level 4 computes with int8 activations (MLAS's fastest CPU kernels);
# levels 0-1 would dequantize to fp32 and run an fp32 GEMM.
INT4_BLOCK_SIZE = 64
INT4_ACCURACY_LEVEL = 4
INT4_SYMMETRIC = True
# The int4 files may take at most this share of the original's fp32 weight bytes.
INT4_SIZE_BUDGET = 0.25

# SmoothQuant's alpha for a multilingual model's `quantized` recipe, when a build asks for it
# (`build_model.py --smoothquant`, smoothing.py). On base, 77 Spanish tuning prompts (never
# evaluation clips), calibrated on tests/data: the language probabilities' mean KL from
# onnx-fp32's was 0.0106 unsmoothed, 0.0050 with 0.65 and 0.0052 with 0.8 (the whole decoder
# in fp32: 0.0051). docs/int8-languages.md section 7.
SMOOTHING_ALPHA = 0.65

# Static calibration: onnxruntime's MinMax calibrator over 30 s windows of log-mel features.
CALIBRATION_METHOD = "MinMax"


@dataclass(frozen=True)
class Recipe:
    name: str  # variant subfolder and engine name
    label: str  # what the page and reports call it
    encoder: str  # how the encoder graph was made (one of the constants above)
    decoder: str  # how the merged decoder graph was made
    summary: str  # one line for the README, the page and reports


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "onnx-fp32",
            "ONNX fp32 (no quantization)",
            FP32,
            FP32,
            "Optimum's export, unquantized, run by the studio's loop: the runtime's part",
        ),
        Recipe(
            "int8-seed",
            "Article's int8 (avx512_vnni, per-tensor)",
            INT8_SEED,
            INT8_SEED,
            "AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False) on every "
            "operator, run by the studio's loop",
        ),
        Recipe(
            "quantized",
            "Quantized (ONNX int8)",
            INT8_DYNAMIC,
            INT8_DYNAMIC,
            "dynamic int8, per-channel weights, preset for this CPU, attention's activation "
            "MatMuls in fp32",
        ),
        Recipe(
            "int8-encoder",
            "int8 encoder only",
            INT8_DYNAMIC,
            FP32,
            "the quantized encoder with the fp32 decoder",
        ),
        Recipe(
            "int8-decoder",
            "int8 decoder only",
            FP32,
            INT8_DYNAMIC,
            "the fp32 encoder with the quantized decoder",
        ),
        Recipe(
            "int4-weights",
            "int4 weights (MatMulNBits)",
            INT4_WEIGHTS,
            INT4_WEIGHTS,
            f"4-bit weight-only MatMulNBits (block {INT4_BLOCK_SIZE}, accuracy level "
            f"{INT4_ACCURACY_LEVEL}) and a 4-bit token embedding (GatherBlockQuantized)",
        ),
        Recipe(
            "int8-static",
            "Static int8 encoder (QDQ) + dynamic decoder",
            INT8_STATIC,
            INT8_DYNAMIC,
            f"the encoder in static QDQ int8 ({CALIBRATION_METHOD} calibration on clips), "
            "the quantized decoder",
        ),
    )
}
# Every build has these: onnx-fp32 separates the runtime's gain from int8's, and quantized
# is the recipe the app compares by default. Together they take about 40 s for tiny.en, so
# the Space's first start stays short; the other recipes are built on request.
REQUIRED_RECIPES = ("onnx-fp32", "quantized")
DEFAULT_RECIPES = REQUIRED_RECIPES


class RecipeError(ValueError):
    """An unknown recipe name; the message lists the known ones."""


def parse_recipes(text: str | None) -> tuple[str, ...]:
    """`a,b,...` or `all` as the recipes to build, in RECIPES' order, the required ones added."""
    if text is None or not text.strip():
        return DEFAULT_RECIPES
    names = {n.strip() for n in text.split(",") if n.strip()}
    if "all" in names:
        return tuple(RECIPES)
    unknown = sorted(names - set(RECIPES))
    if unknown:
        raise RecipeError(
            f"Unknown recipe {', '.join(unknown)}; choose all or any of: {', '.join(RECIPES)}"
        )
    wanted = names | set(REQUIRED_RECIPES)
    return tuple(name for name in RECIPES if name in wanted)
