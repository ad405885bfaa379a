"""Loopback throughput: eventstream against launchdarkly-eventsource, sseclient-py over
requests, httpx-sse, and a requests reader that does not parse at all.

A server process (``python benchmarks/_net.py corpus a``: ``eventstream.testing.SSEServer``
writing the whole body at once, as fast as the socket takes it) streams the parser
benchmark's corpus (a), one HTTP chunk per event, to each request.  Each contestant
connects, reads until it has consumed the corpus's last event, and is checked: the
event count and the last event's type, data and id.  The baseline reads the body
with ``requests``' ``iter_content(chunk_size=None)`` to its end, without parsing.

Timing: from the connect to the last event, with ``time.perf_counter()``; CPU is the
client process's ``time.process_time()`` over the same span (every thread of this
process; the server's CPU is its own process's).  The median of ``--repeat``
interleaved runs, the first contestant rotating, ``gc.collect()`` before each.

Usage: python benchmarks/bench_throughput.py [--quick] [--repeat N] [--check]
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import _cli
import _net
from _corpora import Corpus, ExpectedEvent

import eventstream

SUBJECT = "eventstream"
CALLBACKS = "eventstream (on_event)"
LD = "launchdarkly-eventsource"
BASELINE = "requests iter_content, no parsing"
TIMEOUT = (5.0, 30.0)
CORPUS = "a"
TARGETS = {LD: 1.5, BASELINE: 1.0}  # eventstream's events/s over theirs, at least

#: A contestant: reads ``url`` until the corpus's last event; returns what it saw.
Run = Callable[[str, Corpus], "Seen"]


@dataclass
class Seen:
    count: int  # events, or body bytes for the baseline
    last: ExpectedEvent | None
    finished: float  # perf_counter() and process_time() when the last event was consumed
    cpu: float


def _now(count: int, last: ExpectedEvent | None) -> Seen:
    return Seen(count, last, time.perf_counter(), time.process_time())


def run_eventstream(url: str, corpus: Corpus) -> Seen:
    total = len(corpus.expected)
    stream = eventstream.EventStream(url, timeout=TIMEOUT)
    count = 0
    try:
        for event in stream:  # a clean end of body would reconnect: stop at the last event
            count += 1
            if count == total:
                return _now(count, (event.event, event.data, event.id))
        return _now(count, None)
    finally:
        stream.stop(timeout=5)


def run_callbacks(url: str, corpus: Corpus) -> Seen:
    total = len(corpus.expected)
    done = threading.Event()
    seen: list[Seen] = []
    count = 0

    def on_event(event: eventstream.Event) -> None:  # on the worker thread
        nonlocal count
        count += 1
        if count == total:
            seen.append(_now(count, (event.event, event.data, event.id)))
            done.set()

    stream = eventstream.EventStream(url, timeout=TIMEOUT, on_event=on_event)
    stream.start()
    try:
        if not done.wait(300):
            return _now(count, None)
        return seen[0]
    finally:
        stream.stop(timeout=5)


def run_launchdarkly(url: str, corpus: Corpus) -> Seen:
    import urllib3
    from ld_eventsource import SSEClient
    from ld_eventsource.config import ConnectStrategy

    total = len(corpus.expected)
    timeout = urllib3.Timeout(connect=TIMEOUT[0], read=TIMEOUT[1])
    options = {"timeout": timeout}
    client = SSEClient(ConnectStrategy.http(url, urllib3_request_options=options))
    count = 0
    try:
        for event in client.events:
            count += 1
            if count == total:
                return _now(count, (event.event, event.data, event.last_event_id or ""))
        return _now(count, None)
    finally:
        client.close()


def run_sseclient(url: str, corpus: Corpus) -> Seen:
    import requests
    from sseclient import SSEClient

    total = len(corpus.expected)
    headers = {"Accept": "text/event-stream"}
    with requests.get(url, stream=True, headers=headers, timeout=TIMEOUT) as response:
        count = 0
        for event in SSEClient(response).events():
            count += 1
            if count == total:
                return _now(count, (event.event, event.data, event.id or ""))
        return _now(count, None)


def run_httpx_sse(url: str, corpus: Corpus) -> Seen:
    import httpx
    from httpx_sse import connect_sse

    total = len(corpus.expected)
    timeout = httpx.Timeout(TIMEOUT[0], read=TIMEOUT[1])
    with httpx.Client(timeout=timeout) as client, connect_sse(client, "GET", url) as source:
        count = 0
        for event in source.iter_sse():
            count += 1
            if count == total:
                return _now(count, (event.event, event.data, event.id))
        return _now(count, None)


def run_baseline(url: str, corpus: Corpus) -> Seen:
    import requests

    headers = {"Accept": "text/event-stream"}
    with requests.get(url, stream=True, headers=headers, timeout=TIMEOUT) as response:
        size = 0
        for chunk in response.iter_content(chunk_size=None):
            size += len(chunk)
        return _now(size, None)


_LINEUP: dict[str, tuple[Run, str | None]] = {  # name: (run, module that must import)
    SUBJECT: (run_eventstream, None),
    CALLBACKS: (run_callbacks, None),
    LD: (run_launchdarkly, "ld_eventsource"),
    "sseclient-py": (run_sseclient, "sseclient"),
    "httpx-sse": (run_httpx_sse, "httpx_sse"),
    BASELINE: (run_baseline, None),
}


def lineup() -> tuple[dict[str, Run], list[str]]:
    runs, missing = {}, []
    for name, (run, module) in _LINEUP.items():
        try:
            if module:
                __import__(module)
        except ImportError:
            missing.append(name)
            continue
        runs[name] = run
    return runs, missing


# -- Measuring ---------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    seconds: list[float]
    cpu: list[float]
    problem: str | None = None


def check(name: str, seen: Seen, corpus: Corpus, size: int) -> str | None:
    if name == BASELINE:
        return None if seen.count == size else f"read {seen.count:,} bytes, expected {size:,}"
    total = len(corpus.expected)
    if seen.count != total:
        return f"{seen.count:,} events, expected {total:,}"
    if seen.last != corpus.expected[-1]:
        return f"last event {seen.last!r}, expected {corpus.expected[-1]!r}"
    return None


def measure(runs: dict[str, Run], url: str, corpus: Corpus, size: int, repeat: int) -> list[Result]:
    results = {name: Result(name, [], []) for name in runs}
    names = list(runs)
    for rep in range(repeat):
        turn = rep % len(names)
        for name in [*names[turn:], *names[:turn]]:
            gc.collect()
            start, cpu = time.perf_counter(), time.process_time()
            try:
                seen = runs[name](url, corpus)
            except Exception as exc:  # a contestant that fails is reported, not fatal
                results[name].problem = f"raised {type(exc).__name__}: {exc}"[:200]
                continue
            results[name].problem = check(name, seen, corpus, size) or results[name].problem
            results[name].seconds.append(seen.finished - start)
            results[name].cpu.append(seen.cpu - cpu)
    return list(results.values())


# -- Report ----------------------------------------------------------------------------------


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def table(results: list[Result], corpus: Corpus, size: int) -> list[str]:
    """'eventstream is 1.50x, CPU 1.20x' compares median times, then median CPU times,
    with the iterating eventstream's."""
    events = len(corpus.expected)
    subject, subject_cpu = _median(results[0].seconds), _median(results[0].cpu)
    lines = [
        f"({corpus.key}) {corpus.title}: {events:,} events, {size / 1e6:.1f} MB,"
        " one HTTP chunk per event",
        f"  {'contestant':<36}{'events/s':>10}{'MB/s':>7}{'spread':>8}{'CPU s':>7}"
        f"{'CPU/wall':>9}{'CPU us/event':>13}  {'eventstream is':<20}check",
    ]
    for r in results:
        seconds, cpu = _median(r.seconds), _median(r.cpu)
        check = "WRONG" if r.problem else "ok"
        if seconds is None or cpu is None:
            lines.append(
                f"  {r.name:<36}{'-':>10}{'-':>7}{'-':>8}{'-':>7}{'-':>9}{'-':>13}"
                f"  {'-':<20}{check}"
            )
            continue
        spread = (max(r.seconds) - min(r.seconds)) / seconds
        ratio = "-"
        if subject and subject_cpu and r is not results[0]:
            ratio = f"{seconds / subject:.2f}x, CPU {cpu / subject_cpu:.2f}x"
        lines.append(
            f"  {r.name:<36}{events / seconds:>10,.0f}{size / seconds / 1e6:>7.1f}{spread:>8.0%}"
            f"{cpu:>7.2f}{cpu / seconds:>9.0%}{cpu / events * 1e6:>13.2f}  {ratio:<20}{check}"
        )
    lines.extend(f"  WRONG {r.name}: {r.problem}" for r in results if r.problem)
    return lines


