"""The measured floor: this machine's matmul peaks and read bandwidth, each model size's work,
and how close every benchmarked engine comes to it. Writes docs/roofline.json and .md.

- Peaks: onnxruntime on one-operator graphs built with onnx.helper, with the session options
  the ONNX engines run (engines/onnx.ort_session_options, tuned) and their thread count, on
  the encoder's matrix shapes of each size (1500 frames x d_model times d_model x d_model,
  d_model x 4 d_model, 4 d_model x d_model): fp32 MatMul, and the int8 paths the quantized
  files hold (DynamicQuantizeLinear + MatMulInteger + Cast + Mul, as the quantizer writes
  them), and com.microsoft's fused DynamicQuantizeMatMul and MatMulIntegerToFloat. Each
  figure is the median GMAC/s over the repeats, with the lowest and highest.
- Bandwidth: onnxruntime MatMul of one fp32 row by a fp32 matrix fed as an input (a GEMV,
  which is what a decoder step is), over a matrix twice the last-level cache or 1 GiB
  (memory) and one of 64 MiB (cache); numpy's single-threaded sum of the same array beside it.
- Work and floor: whisper_quant.roofline (MACs per window and bytes per step from the dims).
- Engines: every docs/benchmark-*.json and docs/scaling.json, their encoder ms per window
  and decoder ms per step against the floor of their model and recipe.

    python scripts/roofline.py              # the full measurement (a few minutes)
    python scripts/roofline.py --quick --out-dir out/roofline   # tiny's shapes only, seconds

Run it on a quiet machine: every figure is wall-clock time on this machine's cores.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.engines.base import DEFAULT_THREADS  # noqa: E402
from whisper_quant.engines.onnx import ort_session_options  # noqa: E402
from whisper_quant.hardware import cpu_info  # noqa: E402
from whisper_quant.roofline import (  # noqa: E402
    BYTES_FP32,
    FP32,
    INT8_DECODER,
    MEASURED_SIZES,
    ROOFLINE_SHAPES,
    VOCAB_V2,
    Precision,
    decoder_step_work,
    encoder_work,
    floor,
    int8_features,
    int8_precision,
    peaks_for,
    same_cpu,
    shape_for,
)

DOCS = ROOT / "docs"
FRAMES = 1500
# One timed sample lasts at least this long (small shapes run several calls per sample).
MIN_SAMPLE_S = 0.05
CACHE_ARRAY_BYTES = 64 * 2**20
MIN_MEMORY_ARRAY_BYTES = 2**30
QUICK_MEMORY_ARRAY_BYTES = 256 * 2**20
GEMV_ROWS = 4096

FP32_PATH = "fp32 MatMul"
INT8_PATHS = (
    "DynamicQuantizeLinear + MatMulInteger (as the quantizer writes it)",
    "com.microsoft DynamicQuantizeMatMul",
    "DynamicQuantizeLinear + com.microsoft MatMulIntegerToFloat",
)

PEAK_METHOD = (
    "onnxruntime {ort} on one-operator graphs built with onnx.helper, the ONNX engines' "
    "session options ({options}); inputs 1500 x K, constant weights K x N per size: "
    "projection d x d, fc1 d x 4d, fc2 4d x d. GMAC/s = M*K*N / seconds per call; median of "
    "{repeats} samples (each at least {sample} s of calls) after a warm-up, with the lowest "
    "and highest. A size's fp32 peak is its best fp32 shape; its int8 peak the best int8 path "
    "and shape. The int8 weights are per-channel {weights}, activations QUInt8, as in the "
    "builds of the preset `--quantization {preset}` picks here ({preset_name}: QUInt8 weights "
    "with zero point 128 for avx2, QInt8 otherwise)."
)
BANDWIDTH_METHOD = (
    "A streaming read: numpy.sum of a fp32 array split into {threads} parts, one thread each "
    "(the engines' thread count); GB/s = array bytes / seconds per call, median of {repeats} "
    "samples, with the range. 'memory': a {memory_mib} MiB array (at least twice the "
    "last-level cache of {llc_mib} MiB, or 1 GiB); 'cache': {cache_mib} MiB. For reference, "
    "ort_gemv_*: onnxruntime MatMul of a 1 x {rows} row by the same bytes as a {rows} x N "
    "matrix fed as an input (a decoder step's shape; an input matrix is not prepacked, so "
    "this may read more than once)."
)
FLOOR_METHOD = (
    "Encoder floor per 30 s window = fp32 MACs / fp32 peak + int8 MACs / int8 peak of the "
    "nearest measured size (attention's activation products stay fp32 in every int8 recipe "
    "but the article's; the multilingual `quantized` recipe keeps convolutions and fc2 in "
    "fp32). Decoder step floor = bytes read per step (weights on the step's path + biases + "
    "per-channel scales + the fp32 cross-attention key/value cache of 1500 frames) / read "
    "bandwidth, from the cache when the bytes fit in half the last-level cache, else from "
    "memory. Fraction = floor / measured: 1.0 is the hardware's limit."
)


# --- graphs ------------------------------------------------------------------------------------


def _model(nodes, inputs, outputs, initializers):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "roofline", inputs, outputs, initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
    )
    model.ir_version = min(model.ir_version, onnx.IR_VERSION)
    return model.SerializeToString()


def matmul_graph(
    path: str, m: int, k: int, n: int, rng: np.random.Generator, weights: str = "QInt8"
) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])
    if path == FP32_PATH:
        w = numpy_helper.from_array(rng.standard_normal((k, n), np.float32), "w")
        return _model([helper.make_node("MatMul", ["x", "w"], ["y"])], [x], [y], [w])
    if weights == "QUInt8":  # symmetric uint8, as the avx2 preset stores them
        quantized = rng.integers(1, 256, (k, n), dtype=np.uint8)
        zero = numpy_helper.from_array(np.full(n, 128, np.uint8), "wz")
    else:
        quantized = rng.integers(-127, 128, (k, n), dtype=np.int8)
        zero = numpy_helper.from_array(np.zeros(n, np.int8), "wz")
    scale = numpy_helper.from_array(np.full(n, 0.01, np.float32), "ws")
    weights = numpy_helper.from_array(quantized, "wq")
    quantize = helper.make_node("DynamicQuantizeLinear", ["x"], ["xq", "xs", "xz"])
    if path == INT8_PATHS[0]:
        nodes = [
            quantize,
            helper.make_node("MatMulInteger", ["xq", "wq", "xz", "wz"], ["acc"]),
            helper.make_node("Cast", ["acc"], ["accf"], to=TensorProto.FLOAT),
            helper.make_node("Mul", ["xs", "ws"], ["scale"]),
            helper.make_node("Mul", ["accf", "scale"], ["y"]),
        ]
    elif path == INT8_PATHS[1]:
        nodes = [
            helper.make_node(
                "DynamicQuantizeMatMul", ["x", "wq", "ws", "wz"], ["y"], domain="com.microsoft"
            )
        ]
    else:
        nodes = [
            quantize,
            helper.make_node(
                "MatMulIntegerToFloat",
                ["xq", "wq", "xs", "ws", "xz", "wz"],
                ["y"],
                domain="com.microsoft",
            ),
        ]
    return _model(nodes, [x], [y], [weights, scale, zero])


def gemv_graph(k: int, n: int) -> bytes:
    from onnx import TensorProto, helper

    return _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, k]),
            helper.make_tensor_value_info("w", TensorProto.FLOAT, [k, n]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, n])],
        [],
    )


def session(model: bytes, threads: int, optimized: Path | None = None):
    import onnxruntime as ort

    options, _ = ort_session_options(threads, tuned=True)
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def ran_ops(optimized: Path) -> list[str]:
    """The operators onnxruntime kept after its graph optimizations."""
    import onnx

    return sorted({node.op_type for node in onnx.load(str(optimized)).graph.node})


def samples(run, repeats: int) -> list[float]:
    """Seconds per call: `repeats` samples, each at least MIN_SAMPLE_S of calls."""
    start = time.perf_counter()
    run()  # warm-up (prepacking, first-touch)
    first = time.perf_counter() - start
    calls = max(1, math.ceil(MIN_SAMPLE_S / max(first, 1e-6)))
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            run()
        out.append((time.perf_counter() - start) / calls)
    return out


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


# --- measurements -----------------------------------------------------------------------------


def measure_matmuls(
    sizes, threads: int, repeats: int, quick: bool, weights: str = "QInt8"
) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in sizes:
            d = ROOFLINE_SHAPES[name].d_model
            shapes = {"projection": (d, d), "fc1": (d, 4 * d), "fc2": (4 * d, d)}
            if quick:
                shapes = {"fc1": shapes["fc1"]}
            x = rng.standard_normal((FRAMES, d * 4), np.float32)
            for kind, (k, n) in shapes.items():
                feed = {"x": np.ascontiguousarray(x[:, :k])}
                for path in (FP32_PATH, *INT8_PATHS):
                    optimized = Path(tmp, "optimized.onnx")
                    graph = matmul_graph(path, FRAMES, k, n, rng, weights)
                    sess = session(graph, threads, optimized)
                    seconds = samples(lambda s=sess, f=feed: s.run(None, f), repeats)
                    macs = FRAMES * k * n
                    gmacs = [macs / s / 1e9 for s in seconds]
                    rows.append(
                        {
                            "size": name,
                            "d_model": d,
                            "matrix": kind,
                            "m": FRAMES,
                            "k": k,
                            "n": n,
                            "path": path,
                            "weights": weights if path != FP32_PATH else "fp32",
                            "ran_ops": ran_ops(optimized),
                            "gmacs_median": statistics.median(gmacs),
                            "gmacs_min": min(gmacs),
                            "gmacs_max": max(gmacs),
                            "ms_per_call": 1000 * statistics.median(seconds),
                        }
                    )
                    print(
                        f"{name:9} {kind:10} {path[:40]:40} {rows[-1]['gmacs_median']:8.1f} GMAC/s",
                        flush=True,
                    )
    return rows


def peaks_by_size(rows: list[dict]) -> dict:
    out = {}
    for name in dict.fromkeys(r["size"] for r in rows):
        mine = [r for r in rows if r["size"] == name]
        fp32 = max((r for r in mine if r["path"] == FP32_PATH), key=lambda r: r["gmacs_median"])
        int8 = max((r for r in mine if r["path"] != FP32_PATH), key=lambda r: r["gmacs_median"])
        out[name] = {
            "d_model": mine[0]["d_model"],
            "fp32_gmacs": fp32["gmacs_median"],
            "fp32_matrix": fp32["matrix"],
            "int8_gmacs": int8["gmacs_median"],
            "int8_matrix": int8["matrix"],
            "int8_path": int8["path"],
            "int8_over_fp32": int8["gmacs_median"] / fp32["gmacs_median"],
        }
    return out


def last_level_cache_bytes() -> int:
    """The largest cache of cpu0, from sysfs (0 when unknown)."""
    sizes = []
    for index in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (index / "size").read_text().strip()
        except OSError:
            continue
        unit = {"K": 2**10, "M": 2**20, "G": 2**30}.get(text[-1:], 1)
        sizes.append(int(text.rstrip("KMG")) * unit)
    return max(sizes, default=0)


def threaded_sum(array: np.ndarray, threads: int):
    """A call that reads every byte of `array` once: numpy sums of its `threads` parts, each
    on its own thread (numpy releases the GIL inside the reduction)."""
    from concurrent.futures import ThreadPoolExecutor

    parts = np.array_split(array, threads)
    pool = ThreadPoolExecutor(threads)
    return lambda: sum(pool.map(lambda part: float(part.sum()), parts))


def measure_bandwidth(threads: int, repeats: int, quick: bool) -> dict:
    llc = last_level_cache_bytes()
    memory_bytes = QUICK_MEMORY_ARRAY_BYTES if quick else max(MIN_MEMORY_ARRAY_BYTES, 2 * llc)
    out = {"cache_bytes": llc}
    x = np.ones((1, GEMV_ROWS), np.float32)
    for label, nbytes in (("memory", memory_bytes), ("cache", CACHE_ARRAY_BYTES)):
        n = nbytes // (BYTES_FP32 * GEMV_ROWS)
        w = np.ones((GEMV_ROWS, n), np.float32)
        sess = session(gemv_graph(GEMV_ROWS, n), threads)
        runs = {
            label: threaded_sum(w.reshape(-1), threads),
            f"ort_gemv_{label}": lambda s=sess, w=w: s.run(None, {"x": x, "w": w}),
        }
        for key, run in runs.items():
            gbs = [w.nbytes / s / 1e9 for s in samples(run, repeats)]
            out[key] = {
                "array_bytes": w.nbytes,
                "gbs_median": statistics.median(gbs),
                "gbs_min": min(gbs),
                "gbs_max": max(gbs),
            }
            print(f"bandwidth {key}: {out[key]['gbs_median']:.1f} GB/s", flush=True)
        del w, sess, runs
    return out


# --- work, floors, engines ---------------------------------------------------------------------


def model_rows(peaks: dict, bandwidth: dict) -> list[dict]:
    rows = []
    for name in ("tiny", "base", "small", "medium", "large-v2", "large-v3"):
        shape = ROOFLINE_SHAPES[name]
        work, step = encoder_work(shape), decoder_step_work(shape)
        row = {
            "model": name,
            "d_model": shape.d_model,
            "encoder_gmac": work.total / 1e9,
            "encoder_weight_gmac": work.weights / 1e9,
            "attention_share": work.attention / work.total,
            "cross_kv_gmac": work.cross_kv / 1e9,
            "step_weight_mb_fp32": step.weight_bytes(BYTES_FP32) / 1e6,
            "step_weight_mb_int8": step.weight_bytes(**INT8_DECODER) / 1e6,
            "step_cross_cache_mb": step.cross_cache_bytes / 1e6,
        }
        found = peaks_for({"peaks": peaks, "bandwidth": bandwidth}, shape)
        if found is not None:
            machine, size = found
            row["peaks_from"] = size
            for label, precision in (("fp32", FP32), ("int8", int8_precision(True))):
                f = floor(shape, precision, machine)
                row[f"encoder_floor_ms_{label}"] = 1000 * f.encoder_s
                row[f"step_floor_ms_{label}"] = 1000 * f.step_s
                row[f"step_read_from_{label}"] = f.step_read_from
            row["encoder_ceiling_int8_over_fp32"] = (
                row["encoder_floor_ms_fp32"] / row["encoder_floor_ms_int8"]
            )
        rows.append(row)
    return rows


def engine_precision(engine: str, recipes: dict, multilingual: bool) -> Precision | None:
    """The arithmetic of an engine's files, as the floor counts it (None: not modelled)."""
    if engine in ("original", "pytorch", "onnx-fp32"):
        return FP32
    recipe = recipes.get("quantized", {})
    fp32_convs = bool(recipe.get("fp32_convolutions", multilingual))
    fp32_fc2 = bool(recipe.get("fp32_feed_forward_outputs", multilingual))
    int8_encoder = Precision(
        "int8",
        int8_encoder=True,
        int8_convolutions=not fp32_convs,
        int8_fc2=not fp32_fc2,
        **INT8_DECODER,
    )
    if engine in ("quantized", "int8-static"):
        return int8_encoder
    if engine == "int8-encoder":
        return Precision(
            "int8 encoder, fp32 decoder",
            **{
                k: getattr(int8_encoder, k)
                for k in ("int8_encoder", "int8_convolutions", "int8_fc2")
            },
        )
    if engine == "int8-decoder":
        return Precision("fp32 encoder, int8 decoder", **INT8_DECODER)
    if engine in ("int8-seed", "optimum"):
        # The article's recipe: every MatMul and convolution in int8, per-tensor weights.
        return Precision(
            "int8, every MatMul (per-tensor)",
            int8_encoder=True,
            int8_convolutions=True,
            int8_fc2=True,
            int8_attention=True,
            bytes_per_weight=1.0,
        )
    return None  # faster-whisper (no per-window figures), int4-weights (not modelled)


