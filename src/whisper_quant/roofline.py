"""The floor: the least time this machine's arithmetic and memory allow a Whisper model.

A model's work is counted from its dimensions alone:

- the encoder, per 30 s window (3000 mel frames, 1500 after the second convolution):
  multiply-accumulates (MACs) of the two convolutions, the attention projections, the
  attention's activation products (scores = Q.K^T and scores.V), and the feed-forward block;
- the cross-attention keys and values of every decoder layer, once per window (the ONNX
  engines run them apart, the `cross_kv` section);
- one decoder step: the bytes it reads, i.e. every weight matrix on the step's path (self
  attention, cross attention's query and output, the feed-forward block, the projection to
  the vocabulary), the biases and norms, and the cross-attention key/value cache (fp32
  activations, 1500 frames). The token and position embeddings read one row each and are
  left out, as is the self-attention cache (it grows from nothing to a few MB over a window).

The floor turns that work into seconds with measured peaks (scripts/roofline.py writes them
to docs/roofline.json): encoder seconds = fp32 MACs / fp32 peak + int8 MACs / int8 peak (the
attention's activation products stay fp32 in the int8 recipes: Amdahl), decoder step =
bytes / bandwidth. A figure measured elsewhere is never used: `load_peaks` returns peaks only
when docs/roofline.json names this CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .hardware import INT8_FEATURES, CpuInfo
from .shapes import MAX_SOURCE_POSITIONS, SHAPES, VOCAB_V2, WhisperShape

# docs/roofline.json in the repository the app runs from (the app is deployed from the repo).
ROOFLINE_JSON = Path(__file__).resolve().parents[2] / "docs" / "roofline.json"
# 30 s of audio: 3000 mel frames into the first convolution, 1500 out of the second.
MEL_FRAMES = 2 * MAX_SOURCE_POSITIONS
CONV_KERNEL = 3
BYTES_FP32 = 4
# English-only checkpoints have one token fewer than the multilingual vocabulary.
VOCAB_ENGLISH = VOCAB_V2 - 1


def _small_shape(name: str, d_model: int, layers: int, heads: int, vocab: int) -> WhisperShape:
    """tiny and base, from openai/whisper-{tiny,base}{,.en}'s config.json."""
    return WhisperShape(
        name=name,
        d_model=d_model,
        encoder_layers=layers,
        decoder_layers=layers,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        encoder_ffn_dim=4 * d_model,
        decoder_ffn_dim=4 * d_model,
        num_mel_bins=80,
        vocab_size=vocab,
        hub_id=f"openai/whisper-{name}",
    )


# Every size the roofline reports, smallest first (shapes.SHAPES holds only the synthetic ones).
ROOFLINE_SHAPES: dict[str, WhisperShape] = {
    "tiny": _small_shape("tiny", 384, 4, 6, VOCAB_V2),
    "tiny.en": _small_shape("tiny.en", 384, 4, 6, VOCAB_ENGLISH),
    "base": _small_shape("base", 512, 6, 8, VOCAB_V2),
    "base.en": _small_shape("base.en", 512, 6, 8, VOCAB_ENGLISH),
    **SHAPES,
}
# The sizes the microbenchmarks measure (one per d_model).
MEASURED_SIZES = ("tiny", "base", "small", "medium", "large-v2")


def shape_for(model: str) -> WhisperShape | None:
    """The shape of a model named as the benchmarks name it ('base', 'small-random', ...)."""
    return ROOFLINE_SHAPES.get(model.removesuffix("-random"))


def shape_from_config(name: str, config: dict) -> WhisperShape:
    """The shape of a built model, from its transformers config.json."""
    fields = {f: int(config[f]) for f in WhisperShape.__dataclass_fields__ if f in config}
    fields.pop("name", None)
    fields.pop("hub_id", None)
    return WhisperShape(name=name, **fields)


