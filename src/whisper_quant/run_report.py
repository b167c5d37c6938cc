"""The report of one run of the page, to download: what ran, on what, how it was measured,
and every figure the page showed (the same numbers, rounded the same way).

`build_report` gathers it from a comparison and the model's manifest; `to_json` and
`to_markdown` write it; `write_report` saves both beside each other.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .compare import Comparison
from .engines import ONNX_FP32, ORIGINAL, PYTORCH, QUANTIZED, OnnxEngine, engine_class
from .hardware import CpuInfo, cpu_info
from .measure import mib
from .views import (
    RESULT_HEADERS,
    coverages,
    dropped_lines,
    language_table,
    measurement_note,
    result_rows,
    segments_by_engine,
    speedup_comparable,
    speedup_split,
)

REPORT_FORMAT = 1
# Installed versions of what serves the page and runs the engines (the manifest has the
# versions the model was built with).
RUNTIME_PACKAGES = ("gradio", "onnxruntime", "torch", "transformers", "faster-whisper")


@dataclass(frozen=True)
class VariantReport:
    """One engine of the run: how its model was made, what ran it, what it wrote."""

    engine: str
    label: str
    # The manifest's settings for this variant (its `recipes` entry; for `quantized`, the
    # `quantization` section when there is no such entry); None when the manifest has none.
    recipe: Mapping | None
    runtime: Mapping  # what ran it: session options, graph changes (the load report's)
    threads: int
    transcript: str
    segments: tuple[Mapping, ...]  # as the API's segments output: start, end, text, ...
    # Its row of the page's table, as {header: value}.
    figures: Mapping
    # The worker's resident memory before and after loading the model (MiB, as the summary
    # shows them): held = total - baseline.
    memory_baseline_mib: int
    memory_total_mib: int
    # What its recipe brings over ONNX fp32, for the other ONNX variants (same runtime and
    # loop); None for the rest.
    speedup_vs_onnx_fp32: float | None
    # Against pytorch (the original's model through the same loop), when it ran.
    speedup_vs_pytorch: float | None = None
    # Seconds its segments with text cover, the share of the original's covered seconds it
    # covered too, and the spans of the original's speech it left out (views.coverages).
    speech_covered_s: float | None = None
    speech_coverage_vs_original: float | None = None
    dropped_spans: tuple[tuple[float, float], ...] = ()
    # False when it covered less than coverage.COMPARABLE_COVERAGE of the original's speech:
    # it did less work, so its speed-ups do not compare.
    speedup_comparable: bool = True
    # Language identification: per detected window, its start and top three languages.
    languages: tuple[Mapping, ...] = ()


@dataclass(frozen=True)
class RunReport:
    model: str
    description: str
    synthetic: bool  # seeded random weights: speed and memory only, transcripts meaningless
    created: str  # UTC, ISO 8601
    audio_s: float
    language: str | None
    reference: str
    options: Mapping  # the decoding options every engine got
    notice: str
    table_headers: tuple[str, ...]
    table: tuple[tuple, ...]  # the page's table, row for row
    # Speed-ups as the summary shows them, rounded; None where an engine did not run.
    # Quantized vs original = generate's passes (pytorch vs original) x runtime (onnx-fp32 vs
    # pytorch) x int8 (quantized vs onnx-fp32); quantized vs pytorch is the like-for-like one.
    speedup: Mapping
    speedup_text: str
    order: tuple[str, ...]  # the order the engines ran in
    order_seed: int | None
    variants: tuple[VariantReport, ...]
    # The manifest's `quantization` section: the build's preset, per-channel choice and the
    # CPU flags behind `auto`.
    quantization: Mapping | None
    build_versions: Mapping  # the manifest's: what the model was built with
    runtime_versions: Mapping  # installed here: what served and ran it
    cpu: Mapping
    method: str  # the page's note on how latency and memory are measured
    memory_method: str
    peak_method: str
    # The summary's sentences on variants that left out speech the original transcribed.
    coverage_notes: tuple[str, ...] = ()
    # The page's language identification table (Markdown); empty when nothing was detected.
    language_text: str = ""
    format: int = field(default=REPORT_FORMAT)


def installed_versions(packages: Iterable[str] = RUNTIME_PACKAGES) -> dict[str, str]:
    versions = {}
    for package in packages:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _recipe(manifest: Mapping, engine: str) -> Mapping | None:
    recipes = manifest.get("recipes")
    if isinstance(recipes, Mapping) and isinstance(recipes.get(engine), Mapping):
        return dict(recipes[engine])
    if engine == QUANTIZED and isinstance(manifest.get("quantization"), Mapping):
        return dict(manifest["quantization"])
    return None


def _onnx(engine: str) -> bool:
    try:
        return issubclass(engine_class(engine), OnnxEngine)
    except ValueError:
        return False


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def build_report(
    comparison: Comparison,
    manifest: Mapping,
    *,
    threads: int,
    method: str | None = None,
    cpu: CpuInfo | None = None,
    created: dt.datetime | None = None,
) -> RunReport:
    """The report of `comparison` on the model whose manifest is `manifest`.

    `method` is the page's measurement note (default: `views.measurement_note(None)`).
    """
    cpu = cpu or cpu_info()
    created = created or dt.datetime.now(dt.UTC)
    rows = [tuple(row) for row in result_rows(comparison)]
    segments = segments_by_engine(comparison)
    onnx = comparison.get(ONNX_FP32)
    torch_loop = comparison.get(PYTORCH)
    covered = coverages(comparison)
    variants = tuple(
        VariantReport(
            engine=r.engine,
            label=r.label,
            recipe=_recipe(manifest, r.engine),
            runtime=dict(r.load.runtime),
            threads=r.load.threads,
            transcript=r.transcription.text,
            segments=tuple(segments.get(r.engine, ())),
            figures=dict(zip(RESULT_HEADERS, row, strict=True)),
            memory_baseline_mib=round(mib(r.load.baseline_bytes)),
            memory_total_mib=round(mib(r.load.total_bytes)),
            speedup_vs_onnx_fp32=(
                _rounded(comparison.speedup(r.engine, baseline=ONNX_FP32))
                if onnx is not None and r.engine != ONNX_FP32 and _onnx(r.engine)
                else None
            ),
            speedup_vs_pytorch=(
                _rounded(comparison.speedup(r.engine, baseline=PYTORCH))
                if torch_loop is not None and r.engine != PYTORCH
                else None
            ),
            speech_covered_s=_rounded(covered[r.engine].covered_s) if r.engine in covered else None,
            speech_coverage_vs_original=(
                _rounded(covered[r.engine].coverage)
                if r.engine in covered and r.engine != ORIGINAL
                else None
            ),
            dropped_spans=tuple(
                (round(a, 2), round(b, 2))
                for a, b in (covered[r.engine].dropped if r.engine in covered else ())
            ),
            speedup_comparable=speedup_comparable(comparison, r.engine),
            languages=tuple(
                {"window": d.window, "start_s": d.start_s, "top": [list(t) for t in d.top]}
                for d in r.transcription.window_languages
            ),
        )
        for r, row in zip(comparison.results, rows, strict=True)
    )
    first = comparison.results[0].load if comparison.results else None
    return RunReport(
        model=comparison.model,
        description=str(manifest.get("description", "")),
        synthetic=bool(manifest.get("synthetic", False)),
        created=created.astimezone(dt.UTC).isoformat(timespec="seconds"),
        audio_s=round(comparison.audio_s, 2),
        language=comparison.language,
        reference=comparison.reference,
        options=asdict(comparison.options),
        notice=comparison.notice,
        table_headers=tuple(RESULT_HEADERS),
        table=tuple(rows),
        speedup={
            "quantized_vs_original": _rounded(comparison.speedup(QUANTIZED)),
            "onnx_fp32_vs_original": _rounded(comparison.speedup(ONNX_FP32)),
            "quantized_vs_onnx_fp32": _rounded(comparison.speedup(QUANTIZED, baseline=ONNX_FP32)),
            "quantized_vs_pytorch": _rounded(comparison.speedup(QUANTIZED, baseline=PYTORCH)),
            "pytorch_vs_original": _rounded(comparison.speedup(PYTORCH)),
            "onnx_fp32_vs_pytorch": _rounded(comparison.speedup(ONNX_FP32, baseline=PYTORCH)),
        },
        speedup_text=speedup_split(comparison),
        order=tuple(comparison.order),
        order_seed=comparison.order_seed,
        variants=variants,
        quantization=(
            dict(manifest["quantization"])
            if isinstance(manifest.get("quantization"), Mapping)
            else None
        ),
        build_versions=dict(manifest.get("versions") or {}),
        runtime_versions=installed_versions(),
        cpu={
            "model": cpu.model,
            "flags": cpu.relevant_flags,
            "logical_cpus": cpu.logical_cpus,
            "threads_per_engine": threads,
        },
        method=method if method is not None else measurement_note(None),
        memory_method=first.memory_method if first else "",
        peak_method=first.peak_method if first else "",
        coverage_notes=tuple(dropped_lines(comparison)),
        language_text=language_table(comparison),
    )


def to_json(report: RunReport) -> str:
    return json.dumps(asdict(report), indent=2, ensure_ascii=False, default=str) + "\n"


def _cell(value) -> str:
    return str(value).replace("|", "\\|")


def _settings(values: Mapping) -> str:
    return ", ".join(
        f"{key}: {json.dumps(value, ensure_ascii=False, default=str)}"
        for key, value in values.items()
    )


def to_markdown(report: RunReport) -> str:
    lines = [f"# {report.model}: one clip, {len(report.variants)} variants", ""]
    if report.synthetic:
        lines += [
            "**Synthetic weights** (seeded random): speed and memory only; the transcripts "
            "are meaningless.",
            "",
        ]
    lines += [
        f"- Model: {report.model}" + (f" ({report.description})" if report.description else ""),
        f"- Run: {report.created}, a {report.audio_s:g} s clip"
        + (f", language {report.language}" if report.language else ""),
        f"- Reference: {report.reference or '(none)'}",
        f"- Engines ran in this order: {' → '.join(report.order)} (shuffled, seed "
        f"{report.order_seed})",
        f"- CPU: {report.cpu['model']}, {report.cpu['logical_cpus']} logical CPUs, "
        f"{report.cpu['threads_per_engine']} threads per engine; flags: "
        f"{' '.join(report.cpu['flags']) or '(unknown)'}",
        f"- Built with: {_settings(report.build_versions) or '(unknown)'}",
        f"- Quantization settings of the build: {_settings(report.quantization or {}) or '(none)'}",
        f"- Running: {_settings(report.runtime_versions)}",
    ]
    if report.notice:
        lines += ["", f"**Notice**: {report.notice}"]
    lines += [
        "",
        "## Results",
        "",
        "| " + " | ".join(report.table_headers) + " |",
        "|" + "---|" * len(report.table_headers),
    ]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in report.table]
    if report.speedup_text:
        lines += ["", report.speedup_text]
    for note in report.coverage_notes:
        lines += ["", f"**Left out speech:** {note}"]
    if report.language_text:
        lines += ["", "## Language identification", "", report.language_text]
    lines += [
        "",
        "## How it was measured",
        "",
        report.method,
        "",
        f"Memory: {report.memory_method}",
        "",
        f"Peak: {report.peak_method}",
        "",
        "## Decoding options",
        "",
        _settings(report.options),
        "",
        "## Variants",
    ]
    for v in report.variants:
        lines += ["", f"### {v.label} (`{v.engine}`)", ""]
        lines.append(f"- Recipe: {_settings(v.recipe) if v.recipe else '(none in the manifest)'}")
        if v.runtime:
            lines.append(f"- Runtime: {_settings(v.runtime)}")
        lines.append(
            f"- Worker RSS: {v.memory_total_mib} MiB loaded, {v.memory_baseline_mib} MiB "
            "baseline (memory held = loaded − baseline)"
        )
        if v.speedup_vs_onnx_fp32 is not None:
            lines.append(f"- Speed-up vs ONNX fp32: {v.speedup_vs_onnx_fp32:.2f}x")
        lines += ["", f"> {v.transcript or '(empty)'}", ""]
        for s in v.segments:
            lines.append(f"- `{s['start']:.2f} → {s['end']:.2f}` {s['text']}")
    return "\n".join(lines) + "\n"


def write_report(report: RunReport, folder: Path | str) -> list[Path]:
    """`<model>-report.json` and `<model>-report.md` in `folder`."""
    folder = Path(folder)
    paths = []
    for suffix, text in (("json", to_json(report)), ("md", to_markdown(report))):
        path = folder / f"{report.model}-report.{suffix}"
        path.write_text(text, encoding="utf-8")
        paths.append(path)
    return paths
