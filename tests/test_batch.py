"""The batch tab's input handling, without engines: uploads, zips, references and limits."""

from __future__ import annotations

import zipfile

import numpy as np
import pytest

from whisper_quant.batch import (
    BatchError,
    gather_files,
    load_batch,
    read_reference_file,
)


def test_zips_unpack_to_base_names_only(tmp_path, clip):
    archive = tmp_path / "clips.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.write(clip("goforward.wav"), "../../evil/goforward.wav")
        z.write(clip("cards-001.wav"), "sub/cards-001.wav")
        z.writestr("notes.txt", "not audio")
    files = gather_files([archive], tmp_path / "work", max_files=10)
    assert sorted(f.name for f in files) == ["cards-001.wav", "goforward.wav"]
    assert all(f.parent == tmp_path / "work" / "clips" for f in files)
    assert not (tmp_path / "evil").exists()


def test_too_many_files_and_no_audio_are_refused(tmp_path, clip):
    paths = [clip("goforward.wav")] * 3
    with pytest.raises(BatchError, match="at most 2 clips"):
        gather_files(paths, tmp_path, max_files=2)
    with pytest.raises(BatchError, match="No audio files"):
        gather_files([tmp_path / "refs.csv"], tmp_path, max_files=2)
    bad = tmp_path / "bad.zip"
    bad.write_text("not a zip")
    with pytest.raises(BatchError, match="not a readable zip"):
        gather_files([bad], tmp_path, max_files=2)


def test_references_come_from_csv_or_tsv(tmp_path):
    csv_file = tmp_path / "refs.csv"
    csv_file.write_text('file_name,transcription\nsub/a.wav,"hello, there"\nb.wav,world\n')
    assert read_reference_file(csv_file) == {"a.wav": "hello, there", "b.wav": "world"}
    tsv = tmp_path / "refs.tsv"
    tsv.write_text("a.wav\thello there\n# comment\nb.wav\tworld\n")
    assert read_reference_file(tsv) == {"a.wav": "hello there", "b.wav": "world"}
    assert read_reference_file(None) == {}
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("name,words\na.wav,hello\n")
    with pytest.raises(BatchError, match="file_name column"):
        read_reference_file(wrong)


def test_the_total_length_is_capped_and_broken_clips_keep_their_reason(tmp_path, clip):
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    clips = load_batch(
        [clip("goforward.wav"), broken], {"goforward.wav": "go"}, max_total_seconds=10
    )
    assert [c.name for c in clips] == ["goforward.wav", "broken.wav"]
    assert clips[0].reference == "go" and clips[0].seconds == pytest.approx(2.79, abs=0.01)
    assert clips[1].audio is None and "decode" in clips[1].error.lower()
    with pytest.raises(BatchError, match="limit is 5 s per batch"):
        load_batch([clip("goforward.wav")] * 2, {}, max_total_seconds=5)
    with pytest.raises(BatchError, match="None of the files"):
        load_batch([broken], {}, max_total_seconds=5)
    assert np.isfinite(clips[0].audio).all()


def _results(count: int):
    """`count` scored clips, each transcribed by the original (right) and quantized (one word
    wrong in every third clip), as the batch tab's summary receives them."""
    from types import SimpleNamespace

    from whisper_quant.batch import BatchClip, ClipResult
    from whisper_quant.compare import Comparison, EngineResult

    reference = "red green blue white"
    results = []
    for i in range(count):
        texts = {"original": reference, "quantized": reference if i % 3 else "red green blue"}
        engines = tuple(
            EngineResult(
                engine=name,
                label=name,
                transcription=SimpleNamespace(text=text, latency_s=0.1),
                load=SimpleNamespace(held_bytes=2**20),
                error_rate=None,
                agreement=None,
            )
            for name, text in texts.items()
        )
        comparison = Comparison("m", 1.0, "en", reference, engines, tuple(texts))
        clip = BatchClip(f"clip-{i}.wav", np.zeros(16000, dtype=np.float32), reference)
        results.append(ClipResult(clip, comparison))
    return results


def test_the_summary_shows_intervals_from_ten_clips_and_n_below():
    from whisper_quant.batch import summarize_batch

    original, quantized = summarize_batch("m", _results(12)).engines
    assert original.wer == "0.0% [0.0%, 0.0%]" and original.difference == ""
    assert quantized.wer.startswith("8.3% [") and quantized.difference.startswith("+8.3% [")
    original, quantized = summarize_batch("m", _results(3)).engines
    assert original.wer == "0.0% (n=3)"
    assert (quantized.wer, quantized.difference) == ("8.3% (n=3)", "+8.3% (n=3)")
