"""A bounded soak test: many requests from a few clients at once, then what it cost the server.

    python scripts/soak.py                       # launch app.py here, 200 requests, 4 clients
    python scripts/soak.py --url http://host:7860/ --pid 1234
    python scripts/soak.py --requests 500 --clients 8 --max-minutes 30

Each client sends the clips in turn through the app's public API (`/compare`, as
gradio_client calls it) and checks that both transcripts contain the clip's word. The run
stops after --requests requests or --max-minutes, whichever comes first. The report gives
requests per minute, failures (errors and wrong transcripts), latency as the clients saw it
(queueing included), and the resident memory of the server process and its engine workers:
after a warm-up, at the end and at the peak, sampled every second.

Without --url the script launches `python app.py` itself on a free local port (models from
--models-dir, or the app's default) and stops it at the end. With --url it finds the server's
process by its port when the server runs on this machine, or takes --pid; without either it
reports no memory.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from whisper_quant.launch import AppStartError, listening_pid, running_app  # noqa: E402

DEFAULT_CLIPS = (
    f"{ROOT / 'examples' / 'goforward.wav'}=forward",
    f"{ROOT / 'examples' / 'cards-005.wav'}=spades",
)
SAMPLE_EVERY_S = 1.0
MIB = 2**20


@dataclass(frozen=True)
class Clip:
    path: Path
    word: str  # must appear in both transcripts; empty: no check

    @classmethod
    def parse(cls, text: str) -> Clip:
        path, _, word = text.partition("=")
        if not Path(path).is_file():
            raise argparse.ArgumentTypeError(f"no such clip: {path}")
        return cls(Path(path), word.strip().lower())


@dataclass
class Tally:
    """What the clients saw; shared between their threads under a lock."""

    sent: int = 0
    latencies: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, limit: int) -> int | None:
        """The next request's number, or None when `limit` are already sent."""
        with self.lock:
            if self.sent >= limit:
                return None
            self.sent += 1
            return self.sent

    def done(self, seconds: float, failure: str | None) -> None:
        with self.lock:
            if failure is None:
                self.latencies.append(seconds)
            else:
                self.failures[failure] += 1

    @property
    def completed(self) -> int:
        return len(self.latencies) + sum(self.failures.values())


# --- the server's memory ------------------------------------------------------------------


class MemoryWatch:
    """Samples the resident memory of a process and of its children every second (the
    children: the engine workers and the fork server they are forked from)."""

    def __init__(self, pid: int):
        self.process = psutil.Process(pid)
        self.samples: list[tuple[float, int, int]] = []  # (time, server RSS, children RSS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> MemoryWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def now(self) -> tuple[int, int]:
        server = self.process.memory_info().rss
        children = 0
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                children += child.memory_info().rss
        return server, children

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.monotonic(), *self.now()))
            self._stop.wait(SAMPLE_EVERY_S)


# --- the soak -----------------------------------------------------------------------------


def client_loop(url: str, clips: list[Clip], tally: Tally, limit: int, deadline: float, model):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    while time.monotonic() < deadline and (number := tally.take(limit)) is not None:
        clip = clips[number % len(clips)]
        started = time.perf_counter()
        failure = None
        try:
            job = client.submit(
                handle_file(str(clip.path)),
                "",
                model,
                "auto-detect",
                "transcribe",
                api_name="/compare",
            )
            result = job.result(timeout=max(1.0, deadline - time.monotonic()))
            texts = (result[0].lower(), result[1].lower())
            if clip.word and not all(clip.word in text for text in texts):
                failure = f"wrong transcript for {clip.path.name}: {texts}"
        except Exception as e:  # noqa: BLE001 - every failure is counted and reported
            failure = f"{type(e).__name__}: {str(e)[:160]}"
        tally.done(time.perf_counter() - started, failure)


