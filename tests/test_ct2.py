"""Tests for whisper_quant.ct2 and whisper_quant.tokens: the CTranslate2 reader, writer and
mapping to transformers, checked on a tiny random model and losslessly on the real tiny.en;
and the special token ids of the real tiny.en and base tokenizers.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from conftest import TINY_CONFIG

from whisper_quant.ct2 import (
    BINARY_VERSION,
    WHISPER_SPEC,
    CT2FormatError,
    from_transformers_state_dict,
    read_ct2_model,
    to_transformers_state_dict,
    whisper_dimensions,
    write_ct2_model,
)
from whisper_quant.models import locate_ct2_files, resolve_model
from whisper_quant.tokens import load_tokenizer, special_tokens


@pytest.fixture(scope="module")
def real_tiny_en_parts():
    """The embedded tiny.en's model.bin (or its parts), as CTranslate2's converter wrote it."""
    return locate_ct2_files(resolve_model("tiny.en")).model_parts


@pytest.fixture(scope="module")
def real_tiny_en(real_tiny_en_parts):
    """The embedded tiny.en as parsed from its package (fp16, 75 MB)."""
    return read_ct2_model(real_tiny_en_parts)


# --- round trip on a tiny random model ------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_round_trip_transformers_ct2_transformers(tmp_path, tiny_state, dtype):
    variables, aliases = from_transformers_state_dict(tiny_state, TINY_CONFIG, dtype=dtype)
    write_ct2_model(tmp_path / "model.bin", variables, aliases)
    model = read_ct2_model(tmp_path / "model.bin")

    assert model.spec == WHISPER_SPEC
    assert whisper_dimensions(model) == TINY_CONFIG
    back = to_transformers_state_dict(model)
    assert set(back) == set(tiny_state)
    for name, value in tiny_state.items():
        expected = value.astype(dtype).astype(np.float32)
        assert back[name].dtype == np.float32, name
        assert np.array_equal(back[name], expected), name


def test_written_scalars_keep_rank_zero(tmp_path, tiny_state):
    """CTranslate2 stores settings such as num_heads as rank-0 scalars, not as 1-element tensors."""
    variables, aliases = from_transformers_state_dict(tiny_state, TINY_CONFIG)
    write_ct2_model(tmp_path / "model.bin", variables, aliases)
    model = read_ct2_model(tmp_path / "model.bin")
    for side in ("encoder", "decoder"):
        assert model.get(f"{side}/num_heads").shape == ()
        assert model.scalar(f"{side}/num_heads") == 2


def test_the_real_tiny_en_is_written_back_byte_for_byte(tmp_path, real_tiny_en, real_tiny_en_parts):
    """The writer reproduces the file CTranslate2's own converter wrote, from what the reader
    read: both agree with CTranslate2's format, not only with each other."""
    write_ct2_model(tmp_path / "model.bin", real_tiny_en.variables, real_tiny_en.aliases)
    source = b"".join(part.read_bytes() for part in real_tiny_en_parts)
    assert (tmp_path / "model.bin").read_bytes() == source


# --- the real tiny.en -----------------------------------------------------------------------


def test_real_tiny_en_dimensions(real_tiny_en):
    dims = whisper_dimensions(real_tiny_en)
    assert dims == {
        "vocab_size": 51864,
        "d_model": 384,
        "num_mel_bins": 80,
        "encoder_layers": 4,
        "decoder_layers": 4,
        "encoder_attention_heads": 6,
        "decoder_attention_heads": 6,
        "encoder_ffn_dim": 1536,
        "decoder_ffn_dim": 1536,
        "max_source_positions": 1500,
        "max_target_positions": 448,
    }


def test_real_tiny_en_fills_every_transformers_weight(real_tiny_en):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    state = to_transformers_state_dict(real_tiny_en)
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(WhisperConfig(**whisper_dimensions(real_tiny_en)))
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    assert sorted(set(expected) - set(state)) == [], "transformers weights left unfilled"
    assert sorted(set(state) - set(expected)) == [], "converted weights transformers lacks"
    for name, shape in expected.items():
        assert state[name].shape == shape, name
        assert state[name].dtype == np.float32, name


