"""Measurement primitives: resident memory, peak memory during a block, wall-clock timings.

Memory figures are for the calling process only: child processes, other processes and the
page cache are not counted. That is why each engine runs in its own worker process, where
"this process" means "this model".
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from types import TracebackType
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

MIB = 1 << 20

STATM_PATH = "/proc/self/statm"
STATUS_PATH = "/proc/self/status"
CLEAR_REFS_PATH = "/proc/self/clear_refs"
# Writing "5" to clear_refs resets the process's peak RSS (VmHWM) to its current RSS
# (Documentation/filesystems/proc.rst); unlike "1".."4" it leaves page flags alone.
CLEAR_REFS_RESET_PEAK = "5"

SAMPLE_INTERVAL_S = 0.002
KERNEL_METHOD = "VmHWM after clear_refs"
SAMPLED_METHOD = "RSS sampled every {interval_ms:g} ms"

DEFAULT_WARMUPS = 1
DEFAULT_REPEATS = 5

MEMORY_METHOD = (
    "Each engine runs in its own worker process; 'memory held' is that process's resident "
    "set size (RSS) after loading the model and one warm-up transcription, minus its RSS "
    "after importing the libraries, initialising the runtime with a one-operator model and "
    "loading the tokenizer and feature extractor and running them once on the warm-up clip "
    "(the same for every engine), before loading the model; freed heap is returned to the system "
    "(malloc_trim) before each reading, for every engine alike. 'Peak' is the highest RSS "
    "during a transcription minus the RSS just before it."
)

_VMHWM = re.compile(r"^VmHWM:\s+(\d+)\s+kB", re.MULTILINE)


def timing_method(repeats: int = DEFAULT_REPEATS, warmups: int = DEFAULT_WARMUPS) -> str:
    """Plain description of how timings are taken, for the UI and README."""
    runs = "run" if warmups == 1 else "runs"
    return (
        f"Wall-clock time (time.perf_counter) of one whole transcription of audio already "
        f"loaded in memory; median of {repeats} runs after {warmups} warm-up {runs}, with "
        f"every engine using the same number of CPU threads and the same decoding settings."
    )


TIMING_METHOD = timing_method()


def speedup(baseline_s: float | None, other_s: float | None) -> float | None:
    """How many times faster `other` is than `baseline` (above 1: faster); None if unknown."""
    if not baseline_s or not other_s:
        return None
    return baseline_s / other_s


def mib(n_bytes: float) -> float:
    """Bytes to mebibytes (2**20 bytes)."""
    return n_bytes / MIB


def release_free_memory() -> None:
    """Return freed heap pages to the system (glibc's malloc_trim), where that exists.

    Without it, RSS also counts memory an engine has already freed but the allocator keeps
    cached, which depends on the allocation pattern more than on the model. Called before
    every reading, for every engine alike.
    """
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass


@cache
def _libc():
    import ctypes
    import ctypes.util

    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes."""
    try:
        with open(STATM_PATH) as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * _page_size()
    except (OSError, ValueError, IndexError):
        return _psutil_process().memory_info().rss


@dataclass(frozen=True)
class MemoryPeak:
    """Resident memory of this process around a block, in bytes."""

    start_bytes: int
    peak_bytes: int
    end_bytes: int
    method: str

    @property
    def peak_extra_bytes(self) -> int:
        """Highest RSS during the block above the RSS at its start."""
        return max(0, self.peak_bytes - self.start_bytes)

    @property
    def retained_bytes(self) -> int:
        """RSS still held at the end of the block above the RSS at its start (may be < 0)."""
        return self.end_bytes - self.start_bytes


class PeakTracker:
    """Peak resident memory of this process during a ``with`` block, relative to its start.

    On Linux the kernel's own high-water mark is reset on entry and read on exit, so no
    spike is missed however short. Where /proc/self/clear_refs cannot be written (other
    kernels, some sandboxes), or with ``use_kernel=False``, a daemon thread samples RSS
    every ``interval_s`` instead; that can miss spikes shorter than the interval or made
    while a C extension holds the GIL. Memory of child processes is never included.

    Usage::

        with PeakTracker() as tracker:
            model.transcribe(audio)
        tracker.peak_extra_bytes, tracker.method
    """

    def __init__(self, *, use_kernel: bool = True, interval_s: float = SAMPLE_INTERVAL_S):
        self._use_kernel = use_kernel
        self._interval_s = interval_s
        self._method: str | None = None
        self._start = 0
        self._peak_before_reset = 0
        self._sampled_peak = 0
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        self._result: MemoryPeak | None = None

    @property
    def method(self) -> str:
        if self._method is None:
            raise RuntimeError("PeakTracker.method is known only once the block is entered")
        return self._method

    @property
    def result(self) -> MemoryPeak:
        if self._result is None:
            raise RuntimeError("PeakTracker results are available after the with block")
        return self._result

    @property
    def peak_extra_bytes(self) -> int:
        return self.result.peak_extra_bytes

    @property
    def retained_bytes(self) -> int:
        return self.result.retained_bytes

    def __enter__(self) -> PeakTracker:
        self._result = None
        if self._use_kernel and _reset_kernel_peak(self):
            self._method = KERNEL_METHOD
            self._start = rss_bytes()
            return self
        self._method = SAMPLED_METHOD.format(interval_ms=self._interval_s * 1000)
        self._start = rss_bytes()
        self._sampled_peak = self._start
        self._stop.clear()
        self._sampler = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._sampler.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        end = rss_bytes()
        if self._sampler is None:
            peak = _finish_kernel_peak(self)
        else:
            self._stop.set()
            self._sampler.join()
            self._sampler = None
            peak = self._sampled_peak
        self._result = MemoryPeak(
            start_bytes=self._start,
            peak_bytes=max(peak, self._start, end),
            end_bytes=end,
            method=self.method,
        )

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sampled_peak = max(self._sampled_peak, rss_bytes())
        self._sampled_peak = max(self._sampled_peak, rss_bytes())


# VmHWM is one counter per process, so a tracker that resets it would erase the peak seen so
# far by any tracker already running (nested blocks, other threads). Every reset first folds
# the current high-water mark into the running trackers.
_kernel_lock = threading.Lock()
_kernel_trackers: list[PeakTracker] = []
_kernel_unavailable = False


def _reset_kernel_peak(tracker: PeakTracker) -> bool:
    global _kernel_unavailable
    with _kernel_lock:
        if _kernel_unavailable:
            return False
        hwm = _read_vmhwm()
        if hwm is None:
            _kernel_unavailable = True
            logger.info("No VmHWM in %s; sampling RSS instead", STATUS_PATH)
            return False
        try:
            with open(CLEAR_REFS_PATH, "w") as f:
                f.write(CLEAR_REFS_RESET_PEAK)
        except OSError as e:
            _kernel_unavailable = True
            logger.info(
                "Cannot reset peak RSS via %s (%s); sampling RSS instead", CLEAR_REFS_PATH, e
            )
            return False
        for running in _kernel_trackers:
            running._peak_before_reset = max(running._peak_before_reset, hwm)
        tracker._peak_before_reset = 0
        _kernel_trackers.append(tracker)
        return True


def _finish_kernel_peak(tracker: PeakTracker) -> int:
    with _kernel_lock:
        _kernel_trackers.remove(tracker)
        return max(tracker._peak_before_reset, _read_vmhwm() or 0)


def _read_vmhwm() -> int | None:
    try:
        with open(STATUS_PATH) as f:
            match = _VMHWM.search(f.read())
    except OSError:
        return None
    return int(match.group(1)) * 1024 if match else None


@cache
def _page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


@cache
def _psutil_process():
    import psutil

    return psutil.Process()


class Stopwatch:
    """Wall-clock seconds per named section; re-entering a section adds to its total.

    Usage::

        sw = Stopwatch()
        for chunk in chunks:
            with sw.section("encoder"):
                ...
        sw.seconds  # {"encoder": total}, sw.counts  # {"encoder": len(chunks)}
    """

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self._seconds[name] = self._seconds.get(name, 0.0) + elapsed
            self._counts[name] = self._counts.get(name, 0) + 1

    def add(self, name: str, seconds: float) -> None:
        """Record a section timed elsewhere (e.g. inside a library call)."""
        self._seconds[name] = self._seconds.get(name, 0.0) + seconds
        self._counts[name] = self._counts.get(name, 0) + 1

    @property
    def seconds(self) -> dict[str, float]:
        """Total seconds per section, in the order sections were first entered."""
        return dict(self._seconds)

    @property
    def counts(self) -> dict[str, int]:
        """How many times each section was entered."""
        return dict(self._counts)


@dataclass(frozen=True)
class TimingSummary:
    """Summary of repeated wall-clock timings, in seconds."""

    median_s: float
    min_s: float
    max_s: float
    n: int


def summarize_timings(seconds: Sequence[float]) -> TimingSummary:
    """Median, min and max of repeated timings (the median resists one-off stalls)."""
    if not seconds:
        raise ValueError("summarize_timings needs at least one timing")
    return TimingSummary(
        median_s=statistics.median(seconds),
        min_s=min(seconds),
        max_s=max(seconds),
        n=len(seconds),
    )


def time_runs(
    fn: Callable[[], T], *, repeats: int = DEFAULT_REPEATS, warmups: int = DEFAULT_WARMUPS
) -> tuple[TimingSummary, T]:
    """Call ``fn`` ``warmups`` times untimed, then ``repeats`` times timed.

    Returns the timing summary and the last call's result. This is the procedure
    ``timing_method(repeats, warmups)`` describes.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmups):
        fn()
    seconds: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        seconds.append(time.perf_counter() - start)
    return summarize_timings(seconds), result
