"""Turn comparisons and benchmark results into table rows, chart data, markdown and a plot."""

from __future__ import annotations

from collections.abc import Sequence

from .compare import ORIGINAL, Comparison, EngineResult
from .measure import mib

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
) -> None:
    """A two-panel bar chart (latency, memory) per engine, saved as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
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
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
