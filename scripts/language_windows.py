"""Language per window on two-language recordings: what each engine hears, window by window.

Runs engines of a built model on recordings that switch language at `--switch` seconds (the
ones scripts/mixed_language_clip.py and scripts/long_clips.py write switch after the English
sonnet, at 53.87 s), with `language_per_window` on, and prints per engine and recording:
coverage (seconds the segments cover), the longest stretch no segment covers, windows, each
window's start, detected language and top-3 language probabilities, and the words written
after the switch. `--json` writes the same figures.

    python scripts/language_windows.py models/base clips/*.flac --engines original,quantized

An engine name may also be any variant subfolder of the model folder (for example one that
scripts/sensitivity.py wrote); it then runs as the `quantized` engine does.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant import longform  # noqa: E402
from whisper_quant.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from whisper_quant.engines import ENGINES, OnnxEngine  # noqa: E402

SWITCH_S = 53.87  # sonnet-001 (53.27 s) and one 0.6 s pause


@dataclass(frozen=True)
class Window:
    start_s: float
    language: str
    top3: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Probe:
    engine: str
    clip: str
    coverage_s: float
    longest_gap_s: float  # the longest stretch of the audio that no segment covers
    windows: int
    per_window: tuple[Window, ...]
    second_words: int  # words of the segments that start after the switch
    second_languages: tuple[str, ...]  # the languages those segments were written in
    second_text: str


def engine_for(name: str, model_dir: Path):
    """The registered engine, or the `quantized` engine reading another variant subfolder."""
    if name in ENGINES:
        return ENGINES[name](model_dir)
    variant = type(f"Variant_{name}", (OnnxEngine,), {"name": name, "subfolder": name})
    return variant(model_dir)


def probe(engine, audio, clip: str, switch_s: float = SWITCH_S) -> Probe:
    """One transcription with the language detected per window, and its figures."""
    detections: list = []
    starts: list[float] = []
    detect = longform.detect_language

    def recording(*args, **kwargs):
        detection = detect(*args, **kwargs)
        detections.append(detection)
        return detection

    longform.detect_language = recording
    try:
        result = engine.transcribe(
            audio, language_per_window=True, progress=lambda w, seek, total: starts.append(seek)
        )
    finally:
        longform.detect_language = detect
    covered = sorted((s.start, s.end) for s in result.segments)
    coverage = gap = 0.0
    reached = 0.0
    for start, end in covered:
        gap = max(gap, start - reached)
        coverage += max(0.0, end - max(start, reached))
        reached = max(reached, end)
    gap = max(gap, len(audio) / SAMPLE_RATE - reached)
    windows = tuple(
        Window(
            round(start, 2),
            d.language,
            tuple(
                (code, round(p, 3))
                for code, p in sorted(d.probs.items(), key=lambda kv: -kv[1])[:3]
            ),
        )
        for start, d in zip(starts, detections, strict=False)
    )
    second = [s for s in result.segments if s.start >= switch_s - 1.0]
    text = " ".join(s.text.strip() for s in second)
    return Probe(
        engine=engine.name,
        clip=clip,
        coverage_s=round(coverage, 1),
        longest_gap_s=round(gap, 1),
        windows=result.windows,
        per_window=windows,
        second_words=len(text.split()),
        second_languages=tuple(sorted({s.language for s in second})),
        second_text=text,
    )


def describe(p: Probe) -> str:
    windows = "; ".join(
        f"{w.start_s:.0f}s {w.language} ("
        + ", ".join(f"{c} {prob:.2f}" for c, prob in w.top3)
        + ")"
        for w in p.per_window
    )
    return (
        f"{p.clip} {p.engine}: coverage {p.coverage_s:.1f} s, gap {p.longest_gap_s:.1f} s, "
        f"{p.windows} windows, 2nd-language words {p.second_words} "
        f"{'/'.join(p.second_languages)} | {windows}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a built model folder (models/base)")
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--engines", default="original,onnx-fp32,quantized")
    parser.add_argument("--switch", type=float, default=SWITCH_S)
    parser.add_argument("--json", type=Path, help="write every probe here")
    parser.add_argument("--text", action="store_true", help="print the second part's text")
    args = parser.parse_args(argv)
    audio = {clip: decode_audio(clip, max_seconds=None) for clip in args.clips}
    probes = []
    for name in args.engines.split(","):
        engine = engine_for(name, args.model_dir)
        for clip, samples in audio.items():
            p = probe(engine, samples, clip.name, args.switch)
            probes.append(p)
            print(describe(p), flush=True)
            if args.text:
                print("   ", p.second_text)
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in probes], ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
