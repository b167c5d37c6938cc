"""Compare engines on one clip: the same audio and settings to each, then accuracy and speed-up."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import SAMPLE_RATE
from .budget import MemoryBudget, check_addition, check_memory
from .engines import (
    DEFAULT_ENGINES,
    DEFAULT_THREADS,
    ENGINES,
    ORIGINAL,
    EngineError,
    TranscribeOptions,
    Transcription,
    available_engines,
    engine_class,
)
from .layout import build_command
from .manifest import ModelIntegrityError, verify_folder
from .measure import speedup
from .metrics import ErrorRate, agreement, error_rate
from .workers import (
    DEFAULT_REQUEST_TIMEOUT_S,
    EngineWorker,
    LoadReport,
    WindowStarted,
    ensure_alive_together,
    start_workers,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineResult:
    """One engine's transcription of the clip, with its load report and accuracy."""

    engine: str
    label: str
    transcription: Transcription
    load: LoadReport
    error_rate: ErrorRate | None  # against the reference, when one was given
    agreement: ErrorRate | None  # against the original's transcript (None for the original)


@dataclass(frozen=True)
class Comparison:
    model: str
    audio_s: float
    language: str | None
    reference: str
    results: tuple[EngineResult, ...]
    order: tuple[str, ...]  # the order the engines ran in
    notice: str = ""
    # The seed that shuffled `order` (random.Random(seed).shuffle of the engines as listed
    # in `results`).
    order_seed: int | None = None
    options: TranscribeOptions = TranscribeOptions()
    # The model's manifest marks it synthetic (seeded random weights): its transcripts are
    # meaningless, only speed and memory count.
    synthetic: bool = False

    def get(self, engine: str) -> EngineResult | None:
        return next((r for r in self.results if r.engine == engine), None)

    def speedup(self, engine: str, baseline: str = ORIGINAL) -> float | None:
        """Baseline latency over this engine's (above 1: faster than the baseline)."""
        base, other = self.get(baseline), self.get(engine)
        if base is None or other is None:
            return None
        return speedup(base.transcription.latency_s, other.transcription.latency_s)


def check_selection(
    model_dir: Path | str, engines: Sequence[str], launched: Sequence[str] = ()
) -> tuple[str, ...]:
    """The chosen engines, checked, in the registry's order.

    ValueError, naming what the model offers, for an unknown or not built engine or a choice
    without the original (an empty one included): every variant is compared with the
    original (agreement, speed-up), so it always runs. `launched` engines count as built.
    No engine library is imported (a worker names a missing package).
    """
    built = set(available_engines(model_dir, installed=False)) | set(launched)
    available = [name for name in ENGINES if name in built]
    chosen = list(dict.fromkeys(str(name).strip() for name in engines or () if str(name).strip()))
    offered = f"{Path(model_dir).name} has: {', '.join(available)}"
    unknown = [name for name in chosen if name not in ENGINES]
    if unknown:
        raise ValueError(f"Unknown engine {', '.join(map(repr, unknown))}; {offered}")
    missing = [name for name in chosen if name not in available]
    if missing:
        raise ValueError(f"{', '.join(missing)} is not built for this model; {offered}")
    if ORIGINAL not in chosen:
        raise ValueError(
            f"Keep {ORIGINAL!r} among the engines: it is the reference every variant's "
            f"agreement and speed-up are measured against (chosen: {', '.join(chosen) or 'none'})"
        )
    return tuple(name for name in available if name in chosen)


def engine_order(engines: Sequence[str], seed: int) -> tuple[str, ...]:
    """The engines shuffled by `random.Random(seed)`: the same seed gives the same order."""
    order = list(engines)
    random.Random(seed).shuffle(order)
    return tuple(order)


