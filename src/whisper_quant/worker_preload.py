"""What the engine workers' fork server imports once, before it forks any worker (workers.py).

Every engine but faster-whisper (optional, its own native thread pools) preloads here:
torch, transformers' Whisper, onnxruntime and Optimum. A worker forked from the server starts
with them imported instead of spending 3-4 s of one core on the imports (measured here:
transformers' Whisper with torch, 2.4 s). Nothing here runs a model or starts a thread of
its own: thread pools are made in each worker (`Engine.initialise_runtime`), after the fork.

A library that fails to import is logged and left out: a worker that needs it then imports
it itself and reports the error as a spawned worker would. transformers reads
TRANSFORMERS_VERBOSITY once, when it is imported, so it is set first. What is imported is
then frozen for the garbage collector, so a worker's collections never walk (and copy) the
server's objects.
"""

from __future__ import annotations

import gc
import logging
import os

os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

logger = logging.getLogger(__name__)


def _preload() -> None:
    from .engines import ENGINES, FasterWhisperEngine

    for cls in ENGINES.values():
        if cls is FasterWhisperEngine:
            continue
        try:
            cls.preload()
        except Exception as e:  # noqa: BLE001 - the worker that needs it reports it
            logger.warning("the workers' fork server could not preload %s: %s", cls.name, e)
    try:
        import transformers.models.whisper.feature_extraction_whisper  # noqa: F401
    except Exception as e:  # noqa: BLE001 - as above
        logger.warning("the workers' fork server could not preload the features: %s", e)


_preload()
gc.freeze()
