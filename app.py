"""Whisper Quantization Studio: original Whisper and its int8 ONNX copy on the same clip.

`python app.py` builds the default model if none is built, loads and warms up its engines,
then serves the page (a Space runs exactly this). Settings come from WHISPER_* environment
variables, listed in src/whisper_quant/service.py; GRADIO_SERVER_NAME and GRADIO_SERVER_PORT
choose the address.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from whisper_quant.build import BuildError  # noqa: E402
from whisper_quant.cli import configure_logging  # noqa: E402
from whisper_quant.compare import ORIGINAL, QUANTIZED  # noqa: E402
from whisper_quant.engines import EngineError  # noqa: E402
from whisper_quant.manifest import ModelIntegrityError  # noqa: E402
from whisper_quant.measure import MEMORY_METHOD, timing_method  # noqa: E402
from whisper_quant.metrics import DIFF_ADDED, DIFF_CHANGED, DIFF_MISSING, word_diff  # noqa: E402
from whisper_quant.report import (  # noqa: E402
    LATENCY_METRIC,
    MEMORY_METRIC,
    TABLE_HEADERS,
    chart_rows,
    table_rows,
)
from whisper_quant.service import (  # noqa: E402
    AUTO_DETECT,
    README_SECTION,
    StudioSwitcher,
    language_label,
    measurement_note,
    summary,
    transcript,
)
from whisper_quant.settings import Settings  # noqa: E402

logger = logging.getLogger("whisper_quant.app")

SETTINGS = Settings.from_env()
POOL = StudioSwitcher(SETTINGS)  # starts nothing until the first request or ensure_ready()

EXAMPLES_DIR = ROOT / "examples"
BAR_STYLE = {"x_title": " ", "color_title": " ", "colors_in_legend": [], "height": 260}
DIFF_COLORS = {DIFF_CHANGED: "#f59e0b", DIFF_ADDED: "#3b82f6", DIFF_MISSING: "#ef4444"}

# Errors whose message is written for the person using the page (AudioError and the
# option and settings errors are ValueErrors; crashes and timeouts are EngineErrors).
USER_ERRORS = (ValueError, ModelIntegrityError, BuildError, EngineError)
REMOTE_AUDIO_REFUSED = (
    "Audio must be uploaded with the request: remote URLs are not fetched. Download the file "
    "and upload it (gradio_client: handle_file on a local path)."
)


def is_remote(path) -> bool:
    return str(path).strip().lower().startswith(("http://", "https://", "//", "ftp://"))


def uploads_only(component: gr.Audio) -> gr.Audio:
    """Make a file input refuse a remote URL before anything is fetched.

    Gradio downloads an http(s) URL given as a file input (blocking only local addresses),
    so a public Space would otherwise fetch whatever size any caller names. Uploads and the
    page's own example files are unaffected. The component's own methods are wrapped on the
    instance (a subclass would make Gradio write a type-stub file beside this one).
    """
    fetch_async = component.async_move_resource_to_block_cache
    fetch = component.move_resource_to_block_cache

    def refuse(url_or_file_path) -> None:
        if url_or_file_path is not None and is_remote(url_or_file_path):
            raise gr.Error(REMOTE_AUDIO_REFUSED, print_exception=False)

    async def checked_async(url_or_file_path):
        refuse(url_or_file_path)
        return await fetch_async(url_or_file_path)

    def checked(url_or_file_path):
        refuse(url_or_file_path)
        return fetch(url_or_file_path)

    component.async_move_resource_to_block_cache = checked_async
    component.move_resource_to_block_cache = checked
    return component


# gr.Progress() as a default argument is how Gradio hands a handler its progress bar.
def compare(audio, reference, model, language, task, progress=gr.Progress()):  # noqa: B008
    """Transcribe the clip with the original and the quantized model, and compare them."""
    if not audio:
        raise gr.Error("Upload or record audio first.", print_exception=False)
    try:
        comparison = POOL.compare(
            audio,
            model=model,
            reference=reference or "",
            options=POOL.options(model, language, task or "transcribe"),
            on_progress=lambda fraction, message: progress(fraction, desc=message),
        )
    except USER_ERRORS as e:
        logger.warning("request refused: %s", e)
        raise gr.Error(str(e), print_exception=False) from e
    except Exception as e:
        logger.exception("comparison failed")
        raise gr.Error(
            f"The comparison failed unexpectedly ({type(e).__name__}); the server log has the "
            "details. Please try again.",
            print_exception=False,
        ) from e

    original = transcript(comparison, ORIGINAL)
    quantized = transcript(comparison, QUANTIZED)
    diff = word_diff(original, quantized, comparison.language, show_missing=True)
    table = pd.DataFrame(table_rows(comparison), columns=list(TABLE_HEADERS))
    chart = pd.DataFrame(chart_rows(comparison), columns=["engine", "metric", "value"])
    return (
        original,
        quantized,
        table,
        diff,
        _bars(chart, LATENCY_METRIC),
        _bars(chart, MEMORY_METRIC),
        summary(comparison),
        f"**{comparison.notice}**" if comparison.notice else "",
    )


def _bars(chart: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    rows = chart[chart["metric"] == metric]
    if rows.empty:
        return None
    return rows[["engine", "value"]].rename(columns={"engine": "Engine", "value": metric})


def model_options(model):
    """Language and task menus for the chosen model."""
    language, task = _option_state(model)
    return gr.update(**language), gr.update(**task)


def _option_state(model: str) -> tuple[dict, dict]:
    info = POOL.info(model)
    if not info.multilingual:
        return (
            {
                "choices": [AUTO_DETECT],
                "value": AUTO_DETECT,
                "interactive": False,
                "info": f"{model} is English-only.",
            },
            {
                "value": "transcribe",
                "interactive": False,
                "info": "Translation needs a multilingual model.",
            },
        )
    return (
        {
            "choices": _language_choices(info.languages),
            "value": AUTO_DETECT,
            "interactive": True,
            "info": "Spoken language; auto-detect lets each engine find it.",
        },
        {
            "value": "transcribe",
            "interactive": True,
            "info": "translate: speech in any language to English text.",
        },
    )


def _language_choices(codes) -> list[tuple[str, str]]:
    return [(AUTO_DETECT, AUTO_DETECT)] + [(language_label(code), code) for code in codes]


def refresh_models():
    """The model menu lists what is built now (a model may have been built since start-up)."""
    return gr.update(choices=POOL.models())


def _examples(models: list[str]) -> tuple[list[list], list[str]]:
    multilingual = next((m for m in models if POOL.info(m).multilingual), models[0])
    default = SETTINGS.default_model
    clips = [
        ("goforward.wav", "go forward ten meters", default, "English: go forward ten meters"),
        (
            "cards-005.wav",
            "eight of spades four of clubs seven of hearts",
            default,
            "English: three playing cards",
        ),
        ("german-espeak.wav", "", multilingual, "German (synthetic voice)"),
        ("spanish-espeak.wav", "", multilingual, "Spanish (synthetic voice)"),
    ]
    examples = [[str(EXAMPLES_DIR / name), ref, model] for name, ref, model, _ in clips]
    return examples, [label for *_, label in clips]


def _method_details() -> str:
    return (
        "**Latency** in the table is one run of this clip, after each engine has loaded and "
        "transcribed a warm-up clip; the same clip, threads and decoding settings go to every "
        "engine, and the engines run in a shuffled order (its seed is in the summary). The "
        f"benchmark (`python benchmark.py`) is more careful: {timing_method()}\n\n"
        f"**Memory**: {MEMORY_METHOD} Every worker imports torch, because transformers' "
        "feature extractor computes the log-mel features with it; that import is in every "
        "worker's baseline and in no engine's memory held.\n\n"
        "**Where the speed-up comes from**: ONNX fp32 runs the same weights as the original "
        "through onnxruntime with this studio's decoding loop and graph changes; the int8 "
        "engine adds quantization on top. The summary splits each clip's speed-up into those "
        "two parts when ONNX fp32 runs.\n\n"
        "**Where**: on this server's CPU (see the benchmark for the CPU model and its flags); "
        "another CPU, in particular one with or without AVX-512/VNNI, gives other figures."
    )


MODELS = POOL.models()
LANGUAGE_STATE, TASK_STATE = _option_state(SETTINGS.default_model)

with gr.Blocks(title="Whisper Quantization Studio", delete_cache=(600, 3600)) as demo:
    gr.Markdown(
        "# Whisper Quantization Studio\n"
        "Run one clip through the original Whisper (PyTorch fp32) and its int8-quantized ONNX "
        "copy, and see what quantization changes: the words, the speed and the memory."
    )
    # Created before the layout so that the examples, under the audio, can fill them in.
    model = gr.Dropdown(
        MODELS,
        value=SETTINGS.default_model,
        label="Model",
        info="Built models (more: build_model.py)",
        render=False,
    )
    reference = gr.Textbox(
        "",
        label="Reference transcript (optional)",
        placeholder="What is really said, to score both engines' word error rate",
        lines=2,
        render=False,
    )
    with gr.Row():
        with gr.Column(scale=3):
            audio = uploads_only(
                gr.Audio(sources=["upload", "microphone"], type="filepath", label="Audio clip")
            )
            examples, example_labels = _examples(MODELS)
            gr.Examples(
                examples,
                inputs=[audio, reference, model],
                example_labels=example_labels,
                label="Examples (click one, then Run)",
                api_visibility="private",
            )
        with gr.Column(scale=2):
            model.render()
            with gr.Row():
                # Every language of every built model is a valid choice for API callers; the
                # page narrows the menu to the chosen model's languages.
                language = gr.Dropdown(
                    **{**LANGUAGE_STATE, "choices": _language_choices(POOL.all_languages())},
                    label="Language",
                )
                task = gr.Radio(["transcribe", "translate"], label="Task", **TASK_STATE)
            reference.render()
            run = gr.Button("Run", variant="primary", elem_id="run")

    with gr.Row(equal_height=True):
        original_text = gr.Textbox(
            label="Original (PyTorch fp32)",
            lines=3,
            interactive=False,
            buttons=["copy"],
            elem_id="original-transcript",
        )
        quantized_diff = gr.HighlightedText(
            label="Quantized (ONNX int8)",
            color_map=DIFF_COLORS,
            show_legend=True,
            show_inline_category=False,
            elem_id="quantized-transcript",
        )
    # The quantized transcript as plain text, for API callers (the page shows the diff).
    quantized_text = gr.Textbox(label="Quantized (ONNX int8) transcript", visible=False)
    notice = gr.Markdown(label="Notice", elem_id="notice")
    run_summary = gr.Markdown(label="Summary")
    table = gr.Dataframe(
        headers=list(TABLE_HEADERS),
        label="Results",
        interactive=False,
        wrap=True,
        elem_id="results-table",
    )
    gr.Markdown(measurement_note(SETTINGS.readme_url))
    with gr.Row():
        # Bars start at zero, so their lengths compare.
        latency_plot = gr.BarPlot(
            x="Engine",
            y=LATENCY_METRIC,
            color="Engine",
            label="Latency",
            y_lim=[0, None],
            **BAR_STYLE,
        )
        memory_plot = gr.BarPlot(
            x="Engine",
            y=MEMORY_METRIC,
            color="Engine",
            label="Memory",
            y_lim=[0, None],
            **BAR_STYLE,
        )
    with gr.Accordion("How the figures are measured", open=False, elem_id=README_SECTION):
        gr.Markdown(_method_details())

    run.click(
        compare,
        inputs=[audio, reference, model, language, task],
        outputs=[
            original_text,
            quantized_text,
            table,
            quantized_diff,
            latency_plot,
            memory_plot,
            run_summary,
            notice,
        ],
        api_name="compare",
    )
    model.change(model_options, model, [language, task], api_visibility="private")
    demo.load(refresh_models, outputs=model, api_visibility="private")

# One comparison at a time: the engines share the CPU, and a second request running beside
# the first would distort both timings; waiting users see their place in the queue.
demo.queue(default_concurrency_limit=1, max_size=SETTINGS.max_queue)


def ensure_ready() -> None:
    """Build the default model if none is built, then load and warm up its engines.

    A failure is logged, not raised: the page still comes up and says what is wrong (for
    example the rebuild command for a damaged model) on each request.
    """
    try:
        POOL.ensure_ready()
    except USER_ERRORS as e:
        logger.error("%s is not ready: %s", SETTINGS.default_model, e)


if __name__ == "__main__":
    configure_logging()
    ensure_ready()
    try:
        demo.launch(max_file_size=SETTINGS.max_file_size)
    finally:
        POOL.close()
