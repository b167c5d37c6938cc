"""Build a model: the original transformers checkpoint and its ONNX copies.

For each model, `DIR/<name>/` gets (the layout is defined in layout.py):
- `original/`: fp32 safetensors, config, generation config, tokenizer, preprocessor;
- `onnx-fp32/`: the unquantized ONNX export (encoder + merged decoder with cache), so a report
  can separate what the runtime brings from what int8 brings;
- `quantized/`: the same graphs dynamically quantized to int8 by Optimum's `ORTQuantizer`,
  with the tokenizer, preprocessor and generation config, so the folder loads on its own;
- `manifest.json`: source and checksum, quantization settings, files, versions, stage times.

A build happens in a temporary folder beside the target and is renamed into place at the end,
so an interrupted build never leaves a half model behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import importlib.metadata
import json
import logging
import multiprocessing
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .hardware import cpu_info
from .layout import (
    CT2_DIR,
    CT2_MODEL_FILE,
    DECODER_FILE,
    DEFAULT_MODELS_DIR,
    ENCODER_FILE,
    MANIFEST,
    MANIFEST_FORMAT,
    ONNX_FILES,
    ONNX_FP32_DIR,
    ORIGINAL_DIR,
    QUANTIZED_DIR,
    SMOOTHED_FP32_DIR,
    weight_bytes,
)
from .manifest import ModelIntegrityError, describe_files, sha256_files, verify_folder
from .models import SYNTHETIC_NOTE, ModelSpec, locate_ct2_files, resolve_model
from .onnx_files import (
    OnnxFileError,
    external_data_name,
    link_variant,
    merge_decoders_streaming,
    streaming_external_data,
)
from .quantizers import (
    DEFAULT_CALIBRATION_DIR,
    SEED_PRESET,
    QuantizerError,
    calibration_clips,
    multilingual_export,
    quantize_int4,
    quantize_onnx,
    quantize_static_encoder,
    resolve_quantization,
)
from .recipes import DEFAULT_RECIPES, RECIPES, REQUIRED_RECIPES
from .smoothing import smooth_for_int8
from .weights import copy_preprocessing_files, import_weights, source_checksum

logger = logging.getLogger(__name__)

# Bump when the build's output changes for the same inputs, so old builds are redone.
BUILDER_VERSION = 9
STAGES = ("import weights", "export ONNX", "quantize", "write manifest")
# The int8 ONNX files may take at most this share of the original's weight bytes: 40%, or 45%
# for multilingual models, whose encoder keeps its convolutions and fc2 MatMuls in fp32
# (quantizers.fp32_feed_forward_outputs: base's int8 files are 43% of its original).
SIZE_BUDGET = 0.40
MULTILINGUAL_SIZE_BUDGET = 0.45
# From this many fp32 weight bytes on, heavy stages run in their own process (a fresh Python
# returns a finished stage's memory to the system; one process keeps its heap high) and the
# decoders are merged without loading their weights. Below it, both costs more than it saves.
ISOLATE_FROM_BYTES = 512 * 2**20
# Disk a build needs, in fp32 weight bytes: the original (1), the ONNX export while both
# decoders and the merged one exist (about 2), the int8 copies (0.3), plus a margin.
DISK_FACTOR = 3.5
DISK_MARGIN_BYTES = 512 * 2**20
# Available memory below this share of the fp32 weight bytes cannot hold the largest stage
# (the ONNX export holds the torch model and the graph being written).
RAM_FACTOR = 1.3
RAM_MARGIN_BYTES = 1 * 2**30


class BuildError(RuntimeError):
    """A build cannot proceed; the message says why and what to do."""


@dataclass(frozen=True)
class BuildOptions:
    quantization: str = "auto"
    # Per-channel scales keep quantized transcripts closest to the original's (see README).
    per_channel: bool = True
    force: bool = False
    # The recipes (recipes.py) to build; onnx-fp32 and quantized are always built.
    recipes: tuple[str, ...] = DEFAULT_RECIPES
    # Also build the article's recipe (int8-seed), which the `optimum` engine runs too.
    baseline: bool = False
    # The clips int8-static is calibrated on (and smoothing measures); None: the shipped
    # tuning clips.
    calibration: Path | None = None
    # SmoothQuant's alpha for a multilingual model's `quantized` recipe (smoothing.py); None:
    # none. Opt-in: on an AVX2-only AMD it lost Spanish words (docs/int8-languages.md, 8).
    smooth_alpha: float | None = None
    # How many of the encoder's first layers keep every weight MatMul in fp32 in the
    # `quantized` recipe (quantizers.fp32_encoder_layers); 0: none.
    fp32_encoder_layers: int = 0
    # A known shape with seeded random weights instead of the real checkpoint.
    random_weights: bool = False
    seed: int = 0
    # Run each heavy stage in its own process, so the memory a stage held is returned before
    # the next starts; None decides by size (see ISOLATE_FROM_BYTES).
    isolate: bool | None = None


@dataclass(frozen=True)
class BuildResult:
    name: str
    folder: Path
    skipped: bool
    manifest: dict = field(repr=False)


def library_versions() -> dict[str, str]:
    versions = {}
    for package in ("torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def recipes_to_build(options: BuildOptions) -> tuple[str, ...]:
    """The recipes a build makes, in RECIPES' order: the required ones, the requested ones,
    and int8-seed with `baseline`."""
    wanted = set(options.recipes) | set(REQUIRED_RECIPES)
    if options.baseline:
        wanted.add("int8-seed")
    unknown = sorted(wanted - set(RECIPES))
    if unknown:
        raise BuildError(f"Unknown recipe {', '.join(unknown)}; choose from: {', '.join(RECIPES)}")
    return tuple(name for name in RECIPES if name in wanted)


def calibration_dir(options: BuildOptions) -> Path:
    return Path(options.calibration) if options.calibration else DEFAULT_CALIBRATION_DIR


def _inputs(spec: ModelSpec, options: BuildOptions, preset: str) -> dict:
    """What determines a build's output; a rerun with equal inputs has nothing to do."""
    recipes = recipes_to_build(options)
    inputs = {
        "builder_version": BUILDER_VERSION,
        "source": spec.name,
        "kind": spec.kind,
        "quantization": preset,
        "per_channel": options.per_channel,
        "recipes": list(recipes),
        "versions": library_versions(),
    }
    # int8-static calibrates on the clips, and smoothing measures its activation maxima on them.
    if "int8-static" in recipes or options.smooth_alpha is not None:
        inputs["calibration_sha256"] = sha256_files(_calibration(calibration_dir(options)))
    if options.smooth_alpha is not None:
        inputs["smooth_alpha"] = options.smooth_alpha
    if options.fp32_encoder_layers:
        inputs["fp32_encoder_layers"] = options.fp32_encoder_layers
    if spec.kind == "synthetic":
        inputs["seed"] = spec.seed
    return inputs


