import multiprocessing
import time

import numpy as np
import pytest

from whisper_quant import measure
from whisper_quant.measure import (
    KERNEL_METHOD,
    MEMORY_METHOD,
    MIB,
    TIMING_METHOD,
    PeakTracker,
    Stopwatch,
    mib,
    rss_bytes,
    summarize_timings,
    time_runs,
    timing_method,
)

BLOCK_MIB = 256
CHILD_MIB = 300
# Allowance for allocator and interpreter noise around a known allocation.
LOW_MIB, HIGH_MIB = BLOCK_MIB - 16, BLOCK_MIB + 34
QUIET_MIB = 30
# Long enough for the fallback sampler (2 ms interval) to see an allocation.
HOLD_S = 0.05


def _allocate(n_mib: int) -> np.ndarray:
    # np.ones writes every byte, so every page is resident (np.zeros/np.empty may not be).
    return np.ones(n_mib * MIB, dtype=np.uint8)


def _kernel_available() -> bool:
    with PeakTracker() as tracker:
        pass
    return tracker.method == KERNEL_METHOD


requires_kernel = pytest.mark.skipif(
    not _kernel_available(), reason="/proc/self/clear_refs is not writable here"
)


@pytest.fixture(autouse=True)
def _trimmed_heap():
    # Every test here allocates a known block and expects RSS to grow by it. If earlier tests
    # left freed memory in the allocator's cache (glibc keeps it resident unless trimmed; seen
    # in CI), the new block reuses those pages and RSS does not move. Production trims before
    # every reading for the same reason (measure.release_free_memory).
    measure.release_free_memory()


def _hold_memory(n_mib, ready, release, grown):
    before = rss_bytes()
    block = _allocate(n_mib)
    grown.value = rss_bytes() - before
    ready.set()
    release.wait(timeout=60)
    del block


def test_mib_converts_bytes():
    assert mib(3 * MIB) == 3.0


def test_rss_bytes_agrees_with_psutil():
    import psutil

    assert abs(rss_bytes() - psutil.Process().memory_info().rss) < 8 * MIB


@requires_kernel
def test_kernel_peak_catches_an_allocation_freed_inside_the_block():
    with PeakTracker() as tracker:
        int(_allocate(BLOCK_MIB).sum())  # the array is freed before the block ends
        measure.release_free_memory()  # and its pages leave the allocator's cache
    assert tracker.method == KERNEL_METHOD
    assert LOW_MIB <= mib(tracker.peak_extra_bytes) <= HIGH_MIB
    assert abs(mib(tracker.retained_bytes)) < QUIET_MIB


def test_peak_and_rss_growth_of_a_kept_allocation_then_nothing_after_freeing():
    before = rss_bytes()
    with PeakTracker() as tracker:
        block = _allocate(BLOCK_MIB)
        time.sleep(HOLD_S)
    assert LOW_MIB <= mib(tracker.peak_extra_bytes) <= HIGH_MIB
    assert LOW_MIB <= mib(tracker.retained_bytes) <= HIGH_MIB
    assert LOW_MIB <= mib(rss_bytes() - before) <= HIGH_MIB

    del block
    # The process's all-time peak is now ~256 MiB above its RSS; a new block must not see it.
    with PeakTracker() as quiet:
        time.sleep(HOLD_S)
    assert mib(quiet.peak_extra_bytes) < QUIET_MIB


def test_fallback_sampler_sees_a_known_allocation():
    with PeakTracker(use_kernel=False) as tracker:
        block = _allocate(BLOCK_MIB)
        time.sleep(HOLD_S)
        del block
    assert tracker.method == "RSS sampled every 2 ms"
    assert LOW_MIB <= mib(tracker.peak_extra_bytes) <= HIGH_MIB


@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "sampled"])
def test_memory_of_a_child_process_is_not_counted(use_kernel):
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    grown = ctx.Value("q", 0)
    child = ctx.Process(target=_hold_memory, args=(CHILD_MIB, ready, release, grown))
    with PeakTracker(use_kernel=use_kernel) as tracker:
        child.start()
        try:
            assert ready.wait(timeout=60), "child never allocated its block"
            time.sleep(HOLD_S)
        finally:
            release.set()
            child.join(timeout=60)
    assert child.exitcode == 0
    # The child really held the memory while we measured ourselves...
    assert mib(grown.value) >= CHILD_MIB - 16
    # ...and none of it shows up as ours.
    assert mib(tracker.peak_extra_bytes) < QUIET_MIB


