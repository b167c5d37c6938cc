"""Token decoders: greedy, sampling, forced tokens and beam search over a decoder cache.

An `Inference` runs an engine's decoder cache (a `DecoderState`) behind a stopwatch; a
`TokenDecoder` chooses tokens from its logits after the `LogitFilters` (logit_filters.py) until
the end token or the length limit. Beam search is transformers' `_beam_search` (4.57), ranked by
a `SequenceRanker`; decoding.py explains where these follow transformers rather than
openai-whisper, and builds one decoder per window.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from .logit_filters import LogitFilters, log_softmax, softmax

# transformers' GenerationConfig default top_k, used when sampling (temperature > 0).
DEFAULT_TOP_K = 50
# transformers fills impossible beam scores with this instead of -inf, so sums stay finite.
_BEAM_FLOOR = np.float32(-1.0e9)


class DecoderState(Protocol):
    """A decoder's key/value cache for `batch` rows reading the same audio."""

    def step(self, tokens: np.ndarray) -> np.ndarray:
        """int64 (batch, n) tokens after the cached ones -> float32 logits (batch, n, vocab)."""
        ...

    def reorder(self, index: np.ndarray) -> None:
        """Keep or duplicate cache rows: row i becomes the old row index[i] (beam search)."""
        ...


@dataclass(frozen=True)
class DecoderTiming:
    """Where a window's decoder time went (wall clock, time.perf_counter)."""

    first_step_s: float = 0.0  # the prompt, in one call
    next_steps_s: float = 0.0  # every later call, one token per row each
    next_steps: int = 0

    def __add__(self, other: DecoderTiming) -> DecoderTiming:
        return DecoderTiming(
            self.first_step_s + other.first_step_s,
            self.next_steps_s + other.next_steps_s,
            self.next_steps + other.next_steps,
        )


class Inference:
    """One window's decoder cache behind a stopwatch: the prompt once, then a token per row.

    Only the model's calls are timed (time.perf_counter), not the decoding around them.
    """

    def __init__(self, state: DecoderState, clock: Callable[[], float] = time.perf_counter):
        self.state = state
        self.clock = clock
        self.first_step_s = 0.0
        self.next_steps_s = 0.0
        self.next_steps = 0

    def prompt(self, tokens: np.ndarray) -> np.ndarray:
        """Run (rows, n) prompt tokens: logits (rows, n, vocab) at every prompt position."""
        started = self.clock()
        logits = self.state.step(np.ascontiguousarray(tokens, dtype=np.int64))
        self.first_step_s += self.clock() - started
        return logits

    def next(self, tokens: np.ndarray) -> np.ndarray:
        """Run one new token per row: logits (rows, vocab)."""
        started = self.clock()
        logits = self.state.step(np.asarray(tokens, dtype=np.int64).reshape(-1, 1))
        self.next_steps_s += self.clock() - started
        self.next_steps += 1
        return logits[:, -1]

    def reorder(self, index: np.ndarray) -> None:
        """Reorder the cache rows (beam search); timed with the later steps."""
        started = self.clock()
        self.state.reorder(np.asarray(index, dtype=np.int64))
        self.next_steps_s += self.clock() - started

    @property
    def timing(self) -> DecoderTiming:
        return DecoderTiming(self.first_step_s, self.next_steps_s, self.next_steps)


@dataclass(frozen=True)
class Hypothesis:
    """A decoded sequence: the generated tokens with the end token if it ended with one."""

    tokens: tuple[int, ...]
    # Per token: log-softmax of the filtered logits at temperature 1.
    logprobs: tuple[float, ...]
    # Beam search: transformers' length-normalised score; otherwise the sum of logprobs.
    score: float


class SequenceRanker:
    """transformers' score of a finished beam: sum of log-probs / length ** length_penalty.

    The length is the number of generated tokens including the end token. Computed in
    float32, as transformers keeps beam scores.
    """

    def __init__(self, length_penalty: float | None = None):
        self.length_penalty = 1.0 if length_penalty is None else float(length_penalty)

    def score(self, sum_logprob: np.ndarray | float, length: int) -> np.ndarray:
        return np.float32(sum_logprob) / np.float32(length**self.length_penalty)


class TokenDecoder(ABC):
    """Chooses tokens until the end token or the length limit."""

    @abstractmethod
    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        """`logits` (rows, vocab): the prompt's last position; at most `limit` tokens."""


