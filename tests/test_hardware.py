"""The CPU reader and the page's hardware panel, on /proc/cpuinfo texts written here."""

from __future__ import annotations

from whisper_quant import hardware
from whisper_quant.hardware import CpuInfo, cpu_panel

AVX2_ONLY = CpuInfo("AMD EPYC", frozenset({"fma", "avx", "avx2", "sse4_2"}), 2)
VNNI = CpuInfo("Intel Xeon", frozenset({"avx2", "avx512f", "avx512_vnni"}), 8)


def test_cpuinfo_is_read_once_for_model_and_flags(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 avx512_vnni\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu avx2 avx512_vnni\n"
    )
    monkeypatch.setattr(hardware, "CPUINFO", cpuinfo)
    hardware.cpu_info.cache_clear()
    try:
        info = hardware.cpu_info()
        assert info.model == "AMD EPYC 7B13" and info.vendor == "AMD"
        assert info.flags == {"fpu", "avx2", "avx512_vnni"}
        assert info.relevant_flags == ["avx2", "avx512_vnni"]
    finally:
        hardware.cpu_info.cache_clear()


def test_the_panel_warns_only_without_vnni_or_amx():
    plain = cpu_panel(AVX2_ONLY, 2, "avx2")
    assert "AMD EPYC, 2 logical CPUs; each engine uses 2 threads" in plain
    assert "AVX2 (absent: AVX-512, AVX-512 VNNI, AVX-VNNI, AMX-INT8)" in plain
    assert "No VNNI or AMX on this CPU" in plain and "`avx2`" in plain
    fast = cpu_panel(VNNI, 4)
    assert "AVX2, AVX-512, AVX-512 VNNI" in fast
    assert "No VNNI" not in fast
