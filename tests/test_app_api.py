"""The app through its public API: `python app.py` launched as a Space launches it, driven by
gradio_client, with the real tiny.en model.

The app is the session's shared one (conftest's `studio_app`), with a 12 s length limit and a
2 MB upload limit so that those limits can be tested with small files. A damaged model and
the time limit need an app of their own: test_hardening.py's small app tests both.
"""

from __future__ import annotations

import json
import re
import threading
import wave
from pathlib import Path

import httpx
import numpy as np
import pytest
from app_server import MAX_FILE_SIZE_BYTES, MAX_SECONDS
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from whisper_quant.engines import engine_class
from whisper_quant.settings import Settings
from whisper_quant.views import RESULT_HEADERS, SPEECH_COVERAGE, SPEEDUP_VS_PYTORCH

pytestmark = pytest.mark.integration

# compare's outputs: 11 of the contract, then the report files, the variants view and the
# language identification, each added at the end.
OUTPUTS = 14
# The default variants' rows (WHISPER_ENGINES' default), in the registry's order.
DEFAULT_LABELS = [engine_class(name).label for name in Settings().engines]


def write_wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def tone(seconds: float, rate: int = 16000) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return 0.3 * np.sin(2 * np.pi * 440 * t)


@pytest.fixture(scope="module")
def app_url(studio_app):
    return studio_app.url


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def compare(
    client,
    audio,
    reference="",
    model="tiny.en",
    language="auto-detect",
    task="transcribe",
    **more,
):
    audio = handle_file(str(audio)) if audio is not None else None
    return client.predict(audio, reference, model, language, task, **more, api_name="/compare")


def rows(result) -> list[list]:
    return result[2]["data"]


