"""How the gains scale with model size: every size on equal work, one table and one plot.

For each built model folder given, runs `benchmark.py --fixed-tokens N` (every engine
decodes the same N forced tokens per 30 s window, so random and real weights compare alike)
with the original, onnx-fp32 (where asked) and quantized, and collects per engine the
encoder time per window, the decoder's cost per step, latency, memory held, peak and disk,
with the model's build time and build peak from its manifest (and docs/builds.json's
/usr/bin/time figure where it has the shape). Writes docs/scaling.json, .md and .png.

The benchmark runs `--passes` times per model (in this process, at least MIN_PASSES, each a
fresh set of workers, models taken in turn so a slow spell of the machine does not fall on
one model); every figure is the median over the passes, with its spread (lowest and highest
pass) beside it as `<figure>_range`. A pass's speed-up is against the original of the same pass.

    python scripts/scaling.py models/tiny.en models-big/large-v2-random \\
        --clip tests/data/goforward.wav --fixed-tokens 64 --passes 3

Run on a quiet machine: every figure is wall-clock time on this machine's cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
DOCS = ROOT / "docs"
# The article: whisper-large-v2, Optimum dynamic int8 (avx512_vnni, per-tensor), CPU.
ARTICLE = {"model": "large-v2", "speedup": 1.43, "memory_saving": 0.64}
ENGINES = ("original", "onnx-fp32", "quantized")
# One pass is one sample of a machine whose speed drifts; the median needs three.
MIN_PASSES = 3
DEFAULT_PASSES = 3


def run(folder: Path, clips: list[Path], tokens: int, engines: tuple[str, ...], repeat: int):
    """One pass: the benchmark, in this process; its engines run in fresh worker processes
    (compare.Studio), so nothing of an earlier pass is in their timings or memory."""
    from whisper_quant.cli import benchmark_main

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        arguments = [
            *map(str, clips),
            "--models-dir",
            str(folder.parent),
            "--model",
            folder.name,
            "--engines",
            ",".join(engines),
            "--fixed-tokens",
            str(tokens),
            "--repeat",
            str(repeat),
            "--json",
            str(out),
        ]
        with contextlib.redirect_stdout(sys.stderr):
            code = benchmark_main(arguments)
        if code not in (0, 1):  # 1: a clip failed, and the report says which
            raise SystemExit(f"benchmark.py {' '.join(arguments)} exited with {code}")
        return json.loads(out.read_text(encoding="utf-8"))


def against_original(report: dict, name: str, figure: str) -> float:
    """The benchmark's own summary figure (`speedup` or `memory_saving`) of engine `name`
    against the original; its keys are bare for quantized and `<engine>_` for the others."""
    if name == "original":
        return {"speedup": 1.0, "memory_saving": 0.0}[figure]
    prefix = "" if name == "quantized" else f"{name}_"
    return report["summary"][prefix + figure]


def row(report: dict, builds: dict) -> dict:
    engines = report["engines"]
    shape = report["model"].removesuffix("-random")
    build = report.get("build") or {}
    measured = builds.get(shape, {})
    result = {
        "model": report["model"],
        "synthetic": report["model"].endswith("-random"),
        "build_s": measured.get("build_seconds") or build.get("total_s"),
        "build_peak_gib": measured["peak_rss_bytes"] / 2**30
        if measured
        else (build["peak_mib"] / 1024 if build.get("peak_mib") else None),
        "build_peak_method": "/usr/bin/time -v (docs/builds.json)"
        if measured
        else "the manifest's per-stage peaks",
        "engines": {},
    }
    for name, e in engines.items():
        result["engines"][name] = {
            "latency_s": e["median_latency_s"],
            "speedup": against_original(report, name, "speedup"),
            "encoder_ms_per_window": e["encoder_ms_per_window"],
            "ms_per_step": e["ms_per_token_steps"],
            "memory_mib": e["memory_mib"],
            "memory_saving": against_original(report, name, "memory_saving"),
            "peak_mib": e["peak_memory_mib"],
            "disk_mib": e["disk_mib"],
        }
    return result


def combine(passes: list[dict]) -> dict:
    """One model's rows from several passes as one: every engine figure is the median over
    the passes, with `<figure>_range` [lowest, highest] and `passes` the count."""
    first = passes[0]
    result = {**first, "passes": len(passes), "engines": {}}
    for name in first["engines"]:
        figures: dict = {}
        for key in first["engines"][name]:
            values = [p["engines"][name][key] for p in passes]
            if any(v is None for v in values):
                figures[key], figures[f"{key}_range"] = None, None
                continue
            figures[key] = statistics.median(values)
            figures[f"{key}_range"] = [min(values), max(values)]
        result["engines"][name] = figures
    return result


def _spread(e: dict, key: str, scale: float, fmt: str, unit: str = "") -> str:
    """'1,234 (1,200-1,300)': the median, and the lowest and highest pass."""
    low, high = e[f"{key}_range"]
    return (
        f"{format(e[key] * scale, fmt)}{unit} "
        f"({format(low * scale, fmt)}-{format(high * scale, fmt)}{unit})"
    )


def markdown(rows: list[dict], tokens: int, machine: dict) -> str:
    lines = [
        f"# Scaling: every size on equal work ({tokens} forced tokens per window)",
        "",
        f"Measured by `scripts/scaling.py` on {machine['cpu']}, {machine['threads']} threads per "
        "engine, each engine in its own worker process. `--fixed-tokens` makes every engine "
        "decode the same token ids, so the work is equal whatever the weights; models marked "
        "synthetic have random weights (speed and memory only, transcripts are meaningless). "
        f"Each figure is the median of {rows[0]['passes']} passes, each a fresh run of the "
        "benchmark; latency, speed-up, encoder and decoder show the lowest and highest pass in "
        "brackets.",
        "",
        "| model | weights | engine | latency (ms) | speed-up | encoder (ms / window) | "
        "decoder (ms / step) | memory held (MiB) | less memory | peak extra (MiB) | disk (MiB) "
        "| build (s) | build peak (GiB) |",
        "|" + "---|" * 13,
    ]
    for r in rows:
        for name, e in r["engines"].items():
            lines.append(
                f"| {r['model']} | {'synthetic' if r['synthetic'] else 'real'} | {name} | "
                f"{_spread(e, 'latency_s', 1000, ',.0f')} | {_spread(e, 'speedup', 1, '.2f', 'x')} | "
                f"{_spread(e, 'encoder_ms_per_window', 1, ',.0f')} | "
                f"{_spread(e, 'ms_per_step', 1, '.1f')} | "
                f"{e['memory_mib']:,.0f} | {e['memory_saving']:.0%} | "
                f"{e['peak_mib']:,.0f} | {e['disk_mib']:,.0f} | "
                + (f"{r['build_s']:,.0f}" if r["build_s"] else "")
                + " | "
                + (f"{r['build_peak_gib']:.1f}" if r["build_peak_gib"] else "")
                + " |"
            )
    article = next((r for r in rows if r["model"].startswith(ARTICLE["model"])), None)
    if article and "quantized" in article["engines"]:
        q = article["engines"]["quantized"]
        lines += [
            "",
            f"**{ARTICLE['model']} against the article.** The article reported about "
            f"{ARTICLE['speedup']:.2f}x faster (about 30% less time) and "
            f"{ARTICLE['memory_saving']:.0%} less memory for Optimum's dynamic int8 of "
            f"whisper-large-v2 on CPU. Here, on the same shape with synthetic weights and equal "
            f"work: **{q['speedup']:.2f}x** faster ({q['speedup_range'][0]:.2f}-"
            f"{q['speedup_range'][1]:.2f}x over {article['passes']} passes) and "
            f"**{q['memory_saving']:.0%}** less memory held than the original, medians of "
            f"{article['passes']} passes.",
        ]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path, tokens: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["model"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for engine, color in zip(ENGINES, ("#7f7f7f", "#1f77b4", "#2ca02c"), strict=True):
        x = [i for i, r in enumerate(rows) if engine in r["engines"]]
        if not x:
            continue
        latency = [rows[i]["engines"][engine]["latency_s"] for i in x]
        memory = [rows[i]["engines"][engine]["memory_mib"] / 1024 for i in x]
        axes[0].plot(x, latency, "o-", color=color, label=engine)
        axes[1].plot(x, memory, "o-", color=color, label=engine)
    for ax, title in zip(
        axes,
        (f"Latency, {tokens} forced tokens per window (s)", "Memory held by the model (GiB)"),
        strict=True,
    ):
        ax.set_xticks(range(len(names)), names, rotation=15, ha="right", fontsize=8)
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
        ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path, help="built model folders, small first")
    parser.add_argument("--clip", type=Path, action="append", required=True)
    parser.add_argument("--fixed-tokens", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per clip in a pass")
    parser.add_argument(
        "--passes",
        type=int,
        default=DEFAULT_PASSES,
        help=f"benchmark runs per model, medians and spread over them (at least {MIN_PASSES})",
    )
    parser.add_argument("--output-dir", type=Path, default=DOCS, help="default: docs/")
    parser.add_argument(
        "--no-fp32-from-gib",
        type=float,
        default=None,
        help="leave onnx-fp32 out for models whose fp32 weights exceed this many GiB",
    )
    args = parser.parse_args()
    if args.passes < MIN_PASSES:
        parser.error(f"--passes must be at least {MIN_PASSES}: one pass has no median or spread")
    builds_path = DOCS / "builds.json"
    # docs/builds.json (scripts/measure_builds.py): /usr/bin/time -v figures per shape.
    builds = json.loads(builds_path.read_text())["builds"] if builds_path.is_file() else {}
    passes: dict[Path, list[dict]] = {folder: [] for folder in args.folders}
    machine = None
    for index in range(args.passes):
        for folder in args.folders:
            engines = ENGINES
            weights = sum(p.stat().st_size for p in (folder / "original").glob("*.safetensors"))
            if args.no_fp32_from_gib is not None and weights > args.no_fp32_from_gib * 2**30:
                engines = ("original", "quantized")
            report = run(folder, args.clip, args.fixed_tokens, engines, args.repeat)
            machine = report["machine"]
            passes[folder].append(row(report, builds))
            print(f"{folder.name}: pass {index + 1}/{args.passes} done", file=sys.stderr)
    rows = [combine(passes[folder]) for folder in args.folders]
    data = {
        "fixed_tokens": args.fixed_tokens,
        "passes": args.passes,
        "spread": "each figure's *_range: the lowest and highest of the passes",
        "machine": machine,
        "article": ARTICLE,
        "rows": rows,
    }
    out = args.output_dir
    (out / "scaling.json").write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    text = markdown(rows, args.fixed_tokens, machine)
    (out / "scaling.md").write_text(text, encoding="utf-8")
    plot(rows, out / "scaling.png", args.fixed_tokens)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
