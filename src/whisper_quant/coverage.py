"""Speech coverage: how much of a clip an engine's segments cover, and what it left out.

A variant can skip speech and still look fast: on a 60 s recording read in English then
German, the quantized engine's window at 26 s ended after one segment and the loop sought to
56 s, so 27 s of German had no transcript while the original and onnx-fp32 transcribed it.
No threshold fired. These functions make such a skip visible: the seconds each engine's
segments cover, the seconds covered by both it and the original, and the spans the
original transcribed that the engine did not.

A batched transcription without timestamps writes each chunk as one segment spanning it, so
a chunk whose decoding ended after a few words leaves no gap for the spans to show. There
every engine decodes the same chunks, and `short_chunks` compares the words each engine wrote
per chunk with the original's instead.

Spans are (start, end) seconds. A segment counts when it has text; segments are clipped to
the clip's length (a short clip's last window can end at 30 s). Pure functions, no model.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

# A span the original covered and an engine did not is reported from this many seconds of
# the original's speech in it: shorter gaps are where segment boundaries differ.
MIN_DROPPED_S = 5.0
# An engine covering less than this share of what the original covered did less work: its
# speed-up is not comparable.
COMPARABLE_COVERAGE = 0.9

# A batched chunk is reported when the original wrote at least this many words in it and an
# engine fewer than this share of them (measured: int8 tiny.en, 7 of 65 words in one 28 s
# chunk, docs/batched.md).
MIN_CHUNK_WORDS = 20
SHORT_CHUNK_SHARE = 0.5

Span = tuple[float, float]


def merge(spans: Iterable[Span], *, limit: float | None = None) -> list[Span]:
    """The union of `spans` as sorted, disjoint spans (empty ones dropped), clipped to
    [0, limit] when a limit is given."""
    clipped = []
    for start, end in spans:
        start, end = max(float(start), 0.0), float(end)
        if limit is not None:
            end = min(end, float(limit))
        if end > start:
            clipped.append((start, end))
    merged: list[Span] = []
    for start, end in sorted(clipped):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total(spans: Iterable[Span]) -> float:
    """Seconds covered by disjoint spans."""
    return sum(end - start for start, end in spans)


def intersect(a: Sequence[Span], b: Sequence[Span]) -> list[Span]:
    """Where two lists of sorted, disjoint spans overlap."""
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if end > start:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def gaps(spans: Sequence[Span], limit: float) -> list[Span]:
    """The parts of [0, limit] that sorted, disjoint `spans` leave uncovered."""
    out, cursor = [], 0.0
    for start, end in spans:
        if start > cursor:
            out.append((cursor, start))
        cursor = max(cursor, end)
    if limit > cursor:
        out.append((cursor, limit))
    return out


def dropped_spans(
    original: Sequence[Span], other: Sequence[Span], limit: float, *, min_s: float = MIN_DROPPED_S
) -> list[Span]:
    """Stretches the original covered and `other` did not, with at least `min_s` seconds of
    the original's speech in them.

    A stretch is one gap of `other` (sorted, disjoint spans), trimmed to the original's
    speech inside it: the original's own pauses between segments do not split it.
    """
    out = []
    for gap in gaps(other, limit):
        inside = intersect(original, [gap])
        if inside and total(inside) >= min_s:
            out.append((inside[0][0], inside[-1][1]))
    return out


def chunk_words(segments: Sequence) -> dict[int, int] | None:
    """Words written per chunk of a batched transcription (segments with `chunk_start`,
    keyed by `window`, the chunk's index); None for sequential windows, whose indices differ
    from engine to engine."""
    if not segments or any(s.chunk_start is None for s in segments):
        return None
    words: dict[int, int] = {}
    for s in segments:
        words[s.window] = words.get(s.window, 0) + len(s.text.split())
    return words


def short_chunks(
    original: Mapping[int, int],
    other: Mapping[int, int],
    *,
    min_words: int = MIN_CHUNK_WORDS,
    share: float = SHORT_CHUNK_SHARE,
) -> list[tuple[int, int, int]]:
    """(chunk, the original's words, this engine's words) for every chunk where the original
    wrote at least `min_words` words and this engine fewer than `share` of them."""
    return [
        (chunk, words, other.get(chunk, 0))
        for chunk, words in sorted(original.items())
        if words >= min_words and other.get(chunk, 0) < share * words
    ]


def short_chunk_note(engine: str, found: Iterable[tuple[str | None, int, int, int]]) -> str:
    """The sentence the page and the benchmark report give an engine's short chunks:
    `found` holds (clip or None, chunk, the original's words, this engine's words)."""
    where = "; ".join(
        f"chunk {chunk}{f' of {clip}' if clip else ''} ({words} of the original's {theirs} words)"
        for clip, chunk, theirs, words in found
    )
    return (
        f"{engine} wrote under half the original's words in {where}: its decoding of those "
        "chunks ended early."
    )


@dataclass(frozen=True)
class ClipCoverage:
    """One engine's coverage of one clip against the original's."""

    covered_s: float  # seconds this engine's segments cover
    original_s: float  # seconds the original's segments cover
    shared_s: float  # seconds both cover
    dropped: tuple[Span, ...]  # dropped_spans

    @property
    def coverage(self) -> float | None:
        """Share of the original's covered seconds this engine covered too (None when the
        original covered nothing)."""
        return self.shared_s / self.original_s if self.original_s else None


def clip_coverage(
    original: Iterable[Span], other: Iterable[Span], audio_s: float, *, min_s: float = MIN_DROPPED_S
) -> ClipCoverage:
    """Compare the segment spans of the original and another engine on one clip."""
    reference, mine = merge(original, limit=audio_s), merge(other, limit=audio_s)
    return ClipCoverage(
        covered_s=total(mine),
        original_s=total(reference),
        shared_s=total(intersect(reference, mine)),
        dropped=tuple(dropped_spans(reference, mine, audio_s, min_s=min_s)),
    )


@dataclass(frozen=True)
class Coverage:
    """An engine's coverage over clips: seconds summed over them."""

    covered_s: float
    original_s: float
    shared_s: float
    clips_with_dropped_span: int

    @property
    def coverage(self) -> float | None:
        return self.shared_s / self.original_s if self.original_s else None

    @property
    def comparable(self) -> bool:
        """Did it cover at least COMPARABLE_COVERAGE of what the original covered (or had
        the original nothing to cover)?"""
        return self.coverage is None or self.coverage >= COMPARABLE_COVERAGE


def aggregate(clips: Iterable[ClipCoverage]) -> Coverage:
    clips = list(clips)
    return Coverage(
        covered_s=sum(c.covered_s for c in clips),
        original_s=sum(c.original_s for c in clips),
        shared_s=sum(c.shared_s for c in clips),
        clips_with_dropped_span=sum(1 for c in clips if c.dropped),
    )


def clock(seconds: float) -> str:
    """0:29, 1:02:05: seconds as a clock time, rounded down."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def format_span(span: Span) -> str:
    """A span as "0:29-0:56"."""
    return f"{clock(span[0])}-{clock(span[1])}"
