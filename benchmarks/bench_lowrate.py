"""CPU per event at low rates: one stream whose events arrive one per read, 1 ms and
10 ms apart; eventstream (``on_event`` and iterating) against launchdarkly-eventsource,
sseclient-py and a bare ``requests`` ``iter_content`` loop.

The server is another process (``_ticker.py``: one asyncio loop, one small event per
HTTP chunk and per write), so its CPU is not the client's.  A trial opens one stream,
lets 50 events pass (connect, warm-up), then takes this process's CPU time
(``time.process_time()``, every thread) at the next event and again N events later,
from the thread that consumes the events; the figure is that CPU over N.  Every
contestant counts events with the same one-line callback.  Trials are interleaved
(each round runs every contestant once, the first one rotating); the median is
reported.  The bare ``requests`` loop counts HTTP chunks without parsing them: the
floor of any client built on ``requests``.

Two physical floors run in the same rounds: a bare socket (one thread, a plain socket
with a timeout, a blocking ``recv`` loop counting reads: the system calls and the one
wake-up per event that any one-thread reader pays), and the same loop on a reader
thread handing each read to the counting thread through a ``queue.SimpleQueue`` (two
wake-ups per event: what any reader pays that reads on one thread and delivers on
another, as an iterated eventstream does under its ownership rule).  The report puts
eventstream ``on_event`` over the first and iterating over the second, beside the
ratios to launchdarkly-eventsource, which the target is about.

Usage: python benchmarks/bench_lowrate.py [--quick] [--repeat N] [--check]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import _cli
import _net
from _lowrate import (
    CLIENTS,
    FLOORS,
    BareSocket,
    Client,
    Counter,
    EventStreamCallback,
    EventStreamIterating,
    LaunchDarkly,
    Ticker,
    TwoThreadFloor,
)

WARMUP = 50
SPACINGS = (0.001, 0.010)
EVENTS = {0.001: (500, 2000), 0.010: (100, 300)}  # (--quick, full) events timed per trial
TARGET = 1.0  # eventstream's CPU per event over launchdarkly-eventsource's, at most
BASELINE = LaunchDarkly.name


@dataclass
class Result:
    name: str
    per_event: list[float] = field(default_factory=list)  # seconds of CPU per event
    spacing: list[float] = field(default_factory=list)  # seconds between events, measured
    failures: list[str] = field(default_factory=list)


def trial(cls: type[Client], url: str, events: int) -> tuple[float, float] | str:
    """One stream: (CPU seconds per event, seconds between events), or what went wrong."""
    counter = Counter(WARMUP, WARMUP + events)
    client = cls(url, counter)
    client.start()
    finished = counter.done.wait(30 + events * 0.05)
    client.stop()
    if not client.join(10):
        return "the client did not stop within 10 s"
    if not finished:
        return f"{counter.n} events in the time allowed; error: {client.error!r}"
    (cpu0, t0), (cpu1, t1) = counter.at
    return (cpu1 - cpu0) / events, (t1 - t0) / events


def measure(classes: Sequence[type[Client]], url: str, events: int, repeat: int) -> list[Result]:
    results = {cls.name: Result(cls.name) for cls in classes}
    for cls in classes:  # untimed warm-up: imports, first connections
        trial(cls, url, 20)
    for rep in range(repeat):
        turn = rep % len(classes)
        for cls in [*classes[turn:], *classes[:turn]]:
            outcome = trial(cls, url, events)
            if isinstance(outcome, str):
                results[cls.name].failures.append(outcome)
            else:
                results[cls.name].per_event.append(outcome[0])
                results[cls.name].spacing.append(outcome[1])
    return list(results.values())


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(spacing: float, events: int, results: list[Result]) -> list[str]:
    base = next((_median(r.per_event) for r in results if r.name == BASELINE), None)
    lines = [
        f"events {spacing * 1000:g} ms apart, one per read; {events} events per trial",
        f"  {'contestant':<26}{'trials':>7}{'us/event':>10}{'spread':>8}{'apart ms':>10}"
        f"{'vs ' + BASELINE[:12]:>18}",
    ]
    for r in results:
        cpu = _median(r.per_event)
        if cpu is None:
            lines.append(f"  {r.name:<26}{0:>7}  FAILED: {r.failures[:1]}")
            continue
        spread = (max(r.per_event) - min(r.per_event)) / cpu if cpu else 0.0
        ratio = f"{cpu / base:.2f}x" if base else "-"
        apart = statistics.median(r.spacing) * 1000
        lines.append(
            f"  {r.name:<26}{len(r.per_event):>7}{cpu * 1e6:>10.1f}{spread:>8.0%}{apart:>10.2f}"
            f"{ratio:>18}"
        )
        for failure in r.failures:
            lines.append(f"    {r.name}: FAILED: {failure}")
    return lines


def assess(spacing: float, results: list[Result]) -> tuple[str, bool]:
    by_name = {r.name: _median(r.per_event) for r in results}
    base = by_name.get(BASELINE)
    prefix = f"{spacing * 1000:g} ms: target eventstream <= {TARGET:.2f}x {BASELINE} per event:"
    if base is None:
        return f"{prefix} not assessed ({BASELINE} did not run)", True
    facts, met = [], True
    for r in results:
        if not r.name.startswith(_net.SUBJECT):
            continue
        cpu = by_name[r.name]
        if cpu is None or r.failures:
            facts.append(f"{r.name} FAILED")
            met = False
            continue
        facts.append(f"{r.name} {cpu / base:.2f}x")
        met = met and cpu <= TARGET * base
    return f"{prefix} {'met' if met else 'MISSED'}; {', '.join(facts)}", met


def floors(spacing: float, results: list[Result]) -> str:
    """eventstream over the physical floor of its delivery shape, and over ld (no target)."""
    by_name = {r.name: _median(r.per_event) for r in results}
    base = by_name.get(BASELINE)
    facts = []
    for subject, floor in (
        (EventStreamCallback, BareSocket),
        (EventStreamIterating, TwoThreadFloor),
    ):
        cpu, bottom = by_name.get(subject.name), by_name.get(floor.name)
        if cpu is None:
            continue
        over_floor = (
            f"{cpu / bottom:.2f}x {floor.name} (+{(cpu - bottom) * 1e6:.1f} us)" if bottom else "-"
        )
        over_base = f"{cpu / base:.2f}x {BASELINE}" if base else "-"
        facts.append(f"{subject.name} {over_floor}, {over_base}")
    return f"{spacing * 1000:g} ms: " + "; ".join(facts)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _cli.new_parser(
        __doc__,
        quick="fewer events per trial, one trial each",
        repeat="trials per contestant and spacing (default 3)",
    )
    return _cli.parse(parser, argv, repeat=(1, 3))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = _cli.command(__file__, args)
    _net.clear_proxies()
    everyone = {**CLIENTS, **FLOORS}
    classes = [cls for cls, present in everyone.items() if present()]
    missing = [cls.package or cls.name for cls, present in everyone.items() if not present()]
    packages = ["eventstream", *(cls.package for cls in classes if cls.package)]
    _net.header("eventstream low-rate benchmark", command, packages, missing)
    print(
        f"method:   {args.repeat} interleaved trials each; CPU of this process (all threads)"
        f" over N events after {WARMUP} warm-up events, divided by N; median reported;"
        " server in another process"
    )
    missed = []
    summary = []
    against_floors = []
    for spacing in SPACINGS:
        events = EVENTS[spacing][0 if args.quick else 1]
        with Ticker(spacing) as ticker:
            results = measure(classes, ticker.url, events, args.repeat)
        print("\n" + "\n".join(table(spacing, events, results)), flush=True)
        line, met = assess(spacing, results)
        summary.append(line)
        against_floors.append(floors(spacing, results))
        missed += [] if met else [f"{spacing * 1000:g} ms"]
    print("\nsummary")
    print("\n".join(summary))
    print("against the physical floors (no target; the target above is against ld)")
    print("\n".join(against_floors))
    print(f"targets missed on: {', '.join(missed) or 'none'}")
    return _cli.end(args, bool(missed))


if __name__ == "__main__":
    sys.exit(main())
