"""Upload a built model folder to a Hugging Face Hub model repository, for the app to fetch.

Build a model where there is memory enough (`python build_model.py --model large-v3`), then:

    python scripts/upload_model.py models/large-v3 --repo-id you/whisper-large-v3-studio
    python scripts/upload_model.py models/large-v3 --repo-id you/whisper-large-v3-studio --dry-run

The folder is checked against its manifest first (every file's size and sha256, no pickled
weights), and only the manifest and the files it lists are uploaded, with
`huggingface_hub.HfApi.upload_folder`. `--dry-run` does the check and lists the files and
their sizes without touching the network. The app then fetches it with
WHISPER_MODELS=large-v3=you/whisper-large-v3-studio (README, "Bigger models"). Log in first
(`huggingface-cli login`, or HF_TOKEN in the environment).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.fetch import REPO_ID  # noqa: E402
from whisper_quant.layout import MANIFEST  # noqa: E402
from whisper_quant.manifest import ModelIntegrityError, verify_folder  # noqa: E402

MIB = 2**20


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="upload_model.py",
        description="Check a built model folder against its manifest and upload it to a "
        "Hugging Face Hub model repository.",
    )
    p.add_argument("folder", type=Path, help="a built model folder (holding manifest.json)")
    p.add_argument("--repo-id", required=True, help="the Hub model repository, owner/name")
    p.add_argument("--private", action="store_true", help="create the repository as private")
    p.add_argument("--revision", help="branch to upload to (default: main)")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="check the folder and list what would be uploaded; no network",
    )
    return p


def upload_plan(folder: Path) -> list[tuple[str, int]]:
    """The files to upload (the manifest and every file it lists) with their sizes, after
    checking the folder against the manifest; ModelIntegrityError when it does not match."""
    manifest = verify_folder(folder, checksums=True)
    files = [(MANIFEST, (folder / MANIFEST).stat().st_size)]
    files += [(rel, entry["size"]) for rel, entry in sorted(manifest["files"].items())]
    return files


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    folder = args.folder.expanduser()
    if not REPO_ID.match(args.repo_id):
        print(f"error: --repo-id must be owner/name, got {args.repo_id!r}", file=sys.stderr)
        return 2
    try:
        files = upload_plan(folder)
    except ModelIntegrityError as e:
        print(f"error: {e}. Rebuild the folder before uploading it.", file=sys.stderr)
        return 1
    total = sum(size for _, size in files)
    for rel, size in files:
        print(f"{size / MIB:12,.1f} MiB  {rel}")
    print(f"{total / MIB:12,.1f} MiB  in {len(files)} files, checked against {MANIFEST}")
    if args.dry_run:
        print(f"dry run: nothing uploaded to {args.repo_id}")
        return 0

    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(args.repo_id, repo_type="model", private=args.private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=args.repo_id,
        repo_type="model",
        folder_path=folder,
        revision=args.revision,
        allow_patterns=[rel for rel, _ in files],
        commit_message=f"Upload the built {folder.name} ({len(files)} files, checked)",
    )
    print(f"uploaded to {getattr(commit, 'commit_url', args.repo_id)}")
    print(f"fetch it in the app with: WHISPER_MODELS={folder.name}={args.repo_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
