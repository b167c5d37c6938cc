"""The original's PyTorch model through the studio's own long-form loop.

The same transformers `WhisperForConditionalGeneration` (fp32) as the original, from the
same `original/` folder, computing each window through `torch_window.TorchWindowModel`
(tested token for token against `generate`), decoded by the shared long-form loop with the
same options and criteria as the ONNX engines. Against the original it measures what
transformers' `generate` does on top (the encoder run again for language detection and for
the no-speech check, its per-step overhead); against `onnx-fp32` it measures the runtime
and graphs alone, on the same loop.

Its sections are the ONNX engines': the loop times `encode`, language detection and every
decoder step, and a step here is the whole model call (decoder and projection to the
vocabulary) up to the numpy logits.
"""

from __future__ import annotations

from ..layout import ORIGINAL_DIR
from ..measure import Stopwatch
from .base import Engine
from .names import PYTORCH


class PyTorchEngine(Engine):
    """transformers' PyTorch Whisper (fp32) behind the shared long-form loop."""

    name = PYTORCH
    label = "PyTorch fp32, same loop"
    subfolder = ORIGINAL_DIR
    # What drives the model's windows, as the load report names it.
    long_form = "the studio's long-form loop"

    @classmethod
    def preload(cls) -> None:
        import torch  # noqa: F401
        import transformers.models.whisper.modeling_whisper  # noqa: F401

    def initialise_runtime(self) -> None:
        import torch

        torch.set_num_threads(self.threads)
        with torch.inference_mode():
            torch.nn.functional.linear(torch.ones(1, 16), torch.ones(16, 16))

    def _load(self) -> None:
        import torch
        from transformers import WhisperForConditionalGeneration

        torch.set_num_threads(self.threads)
        self._torch = torch
        self.model = WhisperForConditionalGeneration.from_pretrained(
            self.folder, use_safetensors=True, dtype=torch.float32
        ).eval()

    def window_model(self, watch: Stopwatch):
        from ..torch_window import TorchWindowModel

        return TorchWindowModel(self.model)

    def runtime_details(self) -> dict:
        return {
            "runtime": f"PyTorch {self._torch.__version__} ({self.long_form})",
            "threads": self._torch.get_num_threads(),
            "graph_changes": [],
            "encoder_attention_fused": False,
            "attention_implementation": self.model.config._attn_implementation,
        }
