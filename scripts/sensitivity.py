"""Which part of the int8 model moves Whisper's language probabilities: one group at a time.

Each variant quantizes, with the `quantized` recipe's settings (Optimum's ORTQuantizer, the
given preset, per-channel weights, attention's activation MatMuls and the convolutions in
fp32), either ONLY one group of operators (`only:<group>`, the rest of the model fp32) or
everything BUT one group (`but:<group>`). Groups are selected by node-name patterns of
Optimum's export, the same for every Whisper size (GROUPS). A variant is written as a
subfolder of the built model, so scripts/language_windows.py can also run it end to end
(`--engines <variant>`).

For every variant it runs Whisper's language detection (one decoder step after
<|startoftranscript|>, the engines' own sessions and graph changes) on fixed 30 s windows of
two-language recordings, and compares the distribution over languages with onnx-fp32's:
mean and largest KL(fp32 || variant), windows whose top language differs, and the mean
change of the probability of fp32's top language.

    python scripts/sensitivity.py models/base clips/*.flac --preset avx2 \
        --variants only:enc.attn,only:enc.ffn,but:dec.out --json out.json

`+` joins groups: `but:enc.fc2+dec.out` is the `quantized` recipe (its encoder's fc2 in fp32)
with the output projection in fp32 too. `blocks:64` is the built encoder with a decoder of
8-bit weight blocks of 64 and a per-row int8 embedding (quantizers.quantize_decoder_blocks,
tried as the recipe's decoder and not adopted: docs/int8-languages.md section 6);
`blocks:64:tensor` gives the embedding one uint8 scale (as Optimum's dynamic int8 does) and
`blocks:64:fp32` keeps it fp32. `smooth:0.5` applies SmoothQuant with alpha 0.5 (smoothing.py;
activation maxima from --calibration's clips) before the quantized recipe; `smooth:0.5:but:dec`
before another variant. `detect:weights` is the built `quantized` engine with its decoder step
computed from the same int8 weights in float32 activations (graphs.weight_only; this script
runs only the language-detection step, so that is the step it changes);
`detect:weights+cross` also its cross-attention key/value projections.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path
from types import MappingProxyType

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "scripts"))

from language_windows import engine_for  # noqa: E402

from whisper_quant.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from whisper_quant.decoding import detect_language  # noqa: E402
from whisper_quant.engines import OnnxEngine  # noqa: E402
from whisper_quant.graphs import (  # noqa: E402
    WEIGHT_ONLY_SESSION_CONFIG,
    activation_matmuls,
    walk,
    weight_only,
)
from whisper_quant.layout import DECODER_FILE, ENCODER_FILE  # noqa: E402
from whisper_quant.longform import N_FRAMES, window_features  # noqa: E402
from whisper_quant.measure import Stopwatch  # noqa: E402
from whisper_quant.quantizers import (  # noqa: E402
    calibration_clips,
    quantization_config,
    quantize_decoder_blocks,
)
from whisper_quant.smoothing import calibration_maxima, smooth_export  # noqa: E402
from whisper_quant.weights import copy_preprocessing_files  # noqa: E402

# Node-name patterns of Optimum's Whisper export (encoder: `/layers.N/...`, merged decoder:
# `/model/decoder/layers.N/...` in both branches of its `If`, `/proj_out/MatMul`).
PROJ = r"(q|k|v|out)_proj/MatMul$"
GROUPS: dict[str, tuple[str, str]] = {
    # group: (file, regular expression over node names)
    "enc.conv": (ENCODER_FILE, r"^/conv\d/Conv$"),
    "enc.attn": (ENCODER_FILE, r"^/layers\.\d+/self_attn/" + PROJ),
    "enc.ffn": (ENCODER_FILE, r"^/layers\.\d+/fc[12]/MatMul$"),
    "enc.fc1": (ENCODER_FILE, r"^/layers\.\d+/fc1/MatMul$"),
    "enc.fc2": (ENCODER_FILE, r"^/layers\.\d+/fc2/MatMul$"),
    "enc": (ENCODER_FILE, r"."),
    "dec.self": (DECODER_FILE, r"/decoder/layers\.\d+/self_attn/" + PROJ),
    "dec.cross": (DECODER_FILE, r"/decoder/layers\.\d+/encoder_attn/" + PROJ),
    "dec.ffn": (DECODER_FILE, r"/decoder/layers\.\d+/fc[12]/MatMul$"),
    "dec.out": (DECODER_FILE, r"^/proj_out/MatMul$"),
    "dec.embed": (DECODER_FILE, r"embed_tokens/Gather$"),
    "dec": (DECODER_FILE, r"."),
}
# Per layer: `enc.L3` is every weight MatMul of encoder layer 3, `dec.L0` of decoder layer 0,
# `enc.L3.ffn` / `enc.L3.attn` that layer's feed-forward or attention projections.
LAYER = re.compile(r"^(enc|dec)\.L(\d+)(?:\.(attn|ffn))?$")
OPERATORS = ("MatMul", "Conv", "Gather")


def group_pattern(group: str) -> tuple[str, re.Pattern]:
    match = LAYER.match(group)
    if match:
        side, layer, part = match.groups()
        file = ENCODER_FILE if side == "enc" else DECODER_FILE
        prefix = (r"^/layers\." if side == "enc" else r"/decoder/layers\.") + layer + "/"
        body = {
            None: r".*MatMul$",
            "attn": r"(self|encoder)_attn/" + PROJ,
            "ffn": r"fc[12]/MatMul$",
        }
        return file, re.compile(prefix + body[part])
    if group not in GROUPS:
        raise SystemExit(f"unknown group {group!r}: {', '.join(GROUPS)} or enc.L<n>[.attn|.ffn]")
    file, pattern = GROUPS[group]
    return file, re.compile(pattern)


def quantizable(path: Path, default_fp32: set[str]) -> list[str]:
    """Names of the nodes the recipe quantizes in one graph (weights only)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    return sorted(
        {
            node.name
            for node, constants in walk(graph)
            if node.op_type in OPERATORS
            and node.name not in default_fp32
            and any(i in constants for i in node.input)
        }
    )


