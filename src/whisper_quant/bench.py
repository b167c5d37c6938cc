"""The benchmark: every engine on every clip, repeated, in shuffled order; it only measures.

Each engine runs in its own worker process (memory attributable to it alone) and has already
transcribed a warm-up clip; the benchmark adds one untimed pass over the first clip, then
times `repeat` passes. For every clip of every pass the engine order is shuffled with a seed
drawn from the run's seed and recorded. Latency is the wall time of a whole transcription of
already-decoded audio (features, encoder, decoding), median over the repeats per clip.
Rendering (markdown, plot) lives in report.py.
"""

from __future__ import annotations

import logging
import platform
import random
import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .audio import AudioError, decode_audio, duration_s
from .clip_groups import cluster_of, label_of
from .compare import Studio
from .coverage import COMPARABLE_COVERAGE, MIN_DROPPED_S, aggregate, clip_coverage
from .decoding import text_compression_ratio
from .engines import (
    DEFAULT_THREADS,
    ENGINES,
    ONNX_FP32,
    ORIGINAL,
    PYTORCH,
    QUANTIZED,
    TranscribeOptions,
)
from .engines.base import TIMED_SECTIONS
from .hardware import cpu_info
from .manifest import ModelIntegrityError, read_manifest
from .measure import KERNEL_METHOD, MEMORY_METHOD, mib, speedup, timing_method
from .metrics import EXTRA_RULES, corpus_error_rate, normalize_text
from .per_language import EngineOutput, LabelledClip, language_sections
from .stats import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    MIN_INTERVAL_UNITS,
    corpus_wer,
    count_flags,
    longest_ngram_run,
    paired_difference,
    utterance_table,
)

logger = logging.getLogger(__name__)

# The original's model through the studio's loop: the like-for-like baseline of every split.

FEATURES_NOTE = (
    "Every worker computes log-mel features with transformers' WhisperFeatureExtractor, which "
    "uses torch: the ONNX and CTranslate2 workers import torch too, before their baseline, "
    "so it is in no engine's 'memory held' and in every engine's baseline."
)
PER_TOKEN_METHOD = (
    "Marginal cost per decoded token: least-squares slope of each run's decoder time "
    "(every decoder step, the first included) against the tokens it decoded, over every "
    "clip and pass; the intercept is the fixed cost per window. First step: the median time "
    "of the decoder's first call (the prompt), reported apart. Per step: decoder time after "
    "each decoding's prompt step over the steps it took (one token each), over every run."
)
ENCODER_METHOD = (
    "Encoder time per 30 s window: the encoder's seconds over the windows it encoded, over "
    "every run; the ONNX engines' cross-attention key/value projections are apart (cross_kv), "
    "the original runs them inside its first decoder step."
)
FIXED_TOKENS_METHOD = (
    "--fixed-tokens N: every engine decodes exactly N tokens per 30 s window, forced to the "
    "same token ids (text tokens derived from the vocabulary, decoding.fixed_token_ids), after "
    "a prompt of the start tokens only, in the given language or English, without fallback: "
    "the same work on the same tokens for every engine, with real or random weights. "
    "Transcripts are those forced tokens: WER and agreement mean nothing in this mode."
)
NORMALISATION_NOTE = (
    "WER (CER for other languages) after Whisper's normalisers as they are: whisper-normalizer's "
    "EnglishTextNormalizer, or BasicTextNormalizer keeping marks. wer_extra_rules adds "
    + " and ".join(f"'{rule}'" for rule in EXTRA_RULES)
    + " (metrics.EXTRA_RULES); loop and empty-output flags always use them."
)
# Clip attributes that name a clip's cluster for the bootstrap, tried in this order.
CLUSTER_ATTRIBUTES = ("speaker", "source")
PER_LANGUAGE_METHOD = (
    "Per language (clips with a language label): WER and CER after the language's own "
    "normaliser, CER the headline for every language but English; intervals over the "
    "language's speakers (cluster bootstrap, none below the minimum of clusters) and over its "
    "clips (the prompts of the voices present, not other voices); the difference from the "
    "original paired over the same clips. Language identification: the first window's "
    "detected language against the label and against the original's on the same clip "
    "(utterances hold each engine's as <engine>_language). Dropped spans from the coverage "
    "figures. The overall WER above scores every clip with the English normaliser."
)
SECTIONS_METHOD = (
    "Sections: the median seconds of each timed part of a transcription over every run: "
    "features, encoder, cross_kv (ONNX engines), language detection, decoder (every decoding "
    "step whole: the model call with its projection to the vocabulary, and for the original "
    "generate's logits processors and bookkeeping between steps; first_step is its prompt "
    "steps); 'other' is the total minus those sections. section_share is their medians' sum "
    "over the median latency."
)
COVERAGE_METHOD = (
    f"Speech coverage: the seconds of each clip that an engine's segments with text cover "
    f"(clipped to the clip), from its last run. speech_coverage_vs_original: the seconds both "
    f"it and the original cover over the seconds the original covers, summed over clips. A "
    f"dropped span is a stretch this engine's segments leave uncovered holding at least "
    f"{MIN_DROPPED_S:g} s of the original's segments. An engine covering less than "
    f"{COMPARABLE_COVERAGE:.0%} of the original's speech did less work: its speed-up is "
    f"marked not comparable (speedup_comparable false)."
)
SPLIT_METHOD = (
    "The speed-up splits three ways, multiplying back to the stock figure: transformers "
    "generate (original) to pytorch (the same model through the studio's loop: generate's own "
    "extra passes), pytorch to onnx-fp32 (the runtime and graphs), onnx-fp32 to quantized "
    "(int8). Headline speed-ups are against pytorch, like for like; the stock original's "
    "figure is beside them."
)
BUILD_NOTE = (
    "The model's build, from its manifest: seconds per stage and the peak resident memory "
    "of each stage (MiB)."
)


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    reference: str | None
    audio: object = None  # np.ndarray when decoded
    error: str = ""


