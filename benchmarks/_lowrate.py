"""Shared pieces of the low-rate benchmarks: the ticker server process, the clients that
count events, and the file-descriptor limit.

Every client here counts events the same way (:class:`Counter`, one small Python call
per event), so that the per-event CPU compared is the client's own.  Each is read the
way its documentation shows: eventstream with ``on_event`` or by iterating, the peers
by iterating on a thread of their own.
"""

from __future__ import annotations

import queue
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from _net import ServerProcess

import eventstream

__all__ = ["CLIENTS", "FLOORS", "Client", "Counter", "Ticker", "raise_fd_limit"]

HERE = Path(__file__).resolve().parent
TIMEOUT = (10.0, 60.0)  # connect, read: as users set them


class Ticker(ServerProcess):
    """``python _ticker.py INTERVAL`` in a child process: its URL, and its end."""

    def __init__(self, interval: float) -> None:
        super().__init__(repr(interval), script=HERE / "_ticker.py")


class Counter:
    """Counts events; takes this process's CPU and the clock at two marks.

    ``hit`` runs on whichever thread consumes the events.  ``done`` is set at the
    second mark.  ``opened`` is set at the first event.
    """

    def __init__(self, first: int, second: int) -> None:
        self.n = 0
        self._marks = (first, second)
        self.at: list[tuple[float, float]] = []  # (process CPU, monotonic) at each mark
        self.first = threading.Event()
        self.done = threading.Event()

    def hit(self, _event: object = None) -> None:
        self.n += 1
        if self.n in self._marks:
            self.at.append((time.process_time(), time.monotonic()))
            (self.first if len(self.at) == 1 else self.done).set()

    @property
    def finished(self) -> bool:
        return self.done.is_set()


class Client:
    """One stream of one contestant; ``start`` opens it, ``stop`` ends it (from here)."""

    name: ClassVar[str]
    #: The distribution whose version the report shows, if any.
    package: ClassVar[str | None] = None

    def __init__(self, url: str, counter: Counter) -> None:
        self.url, self.counter = url, counter
        self.error: BaseException | None = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def join(self, timeout: float) -> bool:
        return True


class _Threaded(Client):
    """A client read on a thread of its own, which counts until ``done``, then leaves."""

    def __init__(self, url: str, counter: Counter) -> None:
        super().__init__(url, counter)
        self._thread = threading.Thread(target=self._run, name=f"bench-{self.name}", daemon=True)
        self._leave = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._leave.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._read()
        except Exception as exc:  # a result, shown in the report
            self.error = exc

    def _count(self, events: Iterable[Any]) -> None:
        hit, leave = self.counter.hit, self._leave
        for event in events:
            hit(event)
            if leave.is_set():
                break

    def _read(self) -> None:
        raise NotImplementedError


class EventStreamCallback(Client):
    name = "eventstream on_event"

    def start(self) -> None:
        self._stream = eventstream.EventStream(
            self.url, timeout=TIMEOUT, on_event=self.counter.hit, on_error=self._failed
        ).start()

    def _failed(self, exc: BaseException) -> None:
        self.error = exc

    def stop(self) -> None:
        self._stream.stop()

    def join(self, timeout: float) -> bool:
        return self._stream.join(timeout)


class EventStreamIterating(_Threaded):
    name = "eventstream iterating"

    def _read(self) -> None:
        with eventstream.EventStream(self.url, timeout=TIMEOUT) as stream:
            self._count(stream)


class LaunchDarkly(_Threaded):
    name = "launchdarkly-eventsource"
    package = "launchdarkly-eventsource"

    def _read(self) -> None:
        import urllib3
        from ld_eventsource import SSEClient
        from ld_eventsource.config import ConnectStrategy, ErrorStrategy

        timeout = urllib3.Timeout(connect=TIMEOUT[0], read=TIMEOUT[1])
        connect = ConnectStrategy.http(self.url, urllib3_request_options={"timeout": timeout})
        client = SSEClient(connect, error_strategy=ErrorStrategy.always_fail())
        try:
            self._count(client.events)
        finally:
            client.close()


