"""The benchmark: every engine on every clip, repeated, in alternating order, with a report.

Each engine runs in its own worker process (memory attributable to it alone) and has already
transcribed a warm-up clip; the benchmark adds one untimed pass over the first clip, then
times `repeat` passes. Within a pass the engine order rotates from clip to clip and from pass
to pass, so no engine always goes first. Latency is the wall time of a whole transcription
of already-decoded audio (features, encoder, decoding), median over the repeats per clip.
"""

from __future__ import annotations

import logging
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .audio import AudioError, decode_audio, duration_s
from .compare import ORIGINAL, QUANTIZED, Studio
from .engines import DEFAULT_THREADS, ENGINES
from .measure import KERNEL_METHOD, MEMORY_METHOD, mib, timing_method
from .metrics import corpus_error_rate

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clip:
    name: str
    path: Path
    reference: str | None
    audio: object = None  # np.ndarray when decoded
    error: str = ""


def read_references(path: Path | str) -> dict[str, str]:
    """`refs.tsv`: file name, tab, reference text; blank lines and # comments skipped."""
    refs = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, sep, text = line.partition("\t")
        if not sep:
            raise ValueError(f"{path}: expected 'file<TAB>reference', got {line!r}")
        refs[Path(name.strip()).name] = text.strip()
    return refs


def load_clips(paths: Sequence[Path | str], references: dict[str, str]) -> list[Clip]:
    clips = []
    for path in map(Path, paths):
        reference = references.get(path.name)
        try:
            clips.append(Clip(path.name, path, reference, decode_audio(path)))
        except (AudioError, OSError) as e:
            logger.warning("%s: %s", path.name, e)
            clips.append(Clip(path.name, path, reference, error=str(e)))
    return clips


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_benchmark(
    model_dir: Path,
    clips: list[Clip],
    engines: Sequence[str],
    *,
    repeat: int = 5,
    threads: int = DEFAULT_THREADS,
    beam_size: int = 1,
    progress: Callable[[str], None] | None = None,
) -> dict:
    """Run the benchmark and return the report as a JSON-ready dict."""
    say = progress or (lambda message: None)
    usable = [c for c in clips if c.error == ""]
    engines = list(engines)
    studio = Studio(model_dir, engines, threads=threads)
    latencies: dict[str, dict[str, list[float]]] = {
        e: {c.name: [] for c in usable} for e in engines
    }
    peaks: dict[str, list[int]] = {e: [] for e in engines}
    transcripts: dict[str, dict[str, str]] = {e: {} for e in engines}
    splits: dict[str, dict[str, list[float]]] = {e: {} for e in engines}
    tokens: dict[str, int] = dict.fromkeys(engines, 0)
    decoder_s: dict[str, float] = dict.fromkeys(engines, 0.0)
    try:
        say(f"loading {', '.join(engines)} from {model_dir}")
        studio.start(on_engine=lambda name: say(f"loading {name}"))
        if usable:
            say("warm-up pass")
            studio.compare(usable[0].audio, beam_size=beam_size)
        for r in range(repeat):
            say(f"pass {r + 1}/{repeat}")
            for clip in usable:
                comparison = studio.compare(clip.audio, beam_size=beam_size)
                for result in comparison.results:
                    t = result.transcription
                    latencies[result.engine][clip.name].append(t.latency_s)
                    peaks[result.engine].append(t.peak_memory_bytes or 0)
                    transcripts[result.engine][clip.name] = t.text
                    tokens[result.engine] += len(t.tokens)
                    decoder_s[result.engine] += t.timings.get("decoder", 0.0)
                    for section, seconds in t.timings.items():
                        splits[result.engine].setdefault(section, []).append(seconds)
        reports = studio.reports()
    finally:
        studio.close()

    report_engines = {}
    audio_total = sum(duration_s(c.audio) for c in usable)
    scored = [c for c in usable if c.reference]
    for name in engines:
        per_clip = {clip: statistics.median(v) for clip, v in latencies[name].items() if v}
        best_per_clip = {clip: min(v) for clip, v in latencies[name].items() if v}
        load = reports[name]
        wer = (
            corpus_error_rate([(c.reference, transcripts[name][c.name]) for c in scored])
            if scored
            else None
        )
        agree = None
        if name != ORIGINAL and ORIGINAL in engines and usable:
            agree = corpus_error_rate(
                [(transcripts[ORIGINAL][c.name], transcripts[name][c.name]) for c in usable]
            )
        report_engines[name] = {
            "label": ENGINES[name].label,
            "wer": None if wer is None else wer.rate,
            "wer_detail": None if wer is None else str(wer),
            "agreement_wer_vs_original": None if agree is None else agree.rate,
            "median_latency_s": statistics.median(per_clip.values()) if per_clip else None,
            "mean_latency_s": statistics.fmean(per_clip.values()) if per_clip else None,
            # Median over clips of each clip's fastest run: robust to stalls from outside.
            "best_latency_s": statistics.median(best_per_clip.values()) if best_per_clip else None,
            "rtf": sum(per_clip.values()) / audio_total if audio_total else None,
            "median_section_s": {k: statistics.median(v) for k, v in splits[name].items()},
            "tokens_per_pass": tokens[name] // max(repeat, 1),
            # Decoding time (prompt, cache steps, end token) over the tokens it produced.
            "ms_per_token": 1000 * decoder_s[name] / max(tokens[name], 1),
            "memory_mib": mib(load.held_bytes),
            "peak_memory_mib": mib(max(peaks[name])) if peaks[name] else None,
            "disk_mib": mib(load.weights_bytes),
            "load_s": load.load_s,
            "warmup_s": load.warmup_s,
            "per_clip_median_latency_s": per_clip,
            "transcripts": transcripts[name],
        }
    return {
        "model": Path(model_dir).name,
        "machine": {"cpu": cpu_name(), "threads": threads, "python": platform.python_version()},
        "settings": {
            "repeat": repeat,
            "beam_size": beam_size,
            "decoding": "greedy" if beam_size == 1 else f"beam {beam_size}",
            "engine_order": "rotating per clip and pass",
        },
        "methods": {
            "timing": timing_method(repeat, 1),
            "memory": MEMORY_METHOD,
            "peak": KERNEL_METHOD,
        },
        "clips": [
            {
                "name": c.name,
                "seconds": round(duration_s(c.audio), 2) if c.audio is not None else None,
                "reference": c.reference,
                "error": c.error or None,
            }
            for c in clips
        ],
        "failed_clips": {c.name: c.error for c in clips if c.error},
        "unscored_clips": [c.name for c in usable if not c.reference],
        "engines": report_engines,
        "summary": summarize(report_engines),
    }


