"""Stop latency on a silent stream: eventstream against sseclient-py, launchdarkly-eventsource
and httpx-sse, over HTTP and HTTPS.

Three silences, each over HTTP and HTTPS.  In the first, the server
(``eventstream.testing.SSEServer``, ``Script().hold()``) sends the response headers
and then nothing: a trial opens a stream on its reading thread, waits for the headers
and 20 ms of silence.  In the second (``Script.no_response()``) the server reads the
request and never answers, as a server does that thinks before its first byte: a trial
waits until the server has the request, and 20 ms more.  In the third the address does
not answer the connect (a listener whose backlog is full: the kernel drops the SYNs,
as for a host that is down or a firewall that drops): a trial waits 100 ms after the
stream opened, when every contestant is in its connect (connect timeout 2 s in this
phase, as the read timeout elsewhere).  Then a stopping thread stops
the stream each contestant's way and waits for the reading thread to exit; the latency
is the stopping thread's time from the stop call until the reading thread has exited.
Every client has a read timeout of 2 s: a contestant whose stop cannot wake its
reader waits for it.

Trials are interleaved (each round runs every contestant once, the first one
rotating).  A contestant whose stops take longer than 1 s (they wait for the read
timeout) gets no more than 5 trials (``--quick``: 2).  One extra untimed trial per contestant runs
the stop under :class:`TouchProbe`, which records every call the stopping thread
makes on the connection's TCP socket.

Usage: python benchmarks/bench_stop.py [--quick] [--repeat N] [--check]
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import _cli
import _net
from _net import Reader, Timeouts, TouchProbe, percentile

from eventstream.testing import Script, SSEServer

SETTLE = 0.02  # silence before the stop: the reader is blocked in its read by then
CONNECTING = 0.1  # before the settle, when the connect hangs: every contestant is in it
READ_TIMEOUT = 2.0
CONNECT_TIMEOUT = 5.0
EXIT_BOUND = 5.0  # how long a stopping thread waits for the reader, as stop(timeout=5)
SLOW = 1.0  # a stop slower than this waited for the read timeout
SLOW_TRIALS = 5  # --quick: 2
TARGET_P99 = 0.010


@dataclass
class Outcome:
    """One contestant on one protocol."""

    name: str
    seconds: list[float] = field(default_factory=list)  # stop call until the reader exited
    call_seconds: list[float] = field(default_factory=list)  # the stop call alone
    endings: collections.Counter[str] = field(default_factory=collections.Counter)
    failures: list[str] = field(default_factory=list)
    touched: list[str] | None = None  # socket calls seen on the stopping thread

    @property
    def slow(self) -> int:
        return sum(s > SLOW for s in self.seconds)


class Unanswered:
    """An address whose connects hang: a listener whose backlog is full (Linux drops
    the SYNs beyond it; the client sends them again until its connect timeout)."""

    requests: Sequence[object] = ()

    def __init__(self, scheme: str) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        host, port = self._listener.getsockname()[:2]
        self.url = f"{scheme}://{host}:{port}/"
        self._filled: list[socket.socket] = []
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.2)
            try:
                probe.connect((host, port))
            except socket.timeout:
                probe.close()
                return  # full
            self._filled.append(probe)
        self.close()
        raise RuntimeError("this kernel does not drop connects beyond a full backlog")

    def drop_all(self) -> None:
        """Nothing to drop: the contestants' connect timeouts end their connects."""

    def close(self) -> None:
        for sock in self._filled:
            sock.close()
        self._listener.close()


@contextlib.contextmanager
def unanswered(context: object) -> Iterator[Unanswered]:
    listener = Unanswered("http" if context is None else "https")
    try:
        yield listener
    finally:
        listener.close()


