import pytest

from whisper_quant import metrics
from whisper_quant.metrics import (
    CER,
    DIFF_ADDED,
    DIFF_CHANGED,
    DIFF_MISSING,
    WER,
    ErrorRate,
    agreement,
    character_error_rate,
    corpus_error_rate,
    error_rate,
    normalize_text,
    uses_cer,
    word_diff,
    word_error_rate,
)


def test_insertion_counts_against_the_reference_length():
    result = word_error_rate("the cat sat", "the cat sat down")
    assert (result.kind, result.insertions, result.errors, result.reference_length) == (
        WER,
        1,
        1,
        3,
    )
    assert result.rate == pytest.approx(1 / 3)
    assert str(result) == "WER 33.3% (1/3)"


def test_substitution_and_deletion_are_counted_separately():
    result = word_error_rate("a b c d", "a x c")
    assert (result.substitutions, result.deletions, result.insertions) == (1, 1, 0)
    assert result.rate == pytest.approx(2 / 4)


@pytest.mark.parametrize(
    ("reference", "hypothesis"),
    [
        ("ten of clubs", "Ten of clubs."),
        ("ten of clubs", "10 of clubs"),
        ("go forward ten meters", "Go forward, 10 meters!"),
        ("the colour red", "the color red"),
        ("i can not go", "I can't go, um."),
    ],
)
def test_whisper_english_normalisation_hides_formatting_differences(reference, hypothesis):
    assert error_rate(reference, hypothesis, "en").errors == 0


def test_english_normaliser_expands_titles_and_spells_numbers_as_digits():
    assert normalize_text("Mr. Smith") == "mister smith"
    assert normalize_text("Ten of clubs.") == "10 of clubs"
    assert normalize_text("It costs $3.50, about 7.5%.") == "it costs $3.50 about 7.5%"


def test_by_default_the_normalisers_are_whisper_s_as_they_are():
    # Upstream's English normaliser leaves a stray "." after an ellipsis and written digits
    # apart; the default keeps both, so its WER is the one other Whisper evaluations report.
    assert normalize_text("Wait...") == "wait ."
    assert normalize_text("okay…") == "okay .."
    assert normalize_text("5 5") == "5 5"
    assert normalize_text("five five") == "55"
    assert error_rate("wait what", "Wait... what…").insertions == 1
    assert error_rate("five five", "5 5").errors == 2
    assert error_rate("...", "").deletions == 1
    # The basic normaliser (other languages) drops punctuation itself: only spaces differ.
    assert normalize_text("Attends... quoi !", "fr") == "attends quoi"
    assert metrics.EXTRA_RULES == (metrics.DROP_SYMBOL_TOKENS, metrics.JOIN_SINGLE_DIGITS)


def test_ellipsis_leaves_no_stray_word():
    # Upstream's English normaliser turns "Wait..." into "wait ." (see metrics.py).
    assert normalize_text("Wait...", extra_rules=True) == "wait"
    assert normalize_text("okay…", extra_rules=True) == "okay"
    assert error_rate("wait what", "Wait... what…", "en", extra_rules=True).errors == 0


def test_english_normaliser_reads_repeated_digits_alike_spelled_or_written():
    # Upstream's normaliser turns spelled-out single digits in a row into one number but
    # leaves written digits apart; the extra rules join the written ones too, so a correct
    # "5 5" is not scored as two errors against the reference "five five".
    assert normalize_text("five five", extra_rules=True) == "55"
    assert normalize_text("5 5", extra_rules=True) == "55"
    assert normalize_text("route 6 5", extra_rules=True) == "route 65"
    assert normalize_text("10 of clubs", extra_rules=True) == "10 of clubs"
    assert error_rate("five five", "Five, five.", extra_rules=True).errors == 0
    assert error_rate("five five", "5 5", extra_rules=True).errors == 0
    assert error_rate("five five", "5 6", extra_rules=True).errors == 1
    assert corpus_error_rate([("five five", "5 5")], extra_rules=True).errors == 0
    assert agreement("five five", "5 5", extra_rules=True).errors == 0
    # Digits are joined in English only; symbol-only tokens go in every language.
    assert normalize_text("5 5", "fr", extra_rules=True) == "5 5"


def test_word_diff_follows_the_same_rules_as_the_error_rate():
    # "Wait..." normalises to "wait ." by default: one error, so one word highlighted.
    assert word_diff("wait what", "Wait... what") == [
        ("Wait...", DIFF_CHANGED),
        (" ", None),
        ("what", None),
    ]
    assert word_diff("wait what", "Wait... what", extra_rules=True) == [
        ("Wait...", None),
        (" ", None),
        ("what", None),
    ]


@pytest.mark.parametrize(
    ("language", "expected"),
    [(None, False), ("en", False), ("English", False), ("en-GB", False)]
    + [("zh", True), ("ja", True), ("fr", True), ("hi", True)],
)
def test_english_uses_wer_and_every_other_language_cer(language, expected):
    assert uses_cer(language) is expected
    assert error_rate("a", "a", language).kind == (CER if expected else WER)