def _calibration(folder: Path) -> list[Path]:
    try:
        return calibration_clips(folder)
    except QuantizerError as e:
        raise BuildError(str(e)) from e


def estimated_fp32_bytes(spec: ModelSpec) -> int | None:
    """The original's fp32 weight bytes, from the shape or the source files; None if unknown."""
    from .shapes import SHAPES

    if spec.shape is not None:
        return spec.shape.fp32_bytes
    if spec.kind == "hub" and spec.name in SHAPES:
        return SHAPES[spec.name].fp32_bytes
    if spec.kind in ("embedded", "ct2"):
        # CTranslate2 stores Whisper in fp16 or lower: fp32 is at most twice the bytes.
        return 2 * sum(p.stat().st_size for p in locate_ct2_files(spec).model_parts)
    if spec.kind == "transformers":
        return sum(p.stat().st_size for p in Path(spec.location).glob("*.safetensors"))
    return None


def check_resources(name: str, fp32_bytes: int | None, models_dir: Path) -> None:
    """Fail before starting when the disk or the memory clearly cannot hold the build."""
    if not fp32_bytes:
        return
    gib = 2**30
    disk_needed = int(DISK_FACTOR * fp32_bytes) + DISK_MARGIN_BYTES
    disk_free = shutil.disk_usage(models_dir).free
    if disk_free < disk_needed:
        raise BuildError(
            f"Building {name} needs about {disk_needed / gib:.1f} GiB of free disk in "
            f"{models_dir} ({fp32_bytes / gib:.1f} GiB of fp32 weights, their ONNX export and "
            f"int8 copies); {disk_free / gib:.1f} GiB are free"
        )
    import psutil

    ram_needed = int(RAM_FACTOR * fp32_bytes) + RAM_MARGIN_BYTES
    ram_free = psutil.virtual_memory().available
    if ram_free < ram_needed:
        raise BuildError(
            f"Building {name} needs about {ram_needed / gib:.1f} GiB of memory "
            f"({fp32_bytes / gib:.1f} GiB of fp32 weights); {ram_free / gib:.1f} GiB are "
            "available. Close other programs or build a smaller model"
        )


