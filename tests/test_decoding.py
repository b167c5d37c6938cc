"""decoding.py, logit_filters.py and token_decoders.py on scripted logits: each filter, greedy,
sampling, beam search, no-speech, language.

No model is involved: a fake `DecoderState` returns logits from a table keyed by the tokens each
row has seen, over a 40-token vocabulary laid out like Whisper's (text, then the special tokens,
then timestamps). The timestamp rules and the compression ratio are also checked against
transformers' own code on random inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace

import numpy as np
import pytest
from toy_tokens import (
    DE,
    EN,
    ENGLISH,
    EOT,
    FR,
    MULTILINGUAL,
    NO_SPEECH,
    NO_TS,
    PREV,
    SOT,
    TRANSCRIBE,
    TRANSLATE,
    TS,
)

from whisper_quant.decoding import (
    GenerationRules,
    WindowOptions,
    decode_window,
    detect_language,
    fixed_token_ids,
    init_tokens,
    no_speech_probability,
    text_compression_ratio,
    token_compression_ratio,
    token_limit,
    transformers_no_speech_probability,
    window_filters,
)
from whisper_quant.logit_filters import (
    ApplyTimestampRules,
    LogitFilters,
    SuppressBlank,
    SuppressTokens,
    log_softmax,
)
from whisper_quant.token_decoders import (
    BeamSearchDecoder,
    GreedyDecoder,
    Inference,
    SequenceRanker,
)
from whisper_quant.tokens import SpecialTokens

# The toy vocabulary with 19 timestamps (<|0.00|>...<|0.36|>).
VOCAB = 40
NO_RULES = GenerationRules()


def dist(
    probs: Mapping[int, float] | None = None, *, eot: float | None = 1e-6, decay: float = 0.05
) -> np.ndarray:
    """Logits whose softmax gives `probs`; the rest of the mass spread over the other tokens
    with weights decreasing by `decay` (so no two are equal). `eot` fixes <|endoftext|>'s share."""
    probs = dict(probs or {})
    if eot is not None and EOT not in probs:
        probs[EOT] = eot
    p = np.zeros(VOCAB)
    others = [t for t in range(VOCAB) if t not in probs]
    weights = np.exp(-decay * np.arange(len(others)))
    p[others] = (1 - sum(probs.values())) * weights / weights.sum()
    for token, share in probs.items():
        p[token] = share
    return np.log(p).astype(np.float32)


Table = Callable[[tuple[int, ...]], np.ndarray]


class ScriptedState:
    """A fake decoder cache: each row's history, and logits from `table(history)`."""

    def __init__(self, table: Table, rows: int, log: list):
        self.table = table
        self.rows: list[list[int]] = [[] for _ in range(rows)]
        self.log = log

    def step(self, tokens: np.ndarray) -> np.ndarray:
        assert tokens.dtype == np.int64 and tokens.shape[0] == len(self.rows)
        self.log.append(tokens.copy())
        out = np.zeros((tokens.shape[0], tokens.shape[1], VOCAB), dtype=np.float32)
        for r, row in enumerate(tokens):
            for i, token in enumerate(row):
                self.rows[r].append(int(token))
                out[r, i] = self.table(tuple(self.rows[r]))
        return out

    def reorder(self, index: np.ndarray) -> None:
        self.rows = [list(self.rows[int(i)]) for i in index]


class ScriptedModel:
    """A fake `WindowModel`: `encode` records its input; decoders read one table."""

    def __init__(self, table: Table):
        self.table = table
        self.encoded: list[np.ndarray] = []
        self.steps: list[np.ndarray] = []
        self.prompts: list[list[int]] = []

    def encode(self, features: np.ndarray) -> int:
        self.encoded.append(features)
        return len(self.encoded) - 1

    def decoder(self, encoded: object, batch: int) -> ScriptedState:
        model = self

        class Recording(ScriptedState):
            def step(self, tokens):
                if not self.rows[0]:
                    model.prompts.append(tokens[0].tolist())
                return super().step(tokens)

        return Recording(self.table, batch, self.steps)


