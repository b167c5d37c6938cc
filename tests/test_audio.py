"""Tests for whisper_quant.audio: every format decodes to the same 16 kHz signal, bad input fails
with an AudioError, and the silence check and long-form split behave.

Every encoded file is written here with PyAV from the shipped goforward.wav or a synthetic tone.
"""

from __future__ import annotations

import io
import logging
import os
import wave
from pathlib import Path

import av
import numpy as np
import pytest
from audio_factory import FORMATS, LAYOUTS, read_wav, resample, tone, write_audio, write_video_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from whisper_quant.audio import (
    DEFAULT_MAX_SECONDS,
    SAMPLE_RATE,
    AudioDecodeError,
    AudioError,
    AudioTooLongError,
    EmptyAudioError,
    audio_from_array,
    decode_audio,
    duration_s,
    is_silent,
)

DATA = Path(__file__).parent / "data"
SPEECH_WAV = DATA / "goforward.wav"
WHISPER_RATE = 16000  # what every decoded clip must be at, whatever the file's rate

RATES = (8000, 22050, 44100, 48000)
# The right channel is the left at half volume, so the expected mono mix (the average) is
# 0.75 x the signal. Taking one channel gives 1.0 or 0.5; summing, or FFmpeg's unnormalised
# float downmix, gives 1.5 or 1.06: all outside GAIN_TOLERANCE.
STEREO_RIGHT_GAIN = 0.5
GAIN_TOLERANCE = 0.15
# Measured: lossless >= 0.977 (8 kHz files lose the 4-8 kHz band), lossy >= 0.955 (MP3 at
# 8 kHz). A rate off by 2% already drops the correlation below 0.4.
MIN_CORRELATION = {False: 0.95, True: 0.90}
# Lossless output has the exact length; lossy codecs pad to whole frames (AAC at 8 kHz: 30 ms).
DURATION_TOLERANCE_S = {False: 0.01, True: 0.1}
MAX_LAG_S = 0.1


@pytest.fixture(scope="session")
def speech() -> np.ndarray:
    """goforward.wav (16 kHz mono, 2.8 s) as float32, read without the code under test."""
    samples, rate = read_wav(SPEECH_WAV)
    assert rate == WHISPER_RATE and samples.shape[0] == 1
    return samples[0]


def seconds(samples: np.ndarray) -> float:
    return len(samples) / WHISPER_RATE


