"""Write 5-10 s clips joined from the shipped recordings, with their references.

    python scripts/joined_clips.py /tmp/joined
    python benchmark.py /tmp/joined/*.wav --references /tmp/joined/refs.tsv --model tiny.en

The shipped English clips are 1-3.5 s; the speed targets are stated for read speech of
2-10 s per clip, where more tokens are decoded per clip. These clips put 2-4 of the real
recordings one after another with 0.4 s of silence between them. They reuse the same six
recordings, so they check latency on longer clips, not accuracy on new speech.
"""

from __future__ import annotations

import argparse
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.bench import read_references  # noqa: E402

DATA = ROOT / "tests" / "data"
RATE = 16000
GAP_S = 0.4
JOINS = {
    "joined-a.wav": ("goforward.wav", "cards-005.wav"),
    "joined-b.wav": ("cards-001.wav", "cards-002.wav", "cards-003.wav"),
    "joined-c.wav": ("cards-004.wav", "goforward.wav", "cards-001.wav"),
    "joined-d.wav": ("cards-005.wav", "cards-003.wav", "cards-002.wav", "cards-004.wav"),
    "joined-e.wav": ("goforward.wav", "cards-002.wav", "cards-003.wav"),
    "joined-f.wav": ("cards-001.wav", "cards-005.wav"),
}


def read_pcm16(path: Path) -> np.ndarray:
    with wave.open(str(path)) as clip:
        if (clip.getframerate(), clip.getnchannels(), clip.getsampwidth()) != (RATE, 1, 2):
            raise SystemExit(f"{path}: expected 16 kHz mono 16-bit PCM")
        return np.frombuffer(clip.readframes(clip.getnframes()), dtype="<i2")


def write_pcm16(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(RATE)
        clip.writeframes(samples.astype("<i2").tobytes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    references = read_references(DATA / "refs.tsv")
    args.out_dir.mkdir(parents=True, exist_ok=True)
    gap = np.zeros(int(GAP_S * RATE), dtype="<i2")
    lines = []
    for name, parts in JOINS.items():
        pieces = []
        for part in parts:
            pieces += [read_pcm16(DATA / part), gap]
        samples = np.concatenate(pieces[:-1])
        write_pcm16(args.out_dir / name, samples)
        text = " ".join(references[part] for part in parts)
        lines.append(f"{name}\t{text}")
        print(f"{name}: {len(samples) / RATE:.1f} s, {len(text.split())} words")
    (args.out_dir / "refs.tsv").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
