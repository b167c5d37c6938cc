"""Fetching built model folders from the Hub (fetch.py), WHISPER_MODELS, and
scripts/upload_model.py, offline: only the network call (`snapshot_download`, `HfApi`'s
upload) is replaced, by one that copies a local built folder, as the Hub import's test does.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from whisper_quant import fetch
from whisper_quant.fetch import ModelEntry, ModelFetchError, fetch_model, parse_models
from whisper_quant.manifest import describe_files, verify_folder
from whisper_quant.service import StudioSwitcher
from whisper_quant.settings import Settings, SettingsError

ROOT = Path(__file__).resolve().parent.parent
UPLOAD = ROOT / "scripts" / "upload_model.py"


def make_built_folder(folder: Path) -> Path:
    """A small folder laid out as a build is, with a manifest of its files' sizes and sha256."""
    files = {
        "original/config.json": b'{"vocab_size": 51866}',
        "original/model.safetensors": bytes(range(256)) * 64,
        "quantized/encoder_model.onnx": b"onnx" * 1000,
        "quantized/tokenizer.json": b"{}",
        "ct2/model.bin": b"ct2" * 100,
    }
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    manifest = {"format": 1, "model": folder.name, "files": describe_files(folder)}
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture
def repo(tmp_path) -> Path:
    """What a Hub repository holds after scripts/upload_model.py: a built folder."""
    return make_built_folder(tmp_path / "hub" / "someone--large-v3")


@pytest.fixture
def hub(monkeypatch):
    """`snapshot_download` replaced by a copy of a local folder into `local_dir`, as the Hub
    writes it (its metadata in local_dir/.cache/huggingface); records every call."""
    import huggingface_hub
    import huggingface_hub.constants

    calls: list[dict] = []
    repos: dict[str, Path] = {}

    def snapshot_download(repo_id, *, local_dir, **kwargs):
        calls.append({"repo_id": repo_id, "local_dir": Path(local_dir), **kwargs})
        if repo_id not in repos:
            raise OSError(f"Repository Not Found for url: https://huggingface.co/{repo_id}")
        shutil.copytree(repos[repo_id], local_dir, dirs_exist_ok=True)
        metadata = Path(local_dir) / ".cache" / "huggingface"
        metadata.mkdir(parents=True, exist_ok=True)
        (metadata / "download.lock").write_text("")
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    monkeypatch.delenv("HF_HUB_ETAG_TIMEOUT", raising=False)
    return calls, repos


def leftovers(models_dir: Path) -> list[str]:
    return sorted(p.name for p in models_dir.iterdir() if p.name.startswith(".fetch"))


# --- fetching -----------------------------------------------------------------------------


def test_fetch_downloads_checks_and_moves_into_place(repo, hub, tmp_path):
    calls, repos = hub
    repos["someone/whisper-large-v3"] = repo
    models = tmp_path / "models"
    folder = fetch_model("large-v3", "someone/whisper-large-v3", models)
    assert folder == models / "large-v3"
    manifest = verify_folder(folder)  # every file, checksums included
    assert set(manifest["files"]) == set(json.loads((repo / "manifest.json").read_text())["files"])
    assert not (folder / ".cache").exists()  # the Hub's metadata is not part of the build
    assert leftovers(models) == []
    (call,) = calls
    assert call["repo_id"] == "someone/whisper-large-v3" and call["repo_type"] == "model"
    # Only the formats a build holds are fetched: never pickled weights.
    assert not any(p.endswith((".pt", ".pth", ".pkl", "*.bin")) for p in call["allow_patterns"])
    # A second call finds the folder and fetches nothing.
    assert fetch_model("large-v3", "someone/whisper-large-v3", models) == folder
    assert len(calls) == 1