def benchmark_sources() -> list[tuple[str, dict, list[tuple[str, str, dict, dict]]]]:
    """(file, machine, [(model, engine, figures, recipes)]) of every committed benchmark."""
    out = []
    for path in sorted(DOCS.glob("benchmark-*.json")):
        report = json.loads(path.read_text(encoding="utf-8"))
        if report.get("settings", {}).get("beam_size", 1) != 1:
            continue
        entries = [
            (
                report["model"],
                engine,
                {
                    "encoder_ms": figures.get("encoder_ms_per_window"),
                    "cross_kv_ms": figures.get("cross_kv_ms_per_window"),
                    "step_ms": figures.get("ms_per_token_steps"),
                },
                report.get("recipes", {}),
            )
            for engine, figures in report["engines"].items()
        ]
        out.append((f"docs/{path.name}", report["machine"], entries))
    scaling = DOCS / "scaling.json"
    if scaling.is_file():
        report = json.loads(scaling.read_text(encoding="utf-8"))
        entries = [
            (
                row["model"],
                engine,
                {
                    "encoder_ms": figures.get("encoder_ms_per_window"),
                    "cross_kv_ms": None,
                    "step_ms": figures.get("ms_per_step"),
                },
                {},
            )
            for row in report["rows"]
            for engine, figures in row["engines"].items()
        ]
        out.append(("docs/scaling.json", report["machine"], entries))
    return out


