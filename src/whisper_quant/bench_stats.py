"""The benchmark's figures, from what its timed runs gave: per engine, and across engines.

bench.run_benchmark gathers each engine's runs (`Runs`, one `record` per transcription);
`engine_stats` turns them into one engine's `EngineStats`, `summarize` sets the engines against
the original and pytorch, `per_language` and `utterances` give the report's per-language
sections and its clip-by-clip table. Clips are bench.Clip (or datasets.DatasetClip): name,
reference, decoded audio and any labels.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from .audio import duration_s
from .clip_groups import bootstrap_clusters, cluster_of, label_of
from .coverage import aggregate, chunk_words, clip_coverage, short_chunks
from .decoding import text_compression_ratio
from .engines import ENGINES, ONNX_FP32, ORIGINAL, PYTORCH, QUANTIZED
from .engines.base import TIMED_SECTIONS
from .measure import mib, speedup
from .metrics import corpus_error_rate, normalize_text
from .per_language import EngineOutput, LabelledClip, language_sections
from .stats import corpus_wer, count_flags, longest_ngram_run, paired_difference, utterance_table


@dataclass(frozen=True)
class EngineStats:
    """One engine's figures over the whole run (times in seconds, memory in MiB); the
    upper-case names in the comments are bench_methods' notes and coverage's thresholds."""

    label: str
    wer: float | None
    wer_detail: str | None
    wer_extra_rules: float | None  # the WER with metrics.EXTRA_RULES on top (NORMALISATION_NOTE)
    reference_words: int | None  # how many reference words the WER rests on
    # Clips, or clusters (settings["bootstrap"]), the intervals resample; below
    # MIN_INTERVAL_UNITS both intervals are None.
    interval_n: int | None
    wer_interval: tuple[float, float] | None  # 95% bootstrap interval over clips or clusters
    # Engine minus original WER on the same clips, and its paired 95% bootstrap interval.
    wer_difference: float | None
    wer_difference_interval: tuple[float, float] | None
    empty_outputs: int  # clips with speech in the reference and nothing in the transcript
    flagged_outputs: int  # loops (compression > 2.4, a 4-gram > 4 times) or text on silence
    longest_4gram_run: int  # the most times one 4-word sequence repeats in a row, any clip
    # Errors of this transcript against the original's, on clips neither fell back on.
    agreement_wer_vs_original: float | None
    agreement_clips: int
    median_latency_s: float | None
    mean_latency_s: float | None
    best_latency_s: float | None  # median over clips of each clip's fastest run
    rtf: float | None
    median_section_s: dict[str, float]
    tokens_per_pass: int
    ms_per_token_average: float  # decoder time over tokens: fixed costs included
    ms_per_token_marginal: float | None  # slope (PER_TOKEN_METHOD)
    # Decoder time after the prompt steps over the steps taken (PER_TOKEN_METHOD); None
    # where the steps are not timed apart.
    ms_per_token_steps: float | None
    encoder_ms_per_window: float | None  # ENCODER_METHOD
    cross_kv_ms_per_window: float | None  # ONNX engines only
    decoder_fixed_ms: float | None  # intercept (PER_TOKEN_METHOD)
    first_step_ms: float | None
    memory_mib: float  # held: total minus baseline
    memory_baseline_mib: float
    memory_total_mib: float
    peak_memory_mib: float | None
    disk_mib: float
    load_s: float
    warmup_s: float
    runtime: dict
    encoder_attention_fused: bool | None
    per_clip_median_latency_s: dict[str, float]
    transcripts: dict[str, str]
    # Per clip, from its last run: the first window's detected language (None: none).
    detected_languages: dict[str, str | None]
    windows: int  # 30 s windows over all clips (one pass)
    fallback_windows: int  # of them, decoded again at a higher temperature
    segments: int
    max_compression_ratio: float  # the highest of any segment's text (loops exceed 2.4)
    # The timed sections' medians over the median latency (SECTIONS_METHOD).
    section_share: float | None
    # COVERAGE_METHOD: seconds its segments cover over all clips; seconds both it and the
    # original cover over the original's (None without the original or its speech); clips
    # where it dropped a span; per clip its seconds, the original's, both's and the spans.
    speech_covered_s: float
    speech_coverage_vs_original: float | None
    clips_with_dropped_span: int
    # Batched runs: clips with a chunk where it wrote under half the original's words
    # (coverage.short_chunks); clip_coverage lists them per clip as [chunk, original, its].
    clips_with_short_chunk: int
    clip_coverage: dict[str, dict]
    # False when it covered less than COMPARABLE_COVERAGE of the original's speech.
    speedup_comparable: bool


@dataclass
class Runs:
    """What one engine's timed runs gave, gathered while the benchmark runs."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    peaks: list[int] = field(default_factory=list)
    transcripts: dict[str, str] = field(default_factory=dict)
    # Per clip, from its last run: the first window's detected language.
    languages: dict[str, str | None] = field(default_factory=dict)
    sections: dict[str, list[float]] = field(default_factory=dict)
    tokens: list[int] = field(default_factory=list)
    decoder_s: list[float] = field(default_factory=list)
    first_step_s: list[float] = field(default_factory=list)
    # Per run: decoder seconds after the prompt steps and their steps; encoder seconds,
    # cross_kv seconds and windows encoded.
    next_steps_s: list[float] = field(default_factory=list)
    next_steps: list[int] = field(default_factory=list)
    encoder_s: list[float] = field(default_factory=list)
    cross_kv_s: list[float] = field(default_factory=list)
    run_windows: list[int] = field(default_factory=list)
    # Per clip, from its last run: windows, windows with fallback, segments, and the
    # highest compression ratio of a segment's text.
    windows: dict[str, int] = field(default_factory=dict)
    fallback_windows: dict[str, int] = field(default_factory=dict)
    segments: dict[str, int] = field(default_factory=dict)
    max_compression_ratio: dict[str, float] = field(default_factory=dict)
    # Per clip, from its last run: the (start, end) seconds of its segments with text.
    spans: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    # Per clip, from its last run: words per batched chunk (None: sequential windows).
    chunk_words: dict[str, dict[int, int] | None] = field(default_factory=dict)


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float] | None:
    """Least-squares slope and intercept of ys against xs; None when xs do not vary."""
    if len(xs) < 2:
        return None
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    var = sum((x - mean_x) ** 2 for x in xs)
    if var == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / var
    return slope, mean_y - slope * mean_x


