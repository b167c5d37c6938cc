"""Per-language accuracy of a benchmark run: WER and CER with intervals, the paired difference
from the original, language identification and dropped speech, for each labelled language.

Pure functions over what the benchmark gathered (transcripts, detected languages, coverage
per clip); no model. Clips without a language label are left out (they count in the run's
overall figures only).

- Both rates after the language's own normaliser (English rules for English, the basic ones
  otherwise): WER counts words, CER characters without whitespace. CER is the headline for
  every language `metrics.uses_cer` scores by characters (all but English): words are a poor
  unit for Russian's inflections and for scripts without spaces, and one unit across the
  non-English languages keeps them comparable.
- Intervals: the cluster bootstrap over the language's speakers (else sources, else clips),
  as for the whole run; below `stats.MIN_INTERVAL_UNITS` clusters there is none. Each figure
  also carries an interval over clips (``*_over_clips``): it resamples the prompts of the
  voices present, so it bounds what another draw of their prompts would give, not what
  another voice would. eval/'s Spanish, French, Italian and Russian have one voice each, so
  only that interval exists for them.
- Language identification: the first window's detected language (`Transcription.language`)
  against the clip's label and against the original's detection on the same clip; what was
  heard instead is counted by code ("none" where nothing was detected).
- Dropped speech: from the coverage figures (`coverage.clip_coverage`) of each clip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .clip_groups import group_by
from .metrics import CER, WER, error_rate, uses_cer
from .stats import corpus_wer, paired_difference

# What heard_instead calls a clip on which no language was detected (silence, a failed run).
NO_LANGUAGE = "none"


@dataclass(frozen=True)
class LabelledClip:
    """A clip as the per-language figures see it: its label, reference and cluster."""

    name: str
    language: str
    reference: str | None
    cluster: str  # the bootstrap's unit: speaker, else source, else the clip


@dataclass(frozen=True)
class EngineOutput:
    """One engine's outputs per clip name: transcript, detected language, coverage (a
    `bench_stats.EngineStats.clip_coverage` entry: covered_s, original_s, shared_s,
    dropped_spans)."""

    transcripts: Mapping[str, str]
    languages: Mapping[str, str | None]
    coverage: Mapping[str, Mapping] = field(default_factory=dict)


@dataclass(frozen=True)
class Rate:
    """A corpus rate with its cluster-bootstrap interval and its interval over clips."""

    kind: str  # WER or CER
    rate: float
    errors: int
    reference_length: int
    interval: tuple[float, float] | None  # over clusters; None below MIN_INTERVAL_UNITS
    units: int  # clusters resampled
    interval_over_clips: tuple[float, float] | None  # None below MIN_INTERVAL_UNITS clips


@dataclass(frozen=True)
class Difference:
    """Engine minus original rate on the same clips, with its paired intervals."""

    kind: str
    difference: float
    interval: tuple[float, float] | None
    units: int
    interval_over_clips: tuple[float, float] | None


@dataclass(frozen=True)
class LanguageId:
    """Which language an engine detected on the clips of one language."""

    clips: int
    matches_label: float | None  # share of clips detected as their label
    matches_original: float | None  # share detected as the original detected (None: no original)
    heard_instead: dict[str, int]  # detected codes other than the label, most frequent first


@dataclass(frozen=True)
class LanguageEngine:
    """One engine's figures on one language."""

    wer: Rate | None  # None without a reference holding words
    cer: Rate | None
    wer_difference: Difference | None  # None for the original, or without it
    cer_difference: Difference | None
    language_id: LanguageId
    speech_coverage_vs_original: float | None
    clips_with_dropped_span: int
    dropped_spans: int


@dataclass(frozen=True)
class LanguageSection:
    """Every engine's figures on one language."""

    language: str
    headline: str  # WER or CER
    clips: int
    scored_clips: int
    reference_words: int | None
    reference_characters: int | None
    bootstrap_unit_count: int  # clusters among the scored clips
    engines: dict[str, LanguageEngine]


def headline(language: str) -> str:
    """CER where `metrics.uses_cer` scores by characters (every language but English)."""
    return CER if uses_cer(language) else WER


def language_id(
    labels: Sequence[str],
    detected: Sequence[str | None],
    original: Sequence[str | None] | None = None,
) -> LanguageId:
    """Detected languages against the labels and against the original's detections."""
    if len(labels) != len(detected) or (original is not None and len(original) != len(labels)):
        raise ValueError("one label, one detection (and one original detection) per clip")
    found = [code or NO_LANGUAGE for code in detected]
    clips = len(labels)
    matches = sum(code == label for code, label in zip(found, labels, strict=True))
    agree = None
    if original is not None and clips:
        theirs = [code or NO_LANGUAGE for code in original]
        agree = sum(a == b for a, b in zip(found, theirs, strict=True)) / clips
    instead = Counter(code for code, label in zip(found, labels, strict=True) if code != label)
    return LanguageId(
        clips=clips,
        matches_label=matches / clips if clips else None,
        matches_original=agree,
        heard_instead=dict(sorted(instead.items(), key=lambda item: (-item[1], item[0]))),
    )