@dataclass(frozen=True)
class EngineStats:
    """One engine's figures over the whole run (times in seconds, memory in MiB)."""

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
    clip_coverage: dict[str, dict]
    # False when it covered less than COMPARABLE_COVERAGE of the original's speech.
    speedup_comparable: bool


@dataclass(frozen=True)
class BenchReport:
    model: str
    machine: dict
    settings: dict
    methods: dict
    clips: list[dict]
    failed_clips: dict[str, str]
    unscored_clips: list[str]
    engines: dict[str, EngineStats]
    summary: dict
    # One entry per timed clip run: pass, clip, seed and the engine order it gave.
    orders: list[dict] = field(default_factory=list)
    # Quantized against the original per scored clip, most disagreeing first.
    utterances: list[dict] = field(default_factory=list)
    # The model's build from its manifest: stages_s, total_s, peak_rss_mib, peak_mib.
    build: dict = field(default_factory=dict)
    # Engines asked for but not run, and why (--fixed-tokens skips the ones that cannot).
    skipped_engines: dict[str, str] = field(default_factory=dict)
    # Per language label, in order of first appearance: per_language.LanguageSection
    # (empty when no clip carries a language label).
    per_language: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def read_references(path: Path | str) -> dict[str, str]:
    """`refs.tsv`: file name, tab, reference text; blank lines and # comments skipped."""
    refs = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, text = line.partition("\t")
        if not sep:
            raise ValueError(f"{path}: expected 'file<TAB>reference', got {line!r}")
        refs[Path(name.strip()).name] = text.strip()
    return refs


def load_clips(paths: Sequence[Path | str], references: dict[str, str]) -> list[Clip]:
    clips = []
    for path in map(Path, paths):
        reference = references.get(path.name)
        try:
            clips.append(Clip(path.name, path, reference, decode_audio(path)))
        except (AudioError, OSError) as e:
            logger.warning("%s: %s", path.name, e)
            clips.append(Clip(path.name, path, reference, error=str(e)))
    return clips


def machine_info(threads: int) -> dict:
    cpu = cpu_info()
    return {
        "cpu": cpu.model,
        "cpu_flags": cpu.relevant_flags,
        "logical_cpus": cpu.logical_cpus,
        "threads": threads,
        "python": platform.python_version(),
        "note": f"measured on one {cpu.vendor} machine ({cpu.model}); other CPUs differ",
    }


