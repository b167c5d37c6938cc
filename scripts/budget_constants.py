"""Recompute the memory budget's constants from the committed load reports.

Reads docs/benchmark-*.json (or the reports given), derives the constants as
`whisper_quant.budget.derive_constants` does, and prints them as budget.py holds them:

    python scripts/budget_constants.py

Paste the output over the constants in src/whisper_quant/budget.py after a re-measurement;
tests/test_budget.py fails while they differ.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.budget import derive_constants  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "reports", nargs="*", type=Path, help="benchmark JSONs (default: docs/benchmark-*.json)"
    )
    args = parser.parse_args()
    paths = args.reports or sorted((ROOT / "docs").glob("benchmark-*.json"))
    constants = derive_constants(json.loads(p.read_text(encoding="utf-8")) for p in paths)
    print(f"# From {', '.join(p.name for p in paths)}")
    print("ENGINE_HELD_PER_WEIGHT_BYTE = {")
    for name, factor in constants.engine_held_per_weight_byte.items():
        print(f"    {name!r}: {factor:g},".replace("'", '"'))
    print("}")
    print(f"HELD_PER_WEIGHT_BYTE = {constants.held_per_weight_byte:g}")
    print(f"WORKER_BASELINE_MIB = {constants.worker_baseline_mib}")
    print(f"PEAK_RESERVE_MIB = {constants.peak_reserve_mib}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
