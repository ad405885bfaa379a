"""Shared pieces of the network benchmarks: contestants as stream readers, TLS material,
the probe that sees which sockets a stopping thread touches, and the report header.

Rule: every server listens on 127.0.0.1, and every peer is driven the way its own
documentation shows, stopped from another thread the way its users do it.  Nothing
here sleeps to synchronise: threads meet on ``threading.Event``\\ s and queues, always
with timeouts.

Run as a script, this module is the server process of ``bench_throughput.py`` and
``bench_idle.py`` (a process of its own, so that the server's CPU time is not the
client's): ``eventstream.testing.SSEServer`` answering every request with one script::

    python benchmarks/_net.py hold                # headers, then silence
    python benchmarks/_net.py corpus a [--quick]  # a corpus, one HTTP chunk per event

It prints its URL on one line, then serves until its standard input closes.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import math
import os
import queue
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, SimpleNamespace
from typing import Any, ClassVar

from _cli import load, shown
from _corpora import Corpus, build_corpus
from bench_parser import environment

import eventstream
from eventstream.testing import Script, SSEServer

__all__ = [
    "SUBJECT",
    "Reader",
    "ServerProcess",
    "Timeouts",
    "TouchProbe",
    "begin",
    "clear_proxies",
    "corpus_events",
    "header",
    "lineup",
    "load",
    "make_tls",
    "percentile",
    "wait",
]

HERE = Path(__file__).resolve().parent
SUBJECT = "eventstream"
_NEVER = threading.Event()  # never set: waiting on it is a bounded, deliberate pause


def wait(seconds: float) -> None:
    """Let ``seconds`` pass on purpose (a scripted silence, not a synchronisation)."""
    _NEVER.wait(seconds)


def clear_proxies() -> None:
    """Forget proxy settings: every request here goes straight to 127.0.0.1."""
    for name in list(os.environ):
        if name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            del os.environ[name]


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile: a value that was measured (p99 of 50 is the maximum)."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(p / 100 * len(ordered))) - 1]


# -- The report header --------------------------------------------------------------------


def _stack() -> str:
    names = ("requests", "urllib3", "httpx", "httpcore")
    versions = []
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{name} {importlib.metadata.version(name)}")
    return ", ".join([*versions, ssl.OPENSSL_VERSION])


def header(title: str, argv: Sequence[str], names: Sequence[str], missing: Sequence[str]) -> None:
    """Print the title, the reproducing command and the environment."""
    print(title)
    print(f"command:  {shown(argv)}")
    contestants = [SimpleNamespace(name=name) for name in names]
    print("\n".join(environment(contestants, missing)))  # type: ignore[arg-type]
    print(f"stack:    {_stack()}")


def begin(title: str, command: Sequence[str]) -> list[type[Reader]]:
    """A network benchmark's start: forget proxy settings, find the contestants and print
    the report :func:`header` (the missing peers go there).  The contestants present."""
    clear_proxies()
    classes, missing = lineup()
    header(title, command, [c.name for c in classes], missing)
    return classes


# -- TLS ------------------------------------------------------------------------------------


class TLS:
    """A throw-away CA (trustme) and a server context for 127.0.0.1; ``None`` from
    :func:`make_tls` when trustme is not installed."""

    def __init__(self, directory: Path) -> None:
        import trustme

        authority = trustme.CA()
        self.server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(self.server_context)
        self.ca_file = str(directory / "ca.pem")
        authority.cert_pem.write_to_path(self.ca_file)


@contextlib.contextmanager
def make_tls() -> Iterator[TLS | None]:
    try:
        import trustme  # noqa: F401  (only to know whether it is there)
    except ImportError:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="eventstream-bench-") as directory:
        yield TLS(Path(directory))


# -- Contestants: one stream each, read on a thread of its own ------------------------------


@dataclass(frozen=True)
class Timeouts:
    """Seconds: connect (and TLS handshake), and read (each silence in the body)."""

    connect: float
    read: float


class Reader:
    """One contestant's stream, read on a thread of its own (the reading thread).

    ``ready`` is set once the response headers are in and reading is about to begin.
    Each event's data goes to ``received`` with the ``time.monotonic()`` at which the
    consuming thread got it.  :meth:`stop` is the contestant's own way to end a stream
    from another thread.  ``how_it_stops`` says what that does, from reading the
    contestant's code; :class:`TouchProbe` checks it.
    """

    name: ClassVar[str]
    how_it_stops: ClassVar[str]

    def __init__(self, url: str, ca_file: str | None, timeouts: Timeouts) -> None:
        self.url, self.ca_file, self.timeouts = url, ca_file, timeouts
        self.ready = threading.Event()
        self.received: queue.SimpleQueue[tuple[str, float]] = queue.SimpleQueue()
        self.ended = "running"  # how the reading thread ended
        self._thread = threading.Thread(target=self._run, name=f"bench-{self.name}", daemon=True)

    def start(self) -> Reader:
        self._thread.start()
        return self

    def stop(self) -> None:
        raise NotImplementedError

    def join(self, timeout: float) -> bool:
        """Wait for the reading thread to exit; whether it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            self._read()
            self.ended = "end of iteration"
        except Exception as exc:  # the way a contestant's read ends is a result here
            kind = type(exc).__name__
            self.ended = "read timeout" if "Timeout" in kind else f"{kind} raised"

    def _read(self) -> None:
        raise NotImplementedError

    def _got(self, data: str) -> None:
        self.received.put((data, time.monotonic()))

    def _got_each(self, events: Iterable[Any]) -> None:
        """Consume ``events``, handing each one's data over as it comes."""
        for event in events:
            self._got(event.data)


