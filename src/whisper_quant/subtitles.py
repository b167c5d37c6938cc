"""A transcription's segments as SRT, WebVTT and JSON, the formats users download."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict

from .engines import Segment, Transcription


def timestamp(seconds: float, separator: str = ",") -> str:
    """HH:MM:SS,mmm (SRT) or HH:MM:SS.mmm (WebVTT), rounded to the millisecond."""
    millis = max(0, round(seconds * 1000))
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _cues(segments: Sequence[Segment]) -> list[tuple[float, float, str]]:
    return [(s.start, s.end, s.text.strip()) for s in segments if s.text.strip()]


def to_srt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{i}\n{timestamp(start)} --> {timestamp(end)}\n{text}\n"
        for i, (start, end, text) in enumerate(_cues(segments), start=1)
    ]
    return "\n".join(blocks)


def to_vtt(segments: Sequence[Segment]) -> str:
    blocks = [
        f"{timestamp(start, '.')} --> {timestamp(end, '.')}\n{text}\n"
        for start, end, text in _cues(segments)
    ]
    return "WEBVTT\n\n" + "\n".join(blocks)


def segment_dict(segment: Segment) -> dict:
    """A segment as JSON-ready values (NaN, where a figure is unknown, becomes null)."""
    values = asdict(segment)
    values["tokens"] = list(segment.tokens)
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in values.items()}


def to_json(transcription: Transcription) -> str:
    t = transcription
    return json.dumps(
        {
            "engine": t.engine,
            "text": t.text,
            "language": t.language,
            "audio_s": t.audio_s,
            "windows": t.windows,
            "fallback_windows": t.fallback_windows,
            "skipped_windows": t.skipped_windows,
            "timings_s": dict(t.timings),
            "segments": [segment_dict(s) for s in t.segments],
        },
        indent=2,
        ensure_ascii=False,
    )
