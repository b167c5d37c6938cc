"""Whisper Quantization Studio: original Whisper and its int8 ONNX copy on the same clip.

`python app.py` builds the default model if none is built, loads and warms up its engines,
then serves the page (a Space runs exactly this). Settings come from WHISPER_* environment
variables, listed in src/whisper_quant/settings.py; GRADIO_SERVER_NAME and GRADIO_SERVER_PORT
choose the address.
"""

from __future__ import annotations

import logging
import signal
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT / "src"))

import gradio as gr  # noqa: E402
import pandas as pd  # noqa: E402

from whisper_quant import views  # noqa: E402
from whisper_quant.batch import per_clip_records  # noqa: E402
from whisper_quant.build import BuildError  # noqa: E402
from whisper_quant.cli import configure_logging  # noqa: E402
from whisper_quant.engines import ORIGINAL, QUANTIZED, EngineError, engine_class  # noqa: E402
from whisper_quant.longform_options import EARLY_END_RESUME_S  # noqa: E402
from whisper_quant.manifest import ModelIntegrityError, read_manifest  # noqa: E402
from whisper_quant.options import AUTO_DETECT, AUTO_DETECT_PER_WINDOW  # noqa: E402
from whisper_quant.report import LATENCY_METRIC, MEMORY_METRIC, chart_rows  # noqa: E402
from whisper_quant.run_report import build_report, write_report  # noqa: E402
from whisper_quant.service import StudioSwitcher  # noqa: E402
from whisper_quant.settings import Settings  # noqa: E402

logger = logging.getLogger("whisper_quant.app")

SETTINGS = Settings.from_env()
POOL = StudioSwitcher(SETTINGS)  # starts nothing until the first request or ensure_ready()

EXAMPLES_DIR = ROOT / "examples"
BAR_STYLE = {"x_title": " ", "color_title": " ", "colors_in_legend": [], "height": 260}

# Errors whose message is written for the person using the page (AudioError and the
# option and settings errors are ValueErrors; crashes and timeouts are EngineErrors).
USER_ERRORS = (ValueError, ModelIntegrityError, BuildError, EngineError)
REMOTE_AUDIO_REFUSED = (
    "Audio must be uploaded with the request: remote URLs are not fetched. Download the file "
    "and upload it (gradio_client: handle_file on a local path)."
)