@requires_kernel
def test_inner_tracker_does_not_erase_the_outer_peak():
    with PeakTracker() as outer:
        int(_allocate(BLOCK_MIB).sum())
        with PeakTracker() as inner:  # resets the kernel's high-water mark
            pass
    assert mib(inner.peak_extra_bytes) < QUIET_MIB
    assert LOW_MIB <= mib(outer.peak_extra_bytes) <= HIGH_MIB


def test_results_exist_only_after_the_block():
    tracker = PeakTracker()
    with pytest.raises(RuntimeError):
        tracker.peak_extra_bytes  # noqa: B018
    with tracker:
        with pytest.raises(RuntimeError):
            tracker.peak_extra_bytes  # noqa: B018
    assert tracker.result.start_bytes > 0


def test_falls_back_to_sampling_when_clear_refs_is_not_writable(monkeypatch):
    monkeypatch.setattr(measure, "CLEAR_REFS_PATH", "/nonexistent/clear_refs")
    monkeypatch.setattr(measure, "_kernel_unavailable", False)
    with PeakTracker() as tracker:
        pass
    assert tracker.method.startswith("RSS sampled")


def test_stopwatch_accumulates_repeated_sections():
    sw = Stopwatch()
    for _ in range(2):
        with sw.section("encoder"):
            time.sleep(0.02)
    with sw.section("decoder"):
        pass
    assert list(sw.seconds) == ["encoder", "decoder"]
    assert 0.04 <= sw.seconds["encoder"] < 10  # sleeps are at least as long as asked
    assert 0 <= sw.seconds["decoder"] < 10
    assert sw.counts == {"encoder": 2, "decoder": 1}


def test_stopwatch_records_a_section_that_raised():
    sw = Stopwatch()
    with pytest.raises(KeyError), sw.section("decode"):
        raise KeyError("boom")
    assert sw.counts == {"decode": 1}


def test_summarize_timings_takes_the_median():
    summary = summarize_timings([3.0, 1.0, 2.0, 100.0])
    assert (summary.median_s, summary.min_s, summary.max_s, summary.n) == (2.5, 1.0, 100.0, 4)
    with pytest.raises(ValueError):
        summarize_timings([])


def test_time_runs_warms_up_untimed_and_returns_the_last_result():
    calls = []
    summary, result = time_runs(lambda: calls.append(len(calls)) or len(calls), repeats=3)
    assert len(calls) == 4  # one warm-up, three timed
    assert summary.n == 3
    assert result == 4


def test_method_descriptions_say_what_is_measured():
    assert "resident set size" in MEMORY_METHOD and "warm-up" in MEMORY_METHOD
    assert "median of 5 runs after 1 warm-up run" in TIMING_METHOD
    assert "median of 3 runs after 2 warm-up runs" in timing_method(repeats=3, warmups=2)


def test_memory_held_is_what_the_model_allocates_and_not_the_shared_front_end(built_tiny):
    """A fake engine whose load allocates 64 MiB, and whose shared front end (tokenizer,
    features) holds 48 MiB more before the baseline: the worker charges the model 64 MiB
    within 5%, and the baseline carries the front end."""
    from fake_engines import AllocatingEngine

    from whisper_quant.workers import EngineWorker

    expected = AllocatingEngine.MODEL_MIB * 2**20
    with EngineWorker(AllocatingEngine, built_tiny.folder) as worker:
        report = worker.report
        assert report.engine == "allocating"
        assert abs(report.held_bytes - expected) <= 0.05 * expected, report.held_bytes / 2**20
        assert report.total_bytes == report.baseline_bytes + report.held_bytes
        assert report.baseline_bytes > AllocatingEngine.SHARED_MIB * 2**20


def test_workers_started_together_each_measure_their_own_model(built_tiny):
    """start_workers: both workers import at once, then load in turn; each one's memory held
    is still its own model's, as when started alone."""
    from fake_engines import AllocatingEngine

    from whisper_quant.workers import EngineWorker, start_workers

    workers = [EngineWorker(AllocatingEngine, built_tiny.folder) for _ in range(2)]
    loaded = []
    try:
        reports = start_workers(workers, on_load=loaded.append)
        assert loaded == [AllocatingEngine.name] * 2
        assert len({r.pid for r in reports}) == 2
        for report in reports:
            expected = AllocatingEngine.MODEL_MIB * 2**20
            assert abs(report.held_bytes - expected) <= 0.05 * expected, report.held_bytes
    finally:
        for worker in workers:
            worker.close()