def record(runs: Runs, clip: str, t) -> None:
    runs.latencies[clip].append(t.latency_s)
    runs.peaks.append(t.peak_memory_bytes or 0)
    runs.transcripts[clip] = t.text
    runs.languages[clip] = t.language
    runs.tokens.append(t.tokens_decoded)
    runs.windows[clip] = t.windows
    runs.fallback_windows[clip] = t.fallback_windows
    runs.segments[clip] = len(t.segments)
    runs.spans[clip] = [(s.start, s.end) for s in t.segments if s.text.strip()]
    runs.chunk_words[clip] = chunk_words(t.segments)
    runs.max_compression_ratio[clip] = max(
        (text_compression_ratio(s.text) for s in t.segments if s.text.strip()), default=0.0
    )
    runs.decoder_s.append(t.timings.get("decoder", 0.0))
    if "first_step" in t.timings:
        runs.first_step_s.append(t.timings["first_step"])
        runs.next_steps_s.append(t.timings.get("decoder", 0.0) - t.timings["first_step"])
        runs.next_steps.append(t.next_steps)
    if "encoder" in t.timings:
        runs.encoder_s.append(t.timings["encoder"])
        runs.cross_kv_s.append(t.timings.get("cross_kv", 0.0))
        runs.run_windows.append(t.windows)
    for section, seconds in t.timings.items():
        runs.sections.setdefault(section, []).append(seconds)


