"""Fetch built model folders from the Hugging Face Hub, for models too big to build at start.

A model built elsewhere (`python build_model.py --model large-v3` on a bigger machine) and
uploaded to a Hub model repository (`scripts/upload_model.py`) is fetched into the models
folder with `huggingface_hub.snapshot_download(repo_id, local_dir=...)` and checked against
its manifest (every file's size and sha256) before it is used. A folder that does not match
is refused and removed: nothing half-downloaded or altered is ever loaded.

`WHISPER_MODELS` (settings.py) names the models the app offers: `name` for a model in the
models folder (built there, or the default model, built on first start), `name=owner/repo`
for one fetched from that Hub repository when missing.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .layout import CT2_DIR, CT2_MODEL_FILE, MANIFEST
from .manifest import ModelIntegrityError, verify_folder

logger = logging.getLogger(__name__)

HUB_TIMEOUT_S = 10.0
# What a built folder holds (manifest.py's safe formats): nothing else is downloaded, so a
# pickle in a repository never reaches the disk.
ALLOW_PATTERNS = [
    MANIFEST,
    "*.json",
    "*.safetensors",
    "*.onnx",
    "*.onnx_data",
    "*.txt",
    f"{CT2_DIR}/{CT2_MODEL_FILE}",
]
# huggingface_hub keeps its download metadata here inside `local_dir`.
HUB_METADATA_DIR = ".cache"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*$")
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class ModelFetchError(ModelIntegrityError):
    """A model folder could not be fetched, or what was fetched does not match its manifest."""


@dataclass(frozen=True)
class ModelEntry:
    """One entry of WHISPER_MODELS: a model's folder name and, if fetched, its Hub repo."""

    name: str
    repo_id: str | None = None

    def __str__(self) -> str:
        return self.name if self.repo_id is None else f"{self.name}={self.repo_id}"


def parse_models(text: str) -> tuple[ModelEntry, ...]:
    """`name` or `name=owner/repo` entries, comma-separated; ValueError naming a bad one."""
    entries: dict[str, ModelEntry] = {}
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        name, sep, repo = (part.strip() for part in item.partition("="))
        if not MODEL_NAME.match(name) or name in (".", ".."):
            raise ValueError(
                f"{item!r}: a model name is a folder name (letters, digits, '.', '_', '-')"
            )
        if sep and not REPO_ID.match(repo):
            raise ValueError(f"{item!r}: after '=' comes a Hub model repository, owner/name")
        if name in entries:
            raise ValueError(f"{name!r} is listed twice")
        entries[name] = ModelEntry(name, repo if sep else None)
    return tuple(entries.values())


def fetch_model(
    name: str,
    repo_id: str,
    models_dir: Path | str,
    *,
    revision: str | None = None,
) -> Path:
    """Download the built folder in Hub model repo `repo_id` to `<models_dir>/<name>`.

    Nothing happens when that folder already has a manifest. The download goes to a
    temporary folder beside it, is checked against its manifest (sizes and sha256) and only
    then renamed into place. Raises ModelFetchError with what went wrong and what to do.
    """
    models_dir = Path(models_dir)
    target = models_dir / name
    if (target / MANIFEST).is_file():
        return target
    import huggingface_hub
    from huggingface_hub import constants

    where = f"{repo_id}" + (f"@{revision}" if revision else "")
    if constants.HF_HUB_OFFLINE:
        raise ModelFetchError(
            f"Cannot fetch {name} from {where}: HF_HUB_OFFLINE is set. Put the built folder in "
            f"{target} yourself, or unset HF_HUB_OFFLINE."
        )
    models_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".fetch-{name}-", dir=models_dir))
    try:
        logger.info("fetching %s from the Hub repository %s", name, where)
        # Fail fast without a network instead of waiting on the default retries.
        os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", str(int(HUB_TIMEOUT_S)))
        try:
            huggingface_hub.snapshot_download(
                repo_id,
                repo_type="model",
                revision=revision,
                local_dir=work,
                allow_patterns=ALLOW_PATTERNS,
                etag_timeout=HUB_TIMEOUT_S,
            )
        except Exception as e:  # noqa: BLE001 - any Hub/network failure gets the same guidance
            raise ModelFetchError(
                f"Could not fetch {name} from the Hub repository {where} "
                f"({type(e).__name__}: {e}). Check the repository id and the network (a "
                "private repository needs HF_TOKEN), or build the model on a machine with "
                "enough memory and upload it with scripts/upload_model.py."
            ) from e
        shutil.rmtree(work / HUB_METADATA_DIR, ignore_errors=True)
        try:
            manifest = verify_folder(work, checksums=True)
        except ModelIntegrityError as e:
            raise ModelFetchError(
                f"Refused {name} from {where}: the downloaded folder does not match its "
                f"manifest ({e}). Nothing was kept. Re-upload the built folder with "
                "scripts/upload_model.py, which checks it before uploading."
            ) from e
        _remove_unlisted(work, manifest)
        if (target / MANIFEST).is_file():  # fetched meanwhile by someone else
            return target
        if target.exists():
            shutil.rmtree(target)  # a folder without a manifest: an earlier, broken copy
        work.rename(target)
        logger.info("fetched %s into %s", name, target)
        return target
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)


def _remove_unlisted(folder: Path, manifest: dict) -> None:
    """Delete what the repository held beside the build: only manifest files are kept."""
    listed = {*manifest["files"], MANIFEST}
    for path in sorted(folder.rglob("*"), reverse=True):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel not in listed:
            logger.info("not part of the build, removed: %s", rel)
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def missing_entries(entries: tuple[ModelEntry, ...], models_dir: Path | str) -> list[ModelEntry]:
    """The entries with a Hub repository whose folder has no manifest yet."""
    return [
        e
        for e in entries
        if e.repo_id is not None and not (Path(models_dir) / e.name / MANIFEST).is_file()
    ]
