"""Run `python app.py` in a subprocess, the way a Space starts it, and find a running one.

Used by the UI tests and by `scripts/soak.py`. The app is ready once it answers HTTP: it
loads and warms up its engines before it listens. Nothing here imports Gradio.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

START_TIMEOUT_S = 300.0
STOP_TIMEOUT_S = 30.0
LOCAL_HOSTS = ("127.0.0.1", "localhost", "0.0.0.0", "::1")


class AppStartError(RuntimeError):
    """app.py exited or did not answer in time; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def listening_pid(url: str) -> int | None:
    """The pid listening on the URL's port, when the server runs on this machine."""
    import psutil

    parts = urlsplit(url)
    if parts.hostname not in LOCAL_HOSTS:
        return None
    port = parts.port or (443 if parts.scheme == "https" else 80)
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections(kind="tcp"):
            if connection.laddr.port == port and connection.status == psutil.CONN_LISTEN:
                return connection.pid
    return None


@contextlib.contextmanager
def running_app(
    app_py: Path,
    log_path: Path,
    *,
    base_env: Mapping[str, str] | None = None,
    **env: str,
) -> Iterator[str]:
    """Run `app_py` on a free local port with `base_env` (default: this process's
    environment) plus `env`; yield its URL; stop it with Ctrl-C at the end."""
    with started_app(app_py, log_path, base_env=base_env, **env) as (process, url):
        wait_until_up(url, process, log_path)
        yield url


@contextlib.contextmanager
def started_app(
    app_py: Path,
    log_path: Path,
    *,
    base_env: Mapping[str, str] | None = None,
    **env: str,
) -> Iterator[tuple[subprocess.Popen, str]]:
    """`running_app`'s first half: start `app_py` and yield (its process, its URL) at once,
    before it answers (`wait_until_up` waits for that); stop it with Ctrl-C at the end."""
    port = free_port()
    environment = dict(os.environ if base_env is None else base_env)
    environment.update(
        GRADIO_SERVER_NAME="127.0.0.1",
        GRADIO_SERVER_PORT=str(port),
        GRADIO_ANALYTICS_ENABLED="False",
        **env,
    )
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(app_py)],
            cwd=app_py.parent,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process, f"http://127.0.0.1:{port}/"
    finally:
        _stop(process)


def wait_until_up(url: str, process: subprocess.Popen, log_path: Path) -> None:
    """Return once the app answers HTTP 200 at `url`; AppStartError if it exits or does not
    answer within START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AppStartError(
                f"app.py exited with code {process.returncode}:\n{log_tail(log_path)}"
            )
        with contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError):
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        time.sleep(0.5)
    raise AppStartError(
        f"app.py did not answer within {START_TIMEOUT_S:.0f} s:\n{log_tail(log_path)}"
    )


def _stop(process: subprocess.Popen) -> None:
    # Ctrl-C lets the app close its engine workers; kill only if it does not stop in time.
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
