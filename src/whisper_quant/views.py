"""What the page and the reports say about a comparison: every result text, without Gradio.

`app.py` draws these strings and tables; `run_report.py` writes some of them into the run's
report. Each function takes a result (`compare.Comparison`, `batch.BatchResult`) and returns
text, table rows or HTML, so all of it can be tested without the page.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from .batch import BatchResult
from .compare import Comparison
from .coverage import (
    COMPARABLE_COVERAGE,
    ClipCoverage,
    Span,
    aggregate,
    chunk_words,
    clip_coverage,
    format_span,
    short_chunk_note,
    short_chunks,
)
from .engines import ONNX_FP32, ORIGINAL, PYTORCH, QUANTIZED, Transcription
from .layout import CONFIG_FILE, ONNX_FP32_DIR, ORIGINAL_DIR, QUANTIZED_DIR
from .manifest import ModelIntegrityError, read_manifest
from .measure import MEMORY_METHOD, mib, timing_method
from .metrics import DIFF_ADDED, DIFF_CHANGED, DIFF_MISSING, word_diff
from .models import SYNTHETIC_NOTE
from .report import TABLE_HEADERS, table_rows
from .settings import Settings

# The bold sentence a synthetic model's results open with, on the page and in the batch.
SYNTHETIC_HEADING = f"**{SYNTHETIC_NOTE[0].upper() + SYNTHETIC_NOTE[1:]}.**"
# The anchor of the README's section, and the page's accordion, on how figures are measured.
README_SECTION = "how-the-figures-are-measured"
# The word diff's colours, on the page's highlighted transcript and in the variants view.
DIFF_COLORS = {DIFF_CHANGED: "#f59e0b", DIFF_ADDED: "#3b82f6", DIFF_MISSING: "#ef4444"}
VARIANT_STYLE = "margin: 0 0 10px; padding-left: 8px; border-left: 3px solid #d1d5db"
# Beside the speed-up of a variant that covered less than coverage.COMPARABLE_COVERAGE of
# the original's speech.
NOT_COMPARABLE = "not comparable: it did less work"
# The results table: the report's columns (report.TABLE_HEADERS), then the ones added since,
# at the end, so API callers reading the table by header or position keep working.
SPEEDUP_VS_PYTORCH = "Speed-up vs PyTorch (same loop)"
SPEECH_COVERAGE = "Speech covered (share of the original's)"
RESULT_HEADERS = (*TABLE_HEADERS, SPEEDUP_VS_PYTORCH, SPEECH_COVERAGE)
_SPEEDUP_VS_ORIGINAL = TABLE_HEADERS.index("Speed-up vs original")

# Whisper's languages (openai/whisper, tokenizer.py), for labels in the language menu: the
# app process would otherwise import transformers (seconds and a few hundred MiB) for them.
_LANGUAGE_NAMES = """
en English, zh Chinese, de German, es Spanish, ru Russian, ko Korean, fr French, ja Japanese,
pt Portuguese, tr Turkish, pl Polish, ca Catalan, nl Dutch, ar Arabic, sv Swedish, it Italian,
id Indonesian, hi Hindi, fi Finnish, vi Vietnamese, he Hebrew, uk Ukrainian, el Greek,
ms Malay, cs Czech, ro Romanian, da Danish, hu Hungarian, ta Tamil, no Norwegian, th Thai,
ur Urdu, hr Croatian, bg Bulgarian, lt Lithuanian, la Latin, mi Maori, ml Malayalam,
cy Welsh, sk Slovak, te Telugu, fa Persian, lv Latvian, bn Bengali, sr Serbian,
az Azerbaijani, sl Slovenian, kn Kannada, et Estonian, mk Macedonian, br Breton, eu Basque,
is Icelandic, hy Armenian, ne Nepali, mn Mongolian, bs Bosnian, kk Kazakh, sq Albanian,
sw Swahili, gl Galician, mr Marathi, pa Punjabi, si Sinhala, km Khmer, sn Shona,
yo Yoruba, so Somali, af Afrikaans, oc Occitan, ka Georgian, be Belarusian, tg Tajik,
sd Sindhi, gu Gujarati, am Amharic, yi Yiddish, lo Lao, uz Uzbek, fo Faroese,
ht Haitian Creole, ps Pashto, tk Turkmen, nn Nynorsk, mt Maltese, sa Sanskrit,
lb Luxembourgish, my Myanmar, bo Tibetan, tl Tagalog, mg Malagasy, as Assamese, tt Tatar,
haw Hawaiian, ln Lingala, ha Hausa, ba Bashkir, jw Javanese, su Sundanese, yue Cantonese
"""
LANGUAGE_NAMES: dict[str, str] = dict(
    entry.strip().split(" ", 1) for entry in _LANGUAGE_NAMES.replace("\n", " ").split(",")
)


def language_label(code: str) -> str:
    name = LANGUAGE_NAMES.get(code)
    return f"{name} ({code})" if name else code


# --- one clip -------------------------------------------------------------------------------


def transcript(comparison: Comparison, engine: str) -> str:
    result = comparison.get(engine)
    return result.transcription.text if result is not None else ""


def quantized_diff(comparison: Comparison) -> list[tuple[str, str | None]]:
    """The quantized transcript's words marked against the original's (changed, added,
    missing), as the page highlights them; empty when the quantized engine did not run."""
    if comparison.get(QUANTIZED) is None:
        return []
    original, quantized = transcript(comparison, ORIGINAL), transcript(comparison, QUANTIZED)
    return word_diff(original, quantized, comparison.language, show_missing=True)


def notice(comparison: Comparison) -> str:
    """The comparison's notice (a silent clip, say), in bold; empty without one."""
    return f"**{comparison.notice}**" if comparison.notice else ""