def engine_stats(
    name, runs: Runs, original: Runs | None, load, usable, scored, audio_total: float
) -> EngineStats:
    per_clip = {clip: statistics.median(v) for clip, v in runs.latencies.items() if v}
    best_per_clip = {clip: min(v) for clip, v in runs.latencies.items() if v}
    wer = (
        corpus_error_rate([(c.reference, runs.transcripts[c.name]) for c in scored])
        if scored
        else None
    )
    wer_extra = (
        corpus_error_rate(
            [(c.reference, runs.transcripts[c.name]) for c in scored], extra_rules=True
        )
        if scored
        else None
    )
    references = [c.reference for c in scored]
    hypotheses = [runs.transcripts[c.name] for c in scored]
    _, clusters = bootstrap_clusters(scored)
    corpus = corpus_wer(references, hypotheses, clusters=clusters) if scored else None
    interval = None if corpus is None else corpus.interval
    difference = None
    if scored and original is not None and name != ORIGINAL:
        difference = paired_difference(
            references,
            hypotheses,
            [original.transcripts[c.name] for c in scored],
            clusters=clusters,
        )
    # A clip without a reference is not silence: its text-on-silence flag is not judged.
    flags = count_flags([c.reference for c in usable], [runs.transcripts[c.name] for c in usable])
    # Agreement on clips decoded at temperature 0 by both: a window that fell back was
    # sampled, with each engine's own random numbers.
    greedy = [
        c
        for c in usable
        if original is not None
        and not runs.fallback_windows.get(c.name)
        and not original.fallback_windows.get(c.name)
    ]
    agree = None
    if name != ORIGINAL and original is not None and greedy:
        agree = corpus_error_rate(
            [(original.transcripts[c.name], runs.transcripts[c.name]) for c in greedy]
        )
    # Only where the decoder's steps were timed apart (not faster-whisper's own loop).
    fit = linear_fit(runs.tokens, runs.decoder_s) if runs.first_step_s else None
    steps = sum(runs.next_steps)
    windows = sum(runs.run_windows)
    has_cross_kv = any(runs.cross_kv_s)
    repeats = max(len(next(iter(runs.latencies.values()), [])), 1)
    median_latency = statistics.median(per_clip.values()) if per_clip else None
    sections = {k: statistics.median(v) for k, v in runs.sections.items()}
    timed = sum(sections.get(k, 0.0) for k in TIMED_SECTIONS)
    clips_coverage = {
        c.name: clip_coverage(
            original.spans.get(c.name, ()) if original is not None else (),
            runs.spans.get(c.name, ()),
            duration_s(c.audio),
        )
        for c in usable
    }
    coverage = aggregate(clips_coverage.values())
    short = {
        c.name: short_chunks(theirs, mine)
        for c in usable
        if original is not None
        and (theirs := original.chunk_words.get(c.name)) is not None
        and (mine := runs.chunk_words.get(c.name)) is not None
    }
    return EngineStats(
        label=ENGINES[name].label,
        wer=None if wer is None else wer.rate,
        wer_detail=None if wer is None else str(wer),
        wer_extra_rules=None if wer_extra is None else wer_extra.rate,
        reference_words=None if wer is None else wer.reference_length,
        interval_n=None if corpus is None else corpus.units,
        wer_interval=None if interval is None else (interval.low, interval.high),
        wer_difference=None if difference is None else difference.difference,
        wer_difference_interval=(
            None
            if difference is None or difference.interval is None
            else (difference.interval.low, difference.interval.high)
        ),
        empty_outputs=flags.empty_outputs,
        flagged_outputs=flags.flagged,
        longest_4gram_run=max(
            (
                longest_ngram_run(normalize_text(t, extra_rules=True).split())
                for t in runs.transcripts.values()
            ),
            default=0,
        ),
        agreement_wer_vs_original=None if agree is None else agree.rate,
        agreement_clips=len(greedy) if name != ORIGINAL else 0,
        median_latency_s=median_latency,
        mean_latency_s=statistics.fmean(per_clip.values()) if per_clip else None,
        best_latency_s=statistics.median(best_per_clip.values()) if best_per_clip else None,
        rtf=sum(per_clip.values()) / audio_total if audio_total else None,
        median_section_s=sections,
        tokens_per_pass=sum(runs.tokens) // repeats,
        ms_per_token_average=1000 * sum(runs.decoder_s) / max(sum(runs.tokens), 1),
        ms_per_token_marginal=None if fit is None else 1000 * fit[0],
        ms_per_token_steps=1000 * sum(runs.next_steps_s) / steps if steps else None,
        encoder_ms_per_window=1000 * sum(runs.encoder_s) / windows if windows else None,
        cross_kv_ms_per_window=(
            1000 * sum(runs.cross_kv_s) / windows if windows and has_cross_kv else None
        ),
        decoder_fixed_ms=None if fit is None else 1000 * fit[1],
        first_step_ms=(1000 * statistics.median(runs.first_step_s) if runs.first_step_s else None),
        memory_mib=mib(load.held_bytes),
        memory_baseline_mib=mib(load.baseline_bytes),
        memory_total_mib=mib(load.total_bytes),
        peak_memory_mib=mib(max(runs.peaks)) if runs.peaks else None,
        disk_mib=mib(load.weights_bytes),
        load_s=load.load_s,
        warmup_s=load.warmup_s,
        runtime=dict(load.runtime),
        encoder_attention_fused=load.runtime.get("encoder_attention_fused"),
        per_clip_median_latency_s=per_clip,
        transcripts=runs.transcripts,
        detected_languages=runs.languages,
        windows=sum(runs.windows.values()),
        fallback_windows=sum(runs.fallback_windows.values()),
        segments=sum(runs.segments.values()),
        max_compression_ratio=max(runs.max_compression_ratio.values(), default=0.0),
        section_share=timed / median_latency if median_latency else None,
        speech_covered_s=coverage.covered_s,
        speech_coverage_vs_original=None if original is None else coverage.coverage,
        clips_with_dropped_span=coverage.clips_with_dropped_span,
        clips_with_short_chunk=sum(1 for found in short.values() if found),
        clip_coverage={
            clip: {
                "covered_s": round(c.covered_s, 2),
                "original_s": round(c.original_s, 2),
                "shared_s": round(c.shared_s, 2),
                "dropped_spans": [[round(a, 2), round(b, 2)] for a, b in c.dropped],
                "short_chunks": [list(found) for found in short.get(clip, [])],
            }
            for clip, c in clips_coverage.items()
        },
        speedup_comparable=original is None or coverage.comparable,
    )


