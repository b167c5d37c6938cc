"""The app's settings, read from WHISPER_* environment variables (see the README's table)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .audio import DEFAULT_MAX_SECONDS
from .batch import DEFAULT_MAX_FILES, DEFAULT_MAX_TOTAL_SECONDS
from .engines import DEFAULT_ENGINES, DEFAULT_THREADS, REQUIRED_ENGINES, engine_class
from .fetch import ModelEntry, parse_models
from .layout import DEFAULT_MODELS_DIR
from .models import DEFAULT_MODEL
from .workers import DEFAULT_REQUEST_TIMEOUT_S

DEFAULT_MAX_FILE_SIZE = "25mb"
DEFAULT_MAX_QUEUE = 16


class SettingsError(ValueError):
    """An environment variable holds a value the app cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    """The app's settings; `from_env` reads them from WHISPER_* environment variables."""

    models_dir: Path = DEFAULT_MODELS_DIR
    default_model: str = DEFAULT_MODEL
    max_seconds: float = DEFAULT_MAX_SECONDS
    max_file_size: str = DEFAULT_MAX_FILE_SIZE
    request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S
    max_queue: int = DEFAULT_MAX_QUEUE
    engines: tuple[str, ...] = DEFAULT_ENGINES
    threads: int = DEFAULT_THREADS
    readme_url: str | None = None
    # The batch tab: clips per batch, and their total length.
    max_batch_files: int = DEFAULT_MAX_FILES
    max_batch_seconds: float = DEFAULT_MAX_TOTAL_SECONDS
    # WHISPER_MODELS: the models offered (empty: every built one and the default); an entry
    # with a Hub repository is fetched at start when its folder is missing (fetch.py).
    models: tuple[ModelEntry, ...] = ()
    # WHISPER_MEMORY_BUDGET_MIB: the memory the engines may use (None: what is available).
    memory_budget_mib: float | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def get(name: str) -> str | None:
            value = environ.get(name, "").strip()
            return value or None

        engines = _engines(get("WHISPER_ENGINES"))
        models = _models(get("WHISPER_MODELS"))
        default_model = _default_model(get("WHISPER_DEFAULT_MODEL"), models)
        budget = get("WHISPER_MEMORY_BUDGET_MIB")
        return cls(
            models_dir=Path(get("WHISPER_MODELS_DIR") or DEFAULT_MODELS_DIR).expanduser(),
            default_model=default_model,
            max_seconds=_number(environ, "WHISPER_MAX_SECONDS", DEFAULT_MAX_SECONDS),
            max_file_size=get("WHISPER_MAX_FILE_SIZE") or DEFAULT_MAX_FILE_SIZE,
            request_timeout_s=_timeout(get("WHISPER_REQUEST_TIMEOUT_S")),
            max_queue=int(_number(environ, "WHISPER_MAX_QUEUE", DEFAULT_MAX_QUEUE, integer=True)),
            engines=engines,
            threads=int(_number(environ, "WHISPER_THREADS", DEFAULT_THREADS, integer=True)),
            readme_url=_readme_url(get("WHISPER_README_URL"), get("SPACE_ID")),
            max_batch_files=int(
                _number(environ, "WHISPER_MAX_BATCH_FILES", DEFAULT_MAX_FILES, integer=True)
            ),
            max_batch_seconds=_number(
                environ, "WHISPER_MAX_BATCH_SECONDS", DEFAULT_MAX_TOTAL_SECONDS
            ),
            models=models,
            memory_budget_mib=(
                None
                if budget is None
                else _number({"WHISPER_MEMORY_BUDGET_MIB": budget}, "WHISPER_MEMORY_BUDGET_MIB", 0)
            ),
        )

    @property
    def model_repos(self) -> dict[str, str]:
        """WHISPER_MODELS' entries fetched from a Hub repository: name -> owner/repo."""
        return {e.name: e.repo_id for e in self.models if e.repo_id is not None}


def _number(environ: Mapping[str, str], name: str, default: float, *, integer=False) -> float:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        kind = "a whole number" if integer else "a number"
        raise SettingsError(f"{name} must be {kind}, got {text!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, got {text!r}")
    return value


def _timeout(text: str | None) -> float | None:
    if text is None:
        return DEFAULT_REQUEST_TIMEOUT_S
    if text.lower() in ("none", "off"):
        return None
    return _number({"WHISPER_REQUEST_TIMEOUT_S": text}, "WHISPER_REQUEST_TIMEOUT_S", 0.0)


def _engines(text: str | None) -> tuple[str, ...]:
    if text is None:
        return DEFAULT_ENGINES
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    try:
        for name in names:
            engine_class(name)
    except ValueError as e:
        raise SettingsError(f"WHISPER_ENGINES: {e}") from None
    missing = [n for n in REQUIRED_ENGINES if n not in names]
    if missing:
        raise SettingsError(
            f"WHISPER_ENGINES must include {' and '.join(REQUIRED_ENGINES)} (the pair the app "
            f"compares); missing: {', '.join(missing)}"
        )
    return names


def _models(text: str | None) -> tuple[ModelEntry, ...]:
    if text is None:
        return ()
    try:
        return parse_models(text)
    except ValueError as e:
        raise SettingsError(f"WHISPER_MODELS: {e}") from None


def _default_model(configured: str | None, models: tuple[ModelEntry, ...]) -> str:
    """WHISPER_DEFAULT_MODEL, else WHISPER_MODELS' first entry, else tiny.en."""
    names = [e.name for e in models]
    if configured is None:
        return names[0] if names else DEFAULT_MODEL
    if names and configured not in names:
        raise SettingsError(
            f"WHISPER_DEFAULT_MODEL={configured} is not among WHISPER_MODELS ({', '.join(names)})"
        )
    return configured


def _readme_url(configured: str | None, space_id: str | None) -> str | None:
    if configured:
        return configured
    if space_id:  # set by Hugging Face Spaces: "owner/name"
        return f"https://huggingface.co/spaces/{space_id}/blob/main/README.md"
    return None