def _is_current(folder: Path, inputs: dict, source_sha256: str | None) -> bool:
    try:
        manifest = verify_folder(folder, checksums=False)
    except ModelIntegrityError:
        return False
    built = manifest.get("inputs") or {}

    def fixed(values: dict) -> dict:
        return {k: v for k, v in values.items() if k not in ("recipes", "calibration_sha256")}

    if fixed(built) != fixed(inputs):
        return False
    # A folder with more recipes than asked for serves the request; a missing one is built.
    if not set(inputs["recipes"]) <= set(built.get("recipes", ())):
        return False
    if (
        "calibration_sha256" in inputs
        and built.get("calibration_sha256") != inputs["calibration_sha256"]
    ):
        return False
    return source_sha256 is None or manifest["source"]["sha256"] == source_sha256


def _check_writable(models_dir: Path) -> None:
    try:
        models_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=models_dir):
            pass
    except OSError as e:
        raise BuildError(
            f"Cannot write to the output folder {models_dir}: {e.strerror or e}"
        ) from e


def build_model(
    name: str,
    models_dir: Path | str = DEFAULT_MODELS_DIR,
    options: BuildOptions = BuildOptions(),
    on_stage: Callable[[str], None] | None = None,
) -> BuildResult:
    """Build (or find current) the original + quantized pair for the model `name`."""
    spec = resolve_model(name, random_weights=options.random_weights, seed=options.seed)
    models_dir = Path(models_dir)
    target = models_dir / spec.folder_name
    try:
        preset = resolve_quantization(options.quantization)
    except QuantizerError as e:
        raise BuildError(str(e)) from e
    inputs = _inputs(spec, options, preset)
    if not options.force and _is_current(target, inputs, source_checksum(spec)):
        logger.info("%s is current in %s; nothing to do (use --force to rebuild)", name, target)
        return BuildResult(
            name, target, skipped=True, manifest=verify_folder(target, checksums=False)
        )

    _check_writable(models_dir)
    fp32_bytes = estimated_fp32_bytes(spec)
    check_resources(name, fp32_bytes, models_dir)
    if options.isolate is None:
        options = dataclasses.replace(
            options, isolate=fp32_bytes is not None and fp32_bytes >= ISOLATE_FROM_BYTES
        )
    work = Path(tempfile.mkdtemp(prefix=f".{spec.folder_name}.building-", dir=models_dir))
    try:
        manifest = _build_into(spec, work, options, preset, inputs, on_stage or (lambda s: None))
        _replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return BuildResult(name, target, skipped=False, manifest=manifest)


