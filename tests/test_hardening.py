"""Hardening: the launched app through its public API, with the real tiny.en, against what a
public Space meets: every common format, broken uploads, its limits, several people at once, a
crashed engine, a damaged model folder, and requests for files it must not serve.

Two apps serve these tests. The session's shared one (conftest's `studio_app`: a 12 s length
limit, and a 2 MB upload limit so that a 48 kHz stereo float WAV fits), which
test_app_api.py and test_app_browser.py use too, serves most of them; a small app of this
module's own, on a copy of the model folder with a queue of one and a short time limit,
serves the damaged-model, crashed-engine, time-limit and full-queue tests. test_app_api.py
already covers no audio, a text file named .wav, a silent clip, refusals at the length and
upload limits, options a model does not offer and two people at once; they are not repeated
here.

Every clip is made here from the shipped tests/data clips with tests/audio_factory.py.

Transcripts are compared whole, after normalize_text: greedy decoding gives the same words on
every run, so each clip has an exact expected sentence from both engines (found by running
tiny.en's original and quantized engines on these inputs). Only inputs that lose part of the
speech (cut files, an 8 kHz MP3) accept a short list of sentences, each explained.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.util
import os
import pickle
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import av
import httpx
import numpy as np
import psutil
import pytest
from app_server import MAX_FILE_SIZE_BYTES, MAX_SECONDS, ROOT, LaunchedApp, cmd, launched
from audio_factory import FORMATS, read_wav, resample, write_audio, write_video_only
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError, Status

from whisper_quant.metrics import normalize_text
from whisper_quant.settings import Settings

DATA = Path(__file__).parent / "data"
RATE = 16000  # of the shipped clips
# What both engines of tiny.en say for the shipped clips, normalised with the extra rules
# (metrics.EXTRA_RULES). goforward.wav's equals
# its normalised reference; the cards clips have a word heard wrong, as noted.
GOFORWARD = "go forward 10 meters"
CARDS = {
    "cards-001.wav": "10 of clubs",
    "cards-002.wav": "4 queen of clothes",  # reference: "four queen of clubs"
    "cards-003.wav": "7 of clubs",
    "cards-004.wav": "55",  # "5 5"; the extra rules join single digits, as in "five five"
    "cards-005.wav": "8 of spades 4 of close 7 of hearts",  # reference: "... four of clubs ..."
}
ENGINES = Settings().engines  # the app's engines by default, each in a worker process
WORD = "forward"  # a word of goforward.wav: no refused request may answer with it
PAGE_LIMIT_S = 10.0  # the page's answer while the engines work
SILENT = "(?i)no speech detected"  # the notice for a clip with nothing to transcribe
UNEXPECTED = "failed unexpectedly"  # the app's fallback for an error it did not foresee
# Bytes that would show a file leaked: /etc/passwd, app.py, a WAV, a model manifest, git.
LEAKS = (b"root:x:", b"Whisper Quantization Studio: original", b"RIFF", b'"sha256"', b"[core]")


# --- launching ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(studio_app) -> LaunchedApp:
    return studio_app


@pytest.fixture(scope="module")
def client(app) -> Client:
    return Client(app.url, verbose=False)


# The engines whose transcripts assert_transcripts reads. The format and bad-file tests are
# about how the upload is decoded and what the app answers, not about which engines run,
# so they ask for these two only: the default four cost twice the engine time per request.
DECODING_ENGINES = ("original", "quantized")


def compare(client: Client, path: Path, engines: tuple[str, ...] | None = None):
    """/compare on `path`: with `engines`, those only, else the app's default engines."""
    more = {} if engines is None else {"engines": list(engines)}
    return client.predict(
        handle_file(str(path)),
        "",
        "tiny.en",
        "auto-detect",
        "transcribe",
        **more,
        api_name="/compare",
    )