def summary(comparison: Comparison) -> str:
    """One line on what ran: model, clip length, language and the order of the engines."""
    if not comparison.results:
        return ""
    parts = [f"**{comparison.model}**", f"{comparison.audio_s:.1f} s clip"]
    if comparison.language:
        parts.append(f"language: {language_label(comparison.language)}")
    labels = {r.engine: r.label for r in comparison.results}
    parts.append(
        "ran in this order: "
        + " → ".join(labels[name] for name in comparison.order)
        + f" (shuffled, seed {comparison.order_seed})"
    )
    line = " · ".join(parts)
    if comparison.options.fixed_tokens:
        line = (
            f"Every engine decoded the same {comparison.options.fixed_tokens} forced tokens "
            "per window (equal work); no WER.\n\n" + line
        )
    if comparison.synthetic:
        line = f"{SYNTHETIC_HEADING} " + line
    line += "\n\n" + windows_line(comparison)
    line += "\n\n" + speedup_split(comparison)
    for dropped in dropped_lines(comparison):
        line += f"\n\n**Left out speech:** {dropped}"
    line += "\n\n" + memory_parts(comparison)
    detected = {
        r.label: r.transcription.language for r in comparison.results if r.transcription.language
    }
    if len(set(detected.values())) > 1:
        each = ", ".join(
            f"{label} heard {language_label(code)}" for label, code in detected.items()
        )
        line += f"\n\n**The engines detected different languages:** {each}."
    return line


def windows_line(comparison: Comparison) -> str:
    """How many 30 s windows each engine decoded, and how many needed temperature fallback."""
    parts = []
    for r in comparison.results:
        t = r.transcription
        part = f"{r.label} {t.windows} windows, {t.fallback_windows} with fallback"
        if t.skipped_windows:
            part += f", {t.skipped_windows} skipped as silence"
        parts.append(part)
    line = "Windows: " + "; ".join(parts) + "."
    if any(r.transcription.fallback_windows for r in comparison.results):
        line += (
            " A window that fell back was decoded by sampling, with each engine's own random "
            "numbers: differences there are the sampler's, not quantization's."
        )
    return line


def clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{secs:04.1f}"


def segments_by_engine(comparison: Comparison) -> dict[str, list[dict]]:
    """Each engine's segments for API callers: start, end, text, language, temperature."""
    return {
        r.engine: [
            {
                "start": round(s.start, 2),
                "end": round(s.end, 2),
                "text": s.text.strip(),
                "language": s.language,
                "temperature": s.temperature,
            }
            for s in r.transcription.segments
        ]
        for r in comparison.results
    }