def engine_rows(peaks: dict, bandwidth: dict) -> list[dict]:
    info = cpu_info()
    rows = []
    for source, machine, entries in benchmark_sources():
        here = same_cpu(machine, info)
        for model, engine, figures, recipes in entries:
            shape = shape_for(model)
            if shape is None:
                continue
            precision = engine_precision(engine, recipes, shape.vocab_size >= VOCAB_V2)
            row = {
                "source": source,
                "cpu": machine.get("cpu"),
                "cpu_int8_features": list(int8_features(machine.get("cpu_flags", ()))),
                "same_cpu": here,
                "model": model,
                "engine": engine,
                **figures,
            }
            found = peaks_for({"peaks": peaks, "bandwidth": bandwidth}, shape)
            if precision is None or found is None or figures["encoder_ms"] is None:
                row["floor"] = None
                rows.append(row)
                continue
            f = floor(shape, precision, found[0])
            row.update(
                precision=precision.label,
                encoder_floor_ms=1000 * f.encoder_s,
                step_floor_ms=1000 * f.step_s,
                step_read_from=f.step_read_from,
                encoder_fraction=1000 * f.encoder_s / figures["encoder_ms"],
                step_fraction=(
                    1000 * f.step_s / figures["step_ms"] if figures["step_ms"] else None
                ),
            )
            rows.append(row)
    return rows