def test_workers_fork_from_a_server_started_for_their_thread_count_or_are_spawned(built_tiny):
    """A worker is forked from the fork server, which was started with its thread count in
    the variables the numerical libraries read when they load; a worker asking for another
    count is this process's own spawned child. Each measures its own model."""
    import os

    import psutil
    from fake_engines import AllocatingEngine

    from whisper_quant import workers as workers_module
    from whisper_quant.engines import DEFAULT_THREADS
    from whisper_quant.workers import EngineWorker

    # The running server's count, if an earlier test started it; else the default.
    threads = workers_module._fork_server_threads or DEFAULT_THREADS
    first = EngineWorker(AllocatingEngine, built_tiny.folder, threads=threads)
    other = EngineWorker(AllocatingEngine, built_tiny.folder, threads=threads + 1)
    try:
        first.start()
        other.start()
        server = psutil.Process(first.pid).parent()
        assert server.pid != os.getpid() and server.parent().pid == os.getpid()
        assert "forkserver" in " ".join(server.cmdline())
        assert server.environ()["OMP_NUM_THREADS"] == str(threads)
        # It imported the engines' libraries (worker_preload.py found the package).
        libraries = {m.path for m in server.memory_maps()}
        for library in ("libtorch_cpu", "onnxruntime_pybind11_state"):
            assert any(library in path for path in libraries), library
        assert psutil.Process(other.pid).parent().pid == os.getpid()
        expected = AllocatingEngine.MODEL_MIB * 2**20
        for worker in (first, other):
            assert abs(worker.report.held_bytes - expected) <= 0.05 * expected
    finally:
        first.close()
        other.close()


def test_a_worker_that_cannot_load_stops_the_ones_not_yet_loaded(built_tiny):
    """The first worker loads and keeps serving; the second fails to load, naming why; the
    third, prepared but never told to load, is stopped."""
    from fake_engines import AllocatingEngine, FailingLoadEngine

    from whisper_quant.engines import EngineError
    from whisper_quant.workers import EngineWorker, start_workers

    workers = [
        EngineWorker(AllocatingEngine, built_tiny.folder),
        EngineWorker(FailingLoadEngine, built_tiny.folder),
        EngineWorker(AllocatingEngine, built_tiny.folder),
    ]
    try:
        with pytest.raises(EngineError, match="could not load: the weights are unreadable"):
            start_workers(workers)
        assert workers[0].alive and workers[0].report is not None
        assert not workers[1].alive and not workers[2].alive
        assert workers[2].report is None
    finally:
        for worker in workers:
            worker.close()


def test_killing_a_worker_ends_its_request_in_flight_at_once(built_tiny):
    """EngineWorker.kill (the app's exit, StudioSwitcher.shutdown): a request held by a hung
    engine ends with an engine error at once, instead of `close` waiting for the request's
    limit (60 s here) while the app's process cannot exit."""
    import threading

    import psutil
    from fake_engines import AllocatingEngine

    from whisper_quant.engines import EngineError
    from whisper_quant.workers import EngineWorker

    worker = EngineWorker(AllocatingEngine, built_tiny.folder, request_timeout_s=60)
    outcome: list[BaseException | object] = []
    try:
        worker.start()
        psutil.Process(worker.pid).suspend()  # hung: the request will not be answered
        thread = threading.Thread(
            target=lambda: outcome.append(_result_or_error(worker, np.zeros(16000, np.float32)))
        )
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()  # waiting for the hung engine
        started = time.monotonic()
        worker.kill()
        thread.join(timeout=10)
        assert not thread.is_alive() and time.monotonic() - started < 5
        assert isinstance(outcome[0], EngineError), outcome
        assert "stopped while transcribing" in str(outcome[0])
        worker.close()
        assert not worker.alive
    finally:
        worker.close()


def _result_or_error(worker, audio):
    try:
        return worker.transcribe(audio)
    except BaseException as e:  # noqa: BLE001 - the test inspects it
        return e
