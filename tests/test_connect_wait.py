"""A stop while the worker connects takes effect at once.

The worker's connect is non-blocking and waits on the socket and the stop signal's
waker (``_connwait.ConnectionWait.connect``), so an address that does not answer (a
host that is down, a firewall that drops, a server whose backlog is full) no longer
holds ``stop()``, ``restart()`` or the end of a ``with`` block for the connect
timeout.  The address here is real: a listening socket whose backlog is full, so the
kernel drops the SYNs of new connections and the connect hangs until its timeout.
Nothing sleeps: each test waits until the worker is in its connect, then times the stop.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import re
import socket
import ssl
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import trustme
import urllib3

from eventstream import ConnectError, EventStream, ReadError, _connwait, _wait
from eventstream._stop import StopSignal
from eventstream._transport import RequestSpec, make_session, open_stream
from eventstream.testing import Script, SSEServer

TIMEOUT = 5.0
CONNECT_TIMEOUT = 3.0  # a stop that waited for it would fail STOP_BOUND by far
STOP_BOUND = 1.0  # seconds: generous for CI; a stop takes about a millisecond


@pytest.fixture
def stalled() -> Iterator[int]:
    """The port of a listener whose backlog is full: connects to it hang."""
    listener = socket.socket()
    filled: list[socket.socket] = []
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        address = listener.getsockname()
        for _ in range(8):
            probe = socket.socket()
            probe.settimeout(0.2)
            try:
                probe.connect(address)
            except socket.timeout:
                probe.close()
                break  # the backlog is full: the kernel drops the SYNs now
            filled.append(probe)
        else:
            pytest.skip("this kernel does not drop connects beyond a full backlog")
        yield address[1]
    finally:
        for sock in filled:
            sock.close()
        listener.close()


def connecting(timeout: float = TIMEOUT) -> bool:
    """Wait (bounded) until a thread is in the stream's connect (``_connwait``)."""
    deadline = time.monotonic() + timeout
    tick = threading.Event()  # never set: wait() paces the look
    while time.monotonic() < deadline:
        for top in sys._current_frames().values():
            frame: types.FrameType | None = top
            while frame is not None:
                code = frame.f_code
                if code.co_filename.endswith("_connwait.py") and "_connect" in code.co_name:
                    return True
                frame = frame.f_back
        tick.wait(0.001)
    return False


def stream_to(url: str, errors: queue.Queue[BaseException], **options: Any) -> EventStream:
    return EventStream(
        url,
        timeout=(options.pop("connect_timeout", CONNECT_TIMEOUT), TIMEOUT),
        on_event=lambda event: None,
        on_error=errors.put,
        **options,
    )


def stopped_promptly(stream: EventStream) -> float:
    """Wait until ``stream`` connects, stop it; the seconds the stop took."""
    assert connecting(), "the worker never began to connect"
    started = time.monotonic()
    assert stream.stop(timeout=TIMEOUT), "the worker is still connecting"
    return time.monotonic() - started


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_stop_ends_a_connect_that_hangs(stalled: int, scheme: str) -> None:
    errors: queue.Queue[BaseException] = queue.Queue()
    with stream_to(f"{scheme}://127.0.0.1:{stalled}/", errors) as stream:
        assert stopped_promptly(stream) < STOP_BOUND
    assert errors.empty(), errors.get()  # a stop is no error


def test_a_stop_ends_a_connect_to_a_proxy_that_hangs(stalled: int) -> None:
    def through_the_proxy() -> requests.Session:
        session = requests.Session()
        session.proxies = {"http": f"http://127.0.0.1:{stalled}"}
        return session

    errors: queue.Queue[BaseException] = queue.Queue()
    url = "http://origin.invalid/stream"  # never resolved: the proxy is connected to
    with stream_to(url, errors, session_factory=through_the_proxy) as stream:
        assert stopped_promptly(stream) < STOP_BOUND
    assert errors.empty(), errors.get()


def test_without_a_connect_timeout_a_stop_still_ends_the_connect(stalled: int) -> None:
    # open_stream on a thread of its own, as a worker would, with no connect timeout.
    stop = StopSignal()
    request = RequestSpec(f"http://127.0.0.1:{stalled}/", connect_timeout=None)
    outcome = in_a_worker(request, stop=stop)
    try:
        assert connecting(), "the worker never began to connect"
        started = time.monotonic()
        stop.set()
        ended = outcome.get(timeout=TIMEOUT)
        assert time.monotonic() - started < STOP_BOUND
    finally:
        stop.set()
        join_the_worker()
    assert isinstance(ended, ReadError)


