"""The faster-whisper engine's runtime note names the library CTranslate2 runs int8 with on this
CPU: Intel MKL on Intel, oneDNN on AMD (x86-64 wheels), Ruy on ARM, or what CT2_USE_MKL forces.
The CPU is faked, so each vendor is checked on any machine."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from whisper_quant.engines import faster_whisper as engine_module
from whisper_quant.engines.faster_whisper import FasterWhisperEngine, int8_note
from whisper_quant.hardware import CpuInfo

INTEL = CpuInfo("Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", frozenset({"avx2"}), 2)
AMD = CpuInfo("AMD EPYC 7B13", frozenset({"avx2"}), 2)
UNKNOWN = CpuInfo("Common KVM processor", frozenset({"avx2"}), 2)


@pytest.mark.parametrize(
    ("cpu", "note"),
    [
        (INTEL, "int8 compute; Intel MKL on this Intel CPU"),
        (AMD, "int8 compute; oneDNN on this AMD CPU"),
        (UNKNOWN, "int8 compute; Intel MKL on Intel CPUs, oneDNN on others"),
    ],
)
def test_the_note_follows_the_cpu_vendor(cpu, note):
    assert int8_note(cpu, "x86_64", {}) == note


def test_arm_runs_int8_on_ruy_whatever_the_vendor_string():
    assert int8_note(UNKNOWN, "aarch64", {}) == "int8 compute; Ruy on this ARM CPU"
    assert int8_note(UNKNOWN, "arm64", {"CT2_USE_MKL": "1"}) == "int8 compute; Ruy on this ARM CPU"


@pytest.mark.parametrize(
    ("value", "library"),
    [("1", "Intel MKL"), ("true", "Intel MKL"), ("0", "oneDNN"), ("false", "oneDNN")],
)
def test_ct2_use_mkl_overrides_the_vendor(value, library):
    for cpu in (INTEL, AMD):
        note = int8_note(cpu, "x86_64", {"CT2_USE_MKL": value})
        assert note == f"int8 compute; {library} (CT2_USE_MKL={value})"


def test_runtime_details_name_the_faked_vendor(monkeypatch):
    """On an AMD CPU the note says oneDNN, on an Intel one MKL, whatever this machine is."""
    monkeypatch.setitem(sys.modules, "faster_whisper", SimpleNamespace(__version__="1.2.1"))
    monkeypatch.setattr(engine_module.platform, "machine", lambda: "x86_64")
    monkeypatch.delenv("CT2_USE_MKL", raising=False)
    engine = SimpleNamespace(_ct2=SimpleNamespace(__version__="4.6.0"))
    for cpu, library, other in ((AMD, "oneDNN", "MKL"), (INTEL, "Intel MKL", "oneDNN")):
        monkeypatch.setattr(engine_module, "cpu_info", lambda cpu=cpu: cpu)
        runtime = FasterWhisperEngine.runtime_details(engine)["runtime"]
        assert runtime.startswith("faster-whisper 1.2.1, CTranslate2 4.6.0 (int8 compute; ")
        assert f"{library} on this {cpu.vendor} CPU" in runtime
        assert other not in runtime