def trial(
    cls: type[Reader],
    server: SSEServer | Unanswered,
    ca_file: str | None,
    *,
    probe: bool,
    wait: str,
) -> dict:
    """Open, wait (``wait``: for the ``headers``, the ``request`` when the server never
    answers, or a moment into the ``connect``) and the settle, stop from another
    thread; the facts."""
    asked = len(server.requests)
    connect = READ_TIMEOUT if wait == "connect" else CONNECT_TIMEOUT
    reader = cls(server.url, ca_file, Timeouts(connect, READ_TIMEOUT)).start()
    if wait == "headers":
        opened = reader.ready.wait(10)
    elif wait == "request":
        assert isinstance(server, SSEServer)
        try:
            opened = bool(server.wait_for_requests(asked + 1, 10))
        except TimeoutError:
            opened = False
    else:
        _net.wait(CONNECTING)
        opened = True
    if not opened:
        server.drop_all()
        reader.join(EXIT_BOUND)
        return {"failure": f"no headers (or request) within 10 s ({reader.ended})"}
    _net.wait(SETTLE)
    facts: dict = {}

    def stopping_thread() -> None:
        with TouchProbe(active=probe) as seen:
            start = time.monotonic()
            reader.stop()
            returned = time.monotonic()
        exited = reader.join(EXIT_BOUND)
        facts.update(
            seconds=time.monotonic() - start,
            call=returned - start,
            exited=exited,
            touched=seen.calls,
        )

    stopper = threading.Thread(target=stopping_thread, name="bench-stopper", daemon=True)
    stopper.start()
    stopper.join(EXIT_BOUND + 10)
    if stopper.is_alive():
        facts = {"failure": f"the stop call did not return in {EXIT_BOUND + 10:.0f} s"}
    elif not facts["exited"]:
        facts["failure"] = f"the reader had not exited {EXIT_BOUND:.0f} s after the stop"
    elif getattr(reader, "stopped", True) is not True:
        facts["failure"] = "stop(timeout=5) returned False"
    if "failure" in facts:
        server.drop_all()  # free the reader (and the stopping thread) for the next trial
        reader.join(EXIT_BOUND)
        stopper.join(EXIT_BOUND)
    facts["ended"] = reader.ended
    return facts


def measure(
    classes: Sequence[type[Reader]],
    server: SSEServer | Unanswered,
    ca_file: str | None,
    repeat: int,
    slow_cap: int,
    *,
    wait: str,
) -> list[Outcome]:
    """The probe trial, then ``repeat`` interleaved rounds; at most ``slow_cap`` trials
    for a contestant whose stops wait for the read timeout."""
    outcomes = {cls.name: Outcome(cls.name) for cls in classes}
    for cls in classes:  # untimed: the probe, and a warm-up
        facts = trial(cls, server, ca_file, probe=True, wait=wait)
        outcomes[cls.name].touched = facts.get("touched")
    for rep in range(repeat):
        turn = rep % len(classes)
        for cls in [*classes[turn:], *classes[:turn]]:
            outcome = outcomes[cls.name]
            if outcome.slow >= slow_cap:
                continue
            facts = trial(cls, server, ca_file, probe=False, wait=wait)
            outcome.endings[facts["ended"]] += 1
            if "failure" in facts:
                outcome.failures.append(facts["failure"])
            else:
                outcome.seconds.append(facts["seconds"])
                outcome.call_seconds.append(facts["call"])
    return list(outcomes.values())


# -- Report ----------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def table(title: str, outcomes: list[Outcome], wait: str) -> list[str]:
    """The lines of one protocol's table; "eventstream is 3.00x" compares p99s."""
    subject = outcomes[0]
    base = percentile(subject.seconds, 99) if subject.seconds else None
    lines = [
        title,
        f"  {'contestant':<26}{'trials':>7}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}"
        f"{'call p50':>10}  {'eventstream is':<16}{'touches':<9}reading thread ended by",
    ]
    for o in outcomes:
        touches = "?" if o.touched is None else ("yes" if o.touched else "no")
        ended = ", ".join(f"{what} x{n}" for what, n in o.endings.most_common())
        if not o.seconds:
            lines.append(
                f"  {o.name:<26}{0:>7}{'-':>10}{'-':>10}{'-':>10}{'-':>10}  {'-':<16}"
                f"{touches:<9}{ended}"
            )
            continue
        p99 = percentile(o.seconds, 99)
        ratio = "-" if o is subject or not base else f"{p99 / base:,.2f}x"
        lines.append(
            f"  {o.name:<26}{len(o.seconds):>7}{_ms(statistics.median(o.seconds)):>10}"
            f"{_ms(p99):>10}{_ms(max(o.seconds)):>10}{_ms(statistics.median(o.call_seconds)):>10}"
            f"  {ratio:<16}{touches:<9}{ended}"
        )
    timeout, since = "read timeout", "the reader's last read"
    before = SETTLE
    if wait == "connect":
        timeout, since, before = "connect timeout", "the connect's start", CONNECTING + SETTLE
    for o in outcomes:
        if o.slow:
            lines.append(
                f"  {o.name}: {o.slow} stops waited for the {READ_TIMEOUT:.0f} s {timeout},"
                f" which runs from {since}, {before * 1000:.0f} ms before the"
                " stop; no more trials after that"
            )
        for failure, n in collections.Counter(o.failures).items():
            lines.append(f"  {o.name}: FAILED x{n}: {failure}")
    return lines


