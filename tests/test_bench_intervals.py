"""The benchmark's intervals without engines: which clusters the bootstrap draws, and how a
missing interval (fewer than 10 clips or clusters) is shown; picking a dataset's languages."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from whisper_quant.cli import benchmark_main, benchmark_parser
from whisper_quant.clip_groups import bootstrap_clusters
from whisper_quant.report import _interval
from whisper_quant.report_markdown import bootstrap_note


def clips(**labels):
    """Clips named c0, c1 ... with the given attribute lists (speaker=[...], source=[...])."""
    count = len(next(iter(labels.values()))) if labels else 3
    return [
        SimpleNamespace(name=f"c{i}", **{k: v[i] for k, v in labels.items()}) for i in range(count)
    ]


def test_clips_without_labels_are_resampled_one_by_one():
    assert bootstrap_clusters(clips()) == ("clip", None)
    assert bootstrap_clusters(clips(speaker=[None, "", None])) == ("clip", None)


def test_a_speaker_or_else_a_source_names_the_clusters():
    assert bootstrap_clusters(clips(speaker=["a", "a", "b"])) == ("speaker", ["a", "a", "b"])
    assert bootstrap_clusters(clips(source=["x", "y", "x"], speaker=[None] * 3)) == (
        "source",
        ["x", "y", "x"],
    )
    # The speaker wins over the source; a clip without one is a cluster of its own.
    assert bootstrap_clusters(clips(speaker=["a", None, "a"], source=["x", "y", "z"])) == (
        "speaker",
        ["a", "clip:c1", "a"],
    )


def test_a_missing_interval_shows_n_instead():
    assert _interval(0.077, (0.05, 0.1)) == "7.7% [5.0%, 10.0%]"
    assert _interval(0.077, None, n=3) == "7.7% (n=3)"
    assert _interval(0.01, None, signed=True, n=3) == "+1.0% (n=3)"
    assert _interval(None, None, n=3) == ""


def test_the_note_says_what_was_resampled():
    clip = {"unit": "clip", "units": 40, "min_units": 10, "resamples": 2000}
    assert bootstrap_note(clip).startswith("intervals are 95% bootstrap intervals over clips")
    speakers = {**clip, "unit": "speaker", "units": 12}
    note = bootstrap_note(speakers)
    assert "cluster-bootstrap intervals over the 12 speakers" in note
    assert "the same speakers drawn for both engines" in note
    few = bootstrap_note({**speakers, "units": 4})
    assert few.startswith("no 95% bootstrap interval: 4 speakers are fewer than the 10")
    assert "n=4 is shown instead" in few


def test_languages_option_reads_codes_and_needs_a_dataset(tmp_path, capsys):
    args = benchmark_parser().parse_args(["--dataset", "eval", "--languages", "en, es,ru"])
    assert args.languages == frozenset({"en", "es", "ru"})
    assert benchmark_parser().parse_args([]).languages is None  # default: every clip
    with pytest.raises(SystemExit):
        benchmark_parser().parse_args(["--languages", ","])
    code = benchmark_main(["--languages", "en", "--models-dir", str(tmp_path)])
    assert code == 2
    assert "pick clips of a --dataset" in capsys.readouterr().err
