"""What this machine's CPU is and offers, read once from /proc/cpuinfo.

The builder picks its quantization preset from the flags, and every report names the CPU
model and the flags that matter to int8 kernels, so a figure says where it was measured.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass
from functools import cache
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# Instruction-set flags that decide which int8/fp32 kernels onnxruntime and PyTorch use.
RELEVANT_FLAG_PREFIXES = ("avx", "fma", "amx", "asimd", "sve", "sse4")


@dataclass(frozen=True)
class CpuInfo:
    model: str  # "AMD EPYC 7B13", or the platform's best guess
    flags: frozenset[str]  # every feature flag ("flags" on x86, "Features" on ARM)
    logical_cpus: int

    @property
    def relevant_flags(self) -> list[str]:
        return sorted(f for f in self.flags if f.startswith(RELEVANT_FLAG_PREFIXES))

    @property
    def vendor(self) -> str:
        text = self.model.lower()
        return "AMD" if "amd" in text else "Intel" if "intel" in text else "other"


@cache
def cpu_info() -> CpuInfo:
    model, flags = "", frozenset()
    try:
        for line in CPUINFO.read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name" and not model:
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = frozenset(value.split())
    except OSError:
        pass
    import os

    return CpuInfo(
        model=model or platform.processor() or platform.machine(),
        flags=flags,
        logical_cpus=os.cpu_count() or 1,
    )


def cpu_name() -> str:
    return cpu_info().model


def cpu_flags() -> set[str]:
    """The CPU's feature flags, empty where unknown."""
    return set(cpu_info().flags)
