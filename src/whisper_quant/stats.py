"""Statistics for an evaluation set: bootstrap intervals, loop flags, a per-utterance table.

A corpus WER from a few hundred utterances is an estimate; its 95% interval comes from the
bootstrap over utterances: draw as many utterances as the set holds, with replacement, and
recompute the corpus rate (total errors / total reference words), 2000 times by default; the
interval is the 2.5th to 97.5th percentile of those rates. The paired difference between an
engine and the original draws the same utterances for both in each resample, so what the two
have in common (hard clips, easy clips) cancels out and only the engine's change is left.

Utterances of one speaker (or one source) are not independent: a voice the model mishears
is misheard in all its clips. Given cluster labels, the bootstrap draws clusters instead (a
cluster bootstrap): as many clusters as there are, with replacement, each with all its
utterances. When one speaker holds most of the words the interval widens to show it; with
every utterance its own cluster it is the utterance bootstrap, draw for draw.

Below MIN_INTERVAL_UNITS units (utterances, or clusters when clustered) the resamples are
too few and too alike to bound anything ([14.0, 14.0] from one clip), so no interval is
given: ``interval`` is None and renderers show the unit count ("n=3") instead.

Errors are counted by `metrics.error_rate` (Whisper's normalisers as they are by default, or
with `metrics.EXTRA_RULES` on request; WER for English, CER for other languages), so the
figures match the rest of the project. Loop and empty-output flags count words, so they use
the extra rules: a token without a letter or digit is no word.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .decoding import text_compression_ratio
from .metrics import DiffToken, agreement, error_rate, normalize_text, word_diff

DEFAULT_RESAMPLES = 2000
DEFAULT_CONFIDENCE = 0.95
DEFAULT_SEED = 0
# Fewer utterances (or clusters) than this give no interval.
MIN_INTERVAL_UNITS = 10

# openai-whisper's transcribe() retries a window whose text compresses better than this
# (len(text) / len(zlib.compress(text)), UTF-8 bytes): such text repeats itself.
COMPRESSION_RATIO_THRESHOLD = 2.4
# A 4-word n-gram repeated more than 4 times in a row marks a decoding loop.
LOOP_NGRAM = 4
LOOP_MAX_REPEATS = 4

# Resamples drawn at once: bounds the index matrix to about 16 MB for a 1,000-utterance set.
_RESAMPLE_CHUNK = 250


@dataclass(frozen=True)
class Interval:
    """A two-sided percentile bootstrap interval."""

    low: float
    high: float
    confidence: float

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    @property
    def width(self) -> float:
        return self.high - self.low


@dataclass(frozen=True)
class CorpusWer:
    """Corpus error rate with its bootstrap interval.

    ``kind`` is "WER" for English and "CER" for other languages, as in `metrics.error_rate`.
    """

    kind: str
    errors: int
    reference_length: int
    rate: float
    interval: Interval | None  # None below MIN_INTERVAL_UNITS units
    utterances: int
    resamples: int
    seed: int | None
    clusters: int | None = None  # clusters resampled; None: utterances were

    @property
    def units(self) -> int:
        """How many units each resample draws: clusters when clustered, else utterances."""
        return self.utterances if self.clusters is None else self.clusters

    def __str__(self) -> str:
        head = f"{self.kind} {self.rate:.1%} ({self.errors}/{self.reference_length})"
        if self.interval is None:
            return f"{head}, n={self.units}"
        return (
            f"{head}, {self.interval.confidence:.0%} CI "
            f"[{self.interval.low:.1%}, {self.interval.high:.1%}]"
        )


@dataclass(frozen=True)
class PairedDifference:
    """Engine minus original corpus error rate, with its paired bootstrap interval.

    Positive ``difference`` means the engine makes more errors than the original. When the
    interval excludes zero the change is larger than what the choice of utterances explains.
    """

    kind: str
    engine_rate: float
    original_rate: float
    difference: float
    interval: Interval | None  # None below MIN_INTERVAL_UNITS units
    utterances: int
    resamples: int
    seed: int | None
    clusters: int | None = None  # clusters resampled; None: utterances were

    @property
    def units(self) -> int:
        """How many units each resample draws: clusters when clustered, else utterances."""
        return self.utterances if self.clusters is None else self.clusters

    @property
    def significant(self) -> bool:
        """The interval excludes zero; False without an interval (too few units to tell)."""
        return self.interval is not None and 0.0 not in self.interval

    def __str__(self) -> str:
        head = (
            f"{self.kind} {self.difference:+.1%} ({self.engine_rate:.1%} vs "
            f"{self.original_rate:.1%})"
        )
        if self.interval is None:
            return f"{head}, n={self.units}"
        return (
            f"{head}, {self.interval.confidence:.0%} CI "
            f"[{self.interval.low:+.1%}, {self.interval.high:+.1%}]"
        )


@dataclass(frozen=True)
class LoopFlags:
    """Signs that a transcript is a decoding loop or a hallucination."""

    compression_ratio: float
    high_compression: bool  # compression_ratio > COMPRESSION_RATIO_THRESHOLD
    text_on_silence: bool  # words where the reference has none
    repeated_ngram: bool  # a LOOP_NGRAM-word n-gram repeated > LOOP_MAX_REPEATS times in a row

    @property
    def any(self) -> bool:
        return self.high_compression or self.text_on_silence or self.repeated_ngram


@dataclass(frozen=True)
class FlagCounts:
    """How many transcripts of one engine carry each flag, and how many are empty."""

    utterances: int
    empty_outputs: int
    high_compression: int
    text_on_silence: int
    repeated_ngram: int
    flagged: int  # transcripts with at least one flag


@dataclass(frozen=True)
class UtteranceRow:
    """One utterance of the per-utterance table.

    ``disagreement`` is the edit distance from the original's transcript when one is given
    (what quantization changed), otherwise from the reference; ``diff`` shows those words, as
    `metrics.word_diff` labels them (missing words included).
    """

    name: str
    reference: str
    hypothesis: str
    original: str | None
    errors: int
    original_errors: int | None
    reference_length: int
    disagreement: int
    diff: tuple[DiffToken, ...]
    flags: LoopFlags

    @property
    def rate(self) -> float:
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_length


def utterance_counts(
    references: Sequence[str],
    hypotheses: Sequence[str],
    language: str | None = "en",
    *,
    extra_rules: bool = False,
    kind: str | None = None,
) -> tuple[str, np.ndarray, np.ndarray]:
    """(kind, errors per utterance, reference length per utterance), as int64 arrays;
    ``kind`` None scores as `metrics.error_rate` does for the language."""
    _check_pairs(references, hypotheses)
    rates = [
        error_rate(ref, hyp, language, extra_rules=extra_rules, kind=kind)
        for ref, hyp in zip(references, hypotheses, strict=True)
    ]
    errors = np.array([r.errors for r in rates], dtype=np.int64)
    lengths = np.array([r.reference_length for r in rates], dtype=np.int64)
    return rates[0].kind, errors, lengths


def cluster_sums(
    clusters: Sequence[Hashable], *columns: np.ndarray
) -> tuple[int, list[np.ndarray]]:
    """(number of clusters, each column summed per cluster), clusters in order of first
    appearance, so singleton clusters keep the utterances' order."""
    index: dict[Hashable, int] = {}
    ids = np.array([index.setdefault(c, len(index)) for c in clusters], dtype=np.int64)
    return len(index), [
        np.bincount(ids, weights=col, minlength=len(index)).astype(np.int64) for col in columns
    ]