def user_error(error: Exception, request: str, work: str) -> gr.Error:
    """The message a person sees: ours as written, anything else as a plain apology (the
    server log keeps the traceback)."""
    if isinstance(error, USER_ERRORS):
        logger.warning("%s refused: %s", request, error)
        return gr.Error(str(error), print_exception=False)
    logger.exception("%s failed", work)
    return gr.Error(
        f"The {work} failed unexpectedly ({type(error).__name__}); the server log has the "
        "details. Please try again.",
        print_exception=False,
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
def compare(
    audio,
    reference,
    model,
    language,
    task,
    condition_on_previous_text=True,
    temperature_fallback=True,
    language_per_window=False,
    engines=None,
    batch_windows=1,
    progress=gr.Progress(),  # noqa: B008
):
    """Transcribe the clip with each chosen engine, window by window, and compare them.

    `batch_windows` above 1 cuts the clip at pauses into chunks of at most 30 s and decodes
    that many at a time (the API's last input; 1, the default, is sequential windows)."""
    if not audio:
        raise gr.Error("Upload or record audio first.", print_exception=False)
    try:
        options = POOL.options(
            model,
            language,
            task or "transcribe",
            condition_on_previous_text=bool(condition_on_previous_text),
            temperature_fallback=bool(temperature_fallback),
            language_per_window=bool(language_per_window),
            batch_size=int(batch_windows or 1),
        )
        comparison = POOL.compare(
            audio,
            model=model,
            reference=reference or "",
            options=options,
            engines=None if engines is None else list(engines),
            on_progress=lambda fraction, message: progress(fraction, desc=message),
        )
    except Exception as e:
        raise user_error(e, "request", "comparison") from e

    table = pd.DataFrame(views.result_rows(comparison), columns=list(views.RESULT_HEADERS))
    chart = pd.DataFrame(chart_rows(comparison), columns=["engine", "metric", "value"])
    return (
        views.transcript(comparison, ORIGINAL),
        views.transcript(comparison, QUANTIZED),
        table,
        views.quantized_diff(comparison),
        _bars(chart, LATENCY_METRIC),
        _bars(chart, MEMORY_METRIC),
        views.summary(comparison),
        views.notice(comparison),
        views.segments_by_engine(comparison),
        _downloads(comparison),
        views.timestamped(comparison),
        _report(comparison),
        views.variants_view(comparison),
        views.language_table(comparison),
    )


def _downloads(comparison) -> list[str] | None:
    """Each engine's SRT, VTT and JSON, in a fresh temporary folder Gradio may serve."""
    if not comparison.results:
        return None
    folder = Path(tempfile.mkdtemp(prefix="whisper-quant-subtitles-"))
    return [str(path) for path in views.write_subtitles(comparison, folder)]


def _report(comparison) -> list[str] | None:
    """The run's report (run_report.py), as JSON and Markdown, in a fresh temporary folder."""
    if not comparison.results:
        return None
    try:
        manifest = read_manifest(SETTINGS.models_dir / comparison.model)
    except ModelIntegrityError:
        manifest = {}
    report = build_report(
        comparison,
        manifest,
        threads=SETTINGS.threads,
        method=views.measurement_note(SETTINGS.readme_url),
    )
    folder = Path(tempfile.mkdtemp(prefix="whisper-quant-report-"))
    return [str(path) for path in write_report(report, folder)]


def compare_batch(
    files,
    references=None,
    model=None,
    language=AUTO_DETECT,
    task="transcribe",
    engines=None,
    progress=gr.Progress(),  # noqa: B008
):
    """Compare the chosen engines on several clips: WER with intervals, per-clip diffs,
    downloads."""
    if not files:
        raise gr.Error("Upload clips (audio files or a zip) first.", print_exception=False)
    work = Path(tempfile.mkdtemp(prefix="whisper-quant-batch-"))
    try:
        result = POOL.compare_batch(
            [f if isinstance(f, str) else f.name for f in files],
            references_file=references
            if isinstance(references, str) or not references
            else references.name,
            model=model,
            options=POOL.options(model, language, task or "transcribe"),
            work_dir=work,
            on_progress=lambda fraction, message: progress(fraction, desc=message),
            engines=None if engines is None else list(engines),
        )
    except Exception as e:
        raise user_error(e, "batch", "batch") from e
    (work / "batch.csv").write_text(result.to_csv(), encoding="utf-8")
    (work / "batch.json").write_text(result.to_json(), encoding="utf-8")
    return (
        pd.DataFrame(views.batch_engine_rows(result), columns=list(views.BATCH_ENGINE_HEADERS)),
        pd.DataFrame(per_clip_records(result)),
        [str(work / "batch.csv"), str(work / "batch.json")],
        views.batch_summary(result),
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
            "info": "Spoken language. auto-detect: each engine finds it on the first 30 s; "
            "per window: on every 30 s (for recordings that switch language), and a window "
            f"that stops writing {EARLY_END_RESUME_S:g} s or more before its end resumes at its "
            "last segment.",
        },
        {
            "value": "transcribe",
            "interactive": True,
            "info": "translate: speech in any language to English text.",
        },
    )


def _language_choices(codes) -> list[tuple[str, str]]:
    detect = [(AUTO_DETECT, AUTO_DETECT), (AUTO_DETECT_PER_WINDOW, AUTO_DETECT_PER_WINDOW)]
    return detect + [(views.language_label(code), code) for code in codes]


def refresh_models():
    """The model menu lists what is built now (a model may have been built since start-up)."""
    return gr.update(choices=POOL.models())


def _engine_choices(names) -> list[tuple[str, str]]:
    return [(engine_class(name).label, name) for name in names]


def refresh_engines(model, chosen):
    """The variants the chosen model offers; the ticked ones stay ticked where it has them."""
    try:
        offered = POOL.engines(model)
    except Exception:  # noqa: BLE001 - the menu keeps its choices; Run says what is wrong
        logger.exception("could not list the engines of %s", model)
        return gr.update()
    kept = [name for name in chosen or () if name in offered]
    if ORIGINAL not in kept:
        kept = [name for name in SETTINGS.engines if name in offered]
    return gr.update(choices=_engine_choices(offered), value=kept)


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


MODELS = POOL.models()
LANGUAGE_STATE, TASK_STATE = _option_state(SETTINGS.default_model)

