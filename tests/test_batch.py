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