class GreedyDecoder(TokenDecoder):
    """The most probable token (temperature 0) or one sampled token per step (above 0).

    Sampling follows transformers: filter, divide by the temperature, keep the top-k, then
    draw from the softmax with the numpy generator `rng`.
    """

    def __init__(
        self,
        eot: int,
        temperature: float = 0.0,
        *,
        rng: np.random.Generator | None = None,
        top_k: int | None = DEFAULT_TOP_K,
    ):
        if temperature > 0 and rng is None:
            raise ValueError("Sampling (temperature > 0) needs a numpy random Generator")
        self.eot = eot
        self.temperature = temperature
        self.rng = rng
        self.top_k = top_k

    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        tokens: list[int] = []
        logprobs: list[float] = []
        while True:
            scores = np.array(logits[:1], dtype=np.float32)
            filters.apply(scores, np.asarray([tokens], dtype=np.int64))
            token, kept = self._choose(scores[0])
            tokens.append(token)
            logprobs.append(float(log_softmax(kept)[token]))
            if token == self.eot or len(tokens) >= limit:
                break
            logits = inference.next(np.array([token]))
        return Hypothesis(tuple(tokens), tuple(logprobs), float(sum(logprobs)))

    def _choose(self, scores: np.ndarray) -> tuple[int, np.ndarray]:
        """The token, and the filtered logits its log-prob is taken from."""
        if self.temperature == 0:
            return int(np.argmax(scores)), scores
        warped = scores / np.float32(self.temperature)
        if self.top_k is not None and self.top_k < warped.size:
            kth = np.partition(warped, -self.top_k)[-self.top_k]
            warped = np.where(warped < kth, -np.inf, warped).astype(np.float32)
        probs = softmax(warped.astype(np.float64))
        cumulative = np.cumsum(probs)
        token = int(np.searchsorted(cumulative, self.rng.random() * cumulative[-1], side="right"))
        token = min(token, warped.size - 1)
        while probs[token] == 0:  # only reachable through rounding at the very top
            token -= 1
        # transformers multiplies its warped scores back by the temperature for the
        # log-probs: the filtered logits with the tokens outside the top-k removed.
        kept = np.where(np.isneginf(warped), -np.inf, scores).astype(np.float32)
        return token, kept


class BatchGreedyDecoder:
    """`GreedyDecoder` on many rows at once, each its own sequence (its own window's audio).

    Each step filters every running row's logits with that row's tokens, chooses its token as
    `GreedyDecoder` does (argmax, or one draw from `rng` per row, in row order), and runs the
    decoder once for the rows still running. A row that ends (end token or `limit`) stops
    contributing: the cache keeps only the running rows (`Inference.reorder` on their indices),
    so later steps compute nothing for it.
    """

    def __init__(
        self,
        eot: int,
        temperature: float = 0.0,
        *,
        rng: np.random.Generator | None = None,
        top_k: int | None = DEFAULT_TOP_K,
    ):
        self.eot = eot
        self.row = GreedyDecoder(eot, temperature, rng=rng, top_k=top_k)

    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> list[Hypothesis]:
        """`logits` (rows, vocab): each row's prompt's last position; one hypothesis per row."""
        rows = logits.shape[0]
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logprobs: list[list[float]] = [[] for _ in range(rows)]
        running = list(range(rows))  # the rows the cache holds, in its order
        step = 0
        while True:
            scores = np.array(logits, dtype=np.float32)
            generated = np.array([tokens[r] for r in running], dtype=np.int64)
            filters.apply(scores, generated.reshape(len(running), step))
            for i, r in enumerate(running):
                token, kept = self.row._choose(scores[i])
                tokens[r].append(token)
                logprobs[r].append(float(log_softmax(kept)[token]))
            step += 1
            still = [i for i, r in enumerate(running) if tokens[r][-1] != self.eot]
            if step >= limit or not still:
                break
            if len(still) < len(running):
                inference.reorder(np.array(still, dtype=np.int64))
                running = [running[i] for i in still]
            logits = inference.next(np.array([tokens[r][-1] for r in running]))
        return [
            Hypothesis(tuple(t), tuple(p), float(sum(p)))
            for t, p in zip(tokens, logprobs, strict=True)
        ]


class ForcedDecoder(TokenDecoder):
    """Feeds a fixed token sequence instead of choosing: identical work for every engine.

    Every step does what a greedy step does (the model's logits for every row, the filters,
    the log-softmax, the argmax it then ignores) and feeds the next forced token to every row,
    so the decoder runs exactly `len(tokens)` positions after the prompt. Beam search's
    reordering of rows is not done: all rows hold the same tokens.
    """

    def __init__(self, tokens: Sequence[int]):
        self.tokens = tuple(int(t) for t in tokens)

    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        tokens: list[int] = []
        logprobs: list[float] = []
        rows = logits.shape[0]
        for token in self.tokens[:limit]:
            scores = np.array(logits, dtype=np.float32)
            generated = np.array([tokens] * rows, dtype=np.int64).reshape(rows, len(tokens))
            filters.apply(scores, generated)
            np.argmax(scores[0])  # the choice a greedy step makes, for the same work
            tokens.append(token)
            logprobs.append(float(log_softmax(scores[0])[token]))
            if len(tokens) >= min(limit, len(self.tokens)):
                break
            logits = inference.next(np.full(rows, token, dtype=np.int64))
        return Hypothesis(tuple(tokens), tuple(logprobs), float(sum(logprobs)))


