"""The benchmark: every engine on every clip, repeated, in shuffled order; it only measures.

Each engine runs in its own worker process (memory attributable to it alone) and has already
transcribed a warm-up clip; the benchmark adds one untimed pass over the first clip, then
times `repeat` passes. For every clip of every pass the engine order is shuffled with a seed
drawn from the run's seed and recorded. Latency is the wall time of a whole transcription of
already-decoded audio (features, encoder, decoding), median over the repeats per clip.
The figures made from the runs live in bench_stats.py, the notes on their methods in
bench_methods.py; rendering in report.py (table rows), report_markdown.py and plots.py.
"""

from __future__ import annotations

import logging
import platform
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .audio import AudioError, decode_audio, duration_s
from .bench_methods import method_notes
from .bench_stats import (
    EngineStats,
    Runs,
    engine_stats,
    per_language,
    record,
    summarize,
    utterances,
)
from .clip_groups import bootstrap_clusters, label_of
from .compare import Studio
from .engines import DEFAULT_THREADS, ENGINES, ORIGINAL, TranscribeOptions
from .hardware import cpu_info
from .manifest import ModelIntegrityError, read_manifest
from .metrics import EXTRA_RULES
from .stats import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, MIN_INTERVAL_UNITS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    reference: str | None
    audio: object = None  # np.ndarray when decoded
    error: str = ""


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
    runs = {e: Runs(latencies={c.name: [] for c in usable}) for e in engines}
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
                    record(runs[result.engine], clip.name, result.transcription)
        reports = studio.reports()
    finally:
        studio.close()

    audio_total = sum(duration_s(c.audio) for c in usable)
    scored = [c for c in usable if c.reference]
    unit, clusters = bootstrap_clusters(scored)
    stats = {
        name: engine_stats(
            name, runs[name], runs.get(ORIGINAL), reports[name], usable, scored, audio_total
        )
        for name in engines
    }
    decoding = ("greedy" if options.beam_size == 1 else f"beam {options.beam_size}") + (
        ", temperature fallback" if len(options.temperatures) > 1 else ", no fallback"
    )
    if options.fixed_tokens is not None:
        decoding = f"{options.fixed_tokens} forced tokens per window"
    labelled = any(label_of(c, "language") for c in usable)
    methods = method_notes(
        repeat, per_language=labelled, fixed_tokens=options.fixed_tokens is not None
    )
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
        utterances=utterances(runs, scored),
        build=build_info(model_dir),
        skipped_engines=skipped,
        per_language=per_language(usable, runs, stats) if labelled else {},
    )