def after(prompt: list[int], script: Mapping[tuple[int, ...], np.ndarray], default=None) -> Table:
    """A table keyed by the tokens generated after `prompt`."""
    fallback = dist() if default is None else default

    def table(history: tuple[int, ...]) -> np.ndarray:
        if len(history) < len(prompt):
            return dist()
        return script.get(history[len(prompt) :], fallback)

    return table


def run(
    script: Mapping[tuple[int, ...], np.ndarray],
    *,
    prompt: list[int] | None = None,
    rules: GenerationRules = NO_RULES,
    special: SpecialTokens = ENGLISH,
    rng: np.random.Generator | None = None,
    **options,
):
    options.setdefault("timestamps", False)
    prompt = prompt or init_tokens(special, None, "transcribe", timestamps=options["timestamps"])
    model = ScriptedModel(after(prompt, script))
    result = decode_window(
        model,
        model.encode(np.zeros(1)),
        prompt,
        special=special,
        rules=rules,
        options=WindowOptions(**options),
        rng=rng,
    )
    return result, model


def mask(logits: np.ndarray) -> list[int]:
    """The ids a filter left possible."""
    return np.flatnonzero(np.isfinite(logits)).tolist()


def timestamps(*steps: int) -> list[int]:
    return [TS + s for s in steps]


# --- numerics -----------------------------------------------------------------------------


def test_log_softmax_matches_float64_and_keeps_dtype():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((3, 51865)) * 4).astype(np.float32)
    x[0, :100] = -np.inf
    got = log_softmax(x)
    assert got.dtype == np.float32
    ref = x.astype(np.float64) - np.log(np.exp(x.astype(np.float64)).sum(-1, keepdims=True))
    finite = np.isfinite(ref)
    assert np.array_equal(np.isfinite(got), finite)
    assert np.abs(got[finite] - ref[finite]).max() < 1e-5


def test_text_compression_ratio_is_openai_whispers():
    import zlib

    text = " the cat sat on the mat"
    data = text.encode("utf-8")
    assert text_compression_ratio(text) == len(data) / len(zlib.compress(data))
    assert text_compression_ratio(" ha" * 100) > 2.4
    assert text_compression_ratio("") == 0


def test_token_compression_ratio_is_transformers():
    import torch
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

    rng = np.random.default_rng(1)
    for tokens in (rng.integers(0, 51864, 50), np.array([50363, 400, 400, 400, 50256] * 20)):
        expected = WhisperGenerationMixin._retrieve_compression_ratio(torch.tensor(tokens), 51864)
        assert token_compression_ratio(tokens.tolist(), 51864) == expected


# --- no-speech ----------------------------------------------------------------------------


def test_no_speech_probability_is_the_softmax_at_the_token():
    logits = dist({NO_SPEECH: 0.7, 3: 0.2})
    assert no_speech_probability(logits, NO_SPEECH) == pytest.approx(0.7, rel=1e-5)


def test_transformers_no_speech_reads_after_suppression():
    logits = dist({NO_SPEECH: 0.7, 3: 0.2})
    suppressing = GenerationRules(suppress_tokens=(NO_SPEECH,), begin_suppress_tokens=(EOT,))
    for beam in (False, True):
        assert transformers_no_speech_probability(logits, NO_SPEECH, suppressing, beam=beam) == 0
    # Not suppressed: greedy renormalises over what is left, beam search does not.
    begin_only = GenerationRules(begin_suppress_tokens=(3,))
    greedy = transformers_no_speech_probability(logits, NO_SPEECH, begin_only, beam=False)
    beam = transformers_no_speech_probability(logits, NO_SPEECH, begin_only, beam=True)
    assert greedy == pytest.approx(0.7 / 0.8, rel=1e-5)
    assert beam == pytest.approx(0.7, rel=1e-5)


