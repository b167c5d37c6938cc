"""Whisper's special tokens, looked up by name in a model's own tokenizer.

English-only and multilingual vocabularies put the same special tokens at different ids (the
English-only one has one token fewer), so ids are never hard-coded: they come from the tokenizer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# Whisper's multilingual vocabulary has 51865 tokens; English-only models have 51864.
MULTILINGUAL_VOCAB_SIZE = 51865
TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class SpecialTokens:
    """The ids a decoder prompt and the decoding rules need."""

    eot: int
    sot: int
    no_timestamps: int
    no_speech: int
    transcribe: int
    translate: int
    prev: int
    multilingual: bool
    # Language code ("en") -> token id ("<|en|>"), only for multilingual models.
    languages: Mapping[str, int] = field(default_factory=dict)

    def prompt(self, language: str | None, task: str) -> list[int]:
        """The forced decoder prefix: <|sot|> [<|lang|> <|task|>] <|notimestamps|>."""
        if not self.multilingual:
            return [self.sot, self.no_timestamps]
        if language is None:
            raise ValueError("A multilingual model needs a language (detect it first)")
        return [self.sot, self.language_id(language), self.task_id(task), self.no_timestamps]

    def language_id(self, language: str) -> int:
        code = language.strip().lower()
        if code not in self.languages:
            valid = ", ".join(sorted(self.languages))
            raise ValueError(f"Unknown language {language!r}; this model knows: {valid}")
        return self.languages[code]

    def task_id(self, task: str) -> int:
        """<|transcribe|> or <|translate|>; the task is checked where options are built
        (`TranscribeOptions`), so another one is a KeyError here."""
        return {"transcribe": self.transcribe, "translate": self.translate}[task]

    @property
    def timestamp_begin(self) -> int:
        """The id of <|0.00|>: timestamp tokens follow <|notimestamps|> in every vocabulary."""
        return self.no_timestamps + 1

    @property
    def language_by_id(self) -> dict[int, str]:
        return {token: code for code, token in self.languages.items()}


def is_multilingual(vocab_size: int) -> bool:
    """Whether a model of this (weights') vocabulary size is multilingual."""
    return vocab_size >= MULTILINGUAL_VOCAB_SIZE


def special_tokens(
    tokenizer, *, multilingual: bool, lang_ids: list[int] | None = None
) -> SpecialTokens:
    """Special token ids from a `tokenizers.Tokenizer` or a transformers tokenizer.

    Whether the model is multilingual comes from its weights' vocabulary size (see
    `is_multilingual`): some shipped tokenizer files omit the timestamp tokens.

    `lang_ids` (from a CTranslate2 config) lists the language tokens; without it, every
    `<|xx|>` token between <|startoftranscript|> and <|translate|> is taken as a language.
    """
    vocab = tokenizer.get_vocab()

    def tid(*names: str) -> int:
        for name in names:
            if name in vocab:
                return vocab[name]
        raise ValueError(f"The tokenizer has none of the Whisper tokens {names}")

    sot = tid("<|startoftranscript|>")
    translate = tid("<|translate|>")
    languages: dict[str, int] = {}
    if multilingual:
        by_id = {i: t for t, i in vocab.items()}
        ids = lang_ids or [i for i in range(sot + 1, translate) if i in by_id]
        languages = {by_id[i][2:-2]: i for i in ids if by_id[i].startswith("<|")}
    return SpecialTokens(
        eot=tid("<|endoftext|>"),
        sot=sot,
        no_timestamps=tid("<|notimestamps|>"),
        # Multilingual vocabularies call it <|nospeech|>; English-only ones <|nocaptions|>.
        no_speech=tid("<|nospeech|>", "<|nocaptions|>") if multilingual else tid("<|nocaptions|>"),
        transcribe=tid("<|transcribe|>"),
        translate=translate,
        prev=tid("<|startofprev|>"),
        multilingual=multilingual,
        languages=languages,
    )


def load_tokenizer(folder: Path | str):
    """A fast `tokenizers.Tokenizer` from a model folder's tokenizer.json (no transformers)."""
    from tokenizers import Tokenizer

    path = Path(folder) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"No tokenizer.json in {folder}")
    return Tokenizer.from_file(str(path))