def correlation(decoded: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Peak normalised cross-correlation within MAX_LAG_S, and its lag in samples."""
    decoded = decoded.astype(np.float64)
    reference = reference.astype(np.float64)
    size = 1 << (len(decoded) + len(reference)).bit_length()
    full = np.fft.irfft(np.fft.rfft(decoded, size) * np.conj(np.fft.rfft(reference, size)), size)
    max_lag = round(MAX_LAG_S * SAMPLE_RATE)
    lags = np.r_[np.arange(max_lag + 1), np.arange(-max_lag, 0)]
    values = np.r_[full[: max_lag + 1], full[-max_lag:]]
    best = int(np.argmax(values))
    norm = np.linalg.norm(decoded) * np.linalg.norm(reference)
    return float(values[best] / norm), int(lags[best])


def gain(decoded: np.ndarray, reference: np.ndarray, lag: int) -> float:
    """Least-squares scale of `reference` in `decoded`, aligned by `lag`."""
    decoded = decoded[max(lag, 0) :].astype(np.float64)
    reference = reference[max(-lag, 0) :].astype(np.float64)
    n = min(len(decoded), len(reference))
    return float(np.dot(decoded[:n], reference[:n]) / np.dot(reference[:n], reference[:n]))


def assert_decodes_to(decoded: np.ndarray, reference: np.ndarray, *, lossy: bool, gain_: float):
    assert decoded.dtype == np.float32
    assert decoded.ndim == 1
    assert np.isfinite(decoded).all()
    assert abs(seconds(decoded) - seconds(reference)) <= DURATION_TOLERANCE_S[lossy]
    corr, lag = correlation(decoded, reference)
    assert corr > MIN_CORRELATION[lossy]
    assert gain(decoded, reference, lag) == pytest.approx(gain_, rel=GAIN_TOLERANCE)


def format_cases():
    for name, fmt in FORMATS.items():
        for rate in RATES:
            for channels in (1, 2):
                # PyAV's FFmpeg has no libvorbis, and FFmpeg's own Vorbis encoder only
                # writes stereo, so there is no way to make a mono Vorbis file here.
                if name == "ogg_vorbis" and channels == 1:
                    continue
                yield pytest.param(fmt, rate, channels, id=f"{name}-{rate}-{channels}ch")


# --- every format -----------------------------------------------------------------------------


def test_the_decoded_rate_is_whisper_s_16_khz():
    assert SAMPLE_RATE == WHISPER_RATE
    assert duration_s(np.zeros(24_000, np.float32)) == 1.5


def test_encoders_are_available():
    """The format matrix needs these encoders; a PyAV upgrade that drops one should say so."""
    for fmt in FORMATS.values():
        av.Codec(fmt.codec, "w")


@pytest.mark.parametrize(("fmt", "rate", "channels"), list(format_cases()))
def test_decodes_format(tmp_path, speech, fmt, rate, channels):
    signal = resample(speech[np.newaxis], SAMPLE_RATE, rate)[0]
    if channels == 1:
        samples, expected_gain = signal[np.newaxis], 1.0
    else:
        samples = np.stack([signal, STEREO_RIGHT_GAIN * signal])
        expected_gain = (1.0 + STEREO_RIGHT_GAIN) / 2
    path = write_audio(tmp_path / f"clip{fmt.suffix}", samples, rate, fmt)

    decoded = decode_audio(path)

    assert_decodes_to(decoded, speech, lossy=fmt.lossy, gain_=expected_gain)


@pytest.mark.parametrize("layout", ["3.0", "quad", "5.1"])
def test_decodes_multichannel(tmp_path, speech, layout):
    signal = resample(speech[np.newaxis], SAMPLE_RATE, 44100)[0]
    channels = next(n for n, name in LAYOUTS.items() if name == layout)
    path = write_audio(
        tmp_path / "clip.wav", np.tile(signal, (channels, 1)), 44100, FORMATS["wav_s16"]
    )

    decoded = decode_audio(path)

    # Identical channels downmix to the signal itself, not to a louder, clipped copy.
    assert_decodes_to(decoded, speech, lossy=False, gain_=1.0)


def test_decodes_channels_without_layout(tmp_path, speech):
    """A plain WAV header gives a channel count but no speaker positions."""
    pcm = np.round(np.tile(speech[:, np.newaxis], (1, 3)) * 32767).astype("<i2")
    path = tmp_path / "three.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(3)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())

    assert_decodes_to(decode_audio(path), speech, lossy=False, gain_=1.0)


# --- sources ----------------------------------------------------------------------------------


def test_sources_decode_alike(speech):
    from_path = decode_audio(SPEECH_WAV)
    data = SPEECH_WAV.read_bytes()

    assert np.array_equal(decode_audio(str(SPEECH_WAV)), from_path)
    assert np.array_equal(decode_audio(data), from_path)
    assert np.array_equal(decode_audio(bytearray(data)), from_path)
    assert np.array_equal(decode_audio(io.BytesIO(data)), from_path)
    with SPEECH_WAV.open("rb") as f:
        assert np.array_equal(decode_audio(f), from_path)
    assert_decodes_to(from_path, speech, lossy=False, gain_=1.0)


def test_non_seekable_file_object(tmp_path, speech):
    path = write_audio(tmp_path / "clip.ogg", speech[np.newaxis], SAMPLE_RATE, FORMATS["ogg_opus"])

    decoded = decode_audio(_Pipe(path.read_bytes()))

    assert_decodes_to(decoded, speech, lossy=True, gain_=1.0)


def test_missing_path_is_a_caller_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        decode_audio(tmp_path / "missing.wav")


def test_unsupported_source_type():
    with pytest.raises(TypeError, match="path, bytes or a binary file object"):
        decode_audio(42)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["path", "bytes", "file"])
def test_zero_bytes(tmp_path, kind):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    source = {"path": path, "bytes": b"", "file": io.BytesIO()}[kind]

    with pytest.raises(AudioDecodeError, match=r"The file is empty \(0 bytes\)"):
        decode_audio(source)


def test_wav_header_without_samples(tmp_path):
    path = tmp_path / "header_only.wav"
    with av.open(str(path), mode="w", format="wav") as container:
        container.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        container.start_encoding()
    assert path.stat().st_size > 0

    with pytest.raises(EmptyAudioError, match="no audio samples"):
        decode_audio(path)


@pytest.mark.parametrize("format_name", ["wav_s16", "mp3", "ogg_opus", "m4a_aac"])
def test_truncated_file_keeps_what_decodes(tmp_path, speech, format_name):
    fmt = FORMATS[format_name]
    data = write_audio(tmp_path / f"clip{fmt.suffix}", speech[np.newaxis], SAMPLE_RATE, fmt)

    decoded = decode_audio(data.read_bytes()[: data.stat().st_size // 2])

    assert decoded.dtype == np.float32 and np.isfinite(decoded).all()
    # Half the bytes hold about half of the 2.8 s (a lossy file's header and padding aside).
    assert 0.5 < seconds(decoded) < seconds(speech) - 0.5


@pytest.mark.parametrize("format_name", ["wav_s16", "mp3"])
def test_truncated_inside_header(tmp_path, speech, format_name):
    fmt = FORMATS[format_name]
    data = write_audio(tmp_path / f"clip{fmt.suffix}", speech[np.newaxis], SAMPLE_RATE, fmt)

    with pytest.raises(AudioDecodeError, match="Could not decode the file as audio"):
        decode_audio(data.read_bytes()[:40])


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_random_bytes(tmp_path, suffix):
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(0).bytes(8192))

    with pytest.raises(AudioDecodeError, match="Could not decode the file as audio"):
        decode_audio(path)


def test_text_named_mp3(tmp_path):
    path = tmp_path / "notes.mp3"
    path.write_text("Meeting notes: this is not audio.\n" * 20)

    with pytest.raises(AudioDecodeError, match="Could not decode the file as audio"):
        decode_audio(path)


def test_video_without_audio_track(tmp_path):
    path = write_video_only(tmp_path / "silent_film.mp4")

    with pytest.raises(AudioDecodeError, match="No audio track found in the file"):
        decode_audio(path)


def test_non_finite_samples_become_silence(tmp_path, caplog):
    samples = tone(1.0, 44100)
    samples[1000] = np.nan
    samples[5000:5010] = np.inf
    samples[9000] = -np.inf
    path = write_audio(tmp_path / "nan.wav", samples[np.newaxis], 44100, FORMATS["wav_flt"])

    with caplog.at_level(logging.WARNING, logger="whisper_quant.audio"):
        decoded = decode_audio(path)

    assert np.isfinite(decoded).all()
    assert seconds(decoded) == pytest.approx(1.0, abs=0.01)
    assert "non-finite" in caplog.text
    # Only the neighbourhood of the bad samples is lost, not the tone.
    assert np.count_nonzero(decoded == 0) < 0.02 * len(decoded)


@pytest.mark.parametrize("format_name", ["wav_s16", "wav_flt"])
def test_full_scale_stays_in_range(tmp_path, format_name):
    # A full-scale square wave overshoots when resampled (Gibbs); the float file even holds
    # values beyond full scale.
    square = np.sign(tone(1.0, 44100, freq=100.0)).astype(np.float32)
    if format_name == "wav_flt":
        square *= 1.5
    path = write_audio(tmp_path / "loud.wav", square[np.newaxis], 44100, FORMATS[format_name])

    decoded = decode_audio(path)

    assert decoded.min() >= -1.0 and decoded.max() <= 1.0
    assert decoded.max() == 1.0 and decoded.min() == -1.0


# --- length limit -----------------------------------------------------------------------------


def test_too_long_names_the_limit():
    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(SPEECH_WAV, max_seconds=2)

    error = caught.value
    assert isinstance(error, AudioError)
    assert error.limit_s == 2
    assert error.duration_s == pytest.approx(2.786, abs=0.01)
    assert str(error) == "The clip is 2.8 seconds long; the limit is 2 seconds"


def test_too_long_stops_decoding_early(tmp_path):
    # Read through a pipe the file's length is unknown, so the error can only report what was
    # decoded: a lower bound just past the limit, not the full minute.
    minute = tone(60.0, SAMPLE_RATE)[np.newaxis]
    path = write_audio(tmp_path / "long.ogg", minute, SAMPLE_RATE, FORMATS["ogg_opus"])

    with pytest.raises(AudioTooLongError) as caught:
        decode_audio(_Pipe(path.read_bytes()), max_seconds=2)

    assert caught.value.is_lower_bound
    assert 2.0 < caught.value.duration_s < 3.0
    assert str(caught.value) == "The clip is more than 2 seconds long; the limit is 2 seconds"


def test_default_limit_message():
    error = AudioTooLongError(750.0, DEFAULT_MAX_SECONDS)

    assert str(error) == "The clip is 12.5 minutes long; the limit is 10 minutes"


def test_the_default_limit_is_10_minutes_and_none_lifts_it(tmp_path):
    # Just over 10 minutes, in the smallest file that holds it: 8 kHz 8-bit mono, 5 MB.
    path = write_audio(
        tmp_path / "long.wav", tone(605.0, 8000)[np.newaxis], 8000, FORMATS["wav_u8"]
    )

    with pytest.raises(AudioTooLongError, match="the limit is 10 minutes"):
        decode_audio(path)
    assert len(decode_audio(path, max_seconds=None)) == 605 * WHISPER_RATE


# --- numpy input ------------------------------------------------------------------------------


def test_audio_from_int16_stereo_44k(speech):
    signal = resample(speech[np.newaxis], SAMPLE_RATE, 44100)[0]
    stereo = np.stack([signal, STEREO_RIGHT_GAIN * signal], axis=1)  # (n, channels), as Gradio
    pcm = np.round(stereo * 32767).astype(np.int16)

    audio = audio_from_array(pcm, 44100)

    assert_decodes_to(audio, speech, lossy=False, gain_=(1.0 + STEREO_RIGHT_GAIN) / 2)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        (np.array([0, 128, 255], dtype=np.uint8), [-1.0, 0.0, 127 / 128]),
        (np.array([-32768, 0, 16384], dtype=np.int16), [-1.0, 0.0, 0.5]),
        (np.array([-(2**31), 0, 2**30], dtype=np.int32), [-1.0, 0.0, 0.5]),
        (np.array([-2.0, 0.25, np.nan], dtype=np.float64), [-1.0, 0.25, 0.0]),
        (np.array([[0.5], [-0.5]], dtype=np.float32), [0.5, -0.5]),
        (np.array([[0.5, 0.25], [-0.5, 0.0]], dtype=np.float32), [0.375, -0.25]),
    ],
)
def test_audio_from_array_scaling(samples, expected):
    audio = audio_from_array(samples, SAMPLE_RATE)

    assert audio.dtype == np.float32
    np.testing.assert_allclose(audio, expected, atol=1e-6)


def test_audio_from_array_bad_input():
    with pytest.raises(EmptyAudioError):
        audio_from_array(np.zeros((0, 2), dtype=np.int16), 44100)
    with pytest.raises(AudioError, match="shaped"):
        audio_from_array(np.zeros((2, 2, 2), dtype=np.int16), 44100)
    with pytest.raises(AudioError, match="sample rate"):
        audio_from_array(np.zeros(10, dtype=np.int16), 0)
    with pytest.raises(AudioError, match="sample type"):
        audio_from_array(np.zeros(10, dtype=np.complex64), SAMPLE_RATE)


# --- silence ----------------------------------------------------------------------------------


def test_is_silent(speech):
    noise = np.random.default_rng(0).standard_normal(SAMPLE_RATE).astype(np.float32)
    noise *= 10 ** (-70 / 20)  # RMS at -70 dBFS

    assert is_silent(np.zeros(0, dtype=np.float32))
    assert is_silent(np.zeros(SAMPLE_RATE, dtype=np.float32))
    assert is_silent(noise)
    assert not is_silent(speech)
    # One short word in a long pause still counts as speech.
    assert not is_silent(np.concatenate([np.zeros(10 * SAMPLE_RATE, np.float32), speech]))
    # Shorter than one 30 ms frame.
    assert not is_silent(tone(0.01, SAMPLE_RATE))


def test_is_silent_threshold(speech):
    assert is_silent(speech, threshold_dbfs=-10.0)
    assert not is_silent(speech * 0.1, threshold_dbfs=-50.0)


# --- fuzz -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory, speech) -> list[bytes]:
    """Short valid files to mutate: the decoder paths a damaged upload would hit."""
    folder = tmp_path_factory.mktemp("fuzz")
    clip = speech[np.newaxis, : SAMPLE_RATE // 2]
    return [
        write_audio(
            folder / f"seed{FORMATS[name].suffix}", clip, SAMPLE_RATE, FORMATS[name]
        ).read_bytes()
        for name in ("wav_s16", "mp3", "ogg_opus", "m4a_aac")
    ]


@st.composite
def mutated(draw, valid_files: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(valid_files)))
    for _ in range(draw(st.integers(1, 8))):
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        action = draw(st.sampled_from(["flip", "overwrite", "delete", "insert", "truncate"]))
        if action == "flip" and data:
            data[position] ^= 1 << draw(st.integers(0, 7))
        elif action == "overwrite":
            data[position : position + 16] = draw(st.binary(min_size=1, max_size=16))
        elif action == "delete":
            del data[position : position + draw(st.integers(1, 512))]
        elif action == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=64))
        else:
            del data[position:]
    return bytes(data)


@settings(
    # WHISPER_FUZZ_EXAMPLES=50000 for a long run (see README, Reliability).
    max_examples=int(os.environ.get("WHISPER_FUZZ_EXAMPLES", "200")),
    deadline=None,
    database=None,  # keep .hypothesis/ out of the repository
    suppress_health_check=[HealthCheck.too_slow],
)
@given(data=st.data())
def test_fuzz_only_audio_errors(valid_files, data):
    source = data.draw(st.one_of(mutated(valid_files), st.binary(max_size=4096)))
    try:
        audio = decode_audio(source, max_seconds=5.0)
    except AudioError:
        return
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert np.isfinite(audio).all()
    assert np.abs(audio).max() <= 1.0


class _Pipe:
    """A binary stream that can only be read, like a socket or a pipe."""

    def __init__(self, data: bytes):
        self._buffer = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._buffer.read(size)
