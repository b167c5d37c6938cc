"""Run each engine in its own worker process, so its memory is its own and a crash is contained.

A worker is forked from a fork server that has imported every engine's libraries once (a
worker asking for another thread count than the server's is spawned and imports its own). It
says when its libraries are in (`Prepared`); told to `Load`, it notes its resident memory,
loads the model, runs one warm-up transcription and notes its memory again: the difference is
what the model holds, and no other model's allocations can be counted in it. `start_workers`
lets several workers get ready at once, then loads them one after the other with the others
idle, so each worker's load and warm-up times are taken on a quiet machine as when they start
alone. Each transcription then reports the peak extra memory it needed. If a worker dies
(killed, out of memory) the request fails with a clear message and the worker is started
again by the next request.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import site
import sys
import threading
import time
import traceback
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from multiprocessing import forkserver
from pathlib import Path

import numpy as np
import psutil

from .engines import (
    DEFAULT_THREADS,
    Engine,
    EngineError,
    TranscribeOptions,
    Transcription,
    engine_class,
    with_memory,
)
from .measure import KERNEL_METHOD, MEMORY_METHOD

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
DEFAULT_REQUEST_TIMEOUT_S = 600.0
# A warm-up clip shipped with the package: 2.8 s of read English speech (pocketsphinx, BSD).
WARMUP_CLIP = "warmup.wav"
# The warm-up decodes at temperature 0 and at most this many tokens per window. A real model
# says the clip's dozen tokens and stops, unaffected; random weights (synthetic builds) would
# decode 448 tokens at each of six temperatures, minutes at large sizes, past START_TIMEOUT_S.
WARMUP_MAX_TOKENS = 64


class EngineCrashedError(EngineError):
    """The engine's worker process died while working; it restarts on the next request."""


class EngineTimeoutError(EngineError):
    """A request took longer than the per-request limit; the worker was stopped."""


@dataclass(frozen=True)
class LoadReport:
    """What starting one engine's worker measured, and what the engine runs."""

    engine: str
    label: str
    folder: str
    threads: int
    pid: int
    baseline_bytes: int  # RSS after importing the libraries, before loading the model
    total_bytes: int  # RSS after loading + one warm-up transcription
    weights_bytes: int  # size on disk of the weight files the engine loaded
    load_s: float
    warmup_s: float
    languages: tuple[str, ...] = ()
    # What ran (Engine.runtime_details): fused attention, graph changes, session options.
    runtime: dict = field(default_factory=dict)
    memory_method: str = MEMORY_METHOD
    peak_method: str = KERNEL_METHOD

    @property
    def held_bytes(self) -> int:
        """Memory held by the model: total RSS minus the baseline."""
        return self.total_bytes - self.baseline_bytes


# --- messages between a worker and its parent (one pipe, one message at a time) ---------


@dataclass(frozen=True)
class Prepared:
    """The worker imported its libraries and ran the shared front end; it waits for Load."""


@dataclass(frozen=True)
class Load:
    """Load the model now (the parent's other workers are idle)."""


@dataclass(frozen=True)
class Ready:
    report: LoadReport


@dataclass(frozen=True)
class LoadFailed:
    error_type: str
    message: str
    traceback: str


@dataclass(frozen=True)
class TranscribeRequest:
    audio: np.ndarray
    options: TranscribeOptions


@dataclass(frozen=True)
class Close:
    pass


@dataclass(frozen=True)
class WindowStarted:
    """Sent while transcribing, before each 30 s window."""

    window: int
    seek_s: float
    total_s: float


@dataclass(frozen=True)
class Done:
    result: Transcription


@dataclass(frozen=True)
class Failed:
    message: str
    bad_input: bool  # the input or options were at fault (ValueError), not the engine


def warmup_audio() -> np.ndarray:
    from .audio import decode_audio

    with resources.as_file(resources.files("whisper_quant") / "assets" / WARMUP_CLIP) as path:
        return decode_audio(path)


def _thread_variables(threads: int) -> dict[str, str]:
    # Read once, when the numerical libraries load, so every pool they create has this size.
    return {
        var: str(threads) for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    }


def _rss() -> int:
    """RSS after a garbage collection and returning freed heap (see measure.py)."""
    from .measure import release_free_memory, rss_bytes

    gc.collect()
    release_free_memory()
    return rss_bytes()