def test_cer_on_chinese_ignores_punctuation_and_counts_characters():
    result = error_rate("你好，世界！", "你好地球", "zh")
    assert (result.kind, result.substitutions, result.reference_length) == (CER, 2, 4)
    assert result.rate == pytest.approx(0.5)


def test_cer_ignores_spaces():
    assert character_error_rate("ab cd", "abcd", "fr").errors == 0
    assert character_error_rate("abcd", "abxd", "fr").errors == 1


def test_non_english_normaliser_keeps_vowel_signs():
    # Whisper's default basic normaliser would turn this into "ह न द", hiding vowel errors.
    assert normalize_text("हिन्दी।", "hi") == "हिन्दी"
    assert error_rate("हिन्दी", "हन्द", "hi").deletions == 2


def test_empty_reference_and_empty_hypothesis_is_perfect():
    result = error_rate("", "")
    assert (result.errors, result.reference_length, result.rate) == (0, 0, 0.0)
    # With the extra rules punctuation only normalises to nothing, so it is silence too.
    assert error_rate("...", "", extra_rules=True).rate == 0.0
    assert error_rate("", "…", extra_rules=True).rate == 0.0


def test_any_output_for_an_empty_reference_scores_100_percent():
    result = error_rate("", "Thank you for watching.")
    assert (result.insertions, result.reference_length, result.rate) == (4, 0, 1.0)
    assert error_rate("", "谢谢", "zh").rate == 1.0


def test_empty_hypothesis_deletes_every_reference_word():
    result = error_rate("hello there", "")
    assert (result.deletions, result.rate) == (2, 1.0)


def test_corpus_rate_sums_errors_rather_than_averaging_clip_rates():
    result = corpus_error_rate([("a b c d", "a b"), ("x", "y")])
    assert (result.errors, result.reference_length) == (3, 5)
    assert result.rate == pytest.approx(0.6)  # the mean of clip rates would be 0.75


def test_corpus_rate_needs_clips():
    with pytest.raises(ValueError, match="at least one"):
        corpus_error_rate([])


def test_rates_of_different_kinds_do_not_add():
    with pytest.raises(ValueError, match="cannot add"):
        ErrorRate(WER, 0, 0, 0, 1) + ErrorRate(CER, 0, 0, 0, 1)


def test_agreement_takes_the_original_transcript_as_reference():
    result = agreement("ten of clubs", "ten of clubs please")
    assert (result.insertions, result.deletions, result.reference_length) == (1, 0, 3)


def test_word_diff_labels_changed_and_added_words_and_keeps_the_text():
    other = "Ten of hearts, please!"
    tokens = word_diff("ten of clubs", other)
    assert tokens == [
        ("Ten", None),
        (" ", None),
        ("of", None),
        (" ", None),
        ("hearts,", DIFF_CHANGED),
        (" ", None),
        ("please!", DIFF_ADDED),
    ]
    assert "".join(token for token, _ in tokens) == other


def test_word_diff_ignores_case_punctuation_and_number_formatting():
    assert word_diff("ten of clubs", "10 Of clubs.") == [
        ("10", None),
        (" ", None),
        ("Of", None),
        (" ", None),
        ("clubs.", None),
    ]


def test_word_diff_can_show_dropped_reference_words():
    assert word_diff("a b c d e", "a x e", show_missing=True) == [
        ("a", None),
        (" ", None),
        ("x", DIFF_CHANGED),
        (" ", None),
        ("c", DIFF_MISSING),
        (" ", None),
        ("d", DIFF_MISSING),
        (" ", None),
        ("e", None),
    ]
    assert word_diff("the cat sat", "the cat", show_missing=True)[-2:] == [
        (" ", None),
        ("sat", DIFF_MISSING),
    ]
    assert word_diff("a b c d e", "a x e") == [
        ("a", None),
        (" ", None),
        ("x", DIFF_CHANGED),
        (" ", None),
        ("e", None),
    ]


@pytest.mark.parametrize(
    ("reference", "other", "errors"),
    [
        # big: missing; down, today: added; the -> a: changed.
        ("the big cat sat on the mat", "The cat sat down on a mat today.", 4),
        ("red green blue", "", 3),
        ("", "hallucinated words here", 3),
        ("go forward ten meters", "go forward 10 meters", 0),
    ],
)
def test_word_diff_highlights_as_many_words_as_the_wer_counts(reference, other, errors):
    tokens = word_diff(reference, other, show_missing=True)
    highlighted = sum(1 for _, label in tokens if label is not None)
    assert highlighted == error_rate(reference, other).errors == errors


def test_word_diff_compares_chinese_character_by_character():
    assert word_diff("你好世界", "你好地球", "zh") == [
        ("你", None),
        ("好", None),
        ("地", DIFF_CHANGED),
        ("球", DIFF_CHANGED),
    ]


def test_word_diff_of_empty_texts_is_empty():
    assert word_diff("", "") == []