def test_decode_window_reads_no_speech_at_sot_after_a_prompt():
    prompt = [PREV, 3, 4, SOT, NO_TS]

    def table(history):
        if history[-1] == SOT:
            return dist({NO_SPEECH: 0.8})
        return dist({NO_SPEECH: 0.1, 5: 0.8}, eot=0.05 if len(history) > 6 else 1e-6)

    model = ScriptedModel(table)
    result = decode_window(
        model,
        model.encode(np.zeros(1)),
        prompt,
        special=ENGLISH,
        rules=NO_RULES,
        options=WindowOptions(timestamps=False, max_new_tokens=3),
    )
    assert result.no_speech_prob == pytest.approx(0.8, rel=1e-5)
    assert model.prompts == [prompt]


def test_transformers_no_speech_option_only_when_sot_starts_alone():
    rules = GenerationRules(suppress_tokens=(NO_SPEECH,))
    script = {(): dist({TS: 0.9}), (TS,): dist({1: 0.9}), (TS, 1): dist({TS + 3: 0.9})}
    table = after([SOT], script)

    def sot_table(history):
        return dist({NO_SPEECH: 0.9}) if history[-1] == SOT else table(history)

    def no_speech(prompt, special):
        model = ScriptedModel(sot_table)
        options = WindowOptions(transformers_no_speech=True, max_new_tokens=3)
        return decode_window(
            model, 0, prompt, special=special, rules=rules, options=options
        ).no_speech_prob

    assert no_speech([SOT], ENGLISH) == 0
    assert no_speech([SOT, DE, TRANSCRIBE], MULTILINGUAL) == pytest.approx(0.9, rel=1e-5)


# --- filters ------------------------------------------------------------------------------


def none_generated(rows=1):
    return np.zeros((rows, 0), dtype=np.int64)


def test_suppress_blank_only_at_the_first_step():
    logits = np.zeros((1, VOCAB), np.float32)
    SuppressBlank([3, EOT]).apply(logits, none_generated())
    assert not np.isfinite(logits[0, [3, EOT]]).any() and np.isfinite(logits[0, 4])
    later = np.zeros((1, VOCAB), np.float32)
    SuppressBlank([3, EOT]).apply(later, np.array([[5]]))
    assert np.isfinite(later).all()


def test_suppress_tokens_and_everything_from_an_id():
    logits = np.zeros((2, VOCAB), np.float32)
    SuppressTokens([1, 2], from_id=TS).apply(logits, np.array([[5], [6]]))
    assert mask(logits[0]) == mask(logits[1]) == [0, *range(3, TS)]


def rules_filter(max_initial_index=2):
    return ApplyTimestampRules(ENGLISH, max_initial_index)


def test_first_token_is_a_timestamp_within_the_initial_limit():
    logits = np.zeros((1, VOCAB), np.float32)
    rules_filter(max_initial_index=2).apply(logits, none_generated())
    assert mask(logits[0]) == timestamps(0, 1, 2)


def test_notimestamps_is_never_generated():
    logits = np.zeros((1, VOCAB), np.float32)
    rules_filter().apply(logits, np.array([[TS, 1]]))
    assert not np.isfinite(logits[0, NO_TS])


def test_an_open_timestamp_is_closed_or_the_window_ends():
    # <|0.00|> text <|0.04|>: only <|endoftext|> or a timestamp from <|0.04|> on (the end
    # token is made likely, or the timestamps together would win and remove it too).
    logits = np.zeros((1, VOCAB), np.float32)
    logits[0, EOT] = 10
    rules_filter().apply(logits, np.array([timestamps(0) + [1] + timestamps(2)]))
    # Only text is removed: the special ids above <|endoftext|> are left to the suppress list.
    assert mask(logits[0]) == [t for t in range(EOT, VOCAB) if t != NO_TS and not TS <= t < TS + 2]


def test_after_a_pair_comes_text():
    # <|0.00|> text <|0.04|><|0.04|>: no timestamp may follow.
    logits = np.zeros((1, VOCAB), np.float32)
    rules_filter().apply(logits, np.array([timestamps(0) + [1] + timestamps(2, 2)]))
    assert mask(logits[0]) == [t for t in range(TS) if t != NO_TS]
    # Right after the first timestamp too (there is no penultimate: it counts as one).
    first = np.zeros((1, VOCAB), np.float32)
    rules_filter().apply(first, np.array([timestamps(5)]))
    assert mask(first[0]) == [t for t in range(TS) if t != NO_TS]


