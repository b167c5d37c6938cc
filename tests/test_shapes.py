"""Tests for the known Whisper shapes and synthetic (random-weight) builds: the shape table
against openai's configs, the large-v3 tokenizer derived offline, a tiny 128-mel synthetic
build through `build_model.py --random-weights`, and the online Hub resolution (checked
offline, without fetching).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from whisper_quant import build, shapes
from whisper_quant.build import BuildOptions, build_model
from whisper_quant.cli import build_main
from whisper_quant.layout import DECODER_FILE, ENCODER_FILE
from whisper_quant.manifest import verify_folder
from whisper_quant.models import (
    EMBEDDED,
    SYNTHETIC_NOTE,
    ModelSourceError,
    locate_ct2_files,
    resolve_model,
)
from whisper_quant.onnx_files import merge_decoders_streaming
from whisper_quant.shapes import SHAPES, WhisperShape
from whisper_quant.weights import large_v3_tokenizer, write_random_safetensors

# From the Hub configs (config.json) of openai/whisper-{small,medium,large-v2,large-v3,
# large-v3-turbo): d_model, encoder/decoder layers, heads, ffn, mel bins, vocabulary.
OPENAI_CONFIGS = {
    "small": (768, 12, 12, 12, 3072, 80, 51865),
    "medium": (1024, 24, 24, 16, 4096, 80, 51865),
    "large-v2": (1280, 32, 32, 20, 5120, 80, 51865),
    "large-v3": (1280, 32, 32, 20, 5120, 128, 51866),
    "large-v3-turbo": (1280, 32, 4, 20, 5120, 128, 51866),
}
# Parameter counts transformers reports for those checkpoints (num_parameters()).
OPENAI_PARAMETERS = {
    "small": 241_734_912,
    "medium": 763_857_920,
    "large-v2": 1_543_304_960,
    # 48 more mel filters on conv1 (48 x 1280 x 3) and one more token (1280).
    "large-v3": 1_543_304_960 + 48 * 1280 * 3 + 1280,
    "large-v3-turbo": 808_878_080,
}
# A Whisper small enough to build in seconds, with large-v3's features and vocabulary.
TINY_V3 = WhisperShape(
    name="tiny-v3-test",
    d_model=64,
    encoder_layers=2,
    decoder_layers=2,
    encoder_attention_heads=2,
    decoder_attention_heads=2,
    encoder_ffn_dim=128,
    decoder_ffn_dim=128,
    num_mel_bins=128,
    vocab_size=51866,
)


# --- the shape table ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPENAI_CONFIGS))
def test_shapes_match_openai_configs(name):
    shape = SHAPES[name]
    d_model, enc, dec, heads, ffn, mels, vocab = OPENAI_CONFIGS[name]
    assert (shape.d_model, shape.encoder_layers, shape.decoder_layers) == (d_model, enc, dec)
    assert shape.encoder_attention_heads == shape.decoder_attention_heads == heads
    assert shape.encoder_ffn_dim == shape.decoder_ffn_dim == ffn
    assert (shape.num_mel_bins, shape.vocab_size) == (mels, vocab)
    assert (shape.max_source_positions, shape.max_target_positions) == (1500, 448)
    assert shape.hub_id == f"openai/whisper-{name}"


@pytest.mark.parametrize("name", sorted(OPENAI_CONFIGS))
def test_parameter_count_matches_transformers(name):
    import torch
    from transformers import WhisperConfig, WhisperForConditionalGeneration

    shape = SHAPES[name]
    assert shape.parameters == OPENAI_PARAMETERS[name]
    with torch.device("meta"):
        model = WhisperForConditionalGeneration(WhisperConfig(**shape.config_kwargs()))
    assert model.num_parameters() == shape.parameters
    assert shape.fp32_bytes == 4 * shape.parameters


# --- the large-v3 vocabulary --------------------------------------------------------------


@pytest.fixture(scope="module")
def v3_vocab() -> dict[str, int]:
    base = json.loads(locate_ct2_files(EMBEDDED["base"]).tokenizer.read_text(encoding="utf-8"))
    derived, yue = large_v3_tokenizer(base)
    assert yue == 50358
    return {token["content"]: token["id"] for token in derived["added_tokens"]}


def test_large_v3_special_token_ids(v3_vocab):
    # openai's large-v3 vocabulary (tiktoken, and the Hub's tokenizer.json).
    assert v3_vocab["<|endoftext|>"] == 50257
    assert v3_vocab["<|startoftranscript|>"] == 50258
    assert v3_vocab["<|en|>"] == 50259
    assert v3_vocab["<|su|>"] == 50357
    assert v3_vocab["<|yue|>"] == 50358
    assert v3_vocab["<|translate|>"] == 50359
    assert v3_vocab["<|transcribe|>"] == 50360
    assert v3_vocab["<|startoflm|>"] == 50361
    assert v3_vocab["<|startofprev|>"] == 50362
    assert v3_vocab["<|nospeech|>"] == 50363
    assert v3_vocab["<|notimestamps|>"] == 50364
    assert v3_vocab["<|0.00|>"] == 50365
    assert v3_vocab["<|30.00|>"] == 51865
    assert max(v3_vocab.values()) == 51866 - 1
    assert len(set(v3_vocab.values())) == len(v3_vocab)


# --- a synthetic build --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_tiny_v3(tmp_path_factory):
    """The tiny 128-mel, 51866-token shape built through the CLI's --random-weights path."""
    folder = tmp_path_factory.mktemp("synthetic")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(SHAPES, TINY_V3.name, TINY_V3)
        code = build_main(
            ["--model", TINY_V3.name, "--random-weights", "--output-dir", str(folder)]
        )
    assert code == 0
    return folder / f"{TINY_V3.name}-random"


