"""The quantization recipes: names, what each build writes, and that each variant runs alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from whisper_quant.audio import decode_audio
from whisper_quant.build import BuildOptions, build_model
from whisper_quant.cli import build_parser
from whisper_quant.compare import Studio
from whisper_quant.engines import ENGINES, TranscribeOptions, available_engines
from whisper_quant.layout import DECODER_FILE, ENCODER_FILE, ORIGINAL_DIR, weight_bytes
from whisper_quant.manifest import sha256_file, verify_folder
from whisper_quant.metrics import normalize_text
from whisper_quant.quantizers import DEFAULT_CALIBRATION_DIR, calibration_clips
from whisper_quant.recipes import (
    DEFAULT_RECIPES,
    INT4_BLOCK_SIZE,
    INT4_SIZE_BUDGET,
    RECIPES,
    RecipeError,
    parse_recipes,
)

DATA = Path(__file__).parent / "data"


def op_types(path: Path) -> dict[str, int]:
    import onnx

    from whisper_quant.graphs import walk

    counts: dict[str, int] = {}
    for node, _ in walk(onnx.load(str(path), load_external_data=False).graph):
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# --- names ----------------------------------------------------------------------------------


def test_recipe_names_are_the_fixed_ones():
    assert list(RECIPES) == [
        "onnx-fp32",
        "int8-seed",
        "quantized",
        "int8-encoder",
        "int8-decoder",
        "int4-weights",
        "int8-static",
    ]
    # Every recipe has an engine of the same name reading the subfolder of the same name.
    for name in RECIPES:
        assert ENGINES[name].subfolder == name
        assert ENGINES[name].label == RECIPES[name].label


def test_parse_recipes():
    assert parse_recipes(None) == DEFAULT_RECIPES == ("onnx-fp32", "quantized")
    assert parse_recipes("all") == tuple(RECIPES)
    # Required ones added, RECIPES' order kept, duplicates and spaces ignored.
    assert parse_recipes(" int8-static, int4-weights,int4-weights") == (
        "onnx-fp32",
        "quantized",
        "int4-weights",
        "int8-static",
    )
    with pytest.raises(RecipeError, match="int3.*choose all or any of: onnx-fp32"):
        parse_recipes("int4-weights,int3")


def test_cli_takes_recipes_and_a_calibration_folder(tmp_path):
    args = build_parser().parse_args(["--recipes", "int8-seed", "--calibration", str(tmp_path)])
    assert args.recipes == ("onnx-fp32", "int8-seed", "quantized")
    assert args.calibration == tmp_path
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--recipes", "int3"])


def test_calibration_folder_must_hold_audio(tmp_path):
    (tmp_path / "notes.txt").write_text("no audio here")
    with pytest.raises(Exception, match="holds no audio"):
        calibration_clips(tmp_path)
    with pytest.raises(Exception, match="does not exist"):
        calibration_clips(tmp_path / "missing")
    # The default set is the shipped tuning clips.
    assert [p.name for p in calibration_clips(DEFAULT_CALIBRATION_DIR)] == sorted(
        p.name for p in DATA.glob("*.wav")
    )


# --- the tiny random model with every recipe -------------------------------------------------


def test_every_recipe_is_built_and_recorded(every_recipe):
    folder, manifest = every_recipe.folder, every_recipe.manifest
    verify_folder(folder)  # every file listed with its checksum
    assert manifest["inputs"]["recipes"] == list(RECIPES)
    assert set(manifest["recipes"]) == set(RECIPES)
    for name, settings in manifest["recipes"].items():
        assert (folder / name / ENCODER_FILE).is_file() and (folder / name / DECODER_FILE).is_file()
        assert settings["encoder"] == RECIPES[name].encoder
        assert settings["decoder"] == RECIPES[name].decoder
        assert settings["weight_bytes"] == weight_bytes(folder / name)
        assert settings["weight_bytes"] > 0
    assert available_engines(folder)[: len(RECIPES) + 2] == ["original", "pytorch", *RECIPES]


def test_mixed_recipes_reuse_the_fp32_and_int8_graphs(every_recipe):
    folder = every_recipe.folder

    def same(a: str, b: str, file: str) -> bool:
        return sha256_file(folder / a / file) == sha256_file(folder / b / file)

    assert same("int8-encoder", "quantized", ENCODER_FILE)
    assert same("int8-encoder", "onnx-fp32", DECODER_FILE)
    assert same("int8-decoder", "onnx-fp32", ENCODER_FILE)
    assert same("int8-decoder", "quantized", DECODER_FILE)
    assert same("int8-static", "quantized", DECODER_FILE)
    assert not same("int8-static", "quantized", ENCODER_FILE)


def test_int4_uses_matmulnbits_and_a_quantized_embedding(every_recipe):
    folder, settings = every_recipe.folder, every_recipe.manifest["recipes"]["int4-weights"]
    assert settings["block_size"] == INT4_BLOCK_SIZE and settings["accuracy_level"] == 4
    encoder = op_types(folder / "int4-weights" / ENCODER_FILE)
    decoder = op_types(folder / "int4-weights" / DECODER_FILE)
    assert encoder.get("MatMulNBits", 0) > 0 and decoder.get("MatMulNBits", 0) > 0
    # The token embedding's Gather, in both branches of the merged decoder.
    assert decoder.get("GatherBlockQuantized", 0) >= 2
    assert (
        settings["nodes"][DECODER_FILE]["GatherBlockQuantized"] == decoder["GatherBlockQuantized"]
    )
    # Weight bytes shrink about eightfold where weights are quantized.
    assert weight_bytes(folder / "int4-weights") < 0.3 * weight_bytes(folder / "onnx-fp32")
    assert settings["share_of_original"] == pytest.approx(
        weight_bytes(folder / "int4-weights") / weight_bytes(folder / ORIGINAL_DIR), abs=1e-4
    )


def test_static_encoder_is_qdq_calibrated_on_the_shipped_clips(every_recipe):
    folder, settings = every_recipe.folder, every_recipe.manifest["recipes"]["int8-static"]
    encoder = op_types(folder / "int8-static" / ENCODER_FILE)
    assert encoder.get("QuantizeLinear", 0) > 0 and encoder.get("DequantizeLinear", 0) > 0
    assert settings["calibration_method"] == "MinMax"
    assert settings["calibration_clips"] == len(list(DATA.glob("*.wav")))
    assert settings["calibration_windows"] >= settings["calibration_clips"]
    # Calibrating on other clips is another build.
    assert every_recipe.manifest["inputs"]["calibration_sha256"]


def test_seed_recipe_is_the_article_config(every_recipe):
    settings = every_recipe.manifest["recipes"]["int8-seed"]
    assert settings["preset"] == "avx512_vnni"
    assert "per_channel=False" in settings["method"]


def test_a_build_with_more_recipes_serves_a_smaller_request(every_recipe, tiny_ct2_dir):
    again = build_model(str(tiny_ct2_dir), every_recipe.folder.parent)
    assert again.skipped
    again = build_model(
        str(tiny_ct2_dir), every_recipe.folder.parent, BuildOptions(recipes=("int4-weights",))
    )
    assert again.skipped


def test_a_missing_recipe_is_built(built_tiny, tiny_ct2_dir, tmp_path):
    import shutil

    folder = tmp_path / built_tiny.folder.name
    shutil.copytree(built_tiny.folder, folder)
    result = build_model(str(tiny_ct2_dir), tmp_path, BuildOptions(recipes=("int8-decoder",)))
    assert not result.skipped
    assert (folder / "int8-decoder" / DECODER_FILE).is_file()


@pytest.mark.parametrize("name", [n for n in RECIPES if n not in ("onnx-fp32", "quantized")])
def test_each_recipe_loads_and_runs_on_its_own(every_recipe, name):
    audio = decode_audio(DATA / "goforward.wav")
    # Random weights decode to the token limit at every temperature: one short decoding is
    # enough to show the recipe loads and runs in a worker.
    short = TranscribeOptions(temperatures=(0.0,), max_new_tokens=8)
    with Studio(every_recipe.folder, [name]) as studio:
        comparison = studio.compare(audio, short)
    (result,) = comparison.results
    assert result.engine == name
    assert result.load.weights_bytes == weight_bytes(every_recipe.folder / name)
    assert result.transcription.tokens_decoded > 0


# --- real models ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["built_tiny_en", "built_base"])
def test_every_recipe_transcribes_a_real_clip(model, request):
    built = request.getfixturevalue(model)
    folder = built.folder
    share = weight_bytes(folder / "int4-weights") / weight_bytes(folder / ORIGINAL_DIR)
    print(f"{folder.name}: int4 files are {share:.1%} of the fp32 weights")
    assert share <= INT4_SIZE_BUDGET
    audio = decode_audio(DATA / "goforward.wav")
    # In this process, one engine at a time: what is checked is each recipe's transcript.
    # A Studio would spawn, load and warm up a worker per engine (eight here) first; each
    # recipe through a Studio's worker is test_each_recipe_loads_and_runs_on_its_own above.
    for name in ["original", *RECIPES]:
        result = ENGINES[name](folder).transcribe(audio)
        print(result.engine, result.text)
        assert result.engine == name
        assert normalize_text(result.text, "en") == "go forward 10 meters", name