def _build_into(
    spec: ModelSpec,
    work: Path,
    options: BuildOptions,
    preset: str,
    inputs: dict,
    on_stage: Callable[[str], None],
) -> dict:
    stages: dict[str, float] = {}
    peaks: dict[str, int] = {}
    isolate = bool(options.isolate)

    def stage(label: str):
        on_stage(label)
        logger.info("%s: %s", spec.name, label)
        return time.perf_counter()

    start = stage(STAGES[0])
    imported, peaks["import"] = run_stage(isolate, import_weights, spec, work / ORIGINAL_DIR)
    if spec.kind in ("embedded", "ct2"):
        copy_ct2_source(spec, work / CT2_DIR)
    stages["import_s"] = time.perf_counter() - start

    start = stage(STAGES[1])
    peaks.update(export_onnx(work / ORIGINAL_DIR, work / ONNX_FP32_DIR, low_memory=isolate))
    stages["export_s"] = time.perf_counter() - start

    start = stage(STAGES[2])
    recipes, recipe_peaks = build_recipes(
        work,
        recipes_to_build(options),
        preset,
        options.per_channel,
        calibration_dir(options),
        isolate,
        smooth_alpha=None if spec.kind == "synthetic" else options.smooth_alpha,
        fp32_layers=options.fp32_encoder_layers,
    )
    peaks.update(recipe_peaks)
    qconfig = recipes["quantized"]
    stages["quantize_s"] = time.perf_counter() - start

    start = stage(STAGES[3])
    synthetic = spec.kind == "synthetic"
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": spec.name,
        "description": spec.description,
        "synthetic": synthetic,
        **({"synthetic_note": SYNTHETIC_NOTE} if synthetic else {}),
        "multilingual": imported.multilingual,
        "parameters": imported.parameters,
        "source": {
            "kind": spec.kind,
            "name": spec.name,
            "location": imported.source,
            "sha256": imported.source_sha256,
            "packages": {p: importlib.metadata.version(p) for p in spec.packages},
            **({"shape": asdict(spec.shape), "seed": spec.seed} if synthetic else {}),
        },
        "quantization": {
            "method": "dynamic int8 (optimum ORTQuantizer)",
            "requested": options.quantization,
            "preset": preset,
            "per_channel": options.per_channel,
            "cpu": cpu_info().model,
            "cpu_flags": cpu_info().relevant_flags,
            **qconfig,
        },
        # Every recipe built, with its settings (recipes.py names them).
        "recipes": recipes,
        "inputs": inputs,
        "versions": library_versions(),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        # Isolated: each stage's own process peak. Otherwise the build process's high-water
        # mark at the end of each stage (it only grows).
        "peak_rss_mib": {k: round(v / 2**20) for k, v in peaks.items()},
        "stages_isolated": isolate,
        "files": describe_files(work),
    }
    manifest["stages_s"]["manifest_s"] = round(time.perf_counter() - start, 2)
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