def test_a_stop_before_the_connect_ends_it_at_once(stalled: int) -> None:
    stop = StopSignal()
    stop.set()
    request = RequestSpec(f"http://127.0.0.1:{stalled}/", connect_timeout=CONNECT_TIMEOUT)
    with make_session() as session:
        started = time.monotonic()
        with pytest.raises(ReadError, match="stopped before the response"):
            open_stream(session, request, stop)
        assert time.monotonic() - started < STOP_BOUND


def test_a_stopped_connect_is_not_retried_by_a_users_adapter(
    stalled: int, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # urllib3 retries a connect that fails with an OSError (max_retries): a stop is
    # not one, so the stream does not connect again after it.
    calls: queue.Queue[None] = queue.Queue()
    real = _connwait.ConnectionWait.connect

    def counted(self: _connwait.ConnectionWait, *args: Any) -> socket.socket:
        calls.put(None)
        return real(self, *args)

    def retrying() -> requests.Session:
        session = requests.Session()
        session.mount("http://", requests.adapters.HTTPAdapter(max_retries=2))
        return session

    monkeypatch.setattr(_connwait.ConnectionWait, "connect", counted)
    errors: queue.Queue[BaseException] = queue.Queue()
    url = f"http://127.0.0.1:{stalled}/"
    logged = caplog.at_level(logging.WARNING, logger="urllib3")
    with logged, stream_to(url, errors, session_factory=retrying) as stream:
        assert stopped_promptly(stream) < STOP_BOUND
    assert calls.qsize() == 1
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()]
    assert errors.empty(), errors.get()


def test_the_connect_timeout_still_bounds_a_connect_that_hangs(stalled: int) -> None:
    request = RequestSpec(f"http://127.0.0.1:{stalled}/", connect_timeout=0.2)
    with make_session() as session:
        started = time.monotonic()
        with pytest.raises(ConnectError) as caught:
            open_stream(session, request, StopSignal())
        took = time.monotonic() - started
    assert 0.2 <= took < 0.8
    # As a blocking connect says it (socket.timeout is named timeout before 3.10).
    assert re.fullmatch(
        r"cannot connect to \S+: (TimeoutError|timeout): timed out", str(caught.value)
    )
    assert "connect timeout=0.2" in repr(caught.value.__cause__)


def in_a_worker(
    request: RequestSpec, session_factory: Any = None, stop: StopSignal | None = None
) -> queue.Queue[Any]:
    """``open_stream`` on a thread of its own, as a worker would, and then the whole
    body; what it raised or read comes in the queue.  The caller joins the thread
    (named ``open-stream``: :func:`join_the_worker`)."""
    outcome: queue.Queue[Any] = queue.Queue()

    def worker() -> None:
        try:
            with make_session(session_factory) as session:
                body = open_stream(session, request, stop or StopSignal())
                with body:
                    outcome.put(b"".join(body.chunks()))
        except BaseException as exc:
            outcome.put(exc)

    threading.Thread(target=worker, name="open-stream").start()
    return outcome


def join_the_worker() -> None:
    for thread in threading.enumerate():
        if thread.name == "open-stream":
            thread.join(TIMEOUT)


def test_the_connect_timeout_bounds_a_tls_handshake_that_hangs() -> None:
    # The server takes the connection and never answers the TLS ClientHello: the
    # socket keeps the connect timeout for the handshake, as urllib3's does.
    with socket.create_server(("127.0.0.1", 0)) as listener:  # it never accepts
        port = listener.getsockname()[1]
        request = RequestSpec(f"https://127.0.0.1:{port}/", connect_timeout=0.3)
        started = time.monotonic()
        try:
            ended = in_a_worker(request).get(timeout=TIMEOUT)
        finally:
            listener.close()  # resets the connection: a hung handshake ends
            join_the_worker()
    assert isinstance(ended, ConnectError), repr(ended)
    assert time.monotonic() - started < 2.0
    assert "timed out" in str(ended)


