"""Write long recordings for the long-form benchmark: 1, 3 and 10 minutes, and EN -> DE.

The English clips (language `en`) join the real read speech of the shipped evaluation set (eval/: LibriVox
sonnets and novel excerpts, telephony prompts, CMU Arctic) in the order of its
metadata.csv, with 0.6 s pauses, starting over from the first clip when a length needs more
than the set holds. The mixed clip is a real English sonnet followed by German espeak-ng
sentences (eval/synthetic). Each comes with its reference in refs.tsv.

    python scripts/long_clips.py /tmp/long
    python benchmark.py /tmp/long/*.flac --references /tmp/long/refs.tsv --model tiny.en
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.audio import SAMPLE_RATE, decode_audio  # noqa: E402

EVAL = ROOT / "eval"
PAUSE_S = 0.6
LENGTHS_MIN = (1, 3, 10)


def read_set(folder: Path, language: str) -> list[tuple[Path, str]]:
    """(audio file, transcription) of the set's clips in `language`, in metadata order."""
    with open(folder / "metadata.csv", encoding="utf-8", newline="") as f:
        return [
            (folder / row["file_name"], row["transcription"])
            for row in csv.DictReader(f)
            if row["language"] == language
        ]


def join(items: list[tuple[Path, str]], seconds: float | None) -> tuple[np.ndarray, str]:
    """Clips in turn with pauses, as many as fit in `seconds` (None: each clip once)."""
    pause = np.zeros(round(PAUSE_S * SAMPLE_RATE), np.float32)
    parts: list[np.ndarray] = []
    texts: list[str] = []
    length = 0
    index = 0
    while (seconds is None and index < len(items)) or (
        seconds is not None and length < seconds * SAMPLE_RATE
    ):
        path, text = items[index % len(items)]
        audio = decode_audio(path, max_seconds=None)
        if seconds is not None and length + len(audio) > seconds * SAMPLE_RATE and parts:
            break  # never cut a clip mid-word: stop before the one that does not fit
        parts += [audio, pause]
        texts.append(text)
        length += len(audio) + len(pause)
        index += 1
    return np.concatenate(parts), " ".join(texts)


def write_flac(path: Path, audio: np.ndarray) -> None:
    import av

    with av.open(str(path), "w", format="flac") as container:
        stream = container.add_stream("flac", rate=SAMPLE_RATE, layout="mono")
        samples = (np.clip(audio, -1, 1) * 32767).astype(np.int16)[None, :]
        frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    english = read_set(EVAL, "en")
    refs = []
    for minutes in LENGTHS_MIN:
        audio, text = join(english, minutes * 60.0)
        name = f"english-{minutes}min.flac"
        write_flac(args.out / name, audio)
        refs.append((name, text))
        print(f"{name}: {len(audio) / SAMPLE_RATE:.0f} s, {len(text.split())} reference words")
    sonnet = [item for item in english if "sonnet-001" in item[0].name]
    german = read_set(EVAL / "synthetic", "de")
    audio, text = join(sonnet + german, None)
    write_flac(args.out / "english-then-german.flac", audio)
    refs.append(("english-then-german.flac", text))
    print(f"english-then-german.flac: {len(audio) / SAMPLE_RATE:.0f} s")
    lines = [f"{name}\t{text}" for name, text in refs]
    (args.out / "refs.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
