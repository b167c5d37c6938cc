"""Will a model's engines fit in memory? Checked before the app loads them.

Each engine holds its model in its own worker process. What it holds is estimated from the
weight files it loads (the size on disk of its subfolder) times its engine's factor in
ENGINE_HELD_PER_WEIGHT_BYTE (HELD_PER_WEIGHT_BYTE for an engine never measured), plus the
worker's own baseline WORKER_BASELINE_MIB; one transcription runs at a time, and
PEAK_RESERVE_MIB is kept for it. The sum is compared with the memory available (psutil's
`available`: free memory plus what the kernel can reclaim) or with WHISPER_MEMORY_BUDGET_MIB
when it is set.

The constants are `derive_constants` of the committed load reports, docs/benchmark-*.json
(tiny.en and base, on the CPUs each names), printed by scripts/budget_constants.py; a test
recomputes them. Each is the largest figure measured times BUDGET_MARGIN (5%), rounded up (factors to
0.01, MiB to 10):
- held over size on disk, per engine, over every report, with the margin: 1.27 for the
  original (tiny.en), 1.09 for onnx-fp32, 1.39 for int4-weights, 1.59 for faster-whisper and
  4.27 for optimum, whose ONNX Runtime sessions hold about four times its int8 files. The fixed part of what
  an engine holds shrinks relative to the weights as models grow, so the factors over-
  estimate larger models a little. An engine not in the reports gets the largest factor.
- the workers' baselines (libraries and runtime, before the model): 345-420 MiB (the
  largest, 419 MiB, the Xeon's languages run of 2026-12-07). Workers are
  forked from one fork server that holds those libraries (workers.py), so much of each
  baseline is pages shared with it. A baseline per worker, and none for the server, is more
  than they take together: tiny.en's server and four workers, models loaded, took 1,008 MiB
  (proportional set size) against 4 x 450 MiB of baselines alone.
- the largest peak extra during a transcription: 886 MiB (onnx-fp32 decoding 8 windows at
  a time on the 10-minute recording, tiny.en, on the AMD EPYC; 722 MiB on the Xeon).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .engines import REQUIRED_ENGINES, EngineError, engine_class
from .layout import weight_bytes

# Held over size on disk per engine, and the largest for an engine never measured.
ENGINE_HELD_PER_WEIGHT_BYTE = {
    "faster-whisper": 1.59,
    "int4-weights": 1.39,
    "int8-decoder": 1.15,
    "int8-encoder": 1.09,
    "int8-seed": 1.2,
    "int8-static": 1.2,
    "onnx-fp32": 1.09,
    "optimum": 4.27,
    "original": 1.27,
    "pytorch": 1.25,
    "quantized": 1.19,
}
HELD_PER_WEIGHT_BYTE = 4.27
WORKER_BASELINE_MIB = 450
PEAK_RESERVE_MIB = 940
# Every constant is the largest figure measured times this, rounded up.
BUDGET_MARGIN = 1.05
MIB = 2**20


@dataclass(frozen=True)
class BudgetConstants:
    """The budget's constants as derived from load reports (see `derive_constants`)."""

    engine_held_per_weight_byte: dict[str, float]
    held_per_weight_byte: float  # for an engine not in the reports: the largest factor
    worker_baseline_mib: int
    peak_reserve_mib: int


def derive_constants(reports: Iterable[dict], margin: float = BUDGET_MARGIN) -> BudgetConstants:
    """The constants from benchmark reports (docs/benchmark-*.json, as loaded): per engine
    the largest memory held over size on disk, the largest worker baseline and the largest
    peak extra of any engine, each times `margin`, factors rounded up to 0.01 and MiB to 10."""
    ratios: dict[str, float] = {}
    baselines, peaks = [], []
    for report in reports:
        for name, engine in report["engines"].items():
            if engine.get("disk_mib"):
                ratio = engine["memory_mib"] / engine["disk_mib"]
                ratios[name] = max(ratios.get(name, 0.0), ratio)
            baselines.append(engine["memory_baseline_mib"])
            if engine.get("peak_memory_mib") is not None:
                peaks.append(engine["peak_memory_mib"])
    if not ratios:
        raise ValueError("no engine with a size on disk in the reports")
    factors = {name: _round_up(ratio * margin, 0.01) for name, ratio in sorted(ratios.items())}
    return BudgetConstants(
        engine_held_per_weight_byte=factors,
        held_per_weight_byte=max(factors.values()),
        worker_baseline_mib=int(_round_up(max(baselines) * margin, 10)),
        peak_reserve_mib=int(_round_up(max(peaks, default=0.0) * margin, 10)),
    )


def _round_up(value: float, step: float) -> float:
    # round() first: 1.15 / 0.01 is 114.99999999999999 in binary floating point.
    return round(math.ceil(round(value / step, 9)) * step, 9)


def held_per_weight_byte(engine: str) -> float:
    """The engine's measured factor, or the largest one for an engine never measured."""
    return ENGINE_HELD_PER_WEIGHT_BYTE.get(engine, HELD_PER_WEIGHT_BYTE)


class MemoryBudgetError(EngineError):
    """A model's engines would not fit in the memory available; the message says what to do."""


@dataclass(frozen=True)
class EngineNeed:
    """One engine's estimated memory: its weights, what it will hold, and its worker's total."""

    engine: str
    weights_bytes: int

    @property
    def factor(self) -> float:
        return held_per_weight_byte(self.engine)

    @property
    def held_bytes(self) -> int:
        return round(self.weights_bytes * self.factor)

    @property
    def needs_bytes(self) -> int:
        return self.held_bytes + WORKER_BASELINE_MIB * MIB


