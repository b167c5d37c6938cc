"""Transcription engines behind one interface, and their registry.

- base.py: the interface, `Transcription`, and what every engine shares;
- original.py: the original (transformers + PyTorch) and the plain Optimum recipe;
- pytorch.py: the original's PyTorch model through the shared long-form loop;
- onnx.py: the studio's ONNX engines, one per quantization recipe (recipes.py), run by
  onnxruntime;
- faster_whisper.py: faster-whisper (CTranslate2 int8), optional.
- names.py: the engines' names and the ones every app runs (a leaf: it imports nothing).
"""

from __future__ import annotations

from pathlib import Path

from ..longform_options import Segment, TranscribeOptions
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
from .names import DEFAULT_ENGINES, ONNX_FP32, ORIGINAL, PYTORCH, QUANTIZED, REQUIRED_ENGINES
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


def engine_class(name: str) -> type[Engine]:
    try:
        return ENGINES[name]
    except KeyError:
        raise ValueError(f"Unknown engine {name!r}; choose from: {', '.join(ENGINES)}") from None


def available_engines(model_dir: Path | str, *, installed: bool = True) -> list[str]:
    """The engines a built model folder has, in the registry's order (the order the page and
    reports list them): those whose subfolder it holds.

    With `installed`, only those whose packages import too: this imports every engine's
    libraries (torch, transformers, onnxruntime...). Without it nothing is imported, and a
    worker names a missing package when it starts.
    """
    names = []
    for name, cls in ENGINES.items():
        if not (Path(model_dir) / cls.subfolder).is_dir():
            continue
        if installed:
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
    "ONNX_FP32",
    "ORIGINAL",
    "PYTORCH",
    "QUANTIZED",
    "REQUIRED_ENGINES",
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
