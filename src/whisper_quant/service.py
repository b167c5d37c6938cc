"""What the app serves, without the UI: the models and engines offered, and the active Studio.

`app.py` draws the page and turns the errors raised here into messages; options come from
`options.py` and text from `views.py`, so all of it is tested without Gradio.

Only one model's engines are alive at a time: each engine holds a model in its own worker
process, and two models' workers together could exhaust a small Space's memory. Switching
model closes the current workers before the next model's start.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from .audio import EmptyAudioError, decode_audio, duration_s, is_silent
from .batch import (
    BatchResult,
    ClipResult,
    gather_files,
    load_batch,
    read_reference_file,
    runnable,
    summarize_batch,
)
from .build import build_model
from .compare import Comparison, Studio, check_selection
from .engines import ENGINES, NOTICE_SILENT, TranscribeOptions, available_engines, engine_class
from .fetch import ModelFetchError, fetch_model, missing_entries
from .layout import build_command, built_models
from .options import AUTO_DETECT, ModelInfo, model_info, options_for
from .settings import Settings
from .workers import start_fork_server

logger = logging.getLogger(__name__)

# How the switcher reports long work (fetch, build, load, transcribe) to the page's progress
# bar: the fraction done (0 to 1) and a message (not the decoding's `longform.Progress`).
ProgressBar = Callable[[float, str], None]


class ModelNotBuiltError(ValueError):
    """The chosen model is not among the built ones; the message says how to build it."""


# Runs `available_engines` on model folders in a child process: it imports every engine's
# libraries (torch, transformers, onnxruntime...), seconds and a few hundred MiB the app
# process would otherwise keep for good.
_AVAILABLE_ENGINES = (
    "import json, sys\n"
    "from whisper_quant.engines import available_engines\n"
    "print(json.dumps({folder: available_engines(folder) for folder in sys.argv[1:]}))\n"
)


def _available_apart(folders: Sequence[Path]) -> dict[str, list[str]]:
    """`engines.available_engines` of each folder (built and installed), from a child process;
    on failure only the built subfolders count (a worker then names a missing package)."""
    if not folders:
        return {}
    source = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")])),
    }
    try:
        done = subprocess.run(
            [sys.executable, "-c", _AVAILABLE_ENGINES, *map(str, folders)],
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
            check=True,
        )
        return json.loads(done.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
        logger.warning("could not check the engines' libraries (%s); listing built ones", e)
        return {str(folder): available_engines(folder, installed=False) for folder in folders}


# --- the pool -----------------------------------------------------------------------------


class StudioSwitcher:
    """Keeps one model's Studio alive and switches to another model on request.

    A model's Studio is started on first use; starting another closes the current one.

    Calls are serialised by a lock, so a switch of model never closes workers that another
    request is still using.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self._studio: Studio | None = None
        self._lock = threading.Lock()
        # model folder -> (its manifest's mtime, its available engines)
        self._available: dict[str, tuple[float, list[str]]] = {}

    @property
    def models_dir(self) -> Path:
        return self.settings.models_dir

    def models(self) -> list[str]:
        """WHISPER_MODELS' entries when set; else the built models, and the default one,
        which is built on first use if missing."""
        if self.settings.models:
            return [entry.name for entry in self.settings.models]
        names = built_models(self.models_dir)
        if self.settings.default_model not in names:
            names.insert(0, self.settings.default_model)
        return names

    def info(self, model: str) -> ModelInfo:
        return model_info(self.models_dir, model)

    def engines(self, model: str | None = None) -> list[str]:
        """The engines a model offers (built and installed), in the registry's order. A model
        not built yet offers WHISPER_ENGINES (built on first use)."""
        model = model or self.settings.default_model
        return self._engines_of([model])[model]

    def all_engines(self) -> list[str]:
        """Every engine any built model offers (what an API caller may name)."""
        offered = set(self.settings.engines)
        for names in self._engines_of(self.models()).values():
            offered.update(names)
        return [name for name in ENGINES if name in offered]

    def _engines_of(self, models: Sequence[str]) -> dict[str, list[str]]:
        def stamp(folder: Path) -> float | None:
            try:
                return (folder / "manifest.json").stat().st_mtime
            except OSError:
                return None

        folders = {model: self.models_dir / model for model in models}
        stale = [
            folder
            for folder in folders.values()
            if stamp(folder) is not None
            and self._available.get(str(folder), (None,))[0] != stamp(folder)
        ]
        for folder, names in _available_apart(stale).items():
            self._available[folder] = (stamp(Path(folder)), names)
        offered = {}
        for model, folder in folders.items():
            if stamp(folder) is None:  # not built yet: what it will be started with
                offered[model] = list(self.settings.engines)
                continue
            available = set(self._available[str(folder)][1])
            offered[model] = [name for name in ENGINES if name in available]
        return offered

    def all_languages(self) -> list[str]:
        """Every language code of every built model (what an API caller may name)."""
        codes = {code for name in self.models() for code in self.info(name).languages}
        return sorted(codes)

    @property
    def current_model(self) -> str | None:
        return self._studio.model if self._studio is not None else None

    def ensure_ready(self, on_progress: ProgressBar | None = None) -> Studio:
        """Fetch WHISPER_MODELS' missing Hub entries, build the default model if nothing is
        built, then load and warm up its engines (their libraries import meanwhile)."""
        start_fork_server(self.settings.threads)
        with self._lock:
            self.fetch_missing(on_progress)
            return self._studio_for(self.settings.default_model, on_progress)

    def fetch_missing(self, on_progress: ProgressBar | None = None) -> list[str]:
        """Fetch every WHISPER_MODELS entry `name=owner/repo` whose folder is missing; return
        the names fetched. A failure is logged (the model's requests then say what is
        wrong), except for the default model's, which is raised."""
        progress = on_progress or (lambda fraction, message: None)
        fetched = []
        for entry in missing_entries(self.settings.models, self.models_dir):
            progress(0.0, f"Fetching {entry.name} from {entry.repo_id} (first start only)")
            try:
                fetch_model(entry.name, entry.repo_id, self.models_dir)
            except ModelFetchError as e:
                if entry.name == self.settings.default_model:
                    raise
                logger.error("%s is not available: %s", entry.name, e)
                continue
            fetched.append(entry.name)
        return fetched

    def studio(self, model: str, on_progress: ProgressBar | None = None) -> Studio:
        with self._lock:
            return self._studio_for(model, on_progress)

    def options(
        self,
        model: str | None,
        language: str | None = AUTO_DETECT,
        task: str = "transcribe",
        *,
        condition_on_previous_text: bool = True,
        temperature_fallback: bool = True,
        language_per_window: bool = False,
        batch_size: int = 1,
    ) -> TranscribeOptions:
        """Transcription options from the page's menus for `model` (`options_for`)."""
        return options_for(
            self.info(self._known(model)),
            language,
            task,
            condition_on_previous_text=condition_on_previous_text,
            temperature_fallback=temperature_fallback,
            language_per_window=language_per_window,
            batch_size=batch_size,
        )

    def _known(self, model: str | None) -> str:
        model = model or self.settings.default_model
        if model not in self.models():
            raise ModelNotBuiltError(
                f"Unknown model {model!r}; this app has: {', '.join(self.models())}"
            )
        return model

    def compare(
        self,
        audio_path: str | os.PathLike[str],
        *,
        model: str | None = None,
        reference: str = "",
        options: TranscribeOptions | None = None,
        engines: Sequence[str] | None = None,
        on_progress: ProgressBar | None = None,
    ) -> Comparison:
        """Decode the clip, then compare the model's engines on it.

        `engines` chooses which (by default WHISPER_ENGINES, the ones started with the
        model); the original must be among them, and one not loaded yet is loaded first.
        Raises AudioError for an unusable file, ValueError for options or engines the model
        does not offer, ModelIntegrityError, BuildError or EngineError (crashed, timed out)
        otherwise. An empty or silent clip runs no engine: it gives a comparison without
        results whose notice says why.
        """
        model = self._known(model)
        progress = on_progress or (lambda fraction, message: None)
        options = options or self.options(model)
        if options.fixed_tokens:
            reference = ""  # forced tokens are not the model's words: no WER
        engines = self._selection(model, engines)  # refused before the audio is decoded
        try:
            audio = decode_audio(audio_path, max_seconds=self.settings.max_seconds)
        except EmptyAudioError:
            return _silent(model, 0.0, options, reference)
        if is_silent(audio):
            return _silent(model, duration_s(audio), options, reference)

        with self._lock:
            studio = self._studio_for(model, progress)

            def on_engine(name: str, i: int, n: int) -> None:
                progress(i / n, f"Transcribing with {engine_class(name).label} ({i + 1}/{n})")

            def on_load(name: str) -> None:
                progress(0.0, f"Loading {engine_class(name).label} (first use only)")

            return studio.compare(
                audio,
                options,
                reference=reference or "",
                engines=engines,
                on_engine=on_engine,
                on_load=on_load,
            )

    def compare_batch(
        self,
        files: Sequence[str | os.PathLike[str]],
        *,
        references_file: str | os.PathLike[str] | None = None,
        model: str | None = None,
        options: TranscribeOptions | None = None,
        work_dir: Path,
        on_progress: ProgressBar | None = None,
        engines: Sequence[str] | None = None,
    ) -> BatchResult:
        """Compare the model's engines on every clip of a batch, one clip after the other.

        `engines` chooses which, as in `compare`. Raises BatchError for a batch over the
        limits or with nothing to decode, ValueError for engines the model does not offer; a
        clip that cannot be decoded is reported in its row, and the others still run.
        """
        model = self._known(model)
        progress = on_progress or (lambda fraction, message: None)
        options = options or self.options(model)
        settings = self.settings
        engines = self._selection(model, engines)  # refused before any clip is decoded
        paths = gather_files(files or [], Path(work_dir), settings.max_batch_files)
        references = read_reference_file(references_file)
        if options.fixed_tokens:
            references = {}  # forced tokens are not the model's words: no WER, as in compare
        clips = load_batch(paths, references, max_total_seconds=settings.max_batch_seconds)
        results = []
        with self._lock:
            studio = self._studio_for(model, progress)
            for i, clip in enumerate(clips):
                progress(i / len(clips), f"Clip {i + 1}/{len(clips)}: {clip.name}")
                comparison = None
                if runnable(clip):
                    comparison = studio.compare(
                        clip.audio, options, reference=clip.reference or "", engines=engines
                    )
                results.append(ClipResult(clip, comparison))
        return summarize_batch(model, results)

    def _selection(self, model: str, engines: Sequence[str] | None) -> tuple[str, ...] | None:
        """The chosen engines checked against the model (`check_selection`), or None for the
        studio's own."""
        if engines is None:
            return None
        return check_selection(self.models_dir / model, engines, self.settings.engines)

    def _studio_for(self, model: str, progress: ProgressBar | None) -> Studio:
        if self._studio is not None and self._studio.model == model:
            return self._studio
        progress = progress or (lambda fraction, message: None)
        self._ensure_built(model, progress)
        if self._studio is not None:
            logger.info("closing %s to make room for %s", self._studio.model, model)
            self._studio.close()
            self._studio = None
        studio = Studio(
            self.models_dir / model,
            self.settings.engines,
            threads=self.settings.threads,
            request_timeout_s=self.settings.request_timeout_s,
            memory_budget_mib=self.settings.memory_budget_mib,
        )
        studio.check_memory()  # refuses, in plain words, engines that would not fit
        logger.info("starting %s (%s)", model, ", ".join(studio.engines))

        def on_engine(name: str) -> None:
            progress(0.0, f"Loading {model}: {engine_class(name).label} (first use only)")

        try:
            studio.start(on_engine=on_engine)
        except BaseException:
            studio.close()  # engines started before the failure
            raise
        self._studio = studio
        return studio

    def _ensure_built(self, model: str, progress: ProgressBar) -> None:
        if model in built_models(self.models_dir):
            return
        repo_id = self.settings.model_repos.get(model)
        if repo_id is not None:  # WHISPER_MODELS: fetched, never built here
            progress(0.0, f"Fetching {model} from {repo_id}")
            fetch_model(model, repo_id, self.models_dir)
            return
        if model != self.settings.default_model:
            raise ModelNotBuiltError(
                f"{model} is not built; build it with: {build_command(model, self.models_dir)}"
            )
        logger.info("%s is not built in %s yet: building it (once)", model, self.models_dir)
        progress(0.0, f"Building {model} (first start only, about a minute)")
        build_model(
            model, self.models_dir, on_stage=lambda stage: progress(0.0, f"{model}: {stage}")
        )

    def close(self) -> None:
        with self._lock:
            if self._studio is not None:
                self._studio.close()
                self._studio = None

    def shutdown(self) -> None:
        """Stop at the app's exit: a request in flight ends at once with an engine error
        (its engines are killed) instead of `close` waiting up to the request limit."""
        studio = self._studio  # read once: close() may clear it meanwhile
        if studio is not None:
            studio.kill()
        self.close()


def _silent(model: str, audio_s: float, options: TranscribeOptions, reference: str) -> Comparison:
    return Comparison(
        model=model,
        audio_s=audio_s,
        language=options.language,
        reference=(reference or "").strip(),
        results=(),
        order=(),
        notice=NOTICE_SILENT,
        options=options,
    )
