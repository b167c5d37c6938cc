"""Segments as SRT, WebVTT and JSON: the formats' exact shape on hand-made segments."""

from __future__ import annotations

import json
import math

from whisper_quant.engines import Segment, Transcription
from whisper_quant.subtitles import timestamp, to_json, to_srt, to_vtt


def segment(start, end, text, **extra) -> Segment:
    values = dict(
        tokens=(1, 2),
        language="en",
        temperature=0.0,
        avg_logprob=-0.25,
        no_speech_prob=0.01,
        compression_ratio=1.1,
        window=0,
    )
    values.update(extra)
    return Segment(start, end, text, **values)


SEGMENTS = (
    segment(0.0, 2.5, " Go forward ten meters."),
    segment(2.5, 2.5, "  "),  # empty text: no cue
    segment(3725.0004, 3727.2, " Eight of spades.", temperature=0.2),
)


def test_timestamps_have_hours_and_milliseconds():
    assert timestamp(0) == "00:00:00,000"
    assert timestamp(3725.0004) == "01:02:05,000"
    assert timestamp(59.9996, ".") == "00:01:00.000"
    assert timestamp(-1) == "00:00:00,000"


def test_srt_numbers_cues_and_skips_empty_text():
    assert to_srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:02,500\nGo forward ten meters.\n"
        "\n"
        "2\n01:02:05,000 --> 01:02:07,200\nEight of spades.\n"
    )


def test_vtt_has_its_header_and_dots():
    assert to_vtt(SEGMENTS) == (
        "WEBVTT\n\n"
        "00:00:00.000 --> 00:00:02.500\nGo forward ten meters.\n"
        "\n"
        "01:02:05.000 --> 01:02:07.200\nEight of spades.\n"
    )


def test_json_holds_every_segment_field_and_no_nan():
    t = Transcription(
        "original",
        "Go forward ten meters.",
        "en",
        (1, 2),
        3.0,
        {"total": 0.5},
        segments=(segment(0.0, 2.5, " Go.", avg_logprob=math.nan),),
        windows=1,
    )
    data = json.loads(to_json(t))
    assert data["engine"] == "original" and data["windows"] == 1
    (only,) = data["segments"]
    assert only["start"] == 0.0 and only["end"] == 2.5 and only["text"] == " Go."
    assert only["avg_logprob"] is None  # NaN (unknown) is written as null
    assert only["tokens"] == [1, 2] and only["temperature"] == 0.0