class Sseclient(_Threaded):
    name = "sseclient-py"
    package = "sseclient-py"

    def _read(self) -> None:
        import requests
        from sseclient import SSEClient

        headers = {"Accept": "text/event-stream"}
        with requests.get(self.url, stream=True, headers=headers, timeout=TIMEOUT) as response:
            self._count(SSEClient(response).events())


class RequestsLoop(_Threaded):
    name = "requests iter_content"
    package = "requests"

    def _read(self) -> None:
        import requests

        headers = {"Accept": "text/event-stream"}
        with requests.get(self.url, stream=True, headers=headers, timeout=TIMEOUT) as response:
            # One HTTP chunk per event: each chunk counts as one event, unparsed.
            self._count(response.iter_content(chunk_size=None))


def _raw_reads(url: str, leave: threading.Event) -> Iterator[bytes]:
    """What each ``recv`` of a plain socket brings from ``url``'s ticker, until
    ``leave`` is set or the server closes: no HTTP parsing, no SSE parsing.

    The socket has a timeout, as every client here sets one: CPython then polls
    before each ``recv`` (one ``poll`` and one ``recv`` per read, as ``requests``
    and eventstream make), so this is the system-call floor of a reader that can time out.
    """
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    with socket.create_connection((host, port), timeout=TIMEOUT[0]) as sock:
        sock.settimeout(TIMEOUT[1])
        request = f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nAccept: text/event-stream\r\n\r\n"
        sock.sendall(request.encode("ascii"))
        recv = sock.recv
        while not leave.is_set():
            data = recv(65536)
            if not data:
                return
            yield data


class BareSocket(_Threaded):
    """Floor: one thread, a raw socket, a blocking ``recv`` loop; each read counts as
    one event (the ticker writes one event per read).  What any one-thread reader pays
    for the system calls and the wake-up, with nothing parsed."""

    name = "floor: bare socket"

    def _read(self) -> None:
        self._count(_raw_reads(self.url, self._leave))


class TwoThreadFloor(_Threaded):
    """Floor: the bare socket loop on a reader thread of its own, each read handed to
    the counting thread through a ``queue.SimpleQueue`` (the cheapest hand-off between
    two threads): what any reader pays that reads on one thread and delivers on
    another, as an iterated eventstream must (the ownership rule), with nothing parsed."""

    name = "floor: two threads"

    def _read(self) -> None:
        handoff: queue.SimpleQueue[bytes | BaseException | None] = queue.SimpleQueue()
        reader = threading.Thread(
            target=self._reader, args=(handoff,), name="bench-floor-reader", daemon=True
        )
        reader.start()
        try:
            self._count(iter(handoff.get, None))
        finally:
            self._leave.set()
            reader.join(TIMEOUT[1])
        if isinstance(self.error, BaseException):
            raise self.error

    def _reader(self, handoff: queue.SimpleQueue[bytes | BaseException | None]) -> None:
        put = handoff.put
        try:
            for data in _raw_reads(self.url, self._leave):
                put(data)
        except Exception as exc:  # a result, shown in the report
            self.error = exc
        finally:
            put(None)


def _importable(module: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            __import__(module)
        except ImportError:
            return False
        return True

    return check


#: Every contestant, and how to know whether it is installed.
CLIENTS: dict[type[Client], Callable[[], bool]] = {
    EventStreamCallback: lambda: True,
    EventStreamIterating: lambda: True,
    LaunchDarkly: _importable("ld_eventsource"),
    Sseclient: _importable("sseclient"),
    RequestsLoop: lambda: True,
}

#: The physical floors, run in the same interleaved rounds as the contestants.
FLOORS: dict[type[Client], Callable[[], bool]] = {
    BareSocket: lambda: True,
    TwoThreadFloor: lambda: True,
}


def raise_fd_limit(needed: int) -> str:
    """Raise this process's soft limit on open files to ``needed`` if it is lower (up to
    the hard limit); what was done, for the report."""
    try:
        import resource
    except ImportError:
        return "no RLIMIT_NOFILE on this platform"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return f"soft limit {soft} is enough"
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return f"soft limit raised from {soft} to {target} (hard limit {hard})"
