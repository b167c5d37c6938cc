"""Logit filters: what Whisper may not generate next, applied in place before a token is chosen.

The filters are transformers' logits processors for Whisper (4.57) in numpy: the begin-suppress
tokens, the suppressed tokens, and the timestamp grammar (`WhisperTimeStampLogitsProcessor`),
applied in transformers' order. The numerics they and the token decoders share (log-softmax
in the logits' dtype, a float64 log-sum-exp) are here too. decoding.py composes the filters
for a window's options.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import numpy as np

from .tokens import SpecialTokens

# --- numerics -----------------------------------------------------------------------------


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in x's dtype; a row of only -inf stays -inf."""
    peak = np.max(x, axis=-1, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0).astype(x.dtype)
    shifted = x - peak
    with np.errstate(divide="ignore"):
        return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax(x))


def _logsumexp(x: np.ndarray) -> float:
    peak = float(np.max(x)) if x.size else -math.inf
    if not math.isfinite(peak):
        return peak
    return peak + math.log(float(np.sum(np.exp(x - peak))))


# --- filters ------------------------------------------------------------------------------


class LogitFilter(ABC):
    """Masks logits (or log-probs) in place before a token is chosen."""

    @abstractmethod
    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        """`logits` (rows, vocab); `generated` (rows, t): each row's tokens after the prompt."""


class SuppressBlank(LogitFilter):
    """The begin-suppress tokens (" " and <|endoftext|>) cannot be the first token."""

    def __init__(self, tokens: Sequence[int]):
        self.tokens = np.asarray(list(tokens), dtype=np.int64)

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        if generated.shape[1] == 0 and self.tokens.size:
            logits[:, self.tokens] = -np.inf


class SuppressTokens(LogitFilter):
    """These tokens, and every id from `from_id` on if given, are never generated."""

    def __init__(self, tokens: Sequence[int], *, from_id: int | None = None):
        self.tokens = np.asarray(list(tokens), dtype=np.int64)
        self.from_id = from_id

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        if self.tokens.size:
            logits[:, self.tokens] = -np.inf
        if self.from_id is not None:
            logits[:, self.from_id :] = -np.inf


class ApplyTimestampRules(LogitFilter):
    """Whisper's timestamp grammar (transformers' `WhisperTimeStampLogitsProcessor`).

    Timestamps come in pairs except right before <|endoftext|>; they never decrease and a
    segment cannot be empty; the first token is a timestamp of at most `max_initial_index`
    steps; and when the timestamps together are more probable than the most probable text
    token, a timestamp must come next.
    """

    def __init__(self, special: SpecialTokens, max_initial_index: int | None):
        self.eot = special.eot
        self.no_timestamps = special.no_timestamps
        self.begin = special.timestamp_begin
        self.max_initial_index = max_initial_index

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> None:
        begin = self.begin
        # <|notimestamps|> is what the prompt uses to turn timestamps off.
        logits[:, self.no_timestamps] = -np.inf
        for row, seq in zip(logits, generated, strict=True):
            last_was_timestamp = len(seq) >= 1 and seq[-1] >= begin
            penultimate_was_timestamp = len(seq) < 2 or seq[-2] >= begin
            if last_was_timestamp:
                if penultimate_was_timestamp:  # a pair just closed: text (or the end) next
                    row[begin:] = -np.inf
                else:  # an opening timestamp must be closed (or the window ends)
                    row[: self.eot] = -np.inf
            timestamps = seq[seq >= begin]
            if timestamps.size:
                # Never decreasing; a closing timestamp may repeat the opening one, any
                # other must move forward, so every segment advances the seek.
                if last_was_timestamp and not penultimate_was_timestamp:
                    last = int(timestamps[-1])
                else:
                    last = int(timestamps[-1]) + 1
                row[begin:last] = -np.inf
        if generated.shape[1] == 0:
            logits[:, :begin] = -np.inf
            if self.max_initial_index is not None:
                logits[:, begin + self.max_initial_index + 1 :] = -np.inf
        for row in logits:
            wide = row.astype(np.float64)
            if _logsumexp(wide[begin:]) > float(np.max(wide[:begin])):
                row[:begin] = -np.inf


class LogitFilters:
    """Filters applied in transformers' order: begin-suppress, suppress, timestamp rules.

    The timestamp rules go last because their "summed probability" test must see what the
    other filters removed.
    """

    def __init__(self, filters: Sequence[LogitFilter]):
        self.filters = list(filters)

    def apply(self, logits: np.ndarray, generated: np.ndarray) -> np.ndarray:
        for f in self.filters:
            f.apply(logits, generated)
        return logits
