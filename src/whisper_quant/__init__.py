"""Whisper Quantization Studio: original Whisper vs its int8 ONNX copy, measured honestly."""

__version__ = "0.1.0"
