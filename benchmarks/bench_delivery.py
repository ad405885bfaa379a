"""Delivery latency after silence: eventstream against sseclient-py,
launchdarkly-eventsource and httpx-sse, on chunked, Content-Length, close-delimited,
gzip and TLS bodies.

Every contestant opens one stream per body kind on ``eventstream.testing.SSEServer``,
whose script goes live (``Script(...).live()``): the benchmark then tells the
server's connection thread to write one event (``Connection.event``), and the
contestant's consuming thread timestamps the event when the client hands it over.
The latency runs from just before the server is told to write (its thread still has
to wake, frame and send: the figure is an upper bound) to that timestamp.  A raw
socket that only waits for bytes ("floor") shows what the server, the kernel and the
thread wake-ups cost on their own.

Two phases: events after 2 s of silence on their stream (the silence matters: a
reader that waits for a buffer to fill holds an event back until more bytes come),
then more events after 50 ms, for a p99 over more trials.  Only one event is in
flight at a time, the streams taking turns in a rotating order.  An event not
delivered within 1 s is "held back", and its stream gets no more events.

Usage: python benchmarks/bench_delivery.py [--quick] [--repeat N] [--short N] [--check]
"""

from __future__ import annotations

import argparse
import queue
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import _cli
import _net
from _net import Reader, Timeouts, percentile

from eventstream.testing import Connection, Framing, Script, SSEServer

LONG_SILENCE = 2.0
SHORT_SILENCE = 0.05
HELD = 1.0  # an event not delivered within this long is held back
TIMEOUTS = Timeouts(5.0, 30.0)  # the read timeout must outlast the silences
TARGET_P99 = 0.010
FLOOR = "floor: raw socket"

#: Body kinds: the script (before ``live()``) and whether it is served over TLS.
KINDS: dict[str, tuple[Script, bool]] = {
    "chunked": (Script(), False),
    # Bytes from a live connection are not counted in the script's Content-Length:
    # announce a body longer than the benchmark will send.
    "content-length": (
        Script(framing=Framing.CONTENT_LENGTH, headers={"Content-Length": str(10**9)}),
        False,
    ),
    "close-delimited": (Script(framing=Framing.CLOSE), False),
    "gzip": (Script(encoding="gzip"), False),  # chunked; each event one sync-flushed block
    "TLS": (Script(), True),  # chunked, over HTTPS
}


class RawReader(Reader):
    """The floor: a socket that sends the request and reports each arrival of bytes."""

    name = FLOOR
    how_it_stops = "(closed by the server)"

    def __init__(self, url: str, ca_file: str | None, timeouts: Timeouts) -> None:
        super().__init__(url, ca_file, timeouts)
        self._context = None if ca_file is None else ssl.create_default_context(cafile=ca_file)

    def _read(self) -> None:
        parts = urlsplit(self.url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        with socket.create_connection((host, port), self.timeouts.connect) as plain:
            sock = plain
            if self._context is not None:
                sock = self._context.wrap_socket(plain, server_hostname=host)
            sock.settimeout(self.timeouts.read)
            request = f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n"
            sock.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(65536)
                if not data:
                    return
                head += data
            self.ready.set()
            while sock.recv(65536):
                self.received.put((None, time.monotonic()))  # type: ignore[arg-type]


@dataclass
class Stream:
    kind: str
    reader: Reader
    conn: Connection
    last: float  # when the stream last went silent
    latencies: dict[str, list[float]] = field(default_factory=dict)
    problem: str | None = None  # set once: the stream gets no more events
    held: tuple[str, float] | None = None  # the event held back, and when it was sent

    def settle(self, closed_at: float) -> None:
        """After the end: say whether and when the held-back event came at all."""
        if self.held is None:
            return
        data, sent = self.held
        arrivals = []
        while not self.reader.received.empty():
            arrivals.append(self.reader.received.get())
        at = next((at for got, at in arrivals if got == data), None)
        if at is None:
            self.problem += "; never delivered, not even when the server closed"
        elif at < closed_at:
            self.problem += f"; delivered {at - sent:.1f} s late"
        else:
            self.problem += "; delivered only when the server closed"


def open_streams(
    classes: Sequence[type[Reader]], servers: dict[bool, SSEServer], ca_file: str | None
) -> list[Stream]:
    streams = []
    for kind, (script, tls) in KINDS.items():
        server = servers.get(tls)
        if server is None:
            continue
        for cls in classes:
            path = f"/{kind}/{len(streams)}"
            server.route(path, script.live())
            reader = cls(server.url + path, ca_file if tls else None, TIMEOUTS).start()
            if not reader.ready.wait(10):
                raise RuntimeError(f"{cls.name} got no headers on {kind}: {reader.ended}")
            (conn,) = [c for c in server.connections if c.request and c.request.path == path]
            streams.append(Stream(kind, reader, conn, time.monotonic()))
    return streams


def fire(stream: Stream, phase: str, seq: int) -> None:
    """Send one event on ``stream`` and wait for its consumer to get it."""
    data = f"event {seq}"
    start = time.monotonic()
    stream.conn.event(data)
    try:
        got, at = stream.reader.received.get(timeout=HELD)
    except queue.Empty:
        stream.problem = f"held back > {HELD:.0f} s ({phase})"
        stream.held = data, start
        return
    if got not in (data, None):  # None: the floor, which sees bytes, not events
        stream.problem = f"WRONG: got {got!r}, expected {data!r}"
        return
    stream.latencies.setdefault(phase, []).append(at - start)
    stream.last = time.monotonic()


def run_phase(streams: list[Stream], phase: str, silence: float, rounds: int) -> None:
    seq = 0
    for rep in range(rounds):
        turn = rep % len(streams)
        for stream in [*streams[turn:], *streams[:turn]]:
            if stream.problem:
                continue
            _net.wait(stream.last + silence - time.monotonic())  # the scripted silence
            seq += 1
            fire(stream, phase, seq)


# -- Report ----------------------------------------------------------------------------------


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p) * 1000:.2f}" if values else "-"