def test_timestamps_never_go_back_and_segments_are_not_empty():
    # <|0.00|> a <|0.06|><|0.06|> b: the next timestamp is after <|0.06|> (text is made
    # likely, or the timestamps together would win and remove it).
    logits = np.zeros((1, VOCAB), np.float32)
    logits[0, 5] = 10
    rules_filter().apply(logits, np.array([timestamps(0) + [1] + timestamps(3, 3) + [2]]))
    assert mask(logits[0]) == [t for t in range(TS) if t != NO_TS] + list(range(TS + 4, VOCAB))


def test_timestamps_win_when_together_more_probable_than_any_text_token():
    # 19 timestamps at 0.03 each (0.57 together) beat the best text token (0.3).
    probs = {t: 0.03 for t in range(TS, VOCAB)} | {1: 0.3}
    logits = dist(probs)[None]
    rules_filter().apply(logits, np.array([[TS, 1]]))
    assert mask(logits[0]) == list(range(TS + 1, VOCAB))  # <|0.00|>: never back
    # The best text token at 0.6 beats them (0.38 together): nothing more is removed.
    probs = {t: 0.02 for t in range(TS, VOCAB)} | {1: 0.6}
    logits = dist(probs)[None]
    rules_filter().apply(logits, np.array([[TS, 1]]))
    assert mask(logits[0]) == [t for t in range(VOCAB) if t not in (NO_TS, TS)]


def test_suppressed_tokens_do_not_count_against_timestamps():
    """The sum rule runs last: a suppressed text token cannot outweigh the timestamps."""
    probs = {t: 0.02 for t in range(TS, VOCAB)} | {1: 0.6}
    logits = dist(probs)[None]
    options = WindowOptions(max_initial_timestamp=None)
    filters = window_filters(ENGLISH, GenerationRules(suppress_tokens=(1,)), options)
    filters.apply(logits, np.array([[TS, 2]]))
    assert mask(logits[0]) == list(range(TS + 1, VOCAB))


def test_timestamp_rules_match_transformers_processor():
    import torch
    from transformers.generation.logits_process import WhisperTimeStampLogitsProcessor

    config = SimpleNamespace(
        no_timestamps_token_id=NO_TS,
        eos_token_id=EOT,
        bos_token_id=EOT,
        max_initial_timestamp_index=3,
    )
    rng = np.random.default_rng(0)
    prompt = [SOT]
    for case in range(300):
        length = int(rng.integers(0, 7))
        generated = rng.choice([*range(10), *range(TS, VOCAB)], size=(2, length))
        logits = (rng.standard_normal((2, VOCAB)) * (1 + case % 4)).astype(np.float32)
        processor = WhisperTimeStampLogitsProcessor(config, begin_index=len(prompt))
        input_ids = torch.tensor([prompt + row.tolist() for row in generated])
        expected = processor(input_ids, torch.from_numpy(logits.copy())).numpy()
        ours = logits.copy()
        ApplyTimestampRules(ENGLISH, 3).apply(ours, generated.astype(np.int64))
        assert np.array_equal(ours, expected), (case, generated)


# --- greedy and sampling ------------------------------------------------------------------


def test_greedy_takes_the_best_allowed_token_until_the_end_token():
    script = {
        (): dist({3: 0.5, EOT: 0.4}),  # <|endoftext|> is begin-suppressed, so not chosen anyway
        (3,): dist({4: 0.6}),
        (3, 4): dist({EOT: 0.7}),
    }
    result, model = run(script, rules=GenerationRules(begin_suppress_tokens=(EOT,)))
    assert result.tokens == (3, 4) and result.ended
    # The prompt in one call, then one call per token after the first.
    assert [s.shape for s in model.steps] == [(1, 2), (1, 1), (1, 1)]
    assert result.timing.next_steps == 2