with gr.Blocks(title="Whisper Quantization Studio", delete_cache=(600, 3600)) as demo:
    gr.Markdown(
        "# Whisper Quantization Studio\n"
        "Run one clip through the original Whisper (PyTorch fp32) and its quantized variants "
        "side by side, and see what quantization changes: the words, the speed and the memory."
    )
    with gr.Tab("One clip", id="one-clip", elem_id="one-clip"):
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
                    gr.Audio(
                        sources=["upload", "microphone"],
                        type="filepath",
                        label="Audio clip",
                        elem_id="audio",
                    )
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
                # Every engine of every built model is a valid choice for API callers; the page
                # narrows the choices to the chosen model's variants.
                engines = gr.CheckboxGroup(
                    _engine_choices(POOL.all_engines()),
                    value=list(SETTINGS.engines),
                    label="Engines / variants",
                    info="The variants of this model to run on the clip. The original always "
                    "runs: it is the reference every variant's agreement and speed-up are "
                    "measured against, so a run without it is refused. A variant not loaded "
                    "yet loads on first use (seconds).",
                    elem_id="engines",
                )
                with gr.Row():
                    # Every language of every built model is a valid choice for API callers; the
                    # page narrows the menu to the chosen model's languages.
                    language = gr.Dropdown(
                        **{**LANGUAGE_STATE, "choices": _language_choices(POOL.all_languages())},
                        label="Language",
                    )
                    task = gr.Radio(["transcribe", "translate"], label="Task", **TASK_STATE)
                reference.render()
                with gr.Accordion("Advanced", open=False, elem_id="advanced"):
                    condition = gr.Checkbox(
                        True,
                        label="Condition on previous text",
                        info="Prompt each 30 s window with the text before it (openai-whisper's "
                        "default).",
                    )
                    fallback = gr.Checkbox(
                        True,
                        label="Temperature fallback",
                        info="Decode a window again at 0.2, 0.4 … 1.0 when its text looks like a "
                        "loop (compression ratio > 2.4) or is improbable (avg log-prob < -1).",
                    )
                    per_window = gr.Checkbox(
                        False,
                        label="Language per window",
                        info="Detect the language on every 30 s window (multilingual models). "
                        f"A window that stops writing {EARLY_END_RESUME_S:g} s or more before its "
                        "end resumes at its last segment, so speech in another language after "
                        "it is decoded in its own language.",
                    )
                    batch_windows = gr.Slider(
                        1,
                        16,
                        value=1,
                        step=1,
                        label="Batch windows",
                        info="Above 1: cut the clip at pauses (Silero VAD) into chunks of at most "
                        "30 s and decode this many at a time, greedily, without previous text or "
                        "temperature fallback (faster-whisper's batched pipeline). 1: one 30 s "
                        "window after another.",
                        elem_id="batch-windows",
                    )
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
                color_map=views.DIFF_COLORS,
                show_legend=True,
                show_inline_category=False,
                elem_id="quantized-transcript",
            )
        with gr.Accordion("Every chosen variant against the original", open=True):
            variants_view = gr.HTML(elem_id="variants")
        # The quantized transcript as plain text, for API callers (the page shows the diff).
        quantized_text = gr.Textbox(label="Quantized (ONNX int8) transcript", visible=False)
        notice = gr.Markdown(label="Notice", elem_id="notice")
        run_summary = gr.Markdown(label="Summary")
        with gr.Accordion("Segments with timestamps", open=True):
            segments_view = gr.Markdown(elem_id="segments")
            downloads = gr.File(
                label="Download each engine's result (SRT, VTT, JSON)",
                file_count="multiple",
                interactive=False,
                elem_id="downloads",
            )
        # Each engine's segments (start, end, text, language, temperature), for API callers.
        segments_json = gr.JSON(label="Segments", visible=False)
        table = gr.Dataframe(
            headers=list(views.RESULT_HEADERS),
            label="Results",
            interactive=False,
            wrap=True,
            elem_id="results-table",
        )
        gr.Markdown(views.measurement_note(SETTINGS.readme_url))
        # Each engine's top three languages (first window, or every window with language per
        # window); empty for English-only models and a given language.
        language_view = gr.Markdown(label="Language identification", elem_id="language-id")
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
        with gr.Row(equal_height=True):
            report_files = gr.File(
                label="Report of this run (JSON, Markdown): model, recipes, versions, CPU, "
                "method, transcripts and every figure above",
                file_count="multiple",
                interactive=False,
                elem_id="report-downloads",
                scale=3,
            )
            with gr.Column(scale=1):
                gr.DeepLinkButton("Share this run", "Link copied")
                gr.Markdown(
                    "Copies a link to this page with its inputs and results as shown now. "
                    "Others can open it only where the app is public (a public Space); the "
                    "clip and files in it are deleted after an hour.",
                    elem_id="share-note",
                )
        with gr.Accordion("How the figures are measured", open=False, elem_id=views.README_SECTION):
            gr.Markdown(views.method_details())
        with gr.Accordion("This machine", open=False, elem_id="hardware"):
            hardware = gr.Markdown(views.hardware_panel(SETTINGS, SETTINGS.default_model))

    with gr.Tab("Batch", id="batch", elem_id="batch") as batch_tab:
        gr.Markdown(
            "Compare the engines on several clips at once: upload audio files (or a zip of "
            "them) and, to score WER, a references file: CSV with `file_name` and "
            "`transcription` columns, or TSV `file<TAB>reference`. "
            f"At most {SETTINGS.max_batch_files} clips and {SETTINGS.max_batch_seconds:g} s "
            "in all; the clips run one after another with the same settings as one clip."
        )
        with gr.Row():
            batch_files = uploads_only(
                gr.File(
                    label="Clips (audio files or a zip)",
                    file_count="multiple",
                    type="filepath",
                    elem_id="batch-files",
                )
            )
            batch_references = uploads_only(
                gr.File(
                    label="References (CSV or TSV, optional)",
                    file_count="single",
                    type="filepath",
                    file_types=[".csv", ".tsv", ".txt"],
                    elem_id="batch-references",
                )
            )
        with gr.Row():
            batch_model = gr.Dropdown(MODELS, value=SETTINGS.default_model, label="Model")
            batch_language = gr.Dropdown(
                **{**LANGUAGE_STATE, "choices": _language_choices(POOL.all_languages())},
                label="Language",
            )
            batch_task = gr.Radio(["transcribe", "translate"], label="Task", **TASK_STATE)
        batch_variants = gr.CheckboxGroup(
            _engine_choices(POOL.all_engines()),
            value=list(SETTINGS.engines),
            label="Engines / variants",
            info="The variants of this model to run on every clip. The original is the "
            "reference every variant is measured against, so a run without it is refused.",
            elem_id="batch-variants",
        )
        batch_run = gr.Button("Run batch", variant="primary", elem_id="run-batch")
        batch_summary = gr.Markdown(elem_id="batch-summary")
        batch_engines = gr.Dataframe(
            headers=list(views.BATCH_ENGINE_HEADERS),
            label="Engines over the batch",
            interactive=False,
            wrap=True,
            elem_id="batch-engines",
        )
        batch_clips = gr.Dataframe(
            label="Per clip (quantized vs original: [changed] [+added] [-missing])",
            interactive=False,
            wrap=True,
            elem_id="batch-clips",
        )
        batch_downloads = gr.File(
            label="Download (CSV, JSON)", file_count="multiple", interactive=False
        )

    run.click(
        compare,
        inputs=[
            audio,
            reference,
            model,
            language,
            task,
            condition,
            fallback,
            per_window,
            engines,
            batch_windows,
        ],
        outputs=[
            original_text,
            quantized_text,
            table,
            quantized_diff,
            latency_plot,
            memory_plot,
            run_summary,
            notice,
            segments_json,
            downloads,
            segments_view,
            report_files,
            variants_view,
            language_view,
        ],
        api_name="compare",
    )
    batch_run.click(
        compare_batch,
        inputs=[
            batch_files,
            batch_references,
            batch_model,
            batch_language,
            batch_task,
            batch_variants,
        ],
        outputs=[batch_engines, batch_clips, batch_downloads, batch_summary],
        api_name="compare_batch",
    )
    model.change(model_options, model, [language, task], api_visibility="private")
    model.change(refresh_engines, [model, engines], engines, api_visibility="private")
    model.change(
        lambda name: views.hardware_panel(SETTINGS, name), model, hardware, api_visibility="private"
    )
    batch_model.change(
        model_options, batch_model, [batch_language, batch_task], api_visibility="private"
    )
    # The batch's variants refresh when its tab opens, not on page load: an update sent to a
    # tab not yet shown left its progress overlay pending over the checkboxes (Gradio 6.17).
    for batch_event in (batch_model.change, batch_tab.select):
        batch_event(
            refresh_engines,
            [batch_model, batch_variants],
            batch_variants,
            api_visibility="private",
            show_progress="hidden",
        )
    demo.load(refresh_models, outputs=model, api_visibility="private")
    demo.load(refresh_engines, [model, engines], engines, api_visibility="private")


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