def test_compare_and_compare_batch_are_the_public_endpoints_with_documented_inputs(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert list(api["named_endpoints"]) == ["/compare", "/compare_batch"]
    batch = api["named_endpoints"]["/compare_batch"]
    assert [p["parameter_name"] for p in batch["parameters"]] == [
        "files",
        "references",
        "model",
        "language",
        "task",
        "engines",
    ]
    batch_defaults = {p["parameter_name"]: p.get("parameter_default") for p in batch["parameters"]}
    assert batch_defaults["engines"] == list(Settings().engines)
    compare_api = api["named_endpoints"]["/compare"]
    names = [p["parameter_name"] for p in compare_api["parameters"]]
    # The first five are the contract's original inputs, in their order; new ones follow.
    assert names == [
        "audio",
        "reference",
        "model",
        "language",
        "task",
        "condition_on_previous_text",
        "temperature_fallback",
        "language_per_window",
        "engines",
        "batch_windows",
    ]
    defaults = {p["parameter_name"]: p.get("parameter_default") for p in compare_api["parameters"]}
    assert defaults["reference"] == ""
    assert defaults["model"] == "tiny.en"
    assert defaults["language"] == "auto-detect"
    assert defaults["task"] == "transcribe"
    assert defaults["condition_on_previous_text"] is True
    assert defaults["temperature_fallback"] is True
    assert defaults["language_per_window"] is False
    assert defaults["engines"] == list(Settings().engines)  # the page's default selection
    assert defaults["batch_windows"] == 1  # sequential windows unless asked
    outputs = [r["label"] for r in compare_api["returns"]]
    assert outputs[:3] == ["Original (PyTorch fp32)", "Quantized (ONNX int8) transcript", "Results"]
    assert outputs[8] == "Segments"
    assert len(outputs) == OUTPUTS
    assert outputs[11].startswith("Report of this run (JSON, Markdown)")
    assert outputs[13] == "Language identification"


def test_both_engines_transcribe_a_clip_and_are_measured(client, clip, references):
    result = compare(client, clip("goforward.wav"), references["goforward.wav"])
    original, quantized, table = result[0], result[1], result[2]
    assert "forward" in original.lower()
    assert "forward" in quantized.lower()
    assert table["headers"][:2] == ["Engine", "Latency (ms)"]
    # The columns added since the first contract come last.
    assert table["headers"] == list(RESULT_HEADERS)
    assert table["headers"][-2:] == [SPEEDUP_VS_PYTORCH, SPEECH_COVERAGE]
    assert [row[0] for row in table["data"]] == [
        "Original (PyTorch fp32)",
        "PyTorch fp32, same loop",
        "ONNX fp32 (no quantization)",
        "Quantized (ONNX int8)",
    ]
    # The summary gives the speed-up against pytorch, like for like, and splits the stock
    # figure three ways; it shows each worker's memory as total - baseline.
    summary = result[6]
    assert "Quantized vs PyTorch through the same loop (like for like)" in summary
    for part in ("generate's own extra passes", "from the runtime and graphs", "from int8"):
        assert part in summary, part
    assert len(re.findall(r"\d+ − \d+ = \d+", summary)) == len(Settings().engines)
    headers = table["headers"]
    for row in table["data"]:
        assert row[headers.index("Latency (ms)")] > 0
        assert row[headers.index("Memory held (MiB)")] > 0
        assert "%" in row[headers.index("WER vs reference")]
        assert re.fullmatch(r"\d+\.\d\dx", row[headers.index(SPEEDUP_VS_PYTORCH)]), row
        assert re.fullmatch(
            r"\d+\.\d s \((reference|\d+\.\d%)\)", row[headers.index(SPEECH_COVERAGE)]
        ), row
    # An English-only model identifies no language: nothing is shown.
    assert result[13] == ""
    # The highlighted quantized transcript joins back to the quantized text.
    assert "".join(t["token"] for t in result[3]) == quantized
    assert "tiny.en" in result[6]
    assert result[7] == ""  # no notice
    # Segments per engine, with timestamps inside the clip, and files to download.
    segments = result[8]
    assert set(segments) == {"original", "pytorch", "onnx-fp32", "quantized"}
    for engine, items in segments.items():
        assert items and all(0 <= s["start"] <= s["end"] <= 2.8 for s in items), engine
        assert {"start", "end", "text", "language", "temperature"} <= set(items[0]), engine
    names = sorted(Path(f).name for f in result[9])
    assert names == sorted(f"tiny.en-{e}.{x}" for e in segments for x in ("srt", "vtt", "json"))
    srt = next(Path(f) for f in result[9] if f.endswith("quantized.srt")).read_text()
    assert srt.startswith("1\n00:00:00,000 --> 00:00:0") and "forward" in srt.lower()
    assert "→" in result[10]  # the page's timestamped view


# tiny.en is built with ct2/ (faster-whisper's), and faster-whisper is a dev requirement.
FOUR = ["original", "onnx-fp32", "quantized", "faster-whisper"]
FOUR_LABELS = [
    "Original (PyTorch fp32)",
    "ONNX fp32 (no quantization)",
    "Quantized (ONNX int8)",
    "faster-whisper (CTranslate2 int8)",
]


def test_chosen_variants_each_get_a_row_a_transcript_and_a_place_in_the_report(
    client, clip, references
):
    # Chosen in another order: the results come in the registry's order.
    chosen = [FOUR[3], FOUR[2], FOUR[0], FOUR[1]]
    result = compare(client, clip("goforward.wav"), references["goforward.wav"], engines=chosen)
    assert len(result) == OUTPUTS
    table = result[2]
    assert [row[0] for row in table["data"]] == FOUR_LABELS
    assert set(result[8]) == set(FOUR)  # segments per engine
    assert sorted(Path(f).name for f in result[9]) == sorted(
        f"tiny.en-{e}.{x}" for e in FOUR for x in ("srt", "vtt", "json")
    )
    # The latency and memory charts have a bar per variant.
    for chart in (result[4], result[5]):
        assert [row[0] for row in chart["data"]] == FOUR_LABELS, chart
    # The variants view: each engine's transcript, with the diff against the original.
    view = result[12]
    for engine, label in zip(FOUR, FOUR_LABELS, strict=True):
        assert f'data-engine="{engine}"' in view and label in view
    assert "forward" in view.lower()
    # The report: JSON and Markdown, with the table's figures exactly as the page shows them.
    report_json, report_md = sorted(result[11], key=lambda f: not f.endswith(".json"))
    assert Path(report_json).name == "tiny.en-report.json"
    assert Path(report_md).name == "tiny.en-report.md"
    report = json.loads(Path(report_json).read_text(encoding="utf-8"))
    assert report["model"] == "tiny.en" and report["synthetic"] is False
    assert report["table_headers"] == table["headers"]
    assert report["table"] == table["data"]
    assert [v["engine"] for v in report["variants"]] == FOUR
    assert [v["transcript"] for v in report["variants"]][0] == result[0]
    assert report["variants"][2]["recipe"]["method"]  # the manifest's settings of the recipe
    assert report["quantization"]["preset"]
    assert report["order_seed"] is not None and sorted(report["order"]) == sorted(FOUR)
    assert report["cpu"]["threads_per_engine"] == Settings().threads
    assert {"gradio", "onnxruntime", "torch"} <= set(report["runtime_versions"])
    assert report["speedup"]["quantized_vs_original"] is not None
    # pytorch was not chosen: the like-for-like column says it fell back to the original.
    assert report["speedup"]["quantized_vs_pytorch"] is None
    speedups = [row[table["headers"].index(SPEEDUP_VS_PYTORCH)] for row in table["data"]]
    assert all(cell.endswith("vs original (pytorch did not run)") for cell in speedups), speedups
    markdown = Path(report_md).read_text(encoding="utf-8")
    for label in FOUR_LABELS:
        assert f"| {label} |" in markdown


def test_the_original_must_be_among_the_chosen_variants(client, clip):
    with pytest.raises(AppError, match="Keep 'original' among the engines"):
        compare(client, clip("goforward.wav"), engines=["onnx-fp32", "quantized"])
    with pytest.raises(AppError, match=r"not in the list of choices: \['original'"):
        compare(client, clip("goforward.wav"), engines=["original", "int9-imaginary"])


def test_without_the_quantized_variant_its_two_outputs_are_empty(client, clip):
    result = compare(client, clip("goforward.wav"), engines=["original", "onnx-fp32"])
    assert [row[0] for row in rows(result)] == FOUR_LABELS[:2]
    assert "forward" in result[0].lower()
    assert result[1] == "" and not result[3]  # the quantized transcript and its diff
    assert 'data-engine="onnx-fp32"' in result[12]


def test_the_old_positional_call_still_runs_the_default_variants(client, clip):
    audio = handle_file(str(clip("goforward.wav")))
    result = client.predict(audio, "", "tiny.en", "auto-detect", "transcribe", api_name="/compare")
    assert len(result) == OUTPUTS
    assert [row[0] for row in rows(result)] == DEFAULT_LABELS  # WHISPER_ENGINES' default
    result = client.predict(
        audio, "", "tiny.en", "auto-detect", "transcribe", True, True, False, api_name="/compare"
    )
    assert len(rows(result)) == len(Settings().engines)


def test_batch_windows_decode_the_clip_in_chunks(client, clip, references):
    result = compare(client, clip("goforward.wav"), references["goforward.wav"], batch_windows=2)
    assert len(result) == OUTPUTS
    assert len(rows(result)) == len(Settings().engines)
    assert "go forward" in result[0].lower()  # the original's transcript


def test_no_audio_is_refused_with_a_plain_message(client):
    with pytest.raises(AppError, match="Upload or record audio first"):
        compare(client, None)


def test_a_file_that_is_not_audio_is_refused(client, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("These are meeting notes, not a recording.\n" * 20)
    with pytest.raises(AppError, match="(?i)could not decode the file as audio"):
        compare(client, fake)


def test_a_silent_clip_gives_empty_transcripts_and_a_notice(client, tmp_path):
    silent = write_wav(tmp_path / "silence.wav", np.zeros(2 * 16000))
    result = compare(client, silent)
    assert result[0] == "" and result[1] == ""
    assert rows(result) == []  # no engine ran, so nothing was measured
    assert "no speech" in result[7].lower()


def test_a_clip_over_the_length_limit_is_refused_naming_the_limit(client, tmp_path):
    long = write_wav(tmp_path / "long.wav", tone(MAX_SECONDS + 1))
    with pytest.raises(AppError, match=f"limit is {MAX_SECONDS} seconds"):
        compare(client, long)


def test_a_file_over_the_upload_limit_is_refused(app_url, client, tmp_path):
    big = write_wav(tmp_path / "big.wav", tone(70))  # 2.2 MB, over the 2 MB limit
    # The app publishes its limit, so the client refuses before uploading...
    with pytest.raises(ValueError, match=f"maximum file size of {MAX_FILE_SIZE_BYTES} bytes"):
        compare(client, big)
    # ...and the server refuses the upload from anyone who does not check.
    with open(big, "rb") as f:
        response = httpx.post(f"{app_url}gradio_api/upload", files={"files": f}, timeout=30)
    assert response.status_code == 413


def test_options_the_model_does_not_offer_are_refused(client, clip):
    with pytest.raises(AppError, match="English-only"):
        compare(client, clip("goforward.wav"), task="translate")
    with pytest.raises(AppError, match="not in the list of choices"):
        compare(client, clip("goforward.wav"), model="no-such-model")


def test_two_people_at_once_each_get_their_own_answer(app_url, clip):
    clips = {"goforward.wav": "forward", "cards-005.wav": "spades"}
    answers: dict[str, object] = {}

    def ask(name: str) -> None:
        try:
            answers[name] = compare(Client(app_url, verbose=False), clip(name))
        except Exception as e:  # noqa: BLE001 - reported by the assertion below
            answers[name] = e

    threads = [threading.Thread(target=ask, args=(name,)) for name in clips]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    for name, word in clips.items():
        result = answers[name]
        assert not isinstance(result, Exception), result
        assert word in result[0].lower() and word in result[1].lower(), (name, result[:2])
        other = next(w for n, w in clips.items() if n != name)
        assert other not in result[0].lower()


def test_the_app_still_serves_after_bad_requests(client, clip):
    # Runs last in this module: every refusal above must have left the app working.
    result = compare(client, clip("goforward.wav"))
    assert result[0] == result[1] == "Go forward 10 meters."
    assert len(rows(result)) == len(Settings().engines)


def test_a_remote_url_as_audio_is_refused_before_anything_is_fetched(app_url, client):
    """A URL that could never be fetched (.invalid does not resolve, RFC 2606): the refusal
    must name remote URLs, not a failed download, so no fetch was attempted."""
    url = "https://audio.invalid/a-very-large-file.wav"
    remote = {"path": url, "url": url, "meta": {"_type": "gradio.FileData"}, "orig_name": "a.wav"}
    with pytest.raises(AppError, match="remote URLs are not fetched"):
        client.predict(remote, "", "tiny.en", "auto-detect", "transcribe", api_name="/compare")


def test_the_audio_input_refuses_remote_urls_without_a_request(monkeypatch):
    """In-process: the page's audio component raises before Gradio's downloader is called."""
    import asyncio
    import importlib.util

    import gradio as gr
    from gradio import processing_utils

    fetched: list[str] = []

    async def download(url, cache_dir):  # Gradio's downloader, recorded instead of run
        fetched.append(url)
        return "/nonexistent"

    monkeypatch.setattr(processing_utils, "async_ssrf_protected_download", download)
    monkeypatch.setattr(processing_utils, "save_url_to_cache", lambda url, cache_dir: url)
    spec = importlib.util.spec_from_file_location(
        "app_for_url_test", Path(__file__).resolve().parent.parent / "app.py"
    )
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    for url in ("https://audio.invalid/x.wav", "http://203.0.113.7/x.mp3", "HTTPS://A.INVALID/"):
        with pytest.raises(gr.Error, match="remote URLs are not fetched"):
            asyncio.run(app.audio.async_move_resource_to_block_cache(url))
        with pytest.raises(gr.Error, match="remote URLs are not fetched"):
            app.audio.move_resource_to_block_cache(url)
    assert fetched == []


def test_compare_batch_scores_several_clips_with_intervals(client, clip, tmp_path):
    refs = tmp_path / "refs.csv"
    refs.write_text(
        "file_name,transcription\n"
        "goforward.wav,go forward ten meters\n"
        "cards-005.wav,eight of spades four of clubs seven of hearts\n"
    )
    broken = tmp_path / "broken.wav"
    broken.write_text("not audio")
    engines, clips, downloads, summary = client.predict(
        [handle_file(str(clip("goforward.wav"))), handle_file(str(clip("cards-005.wav")))]
        + [handle_file(str(broken))],
        handle_file(str(refs)),
        "tiny.en",
        "auto-detect",
        "transcribe",
        api_name="/compare_batch",
    )
    assert [row[0] for row in engines["data"]] == DEFAULT_LABELS  # WHISPER_ENGINES' default
    headers = engines["headers"]
    # Two clips are too few for an interval (stats.MIN_INTERVAL_UNITS): a rate and its n.
    for row in engines["data"]:
        assert row[headers.index("WER [95% CI]")].endswith("% (n=2)")
    quantized = engines["data"][DEFAULT_LABELS.index("Quantized (ONNX int8)")]
    assert quantized[headers.index("WER − original [95% CI]")].endswith("% (n=2)")
    assert [row[0] for row in clips["data"]] == ["goforward.wav", "cards-005.wav", "broken.wav"]
    assert "13 reference words" in summary  # normalised: "go forward 10 meters" + 9
    assert "broken.wav" in summary
    assert sorted(Path(f).name for f in downloads) == ["batch.csv", "batch.json"]


def test_compare_batch_runs_the_chosen_variants_only(client, clip):
    engines, clips, _, _ = client.predict(
        [handle_file(str(clip("goforward.wav")))],
        None,
        "tiny.en",
        "auto-detect",
        "transcribe",
        engines=["quantized", "original"],
        api_name="/compare_batch",
    )
    assert [row[0] for row in engines["data"]] == [
        "Original (PyTorch fp32)",
        "Quantized (ONNX int8)",
    ]
    assert not any(h.startswith("onnx-fp32") for h in clips["headers"])
    with pytest.raises(AppError, match="Keep 'original' among the engines"):
        client.predict(
            [handle_file(str(clip("goforward.wav")))],
            None,
            "tiny.en",
            "auto-detect",
            "transcribe",
            engines=["quantized"],
            api_name="/compare_batch",
        )


def test_compare_batch_without_files_says_what_to_upload(client):
    with pytest.raises(AppError, match="Upload clips"):
        client.predict([], None, "tiny.en", "auto-detect", "transcribe", api_name="/compare_batch")