def build_info(model_dir: Path) -> dict:
    """The model's build time and memory from its manifest ({} when it has none)."""
    try:
        manifest = read_manifest(Path(model_dir))
    except ModelIntegrityError:
        return {}
    stages = {k: float(v) for k, v in (manifest.get("stages_s") or {}).items()}
    peaks = {k: float(v) for k, v in (manifest.get("peak_rss_mib") or {}).items()}
    return {
        "stages_s": stages,
        "total_s": round(sum(stages.values()), 2),
        "peak_rss_mib": peaks,
        "peak_mib": max(peaks.values()) if peaks else None,
        "stages_isolated": manifest.get("stages_isolated"),
        "synthetic": bool(manifest.get("synthetic")),
        "built_at": manifest.get("built_at"),
    }


def split_fixed_token_engines(engines: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """The engines that can decode --fixed-tokens, and the others with the reason."""
    kept, skipped = [], {}
    for name in engines:
        cls = ENGINES[name]
        if cls.supports_fixed_tokens:
            kept.append(name)
        else:
            skipped[name] = (
                f"{cls.label} decodes with its library's own loop, which cannot force the "
                "same tokens as the other engines: skipped with --fixed-tokens"
            )
    return kept, skipped


def bootstrap_clusters(clips: Sequence[Clip]) -> tuple[str, list[str] | None]:
    """The bootstrap's unit and each clip's cluster label: "speaker" or "source" when the
    clips carry one (the first of CLUSTER_ATTRIBUTES any clip has), else "clip" and None
    (clips are resampled). A clip without a label is a cluster of its own."""
    for attribute in CLUSTER_ATTRIBUTES:
        labels = [getattr(clip, attribute, None) for clip in clips]
        if any(labels):
            return attribute, [
                str(label) if label else f"clip:{clip.name}"
                for label, clip in zip(labels, clips, strict=True)
            ]
    return "clip", None


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


@dataclass
class _Runs:
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


def run_benchmark(
    model_dir: Path,
    clips: list[Clip],
    engines: Sequence[str],
    *,
    repeat: int = 5,
    threads: int = DEFAULT_THREADS,
    options: TranscribeOptions | None = None,
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> BenchReport:
    """Run the benchmark and return its report."""
    say = progress or (lambda message: None)
    options = options or TranscribeOptions()
    usable = [c for c in clips if c.error == ""]
    engines = list(engines)
    skipped: dict[str, str] = {}
    if options.fixed_tokens is not None:
        engines, skipped = split_fixed_token_engines(engines)
        if not engines:
            raise ValueError("no engine asked for can decode --fixed-tokens")
    studio = Studio(model_dir, engines, threads=threads)
    runs = {e: _Runs(latencies={c.name: [] for c in usable}) for e in engines}
    seeds = random.Random(seed)
    orders: list[dict] = []
    try:
        say(f"loading {', '.join(engines)} from {model_dir}")
        studio.start(on_engine=lambda name: say(f"loading {name}"))
        if usable:
            say("warm-up pass")
            studio.compare(usable[0].audio, options, order_seed=seeds.randrange(2**31))
        for r in range(repeat):
            say(f"pass {r + 1}/{repeat}")
            for clip in usable:
                comparison = studio.compare(clip.audio, options, order_seed=seeds.randrange(2**31))
                orders.append(
                    {
                        "pass": r + 1,
                        "clip": clip.name,
                        "seed": comparison.order_seed,
                        "order": list(comparison.order),
                    }
                )
                for result in comparison.results:
                    _record(runs[result.engine], clip.name, result.transcription)
        reports = studio.reports()
    finally:
        studio.close()

    audio_total = sum(duration_s(c.audio) for c in usable)
    scored = [c for c in usable if c.reference]
    unit, clusters = bootstrap_clusters(scored)
    stats = {
        name: _engine_stats(
            name, runs[name], runs.get(ORIGINAL), reports[name], usable, scored, audio_total
        )
        for name in engines
    }
    decoding = ("greedy" if options.beam_size == 1 else f"beam {options.beam_size}") + (
        ", temperature fallback" if len(options.temperatures) > 1 else ", no fallback"
    )
    if options.fixed_tokens is not None:
        decoding = f"{options.fixed_tokens} forced tokens per window"
    methods = {
        "timing": timing_method(repeat, 1),
        "memory": MEMORY_METHOD,
        "peak": KERNEL_METHOD,
        "per_token": PER_TOKEN_METHOD,
        "encoder": ENCODER_METHOD,
        "features": FEATURES_NOTE,
        "build": BUILD_NOTE,
        "normalisation": NORMALISATION_NOTE,
        "sections": SECTIONS_METHOD,
        "coverage": COVERAGE_METHOD,
        "speedup_split": SPLIT_METHOD,
    }
    labelled = any(label_of(c, "language") for c in usable)
    if labelled:
        methods["per_language"] = PER_LANGUAGE_METHOD
    if options.fixed_tokens is not None:
        methods["fixed_tokens"] = FIXED_TOKENS_METHOD
    return BenchReport(
        model=Path(model_dir).name,
        machine=machine_info(threads),
        settings={
            "repeat": repeat,
            "beam_size": options.beam_size,
            "fixed_tokens": options.fixed_tokens,
            "decoding": decoding,
            "options": asdict(options),
            "engine_order": "shuffled per clip and pass, seeds recorded in 'orders'",
            "seed": seed,
            "bootstrap": {
                "unit": unit,
                "units": len(set(clusters)) if clusters is not None else len(scored),
                "min_units": MIN_INTERVAL_UNITS,
                "resamples": DEFAULT_RESAMPLES,
                "confidence": DEFAULT_CONFIDENCE,
            },
            "wer_extra_rules": list(EXTRA_RULES),
        },
        methods=methods,
        clips=[
            {
                "name": c.name,
                "seconds": round(duration_s(c.audio), 2) if c.audio is not None else None,
                "reference": c.reference,
                "error": c.error or None,
                **({"language": label_of(c, "language")} if labelled else {}),
            }
            for c in clips
        ],
        failed_clips={c.name: c.error for c in clips if c.error},
        unscored_clips=[c.name for c in usable if not c.reference],
        engines=stats,
        summary=summarize(stats),
        orders=orders,
        utterances=_utterances(runs, scored),
        build=build_info(model_dir),
        skipped_engines=skipped,
        per_language=per_language(usable, runs, stats) if labelled else {},
    )


def per_language(
    usable: Sequence[Clip], runs: dict[str, _Runs], stats: dict[str, EngineStats]
) -> dict:
    """The per-language sections (per_language.language_sections) of the labelled clips."""
    labelled = [
        LabelledClip(c.name, label_of(c, "language"), c.reference, cluster_of(c)) for c in usable
    ]
    outputs = {
        name: EngineOutput(r.transcripts, r.languages, stats[name].clip_coverage)
        for name, r in runs.items()
    }
    return language_sections(labelled, outputs, ORIGINAL if ORIGINAL in runs else None)


def _utterances(runs: dict[str, _Runs], scored: list[Clip]) -> list[dict]:
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


def _record(runs: _Runs, clip: str, t) -> None:
    runs.latencies[clip].append(t.latency_s)
    runs.peaks.append(t.peak_memory_bytes or 0)
    runs.transcripts[clip] = t.text
    runs.languages[clip] = t.language
    runs.tokens.append(t.tokens_decoded)
    runs.windows[clip] = t.windows
    runs.fallback_windows[clip] = t.fallback_windows
    runs.segments[clip] = len(t.segments)
    runs.spans[clip] = [(s.start, s.end) for s in t.segments if s.text.strip()]
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


def _engine_stats(
    name, runs: _Runs, original: _Runs | None, load, usable, scored, audio_total: float
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
        clip_coverage={
            clip: {
                "covered_s": round(c.covered_s, 2),
                "original_s": round(c.original_s, 2),
                "shared_s": round(c.shared_s, 2),
                "dropped_spans": [[round(a, 2), round(b, 2)] for a, b in c.dropped],
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