def build_variant(
    fp32_dir: Path, model_dir: Path, variant: str, preset: str, out: Path | None = None
) -> Path:
    """Write `<model_dir>/<variant folder>`: the quantized recipe restricted as `variant` says."""
    from optimum.onnxruntime import ORTQuantizer

    mode, _, group = variant.partition(":")
    # A smooth: variant depends on the calibration clips too.
    tag = f"-{calibration_tag()}" if mode == "smooth" else ""
    out = out or model_dir / (folder_name(variant) + tag)
    if (out / DECODER_FILE).is_file():
        return out
    if mode == "blocks":
        return build_blocks_variant(fp32_dir, model_dir, out, group, preset)
    if mode == "smooth":
        return build_smooth_variant(fp32_dir, model_dir, out, group, preset)
    # `but:enc.fc2+dec.out` leaves several groups in fp32 (or `only:` quantizes several).
    groups = group.split("+")
    patterns = [group_pattern(g) for g in groups]
    convolutions = {"/conv1/Conv", "/conv2/Conv"}
    out.mkdir(parents=True, exist_ok=True)
    for name in (ENCODER_FILE, DECODER_FILE):
        default_fp32 = set(activation_matmuls(fp32_dir / name))
        if name == ENCODER_FILE and "enc.conv" not in groups:
            default_fp32 |= convolutions
        nodes = quantizable(fp32_dir / name, default_fp32)
        mine = [pattern for file, pattern in patterns if file == name]
        chosen = [n for n in nodes if any(p.search(n) for p in mine)]
        if mode == "only":
            selected = chosen
        elif mode == "but":
            selected = [n for n in nodes if n not in chosen]
        else:
            raise SystemExit(f"variant {variant!r}: write only:<group> or but:<group>")
        if not selected:
            os.link(fp32_dir / name, out / name)
            continue
        config = quantization_config(preset, True)
        config.nodes_to_quantize = selected
        ORTQuantizer.from_pretrained(fp32_dir, file_name=name).quantize(
            save_dir=out, quantization_config=config
        )
        (out / name.replace(".onnx", "_quantized.onnx")).rename(out / name)
    copy_preprocessing_files(fp32_dir, out)
    return out


