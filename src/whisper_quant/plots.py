"""The benchmark's charts as PNG files (matplotlib, imported when a chart is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .engines import ORIGINAL
from .measure import speedup

if TYPE_CHECKING:
    from .bench import BenchReport


def plot_report(report: BenchReport, path) -> None:
    engines = list(report.engines.values())
    plot_bars(
        [e.label for e in engines],
        [e.median_latency_s * 1000 for e in engines],
        [e.memory_mib for e in engines],
        path,
        f"Whisper {report.model} on {report.machine['cpu']}, {report.machine['threads']} threads",
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