def timestamped(comparison: Comparison) -> str:
    """Each engine's segments, one line each with start and end, for the page."""
    blocks = []
    for r in comparison.results:
        lines = [
            f"`{clock(s.start)} → {clock(s.end)}`"
            + (f" [{s.language}]" if s.language and comparison.options.language_per_window else "")
            + (f" (t={s.temperature:g})" if s.temperature else "")
            + f" {s.text.strip()}"
            for s in r.transcription.segments
            if s.text.strip()
        ]
        blocks.append(f"**{r.label}**\n\n" + ("  \n".join(lines) or "(no segments)"))
    return "\n\n".join(blocks)


def write_subtitles(comparison: Comparison, folder: Path) -> list[Path]:
    """`<engine>.srt`, `.vtt` and `.json` for every engine, in `folder`."""
    from .subtitles import to_json, to_srt, to_vtt

    paths = []
    for r in comparison.results:
        t = r.transcription
        stem = f"{comparison.model}-{r.engine}"
        for suffix, text in (
            ("srt", to_srt(t.segments)),
            ("vtt", to_vtt(t.segments)),
            ("json", to_json(t)),
        ):
            path = Path(folder) / f"{stem}.{suffix}"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
    return paths


def speedup_split(comparison: Comparison) -> str:
    """Where the quantized engine's speed-up on this clip comes from.

    The headline is against `pytorch`: the original's model through the same loop, like for
    like. The stock figure (against transformers' `generate`, the original) is beside it and
    splits three ways: generate's own extra passes (original → pytorch), the runtime and
    graphs (pytorch → onnx-fp32) and int8 (onnx-fp32 → quantized). Without pytorch the
    headline falls back to the original, and says so.
    """
    stock = comparison.speedup(QUANTIZED)
    if stock is None:
        return ""
    note = "" if speedup_comparable(comparison, QUANTIZED) else f" ({NOT_COMPARABLE})"
    like = comparison.speedup(QUANTIZED, baseline=PYTORCH)
    int8 = comparison.speedup(QUANTIZED, baseline=ONNX_FP32)
    if like is None:
        line = (
            f"Quantized vs original (stock transformers generate): **{stock:.2f}x** on this "
            f"clip{note}. `{PYTORCH}` did not run, so part of it is generate's own extra "
            f"passes: add `{PYTORCH}` to the engines for the like-for-like figure."
        )
        if int8 is None:
            return line + f" Add `{ONNX_FP32}` to see what int8 alone brings."
        runtime = comparison.speedup(ONNX_FP32)
        return line + (
            f" It splits into **{runtime:.2f}x** from generate's passes, the runtime and "
            f"graphs (ONNX fp32 vs original) × **{int8:.2f}x** from int8 (quantized vs ONNX "
            "fp32)."
        )
    passes = comparison.speedup(PYTORCH)
    line = (
        f"Quantized vs PyTorch through the same loop (like for like): **{like:.2f}x** on this "
        f"clip{note}; vs stock transformers generate (the original): {stock:.2f}x."
    )
    if int8 is None:
        return line + (
            f" Of the stock figure, **{passes:.2f}x** is generate's own extra passes "
            f"(original → pytorch) and **{like:.2f}x** the runtime, graphs and int8 together "
            f"(pytorch → quantized): add `{ONNX_FP32}` to split those two."
        )
    runtime = comparison.speedup(ONNX_FP32, baseline=PYTORCH)
    return line + (
        f" The stock figure splits three ways: **{passes:.2f}x** from generate's own extra "
        f"passes (original → pytorch) × **{runtime:.2f}x** from the runtime and graphs "
        f"(pytorch → onnx-fp32) × **{int8:.2f}x** from int8 (onnx-fp32 → quantized)."
    )


# --- speech coverage and the results table --------------------------------------------------


def speech_spans(transcription: Transcription) -> list[Span]:
    """Where an engine's segments with text are, as coverage.py takes them."""
    return [(s.start, s.end) for s in transcription.segments if s.text.strip()]


def coverages(comparison: Comparison) -> dict[str, ClipCoverage]:
    """Each engine's speech coverage of the clip against the original's
    (coverage.clip_coverage); empty when the original did not run."""
    original = comparison.get(ORIGINAL)
    if original is None:
        return {}
    reference = speech_spans(original.transcription)
    return {
        r.engine: clip_coverage(reference, speech_spans(r.transcription), comparison.audio_s)
        for r in comparison.results
    }


