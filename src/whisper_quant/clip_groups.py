"""Group clips by the labels a dataset gives them: language, and the cluster a bootstrap resamples.

Pure functions over any clip. `datasets.DatasetClip` carries ``language``, ``speaker`` and
``source``; a plain `bench.Clip` (files given on the command line, tests/data) has none, and a
missing or empty label reads as the default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

T = TypeVar("T")

# Clip attributes that name a clip's cluster for the bootstrap, tried in this order.
CLUSTER_ATTRIBUTES = ("speaker", "source")


def label_of(clip: object, field: str, default: str = "") -> str:
    """The clip's ``field`` label ("language", "speaker" or "source"), or ``default``."""
    value = getattr(clip, field, "")
    return str(value) if value else default


def group_by(items: Iterable[T], key: Callable[[T], str]) -> dict[str, list[T]]:
    """Items by key, keys in order of first appearance, items in their given order."""
    groups: dict[str, list[T]] = {}
    for item in items:
        groups.setdefault(key(item), []).append(item)
    return groups


def group_by_language(clips: Iterable[T], default: str = "") -> dict[str, list[T]]:
    """Clips by their ``language`` label; unlabelled clips go under ``default``."""
    return group_by(clips, lambda clip: label_of(clip, "language", default))


def cluster_of(clip: object) -> str:
    """The unit a cluster bootstrap resamples: the speaker, else the source, else the clip.

    Clips of one speaker are not independent (1,100 of eval/'s 1,535 English words come from
    one voice), so they are resampled together. A clip with neither label is its own cluster,
    which makes the cluster bootstrap the ordinary one over clips. The prefixes keep a speaker
    and a clip of the same name apart.
    """
    speaker = label_of(clip, "speaker")
    if speaker:
        return f"speaker:{speaker}"
    source = label_of(clip, "source")
    if source:
        return f"source:{source}"
    return f"clip:{label_of(clip, 'name')}"


def bootstrap_clusters(clips: Sequence) -> tuple[str, list[str] | None]:
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
