"""What the app serves, without the UI: model menus, option checks and the active Studio.

`app.py` only draws the page and turns the errors raised here into messages. Everything it
shows comes from here and from `report.py`, so all of it can be tested without Gradio.

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
from dataclasses import dataclass
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
from .budget import check_memory
from .build import build_model
from .compare import ONNX_FP32, QUANTIZED, Comparison, Studio, built_engines, check_selection
from .engines import ENGINES, NOTICE_SILENT, TranscribeOptions, engine_class
from .fetch import ModelFetchError, fetch_model, missing_entries
from .layout import GENERATION_CONFIG_FILE, ORIGINAL_DIR, build_command, built_models
from .longform import DEFAULT_TEMPERATURES
from .manifest import ModelIntegrityError, read_manifest
from .measure import mib
from .models import SYNTHETIC_NOTE
from .settings import Settings
from .tokens import TASKS

logger = logging.getLogger(__name__)

AUTO_DETECT = "auto-detect"
AUTO_DETECT_PER_WINDOW = "auto-detect per window"
# Tokens every engine decodes per window on a synthetic model (the scaling benchmark's N).
SYNTHETIC_FIXED_TOKENS = 64
# The bold sentence a synthetic model's results open with, on the page and in the batch.
SYNTHETIC_HEADING = f"**{SYNTHETIC_NOTE[0].upper() + SYNTHETIC_NOTE[1:]}.**"
README_SECTION = "how-the-figures-are-measured"

# Whisper's languages (openai/whisper, tokenizer.py), for labels in the language menu: the
# app process would otherwise import transformers (seconds and a few hundred MiB) for them.
_LANGUAGE_NAMES = """
en English, zh Chinese, de German, es Spanish, ru Russian, ko Korean, fr French, ja Japanese,
pt Portuguese, tr Turkish, pl Polish, ca Catalan, nl Dutch, ar Arabic, sv Swedish, it Italian,
id Indonesian, hi Hindi, fi Finnish, vi Vietnamese, he Hebrew, uk Ukrainian, el Greek,
ms Malay, cs Czech, ro Romanian, da Danish, hu Hungarian, ta Tamil, no Norwegian, th Thai,
ur Urdu, hr Croatian, bg Bulgarian, lt Lithuanian, la Latin, mi Maori, ml Malayalam,
cy Welsh, sk Slovak, te Telugu, fa Persian, lv Latvian, bn Bengali, sr Serbian,
az Azerbaijani, sl Slovenian, kn Kannada, et Estonian, mk Macedonian, br Breton, eu Basque,
is Icelandic, hy Armenian, ne Nepali, mn Mongolian, bs Bosnian, kk Kazakh, sq Albanian,
sw Swahili, gl Galician, mr Marathi, pa Punjabi, si Sinhala, km Khmer, sn Shona,
yo Yoruba, so Somali, af Afrikaans, oc Occitan, ka Georgian, be Belarusian, tg Tajik,
sd Sindhi, gu Gujarati, am Amharic, yi Yiddish, lo Lao, uz Uzbek, fo Faroese,
ht Haitian Creole, ps Pashto, tk Turkmen, nn Nynorsk, mt Maltese, sa Sanskrit,
lb Luxembourgish, my Myanmar, bo Tibetan, tl Tagalog, mg Malagasy, as Assamese, tt Tatar,
haw Hawaiian, ln Lingala, ha Hausa, ba Bashkir, jw Javanese, su Sundanese, yue Cantonese
"""
LANGUAGE_NAMES: dict[str, str] = dict(
    entry.strip().split(" ", 1) for entry in _LANGUAGE_NAMES.replace("\n", " ").split(",")
)


class ModelNotBuiltError(ValueError):
    """The chosen model is not among the built ones; the message says how to build it."""


# --- what a model offers ------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """What the option menus need about a model, read from its files (no worker started)."""

    name: str
    multilingual: bool
    languages: tuple[str, ...]  # codes; ("en",) for English-only models
    built: bool
    # Seeded random weights (build_model.py --random-weights): speed and memory only.
    synthetic: bool = False

    @property
    def tasks(self) -> tuple[str, ...]:
        return TASKS if self.multilingual else ("transcribe",)


def model_info(models_dir: Path, name: str) -> ModelInfo:
    """Languages and tasks of a built model; for one not built yet, a guess from its name."""
    folder = Path(models_dir) / name
    try:
        manifest = read_manifest(folder)
        generation = json.loads(
            (folder / ORIGINAL_DIR / GENERATION_CONFIG_FILE).read_text(encoding="utf-8")
        )
    except (ModelIntegrityError, OSError, ValueError):
        # Whisper's English-only checkpoints are the ones named *.en.
        multilingual = not name.endswith(".en")
        return ModelInfo(name, multilingual, () if multilingual else ("en",), built=False)
    synthetic = bool(manifest.get("synthetic"))
    if not manifest.get("multilingual"):
        return ModelInfo(name, False, ("en",), built=True, synthetic=synthetic)
    codes = sorted(token.strip("<|>") for token in generation.get("lang_to_id", {}))
    return ModelInfo(name, True, tuple(codes), built=True, synthetic=synthetic)


def hardware_panel(settings: Settings, model: str) -> str:
    """The CPU, its int8 features, the threads, and the model's quantization preset."""
    from .hardware import cpu_info, cpu_panel

    try:
        preset = read_manifest(Path(settings.models_dir) / model)["quantization"]["preset"]
    except (ModelIntegrityError, KeyError):
        preset = None
    return cpu_panel(cpu_info(), settings.threads, preset)