def corpus_wer(
    references: Sequence[str],
    hypotheses: Sequence[str],
    language: str | None = "en",
    *,
    clusters: Sequence[Hashable] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | None = DEFAULT_SEED,
    min_units: int = MIN_INTERVAL_UNITS,
    extra_rules: bool = False,
    kind: str | None = None,
) -> CorpusWer:
    """Corpus WER (CER for non-English) with a percentile bootstrap interval.

    The bootstrap draws utterances, or the clusters given (one label per utterance: its
    speaker or source). No interval below `min_units` utterances or clusters. ``kind`` WER
    or CER asks for that rate whatever the language.
    """
    _check_settings(resamples, confidence)
    kind, errors, lengths = utterance_counts(
        references, hypotheses, language, extra_rules=extra_rules, kind=kind
    )
    _check_reference_words(lengths)
    units, (unit_errors, unit_lengths) = _units(clusters, errors, lengths)
    interval = None
    if units >= min_units:
        rates = np.concatenate(
            [
                _ratio(unit_errors[idx].sum(axis=1), unit_lengths[idx].sum(axis=1))
                for idx in _resample_indices(units, resamples, seed)
            ]
        )
        interval = percentile_interval(rates, confidence)
    return CorpusWer(
        kind=kind,
        errors=int(errors.sum()),
        reference_length=int(lengths.sum()),
        rate=float(errors.sum() / lengths.sum()),
        interval=interval,
        utterances=len(errors),
        resamples=resamples,
        seed=seed,
        clusters=None if clusters is None else units,
    )