def test_average_logprob_counts_the_end_token():
    script = {(): dist({3: 0.5}), (3,): dist({4: 0.6}), (3, 4): dist({EOT: 0.7})}
    result, _ = run(script)
    expected = (np.log(0.5) + np.log(0.6) + np.log(0.7)) / 3
    assert result.avg_logprob == pytest.approx(expected, rel=1e-5)


def test_average_logprob_is_over_the_filtered_distribution():
    script = {(): dist({3: 0.5, 6: 0.3}), (3,): dist({EOT: 0.9})}
    result, _ = run(script, rules=GenerationRules(suppress_tokens=(6,)))
    assert result.tokens == (3,)
    # Token 6 removed, each chosen token's share of what is left.
    shares = [np.exp(script[h].astype(np.float64)) for h in ((), (3,))]
    first = np.log(shares[0][3] / (1 - shares[0][6]))
    second = np.log(shares[1][EOT] / (1 - shares[1][6]))
    assert result.avg_logprob == pytest.approx((first + second) / 2, rel=1e-5)


def test_greedy_stops_at_the_length_limit_without_an_end_token():
    script = {(): dist({3: 0.9}), (3,): dist({3: 0.9}), (3, 3): dist({3: 0.9})}
    result, _ = run(script, max_new_tokens=3)
    assert result.tokens == (3, 3, 3) and not result.ended
    assert result.avg_logprob == pytest.approx(np.log(0.9), rel=1e-5)


def test_token_limit():
    rules = GenerationRules(max_length=448)
    assert token_limit(rules, WindowOptions(), 4) == 444
    assert token_limit(rules, WindowOptions(max_new_tokens=100), 4) == 100
    assert token_limit(rules, WindowOptions(max_new_tokens=500), 200) == 248
    with pytest.raises(ValueError, match="exceeds"):
        token_limit(rules, WindowOptions(fixed_tokens=445, timestamps=False), 4)


def test_fixed_tokens_force_the_same_text_tokens_whatever_the_model_predicts():
    script = {(): dist({TS: 0.5, 3: 0.3}), (3,): dist({EOT: 0.9, 4: 0.05})}
    rules = GenerationRules(suppress_tokens=(1, 2), begin_suppress_tokens=(5, EOT))
    result, model = run(script, fixed_tokens=5, prompt=[SOT, NO_TS], rules=rules)
    forced = fixed_token_ids(5, ENGLISH, rules)
    assert result.tokens == forced and not result.ended
    # Text tokens only, none a filter removes, spread over the vocabulary (not one repeated).
    assert all(t < EOT and t not in (1, 2, 5) for t in forced) and len(set(forced)) > 1
    assert fixed_token_ids(5, ENGLISH, rules) == forced  # derived from the vocabulary alone
    assert np.isfinite(result.avg_logprob)
    # The prompt once, then one step per forced token but the last.
    assert [step.tolist() for step in model.steps] == [[[SOT, NO_TS]]] + [
        [[t]] for t in forced[:-1]
    ]
    # Another model (here: another script) decodes the very same tokens with the same steps.
    other, other_model = run(
        {(): dist({7: 0.99})}, fixed_tokens=5, prompt=[SOT, NO_TS], rules=rules
    )
    assert other.tokens == forced and len(other_model.steps) == len(model.steps)


def test_fixed_tokens_feed_every_beam_row():
    result, model = run({}, fixed_tokens=3, beam_size=2, prompt=[SOT, NO_TS])
    assert result.tokens == fixed_token_ids(3, ENGLISH, NO_RULES)
    assert [step.shape for step in model.steps] == [(2, 2), (2, 1), (2, 1)]


def sampling_script():
    return {(): dist({1: 0.4, 2: 0.3, 3: 0.2}), **{(t,): dist({EOT: 0.9}) for t in range(10)}}


def test_sampling_is_reproducible_with_a_seed():
    def sample(seed):
        rng = np.random.default_rng(seed)
        return [run(sampling_script(), temperature=1.0, rng=rng)[0].tokens for _ in range(20)]

    assert sample(7) == sample(7)
    assert sample(7) != sample(8)
    assert {t[0] for t in sample(7)} >= {1, 2, 3}


