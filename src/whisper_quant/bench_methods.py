"""The benchmark report's "methods": how each of its figures was measured, in plain words.

The texts are fixed (the coverage note quotes coverage.py's thresholds, the normalisation note
metrics.EXTRA_RULES); `method_notes` picks the ones a run's report carries.
"""

from __future__ import annotations

from .coverage import COMPARABLE_COVERAGE, MIN_CHUNK_WORDS, MIN_DROPPED_S, SHORT_CHUNK_SHARE
from .measure import KERNEL_METHOD, MEMORY_METHOD, timing_method
from .metrics import EXTRA_RULES

FEATURES_NOTE = (
    "Every worker computes log-mel features with transformers' WhisperFeatureExtractor, which "
    "uses torch: the ONNX and CTranslate2 workers import torch too, before their baseline, "
    "so it is in no engine's 'memory held' and in every engine's baseline."
)
PER_TOKEN_METHOD = (
    "Marginal cost per decoded token: least-squares slope of each run's decoder time "
    "(every decoder step, the first included) against the tokens it decoded, over every "
    "clip and pass; the intercept is the fixed cost per window. First step: the median time "
    "of the decoder's first call (the prompt), reported apart. Per step: decoder time after "
    "each decoding's prompt step over the steps it took (one token each), over every run."
)
ENCODER_METHOD = (
    "Encoder time per 30 s window: the encoder's seconds over the windows it encoded, over "
    "every run; the ONNX engines' cross-attention key/value projections are apart (cross_kv), "
    "the original runs them inside its first decoder step."
)
FIXED_TOKENS_METHOD = (
    "--fixed-tokens N: every engine decodes exactly N tokens per 30 s window, forced to the "
    "same token ids (text tokens derived from the vocabulary, decoding.fixed_token_ids), after "
    "a prompt of the start tokens only, in the given language or English, without fallback: "
    "the same work on the same tokens for every engine, with real or random weights. "
    "Transcripts are those forced tokens: WER and agreement mean nothing in this mode."
)
NORMALISATION_NOTE = (
    "WER (CER for other languages) after Whisper's normalisers as they are: whisper-normalizer's "
    "EnglishTextNormalizer, or BasicTextNormalizer keeping marks. wer_extra_rules adds "
    + " and ".join(f"'{rule}'" for rule in EXTRA_RULES)
    + " (metrics.EXTRA_RULES); loop and empty-output flags always use them."
)
PER_LANGUAGE_METHOD = (
    "Per language (clips with a language label): WER and CER after the language's own "
    "normaliser, CER the headline for every language but English; intervals over the "
    "language's speakers (cluster bootstrap, none below the minimum of clusters) and over its "
    "clips (the prompts of the voices present, not other voices); the difference from the "
    "original paired over the same clips. Language identification: the first window's "
    "detected language against the label and against the original's on the same clip "
    "(utterances hold each engine's as <engine>_language). Dropped spans from the coverage "
    "figures. The overall WER above scores every clip with the English normaliser."
)
SECTIONS_METHOD = (
    "Sections: the median seconds of each timed part of a transcription over every run: "
    "features, encoder, cross_kv (ONNX engines), language detection, decoder (every decoding "
    "step whole: the model call with its projection to the vocabulary, and for the original "
    "generate's logits processors and bookkeeping between steps; first_step is its prompt "
    "steps); 'other' is the total minus those sections. section_share is their medians' sum "
    "over the median latency."
)
COVERAGE_METHOD = (
    f"Speech coverage: the seconds of each clip that an engine's segments with text cover "
    f"(clipped to the clip), from its last run. speech_coverage_vs_original: the seconds both "
    f"it and the original cover over the seconds the original covers, summed over clips. A "
    f"dropped span is a stretch this engine's segments leave uncovered holding at least "
    f"{MIN_DROPPED_S:g} s of the original's segments. An engine covering less than "
    f"{COMPARABLE_COVERAGE:.0%} of the original's speech did less work: its speed-up is "
    f"marked not comparable (speedup_comparable false). Batched runs decode the same chunks "
    f"in every engine, and without timestamps a chunk is one segment spanning it, so a "
    f"decoding that ended early leaves no gap: short_chunks lists each chunk where the "
    f"original wrote at least {MIN_CHUNK_WORDS} words and this engine fewer than "
    f"{SHORT_CHUNK_SHARE:.0%} of them."
)
SPLIT_METHOD = (
    "The speed-up splits three ways, multiplying back to the stock figure: transformers "
    "generate (original) to pytorch (the same model through the studio's loop: generate's own "
    "extra passes), pytorch to onnx-fp32 (the runtime and graphs), onnx-fp32 to quantized "
    "(int8). Headline speed-ups are against pytorch, like for like; the stock original's "
    "figure is beside them."
)
BUILD_NOTE = (
    "The model's build, from its manifest: seconds per stage and the peak resident memory "
    "of each stage (MiB)."
)


def method_notes(repeat: int, *, per_language: bool, fixed_tokens: bool) -> dict[str, str]:
    """The report's methods for a run of `repeat` timed passes; the per-language note when
    clips carry a language label, the fixed-tokens note under --fixed-tokens."""
    methods = {
        "timing": timing_method(repeat, 1),
        "memory": MEMORY_METHOD,
        "peak": KERNEL_METHOD,
        "per_token": PER_TOKEN_METHOD,
        "encoder": ENCODER_METHOD,
        "features": FEATURES_NOTE,
        "build": BUILD_NOTE,
        "normalisation": NORMALISATION_NOTE,
        "sections": SECTIONS_METHOD,
        "coverage": COVERAGE_METHOD,
        "speedup_split": SPLIT_METHOD,
    }
    if per_language:
        methods["per_language"] = PER_LANGUAGE_METHOD
    if fixed_tokens:
        methods["fixed_tokens"] = FIXED_TOKENS_METHOD
    return methods
