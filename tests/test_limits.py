"""The request time limit (WHISPER_REQUEST_TIMEOUT_S) covers a whole request, not each engine."""

from __future__ import annotations

import time

import numpy as np
import pytest

from whisper_quant.compare import Studio, engine_order
from whisper_quant.engines import Transcription
from whisper_quant.metrics import normalize_text
from whisper_quant.workers import EngineTimeoutError, EngineWorker


class _Recorder:
    """Stands in for an engine worker: remembers the deadline it was given."""

    alive = True  # never restarted (compare restarts dead workers first)

    def __init__(self, name: str, seen: list, fail: bool):
        self.name, self.seen, self.fail = name, seen, fail

    def transcribe(self, audio, options=None, *, deadline=None, on_window=None):
        self.seen.append((self.name, deadline))
        if self.fail:
            raise EngineTimeoutError("stop here")
        return Transcription(self.name, "x", "en", (1,), 1.0, {"total": 0.1})


def test_the_engines_of_one_request_share_one_deadline(tmp_path):
    studio = Studio(tmp_path, ("original", "quantized"), request_timeout_s=30.0)
    studio.manifest = {"format": 1, "files": {}}  # verified, as start() would have
    seen: list = []
    studio.workers = {
        "original": _Recorder("original", seen, fail=False),
        "quantized": _Recorder("quantized", seen, fail=True),
    }
    # A seed whose shuffle runs the original (which succeeds) first.
    seed = next(s for s in range(100) if engine_order(studio.engines, s)[0] == "original")
    before = time.monotonic()
    with pytest.raises(EngineTimeoutError):
        studio.compare(np.zeros(16000, np.float32), order_seed=seed)
    after = time.monotonic()
    assert [name for name, _ in seen] == ["original", "quantized"]
    deadlines = {deadline for _, deadline in seen}
    assert len(deadlines) == 1
    (deadline,) = deadlines
    assert before + 30.0 <= deadline <= after + 30.0


def test_without_a_limit_no_deadline_is_set(tmp_path):
    studio = Studio(tmp_path, ("original", "quantized"), request_timeout_s=None)
    studio.manifest = {"format": 1, "files": {}}  # verified, as start() would have
    seen: list = []
    studio.workers = {
        "original": _Recorder("original", seen, fail=True),
        "quantized": _Recorder("quantized", seen, fail=True),
    }
    with pytest.raises(EngineTimeoutError):
        studio.compare(np.zeros(16000, np.float32))
    assert len(seen) == 1 and seen[0][1] is None  # the first engine failed; no deadline


@pytest.mark.integration
def test_a_spent_deadline_does_not_start_or_stop_the_engine(built_tiny_en, data_dir):
    from whisper_quant.audio import decode_audio

    audio = decode_audio(data_dir / "goforward.wav")
    with EngineWorker("quantized", built_tiny_en.folder, request_timeout_s=60.0) as worker:
        pid = worker.pid
        with pytest.raises(EngineTimeoutError, match="before the quantized engine's turn"):
            worker.transcribe(audio, deadline=time.monotonic() - 1.0)
        assert worker.alive and worker.pid == pid
        result = worker.transcribe(audio, deadline=time.monotonic() + 60.0)
        # tiny.en's quantized engine on goforward.wav, greedy: the same words every run.
        assert normalize_text(result.text) == "go forward 10 meters", result.text
        assert worker.pid == pid
