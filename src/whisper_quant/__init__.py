"""Whisper Quantization Studio: original Whisper vs its int8 ONNX copy, measured honestly.

The package is flat, and its modules fall into five layers. A module imports from its own
layer and from the layers below it that it may use, never from a layer above.
tests/test_layers.py reads every module's imports and holds them to this map; a new module
is placed in one of the lists below (and in the test's) before it is used.

- core, used by every layer: the contract of a built model folder, the registries of models
  and recipes, audio, tokens, one-window decoding and the long-form loop, measurement and
  statistics. It imports nothing from the layers above.
- build, uses core: turns a model source into a built model folder.
- runtime, uses core: runs the engines on a built folder. The build and the runtime are
  siblings: no engine imports the build pipeline, and the build runs no engine.
- evaluation, uses core and runtime: measures the engines on collections of clips.
- app, uses every layer: what the page, the downloads and the command line serve.

core:
    layout.py             the contract of a built model folder: names, sizes
    manifest.py           a built folder's manifest and checksums
    models.py             the registry of model sources (embedded, local folders, Hub ids)
    shapes.py             the shapes of openai's checkpoints, for random-weight builds
    recipes.py            the quantization recipes, by name
    hardware.py           the CPU's model and flags (/proc/cpuinfo)
    roofline.py           a model's work from its dims, and its floor from measured peaks
    audio.py              decoding any upload to 16 kHz mono, silence, splitting
    tokens.py             Whisper's special tokens, from a model's tokenizer
    graphs.py             ONNX graph walks and rewrites, for the build and the ONNX engines
    logit_filters.py      suppressed tokens and the timestamp rules
    token_decoders.py     greedy, sampling, forced tokens and beam search
    decoding.py           one 30-second window: options, prompt, language, no-speech
    vad.py                speech spans (Silero VAD, onnxruntime) merged into 30 s chunks
    longform_options.py   the long-form options and results (frozen dataclasses)
    longform.py           the long-form loop: seek, fallback, prompts, segments
    longform_batched.py   the batched long-form path: VAD chunks decoded N at a time
    measure.py            memory and wall-clock measurement
    metrics.py            text normalisation, WER/CER, diffs
    stats.py              bootstrap intervals, loop flags, per-utterance tables

build:
    ct2.py                the CTranslate2 model.bin format, and its mapping to transformers
    weights.py            any model source as a transformers checkpoint (the original)
    onnx_files.py         ONNX files on disk: external data, streamed merges, hard links
    quantizers.py         the quantization presets and every recipe's quantizer
    smoothing.py          SmoothQuant: LayerNorm outliers moved into the weights before int8
    build.py              the pipeline: import, export, quantize, manifest, atomically
    fetch.py              built folders fetched from the Hugging Face Hub

runtime:
    torch_window.py       a transformers model as a decoding window model
    engines/__init__.py   the engine registry
    engines/names.py      the engines' names and the required ones
    engines/base.py       the engine interface
    engines/onnx.py       the ONNX engines (onnxruntime), one per recipe
    engines/original.py   the original (transformers + PyTorch)
    engines/pytorch.py    the original's PyTorch model through the studio's loop
    engines/faster_whisper.py  faster-whisper (CTranslate2 int8), optional
    workers.py            one process per engine
    worker_preload.py     what the workers' fork server imports once
    budget.py             whether a model's engines fit in memory
    compare.py            one clip through every engine: accuracy and speed-up

evaluation:
    coverage.py           how much of a clip an engine's segments cover
    clip_groups.py        clips grouped by language, and by the cluster a bootstrap resamples
    per_language.py       per-language accuracy, language identification and dropped speech
    bench_methods.py      the benchmark report's notes on how each figure is measured
    bench_stats.py        the benchmark's figures per engine and across engines, from its runs
    bench.py              the benchmark: every engine on every clip, repeated
    report.py             table rows and chart data
    report_markdown.py    the benchmark report as markdown
    plots.py              the benchmark's charts as PNG
    datasets.py           evaluation clips from folders, TSVs and Hub datasets
    batch.py              the batch tab's comparison of many clips

app:
    subtitles.py          segments as SRT, WebVTT and JSON
    settings.py           the WHISPER_* environment settings
    options.py            the page's options for a model
    views.py              every result text the page and the reports show
    service.py            the studio and its switcher, without the UI
    run_report.py         the report of one run, to download
    launch.py             runs app.py in a subprocess until it serves
    cli.py                the command-line entry points
"""

__version__ = "0.1.0"