def touches(classes: Sequence[type[Reader]], by_protocol: dict[str, list[Outcome]]) -> list[str]:
    lines = [
        "how each contestant stops (from its code), and the calls its stopping thread",
        "made on the connection's TCP socket (TouchProbe, one untimed trial per protocol):",
    ]
    for cls in classes:
        lines.append(f"  {cls.name}: {cls.how_it_stops}")
        for protocol, outcomes in by_protocol.items():
            seen = next(o.touched for o in outcomes if o.name == cls.name)
            text = "not probed" if seen is None else ", ".join(seen) or "no call"
            lines.append(f"    {protocol}: {text}")
    return lines


def assess(protocol: str, outcomes: list[Outcome]) -> tuple[str, bool]:
    subject = outcomes[0]
    prefix = f"{protocol}: target eventstream p99 <= {TARGET_P99 * 1000:.0f} ms, no touch:"
    if subject.failures or not subject.seconds:
        return f"{prefix} MISSED, {len(subject.failures)} failed trials", False
    p99 = percentile(subject.seconds, 99)
    touched = subject.touched is None or bool(subject.touched)
    met = p99 <= TARGET_P99 and not touched
    facts = f"p99 {_ms(p99)} ms over {len(subject.seconds)} trials; " + (
        "touched the connection" if touched else "no cross-thread touch"
    )
    return f"{prefix} {'met' if met else 'MISSED'}; {facts}", met


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = _cli.new_parser(
        __doc__, quick="10 trials instead of 50", repeat="trials per contestant (default 50)"
    )
    return _cli.parse(parser, argv, repeat=(10, 50))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = _cli.command(__file__, args)
    classes = _net.begin("eventstream stop benchmark", command)
    print(
        f"method:   {args.repeat} interleaved trials each; stop {SETTLE * 1000:.0f} ms into a"
        f" silent stream (read timeout {READ_TIMEOUT:.0f} s) from another thread; latency ="
        " stop call until the reading thread has exited; p99 is nearest-rank"
    )
    by_protocol: dict[str, list[Outcome]] = {}
    with _net.make_tls() as tls:
        protocols = [("HTTP", None, None)]
        if tls is None:
            print("HTTPS:    trustme is not installed: HTTPS left out")
        else:
            protocols.append(("HTTPS", tls.server_context, tls.ca_file))
        silences = [
            ("", "silent stream", Script().hold(), "headers"),
            (" before headers", "no response headers", Script.no_response(), "request"),
            (" connecting", "the connect hangs", None, "connect"),
        ]
        for suffix, silence, script, wait in silences:
            for protocol, context, ca_file in protocols:
                with contextlib.ExitStack() as stack:
                    if script is None:
                        server: SSEServer | Unanswered = stack.enter_context(unanswered(context))
                    else:
                        server = stack.enter_context(SSEServer(ssl_context=context))
                        server.default = script
                    slow_cap = min(2 if args.quick else SLOW_TRIALS, args.repeat)
                    outcomes = measure(classes, server, ca_file, args.repeat, slow_cap, wait=wait)
                by_protocol[protocol + suffix] = outcomes
                title = f"{protocol}: {silence}, stopped from another thread"
                print("\n" + "\n".join(table(title, outcomes, wait)), flush=True)
    print("\n" + "\n".join(touches(classes, by_protocol)))
    print("\nsummary")
    missed = []
    for protocol, outcomes in by_protocol.items():
        line, met = assess(protocol, outcomes)
        print(line)
        missed += [] if met else [protocol]
    print(f"targets missed on: {', '.join(missed) or 'none'}")
    return _cli.end(args, bool(missed))


if __name__ == "__main__":
    sys.exit(main())