def build_recipes(
    work: Path,
    names: tuple[str, ...],
    preset: str,
    per_channel: bool,
    calibration: Path,
    isolate: bool,
    smooth_alpha: float | None = None,
    fp32_layers: int = 0,
) -> tuple[dict[str, dict], dict[str, int]]:
    """Write every recipe's variant subfolder from the fp32 export in `work`.

    With `smooth_alpha`, a multilingual model's `quantized` recipe is quantized from a
    smoothed export (smoothing.py, activation maxima on `calibration`'s clips). Smoothing
    changes weights, not operators, so synthetic models (random weights: speed and memory
    only) are built without it. With `fp32_layers`, the `quantized` recipe keeps the first
    encoder layers' weight MatMuls in fp32 (quantizers.fp32_encoder_layers).

    Returns each recipe's settings (for the manifest) and each quantizer's peak RSS.
    """
    fp32, quantized = work / ONNX_FP32_DIR, work / QUANTIZED_DIR
    settings: dict[str, dict] = {}
    peaks: dict[str, int] = {}
    original_bytes = weight_bytes(work / ORIGINAL_DIR)
    size_budget = MULTILINGUAL_SIZE_BUDGET if multilingual_export(fp32) else SIZE_BUDGET
    for name in names:
        recipe = RECIPES[name]
        out = work / name
        if name == ONNX_FP32_DIR:
            result: dict = {"method": "none: Optimum's export"}
        elif name == QUANTIZED_DIR:
            source, smoothing = fp32, {}
            if smooth_alpha is not None and multilingual_export(fp32):
                source = work / SMOOTHED_FP32_DIR
                clips = _calibration(calibration)
                smoothing, peaks["smooth"] = _checked_stage(
                    isolate,
                    smooth_for_int8,
                    work / ORIGINAL_DIR,
                    fp32,
                    source,
                    clips,
                    smooth_alpha,
                )
            result, peaks["quantize"] = _checked_stage(
                isolate,
                quantize_onnx,
                source,
                out,
                preset,
                per_channel,
                size_budget=int(size_budget * original_bytes),
                low_memory=isolate,
                fp32_layers=fp32_layers,
            )
            if source != fp32:
                shutil.rmtree(source)
            result = {"method": "dynamic int8 (optimum ORTQuantizer)", **smoothing, **result}
        elif name == "int8-seed":
            # The article's configuration, exactly: the avx512_vnni preset, per-tensor, every
            # operator, whatever this CPU supports.
            result, peaks[name] = _checked_stage(
                isolate,
                quantize_onnx,
                fp32,
                out,
                SEED_PRESET,
                False,
                plain=True,
                low_memory=isolate,
            )
            result = {
                "method": "dynamic int8 (optimum ORTQuantizer), "
                "AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=False)",
                "preset": SEED_PRESET,
                **result,
            }
        elif name == "int8-encoder":
            link_variant({ENCODER_FILE: quantized, DECODER_FILE: fp32}, out, fp32)
            result = {"method": "the quantized recipe's encoder, the fp32 decoder"}
        elif name == "int8-decoder":
            link_variant({ENCODER_FILE: fp32, DECODER_FILE: quantized}, out, fp32)
            result = {"method": "the fp32 encoder, the quantized recipe's decoder"}
        elif name == "int4-weights":
            result, peaks[name] = _checked_stage(
                isolate,
                quantize_int4,
                fp32,
                out,
                original_bytes=original_bytes,
            )
        elif name == "int8-static":
            vnni = resolve_quantization("auto") == "avx512_vnni"
            result, peaks[name] = _checked_stage(
                isolate,
                quantize_static_encoder,
                fp32,
                quantized,
                out,
                calibration_dir=calibration,
                vnni=vnni,
            )
        else:  # pragma: no cover - RECIPES and this function list the same names
            raise BuildError(f"No builder for recipe {name}")
        settings[name] = {
            "label": recipe.label,
            "encoder": recipe.encoder,
            "decoder": recipe.decoder,
            "summary": recipe.summary,
            **result,
            "weight_bytes": weight_bytes(out),
        }
    return settings, peaks


def _checked_stage(isolated: bool, function: Callable, *args, **kwargs):
    """`run_stage`, with a quantizer's or an ONNX file's error raised as a BuildError."""
    try:
        return run_stage(isolated, function, *args, **kwargs)
    except (QuantizerError, OnnxFileError) as e:
        raise BuildError(str(e)) from e


def run_stage(isolated: bool, function: Callable, *args, **kwargs) -> tuple[object, int]:
    """Run one build stage; return its result and a peak RSS in bytes.

    Isolated, the stage runs in a fresh process (spawned, so it shares no memory with this
    one) and its peak is that process's own. Freed memory returns to the system only when a
    process ends: glibc keeps much of a large, fragmented heap, and torch and protobuf leave
    arenas behind.
    """
    if not isolated:
        return function(*args, **kwargs), _own_peak_rss()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, initializer=_quiet_stage) as pool:
        return pool.submit(_measured, function, args, kwargs).result()


