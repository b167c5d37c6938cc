"""Bootstrap intervals, loop flags and the per-utterance table, on hand-computable cases."""

from __future__ import annotations

import numpy as np
import pytest

from whisper_quant import stats
from whisper_quant.metrics import DIFF_ADDED, DIFF_CHANGED, corpus_error_rate

REFERENCES = [
    "the cat sat on the mat",  # 6 words
    "go forward ten meters",  # 4 words
    "please press the pound key",  # 5 words
    "she sells sea shells",  # 4 words
]


def test_point_estimate_is_the_project_corpus_wer():
    hypotheses = [
        "the cat sat on a mat",  # 1 substitution
        "go forward ten meters",  # 0
        "please press pound key",  # 1 deletion
        "she sells sea shells today",  # 1 insertion
    ]
    result = stats.corpus_wer(REFERENCES, hypotheses, resamples=200, min_units=1)
    assert (result.errors, result.reference_length) == (3, 19)
    assert result.rate == pytest.approx(3 / 19)
    assert result.rate == pytest.approx(
        corpus_error_rate(zip(REFERENCES, hypotheses, strict=True)).rate
    )
    assert result.kind == "WER"
    assert result.utterances == 4 and result.resamples == 200
    assert result.rate in result.interval
    assert 0.0 <= result.interval.low <= result.interval.high <= 1.0


def test_same_rate_in_every_utterance_gives_a_zero_width_interval():
    references = ["red green blue white"] * 5
    hypotheses = ["red green blue black"] * 5  # 1 error in 4 words everywhere
    result = stats.corpus_wer(references, hypotheses, resamples=100, min_units=1)
    assert result.rate == 0.25
    assert (result.interval.low, result.interval.high) == (0.25, 0.25)


def test_two_utterances_interval_spans_the_possible_resamples():
    # Resamples of two utterances with 0/2 and 2/2 errors: rates 0, 0.5 and 1 with chances
    # 1/4, 1/2, 1/4, so the 2.5th and 97.5th percentiles are 0 and 1.
    references = ["red green", "blue yellow"]
    hypotheses = ["red green", "black white"]
    result = stats.corpus_wer(references, hypotheses, resamples=2000, min_units=1)
    assert result.rate == 0.5
    assert (result.interval.low, result.interval.high) == (0.0, 1.0)


def test_bootstrap_is_reproducible_with_a_seed():
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    references = [" ".join(words[: 3 + i % 7]) for i in range(40)]
    hypotheses = [" ".join(words[: 3 + i % 7][i % 3 :]) for i in range(40)]  # 0-2 deletions
    first = stats.corpus_wer(references, hypotheses, seed=7)
    second = stats.corpus_wer(references, hypotheses, seed=7)
    other = stats.corpus_wer(references, hypotheses, seed=8)
    assert first == second
    assert first.interval != other.interval
    assert first.rate == other.rate


def test_default_settings():
    result = stats.corpus_wer(REFERENCES * 3, REFERENCES * 3)
    assert result.resamples == stats.DEFAULT_RESAMPLES == 2000
    assert stats.MIN_INTERVAL_UNITS == 10 and result.clusters is None
    assert result.interval.confidence == 0.95
    assert result.seed == 0


def test_identical_transcripts_give_a_difference_of_exactly_zero():
    engine = ["the cat sat on a mat", "go forward ten metres", "press the pound key", "she"]
    result = stats.paired_difference(REFERENCES, engine, list(engine), min_units=1)
    assert result.difference == 0.0
    assert (result.interval.low, result.interval.high) == (0.0, 0.0)
    assert not result.significant


def test_paired_difference_counts_the_engine_extra_errors():
    original = list(REFERENCES)  # perfect
    engine = ["the cat sat on the hat", *REFERENCES[1:]]  # 1 substitution in 19 words
    result = stats.paired_difference(REFERENCES, engine, original, resamples=500, min_units=1)
    assert result.original_rate == 0.0
    assert result.engine_rate == pytest.approx(1 / 19)
    assert result.difference == pytest.approx(1 / 19)
    assert result.difference in result.interval
    # The changed utterance is missing from some resamples, so the interval reaches zero.
    assert result.interval.low == 0.0 and result.interval.high > 1 / 19


def test_engine_worse_everywhere_is_significant():
    references = ["alpha beta gamma delta"] * 30
    engine = ["alpha beta gamma epsilon"] * 30
    result = stats.paired_difference(references, engine, references, resamples=300)
    assert result.difference == 0.25
    assert result.significant
    assert "+25.0%" in str(result)