def language_label(code: str) -> str:
    name = LANGUAGE_NAMES.get(code)
    return f"{name} ({code})" if name else code


def check_options(info: ModelInfo, language: str | None, task: str) -> str | None:
    """The language code to pass on (None: detect), or ValueError for a bad combination."""
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; choose one of: {', '.join(TASKS)}")
    if not info.multilingual and task != "transcribe":
        raise ValueError(f"{info.name} is English-only: it can transcribe but not translate.")
    if language in (None, "", AUTO_DETECT, AUTO_DETECT_PER_WINDOW):
        return None
    code = language.strip().lower()
    if not info.multilingual:
        if code != "en":
            raise ValueError(f"{info.name} is English-only: choose {AUTO_DETECT} or en.")
        return None  # English-only models have no language token to set
    if info.languages and code not in info.languages:
        raise ValueError(f"{info.name} does not know the language {language!r}.")
    return code


# Runs `available_engines` on model folders in a child process: it imports every engine's
# libraries (torch, transformers, onnxruntime...), seconds and a few hundred MiB the app
# process would otherwise keep for good.
_AVAILABLE_ENGINES = (
    "import json, sys\n"
    "from whisper_quant.engines import available_engines\n"
    "print(json.dumps({folder: available_engines(folder) for folder in sys.argv[1:]}))\n"
)


def available_engines_of(folders: Sequence[Path]) -> dict[str, list[str]]:
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
        return {str(folder): built_engines(folder) for folder in folders}


# --- the pool -----------------------------------------------------------------------------

