"""Scratch (not for merging): a ladder from the two-thread floor to iterated eventstream.

Each rung adds one piece to the one before, measured interleaved with
launchdarkly-eventsource and eventstream in the same rounds, on the low-rate ticker.
Beside CPU per event (process), it records the consumer thread's own CPU per event
(``time.thread_time``) and the context switches per event of the whole process and of
the consumer thread (``getrusage``: voluntary + involuntary).

Usage: python benchmarks/scratch_ladder.py [--repeat N] [--spacing 10,1] [--only a,b]
       [--pin CPU] [--events N]
"""

from __future__ import annotations

import argparse
import itertools
import os
import queue
import resource
import socket
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import _net
from _lowrate import (
    TIMEOUT,
    Client,
    EventStreamCallback,
    EventStreamIterating,
    LaunchDarkly,
    Ticker,
    TwoThreadFloor,
    _Threaded,
)

from eventstream._body import BodyDecoder, ContentDecoder, Framing
from eventstream._delivery import Channel
from eventstream._parser import Parser
from eventstream._sockread import SocketSource
from eventstream._stop import StopSignal
from eventstream._wait import Waiter

WARMUP = 50


def _switches(who: int) -> int:
    usage = resource.getrusage(who)
    return usage.ru_nvcsw + usage.ru_nivcsw


class Counter:
    """As _lowrate.Counter, and also the consumer's CPU and the context switches."""

    def __init__(self, first: int, second: int) -> None:
        self.n = 0
        self._marks = (first, second)
        self.at: list[tuple[float, ...]] = []
        self.first = threading.Event()
        self.done = threading.Event()

    def hit(self, _event: object = None) -> None:
        self.n += 1
        if self.n in self._marks:
            self.at.append(
                (
                    time.process_time(),
                    time.monotonic(),
                    time.thread_time(),
                    _switches(resource.RUSAGE_SELF),
                    _switches(resource.RUSAGE_THREAD),
                    resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw,
                    resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw,
                )
            )
            (self.first if len(self.at) == 1 else self.done).set()


