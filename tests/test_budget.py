"""The memory budget (budget.py) on fake numbers: estimates from weight files, the refusal's
words, and the app refusing to start engines that would not fit (no worker is started)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisper_quant import budget
from whisper_quant.budget import (
    ENGINE_HELD_PER_WEIGHT_BYTE,
    HELD_PER_WEIGHT_BYTE,
    PEAK_RESERVE_MIB,
    WORKER_BASELINE_MIB,
    EngineNeed,
    MemoryBudget,
    MemoryBudgetError,
    check_addition,
    check_memory,
    estimate,
)
from whisper_quant.engines import EngineError
from whisper_quant.service import StudioSwitcher
from whisper_quant.settings import Settings, SettingsError

MIB = 2**20
GIB = 2**30


def fake_model(folder: Path, sizes: dict[str, int]) -> Path:
    """A built-looking folder whose weight files have these sizes (sparse: no disk used)."""
    names = {"original": "model.safetensors", "ct2": "model.bin"}
    for sub, size in sizes.items():
        (folder / sub).mkdir(parents=True)
        with open(folder / sub / names.get(sub, "encoder_model.onnx"), "wb") as f:
            f.truncate(size)
        (folder / sub / "config.json").write_text("{}")  # not a weight file
    (folder / "manifest.json").write_text(json.dumps({"format": 1, "files": {}}))
    return folder


# large-v3's sizes, near enough: 6.2 GB fp32 twice, int8 a quarter of it.
LARGE = {"original": 6 * GIB, "onnx-fp32": 6 * GIB, "quantized": 3 * GIB // 2}


def test_each_engine_needs_its_weights_times_the_factor_plus_a_worker(tmp_path):
    model = fake_model(tmp_path / "large-v3", LARGE)
    result = estimate(model, ["original", "onnx-fp32", "quantized"], available_bytes=64 * GIB)
    assert [n.engine for n in result.needs] == ["original", "onnx-fp32", "quantized"]
    assert [n.weights_bytes for n in result.needs] == list(LARGE.values())
    original = result.needs[0]
    assert original.held_bytes == round(6 * GIB * ENGINE_HELD_PER_WEIGHT_BYTE["original"])
    assert original.needs_bytes == original.held_bytes + WORKER_BASELINE_MIB * MIB
    assert result.total_bytes == sum(n.needs_bytes for n in result.needs) + PEAK_RESERVE_MIB * MIB
    assert result.fits and result.source == "available memory"
    assert check_memory(model, ["quantized"], available_bytes=64 * GIB).fits


def test_engines_that_do_not_fit_are_refused_in_plain_words(tmp_path):
    model = fake_model(tmp_path / "large-v3", LARGE)
    with pytest.raises(MemoryBudgetError) as caught:
        check_memory(model, ["original", "onnx-fp32", "quantized"], budget_mib=16_000)
    message = str(caught.value)
    assert isinstance(caught.value, EngineError)  # the page shows it as written
    assert message.startswith("Not loading large-v3: it would not fit in memory.")
    # Which engines, how much each, what is available and from where, what to do.
    assert "original 8,253 MiB, onnx-fp32 7,147 MiB, quantized 2,278 MiB" in message
    assert "about 18,618 MiB" in message
    assert "factor (original 1.27, onnx-fp32 1.09, quantized 1.19) plus a 450 MiB" in message
    assert "16,000 MiB is available (WHISPER_MEMORY_BUDGET_MIB)" in message
    assert "set WHISPER_ENGINES=original,quantized (about 11,471 MiB without onnx-fp32)" in message
    assert "choose a smaller model" in message and "more memory" in message


def test_when_even_the_required_engines_do_not_fit_it_says_so(tmp_path):
    model = fake_model(tmp_path / "large-v3", LARGE)
    with pytest.raises(MemoryBudgetError) as caught:
        check_memory(model, ["original", "onnx-fp32", "quantized"], available_bytes=8 * GIB)
    message = str(caught.value)
    assert "8,192 MiB is available (available memory)" in message
    assert "even original and quantized alone need about 11,471 MiB" in message
    assert "WHISPER_ENGINES=" not in message


def test_the_system_figure_comes_from_psutil(tmp_path, monkeypatch):
    import psutil

    class Memory:
        available = 3 * GIB

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory())
    assert budget.available_memory_bytes() == 3 * GIB
    model = fake_model(tmp_path / "small", {"original": GIB // 2, "quantized": GIB // 8})
    result = estimate(model, ["original", "quantized"])
    assert result.available_bytes == 3 * GIB and result.fits


def test_the_result_is_a_frozen_value():
    result = MemoryBudget("m", (EngineNeed("quantized", 100 * MIB),), 2 * GIB, "available memory")
    with pytest.raises(AttributeError):
        result.available_bytes = 0  # type: ignore[misc]
    assert result.fits and result.message().startswith("m's engines need about")


def test_budget_setting():
    assert Settings.from_env({}).memory_budget_mib is None
    assert Settings.from_env({"WHISPER_MEMORY_BUDGET_MIB": "16000"}).memory_budget_mib == 16000
    with pytest.raises(SettingsError, match="WHISPER_MEMORY_BUDGET_MIB must be positive"):
        Settings.from_env({"WHISPER_MEMORY_BUDGET_MIB": "0"})


def test_the_app_refuses_before_starting_any_worker(tmp_path, monkeypatch):
    fake_model(tmp_path / "large-v3", LARGE)
    settings = Settings.from_env(
        {
            "WHISPER_MODELS_DIR": str(tmp_path),
            "WHISPER_MODELS": "large-v3",
            "WHISPER_MEMORY_BUDGET_MIB": "16000",
        }
    )
    from whisper_quant import workers

    monkeypatch.setattr(workers.EngineWorker, "start", lambda self: pytest.fail("started"))
    pool = StudioSwitcher(settings)
    with pytest.raises(MemoryBudgetError, match="WHISPER_ENGINES=original,quantized"):
        pool.ensure_ready()
    assert pool.current_model is None


def test_an_engine_added_later_needs_only_its_own_room_in_available_memory(tmp_path):
    model = fake_model(tmp_path / "large-v3", LARGE)
    # What the running engines hold is resident already, so not in `available`.
    added = check_addition(model, ["original", "quantized"], "onnx-fp32", available_bytes=8 * GIB)
    assert [n.engine for n in added.needs] == ["onnx-fp32"] and added.fits
    with pytest.raises(MemoryBudgetError) as caught:
        check_addition(model, ["original", "quantized"], "onnx-fp32", available_bytes=6 * GIB)
    message = str(caught.value)
    assert message.startswith(
        "Not loading onnx-fp32 for large-v3 beside original, quantized: it would not fit"
    )
    assert "about 7,147 MiB" in message and "6,144 MiB is available (available memory)" in message
    assert "Compare without onnx-fp32" in message


def test_against_the_budget_setting_the_running_engines_count_too(tmp_path):
    model = fake_model(tmp_path / "large-v3", LARGE)
    with pytest.raises(MemoryBudgetError) as caught:
        check_addition(model, ["original", "quantized"], "onnx-fp32", budget_mib=16_000)
    message = str(caught.value)
    assert "18,618 MiB in all" in message
    assert "16,000 MiB is available (WHISPER_MEMORY_BUDGET_MIB)" in message
    assert check_addition(model, ["original"], "quantized", budget_mib=16_000).fits


def test_a_variant_chosen_on_the_page_is_refused_before_its_worker_starts(tmp_path, monkeypatch):
    import numpy as np

    from whisper_quant import workers
    from whisper_quant.compare import Studio

    model = fake_model(tmp_path / "large-v3", LARGE)
    # The original and quantized run already (pretended); nothing may start a process.
    monkeypatch.setattr(workers.EngineWorker, "alive", property(lambda self: True))
    monkeypatch.setattr(workers.EngineWorker, "_start", lambda self: pytest.fail("started"))
    studio = Studio(model, ("original", "quantized"), memory_budget_mib=16_000)
    with pytest.raises(
        MemoryBudgetError, match="Not loading onnx-fp32 for large-v3 beside original, quantized"
    ):
        studio.compare(
            np.zeros(16_000, dtype=np.float32), engines=["original", "onnx-fp32", "quantized"]
        )
    assert list(studio.workers) == ["original", "quantized"]


# --- the constants against the committed load reports ---------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"


def committed_reports() -> dict[str, dict]:
    paths = sorted(DOCS.glob("benchmark-*.json"))
    assert paths, "no docs/benchmark-*.json"
    return {p.name: json.loads(p.read_text(encoding="utf-8")) for p in paths}


def test_the_constants_are_derived_from_the_committed_reports():
    """budget.py holds what scripts/budget_constants.py prints for docs/benchmark-*.json."""
    derived = budget.derive_constants(committed_reports().values())
    assert derived.engine_held_per_weight_byte == ENGINE_HELD_PER_WEIGHT_BYTE
    assert derived.held_per_weight_byte == HELD_PER_WEIGHT_BYTE
    assert derived.worker_baseline_mib == WORKER_BASELINE_MIB
    assert derived.peak_reserve_mib == PEAK_RESERVE_MIB


def test_the_constants_cover_every_engine_in_every_committed_report():
    for file, report in committed_reports().items():
        for name, engine in report["engines"].items():
            where = f"{file}: {name}"
            held = EngineNeed(name, round(engine["disk_mib"] * MIB)).held_bytes
            assert held >= engine["memory_mib"] * MIB, where
            assert WORKER_BASELINE_MIB >= engine["memory_baseline_mib"], where
            if engine["peak_memory_mib"] is not None:
                assert PEAK_RESERVE_MIB >= engine["peak_memory_mib"], where
    # An engine that no report measured gets the largest factor.
    assert budget.held_per_weight_byte("not-measured") == max(ENGINE_HELD_PER_WEIGHT_BYTE.values())


def test_the_derivation_takes_the_largest_figure_with_its_margin():
    reports = [
        {
            "engines": {
                "a": {
                    "memory_mib": 110,
                    "disk_mib": 100,
                    "memory_baseline_mib": 300,
                    "peak_memory_mib": 500,
                },
                "b": {
                    "memory_mib": 40,
                    "disk_mib": 10,
                    "memory_baseline_mib": 351,
                    "peak_memory_mib": None,
                },
            }
        },
        {
            "engines": {
                "a": {
                    "memory_mib": 120,
                    "disk_mib": 100,
                    "memory_baseline_mib": 320,
                    "peak_memory_mib": 601,
                }
            }
        },
    ]
    derived = budget.derive_constants(reports, margin=1.05)
    # a: 1.2 x 1.05 = 1.26; b: 4 x 1.05 = 4.2; 351 x 1.05 = 368.55 -> 370; 601 x 1.05 -> 640
    assert derived.engine_held_per_weight_byte == {"a": 1.26, "b": 4.2}
    assert derived.held_per_weight_byte == 4.2
    assert (derived.worker_baseline_mib, derived.peak_reserve_mib) == (370, 640)
    with pytest.raises(ValueError, match="no engine"):
        budget.derive_constants([{"engines": {}}])
