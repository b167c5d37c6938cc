"""Grouping clips by language and by the cluster a bootstrap resamples."""

from __future__ import annotations

from pathlib import Path

from whisper_quant.bench import Clip
from whisper_quant.clip_groups import cluster_of, group_by, group_by_language, label_of
from whisper_quant.datasets import DatasetClip


def clip(name: str, language: str = "", speaker: str = "", source: str = "") -> DatasetClip:
    return DatasetClip(name, Path(name), "text", language=language, speaker=speaker, source=source)


def test_group_by_language_keeps_first_seen_order():
    clips = [clip("a", "en"), clip("b", "ru"), clip("c", "en"), clip("d", "fr"), clip("e")]
    groups = group_by_language(clips, default="unknown")
    assert list(groups) == ["en", "ru", "fr", "unknown"]
    assert [c.name for c in groups["en"]] == ["a", "c"]
    assert [c.name for c in groups["unknown"]] == ["e"]


def test_plain_clips_have_default_labels():
    plain = Clip("x.wav", Path("x.wav"), "ref")
    assert label_of(plain, "language") == ""
    assert label_of(plain, "language", "en") == "en"
    assert group_by_language([plain], default="en") == {"en": [plain]}
    assert cluster_of(plain) == "clip:x.wav"


def test_cluster_is_speaker_then_source_then_clip():
    assert cluster_of(clip("a", speaker="allison-smith", source="asterisk")) == (
        "speaker:allison-smith"
    )
    assert cluster_of(clip("b", source="asterisk")) == "source:asterisk"
    assert cluster_of(clip("c")) == "clip:c"
    # A speaker named like a clip stays a different cluster.
    assert cluster_of(clip("x", speaker="x")) != cluster_of(clip("x"))


def test_group_by_any_key():
    clips = [clip("a", speaker="s1"), clip("b", speaker="s2"), clip("c", speaker="s1")]
    groups = group_by(clips, cluster_of)
    assert {key: [c.name for c in group] for key, group in groups.items()} == {
        "speaker:s1": ["a", "c"],
        "speaker:s2": ["b"],
    }