@dataclass(frozen=True)
class MemoryBudget:
    """A model's engines against the memory available to them."""

    model: str
    needs: tuple[EngineNeed, ...]
    available_bytes: int
    # Where `available_bytes` comes from: "WHISPER_MEMORY_BUDGET_MIB" or "available memory".
    source: str
    reserve_bytes: int = PEAK_RESERVE_MIB * MIB

    @property
    def total_bytes(self) -> int:
        return sum(n.needs_bytes for n in self.needs) + self.reserve_bytes

    @property
    def fits(self) -> bool:
        return self.total_bytes <= self.available_bytes

    def need_of(self, engines) -> int:
        """What these engines alone would need, with the reserve."""
        return sum(n.needs_bytes for n in self.needs if n.engine in engines) + self.reserve_bytes

    def message(self) -> str:
        """Plain words: which engines, how much each needs, what is available, what to do."""
        each = ", ".join(f"{n.engine} {n.needs_bytes / MIB:,.0f} MiB" for n in self.needs)
        factors = ", ".join(f"{n.engine} {n.factor:g}" for n in self.needs)
        head = (
            f"{self.model}'s engines need about {self.total_bytes / MIB:,.0f} MiB ({each}; "
            f"each is its weights × its engine's factor ({factors}) plus a "
            f"{WORKER_BASELINE_MIB} MiB worker, and {self.reserve_bytes / MIB:,.0f} MiB is kept "
            f"for the running transcription); {self.available_bytes / MIB:,.0f} MiB is "
            f"available ({self.source})."
        )
        if self.fits:
            return head
        names = [n.engine for n in self.needs]
        required = [e for e in REQUIRED_ENGINES if e in names]
        optional = [e for e in names if e not in REQUIRED_ENGINES]
        advice = []
        if optional and required:
            smallest = self.need_of(required)
            if smallest <= self.available_bytes:
                advice.append(
                    f"set WHISPER_ENGINES={','.join(required)} (about "
                    f"{smallest / MIB:,.0f} MiB without {', '.join(optional)})"
                )
            else:
                advice.append(
                    f"even {' and '.join(required)} alone need about {smallest / MIB:,.0f} MiB"
                )
        advice += [
            "choose a smaller model",
            "run the app on a machine with more memory",
            "or set WHISPER_MEMORY_BUDGET_MIB if this estimate is wrong for this machine",
        ]
        return (
            f"Not loading {self.model}: it would not fit in memory. {head} To run it: "
            + "; ".join(advice)
            + "."
        )


def available_memory_bytes() -> int:
    """Memory the system can give without swapping (psutil's `available`)."""
    import psutil

    return int(psutil.virtual_memory().available)


def estimate(
    model_dir: Path | str,
    engines,
    *,
    budget_mib: float | None = None,
    available_bytes: int | None = None,
) -> MemoryBudget:
    """The engines' needs from their weight files, against `budget_mib` if given, else
    `available_bytes` (default: the system's available memory)."""
    model_dir = Path(model_dir)
    needs = tuple(
        EngineNeed(name, weight_bytes(model_dir / engine_class(name).subfolder)) for name in engines
    )
    if budget_mib is not None:
        available, source = round(budget_mib * MIB), "WHISPER_MEMORY_BUDGET_MIB"
    else:
        available = available_memory_bytes() if available_bytes is None else available_bytes
        source = "available memory"
    return MemoryBudget(model_dir.name, needs, int(available), source)


def check_memory(
    model_dir: Path | str,
    engines,
    *,
    budget_mib: float | None = None,
    available_bytes: int | None = None,
) -> MemoryBudget:
    """The estimate, or MemoryBudgetError when the engines would not fit."""
    budget = estimate(model_dir, engines, budget_mib=budget_mib, available_bytes=available_bytes)
    if not budget.fits:
        raise MemoryBudgetError(budget.message())
    return budget


def check_addition(
    model_dir: Path | str,
    running,
    engine: str,
    *,
    budget_mib: float | None = None,
    available_bytes: int | None = None,
) -> MemoryBudget:
    """Before one more engine of a model starts beside the engines already `running`.

    Against WHISPER_MEMORY_BUDGET_MIB the running engines count, since the budget is the
    whole app's; against the system's available memory they do not, since what they hold is
    resident already and so no longer available. Raises MemoryBudgetError when it would not
    fit, naming the engine, its need and what to do.
    """
    counted = [*running, engine] if budget_mib is not None else [engine]
    budget = estimate(model_dir, counted, budget_mib=budget_mib, available_bytes=available_bytes)
    if budget.fits:
        return budget
    need = budget.needs[-1]
    beside = f" beside {', '.join(running)}" if running else ""
    counted_too = (
        f"; with the running engines, {budget.total_bytes / MIB:,.0f} MiB in all"
        if budget_mib is not None and running
        else ""
    )
    raise MemoryBudgetError(
        f"Not loading {engine} for {budget.model}{beside}: it would not fit in memory. It needs "
        f"about {need.needs_bytes / MIB:,.0f} MiB (its weights × {need.factor:g} plus a "
        f"{WORKER_BASELINE_MIB} MiB worker) and {budget.reserve_bytes / MIB:,.0f} MiB is kept "
        f"for the running transcription{counted_too}; "
        f"{budget.available_bytes / MIB:,.0f} MiB is available ({budget.source}). Compare "
        f"without {engine}, choose a smaller model, or run the app on a machine with more "
        "memory."
    )