class BeamSearchDecoder(TokenDecoder):
    """transformers' beam search (`GenerationMixin._beam_search`, 4.57) for one audio.

    The inference runs `beam_size` rows from the prompt on. Each step: log-softmax the logits,
    filter them (no renormalisation), add the running beam scores, keep the best 2 * beam_size
    candidates; the best beam_size that do not end become the running beams; a candidate
    that ends (end token, or the length limit) is offered to the finished list only if it is
    among the best beam_size candidates, scored by `ranker`.
    """

    def __init__(
        self, eot: int, beam_size: int, ranker: SequenceRanker, *, early_stopping: bool = False
    ):
        self.eot = eot
        self.beam_size = beam_size
        self.ranker = ranker
        self.early_stopping = early_stopping

    def decode(
        self, inference: Inference, logits: np.ndarray, filters: LogitFilters, limit: int
    ) -> Hypothesis:
        beams, keep = self.beam_size, 2 * self.beam_size
        running = [_Beam((), ()) for _ in range(beams)]
        # All rows hold the same prompt: only the first may start, or the beams would repeat.
        running_scores = np.full(beams, _BEAM_FLOOR, dtype=np.float32)
        running_scores[0] = 0
        finished = _FinishedBeams(beams)
        improvable = True
        for step in range(limit):
            length = step + 1  # generated tokens once this step's token is added
            logprobs = log_softmax(np.asarray(logits, dtype=np.float32))
            generated = np.array([b.tokens for b in running], dtype=np.int64).reshape(beams, step)
            filters.apply(logprobs, generated)
            renormalised = log_softmax(logprobs)
            vocab = logprobs.shape[1]
            flat = (logprobs + running_scores[:, None]).ravel()
            top = _top_k(flat, keep)
            scores = flat[top]
            source, tokens = top // vocab, top % vocab
            ends = (tokens == self.eot) | (length >= limit)
            candidates = [
                running[b].extend(int(t), float(renormalised[b, t]))
                for b, t in zip(source, tokens, strict=True)
            ]

            # Finished hypotheses: only candidates ranked within the first beam_size.
            offered = ends & (np.arange(keep) < beams)
            final = self.ranker.score(scores, length).astype(np.float32)
            if finished.all_done and self.early_stopping:
                final = final + _BEAM_FLOOR
            if not improvable:
                final = final + _BEAM_FLOOR
            final = np.where(offered, final, final + _BEAM_FLOOR).astype(np.float32)
            finished.merge(final, offered, candidates)

            # Running beams: the best candidates that do not end.
            alive_scores = np.where(ends, scores + _BEAM_FLOOR, scores).astype(np.float32)
            chosen = _top_k(alive_scores, beams)
            running = [candidates[i] for i in chosen]
            running_scores = alive_scores[chosen]
            inference.reorder(source[chosen])

            best_possible = self.ranker.score(running_scores[0], length)
            improvable = improvable and finished.could_improve(best_possible)
            if not improvable or (finished.all_done and self.early_stopping) or ends.all():
                break
            logits = inference.next(tokens[chosen])
        return finished.best(fallback=running[0], fallback_score=float(running_scores[0]))


@dataclass(frozen=True)
class _Beam:
    """A beam's generated tokens and each one's log-prob."""

    tokens: tuple[int, ...]
    logprobs: tuple[float, ...]

    def extend(self, token: int, logprob: float) -> _Beam:
        return _Beam((*self.tokens, token), (*self.logprobs, logprob))


class _FinishedBeams:
    """transformers' list of `beam_size` finished slots, best first, -1e9 while empty."""

    def __init__(self, size: int):
        self.scores = np.full(size, _BEAM_FLOOR, dtype=np.float32)
        self.done = np.zeros(size, dtype=bool)
        self.beams: list[_Beam | None] = [None] * size

    @property
    def all_done(self) -> bool:
        return bool(self.done.all())

    def merge(self, scores: np.ndarray, offered: np.ndarray, candidates: list[_Beam]) -> None:
        """Keep the best of the kept slots and the candidates (not offered ones score -1e9)."""
        size = len(self.scores)
        merged = np.concatenate([self.scores, scores]).astype(np.float32)
        chosen = _top_k(merged, size)
        beams = self.beams + [c if o else None for c, o in zip(candidates, offered, strict=True)]
        done = np.concatenate([self.done, offered])
        self.scores, self.done = merged[chosen], done[chosen]
        self.beams = [beams[i] for i in chosen]

    def could_improve(self, best_possible: np.ndarray) -> bool:
        """transformers' heuristic: a running beam could still beat a kept finished one."""
        worst = np.where(self.done, np.min(self.scores), _BEAM_FLOOR)
        return bool(np.any(np.float32(best_possible) > worst))

    def best(self, fallback: _Beam, fallback_score: float) -> Hypothesis:
        """The best finished hypothesis (the best running beam if none finished)."""
        beam, score = self.beams[0], float(self.scores[0])
        if not self.done[0] or beam is None:
            beam, score = fallback, fallback_score
        return Hypothesis(beam.tokens, beam.logprobs, score)


def _top_k(values: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest values, largest first; equal values by lower index first."""
    k = min(k, values.size)
    part = np.argpartition(-values, k - 1)[:k] if k < values.size else np.arange(values.size)
    return part[np.lexsort((part, -values[part]))]
