"""The shapes of openai's Whisper checkpoints, for synthetic (random-weight) builds.

Each entry mirrors the `config.json` of the Hub checkpoint named in `hub_id`
(https://huggingface.co/openai/whisper-small/blob/main/config.json and its siblings
whisper-medium, whisper-large-v2, whisper-large-v3 and whisper-large-v3-turbo). A synthetic
build has the right tensor shapes and graph structure, so its speed, memory and file sizes are
the real model's; its transcripts mean nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# Every openai Whisper: 30 s of audio is 3000 mel frames, halved by the second convolution.
MAX_SOURCE_POSITIONS = 1500
# The decoder's context, from every openai checkpoint's config.
MAX_TARGET_POSITIONS = 448
# The multilingual vocabulary; large-v3 added one language token (<|yue|>, Cantonese).
VOCAB_V2 = 51865
VOCAB_V3 = 51866
BYTES_PER_FP32 = 4


@dataclass(frozen=True)
class WhisperShape:
    """The dimensions of one Whisper checkpoint (the fields of its transformers config)."""

    name: str
    d_model: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    num_mel_bins: int
    vocab_size: int
    max_source_positions: int = MAX_SOURCE_POSITIONS
    max_target_positions: int = MAX_TARGET_POSITIONS
    # The Hub checkpoint whose config this mirrors; online, the name resolves to it.
    hub_id: str = ""

    def config_kwargs(self) -> dict[str, int]:
        """The WhisperConfig keyword arguments of this shape."""
        fields = asdict(self)
        del fields["name"], fields["hub_id"]
        return fields

    @property
    def parameters(self) -> int:
        """Parameter count (proj_out is tied to the token embedding, so counted once)."""
        d = self.d_model
        attention = 4 * d * d + 3 * d  # q, k, v, out; k has no bias
        norm = 2 * d

        def ffn(width: int) -> int:
            return d * width + width + width * d + d

        encoder = (
            self.num_mel_bins * d * 3
            + d  # conv1
            + d * d * 3
            + d  # conv2
            + self.max_source_positions * d
            + self.encoder_layers * (attention + ffn(self.encoder_ffn_dim) + 2 * norm)
            + norm
        )
        decoder = (
            self.vocab_size * d
            + self.max_target_positions * d
            + self.decoder_layers * (2 * attention + ffn(self.decoder_ffn_dim) + 3 * norm)
            + norm
        )
        return encoder + decoder

    @property
    def fp32_bytes(self) -> int:
        """Bytes of the fp32 weights (the original checkpoint's safetensors, near enough)."""
        return self.parameters * BYTES_PER_FP32


def _openai(name: str, d_model: int, layers: int, heads: int, **overrides: int) -> WhisperShape:
    fields = {
        "d_model": d_model,
        "encoder_layers": layers,
        "decoder_layers": layers,
        "encoder_attention_heads": heads,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": 4 * d_model,
        "decoder_ffn_dim": 4 * d_model,
        "num_mel_bins": 80,
        "vocab_size": VOCAB_V2,
    }
    fields.update(overrides)
    return WhisperShape(name=name, hub_id=f"openai/whisper-{name}", **fields)


SHAPES: dict[str, WhisperShape] = {
    shape.name: shape
    for shape in (
        _openai("small", 768, 12, 12),
        _openai("medium", 1024, 24, 16),
        _openai("large-v2", 1280, 32, 20),
        _openai("large-v3", 1280, 32, 20, num_mel_bins=128, vocab_size=VOCAB_V3),
        _openai(
            "large-v3-turbo", 1280, 32, 20, decoder_layers=4, num_mel_bins=128, vocab_size=VOCAB_V3
        ),
    )
}


def shape_names() -> str:
    return ", ".join(SHAPES)
