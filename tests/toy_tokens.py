"""A toy vocabulary in Whisper's order, for tests of the decoding pieces without a model: text
0-9, <|endoftext|>, <|startoftranscript|>, three languages, the tasks, <|startofprev|>,
<|nospeech|>, <|notimestamps|>, then the timestamps from <|0.00|> (TS) in steps of 0.02 s.
Each test module sets its own vocabulary size (how many timestamps it needs)."""

from __future__ import annotations

from whisper_quant.tokens import SpecialTokens

EOT, SOT, EN, DE, FR, TRANSLATE, TRANSCRIBE, PREV, NO_SPEECH, NO_TS = (
    10, 11, 12, 13, 14, 15, 16, 18, 19, 20,
)  # fmt: skip
TS = 21  # <|0.00|>
ENGLISH = SpecialTokens(EOT, SOT, NO_TS, NO_SPEECH, TRANSCRIBE, TRANSLATE, PREV, False)
MULTILINGUAL = SpecialTokens(
    EOT, SOT, NO_TS, NO_SPEECH, TRANSCRIBE, TRANSLATE, PREV, True, {"en": EN, "de": DE, "fr": FR}
)


def ts(seconds: float) -> int:
    """The timestamp token of a time in a window."""
    return TS + round(seconds / 0.02)
