"""The benchmark report as markdown: its tables and the sentences that read them.

The tables' rows come from report.py; this module lays them out and writes what they show:
the headline speed-up and its split, the intervals, the build, dropped speech, the clips
quantized and original disagree on most.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .coverage import MIN_DROPPED_S, format_span, short_chunk_note
from .engines import ORIGINAL
from .report import (
    BENCH_HEADERS,
    COST_HEADERS,
    LANGUAGE_HEADERS,
    SECTION_ORDER,
    bench_rows,
    cost_rows,
    language_rows,
    recipe_headers,
    recipe_rows,
    section_rows,
)

if TYPE_CHECKING:
    from .bench import BenchReport


def markdown_report(report: BenchReport) -> str:
    m = report.machine
    usable = sum(1 for c in report.clips if not c["error"])
    lines = [
        f"**{report.model}** on {m['cpu']}, {m['threads']} threads, "
        f"{report.settings['decoding']} decoding, {len(report.engines)} engines, "
        f"{usable} clips x {report.settings['repeat']} repeats ({m['note']}).",
        "",
        markdown_table(BENCH_HEADERS, bench_rows(report)),
        "",
        "Median ms per section (decoder includes the first step, every step timed whole; "
        "other is the rest of the total; timed is the sections' share of the median latency):",
        "",
        markdown_table(("Engine", *SECTION_ORDER, "timed"), section_rows(report)),
        "",
        "Per 30 s window and per decoded token (decoder time after each window's prompt step "
        "over the steps it took), memory and disk:",
        "",
        markdown_table(COST_HEADERS, cost_rows(report)),
        "",
        "Recipes side by side (speed-ups by median latency per clip; decoder cost per step "
        "after the prompt; WER difference paired over the same clips):",
        "",
        markdown_table(recipe_headers(report), recipe_rows(report)),
        "",
    ]
    if report.per_language:
        lines += [
            language_note(report),
            "",
            markdown_table(LANGUAGE_HEADERS, language_rows(report)),
            "",
        ]
    if report.settings.get("fixed_tokens") is not None:
        lines.append(
            f"Every engine decoded exactly {report.settings['fixed_tokens']} forced tokens per "
            "window, the same token ids for every engine (--fixed-tokens): equal work, "
            "transcripts and WER mean nothing."
        )
    for name, reason in report.skipped_engines.items():
        lines.append(f"Skipped {name}: {reason}.")
    if build_line(report):
        lines.append(build_line(report))
    s = report.summary
    words = s.get("words_scored")
    if "speedup_vs_pytorch" in s:
        lines.append(
            f"Quantized vs pytorch (the same model through the same loop): "
            f"**{s['speedup_vs_pytorch']:.2f}x** faster by median"
            + ("" if s.get("speedup_comparable", True) else " (not comparable)")
            + (
                f"; vs the stock original (transformers generate) {s['speedup']:.2f}x "
                f"({s['speedup_best']:.2f}x best-of-N), **{s['memory_saving']:.0%}** less "
                "memory held"
                if "speedup" in s
                else ""
            )
            + (
                f", WER delta {s['wer_delta'] * 100:+.1f} points on {words} reference words"
                if "wer_delta" in s
                else ""
            )
            + "."
        )
    elif "speedup" in s:
        lines.append(
            f"Quantized vs original: **{s['speedup']:.2f}x** faster by median "
            f"({s['speedup_best']:.2f}x best-of-N), "
            f"**{s['memory_saving']:.0%}** less memory held"
            + (
                f", WER delta {s['wer_delta'] * 100:+.1f} points on {words} reference words"
                if "wer_delta" in s
                else ""
            )
            + "."
        )
    if "speedup_split" in s:
        split = s["speedup_split"]
        lines.append(
            "The speed-up in three parts: transformers generate to pytorch (generate's own "
            f"extra passes) {split['original_to_pytorch']:.2f}x, pytorch to onnx-fp32 (the "
            f"runtime and graphs) {split['pytorch_to_onnx-fp32']:.2f}x, onnx-fp32 to "
            f"quantized (int8) {split['onnx-fp32_to_quantized']:.2f}x; int8 holds "
            f"{s['memory_saving_from_int8']:.0%} less memory than onnx-fp32."
        )
    elif "speedup_from_runtime" in s:
        lines.append(
            f"Of that, the runtime, loop and graphs (onnx-fp32 vs original) give "
            f"{s['speedup_from_runtime']:.2f}x and int8 (quantized vs onnx-fp32) "
            f"{s['speedup_from_int8']:.2f}x; int8 holds {s['memory_saving_from_int8']:.0%} less "
            "memory than onnx-fp32."
        )
    lines += dropped_lines(report)
    words = next((e.reference_words for e in report.engines.values() if e.reference_words), None)
    if words:
        scored = usable - len(report.unscored_clips)
        lines.append(
            f"WER rests on {words} reference words in {scored} clips; "
            + bootstrap_note(report.settings.get("bootstrap"))
        )
        extra = [
            f"{e.label} {e.wer_extra_rules:.1%}"
            for e in report.engines.values()
            if e.wer_extra_rules is not None
        ]
        if extra:
            rules = " and ".join(report.settings.get("wer_extra_rules", []))
            lines.append(
                "WER after Whisper's normalisers as they are; with the extra rules "
                f"({rules}): " + ", ".join(extra) + "."
            )
    if report.utterances:
        worst = [u for u in report.utterances if u["disagreement"]][:10]
        if worst:
            lines += ["", "Clips where quantized and original disagree most:", ""]
            lines.append(
                markdown_table(
                    ("Clip", "Reference", "Original", "Quantized", "Words apart"),
                    [
                        [
                            u["clip"],
                            u["reference"],
                            u["original"],
                            u["quantized"],
                            u["disagreement"],
                        ]
                        for u in worst
                    ],
                )
            )
            lines.append("")
    if report.failed_clips:
        lines.append(
            "Failed clips: " + "; ".join(f"{k}: {v}" for k, v in report.failed_clips.items())
        )
    if report.unscored_clips:
        lines.append("Left out of WER (no reference): " + ", ".join(report.unscored_clips))
    fused = {n: e.encoder_attention_fused for n, e in report.engines.items()}
    lines.append(
        "Encoder attention fused: "
        + ", ".join(
            f"{n} {'yes' if f else 'no' if f is False else 'n/a'}" for n, f in fused.items()
        )
        + "."
    )
    return "\n".join(lines) + "\n"


def bootstrap_note(bootstrap: dict | None) -> str:
    """How the intervals were drawn, from the report's settings["bootstrap"]."""
    bootstrap = bootstrap or {"unit": "clip", "units": None, "min_units": 10, "resamples": 2000}
    unit, units, least = bootstrap["unit"], bootstrap["units"], bootstrap["min_units"]
    if units is not None and units < least:
        return (
            f"no 95% bootstrap interval: {units} {unit}s are fewer than the {least} an "
            f"interval needs, so n={units} is shown instead."
        )
    if unit == "clip":
        over = "95% bootstrap intervals over clips"
    else:
        over = f"95% cluster-bootstrap intervals over the {units} {unit}s, each with all its clips"
    return (
        f"intervals are {over} ({bootstrap['resamples']} resamples), the difference's paired "
        f"(the same {unit}s drawn for both engines)."
    )