# --- report ------------------------------------------------------------------------------------


def _f(value, spec=".1f") -> str:
    return "–" if value is None else format(value, spec)


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = ["# The floor: how close each engine comes to this machine's limits", ""]
    if machine["quick"]:
        lines += [
            "> **A --quick run on a shared machine**: tiny's shapes only, a small bandwidth "
            "array that may sit in the cache, few repeats. Not a measurement to quote.",
            "",
        ]
    lines += [
        f"Measured on **{machine['cpu']}** ({machine['logical_cpus']} logical CPUs, "
        f"{machine['threads']} threads, int8 features: "
        f"{', '.join(machine['int8_features']) or 'none'}), onnxruntime "
        f"{machine['onnxruntime']}, {machine['measured_at']}.",
        "",
        "## Peaks",
        "",
        report["methods"]["peaks"],
        "",
        "| size | matrix | path | ops after optimisation | GMAC/s median (range) |",
        "|---|---|---|---|---|",
    ]
    for r in report["matmul"]:
        lines.append(
            f"| {r['size']} | {r['matrix']} {r['k']}x{r['n']} | {r['path']} | "
            f"{', '.join(r['ran_ops'])} | {r['gmacs_median']:.1f} "
            f"({r['gmacs_min']:.1f}–{r['gmacs_max']:.1f}) |"
        )
    lines += [
        "",
        "| size | fp32 peak GMAC/s | int8 peak GMAC/s | int8 path | int8 / fp32 |",
        "|---|---|---|---|---|",
    ]
    for name, p in report["peaks"].items():
        lines.append(
            f"| {name} | {p['fp32_gmacs']:.1f} | {p['int8_gmacs']:.1f} | {p['int8_path']} | "
            f"{p['int8_over_fp32']:.2f}x |"
        )
    bw = report["bandwidth"]
    lines += [
        "",
        "## Read bandwidth",
        "",
        report["methods"]["bandwidth"],
        "",
        "| read | array MiB | GB/s median (range) |",
        "|---|---|---|",
    ]
    for key in ("memory", "cache", "ort_gemv_memory", "ort_gemv_cache"):
        b = bw[key]
        lines.append(
            f"| {key} | {b['array_bytes'] / 2**20:.0f} | {b['gbs_median']:.1f} "
            f"({b['gbs_min']:.1f}–{b['gbs_max']:.1f}) |"
        )
    lines += [
        "",
        "## Work and floor per model size",
        "",
        "Work from the dimensions (whisper_quant.roofline; checked against the base build's "
        "ONNX initializers in tests/test_roofline.py). " + report["methods"]["floor"],
        "",
        "| model | encoder GMAC / window | attention share | step MB fp32 | step MB int8 | "
        "encoder floor fp32 / int8 ms | int8 ceiling | step floor fp32 / int8 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["models"]:
        cache = r["step_cross_cache_mb"]
        lines.append(
            f"| {r['model']} | {r['encoder_gmac']:.1f} | {r['attention_share']:.0%} | "
            f"{r['step_weight_mb_fp32'] + cache:.0f} | {r['step_weight_mb_int8'] + cache:.0f} | "
            f"{_f(r.get('encoder_floor_ms_fp32'))} / {_f(r.get('encoder_floor_ms_int8'))} | "
            f"{_f(r.get('encoder_ceiling_int8_over_fp32'), '.2f')}x | "
            f"{_f(r.get('step_floor_ms_fp32'), '.2f')} ({r.get('step_read_from_fp32', '–')}) / "
            f"{_f(r.get('step_floor_ms_int8'), '.2f')} ({r.get('step_read_from_int8', '–')}) |"
        )
    lines += [
        "",
        "(step MB: weights, biases and scales on the step's path plus the fp32 cross-attention "
        "cache; int8 as the multilingual `quantized` recipe.)",
        "",
        "## Engines against their floor",
        "",
        "Measured figures from the named JSON (encoder ms per 30 s window, decoder ms per step "
        "after the prompt); the floor from this machine's peaks. A JSON measured on another "
        "CPU is marked: its fraction compares two machines.",
        "",
        "| source | CPU | model | engine | arithmetic | encoder ms | floor | fraction | "
        "step ms | floor | fraction |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["engines"]:
        cpu = ("this CPU" if r["same_cpu"] else f"**other CPU**: {r['cpu']}") + (
            f" ({', '.join(r['cpu_int8_features'])})" if not r["same_cpu"] else ""
        )
        if r.get("floor", True) is None:
            reason = "no per-window figures" if r["encoder_ms"] is None else "not modelled"
            lines.append(
                f"| {r['source']} | {cpu} | {r['model']} | {r['engine']} | {reason} "
                "| – | – | – | – | – | – |"
            )
            continue
        lines.append(
            f"| {r['source']} | {cpu} | {r['model']} | {r['engine']} | {r['precision']} | "
            f"{r['encoder_ms']:.0f} | {r['encoder_floor_ms']:.0f} | "
            f"{r['encoder_fraction']:.0%} | {_f(r['step_ms'], '.2f')} | "
            f"{r['step_floor_ms']:.2f} ({r['step_read_from']}) | "
            f"{_f(r['step_fraction'], '.0%') if r['step_fraction'] is not None else '–'} |"
        )
    lines += ["", "## What the gap means", "", GAP_TEXT, ""]
    return "\n".join(lines)


GAP_TEXT = (
    "The encoder is compute-bound: 1500 frames go through every weight matrix at once, so its "
    "time is its multiply-adds over the machine's matmul throughput, and int8 can gain at most "
    "the int8/fp32 peak ratio on the weight MatMuls; attention's activation products stay "
    "fp32 and cap the whole encoder's gain (Amdahl: the 'int8 ceiling' column). The decoder "
    "is memory-bound: one token multiplies a single row by every weight matrix, so a step "
    "cannot be faster than reading its weights and the cross-attention cache once; int8 "
    "shrinks the weights four-fold but not the fp32 cache. A fraction well below 100% is time "
    "spent elsewhere than the arithmetic or the reads the floor counts: Python between steps, "
    "per-op activation quantization at batch 1, copies of the key/value caches, threads "
    "waking. Where a step's bytes fit in the last-level cache the floor uses the cache's "
    "bandwidth, and small models sit near it only if nothing else evicts their weights."
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=DOCS)
    parser.add_argument("--threads", type=int, default=DEFAULT_THREADS)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny's fc1 shape only, a 256 MiB bandwidth array, 3 repeats: proves the script "
        "runs; its figures are marked as such",
    )
    parser.add_argument(
        "--quantization",
        default="auto",
        help="the build preset whose weight type the int8 paths use (default auto: the one "
        "build_model.py picks on this CPU; avx2 stores uint8 weights)",
    )
    args = parser.parse_args(argv)
    import onnxruntime

    from whisper_quant.quantizers import quantization_config, resolve_quantization

    preset = resolve_quantization(args.quantization)
    # The weight type the builds of that preset store, from the same Optimum config they use.
    weights = str(quantization_config(preset, per_channel=True).weights_dtype)
    if weights not in ("QInt8", "QUInt8"):
        raise SystemExit(f"{preset}: weights {weights}, which this script cannot build")

    repeats = 3 if args.quick else args.repeats
    sizes = ("tiny",) if args.quick else MEASURED_SIZES
    info = cpu_info()
    matmul = measure_matmuls(sizes, args.threads, repeats, args.quick, weights)
    bandwidth = measure_bandwidth(args.threads, repeats, args.quick)
    peaks = peaks_by_size(matmul)
    _, options = ort_session_options(args.threads, tuned=True)
    llc_mib = bandwidth["cache_bytes"] / 2**20
    report = {
        "machine": {
            "cpu": info.model,
            "cpu_flags": info.relevant_flags,
            "int8_features": list(int8_features(info.flags)),
            "logical_cpus": info.logical_cpus,
            "threads": args.threads,
            "onnxruntime": onnxruntime.__version__,
            "numpy": np.__version__,
            "quick": args.quick,
            "quantization_preset": preset,
            "int8_weights": weights,
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        },
        "methods": {
            "peaks": PEAK_METHOD.format(
                ort=onnxruntime.__version__,
                options=", ".join(f"{k}={v}" for k, v in options.items()),
                repeats=repeats,
                sample=MIN_SAMPLE_S,
                weights=weights,
                preset=args.quantization,
                preset_name=preset,
            ),
            "bandwidth": BANDWIDTH_METHOD.format(
                rows=GEMV_ROWS,
                threads=args.threads,
                repeats=repeats,
                memory_mib=bandwidth["memory"]["array_bytes"] // 2**20,
                cache_mib=bandwidth["cache"]["array_bytes"] // 2**20,
                llc_mib=f"{llc_mib:.0f}",
            ),
            "floor": FLOOR_METHOD,
        },
        "matmul": matmul,
        "peaks": peaks,
        "bandwidth": bandwidth,
        "models": model_rows(peaks, bandwidth),
        "engines": engine_rows(peaks, bandwidth),
    }
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "roofline.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out_dir / "roofline.md").write_text(markdown(report))
    print(f"wrote {args.out_dir / 'roofline.json'} and roofline.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