def speedup_comparable(comparison: Comparison, engine: str) -> bool:
    """Did `engine` cover at least COMPARABLE_COVERAGE of the original's speech (or is there
    nothing to compare it with)? If not, it did less work and its speed-up does not compare."""
    coverage = coverages(comparison).get(engine)
    return coverage is None or aggregate([coverage]).comparable


def short_chunk_lines(comparison: Comparison) -> list[str]:
    """One sentence per variant that, in a batched transcription, wrote under half the
    original's words in a chunk (coverage.short_chunks): without timestamps its one segment
    spans the chunk, so the spans cannot show it."""
    original = comparison.get(ORIGINAL)
    theirs = None if original is None else chunk_words(original.transcription.segments)
    if theirs is None:
        return []
    lines = []
    for r in comparison.results:
        mine = chunk_words(r.transcription.segments)
        if r.engine == ORIGINAL or mine is None:
            continue
        found = short_chunks(theirs, mine)
        if found:
            lines.append(short_chunk_note(r.engine, [(None, *chunk) for chunk in found]))
    return lines


def dropped_lines(comparison: Comparison) -> list[str]:
    """One sentence per variant that left out speech the original transcribed: the spans of
    at least coverage.MIN_DROPPED_S, its share of the original's speech, and whether its
    speed-up still compares; then the batched chunks it cut short (short_chunk_lines)."""
    lines = []
    for engine, c in coverages(comparison).items():
        comparable = aggregate([c]).comparable
        if engine == ORIGINAL or (comparable and not c.dropped):
            continue
        spans = ", ".join(format_span(span) for span in c.dropped) or "part of the speech"
        line = (
            f"{engine} did not transcribe {spans} that the original transcribed (it covered "
            f"{c.coverage:.0%} of the original's speech)"
        )
        lines.append(
            line
            + (": it did less work, so its speed-up is not comparable." if not comparable else ".")
        )
    return lines + short_chunk_lines(comparison)


def _vs_baseline(comparison: Comparison, engine: str, note: str) -> str:
    if comparison.get(PYTORCH) is not None:
        value = comparison.speedup(engine, baseline=PYTORCH)
        return "" if value is None else f"{value:.2f}x{note}"
    value = comparison.speedup(engine)
    if value is None:
        return ""
    return f"{value:.2f}x vs original ({PYTORCH} did not run){note}"


def _coverage_cell(engine: str, coverage: ClipCoverage | None) -> str:
    if coverage is None:
        return ""
    seconds = f"{coverage.covered_s:.1f} s"
    if engine == ORIGINAL:
        return f"{seconds} (reference)"
    return seconds if coverage.coverage is None else f"{seconds} ({coverage.coverage:.1%})"


def result_rows(comparison: Comparison) -> list[list]:
    """The page's results table, one row per engine in RESULT_HEADERS' order: the report's
    rows (report.table_rows), then the speed-up against pytorch (against the original, said
    so, when pytorch did not run) and the speech covered. A variant that covered less than
    COMPARABLE_COVERAGE of the original's speech has both speed-ups marked NOT_COMPARABLE."""
    covered = coverages(comparison)
    rows = []
    for r, row in zip(comparison.results, table_rows(comparison), strict=True):
        row = list(row)
        coverage = covered.get(r.engine)
        comparable = coverage is None or aggregate([coverage]).comparable
        note = "" if comparable else f" ({NOT_COMPARABLE})"
        if row[_SPEEDUP_VS_ORIGINAL]:
            row[_SPEEDUP_VS_ORIGINAL] += note
        rows.append(
            [*row, _vs_baseline(comparison, r.engine, note), _coverage_cell(r.engine, coverage)]
        )
    return rows


# --- language identification ----------------------------------------------------------------


