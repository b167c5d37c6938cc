"""Command-line entry points (kept out of the top-level scripts so they can be tested)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
import warnings
from pathlib import Path

from .build import STAGES, BuildError, BuildOptions
from .ct2 import CT2FormatError
from .layout import DEFAULT_MODELS_DIR
from .models import DEFAULT_MODEL, SYNTHETIC_NOTE, ModelSourceError, list_models
from .quantizers import QUANTIZATION_PRESETS
from .recipes import DEFAULT_RECIPES, RECIPES, SMOOTHING_ALPHA, RecipeError, parse_recipes
from .shapes import SHAPES

logger = logging.getLogger("whisper_quant")

# Errors whose message is the whole story: printed without a traceback.
USER_ERRORS = (BuildError, CT2FormatError, ModelSourceError, OSError)


def configure_logging(verbose: bool = False) -> None:
    # Libraries (onnxruntime's quantizer among them) log through the root logger at INFO;
    # only this project's own progress is worth showing at that level.
    logging.basicConfig(
        level=logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    quiet_libraries()


def quiet_libraries() -> None:
    """Silence the export's chatter (tracer and deprecation warnings) that says nothing to a user."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore", category=UserWarning)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    try:
        import torch.jit

        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    except ImportError:
        pass
    for name in ("transformers", "optimum", "onnxruntime", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _recipes(text: str) -> tuple[str, ...]:
    try:
        return parse_recipes(text)
    except RecipeError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="build_model.py",
        description="Convert embedded Whisper weights to a transformers checkpoint (the original) "
        "and export + dynamically quantize it to int8 ONNX with Optimum.",
    )
    parser.add_argument(
        "--model",
        action="append",
        help=f"model to build (repeatable; 'all' for every embedded model; default {DEFAULT_MODEL}): "
        "an embedded name, a known shape (" + ", ".join(SHAPES) + "; the openai checkpoint "
        "from the Hub, or with --random-weights a synthetic one), a local CTranslate2 or "
        "transformers folder, or a Hub id",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help=f"build a known shape with seeded random weights ({SYNTHETIC_NOTE}); "
        "the folder is <shape>-random",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of --random-weights (default: %(default)s; the same seed rebuilds the same "
        "bytes)",
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=DEFAULT_MODELS_DIR,
        help="where built models go (default: %(default)s)",
    )
    parser.add_argument("--list", action="store_true", help="list the embedded models and exit")
    parser.add_argument(
        "--quantization",
        default="auto",
        choices=("auto", *QUANTIZATION_PRESETS),
        help="Optimum quantization preset; auto reads the CPU's flags",
    )
    parser.add_argument(
        "--per-channel",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="per-channel weight scales (default: on; --no-per-channel is per-tensor)",
    )
    parser.add_argument("--force", action="store_true", help="rebuild even if the build is current")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="also build the article's recipe (int8-seed/, the same as --recipes int8-seed), "
        "which the 'optimum' engine runs through Optimum's generate",
    )
    parser.add_argument(
        "--recipes",
        type=_recipes,
        default=DEFAULT_RECIPES,
        help="quantization recipes to build, comma-separated, or 'all' ("
        + ", ".join(RECIPES)
        + "); onnx-fp32 and quantized are always built (default: "
        + ",".join(DEFAULT_RECIPES)
        + ")",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="folder of audio clips int8-static is calibrated on, and --smoothquant measures "
        "(default: the shipped tuning clips, tests/data)",
    )
    parser.add_argument(
        "--smoothquant",
        type=float,
        nargs="?",
        const=SMOOTHING_ALPHA,
        default=None,
        metavar="ALPHA",
        help="quantize a multilingual model's quantized recipe after SmoothQuant with this "
        f"alpha between 0 and 1 (alone: {SMOOTHING_ALPHA:g}, the best measured on tuning "
        "prompts; smoothing.py, docs/int8-languages.md section 7). Not the default: on an "
        "AVX2-only CPU it lost Spanish words (section 8)",
    )
    parser.add_argument(
        "--fp32-encoder-layers",
        type=int,
        default=0,
        metavar="N",
        help="keep every weight MatMul of the first N encoder layers in fp32 in the quantized "
        "recipe (default: 0; docs/int8-languages.md sections 10-11)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def build_main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoothquant is not None and not 0 <= args.smoothquant <= 1:
        parser.error(f"--smoothquant takes an alpha between 0 and 1, not {args.smoothquant:g}")
    if args.fp32_encoder_layers < 0:
        parser.error("--fp32-encoder-layers takes 0 or more layers")
    if args.list:
        for spec in list_models():
            print(f"{spec.name:10} {spec.description}  [{spec.pip_install}]")
        for shape in SHAPES.values():
            print(
                f"{shape.name:10} {shape.parameters / 1e6:,.0f} M parameters: {shape.hub_id} "
                "online, or --random-weights offline"
            )
        return 0
    configure_logging(args.verbose)
    names = args.model or [DEFAULT_MODEL]
    if "all" in names:
        names = [spec.name for spec in list_models()]
    options = BuildOptions(
        quantization=args.quantization,
        per_channel=args.per_channel,
        force=args.force,
        baseline=args.baseline,
        recipes=args.recipes,
        calibration=args.calibration,
        smooth_alpha=args.smoothquant,
        fp32_encoder_layers=args.fp32_encoder_layers,
        random_weights=args.random_weights,
        seed=args.seed,
    )
    from tqdm import tqdm

    from .build import build_model, summarize

    failures = 0
    for name in names:
        started = time.perf_counter()
        with tqdm(total=len(STAGES), desc=name, unit="stage", file=sys.stderr) as bar:

            def on_stage(label: str, bar=bar) -> None:
                if bar.n or label != STAGES[0]:
                    bar.update(1)
                bar.set_postfix_str(label)

            try:
                result = build_model(name, args.output_dir, options, on_stage=on_stage)
            except USER_ERRORS as e:
                bar.close()
                print(f"error: {name}: {e}", file=sys.stderr)
                failures += 1
                continue
            bar.update(bar.total - bar.n)
        info = summarize(result)
        if result.skipped:
            print(f"{name}: current in {result.folder} (nothing to do; --force rebuilds)")
            continue
        sizes = info["weights_bytes"]
        original = max(sizes.get("original", 1), 1)
        variants = ", ".join(
            f"{sub} {size / 2**20:.1f} MiB"
            + ("" if sub == "original" else f" ({size / original:.1%})")
            for sub, size in sizes.items()
        )
        print(
            f"{name}: built in {time.perf_counter() - started:.1f} s -> {result.folder}\n"
            f"  {variants} (% of the original)\n"
            f"  stages: " + ", ".join(f"{k} {v:.1f} s" for k, v in info["stages_s"].items())
        )
    return 1 if failures else 0


def _fixed_tokens(text: str) -> int:
    from .longform_options import MAX_FIXED_TOKENS

    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_FIXED_TOKENS:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to {MAX_FIXED_TOKENS}, got {text!r}"
        )
    return value


