"""The page's options: what a model offers, and the transcription options its menus make.

`model_info` reads a model's languages from its files without starting any worker;
`options_for` turns the language and task menus (and the advanced switches) into one
`TranscribeOptions`, fitted to the model by `longform_options.fit_to_model`, the one home of the
model's rules (English-only models, known languages).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from .layout import GENERATION_CONFIG_FILE, ORIGINAL_DIR
from .longform_options import (
    DEFAULT_TEMPERATURES,
    EARLY_END_RESUME_S,
    TranscribeOptions,
    fit_to_model,
)
from .manifest import ModelIntegrityError, read_manifest
from .tokens import TASKS

# The language menu's two detecting choices: on the first 30 s, or on every 30 s window.
AUTO_DETECT = "auto-detect"
AUTO_DETECT_PER_WINDOW = "auto-detect per window"
# Tokens every engine decodes per window on a synthetic model (the scaling benchmark's N).
SYNTHETIC_FIXED_TOKENS = 64


@dataclass(frozen=True)
class ModelInfo:
    """What the option menus need about a model, read from its files (no worker started)."""

    name: str
    multilingual: bool
    languages: tuple[str, ...]  # codes; ("en",) for English-only models
    built: bool
    # Seeded random weights (build_model.py --random-weights): speed and memory only.
    synthetic: bool = False

    @property
    def tasks(self) -> tuple[str, ...]:
        return TASKS if self.multilingual else ("transcribe",)


def model_info(models_dir: Path, name: str) -> ModelInfo:
    """Languages and tasks of a built model; for one not built yet, a guess from its name."""
    folder = Path(models_dir) / name
    try:
        manifest = read_manifest(folder)
        generation = json.loads(
            (folder / ORIGINAL_DIR / GENERATION_CONFIG_FILE).read_text(encoding="utf-8")
        )
    except (ModelIntegrityError, OSError, ValueError):
        # Whisper's English-only checkpoints are the ones named *.en.
        multilingual = not name.endswith(".en")
        return ModelInfo(name, multilingual, () if multilingual else ("en",), built=False)
    synthetic = bool(manifest.get("synthetic"))
    if not manifest.get("multilingual"):
        return ModelInfo(name, False, ("en",), built=True, synthetic=synthetic)
    codes = sorted(token.strip("<|>") for token in generation.get("lang_to_id", {}))
    return ModelInfo(name, True, tuple(codes), built=True, synthetic=synthetic)


def options_for(
    info: ModelInfo,
    language: str | None = AUTO_DETECT,
    task: str = "transcribe",
    *,
    condition_on_previous_text: bool = True,
    temperature_fallback: bool = True,
    language_per_window: bool = False,
    batch_size: int = 1,
) -> TranscribeOptions:
    """Transcription options from the page's menus, fitted to the model (`fit_to_model`):
    ValueError, in the page's words, for a combination the model cannot follow.

    The language menu's AUTO_DETECT_PER_WINDOW, or `language_per_window`, detects the
    language on every 30 s window (multilingual models; English-only ones ignore it), and
    resumes a window that ended EARLY_END_RESUME_S or more before its end at its last segment.
    `batch_size` above 1 decodes chunks cut at pauses that many at a time (longform_batched.py);
    random-weight models decode forced tokens, sequentially.
    """
    per_window = language == AUTO_DETECT_PER_WINDOW or language_per_window
    code = None if language in (None, "", AUTO_DETECT, AUTO_DETECT_PER_WINDOW) else language
    options = TranscribeOptions(
        language=code,
        task=task,
        condition_on_previous_text=condition_on_previous_text,
        temperatures=DEFAULT_TEMPERATURES if temperature_fallback else (0.0,),
        language_per_window=per_window,
        early_end_resume_s=EARLY_END_RESUME_S if per_window else None,
        batch_size=int(batch_size or 1),
    )
    if info.synthetic:
        # Random weights never say the end token: they would decode 448 tokens at each of
        # six temperatures per window (minutes at large sizes). Every engine decodes the
        # same forced tokens instead, the benchmark's --fixed-tokens: equal work.
        options = replace(
            options,
            condition_on_previous_text=True,
            temperatures=(0.0,),
            language_per_window=False,
            early_end_resume_s=None,
            fixed_tokens=SYNTHETIC_FIXED_TOKENS,
            batch_size=1,
        )
    return fit_to_model(
        options, info.name, multilingual=info.multilingual, languages=info.languages
    )