def test_real_tiny_en_conversion_is_lossless(real_tiny_en):
    """Every fp16 source tensor equals its fp32 conversion cast back to fp16, bit for bit."""
    state = to_transformers_state_dict(real_tiny_en)
    source = {n: v for n, v in real_tiny_en.variables.items() if v.dtype == np.float16}
    assert len(source) > 100  # the weights are fp16; a format change would show here
    back, aliases = from_transformers_state_dict(state, whisper_dimensions(real_tiny_en))
    assert sorted(set(source) - set(back)) == []
    for name, value in source.items():
        assert back[name].dtype == np.float16
        assert np.array_equal(back[name], value), name
    assert aliases == dict(real_tiny_en.aliases)
    # And directly, without the inverse mapping: one plain and one fused (q, k, v) weight.
    assert np.array_equal(
        state["model.decoder.embed_tokens.weight"].astype(np.float16),
        real_tiny_en.get("decoder/embeddings/weight"),
    )
    fused = np.concatenate(
        [state[f"model.encoder.layers.0.self_attn.{p}_proj.weight"] for p in "qkv"]
    )
    assert np.array_equal(
        fused.astype(np.float16), real_tiny_en.get("encoder/layer_0/self_attention/linear_0/weight")
    )
    assert state["proj_out.weight"] is state["model.decoder.embed_tokens.weight"]


# --- damaged files ----------------------------------------------------------------------------


@pytest.mark.parametrize("keep", [0.0, 0.001, 0.5, 0.999])
def test_truncated_model_bin(tmp_path, tiny_ct2_dir, keep):
    data = (tiny_ct2_dir / "model.bin").read_bytes()
    cut = tmp_path / "model.bin"
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(cut)


def test_model_bin_missing_its_last_byte(tmp_path, tiny_ct2_dir):
    data = (tiny_ct2_dir / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data[:-1])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(tmp_path / "model.bin")


