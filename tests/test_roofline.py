"""The floor (roofline.py): the work formulas against a real build's ONNX initializers, the
floor arithmetic, the page's panel with and without docs/roofline.json, and the script's
--quick run end to end (no timing is asserted)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from whisper_quant.hardware import CpuInfo
from whisper_quant.roofline import (
    FP32,
    ROOFLINE_SHAPES,
    Peaks,
    decoder_step_work,
    encoder_work,
    floor,
    floor_panel,
    int8_precision,
    same_cpu,
    shape_for,
)

ROOT = Path(__file__).resolve().parents[1]
HERE = CpuInfo("Test CPU 9000", frozenset({"avx2", "avx512f", "avx512_vnni"}), 2)


def _initializer_bytes(model_bytes: bytes) -> dict[str, int]:
    """Bytes of a graph's initializers: matrices and vectors by dtype (int8 and uint8 both as
    `8bit`: the avx2 preset, which `auto` picks on a CPU with AVX2 but no AVX-512, stores uint8
    weights), and tables
    read by a Gather (one row per step, left out of the step's bytes)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load_from_string(model_bytes).graph
    gathered = {n.input[0] for n in graph.node if n.op_type.startswith("Gather")}
    out: dict[str, int] = {}
    for tensor in graph.initializer:
        array = numpy_helper.to_array(tensor)
        key = (
            "gathered"
            if tensor.name in gathered
            else f"{'8bit' if array.itemsize == 1 else array.dtype}-"
            f"{'matrix' if array.ndim >= 2 else 'vector'}"
        )
        out[key] = out.get(key, 0) + array.nbytes
    return out


def _weight_macs(model_bytes: bytes, frames: int) -> int:
    """MACs of the graph's products with a constant weight, for a 30 s window: every MatMul
    row is one of `frames` frames; conv1 runs over 2 * frames mel frames."""
    import onnx

    graph = onnx.load_from_string(model_bytes).graph
    sizes = {t.name: math.prod(t.dims) for t in graph.initializer}
    macs = 0
    for node in graph.node:
        if node.op_type in ("MatMul", "MatMulInteger") and node.input[1] in sizes:
            macs += frames * sizes[node.input[1]]
        elif node.op_type == "Conv":
            macs += (2 * frames if "conv1" in node.name else frames) * sizes[node.input[1]]
    return macs


@pytest.mark.integration
def test_work_formulas_match_the_base_build(built_base):
    """The counts from base's dims against the graphs the ONNX engines run on its files."""
    from whisper_quant.graphs import activation_matmuls, runtime_graphs

    shape = ROOFLINE_SHAPES["base"]
    work, step = encoder_work(shape), decoder_step_work(shape)
    fp32_dir, int8_dir = built_base.folder / "onnx-fp32", built_base.folder / "quantized"
    fp32 = runtime_graphs(fp32_dir / "encoder_model.onnx", fp32_dir / "decoder_model_merged.onnx")
    int8 = runtime_graphs(int8_dir / "encoder_model.onnx", int8_dir / "decoder_model_merged.onnx")

    # Encoder: every constant-weight product, and the two activation products per layer.
    assert _weight_macs(fp32.encoder, 1500) == work.weights
    assert _weight_macs(fp32.cross, 1500) == work.cross_kv
    assert len(activation_matmuls(fp32_dir / "encoder_model.onnx")) == 2 * shape.encoder_layers
    # The multilingual int8 encoder: projections and fc1 int8; fc2 and the convolutions fp32.
    fp32_macs, int8_macs = int8_precision(True).encoder_split(work)
    assert _weight_macs(int8.encoder, 1500) == work.weights  # same products, other types
    assert int8_macs == work.projections + work.fc1
    assert _initializer_bytes(int8.encoder)["8bit-matrix"] == int8_macs // 1500

    # Decoder step: every weight byte on the step graph's path, to the byte in fp32.
    fp32_step = _initializer_bytes(fp32.decoder)
    assert fp32_step["float32-matrix"] + fp32_step["float32-vector"] == step.weight_bytes(4)
    # int8, per-channel: 8-bit matrices, fp32 scales and biases, 8-bit zero points.
    int8_step = _initializer_bytes(int8.decoder)
    assert int8_step["8bit-matrix"] == step.matrices
    read = sum(v for k, v in int8_step.items() if k != "gathered")
    assert read == pytest.approx(step.weight_bytes(1.0, 5.0), abs=64)


def test_work_grows_with_size_and_attention_share_shrinks():
    tiny, large = encoder_work(ROOFLINE_SHAPES["tiny"]), encoder_work(ROOFLINE_SHAPES["large-v2"])
    assert large.total > 50 * tiny.total
    assert large.attention / large.total < tiny.attention / tiny.total
    # The issue's figure: about 16% of large-v2's encoder MACs are activation products.
    assert 0.15 < large.attention / large.total < 0.17
    # large-v2 reads about 0.8 GB of int8 weights per step (without the cross cache).
    assert 0.75e9 < decoder_step_work(ROOFLINE_SHAPES["large-v2"]).weight_bytes(1.0, 5.0) < 0.85e9


def test_shapes_by_benchmark_name():
    assert shape_for("base") is ROOFLINE_SHAPES["base"]
    assert shape_for("large-v2-random") is ROOFLINE_SHAPES["large-v2"]
    assert shape_for("tiny.en").vocab_size == ROOFLINE_SHAPES["tiny"].vocab_size - 1
    assert shape_for("nonsense") is None


def test_floor_arithmetic():
    shape = ROOFLINE_SHAPES["base"]
    work, step = encoder_work(shape), decoder_step_work(shape)
    peaks = Peaks(fp32_gmacs=100, int8_gmacs=400, memory_gbs=10, cache_gbs=40, cache_bytes=0)
    fp32 = floor(shape, FP32, peaks)
    assert fp32.encoder_s == pytest.approx(work.total / 100e9)
    assert fp32.cross_kv_s == pytest.approx(work.cross_kv / 100e9)
    assert fp32.step_s == pytest.approx((step.weight_bytes(4) + step.cross_cache_bytes) / 10e9)
    assert fp32.step_read_from == "memory"
    int8 = floor(shape, int8_precision(True), peaks)
    fp32_macs = work.total - work.projections - work.fc1
    assert int8.encoder_s == pytest.approx(
        fp32_macs / 100e9 + (work.projections + work.fc1) / 400e9
    )
    # Amdahl: the fp32 activation products cap the int8 gain below the peaks' 4x.
    assert 1 < fp32.encoder_s / int8.encoder_s < 4
    # English-only models quantize the convolutions and fc2 too: a lower floor.
    assert floor(shape, int8_precision(False), peaks).encoder_s < int8.encoder_s
    # A step whose bytes fit in half the last-level cache reads at the cache's bandwidth.
    cached = floor(shape, int8_precision(True), replace(peaks, cache_bytes=10**9))
    assert cached.step_read_from == "cache"
    assert cached.step_s == pytest.approx(int8.step_s / 4)


def _report(cpu: str = HERE.model, flags=("avx2", "avx512f", "avx512_vnni")) -> dict:
    return {
        "machine": {"cpu": cpu, "cpu_flags": list(flags), "quick": False},
        "peaks": {
            "tiny": {"d_model": 384, "fp32_gmacs": 50.0, "int8_gmacs": 150.0},
            "base": {"d_model": 512, "fp32_gmacs": 100.0, "int8_gmacs": 300.0},
        },
        "bandwidth": {
            "cache_bytes": 0,
            "memory": {"gbs_median": 10.0},
            "cache": {"gbs_median": 40.0},
        },
    }


def test_the_panel_states_the_floor_only_for_the_measured_cpu():
    shape = ROOFLINE_SHAPES["base"]
    work = encoder_work(shape)
    measured = floor_panel(shape, HERE, _report())
    assert f"{work.total / 1e9:.1f} GMAC per 30 s encoder window" in measured
    expected = floor(shape, FP32, Peaks(100.0, 300.0, 10.0, 40.0, 0))
    assert "**Floor on this CPU**" in measured and "on base's matrices" in measured
    assert f"encoder ≥ {1000 * expected.encoder_s:.0f} ms per window in fp32" in measured

    for report, reason in (
        (None, "docs/roofline.json is absent"),
        (_report("Other CPU"), "measured on Other CPU"),
        (_report(flags=("avx2",)), f"measured on {HERE.model}"),
    ):
        text = floor_panel(shape, HERE, report)
        assert "not measured for this CPU" in text and reason in text
        assert "Floor on this CPU" not in text and "GMAC/s" not in text
        assert f"{work.total / 1e9:.1f} GMAC per 30 s encoder window" in text


def test_the_panel_takes_the_committed_roofline_of_this_cpu(tmp_path):
    """docs/roofline.json first when it names this CPU, else a docs/roofline-*.json that does,
    else docs/roofline.json whatever it names."""
    from whisper_quant.roofline import report_for_cpu

    default = tmp_path / "roofline.json"
    other = _report("Other CPU")
    default.write_text(json.dumps(other))
    assert report_for_cpu(HERE, default) == (other, str(default))
    (tmp_path / "roofline-other-kind.json").write_text(json.dumps(_report(flags=("avx2",))))
    (tmp_path / "roofline-this-kind.json").write_text(json.dumps(_report()))
    report, source = report_for_cpu(HERE, default)
    assert report == _report() and source == str(tmp_path / "roofline-this-kind.json")
    assert "**Floor on this CPU** (" + source in floor_panel(
        ROOFLINE_SHAPES["base"], HERE, report, source
    )
    default.write_text(json.dumps(_report()))
    assert report_for_cpu(HERE, default) == (_report(), str(default))
    assert report_for_cpu(HERE, tmp_path / "absent.json") == (None, str(tmp_path / "absent.json"))


def test_same_cpu_needs_the_same_name_and_int8_features():
    assert same_cpu({"cpu": HERE.model, "cpu_flags": sorted(HERE.flags)}, HERE)
    assert not same_cpu({"cpu": HERE.model, "cpu_flags": ["avx2", "avx512f"]}, HERE)
    assert not same_cpu({"cpu": "Other", "cpu_flags": sorted(HERE.flags)}, HERE)


def test_hardware_panel_reads_the_model_config(tmp_path):
    from whisper_quant.settings import Settings
    from whisper_quant.views import hardware_panel

    folder = tmp_path / "base" / "original"
    folder.mkdir(parents=True)
    config = {
        "d_model": 512,
        "encoder_layers": 6,
        "decoder_layers": 6,
        "encoder_attention_heads": 8,
        "decoder_attention_heads": 8,
        "encoder_ffn_dim": 2048,
        "decoder_ffn_dim": 2048,
        "num_mel_bins": 80,
        "vocab_size": 51865,
        "max_source_positions": 1500,
        "max_target_positions": 448,
    }
    (folder / "config.json").write_text(json.dumps(config))
    settings = Settings(models_dir=tmp_path)
    text = hardware_panel(settings, "base", roofline_json=tmp_path / "absent.json")
    assert "**CPU**" in text and "Work of base" in text
    assert f"{tmp_path / 'absent.json'} is absent" in text
    # No built model: the CPU panel alone.
    assert "Work of" not in hardware_panel(settings, "missing", tmp_path / "absent.json")


def test_quick_run_writes_both_files(tmp_path):
    run = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "roofline.py"), "--quick", "--out-dir", tmp_path],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "roofline.json").read_text())
    assert report["machine"]["quick"] is True
    assert set(report["peaks"]) == {"tiny"}
    assert {r["path"] for r in report["matmul"]} >= {"fp32 MatMul"}
    assert all(r["gmacs_median"] > 0 for r in report["matmul"])
    assert report["bandwidth"]["memory"]["gbs_median"] > 0
    assert [r["model"] for r in report["models"]][:2] == ["tiny", "base"]
    assert all("encoder_floor_ms_int8" in r for r in report["models"])
    text = (tmp_path / "roofline.md").read_text()
    assert "--quick run on a shared machine" in text and "## What the gap means" in text
