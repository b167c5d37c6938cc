"""A `WindowModel` (decoding.py) over a transformers `WhisperForConditionalGeneration`.

It lets the shared long-form loop (longform.py) run on the original PyTorch model, and lets
tests compare that loop with transformers' own `generate`. The model is called the way
`generate` calls it: the encoder on one (1, n_mels, 3000) window, then the decoder with an
`EncoderDecoderCache` of `DynamicCache`s, the whole prompt in one call and one token per row
after that, under `torch.inference_mode`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class TorchDecoderState:
    """A decoder key/value cache for `batch` rows reading the same encoder output."""

    def __init__(self, model, hidden):
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        self.model = model
        self.hidden = hidden
        config = model.config
        self.cache = EncoderDecoderCache(DynamicCache(config=config), DynamicCache(config=config))

    def step(self, tokens: np.ndarray) -> np.ndarray:
        import torch

        ids = torch.from_numpy(np.ascontiguousarray(tokens, dtype=np.int64))
        with torch.inference_mode():
            out = self.model(
                encoder_outputs=(self.hidden,),
                decoder_input_ids=ids,
                past_key_values=self.cache,
                use_cache=True,
            )
        self.cache = out.past_key_values
        return out.logits.to(torch.float32).numpy()

    def reorder(self, index: np.ndarray) -> None:
        import torch

        index = torch.as_tensor(np.asarray(index, dtype=np.int64))
        self.cache.reorder_cache(index)
        if len(index) != self.hidden.shape[0]:  # batched windows: finished rows dropped
            self.hidden = self.hidden.index_select(0, index)


class TorchWindowModel:
    """The original PyTorch Whisper behind the `WindowModel` interface."""

    def __init__(self, model):
        self.model = model.eval()

    @classmethod
    def from_pretrained(cls, folder: Path | str, *, threads: int | None = None):
        import torch
        from transformers import WhisperForConditionalGeneration

        if threads is not None:
            torch.set_num_threads(threads)
        model = WhisperForConditionalGeneration.from_pretrained(
            folder, use_safetensors=True, dtype=torch.float32
        )
        return cls(model)

    def encode(self, features: np.ndarray):
        """The encoder's last hidden state (rows, 1500, d_model), a torch tensor, for
        (rows, n_mels, 3000) features."""
        import torch

        with torch.inference_mode():
            inputs = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float32))
            return self.model.get_encoder()(inputs).last_hidden_state

    def decoder(self, encoded, batch: int) -> TorchDecoderState:
        import torch

        with torch.inference_mode():
            hidden = encoded if batch == encoded.shape[0] else encoded.repeat_interleave(batch, 0)
        return TorchDecoderState(self.model, hidden)