def soak(url: str, pid: int | None, args) -> int:
    clips = [Clip.parse(text) for text in (args.clip or DEFAULT_CLIPS)]
    watch = MemoryWatch(pid).start() if pid else None
    tally = Tally()
    started = time.monotonic()
    deadline = started + args.max_minutes * 60
    threads = [
        threading.Thread(
            target=client_loop,
            args=(url, clips, tally, args.requests, deadline, args.model),
            daemon=True,
        )
        for _ in range(args.clients)
    ]
    for thread in threads:
        thread.start()
    warmed_at = None
    next_report = started + 30
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline + 30:
        time.sleep(0.5)
        if warmed_at is None and tally.completed >= args.warmup:
            warmed_at = time.monotonic()
        if time.monotonic() >= next_report:
            next_report += 30
            print(f"  {tally.completed}/{args.requests} done", flush=True)
    elapsed = time.monotonic() - started
    if watch:
        watch.stop()
    hit_cap = any(t.is_alive() for t in threads) or (
        tally.completed < args.requests and time.monotonic() >= deadline
    )
    return report(tally, elapsed, watch, warmed_at, hit_cap, args)


def report(tally: Tally, elapsed: float, watch, warmed_at, hit_cap: bool, args) -> int:
    completed = tally.completed
    failed = sum(tally.failures.values())
    print(f"\nrequests:    {completed} of {args.requests} from {args.clients} clients", end="")
    print(f" (stopped at the {args.max_minutes:g} min cap)" if hit_cap else "")
    print(f"duration:    {elapsed:.0f} s")
    print(f"throughput:  {completed / (elapsed / 60):.1f} requests per minute")
    print(f"failures:    {failed}")
    for message, count in tally.failures.most_common():
        print(f"  {count} x {message}")
    if tally.latencies:
        latencies = sorted(tally.latencies)
        p95 = latencies[min(len(latencies) - 1, round(0.95 * (len(latencies) - 1)))]
        print(
            f"latency:     median {statistics.median(latencies):.2f} s, p95 {p95:.2f} s, "
            f"max {latencies[-1]:.2f} s (clients' view: queueing + both engines)"
        )
    if watch and watch.samples:
        start = watch.samples[0]
        warm = next((s for s in watch.samples if warmed_at and s[0] >= warmed_at), start)
        end = watch.samples[-1]
        peak = max(watch.samples, key=lambda s: s[1] + s[2])

        def mib(sample) -> str:
            return (
                f"server {sample[1] / MIB:.0f} MiB + workers {sample[2] / MIB:.0f} MiB "
                f"= {(sample[1] + sample[2]) / MIB:.0f} MiB"
            )

        print(f"memory:      at start     {mib(start)}")
        print(f"             after {args.warmup:<3d}    {mib(warm)}")
        print(f"             at the end   {mib(end)}")
        print(f"             peak         {mib(peak)}")
        print(
            f"growth:      server {(end[1] - warm[1]) / MIB:+.1f} MiB, workers "
            f"{(end[2] - warm[2]) / MIB:+.1f} MiB since the warm-up "
            f"({len(watch.samples)} samples, every {SAMPLE_EVERY_S:g} s)"
        )
    return 1 if failed or completed < args.requests else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="a running app; default: launch app.py here")
    parser.add_argument("--pid", type=int, help="the server's pid, to watch its memory")
    parser.add_argument("--models-dir", help="WHISPER_MODELS_DIR for the launched app")
    parser.add_argument("--model", default="tiny.en")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--max-minutes", type=float, default=20.0, help="hard time cap")
    parser.add_argument(
        "--warmup", type=int, default=20, help="requests before the memory baseline"
    )
    parser.add_argument(
        "--clip",
        action="append",
        metavar="PATH=WORD",
        help="a clip and a word both transcripts must contain (repeatable; default: "
        "examples/goforward.wav=forward and examples/cards-005.wav=spades)",
    )
    parser.add_argument(
        "--log", type=Path, default=Path(tempfile.gettempdir()) / "soak-app.log", help="app log"
    )
    args = parser.parse_args(argv)

    if args.url:
        pid = args.pid or listening_pid(args.url)
        if pid is None:
            print("memory: not watched (pass --pid for a server on this machine)")
        return soak(args.url, pid, args)
    print(f"launching app.py (log: {args.log}) ...", flush=True)
    env = {"WHISPER_MODELS_DIR": args.models_dir} if args.models_dir else {}
    try:
        with running_app(ROOT / "app.py", args.log, **env) as url:
            print(f"soaking {url} with {args.requests} requests from {args.clients} clients")
            return soak(url, listening_pid(url), args)
    except AppStartError as e:
        raise SystemExit(f"{e}\n(full log: {args.log})") from None


if __name__ == "__main__":
    sys.exit(main())