@dataclass(frozen=True)
class EncoderWork:
    """Multiply-accumulates of one 30 s window through the encoder, by kind."""

    convolutions: int  # conv1 (mel bins -> d_model, 3000 frames) and conv2 (stride 2)
    projections: int  # attention's q, k, v and output projections, every layer
    fc1: int  # the feed-forward block's first MatMul (d_model -> ffn), every layer
    fc2: int  # its second (ffn -> d_model)
    attention: int  # Q.K^T and scores.V: activations times activations, every layer
    cross_kv: int  # the decoder layers' cross-attention keys and values (once per window)

    @property
    def total(self) -> int:
        """The encoder's MACs (the cross-attention keys and values apart)."""
        return self.convolutions + self.projections + self.fc1 + self.fc2 + self.attention

    @property
    def weights(self) -> int:
        """MACs against a constant weight: what int8 weight quantization can reach."""
        return self.convolutions + self.projections + self.fc1 + self.fc2


def encoder_work(shape: WhisperShape, frames: int = MAX_SOURCE_POSITIONS) -> EncoderWork:
    d, layers = shape.d_model, shape.encoder_layers
    conv1 = 2 * frames * shape.num_mel_bins * CONV_KERNEL * d
    conv2 = frames * d * CONV_KERNEL * d
    return EncoderWork(
        convolutions=conv1 + conv2,
        projections=layers * 4 * frames * d * d,
        fc1=layers * frames * d * shape.encoder_ffn_dim,
        fc2=layers * frames * shape.encoder_ffn_dim * d,
        attention=layers * 2 * frames * frames * d,
        cross_kv=shape.decoder_layers * 2 * frames * d * d,
    )


@dataclass(frozen=True)
class DecoderStepWork:
    """What one decoder step (one token, batch 1) reads, by kind, in elements."""

    layer_matrices: int  # self q,k,v,o; cross q,o; fc1; fc2 of every layer (weights)
    layer_columns: int  # those matrices' output columns (a per-channel scale each in int8)
    output_projection: int  # d_model x vocabulary (tied to the token embedding)
    vocab: int  # the output projection's columns
    vectors: int  # biases and norm weights, fp32 in every recipe
    cross_cache: int  # cross-attention keys and values, fp32 activations

    @property
    def matrices(self) -> int:
        return self.layer_matrices + self.output_projection

    def weight_bytes(self, bytes_per_weight: float, scale_bytes: float = 0.0) -> float:
        """Weight bytes read per step, with `scale_bytes` per output column of every matrix
        (int8 per-channel: a fp32 scale and an int8 zero point)."""
        columns = self.layer_columns + self.vocab
        return self.matrices * bytes_per_weight + columns * scale_bytes + self.vectors * BYTES_FP32

    @property
    def cross_cache_bytes(self) -> int:
        return self.cross_cache * BYTES_FP32


def decoder_step_work(shape: WhisperShape, frames: int = MAX_SOURCE_POSITIONS) -> DecoderStepWork:
    d, ffn, layers = shape.d_model, shape.decoder_ffn_dim, shape.decoder_layers
    # self q, k, v, o; cross q, o; fc1; fc2
    matrices = 6 * d * d + 2 * d * ffn
    columns = 6 * d + ffn + d
    # biases: self q, v, o (k has none); cross q, o; fc1; fc2. Norms: 3 LayerNorms (w, b).
    vectors = (5 * d + ffn + d) + 3 * 2 * d
    return DecoderStepWork(
        layer_matrices=layers * matrices,
        layer_columns=layers * columns,
        output_projection=shape.vocab_size * d,
        vocab=shape.vocab_size,
        vectors=layers * vectors + 2 * d,  # + the final LayerNorm
        cross_cache=layers * 2 * frames * d,
    )


@dataclass(frozen=True)
class Precision:
    """Which arithmetic a variant runs, as the floor counts it."""

    label: str
    int8_encoder: bool = False  # the encoder's weight MatMuls in int8
    int8_convolutions: bool = False
    int8_fc2: bool = False  # the encoder's fc2 (kept fp32 in multilingual `quantized`)
    int8_attention: bool = False  # the activation products (only the article's recipe)
    bytes_per_weight: float = BYTES_FP32  # the decoder's weight matrices
    scale_bytes: float = 0.0  # per output column of the decoder's matrices

    def encoder_split(self, work: EncoderWork) -> tuple[int, int]:
        """(fp32 MACs, int8 MACs) of one window."""
        if not self.int8_encoder:
            return work.total, 0
        int8 = work.projections + work.fc1
        int8 += work.convolutions if self.int8_convolutions else 0
        int8 += work.fc2 if self.int8_fc2 else 0
        int8 += work.attention if self.int8_attention else 0
        return work.total - int8, int8