Progress = Callable[[float, str], None]


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
        for folder, names in available_engines_of(stale).items():
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

    def ensure_ready(self, on_progress: Progress | None = None) -> Studio:
        """Fetch WHISPER_MODELS' missing Hub entries, build the default model if nothing is
        built, then load and warm up its engines."""
        with self._lock:
            self.fetch_missing(on_progress)
            return self._studio_for(self.settings.default_model, on_progress)

    def fetch_missing(self, on_progress: Progress | None = None) -> list[str]:
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

    def studio(self, model: str, on_progress: Progress | None = None) -> Studio:
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
    ) -> TranscribeOptions:
        """Transcription options from the page's menus, checked against what the model offers.

        The language menu's AUTO_DETECT_PER_WINDOW, or `language_per_window`, detects the
        language on every 30 s window (multilingual models; English-only ones ignore it).
        """
        model = self._known(model)
        info = self.info(model)
        per_window = language == AUTO_DETECT_PER_WINDOW or language_per_window
        if per_window and language not in (None, "", AUTO_DETECT, AUTO_DETECT_PER_WINDOW):
            raise ValueError(
                "Language per window detects the language itself: choose auto-detect, "
                "or turn language per window off to fix a language."
            )
        code = check_options(info, None if per_window else language, task)
        if info.synthetic:
            # Random weights never say the end token: they would decode 448 tokens at each of
            # six temperatures per window (minutes at large sizes). Every engine decodes the
            # same forced tokens instead, the benchmark's --fixed-tokens: equal work.
            return TranscribeOptions(
                language=code,
                task=task,
                temperatures=(0.0,),
                fixed_tokens=SYNTHETIC_FIXED_TOKENS,
            )
        return TranscribeOptions(
            language=code,
            task=task,
            condition_on_previous_text=condition_on_previous_text,
            temperatures=DEFAULT_TEMPERATURES if temperature_fallback else (0.0,),
            language_per_window=per_window and info.multilingual,
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
        on_progress: Progress | None = None,
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
        on_progress: Progress | None = None,
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

    def _studio_for(self, model: str, progress: Progress | None) -> Studio:
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
        # Memory budget (budget.py): refuse, in plain words, engines that would not fit.
        budget = check_memory(
            studio.model_dir, studio.engines, budget_mib=self.settings.memory_budget_mib
        )
        logger.info("memory: %s", budget.message())
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

    def _ensure_built(self, model: str, progress: Progress) -> None:
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


# --- text around the results --------------------------------------------------------------


def transcript(comparison: Comparison, engine: str) -> str:
    result = comparison.get(engine)
    return result.transcription.text if result is not None else ""


def summary(comparison: Comparison) -> str:
    """One line on what ran: model, clip length, language and the order of the engines."""
    if not comparison.results:
        return ""
    parts = [f"**{comparison.model}**", f"{comparison.audio_s:.1f} s clip"]
    if comparison.language:
        parts.append(f"language: {language_label(comparison.language)}")
    labels = {r.engine: r.label for r in comparison.results}
    parts.append(
        "ran in this order: "
        + " → ".join(labels[name] for name in comparison.order)
        + f" (shuffled, seed {comparison.order_seed})"
    )
    line = " · ".join(parts)
    if comparison.options.fixed_tokens:
        line = (
            f"Every engine decoded the same {comparison.options.fixed_tokens} forced tokens "
            "per window (equal work); no WER.\n\n" + line
        )
    if comparison.synthetic:
        line = f"{SYNTHETIC_HEADING} " + line
    line += "\n\n" + windows_line(comparison)
    line += "\n\n" + speedup_split(comparison)
    line += "\n\n" + memory_parts(comparison)
    detected = {
        r.label: r.transcription.language for r in comparison.results if r.transcription.language
    }
    if len(set(detected.values())) > 1:
        each = ", ".join(
            f"{label} heard {language_label(code)}" for label, code in detected.items()
        )
        line += f"\n\n**The engines detected different languages:** {each}."
    return line


def windows_line(comparison: Comparison) -> str:
    """How many 30 s windows each engine decoded, and how many needed temperature fallback."""
    parts = []
    for r in comparison.results:
        t = r.transcription
        part = f"{r.label} {t.windows} windows, {t.fallback_windows} with fallback"
        if t.skipped_windows:
            part += f", {t.skipped_windows} skipped as silence"
        parts.append(part)
    line = "Windows: " + "; ".join(parts) + "."
    if any(r.transcription.fallback_windows for r in comparison.results):
        line += (
            " A window that fell back was decoded by sampling, with each engine's own random "
            "numbers: differences there are the sampler's, not quantization's."
        )
    return line


def clock(seconds: float) -> str:
    minutes, secs = divmod(max(0.0, seconds), 60)
    return f"{int(minutes)}:{secs:04.1f}"


def segments_by_engine(comparison: Comparison) -> dict[str, list[dict]]:
    """Each engine's segments for API callers: start, end, text, language, temperature."""
    return {
        r.engine: [
            {
                "start": round(s.start, 2),
                "end": round(s.end, 2),
                "text": s.text.strip(),
                "language": s.language,
                "temperature": s.temperature,
            }
            for s in r.transcription.segments
        ]
        for r in comparison.results
    }


def timestamped(comparison: Comparison) -> str:
    """Each engine's segments, one line each with start and end, for the page."""
    blocks = []
    for r in comparison.results:
        lines = [
            f"`{clock(s.start)} → {clock(s.end)}`"
            + (f" [{s.language}]" if s.language and comparison.options.language_per_window else "")
            + (f" (t={s.temperature:g})" if s.temperature else "")
            + f" {s.text.strip()}"
            for s in r.transcription.segments
            if s.text.strip()
        ]
        blocks.append(f"**{r.label}**\n\n" + ("  \n".join(lines) or "(no segments)"))
    return "\n\n".join(blocks)


def write_subtitles(comparison: Comparison, folder: Path) -> list[Path]:
    """`<engine>.srt`, `.vtt` and `.json` for every engine, in `folder`."""
    from .subtitles import to_json, to_srt, to_vtt

    paths = []
    for r in comparison.results:
        t = r.transcription
        stem = f"{comparison.model}-{r.engine}"
        for suffix, text in (
            ("srt", to_srt(t.segments)),
            ("vtt", to_vtt(t.segments)),
            ("json", to_json(t)),
        ):
            path = Path(folder) / f"{stem}.{suffix}"
            path.write_text(text, encoding="utf-8")
            paths.append(path)
    return paths


def speedup_split(comparison: Comparison) -> str:
    """Which part of the speed-up the runtime brings and which int8 brings, on this clip."""
    total = comparison.speedup(QUANTIZED)
    if total is None:
        return ""
    runtime = comparison.speedup(ONNX_FP32)
    if runtime is None:
        return (
            f"Quantized vs original: {total:.2f}x on this clip. Part of it is the runtime's, "
            f"not int8's: add `{ONNX_FP32}` to WHISPER_ENGINES to see the split."
        )
    int8 = comparison.speedup(QUANTIZED, baseline=ONNX_FP32)
    return (
        f"Quantized vs original: **{total:.2f}x** on this clip = **{runtime:.2f}x** from the "
        f"runtime, decoding loop and graphs (ONNX fp32 vs original) × **{int8:.2f}x** from int8 "
        "(quantized vs ONNX fp32)."
    )


def memory_parts(comparison: Comparison) -> str:
    """Each worker's RSS before and after loading its model: held = total - baseline."""
    parts = [
        f"{r.label} {mib(r.load.total_bytes):.0f} − {mib(r.load.baseline_bytes):.0f} "
        f"= {mib(r.load.held_bytes):.0f}"
        for r in comparison.results
    ]
    return "Memory held = worker's total RSS − its baseline (MiB): " + "; ".join(parts) + "."


def measurement_note(readme_url: str | None) -> str:
    """The one line under the table: what the figures are, with a link to the details."""
    anchor = f"{readme_url}#{README_SECTION}" if readme_url else f"#{README_SECTION}"
    return (
        "Latency: wall-clock time of a single run of this clip, after each engine's warm-up "
        "(`benchmark.py` reports medians of repeated runs). Memory held: resident memory "
        "each engine's own worker process gained by loading its model and one warm-up (its "
        "baseline and total are in the summary above); peak extra: its highest resident memory "
        "during this clip above that. Measured on this server's CPU only. "
        f"[How the figures are measured]({anchor})"
    )