def dropped_lines(report: BenchReport) -> list[str]:
    """One sentence per engine that left out speech the original transcribed: the spans
    per clip, its coverage, and whether its speed-up still compares."""
    lines = []
    for name, e in report.engines.items():
        spans = {
            clip: [format_span(span) for span in c["dropped_spans"]]
            for clip, c in e.clip_coverage.items()
            if c["dropped_spans"]
        }
        if name == ORIGINAL:
            continue
        chunks = [
            (clip, *chunk)
            for clip, c in e.clip_coverage.items()
            for chunk in c.get("short_chunks", [])
        ]
        if chunks:
            lines.append(short_chunk_note(name, chunks))
        if not spans and e.speedup_comparable:
            continue
        where = "; ".join(f"{', '.join(found)} of {clip}" for clip, found in spans.items())
        coverage = e.speech_coverage_vs_original
        lines.append(
            f"{name} did not transcribe "
            + (where or "part of the speech")
            + " that the original transcribed"
            + (
                f" (it covered {coverage:.0%} of the original's speech)"
                if coverage is not None
                else ""
            )
            + (
                "."
                if e.speedup_comparable
                else ": it did less work, so its speed-up is not comparable."
            )
        )
    return lines


def language_note(report: BenchReport) -> str:
    """What the per-language table shows and how its intervals were drawn."""
    sizes = "; ".join(
        f"{language} {s.scored_clips} clips, {s.reference_words or 0} words, "
        f"{s.reference_characters or 0} characters, {s.bootstrap_unit_count} "
        f"cluster{'s' if s.bootstrap_unit_count != 1 else ''}"
        for language, s in report.per_language.items()
    )
    return (
        "Per language (each language's own normaliser; the headline rate in bold: CER for "
        "every language but English). Intervals are 95% cluster-bootstrap intervals over "
        "speakers (else sources); where a language has too few of them the interval over its "
        "clips is shown, marked 'over clips': it covers other prompts of the same voices, not "
        "other voices. Differences are paired over the same clips. Language identification "
        "is the first window's detected language. Dropped spans: stretches of at least "
        f"{MIN_DROPPED_S:g} s of the original's speech an engine left out (clips with one). {sizes}."
    )


def build_line(report: BenchReport) -> str:
    """The model's build time and peak memory, from its manifest."""
    build = report.build
    if not build or not build.get("stages_s"):
        return ""
    stages = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in build["stages_s"].items())
    line = f"Build of {report.model}: {build['total_s']:.1f} s ({stages})"
    if build.get("peak_mib") is not None:
        peaks = ", ".join(f"{k} {v:,.0f}" for k, v in build["peak_rss_mib"].items())
        line += f", peak RSS {build['peak_mib']:,.0f} MiB ({peaks})"
    return line + "."


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