def test_paired_difference_uses_the_same_resamples_for_both():
    # If the two engines were resampled independently the interval of two identical but
    # imperfect engines would not collapse to a point.
    hypotheses = ["the cat", "go", "please press the pound key", "she sells sea shells"]
    result = stats.paired_difference(REFERENCES, hypotheses, hypotheses, resamples=300, min_units=1)
    assert result.engine_rate > 0
    assert result.interval.width == 0.0


def test_non_english_is_scored_by_characters():
    result = stats.corpus_wer(["hallo welt"], ["hallo welt"], language="de", resamples=10)
    assert result.kind == "CER"
    assert result.reference_length == len("hallowelt")


def _dominant_speaker_set() -> tuple[list[str], list[str], list[str]]:
    """20 clips of one voice, 3 errors in 10 words each, and 10 other voices with one clean
    10-word clip each: most of the words, and every error, come from one speaker."""
    words = "red green blue white black brown pink grey gold teal".split()
    reference = " ".join(words)
    misheard = " ".join(["bed", "screen", "glue", *words[3:]])
    references = [reference] * 30
    hypotheses = [misheard] * 20 + [reference] * 10
    speakers = ["dominant"] * 20 + [f"voice-{i}" for i in range(10)]
    return references, hypotheses, speakers


def test_a_dominant_speaker_widens_the_cluster_interval():
    references, hypotheses, speakers = _dominant_speaker_set()
    clips = stats.corpus_wer(references, hypotheses)
    clustered = stats.corpus_wer(references, hypotheses, clusters=speakers)
    assert clips.rate == clustered.rate == pytest.approx(60 / 300)
    assert (clips.clusters, clustered.clusters, clustered.units) == (None, 11, 11)
    # Drawing clips mixes the voice's 20 clips with the others' 10 in about those shares;
    # drawing speakers draws the voice itself 0, 1, 2 ... times in 11.
    assert clustered.interval.width > 2 * clips.interval.width
    assert clustered.rate in clustered.interval
    paired_clips = stats.paired_difference(references, hypotheses, references)
    paired = stats.paired_difference(references, hypotheses, references, clusters=speakers)
    assert paired.difference == pytest.approx(0.2)
    assert paired.interval.width > 2 * paired_clips.interval.width


def test_singleton_clusters_give_the_clip_bootstrap_draw_for_draw():
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    references = [" ".join(words[: 3 + i % 7]) for i in range(40)]
    hypotheses = [" ".join(words[: 3 + i % 7][i % 3 :]) for i in range(40)]
    originals = [" ".join(words[: 3 + i % 7][i % 2 :]) for i in range(40)]
    names = [f"clip-{i}" for i in range(40)]
    for seed in (0, 7):
        clips = stats.corpus_wer(references, hypotheses, seed=seed)
        singletons = stats.corpus_wer(references, hypotheses, seed=seed, clusters=names)
        assert singletons.interval == clips.interval and singletons.clusters == 40
        paired = stats.paired_difference(references, hypotheses, originals, seed=seed)
        paired_singletons = stats.paired_difference(
            references, hypotheses, originals, seed=seed, clusters=names
        )
        assert paired_singletons.interval == paired.interval


def test_no_interval_below_ten_clips_or_ten_clusters():
    references = ["red green blue white"] * 12
    hypotheses = ["red green blue black"] * 12
    nine = stats.corpus_wer(references[:9], hypotheses[:9])
    assert nine.interval is None and nine.units == 9
    assert str(nine) == "WER 25.0% (9/36), n=9"
    ten = stats.corpus_wer(references[:10], hypotheses[:10])
    assert ten.interval is not None and ten.units == 10
    # 12 clips from 9 speakers: too few clusters.
    speakers = [f"s{i % 9}" for i in range(12)]
    clustered = stats.corpus_wer(references, hypotheses, clusters=speakers)
    assert clustered.interval is None and (clustered.utterances, clustered.units) == (12, 9)
    paired = stats.paired_difference(references, hypotheses, references, clusters=speakers)
    assert paired.interval is None and not paired.significant
    assert str(paired).endswith(", n=9")


def test_cluster_labels_must_match_the_utterances():
    with pytest.raises(ValueError, match="2 cluster labels for 3 utterances"):
        stats.corpus_wer(["a", "b", "c"], ["a", "b", "c"], clusters=["x", "y"])


