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


# What int8 kernels use, as onnxruntime's CPU provider picks them.
INT8_FEATURES = (
    ("avx2", "AVX2"),
    ("avx512f", "AVX-512"),
    ("avx512_vnni", "AVX-512 VNNI"),
    ("avx_vnni", "AVX-VNNI"),
    ("amx_int8", "AMX-INT8"),
)


def cpu_panel(info: CpuInfo, threads: int, quantization: str | None = None) -> str:
    """Markdown: the CPU, the features int8 relies on, the threads, and plain warnings."""
    have = [label for flag, label in INT8_FEATURES if flag in info.flags]
    missing = [label for flag, label in INT8_FEATURES if flag not in info.flags]
    lines = [
        f"**CPU**: {info.model}, {info.logical_cpus} logical CPUs; each engine uses "
        f"{threads} threads.",
        f"**int8-relevant features**: {', '.join(have) or 'none found'}"
        + (f" (absent: {', '.join(missing)})" if missing else "")
        + ".",
    ]
    if quantization:
        lines.append(
            f"**Quantization preset of this model**: `{quantization}` (`--quantization auto` "
            "picks `avx512_vnni` with VNNI, `avx512` with AVX-512, `arm64` on ARM, else "
            "`avx2`, which stores weights as uint8)."
        )
    if not {"avx512_vnni", "avx_vnni", "amx_int8"} & info.flags:
        lines.append(
            "⚠️ **No VNNI or AMX on this CPU**: int8 matrix products run on plain AVX2/AVX-512 "
            "instructions, so int8 gains here are smaller than on a CPU with VNNI, and int8 "
            "weights stored as signed bytes can saturate (this is why `auto` picks `avx2`, "
            "uint8, here). Figures measured here do not carry over to another CPU."
        )
    return "  \n".join(lines)