def _languages(text: str) -> frozenset[str]:
    codes = frozenset(code.strip() for code in text.split(",") if code.strip())
    if not codes:
        raise argparse.ArgumentTypeError(f"expected language codes such as en,es, got {text!r}")
    return codes


def benchmark_parser() -> argparse.ArgumentParser:
    from .engines import ENGINES
    from .longform_options import EARLY_END_RESUME_S

    parser = argparse.ArgumentParser(
        prog="benchmark.py",
        description="Time every engine on every clip (median after warm-up, rotating order), "
        "measure the memory each model holds in its own process, and score accuracy.",
    )
    parser.add_argument(
        "audio", nargs="*", type=Path, help="audio files (default: the shipped clips in tests/data)"
    )
    parser.add_argument(
        "--references",
        type=Path,
        help="refs.tsv: file name<TAB>reference text (default: beside the clips)",
    )
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument(
        "--engines",
        help=f"comma-separated, from: {', '.join(ENGINES)} "
        "(default: every engine the model has and whose packages are installed)",
    )
    parser.add_argument("--repeat", type=int, default=5, help="timed passes (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument(
        "--dataset",
        help="clips from a dataset instead of files: an audiofolder (audio + metadata.csv), a "
        "file<TAB>reference TSV, or a Hugging Face dataset id (online, streamed)",
    )
    parser.add_argument("--split", help="dataset split (default: the only or first one)")
    parser.add_argument("--audio-column", default="audio")
    parser.add_argument("--text-column", help="reference column (default: found by name)")
    parser.add_argument("--limit", type=int, help="at most this many clips of the dataset")
    parser.add_argument(
        "--languages",
        type=_languages,
        help="with --dataset: only the clips whose language column holds one of these codes, "
        "comma-separated (e.g. en,es,fr,it,ru; default: every clip)",
    )
    parser.add_argument(
        "--limit-per-language",
        type=int,
        metavar="N",
        help="with --dataset: the first N clips of each language, in the dataset's order",
    )
    parser.add_argument(
        "--language-per-window",
        action="store_true",
        help="detect the language on every 30 s window (multilingual models); a window that "
        f"ends {EARLY_END_RESUME_S:g} s or more before its end then resumes at its last segment, "
        "so speech after a change of language inside it is decoded as a window of its own",
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="decode at temperature 0 only (no temperature fallback)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=1,
        metavar="N",
        help="above 1: cut each clip at pauses (Silero VAD) into chunks of at most 30 s and "
        "decode N at a time, greedily, without previous text (faster-whisper's batched "
        "pipeline; faster-whisper itself runs its BatchedInferencePipeline); 1: sequential "
        "30 s windows (default)",
    )
    parser.add_argument(
        "--no-timestamps",
        action="store_true",
        help="decode without timestamp tokens: one segment per window or chunk",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help="at most N tokens per 30 s window (default: the decoder's 448 positions); "
        "bounds the work of a random-weight model, which never ends a window itself",
    )
    parser.add_argument(
        "--fixed-tokens",
        type=_fixed_tokens,
        metavar="N",
        help="equal work for every engine, at any size, real or random weights: every engine "
        "decodes exactly N tokens per 30 s window, the same forced token ids, no end token, no "
        "fallback (engines with their own loop, faster-whisper and optimum, are skipped)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the engine-order shuffles (each clip's seed is in the JSON)",
    )
    parser.add_argument("--json", type=Path, help="write the full report as JSON")
    parser.add_argument("--markdown", type=Path, help="write the table as markdown")
    parser.add_argument("--plot", type=Path, help="write a bar chart of latency and memory (PNG)")
    parser.add_argument(
        "--tradeoff-plot",
        type=Path,
        help="write a scatter of accuracy against speed-up, marker area ~ size on disk (PNG)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser


def benchmark_main(argv: list[str] | None = None) -> int:
    import json

    from .bench import load_clips, read_references, run_benchmark, split_fixed_token_engines
    from .engines import EngineError, TranscribeOptions, available_engines, engine_class
    from .layout import build_command
    from .longform_options import EARLY_END_RESUME_S
    from .manifest import ModelIntegrityError, read_manifest
    from .plots import plot_report, plot_tradeoff
    from .report_markdown import markdown_report

    args = benchmark_parser().parse_args(argv)
    configure_logging(args.verbose)
    if not args.dataset and (args.languages or args.limit_per_language is not None):
        print(
            "error: --languages and --limit-per-language pick clips of a --dataset", file=sys.stderr
        )
        return 2
    model_dir = args.models_dir / args.model
    if not (model_dir / "manifest.json").is_file():
        print(
            f"error: {model_dir} is not built; build it with: "
            f"{build_command(args.model, args.models_dir)}",
            file=sys.stderr,
        )
        return 2
    try:
        engines = args.engines.split(",") if args.engines else available_engines(model_dir)
        for name in engines:
            engine_class(name)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.fixed_tokens is not None:
        # run_benchmark leaves them out too, and records why in the report.
        kept, skipped = split_fixed_token_engines(engines)
        for name, reason in skipped.items():
            print(f"note: {name} skipped: {reason}")
        if not kept:
            print("error: none of the engines asked for can decode --fixed-tokens", file=sys.stderr)
            return 2
    if args.dataset:
        from .datasets import DatasetSourceError, load_dataset_clips

        try:
            clips = load_dataset_clips(
                args.dataset,
                args.split,
                args.audio_column,
                args.text_column,
                args.limit,
                languages=args.languages,
                limit_per_language=args.limit_per_language,
            )
        except (DatasetSourceError, ImportError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        if args.languages and not clips:
            print(
                f"error: no clip of {args.dataset} is labelled "
                + " or ".join(sorted(args.languages)),
                file=sys.stderr,
            )
            return 2
    else:
        default_dir = Path(__file__).resolve().parents[2] / "tests" / "data"
        paths = args.audio or sorted(default_dir.glob("*.wav"))
        if not paths:
            print("error: no audio files given", file=sys.stderr)
            return 2
        refs_path = args.references or (paths[0].parent / "refs.tsv")
        references = read_references(refs_path) if refs_path.is_file() else {}
        clips = load_clips(paths, references)
    try:
        options = TranscribeOptions(
            beam_size=args.beam_size,
            language_per_window=args.language_per_window,
            early_end_resume_s=EARLY_END_RESUME_S if args.language_per_window else None,
            fixed_tokens=args.fixed_tokens,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            timestamps=not args.no_timestamps,
        )
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.no_fallback:
        options = dataclasses.replace(options, temperatures=(0.0,))
    try:
        report = run_benchmark(
            model_dir,
            clips,
            engines,
            repeat=args.repeat,
            threads=args.threads,
            options=options,
            seed=args.seed,
            progress=logger.info,
        )
    except (EngineError, ModelIntegrityError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = markdown_report(report)
    print(text)
    for name, method in report.methods.items():
        print(f"{name.capitalize()}: {method}")
    if args.json:
        data = report.to_dict()
        # How each variant was made, as its manifest records it.
        data["recipes"] = read_manifest(model_dir).get("recipes", {})
        args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    if args.plot:
        plot_report(report, args.plot)
    if args.tradeoff_plot:
        plot_tradeoff(report, args.tradeoff_plot)
    return 1 if report.failed_clips else 0