# What uvicorn waits at exit for open streams before it cancels them. Every gradio_client
# keeps a heartbeat stream open until its next heartbeat, and with no limit Gradio's close
# gave up after 5 s (6.1 s to stop with one client connected, 1.2 s with this limit).
EXIT_GRACE_S = 0.5


def _stop_now(signum, frame) -> None:
    """SIGINT: stop as Ctrl-C in a terminal does, with uvicorn's wait for open streams cut to
    EXIT_GRACE_S. uvicorn then cancels them and still runs the app's shutdown (where Gradio
    deletes the uploads); the engines are killed at exit anyway (`StudioSwitcher.shutdown`).
    Each cancelled stream would log a CancelledError traceback, so uvicorn's errors are not
    logged from here on."""
    server = getattr(demo, "server", None)
    if server is not None:
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        server.config.timeout_graceful_shutdown = EXIT_GRACE_S
    raise KeyboardInterrupt


if __name__ == "__main__":
    # A shell that starts the app in the background (`app.py &`, a CI step, a test harness)
    # hands it SIGINT ignored, and Python then keeps ignoring it: Ctrl-C or `kill -INT` would
    # not close the engine workers. Stop on it as in a terminal.
    signal.signal(signal.SIGINT, _stop_now)
    configure_logging()
    ensure_ready()
    try:
        demo.launch(max_file_size=SETTINGS.max_file_size)
    finally:
        POOL.shutdown()
