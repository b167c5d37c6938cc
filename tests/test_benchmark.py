"""The benchmark CLI: figures for every engine, failed and unscored clips reported, not fatal."""

from __future__ import annotations

import json
import shutil

import pytest

from whisper_quant.bench import read_references
from whisper_quant.cli import benchmark_main

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def report(built_tiny_en, models_dir, clip, tmp_path_factory):
    """One run on two good clips, one unscored clip and one that is not audio."""
    work = tmp_path_factory.mktemp("bench")
    clips = [shutil.copy(clip(name), work) for name in ("goforward.wav", "cards-005.wav")]
    unscored = shutil.copy(clip("cards-001.wav"), work / "unscored.wav")
    broken = work / "broken.wav"
    broken.write_text("this is not audio")
    refs = work / "refs.tsv"
    refs.write_text(
        "goforward.wav\tgo forward ten meters\ncards-005.wav\t"
        "eight of spades four of clubs seven of hearts\n"
    )
    out = work / "report.json"
    code = benchmark_main(
        [
            *map(str, [*clips, unscored, broken]),
            "--references",
            str(refs),
            "--models-dir",
            str(models_dir),
            "--model",
            "tiny.en",
            "--engines",
            "original,quantized,onnx-fp32",
            "--repeat",
            "2",
            "--json",
            str(out),
            "--markdown",
            str(work / "report.md"),
            "--plot",
            str(work / "report.png"),
        ]
    )
    return code, json.loads(out.read_text()), work


def test_reports_every_engine_with_positive_figures(report):
    _, data, _ = report
    assert data["model"] == "tiny.en"
    assert set(data["engines"]) == {"original", "quantized", "onnx-fp32"}
    for engine in data["engines"].values():
        assert engine["median_latency_s"] > 0
        assert 0 < engine["rtf"] < 5
        assert engine["memory_mib"] > 10
        assert engine["peak_memory_mib"] >= 0
        assert engine["disk_mib"] > 10
        assert 0 <= engine["wer"] <= 0.5
        assert "forward" in engine["transcripts"]["goforward.wav"].lower()
    summary = data["summary"]
    assert summary["speedup"] == pytest.approx(
        data["engines"]["original"]["median_latency_s"]
        / data["engines"]["quantized"]["median_latency_s"]
    )
    assert summary["memory_saving"] == pytest.approx(
        1 - data["engines"]["quantized"]["memory_mib"] / data["engines"]["original"]["memory_mib"]
    )
    assert "wer_delta" in summary
    assert summary["speedup_best"] > 0
    assert "median" in data["methods"]["timing"] and "RSS" in data["methods"]["memory"]


def test_fp32_onnx_agrees_with_the_original_word_for_word(report):
    _, data, _ = report
    assert data["engines"]["onnx-fp32"]["agreement_wer_vs_original"] == 0.0


def test_a_broken_clip_fails_alone_with_its_reason(report):
    code, data, _ = report
    assert code == 1  # a failed clip is worth a non-zero exit, after the others ran
    assert list(data["failed_clips"]) == ["broken.wav"]
    assert "decode" in data["failed_clips"]["broken.wav"].lower()
    assert set(data["engines"]["quantized"]["transcripts"]) == {
        "goforward.wav",
        "cards-005.wav",
        "unscored.wav",
    }


def test_a_clip_without_reference_is_left_out_of_wer_and_said_so(report):
    _, data, work = report
    assert data["unscored_clips"] == ["unscored.wav"]
    markdown = (work / "report.md").read_text()
    assert "Left out of WER (no reference): unscored.wav" in markdown
    assert "broken.wav" in markdown
    assert (work / "report.png").stat().st_size > 10_000


def test_a_missing_model_names_the_build_command(tmp_path, clip, capsys):
    code = benchmark_main([str(clip("goforward.wav")), "--models-dir", str(tmp_path)])
    assert code == 2
    assert "python build_model.py --model tiny.en" in capsys.readouterr().err


def test_references_file_format(tmp_path):
    refs = tmp_path / "refs.tsv"
    refs.write_text("# comment\n\na.wav\tHello there\nsub/b.wav\tworld\n")
    assert read_references(refs) == {"a.wav": "Hello there", "b.wav": "world"}
    refs.write_text("no tab here\n")
    with pytest.raises(ValueError, match="TAB"):
        read_references(refs)


def test_joined_clips_are_2_to_10_seconds_of_the_shipped_speech(tmp_path, references):
    """scripts/joined_clips.py: the longer clips the README's second benchmark table uses."""
    import subprocess
    import sys
    import wave
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "scripts" / "joined_clips.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True)
    joined = read_references(tmp_path / "refs.tsv")
    assert len(joined) == 6
    shipped = " ".join(references.values()).split()
    for name, text in joined.items():
        with wave.open(str(tmp_path / name)) as clip:
            seconds = clip.getnframes() / clip.getframerate()
        assert 2.0 <= seconds <= 10.0, name
        assert set(text.split()) <= set(shipped), name
