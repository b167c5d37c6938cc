"""Turn comparisons and benchmark reports into table rows, chart data, markdown and a plot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .compare import ORIGINAL, Comparison, EngineResult
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


def _interval(value: float | None, bounds, signed: bool = False) -> str:
    if value is None:
        return ""
    fmt = "+.1%" if signed else ".1%"
    text = format(value, fmt)
    if bounds is not None:
        text += f" [{format(bounds[0], fmt)}, {format(bounds[1], fmt)}]"
    return text


def _ms(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds * 1000:.0f}"


def _speed(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def bench_rows(report: BenchReport) -> list[list]:
    rows = []
    original = report.engines.get(ORIGINAL)
    for e in report.engines.values():
        rows.append(
            [
                e.label,
                _ms(e.median_latency_s),
                _ms(e.best_latency_s),
                f"{e.rtf:.3f}" if e.rtf is not None else "",
                _speed(original and speedup(original.median_latency_s, e.median_latency_s)),
                _speed(original and speedup(original.best_latency_s, e.best_latency_s)),
                "" if e.ms_per_token_marginal is None else f"{e.ms_per_token_marginal:.1f}",
                "" if e.first_step_ms is None else f"{e.first_step_ms:.1f}",
                f"{e.memory_mib:.0f}",
                f"{e.memory_baseline_mib:.0f} / {e.memory_total_mib:.0f}",
                f"{e.peak_memory_mib:.0f}" if e.peak_memory_mib is not None else "",
                f"{e.disk_mib:.0f}",
                _interval(e.wer, e.wer_interval) or "n/a",
                _interval(e.wer_difference, e.wer_difference_interval, signed=True),
                f"{e.agreement_wer_vs_original:.1%} ({e.agreement_clips})"
                if e.agreement_wer_vs_original is not None
                else "",
                f"{e.windows} ({e.fallback_windows})",
                f"{e.flagged_outputs} / {e.empty_outputs}",
            ]
        )
    return rows


SECTION_ORDER = ("features", "encoder", "cross_kv", "language", "first_step", "decoder")


def section_rows(report: BenchReport) -> list[list]:
    """Median seconds per section, per engine, in ms ('decoder' includes 'first_step')."""
    rows = []
    for e in report.engines.values():
        sections = e.median_section_s
        rows.append([e.label] + [_ms(sections.get(name)) for name in SECTION_ORDER])
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
        "Median ms per section (decoder includes the first step):",
        "",
        markdown_table(("Engine", *SECTION_ORDER), section_rows(report)),
        "",
    ]
    s = report.summary
    words = s.get("words_scored")
    if "speedup" in s:
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
    if "speedup_from_runtime" in s:
        lines.append(
            f"Of that, the runtime, loop and graphs (onnx-fp32 vs original) give "
            f"{s['speedup_from_runtime']:.2f}x and int8 (quantized vs onnx-fp32) "
            f"{s['speedup_from_int8']:.2f}x; int8 holds {s['memory_saving_from_int8']:.0%} less "
            "memory than onnx-fp32."
        )
    words = next((e.reference_words for e in report.engines.values() if e.reference_words), None)
    if words:
        scored = usable - len(report.unscored_clips)
        lines.append(
            f"WER rests on {words} reference words in {scored} clips; intervals are 95% "
            "bootstrap intervals over clips (2000 resamples), the difference's paired (the "
            "same clips drawn for both engines)."
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


def plot_report(report: BenchReport, path) -> None:
    engines = list(report.engines.values())
    plot_bars(
        [e.label for e in engines],
        [e.median_latency_s * 1000 for e in engines],
        [e.memory_mib for e in engines],
        path,
        f"Whisper {report.model} on {report.machine['cpu']}, {report.machine['threads']} threads",
    )


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