def test_a_folder_that_does_not_match_its_manifest_is_refused(repo, hub, tmp_path):
    _, repos = hub
    data = bytearray((repo / "original/model.safetensors").read_bytes())
    data[100] ^= 0xFF  # same size, altered byte
    (repo / "original/model.safetensors").write_bytes(bytes(data))
    repos["someone/whisper-large-v3"] = repo
    models = tmp_path / "models"
    with pytest.raises(ModelFetchError) as caught:
        fetch_model("large-v3", "someone/whisper-large-v3", models)
    message = str(caught.value)
    assert message.startswith("Refused large-v3 from someone/whisper-large-v3")
    assert "original/model.safetensors" in message and "checksum" in message
    assert "Nothing was kept" in message and "upload_model.py" in message
    assert not (models / "large-v3").exists() and leftovers(models) == []


def test_a_truncated_download_is_refused(repo, hub, tmp_path):
    _, repos = hub
    (repo / "quantized/encoder_model.onnx").write_bytes(b"onnx")
    repos["someone/m"] = repo
    with pytest.raises(ModelFetchError, match="truncated"):
        fetch_model("m", "someone/m", tmp_path)
    assert not (tmp_path / "m").exists()


def test_files_the_manifest_does_not_list_are_not_kept(repo, hub, tmp_path):
    _, repos = hub
    (repo / "notes.txt").write_text("not part of the build")
    (repo / "extra").mkdir()
    (repo / "extra" / "config.json").write_text("{}")
    repos["someone/m"] = repo
    folder = fetch_model("m", "someone/m", tmp_path)
    assert not (folder / "notes.txt").exists() and not (folder / "extra").exists()
    verify_folder(folder)


def test_an_unknown_repository_says_what_to_check(hub, tmp_path):
    with pytest.raises(ModelFetchError) as caught:
        fetch_model("m", "someone/missing", tmp_path)
    message = str(caught.value)
    assert "someone/missing" in message and "Repository Not Found" in message
    assert "HF_TOKEN" in message and "upload_model.py" in message
    assert list(tmp_path.iterdir()) == []


def test_offline_fails_fast_without_a_network_call(monkeypatch, tmp_path):
    import huggingface_hub
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", pytest.fail)
    with pytest.raises(ModelFetchError, match="HF_HUB_OFFLINE"):
        fetch_model("m", "someone/m", tmp_path)


# --- WHISPER_MODELS -----------------------------------------------------------------------