def test_trailing_bytes_are_corrupt(tmp_path, tiny_ct2_dir):
    data = (tiny_ct2_dir / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(data + b"\0\0")
    with pytest.raises(CT2FormatError, match="trailing"):
        read_ct2_model(tmp_path / "model.bin")


def test_wrong_binary_version(tmp_path, tiny_ct2_dir):
    data = (tiny_ct2_dir / "model.bin").read_bytes()
    (tmp_path / "model.bin").write_bytes(struct.pack("<I", BINARY_VERSION + 1) + data[4:])
    with pytest.raises(CT2FormatError, match="binary version"):
        read_ct2_model(tmp_path / "model.bin")


def test_garbage_is_not_a_model(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"PK\x03\x04 this is a zip, not a model" * 10)
    with pytest.raises(CT2FormatError):
        read_ct2_model(tmp_path / "model.bin")


def test_other_spec_is_not_whisper(tmp_path):
    write_ct2_model(
        tmp_path / "model.bin", {"w": np.zeros((2, 2), np.float16)}, spec="TransformerSpec"
    )
    with pytest.raises(CT2FormatError, match="not a Whisper model"):
        read_ct2_model(tmp_path / "model.bin")


def test_corrupted_spec_name(tmp_path, tiny_ct2_dir):
    data = bytearray((tiny_ct2_dir / "model.bin").read_bytes())
    # The spec name follows the version and its uint16 length: "WhisperSpec" -> "WhisperSpex".
    start = 4 + 2
    assert bytes(data[start : start + len(WHISPER_SPEC)]) == WHISPER_SPEC.encode()
    data[start + len(WHISPER_SPEC) - 1] = ord("x")
    (tmp_path / "model.bin").write_bytes(bytes(data))
    with pytest.raises(CT2FormatError, match="WhisperSpex"):
        read_ct2_model(tmp_path / "model.bin")


def test_bfloat16_is_refused(tmp_path):
    path = tmp_path / "model.bin"
    write_ct2_model(path, {"w": np.zeros(2, np.float16)})
    data = bytearray(path.read_bytes())
    # The single variable's dtype byte sits right before its uint32 byte count and 4 data bytes.
    assert data[-4 - 4 - 4 - 1] == 4  # float16
    data[-4 - 4 - 4 - 1] = 5
    path.write_bytes(bytes(data))
    with pytest.raises(CT2FormatError, match="bfloat16"):
        read_ct2_model(path)


def test_missing_weight_is_named(tmp_path, tiny_state):
    variables, aliases = from_transformers_state_dict(tiny_state, TINY_CONFIG)
    del variables["decoder/layer_1/ffn/linear_1/weight"]
    write_ct2_model(tmp_path / "model.bin", variables, aliases)
    with pytest.raises(CT2FormatError, match="decoder/layer_1/ffn/linear_1/weight"):
        to_transformers_state_dict(read_ct2_model(tmp_path / "model.bin"))


def test_unmapped_weight_is_named(tmp_path, tiny_state):
    variables, aliases = from_transformers_state_dict(tiny_state, TINY_CONFIG)
    variables["decoder/extra/weight"] = np.ones((3, 3), np.float16)
    write_ct2_model(tmp_path / "model.bin", variables, aliases)
    with pytest.raises(CT2FormatError, match="decoder/extra/weight"):
        to_transformers_state_dict(read_ct2_model(tmp_path / "model.bin"))


# --- split models ---------------------------------------------------------------------------


def _split(tmp_path, tiny_ct2_dir, parts=3):
    data = (tiny_ct2_dir / "model.bin").read_bytes()
    bounds = np.linspace(0, len(data), parts + 1).astype(int)
    paths = []
    for i in range(parts):
        path = tmp_path / f"model.bin.part{i + 1}"
        path.write_bytes(data[bounds[i] : bounds[i + 1]])
        paths.append(path)
    return paths


def test_split_model_reads_like_the_whole(tmp_path, tiny_ct2_dir):
    whole = read_ct2_model(tiny_ct2_dir / "model.bin")
    split = read_ct2_model(_split(tmp_path, tiny_ct2_dir))
    assert split.variables.keys() == whole.variables.keys()
    for name, value in whole.variables.items():
        assert np.array_equal(split.variables[name], value), name


def test_split_model_with_a_part_missing(tmp_path, tiny_ct2_dir):
    paths = _split(tmp_path, tiny_ct2_dir)
    paths[1].unlink()
    with pytest.raises(CT2FormatError, match="model.bin.part2"):
        read_ct2_model(paths)


def test_split_model_parts_out_of_order(tmp_path, tiny_ct2_dir):
    paths = _split(tmp_path, tiny_ct2_dir)
    with pytest.raises(CT2FormatError):
        read_ct2_model([paths[1], paths[0], paths[2]])


# --- special tokens ---------------------------------------------------------------------------


def test_special_tokens_tiny_en():
    files = locate_ct2_files(resolve_model("tiny.en"))
    tokens = special_tokens(load_tokenizer(files.tokenizer.parent), multilingual=False)
    assert (tokens.sot, tokens.eot, tokens.no_timestamps) == (50257, 50256, 50362)
    assert not tokens.multilingual
    assert tokens.languages == {}
    assert tokens.prompt(None, "transcribe") == [50257, 50362]


def test_special_tokens_base():
    files = locate_ct2_files(resolve_model("base"))
    tokenizer = load_tokenizer(files.tokenizer.parent)
    lang_ids = json.loads(files.config.read_text(encoding="utf-8"))["lang_ids"]
    tokens = special_tokens(tokenizer, multilingual=True, lang_ids=lang_ids)
    assert (tokens.sot, tokens.eot, tokens.no_timestamps) == (50258, 50257, 50363)
    assert (tokens.transcribe, tokens.translate) == (50359, 50358)
    assert {"en", "de", "es"} <= set(tokens.languages)
    assert tokens.languages["en"] == 50259
    assert len(tokens.languages) == len(lang_ids)
    assert tokens.languages["de"] == 50261
    assert tokens.prompt("de", "transcribe") == [50258, 50261, 50359, 50363]
    assert tokens.prompt("de", "translate")[2] == 50358
    # Without the config's list, the languages come from the tokenizer's <|xx|> tokens alone.
    assert special_tokens(tokenizer, multilingual=True).languages == tokens.languages
    with pytest.raises(ValueError, match="Unknown language"):
        tokens.language_id("xx")
    with pytest.raises(ValueError, match="language"):
        tokens.prompt(None, "transcribe")
