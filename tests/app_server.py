"""Start `python app.py` for the UI tests (see whisper_quant.launch), isolated from the
developer's own settings and from the network, and show its log when it stops."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from whisper_quant.launch import log_tail
from whisper_quant.launch import running_app as _running_app

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def running_app(models_dir: Path, log_path: Path, **env: str) -> Iterator[str]:
    """Run app.py on a free local port with WHISPER_MODELS_DIR=models_dir; yield its URL."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")}
    try:
        with _running_app(
            ROOT / "app.py",
            log_path,
            base_env=base,
            WHISPER_MODELS_DIR=str(models_dir),
            HF_HUB_OFFLINE="1",
            **env,
        ) as url:
            yield url
    finally:
        print(f"app log ({log_path}):\n{log_tail(log_path)}")