def _serve(conn, cls: type[Engine], model_dir: str, threads: int) -> None:
    """The worker process: load, warm up, report, then answer requests until told to stop."""
    # A spawned worker loads its libraries after this; a forked one inherited the server's,
    # which loaded them with the same variables (`_worker_context`).
    os.environ.update(_thread_variables(threads))
    # transformers warns on every generate call about settings the engine chose on purpose.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    try:
        from .measure import PeakTracker

        engine_name = cls.name
        cls.preload()
        import transformers.models.whisper.feature_extraction_whisper  # noqa: F401

        audio = warmup_audio()
        engine = cls(model_dir, threads=threads)
        engine.prepare()
        engine.initialise_runtime()
        engine.warm_shared(audio)
        conn.send(Prepared())
        try:
            go = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if not isinstance(go, Load):  # Close: the parent gave up on this start
            return
        baseline = _rss()
        started = time.perf_counter()
        engine.load()
        loaded = time.perf_counter()
        engine.transcribe(audio, temperatures=(0.0,), max_new_tokens=WARMUP_MAX_TOKENS)
        warmed = time.perf_counter()
        report = LoadReport(
            engine=engine_name,
            label=cls.label,
            folder=str(engine.folder),
            threads=threads,
            pid=os.getpid(),
            baseline_bytes=baseline,
            total_bytes=_rss(),
            weights_bytes=engine.disk_bytes(),
            load_s=loaded - started,
            warmup_s=warmed - loaded,
            languages=tuple(engine.languages),
            runtime=engine.runtime_details(),
        )
        # What is loaded now lives as long as the worker: the collection before each request
        # need not walk it again (the original's torch and transformers objects took 145 ms
        # per request to walk here, 0 ms frozen). Garbage made by requests is still collected.
        gc.freeze()
        conn.send(Ready(report))
    except Exception as e:  # noqa: BLE001 - reported to the parent, which raises it
        conn.send(LoadFailed(type(e).__name__, str(e), traceback.format_exc()))
        return

    while True:
        try:
            message = conn.recv()
        except (EOFError, KeyboardInterrupt):
            return
        if isinstance(message, Close):
            return
        try:
            _rss()  # the same starting state for every request's peak
            with PeakTracker() as tracker:
                result = engine.transcribe(
                    message.audio,
                    message.options,
                    progress=lambda w, seek, total: conn.send(WindowStarted(w, seek, total)),
                )
            reply = Done(with_memory(result, tracker.peak_extra_bytes))
        except (ValueError, EngineError) as e:
            reply = Failed(str(e), bad_input=isinstance(e, ValueError))
        except Exception as e:  # noqa: BLE001 - the worker keeps serving
            logger.exception("%s failed", engine_name)
            reply = Failed(f"{type(e).__name__}: {e}", bad_input=False)
        try:
            conn.send(reply)
        except OSError:  # the parent gave up on this request (time-out) and left
            return


# The module the fork server imports before it forks any worker (see worker_preload.py).
WORKER_PRELOAD = "whisper_quant.worker_preload"
_FORK_SERVER_LOCK = threading.Lock()
_fork_server_threads: int | None = None  # the thread count the running server was started for


def _worker_context(threads: int):
    """Workers are forked from one fork server per parent process that has imported every
    engine's libraries once, instead of each importing them again (3-4 s of one core per
    worker, every start and restart). The server is a fresh process started for this, so a
    fork from it copies none of the parent's threads (Gradio's, a test runner's) or state.

    The libraries size their thread pools when they load, from the server's environment, so
    the server is started with the first worker's thread count; a worker asking for another
    count is spawned and imports its own, as every worker did before the server. Forked
    workers inherit the environment the server started with, not the parent's current one.
    """
    global _fork_server_threads
    with _FORK_SERVER_LOCK:
        if _fork_server_threads not in (None, threads):
            return mp.get_context("spawn")
        context = mp.get_context("forkserver")
        context.set_forkserver_preload([WORKER_PRELOAD])
        if not _fork_server_running():
            with _environment(**_server_variables(threads)):
                forkserver.ensure_running()
        _fork_server_threads = threads
    return context


def _server_variables(threads: int) -> dict[str, str]:
    """The fork server's environment: the thread counts, and this package's folder on
    PYTHONPATH. Python 3.11's fork server ignores the sys.path it is given, and the package
    may be importable only through a path the parent added (app.py, pytest): without it the
    preload would fail unnoticed. An installed package's folder is on every path already."""
    variables = _thread_variables(threads)
    package_parent = str(Path(__file__).resolve().parents[1])
    if package_parent not in site.getsitepackages():
        previous = os.environ.get("PYTHONPATH")
        variables["PYTHONPATH"] = os.pathsep.join(filter(None, [package_parent, previous]))
    return variables


