"""Audio input: decode any upload to 16 kHz mono float32, check for silence, split long clips.

Decoding runs in-process with PyAV (FFmpeg bundled in the wheel), so the app needs no system
ffmpeg. Both engines receive exactly the samples produced here, which keeps the comparison fair.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

logger = logging.getLogger(__name__)

SAMPLE_RATE = 16000
DEFAULT_MAX_SECONDS = 600.0

# Frame length for the silence check: short enough to resolve a single syllable.
SILENCE_FRAME_SECONDS = 0.030
# The loudest 5% of frames decide. Speech is mostly pauses, so the mean would call a clip
# with one short word silent; the maximum would let a single click make a silent clip loud.
SILENCE_PERCENTILE = 95.0

# A decoder that fails this many packets in a row is not going to recover (a missing
# decoder, a stream that is garbage from here on): stop instead of trying every packet.
MAX_BAD_PACKETS_IN_A_ROW = 50

# Floor for dBFS so log10 never sees zero; far below any threshold anyone would pass.
_MIN_DBFS = -200.0

# Errors PyAV raises for bad input. Its FFmpegError covers everything FFmpeg reports; ValueError
# covers frames PyAV itself rejects (e.g. a layout it cannot build a filter for).
_AV_ERRORS = (av.FFmpegError, ValueError)

Source = str | os.PathLike[str] | bytes | bytearray | memoryview | BinaryIO


class AudioError(ValueError):
    """The input cannot be used as audio; the message is meant for the person who uploaded it."""


class AudioDecodeError(AudioError):
    """The input is empty, is not audio, has no audio track, or is too damaged to decode."""


class EmptyAudioError(AudioError):
    """The input decoded fine but holds no samples."""


class AudioTooLongError(AudioError):
    """The clip is longer than the limit.

    `duration_s` is a lower bound when `is_lower_bound` is true: decoding stops as soon as the
    limit is passed, so a long file is never decoded in full just to report its length.
    """

    def __init__(self, duration_s: float, limit_s: float, *, is_lower_bound: bool = False):
        self.duration_s = duration_s
        self.limit_s = limit_s
        self.is_lower_bound = is_lower_bound
        limit = _describe_duration(limit_s)
        length = _describe_duration(duration_s)
        if length == limit:  # rounded to the limit (601 s is "10 minutes"): say it in seconds
            length, limit = f"{duration_s:.1f} seconds", f"{limit_s:g} seconds"
        if is_lower_bound:
            message = f"The clip is more than {limit} long; the limit is {limit}"
        else:
            message = f"The clip is {length} long; the limit is {limit}"
        super().__init__(message)


def decode_audio(source: Source, *, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> np.ndarray:
    """Decode `source` (a path, bytes or a binary file object) to float32 mono at SAMPLE_RATE.

    The first audio track is used, so video files work too. A damaged file returns what could
    be decoded. `max_seconds=None` disables the length limit.

    Raises AudioDecodeError, EmptyAudioError or AudioTooLongError (all AudioError).
    """
    max_samples = None if max_seconds is None else round(max_seconds * SAMPLE_RATE)
    try:
        with av.open(_open_source(source), mode="r", metadata_errors="ignore") as container:
            if not container.streams.audio:
                raise AudioDecodeError("No audio track found in the file")
            stream = container.streams.audio[0]
            chunks, error = _decode_stream(container, stream, max_samples)
            total = sum(len(chunk) for chunk in chunks)
            if max_samples is not None and total > max_samples:
                declared_s = _declared_duration_s(container, stream)
                decoded_s = total / SAMPLE_RATE
                if declared_s is not None and declared_s > decoded_s:
                    raise AudioTooLongError(declared_s, max_seconds)
                raise AudioTooLongError(decoded_s, max_seconds, is_lower_bound=True)
    except AudioError:
        raise  # ours, already plain (AudioError is a ValueError, which _AV_ERRORS catches)
    except _AV_ERRORS as e:
        raise AudioDecodeError(f"Could not decode the file as audio: {_reason(e)}") from e

    if not chunks:
        if error is not None:
            raise AudioDecodeError(
                f"Could not decode the file as audio: {_reason(error)}"
            ) from error
        raise EmptyAudioError("The file contains no audio samples")
    if error is not None:
        logger.warning(
            "Decoding stopped early (%s); keeping the first %.2f s",
            _reason(error),
            total / SAMPLE_RATE,
        )
    return _sanitize(np.concatenate(chunks))


def audio_from_array(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Convert a numpy clip, shaped (n,) or (n, channels) as Gradio gives it, to decode_audio's form.

    Integer samples are scaled from their type's full range, channels are averaged, and the rate
    is converted with FFmpeg's resampler (the same one decode_audio uses).
    """
    samples = np.asarray(samples)
    if sample_rate <= 0:
        raise AudioError(f"The sample rate must be positive, got {sample_rate}")
    if samples.ndim not in (1, 2):
        raise AudioError(f"Expected samples shaped (n,) or (n, channels), got {samples.shape}")
    audio = _to_unit_float(samples)
    if audio.ndim == 2:
        audio = audio.mean(axis=1, dtype=np.float64).astype(np.float32)
    if audio.size == 0:
        raise EmptyAudioError("The clip contains no audio samples")
    # Resampling filters smear a NaN over their whole length, so clean up before as well.
    audio = _sanitize(audio)
    if sample_rate != SAMPLE_RATE:
        audio = _sanitize(_resample_mono(audio, sample_rate))
    return audio


