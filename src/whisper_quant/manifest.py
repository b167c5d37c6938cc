"""The manifest of a built model folder: what it was built from, how, and every file's checksum.

The app refuses a folder whose files do not match their manifest, so a truncated copy or a
tampered file is caught before it is loaded.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .layout import CT2_DIR, CT2_MODEL_FILE, MANIFEST, MANIFEST_FORMAT

# Weight formats that cannot run code when loaded; anything else (pickles) is refused.
SAFE_WEIGHT_SUFFIXES = (".safetensors", ".onnx", ".onnx_data", ".json", ".txt")
# CTranslate2's own format (plain tensors, no code), kept for the faster-whisper engine.
SAFE_FILE_NAMES = (CT2_MODEL_FILE,)


class ModelIntegrityError(RuntimeError):
    """A built model folder is missing, incomplete or altered."""


def sha256_files(paths) -> str:
    """One sha256 over the files' bytes, in order."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_files([path])


def describe_files(folder: Path) -> dict[str, dict]:
    """Size and sha256 of every file below `folder` (but the manifest), by relative path."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel != MANIFEST:
            files[rel] = {"size": path.stat().st_size, "sha256": sha256_file(path)}
    return files


def read_manifest(folder: Path) -> dict:
    path = Path(folder) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise ModelIntegrityError(
            f"{folder} has no {MANIFEST}: it was not built or is incomplete"
        ) from e
    except (OSError, json.JSONDecodeError) as e:
        raise ModelIntegrityError(f"{path} is unreadable: {e}") from e
    if manifest.get("format") != MANIFEST_FORMAT or "files" not in manifest:
        raise ModelIntegrityError(f"{path} is not a manifest this version understands")
    return manifest


def verify_folder(
    folder: Path, *, subfolders: tuple[str, ...] = (), checksums: bool = True
) -> dict:
    """Check every listed file (optionally only those in `subfolders`); return the manifest.

    Raises ModelIntegrityError naming the first file that is missing, of the wrong size or
    (with `checksums`) altered, or a file with a weight format that could run code.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    for rel, expected in manifest["files"].items():
        if subfolders and rel.split("/", 1)[0] not in subfolders:
            continue
        path = folder / rel
        if not path.is_file():
            raise ModelIntegrityError(f"{rel} is missing from {folder}")
        size = path.stat().st_size
        if size != expected["size"]:
            raise ModelIntegrityError(
                f"{rel} in {folder} has {size} bytes, its manifest says {expected['size']} "
                "(truncated or altered)"
            )
        if checksums and sha256_file(path) != expected["sha256"]:
            raise ModelIntegrityError(
                f"{rel} in {folder} does not match its manifest checksum (altered)"
            )
    for sub in subfolders or {rel.split("/", 1)[0] for rel in manifest["files"]}:
        for path in (folder / sub).glob("*"):
            safe = path.name.endswith(SAFE_WEIGHT_SUFFIXES) or (
                sub == CT2_DIR and path.name in SAFE_FILE_NAMES
            )
            if path.is_file() and not safe:
                raise ModelIntegrityError(
                    f"{path.relative_to(folder)} is not a safetensors, ONNX or JSON file; "
                    "pickled weights are never loaded"
                )
    return manifest