def test_sampling_keeps_the_top_k():
    rng = np.random.default_rng(0)
    firsts = {
        run(sampling_script(), temperature=1.0, top_k=2, rng=rng)[0].tokens[0] for _ in range(40)
    }
    assert firsts == {1, 2}
    result, _ = run(sampling_script(), temperature=1.0, top_k=1, rng=rng)
    assert result.tokens == (1,)
    # Its log-probs are over the kept tokens, as transformers: one token kept, log-prob 0.
    assert result.avg_logprob == 0


def test_sampling_needs_a_generator():
    with pytest.raises(ValueError, match="Generator"):
        GreedyDecoder(EOT, 0.5)


# --- beam search --------------------------------------------------------------------------


def test_ranker_divides_by_length_to_a_power():
    assert SequenceRanker().score(-2.5, 4) == pytest.approx(-0.625)
    assert SequenceRanker(0.0).score(-2.5, 4) == pytest.approx(-2.5)
    assert SequenceRanker(2.0).score(-2.5, 4) == pytest.approx(-2.5 / 16)


def test_beam_length_counts_the_end_token():
    a, b, c, d, w, x = 1, 2, 3, 4, 5, 6
    script = {
        (): dist({a: 0.6, b: 0.3}),
        (a,): dist({EOT: float(np.exp(-1.0 - np.log(0.6))), x: 0.38}),
        (b,): dist({c: 0.9}),
        (b, c): dist({d: 0.8}),
        (b, c, d): dist({EOT: 0.38, w: 0.6}),
    }
    short = np.log(0.6) + np.log(float(np.exp(-1.0 - np.log(0.6))))  # a <|endoftext|>: -1.0
    long = np.log(0.3) + np.log(0.9) + np.log(0.8) + np.log(0.38)  # b c d <|endoftext|>: -2.5
    # Counting the end token, the short one wins; without it the long one would.
    assert short / 2 > long / 4 and short / 1 < long / 3
    result, model = run(script, beam_size=2)
    assert result.tokens == (a,) and result.ended
    assert result.avg_logprob == pytest.approx(short / 2, rel=1e-4)
    # Both rows run from the prompt on, as transformers runs num_beams rows.
    assert model.steps[0].shape == (2, 2)


def test_beam_end_token_must_rank_within_the_beam_size():
    a, b = 1, 2
    script = {
        (): dist({a: 0.45, b: 0.35}, eot=0.15),
        # Flat continuations: the end token is each row's most probable.
        (a,): dist(eot=0.04, decay=0.005),
        (b,): dist(eot=0.05, decay=0.005),
    }
    result, _ = run(script, beam_size=2)
    # At the first step <|endoftext|> is third of the 4 candidates: not accepted, though
    # alone it would have scored log(0.15) = -1.90, better than what won.
    assert result.tokens == (a,)
    won = (np.log(0.45) + np.log(0.04)) / 2
    assert won < np.log(0.15)
    assert result.avg_logprob == pytest.approx(won, rel=1e-4)


def test_beam_search_stops_at_the_length_limit():
    script = {(): dist({1: 0.6, 2: 0.3})}
    result, _ = run(script, beam_size=3, max_new_tokens=4)
    assert len(result.tokens) == 4 and not result.ended


def test_beam_search_reorders_the_cache_with_its_beams():
    """Each row's logits depend on its whole history: a wrong reorder changes the result."""
    a, b, c = 1, 2, 3
    script = {
        (): dist({a: 0.5, b: 0.4}),
        (a,): dist({c: 0.3}),
        (b,): dist({c: 0.9}),
        (b, c): dist({EOT: 0.9}),
        (a, c): dist({EOT: 0.9}),
    }
    result, _ = run(script, beam_size=2)
    assert result.tokens == (b, c)


