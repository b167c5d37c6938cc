"""Checks of `--fixed-tokens` shared by the tests of an 80-mel and a 128-mel tiny random model:
every engine that can decodes exactly N tokens per 30 s window, the same token ids, in the
benchmark (worker processes) and in-process.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from whisper_quant.cli import benchmark_main

# Engines that go through the shared loop (faster-whisper and optimum cannot force tokens).
FORCING_ENGINES = ("original", "onnx-fp32", "quantized")


def write_noise(path: Path, seconds: float, seed: int = 0) -> Path:
    """16 kHz mono 16-bit noise: random weights hear nothing in anything, but it is not silent."""
    rng = np.random.default_rng(seed)
    samples = (0.1 * rng.standard_normal(int(seconds * 16000))).clip(-1, 1)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(16000)
        f.writeframes((samples * 32767).astype("<i2").tobytes())
    return path


def run_fixed_token_benchmark(
    model_dir: Path, work: Path, tokens: int, *, engines: str | None = None
) -> tuple[int, dict, str]:
    """benchmark.py --fixed-tokens on a 40 s clip (two windows) and a 3 s clip (one window)."""
    clips = [write_noise(work / "long.wav", 40.0), write_noise(work / "short.wav", 3.0, seed=1)]
    out, markdown = work / "fixed.json", work / "fixed.md"
    argv = [
        *map(str, clips),
        "--models-dir",
        str(model_dir.parent),
        "--model",
        model_dir.name,
        "--fixed-tokens",
        str(tokens),
        "--repeat",
        "1",
        "--json",
        str(out),
        "--markdown",
        str(markdown),
    ]
    if engines:
        argv += ["--engines", engines]
    code = benchmark_main(argv)
    return code, json.loads(out.read_text()), markdown.read_text()


def check_fixed_token_report(data: dict, markdown: str, tokens: int) -> None:
    """Every forcing engine decoded exactly `tokens` per window, the same transcript; the
    report has the per-window, per-token, memory, disk and build figures."""
    assert set(data["engines"]) == set(FORCING_ENGINES)
    assert data["settings"]["fixed_tokens"] == tokens
    transcripts = {json.dumps(e["transcripts"], sort_keys=True) for e in data["engines"].values()}
    assert len(transcripts) == 1  # the same forced tokens, so the same text
    for name, e in data["engines"].items():
        assert e["windows"] == 3, name  # 2 for 40 s + 1 for 3 s
        assert e["tokens_per_pass"] == 3 * tokens, name
        assert e["fallback_windows"] == 0, name
        assert e["encoder_ms_per_window"] > 0 and e["ms_per_token_steps"] > 0, name
        assert e["memory_mib"] > 0 and e["disk_mib"] > 0 and e["peak_memory_mib"] >= 0, name
        print(
            f"{name}: encoder {e['encoder_ms_per_window']:.1f} ms/window, "
            f"{e['ms_per_token_steps']:.2f} ms/token"
        )  # figures, not bounds
    onnx = [data["engines"][n]["cross_kv_ms_per_window"] for n in ("onnx-fp32", "quantized")]
    assert (
        all(v > 0 for v in onnx) and data["engines"]["original"]["cross_kv_ms_per_window"] is None
    )
    build = data["build"]
    assert build["total_s"] > 0 and build["peak_mib"] > 0
    assert build["total_s"] == round(sum(build["stages_s"].values()), 2)
    assert "Encoder (ms / 30 s window)" in markdown and "Decoder (ms / token)" in markdown
    assert f"exactly {tokens} forced tokens per window" in markdown
    assert f"Build of {data['model']}" in markdown and "peak RSS" in markdown


def check_engines_force_the_same_tokens(model_dir: Path, work: Path, tokens: int) -> None:
    """In-process: each forcing engine's tokens are `fixed_token_ids`, per window."""
    from whisper_quant.audio import decode_audio
    from whisper_quant.decoding import fixed_token_ids
    from whisper_quant.engines import engine_class

    audio = decode_audio(write_noise(work / "forced-40s.wav", 40.0))
    results = {}
    for name in FORCING_ENGINES:
        engine = engine_class(name)(model_dir)
        result = engine.transcribe(audio, fixed_tokens=tokens)
        forced = fixed_token_ids(tokens, engine.special, engine.rules)
        assert result.tokens == forced * 2, name
        assert result.windows == 2 and result.tokens_decoded == 2 * tokens, name
        assert result.next_steps == 2 * (tokens - 1), name
        assert [(s.start, s.end) for s in result.segments] == [(0.0, 30.0), (30.0, 40.0)], name
        results[name] = result.text
    assert len(set(results.values())) == 1