def paired_difference(
    references: Sequence[str],
    engine: Sequence[str],
    original: Sequence[str],
    language: str | None = "en",
    *,
    clusters: Sequence[Hashable] | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int | None = DEFAULT_SEED,
    min_units: int = MIN_INTERVAL_UNITS,
    extra_rules: bool = False,
    kind: str | None = None,
) -> PairedDifference:
    """Engine minus original corpus rate, resampling the same utterances (or clusters) for
    both. No interval below `min_units` utterances or clusters. ``kind`` as in corpus_wer."""
    _check_settings(resamples, confidence)
    kind, engine_errors, lengths = utterance_counts(
        references, engine, language, extra_rules=extra_rules, kind=kind
    )
    _, original_errors, _ = utterance_counts(
        references, original, language, extra_rules=extra_rules, kind=kind
    )
    _check_reference_words(lengths)
    # Both rates share the denominator (the reference words of the drawn utterances), so the
    # difference of rates is the difference of errors over it.
    delta = engine_errors - original_errors
    units, (unit_delta, unit_lengths) = _units(clusters, delta, lengths)
    interval = None
    if units >= min_units:
        differences = np.concatenate(
            [
                _ratio(unit_delta[idx].sum(axis=1), unit_lengths[idx].sum(axis=1), signed=True)
                for idx in _resample_indices(units, resamples, seed)
            ]
        )
        interval = percentile_interval(differences, confidence)
    total = lengths.sum()
    return PairedDifference(
        kind=kind,
        engine_rate=float(engine_errors.sum() / total),
        original_rate=float(original_errors.sum() / total),
        difference=float(delta.sum() / total),
        interval=interval,
        utterances=len(delta),
        resamples=resamples,
        seed=seed,
        clusters=None if clusters is None else units,
    )