def summarize(engines: dict) -> dict:
    summary = {}
    original = engines.get(ORIGINAL)
    for name, e in engines.items():
        if name == ORIGINAL or original is None or not e["median_latency_s"]:
            continue
        key = "" if name == QUANTIZED else f"{name}_"
        summary[f"{key}speedup"] = original["median_latency_s"] / e["median_latency_s"]
        summary[f"{key}speedup_best"] = original["best_latency_s"] / e["best_latency_s"]
        summary[f"{key}memory_saving"] = 1 - e["memory_mib"] / original["memory_mib"]
        summary[f"{key}peak_memory_saving"] = (
            1 - e["peak_memory_mib"] / original["peak_memory_mib"]
            if original["peak_memory_mib"]
            else None
        )
        if e["wer"] is not None and original["wer"] is not None:
            summary[f"{key}wer_delta"] = e["wer"] - original["wer"]
    return summary


BENCH_HEADERS = (
    "Engine",
    "Median latency (ms)",
    "Best-of-N (ms)",
    "RTF",
    "Speed-up",
    "Speed-up (best-of-N)",
    "ms/token",
    "Memory held (MiB)",
    "Peak extra (MiB)",
    "Disk (MiB)",
    "WER",
    "WER vs original",
)


def bench_rows(report: dict) -> list[list]:
    rows = []
    original = report["engines"].get(ORIGINAL)
    for e in report["engines"].values():
        speed = (
            original["median_latency_s"] / e["median_latency_s"]
            if original and e["median_latency_s"]
            else None
        )
        best = (
            original["best_latency_s"] / e["best_latency_s"]
            if original and e["best_latency_s"]
            else None
        )
        rows.append(
            [
                e["label"],
                f"{e['median_latency_s'] * 1000:.0f}" if e["median_latency_s"] else "",
                f"{e['best_latency_s'] * 1000:.0f}" if e["best_latency_s"] else "",
                f"{e['rtf']:.3f}" if e["rtf"] is not None else "",
                f"{speed:.2f}x" if speed else "",
                f"{best:.2f}x" if best else "",
                f"{e['ms_per_token']:.1f}",
                f"{e['memory_mib']:.0f}",
                f"{e['peak_memory_mib']:.0f}" if e["peak_memory_mib"] is not None else "",
                f"{e['disk_mib']:.0f}",
                f"{e['wer']:.1%}" if e["wer"] is not None else "n/a",
                f"{e['agreement_wer_vs_original']:.1%}"
                if e["agreement_wer_vs_original"] is not None
                else "",
            ]
        )
    return rows


def markdown_report(report: dict) -> str:
    from .report import markdown_table

    m = report["machine"]
    lines = [
        f"**{report['model']}** on {m['cpu']}, {m['threads']} threads, "
        f"{report['settings']['decoding']} decoding, {len(report['engines'])} engines, "
        f"{sum(1 for c in report['clips'] if not c['error'])} clips x {report['settings']['repeat']} "
        "repeats.",
        "",
        markdown_table(BENCH_HEADERS, bench_rows(report)),
        "",
    ]
    s = report["summary"]
    if "speedup" in s:
        lines.append(
            f"Quantized vs original: **{s['speedup']:.2f}x** faster by median "
            f"({s['speedup_best']:.2f}x best-of-N), "
            f"**{s['memory_saving']:.0%}** less memory held"
            + (f", WER delta {s['wer_delta'] * 100:+.1f} points" if "wer_delta" in s else "")
            + "."
        )
    if report["failed_clips"]:
        lines.append(
            "Failed clips: " + "; ".join(f"{k}: {v}" for k, v in report["failed_clips"].items())
        )
    if report["unscored_clips"]:
        lines.append("Left out of WER (no reference): " + ", ".join(report["unscored_clips"]))
    return "\n".join(lines) + "\n"


def plot_report(report: dict, path: Path | str) -> None:
    from .report import plot_bars

    engines = list(report["engines"].values())
    plot_bars(
        [e["label"] for e in engines],
        [e["median_latency_s"] * 1000 for e in engines],
        [e["memory_mib"] for e in engines],
        path,
        f"Whisper {report['model']} on {report['machine']['cpu']}, "
        f"{report['machine']['threads']} threads",
    )