def test_the_extra_normalisation_rules_are_passed_on():
    references, hypotheses = ["five five"] * 10, ["5 5"] * 10
    assert stats.corpus_wer(references, hypotheses).errors == 20
    assert stats.corpus_wer(references, hypotheses, extra_rules=True).errors == 0
    result = stats.paired_difference(references, hypotheses, references, extra_rules=True)
    assert result.difference == 0.0


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="transcripts for"):
        stats.corpus_wer(["a b"], ["a b", "c"])
    with pytest.raises(ValueError, match="at least one"):
        stats.corpus_wer([], [])
    with pytest.raises(ValueError, match="no words"):
        stats.corpus_wer([""], ["hello"])
    with pytest.raises(ValueError, match="resamples"):
        stats.corpus_wer(["a b"], ["a b"], resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        stats.percentile_interval(np.array([0.1, 0.2]), confidence=1.0)


def test_silent_utterances_count_no_reference_words():
    # A silent reference adds no words; text on it adds insertions, as in metrics.
    result = stats.corpus_wer(["hello world", ""], ["hello world", "thank you"], resamples=200)
    assert (result.errors, result.reference_length) == (2, 2)


def test_compression_ratio_matches_openai_whisper_definition():
    import zlib

    text = "to understand and " * 100
    data = text.encode("utf-8")
    assert stats.compression_ratio(text) == len(data) / len(zlib.compress(data))
    assert stats.compression_ratio("") == 0.0


LOOP = "I want to understand and" + " to understand and" * 100
NORMAL = (
    "Thank you for calling Super Awesome Company, Waldo's premier provider of perfect products. "
    "If you know your party's extension, you may dial it at any time."
)


def test_loop_detector_catches_a_repeated_phrase():
    flags = stats.loop_flags(LOOP, reference="I want to understand and")
    assert flags.high_compression and flags.compression_ratio > 2.4
    assert flags.repeated_ngram
    assert not flags.text_on_silence
    assert flags.any


def test_loop_detector_passes_normal_text():
    flags = stats.loop_flags(NORMAL, reference=NORMAL)
    assert not flags.high_compression and flags.compression_ratio < 2.4
    assert not flags.repeated_ngram
    assert not flags.any


@pytest.mark.parametrize(
    ("text", "run"),
    [
        ("a b c d", 1),
        ("one two three four " * 4, 4),  # four in a row: not more than four
        ("one two three four " * 5, 5),
        ("bye " * 8, 5),  # one word: its 4-gram recurs every word
        ("to understand and " * 10, 9),  # "to understand and to" every 3 words, 9 fit
        ("a b c", 0),
    ],
)
def test_longest_ngram_run(text, run):
    assert stats.longest_ngram_run(text.split()) == run


def test_repeated_ngram_threshold_is_more_than_four_times():
    assert not stats.loop_flags("red green blue white " * 4).repeated_ngram
    assert stats.loop_flags("red green blue white " * 5).repeated_ngram


def test_text_on_silence():
    assert stats.loop_flags("Thank you.", reference="").text_on_silence
    assert not stats.loop_flags("", reference="").text_on_silence
    assert not stats.loop_flags("Thank you.", reference=None).text_on_silence
    assert not stats.loop_flags("Thank you.", reference="thank you").text_on_silence


def test_empty_outputs_and_flag_counts():
    references = ["hello there", "", "one two three four five", "good morning"]
    hypotheses = ["", "Thank you.", LOOP, "..."]
    assert stats.count_empty_outputs(hypotheses) == 2  # "" and "..." hold no words
    counts = stats.count_flags(references, hypotheses)
    assert counts == stats.FlagCounts(
        utterances=4,
        empty_outputs=2,
        high_compression=1,
        text_on_silence=1,
        repeated_ngram=1,
        flagged=2,
    )


def test_utterance_table_sorts_most_disagreeing_first():
    names = ["a", "b", "c", "d"]
    original = list(REFERENCES)
    engine = [
        "the cat sat on the mat",  # same as the original
        "go backward five meters",  # 2 changed words
        "please press the pound key now",  # 1 added word
        "she sells sea shells",
    ]
    rows = stats.utterance_table(names, REFERENCES, engine, original)
    assert [r.name for r in rows] == ["b", "c", "a", "d"]
    top = rows[0]
    assert (top.disagreement, top.errors, top.original_errors) == (2, 2, 0)
    assert top.reference_length == 4 and top.rate == 0.5
    assert [label for _, label in top.diff if label] == [DIFF_CHANGED, DIFF_CHANGED]
    assert "".join(token for token, _ in top.diff) == engine[1]
    assert [label for _, label in rows[1].diff if label] == [DIFF_ADDED]
    assert not top.flags.any


def test_utterance_table_without_original_compares_with_the_reference():
    rows = stats.utterance_table(["x", "y"], REFERENCES[:2], ["the cat", "go forward ten meters"])
    assert rows[0].name == "x" and rows[0].original is None
    assert rows[0].disagreement == rows[0].errors == 4
    assert rows[0].original_errors is None
    assert ("sat", "missing") in rows[0].diff


def test_interval_contains_and_width():
    interval = stats.Interval(low=0.1, high=0.3, confidence=0.95)
    assert 0.2 in interval and 0.1 in interval and 0.31 not in interval
    assert interval.width == pytest.approx(0.2)