def language_table(comparison: Comparison) -> str:
    """Each engine's language identification side by side: the three most probable
    languages of the first window, and of every window with language per window. Empty when
    no engine detected a language (English-only model, or a language given)."""
    detected = [r for r in comparison.results if r.transcription.window_languages]
    if not detected:
        return ""
    order = {r.engine: i for i, r in enumerate(comparison.results)}
    rows = sorted(
        ((d, r) for r in detected for d in r.transcription.window_languages),
        key=lambda item: (item[0].start_s, item[0].window, order[item[1].engine]),
    )
    which = (
        "of every 30 s window"
        if comparison.options.language_per_window
        else "of the first 30 s window"
    )
    lines = [
        f"**Language identification**: each engine's three most probable languages {which} "
        "(softmax over the language tokens after `<|startoftranscript|>`).",
        "",
        "| Engine | Window start | Top 3 |",
        "|---|---|---|",
    ]
    for d, r in rows:
        top = " · ".join(f"{language_label(code)} {p:.1%}" for code, p in d.top)
        lines.append(f"| {r.label} | {clock(d.start_s)} | {top} |")
    missing = [r.label for r in comparison.results if not r.transcription.window_languages]
    if missing:
        lines += ["", f"Not reported by: {', '.join(missing)}."]
    return "\n".join(lines)


def memory_parts(comparison: Comparison) -> str:
    """Each worker's RSS before and after loading its model: held = total - baseline."""
    parts = [
        f"{r.label} {mib(r.load.total_bytes):.0f} − {mib(r.load.baseline_bytes):.0f} "
        f"= {mib(r.load.held_bytes):.0f}"
        for r in comparison.results
    ]
    return "Memory held = worker's total RSS − its baseline (MiB): " + "; ".join(parts) + "."


def measurement_note(readme_url: str | None) -> str:
    """The one line under the table: what the figures are, with a link to the details."""
    anchor = f"{readme_url}#{README_SECTION}" if readme_url else f"#{README_SECTION}"
    return (
        "Latency: wall-clock time of a single run of this clip, after each engine's warm-up "
        "(`benchmark.py` reports medians of repeated runs). Memory held: resident memory "
        "each engine's own worker process gained by loading its model and one warm-up (its "
        "baseline and total are in the summary above); peak extra: its highest resident memory "
        "during this clip above that. Measured on this server's CPU only. "
        f"[How the figures are measured]({anchor})"
    )


def variants_view(comparison: Comparison) -> str:
    """Every engine's transcript, each variant's words marked against the original's."""
    if not comparison.results:
        return ""
    reference = transcript(comparison, ORIGINAL)
    agreement = RESULT_HEADERS.index("Agreement with original")
    speedup = RESULT_HEADERS.index("Speed-up vs original")
    covered = RESULT_HEADERS.index(SPEECH_COVERAGE)
    blocks = []
    for r, row in zip(comparison.results, result_rows(comparison), strict=True):
        text = r.transcription.text
        if r.engine == ORIGINAL:
            words = html.escape(text)
            figures = "the reference for the others"
        else:
            words = "".join(
                marked(piece, label)
                for piece, label in word_diff(
                    reference, text, comparison.language, show_missing=True
                )
            )
            figures = (
                f"agreement {row[agreement] or 'n/a'} · speed-up vs original "
                f"{row[speedup] or 'n/a'} · speech covered {row[covered] or 'n/a'}"
            )
        blocks.append(
            f'<div class="variant" data-engine="{html.escape(r.engine)}" style="{VARIANT_STYLE}">'
            f'<p style="margin: 0"><strong>{html.escape(r.label)}</strong> '
            f"<code>{html.escape(r.engine)}</code> · {html.escape(figures)}</p>"
            f'<p class="variant-text" style="margin: 2px 0 0">{words or "<em>(empty)</em>"}</p>'
            "</div>"
        )
    legend = " ".join(marked(label, label) for label in DIFF_COLORS)
    return f'<div class="variants"><p>{legend}</p>{"".join(blocks)}</div>'


def marked(piece: str, label: str | None) -> str:
    if label is None:
        return html.escape(piece)
    style = f"background: {DIFF_COLORS[label]}55; border-radius: 3px; padding: 0 2px"
    if label == DIFF_MISSING:
        style += "; text-decoration: line-through"
    return f'<mark class="{label}" title="{label}" style="{style}">{html.escape(piece)}</mark>'


