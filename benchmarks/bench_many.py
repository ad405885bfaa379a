"""Many quiet streams in one process: 100, 500 and 1000 streams, each receiving one small
event every 0.5 s; eventstream (``on_event``: one worker thread per stream) against
launchdarkly-eventsource (one iterating thread per stream, as a blocking client needs).

The server is another process (``_ticker.py``: one asyncio loop; each connection's
events start at a random phase, so they spread over time).  Each measurement runs in a
fresh interpreter of its own (this script with ``--one``), so that memory freed by one
contestant cannot flatter the next: it opens N streams, waits until every stream has
had an event, then over a window of seconds takes its CPU time
(``time.process_time()``, all threads) against the events received, and the resident
memory (VmRSS), descriptors and threads the streams added (``/proc/self``); then it
stops every stream from the main thread and times until all have exited.  A soft
limit on open files below what N streams need is raised (``resource.setrlimit``, up
to the hard limit), and the report says so.

Usage: python benchmarks/bench_many.py [--quick] [--repeat N] [--streams 100,500,1000] [--check]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import _cli
import _net
from _lowrate import Ticker, raise_fd_limit

import eventstream

INTERVAL = 0.5  # seconds between a stream's events
COUNTS = (100, 500, 1000)
TIMEOUT = (30.0, 60.0)
TARGET_CPU = 1.0  # eventstream's CPU per event over launchdarkly-eventsource's, at most
TARGET_RSS = 1.25  # eventstream's RSS per stream over launchdarkly-eventsource's, at most
TARGET_FDS = 2.0  # descriptors per stream, at most (Linux)
SUBJECT = "eventstream"
PEER = "launchdarkly-eventsource"


# -- One measurement, in a process of its own -----------------------------------------------


def _proc(name: str) -> int:
    if name == "fds":
        return len(os.listdir("/proc/self/fd"))
    if name == "threads":
        return len(os.listdir("/proc/self/task"))
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise LookupError("no VmRSS")


class Tally:
    """One stream's event count: incremented by its own consuming thread only."""

    __slots__ = ("first", "n")

    def __init__(self, first: threading.Event) -> None:
        self.n = 0
        self.first = first

    def hit(self, _event: object = None) -> None:
        self.n += 1
        if self.n == 1:
            self.first.set()


class EventStreams:
    def __init__(self, url: str, tallies: list[Tally]) -> None:
        self.errors: list[BaseException] = []
        self._streams = [
            eventstream.EventStream(
                url, timeout=TIMEOUT, on_event=tally.hit, on_error=self.errors.append
            )
            for tally in tallies
        ]
        for stream in self._streams:
            stream.start()

    def stop_all(self, timeout: float) -> bool:
        for stream in self._streams:
            stream.stop()  # signal them all, then wait
        deadline = time.monotonic() + timeout
        return all(s.join(max(0.0, deadline - time.monotonic())) for s in self._streams)


class LaunchDarklyStreams:
    def __init__(self, url: str, tallies: list[Tally]) -> None:
        import urllib3
        from ld_eventsource import SSEClient
        from ld_eventsource.config import ConnectStrategy, ErrorStrategy

        self.errors: list[BaseException] = []
        timeout = urllib3.Timeout(connect=TIMEOUT[0], read=TIMEOUT[1])
        self._clients = [
            SSEClient(
                ConnectStrategy.http(url, urllib3_request_options={"timeout": timeout}),
                error_strategy=ErrorStrategy.always_fail(),
            )
            for _ in tallies
        ]
        self._threads = [
            threading.Thread(target=self._read, args=(c, t), name="bench-ld", daemon=True)
            for c, t in zip(self._clients, tallies)
        ]
        for thread in self._threads:
            thread.start()

    def _read(self, client: object, tally: Tally) -> None:
        try:
            for _event in client.events:  # type: ignore[attr-defined]
                tally.hit()
        except Exception as exc:  # a result, reported
            self.errors.append(exc)

    def stop_all(self, timeout: float) -> bool:
        for client in self._clients:
            client.close()  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)


def measure_one(name: str, url: str, count: int, window: float) -> dict[str, object]:
    """Open ``count`` streams, measure, stop them: the facts, for the parent."""
    limit = raise_fd_limit(count * 3 + 200)
    if name == PEER:
        import ld_eventsource  # noqa: F401  (imported before the baseline is taken)
    base = {key: _proc(key) for key in ("rss", "fds", "threads")}
    firsts = [threading.Event() for _ in range(count)]
    tallies = [Tally(first) for first in firsts]
    started = time.monotonic()
    streams = (EventStreams if name == SUBJECT else LaunchDarklyStreams)(url, tallies)
    deadline = started + 60
    connected = all(f.wait(max(0.0, deadline - time.monotonic())) for f in firsts)
    facts: dict[str, object] = {"limit": limit, "connected": connected}
    facts["connect_s"] = time.monotonic() - started
    events, cpu, t0 = sum(t.n for t in tallies), time.process_time(), time.monotonic()
    _net.wait(window)
    events = sum(t.n for t in tallies) - events
    facts.update(cpu=time.process_time() - cpu, seconds=time.monotonic() - t0, events=events)
    facts.update({key: _proc(key) - value for key, value in base.items()})
    stop_started = time.monotonic()
    facts["stopped"] = streams.stop_all(30)
    facts["stop_s"] = time.monotonic() - stop_started
    facts["errors"] = [repr(e) for e in streams.errors[:3]]
    return facts


# -- The parent: one child process per measurement ------------------------------------------