def submit(client: Client, path: Path):
    return client.submit(
        handle_file(str(path)), "", "tiny.en", "auto-detect", "transcribe", api_name="/compare"
    )


def assert_transcripts(result, *accepted: str) -> None:
    """Both engines' transcripts, normalised, are each one of the `accepted` sentences
    (default: GOFORWARD alone)."""
    accepted = accepted or (GOFORWARD,)
    heard = tuple(normalize_text(text, extra_rules=True) for text in result[:2])
    assert heard[0] in accepted and heard[1] in accepted, (heard, result[:2])


# --- clips --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """goforward.wav as float32 shaped (1, n) at 16 kHz, read without the code under test."""
    samples, rate = read_wav(DATA / "goforward.wav")
    assert rate == RATE
    return samples


def stereo(speech: np.ndarray) -> np.ndarray:
    # The right channel at half volume: a mix that takes one channel only still passes, but
    # the two channels are not identical.
    return np.vstack([speech[0], 0.5 * speech[0]])


def encode(folder: Path, samples: np.ndarray, fmt: str, rate: int = RATE, name="clip") -> Path:
    fmt_ = FORMATS[fmt]
    if rate != RATE:
        samples = resample(samples, RATE, rate)
    return write_audio(folder / f"{name}{fmt_.suffix}", samples, rate, fmt_)


def repeated(folder: Path, speech: np.ndarray, seconds: float, name: str) -> Path:
    """goforward.wav said over and over for at least `seconds`, as a 16-bit WAV."""
    times = int(np.ceil(seconds * RATE / speech.shape[1]))
    return encode(folder, np.tile(speech, times), "wav_s16", name=name)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory, speech) -> Path:
    """11.1 s of speech (goforward.wav 4 times): under the main app's limit, long enough to
    keep an engine busy."""
    return repeated(tmp_path_factory.mktemp("long"), speech, 11.0, "long")


# long_clip says GOFORWARD 4 times; both engines write it 3 times (every run here), a repeat
# that Whisper leaves out; all 4 are accepted too.
LONG_CLIP = tuple(" ".join([GOFORWARD] * times) for times in (3, 4))


# --- 1. formats ---------------------------------------------------------------------------


# A format at a rate whose transcript may differ from GOFORWARD: the sentences accepted.
# Every other case gives GOFORWARD. In the 8 kHz MP3 (MPEG-2.5 layer III, the lossiest file
# here) both engines hear the last word as "years" (every run here); "meters" is accepted
# too, since on another CPU the arithmetic may tip that word either way.
DEGRADED_FORMATS = {("mp3", 8000): (GOFORWARD, "go forward 10 years")}


def format_cases():
    for name in FORMATS:
        # FFmpeg's own Vorbis encoder (PyAV has no libvorbis) writes stereo only.
        channels = 2 if name == "ogg_vorbis" else 1
        yield pytest.param(name, 8000, channels, id=f"{name}-8000-{channels}ch")
        yield pytest.param(name, 48000, 2, id=f"{name}-48000-2ch")
    # A few of the rates in between.
    for name, rate, channels in (("wav_s16", 11025, 1), ("mp3", 22050, 2), ("m4a_aac", 44100, 1)):
        yield pytest.param(name, rate, channels, id=f"{name}-{rate}-{channels}ch")


@pytest.mark.integration
@pytest.mark.parametrize(("fmt", "rate", "channels"), list(format_cases()))
def test_every_format_is_transcribed(client, tmp_path, speech, fmt, rate, channels):
    samples = speech if channels == 1 else stereo(speech)
    result = compare(client, encode(tmp_path, samples, fmt, rate), DECODING_ENGINES)
    assert_transcripts(result, *DEGRADED_FORMATS.get((fmt, rate), (GOFORWARD,)))


# --- 2. bad files -------------------------------------------------------------------------


def _empty(folder: Path, speech) -> Path:
    path = folder / "empty.wav"
    path.write_bytes(b"")
    return path