def percentile_interval(values: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """The central `confidence` share of `values` (numpy's default linear quantiles)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return Interval(low=float(low), high=float(high), confidence=confidence)


def compression_ratio(text: str) -> float:
    """openai-whisper's compression ratio (decoding.text_compression_ratio); empty text is 0.

    Plain sentences score about 1 (short ones below), loops well above 2.4.
    """
    return text_compression_ratio(text) if text else 0.0


def longest_ngram_run(words: Sequence[str], n: int = LOOP_NGRAM) -> int:
    """The most times an n-gram occurs in a row, each occurrence at most n words after the last.

    Back-to-back copies of a phrase of up to n words make one n-gram recur every p <= n words:
    "to understand and" x 100 repeats "to understand and to" every 3 words, and a 4-word phrase
    repeated 5 times holds its 4-gram 5 times in a row. Returns 0 for fewer than n words.
    """
    if len(words) < n:
        return 0
    index: dict[str, int] = {}
    ids = np.array([index.setdefault(word, len(index)) for word in words], dtype=np.int64)
    best = 1
    for period in range(1, n + 1):
        if len(ids) <= period:
            break
        # A run of r equal positions (word i == word i + period) is a text stretch of
        # r + period words with that period; it holds (r + period - n) // period + 1 copies of
        # its first n-gram, each one period after the last.
        run = _longest_true_run(ids[:-period] == ids[period:])
        if run + period >= n:
            best = max(best, (run + period - n) // period + 1)
    return best


def loop_flags(text: str, reference: str | None = None, language: str | None = "en") -> LoopFlags:
    """Loop and hallucination flags of one transcript.

    ``reference`` None means unknown: then text on silence is not judged.
    """
    words = normalize_text(text, language, extra_rules=True).split()
    ratio = compression_ratio(text)
    silent_reference = reference is not None and not normalize_text(
        reference, language, extra_rules=True
    )
    return LoopFlags(
        compression_ratio=ratio,
        high_compression=ratio > COMPRESSION_RATIO_THRESHOLD,
        text_on_silence=silent_reference and bool(words),
        repeated_ngram=longest_ngram_run(words) > LOOP_MAX_REPEATS,
    )


def is_empty_output(text: str, language: str | None = "en") -> bool:
    """True when nothing of the transcript survives normalisation (no words at all)."""
    return not normalize_text(text, language, extra_rules=True)


def count_empty_outputs(hypotheses: Sequence[str], language: str | None = "en") -> int:
    return sum(is_empty_output(text, language) for text in hypotheses)


def count_flags(
    references: Sequence[str | None], hypotheses: Sequence[str], language: str | None = "en"
) -> FlagCounts:
    """Flag and empty-output counts of one engine's transcripts (a None reference: unknown,
    so text on silence is not judged for it)."""
    _check_pairs(references, hypotheses)
    flags = [
        loop_flags(hyp, ref, language) for ref, hyp in zip(references, hypotheses, strict=True)
    ]
    return FlagCounts(
        utterances=len(flags),
        empty_outputs=count_empty_outputs(hypotheses, language),
        high_compression=sum(f.high_compression for f in flags),
        text_on_silence=sum(f.text_on_silence for f in flags),
        repeated_ngram=sum(f.repeated_ngram for f in flags),
        flagged=sum(f.any for f in flags),
    )


def utterance_table(
    names: Sequence[str],
    references: Sequence[str],
    hypotheses: Sequence[str],
    originals: Sequence[str] | None = None,
    language: str | None = "en",
) -> list[UtteranceRow]:
    """One row per utterance, most disagreeing first.

    Rows sort by disagreement (with the original if given, else with the reference), then by
    errors against the reference, both descending, then by name.
    """
    _check_pairs(references, hypotheses)
    if len(names) != len(references):
        raise ValueError(f"{len(names)} names for {len(references)} utterances")
    if originals is not None and len(originals) != len(references):
        raise ValueError(f"{len(originals)} original transcripts for {len(references)} utterances")
    rows = [
        _row(name, ref, hyp, None if originals is None else originals[i], language)
        for i, (name, ref, hyp) in enumerate(zip(names, references, hypotheses, strict=True))
    ]
    return sorted(rows, key=lambda r: (-r.disagreement, -r.errors, r.name))


def _row(
    name: str, reference: str, hypothesis: str, original: str | None, language: str | None
) -> UtteranceRow:
    scored = error_rate(reference, hypothesis, language)
    if original is None:
        base, disagreement, original_errors = reference, scored.errors, None
    else:
        base = original
        disagreement = agreement(original, hypothesis, language).errors
        original_errors = error_rate(reference, original, language).errors
    return UtteranceRow(
        name=name,
        reference=reference,
        hypothesis=hypothesis,
        original=original,
        errors=scored.errors,
        original_errors=original_errors,
        reference_length=scored.reference_length,
        disagreement=disagreement,
        diff=tuple(word_diff(base, hypothesis, language, show_missing=True)),
        flags=loop_flags(hypothesis, reference, language),
    )


def _units(
    clusters: Sequence[Hashable] | None, *columns: np.ndarray
) -> tuple[int, list[np.ndarray]]:
    """The bootstrap's units: the utterances themselves, or their clusters' sums."""
    if clusters is None:
        return len(columns[0]), list(columns)
    if len(clusters) != len(columns[0]):
        raise ValueError(f"{len(clusters)} cluster labels for {len(columns[0])} utterances")
    return cluster_sums(clusters, *columns)


def _check_settings(resamples: int, confidence: float) -> None:
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def _resample_indices(n: int, resamples: int, seed: int | None) -> Iterator[np.ndarray]:
    """Index matrices (chunk x n) of units drawn with replacement, `resamples` rows in all."""
    _check_settings(resamples, DEFAULT_CONFIDENCE)
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, _RESAMPLE_CHUNK):
        yield rng.integers(0, n, size=(min(_RESAMPLE_CHUNK, resamples - start), n))


def _ratio(errors: np.ndarray, lengths: np.ndarray, *, signed: bool = False) -> np.ndarray:
    """errors / lengths; a resample of silent utterances only (no reference words) scores like
    `metrics.ErrorRate.rate` does: 0 without errors, else 1 (sign kept for differences)."""
    safe = np.maximum(lengths, 1)
    empty = np.sign(errors) if signed else (errors > 0).astype(np.float64)
    return np.where(lengths > 0, errors / safe, empty)


def _longest_true_run(mask: np.ndarray) -> int:
    if not mask.any():
        return 0
    # Run lengths from the positions where the mask switches on and off.
    padded = np.concatenate(([False], mask, [False])).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def _check_pairs(references: Sequence[str], hypotheses: Sequence[str]) -> None:
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(hypotheses)} transcripts for {len(references)} references")
    if not references:
        raise ValueError("at least one utterance is needed")


def _check_reference_words(lengths: np.ndarray) -> None:
    if lengths.sum() == 0:
        raise ValueError("the references hold no words: the corpus rate is undefined")