def corpus_rate(
    references: Sequence[str],
    hypotheses: Sequence[str],
    language: str,
    kind: str,
    clusters: Sequence[str],
) -> Rate | None:
    """The corpus rate of one kind with both intervals; None when the references are empty."""
    if not references or not _has_units(references, language, kind):
        return None
    clustered = corpus_wer(references, hypotheses, language, clusters=clusters, kind=kind)
    by_clip = corpus_wer(references, hypotheses, language, kind=kind)
    return Rate(
        kind=kind,
        rate=clustered.rate,
        errors=clustered.errors,
        reference_length=clustered.reference_length,
        interval=_bounds(clustered.interval),
        units=clustered.units,
        interval_over_clips=_bounds(by_clip.interval),
    )


def rate_difference(
    references: Sequence[str],
    engine: Sequence[str],
    original: Sequence[str],
    language: str,
    kind: str,
    clusters: Sequence[str],
) -> Difference | None:
    """Engine minus original, paired; None when the references are empty."""
    if not references or not _has_units(references, language, kind):
        return None
    clustered = paired_difference(
        references, engine, original, language, clusters=clusters, kind=kind
    )
    by_clip = paired_difference(references, engine, original, language, kind=kind)
    return Difference(
        kind=kind,
        difference=clustered.difference,
        interval=_bounds(clustered.interval),
        units=clustered.units,
        interval_over_clips=_bounds(by_clip.interval),
    )


def language_sections(
    clips: Sequence[LabelledClip],
    engines: Mapping[str, EngineOutput],
    original: str | None = "original",
) -> dict[str, LanguageSection]:
    """One section per labelled language, in order of first appearance; ``original`` names
    the engine the differences and agreements are taken against (absent: none are)."""
    base = engines.get(original) if original is not None else None
    sections = {}
    for language, group in group_by([c for c in clips if c.language], lambda c: c.language).items():
        scored = [c for c in group if c.reference]
        references = [c.reference for c in scored]
        clusters = [c.cluster for c in scored]
        labels = [language] * len(group)
        figures = {}
        for name, out in engines.items():
            hypotheses = [out.transcripts.get(c.name, "") for c in scored]
            rates = {
                kind: corpus_rate(references, hypotheses, language, kind, clusters)
                for kind in (WER, CER)
            }
            differences = dict.fromkeys((WER, CER))
            if base is not None and name != original:
                theirs = [base.transcripts.get(c.name, "") for c in scored]
                differences = {
                    kind: rate_difference(references, hypotheses, theirs, language, kind, clusters)
                    for kind in (WER, CER)
                }
            coverage = [out.coverage[c.name] for c in group if c.name in out.coverage]
            original_s = sum(c["original_s"] for c in coverage)
            figures[name] = LanguageEngine(
                wer=rates[WER],
                cer=rates[CER],
                wer_difference=differences[WER],
                cer_difference=differences[CER],
                language_id=language_id(
                    labels,
                    [out.languages.get(c.name) for c in group],
                    None if base is None else [base.languages.get(c.name) for c in group],
                ),
                speech_coverage_vs_original=(
                    sum(c["shared_s"] for c in coverage) / original_s
                    if base is not None and original_s
                    else None
                ),
                clips_with_dropped_span=sum(1 for c in coverage if c["dropped_spans"]),
                dropped_spans=sum(len(c["dropped_spans"]) for c in coverage),
            )
        any_rates = next(iter(figures.values()), None)
        sections[language] = LanguageSection(
            language=language,
            headline=headline(language),
            clips=len(group),
            scored_clips=len(scored),
            reference_words=_length(any_rates and any_rates.wer),
            reference_characters=_length(any_rates and any_rates.cer),
            bootstrap_unit_count=len(set(clusters)),
            engines=figures,
        )
    return sections


def _has_units(references: Sequence[str], language: str, kind: str) -> bool:
    """Do the references hold any word (or character) to score against?"""
    return any(error_rate(r, "", language, kind=kind).reference_length for r in references)


def _bounds(interval) -> tuple[float, float] | None:
    return None if interval is None else (interval.low, interval.high)


def _length(rate: Rate | None) -> int | None:
    return None if rate is None else rate.reference_length