def _fork_server_running() -> bool:
    """Whether this process's fork server is up (multiprocessing keeps its pid in a private
    attribute; a server that died is started again, with `_server_variables`)."""
    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if pid is None:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def start_fork_server(threads: int) -> None:
    """Start the workers' fork server now, without waiting: it imports the engines'
    libraries in the background (while a first start builds or fetches the model, or while a
    damaged model waits for its repair), so the first worker need not wait for them."""
    _worker_context(threads)


@contextmanager
def _environment(**variables: str):
    """These environment variables set for a process started inside, then restored."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _main_script_hidden():
    """Keep multiprocessing from re-running the parent's main script in the worker.

    multiprocessing re-runs `__main__`'s file in each spawned or fork-server child so that pickled
    functions defined there resolve; the worker's target lives in this module, and the main
    script may be a whole Gradio app (tens of MiB and seconds of start-up per worker).
    """
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or getattr(main, "__spec__", None) is not None:
        yield
        return
    del main.__file__
    try:
        yield
    finally:
        main.__file__ = path


class EngineWorker:
    """A handle on one engine in its own process. Calls are serialised: one request at a time."""

    def __init__(
        self,
        engine: str | type[Engine],
        model_dir: Path | str,
        *,
        threads: int = DEFAULT_THREADS,
        request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S,
    ):
        # Unknown names fail here, in the caller. A class (importable by the worker process)
        # may be given instead of a registered name.
        self.engine_class = engine_class(engine) if isinstance(engine, str) else engine
        self.engine = self.engine_class.name
        self.model_dir = Path(model_dir)
        self.threads = threads
        self.request_timeout_s = request_timeout_s
        self.report: LoadReport | None = None
        self.restarts = 0
        self._process = None
        self._conn = None
        self._lock = threading.Lock()

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> LoadReport:
        with self._lock:
            return self._start()

    def _start(self) -> LoadReport:
        self._spawn()
        self._await_prepared()
        return self._load()

    # start() in three steps, for start_workers: start every worker, wait until each has its
    # libraries in, then load them one at a time.
    def spawn(self) -> None:
        with self._lock:
            self._spawn()

    def wait_prepared(self) -> None:
        with self._lock:
            self._await_prepared()

    def load(self) -> LoadReport:
        with self._lock:
            return self._load()

    def _spawn(self) -> None:
        """Start the process (forked, once the fork server has its libraries in; or spawned,
        importing them while the caller goes on)."""
        self._stop()
        context = _worker_context(self.threads)
        parent, child = context.Pipe()
        process = context.Process(
            target=_serve,
            args=(child, self.engine_class, str(self.model_dir), self.threads),
            name=f"engine-{self.engine}",
            daemon=True,
        )
        try:
            with _main_script_hidden():
                process.start()
        except (EOFError, OSError) as e:  # the fork server died or could not start
            parent.close()
            child.close()
            raise EngineError(
                f"The {self.engine} engine's worker could not be started by the workers' "
                f"fork server: {type(e).__name__}: {e}"
            ) from e
        child.close()
        self._process, self._conn = process, parent

    def _await_start_message(self):
        """The worker's next message while starting: Prepared or Ready, else EngineError."""
        process, parent = self._process, self._conn
        if not parent.poll(START_TIMEOUT_S):
            self._stop()
            raise EngineError(
                f"The {self.engine} engine did not start within {START_TIMEOUT_S:.0f} s"
            )
        try:
            message = parent.recv()
        except EOFError as e:
            code = process.exitcode
            self._stop()
            raise EngineCrashedError(
                f"The {self.engine} engine's worker died while loading (exit code {code})"
            ) from e
        if isinstance(message, LoadFailed):
            self._stop()
            logger.debug("%s worker traceback:\n%s", self.engine, message.traceback)
            raise EngineError(f"The {self.engine} engine could not load: {message.message}")
        return message

    def _await_prepared(self) -> None:
        self._await_start_message()

    def _load(self) -> LoadReport:
        """Tell the prepared worker to load, measure and warm up; its report."""
        self._conn.send(Load())
        message = self._await_start_message()
        self.report = message.report
        logger.info(
            "%s ready in %.1f s (pid %s, holds %.0f MiB)",
            self.engine,
            self.report.load_s + self.report.warmup_s,
            self.report.pid,
            self.report.held_bytes / 2**20,
        )
        return self.report

    @property
    def languages(self) -> tuple[str, ...]:
        return self.report.languages if self.report is not None else ()

    def transcribe(
        self,
        audio: np.ndarray,
        options: TranscribeOptions | None = None,
        *,
        deadline: float | None = None,
        on_window: Callable[[WindowStarted], None] | None = None,
    ) -> Transcription:
        """Transcribe in the worker; restarts a dead worker first.

        The worker is stopped if it has not answered within `request_timeout_s`, or by
        `deadline` (a `time.monotonic()` value) when one is given: a request's engines then
        share one limit.
        """
        with self._lock:
            self._ensure_alive()
            wait = self.request_timeout_s
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0:  # spent by the engines before this one: do not start it
                    raise EngineTimeoutError(
                        f"The request took longer than the {self.request_timeout_s:g} s limit "
                        f"before the {self.engine} engine's turn"
                    )
            request = TranscribeRequest(
                np.asarray(audio, np.float32), options or TranscribeOptions()
            )
            self._conn.send(request)
            ends = None if wait is None else time.monotonic() + wait
            while True:
                message = self._receive(ends)
                if not isinstance(message, WindowStarted):
                    break
                if on_window is not None:
                    on_window(message)
        if isinstance(message, Done):
            return message.result
        raise ValueError(message.message) if message.bad_input else EngineError(message.message)

    def _ensure_alive(self) -> None:
        if self.alive:
            return
        self._count_restart()
        self._start()

    def _count_restart(self) -> None:
        if self._process is not None:
            self.restarts += 1
            logger.warning("restarting the %s engine", self.engine)

    def _receive(self, ends: float | None):
        """The worker's next message, or EngineTimeoutError at `ends` (monotonic time)."""
        wait = None if ends is None else max(0.0, ends - time.monotonic())
        if not self._conn.poll(wait):
            # Killed at once: a graceful stop would let it finish into a closed pipe.
            self._stop(kill=True)
            raise EngineTimeoutError(
                f"The request took longer than the {self.request_timeout_s:g} s limit "
                f"(stopped in the {self.engine} engine); that engine restarts on the next "
                "request"
            )
        try:
            return self._conn.recv()
        except (EOFError, ConnectionError) as e:
            # Keep the dead process object: `alive` is now false, so the next call restarts.
            self._process.join(timeout=2)
            code = self._process.exitcode
            raise EngineCrashedError(
                f"The {self.engine} engine stopped while transcribing (exit code {code}, "
                "e.g. killed or out of memory); it restarts on the next request"
            ) from e

    def _stop(self, *, kill: bool = False) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        if kill and process is not None and process.is_alive():
            process.kill()
        if conn is not None:
            try:
                conn.send(Close())
            except (OSError, ValueError):
                pass
            conn.close()
        if process is not None:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)

    def close(self) -> None:
        with self._lock:
            self._stop()

    def kill(self) -> None:
        """Kill the process now, without waiting for a request in flight: that request ends
        with EngineCrashedError. For the app's exit; `close` still tidies up afterwards."""
        process = self._process
        if process is not None and process.is_alive():
            process.kill()

    def __enter__(self) -> EngineWorker:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_workers(
    workers: list[EngineWorker], on_load: Callable[[str], None] | None = None
) -> list[LoadReport]:
    """Start `workers` together: every process gets its libraries in at once, then each loads
    and warms up in turn while the others wait, so load times and memory are measured as when
    a worker starts alone. `on_load(engine)` is called before each load. On a failure the
    workers not yet loaded are stopped (those loaded keep serving, as when started one by
    one) and the error raised."""
    reports: list[LoadReport] = []
    try:
        for worker in workers:
            worker.spawn()
        for worker in workers:
            worker.wait_prepared()
        for worker in workers:
            if on_load:
                on_load(worker.engine)
            reports.append(worker.load())
        return reports
    except BaseException:
        for worker in workers[len(reports) :]:
            worker.close()
        raise


def ensure_alive_together(workers: list[EngineWorker]) -> None:
    """Restart every worker of `workers` that died (stopped at a time limit, killed), the dead
    ones together as start_workers starts them."""
    dead = [worker for worker in workers if not worker.alive]
    for worker in dead:
        with worker._lock:
            worker._count_restart()
    if dead:
        start_workers(dead)
