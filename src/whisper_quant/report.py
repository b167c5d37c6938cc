"""Table rows and chart data: one comparison's, and the benchmark report's tables.

The markdown that lays the benchmark's tables out is report_markdown.py; its charts, plots.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .compare import Comparison, EngineResult
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


def section_rows(report: BenchReport) -> list[list]:
    """Median seconds per section, per engine, in ms ('decoder' includes 'first_step')."""
    rows = []
    for e in report.engines.values():
        sections = e.median_section_s
        share = "" if e.section_share is None else f"{e.section_share:.0%}"
        rows.append([e.label] + [_ms(sections.get(name)) for name in SECTION_ORDER] + [share])
    return rows


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