def _measured(function: Callable, args: tuple, kwargs: dict) -> tuple[object, int]:
    return function(*args, **kwargs), _own_peak_rss()


def _own_peak_rss() -> int:
    # Linux reports ru_maxrss in KiB.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _quiet_stage() -> None:
    """A stage process logs warnings only, as the CLI configures its own process."""
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    for name in ("transformers", "optimum", "onnxruntime", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def copy_ct2_source(spec: ModelSpec, out_dir: Path) -> None:
    """Keep the CTranslate2 source as one folder, for the optional faster-whisper engine."""
    files = locate_ct2_files(spec)
    out_dir.mkdir(parents=True)
    with open(out_dir / CT2_MODEL_FILE, "wb") as out:
        for part in files.model_parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
    shutil.copy2(files.config, out_dir / "config.json")
    shutil.copy2(files.tokenizer, out_dir / "tokenizer.json")
    for vocabulary in files.config.parent.glob("vocabulary.*"):
        shutil.copy2(vocabulary, out_dir / vocabulary.name)


def export_onnx(original: Path, out_dir: Path, *, low_memory: bool = False) -> dict[str, int]:
    """Export encoder and merged decoder (with key/value cache) to ONNX with Optimum.

    With `low_memory`, Optimum only exports, in its own process (which frees the torch model
    when it ends), and the two decoders are merged in another without loading their weights
    (see `merge_decoders_streaming`). Graphs past 2 GB keep their weights in `<file>_data`.
    Returns the peak RSS in bytes of each step (see `run_stage`).
    """
    tmp = out_dir.with_name(out_dir.name + ".export")
    if low_memory:
        _, export_peak = _checked_stage(True, _optimum_export, original, tmp, post_process=False)
        _, merge_peak = _checked_stage(
            True,
            merge_decoders_streaming,
            tmp / "decoder_model.onnx",
            tmp / "decoder_with_past_model.onnx",
            tmp / DECODER_FILE,
        )
        peaks = {"export": export_peak, "merge": merge_peak}
    else:
        _optimum_export(original, tmp, post_process=True)
        peaks = {"export": _own_peak_rss()}
    out_dir.mkdir(parents=True, exist_ok=True)
    # Keep one decoder: the merged graph serves both the first step and the cached steps.
    for name in ONNX_FILES:
        if not (tmp / name).is_file():
            raise BuildError(f"The ONNX export did not write {name}")
        shutil.move(tmp / name, out_dir / name)
        if (tmp / external_data_name(name)).is_file():
            shutil.move(tmp / external_data_name(name), out_dir / external_data_name(name))
    copy_preprocessing_files(original, out_dir)
    shutil.rmtree(tmp)
    return peaks


def _optimum_export(original: Path, out_dir: Path, *, post_process: bool) -> None:
    """Optimum's export; without `post_process` (the low-memory path) it neither merges the
    decoders nor loads a graph's weights to gather them into one `<file>_data`."""
    from optimum.exporters.onnx import main_export

    patch = contextlib.nullcontext() if post_process else streaming_external_data()
    with patch:
        main_export(
            str(original),
            output=out_dir,
            task="automatic-speech-recognition-with-past",
            device="cpu",
            do_validation=False,
            no_post_process=not post_process,
        )


def _replace(work: Path, target: Path) -> None:
    """Move the finished build into place, swapping out an old one only at the very end."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    work.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def summarize(result: BuildResult) -> dict:
    """Sizes of the built folders, for the CLI's closing report."""
    sizes: dict[str, int] = {}
    for rel, info in result.manifest["files"].items():
        sub = rel.split("/", 1)[0]
        if rel.endswith((".onnx", ".onnx_data", ".safetensors")):
            sizes[sub] = sizes.get(sub, 0) + info["size"]
    return {
        "name": result.name,
        "folder": str(result.folder),
        "skipped": result.skipped,
        "weights_bytes": sizes,
        "stages_s": result.manifest.get("stages_s", {}),
    }