class _ClientReader(Reader):
    """A peer whose client object (``self._client``) ends its stream with ``close()``;
    before it exists (no response headers yet) there is nothing to close."""

    _client: Any = None

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()


class EventStreamReader(Reader):
    name = SUBJECT
    how_it_stops = (
        "stop(timeout=5): sets the stream's stop signal, which pokes the worker's own"
        " waker (an eventfd on Linux, an AF_UNIX socket pair elsewhere), then joins the"
        " worker; the worker closes its response and session itself"
    )

    def __init__(self, url: str, ca_file: str | None, timeouts: Timeouts) -> None:
        super().__init__(url, ca_file, timeouts)
        self.stopped: bool | None = None
        self._stream = eventstream.EventStream(
            url,
            timeout=(timeouts.connect, timeouts.read),
            session_factory=None if ca_file is None else self._session,
            on_open=lambda info: self.ready.set(),
        )

    def _session(self) -> Any:
        import requests

        session = requests.Session()
        session.verify = self.ca_file  # wins over REQUESTS_CA_BUNDLE
        return session

    def _read(self) -> None:
        self._got_each(self._stream)  # iterating starts the worker

    def stop(self) -> None:
        self.stopped = self._stream.stop(timeout=5)


class SseclientReader(_ClientReader):
    name = "sseclient-py"
    how_it_stops = (
        "SSEClient.close() -> requests Response.close() -> urllib3 HTTPResponse.close():"
        " closes http.client's buffered reader (whose lock the blocked reader holds)"
        " and the connection's socket, on the stopping thread (before the response:"
        " nothing to close)"
    )

    def _read(self) -> None:
        import requests
        from sseclient import SSEClient

        response = requests.get(
            self.url,
            stream=True,
            headers={"Accept": "text/event-stream"},
            timeout=(self.timeouts.connect, self.timeouts.read),
            verify=self.ca_file or True,
        )
        response.raise_for_status()
        self._client = SSEClient(response)
        self.ready.set()
        self._got_each(self._client.events())


class LaunchDarklyReader(_ClientReader):
    name = "launchdarkly-eventsource"
    how_it_stops = (
        "SSEClient.close() -> interrupt() -> the connection's closer: urllib3"
        " HTTPResponse.shutdown() (SHUT_RD on the socket) then close(), on the"
        " stopping thread"
    )

    def __init__(self, url: str, ca_file: str | None, timeouts: Timeouts) -> None:
        super().__init__(url, ca_file, timeouts)
        import urllib3
        from ld_eventsource import SSEClient
        from ld_eventsource.config import ConnectStrategy, ErrorStrategy

        pool = None if ca_file is None else urllib3.PoolManager(ca_certs=ca_file)
        timeout = urllib3.Timeout(connect=timeouts.connect, read=timeouts.read)
        connect = ConnectStrategy.http(url, pool=pool, urllib3_request_options={"timeout": timeout})
        self._client = SSEClient(connect, error_strategy=ErrorStrategy.always_fail())

    def _read(self) -> None:
        self._client.start()
        self.ready.set()
        self._got_each(self._client.events)