def summarize(engines: dict[str, EngineStats]) -> dict:
    """Each engine against the original (stock transformers generate) and against pytorch
    (the same model through the studio's loop, like for like); and the speed-up split three
    ways where the engines exist (SPLIT_METHOD): original -> pytorch -> onnx-fp32 ->
    quantized. The older two-way keys stay: speedup_from_runtime (onnx-fp32 against the
    original, generate's extra passes included) and speedup_from_int8."""
    summary: dict = {}
    original, torch_loop = engines.get(ORIGINAL), engines.get(PYTORCH)
    for name, e in engines.items():
        if name == ORIGINAL or not e.median_latency_s:
            continue
        key = "" if name == QUANTIZED else f"{name}_"
        summary[f"{key}speedup_comparable"] = e.speedup_comparable
        summary[f"{key}speech_coverage_vs_original"] = e.speech_coverage_vs_original
        if torch_loop is not None and name != PYTORCH:
            summary[f"{key}speedup_vs_pytorch"] = speedup(
                torch_loop.median_latency_s, e.median_latency_s
            )
        if original is None:
            continue
        summary[f"{key}speedup"] = speedup(original.median_latency_s, e.median_latency_s)
        summary[f"{key}speedup_best"] = speedup(original.best_latency_s, e.best_latency_s)
        summary[f"{key}memory_saving"] = 1 - e.memory_mib / original.memory_mib
        summary[f"{key}words_scored"] = e.reference_words
        summary[f"{key}peak_memory_saving"] = (
            1 - e.peak_memory_mib / original.peak_memory_mib
            if original.peak_memory_mib and e.peak_memory_mib is not None
            else None
        )
        if e.wer is not None and original.wer is not None:
            summary[f"{key}wer_delta"] = e.wer - original.wer
    fp32, int8 = engines.get(ONNX_FP32), engines.get(QUANTIZED)
    if original and fp32 and int8:
        summary["speedup_from_runtime"] = speedup(original.median_latency_s, fp32.median_latency_s)
        summary["speedup_from_int8"] = speedup(fp32.median_latency_s, int8.median_latency_s)
        summary["memory_saving_from_int8"] = 1 - int8.memory_mib / fp32.memory_mib
    chain = [(ORIGINAL, original), (PYTORCH, torch_loop), (ONNX_FP32, fp32), (QUANTIZED, int8)]
    if all(e is not None and e.median_latency_s for _, e in chain):
        summary["speedup_split"] = {
            f"{a}_to_{b}": speedup(ea.median_latency_s, eb.median_latency_s)
            for (a, ea), (b, eb) in zip(chain, chain[1:], strict=False)
        }
    return summary


def per_language(usable: Sequence, runs: dict[str, Runs], stats: dict[str, EngineStats]) -> dict:
    """The per-language sections (per_language.language_sections) of the labelled clips."""
    labelled = [
        LabelledClip(c.name, label_of(c, "language"), c.reference, cluster_of(c)) for c in usable
    ]
    outputs = {
        name: EngineOutput(r.transcripts, r.languages, stats[name].clip_coverage)
        for name, r in runs.items()
    }
    return language_sections(labelled, outputs, ORIGINAL if ORIGINAL in runs else None)


def utterances(runs: dict[str, Runs], scored: Sequence) -> list[dict]:
    if QUANTIZED not in runs or not scored:
        return []
    names = [c.name for c in scored]
    rows = utterance_table(
        names,
        [c.reference for c in scored],
        [runs[QUANTIZED].transcripts[n] for n in names],
        [runs[ORIGINAL].transcripts[n] for n in names] if ORIGINAL in runs else None,
    )
    labels = {c.name: label_of(c, "language") for c in scored}
    return [
        {
            "clip": r.name,
            "reference": r.reference,
            "quantized": r.hypothesis,
            "original": r.original,
            "quantized_errors": r.errors,
            "original_errors": r.original_errors,
            "reference_words": r.reference_length,
            "disagreement": r.disagreement,
            # The clip's label ("" without one) and each engine's detected language.
            "language": labels[r.name],
            **{f"{engine}_language": runs[engine].languages.get(r.name) for engine in runs},
        }
        for r in rows
    ]
