"""The downloadable report of one run (run_report.py) holds what the page showed, exactly."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import pytest

from whisper_quant.compare import Comparison, EngineResult
from whisper_quant.engines import Segment, TranscribeOptions, Transcription
from whisper_quant.hardware import CpuInfo
from whisper_quant.measure import MEMORY_METHOD
from whisper_quant.metrics import agreement, error_rate
from whisper_quant.report import TABLE_HEADERS, table_rows
from whisper_quant.run_report import (
    RunReport,
    build_report,
    to_json,
    to_markdown,
    write_report,
)
from whisper_quant.views import (
    RESULT_HEADERS,
    measurement_note,
    result_rows,
    segments_by_engine,
    speedup_split,
)
from whisper_quant.workers import LoadReport

MIB = 2**20
REFERENCE = "go forward ten meters"
CPU = CpuInfo("Test CPU 9000", frozenset({"avx2", "fma", "avx512_vnni", "sse2"}), 2)
CREATED = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.UTC)
# engine: (label, text, latency s, held MiB, peak MiB, disk MiB)
ENGINES = {
    "original": ("Original (PyTorch fp32)", "Go forward 10 meters.", 0.9137, 160.44, 12.3, 144.0),
    "onnx-fp32": ("ONNX fp32 (no quantization)", "Go forward 10 meters.", 0.4123, 120.06, 8.0, 150),
    "quantized": ("Quantized (ONNX int8)", "Go forward 10 meter.", 0.2987, 60.55, 5.06, 57.5),
    "faster-whisper": (
        "faster-whisper (CTranslate2 int8)",
        "Go for 10 meters.",
        0.35,
        70,
        None,
        40,
    ),
}
MANIFEST = {
    "model": "tiny.en",
    "description": "Whisper tiny, English-only",
    "synthetic": False,
    "quantization": {"preset": "avx2", "per_channel": True, "weights": "QUInt8"},
    "versions": {"torch": "2.13.0+cpu", "onnxruntime": "1.32.0"},
}


def _result(engine: str, language: str = "en") -> EngineResult:
    label, text, latency, held, peak, disk = ENGINES[engine]
    segment = Segment(0.0, 2.34567, f" {text}", (1, 2), "en", 0.0, -0.2, 0.01, 1.1, 0)
    transcription = Transcription(
        engine=engine,
        text=text,
        language="en",
        tokens=(1, 2, 3),
        audio_s=2.8,
        timings={"total": latency, "decoder": latency / 2},
        segments=(segment,),
        windows=1,
        fallback_windows=1 if engine == "faster-whisper" else 0,
        tokens_decoded=9,
        peak_memory_bytes=None if peak is None else int(peak * MIB),
    )
    load = LoadReport(
        engine=engine,
        label=label,
        folder=f"/models/tiny.en/{engine}",
        threads=2,
        pid=1,
        baseline_bytes=int(300 * MIB),
        total_bytes=int((300 + held) * MIB),
        weights_bytes=int(disk * MIB),
        load_s=1.0,
        warmup_s=0.5,
        runtime={"runtime": f"{engine} runtime", "graph_changes": ["fused"]},
    )
    original_text = ENGINES["original"][1]
    return EngineResult(
        engine=engine,
        label=label,
        transcription=transcription,
        load=load,
        error_rate=error_rate(REFERENCE, text, language),
        agreement=None if engine == "original" else agreement(original_text, text, language),
    )


def _comparison(engines=tuple(ENGINES)) -> Comparison:
    return Comparison(
        model="tiny.en",
        audio_s=2.8,
        language="en",
        reference=REFERENCE,
        results=tuple(_result(name) for name in engines),
        order=tuple(reversed(engines)),
        order_seed=1234,
        options=TranscribeOptions(),
    )


def _report(comparison=None, manifest=MANIFEST, **kwargs) -> RunReport:
    return build_report(
        comparison or _comparison(), manifest, threads=2, cpu=CPU, created=CREATED, **kwargs
    )


def test_the_report_holds_exactly_the_figures_of_the_pages_table():
    comparison = _comparison()
    report = _report(comparison)
    page = result_rows(comparison)  # what app.py shows in the Results table
    assert report.table_headers == RESULT_HEADERS
    # The report's columns first, unchanged, then the page's added ones at the end.
    assert RESULT_HEADERS[: len(TABLE_HEADERS)] == TABLE_HEADERS
    assert [row[: len(TABLE_HEADERS)] for row in page] == table_rows(comparison)
    assert [list(row) for row in report.table] == page
    assert len(report.table) == len(ENGINES)
    for variant, row in zip(report.variants, page, strict=True):
        assert variant.figures == dict(zip(RESULT_HEADERS, row, strict=True))
    # The same numbers, with the same rounding, in the JSON file...
    written = json.loads(to_json(report))
    assert written["table_headers"] == list(RESULT_HEADERS)
    assert written["table"] == page
    assert [v["figures"] for v in written["variants"]] == [
        dict(zip(RESULT_HEADERS, row, strict=True)) for row in page
    ]
    # ...and in the markdown table, cell for cell.
    markdown = to_markdown(report)
    assert "| " + " | ".join(RESULT_HEADERS) + " |" in markdown
    for row in page:
        assert "| " + " | ".join(str(v) for v in row) + " |" in markdown
    # Spot checks of the rounding the page uses.
    original = dict(zip(RESULT_HEADERS, page[0], strict=True))
    assert original["Latency (ms)"] == 914 and original["Memory held (MiB)"] == 160.4
    assert original["Agreement with original"] == "(reference)"


def test_the_speedup_split_and_order_seed_are_as_the_summary_shows_them():
    comparison = _comparison()
    report = _report(comparison)
    assert report.speedup == {
        "quantized_vs_original": round(0.9137 / 0.2987, 2),
        "onnx_fp32_vs_original": round(0.9137 / 0.4123, 2),
        "quantized_vs_onnx_fp32": round(0.4123 / 0.2987, 2),
        # pytorch did not run in this comparison: no like-for-like figures.
        "quantized_vs_pytorch": None,
        "pytorch_vs_original": None,
        "onnx_fp32_vs_pytorch": None,
    }
    assert report.speedup_text == speedup_split(comparison)
    assert f"**{report.speedup['quantized_vs_original']:.2f}x**" in report.speedup_text
    assert report.order_seed == 1234
    assert report.order == ("faster-whisper", "quantized", "onnx-fp32", "original")
    by_engine = {v.engine: v for v in report.variants}
    assert by_engine["quantized"].speedup_vs_onnx_fp32 == round(0.4123 / 0.2987, 2)
    assert by_engine["original"].speedup_vs_onnx_fp32 is None
    assert by_engine["onnx-fp32"].speedup_vs_onnx_fp32 is None
    # Another runtime is not "a recipe over ONNX fp32".
    assert by_engine["faster-whisper"].speedup_vs_onnx_fp32 is None
    markdown = to_markdown(report)
    assert "seed 1234" in markdown and report.speedup_text in markdown


def test_without_onnx_fp32_the_split_is_left_out_not_invented():
    report = _report(_comparison(("original", "quantized")))
    assert report.speedup["quantized_vs_original"] == round(0.9137 / 0.2987, 2)
    assert report.speedup["onnx_fp32_vs_original"] is None
    assert report.speedup["quantized_vs_onnx_fp32"] is None
    assert [v.speedup_vs_onnx_fp32 for v in report.variants] == [None, None]
    assert len(report.table) == 2


def test_each_variant_has_its_transcript_segments_and_what_ran_it():
    comparison = _comparison()
    report = _report(comparison)
    segments = segments_by_engine(comparison)  # the API's segments output
    assert [v.engine for v in report.variants] == list(ENGINES)
    for variant in report.variants:
        label, text, *_ = ENGINES[variant.engine]
        assert variant.label == label
        assert variant.transcript == text
        assert list(variant.segments) == segments[variant.engine]
        assert variant.segments[0]["end"] == 2.35
        assert variant.runtime["runtime"] == f"{variant.engine} runtime"
        assert variant.threads == 2
        held = round(ENGINES[variant.engine][3])
        assert (variant.memory_baseline_mib, variant.memory_total_mib) == (300, 300 + held)
    markdown = to_markdown(report)
    for _, text, *_ in ENGINES.values():
        assert f"> {text}" in markdown
    assert "`0.00 → 2.35` Go for 10 meters." in markdown


def test_recipes_come_from_the_manifest_quantization_section_or_its_recipes():
    report = _report()
    recipes = {v.engine: v.recipe for v in report.variants}
    # Without a `recipes` section, only the quantized variant has settings: `quantization`.
    assert recipes == {
        "original": None,
        "onnx-fp32": None,
        "quantized": MANIFEST["quantization"],
        "faster-whisper": None,
    }
    manifest = {
        **MANIFEST,
        "recipes": {
            "onnx-fp32": {"encoder": "fp32", "decoder": "fp32"},
            "quantized": {"encoder": "int8 dynamic", "decoder": "int8 dynamic"},
        },
    }
    recipes = {v.engine: v.recipe for v in _report(manifest=manifest).variants}
    assert recipes["onnx-fp32"] == {"encoder": "fp32", "decoder": "fp32"}
    assert recipes["quantized"] == {"encoder": "int8 dynamic", "decoder": "int8 dynamic"}
    assert recipes["original"] is None and recipes["faster-whisper"] is None
    # A `recipes` section of another shape (a list of names) is skipped.
    recipes = {
        v.engine: v.recipe for v in _report(manifest={**MANIFEST, "recipes": ["x"]}).variants
    }
    assert recipes["quantized"] == MANIFEST["quantization"]


def test_model_versions_cpu_and_method_are_recorded():
    report = _report()
    assert report.model == "tiny.en" and report.synthetic is False
    assert report.created == "2026-12-05T12:00:00+00:00"
    assert report.build_versions == MANIFEST["versions"]
    assert report.quantization == MANIFEST["quantization"]
    assert {"gradio", "onnxruntime", "torch"} <= set(report.runtime_versions)
    assert report.cpu == {
        "model": "Test CPU 9000",
        "flags": ["avx2", "avx512_vnni", "fma"],  # the int8-relevant ones
        "logical_cpus": 2,
        "threads_per_engine": 2,
    }
    assert report.method == measurement_note(None)
    assert report.memory_method == MEMORY_METHOD
    assert report.reference == REFERENCE and report.audio_s == 2.8
    assert report.options["temperatures"] == TranscribeOptions().temperatures
    markdown = to_markdown(report)
    for text in ("Test CPU 9000", "avx512_vnni", "gradio", "2.13.0+cpu", "Memory held:"):
        assert text in markdown, text
    assert "Synthetic weights" not in markdown
    note = _report(method="the page's note").method
    assert note == "the page's note"


def test_synthetic_weights_are_said_first():
    report = _report(manifest={**MANIFEST, "synthetic": True})
    assert report.synthetic is True
    assert json.loads(to_json(report))["synthetic"] is True
    assert "**Synthetic weights**" in to_markdown(report).split("## Results")[0]


def test_the_report_is_frozen_and_written_as_json_and_markdown(tmp_path):
    report = _report()
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.model = "other"  # type: ignore[misc]
    paths = write_report(report, tmp_path)
    assert [p.name for p in paths] == ["tiny.en-report.json", "tiny.en-report.md"]
    assert json.loads(paths[0].read_text(encoding="utf-8")) == json.loads(to_json(report))
    assert paths[1].read_text(encoding="utf-8") == to_markdown(report)