def _header_only(folder: Path, speech) -> Path:
    path = folder / "header_only.wav"
    with av.open(str(path), mode="w", format="wav") as container:
        container.add_stream("pcm_s16le", rate=RATE, layout="mono")
        container.start_encoding()
    return path


def _cut(fmt: str, keep: Callable[[int], int]):
    def make(folder: Path, speech) -> Path:
        whole = encode(folder, speech, fmt, name="whole")
        data = whole.read_bytes()
        path = folder / f"cut{FORMATS[fmt].suffix}"
        path.write_bytes(data[: keep(len(data))])
        return path

    return make


def _random_bytes(suffix: str):
    def make(folder: Path, speech) -> Path:
        path = folder / f"noise{suffix}"
        path.write_bytes(np.random.default_rng(0).bytes(8192))
        return path

    return make


def _text_named_mp3(folder: Path, speech) -> Path:
    path = folder / "notes.mp3"
    path.write_text("Meeting notes: these are not audio.\n" * 20)
    return path


def _video_only(folder: Path, speech) -> Path:
    return write_video_only(folder / "silent_film.mp4", seconds=2.0)


def _speech_as(fmt: str, change: Callable[[np.ndarray], np.ndarray]):
    def make(folder: Path, speech) -> Path:
        return encode(folder, change(speech.copy()), fmt)

    return make


def _holes(samples: np.ndarray) -> np.ndarray:
    samples[0, 1000] = np.nan
    samples[0, 5000:5100] = np.inf
    samples[0, 9000] = -np.inf
    return samples


