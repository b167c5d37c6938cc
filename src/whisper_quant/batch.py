"""Compare the engines on a collection of clips: WER with intervals, per-clip diffs, exports.

The files come as uploads (audio files, or zip archives of them) with an optional references
file: CSV with `file_name` and a transcription column (`transcription`, `text`, `sentence`,
`reference`), or TSV `file<TAB>reference`. Limits on the number of files, on the total
duration and on what a zip may unpack to are checked before any engine runs.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .audio import SAMPLE_RATE, AudioError, decode_audio, is_silent
from .compare import Comparison
from .engines import ORIGINAL, QUANTIZED
from .measure import mib, speedup
from .metrics import word_diff
from .stats import Interval, corpus_wer, count_flags, paired_difference

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".mp4", ".aac")
TEXT_COLUMNS = ("transcription", "text", "sentence", "reference")
DEFAULT_MAX_FILES = 50
DEFAULT_MAX_TOTAL_SECONDS = 1800.0
# What one zip may unpack to: a zip bomb is refused before it is written out.
MAX_UNPACKED_BYTES = 500 * 2**20


class BatchError(ValueError):
    """The batch cannot run as given; the message says what to change."""


@dataclass(frozen=True)
class BatchClip:
    name: str
    audio: object = field(repr=False)  # np.ndarray, or None when it could not be decoded
    reference: str | None
    error: str = ""

    @property
    def seconds(self) -> float:
        return 0.0 if self.audio is None else len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class ClipResult:
    clip: BatchClip
    comparison: Comparison | None  # None for a clip that failed to decode, or silence


@dataclass(frozen=True)
class EngineSummary:
    engine: str
    label: str
    # "4.1% [1.9%, 6.4%]"; "4.1% (n=3)" below stats.MIN_INTERVAL_UNITS clips (no interval);
    # "" without references.
    wer: str
    difference: str  # engine minus original, paired interval as `wer`; "" for the original
    median_latency_ms: float
    total_latency_s: float
    speedup: float | None  # total original time over total engine time
    memory_held_mib: float
    flagged: int  # loops or text on silence
    empty: int


@dataclass(frozen=True)
class BatchResult:
    model: str
    clips: tuple[ClipResult, ...]
    engines: tuple[EngineSummary, ...]
    reference_words: int  # normalised reference words the WERs rest on
    # The model's manifest marks it synthetic: speed and memory only, no WER.
    synthetic: bool = False

    def to_json(self) -> str:
        return json.dumps(
            {
                "model": self.model,
                "synthetic": self.synthetic,
                "reference_words": self.reference_words,
                "engines": [e.__dict__ for e in self.engines],
                "clips": per_clip_records(self),
            },
            indent=2,
            ensure_ascii=False,
        )

    def to_csv(self) -> str:
        records = per_clip_records(self)
        out = io.StringIO()
        if records:
            writer = csv.DictWriter(out, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        return out.getvalue()


def gather_files(paths: Sequence[str | Path], unpack_to: Path, max_files: int) -> list[Path]:
    """Audio files among the uploads, zip archives unpacked into `unpack_to`."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.suffix.lower() == ".zip":
            files += _unzip(path, unpack_to / path.stem)
        elif path.suffix.lower() in AUDIO_SUFFIXES:
            files.append(path)
        if len(files) > max_files:
            raise BatchError(f"Too many files: at most {max_files} clips per batch")
    if not files:
        raise BatchError("No audio files: upload clips (wav, flac, mp3, ogg, m4a …) or a zip")
    return files


def _unzip(path: Path, folder: Path) -> list[Path]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as e:
        raise BatchError(f"{path.name} is not a readable zip archive") from e
    with archive:
        members = [
            m
            for m in archive.infolist()
            if not m.is_dir() and Path(m.filename).suffix.lower() in AUDIO_SUFFIXES
        ]
        if sum(m.file_size for m in members) > MAX_UNPACKED_BYTES:
            raise BatchError(f"{path.name} unpacks to more than {MAX_UNPACKED_BYTES >> 20} MiB")
        folder.mkdir(parents=True, exist_ok=True)
        files = []
        for member in members:
            # Only the base name is kept: no path in the archive can point outside `folder`.
            target = folder / Path(member.filename).name
            target.write_bytes(archive.read(member))
            files.append(target)
    return files


def read_reference_file(path: str | Path | None) -> dict[str, str]:
    """File name (base name) -> reference text, from a CSV or TSV; {} without a file."""
    if not path:
        return {}
    text = Path(path).read_text(encoding="utf-8-sig")
    if "\t" in text.splitlines()[0] if text.strip() else False:
        refs = {}
        for line in text.splitlines():
            name, sep, ref = line.partition("\t")
            if sep and not line.startswith("#"):
                refs[Path(name.strip()).name] = ref.strip()
        return refs
    reader = csv.DictReader(io.StringIO(text))
    fields = reader.fieldnames or []
    column = next((c for c in TEXT_COLUMNS if c in fields), None)
    if "file_name" not in fields or column is None:
        raise BatchError(
            "The references file needs a file_name column and one of: " + ", ".join(TEXT_COLUMNS)
        )
    return {Path(row["file_name"]).name: (row[column] or "").strip() for row in reader}