class HttpxSseReader(Reader):
    name = "httpx-sse"
    how_it_stops = (
        "Response.close() on the response that connect_sse() opened -> httpcore closes"
        " the connection and its socket, on the stopping thread (before the response:"
        " Client.close())"
    )

    def _read(self) -> None:
        import httpx
        from httpx_sse import connect_sse

        verify: Any = (
            True if self.ca_file is None else ssl.create_default_context(cafile=self.ca_file)
        )
        timeout = httpx.Timeout(self.timeouts.connect, read=self.timeouts.read)
        with httpx.Client(verify=verify, timeout=timeout) as client:
            self._httpx = client
            with connect_sse(client, "GET", self.url) as source:
                self._response = source.response
                self.ready.set()
                self._got_each(source.iter_sse())

    def stop(self) -> None:
        response = getattr(self, "_response", None)
        if response is not None:
            response.close()
        elif getattr(self, "_httpx", None) is not None:  # no response yet: the client
            self._httpx.close()


_PEER_MODULES = {
    SseclientReader: "sseclient",
    LaunchDarklyReader: "ld_eventsource",
    HttpxSseReader: "httpx_sse",
}


def lineup() -> tuple[list[type[Reader]], list[str]]:
    """eventstream and the installed peers, and the names of the missing peers."""
    present: list[type[Reader]] = [EventStreamReader]
    missing = []
    for reader, module in _PEER_MODULES.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(reader.name)
            continue
        present.append(reader)
    return present, missing


# -- Which sockets a stopping thread touches --------------------------------------------------


def _tcp(obj: object) -> bool:
    if isinstance(obj, socket.SocketIO):
        obj = getattr(obj, "_sock", None)
    return isinstance(obj, socket.socket) and obj.family in (socket.AF_INET, socket.AF_INET6)


class TouchProbe:
    """Records every call the current thread makes on a TCP socket while inside ``with``.

    A profile hook (``sys.setprofile``, this thread only) sees each Python call whose
    ``self`` is a TCP ``socket.socket`` (``ssl.SSLSocket`` included) or a
    ``socket.SocketIO`` over one, and each C call bound to one.  A socketpair of the
    AF_UNIX family (eventstream's wake-up) is not the connection and does not count.
    The hook slows calls down: use it on untimed trials only.
    """

    def __init__(self, *, active: bool = True) -> None:
        self.active = active  # inactive: a probe that records nothing, at no cost
        self.calls: list[str] = []

    def __enter__(self) -> TouchProbe:
        if self.active:
            sys.setprofile(self._hook)
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.active:
            sys.setprofile(None)

    def _hook(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            target, name = frame.f_locals.get("self"), frame.f_code.co_name
        elif event == "c_call":
            target, name = getattr(arg, "__self__", None), getattr(arg, "__name__", "?")
        else:
            return
        if _tcp(target):
            call = f"{type(target).__name__}.{name}"
            if call not in self.calls:
                self.calls.append(call)


# -- The server process -------------------------------------------------------------------------


class ServerProcess:
    """``python _net.py ARGS`` in a child process: an SSEServer, its URL, and its end."""

    def __init__(self, *args: str, script: Path | None = None) -> None:
        command = [sys.executable, str(script or Path(__file__).resolve()), *args]
        self._process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=HERE
        )
        assert self._process.stdout is not None
        self.url = self._process.stdout.readline().strip()
        if not self.url.startswith("http://"):
            self.close()
            raise RuntimeError(f"the server process did not start: {command}")

    @property
    def pid(self) -> int:
        return self._process.pid

    def close(self) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()  # the server's signal to stop
        try:
            self._process.wait(30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def corpus_events(key: str, quick: bool) -> tuple[list[bytes], Corpus]:
    """Corpus ``key`` cut into one byte string per event, and the corpus itself."""
    corpus = build_corpus(key, quick=quick)
    wire = b"".join(corpus.chunks)
    blocks = wire.split(b"\n\n")
    if blocks[-1] or b"\r" in wire or len(blocks) - 1 != len(corpus.expected):
        raise ValueError(f"corpus {key} is not one LF-terminated block per event")
    return [block + b"\n\n" for block in blocks[:-1]], corpus


def _serve(argv: Sequence[str]) -> None:
    if argv[:1] == ["hold"]:
        script = Script().hold()
    elif argv[:1] == ["corpus"] and len(argv) in (2, 3):
        events, _ = corpus_events(argv[1], quick="--quick" in argv)
        # Framed here, once: one chunk per event, written with wire() (SSEServer's
        # own framing would build one script action per event), and the body end
        # (the last chunk) is added by the script's implied close().
        script = Script().wire(b"".join(b"%x\r\n%s\r\n" % (len(e), e) for e in events))
    else:
        raise SystemExit(f"usage: {Path(__file__).name} hold | corpus KEY [--quick]")
    with SSEServer() as server:
        server.default = script
        print(server.url, flush=True)
        sys.stdin.read()  # until the parent closes our stdin


if __name__ == "__main__":
    _serve(sys.argv[1:])