def test_without_a_waker_the_connect_blocks_within_its_timeout(
    stalled: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No descriptor left for a waker: the connect is urllib3's blocking one, with
    # the connect timeout; the body then says why it cannot read.
    def no_descriptors(stop: StopSignal) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(_wait, "make_waker", no_descriptors)
    request = RequestSpec(f"http://127.0.0.1:{stalled}/", connect_timeout=0.2)
    with make_session() as session:
        started = time.monotonic()
        with pytest.raises(ConnectError, match="timed out"):
            open_stream(session, request, StopSignal())
        assert time.monotonic() - started < 0.8
    with SSEServer() as server:
        server.enqueue(Script().event("x"))
        try:
            ended = in_a_worker(RequestSpec(server.url)).get(timeout=TIMEOUT)
        finally:
            join_the_worker()
    assert isinstance(ended, ReadError), repr(ended)
    assert str(ended).startswith("the process is out of file descriptors")
    assert len(server.requests) == 1  # connected, and sent the request


def test_a_name_with_no_address_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def nothing_for_it(host: str, *args: Any, **kwargs: Any) -> Any:
        return [] if host == "empty.test" else real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", nothing_for_it)
    with make_session() as session, pytest.raises(ConnectError) as caught:
        open_stream(session, RequestSpec("http://empty.test/"), StopSignal())
    assert str(caught.value).endswith(": OSError: getaddrinfo returns an empty list")


def test_a_refused_connect_says_so() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, not listening: refused
        with make_session() as session, pytest.raises(ConnectError) as caught:
            open_stream(session, RequestSpec(f"http://127.0.0.1:{port}/"), StopSignal())
        with socket.socket() as blocking, pytest.raises(ConnectionRefusedError) as plain:
            blocking.connect(("127.0.0.1", port))
    # As a blocking connect says it.
    said = f"ConnectionRefusedError: [Errno {errno.ECONNREFUSED}] {os.strerror(errno.ECONNREFUSED)}"
    assert str(caught.value) == f"cannot connect to http://127.0.0.1:{port}/: {said}"
    refused = [e for e in _chain(caught.value) if isinstance(e, ConnectionRefusedError)]
    assert refused
    assert refused[0].errno == errno.ECONNREFUSED
    assert refused[0].args == plain.value.args  # to whoever reads its args, too


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: BaseException | None = error
    while seen is not None:
        yield seen
        seen = seen.__cause__ or seen.__context__


@contextmanager
def named(monkeypatch: pytest.MonkeyPatch, *addresses: tuple[str, int]) -> Iterator[str]:
    """A host name (``two.test``) that DNS resolves to ``addresses``, in that order."""
    real = socket.getaddrinfo

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        if host != "two.test":
            return real(host, port, *args, **kwargs)
        kind = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
        return [(*kind, address) for address in addresses]

    with monkeypatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", resolve)
        yield "two.test"


@pytest.mark.parametrize("first", ["refused", "hangs"])
def test_each_address_is_tried_in_turn(
    monkeypatch: pytest.MonkeyPatch, stalled: int, first: str
) -> None:
    # A name with two addresses, the first one failing: urllib3 goes on to the next
    # (after the whole connect timeout, for one that hangs), and so does the stream.
    with SSEServer() as server, socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        failing = closed.getsockname() if first == "refused" else ("127.0.0.1", stalled)
        with named(monkeypatch, failing, ("127.0.0.1", server.port)) as host:
            server.enqueue(Script().event("reached"))
            request = RequestSpec(f"http://{host}:{server.port}/", connect_timeout=0.3)
            try:
                got = in_a_worker(request).get(timeout=TIMEOUT)
            finally:
                closed.close()
                join_the_worker()
    assert got == b"data: reached\n\n"


def test_the_socket_options_and_source_address_of_an_adapter_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # On the first of two addresses (the one used), as on the last.
    class Bound(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            kwargs["source_address"] = ("127.0.0.2", 0)
            kwargs["socket_options"] = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
            super().init_poolmanager(*args, **kwargs)

    def bound() -> requests.Session:
        session = requests.Session()
        session.mount("http://", Bound())
        return session

    kept: queue.Queue[int] = queue.Queue()
    real = _connwait.ConnectionWait._connect

    def seen(self: _connwait.ConnectionWait, sock: socket.socket, *args: Any) -> None:
        real(self, sock, *args)
        kept.put(sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE))

    monkeypatch.setattr(_connwait.ConnectionWait, "_connect", seen)
    for used in ("first", "last"):
        with SSEServer() as server, socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            addresses = [("127.0.0.1", server.port), closed.getsockname()]
            if used == "last":
                addresses.reverse()
            with named(monkeypatch, *addresses) as host:
                server.enqueue(Script().event("x"))
                request = RequestSpec(f"http://{host}:{server.port}/")
                with (
                    make_session(bound) as session,
                    open_stream(session, request, StopSignal()) as body,
                ):
                    b"".join(body.chunks())
            assert server.requests[0].client_address[0] == "127.0.0.2", used
        assert kept.get(timeout=TIMEOUT) != 0, used


@pytest.fixture(params=["http", "https"])
def silent_proxy(request: pytest.FixtureRequest) -> Iterator[tuple[SSEServer, str]]:
    """A proxy that reads ``CONNECT`` and never answers (as one does while it tries to
    reach an origin that is down); its URL, and the CA bundle that verifies it."""
    authority = trustme.CA()
    context = None
    if request.param == "https":
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(context)
    with SSEServer(ssl_context=context) as proxy, authority.cert_pem.tempfile() as bundle:
        proxy.default = Script.no_response()
        yield proxy, bundle


def through(proxy: SSEServer, bundle: str) -> Callable[[], requests.Session]:
    """A ``session_factory`` whose ``https://`` requests go through ``proxy``."""

    def make() -> requests.Session:
        session = requests.Session()
        session.proxies = {"https": f"{urlsplit(proxy.url).scheme}://127.0.0.1:{proxy.port}"}
        session.verify = bundle
        return session

    return make


def test_a_stop_ends_the_wait_for_a_proxys_answer_to_connect(
    silent_proxy: tuple[SSEServer, str],
) -> None:
    proxy, bundle = silent_proxy
    errors: queue.Queue[BaseException] = queue.Queue()
    url = "https://origin.invalid/stream"  # the proxy would resolve it: it never tries
    with stream_to(url, errors, session_factory=through(proxy, bundle)) as stream:
        assert proxy.wait_for_requests(1, TIMEOUT)[0].method == "CONNECT"
        started = time.monotonic()
        assert stream.stop(timeout=TIMEOUT), "the worker still waits for the proxy"
        assert time.monotonic() - started < STOP_BOUND
    assert errors.empty(), errors.get()


def test_a_proxys_answer_to_connect_that_comes_later_is_read(
    silent_proxy: tuple[SSEServer, str],
) -> None:
    # The proxy refuses the tunnel once the test lets it: the error says so, as
    # without the wait (the answer is read whole, over TLS too).
    proxy, bundle = silent_proxy
    gate = threading.Event()
    refusal = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"
    proxy.default = Script.raw_response(b"").wait(gate).wire(refusal)
    request = RequestSpec("https://origin.invalid/stream", connect_timeout=TIMEOUT)
    outcome = in_a_worker(request, through(proxy, bundle))
    try:
        proxy.wait_for_requests(1, TIMEOUT)
        gate.set()
        ended = outcome.get(timeout=TIMEOUT)
    finally:
        gate.set()
        join_the_worker()
    assert isinstance(ended, ConnectError), repr(ended)
    assert "403" in str(ended)


def test_a_host_name_that_cannot_be_encoded_is_an_invalid_url() -> None:
    # urllib3 rejects it (its LocationParseError escaped requests): a ValueError that
    # says so, as for any invalid URL.
    url = "http://a..b/stream"
    with make_session() as session, pytest.raises(ValueError, match=r"^invalid URL") as caught:
        open_stream(session, RequestSpec(url), StopSignal())
    said = "Failed to parse: 'a..b', label empty or too long"
    assert str(caught.value) == f"invalid URL {url!r}: {said}"


def test_a_proxys_answer_to_connect_is_waited_for_within_the_connect_timeout(
    silent_proxy: tuple[SSEServer, str],
) -> None:
    # A timeout of the connect, not of the read: urllib3 would call it a read timeout.
    proxy, bundle = silent_proxy
    request = RequestSpec("https://origin.invalid/stream", connect_timeout=0.3)
    started = time.monotonic()
    try:
        ended = in_a_worker(request, through(proxy, bundle)).get(timeout=TIMEOUT)
    finally:
        proxy.drop_all()
        join_the_worker()
    assert time.monotonic() - started < 2.0
    assert isinstance(ended, ConnectError), repr(ended)
    assert "timed out" in str(ended)


_AUDITED: list[tuple[Any, ...]] | None = None  # while a test listens


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _AUDITED is not None and event == "http.client.connect":
        _AUDITED.append(args)


def test_a_connect_is_audited_as_http_client_and_urllib3_audit_it() -> None:
    global _AUDITED
    if _audit not in _HOOKED:  # an audit hook stays for the process: added once
        sys.addaudithook(_audit)
        _HOOKED.append(_audit)
    with SSEServer() as server:
        server.enqueue(Script().event("x"))
        _AUDITED = []
        try:
            with make_session() as session:
                open_stream(session, RequestSpec(server.url), StopSignal()).close()
            audited, _AUDITED = _AUDITED, None
        finally:
            _AUDITED = None
    assert [(type(a[0]).__name__, a[1], a[2]) for a in audited] == [
        ("_WaitingHTTPConnection", "127.0.0.1", server.port)
    ]


_HOOKED: list[Any] = []


def urllib3_error(error: BaseException) -> BaseException | None:
    """The urllib3 error that ``error``'s chain carries (as requests wraps it)."""
    for link in _chain(error):
        for arg in link.args:
            reason = getattr(arg, "reason", arg)
            if isinstance(reason, urllib3.exceptions.HTTPError):
                return reason
    return None


def as_said(error: BaseException | None) -> tuple[str, str]:
    """An urllib3 error's type and message, with its connection's class named as
    urllib3's and no address."""
    assert error is not None
    said = str(error).replace("eventstream._transport.", "urllib3.connection.")
    said = re.sub(r" at 0x[0-9a-f]+", "", said.replace("_Waiting", ""))
    return type(error).__name__, said


@pytest.mark.parametrize("failure", ["refused", "no such name", "no address", "timeout"])
def test_urllib3_errors_are_raised_as_urllib3_raises_them(
    failure: str, stalled: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The same failure through a plain requests session (urllib3's own connect) and
    # through the stream's: the same urllib3 error, for the adapters' retries and
    # for anyone who reads the chain.
    real = socket.getaddrinfo
    port = stalled

    def resolve(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "nowhere.test":
            if failure == "no such name":
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            return []
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        if failure == "refused":
            port = closed.getsockname()[1]
        host = "127.0.0.1" if failure in ("refused", "timeout") else "nowhere.test"
        url = f"http://{host}:{port}/"
        with requests.Session() as plain, pytest.raises(requests.ConnectionError) as theirs:
            plain.get(url, timeout=(0.2, 1))
        with make_session() as session, pytest.raises(ConnectError) as ours:
            open_stream(session, RequestSpec(url, connect_timeout=0.2), StopSignal())
    expected = as_said(urllib3_error(theirs.value))
    assert as_said(urllib3_error(ours.value)) == expected
    assert "HTTPConnection(host=" in expected[1] or "HTTPConnection object" in expected[1]


@pytest.mark.parametrize("stop", [None, StopSignal()], ids=["blocking", "waiting"])
def test_an_ipv6_address_in_brackets_is_connected_to(stop: StopSignal | None) -> None:
    # An https:// origin through a proxy named by an IPv6 literal: urllib3 hands the
    # proxy's host on with its brackets, and strips them itself before connecting.
    try:
        listener = socket.socket(socket.AF_INET6)
        listener.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with listener:
        listener.listen(1)
        port = listener.getsockname()[1]
        wait = _connwait.ConnectionWait()
        wait.stop = stop
        try:
            with wait.connect(("[::1]", port), 5.0, socket.AF_UNSPEC) as sock:
                assert sock.getpeername()[:2] == ("::1", port)
            with urllib3.util.connection.create_connection(("[::1]", port), 5.0) as theirs:
                assert theirs.getpeername()[:2] == ("::1", port)  # as urllib3 does
        finally:
            waiter = wait.take()
            if waiter is not None:
                waiter.close()