def load_batch(
    files: Sequence[Path], references: dict[str, str], *, max_total_seconds: float
) -> list[BatchClip]:
    """Decode every clip; a clip that fails keeps its reason. The total length is capped."""
    clips, total = [], 0.0
    for path in files:
        reference = references.get(path.name)
        try:
            audio = decode_audio(path, max_seconds=max_total_seconds)
        except AudioError as e:
            clips.append(BatchClip(path.name, None, reference, error=str(e)))
            continue
        clips.append(BatchClip(path.name, audio, reference))
        total += len(audio) / SAMPLE_RATE
        if total > max_total_seconds:
            raise BatchError(
                f"The clips last more than {max_total_seconds:g} s in all; the limit is "
                f"{max_total_seconds:g} s per batch"
            )
    if not any(c.audio is not None for c in clips):
        raise BatchError("None of the files could be decoded as audio")
    return clips


def runnable(clip: BatchClip) -> bool:
    return clip.audio is not None and not is_silent(clip.audio)


def summarize_batch(model: str, results: Sequence[ClipResult]) -> BatchResult:
    done = [r for r in results if r.comparison is not None and r.comparison.results]
    engines = [res.engine for res in done[0].comparison.results] if done else []
    scored = [r for r in done if r.clip.reference]
    summaries = []
    words = 0
    totals = {e: sum(r.comparison.get(e).transcription.latency_s for r in done) for e in engines}
    for engine in engines:
        first = done[0].comparison.get(engine)
        texts = [r.comparison.get(engine).transcription.text for r in done]
        wer = difference = ""
        if scored:
            refs = [r.clip.reference for r in scored]
            hyps = [r.comparison.get(engine).transcription.text for r in scored]
            cw = corpus_wer(refs, hyps)
            words = cw.reference_length
            wer = with_interval(cw.rate, cw.interval, cw.units)
            if engine != ORIGINAL and ORIGINAL in engines:
                originals = [r.comparison.get(ORIGINAL).transcription.text for r in scored]
                pd_ = paired_difference(refs, hyps, originals)
                difference = with_interval(pd_.difference, pd_.interval, pd_.units, signed=True)
        flags = count_flags([r.clip.reference for r in done], texts)
        latencies = [r.comparison.get(engine).transcription.latency_s for r in done]
        summaries.append(
            EngineSummary(
                engine=engine,
                label=first.label,
                wer=wer,
                difference=difference,
                median_latency_ms=round(1000 * statistics.median(latencies), 1),
                total_latency_s=round(totals[engine], 3),
                speedup=speedup(totals.get(ORIGINAL), totals[engine]),
                memory_held_mib=round(mib(first.load.held_bytes), 1),
                flagged=flags.flagged,
                empty=flags.empty_outputs,
            )
        )
    synthetic = any(r.comparison.synthetic for r in done)
    return BatchResult(model, tuple(results), tuple(summaries), words, synthetic)


def with_interval(value: float, interval: Interval | None, units: int, signed: bool = False) -> str:
    """ "4.1% [1.9%, 6.4%]", or "4.1% (n=3)" when too few clips gave no interval."""
    fmt = "+.1%" if signed else ".1%"
    if interval is None:
        return f"{value:{fmt}} (n={units})"
    return f"{value:{fmt}} [{interval.low:{fmt}}, {interval.high:{fmt}}]"


def per_clip_records(result: BatchResult) -> list[dict]:
    """One row per clip: length, each engine's WER and latency, what quantization changed."""
    records = []
    for r in result.clips:
        row: dict = {"clip": r.clip.name, "seconds": round(r.clip.seconds, 2)}
        row["reference"] = r.clip.reference or ""
        row["error"] = r.clip.error
        comparison = r.comparison
        for e in result.engines:
            res = comparison.get(e.engine) if comparison else None
            row[f"{e.engine} text"] = res.transcription.text if res else ""
            row[f"{e.engine} WER"] = (
                f"{res.error_rate.rate:.1%}" if res is not None and res.error_rate else ""
            )
            row[f"{e.engine} ms"] = round(1000 * res.transcription.latency_s) if res else ""
        row["quantized vs original"] = _changes(comparison)
        records.append(row)
    return records


def _changes(comparison: Comparison | None) -> str:
    """The quantized transcript with what differs from the original marked: [changed],
    [+added], [-missing]."""
    if comparison is None or comparison.get(QUANTIZED) is None or comparison.get(ORIGINAL) is None:
        return ""
    pieces = word_diff(
        comparison.get(ORIGINAL).transcription.text,
        comparison.get(QUANTIZED).transcription.text,
        comparison.language,
        show_missing=True,
    )
    marks = {"changed": "[{}]", "added": "[+{}]", "missing": "[-{}]"}
    return "".join(marks[kind].format(text) if kind else text for text, kind in pieces)
