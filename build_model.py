"""Build the original and int8 ONNX Whisper models: `python build_model.py --help`."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from whisper_quant.cli import build_main  # noqa: E402

if __name__ == "__main__":
    sys.exit(build_main())
