"""Import weights from any model source into a transformers Whisper checkpoint (the original).

The original is saved as fp32 safetensors with its config, generation config, tokenizer and
feature extractor, so `WhisperForConditionalGeneration.from_pretrained(folder)` loads it alone.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from .ct2 import (
    CT2Model,
    read_ct2_config,
    read_ct2_model,
    to_transformers_state_dict,
    whisper_dimensions,
)
from .manifest import sha256_files
from .models import ModelSourceError, ModelSpec, embedded_names, locate_ct2_files
from .tokens import is_multilingual, special_tokens

logger = logging.getLogger(__name__)

# Whisper's maximum decoder length, from the original models' generation config.
MAX_TARGET_TOKENS = 448
HUB_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ImportedWeights:
    """What an import produced: the folder and what it came from."""

    folder: Path
    source: str
    source_sha256: str
    multilingual: bool
    parameters: int


def source_checksum(spec: ModelSpec) -> str | None:
    """The sha256 of a local or embedded source's files; None for a Hub id (not fetched yet).

    A rerun compares it with the manifest, so a changed weights package forces a rebuild.
    """
    if spec.kind in ("embedded", "ct2"):
        files = locate_ct2_files(spec)
        return sha256_files([*files.model_parts, files.config, files.tokenizer])
    if spec.kind == "transformers":
        return sha256_files(sorted(Path(spec.location).glob("*.safetensors")))
    if spec.kind == "synthetic":
        return synthetic_checksum(spec)
    return None


def import_weights(spec: ModelSpec, out_dir: Path) -> ImportedWeights:
    """Write the original transformers checkpoint of `spec` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.kind in ("embedded", "ct2"):
        return _import_ct2(spec, out_dir)
    if spec.kind == "transformers":
        return _import_transformers(spec, Path(spec.location), out_dir)
    if spec.kind == "hub":
        return _import_hub(spec, out_dir)
    if spec.kind == "synthetic":
        return _import_synthetic(spec, out_dir)
    raise ModelSourceError(f"Unknown model kind {spec.kind!r}")


def _import_ct2(spec: ModelSpec, out_dir: Path) -> ImportedWeights:
    files = locate_ct2_files(spec)
    ct2_config = read_ct2_config(files.config)
    model = read_ct2_model(files.model_parts)
    state = to_transformers_state_dict(model)
    checksum = source_checksum(spec)
    multilingual = save_transformers_checkpoint(model, state, ct2_config, files.tokenizer, out_dir)
    return ImportedWeights(
        folder=out_dir,
        source=f"{spec.kind}:{spec.name}",
        source_sha256=checksum,
        multilingual=multilingual,
        parameters=sum(v.size for k, v in state.items() if k != "proj_out.weight"),
    )


def save_transformers_checkpoint(
    model: CT2Model,
    state: dict[str, np.ndarray],
    ct2_config: dict,
    tokenizer_file: Path,
    out_dir: Path,
) -> bool:
    """Save converted weights, config, generation config, tokenizer and feature extractor."""
    import torch
    from transformers import WhisperForConditionalGeneration

    dims = whisper_dimensions(model)
    config, generation, processor = whisper_configs(dims, ct2_config, tokenizer_file)
    with torch.device("meta"):
        hf_model = WhisperForConditionalGeneration(config)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    # proj_out is tied to the token embedding: give both names one tensor.
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]
    hf_model.load_state_dict(tensors, strict=True, assign=True)
    hf_model.tie_weights()
    hf_model.eval()
    hf_model.generation_config = generation
    hf_model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return bool(generation.is_multilingual)


def whisper_configs(dims: dict, ct2_config: dict, tokenizer_file: Path):
    """The WhisperConfig, GenerationConfig and WhisperProcessor of a model of `dims`.

    `ct2_config` (a CTranslate2 config.json) gives the suppressed tokens, language ids and
    alignment heads; `tokenizer_file` must match `dims["vocab_size"]`.
    """
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    multilingual = is_multilingual(dims["vocab_size"])
    tokenizer = WhisperTokenizerFast(tokenizer_file=str(tokenizer_file))
    tokens = special_tokens(
        tokenizer, multilingual=multilingual, lang_ids=ct2_config.get("lang_ids")
    )
    suppress = list(ct2_config.get("suppress_ids", []))
    begin_suppress = list(ct2_config.get("suppress_ids_begin", [220, tokens.eot]))

    config = WhisperConfig(
        **dims,
        pad_token_id=tokens.eot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        decoder_start_token_id=tokens.sot,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        scale_embedding=False,
        activation_function="gelu",
    )
    generation = GenerationConfig(
        decoder_start_token_id=tokens.sot,
        bos_token_id=tokens.eot,
        eos_token_id=tokens.eot,
        pad_token_id=tokens.eot,
        max_length=MAX_TARGET_TOKENS,
        no_timestamps_token_id=tokens.no_timestamps,
        prev_sot_token_id=tokens.prev,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        is_multilingual=multilingual,
        return_timestamps=False,
        max_initial_timestamp_index=50,
    )
    if alignment := ct2_config.get("alignment_heads"):
        generation.alignment_heads = [list(pair) for pair in alignment]
    if multilingual:
        generation.lang_to_id = {f"<|{code}|>": tid for code, tid in tokens.languages.items()}
        generation.task_to_id = {"transcribe": tokens.transcribe, "translate": tokens.translate}
        # Without an explicit task, transformers' generate drifted after six tokens on the
        # converted base (seen on an English clip); transcribing is what a user expects.
        generation.task = "transcribe"
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]),
        tokenizer=tokenizer,
    )
    return config, generation, processor