def assess(results: list[Result]) -> tuple[list[str], bool]:
    by_name = {r.name: r for r in results}
    subject = by_name[SUBJECT]
    lines, met_all = [], True
    for peer, target in TARGETS.items():
        prefix = f"target eventstream >= {target:.1f}x {peer}:"
        theirs = by_name.get(peer)
        mine = _median(subject.seconds)
        if subject.problem or mine is None:
            lines.append(f"{prefix} MISSED, eventstream is WRONG or did not run")
            met_all = False
            continue
        if theirs is None or not theirs.seconds:
            lines.append(f"{prefix} not assessed, {peer} did not run")
            continue
        ratio = statistics.median(theirs.seconds) / mine
        cpu = statistics.median(theirs.cpu) / statistics.median(subject.cpu)
        met = ratio >= target
        met_all = met_all and met
        verdict = "met" if met else "MISSED"
        lines.append(
            f"{prefix} {verdict}; eventstream is {ratio:.2f}x in events/s"
            f" (in CPU per event: {cpu:.2f}x)"
        )
    return lines, met_all


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _cli.new_parser(
        __doc__, quick="a corpus ~10x smaller, 3 runs", repeat="timed runs each (default 5)"
    )
    return _cli.parse(parser, argv, repeat=(3, 5))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _net.clear_proxies()
    runs, missing = lineup()
    command = _cli.command(__file__, args)
    names = [SUBJECT] + [n for n in runs if n in (LD, "sseclient-py", "httpx-sse")]
    _net.header("eventstream throughput benchmark", command, names, missing)
    print(
        f"method:   median of {args.repeat} interleaved runs each; the server is another"
        " process; CPU = this process's time.process_time(), all threads; MB = 10^6 bytes"
    )
    events, corpus = _net.corpus_events(CORPUS, args.quick)
    size = sum(map(len, events))
    server_args = ["corpus", CORPUS, *(["--quick"] if args.quick else [])]
    with _net.ServerProcess(*server_args) as server:
        results = measure(runs, server.url, corpus, size, args.repeat)
    print("\n" + "\n".join(table(results, corpus, size)))
    lines, met = assess(results)
    print("\nsummary")
    print("\n".join(lines))
    print(f"targets missed: {'none' if met else 'yes'}")
    return _cli.end(args, not met)


if __name__ == "__main__":
    sys.exit(main())