class WeightOnlyDetection(OnnxEngine):
    """The `quantized` engine with its decoder step (and, with `cross`, its cross-attention
    projections) rewritten by graphs.weight_only: the files' int8 weights, float32 activations.
    Used here for language detection alone."""

    cross_too = False
    session_config = MappingProxyType(dict(WEIGHT_ONLY_SESSION_CONFIG))

    def _session_graph(self, part: str, graph: bytes) -> bytes:
        if part == "decoder" or (part == "cross" and self.cross_too):
            return weight_only(graph)[0]
        return graph


def detection_engine(variant: str, model_dir: Path) -> OnnxEngine:
    """`detect:weights` or `detect:weights+cross`."""
    what = variant.partition(":")[2]
    if what not in ("weights", "weights+cross"):
        raise SystemExit(f"variant {variant!r}: write detect:weights or detect:weights+cross")
    engine = type(
        "WeightOnly", (WeightOnlyDetection,), {"name": variant, "cross_too": what.endswith("cross")}
    )
    return engine(model_dir)


def build_blocks_variant(
    fp32_dir: Path, model_dir: Path, out: Path, spec: str, preset: str
) -> Path:
    """`blocks:<size>[:row|tensor|fp32]`: the built `quantized` encoder with a decoder of 8-bit
    weight blocks of <size> (quantizers.quantize_decoder_blocks) and its token embedding int8
    per row, uint8 with one scale (as Optimum's dynamic int8 gives it:
    the embedding quantized alone first) or fp32."""
    size, _, embedding = spec.partition(":")
    embedding = embedding or "row"
    if embedding not in ("row", "tensor", "fp32"):
        raise SystemExit(f"blocks:{spec}: the embedding is row, tensor or fp32")
    source = None
    if embedding == "tensor":
        source = build_variant(fp32_dir, model_dir, "only:dec.embed", preset) / DECODER_FILE
    out.mkdir(parents=True, exist_ok=True)
    os.link(model_dir / "quantized" / ENCODER_FILE, out / ENCODER_FILE)
    quantize_decoder_blocks(
        fp32_dir, out, block_size=int(size), per_row_embedding=embedding == "row", source=source
    )
    copy_preprocessing_files(fp32_dir, out)
    return out


CALIBRATION: list[Path] = []  # --calibration's clips, for smooth: variants


def build_smooth_variant(
    fp32_dir: Path, model_dir: Path, out: Path, spec: str, preset: str
) -> Path:
    """`smooth:<alpha>[:<variant>]`: SmoothQuant (smoothing.py) with `alpha`, its activation
    maxima measured on --calibration's clips with the original model, then `<variant>` (default
    `but:enc.fc2`, the quantized recipe) quantized from the smoothed fp32 graphs."""
    alpha, _, inner = spec.partition(":")
    smooth_dir = model_dir / f"fp32-smooth-{alpha}-{calibration_tag()}"
    if not (smooth_dir / DECODER_FILE).is_file():
        done = smooth_export(fp32_dir, smooth_dir, calibration_scales(model_dir), float(alpha))
        print("  smoothed:", {k: len(v) for k, v in done.items()}, flush=True)
    return build_variant(smooth_dir, model_dir, inner or "but:enc.fc2", preset, out=out)


_SCALES: dict = {}


def calibration_tag() -> str:
    """Eight hex digits naming --calibration's clips, so folders of other clips differ."""
    import hashlib

    return hashlib.sha256("\n".join(map(str, CALIBRATION)).encode()).hexdigest()[:8]