def test_synthetic_build_is_marked_in_the_manifest(built_tiny_v3):
    manifest = verify_folder(built_tiny_v3)
    assert manifest["synthetic"] is True
    assert manifest["synthetic_note"] == SYNTHETIC_NOTE
    assert SYNTHETIC_NOTE in manifest["description"]
    assert manifest["source"]["kind"] == "synthetic"
    assert manifest["source"]["seed"] == 0
    assert manifest["source"]["shape"]["num_mel_bins"] == 128
    assert manifest["parameters"] == TINY_V3.parameters
    assert set(manifest["peak_rss_mib"]) >= {"import", "export", "quantize"}
    for sub in ("original", "onnx-fp32", "quantized"):
        assert f"{sub}/generation_config.json" in manifest["files"]


def test_synthetic_build_has_large_v3_features_and_tokens(built_tiny_v3):
    from transformers import WhisperForConditionalGeneration

    original = built_tiny_v3 / "original"
    preprocessor = json.loads((original / "preprocessor_config.json").read_text())
    assert preprocessor["feature_size"] == 128
    generation = json.loads((original / "generation_config.json").read_text())
    assert generation["lang_to_id"]["<|yue|>"] == 50358
    assert len(generation["lang_to_id"]) == 100
    assert generation["task_to_id"] == {"transcribe": 50360, "translate": 50359}
    assert generation["no_timestamps_token_id"] == 50364
    assert generation["decoder_start_token_id"] == 50258
    assert generation["begin_suppress_tokens"] == [220, 50257]
    # openai's large-v3 list ends with sot, translate, transcribe, startoflm, startofprev, nospeech.
    assert generation["suppress_tokens"][-6:] == [50258, 50359, 50360, 50361, 50362, 50363]
    model = WhisperForConditionalGeneration.from_pretrained(original)
    assert model.config.num_mel_bins == 128 and model.config.vocab_size == 51866
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def test_synthetic_onnx_runs_on_128_mel_features(built_tiny_v3):
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(built_tiny_v3 / "quantized" / ENCODER_FILE))
    features = np.zeros((1, 128, 3000), dtype=np.float32)
    (hidden,) = session.run(None, {"input_features": features})
    assert hidden.shape == (1, 1500, TINY_V3.d_model)


