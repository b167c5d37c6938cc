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
import platform
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

from .graphs import activation_matmuls, output_projections
from .hardware import cpu_flags, cpu_info
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
    weight_bytes,
)
from .manifest import ModelIntegrityError, describe_files, sha256_files, verify_folder
from .models import SYNTHETIC_NOTE, ModelSpec, locate_ct2_files, resolve_model
from .quantizers import (
    DEFAULT_CALIBRATION_DIR,
    QuantizerError,
    calibration_clips,
    fp32_convolutions,
    link_variant,
    quantize_int4,
    quantize_static_encoder,
)
from .recipes import DEFAULT_RECIPES, RECIPES, REQUIRED_RECIPES
from .weights import copy_preprocessing_files, import_weights, source_checksum

logger = logging.getLogger(__name__)

# Bump when the build's output changes for the same inputs, so old builds are redone.
BUILDER_VERSION = 8
QUANTIZATION_PRESETS = ("avx2", "avx512", "avx512_vnni", "arm64")
# The article's preset, which the int8-seed recipe uses on any CPU.
SEED_PRESET = "avx512_vnni"
STAGES = ("import weights", "export ONNX", "quantize", "write manifest")
# The int8 ONNX files may take at most this share of the original's weight bytes.
SIZE_BUDGET = 0.40
# From this many fp32 weight bytes on, heavy stages run in their own process (a fresh Python
# returns a finished stage's memory to the system; one process keeps its heap high) and the
# decoders are merged without loading their weights. Below it, both costs more than it saves.
ISOLATE_FROM_BYTES = 512 * 2**20
# Tensors larger than this are taken out of a graph while it is shape-inferred.
LEAN_TENSOR_BYTES = 4096
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
    # The clips int8-static is calibrated on; None: the shipped tuning clips.
    calibration: Path | None = None
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


