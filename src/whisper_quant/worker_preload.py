"""What the engine workers' fork server imports once, before it forks any worker (workers.py).

Every engine but faster-whisper (optional, its own native thread pools) preloads here:
torch, transformers' Whisper, onnxruntime and Optimum. A worker forked from the server starts
with them imported instead of spending 3-4 s of one core on the imports (measured here:
transformers' Whisper with torch, 2.4 s). Nothing here runs a model or starts a thread:
thread pools are made in each worker (`Engine.initialise_runtime`), after the fork.

transformers reads TRANSFORMERS_VERBOSITY once, when it is imported, so it is set first.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from .engines import ENGINES, EngineError, FasterWhisperEngine  # noqa: E402

for _cls in ENGINES.values():
    if _cls is FasterWhisperEngine:
        continue
    try:
        _cls.preload()
    except EngineError:  # a package the engine needs is missing: its worker names it
        pass
import transformers.models.whisper.feature_extraction_whisper  # noqa: E402, F401
