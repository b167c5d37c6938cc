"""scripts/decoder_profile.py: a decoder step split into kernels by operator, the executor's
time between them, and the time outside the session, on the real tiny.en."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.integration
def test_profile_splits_a_step_and_finds_the_int8_kernels(built_tiny_en, tmp_path):
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "decoder_profile.py"),
            str(ROOT / "tests" / "data" / "goforward.wav"),
            str(built_tiny_en.folder),
            "--steps",
            "4",
            "--rounds",
            "2",
            "--json",
            str(tmp_path / "profile.json"),
            "--markdown",
            str(tmp_path / "profile.md"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads((tmp_path / "profile.json").read_text())
    (model,) = report["models"]
    assert model["model"] == "tiny.en" and model["synthetic"] is False
    engines = {e["engine"]: e for e in model["engines"]}
    assert list(engines) == ["onnx-fp32", "quantized"]
    for engine in engines.values():
        parts = engine["profiled"]
        # Every timed step of every round was matched to its session run.
        assert parts["steps"] == 4 * 2
        assert 0 < parts["kernels_ms"] <= parts["model_run_ms"] <= engine["profiled_step_ms"]
        assert parts["kernels_ms"] > 0.5 * parts["model_run_ms"], "kernels are most of a run"
        assert parts["between_kernels_ms"] >= 0 and parts["outside_run_ms"] >= 0
        assert 0 < engine["plain_step_ms"] < 1000 and parts["nodes_per_step"] > 10
        assert 0 < engine["profiler_us_per_node"] < 500
        loop = engine["loop"]
        assert loop["decoder_calls"] > 4 and 0 < loop["share_of_decoder_time"] < 0.5
    # The int8 decoder's weight matmuls run as integer kernels, with their activations
    # quantized per call; the fp32 decoder has neither.
    int8_groups = engines["quantized"]["profiled"]["groups_ms"]
    assert int8_groups["int8 weight matmul"] > 0
    assert int8_groups["activation quantization (per call)"] > 0
    assert "int8 weight matmul" not in engines["onnx-fp32"]["profiled"]["groups_ms"]
    floors = model["floors"]
    assert set(floors) == {"onnx-fp32", "quantized"}
    assert 0 < floors["quantized"]["step_mb"] < floors["onnx-fp32"]["step_mb"]
    text = (tmp_path / "profile.md").read_text()
    assert "## tiny.en\n" in text and "| **plain step** (as served) |" in text
    # The profiler writes under the engine's prefix (a temporary folder), not the working folder.
    assert sorted(p.name for p in tmp_path.glob("*.json")) == ["profile.json"]