@dataclass
class Cell:
    name: str
    count: int
    runs: list[dict[str, object]] = field(default_factory=list)

    def median(self, key: str, per: str | None = None) -> float:
        values = []
        for run in self.runs:
            value = float(run[key])  # type: ignore[arg-type]
            if per == "event":
                value /= max(1, int(run["events"]))  # type: ignore[call-overload]
            elif per == "stream":
                value /= self.count
            values.append(value)
        return statistics.median(values)


def run_child(name: str, url: str, count: int, window: float) -> dict[str, object]:
    command = [sys.executable, str(Path(__file__).resolve()), "--one", name, url]
    command += ["--count", str(count), "--window", str(window)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        last = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"failure": last[0]}
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def table(count: int, cells: list[Cell]) -> list[str]:
    lines = [
        f"{count} streams, one event each every {INTERVAL} s",
        f"  {'contestant':<26}{'us/event':>9}{'% core':>8}{'KiB RSS/str':>12}{'fds/str':>8}"
        f"{'thr/str':>8}{'stop all s':>11}  check",
    ]
    for cell in cells:
        good = [r for r in cell.runs if "failure" not in r]
        problems = [r["failure"] for r in cell.runs if "failure" in r]
        problems += [r["errors"] for r in good if r["errors"] or not r["connected"]]
        problems += ["not all stopped" for r in good if not r["stopped"]]
        if not good:
            lines.append(f"  {cell.name:<26}FAILED: {problems[:1]}")
            continue
        cell.runs = good
        share = cell.median("cpu") / cell.median("seconds")
        lines.append(
            f"  {cell.name:<26}{cell.median('cpu', 'event') * 1e6:>9.1f}{share:>8.1%}"
            f"{cell.median('rss', 'stream') / 1024:>12.1f}{cell.median('fds', 'stream'):>8.2f}"
            f"{cell.median('threads', 'stream'):>8.2f}{cell.median('stop_s'):>11.3f}"
            f"  {'ok' if not problems else 'FAILED: ' + str(problems[0])}"
        )
    limits = {str(r["limit"]) for c in cells for r in c.runs if "limit" in r}
    lines.append(f"  open files: {'; '.join(sorted(limits))}")
    return lines


def assess(count: int, cells: list[Cell]) -> tuple[str, bool]:
    by = {c.name: c for c in cells if c.runs and all("failure" not in r for r in c.runs)}
    prefix = (
        f"{count} streams: target eventstream CPU/event <= {TARGET_CPU:.2f}x ld, RSS/stream"
        f" <= {TARGET_RSS:.2f}x ld, fds/stream <= {TARGET_FDS:.0f}:"
    )
    if SUBJECT not in by:
        return f"{prefix} MISSED, eventstream failed", False
    es = by[SUBJECT]
    fds = es.median("fds", "stream")
    facts = [f"fds/stream {fds:.2f}"]
    met = fds <= TARGET_FDS
    if PEER in by:
        cpu = es.median("cpu", "event") / by[PEER].median("cpu", "event")
        rss = es.median("rss", "stream") / by[PEER].median("rss", "stream")
        facts = [f"CPU/event {cpu:.2f}x", f"RSS/stream {rss:.2f}x", *facts]
        met = met and cpu <= TARGET_CPU and rss <= TARGET_RSS
    return f"{prefix} {'met' if met else 'MISSED'}; {', '.join(facts)}", met


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _cli.new_parser(
        __doc__,
        quick="100 and 500 streams, 4 s windows, one run each",
        repeat="runs per contestant and count (default 1)",
    )
    parser.add_argument("--streams", help="stream counts, comma-separated (default 100,500,1000)")
    parser.add_argument("--one", nargs=2, metavar=("NAME", "URL"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--window", type=float, help=argparse.SUPPRESS)
    return _cli.parse(parser, argv, repeat=(1, 1))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure_one(args.one[0], args.one[1], args.count, args.window)))
        return 0
    counts = [int(n) for n in args.streams.split(",")] if args.streams else list(COUNTS)
    if args.quick and not args.streams:
        counts = counts[:2]
    window = 4.0 if args.quick else 10.0
    extra = ["--streams", ",".join(map(str, counts))]
    command = _cli.command(__file__, args, *extra)
    _net.clear_proxies()
    try:
        import ld_eventsource  # noqa: F401

        names, missing = [SUBJECT, PEER], []
    except ImportError:
        names, missing = [SUBJECT], [PEER]
    _net.header("eventstream many-streams benchmark", command, names, missing)
    print(
        f"method:   each measurement in a fresh process; {window:.0f} s window after every"
        f" stream had an event; CPU of that process (all threads) per event received;"
        f" RSS, fds and threads added per stream (/proc/self); {args.repeat} run(s), median"
    )
    summary, missed = [], []
    for count in counts:
        cells = [Cell(name, count) for name in names]
        with Ticker(INTERVAL) as ticker:
            for rep in range(args.repeat):
                turn = rep % len(cells)
                for cell in [*cells[turn:], *cells[:turn]]:
                    cell.runs.append(run_child(cell.name, ticker.url, count, window))
        print("\n" + "\n".join(table(count, cells)), flush=True)
        line, met = assess(count, cells)
        summary.append(line)
        missed += [] if met else [str(count)]
    print("\nsummary")
    print("\n".join(summary))
    print(f"targets missed on: {', '.join(missed) or 'none'}")
    return _cli.end(args, bool(missed))


if __name__ == "__main__":
    sys.exit(main())