def test_fixed_tokens_benchmark_on_the_128_mel_shape(built_tiny_v3, tmp_path):
    """large-v3's kind (128 mel bins, 51866 tokens, multilingual): with --fixed-tokens every
    engine decodes exactly N forced tokens per window, English without detection."""
    from fixed_tokens import (
        check_engines_force_the_same_tokens,
        check_fixed_token_report,
        run_fixed_token_benchmark,
    )

    code, data, markdown = run_fixed_token_benchmark(
        built_tiny_v3, tmp_path, 7, engines="original,onnx-fp32,quantized"
    )
    assert code == 0
    check_fixed_token_report(data, markdown, 7)
    check_engines_force_the_same_tokens(built_tiny_v3, tmp_path, 7)


def test_synthetic_weights_are_seeded(tmp_path):
    layout = {"a.weight": (3, 5), "a.bias": (5,), "b.layer_norm.weight": (4,)}
    first, second, other = tmp_path / "1", tmp_path / "2", tmp_path / "3"
    assert write_random_safetensors(first, layout, seed=0) == 15 + 5 + 4
    write_random_safetensors(second, layout, seed=0)
    write_random_safetensors(other, layout, seed=1)
    assert first.read_bytes() == second.read_bytes() != other.read_bytes()
    from safetensors.numpy import load_file

    tensors = load_file(first)
    assert tensors["a.weight"].shape == (3, 5) and not tensors["a.bias"].any()
    assert (tensors["b.layer_norm.weight"] == 1).all()


def test_isolated_build_matches_the_in_process_one(built_tiny_v3, tmp_path, monkeypatch):
    """The low-memory path (stage processes, streamed merge, lean quantizer) writes the same
    weights and graphs."""
    import onnx
    from onnx.numpy_helper import to_array

    monkeypatch.setitem(SHAPES, TINY_V3.name, TINY_V3)
    result = build_model(TINY_V3.name, tmp_path, BuildOptions(random_weights=True, isolate=True))
    assert result.manifest["stages_isolated"] is True
    assert set(result.manifest["peak_rss_mib"]) == {"import", "export", "merge", "quantize"}
    original = "original/model.safetensors"
    assert (result.folder / original).read_bytes() == (built_tiny_v3 / original).read_bytes()
    for sub in ("onnx-fp32", "quantized"):
        for name in (ENCODER_FILE, DECODER_FILE):
            ours = onnx.load(str(result.folder / sub / name))
            theirs = onnx.load(str(built_tiny_v3 / sub / name))
            assert [n.op_type for n in ours.graph.node] == [n.op_type for n in theirs.graph.node]
            ours_values = sorted(to_array(t).tobytes() for t in ours.graph.initializer)
            theirs_values = sorted(to_array(t).tobytes() for t in theirs.graph.initializer)
            assert ours_values == theirs_values, f"{sub}/{name}"


def test_streaming_merge_handles_external_data(built_tiny_v3, tmp_path):
    """Graphs past 2 GB keep their weights in `<file>_data`; the merge streams them."""
    import onnx
    import onnxruntime as ort
    from onnx.numpy_helper import to_array
    from optimum.onnx import merge_decoders

    build._optimum_export(built_tiny_v3 / "original", tmp_path / "export", post_process=False)
    inline = tmp_path / "export"
    external = tmp_path / "external"
    external.mkdir()
    for name in ("decoder_model.onnx", "decoder_with_past_model.onnx"):
        model = onnx.load(str(inline / name))
        onnx.save_model(
            model,
            str(external / name),
            save_as_external_data=True,
            all_tensors_to_one_file=False,
            size_threshold=1024,
        )
    merge_decoders_streaming(
        external / "decoder_model.onnx",
        external / "decoder_with_past_model.onnx",
        external / DECODER_FILE,
    )
    assert (external / f"{DECODER_FILE}_data").is_file()
    ours = onnx.load(str(external / DECODER_FILE))
    theirs = merge_decoders(
        inline / "decoder_model.onnx",
        inline / "decoder_with_past_model.onnx",
        save_path=inline / DECODER_FILE,
        strict=False,
    )
    assert sorted(to_array(t).tobytes() for t in ours.graph.initializer) == sorted(
        to_array(t).tobytes() for t in theirs.graph.initializer
    )
    ort.InferenceSession(str(external / DECODER_FILE))


