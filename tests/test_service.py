"""The app's settings and request checks, without Gradio and without starting any engine."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

from whisper_quant.audio import AudioDecodeError, AudioTooLongError
from whisper_quant.engines import NOTICE_SILENT
from whisper_quant.options import (
    AUTO_DETECT,
    AUTO_DETECT_PER_WINDOW,
    ModelInfo,
    model_info,
    options_for,
)
from whisper_quant.report import table_rows
from whisper_quant.service import ModelNotBuiltError, StudioSwitcher
from whisper_quant.settings import Settings, SettingsError

ENGLISH_ONLY = ModelInfo("tiny.en", multilingual=False, languages=("en",), built=True)
MULTILINGUAL = ModelInfo("base", multilingual=True, languages=("de", "en", "es"), built=True)


def test_settings_default_without_environment():
    settings = Settings.from_env({})
    assert settings.models_dir == Path("models")
    assert settings.default_model == "tiny.en"
    assert settings.max_seconds == 600
    assert settings.max_file_size == "25mb" and settings.max_queue == 16
    assert settings.request_timeout_s == 600 and settings.threads == 2
    assert settings.max_batch_files == 50 and settings.max_batch_seconds == 1800
    assert settings.readme_url is None
    assert settings.engines == ("original", "pytorch", "onnx-fp32", "quantized")


def test_settings_read_from_environment(tmp_path):
    settings = Settings.from_env(
        {
            "WHISPER_MODELS_DIR": str(tmp_path),
            "WHISPER_DEFAULT_MODEL": "base",
            "WHISPER_MAX_SECONDS": "30",
            "WHISPER_MAX_FILE_SIZE": "5mb",
            "WHISPER_REQUEST_TIMEOUT_S": "none",
            "WHISPER_MAX_QUEUE": "4",
            "WHISPER_ENGINES": "original, quantized, onnx-fp32",
            "SPACE_ID": "someone/studio",
        }
    )
    assert settings.models_dir == tmp_path
    assert settings.default_model == "base"
    assert settings.max_seconds == 30.0
    assert settings.max_file_size == "5mb"
    assert settings.request_timeout_s is None
    assert settings.max_queue == 4
    assert settings.engines == ("original", "quantized", "onnx-fp32")
    assert settings.readme_url == "https://huggingface.co/spaces/someone/studio/blob/main/README.md"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("WHISPER_MAX_SECONDS", "ten", "WHISPER_MAX_SECONDS must be a number"),
        ("WHISPER_MAX_SECONDS", "-1", "WHISPER_MAX_SECONDS must be positive"),
        ("WHISPER_MAX_QUEUE", "2.5", "WHISPER_MAX_QUEUE must be a whole number"),
        ("WHISPER_REQUEST_TIMEOUT_S", "0", "must be positive"),
        ("WHISPER_ENGINES", "original,tflite", "Unknown engine 'tflite'"),
        ("WHISPER_ENGINES", "original", "must include original and quantized"),
    ],
)
def test_bad_settings_name_the_variable(name, value, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({name: value})


def test_options_for_an_english_only_model():
    assert options_for(ENGLISH_ONLY, AUTO_DETECT, "transcribe").language is None
    assert options_for(ENGLISH_ONLY, "en", "transcribe").language is None
    with pytest.raises(ValueError, match="English-only"):
        options_for(ENGLISH_ONLY, AUTO_DETECT, "translate")
    with pytest.raises(ValueError, match="English-only"):
        options_for(ENGLISH_ONLY, "de", "transcribe")


def test_options_for_a_multilingual_model():
    assert options_for(MULTILINGUAL, AUTO_DETECT, "translate").language is None
    assert options_for(MULTILINGUAL, None, "transcribe").language is None
    assert options_for(MULTILINGUAL, "DE", "transcribe").language == "de"
    with pytest.raises(ValueError, match="does not know the language 'xx'"):
        options_for(MULTILINGUAL, "xx", "transcribe")
    with pytest.raises(ValueError, match="Unknown task"):
        options_for(MULTILINGUAL, AUTO_DETECT, "summarise")


def test_language_per_window_resumes_a_window_that_ended_early():
    once = options_for(MULTILINGUAL, AUTO_DETECT, "transcribe")
    assert not once.language_per_window and once.early_end_resume_s is None
    for per_window in (
        options_for(MULTILINGUAL, AUTO_DETECT_PER_WINDOW, "transcribe"),
        options_for(MULTILINGUAL, AUTO_DETECT, "transcribe", language_per_window=True),
    ):
        assert per_window.language_per_window and per_window.early_end_resume_s == 5.0


def test_model_info_comes_from_the_built_files(tmp_path):
    folder = tmp_path / "base"
    (folder / "original").mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps({"format": 1, "files": {}, "multilingual": True})
    )
    (folder / "original" / "generation_config.json").write_text(
        json.dumps({"lang_to_id": {"<|en|>": 50259, "<|de|>": 50261}})
    )
    assert model_info(tmp_path, "base") == ModelInfo("base", True, ("de", "en"), built=True)
    # Not built yet: Whisper's English-only models are the *.en ones.
    assert model_info(tmp_path, "tiny.en") == ModelInfo("tiny.en", False, ("en",), built=False)
    assert model_info(tmp_path, "small").multilingual


def _wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


@pytest.fixture
def pool(tmp_path):
    # No model is built here: whatever these tests do must not need one.
    pool = StudioSwitcher(Settings(models_dir=tmp_path / "models", max_seconds=3))
    yield pool
    pool.close()


def test_a_silent_clip_runs_no_engine(pool, tmp_path):
    silent = _wav(tmp_path / "silent.wav", np.zeros(16000))
    comparison = pool.compare(silent)
    assert comparison.results == ()
    assert comparison.notice == NOTICE_SILENT
    assert table_rows(comparison) == []
    assert pool.current_model is None  # nothing was started or built


def test_bad_requests_fail_before_any_engine_starts(pool, tmp_path):
    fake = tmp_path / "fake.wav"
    fake.write_text("not audio")
    with pytest.raises(AudioDecodeError):
        pool.compare(fake)
    long = _wav(tmp_path / "long.wav", 0.3 * np.sin(np.arange(4 * 16000) / 10))
    with pytest.raises(AudioTooLongError, match="limit is 3 seconds"):
        pool.compare(long)
    with pytest.raises(ModelNotBuiltError, match="Unknown model 'large'"):
        pool.compare(long, model="large")
    with pytest.raises(ValueError, match="English-only"):
        pool.compare(long, options=pool.options("tiny.en", "auto-detect", "translate"))
    assert pool.current_model is None


def test_a_model_that_is_not_built_names_the_build_command(tmp_path):
    pool = StudioSwitcher(Settings(models_dir=tmp_path, default_model="tiny.en"))
    with pytest.raises(ModelNotBuiltError, match="python build_model.py --model base"):
        pool.studio("base")


def test_the_page_options_become_one_transcribe_options(tmp_path):
    from whisper_quant.options import AUTO_DETECT_PER_WINDOW

    folder = tmp_path / "base"
    (folder / "original").mkdir(parents=True)
    (folder / "manifest.json").write_text(
        json.dumps({"format": 1, "files": {}, "multilingual": True})
    )
    (folder / "original" / "generation_config.json").write_text(
        json.dumps({"lang_to_id": {"<|en|>": 50259, "<|de|>": 50261}})
    )
    pool = StudioSwitcher(Settings(models_dir=tmp_path, default_model="base"))
    default = pool.options("base")
    assert default.language is None and not default.language_per_window
    assert default.temperatures == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert default.condition_on_previous_text is True
    per_window = pool.options("base", AUTO_DETECT_PER_WINDOW)
    assert per_window.language is None and per_window.language_per_window
    assert pool.options("base", "auto-detect", language_per_window=True).language_per_window
    plain = pool.options("base", "de", temperature_fallback=False, condition_on_previous_text=False)
    assert plain.language == "de" and plain.temperatures == (0.0,)
    assert plain.condition_on_previous_text is False
    with pytest.raises(ValueError, match="per window"):
        pool.options("base", "de", language_per_window=True)
