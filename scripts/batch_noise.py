"""Does a batched window's transcript depend on the windows it shares a batch with?

The batched path (longform_batched.py) encodes up to `--batch-size` chunk windows in one
encoder call. An int8 ONNX graph quantizes its activations dynamically, with one scale per
tensor (DynamicQuantizeLinear), so in one call of several windows each window's numbers
depend on the others; fp32 graphs compute each row alone. This script transcribes each clip
batched three ways with the same engine, chunks and options:

- `batch`: as the engine runs (one encoder and one cross-attention call per batch);
- `alone`: every window's encoder and cross-attention projections computed in a call of its
  own, as the sequential path computes them;
- `encoder`: every window's encoder alone, the cross-attention projections in one call (the
  fastest of the three on the Intel Xeon of docs/batched.md).

The decoder steps run the batch's rows together in all three. It prints, per engine, clip and
mode, the WER against `--refs` and the words written, and the chunks whose word count differs
most between the modes. fp32 engines give the same text every way; an int8 engine's
difference is its own quantization noise, not the batching.

    python scripts/batch_noise.py models/tiny.en long/english-*.flac --refs long/refs.tsv \
        --engines quantized,onnx-fp32 --no-timestamps
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.audio import decode_audio  # noqa: E402
from whisper_quant.bench import read_references  # noqa: E402
from whisper_quant.coverage import chunk_words  # noqa: E402
from whisper_quant.engines import ENGINES  # noqa: E402
from whisper_quant.metrics import word_error_rate  # noqa: E402


class WindowsAlone:
    """A window model whose `encode` runs each row in calls of its own: the encoder and the
    cross-attention projections, or (`cross_together`) the encoder only."""

    def __init__(self, inner, cross_together: bool):
        self.inner, self.cross_together = inner, cross_together

    def encode(self, features: np.ndarray):
        if not self.cross_together:
            parts = [self.inner.encode(features[i : i + 1]) for i in range(features.shape[0])]
            return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
        engine, watch = self.inner.engine, self.inner.watch
        with watch.section("encoder"):
            rows = [
                engine.encoder.run(None, {"input_features": features[i : i + 1]})[0]
                for i in range(features.shape[0])
            ]
        with watch.section("cross_kv"):
            outputs = engine.cross.run(
                engine.cross_names, {"encoder_hidden_states": np.concatenate(rows)}
            )
        return dict(zip(engine.cross_names, outputs, strict=True))

    def __getattr__(self, name):
        return getattr(self.inner, name)


def alone(engine_class, cross_together: bool):
    """`engine_class` with every window encoded alone in the batched path."""

    class Alone(engine_class):
        def window_model(self, watch):
            return WindowsAlone(super().window_model(watch), cross_together)

    return Alone


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("clips", nargs="+", type=Path)
    parser.add_argument("--refs", type=Path, required=True, help="file<TAB>reference lines")
    parser.add_argument("--engines", default="quantized,onnx-fp32")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--no-timestamps", action="store_true")
    args = parser.parse_args(argv)
    refs = read_references(args.refs)
    for name in args.engines.split(","):
        if not hasattr(ENGINES[name], "fuse_attention"):
            parser.error(f"{name}: only the ONNX engines run their encoder through this path")
        engines = {
            "batch": ENGINES[name](args.model_dir),
            "alone": alone(ENGINES[name], False)(args.model_dir),
            "encoder": alone(ENGINES[name], True)(args.model_dir),
        }
        for clip in args.clips:
            audio = decode_audio(clip, max_seconds=None)
            runs = {}
            for mode, engine in engines.items():
                runs[mode] = engine.transcribe(
                    audio, batch_size=args.batch_size, timestamps=not args.no_timestamps
                )
                wer = word_error_rate(refs[clip.name], runs[mode].text)
                print(
                    f"{name:>10} {clip.name:24} {mode:7}: WER {wer.rate:6.2%} "
                    f"({wer.errors}/{wer.reference_length}), {len(runs[mode].text.split())} words",
                    flush=True,
                )
            words = {mode: chunk_words(run.segments) or {} for mode, run in runs.items()}
            chunks = sorted(set().union(*(set(w) for w in words.values())))
            counts = {c: [w.get(c, 0) for w in words.values()] for c in chunks}
            spread = sorted((max(n) - min(n), c) for c, n in counts.items())
            for difference, chunk in reversed(spread[-3:]):
                if difference:
                    listed = ", ".join(
                        f"{m} {n}" for m, n in zip(words, counts[chunk], strict=True)
                    )
                    print(f"{'':>10} chunk {chunk}: words {listed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