def _connect(url: str) -> tuple[socket.socket, bytes]:
    """A socket with the ticker's response headers read; and what came after them."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    sock = socket.create_connection((host, port), timeout=TIMEOUT[0])
    sock.settimeout(TIMEOUT[1])
    request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
    sock.sendall(request.encode("ascii"))
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before the headers")
        head += data
    return sock, head.partition(b"\r\n\r\n")[2]


class _Rung(_Threaded):
    """A worker thread that reads and hands over; the counting thread consumes."""

    def _read(self) -> None:
        self._stop = StopSignal()
        self._setup()
        worker = threading.Thread(target=self._worker_safe, name="ladder-worker", daemon=True)
        worker.start()
        try:
            self._count(self._consume())
        finally:
            self._leave.set()
            self._stop.set()
            self._cancel()
            worker.join(TIMEOUT[1])
        if isinstance(self.error, BaseException):
            raise self.error

    def _worker_safe(self) -> None:
        try:
            self._worker()
        except Exception as exc:
            self.error = exc
        finally:
            self._end()

    def _setup(self) -> None:
        raise NotImplementedError

    def _worker(self) -> None:
        raise NotImplementedError

    def _consume(self) -> Iterator[object]:
        raise NotImplementedError

    def _end(self) -> None:
        raise NotImplementedError

    def _cancel(self) -> None:
        pass


class R2Parse(_Rung):
    """(2) floor + BodyDecoder + Parser on the worker; lists via SimpleQueue."""

    name = "2 +parse, list/SimpleQueue"

    def _setup(self) -> None:
        self._q: queue.SimpleQueue[object] = queue.SimpleQueue()

    def _end(self) -> None:
        self._q.put(None)

    def _worker(self) -> None:
        sock, rest = _connect(self.url)
        with sock:
            feed = Parser().feed
            decode = BodyDecoder(Framing.CHUNKED, ContentDecoder("identity")).feed
            put, recv, leave = self._q.put, sock.recv, self._leave
            data = rest
            while not leave.is_set():
                if data:
                    events = feed(decode(data))
                    if events:
                        put(events)
                data = recv(65536)
                if not data:
                    return

    def _count(self, batches: object) -> None:  # type: ignore[override]
        hit, leave = self.counter.hit, self._leave
        for batch in iter(self._q.get, None):
            for event in batch:  # type: ignore[attr-defined]
                hit(event)
            if leave.is_set():
                break

    def _consume(self) -> Iterator[object]:
        return iter(())


class R3Channel(R2Parse):
    """(3) as (2), with eventstream's Channel; consumer loops over take()'s readers."""

    name = "3 +Channel"

    def _setup(self) -> None:
        self._channel = Channel(1000)
        channel, stop = self._channel, self._stop

        class _Q:
            def put(self, events: list[object]) -> None:
                channel.put(events, stop)  # type: ignore[arg-type]

        self._q = _Q()  # type: ignore[assignment]

    def _end(self) -> None:
        self._channel.end()

    def _cancel(self) -> None:
        self._channel.cancel()

    def _count(self, batches: object) -> None:  # type: ignore[override]
        hit, leave, take = self.counter.hit, self._leave, self._channel.take
        while True:
            reader = take()
            if reader is None:
                return
            for event in reader:
                hit(event)
            if leave.is_set():
                break


class R3bChannelPut(R3Channel):
    """(3) with the worker calling channel.put directly (no wrapper call)."""

    name = "3 +Channel (direct put)"

    def _worker(self) -> None:
        sock, rest = _connect(self.url)
        with sock:
            feed = Parser().feed
            decode = BodyDecoder(Framing.CHUNKED, ContentDecoder("identity")).feed
            put, recv, leave, stop = self._channel.put, sock.recv, self._leave, self._stop
            data = rest
            while not leave.is_set():
                if data:
                    events = feed(decode(data))
                    if events:
                        put(events, stop)
                data = recv(65536)
                if not data:
                    return


def _readers(channel: Channel) -> Iterator[Iterator[object]]:
    try:
        while True:
            reader = channel.take()
            if reader is None:
                return
            yield reader
    finally:
        pass


class R4Chain(R3bChannelPut):
    """(4) as (3), the consumer iterating chain.from_iterable(generator of readers)."""

    name = "4 +chain of readers"

    def _count(self, batches: object) -> None:  # type: ignore[override]
        _Threaded._count(self, itertools.chain.from_iterable(_readers(self._channel)))


class R5ReadLoop(R4Chain):
    """(5) as (4), the worker reading with SocketSource (non-blocking, Waiter's poll)
    under a _socket_chunks-like generator."""

    name = "5 +SocketSource/poll"

    def _worker(self) -> None:
        sock, rest = _connect(self.url)
        with sock, Waiter(self._stop) as waiter:
            buffered = sock.makefile("rb")
            source = SocketSource(buffered, sock, waiter, self._stop)  # type: ignore[arg-type]
            decoder = BodyDecoder(Framing.CHUNKED, ContentDecoder("identity"))
            parser = Parser()
            feed, put, stop = parser.feed, self._channel.put, self._stop
            if rest:
                events = feed(decoder.feed(rest))
                if events:
                    put(events, stop)
            for chunk in _chunks(source, decoder, stop):
                events = feed(chunk)
                if events and not put(events, stop):
                    return


def _chunks(source: SocketSource, decoder: BodyDecoder, stop: StopSignal) -> Iterator[bytes]:
    feed = decoder.feed
    reads = source.reads(TIMEOUT[1])
    try:
        for data in reads:
            out = feed(data) if data else decoder.end_of_input()
            if out:
                yield out
            if decoder.done:
                return
    finally:
        reads.close()


class _EfdBell:
    """A doorbell on an eventfd: put writes (GIL released), get reads (GIL released)."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_CLOEXEC)

    def put(self, _item: None) -> None:
        os.eventfd_write(self.fd, 1)

    def get(self) -> None:
        os.eventfd_read(self.fd)


class EsMainChannel(_Threaded):
    """eventstream with main's (2037d02) Channel: the SimpleQueue doorbell under the lock."""

    name = "6m eventstream, main Channel"

    def _read(self) -> None:
        from _scratch_main_delivery import Channel as MainChannel

        import eventstream

        stream = eventstream.EventStream(self.url, timeout=TIMEOUT)
        stream._control.channel = MainChannel(1000)  # type: ignore[assignment]
        with stream:
            self._count(stream)


class R2Efd(R2Parse):
    """(2) with an eventfd in place of the SimpleQueue's wake-up (deque + eventfd)."""

    name = "2e parse, deque+eventfd"

    def _setup(self) -> None:
        import collections

        items: collections.deque[object] = collections.deque()
        bell = _EfdBell()
        self._bell = bell

        class _Q:
            def put(self, item: object) -> None:
                items.append(item)
                os.eventfd_write(bell.fd, 1)

            def get(self) -> object:
                while not items:
                    os.eventfd_read(bell.fd)
                return items.popleft()

        self._q = _Q()  # type: ignore[assignment]


RUNGS: list[type[Client]] = [
    LaunchDarkly,
    TwoThreadFloor,
    R2Parse,
    R2Efd,
    R3Channel,
    R3bChannelPut,
    R4Chain,
    R5ReadLoop,
    EventStreamIterating,
    EsMainChannel,
    EventStreamCallback,
]


def trial(cls: type[Client], url: str, events: int) -> tuple[float, ...] | str:
    counter = Counter(WARMUP, WARMUP + events)
    client = cls(url, counter)  # type: ignore[arg-type]
    client.start()
    finished = counter.done.wait(30 + events * 0.05)
    client.stop()
    if not client.join(10):
        return "did not stop"
    if not finished:
        return f"{counter.n} events; error {client.error!r}"
    a, b = counter.at
    return tuple((y - x) / events for x, y in zip(a, b))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spacing", default="10,1")
    parser.add_argument("--only", default="")
    parser.add_argument("--pin", type=int, default=None)
    parser.add_argument("--events", type=int, default=0)
    args = parser.parse_args()
    _net.clear_proxies()
    rungs = RUNGS
    if args.only:
        keys = args.only.split(",")
        rungs = [c for c in RUNGS if any(c.name.startswith(k) for k in keys)]
    print("command: python", " ".join(sys.argv), "| load", os.getloadavg())
    for ms in (float(x) for x in args.spacing.split(",")):
        spacing = ms / 1000
        events = args.events or (300 if ms >= 10 else 2000)
        rows: dict[str, list[tuple[float, ...]]] = {c.name: [] for c in rungs}
        with Ticker(spacing) as ticker:
            if args.pin is not None:
                os.sched_setaffinity(0, {args.pin})  # threads made from now on inherit it
                os.sched_setaffinity(ticker.pid, {1 - args.pin})
            for cls in rungs:
                trial(cls, ticker.url, 20)
            for rep in range(args.repeat):
                turn = rep % len(rungs)
                for cls in [*rungs[turn:], *rungs[:turn]]:
                    out = trial(cls, ticker.url, events)
                    if isinstance(out, str):
                        print("  FAILED", cls.name, out)
                    else:
                        rows[cls.name].append(out)
            if args.pin is not None:
                os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        base = statistics.median(r[0] for r in rows[LaunchDarkly.name])
        print(
            f"\n{ms:g} ms apart, {events} events/trial, {args.repeat} trials, pin={args.pin},"
            f" load {os.getloadavg()[0]:.2f}"
        )
        print(
            f"  {'rung':<28}{'us/ev':>8}{'vs ld':>7}{'cons us':>9}{'work us':>9}"
            f"{'cs/ev':>7}{'cons cs':>8}{'apart':>7}  all us/ev"
        )
        for name, outs in rows.items():
            if not outs:
                continue
            med = [statistics.median(o[i] for o in outs) for i in range(5)]
            cpu, apart, cons, cs, ccs = med
            inv, cinv = (statistics.median(o[i] for o in outs) for i in (5, 6))
            label = f"{name[:19]} i{inv:.2f}/{cinv:.2f}"
            each = " ".join(f"{o[0] * 1e6:.0f}" for o in outs)
            print(
                f"  {label:<28}{cpu * 1e6:>8.1f}{cpu / base:>6.2f}x{cons * 1e6:>9.1f}"
                f"{(cpu - cons) * 1e6:>9.1f}{cs:>7.2f}{ccs:>8.2f}{apart * 1e3:>7.2f}  {each}"
            )
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