def test_beam_search_decoder_direct():
    """The decoder alone, on an `Inference` over a scripted state."""
    table = after([SOT], {(): dist({1: 0.7}), (1,): dist({EOT: 0.9})})
    state = ScriptedState(table, 2, [])
    inference = Inference(state)
    logits = inference.prompt(np.array([[SOT], [SOT]]))
    filters = LogitFilters([])
    hypothesis = BeamSearchDecoder(EOT, 2, SequenceRanker()).decode(
        inference, logits[:, -1], filters, 10
    )
    assert hypothesis.tokens == (1, EOT)
    assert hypothesis.score == pytest.approx((np.log(0.7) + np.log(0.9)) / 2, rel=1e-5)


# --- timestamps through decode_window -----------------------------------------------------


def test_decode_window_with_timestamps():
    script = {
        (): dist({TS + 5: 0.5, 3: 0.4}),  # text cannot come first; <|0.10|> is past the limit
        (TS + 1,): dist({3: 0.9}),
        (TS + 1, 3): dist({TS + 4: 0.9}),
        (TS + 1, 3, TS + 4): dist({EOT: 0.9}),
    }
    first = {**script, (): dist({TS + 5: 0.3, TS + 1: 0.2, 3: 0.4})}
    result, model = run(first, timestamps=True, max_initial_timestamp=0.04)
    assert model.prompts == [[SOT]]
    assert result.tokens == (TS + 1, 3, TS + 4) and result.ended


# --- language and prompt ------------------------------------------------------------------


def test_detect_language_is_a_softmax_over_language_tokens():
    model = ScriptedModel(lambda h: dist({DE: 0.5, EN: 0.25, 3: 0.2}))
    found = detect_language(model, 0, MULTILINGUAL)
    assert found.language == "de"
    assert sum(found.probs.values()) == pytest.approx(1.0)
    shares = np.exp(dist({DE: 0.5, EN: 0.25, 3: 0.2})[[EN, DE, FR]].astype(np.float64))
    assert found.probs["de"] == pytest.approx(shares[1] / shares.sum(), rel=1e-5)
    assert model.prompts == [[SOT]]
    with pytest.raises(ValueError, match="English-only"):
        detect_language(model, 0, ENGLISH)


def test_init_tokens():
    assert init_tokens(ENGLISH, None, "transcribe", timestamps=True) == [SOT]
    assert init_tokens(ENGLISH, "en", "transcribe", timestamps=False) == [SOT, NO_TS]
    assert init_tokens(MULTILINGUAL, "de", "translate", timestamps=True) == [SOT, DE, TRANSLATE]
    with pytest.raises(ValueError, match="needs a language"):
        init_tokens(MULTILINGUAL, None, "transcribe", timestamps=True)
    with pytest.raises(ValueError, match="only transcribe"):
        init_tokens(ENGLISH, None, "translate", timestamps=True)


def test_generation_rules_from_a_config():
    from transformers import GenerationConfig

    config = {"suppress_tokens": [1, 2], "begin_suppress_tokens": [220, 50256], "max_length": 448}
    rules = GenerationRules.from_generation_config(config)
    assert rules == GenerationRules((1, 2), (220, 50256), 448)
    assert GenerationRules.from_generation_config(GenerationConfig(**config)) == rules


@pytest.mark.parametrize(
    "bad",
    [
        {"temperature": -0.1},
        {"beam_size": 0},
        {"max_new_tokens": 0},
        {"fixed_tokens": 4},  # needs timestamps=False
        {"fixed_tokens": 0, "timestamps": False},
        {"top_k": 0},
        {"max_initial_timestamp": -1.0},
    ],
)
def test_window_options_are_validated(bad):
    with pytest.raises(ValueError):
        WindowOptions(**bad)


def test_inference_times_the_prompt_and_the_steps_apart():
    ticks = iter(range(100))
    state = ScriptedState(lambda h: dist(), 1, [])
    inference = Inference(state, clock=lambda: float(next(ticks)))
    inference.prompt(np.array([[SOT]]))
    inference.next(np.array([3]))
    inference.next(np.array([4]))
    timing = inference.timing
    assert (timing.first_step_s, timing.next_steps_s, timing.next_steps) == (1.0, 2.0, 2)