SILENCE = "silence"
DECODE_ERROR = "Could not decode the file as audio"
WHOLE = (GOFORWARD,)
# Half of a file keeps about the first 1.4 s of the 2.8 s clip, which ends inside "ten":
# the engines hear "go forward", and may hear the cut "ten" as "10" (in the cut WAV the
# original does and the quantized does not, every run here).
HALF = ("go forward", "go forward 10")
# name: (make the file, what the app must answer: the sentences accepted from both engines,
# SILENCE, or an error message pattern)
BAD_INPUTS = {
    "zero_bytes": (_empty, r"The file is empty \(0 bytes\)"),
    "wav_header_without_samples": (_header_only, SILENCE),
    "wav_truncated_half": (_cut("wav_s16", lambda n: n // 2), HALF),
    "mp3_truncated_half": (_cut("mp3", lambda n: n // 2), HALF),
    "opus_truncated_half": (_cut("ogg_opus", lambda n: n // 2), HALF),
    "m4a_truncated_half": (_cut("m4a_aac", lambda n: n // 2), HALF),
    # FFmpeg writes an mp4's index at the end: cut off, nothing can be located.
    "mp4_truncated_before_its_index": (_cut("mp4_video_aac", lambda n: n // 2), DECODE_ERROR),
    "wav_cut_inside_its_header": (_cut("wav_s16", lambda n: 40), DECODE_ERROR),
    "random_bytes.wav": (_random_bytes(".wav"), DECODE_ERROR),
    "random_bytes.mp3": (_random_bytes(".mp3"), DECODE_ERROR),
    "random_bytes.ogg": (_random_bytes(".ogg"), DECODE_ERROR),
    "random_bytes.m4a": (_random_bytes(".m4a"), DECODE_ERROR),
    "text_named.mp3": (_text_named_mp3, DECODE_ERROR),
    "video_without_audio_track": (_video_only, "No audio track found in the file"),
    "float_wav_with_nan_and_inf": (_speech_as("wav_flt", _holes), WHOLE),
    "float_wav_all_nan": (_speech_as("wav_flt", lambda s: np.full_like(s, np.nan)), SILENCE),
    "clipped_to_full_scale": (_speech_as("wav_s16", lambda s: np.clip(20 * s, -1, 1)), WHOLE),
    "float_wav_far_beyond_full_scale": (_speech_as("wav_flt", lambda s: 20 * s), WHOLE),
}


@pytest.mark.integration
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_a_bad_file_gets_a_message_or_what_can_be_heard(app, client, tmp_path, speech, case):
    make, expected = BAD_INPUTS[case]
    path = make(tmp_path, speech)
    offset = app.log_size()
    if isinstance(expected, tuple) or expected == SILENCE:
        result = compare(client, path, DECODING_ENGINES)
        if isinstance(expected, tuple):
            assert_transcripts(result, *expected)
        else:
            assert result[0] == result[1] == ""
            assert result[2]["data"] == []  # no engine ran
            assert re.search(SILENT, result[7])
    else:
        with pytest.raises(AppError, match=expected) as caught:
            compare(client, path, DECODING_ENGINES)
        assert UNEXPECTED not in str(caught.value)
    time.sleep(0.2)  # let the log catch up
    assert "Traceback" not in app.log_since(offset)


@pytest.mark.integration
def test_the_app_still_serves_after_bad_files(client):
    assert_transcripts(compare(client, DATA / "goforward.wav"))


# --- 3. limits ----------------------------------------------------------------------------


@pytest.mark.integration
def test_the_configured_length_limit_is_the_one_applied(client, tmp_path, speech, long_clip):
    too_long = repeated(tmp_path, speech, MAX_SECONDS + 1, "too_long")
    with pytest.raises(AppError, match=f"the limit is {MAX_SECONDS} seconds"):
        compare(client, too_long)
    # Refused at 13 s, where the default limit is 10 minutes; 11 s still passes.
    assert_transcripts(compare(client, long_clip), *LONG_CLIP)


@pytest.mark.integration
def test_the_configured_upload_limit_is_the_one_applied(app, tmp_path):
    def upload(size: int) -> int:
        path = tmp_path / f"{size}.wav"
        path.write_bytes(b"\0" * size)
        with open(path, "rb") as f:
            response = httpx.post(f"{app.url}gradio_api/upload", files={"files": f}, timeout=30)
        return response.status_code

    # Gradio's default is no limit and the app's own default 25 MB: 2.5 MB passes neither
    # unless this app's 2 MB is applied.
    assert MAX_FILE_SIZE_BYTES == 2_097_152
    assert upload(1_500_000) == 200
    assert upload(2_500_000) == 413


# --- 4. many users ------------------------------------------------------------------------

# Six clips with six different transcripts: each person must get their own.
USERS = {"goforward.wav": GOFORWARD, **CARDS}


@pytest.mark.integration
def test_six_people_at_once_each_get_their_answer_and_see_their_place(app):
    jobs = {name: submit(Client(app.url, verbose=False), DATA / name) for name in USERS}
    ranks: list[int] = []
    page_seconds: list[float] = []
    deadline = time.monotonic() + 240
    while not all(job.done() for job in jobs.values()) and time.monotonic() < deadline:
        statuses = [job.status() for job in jobs.values()]
        ranks += [s.rank for s in statuses if s.code == Status.IN_QUEUE and s.rank is not None]
        if any(s.code in (Status.PROCESSING, Status.PROGRESS) for s in statuses):
            page = ("", "config")[len(page_seconds) % 2]  # the page, then its config
            started = time.perf_counter()
            response = httpx.get(f"{app.url}{page}", timeout=10)
            page_seconds.append(time.perf_counter() - started)
            assert response.status_code == 200
        time.sleep(0.1)

    assert len(set(USERS.values())) == len(USERS)
    for name, expected in USERS.items():
        assert_transcripts(jobs[name].result(timeout=60), expected)
    assert ranks and max(ranks) >= 1, "no one saw a place in the queue"
    assert len(page_seconds) >= 3, "the page was not checked while the engines worked"
    print(f"page answered in {', '.join(f'{s:.2f}' for s in page_seconds)} s")
    # A generous bound: the page answers at once unless it waits for the engines' work.
    assert max(page_seconds) < PAGE_LIMIT_S, page_seconds


# --- 7. security --------------------------------------------------------------------------


def _file_routes(models_dir: Path) -> list[str]:
    secret_files = [
        "/etc/passwd",
        "app.py",
        str(ROOT / "app.py"),
        "tests/data/goforward.wav",
        str(DATA / "goforward.wav"),
        str(models_dir / "tiny.en" / "manifest.json"),
        str(models_dir / "tiny.en" / "original" / "model.safetensors"),
        str(ROOT / ".git" / "config"),
        "/proc/self/environ",
        "file:///etc/passwd",
        "//etc/passwd",
    ]
    routes = [f"/gradio_api/file={path}" for path in secret_files]
    routes += [f"/file={path}" for path in ("/etc/passwd", str(ROOT / "app.py"))]
    # Traversal, encoded and not (sent as written: see _get_raw).
    routes += [
        "/gradio_api/file=../../../../../../etc/passwd",
        "/gradio_api/file=..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
        "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/gradio_api/file=/tmp/gradio/../../etc/passwd",
        "/static/..%2f..%2f..%2fapp.py",
        "/assets/..%2f..%2f..%2fapp.py",
        "/../../../../etc/passwd",
        "/..%2f..%2f..%2f..%2fetc%2fpasswd",
    ]
    return routes


def _get_raw(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (httpx and browsers would resolve the ../ first)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.integration
def test_no_file_outside_what_the_app_serves_can_be_fetched(app, built_tiny_en):
    for route in _file_routes(built_tiny_en.folder.parent):
        status, body = _get_raw(app.url, route)
        assert status in (403, 404), (route, status, body[:200])
        assert not any(leak in body for leak in LEAKS), (route, body[:200])


def _call_raw(app: LaunchedApp, audio) -> str:
    """Call /compare over plain HTTP, as a client that sends whatever it likes would."""
    endpoint = f"{app.url}gradio_api/call/compare"
    response = httpx.post(
        endpoint, json={"data": [audio, "", "tiny.en", "auto-detect", "transcribe"]}, timeout=30
    )
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text}"
    return httpx.get(f"{endpoint}/{response.json()['event_id']}", timeout=120).text


def _file_data(path: str, url: str | None = None) -> dict:
    data = {"path": path, "meta": {"_type": "gradio.FileData"}}
    return data if url is None else {**data, "url": url}


@pytest.mark.integration
def test_the_audio_input_never_names_a_file_on_the_server(app, built_tiny_en):
    speech_on_server = str(DATA / "goforward.wav")
    inputs = [
        "/etc/passwd",
        "app.py",
        speech_on_server,
        _file_data("/etc/passwd"),
        _file_data(speech_on_server),  # audio it could transcribe, were it allowed to read it
        _file_data("../../../../../.." + speech_on_server),
        _file_data(str(built_tiny_en.folder / "manifest.json")),
        # URLs the server would fetch itself: its own file route, a file: URL.
        _file_data(f"{app.url}gradio_api/file=/etc/passwd"),
        _file_data("x.wav", f"{app.url}gradio_api/file=/etc/passwd"),
        _file_data("file:///etc/passwd", "file:///etc/passwd"),
    ]
    for audio in inputs:
        offset = app.log_size()
        answer = _call_raw(app, audio)
        assert "event: complete" not in answer, (audio, answer[:300])
        assert "event: error" in answer or answer.startswith("HTTP 4"), (audio, answer[:300])
        assert not any(leak.decode() in answer for leak in LEAKS), (audio, answer[:300])
        assert WORD not in answer.lower(), (audio, answer[:300])
        time.sleep(0.2)
        # The handler logs every refusal: it never even saw these paths (Gradio refused them).
        assert "request refused" not in app.log_since(offset), audio


def _app_module(monkeypatch):
    """app.py imported as a module (not run: its page is built, nothing is launched)."""
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    spec = importlib.util.spec_from_file_location("studio_app_under_test", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_app_deletes_old_uploads(monkeypatch):
    # Gradio keeps every upload until the server stops unless delete_cache is set.
    frequency, age = _app_module(monkeypatch).demo.delete_cache
    assert 0 < frequency <= age <= 24 * 3600


# --- 6. models on disk, 3. the queue: an app of their own ---------------------------------


@dataclass
class ModelCopy:
    """A copy of a built model folder that tests may damage; big files are hard links.

    A file is damaged by replacing it, never by writing through a link, so the built model
    the copy shares its files with is never touched.
    """

    source: Path
    folder: Path
    touched: set[str] = field(default_factory=set)

    @classmethod
    def of(cls, source: Path, folder: Path) -> ModelCopy:
        shutil.copytree(source, folder, copy_function=_link_or_copy)
        return cls(source, folder)

    def damage(self, kind: str) -> None:
        self.repair()
        rel = DAMAGES[kind][0]
        path = self.folder / rel
        data = path.read_bytes() if path.exists() else b""
        self.touched.add(rel)
        path.unlink(missing_ok=True)
        if kind == "truncated":
            path.write_bytes(data[: len(data) // 2])
        elif kind == "altered":  # same size: only the checksum can tell
            middle = len(data) // 2
            path.write_bytes(data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :])
        elif kind == "pickle":
            path.write_bytes(pickle.dumps(_Trap(self.folder.parent / "unpickled")))
        elif kind == "edited":  # a small file edited by hand: valid JSON of another size
            path.write_text(data.decode().replace("{", '{"tampered": true, ', 1))

    def repair(self) -> None:
        for rel in self.touched:
            path = self.folder / rel
            path.unlink(missing_ok=True)
            if (self.source / rel).exists():
                _link_or_copy(self.source / rel, path)
        self.touched.clear()


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


class _Trap:
    """Unpickling this creates a file: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


# The small app's time limit. The tests that hit it hang the engines (SIGSTOP) and wait it
# out, so it is short; requests that must succeed fit in it with room to spare: a killed
# engine restarts before the request's clock starts (compare.Studio.compare), and the four
# engines take about 1.5 s on goforward.wav or cards-005.wav on 2 idle cores, four times
# under the limit (up to about 9 s measured with the cores shared with other work, as when a
# benchmark runs beside the tests: set WHISPER_TEST_TIME_LIMIT_S=12 or more there).
TIME_LIMIT_S = float(os.environ.get("WHISPER_TEST_TIME_LIMIT_S", "6"))
REBUILD = r"Rebuild it with: python build_model\.py --model tiny\.en --output-dir \S+ --force"
# kind: (the file, what the refusal says about it)
DAMAGES = {
    "missing": ("original/model.safetensors", r"original/model\.safetensors is missing"),
    "truncated": (
        "quantized/decoder_model_merged.onnx",
        r"quantized/decoder_model_merged\.onnx in \S+ has \d+ bytes, its manifest says \d+",
    ),
    "altered": (
        "quantized/encoder_model.onnx",
        r"quantized/encoder_model\.onnx in \S+ does not match its manifest checksum",
    ),
    "pickle": (
        "original/pytorch_model.bin",
        r"original/pytorch_model\.bin is not a safetensors, ONNX or JSON file; pickled "
        r"weights are never loaded",
    ),
    "edited": (
        "quantized/config.json",
        r"quantized/config\.json in \S+ has \d+ bytes, its manifest says \d+",
    ),
}


@pytest.fixture(scope="module")
def model_copy(built_tiny_en, tmp_path_factory) -> ModelCopy:
    models = tmp_path_factory.mktemp("models-copy")
    return ModelCopy.of(built_tiny_en.folder, models / built_tiny_en.folder.name)


@pytest.fixture(scope="module")
def small_app(model_copy, tmp_path_factory) -> Iterator[LaunchedApp]:
    """An app on the model copy, with a queue of one and a time limit of TIME_LIMIT_S.

    It starts with the copy damaged, so no engine loads: the app checks the folder when a
    request needs the engines, and each damage test below damages the copy before asking.
    Tests that need the model working repair it first; they come after the damage tests.
    """
    model_copy.damage("missing")
    folder = tmp_path_factory.mktemp("small-app")
    (folder / "gradio").mkdir()
    with launched(
        model_copy.folder.parent,
        folder / "app.log",
        WHISPER_MAX_QUEUE="1",
        WHISPER_REQUEST_TIMEOUT_S=f"{TIME_LIMIT_S:g}",
        GRADIO_TEMP_DIR=str(folder / "gradio"),
    ) as launched_app:
        yield launched_app


@pytest.mark.integration
@pytest.mark.parametrize("kind", list(DAMAGES))
def test_a_damaged_model_is_refused_naming_the_file_and_the_rebuild(small_app, model_copy, kind):
    model_copy.damage(kind)
    with pytest.raises(AppError, match=DAMAGES[kind][1] + r".*" + REBUILD):
        compare(Client(small_app.url, verbose=False), DATA / "goforward.wav")
    assert not (model_copy.folder.parent / "unpickled").exists()
    assert small_app.engine_workers() == []  # nothing was loaded


@pytest.mark.integration
def test_a_repaired_model_is_served_again(small_app, model_copy):
    model_copy.repair()
    assert_transcripts(compare(Client(small_app.url, verbose=False), DATA / "goforward.wav"))


@contextlib.contextmanager
def hung_engines(app: LaunchedApp) -> Iterator[list[psutil.Process]]:
    """Suspend the engine workers (SIGSTOP), as if every engine hung; resume them after."""
    workers = app.engine_workers()
    assert len(workers) == len(ENGINES), [cmd(p) for p in workers]
    for worker in workers:
        worker.suspend()
    try:
        yield workers
    finally:
        for worker in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                worker.resume()


def ready(app: LaunchedApp, model_copy: ModelCopy) -> Client:
    """A client of `app` with the model repaired and its engines running."""
    model_copy.repair()
    client = Client(app.url, verbose=False)
    if len(app.engine_workers()) < len(
        ENGINES
    ):  # not loaded yet, or one stopped: a request starts it
        assert_transcripts(compare(client, DATA / "goforward.wav"))
    return client


def wait_until_running(job, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while job.status().code not in (Status.PROCESSING, Status.PROGRESS):
        assert time.monotonic() < deadline, job.status()
        time.sleep(0.05)


# --- 5. a crashed engine ------------------------------------------------------------------


def _busy_worker(workers: list[psutil.Process], timeout: float) -> psutil.Process:
    """The first worker seen using CPU (transcribing), checked every 50 ms."""
    deadline = time.monotonic() + timeout
    used = {p.pid: sum(p.cpu_times()[:2]) for p in workers}
    while time.monotonic() < deadline:
        time.sleep(0.05)
        for p in workers:
            now = sum(p.cpu_times()[:2])
            if now - used[p.pid] > 0.02:
                return p
            used[p.pid] = now
    raise AssertionError("no engine worker got busy")


@pytest.mark.integration
def test_a_killed_engine_fails_its_request_then_restarts(small_app, model_copy, long_clip):
    # On the small app: the shared one may serve a variant more than the default engines.
    client = ready(small_app, model_copy)
    workers = small_app.engine_workers()
    assert len(workers) == len(ENGINES), [cmd(p) for p in workers]
    job = submit(Client(small_app.url, verbose=False), long_clip)
    victim = _busy_worker(workers, timeout=60)
    victim.kill()
    with pytest.raises(AppError, match=r"stopped while transcribing.*restarts on the next"):
        job.result(timeout=120)

    assert_transcripts(compare(client, DATA / "goforward.wav"))
    restarted = small_app.engine_workers()
    assert len(restarted) == len(ENGINES)
    assert victim.pid not in {p.pid for p in restarted}


@pytest.mark.integration
def test_a_hung_engine_is_stopped_at_the_time_limit_and_comes_back(small_app, model_copy):
    # The message, when it comes, and that the engine returns.
    client = ready(small_app, model_copy)
    offset = small_app.log_size()
    with hung_engines(small_app):
        started = time.monotonic()
        with pytest.raises(
            AppError, match=f"took longer than the {TIME_LIMIT_S:g} s limit.*restarts on the next"
        ):
            compare(client, DATA / "goforward.wav")
        waited = time.monotonic() - started
    # The overrunning worker is killed at once, so the answer comes at the limit; a hung
    # engine left running would hold the request until the engines are resumed below.
    print(f"answered after {waited:.2f} s")
    assert TIME_LIMIT_S <= waited < TIME_LIMIT_S + 10
    assert_transcripts(compare(client, DATA / "goforward.wav"))
    assert "Traceback" not in small_app.log_since(offset)


@pytest.mark.integration
def test_an_engine_that_finishes_after_the_time_limit_ends_quietly(small_app, model_copy):
    client = ready(small_app, model_copy)
    offset = small_app.log_size()
    with hung_engines(small_app):
        job = submit(client, DATA / "goforward.wav")
        wait_until_running(job)
        time.sleep(TIME_LIMIT_S + 1.5)  # past the limit: the running engine is killed
    with pytest.raises(AppError, match="took longer than"):
        job.result(timeout=60)
    time.sleep(1.0)
    assert "Traceback" not in small_app.log_since(offset)


@pytest.mark.integration
def test_a_full_queue_refuses_new_submissions(small_app, model_copy):
    client = ready(small_app, model_copy)
    with hung_engines(small_app):
        busy = submit(client, DATA / "goforward.wav")
        wait_until_running(busy)
        # One more request may wait (WHISPER_MAX_QUEUE=1); the next ones are refused at once.
        jobs = [
            submit(Client(small_app.url, verbose=False), DATA / "cards-005.wav") for _ in range(5)
        ]
        deadline = time.monotonic() + 30
        while sum(job.done() for job in jobs) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
    refused = []
    served = []
    for job in jobs:
        try:
            served.append(job.result(timeout=60))
        except QueueError as e:
            refused.append(str(e))
    assert len(refused) == 4 and all("Queue is full" in m for m in refused), refused
    assert len(served) == 1
    assert_transcripts(served[0], CARDS["cards-005.wav"])
    assert_transcripts(busy.result(timeout=60))


# --- the app's exit (last: it stops the small app) ----------------------------------------


@pytest.mark.integration
def test_sigint_stops_the_app_at_once_and_deletes_the_uploads(small_app, model_copy):
    """Ctrl-C with a client connected (its heartbeat stream open): the app stops within a
    few seconds, where Gradio waited 5 s for the stream (6.1 s measured), and its shutdown
    still deletes what was uploaded. The engine workers go with it."""
    client = ready(small_app, model_copy)
    assert_transcripts(compare(client, DATA / "goforward.wav"))
    temp = small_app.log.parent / "gradio"  # the small app's GRADIO_TEMP_DIR
    assert any(p.is_file() for p in temp.rglob("*")), "nothing was uploaded"
    workers = small_app.engine_workers()
    app = psutil.Process(small_app.pid)
    started = time.monotonic()
    app.send_signal(signal.SIGINT)
    app.wait(timeout=30)
    stopped = time.monotonic() - started
    print(f"stopped in {stopped:.2f} s")
    assert stopped < 4, stopped
    assert not [p for p in temp.rglob("*") if p.is_file()]
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    assert "Traceback" not in small_app.log.read_text(errors="replace").split("closing server")[-1]