def calibration_scales(model_dir: Path) -> dict:
    if not CALIBRATION:
        raise SystemExit("smooth: variants need --calibration <folder of clips>")
    cache = model_dir / "smooth-scales.npz"  # of the clips named in it
    names = [str(clip) for clip in CALIBRATION]
    if not _SCALES and cache.is_file():
        stored = np.load(cache)
        if list(stored["clips"]) == names:
            _SCALES.update({k: stored[k] for k in stored.files if k != "clips"})
    if not _SCALES:
        started = time.perf_counter()
        scales, windows = calibration_maxima(model_dir / "original", CALIBRATION)
        _SCALES.update(scales)
        print(
            f"  activation maxima of {len(_SCALES)} LayerNorms over {windows} windows "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        np.savez(cache, clips=np.array(names), **_SCALES)
    return _SCALES


def folder_name(variant: str) -> str:
    return "var-" + variant.replace(":", "-")


def windows_of(clips: list[Path], starts: tuple[float, ...]) -> list[tuple[str, float, np.ndarray]]:
    """(clip, start, audio) of every window start that lies inside each clip (a start of 0
    in every clip, however short)."""
    found = []
    for clip in clips:
        audio = decode_audio(clip, max_seconds=None)
        for start in starts:
            if start == 0 or start * SAMPLE_RATE < len(audio) - 5 * SAMPLE_RATE:
                found.append((clip.name, start, audio))
    return found


def language_probs(engine, windows) -> np.ndarray:
    """(windows, languages) probabilities of each window's language detection."""
    engine.load()
    model = engine.window_model(Stopwatch())
    rows = []
    mels: dict[str, object] = {}
    for clip, start, audio in windows:
        mel = mels.get(clip) or mels.setdefault(clip, engine.features(audio))
        seek = round(start * SAMPLE_RATE / 160)
        chunk = window_features(mel.features, seek, min(mel.frames - seek, N_FRAMES))
        detection = detect_language(model, model.encode(chunk), engine.special)
        rows.append([detection.probs[c] for c in sorted(detection.probs)])
    return np.array(rows), sorted(detection.probs)


def speed(engine, audio: np.ndarray, repeats: int, steps: int = 40) -> dict:
    """Median encoder ms per 30 s window (cross-attention projections included) and median
    decoder ms per token (one row, greedy, after the prompt), over `repeats` runs."""
    engine.load()
    model = engine.window_model(Stopwatch())
    mel = engine.features(audio)
    chunk = window_features(mel.features, 0, min(mel.frames, N_FRAMES))
    prompt = np.array([[engine.special.sot]], dtype=np.int64)
    encoder, decoder = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        encoded = model.encode(chunk)
        encoder.append(time.perf_counter() - started)
        state = model.decoder(encoded, 1)
        token = int(state.step(prompt)[0, -1].argmax())
        started = time.perf_counter()
        for _ in range(steps):
            token = int(state.step(np.array([[token]], dtype=np.int64))[0, -1].argmax())
        decoder.append((time.perf_counter() - started) / steps)
    return {
        "encoder_ms": round(1000 * float(np.median(encoder)), 1),
        "decoder_ms_per_token": round(1000 * float(np.median(decoder)), 2),
    }


def compare(reference: np.ndarray, probs: np.ndarray) -> dict:
    eps = 1e-9
    kl = (reference * (np.log(reference + eps) - np.log(probs + eps))).sum(axis=1)
    top = reference.argmax(axis=1)
    rows = np.arange(len(top))
    return {
        "kl_mean": round(float(kl.mean()), 4),
        "kl_max": round(float(kl.max()), 4),
        "top1_flips": int((probs.argmax(axis=1) != top).sum()),
        "top1_prob_change_mean": round(float((probs[rows, top] - reference[rows, top]).mean()), 4),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a built model folder with onnx-fp32/")
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--preset", required=True, help="avx2, avx512_vnni, ...")
    parser.add_argument(
        "--variants",
        required=True,
        help="comma-separated only:G / but:G (groups joined with +) / blocks:<size>[:row|tensor|fp32]",
    )
    parser.add_argument("--starts", default="0,30,40,50,53.5,60,70,80")
    parser.add_argument(
        "--calibration",
        type=Path,
        action="append",
        default=[],
        help="a folder of clips for smooth: variants' activation maxima (repeatable; never "
        "the clips judged)",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument(
        "--speed",
        type=int,
        default=0,
        metavar="N",
        help="instead: time onnx-fp32 and each variant (kept on disk) N times, interleaved, "
        "on the first clip's first window, and print their weight bytes",
    )
    args = parser.parse_args(argv)
    CALIBRATION[:] = [clip for folder in args.calibration for clip in calibration_clips(folder)]
    if args.speed:
        return measure_speed(args)
    fp32_dir = args.model_dir / "onnx-fp32"
    windows = windows_of(args.clips, tuple(float(s) for s in args.starts.split(",")))
    reference, codes = language_probs(engine_for("onnx-fp32", args.model_dir), windows)
    results = {}
    names = ["quantized", *args.variants.split(",")]
    for variant in names:
        started = time.perf_counter()
        if variant.startswith("detect:"):
            folder = args.model_dir / "quantized"
            engine = detection_engine(variant, args.model_dir)
        else:
            folder = (
                args.model_dir / "quantized"
                if variant == "quantized"
                else build_variant(fp32_dir, args.model_dir, variant, args.preset)
            )
            engine = engine_for(folder.name, args.model_dir)
        probs, _ = language_probs(engine, windows)
        figures = compare(reference, probs)
        flips = [
            f"{clip}@{start:g}: {codes[reference[i].argmax()]}->{codes[probs[i].argmax()]}"
            for i, (clip, start, _) in enumerate(windows)
            if reference[i].argmax() != probs[i].argmax()
        ]
        results[variant] = {**figures, "flips": flips}
        print(
            f"{variant:>16}: KL mean {figures['kl_mean']:.4f} max {figures['kl_max']:.4f}, "
            f"top-1 flips {figures['top1_flips']}/{len(windows)}, "
            f"p(top) {figures['top1_prob_change_mean']:+.3f}  {'; '.join(flips)}  "
            f"({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        if folder.name != "quantized" and os.environ.get("SENSITIVITY_KEEP") != "1":
            shutil.rmtree(folder)
    if args.json:
        report = {"machine": machine(args.preset), "windows": len(windows), "variants": results}
        args.json.write_text(json.dumps(report, indent=1))
    return 0


def machine(preset: str) -> dict:
    """The benchmark's description of the machine (its engines' default threads), and the
    quantization preset the variants used."""
    from whisper_quant.bench import machine_info
    from whisper_quant.engines.base import DEFAULT_THREADS

    return {**machine_info(DEFAULT_THREADS), "preset": preset}


def measure_speed(args) -> int:
    """Speed and size of onnx-fp32, quantized and each variant; rounds interleave engines so
    that a change of the machine's load affects them alike."""
    from whisper_quant.layout import weight_bytes

    fp32_dir = args.model_dir / "onnx-fp32"
    names = ["onnx-fp32", "quantized"]
    for variant in args.variants.split(","):
        names.append(build_variant(fp32_dir, args.model_dir, variant, args.preset).name)
    engines = {name: engine_for(name, args.model_dir) for name in names}
    audio = decode_audio(args.clips[0], max_seconds=None)
    rounds = {name: [] for name in names}
    for _ in range(args.speed):
        for name, engine in engines.items():
            rounds[name].append(speed(engine, audio, 1))
    fp32_bytes = weight_bytes(fp32_dir)
    results = {}
    for name in names:
        encoder = float(np.median([r["encoder_ms"] for r in rounds[name]]))
        decoder = float(np.median([r["decoder_ms_per_token"] for r in rounds[name]]))
        size = weight_bytes(args.model_dir / name)
        results[name] = {
            "encoder_ms": encoder,
            "decoder_ms_per_token": decoder,
            "bytes": size,
            "share_of_onnx_fp32": round(size / fp32_bytes, 4),
        }
        print(
            f"{name:>24}: encoder {encoder:7.1f} ms/window, decoder {decoder:6.2f} ms/token, "
            f"{size / 2**20:6.1f} MiB ({size / fp32_bytes:.1%} of onnx-fp32)",
            flush=True,
        )
    if args.json:
        report = {"machine": machine(args.preset), "engines": results}
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
