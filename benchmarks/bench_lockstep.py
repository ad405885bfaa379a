"""CPU per event of each client's read path alone: events one per read, each written
the moment the client delivers the one before, so no client ever waits for one.

``bench_lowrate.py`` spaces events in time, as a live stream does, and each event
then also costs a thread wake-up, whose CPU swings with the machine's load (spreads
of 50 % and more on a shared machine), burying differences of 10 %.  Here the same
small events (``_ticker.event``: about 60 bytes, one HTTP chunk each) are written by
the benchmark itself into the server end of the connection, from inside the client's
own counting callback: when the client polls, the next event is already there, so
there is no wake-up and one thread runs.  What is left is what the client's own code
costs per event (its Python calls, its ``poll`` and ``recv``) plus one ``send`` of the
benchmark's, the same for everyone.  The one-thread contestants of
``bench_lowrate.py`` take part: eventstream ``on_event``, launchdarkly-eventsource,
sseclient-py, the bare ``requests`` loop and the bare socket (iterating eventstream
crosses threads by design: its figure needs the spaced benchmark).

A trial lets 200 events pass, then takes this process's CPU time
(``time.process_time()``; the other threads are blocked) over the next N events.
Trials are interleaved, the first contestant rotating; the median is reported.

Usage: python benchmarks/bench_lockstep.py [--quick] [--repeat N] [--check]
"""

from __future__ import annotations

import argparse
import queue
import socket
import statistics
import sys
import threading
from collections.abc import Sequence

import _cli
import _net
from _lowrate import (
    CLIENTS,
    FLOORS,
    BareSocket,
    Client,
    Counter,
    EventStreamCallback,
    LaunchDarkly,
    RequestsLoop,
    Sseclient,
)
from _ticker import HEAD, event

WARMUP = 200
EVENTS = (2000, 10000)  # (--quick, full) events timed per trial
TARGET = 1.0  # eventstream on_event's CPU per event over launchdarkly-eventsource's, at most
BASELINE = LaunchDarkly.name
CONTESTANTS = (EventStreamCallback, LaunchDarkly, Sseclient, RequestsLoop, BareSocket)


class Lockstep(Counter):
    """Counts as :class:`Counter` does, and writes the next event to the client's
    connection (the server end, accepted here) before returning."""

    def __init__(self, first: int, second: int, connections: queue.SimpleQueue[socket.socket]):
        super().__init__(first, second)
        self._connections = connections
        self._conn: socket.socket | None = None

    def hit(self, _event: object = None) -> None:
        super().hit(_event)
        if self.done.is_set():
            return  # the client stops here: nothing more to send
        if self._conn is None:
            self._conn = self._connections.get(timeout=30)
        self._conn.sendall(event(self.n + 1))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


def _serve_one(listener: socket.socket, connections: queue.SimpleQueue[socket.socket]) -> None:
    """Accept one client, read its request, answer with the headers and the first event."""
    conn, _ = listener.accept()
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(65536)
        if not data:
            conn.close()
            return
        head += data
    conn.sendall(HEAD + event(1))
    connections.put(conn)


def trial(cls: type[Client], events: int) -> float | str:
    """CPU seconds per event of one stream, or what went wrong."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/"
        connections: queue.SimpleQueue[socket.socket] = queue.SimpleQueue()
        server = threading.Thread(target=_serve_one, args=(listener, connections), daemon=True)
        server.start()
        counter = Lockstep(WARMUP, WARMUP + events, connections)
        client = cls(url, counter)
        client.start()
        try:
            finished = counter.done.wait(60)
            client.stop()
            counter.close()  # ends a client still waiting for its next event
            if not client.join(10):
                return "the client did not stop within 10 s"
        finally:
            counter.close()
            server.join(10)
    if not finished:
        return f"{counter.n} events in the time allowed; error: {client.error!r}"
    (cpu0, _), (cpu1, _) = counter.at
    return (cpu1 - cpu0) / events


def measure(classes: Sequence[type[Client]], events: int, repeat: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {cls.name: [] for cls in classes}
    for cls in classes:  # untimed warm-up: imports, first connections
        trial(cls, 500)
    for rep in range(repeat):
        turn = rep % len(classes)
        for cls in [*classes[turn:], *classes[:turn]]:
            outcome = trial(cls, events)
            if isinstance(outcome, str):
                print(f"  {cls.name}: FAILED: {outcome}", flush=True)
            else:
                results[cls.name].append(outcome)
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _cli.new_parser(
        __doc__,
        quick="fewer events per trial, one trial each",
        repeat="trials per contestant (default 5)",
    )
    return _cli.parse(parser, argv, repeat=(1, 5))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = _cli.command(__file__, args)
    _net.clear_proxies()
    everyone = {**CLIENTS, **FLOORS}
    classes = [cls for cls in CONTESTANTS if everyone[cls]()]
    missing = [cls.package or cls.name for cls in CONTESTANTS if not everyone[cls]()]
    packages = ["eventstream", *(cls.package for cls in classes if cls.package)]
    _net.header("eventstream lock-step benchmark", command, packages, missing)
    events = EVENTS[0 if args.quick else 1]
    print(
        f"method:   {args.repeat} interleaved trials each; the next event written when the"
        f" client delivers one; CPU of this process over {events} events after {WARMUP};"
        " median reported"
    )
    results = measure(classes, events, args.repeat)
    medians = {name: statistics.median(v) for name, v in results.items() if v}
    base = medians.get(BASELINE)
    print(f"\n  {'contestant':<26}{'trials':>7}{'us/event':>10}{'spread':>8}{'vs ld':>8}")
    for name, values in results.items():
        if not values:
            print(f"  {name:<26}{0:>7}  FAILED")
            continue
        cpu = medians[name]
        spread = (max(values) - min(values)) / cpu
        ratio = f"{cpu / base:.2f}x" if base else "-"
        print(f"  {name:<26}{len(values):>7}{cpu * 1e6:>10.2f}{spread:>8.0%}{ratio:>8}")
    subject = medians.get(EventStreamCallback.name)
    met = bool(base and subject and subject <= TARGET * base)
    verdict = f"{subject / base:.2f}x" if base and subject else "not assessed"
    print(
        f"\nsummary\ntarget eventstream on_event <= {TARGET:.2f}x {BASELINE} per event:"
        f" {'met' if met else 'MISSED'}; {verdict}"
    )
    return _cli.end(args, not met)


if __name__ == "__main__":
    sys.exit(main())