# --- resolution -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(OPENAI_CONFIGS))
def test_known_shapes_resolve_to_openai_hub_ids_without_fetching(name):
    spec = resolve_model(name)
    assert (spec.kind, spec.location) == ("hub", f"openai/whisper-{name}")
    assert spec.folder_name == name


def test_random_weights_resolve_to_synthetic_specs():
    spec = resolve_model("large-v3", random_weights=True, seed=3)
    assert (spec.kind, spec.shape, spec.seed) == ("synthetic", SHAPES["large-v3"], 3)
    assert spec.folder_name == "large-v3-random-seed3"
    assert resolve_model("large-v3-random").folder_name == "large-v3-random"
    with pytest.raises(ModelSourceError, match="known shape"):
        resolve_model("openai/whisper-tiny", random_weights=True)
    with pytest.raises(ModelSourceError, match="embedded"):
        resolve_model("base", random_weights=True)


def test_known_shape_offline_fails_fast_naming_the_hub_id(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    # The memory and disk checks come first; this test is about the Hub.
    monkeypatch.setattr(build, "check_resources", lambda *args: None)
    with pytest.raises(ModelSourceError, match="openai/whisper-large-v3|large-v3"):
        build_model("large-v3", tmp_path)


def test_a_build_that_cannot_fit_fails_before_starting(tmp_path, monkeypatch):
    import psutil

    class Scarce:
        available = 2 * 2**30

    class Usage:
        free = 2**40  # plenty, so that the memory check is the one that speaks

    # The machine's own disk may be short of large-v2's ~21 GiB too (seen in CI), and the
    # disk is checked first: fake it as plentiful, then as scarce.
    monkeypatch.setattr(build.shutil, "disk_usage", lambda _: Usage())
    monkeypatch.setattr(psutil, "virtual_memory", lambda: Scarce())
    with pytest.raises(build.BuildError, match="memory"):
        build_model("large-v2", tmp_path, BuildOptions(random_weights=True))
    Usage.free = 2**30
    with pytest.raises(build.BuildError, match="disk"):
        build_model("large-v2", tmp_path, BuildOptions(random_weights=True))
    assert not any(Path(tmp_path).iterdir())


def test_shape_names_are_listed(capsys):
    assert build_main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in SHAPES:
        assert name in out
    assert shapes.shape_names().startswith("small")


def test_the_app_runs_a_synthetic_model_on_equal_work_without_wer(built_tiny_v3, tmp_path):
    """The app's comparison on a synthetic (128-mel) model: every engine decodes the same
    forced tokens, the summary says the weights are synthetic, and no WER is computed."""
    from whisper_quant.options import SYNTHETIC_FIXED_TOKENS
    from whisper_quant.service import StudioSwitcher
    from whisper_quant.settings import Settings
    from whisper_quant.views import summary

    name = built_tiny_v3.name
    pool = StudioSwitcher(
        Settings(
            models_dir=built_tiny_v3.parent,
            default_model=name,
            engines=("original", "onnx-fp32", "quantized"),
        )
    )
    try:
        assert pool.info(name).synthetic
        options = pool.options(name)
        assert options.fixed_tokens == SYNTHETIC_FIXED_TOKENS and options.temperatures == (0.0,)
        clip = Path(__file__).parent / "data" / "goforward.wav"
        comparison = pool.compare(clip, model=name, reference="go forward ten meters")
        # The batch alike: references given, none scored.
        refs = tmp_path / "refs.csv"
        refs.write_text("file_name,transcription\ngoforward.wav,go forward ten meters\n")
        batch = pool.compare_batch(
            [clip], references_file=refs, model=name, work_dir=tmp_path / "batch"
        )
    finally:
        pool.close()
    assert batch.synthetic and batch.reference_words == 0
    assert all(e.wer == "" for e in batch.engines)
    tokens = {r.engine: r.transcription.segments[0].tokens for r in comparison.results}
    assert len(tokens) == 3
    assert all(len(t) == SYNTHETIC_FIXED_TOKENS for t in tokens.values()), tokens
    assert len(set(map(tuple, tokens.values()))) == 1
    assert all(r.error_rate is None for r in comparison.results)
    assert comparison.synthetic  # from the manifest, not from the forced tokens
    assert SYNTHETIC_NOTE[1:] in summary(comparison)
