"""Turn comparisons and benchmark reports into table rows, chart data, markdown and a plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .compare import Comparison, EngineResult
from .coverage import MIN_DROPPED_S, format_span
from .engines import ORIGINAL, PYTORCH
from .measure import mib, speedup

if TYPE_CHECKING:
    from .bench import BenchReport


# The metric names of chart_rows, for a UI that charts each metric on its own.
LATENCY_METRIC = "Latency (ms)"
MEMORY_METRIC = "Memory held (MiB)"

TABLE_HEADERS = (
    "Engine",
    "Latency (ms)",
    "Real-time factor",
    "Speed-up vs original",
    "Memory held (MiB)",
    "Peak extra (MiB)",
    "Size on disk (MiB)",
    "WER vs reference",
    "Agreement with original",
    "Tokens/s",
    "Windows (fallback)",
)


def _percent(rate) -> str:
    return "" if rate is None else f"{rate.rate:.1%} ({rate.errors}/{rate.reference_length})"


def _agreement(result: EngineResult) -> str:
    if result.engine == ORIGINAL:
        return "(reference)"
    if result.agreement is None:
        return ""
    # Agreement is 1 - the other transcript's error rate against the original's.
    return f"{max(0.0, 1 - result.agreement.rate):.1%}"


def table_rows(comparison: Comparison) -> list[list]:
    """One row per engine, in TABLE_HEADERS order (numbers rounded for display)."""
    rows = []
    for r in comparison.results:
        t = r.transcription
        speedup = comparison.speedup(r.engine)
        rows.append(
            [
                r.label,
                round(t.latency_s * 1000),
                round(t.rtf, 3),
                "" if speedup is None else f"{speedup:.2f}x",
                round(mib(r.load.held_bytes), 1),
                "" if t.peak_memory_bytes is None else round(mib(t.peak_memory_bytes), 1),
                round(mib(r.load.weights_bytes), 1),
                _percent(r.error_rate) or "(no reference)",
                _agreement(r),
                round(t.tokens_per_s, 1),
                f"{t.windows} ({t.fallback_windows})",
            ]
        )
    return rows


def chart_rows(comparison: Comparison) -> list[dict]:
    """Long-format rows for a grouped bar chart: latency and memory per engine."""
    rows = []
    for r in comparison.results:
        rows.append(
            {
                "engine": r.label,
                "metric": "Latency (ms)",
                "value": round(r.transcription.latency_s * 1000, 1),
            }
        )
        rows.append(
            {
                "engine": r.label,
                "metric": "Memory held (MiB)",
                "value": round(mib(r.load.held_bytes), 1),
            }
        )
    return rows


BENCH_HEADERS = (
    "Engine",
    "Median latency (ms)",
    "Best-of-N (ms)",
    "RTF",
    "Speed-up",
    "Speed-up (best-of-N)",
    "Speed-up vs pytorch",
    "Speech covered (of original's)",
    "ms/token (marginal)",
    "First step (ms)",
    "Memory held (MiB)",
    "Baseline / total RSS (MiB)",
    "Peak extra (MiB)",
    "Disk (MiB)",
    "WER [95% CI]",
    "WER − original [95% CI]",
    "Disagreement with original (clips)",
    "Windows (fallback)",
    "Flagged / empty",
)


def _interval(value: float | None, bounds, signed: bool = False, n: int | None = None) -> str:
    """The value with its interval, or with "(n=K)" where too few clips or clusters (K) gave
    none."""
    if value is None:
        return ""
    fmt = "+.1%" if signed else ".1%"
    text = format(value, fmt)
    if bounds is not None:
        text += f" [{format(bounds[0], fmt)}, {format(bounds[1], fmt)}]"
    elif n is not None:
        text += f" (n={n})"
    return text


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}"


def _speed(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def _comparable(text: str, e) -> str:
    """A speed-up, marked when the engine left out speech the original transcribed."""
    return f"{text} (not comparable)" if text and not e.speedup_comparable else text


def _coverage(e) -> str:
    if e.speech_coverage_vs_original is None:
        return ""
    dropped = e.clips_with_dropped_span
    return f"{e.speech_coverage_vs_original:.1%}" + (
        f" ({dropped} clip{'s' if dropped != 1 else ''} with a dropped span)" if dropped else ""
    )


def bench_rows(report: BenchReport) -> list[list]:
    rows = []
    original = report.engines.get(ORIGINAL)
    torch_loop = report.engines.get(PYTORCH)
    for e in report.engines.values():
        rows.append(
            [
                e.label,
                _ms(e.median_latency_s),
                _ms(e.best_latency_s),
                f"{e.rtf:.3f}" if e.rtf is not None else "",
                _comparable(
                    _speed(original and speedup(original.median_latency_s, e.median_latency_s)), e
                ),
                _comparable(
                    _speed(original and speedup(original.best_latency_s, e.best_latency_s)), e
                ),
                _comparable(
                    _speed(torch_loop and speedup(torch_loop.median_latency_s, e.median_latency_s)),
                    e,
                ),
                _coverage(e),
                "" if e.ms_per_token_marginal is None else f"{e.ms_per_token_marginal:.1f}",
                "" if e.first_step_ms is None else f"{e.first_step_ms:.1f}",
                f"{e.memory_mib:.0f}",
                f"{e.memory_baseline_mib:.0f} / {e.memory_total_mib:.0f}",
                f"{e.peak_memory_mib:.0f}" if e.peak_memory_mib is not None else "",
                f"{e.disk_mib:.0f}",
                _interval(e.wer, e.wer_interval, n=e.interval_n) or "n/a",
                _interval(e.wer_difference, e.wer_difference_interval, signed=True, n=e.interval_n),
                f"{e.agreement_wer_vs_original:.1%} ({e.agreement_clips})"
                if e.agreement_wer_vs_original is not None
                else "",
                f"{e.windows} ({e.fallback_windows})",
                f"{e.flagged_outputs} / {e.empty_outputs}",
            ]
        )
    return rows


SECTION_ORDER = ("features", "encoder", "cross_kv", "language", "first_step", "decoder", "other")

COST_HEADERS = (
    "Engine",
    "Encoder (ms / 30 s window)",
    "Cross-attention K/V (ms / window)",
    "Decoder (ms / token)",
    "Memory held (MiB)",
    "Peak extra (MiB)",
    "Disk (MiB)",
)


def _number(value: float | None, fmt: str = ".1f") -> str:
    return "" if value is None else format(value, fmt)


def cost_rows(report: BenchReport) -> list[list]:
    """Per engine: encoder per window, decoder per token (after the prompt), memory, disk."""
    return [
        [
            e.label,
            _number(e.encoder_ms_per_window),
            _number(e.cross_kv_ms_per_window),
            _number(e.ms_per_token_steps, ".2f"),
            f"{e.memory_mib:.0f}",
            _number(e.peak_memory_mib, ".0f"),
            f"{e.disk_mib:.0f}",
        ]
        for e in report.engines.values()
    ]


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


def section_rows(report: BenchReport) -> list[list]:
    """Median seconds per section, per engine, in ms ('decoder' includes 'first_step')."""
    rows = []
    for e in report.engines.values():
        sections = e.median_section_s
        share = "" if e.section_share is None else f"{e.section_share:.0%}"
        rows.append([e.label] + [_ms(sections.get(name)) for name in SECTION_ORDER] + [share])
    return rows


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
        if name == ORIGINAL or (not spans and e.speedup_comparable):
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


def plot_report(report: BenchReport, path) -> None:
    engines = list(report.engines.values())
    plot_bars(
        [e.label for e in engines],
        [e.median_latency_s * 1000 for e in engines],
        [e.memory_mib for e in engines],
        path,
        f"Whisper {report.model} on {report.machine['cpu']}, {report.machine['threads']} threads",
    )


RECIPE_HEADERS = (
    "Variant",
    "Encoder",
    "Decoder",
    "Speed-up vs original",
    "Speed-up vs onnx-fp32",
    "Decoder (ms / step)",
    "Memory held (MiB)",
    "Peak extra (MiB)",
    "Disk (MiB)",
    "WER [95% CI]",
    "WER minus original's [95% CI]",
    "Disagreement with original",
)


def recipe_headers(report: BenchReport) -> tuple[str, ...]:
    """RECIPE_HEADERS, and per language two more when the run holds several languages: the
    CER difference from the original and the language-ID agreement with it."""
    languages = _recipe_languages(report)
    extra = [
        header
        for language in languages
        for header in (f"CER − original ({language})", f"Language ID = original's ({language})")
    ]
    return (*RECIPE_HEADERS, *extra)


def _recipe_languages(report: BenchReport) -> list[str]:
    return list(report.per_language) if len(report.per_language) > 1 else []


def recipe_rows(report: BenchReport) -> list[list]:
    """One row per engine with the recipe trade-off's figures: speed (median latency against
    the original's and onnx-fp32's), cost per token, memory, size, accuracy; per language
    (recipe_headers) the CER difference and language-ID agreement."""
    from .recipes import RECIPES

    original, fp32 = report.engines.get(ORIGINAL), report.engines.get("onnx-fp32")
    rows = []
    for name, e in report.engines.items():
        recipe = RECIPES.get(name)
        if recipe is not None:
            parts = [recipe.encoder, recipe.decoder]
        elif name in (ORIGINAL, PYTORCH):
            parts = ["fp32 (PyTorch)", "fp32 (PyTorch)"]
        else:
            parts = ["other runtime", "other runtime"]
        rows.append(
            [
                f"{name}",
                *parts,
                _comparable(
                    _speed(original and speedup(original.median_latency_s, e.median_latency_s)), e
                ),
                _comparable(_speed(fp32 and speedup(fp32.median_latency_s, e.median_latency_s)), e),
                _number(e.ms_per_token_steps, ".2f"),
                f"{e.memory_mib:.0f}",
                _number(e.peak_memory_mib, ".0f"),
                f"{e.disk_mib:.0f}",
                _interval(e.wer, e.wer_interval, n=e.interval_n) or "n/a",
                _interval(e.wer_difference, e.wer_difference_interval, signed=True, n=e.interval_n),
                f"{e.agreement_wer_vs_original:.1%} ({e.agreement_clips} clips)"
                if e.agreement_wer_vs_original is not None
                else "",
            ]
        )
        for language in _recipe_languages(report):
            figures = report.per_language[language].engines.get(name)
            if figures is None:
                rows[-1] += ["", ""]
                continue
            rows[-1] += [
                _language_figure(figures.cer_difference, signed=True),
                "(reference)" if name == ORIGINAL else _share(figures.language_id.matches_original),
            ]
    return rows


LANGUAGE_HEADERS = (
    "Language",
    "Engine",
    "CER [95% CI]",
    "CER − original",
    "WER [95% CI]",
    "WER − original",
    "Detected = label",
    "Detected = original's",
    "Heard instead",
    "Dropped spans (clips)",
)


def _share(value: float | None) -> str:
    return "" if value is None else f"{value:.1%}"


def _language_figure(figure, signed: bool = False, bold: bool = False) -> str:
    """A per_language Rate or Difference: the value, its interval over speakers (or sources),
    else its interval over clips marked so, else the number of clusters."""
    if figure is None:
        return ""
    value = figure.difference if signed else figure.rate
    fmt = "+.1%" if signed else ".1%"
    text = format(value, fmt)
    if bold:
        text = f"**{text}**"
    if figure.interval is not None:
        low, high = figure.interval
        return f"{text} [{format(low, fmt)}, {format(high, fmt)}]"
    if figure.interval_over_clips is not None:
        low, high = figure.interval_over_clips
        return f"{text} [{format(low, fmt)}, {format(high, fmt)}] over clips"
    return f"{text} (n={figure.units})"


def language_rows(report: BenchReport) -> list[list]:
    """One row per language and engine (per_language sections), the headline rate bold."""
    rows = []
    for language, section in report.per_language.items():
        for name, e in section.engines.items():
            heard = ", ".join(f"{code} {n}" for code, n in e.language_id.heard_instead.items())
            rows.append(
                [
                    language,
                    name,
                    _language_figure(e.cer, bold=section.headline == "CER"),
                    _language_figure(e.cer_difference, signed=True),
                    _language_figure(e.wer, bold=section.headline == "WER"),
                    _language_figure(e.wer_difference, signed=True),
                    _share(e.language_id.matches_label),
                    "(reference)" if name == ORIGINAL else _share(e.language_id.matches_original),
                    heard,
                    f"{e.dropped_spans} ({e.clips_with_dropped_span})",
                ]
            )
    return rows


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


def plot_tradeoff(report: BenchReport, path) -> None:
    """Accuracy against speed, one marker per engine, its area proportional to its size on
    disk: WER with its 95% interval when the clips have references, else the word
    disagreement with the original."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    original = report.engines.get(ORIGINAL)
    if original is None:
        raise ValueError("The trade-off plot needs the original among the engines")
    with_wer = all(e.wer is not None for e in report.engines.values())
    fig, ax = plt.subplots(figsize=(10, 5.2))
    largest = max(e.disk_mib for e in report.engines.values())
    values = []
    for index, (name, e) in enumerate(report.engines.items()):
        x = speedup(original.median_latency_s, e.median_latency_s)
        if with_wer:
            y = 100 * e.wer
            low, high = (100 * b for b in e.wer_interval) if e.wer_interval else (y, y)
        else:
            y = 100 * (e.agreement_wer_vs_original or 0.0)
            low = high = y
        values.append(y)
        color = f"C{index % 10}"
        ax.errorbar(x, y, yerr=[[y - low], [high - y]], fmt="none", ecolor=color, alpha=0.5)
        # A legend names the markers: labels beside them overprint where recipes cluster.
        ax.scatter(
            x,
            y,
            s=40 + 900 * e.disk_mib / largest,
            color=color,
            alpha=0.6,
            label=f"{name}: {x:.2f}x, {e.disk_mib:.0f} MiB",
        )
    ax.axvline(1.0, color="#999", lw=0.8, ls=":")
    positive = [v for v in values if v > 0]
    if positive and max(positive) > 5 * min(positive):
        # One recipe far off the others (int8-static on tiny.en) would flatten the rest on a
        # linear axis; a log axis keeps every marker readable.
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_xlabel("Speed-up vs the original (median latency per clip)")
    ax.set_ylabel(
        "WER (%) with 95% bootstrap interval" + (", log scale" if ax.get_yscale() == "log" else "")
        if with_wer
        else "Word disagreement with the original (%)"
    )
    ax.spines[["top", "right"]].set_visible(False)
    usable = sum(1 for c in report.clips if not c["error"])
    words = next((e.reference_words for e in report.engines.values() if e.reference_words), None)
    ax.set_title(
        f"Whisper {report.model}: accuracy vs speed, marker area ~ size on disk\n"
        f"{usable} clips"
        + (f", {words} reference words" if words else "")
        + f", {report.machine['cpu']}, {report.machine['threads']} threads",
        fontsize=10,
    )
    legend = ax.legend(
        loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, markerscale=0.5
    )
    for handle in legend.legend_handles:
        handle.set_sizes([40])
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def plot_bars(
    labels: Sequence[str],
    latency_ms: Sequence[float],
    memory_mib: Sequence[float],
    path,
    title: str,
    wer: Sequence[tuple[float, float, float]] | None = None,
) -> None:
    """Bar charts of latency and memory per engine, and of WER with its interval (rate, low,
    high) when given, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if wer else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2))
    colors = ["#7f7f7f", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd"][: len(labels)]
    for ax, values, name in (
        (axes[0], latency_ms, "Median latency per clip (ms)"),
        (axes[1], memory_mib, "Memory held by the model (MiB)"),
    ):
        bars = ax.bar(range(len(labels)), values, color=colors)
        ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right", fontsize=8)
        ax.set_title(name, fontsize=10)
        ax.bar_label(bars, fmt="%.0f", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    if wer:
        ax = axes[2]
        rates = [100 * w[0] for w in wer]
        errors = [[100 * (w[0] - w[1]) for w in wer], [100 * (w[2] - w[0]) for w in wer]]
        bars = ax.bar(range(len(labels)), rates, color=colors, yerr=errors, capsize=4)
        ax.set_xticks(range(len(labels)), labels, rotation=15, ha="right", fontsize=8)
        ax.set_title("WER (%) with 95% bootstrap interval", fontsize=10)
        ax.bar_label(bars, fmt="%.1f", fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