def table(streams: list[Stream], phases: list[tuple[str, int]]) -> list[str]:
    """Rows by body kind then contestant; "eventstream is" compares p99s after 2 s."""
    long_phase = phases[0][0]
    heads = "".join(f"{f'{name} ({n})':^26}" for name, n in phases)
    cols = "".join(f"{'p50':>8}{'p99':>8}{'max':>8}  " for _ in phases)
    lines = [
        "delivery latency in ms: told to write -> consumer has the event; p99 is nearest-rank",
        f"  {'':<16}{'':<26}{heads}",
        f"  {'body':<16}{'contestant':<26}{cols}eventstream is",
    ]
    subjects = {s.kind: s for s in streams if s.reader.name == _net.SUBJECT}
    for stream in streams:
        row = f"  {stream.kind:<16}{stream.reader.name:<26}"
        for name, _ in phases:
            values = stream.latencies.get(name, [])
            row += f"{_ms(values, 50):>8}{_ms(values, 99):>8}{_ms(values, 100):>8}  "
        subject = subjects[stream.kind].latencies.get(long_phase)
        mine = stream.latencies.get(long_phase)
        if stream.problem:
            row += stream.problem
        elif stream.reader.name not in (_net.SUBJECT, FLOOR) and subject and mine:
            row += f"{percentile(mine, 99) / percentile(subject, 99):.2f}x"
        else:
            row += "-"
        lines.append(row)
    return lines


def assess(streams: list[Stream], phases: list[tuple[str, int]]) -> list[tuple[str, bool]]:
    results = []
    for stream in streams:
        if stream.reader.name != _net.SUBJECT:
            continue
        prefix = f"{stream.kind}: target eventstream p99 <= {TARGET_P99 * 1000:.0f} ms:"
        if stream.problem:
            results.append((f"{prefix} MISSED, {stream.problem}", False))
            continue
        facts, met = [], True
        for name, n in phases:
            values = stream.latencies.get(name, [])
            p99 = percentile(values, 99) if values else float("inf")
            met = met and len(values) == n and p99 <= TARGET_P99
            facts.append(f"{p99 * 1000:.2f} ms {name} ({len(values)}/{n} delivered)")
        results.append((f"{prefix} {'met' if met else 'MISSED'}; {'; '.join(facts)}", met))
    return results


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _cli.new_parser(
        __doc__,
        quick="fewer trials (3 and 20)",
        repeat="events after 2 s of silence, per stream (default 10)",
    )
    parser.add_argument(
        "--short",
        type=_cli.positive,
        help="events after 50 ms of silence, per stream (default 100)",
    )
    return _cli.parse(parser, argv, repeat=(3, 10), short=(20, 100))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = _cli.command(__file__, args, "--short", str(args.short))
    classes = _net.begin("eventstream delivery benchmark", command)
    phases = [
        (f"after {LONG_SILENCE:.0f} s", args.repeat),
        (f"after {SHORT_SILENCE * 1000:.0f} ms", args.short),
    ]
    print(
        f"method:   per stream, {args.repeat} events after {LONG_SILENCE:.0f} s of silence, then"
        f" {args.short} after {SHORT_SILENCE * 1000:.0f} ms; one event in flight at a time;"
        " eventstream is consumed by iterating, on another thread than its worker"
    )
    with _net.make_tls() as tls, SSEServer() as plain:
        servers = {False: plain}
        if tls is None:
            print("TLS:      trustme is not installed: TLS left out")
        with SSEServer(ssl_context=None if tls is None else tls.server_context) as secure:
            if tls is not None:
                servers[True] = secure
            streams = open_streams([*classes, RawReader], servers, tls and tls.ca_file)
            try:
                for (name, rounds), silence in zip(phases, (LONG_SILENCE, SHORT_SILENCE)):
                    run_phase(streams, name, silence, rounds)
            finally:
                closed_at = time.monotonic()
                plain.stop()  # ends every reader's stream, however it reads
                secure.stop()
                for stream in streams:
                    if stream.reader.name == _net.SUBJECT:
                        stream.reader.stop()
                    stream.reader.join(10)
                    stream.settle(closed_at)
    print("\n" + "\n".join(table(streams, phases)))
    print("\nsummary")
    results = assess(streams, phases)
    print("\n".join(line for line, _ in results))
    missed = [line.split(":")[0] for line, met in results if not met]
    print(f"targets missed on: {', '.join(missed) or 'none'}")
    return _cli.end(args, bool(missed))


if __name__ == "__main__":
    sys.exit(main())