def duration_s(audio: np.ndarray) -> float:
    """Length of a SAMPLE_RATE clip in seconds."""
    return len(audio) / SAMPLE_RATE


def is_silent(audio: np.ndarray, *, threshold_dbfs: float = -50.0) -> bool:
    """True when the clip holds nothing worth transcribing.

    Whisper tends to invent text ("Thank you.") for silence, so callers skip it instead. The
    check is the loudness of the loudest 30 ms frames (the 95th percentile of per-frame RMS,
    in dB relative to full scale 1.0). Digital silence and faint room noise sit far below the
    -50 dBFS default; speech sits well above it (the loudest frames of the shipped test clip
    reach -24 dBFS, its background -55 dBFS).
    """
    if len(audio) == 0:
        return True
    frame = max(1, round(SILENCE_FRAME_SECONDS * SAMPLE_RATE))
    n_frames = max(1, len(audio) // frame)
    # A clip shorter than one frame is measured as a whole; a ragged tail is dropped.
    frames = np.asarray(audio[: n_frames * frame] if len(audio) >= frame else audio)
    power = np.square(frames.reshape(n_frames, -1), dtype=np.float64).mean(axis=1)
    loudest = np.percentile(_power_to_dbfs(power), SILENCE_PERCENTILE)
    return bool(loudest < threshold_dbfs)


def _open_source(source: Source) -> str | BinaryIO:
    """Turn `source` into something av.open reads, rejecting empty input with a clear message."""
    if isinstance(source, str | os.PathLike):
        # A missing path is the caller's mistake, not a bad upload: stat() raises
        # FileNotFoundError for it.
        if Path(source).stat().st_size == 0:
            raise AudioDecodeError("The file is empty (0 bytes)")
        return os.fspath(source)
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise AudioDecodeError("The file is empty (0 bytes)")
        return io.BytesIO(source)
    if hasattr(source, "read"):
        if _remaining_bytes(source) == 0:
            raise AudioDecodeError("The file is empty (0 bytes)")
        return source
    raise TypeError(f"Expected a path, bytes or a binary file object, got {type(source).__name__}")


def _remaining_bytes(file: BinaryIO) -> int | None:
    """Bytes left after the current position, or None when the stream cannot tell."""
    try:
        if not file.seekable():
            return None
        position = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(position)
    except (AttributeError, OSError):
        return None
    return end - position


def _decode_stream(
    container: av.container.InputContainer, stream: av.AudioStream, max_samples: int | None
) -> tuple[list[np.ndarray], Exception | None]:
    """Decode and resample `stream`, stopping once more than `max_samples` are out.

    Returns the mono chunks and the error that ended decoding early, if any, so the caller can
    keep what came before the damage.
    """
    chunks: list[np.ndarray] = []
    total = 0
    resampler = None
    resampler_input = None
    skipped_packets = bad_in_a_row = 0
    skip_error = stop_error = None
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                # One corrupt packet (a bit flip in an MP3 or AAC frame) must not cost the
                # rest of the file; decoders resynchronise on the next good packet.
                skipped_packets += 1
                bad_in_a_row += 1
                skip_error = e
                if bad_in_a_row > MAX_BAD_PACKETS_IN_A_ROW:
                    stop_error = e
                    break
                continue
            bad_in_a_row = 0
            for frame in frames:
                # Samples are concatenated in order; timestamps in damaged files can jump
                # or go backwards and would only make the resampler pad or drop.
                frame.pts = None
                frame_input = (frame.format.name, frame.layout.name, frame.sample_rate)
                if resampler is None or frame_input != resampler_input:
                    # Streams may change rate or layout mid-file (chained MP3s, HE-AAC);
                    # PyAV's resampler only takes frames like its first one.
                    if resampler is not None:
                        chunks.extend(_frames_to_arrays(resampler.resample(None)))
                    resampler, resampler_input = _new_resampler(), frame_input
                new = _frames_to_arrays(resampler.resample(frame))
                chunks.extend(new)
                total += sum(len(chunk) for chunk in new)
                if max_samples is not None and total > max_samples:
                    return chunks, None
    except _AV_ERRORS as e:
        stop_error = e
    if resampler is not None:
        try:
            chunks.extend(_frames_to_arrays(resampler.resample(None)))
        except _AV_ERRORS as e:
            stop_error = stop_error or e
    if skipped_packets:
        logger.warning("Skipped %s undecodable packets", skipped_packets)
    # Skipped packets only matter when nothing decoded: then they explain why.
    return chunks, stop_error or (None if chunks else skip_error)


def _new_resampler() -> av.AudioResampler:
    # FFmpeg only normalises its downmix matrix for integer output; for float output stereo
    # would come out up to 3 dB louder (5.1 up to 11 dB) and clip. rematrix_maxval=1 keeps
    # a full-scale input full-scale, as an average of the channels would.
    return av.AudioResampler(
        format="flt", layout="mono", rate=SAMPLE_RATE, options={"rematrix_maxval": "1.0"}
    )


def _frames_to_arrays(frames: list[av.AudioFrame]) -> list[np.ndarray]:
    return [frame.to_ndarray().reshape(-1) for frame in frames if frame.samples]


def _resample_mono(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    frame = av.AudioFrame.from_ndarray(audio[np.newaxis, :], format="flt", layout="mono")
    frame.sample_rate = sample_rate
    resampler = _new_resampler()
    frames = resampler.resample(frame) + resampler.resample(None)
    arrays = _frames_to_arrays(frames)
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.float32)


def _to_unit_float(samples: np.ndarray) -> np.ndarray:
    """Scale samples to float32 in [-1, 1] by their type's full range."""
    if samples.dtype.kind == "f":
        return samples.astype(np.float32)
    if samples.dtype.kind == "i":
        full_scale = float(np.iinfo(samples.dtype).max) + 1.0
        return (samples.astype(np.float64) / full_scale).astype(np.float32)
    if samples.dtype.kind == "u":
        # Unsigned PCM (8-bit WAV) is centred on the middle of its range.
        midpoint = float(np.iinfo(samples.dtype).max) / 2.0 + 0.5
        return ((samples.astype(np.float64) - midpoint) / midpoint).astype(np.float32)
    raise AudioError(f"Unsupported sample type {samples.dtype}")


def _sanitize(audio: np.ndarray) -> np.ndarray:
    """Replace NaN/inf by silence and clip to [-1, 1]: what every engine may assume."""
    audio = np.ascontiguousarray(audio, dtype=np.float32)
    bad = ~np.isfinite(audio)
    if bad.any():
        logger.warning("Replacing %s non-finite samples with silence", int(bad.sum()))
        audio = np.where(bad, np.float32(0.0), audio)
    return np.clip(audio, -1.0, 1.0)


def _power_to_dbfs(power: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.maximum(10.0 * np.log10(power), _MIN_DBFS)


def _declared_duration_s(
    container: av.container.InputContainer, stream: av.AudioStream
) -> float | None:
    """The length the file claims, if any, to report how long a rejected clip really is."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _describe_duration(seconds: float) -> str:
    """'12.5 minutes', '10 minutes', '2.8 seconds', '1 second'."""
    value, unit = (seconds / 60.0, "minute") if seconds >= 60.0 else (seconds, "second")
    text = f"{value:.1f}".removesuffix(".0")
    return f"{text} {unit}" if text == "1" else f"{text} {unit}s"


def _reason(error: BaseException) -> str:
    """A short reason from a PyAV error, without the file name FFmpeg prepends."""
    if isinstance(error, av.FFmpegError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__
