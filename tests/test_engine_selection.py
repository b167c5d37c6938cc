"""Choosing which variants a comparison runs: checks, order, and engines started on first use."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_quant import compare
from whisper_quant.compare import Studio, check_selection
from whisper_quant.engines import ENGINES, ORIGINAL, Transcription, available_engines
from whisper_quant.workers import LoadReport


def model_folder(tmp_path, *engines: str):
    folder = tmp_path / "tiny.en"
    for name in engines:
        (folder / ENGINES[name].subfolder).mkdir(parents=True, exist_ok=True)
    return folder


def test_a_selection_is_checked_and_put_in_the_registrys_order(tmp_path):
    folder = model_folder(tmp_path, "original", "onnx-fp32", "quantized", "faster-whisper")
    # pytorch runs the original's files: built with it.
    built = {"original", "pytorch", "onnx-fp32", "quantized", "faster-whisper"}
    assert available_engines(folder, installed=False) == [name for name in ENGINES if name in built]
    chosen = check_selection(folder, ["quantized", "faster-whisper", "original", "quantized"])
    assert chosen == tuple(n for n in ENGINES if n in {"original", "quantized", "faster-whisper"})


def test_the_original_is_required(tmp_path):
    folder = model_folder(tmp_path, "original", "quantized")
    with pytest.raises(ValueError, match=r"Keep 'original' among the engines.*chosen: quantized"):
        check_selection(folder, ["quantized"])
    with pytest.raises(ValueError, match="chosen: none"):
        check_selection(folder, [])


def test_unknown_and_not_built_engines_are_refused_naming_what_the_model_has(tmp_path):
    folder = model_folder(tmp_path, "original", "onnx-fp32", "quantized")
    with pytest.raises(ValueError, match=r"Unknown engine 'int9'; tiny.en has: original, "):
        check_selection(folder, ["original", "int9"])
    with pytest.raises(ValueError, match="faster-whisper is not built for this model; tiny.en has"):
        check_selection(folder, ["original", "faster-whisper"])
    # Engines the studio was started with count as built (a model built on first use).
    assert check_selection(tmp_path / "nothing", ["original"], launched=["original"]) == (ORIGINAL,)


class FakeWorker:
    """Stands in for an engine's worker process; records starts and transcriptions."""

    started: list[str] = []

    def __init__(self, name, model_dir, *, threads=2, request_timeout_s=None):
        self.engine = name
        self.report = None

    def start(self):
        FakeWorker.started.append(self.engine)
        self.report = LoadReport(self.engine, ENGINES[self.engine].label, "", 2, 1, 0, 0, 0, 0, 0)
        return self.report

    # Studio.start's three steps (workers.start_workers): only the last one does anything here.
    def spawn(self):
        pass

    def wait_prepared(self):
        pass

    def load(self):
        return self.start()

    @property
    def alive(self):
        return self.report is not None

    def transcribe(self, audio, options=None, *, deadline=None, on_window=None):
        return Transcription(self.engine, "go forward", "en", (1,), 1.0, {"total": 0.1})

    def close(self):
        pass


def test_a_comparison_runs_the_chosen_subset_and_starts_new_engines_once(tmp_path, monkeypatch):
    folder = model_folder(tmp_path, "original", "onnx-fp32", "quantized", "faster-whisper")
    monkeypatch.setattr(compare, "EngineWorker", FakeWorker)
    monkeypatch.setattr(compare, "verify_folder", lambda *args, **kwargs: {})
    FakeWorker.started = []
    studio = Studio(folder, ("original", "quantized"))
    studio.start()
    assert FakeWorker.started == ["original", "quantized"]
    audio = np.zeros(16000, np.float32)

    loaded: list[str] = []
    result = studio.compare(audio, engines=["original", "faster-whisper"], on_load=loaded.append)
    assert [r.engine for r in result.results] == ["original", "faster-whisper"]
    assert sorted(result.order) == ["faster-whisper", "original"]
    assert loaded == ["faster-whisper"] and FakeWorker.started[-1] == "faster-whisper"

    # Started once: the next comparison finds it loaded; the default is still the studio's own.
    result = studio.compare(audio, engines=["faster-whisper", "original", "quantized"])
    assert [r.engine for r in result.results] == [
        n for n in ENGINES if n in {"original", "quantized", "faster-whisper"}
    ]
    assert [r.engine for r in studio.compare(audio).results] == ["original", "quantized"]
    assert FakeWorker.started == ["original", "quantized", "faster-whisper"]
    assert studio.engines == ("original", "quantized")

    with pytest.raises(ValueError, match="Keep 'original'"):
        studio.compare(audio, engines=["quantized"])
    with pytest.raises(ValueError, match="onnx-fp32, quantized"):  # what the model has
        studio.compare(audio, engines=["original", "optimum"])