def test_models_setting_entries():
    assert parse_models(" tiny.en , large-v3=someone/whisper-large-v3,") == (
        ModelEntry("tiny.en"),
        ModelEntry("large-v3", "someone/whisper-large-v3"),
    )
    for bad, message in (
        ("../x", "folder name"),
        ("a=notarepo", "owner/name"),
        ("a,a=o/r", "twice"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_models(bad)


def test_settings_read_the_models_and_default_to_the_first():
    settings = Settings.from_env({"WHISPER_MODELS": "large-v3=someone/l3,tiny.en"})
    assert [str(e) for e in settings.models] == ["large-v3=someone/l3", "tiny.en"]
    assert settings.default_model == "large-v3"
    assert settings.model_repos == {"large-v3": "someone/l3"}
    assert Settings.from_env({}).models == () and Settings.from_env({}).model_repos == {}
    both = {"WHISPER_MODELS": "large-v3=someone/l3,tiny.en", "WHISPER_DEFAULT_MODEL": "tiny.en"}
    assert Settings.from_env(both).default_model == "tiny.en"
    with pytest.raises(SettingsError, match="WHISPER_DEFAULT_MODEL=base is not among"):
        Settings.from_env({**both, "WHISPER_DEFAULT_MODEL": "base"})
    with pytest.raises(SettingsError, match="WHISPER_MODELS: 'x=y'"):
        Settings.from_env({"WHISPER_MODELS": "x=y"})


def test_the_app_offers_the_listed_models_and_fetches_missing_ones_at_start(repo, hub, tmp_path):
    calls, repos = hub
    repos["someone/l3"] = repo
    models = tmp_path / "models"
    make_built_folder(models / "tiny.en")  # already there: nothing to fetch
    make_built_folder(models / "unlisted")  # built, but not offered
    settings = Settings.from_env(
        {
            "WHISPER_MODELS_DIR": str(models),
            "WHISPER_MODELS": "tiny.en,large-v3=someone/l3,broken=someone/missing",
            "WHISPER_DEFAULT_MODEL": "tiny.en",
        }
    )
    pool = StudioSwitcher(settings)
    assert pool.models() == ["tiny.en", "large-v3", "broken"]
    # A failure of a model other than the default is logged, not raised: the app still starts.
    assert pool.fetch_missing() == ["large-v3"]
    verify_folder(models / "large-v3")
    assert [c["repo_id"] for c in calls] == ["someone/l3", "someone/missing"]
    assert not (models / "broken").exists() and leftovers(models) == []
    assert pool.fetch_missing() == []  # nothing new is fetched on a second start
    assert len(calls) == 3  # only the broken one is tried again


def test_a_default_model_that_cannot_be_fetched_stops_the_start(hub, tmp_path):
    settings = Settings.from_env(
        {"WHISPER_MODELS_DIR": str(tmp_path), "WHISPER_MODELS": "big=someone/missing"}
    )
    with pytest.raises(ModelFetchError, match="someone/missing"):
        StudioSwitcher(settings).ensure_ready()


def test_a_missing_listed_model_is_fetched_on_first_use(repo, hub, tmp_path):
    _, repos = hub
    repos["someone/l3"] = repo
    settings = Settings.from_env(
        {"WHISPER_MODELS_DIR": str(tmp_path), "WHISPER_MODELS": "tiny.en,large-v3=someone/l3"}
    )
    StudioSwitcher(settings)._ensure_built("large-v3", lambda fraction, message: None)
    verify_folder(tmp_path / "large-v3")


# --- scripts/upload_model.py --------------------------------------------------------------


def run_upload(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(UPLOAD), *args], capture_output=True, text=True, timeout=120
    )


def test_upload_dry_run_lists_the_files_and_checks_the_manifest(repo):
    done = run_upload(str(repo), "--repo-id", "someone/l3", "--dry-run")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    manifest = json.loads((repo / "manifest.json").read_text())
    for rel, entry in manifest["files"].items():
        assert f"{entry['size'] / 2**20:12,.1f} MiB  {rel}" in lines, rel
    assert any(line.endswith("MiB  manifest.json") for line in lines)
    assert f"in {len(manifest['files']) + 1} files, checked against manifest.json" in done.stdout
    assert "dry run: nothing uploaded to someone/l3" in done.stdout


def test_upload_refuses_a_folder_that_does_not_match(repo):
    (repo / "quantized/tokenizer.json").write_text('{"altered": true}')
    done = run_upload(str(repo), "--repo-id", "someone/l3", "--dry-run")
    assert done.returncode == 1
    assert "quantized/tokenizer.json" in done.stderr and "Rebuild" in done.stderr
    assert run_upload(str(repo), "--repo-id", "not-a-repo", "--dry-run").returncode == 2


def test_upload_sends_only_the_checked_files(repo, monkeypatch, capsys):
    """Without --dry-run: create the repo, upload the manifest's files (HfApi's network calls
    recorded instead of made)."""
    import huggingface_hub

    spec = importlib.util.spec_from_file_location("upload_model", UPLOAD)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    calls = []
    monkeypatch.setattr(
        huggingface_hub.HfApi, "create_repo", lambda self, *a, **k: calls.append(("create", a, k))
    )
    monkeypatch.setattr(
        huggingface_hub.HfApi, "upload_folder", lambda self, **k: calls.append(("upload", k))
    )
    (repo / "stray.bin").write_bytes(b"not in the manifest")
    assert script.main([str(repo), "--repo-id", "someone/l3", "--private"]) == 0
    (_, args, create), (_, upload) = calls
    assert args == ("someone/l3",) and create["private"] and create["exist_ok"]
    assert upload["repo_id"] == "someone/l3" and upload["folder_path"] == repo
    manifest = json.loads((repo / "manifest.json").read_text())
    assert sorted(upload["allow_patterns"]) == sorted([*manifest["files"], "manifest.json"])
    assert "WHISPER_MODELS=someone--large-v3=someone/l3" in capsys.readouterr().out


def test_fetch_module_needs_no_network_libraries_at_import():
    # settings.py imports fetch.py; the app process must not pay for huggingface_hub there.
    assert "huggingface_hub" not in fetch.__dict__