FP32 = Precision("fp32")
# Dynamic int8, per-channel weights: int8 bytes plus a fp32 scale and an int8 zero point per
# output column.
INT8_DECODER = {"bytes_per_weight": 1.0, "scale_bytes": BYTES_FP32 + 1.0}


def int8_precision(multilingual: bool) -> Precision:
    """The `quantized` recipe: multilingual models keep the convolutions and fc2 in fp32."""
    return Precision(
        "int8" + (" (convolutions and fc2 fp32)" if multilingual else ""),
        int8_encoder=True,
        int8_convolutions=not multilingual,
        int8_fc2=not multilingual,
        **INT8_DECODER,
    )


@dataclass(frozen=True)
class Peaks:
    """A machine's measured limits, at one model size's matrix shapes."""

    fp32_gmacs: float  # fp32 MatMul, GMAC/s
    int8_gmacs: float  # the fastest int8 path, GMAC/s
    memory_gbs: float  # streaming read of an array well beyond the last-level cache, GB/s
    cache_gbs: float  # the same read of an array that fits in the last-level cache
    cache_bytes: int  # the last-level cache (0: unknown, every step reads memory)

    def bandwidth(self, step_bytes: float) -> tuple[float, str]:
        """The read bandwidth a step of `step_bytes` can have: from the cache when its bytes
        fit in half the last-level cache (the other half left to everything else)."""
        if self.cache_bytes and step_bytes <= self.cache_bytes / 2:
            return self.cache_gbs, "cache"
        return self.memory_gbs, "memory"


@dataclass(frozen=True)
class Floor:
    """The least seconds the peaks allow."""

    encoder_s: float  # per 30 s window
    cross_kv_s: float  # per window
    step_s: float  # per decoded token
    encoder_fp32_macs: int
    encoder_int8_macs: int
    step_bytes: float
    step_read_from: str  # "memory" or "cache": which bandwidth the step floor uses


def floor(shape: WhisperShape, precision: Precision, peaks: Peaks) -> Floor:
    work = encoder_work(shape)
    fp32_macs, int8_macs = precision.encoder_split(work)
    step = decoder_step_work(shape)
    step_bytes = (
        step.weight_bytes(precision.bytes_per_weight, precision.scale_bytes)
        + step.cross_cache_bytes
    )
    bandwidth, read_from = peaks.bandwidth(step_bytes)
    cross_peak = peaks.int8_gmacs if precision.int8_encoder else peaks.fp32_gmacs
    return Floor(
        encoder_s=fp32_macs / (peaks.fp32_gmacs * 1e9) + int8_macs / (peaks.int8_gmacs * 1e9),
        cross_kv_s=work.cross_kv / (cross_peak * 1e9),
        step_s=step_bytes / (bandwidth * 1e9),
        encoder_fp32_macs=fp32_macs,
        encoder_int8_macs=int8_macs,
        step_bytes=step_bytes,
        step_read_from=read_from,
    )


# --- docs/roofline.json ----------------------------------------------------------------------


def int8_features(flags) -> tuple[str, ...]:
    return tuple(flag for flag, _ in INT8_FEATURES if flag in set(flags))


def same_cpu(machine: dict, info: CpuInfo) -> bool:
    """Whether a report's machine is this CPU: the same model name and int8 features."""
    return machine.get("cpu") == info.model and int8_features(
        machine.get("cpu_flags", ())
    ) == int8_features(info.flags)