def method_details() -> str:
    """The page's section on how latency and memory are measured, and on where the speed-up
    comes from."""
    return (
        "**Latency** in the table is one run of this clip, after each engine has loaded and "
        "transcribed a warm-up clip; the same clip, threads and decoding settings go to every "
        "engine, and the engines run in a shuffled order (its seed is in the summary). The "
        f"benchmark (`python benchmark.py`) is more careful: {timing_method()}\n\n"
        f"**Memory**: {MEMORY_METHOD} Every worker imports torch, because transformers' "
        "feature extractor computes the log-mel features with it; that import is in every "
        "worker's baseline and in no engine's memory held.\n\n"
        "**Where the speed-up comes from**: the original is stock transformers `generate`, "
        "which runs the encoder again for language detection and for its no-speech check. "
        "PyTorch fp32, same loop (`pytorch`) runs the same model and weights through this "
        "studio's decoding loop: the like-for-like baseline. ONNX fp32 runs the same weights "
        "through onnxruntime with the same loop and this studio's graph changes; the int8 "
        "engine adds quantization on top. The summary gives the quantized engine's speed-up "
        "against `pytorch`, with the stock figure beside it split three ways: generate's own "
        "passes, the runtime and graphs, and int8.\n\n"
        "**Speech covered**: the seconds of the clip each engine's segments with text cover, "
        "and the share of the original's covered seconds it covered too. A variant that covers "
        f"less than {COMPARABLE_COVERAGE:.0%} of them did less work: its speed-up is marked "
        "not comparable, and the summary names the spans it left out.\n\n"
        "**Where**: on this server's CPU (see the benchmark for the CPU model and its flags); "
        "another CPU, in particular one with or without AVX-512/VNNI, gives other figures."
    )


# --- a batch --------------------------------------------------------------------------------

BATCH_ENGINE_HEADERS = (
    "Engine",
    "WER [95% CI]",
    "WER − original [95% CI]",
    "Median latency (ms)",
    "Total time (s)",
    "Speed-up vs original",
    "Memory held (MiB)",
    "Loops / text on silence",
    "Empty outputs",
)


def batch_engine_rows(result: BatchResult) -> list[list]:
    """The batch table: one row per engine, in BATCH_ENGINE_HEADERS' order."""
    return [
        [
            e.label,
            e.wer or "(no references)",
            e.difference,
            e.median_latency_ms,
            e.total_latency_s,
            "" if e.speedup is None else f"{e.speedup:.2f}x",
            e.memory_held_mib,
            e.flagged,
            e.empty,
        ]
        for e in result.engines
    ]


def batch_summary(result: BatchResult) -> str:
    """What ran, what the WERs rest on, and the clips that could not be decoded."""
    ran = sum(1 for r in result.clips if r.comparison is not None)
    failed = [r.clip for r in result.clips if r.clip.error]
    lines = [
        f"**{result.model}** · {len(result.clips)} clips, {ran} transcribed · WER rests on "
        f"{result.reference_words} reference words (95% bootstrap intervals over clips; the "
        "difference from the original is paired)."
    ]
    if result.synthetic:
        lines.insert(
            0,
            f"{SYNTHETIC_HEADING} Every engine decoded the same forced tokens per window "
            "(equal work); references are not scored.",
        )
    if failed:
        lines.append("Not decoded: " + "; ".join(f"{c.name}: {c.error}" for c in failed))
    return "\n\n".join(lines)


# --- the machine -----------------------------------------------------------------------------


def hardware_panel(settings: Settings, model: str, roofline_json: Path | None = None) -> str:
    """The CPU, its int8 features, the threads, the model's quantization preset, and the
    model's floor (roofline.py: measured peaks only from a docs/roofline*.json that names this
    CPU; `roofline_json` takes docs/roofline.json's place in that search, its `-*.json`
    siblings with it)."""
    from .hardware import cpu_info, cpu_panel
    from .roofline import ROOFLINE_JSON, floor_panel, report_for_cpu, shape_from_config

    folder = Path(settings.models_dir) / model
    try:
        preset = read_manifest(folder)["quantization"]["preset"]
    except (ModelIntegrityError, KeyError):
        preset = None
    info = cpu_info()
    panel = cpu_panel(info, settings.threads, preset)
    config = next(
        (
            folder / sub / CONFIG_FILE
            for sub in (ORIGINAL_DIR, ONNX_FP32_DIR, QUANTIZED_DIR)
            if (folder / sub / CONFIG_FILE).is_file()
        ),
        None,
    )
    if config is None:
        return panel
    try:
        shape = shape_from_config(model, json.loads(config.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError):
        return panel
    report, source = report_for_cpu(info, roofline_json or ROOFLINE_JSON)
    return panel + "  \n" + floor_panel(shape, info, report, source)
