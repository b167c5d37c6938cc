"""Refresh docs/screenshot.png, the picture the README shows: the page after one comparison.

    python scripts/screenshot.py                                   # the first example
    python scripts/screenshot.py --example "English: three playing cards"
    python scripts/screenshot.py --clip my.wav --reference "what is said" --out /tmp/page.png
    python scripts/screenshot.py --url http://127.0.0.1:7860/      # an app already running

Without --url the script launches `python app.py` the way the UI tests do (tests/app_server.py):
on a free local port, with the models in --models-dir (app.py builds the default model there
first if none is built), offline, and without this shell's WHISPER_* settings, so the page
shows the defaults. It stops the app at the end. The browser is a headless Chromium driven
by tests/studio_page.py, the helper the browser test uses; it needs Playwright.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

import studio_page  # noqa: E402
from app_server import running_app  # noqa: E402

from whisper_quant.launch import AppStartError  # noqa: E402

DEFAULT_OUT = ROOT / "docs" / "screenshot.png"
DEFAULT_EXAMPLE = "English: go forward ten meters"
DEFAULT_MODELS_DIR = ROOT / "models"  # app.py's default, relative to its folder


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Run one comparison in the studio's page and save a screenshot of it."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"where the PNG goes (default: {DEFAULT_OUT.relative_to(ROOT)})",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--example",
        default=DEFAULT_EXAMPLE,
        help=f"the label of the example to click (default: {DEFAULT_EXAMPLE!r})",
    )
    source.add_argument("--clip", type=Path, help="a clip to upload instead of an example")
    parser.add_argument(
        "--reference", help="with --clip: the reference transcript to type (default: none)"
    )
    parser.add_argument("--url", help="an app already running (default: launch app.py here)")
    parser.add_argument(
        "--models-dir",
        type=Path,
        default=DEFAULT_MODELS_DIR,
        help="without --url: the app's built models (default: models/ in the repository)",
    )
    parser.add_argument(
        "--chromium",
        type=Path,
        default=studio_page.CHROMIUM,
        help=f"the Chromium executable (default: {studio_page.CHROMIUM})",
    )
    return parser


def take(url: str, args: argparse.Namespace) -> studio_page.Transcripts:
    """Load the clip at `url`, run it, save the page to args.out; the transcripts shown."""
    with studio_page.open_page(url, args.chromium) as page:
        if args.clip is not None:
            studio_page.upload(page, args.clip, args.reference)
        else:
            studio_page.click_example(page, args.example)
        shown = studio_page.run(page)
        studio_page.screenshot(page, args.out)
    return shown


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.reference is not None and args.clip is None:
        parser.error("--reference goes with --clip (an example brings its own)")
    if args.clip is not None and not args.clip.is_file():
        parser.error(f"no such clip: {args.clip}")
    if not args.chromium.exists():
        parser.error(f"no Chromium at {args.chromium}")
    try:
        from playwright.sync_api import Error as PlaywrightError
    except ImportError:
        parser.error("the browser is driven with Playwright: pip install playwright")
    try:
        if args.url:
            shown = take(args.url, args)
        else:
            with tempfile.TemporaryDirectory(prefix="screenshot-") as folder:
                log = Path(folder) / "app.log"
                with running_app(args.models_dir.resolve(), log) as url:
                    shown = take(url, args)
    except (AppStartError, studio_page.StudioPageError, PlaywrightError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"original:  {shown.original}")
    print(f"quantized: {shown.quantized}")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
