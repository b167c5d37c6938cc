"""Start `python app.py` for the UI tests (see whisper_quant.launch), isolated from the
developer's own settings and from the network, and show its log when it stops.

Each launch costs an app start plus a load and warm-up of every engine worker, so the API,
hardening and browser tests share one app (conftest's `studio_app`, with the settings
below); only tests that need other settings (a damaged model, a queue of one, a short time
limit) launch their own.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from whisper_quant.launch import listening_pid, log_tail, started_app, wait_until_up

ROOT = Path(__file__).resolve().parents[1]

# The shared app's limits. The length limit is far under the default (10 minutes), so a
# refusal shows that the setting is read; it still admits an 11 s clip that keeps an engine
# busy. The upload limit admits a 48 kHz stereo float WAV of goforward.wav (1.1 MB).
MAX_SECONDS = 12
MAX_FILE_SIZE = "2mb"
MAX_FILE_SIZE_BYTES = 2 * 2**20  # what Gradio reads "2mb" as


@contextlib.contextmanager
def running_app(models_dir: Path, log_path: Path, **env: str) -> Iterator[str]:
    """Run app.py on a free local port with WHISPER_MODELS_DIR=models_dir; yield its URL."""
    with starting(models_dir, log_path, **env) as ready:
        yield ready().url


@contextlib.contextmanager
def starting(models_dir: Path, log_path: Path, **env: str) -> Iterator[Callable[[], LaunchedApp]]:
    """Start app.py on a free local port with WHISPER_MODELS_DIR=models_dir and an unbuffered
    log, and yield at once a function that waits until it serves and returns the
    LaunchedApp: its start-up can overlap other work. Its log is shown when it stops."""
    base = {key: value for key, value in os.environ.items() if not key.startswith("WHISPER_")}
    try:
        with started_app(
            ROOT / "app.py",
            log_path,
            base_env=base,
            WHISPER_MODELS_DIR=str(models_dir),
            HF_HUB_OFFLINE="1",
            PYTHONUNBUFFERED="1",
            **env,
        ) as (process, url):

            def ready() -> LaunchedApp:
                wait_until_up(url, process, log_path)
                pid = listening_pid(url)
                if pid is None:
                    raise RuntimeError(f"nothing listens at {url}")
                return LaunchedApp(url, log_path, pid)

            yield ready
    finally:
        print(f"app log ({log_path}):\n{log_tail(log_path)}")


@dataclass(frozen=True)
class LaunchedApp:
    """A running app: its URL, its log (unbuffered) and the pid of its server process."""

    url: str
    log: Path
    pid: int

    def log_size(self) -> int:
        return self.log.stat().st_size

    def log_since(self, offset: int) -> str:
        with open(self.log, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")

    def engine_workers(self) -> list[psutil.Process]:
        """The app's engine workers, one per engine: the children of its workers' fork server
        (workers.py), which is the app's child."""
        servers = [
            p for p in psutil.Process(self.pid).children() if "forkserver" in " ".join(cmd(p))
        ]
        return [worker for server in servers for worker in server.children()]


def cmd(process: psutil.Process) -> list[str]:
    try:
        return process.cmdline()
    except psutil.Error:
        return []


@contextlib.contextmanager
def launched(models_dir: Path, log: Path, **env: str) -> Iterator[LaunchedApp]:
    """`starting`, waited for: the app serving, as a LaunchedApp."""
    with starting(models_dir, log, **env) as ready:
        yield ready()