def resolve_quantization(requested: str, flags: set[str] | None = None) -> str:
    """`auto` picks the best preset this CPU supports; a named preset is taken as is."""
    if requested != "auto":
        if requested not in QUANTIZATION_PRESETS:
            raise BuildError(
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
    if "int8-static" in recipes:
        try:
            clips = calibration_clips(calibration_dir(options))
        except QuantizerError as e:
            raise BuildError(str(e)) from e
        inputs["calibration_sha256"] = sha256_files(clips)
    if spec.kind == "synthetic":
        inputs["seed"] = spec.seed
    return inputs


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
    preset = resolve_quantization(options.quantization)
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
) -> tuple[dict[str, dict], dict[str, int]]:
    """Write every recipe's variant subfolder from the fp32 export in `work`.

    Returns each recipe's settings (for the manifest) and each quantizer's peak RSS.
    """
    fp32, quantized = work / ONNX_FP32_DIR, work / QUANTIZED_DIR
    settings: dict[str, dict] = {}
    peaks: dict[str, int] = {}
    original_bytes = weight_bytes(work / ORIGINAL_DIR)
    for name in names:
        recipe = RECIPES[name]
        out = work / name
        if name == ONNX_FP32_DIR:
            result: dict = {"method": "none: Optimum's export"}
        elif name == QUANTIZED_DIR:
            result, peaks["quantize"] = run_stage(
                isolate,
                quantize_onnx,
                fp32,
                out,
                preset,
                per_channel,
                size_budget=int(SIZE_BUDGET * original_bytes),
                low_memory=isolate,
            )
            result = {"method": "dynamic int8 (optimum ORTQuantizer)", **result}
        elif name == "int8-seed":
            # The article's configuration, exactly: the avx512_vnni preset, per-tensor, every
            # operator, whatever this CPU supports.
            result, peaks[name] = run_stage(
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
            result, peaks[name] = _quantizer_stage(
                isolate,
                quantize_int4,
                fp32,
                out,
                original_bytes=original_bytes,
            )
        elif name == "int8-static":
            vnni = resolve_quantization("auto") == "avx512_vnni"
            result, peaks[name] = _quantizer_stage(
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


def _quantizer_stage(isolated: bool, function: Callable, *args, **kwargs):
    try:
        return run_stage(isolated, function, *args, **kwargs)
    except QuantizerError as e:
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
        _, export_peak = run_stage(True, _optimum_export, original, tmp, post_process=False)
        _, merge_peak = run_stage(
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

    patch = contextlib.nullcontext() if post_process else _streaming_external_data()
    with patch:
        main_export(
            str(original),
            output=out_dir,
            task="automatic-speech-recognition-with-past",
            device="cpu",
            do_validation=False,
            no_post_process=not post_process,
        )


class _StreamingOnnx:
    """The `onnx` module as Optimum's exporter sees it, gathering external data by streaming.

    A graph past 2 GB comes out of torch's exporter with one file per tensor; Optimum then
    loads every weight (while the torch model is still alive) only to save them again into
    one `<file>_data`. Here the graph is loaded without its weights and `save` copies the
    tensor files' bytes into `<file>_data` a chunk at a time.
    """

    def __init__(self, onnx_module):
        self._onnx = onnx_module

    def __getattr__(self, name: str):
        return getattr(self._onnx, name)

    def load(self, path, load_external_data: bool = True, **kwargs):
        return self._onnx.load(path, load_external_data=False, **kwargs)

    def save(self, model, path, **kwargs) -> None:
        _save_streaming(model, Path(path), Path(path).parent)


@contextlib.contextmanager
def _streaming_external_data():
    import optimum.exporters.onnx.convert as convert

    original = convert.onnx
    convert.onnx = _StreamingOnnx(original)
    try:
        yield
    finally:
        convert.onnx = original


def _shape_inferred_without_copies(model):
    """onnxruntime's `save_and_reload_model_with_shape_infer`, without copying the weights.

    onnxruntime deep-copies the model, saves it and loads it back with shapes inferred (and
    does so twice per quantizer): several copies of the weights at once. Shape inference needs
    no weight values, so here a copy of the graph whose large initializers carry only their
    name, type and dims is shape-inferred, and the inferred value infos are set on `model`
    itself, which is returned.
    """
    import onnx
    from onnxruntime.quantization.quant_utils import add_infer_metadata

    lean = onnx.ModelProto()
    for descriptor, value in model.ListFields():
        if descriptor.name != "graph":
            _copy_field(lean, descriptor, value)
    _copy_graph_without_weights(model.graph, lean.graph)
    inferred = onnx.shape_inference.infer_shapes(lean)
    _take_value_infos(model.graph, inferred.graph)
    add_infer_metadata(model)
    return model


def _copy_graph_without_weights(source, target) -> None:
    for descriptor, value in source.ListFields():
        if descriptor.name != "initializer":
            _copy_field(target, descriptor, value)
    for tensor in source.initializer:
        copy = target.initializer.add()
        if tensor.ByteSize() <= LEAN_TENSOR_BYTES:
            copy.CopyFrom(tensor)
        else:
            copy.name, copy.data_type = tensor.name, tensor.data_type
            copy.dims.extend(tensor.dims)


def _copy_field(target, descriptor, value) -> None:
    if descriptor.is_repeated:
        getattr(target, descriptor.name).extend(value)
    elif descriptor.message_type is not None:
        getattr(target, descriptor.name).CopyFrom(value)
    else:
        setattr(target, descriptor.name, value)


def _take_value_infos(graph, inferred) -> None:
    """Give `graph` (and its subgraphs) the value infos and outputs of its inferred copy."""
    del graph.value_info[:]
    graph.value_info.extend(inferred.value_info)
    del graph.output[:]
    graph.output.extend(inferred.output)
    for node, inferred_node in zip(graph.node, inferred.node, strict=True):
        for attribute, inferred_attribute in zip(
            node.attribute, inferred_node.attribute, strict=True
        ):
            if attribute.HasField("g"):
                _take_value_infos(attribute.g, inferred_attribute.g)
            for subgraph, inferred_subgraph in zip(
                attribute.graphs, inferred_attribute.graphs, strict=True
            ):
                _take_value_infos(subgraph, inferred_subgraph)


@contextlib.contextmanager
def _lean_quantizer():
    import onnxruntime.quantization.base_quantizer as base_quantizer
    import onnxruntime.quantization.onnx_quantizer as onnx_quantizer

    modules = (base_quantizer, onnx_quantizer)
    originals = [module.save_and_reload_model_with_shape_infer for module in modules]
    for module in modules:
        module.save_and_reload_model_with_shape_infer = _shape_inferred_without_copies
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.save_and_reload_model_with_shape_infer = original


def external_data_name(onnx_file: str) -> str:
    """Where Optimum's export keeps the weights of a graph past 2 GB."""
    return onnx_file + "_data"


def merge_decoders_streaming(decoder: Path, with_past: Path, merged: Path) -> None:
    """Optimum's `merge_decoders`, with weights left on disk.

    Optimum's version loads both decoders' weights and copies them into the merged graph
    (three copies of the decoder in memory). Here the graphs are loaded without external data,
    shared weights are found by a digest of their bytes read from disk, and the kept weights
    are streamed into `<merged>_data`. The graph it writes is the one Optimum writes.
    """
    import onnx
    from optimum.onnx.transformations_utils import (
        _get_all_inputs,
        _get_onnx_opset,
        _replace_input_names,
        _unify_onnx_outputs,
    )

    models = [onnx.load(str(path), load_external_data=False) for path in (decoder, with_past)]
    folders = [decoder.parent, with_past.parent]
    if _get_onnx_opset(models[0]) != _get_onnx_opset(models[1]):
        raise BuildError("The two exported decoders have different opsets")
    # The decoder with past does not output the cross-attention cache (it is constant).
    _unify_onnx_outputs(models[0], models[1], strict=False)
    all_inputs = _get_all_inputs(models)
    duplicates: dict[tuple, set[tuple[str, int]]] = {}
    for index, (model, folder) in enumerate(zip(models, folders, strict=True)):
        for tensor in model.graph.initializer:
            if _shared_candidate(tensor):
                key = (tensor.data_type, _tensor_digest(tensor, folder), tuple(tensor.dims))
                duplicates.setdefault(key, set()).add((tensor.name, index))
    sharing = _sharing_names(duplicates.values(), suffix="merged")
    _replace_input_names(models, sharing)
    shared, seen = [], set()
    for index, model in enumerate(models):
        for tensor in model.graph.initializer:
            new_name = sharing.get((tensor.name, index))
            if new_name is not None and new_name not in seen:
                seen.add(new_name)
                tensor.name = new_name
                shared.append(tensor)
    branches = [
        onnx.helper.make_graph(
            nodes=model.graph.node,
            name=name,
            inputs=[],
            outputs=model.graph.output,
            initializer=[t for t in model.graph.initializer if not _shared_candidate(t)],
        )
        for model, name in zip(models, ("no_past", "with_past"), strict=True)
    ]
    use_cache_branch = onnx.helper.make_tensor_value_info(
        "use_cache_branch", onnx.TensorProto.BOOL, [1]
    )
    if_node = onnx.helper.make_node(
        "If",
        inputs=["use_cache_branch"],
        outputs=[output.name for output in branches[0].output],
        name="optimum::if",
        then_branch=branches[1],
        else_branch=branches[0],
    )
    graph = onnx.helper.make_graph(
        nodes=[if_node],
        name="merged",
        inputs=[*all_inputs, use_cache_branch],
        outputs=branches[0].output,
        initializer=shared,
    )
    opsets, domains = [], set()
    for opset in [*models[0].opset_import, *models[1].opset_import]:
        if opset.domain not in domains:
            opsets.append(opset)
            domains.add(opset.domain)
    model = onnx.helper.make_model_gen_version(
        graph, producer_name="optimum-onnx", opset_imports=opsets, ir_version=9
    )
    del models, branches, shared
    _save_streaming(model, merged, folders[0])


def _sharing_names(groups, suffix: str) -> dict[tuple[str, int], str]:
    """Optimum's naming of shared weights (`<name>_<suffix>_<n>`), with the name taken from the
    first model's tensors in a fixed order, so a rebuild names them the same (Optimum picks an
    arbitrary member of a set, which varies with the string hash seed)."""
    sharing: dict[tuple[str, int], str] = {}
    used: dict[str, int] = {}
    for group in groups:
        common, _ = min(group, key=lambda member: (member[1], member[0]))
        used[common] = used[common] + 1 if common in used else 0
        for member in group:
            sharing[member] = f"{common}_{suffix}_{used[common]}"
    return sharing


def _shared_candidate(tensor) -> bool:
    """Optimum's rule: scalars and 1-d int32/int64 tensors stay in their branch."""
    dims = tuple(tensor.dims)
    return len(dims) > 1 or (len(dims) == 1 and tensor.data_type not in (6, 7))


def _tensor_digest(tensor, folder: Path) -> str:
    """sha512 of a tensor's stored bytes, read in chunks from its external file if it has one."""
    import hashlib

    from onnx.external_data_helper import ExternalDataInfo, uses_external_data
    from onnx.numpy_helper import to_array

    digest = hashlib.sha512()
    if uses_external_data(tensor):
        info = ExternalDataInfo(tensor)
        for chunk in _read_range(folder / info.location, info.offset or 0, info.length):
            digest.update(chunk)
    elif tensor.raw_data:
        digest.update(tensor.raw_data)
    else:
        digest.update(to_array(tensor).tobytes())
    return digest.hexdigest()


def _read_range(path: Path, offset: int, length: int | None, chunk: int = 1 << 24):
    with open(path, "rb") as f:
        f.seek(offset)
        remaining = length if length is not None else path.stat().st_size - offset
        while remaining > 0:
            block = f.read(min(chunk, remaining))
            if not block:
                raise BuildError(f"{path.name} ends before the tensor it should hold")
            remaining -= len(block)
            yield block


def _save_streaming(model, path: Path, source_folder: Path) -> None:
    """Save `model`, copying the external data its tensors point to into `<path>_data`."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, _get_all_tensors, uses_external_data

    data_name = external_data_name(path.name)
    external = [t for t in _get_all_tensors(model) if uses_external_data(t)]
    if external:
        with open(path.parent / data_name, "wb") as out:
            for tensor in external:
                info = ExternalDataInfo(tensor)
                offset = out.tell()
                for block in _read_range(
                    source_folder / info.location, info.offset or 0, info.length
                ):
                    out.write(block)
                _point_to(tensor, data_name, offset, out.tell() - offset)
    onnx.save_model(model, str(path))


def _point_to(tensor, location: str, offset: int, length: int) -> None:
    """Make `tensor` read its bytes from `location` (onnx's `set_external_data` refuses a
    tensor whose bytes are not in memory)."""
    import onnx

    del tensor.external_data[:]
    for key, value in (("location", location), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    tensor.data_location = onnx.TensorProto.EXTERNAL


def quantize_onnx(
    fp32_dir: Path,
    out_dir: Path,
    preset: str,
    per_channel: bool,
    *,
    plain: bool = False,
    size_budget: int | None = None,
    low_memory: bool = False,
) -> dict:
    """Dynamically quantize both graphs to int8 with Optimum's ORTQuantizer.

    Attention's activation x activation MatMuls stay in fp32 (see `activation_matmuls`), and
    so do a multilingual model's encoder convolutions (see `fp32_convolutions`).
    With `per_channel`, every weight gets per-channel scales. The one exception is made only
    when the files would otherwise exceed `size_budget` bytes: the decoder's output projection
    then gets one scale, quantized in a second pass of the same quantizer. Its 51864 output
    channels' scales are a quarter MiB, which takes tiny.en's int8 files just past 40% of the
    original's bytes; base stays well under with them, and they keep base's transcripts
    closest to the original's (one 7 s clip read "gloves" for "clubs" with a single scale).

    `plain` is the recipe this project started from (every quantizable operator, attention
    MatMuls included, per-tensor), kept only to show what the changes bring.

    `low_memory` keeps onnxruntime from copying the weights for shape inference (see
    `_shape_inferred_without_copies`); the graphs it writes are the same.
    """
    with _lean_quantizer() if low_memory else contextlib.nullcontext():
        return _quantize_both(fp32_dir, out_dir, preset, per_channel, plain, size_budget)


def _quantize_both(
    fp32_dir: Path,
    out_dir: Path,
    preset: str,
    per_channel: bool,
    plain: bool,
    size_budget: int | None,
) -> dict:
    excluded = {n: [] if plain else activation_matmuls(fp32_dir / n) for n in ONNX_FILES}
    convolutions = [] if plain else fp32_convolutions(fp32_dir)
    excluded[ENCODER_FILE] += convolutions
    per_tensor: dict[str, list[str]] = dict.fromkeys(ONNX_FILES, [])
    for name in ONNX_FILES:
        qconfig = quantization_config(preset, per_channel, excluded[name])
        _quantize(fp32_dir, name, out_dir, qconfig).rename(out_dir / name)
    over_budget = size_budget is not None and weight_bytes(out_dir) > size_budget
    if per_channel and over_budget:
        per_tensor[DECODER_FILE] = output_projections(fp32_dir / DECODER_FILE)
        qconfig = quantization_config(
            preset, per_channel, excluded[DECODER_FILE] + per_tensor[DECODER_FILE]
        )
        written = _quantize(fp32_dir, DECODER_FILE, out_dir, qconfig)
        second = quantization_config(preset, False)
        second.nodes_to_quantize = per_tensor[DECODER_FILE]
        # Each pass rewrites ort_config.json; keep the first pass's, which describes the
        # model (the manifest records both).
        ort_config = (out_dir / "ort_config.json").read_bytes()
        written = _quantize(out_dir, written.name, out_dir, second, replace=written)
        (out_dir / "ort_config.json").write_bytes(ort_config)
        written.replace(out_dir / DECODER_FILE)
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
        "per_tensor": ", ".join(n for names in per_tensor.values() for n in sorted(set(names)))
        or "none",
        "size_budget_bytes": size_budget,
    }


def _quantize(src_dir: Path, file_name: str, out_dir: Path, qconfig, replace: Path | None = None):
    """One ORTQuantizer pass; returns the file it wrote (it appends `_quantized`)."""
    from optimum.onnxruntime import ORTQuantizer

    with _quiet_requantize_warning(replace is not None):
        ORTQuantizer.from_pretrained(src_dir, file_name=file_name).quantize(
            save_dir=out_dir, quantization_config=qconfig
        )
    written = out_dir / file_name.replace(".onnx", "_quantized.onnx")
    if not written.is_file():
        raise BuildError(f"The quantizer did not write {written.name}")
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