# --- synthetic weights: a known shape, random values -----------------------------------------

# openai's large-v3 vocabulary inserted <|yue|> after <|su|> (the last language of the 51865
# vocabulary) and moved every later special token up by one.
V2_LAST_LANGUAGE = "<|su|>"
V3_NEW_LANGUAGE = "<|yue|>"
# The generator of synthetic weights; part of the source checksum, so a change forces a rebuild.
SYNTHETIC_INIT = "torch.randn * 0.02 per tensor in state-dict order; biases 0, norm weights 1"
SYNTHETIC_INIT_STD = 0.02


@dataclass(frozen=True)
class VocabularySource:
    """The embedded files a synthetic build takes its tokenizer and token config from."""

    tokenizer: Path
    ct2_config: dict
    # Whether to derive large-v3's 51866-token vocabulary from the 51865-token one.
    add_yue: bool


def vocabulary_source(vocab_size: int) -> VocabularySource:
    """The tokenizer of an embedded model whose vocabulary `vocab_size` equals or extends."""
    from .models import EMBEDDED
    from .shapes import VOCAB_V2, VOCAB_V3
    from .tokens import MULTILINGUAL_VOCAB_SIZE

    donors = {MULTILINGUAL_VOCAB_SIZE - 1: "tiny.en", VOCAB_V2: "base", VOCAB_V3: "base"}
    if vocab_size not in donors:
        raise ModelSourceError(
            f"No tokenizer for a {vocab_size}-token vocabulary; synthetic shapes need "
            + ", ".join(str(v) for v in donors)
        )
    files = locate_ct2_files(EMBEDDED[donors[vocab_size]])
    return VocabularySource(
        tokenizer=files.tokenizer,
        ct2_config=read_ct2_config(files.config),
        add_yue=vocab_size == VOCAB_V3,
    )


def large_v3_tokenizer(v2_tokenizer: dict) -> tuple[dict, int]:
    """large-v3's tokenizer.json from a 51865-token one, and the id given to <|yue|>.

    Every added token from <|su|>'s successor on moves up by one; the post-processor's
    special-token ids move with them.
    """
    tokenizer = json.loads(json.dumps(v2_tokenizer))
    added = tokenizer["added_tokens"]
    position = next(i for i, t in enumerate(added) if t["content"] == V2_LAST_LANGUAGE)
    yue_id = added[position]["id"] + 1
    for token in added:
        if token["id"] >= yue_id:
            token["id"] += 1
    added.insert(position + 1, {**added[position], "content": V3_NEW_LANGUAGE, "id": yue_id})
    processor = tokenizer.get("post_processor") or {}
    for special in processor.get("special_tokens", {}).values():
        special["ids"] = [i + 1 if i >= yue_id else i for i in special["ids"]]
    return tokenizer, yue_id


def shift_ids(ids: list[int], inserted: int) -> list[int]:
    """Token ids of the old vocabulary, renumbered after a token was inserted at `inserted`."""
    return [i + 1 if i >= inserted else i for i in ids]


