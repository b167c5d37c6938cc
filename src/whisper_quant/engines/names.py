"""The engines' names, and which of them a comparison needs: the one place that spells them.

A leaf module (it imports nothing) so that settings, the memory budget, the comparison and the
registry can all name engines without importing any engine's libraries.
"""

from __future__ import annotations

# The original checkpoint (transformers + PyTorch fp32): the reference every variant's
# agreement and speed-up are measured against.
ORIGINAL = "original"
# The original's model and weights driven by the studio's long-form loop: the like-for-like
# baseline for speed (stock `generate` adds passes of its own).
PYTORCH = "pytorch"
# Optimum's export run unquantized by the studio's loop: what the runtime alone brings.
ONNX_FP32 = "onnx-fp32"
# The studio's dynamic int8 variant: the one the app exists to compare with the original.
QUANTIZED = "quantized"

# The pair every app must run (WHISPER_ENGINES) and the memory budget never advises dropping.
REQUIRED_ENGINES = (ORIGINAL, QUANTIZED)
# pytorch and ONNX fp32 run by default so that every comparison splits the speed-up three
# ways: stock generate's own passes, the runtime and graphs, and int8.
DEFAULT_ENGINES = (ORIGINAL, PYTORCH, ONNX_FP32, QUANTIZED)
