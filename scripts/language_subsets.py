"""Per-language paired figures from benchmark JSONs: on every clip, and on the clips whose
language the original hears right.

Reads the `utterances` of a benchmark run that has the original (benchmark.py --json, with
--dataset and a language column) and, optionally, runs of other builds that have only the
`quantized` engine (`NAME=run.json`), whose transcripts are paired with the first run's original
on the same clips. For each language and engine it prints the headline rate's paired difference
from the original with its interval over clips (per_language.language_sections, on the clips in
the run's order, so every clip's figure equals the benchmark's own), and the share of clips
whose detected language equals the original's:

- on every clip of the language (what the benchmark's per-language table shows);
- on the clips where the original detects the labelled language. On the others the original's
  own transcript is already in another language, and a quantized engine's text differs from it
  as one wrong-language transcript differs from another.

    python scripts/language_subsets.py docs/benchmark-languages-base.json \
        smoothed=docs/benchmark-languages-base-smoothquant.json --json out.json

`--if-languages-agreed` adds a third, counterfactual subset: every clip, with each engine's
transcript replaced by the original's wherever it detected another language than the
original. It says how much of an interval comes from changed languages and how much from text
written in the same language (docs/int8-languages.md section 9).

Runs of other builds may hold fewer languages than the first: all runs are then compared on
the languages every run holds, each with all of its clips.

Only the interval over clips is reported: each non-English language of eval/ has one voice,
so a bootstrap over speakers has nothing to resample there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.per_language import (  # noqa: E402
    EngineOutput,
    LabelledClip,
    language_sections,
)

SUBSETS = ("every clip", "original hears the label")
COUNTERFACTUAL = "every clip, changed languages given the original's text"


def _output(rows: list[dict], engine: str) -> EngineOutput:
    return EngineOutput(
        {r["clip"]: r[engine] for r in rows}, {r["clip"]: r[f"{engine}_language"] for r in rows}
    )


def _as_if_agreed(output: EngineOutput, original: EngineOutput) -> EngineOutput:
    """`output` with the original's text and language on every clip where its language differs."""
    texts, languages = dict(output.transcripts), dict(output.languages)
    for clip, language in output.languages.items():
        if language != original.languages[clip]:
            texts[clip], languages[clip] = original.transcripts[clip], original.languages[clip]
    return EngineOutput(texts, languages)


def figures(base: dict, others: dict[str, dict], if_agreed: bool = False) -> list[dict]:
    """One row per subset, language and engine (the original excluded)."""
    # The benchmark bootstraps its clips in the run's order (`clips`); `utterances` are sorted
    # by disagreement, and the seeded bootstrap's interval depends on the order.
    order = {c["name"]: i for i, c in enumerate(base.get("clips", []))}
    rows = sorted(base["utterances"], key=lambda r: order.get(r["clip"], len(order)))
    if not rows or rows[0].get("original") is None:
        raise SystemExit("the first run needs the original engine")
    # A run of some languages only (e.g. --languages es,fr,it,ru) is paired on those: every
    # run is compared on the languages they all hold.
    for name, run in others.items():
        held = {r["language"] for r in run["utterances"]}
        left_out = sorted({r["language"] for r in rows} - held)
        if left_out:
            print(f"{name} holds no {', '.join(left_out)}: left out", file=sys.stderr)
        rows = [r for r in rows if r["language"] in held]
    engines = {"original": _output(rows, "original"), "quantized": _output(rows, "quantized")}
    ours = {r["clip"]: r["reference"] for r in rows}
    for name, run in others.items():
        theirs = {r["clip"]: r["reference"] for r in run["utterances"]}
        theirs = {c: ref for c, ref in theirs.items() if c in ours}
        if theirs != ours:
            raise SystemExit(f"{name}: its clips or references differ from the first run's")
        kept = [r for r in run["utterances"] if r["clip"] in theirs]
        engines[name] = _output(kept, "quantized")
    out = []
    subsets = (*SUBSETS, COUNTERFACTUAL) if if_agreed else SUBSETS
    for subset in subsets:
        chosen = [
            r for r in rows if subset != SUBSETS[1] or r["original_language"] == r["language"]
        ]
        clips = [LabelledClip(r["clip"], r["language"], r["reference"], r["clip"]) for r in chosen]
        outputs = engines
        if subset == COUNTERFACTUAL:
            original = engines["original"]
            outputs = {
                name: output if name == "original" else _as_if_agreed(output, original)
                for name, output in engines.items()
            }
        for language, section in language_sections(clips, outputs, "original").items():
            for name, figure in section.engines.items():
                difference = figure.cer_difference if section.headline == "CER" else None
                difference = difference or figure.wer_difference
                if name == "original" or difference is None:
                    continue
                out.append(
                    {
                        "subset": subset,
                        "language": language,
                        "clips": section.clips,
                        "engine": name,
                        "headline": difference.kind,
                        "difference": difference.difference,
                        "interval_over_clips": difference.interval_over_clips,
                        "language_matches_original": figure.language_id.matches_original,
                    }
                )
    return out


def markdown(rows: list[dict]) -> str:
    lines = [
        "| clips | language | engine | headline − original [95% over clips] | language = original's |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        low, high = r["interval_over_clips"] or (float("nan"), float("nan"))
        lines.append(
            f"| {r['subset']} ({r['clips']}) | {r['language']} | {r['engine']} | "
            f"{r['headline']} {r['difference'] * 100:+.2f} [{low * 100:+.2f}, {high * 100:+.2f}]"
            f" | {r['language_matches_original']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a benchmark JSON with the original engine")
    parser.add_argument(
        "others", nargs="*", help="NAME=run.json: a run of another build's quantized engine"
    )
    parser.add_argument("--json", type=Path, help="write the rows here")
    parser.add_argument(
        "--if-languages-agreed",
        action="store_true",
        help="add the counterfactual subset: changed languages given the original's text",
    )
    args = parser.parse_args(argv)
    others = {}
    for item in args.others:
        name, _, path = item.partition("=")
        if not path:
            parser.error(f"expected NAME=run.json, not {item!r}")
        others[name] = json.loads(Path(path).read_text(encoding="utf-8"))
    base = json.loads(args.run.read_text(encoding="utf-8"))
    rows = figures(base, others, args.if_languages_agreed)
    print(markdown(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