def write_vocabulary(source: VocabularySource, out_dir: Path) -> tuple[Path, dict]:
    """Write the shape's tokenizer.json into `out_dir`; return it and the matching ct2 config."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "tokenizer.json"
    if not source.add_yue:
        shutil.copy2(source.tokenizer, path)
        return path, source.ct2_config
    v2 = json.loads(source.tokenizer.read_text(encoding="utf-8"))
    v3, yue_id = large_v3_tokenizer(v2)
    path.write_text(json.dumps(v3, ensure_ascii=False), encoding="utf-8")
    ct2_config = dict(source.ct2_config)
    for key in ("suppress_ids", "suppress_ids_begin"):
        if key in ct2_config:
            ct2_config[key] = shift_ids(ct2_config[key], yue_id)
    if "lang_ids" in ct2_config:
        ct2_config["lang_ids"] = sorted([*ct2_config["lang_ids"], yue_id])
    # Alignment heads belong to trained weights; random ones have none.
    ct2_config.pop("alignment_heads", None)
    return path, ct2_config


def synthetic_checksum(spec: ModelSpec) -> str:
    """What determines a synthetic build's weights: shape, seed and generator."""
    described = {"shape": asdict(spec.shape), "seed": spec.seed, "init": SYNTHETIC_INIT}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def _import_synthetic(spec: ModelSpec, out_dir: Path) -> ImportedWeights:
    """A checkpoint of `spec.shape` with seeded random weights, written tensor by tensor.

    The weights never exist in memory at once: each tensor is drawn, written and dropped, so
    the peak is the largest tensor (the token embedding), not the model.
    """
    import torch
    from transformers import WhisperForConditionalGeneration

    shape = spec.shape
    source = vocabulary_source(shape.vocab_size)
    tokenizer_file, ct2_config = write_vocabulary(source, out_dir)
    config, generation, processor = whisper_configs(
        shape.config_kwargs(), ct2_config, tokenizer_file
    )
    with torch.device("meta"):
        skeleton = WhisperForConditionalGeneration(config)
    # proj_out.weight is tied to the token embedding; transformers restores the tie on load.
    layout = {
        name: tuple(tensor.shape)
        for name, tensor in skeleton.state_dict().items()
        if name != "proj_out.weight"
    }
    del skeleton
    parameters = write_random_safetensors(out_dir / "model.safetensors", layout, spec.seed)
    config.save_pretrained(out_dir)
    generation.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return ImportedWeights(
        folder=out_dir,
        source=f"synthetic:{shape.name} seed {spec.seed}",
        source_sha256=synthetic_checksum(spec),
        multilingual=bool(generation.is_multilingual),
        parameters=parameters,
    )


def write_random_safetensors(path: Path, layout: dict[str, tuple[int, ...]], seed: int) -> int:
    """Write fp32 tensors of `layout` drawn from one seeded generator; return their count of
    values. The same layout and seed give the same bytes."""
    import torch

    header: dict[str, dict] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, dims in layout.items():
        size = int(np.prod(dims, dtype=np.int64)) * 4
        header[name] = {
            "dtype": "F32",
            "shape": list(dims),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    generator = torch.Generator().manual_seed(seed)
    with open(path, "wb") as f:
        f.write(len(encoded).to_bytes(8, "little"))
        f.write(encoded)
        for name, dims in layout.items():
            f.write(memoryview(_random_tensor(name, dims, generator).numpy()).cast("B"))
    return offset // 4


def _random_tensor(name: str, dims: tuple[int, ...], generator):
    import torch

    if name.endswith(".bias"):
        return torch.zeros(dims)
    if "layer_norm" in name:
        return torch.ones(dims)
    return torch.randn(dims, generator=generator).mul_(SYNTHETIC_INIT_STD)


def _import_transformers(spec: ModelSpec, folder: Path, out_dir: Path) -> ImportedWeights:
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    weights = sorted(folder.glob("*.safetensors"))
    if not weights:
        # Pickled checkpoints can run code when loaded; only safetensors are accepted.
        raise ModelSourceError(
            f"{folder} has no .safetensors weights (pickled weights are refused)"
        )
    try:
        model = WhisperForConditionalGeneration.from_pretrained(folder, use_safetensors=True)
        processor = WhisperProcessor.from_pretrained(folder)
    except (OSError, ValueError) as e:
        raise ModelSourceError(
            f"{folder} is not a loadable transformers Whisper checkpoint: {e}"
        ) from e
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    return ImportedWeights(
        folder=out_dir,
        source=f"{spec.kind}:{folder}",
        source_sha256=sha256_files(weights),
        multilingual=is_multilingual(model.config.vocab_size),
        parameters=model.num_parameters(),
    )


def _import_hub(spec: ModelSpec, out_dir: Path) -> ImportedWeights:
    from huggingface_hub import constants, snapshot_download

    offline_hint = (
        f"Could not fetch {spec.name!r} from the Hugging Face Hub. Offline, choose an embedded "
        f"model ({embedded_names()}) or a local folder."
    )
    if constants.HF_HUB_OFFLINE:
        raise ModelSourceError(offline_hint + " (HF_HUB_OFFLINE is set)")
    # Fail fast when there is no network instead of waiting on the default retries.
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(HUB_TIMEOUT_S)))
    try:
        snapshot = Path(
            snapshot_download(
                spec.location,
                allow_patterns=["*.json", "*.safetensors", "*.txt"],
                etag_timeout=HUB_TIMEOUT_S,
            )
        )
    except Exception as e:  # noqa: BLE001 - any Hub/network failure gets the same guidance
        raise ModelSourceError(f"{offline_hint} ({type(e).__name__}: {e})") from e
    imported = _import_transformers(spec, snapshot, out_dir)
    return replace(imported, source=f"hub:{spec.location}@{snapshot.name}")


def copy_preprocessing_files(src: Path, dst: Path) -> None:
    """Copy what makes a model folder usable alone: tokenizer, preprocessor, configs."""
    for name in (
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "added_tokens.json",
        "preprocessor_config.json",
        "generation_config.json",
        "config.json",
        "normalizer.json",
        "vocab.json",
        "merges.txt",
    ):
        if (src / name).is_file():
            shutil.copy2(src / name, dst / name)
