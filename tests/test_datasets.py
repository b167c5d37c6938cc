"""load_dataset_clips on audiofolders, TSV files and Hub-style datasets, and the shipped eval/ set."""

from __future__ import annotations

import csv
import dataclasses
import gzip
import hashlib
import importlib.util
import sys
import wave
from pathlib import Path

import numpy as np
import pytest

from whisper_quant.audio import SAMPLE_RATE, decode_audio
from whisper_quant.bench import Clip, read_references
from whisper_quant.datasets import DatasetClip, DatasetSourceError, load_dataset_clips
from whisper_quant.metrics import normalize_text

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "eval"
TEST_DATA = Path(__file__).parent / "data"
MAX_FILE_BYTES = 5 * 1024 * 1024
# The English part and the synthetic part together, as before the other languages came.
MAX_TOTAL_BYTES = 15_000_000
# Each of the other languages (Spanish, French, Italian, Russian) in eval/audio/<language>/.
MAX_LANGUAGE_BYTES = 8_000_000
OTHER_LANGUAGES = ("es", "fr", "it", "ru")

requires_datasets = pytest.mark.skipif(
    importlib.util.find_spec("datasets") is None, reason="needs Hugging Face datasets"
)


def write_wav(path: Path, seconds: float, rate: int = SAMPLE_RATE, freq: float = 440.0) -> None:
    t = np.arange(round(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * freq * t) * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(samples.tobytes())


def write_metadata(folder: Path, header: list[str], rows: list[list[str]]) -> None:
    with (folder / "metadata.csv").open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


@pytest.fixture
def audiofolder(tmp_path: Path) -> Path:
    write_wav(tmp_path / "audio" / "one.wav", 1.0)
    write_wav(tmp_path / "audio" / "two.wav", 0.5, freq=300.0)
    write_wav(tmp_path / "audio" / "slow.wav", 0.25, rate=8000)  # resampled to 16 kHz
    write_metadata(
        tmp_path,
        ["file_name", "text", "speaker"],
        [
            ["audio/one.wav", "the first clip", "a"],
            ["audio/two.wav", "the second clip", "b"],
            ["audio/slow.wav", "an eight kilohertz clip", "a"],
        ],
    )
    return tmp_path


@requires_datasets
def test_audiofolder_gives_decoded_clips_in_metadata_order(audiofolder):
    clips = load_dataset_clips(audiofolder)
    assert all(isinstance(c, Clip) for c in clips)
    assert [c.name for c in clips] == ["audio/one.wav", "audio/two.wav", "audio/slow.wav"]
    assert [c.reference for c in clips] == [
        "the first clip",
        "the second clip",
        "an eight kilohertz clip",
    ]
    assert [c.error for c in clips] == ["", "", ""]
    assert all(c.audio.dtype == np.float32 for c in clips)
    assert len(clips[0].audio) == SAMPLE_RATE
    assert len(clips[1].audio) == SAMPLE_RATE // 2
    assert abs(len(clips[2].audio) - SAMPLE_RATE // 4) <= 32
    assert clips[0].path == (audiofolder / "audio" / "one.wav").resolve()
    np.testing.assert_array_equal(clips[0].audio, decode_audio(audiofolder / "audio/one.wav"))


@requires_datasets
def test_limit_and_explicit_split(audiofolder):
    clips = load_dataset_clips(audiofolder, split="train", limit=2)
    assert [c.name for c in clips] == ["audio/one.wav", "audio/two.wav"]
    assert load_dataset_clips(audiofolder, limit=0) == []
    assert len(load_dataset_clips(audiofolder / "metadata.csv")) == 3  # its folder
    with pytest.raises(DatasetSourceError, match="no split 'test'"):
        load_dataset_clips(audiofolder, split="test")


@requires_datasets
def test_transcription_column_is_found_or_named(tmp_path):
    write_wav(tmp_path / "a.wav", 0.2)
    write_metadata(tmp_path, ["file_name", "sentence", "Transcription"], [["a.wav", "s", "t"]])
    assert load_dataset_clips(tmp_path)[0].reference == "t"  # preferred, any case
    assert load_dataset_clips(tmp_path, text_column="sentence")[0].reference == "s"
    with pytest.raises(DatasetSourceError, match="no column 'words'"):
        load_dataset_clips(tmp_path, text_column="words")


@requires_datasets
def test_missing_columns_are_reported(tmp_path):
    write_wav(tmp_path / "a.wav", 0.2)
    write_metadata(tmp_path, ["file_name", "speaker"], [["a.wav", "x"]])
    with pytest.raises(DatasetSourceError, match="no transcription column"):
        load_dataset_clips(tmp_path)
    with pytest.raises(DatasetSourceError, match="no audio column 'sound'"):
        load_dataset_clips(tmp_path, audio_column="sound", text_column="speaker")


@requires_datasets
def test_undecodable_file_is_kept_with_its_error(tmp_path):
    write_wav(tmp_path / "good.wav", 0.2)
    (tmp_path / "bad.wav").write_bytes(b"this is not audio at all" * 10)
    write_metadata(tmp_path, ["file_name", "text"], [["good.wav", "fine"], ["bad.wav", "broken"]])
    good, bad = load_dataset_clips(tmp_path)
    assert good.error == "" and good.audio is not None
    assert bad.reference == "broken" and bad.audio is None and bad.error


@requires_datasets
def test_language_speaker_and_source_columns_label_each_clip(tmp_path):
    write_wav(tmp_path / "a.wav", 0.2)
    write_wav(tmp_path / "b.wav", 0.3)
    write_wav(tmp_path / "c.wav", 0.3)
    write_metadata(
        tmp_path,
        ["file_name", "transcription", "Speaker", "source", "language"],
        [
            ["a.wav", "hola", "ana", "radio", "es"],
            ["b.wav", "bonjour", "luc", "", "fr"],
            ["c.wav", "", "ana", "radio", "es"],
        ],
    )
    a, b, c = load_dataset_clips(tmp_path)
    assert isinstance(a, DatasetClip) and isinstance(a, Clip)
    assert (a.language, a.speaker, a.source) == ("es", "ana", "radio")
    assert (b.language, b.speaker, b.source) == ("fr", "luc", "")  # empty cell: default
    assert c.reference is None and c.error == ""  # no reference: left out of WER, still read
    assert (a.reference, len(a.audio)) == ("hola", round(0.2 * SAMPLE_RATE))
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.language = "en"


@requires_datasets
def test_labels_default_to_empty_without_their_columns(audiofolder):
    clips = load_dataset_clips(audiofolder)  # file_name, text, speaker
    assert [(c.language, c.speaker, c.source) for c in clips] == [
        ("", "a", ""),
        ("", "b", ""),
        ("", "a", ""),
    ]
    tsv = load_dataset_clips(TEST_DATA / "refs.tsv", limit=1)
    assert isinstance(tsv[0], DatasetClip)
    assert (tsv[0].language, tsv[0].speaker, tsv[0].source) == ("", "", "")


@requires_datasets
def test_languages_pick_clips_before_the_limit(tmp_path):
    rows = []
    for index, language in enumerate(["en", "ru", "en", "ru", "fr"]):
        write_wav(tmp_path / f"{index}.wav", 0.2)
        rows.append([f"{index}.wav", f"clip {index}", language])
    write_metadata(tmp_path, ["file_name", "text", "language"], rows)
    assert [c.name for c in load_dataset_clips(tmp_path, languages={"ru"})] == ["1.wav", "3.wav"]
    assert [c.name for c in load_dataset_clips(tmp_path, languages=["ru", "fr"], limit=2)] == [
        "1.wav",
        "3.wav",
    ]
    assert load_dataset_clips(tmp_path, languages={"de"}) == []  # labelled, none in German


@requires_datasets
def test_limit_per_language_keeps_the_first_n_of_each_language_in_metadata_order(tmp_path):
    rows = []
    for index, language in enumerate(["en", "ru", "en", "ru", "fr", "en", "ru"]):
        write_wav(tmp_path / f"{index}.wav", 0.2)
        rows.append([f"{index}.wav", f"clip {index}", language])
    write_metadata(tmp_path, ["file_name", "text", "language"], rows)
    picked = load_dataset_clips(tmp_path, limit_per_language=2)
    assert [(c.name, c.language) for c in picked] == [
        ("0.wav", "en"),
        ("1.wav", "ru"),
        ("2.wav", "en"),
        ("3.wav", "ru"),
        ("4.wav", "fr"),
    ]
    both = load_dataset_clips(tmp_path, languages={"ru", "fr"}, limit_per_language=1)
    assert [c.name for c in both] == ["1.wav", "4.wav"]
    assert load_dataset_clips(tmp_path, limit_per_language=0) == []
    with pytest.raises(ValueError, match="limit_per_language"):
        load_dataset_clips(tmp_path, limit_per_language=-1)


@requires_datasets
def test_languages_need_a_language_column(audiofolder):
    with pytest.raises(DatasetSourceError, match="no language column"):
        load_dataset_clips(audiofolder, languages={"en"})


def test_folder_without_metadata_is_rejected(tmp_path):
    write_wav(tmp_path / "a.wav", 0.2)
    with pytest.raises(DatasetSourceError, match="metadata.csv"):
        load_dataset_clips(tmp_path)


def test_unknown_source_is_rejected(tmp_path):
    with pytest.raises(DatasetSourceError, match="no such folder or file"):
        load_dataset_clips(tmp_path / "missing")
    with pytest.raises(DatasetSourceError):
        load_dataset_clips("not a dataset id")


def test_tsv_source_reads_refs_like_the_benchmark():
    clips = load_dataset_clips(TEST_DATA / "refs.tsv")
    references = read_references(TEST_DATA / "refs.tsv")
    assert {c.name: c.reference for c in clips} == references
    assert all(c.error == "" and len(c.audio) > SAMPLE_RATE // 2 for c in clips)
    assert [c.name for c in load_dataset_clips(TEST_DATA / "refs.tsv", limit=1)] == [
        "cards-001.wav"
    ]


def test_tsv_with_a_missing_file_keeps_the_clip_with_an_error(tmp_path):
    write_wav(tmp_path / "here.wav", 0.2)
    (tmp_path / "refs.tsv").write_text("here.wav\thello\ngone.wav\tbye\n", encoding="utf-8")
    here, gone = load_dataset_clips(tmp_path / "refs.tsv")
    assert here.error == "" and gone.error and gone.reference == "bye"


def test_missing_datasets_package_says_how_to_install_it(audiofolder, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    with pytest.raises(ImportError, match="pip install datasets"):
        load_dataset_clips(audiofolder)
    with pytest.raises(ImportError, match="pip install datasets"):
        load_dataset_clips("someone/some-dataset")


@requires_datasets
def test_hub_id_streams_and_prefers_the_test_split(tmp_path, monkeypatch):
    import datasets

    write_wav(tmp_path / "x.wav", 0.3)
    by_path = datasets.Dataset.from_dict(
        {
            "audio": [str(tmp_path / "x.wav")],
            "normalized_text": ["from a path"],
            "speaker_id": [1234],
            "locale": ["de"],
        }
    )
    wav_bytes = (tmp_path / "x.wav").read_bytes()
    by_bytes = datasets.Dataset.from_dict(
        {"audio": [{"bytes": wav_bytes, "path": None}], "sentence": ["from bytes"]},
        features=datasets.Features(
            {
                "audio": {"bytes": datasets.Value("binary"), "path": datasets.Value("string")},
                "sentence": datasets.Value("string"),
            }
        ),
    )
    calls = []

    def fake_load_dataset(name, split=None, streaming=False, **kwargs):
        calls.append((name, split, streaming))
        splits = {"train": by_path.to_iterable_dataset(), "test": by_bytes.to_iterable_dataset()}
        return splits[split] if split else datasets.IterableDatasetDict(splits)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (clip,) = load_dataset_clips("someone/speech")
    assert (clip.name, clip.reference, clip.error) == ("test-00000", "from bytes", "")
    assert len(clip.audio) == round(0.3 * SAMPLE_RATE)
    (clip,) = load_dataset_clips("someone/speech", split="train")
    assert (clip.name, clip.reference) == ("x.wav", "from a path")
    assert (clip.speaker, clip.language) == ("1234", "de")  # LibriSpeech-style integer ids
    assert calls == [("someone/speech", None, True), ("someone/speech", "train", True)]


# ---------------------------------------------------------------------------------------------
# The shipped evaluation set


def read_metadata(folder: Path) -> list[dict[str, str]]:
    with (folder / "metadata.csv").open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def pcm_hash(path: Path) -> str:
    samples = np.round(decode_audio(path, max_seconds=None) * 32768.0).astype(np.int16)
    return hashlib.sha256(samples.tobytes()).hexdigest()


def test_eval_set_size_speakers_and_licences():
    rows = read_metadata(EVAL)
    assert list(rows[0]) == ["file_name", "transcription", "speaker", "source", "language"]
    english = [row for row in rows if row["language"] == "en"]
    words = sum(len(normalize_text(row["transcription"]).split()) for row in english)
    assert words >= 1000
    assert len({row["speaker"] for row in english}) >= 3
    for source in {row["source"] for row in rows}:
        assert (EVAL / "LICENSES" / f"{source}.txt").is_file(), source
    listed = {row["file_name"] for row in rows}
    audio = EVAL / "audio"
    assert listed == {p.relative_to(EVAL).as_posix() for p in audio.rglob("*") if p.is_file()}
    assert all(row["transcription"].strip() for row in rows)
    assert all(row["speaker"] and row["source"] for row in rows)
    assert {row["language"] for row in rows} == {"en", *OTHER_LANGUAGES}


def test_eval_set_has_every_language_in_its_own_folder():
    rows = read_metadata(EVAL)
    # English first, in the order it had before the other languages came.
    languages = [row["language"] for row in rows]
    assert languages == sorted(languages, key=["en", *OTHER_LANGUAGES].index)
    for language in OTHER_LANGUAGES:
        group = [row for row in rows if row["language"] == language]
        words = sum(len(normalize_text(row["transcription"], language).split()) for row in group)
        assert len(group) >= 100 and words >= 800, (language, len(group), words)
        assert all(row["file_name"].startswith(f"audio/{language}/") for row in group)
        assert len({row["speaker"] for row in group}) == 1
        assert {row["source"] for row in group} == {f"asterisk-core-sounds-{language}"}
        licence = (EVAL / "LICENSES" / f"asterisk-core-sounds-{language}.txt").read_text()
        assert "Creative Commons" in licence and "1.6.1-1" in licence
    # Whole sentences: no clip of the other languages is a single word or a number.
    others = [row for row in rows if row["language"] != "en"]
    assert min(len(normalize_text(r["transcription"], r["language"]).split()) for r in others) >= 5


def test_eval_files_are_small():
    files = [p for p in EVAL.rglob("*") if p.is_file()]
    assert all(p.stat().st_size < MAX_FILE_BYTES for p in files)
    audio = [p for p in files if p.suffix == ".flac"]
    by_language = {
        language: [p for p in audio if p.parent == EVAL / "audio" / language]
        for language in OTHER_LANGUAGES
    }
    other = {p for paths in by_language.values() for p in paths}
    assert sum(p.stat().st_size for p in audio if p not in other) < MAX_TOTAL_BYTES
    for language, paths in by_language.items():
        assert sum(p.stat().st_size for p in paths) < MAX_LANGUAGE_BYTES, language


@requires_datasets
def test_nested_audiofolder_is_a_dataset_of_its_own(audiofolder):
    write_wav(audiofolder / "extra" / "audio" / "x.wav", 0.2)
    write_metadata(audiofolder / "extra", ["file_name", "text"], [["audio/x.wav", "extra clip"]])
    assert len(load_dataset_clips(audiofolder)) == 3
    (clip,) = load_dataset_clips(audiofolder / "extra")
    assert (clip.name, clip.reference) == ("audio/x.wav", "extra clip")


@requires_datasets
def test_split_folders_without_top_level_metadata(tmp_path):
    for split in ("train", "test"):
        write_wav(tmp_path / split / "a.wav", 0.2)
        write_metadata(tmp_path / split, ["file_name", "text"], [["a.wav", f"{split} clip"]])
    assert load_dataset_clips(tmp_path)[0].reference == "test clip"
    assert load_dataset_clips(tmp_path, split="train")[0].reference == "train clip"


@requires_datasets
def test_every_eval_file_decodes():
    rows = read_metadata(EVAL)
    clips = load_dataset_clips(EVAL)
    assert [c.name for c in clips] == [row["file_name"] for row in rows]
    assert [c.reference for c in clips] == [row["transcription"] for row in rows]
    labels = [(row["language"], row["speaker"], row["source"]) for row in rows]
    assert [(c.language, c.speaker, c.source) for c in clips] == labels
    assert all(c.error == "" and len(c.audio) > SAMPLE_RATE // 2 for c in clips)
    english = load_dataset_clips(EVAL, languages={"en"})
    assert [c.name for c in english] == [r["file_name"] for r in rows if r["language"] == "en"]


def test_eval_set_holds_no_tuning_clip():
    tuning = sorted(TEST_DATA.glob("*.wav"))
    assert len(tuning) >= 6
    eval_files = sorted(EVAL.rglob("*.flac"))
    file_hashes = {hashlib.sha256(p.read_bytes()).hexdigest() for p in eval_files}
    assert not file_hashes & {hashlib.sha256(p.read_bytes()).hexdigest() for p in tuning}
    # Same samples in another container would pass the file check; compare the decoded audio.
    assert not {pcm_hash(p) for p in eval_files} & {pcm_hash(p) for p in tuning}


def test_synthetic_part_is_labelled_and_multilingual():
    rows = read_metadata(EVAL / "synthetic")
    assert {row["language"] for row in rows} >= {"en", "de", "es", "fr"}
    assert all(row["source"] == "espeak-ng" for row in rows)
    assert all(row["speaker"].startswith("espeak-ng:") for row in rows)
    assert len({row["speaker"] for row in rows}) >= 8
    for row in rows:
        assert len(decode_audio(EVAL / "synthetic" / row["file_name"])) > SAMPLE_RATE // 2


@pytest.fixture
def make_eval_set(monkeypatch):
    """scripts/make_eval_set.py as a module."""
    spec = importlib.util.spec_from_file_location(
        "make_eval_set", REPO / "scripts/make_eval_set.py"
    )
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "make_eval_set", module)  # dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_sonnet_text_spells_what_is_read(make_eval_set):
    xhtml = (
        '<h1><span id="f001">II</span></h1>'
        '<span id="f002">Will be a tatter’d weed of beauty’s field,</span><br/>'
        '<span id="f003">If thou couldst answer ’This fair child of mine,’</span>'
    )
    assert make_eval_set.sonnet_text(xhtml) == (
        "2 Will be a tattered weed of beauty's field, If thou couldst answer This fair child of mine,"
    )


def test_other_languages_take_whole_spoken_sentences(tmp_path, make_eval_set, monkeypatch):
    module = make_eval_set
    sounds = tmp_path / "usr/share/asterisk/sounds/fr_test"
    lines = {
        "p-one": ("Un deux trois quatre cinq six.", 1.0),
        "p-two": ("Veuillez   composer le numéro suivi du dièse.", 2.0),  # spaces collapse
        "p-three": ("Pour accepter cet appel appuyez sur 1.", 1.5),
        "followme/options": ("Pour accepter cet appel, appuyez sur 1.", 2.0),  # kept folder
        "digits/count": ("un deux trois quatre cinq", 1.0),  # folder of numbers
        "p-short": ("Au revoir.", 0.5),  # fewer than 5 words
        "p-note": ("La conférence va commencer (enfatico) bientôt ici.", 1.0),
        "p-slash": ("Pour activer/désactiver le mode sourdine maintenant.", 1.0),
        "p-tag": ("[Son de singes qui crient] dans le bureau", 1.0),
        "p-long": ("Un menu très long qui dure longtemps.", 16.0),  # over 15 s
        "p-dup": ("Cette ligne est listée deux fois.", 1.0),
        "beeperr": ("un suono beep di errore adesso", 1.0),  # a sound effect, in words
        "p-spelled": ("D A H D I", 0.6),  # over 6 words per second: not what was said
        "p-lost": ("La chiamata non pu? essere completata.", 2.0),  # ? for a lost letter
    }
    for name, (_, seconds) in lines.items():
        write_wav(sounds / f"{name}.wav", seconds, rate=8000)
    listing = ["; Core Asterisk Sounds in French", ""]
    listing += [f"{name}: {text}" for name, (text, _) in lines.items()]
    listing += ["p-dup: Cette ligne est listée deux fois.", "p-noaudio: Cinq mots sans aucun son."]
    doc = tmp_path / "usr/share/doc/asterisk-core-sounds-fr"
    doc.mkdir(parents=True)
    (doc / "core-sounds-fr.txt.gz").write_bytes(
        gzip.compress(("\ufeff" + "\n".join(listing) + "\n").encode("utf-8"), mtime=0)
    )
    package = module.DebianPackage("asterisk-core-sounds-fr", "1.6.1-1", "0" * 64)
    voice = module.AsteriskVoice(
        "fr", package, package, "fr_test", "june-wallack", "credit", "CC BY-SA 3.0"
    )
    eligible = ["p-one", "p-two", "p-three", "followme/options"]
    order = sorted(eligible, key=lambda name: hashlib.sha256(name.encode()).hexdigest())

    monkeypatch.setattr(module, "MULTILINGUAL_MIN_CLIPS", 2)
    monkeypatch.setattr(module, "MULTILINGUAL_MIN_WORDS", 14)
    chosen = module.voice_utterances(tmp_path, voice)
    # In hash order until both minimums hold.
    expected, words = [], 0
    for name in order:
        if len(expected) >= 2 and words >= 14:
            break
        expected.append(name)
        words += len(normalize_text(" ".join(lines[name][0].split()), "fr").split())
    assert [u.file_stem for u in chosen] == [
        "fr/asterisk-" + name.replace("/", "-") for name in expected
    ]
    assert [u.transcription for u in chosen] == [" ".join(lines[n][0].split()) for n in expected]
    assert {(u.language, u.speaker, u.source) for u in chosen} == {
        ("fr", "june-wallack", "asterisk-core-sounds-fr")
    }

    monkeypatch.setattr(module, "MULTILINGUAL_MIN_CLIPS", 5)  # only 4 prompts qualify
    with pytest.raises(SystemExit, match="only 4 prompts"):
        module.voice_utterances(tmp_path, voice)


def test_prompt_lines_keep_the_published_text(make_eval_set):
    listing = "\ufeff; comment\n\nname-a:  Bonjour ,  le  monde…\nno colon here\nb/c: Привет\n"
    assert make_eval_set.prompt_lines(listing.encode("utf-8")) == [
        ("name-a", "Bonjour , le monde…"),
        ("b/c", "Привет"),
    ]
