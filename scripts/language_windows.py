"""Language per window on two-language recordings: what each engine hears, window by window.

Runs engines of a built model on recordings that switch language at `--switch` seconds (the
ones scripts/mixed_language_clip.py and scripts/long_clips.py write switch after the English
sonnet, at 53.87 s), with `language_per_window` on, and prints per engine and recording:
coverage (seconds the segments cover), the longest stretch no segment covers, windows, each
window's start, detected language and top-3 language probabilities, and the words written
after the switch. With `--refs` (the refs.tsv scripts/mixed_language_clip.py writes), each part
is scored against its reference: the segments written in English against the sonnet, the
others against the second part's prompts (WER, CER, and the reference words written right).
`--json` writes the same figures.

    python scripts/language_windows.py models/base clips/*.flac --engines original,quantized

An engine name may also be any variant subfolder of the model folder (for example one that
scripts/sensitivity.py wrote); it then runs as the `quantized` engine does.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant import longform  # noqa: E402
from whisper_quant.audio import SAMPLE_RATE, decode_audio  # noqa: E402
from whisper_quant.engines import ENGINES, OnnxEngine  # noqa: E402
from whisper_quant.longform_options import EARLY_END_RESUME_S  # noqa: E402
from whisper_quant.metrics import character_error_rate, word_error_rate  # noqa: E402

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
    # With --refs (the refs.tsv scripts/mixed_language_clip.py writes): the segments are split by
    # the language they were written in, English (the first part) or not, and each side is
    # scored against its part's reference. `second_hits` counts the second part's reference
    # words the engine wrote correctly (jiwer's hits after the language's normaliser): the
    # figure "transcribes N% of the words the original transcribes" compares these.
    first_wer: float | None = None
    first_hits: int | None = None
    first_reference_words: int | None = None
    second_cer: float | None = None
    second_hits: int | None = None
    second_reference_words: int | None = None


@dataclass(frozen=True)
class References:
    """The two parts of a mixed recording: English, then `language` from `switch_s`."""

    first: str
    second: str
    language: str
    switch_s: float


def read_references(refs: Path) -> dict[str, References]:
    """refs.tsv's lines (file name, switch in seconds, second part's text) with the English
    part's text: the evaluation set's sonnet-001, which every mixed recording starts with."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from long_clips import EVAL, read_set

    sonnet = next(text for path, text in read_set(EVAL, "en") if "sonnet-001" in path.name)
    found = {}
    for line in refs.read_text(encoding="utf-8").splitlines():
        name, switch, text = line.split("\t")
        language = Path(name).stem.rsplit("-", 1)[-1]
        found[name] = References(sonnet, text, language, float(switch))
    return found


def scored(p: Probe, segments, refs: References) -> Probe:
    """`p` with both parts scored against `refs`, the segments split by their language."""
    first = " ".join(s.text.strip() for s in segments if s.language == "en")
    second = " ".join(s.text.strip() for s in segments if s.language != "en")
    english = word_error_rate(refs.first, first, "en")
    words = word_error_rate(refs.second, second, refs.language)
    characters = character_error_rate(refs.second, second, refs.language)
    return replace(
        p,
        first_wer=round(english.rate, 4),
        first_hits=english.reference_length - english.substitutions - english.deletions,
        first_reference_words=english.reference_length,
        second_cer=round(characters.rate, 4),
        second_hits=words.reference_length - words.substitutions - words.deletions,
        second_reference_words=words.reference_length,
    )


def engine_for(name: str, model_dir: Path):
    """The registered engine, or the `quantized` engine reading another variant subfolder."""
    if name in ENGINES:
        return ENGINES[name](model_dir)
    variant = type(f"Variant_{name}", (OnnxEngine,), {"name": name, "subfolder": name})
    return variant(model_dir)


def probe(
    engine,
    audio,
    clip: str,
    switch_s: float = SWITCH_S,
    resume_s: float | None = EARLY_END_RESUME_S,
    refs: References | None = None,
) -> Probe:
    """One transcription with the language detected per window, and its figures.

    `resume_s` is `early_end_resume_s`: the app's and the benchmark's value by default, None for
    the reference's seeking alone. With `refs`, both parts are scored against them."""
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
            audio,
            language_per_window=True,
            early_end_resume_s=resume_s,
            progress=lambda w, seek, total: starts.append(seek),
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
    found = Probe(
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
    return found if refs is None else scored(found, result.segments, refs)


def describe(p: Probe) -> str:
    windows = "; ".join(
        f"{w.start_s:.0f}s {w.language} ("
        + ", ".join(f"{c} {prob:.2f}" for c, prob in w.top3)
        + ")"
        for w in p.per_window
    )
    scores = (
        ""
        if p.second_hits is None
        else f" | English WER {p.first_wer:.1%} ({p.first_hits}/{p.first_reference_words} "
        f"words right), 2nd language CER {p.second_cer:.1%}, {p.second_hits}/"
        f"{p.second_reference_words} words right"
    )
    return (
        f"{p.clip} {p.engine}: coverage {p.coverage_s:.1f} s, gap {p.longest_gap_s:.1f} s, "
        f"{p.windows} windows, 2nd-language words {p.second_words} "
        f"{'/'.join(p.second_languages)}{scores} | {windows}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="a built model folder (models/base)")
    parser.add_argument("clips", type=Path, nargs="+")
    parser.add_argument("--engines", default="original,onnx-fp32,quantized")
    parser.add_argument("--switch", type=float, default=SWITCH_S)
    parser.add_argument("--json", type=Path, help="write every probe here")
    parser.add_argument(
        "--refs",
        type=Path,
        help="refs.tsv of scripts/mixed_language_clip.py: score both parts against it",
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="leave early_end_resume_s unset (the reference's seeking alone; the app sets "
        f"{EARLY_END_RESUME_S:g} s with language per window)",
    )
    parser.add_argument("--text", action="store_true", help="print the second part's text")
    args = parser.parse_args(argv)
    audio = {clip: decode_audio(clip, max_seconds=None) for clip in args.clips}
    references = read_references(args.refs) if args.refs else {}
    probes = []
    for name in args.engines.split(","):
        engine = engine_for(name, args.model_dir)
        for clip, samples in audio.items():
            resume_s = None if args.no_resume else EARLY_END_RESUME_S
            refs = references.get(clip.name)
            switch = refs.switch_s if refs else args.switch
            p = probe(engine, samples, clip.name, switch, resume_s, refs)
            probes.append(p)
            print(describe(p), flush=True)
            if args.text:
                print("   ", p.second_text)
    if args.json:
        args.json.write_text(json.dumps([asdict(p) for p in probes], ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
