"""Accuracy: Whisper-style text normalisation, word/character error rates, transcript diffs.

English is scored by word error rate (WER) after OpenAI's English normaliser, so "Ten of
clubs." and "10 of clubs" count as the same words; every other language is scored by
character error rate (CER) after the basic normaliser, because many scripts do not separate
words with spaces and a word count would be meaningless there.

By default the normalisers are used as they are (whisper-normalizer's EnglishTextNormalizer,
and BasicTextNormalizer with its marks kept). ``extra_rules=True`` adds EXTRA_RULES on top:
- DROP_SYMBOL_TOKENS: a token without any letter or digit is dropped. The English normaliser
  only removes a period followed by a character, so "Wait..." becomes "wait ." and "okay…"
  "okay .."; without the rule the stray "." counts as a word.
- JOIN_SINGLE_DIGITS (English only): runs of single-digit words are joined, "5 5" -> "55".
  The English normaliser turns spelled digits "five five" into "55" but leaves written
  "5 5" apart; without the rule a correct "5 5" scores two errors against "five five".
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache

import jiwer

logger = logging.getLogger(__name__)

WER = "WER"
CER = "CER"

# Language codes and Whisper language names that select the English normaliser and WER.
ENGLISH_LANGUAGES = frozenset({"en", "english"})

# Languages usually written without spaces between words: word_diff compares them character
# by character, since whitespace splitting would turn a whole sentence into one "word".
LANGUAGES_WITHOUT_SPACES = frozenset(
    {
        "zh",
        "chinese",
        "yue",
        "cantonese",
        "ja",
        "japanese",
        "th",
        "thai",
        "lo",
        "lao",
        "my",
        "myanmar",
        "burmese",
        "km",
        "khmer",
        "bo",
        "tibetan",
    }
)

# Labels in word_diff output, as Gradio's HighlightedText categories.
DIFF_CHANGED = "changed"
DIFF_ADDED = "added"
DIFF_MISSING = "missing"

DiffToken = tuple[str, str | None]

# The rules that extra_rules=True adds to Whisper's normalisers, by name.
DROP_SYMBOL_TOKENS = "symbol-only tokens dropped"
JOIN_SINGLE_DIGITS = "single digits joined (English)"
EXTRA_RULES = (DROP_SYMBOL_TOKENS, JOIN_SINGLE_DIGITS)

_SPACED_PIECES = re.compile(r"\s+|\S+")
_UNSPACED_PIECES = re.compile(r"\s+|\S")


@dataclass(frozen=True)
class ErrorRate:
    """Edit-distance counts between a reference and a hypothesis, in words or characters.

    ``rate`` is errors / reference_length and can exceed 1.0 when the hypothesis inserts
    more than the reference holds.
    """

    kind: str
    substitutions: int
    deletions: int
    insertions: int
    reference_length: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """Errors per reference unit.

        An empty reference (silence) has no denominator: an empty hypothesis scores 0.0 and
        any output scores 1.0, i.e. "all of it is wrong", rather than infinity or NaN that
        would poison tables and corpus sums.
        """
        if self.reference_length == 0:
            return 0.0 if self.errors == 0 else 1.0
        return self.errors / self.reference_length

    def __add__(self, other: ErrorRate) -> ErrorRate:
        if not isinstance(other, ErrorRate):
            return NotImplemented
        if other.kind != self.kind:
            raise ValueError(f"cannot add a {other.kind} to a {self.kind}")
        return ErrorRate(
            kind=self.kind,
            substitutions=self.substitutions + other.substitutions,
            deletions=self.deletions + other.deletions,
            insertions=self.insertions + other.insertions,
            reference_length=self.reference_length + other.reference_length,
        )

    def __str__(self) -> str:
        return f"{self.kind} {self.rate:.1%} ({self.errors}/{self.reference_length})"


def is_english(language: str | None) -> bool:
    """True for None, "en", "english" (any case) and regional tags such as "en-GB"."""
    if language is None:
        return True
    return _base_language(language) in ENGLISH_LANGUAGES


def uses_cer(language: str | None) -> bool:
    """True when accuracy for this language is scored by CER rather than WER."""
    return not is_english(language)


def normalize_text(text: str, language: str | None = "en", *, extra_rules: bool = False) -> str:
    """Whisper's normalisation: English rules for English, basic rules otherwise; with
    ``extra_rules``, EXTRA_RULES on top (see the module docstring)."""
    english = is_english(language)
    normalized = _normalizer(english)(text)
    if not extra_rules:
        # Only whitespace is collapsed: the basic normaliser leaves a space where it removed
        # punctuation ("wait..." -> "wait "), which is no word.
        return " ".join(normalized.split())
    # The English normaliser's kept symbols (. % $ ...) only mean something attached to a
    # number. Same code upstream:
    # https://github.com/openai/whisper/blob/main/whisper/normalizers/english.py
    tokens = [token for token in normalized.split() if any(c.isalnum() for c in token)]
    if english:
        tokens = _join_single_digits(tokens)
    return " ".join(tokens)


def _join_single_digits(tokens: list[str]) -> list[str]:
    """Join runs of single-digit words: "5 5" -> "55".

    The English normaliser turns spelled digits "five five" into "55" but leaves written
    "5 5" apart, so a correct "5 5" would score two errors against the reference "five five".
    Joining the runs on both sides scores the two spellings alike.
    """
    joined: list[str] = []
    previous_digit = False
    for token in tokens:
        digit = len(token) == 1 and token.isdigit()
        if digit and previous_digit:
            joined[-1] += token
        else:
            joined.append(token)
        previous_digit = digit
    return joined


def word_error_rate(
    reference: str, hypothesis: str, language: str | None = "en", *, extra_rules: bool = False
) -> ErrorRate:
    """WER on normalised text."""
    ref = normalize_text(reference, language, extra_rules=extra_rules)
    hyp = normalize_text(hypothesis, language, extra_rules=extra_rules)
    return _count(WER, ref, hyp)


def character_error_rate(
    reference: str, hypothesis: str, language: str | None = "en", *, extra_rules: bool = False
) -> ErrorRate:
    """CER on normalised text, ignoring whitespace.

    Whitespace is dropped because for languages written without spaces the normaliser's
    spaces are artefacts of removed punctuation; for spaced languages it means a wrongly
    split or joined word costs nothing, which is the usual CER convention.
    """
    ref = _spaced_characters(normalize_text(reference, language, extra_rules=extra_rules))
    hyp = _spaced_characters(normalize_text(hypothesis, language, extra_rules=extra_rules))
    return _count(CER, ref, hyp)


def error_rate(
    reference: str,
    hypothesis: str,
    language: str | None = "en",
    *,
    extra_rules: bool = False,
    kind: str | None = None,
) -> ErrorRate:
    """WER for English, CER for any other language; ``kind`` WER or CER asks for that one
    (after the language's normaliser either way)."""
    if kind not in (None, WER, CER):
        raise ValueError(f"kind must be {WER!r} or {CER!r}, got {kind!r}")
    if kind == CER or (kind is None and uses_cer(language)):
        return character_error_rate(reference, hypothesis, language, extra_rules=extra_rules)
    return word_error_rate(reference, hypothesis, language, extra_rules=extra_rules)


def corpus_error_rate(
    pairs: Iterable[tuple[str, str]], language: str | None = "en", *, extra_rules: bool = False
) -> ErrorRate:
    """Corpus rate over (reference, hypothesis) pairs: total errors / total reference length.

    This is the standard corpus WER, so long clips weigh more than short ones, unlike a mean
    of per-clip rates.
    """
    rates = [
        error_rate(reference, hypothesis, language, extra_rules=extra_rules)
        for reference, hypothesis in pairs
    ]
    if not rates:
        raise ValueError("corpus_error_rate needs at least one (reference, hypothesis) pair")
    return sum(rates[1:], start=rates[0])


def agreement(
    original_text: str, other_text: str, language: str | None = "en", *, extra_rules: bool = False
) -> ErrorRate:
    """How far another engine's transcript moved from the original model's transcript.

    The original's transcript is the reference, so this measures what quantization changed,
    independently of whether either transcript is right.
    """
    return error_rate(original_text, other_text, language, extra_rules=extra_rules)


def word_diff(
    reference_text: str,
    other_text: str,
    language: str | None = "en",
    *,
    show_missing: bool = False,
    extra_rules: bool = False,
) -> list[DiffToken]:
    """Tokens of ``other_text`` labelled for Gradio's HighlightedText.

    Words are aligned to the reference by the same minimum-edit alignment as the error rate.
    Words equal to the reference get ``None``, substituted words ``"changed"``, extra words
    ``"added"``. Whitespace and punctuation-only pieces are kept as ``None`` tokens, so
    joining the tokens reproduces ``other_text`` exactly (HighlightedText concatenates them
    without separators). Words compare after per-word normalisation, so case, punctuation and
    "ten"/"10" differences are not highlighted, as they do not count in the WER (a number
    spelled over several words, which the WER normalises as one, may still show). With
    ``show_missing``, reference words that ``other_text`` dropped are inserted where they
    were lost, labelled ``"missing"``; the joined tokens then no longer equal ``other_text``.
    Languages written without spaces are compared character by character. ``extra_rules``
    normalises as the error rate with the same flag does.
    """
    other_pieces = _pieces(other_text, language)
    other_keys = [_compare_key(piece, language, extra_rules) for piece in other_pieces]
    other_word_index = [i for i, key in enumerate(other_keys) if key]
    reference_words = [
        piece
        for piece in _pieces(reference_text, language)
        if _compare_key(piece, language, extra_rules)
    ]
    reference_keys = [_compare_key(word, language, extra_rules) for word in reference_words]

    labels: dict[int, str | None] = dict.fromkeys(other_word_index)
    missing_before: dict[int, list[str]] = {}
    for ref_start, ref_end, other_start, other_end in _differing_stretches(
        reference_keys, [other_keys[i] for i in other_word_index]
    ):
        # Pair words left to right inside a stretch, so "clubs" -> "hearts please" shows
        # "hearts" changed and "please" added; an optimal alignment never mixes insertions
        # and deletions in one stretch, so the highlighted count still equals the errors.
        paired = min(ref_end - ref_start, other_end - other_start)
        for j in range(other_start, other_end):
            label = DIFF_CHANGED if j < other_start + paired else DIFF_ADDED
            labels[other_word_index[j]] = label
        if ref_end - ref_start > paired:
            missing_before[other_end] = reference_words[ref_start + paired : ref_end]

    separator = "" if _writes_without_spaces(language) else " "
    tokens: list[DiffToken] = []
    word_number = 0  # index among other_text's words, where missing words are inserted
    for i, piece in enumerate(other_pieces):
        if not other_keys[i]:
            tokens.append((piece, None))
            continue
        if show_missing:
            for word in missing_before.get(word_number, []):
                tokens.append((word, DIFF_MISSING))
                if separator:
                    tokens.append((separator, None))
        tokens.append((piece, labels[i]))
        word_number += 1
    if show_missing:
        for word in missing_before.get(word_number, []):
            if tokens and separator:
                tokens.append((separator, None))
            tokens.append((word, DIFF_MISSING))
    return tokens


def _base_language(language: str) -> str:
    return language.strip().lower().replace("_", "-").split("-")[0]


def _writes_without_spaces(language: str | None) -> bool:
    return language is not None and _base_language(language) in LANGUAGES_WITHOUT_SPACES


@cache
def _normalizer(english: bool) -> Callable[[str], str]:
    if english:
        from whisper_normalizer.english import EnglishTextNormalizer

        return EnglishTextNormalizer()
    from whisper_normalizer.basic import BasicTextNormalizer

    # Whisper's default basic normaliser deletes Unicode marks, which strips the vowel signs
    # from Devanagari and other Brahmic scripts ("हिन्दी" -> "ह न द") and would hide real
    # errors from the CER; preserve_marks keeps them.
    return BasicTextNormalizer(preserve_marks=True)


def _spaced_characters(text: str) -> str:
    # jiwer splits on whitespace, so one character per "word" makes its word alignment a
    # character alignment.
    return " ".join(ch for ch in text if not ch.isspace())


def _count(kind: str, reference: str, hypothesis: str) -> ErrorRate:
    if not reference and not hypothesis:
        return ErrorRate(kind, substitutions=0, deletions=0, insertions=0, reference_length=0)
    out = jiwer.process_words(reference, hypothesis)
    return ErrorRate(
        kind,
        substitutions=out.substitutions,
        deletions=out.deletions,
        insertions=out.insertions,
        reference_length=out.hits + out.substitutions + out.deletions,
    )


def _differing_stretches(
    reference_keys: list[str], other_keys: list[str]
) -> list[tuple[int, int, int, int]]:
    """(ref_start, ref_end, other_start, other_end) of each run between matching words."""
    # The minimum-edit alignment behind the WER (not difflib's longest-match heuristic), so
    # the highlighted words are the counted errors; it also stays fast on the repetitive
    # loops Whisper sometimes hallucinates, where difflib takes seconds.
    if not reference_keys and not other_keys:
        return []
    out = jiwer.process_words(" ".join(reference_keys), " ".join(other_keys))
    stretches: list[tuple[int, int, int, int]] = []
    previous_differs = False
    for chunk in out.alignments[0]:  # chunks are contiguous and in order
        differs = chunk.type != "equal"
        if differs:
            ref_start, other_start = chunk.ref_start_idx, chunk.hyp_start_idx
            if previous_differs:  # e.g. a substitution followed by an insertion
                ref_start, _, other_start, _ = stretches.pop()
            stretches.append((ref_start, chunk.ref_end_idx, other_start, chunk.hyp_end_idx))
        previous_differs = differs
    return stretches


def _pieces(text: str, language: str | None) -> list[str]:
    pattern = _UNSPACED_PIECES if _writes_without_spaces(language) else _SPACED_PIECES
    return pattern.findall(text)


def _compare_key(piece: str, language: str | None, extra_rules: bool = False) -> str:
    # Whitespace and pieces the normaliser erases (punctuation, "um") are not words to diff.
    if piece.isspace():
        return ""
    return normalize_text(piece, language, extra_rules=extra_rules).replace(" ", "")
