"""Write audio and video files with PyAV for the tests, so no binaries beyond one clip ship.

The reference signal is read with the standard library's `wave`, not with the code under test.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


@dataclass(frozen=True)
class Format:
    """How to write one kind of file: container, audio codec, and what the codec accepts."""

    name: str
    suffix: str
    container: str
    codec: str
    lossy: bool
    sample_format: str | None = None  # None: the encoder's first supported format
    rates: tuple[int, ...] | None = None  # None: any rate
    with_video: bool = False
    options: tuple[tuple[str, str], ...] = ()  # encoder options
    container_options: tuple[tuple[str, str], ...] = ()  # muxer options


FORMATS = {
    f.name: f
    for f in (
        Format("wav_u8", ".wav", "wav", "pcm_u8", lossy=False),
        Format("wav_s16", ".wav", "wav", "pcm_s16le", lossy=False),
        Format("wav_s24", ".wav", "wav", "pcm_s24le", lossy=False),
        Format("wav_s32", ".wav", "wav", "pcm_s32le", lossy=False),
        Format("wav_flt", ".wav", "wav", "pcm_f32le", lossy=False),
        Format("flac", ".flac", "flac", "flac", lossy=False, sample_format="s32"),
        Format("mp3", ".mp3", "mp3", "libmp3lame", lossy=True),
        # libvorbis is not in PyAV's FFmpeg; the native encoder is experimental.
        Format("ogg_vorbis", ".ogg", "ogg", "vorbis", lossy=True, options=(("strict", "-2"),)),
        # Opus only runs at these rates; other rates are resampled to 48 kHz first.
        Format("ogg_opus", ".opus", "ogg", "libopus", lossy=True, rates=(8000, 16000, 48000)),
        Format("webm_opus", ".webm", "webm", "libopus", lossy=True, rates=(8000, 16000, 48000)),
        # Index (moov) first, as phones and iTunes write it, so a cut-off file still plays.
        # The mp4 below keeps FFmpeg's default, index last.
        Format(
            "m4a_aac",
            ".m4a",
            "ipod",
            "aac",
            lossy=True,
            container_options=(("movflags", "faststart"),),
        ),
        Format("mp4_video_aac", ".mp4", "mp4", "aac", lossy=True, with_video=True),
    )
}

# FFmpeg channel layouts by channel count (PyAV takes names, not counts).
LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 6: "5.1"}

VIDEO_CODEC = "mpeg4"  # built into FFmpeg, fast, and any mp4 player reads it
VIDEO_SIZE = (64, 48)
VIDEO_FPS = 10


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """A 16-bit PCM WAV as float32 samples shaped (channels, n) and its rate."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path} is not 16-bit PCM")
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        channels = w.getnchannels()
        rate = w.getframerate()
    return (pcm.reshape(-1, channels).T / 32768.0).astype(np.float32), rate


def resample(samples: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Resample (channels, n) float32 samples, keeping channels apart."""
    if rate == new_rate:
        return samples
    layout = LAYOUTS[len(samples)]
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=layout
    )
    frame.sample_rate = rate
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=new_rate)
    frames = resampler.resample(frame) + resampler.resample(None)
    return np.concatenate([f.to_ndarray() for f in frames], axis=1)


def write_audio(path: Path, samples: np.ndarray, rate: int, fmt: Format) -> Path:
    """Encode (channels, n) float samples at `rate` into `path` as `fmt`."""
    samples = np.atleast_2d(samples)
    layout = LAYOUTS[len(samples)]
    if fmt.rates is not None and rate not in fmt.rates:
        samples, rate = resample(samples, rate, max(fmt.rates)), max(fmt.rates)
    with av.open(
        str(path), mode="w", format=fmt.container, options=dict(fmt.container_options)
    ) as container:
        # Video first, as cameras write it, so the decoder must look past stream 0.
        video = _add_video_stream(container) if fmt.with_video else None
        audio = container.add_stream(fmt.codec, rate=rate, layout=layout)
        if fmt.sample_format is not None:
            audio.codec_context.format = fmt.sample_format
        if fmt.options:
            audio.codec_context.options = dict(fmt.options)
        _encode_audio(container, audio, samples, rate)
        if video is not None:
            _encode_video(container, video, seconds=samples.shape[1] / rate)
    return path


def write_video_only(path: Path, seconds: float = 1.0) -> Path:
    """An mp4 with a video track and no audio track."""
    with av.open(str(path), mode="w", format="mp4") as container:
        _encode_video(container, _add_video_stream(container), seconds=seconds)
    return path


def tone(seconds: float, rate: int, *, freq: float = 440.0, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _encode_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    context = stream.codec_context
    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(samples, dtype=np.float32), format="fltp", layout=context.layout.name
    )
    frame.sample_rate = rate
    # Codecs with a fixed frame size (mp3, aac, opus) need frames of exactly that size.
    resampler = av.AudioResampler(
        format=context.format, layout=context.layout, rate=rate, frame_size=context.frame_size
    )
    pts = 0
    for out in resampler.resample(frame) + resampler.resample(None):
        out.pts, out.time_base = pts, Fraction(1, rate)
        pts += out.samples
        container.mux(stream.encode(out))
    container.mux(stream.encode(None))


def _add_video_stream(container):
    stream = container.add_stream(VIDEO_CODEC, rate=VIDEO_FPS)
    stream.width, stream.height = VIDEO_SIZE
    stream.pix_fmt = "yuv420p"
    return stream


def _encode_video(container, stream, *, seconds: float) -> None:
    for i in range(max(1, round(seconds * VIDEO_FPS))):
        image = np.full((VIDEO_SIZE[1], VIDEO_SIZE[0], 3), (i * 20) % 256, dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(image, format="rgb24")
        frame.pts = i
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
