"""Engines with known memory behaviour, for testing how workers measure memory.

Kept in a module of their own so a worker process (forked from the fork server, or spawned)
can import them.
"""

from __future__ import annotations

import numpy as np

from whisper_quant.engines import Engine
from whisper_quant.longform_options import LongFormResult, Timings

MIB = 2**20


class AllocatingEngine(Engine):
    """Holds exactly MODEL_MIB of touched memory once loaded, and makes the shared front end
    (tokenizer, features) hold SHARED_MIB more, which is not the model's to be charged."""

    name = "allocating"
    label = "Fake engine (allocates a known amount)"
    subfolder = "original"
    MODEL_MIB = 64
    SHARED_MIB = 48

    def warm_shared(self, audio: np.ndarray) -> None:
        super().warm_shared(audio)
        self._front_end_cache = np.ones(self.SHARED_MIB * MIB // 8)

    def _load(self) -> None:
        self._weights = np.ones(self.MODEL_MIB * MIB // 8)

    def disk_bytes(self) -> int:
        return 0

    def window_model(self, watch):
        raise NotImplementedError("the fake engine transcribes nothing")

    def _long_form(self, mel, options, watch, progress):
        return LongFormResult((), "", (), "en", 1, 0, 0, Timings())


class FailingLoadEngine(AllocatingEngine):
    """Imports and prepares like any engine, then fails to load its model."""

    name = "failing-load"
    label = "Fake engine (its model does not load)"

    def _load(self) -> None:
        raise OSError("the weights are unreadable")