class Studio:
    """The engines of one built model, each in its own worker process, compared clip by clip.

    `engines` are started by `start()` and compared by default; a comparison may choose
    other engines of the model, whose workers start on first use and then stay. Calls are
    serialised (one comparison at a time) so one person's timings are never
    disturbed by another's. The engines run in a shuffled order, drawn from a seed recorded
    with the comparison, so that no engine always runs first and any order can be replayed.
    """

    def __init__(
        self,
        model_dir: Path | str,
        engines: Sequence[str] = DEFAULT_ENGINES,
        *,
        threads: int = DEFAULT_THREADS,
        request_timeout_s: float | None = DEFAULT_REQUEST_TIMEOUT_S,
        verify_checksums: bool = True,
        memory_budget_mib: float | None = None,
    ):
        self.model_dir = Path(model_dir)
        # The memory the engines may use (None: what is available); see `check_memory`.
        self.memory_budget_mib = memory_budget_mib
        self.model = self.model_dir.name
        self.engines = tuple(engines)
        self.threads = threads
        self.verify_checksums = verify_checksums
        self.request_timeout_s = request_timeout_s
        self.workers = {
            name: EngineWorker(
                name, self.model_dir, threads=threads, request_timeout_s=request_timeout_s
            )
            for name in self.engines
        }
        self.manifest: dict = {}
        self._seeds = random.Random()
        self._lock = threading.Lock()
        self._killed = False  # by kill(): no engine restarts for a request after it

    def verify(self) -> dict:
        """Refuse a model folder whose files do not match its manifest."""
        subfolders = tuple(engine_class(name).subfolder for name in self.engines)
        try:
            self.manifest = verify_folder(
                self.model_dir, subfolders=subfolders, checksums=self.verify_checksums
            )
        except ModelIntegrityError as e:
            raise ModelIntegrityError(
                f"{e}. Rebuild it with: {build_command(self.model, self.model_dir.parent)}"
            ) from e
        return self.manifest

    def check_memory(self, adding: str | None = None) -> MemoryBudget:
        """Whether the engines fit in memory (budget.py); MemoryBudgetError, in plain words,
        when they would not. Nothing is started.

        Without `adding`: the studio's own engines together, before `start` loads them
        (budget.check_memory). With it: that one more engine beside the running ones, before
        it starts on first use (budget.check_addition).
        """
        if adding is None:
            budget = check_memory(self.model_dir, self.engines, budget_mib=self.memory_budget_mib)
        else:
            running = [n for n, worker in self.workers.items() if worker.alive]
            budget = check_addition(
                self.model_dir, running, adding, budget_mib=self.memory_budget_mib
            )
        logger.info("memory for %s: %s", adding or ", ".join(self.engines), budget.message())
        return budget

    def _add_worker(self, name: str, on_load: Callable[[str], None] | None) -> None:
        """Check one more engine fits in memory, verify its files, then load and warm up its
        worker."""
        self.check_memory(adding=name)
        try:
            verify_folder(
                self.model_dir,
                subfolders=(engine_class(name).subfolder,),
                checksums=self.verify_checksums,
            )
        except ModelIntegrityError as e:
            raise ModelIntegrityError(
                f"{e}. Rebuild it with: {build_command(self.model, self.model_dir.parent)}"
            ) from e
        worker = EngineWorker(
            name, self.model_dir, threads=self.threads, request_timeout_s=self.request_timeout_s
        )
        if on_load:
            on_load(name)
        try:
            worker.start()
        except BaseException:
            worker.close()
            raise
        self.workers[name] = worker

    def start(self, on_engine: Callable[[str], None] | None = None) -> list[LoadReport]:
        """Verify the files, then start every engine's worker: their imports at once, then
        each load and warm-up one after the other (workers.start_workers)."""
        self.verify()
        return start_workers(list(self.workers.values()), on_engine)

    @property
    def multilingual(self) -> bool:
        return bool(self.manifest.get("multilingual"))

    @property
    def languages(self) -> list[str]:
        first = next(iter(self.workers.values()))
        return first.languages

    def reports(self) -> dict[str, LoadReport]:
        return {name: w.report for name, w in self.workers.items() if w.report is not None}

    def compare(
        self,
        audio: np.ndarray,
        options: TranscribeOptions | None = None,
        *,
        reference: str = "",
        order_seed: int | None = None,
        engines: Sequence[str] | None = None,
        on_engine: Callable[[str, int, int], None] | None = None,
        on_window: Callable[[str, WindowStarted], None] | None = None,
        on_load: Callable[[str], None] | None = None,
    ) -> Comparison:
        """Transcribe `audio` with each engine (same audio, same options) and score them.

        `engines` chooses a subset or other engines of the model (`check_selection`: the
        original is required); by default the studio's own. An engine not loaded yet is
        loaded and warmed up first (`on_load(name)`), outside the request's time limit.
        The engines run in the order `engine_order(order_seed)` gives; with no seed, one is
        drawn and recorded in the result.
        """
        options = options or TranscribeOptions()
        with self._lock:
            chosen = (
                self.engines
                if engines is None
                else check_selection(self.model_dir, engines, self.engines)
            )
            if self._killed:
                raise EngineError("The app is stopping; try again once it is back")
            if not self.manifest:  # compared without start(): verify as start() would
                self.verify()
            # A worker stopped by an earlier request's time limit restarts before the clock
            # starts (its start-up is not this request's work), and before a new engine's
            # memory check, which counts the running ones.
            ensure_alive_together([self.workers[n] for n in chosen if n in self.workers])
            for name in chosen:
                if name not in self.workers:
                    self._add_worker(name, on_load)
            if order_seed is None:
                order_seed = self._seeds.randrange(2**31)
            # One time limit for the whole request, shared by its engines.
            deadline = None
            if self.request_timeout_s is not None:
                deadline = time.monotonic() + self.request_timeout_s
            order = engine_order(chosen, order_seed)
            transcriptions: dict[str, Transcription] = {}
            for i, name in enumerate(order):
                if on_engine:
                    on_engine(name, i, len(order))
                transcriptions[name] = self.workers[name].transcribe(
                    audio,
                    options,
                    deadline=deadline,
                    on_window=(lambda m, name=name: on_window(name, m)) if on_window else None,
                )
        return self._score(
            audio, transcriptions, chosen, order, order_seed, reference.strip(), options
        )

    def _score(
        self, audio, transcriptions, chosen, order, order_seed, reference, options
    ) -> Comparison:
        original = transcriptions.get(ORIGINAL)
        # Score in the language the original heard (or was told), so every engine is scored alike.
        language = options.language or (original.language if original else None) or "en"
        results = []
        for name in chosen:
            t = transcriptions[name]
            results.append(
                EngineResult(
                    engine=name,
                    label=self.workers[name].report.label,
                    transcription=t,
                    load=self.workers[name].report,
                    error_rate=error_rate(reference, t.text, language) if reference else None,
                    agreement=(
                        agreement(original.text, t.text, language)
                        if original is not None and name != ORIGINAL
                        else None
                    ),
                )
            )
        notices = {t.notice for t in transcriptions.values() if t.notice}
        return Comparison(
            model=self.model,
            audio_s=len(audio) / SAMPLE_RATE,
            language=language,
            reference=reference,
            results=tuple(results),
            order=order,
            notice=" ".join(sorted(notices)),
            order_seed=order_seed,
            options=options,
            synthetic=bool(self.manifest.get("synthetic")),
        )

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()

    def kill(self) -> None:
        """Kill every engine process at once (EngineWorker.kill), for the app's exit; a
        request waiting for the studio then fails instead of restarting them."""
        self._killed = True
        for worker in list(self.workers.values()):
            worker.kill()

    def __enter__(self) -> Studio:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
