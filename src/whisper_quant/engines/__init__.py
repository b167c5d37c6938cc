"""Transcription engines behind one interface, and their registry.

- base.py: the interface, `Transcription`, and what every engine shares;
- original.py: the original (transformers + PyTorch) and the plain Optimum recipe;
- pytorch.py: the original's PyTorch model through the shared long-form loop;
- onnx.py: the studio's ONNX engines, one per quantization recipe (recipes.py), run by
  onnxruntime;
- faster_whisper.py: faster-whisper (CTranslate2 int8), optional.
"""

from __future__ import annotations

from pathlib import Path

from ..longform import Segment, TranscribeOptions
from ..recipes import RECIPES
from .base import (
    DEFAULT_THREADS,
    NOTICE_SILENT,
    Engine,
    EngineError,
    Progress,
    Transcription,
    with_memory,
)
from .faster_whisper import FasterWhisperEngine
from .onnx import RECIPE_ENGINES, OnnxEngine, OnnxFp32Engine
from .original import OptimumEngine, OriginalEngine
from .pytorch import PyTorchEngine

# The page and reports list engines in this order: the original, its model through the
# shared loop, the recipes from no quantization to the most aggressive (recipes.py's
# order), then other runtimes.
ENGINES: dict[str, type[Engine]] = {
    cls.name: cls
    for cls in (
        OriginalEngine,
        PyTorchEngine,
        *sorted(
            (OnnxFp32Engine, OnnxEngine, *RECIPE_ENGINES),
            key=lambda cls: list(RECIPES).index(cls.name),
        ),
        FasterWhisperEngine,
        OptimumEngine,
    )
}
# ONNX fp32 runs by default so that every comparison shows which part of the speed-up is
# the runtime's and which is int8's.
DEFAULT_ENGINES = ("original", "onnx-fp32", "quantized")


def engine_class(name: str) -> type[Engine]:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"Unknown engine {name!r}; choose from: {', '.join(ENGINES)}") from None


def available_engines(model_dir: Path | str) -> list[str]:
    """Engines whose files a built model folder has (and whose packages are installed)."""
    names = []
    for name, cls in ENGINES.items():
        if not (Path(model_dir) / cls.subfolder).is_dir():
            continue
        try:
            cls.preload()
        except EngineError:
            continue
        names.append(name)
    return names


__all__ = [
    "DEFAULT_ENGINES",
    "DEFAULT_THREADS",
    "ENGINES",
    "NOTICE_SILENT",
    "Engine",
    "EngineError",
    "FasterWhisperEngine",
    "OnnxEngine",
    "OnnxFp32Engine",
    "OptimumEngine",
    "OriginalEngine",
    "Progress",
    "PyTorchEngine",
    "Segment",
    "Transcription",
    "TranscribeOptions",
    "available_engines",
    "engine_class",
    "with_memory",
]
