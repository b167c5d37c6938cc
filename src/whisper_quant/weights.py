"""Import weights from any model source into a transformers Whisper checkpoint (the original).

The original is saved as fp32 safetensors with its config, generation config, tokenizer and
feature extractor, so `WhisperForConditionalGeneration.from_pretrained(folder)` loads it alone.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, replace
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
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizerFast,
    )

    dims = whisper_dimensions(model)
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
    with torch.device("meta"):
        hf_model = WhisperForConditionalGeneration(config)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in state.items()}
    # proj_out is tied to the token embedding: give both names one tensor.
    tensors["proj_out.weight"] = tensors["model.decoder.embed_tokens.weight"]
    hf_model.load_state_dict(tensors, strict=True, assign=True)
    hf_model.tie_weights()
    hf_model.eval()

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
    hf_model.generation_config = generation

    hf_model.save_pretrained(out_dir, safe_serialization=True)
    processor = WhisperProcessor(
        feature_extractor=WhisperFeatureExtractor(feature_size=dims["num_mel_bins"]),
        tokenizer=tokenizer,
    )
    processor.save_pretrained(out_dir)
    return multilingual


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
