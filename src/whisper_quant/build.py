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
import datetime as dt
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .graphs import activation_matmuls, output_projections
from .hardware import cpu_flags, cpu_info
from .layout import (
    BASELINE_DIR,
    CT2_DIR,
    CT2_MODEL_FILE,
    DECODER_FILE,
    DEFAULT_MODELS_DIR,
    MANIFEST,
    MANIFEST_FORMAT,
    ONNX_FILES,
    ONNX_FP32_DIR,
    ORIGINAL_DIR,
    QUANTIZED_DIR,
    weight_bytes,
)
from .manifest import ModelIntegrityError, describe_files, verify_folder
from .models import ModelSpec, locate_ct2_files, resolve_model
from .weights import copy_preprocessing_files, import_weights, source_checksum

logger = logging.getLogger(__name__)

# Bump when the build's output changes for the same inputs, so old builds are redone.
BUILDER_VERSION = 6
QUANTIZATION_PRESETS = ("avx2", "avx512", "avx512_vnni", "arm64")
STAGES = ("import weights", "export ONNX", "quantize", "write manifest")
# The int8 ONNX files may take at most this share of the original's weight bytes.
SIZE_BUDGET = 0.40


class BuildError(RuntimeError):
    """A build cannot proceed; the message says why and what to do."""


@dataclass(frozen=True)
class BuildOptions:
    quantization: str = "auto"
    # Per-channel scales keep quantized transcripts closest to the original's (see README).
    per_channel: bool = True
    force: bool = False
    # Also build the plain recipe (Optimum's defaults, per-tensor) for the `optimum` engine.
    baseline: bool = False


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


def _inputs(spec: ModelSpec, options: BuildOptions, preset: str) -> dict:
    """What determines a build's output; a rerun with equal inputs has nothing to do."""
    return {
        "builder_version": BUILDER_VERSION,
        "source": spec.name,
        "kind": spec.kind,
        "quantization": preset,
        "per_channel": options.per_channel,
        "baseline": options.baseline,
        "versions": library_versions(),
    }


def _is_current(folder: Path, inputs: dict, source_sha256: str | None) -> bool:
    try:
        manifest = verify_folder(folder, checksums=False)
    except ModelIntegrityError:
        return False
    if manifest.get("inputs") != inputs:
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
    spec = resolve_model(name)
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

    def stage(label: str):
        on_stage(label)
        logger.info("%s: %s", spec.name, label)
        return time.perf_counter()

    start = stage(STAGES[0])
    imported = import_weights(spec, work / ORIGINAL_DIR)
    if spec.kind in ("embedded", "ct2"):
        copy_ct2_source(spec, work / CT2_DIR)
    stages["import_s"] = time.perf_counter() - start

    start = stage(STAGES[1])
    export_onnx(work / ORIGINAL_DIR, work / ONNX_FP32_DIR)
    stages["export_s"] = time.perf_counter() - start

    start = stage(STAGES[2])
    budget = int(SIZE_BUDGET * weight_bytes(work / ORIGINAL_DIR))
    qconfig = quantize_onnx(
        work / ONNX_FP32_DIR, work / QUANTIZED_DIR, preset, options.per_channel, size_budget=budget
    )
    if options.baseline:
        quantize_onnx(work / ONNX_FP32_DIR, work / BASELINE_DIR, preset, False, plain=True)
    stages["quantize_s"] = time.perf_counter() - start

    start = stage(STAGES[3])
    manifest = {
        "format": MANIFEST_FORMAT,
        "model": spec.name,
        "description": spec.description,
        "multilingual": imported.multilingual,
        "parameters": imported.parameters,
        "source": {
            "kind": spec.kind,
            "name": spec.name,
            "location": imported.source,
            "sha256": imported.source_sha256,
            "packages": {p: importlib.metadata.version(p) for p in spec.packages},
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
        "inputs": inputs,
        "versions": library_versions(),
        "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "stages_s": {k: round(v, 2) for k, v in stages.items()},
        "files": describe_files(work),
    }
    manifest["stages_s"]["manifest_s"] = round(time.perf_counter() - start, 2)
    (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest


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


def export_onnx(original: Path, out_dir: Path) -> None:
    """Export encoder and merged decoder (with key/value cache) to ONNX with Optimum."""
    from optimum.exporters.onnx import main_export

    tmp = out_dir.with_name(out_dir.name + ".export")
    main_export(
        str(original),
        output=tmp,
        task="automatic-speech-recognition-with-past",
        device="cpu",
        do_validation=False,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    # Keep one decoder: the merged graph serves both the first step and the cached steps.
    for name in ONNX_FILES:
        if not (tmp / name).is_file():
            raise BuildError(f"The ONNX export did not write {name}")
        shutil.move(tmp / name, out_dir / name)
    copy_preprocessing_files(original, out_dir)
    shutil.rmtree(tmp)


def quantize_onnx(
    fp32_dir: Path,
    out_dir: Path,
    preset: str,
    per_channel: bool,
    *,
    plain: bool = False,
    size_budget: int | None = None,
) -> dict:
    """Dynamically quantize both graphs to int8 with Optimum's ORTQuantizer.

    Attention's activation x activation MatMuls stay in fp32 (see `activation_matmuls`).
    With `per_channel`, every weight gets per-channel scales. The one exception is made only
    when the files would otherwise exceed `size_budget` bytes: the decoder's output projection
    then gets one scale, quantized in a second pass of the same quantizer. Its 51864 output
    channels' scales are a quarter MiB, which takes tiny.en's int8 files just past 40% of the
    original's bytes; base stays well under with them, and they keep base's transcripts
    closest to the original's (one 7 s clip read "gloves" for "clubs" with a single scale).

    `plain` is the recipe this project started from (every quantizable operator, attention
    MatMuls included, per-tensor), kept only to show what the changes bring.
    """
    excluded = {n: [] if plain else activation_matmuls(fp32_dir / n) for n in ONNX_FILES}
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
        if rel.endswith((".onnx", ".safetensors")):
            sizes[sub] = sizes.get(sub, 0) + info["size"]
    return {
        "name": result.name,
        "folder": str(result.folder),
        "skipped": result.skipped,
        "weights_bytes": sizes,
        "stages_s": result.manifest.get("stages_s", {}),
    }
