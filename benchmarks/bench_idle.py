"""Idle cost: 50 silent streams of eventstream, and of sseclient-py,
launchdarkly-eventsource and httpx-sse, each read the way its users read it.

A server process (``python benchmarks/_net.py hold``: ``eventstream.testing.SSEServer``
sending the headers, then nothing) holds 50 streams of one contestant open.  Once
every stream has its headers, this process's CPU time (``time.process_time()``, all
threads) is taken over a window of silence, and the threads and file descriptors the
50 streams added are counted (from ``/proc/self``).  eventstream delivers with
``on_event``, so its streams need no thread but their workers; each peer's stream is
read on a thread of its own, as a blocking client must be.  "no streams" is this
process with nothing open: the floor of the measurement.

Repetitions are interleaved, the first contestant rotating; each gets its own server
process, whose exit ends the peers' streams (their own stop would wait for a read).

Usage: python benchmarks/bench_idle.py [--quick] [--repeat N] [--check]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import _cli
import _net
from _net import Reader, ServerProcess, Timeouts

import eventstream

STREAMS = 50
TIMEOUTS = Timeouts(5.0, 60.0)
TARGET_CPU = 0.001  # of one core: 5 ms of CPU in a 5 s window
NONE = "no streams"


@dataclass
class Window:
    cpu: float  # seconds of CPU over the window
    seconds: float
    threads: int  # added by the streams
    fds: int
    problem: str | None = None


@dataclass
class Result:
    name: str
    windows: list[Window] = field(default_factory=list)


def _count(directory: str, fallback: Callable[[], int]) -> int:
    try:
        return len(os.listdir(directory))
    except OSError:
        return fallback()


def threads_now() -> int:
    return _count("/proc/self/task", threading.active_count)


def fds_now() -> int:
    return _count("/proc/self/fd", lambda: 0)


class EventStreams:
    """50 eventstream streams delivering to ``on_event``: one worker thread each."""

    def __init__(self, url: str) -> None:
        self._lock = threading.Lock()
        self.opens = 0
        self.errors: list[BaseException] = []
        self.all_open = threading.Event()
        self._streams = [
            eventstream.EventStream(
                url,
                timeout=(TIMEOUTS.connect, TIMEOUTS.read),
                on_event=lambda event: None,
                on_open=self._opened,
                on_error=self.errors.append,
            ).start()
            for _ in range(STREAMS)
        ]

    def _opened(self, info: object) -> None:
        with self._lock:
            self.opens += 1
            if self.opens == STREAMS:
                self.all_open.set()

    def ready(self, timeout: float) -> bool:
        return self.all_open.wait(timeout)

    def problem(self) -> str | None:
        if self.opens != STREAMS or self.errors:
            return f"{self.opens} connects for {STREAMS} streams, errors: {self.errors[:1]}"
        return None

    def close(self, server: ServerProcess) -> None:
        for stream in self._streams:
            stream.stop()  # signal them all, then wait
        for stream in self._streams:
            stream.join(5)
        server.close()


class PeerStreams:
    """50 streams of one peer, each read on its own thread."""

    def __init__(self, cls: type[Reader], url: str) -> None:
        self._readers = [cls(url, None, TIMEOUTS).start() for _ in range(STREAMS)]

    def ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(r.ready.wait(max(0.0, deadline - time.monotonic())) for r in self._readers)

    def problem(self) -> str | None:
        ended = [r.ended for r in self._readers if r.ended != "running"]
        got = sum(r.received.qsize() for r in self._readers)
        if ended or got:
            return f"{len(ended)} streams ended ({ended[:1]}), {got} events"
        return None

    def close(self, server: ServerProcess) -> None:
        server.close()  # drops every connection: each reader's read ends
        for reader in self._readers:
            reader.join(10)


def measure_one(name: str, cls: type[Reader] | None, window: float) -> Window:
    gc.collect()
    with ServerProcess("hold") as server:
        threads, fds = threads_now(), fds_now()  # the server's pipes are not the streams'
        if name == NONE:
            streams = None
        elif cls is None:
            streams = EventStreams(server.url)
        else:
            streams = PeerStreams(cls, server.url)
        if streams is not None and not streams.ready(30):
            streams.close(server)
            return Window(0.0, 0.0, 0, 0, f"not all {STREAMS} streams connected in 30 s")
        added_threads, added_fds = threads_now() - threads, fds_now() - fds
        cpu, start = time.process_time(), time.monotonic()
        _net.wait(window)  # the silence being measured
        cpu, seconds = time.process_time() - cpu, time.monotonic() - start
        problem = None if streams is None else streams.problem()
        if streams is not None:
            streams.close(server)
    return Window(cpu, seconds, added_threads, added_fds, problem)


def measure(lineup: dict[str, type[Reader] | None], window: float, repeat: int) -> list[Result]:
    results = {name: Result(name) for name in lineup}
    names = list(lineup)
    for rep in range(repeat):
        turn = rep % len(names)
        for name in [*names[turn:], *names[:turn]]:
            results[name].windows.append(measure_one(name, lineup[name], window))
    return list(results.values())


# -- Report ----------------------------------------------------------------------------------


def _share(w: Window) -> float:
    return w.cpu / w.seconds if w.seconds else float("inf")


def table(results: list[Result], window: float) -> list[str]:
    lines = [
        f"{STREAMS} silent streams, {window:.0f} s windows; CPU of this process (all threads)",
        f"  {'contestant':<26}{'CPU ms':>8}{'% of a core':>13}{'max %':>8}"
        f"{'threads/stream':>16}{'fds/stream':>12}  check",
    ]
    for r in results:
        shares = [_share(w) for w in r.windows]
        cpu_ms = statistics.median(w.cpu for w in r.windows) * 1000
        problems = [w.problem for w in r.windows if w.problem]
        per = (lambda n: "-") if r.name == NONE else (lambda n: f"{n / STREAMS:.2f}")
        threads = "/".join(sorted({per(w.threads) for w in r.windows}))
        fds = "/".join(sorted({per(w.fds) for w in r.windows}))
        lines.append(
            f"  {r.name:<26}{cpu_ms:>8.1f}{statistics.median(shares):>13.3%}{max(shares):>8.3%}"
            f"{threads:>16}{fds:>12}  {'FAILED: ' + problems[0] if problems else 'ok'}"
        )
    return lines


def assess(results: list[Result]) -> tuple[str, bool]:
    subject = next(r for r in results if r.name == _net.SUBJECT)
    worst = max(_share(w) for w in subject.windows)
    threads = {w.threads for w in subject.windows}
    problems = [w.problem for w in subject.windows if w.problem]
    met = worst <= TARGET_CPU and threads == {STREAMS} and not problems
    facts = f"worst window {worst:.3%} of a core; threads added {sorted(threads)}"
    if problems:
        facts += f"; {problems[0]}"
    prefix = (
        f"target eventstream <= {TARGET_CPU:.1%} of a core and one thread per stream"
        f" ({STREAMS} streams):"
    )
    return f"{prefix} {'met' if met else 'MISSED'}; {facts}", met


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _cli.new_parser(
        __doc__, quick="one 2 s window each", repeat="windows each (default 3)"
    )
    return _cli.parse(parser, argv, repeat=(1, 3))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    window = 2.0 if args.quick else 5.0
    command = _cli.command(__file__, args)
    classes = _net.begin("eventstream idle benchmark", command)
    print(
        f"method:   {args.repeat} interleaved {window:.0f} s windows each, the median"
        " reported; threads and fds added by the streams, from /proc/self"
    )
    lineup: dict[str, type[Reader] | None] = {_net.SUBJECT: None}
    lineup.update({cls.name: cls for cls in classes if cls.name != _net.SUBJECT})
    lineup[NONE] = None
    results = measure(lineup, window, args.repeat)
    print("\n" + "\n".join(table(results, window)))
    line, met = assess(results)
    print("\nsummary")
    print(line)
    print(f"targets missed: {'none' if met else 'yes'}")
    return _cli.end(args, not met)


if __name__ == "__main__":
    sys.exit(main())