def peaks_for(report: dict, shape: WhisperShape) -> tuple[Peaks, str] | None:
    """The peaks measured at the size nearest `shape` (by d_model), and that size's name."""
    sizes = report.get("peaks", {})
    if not sizes:
        return None
    name = min(sizes, key=lambda s: abs(sizes[s]["d_model"] - shape.d_model))
    size = sizes[name]
    bandwidth = report["bandwidth"]
    peaks = Peaks(
        fp32_gmacs=size["fp32_gmacs"],
        int8_gmacs=size["int8_gmacs"],
        memory_gbs=bandwidth["memory"]["gbs_median"],
        cache_gbs=bandwidth["cache"]["gbs_median"],
        cache_bytes=bandwidth.get("cache_bytes", 0),
    )
    return peaks, name


def load_report(path: Path = ROOFLINE_JSON) -> dict | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def report_for_cpu(info: CpuInfo, default: Path = ROOFLINE_JSON) -> tuple[dict | None, str]:
    """The committed roofline measured on this CPU, and its file name: `default`
    (docs/roofline.json) if it names this CPU, else the first docs/roofline-*.json that does
    (one per CPU kind, e.g. roofline-amd-avx2.json), else `default` whatever it names."""
    default = Path(default)

    def name(path: Path) -> str:
        return f"docs/{path.name}" if path.parent == ROOFLINE_JSON.parent else str(path)

    def measured_here(report: dict | None) -> bool:
        return report is not None and same_cpu(report.get("machine", {}), info)

    fallback = load_report(default)  # read once: the first candidate and the fallback
    if measured_here(fallback):
        return fallback, name(default)
    for path in sorted(default.parent.glob(f"{default.stem}-*{default.suffix}")):
        report = load_report(path)
        if measured_here(report):
            return report, name(path)
    return fallback, name(default)


# --- the page ---------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    ms = 1000 * seconds
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"


def floor_panel(
    shape: WhisperShape, info: CpuInfo, report: dict | None, source: str = "docs/roofline.json"
) -> str:
    """Markdown for the hardware panel: the loaded model's work and, where this CPU's peaks
    are measured (`report`, read from `source`), its floor. No peak is ever assumed."""
    work = encoder_work(shape)
    step = decoder_step_work(shape)
    multilingual = shape.vocab_size >= VOCAB_V2
    int8 = int8_precision(multilingual)
    fp32_mb = (step.weight_bytes(BYTES_FP32) + step.cross_cache_bytes) / 1e6
    int8_bytes = step.weight_bytes(int8.bytes_per_weight, int8.scale_bytes)
    int8_mb = (int8_bytes + step.cross_cache_bytes) / 1e6
    lines = [
        f"**Work of {shape.name}**: {work.total / 1e9:.1f} GMAC per 30 s encoder window "
        f"({work.attention / work.total:.0%} in attention's activation products, which stay "
        f"fp32); each decoder step reads {fp32_mb:.0f} MB in fp32, {int8_mb:.0f} MB in int8 "
        "(weights and the cross-attention cache; counted from the model's dimensions)."
    ]
    if report is None or not same_cpu(report.get("machine", {}), info):
        where = (
            f"{source} is absent"
            if report is None
            else f"{source} was measured on {report.get('machine', {}).get('cpu')}"
        )
        lines.append(
            f"**Floor**: not measured for this CPU ({where}); `python scripts/roofline.py` "
            "measures it."
        )
        return "  \n".join(lines)
    found = peaks_for(report, shape)
    if found is None:
        lines.append(f"**Floor**: {source} holds no peaks.")
        return "  \n".join(lines)
    peaks, size = found
    fp32, quantized = floor(shape, FP32, peaks), floor(shape, int8, peaks)
    quick = " (a --quick run)" if report.get("machine", {}).get("quick") else ""
    lines.append(
        f"**Floor on this CPU** ({source}{quick}: fp32 {peaks.fp32_gmacs:.0f} and "
        f"int8 {peaks.int8_gmacs:.0f} GMAC/s on {size}'s matrices; {peaks.memory_gbs:.1f} GB/s "
        f"reading memory, {peaks.cache_gbs:.1f} GB/s reading the cache): encoder ≥ {_ms(fp32.encoder_s)} per window in fp32, "
        f"≥ {_ms(quantized.encoder_s)} in int8; decoder step ≥ {_ms(fp32.step_s)} in fp32, "
        f"≥ {_ms(quantized.step_s)} in int8."
    )
    return "  \n".join(lines)
