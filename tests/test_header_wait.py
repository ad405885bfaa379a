"""A stop while the worker waits for the response headers takes effect at once.

The worker waits for the first byte of the response on the socket and the stop
signal's waker (``_connwait.ConnectionWait``), so a server that takes the request and
says nothing (a slow upstream, an LLM thinking before its first token, a proxy that
buffers) no longer holds a stop for the read timeout.  Over TLS the socket also turns
readable for records that carry no data (TLS 1.3 session tickets): the wait reads one
byte to tell them apart and hands it back to http.client.  Every path with a socket
is covered: HTTP, HTTPS, and both through ``http://`` and ``https://`` proxies (TLS
inside TLS excepted: no socket to wait on there).  Nothing sleeps: each test waits on
the server having received the request, then times the stop.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import requests
import trustme
from _proxy import ForwardProxy

import eventstream
from eventstream import EventStream, ReadError, _connwait
from eventstream._stop import StopSignal
from eventstream._transport import RequestSpec, make_session, open_stream
from eventstream.testing import Script, SSEServer

TIMEOUT = 5.0
READ_TIMEOUT = 3.0  # a stop that waited for it would fail STOP_BOUND by far
STOP_BOUND = 1.0  # seconds: generous for CI; a stop takes about a millisecond


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    authority = trustme.CA()
    bundle = tmp_path_factory.mktemp("pki") / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return {"authority": authority, "bundle": str(bundle)}


def server_context(pki: dict[str, Any]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    pki["authority"].issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(params=["http", "https"])
def origin(request: pytest.FixtureRequest, pki: dict[str, Any]) -> Iterator[SSEServer]:
    context = server_context(pki) if request.param == "https" else None
    with SSEServer(ssl_context=context) as server:
        yield server


def session_factory(pki: dict[str, Any], proxy: ForwardProxy | None = None) -> Any:
    def make() -> requests.Session:
        session = requests.Session()
        session.verify = pki["bundle"]
        if proxy is not None:
            session.proxies = {"http": proxy.url, "https": proxy.url}
        return session

    return make


@contextmanager
def opened_on_a_thread(
    pki: dict[str, Any], request: RequestSpec, stop: StopSignal
) -> Iterator[queue.Queue[Any]]:
    """``open_stream`` on a thread of its own, as a worker would; its outcome comes in
    the queue: (status, Content-Type, the whole body), or what it raised."""
    outcome: queue.Queue[Any] = queue.Queue()

    def run() -> None:
        try:
            with (
                make_session(session_factory(pki)) as session,
                open_stream(session, request, stop) as body,
            ):
                outcome.put(
                    (body.status_code, body.headers["Content-Type"], b"".join(body.chunks()))
                )
        except BaseException as exc:
            outcome.put(exc)

    thread = threading.Thread(target=run, name="test-open-stream")
    thread.start()
    try:
        yield outcome
    finally:
        stop.set()
        thread.join(TIMEOUT)


def stopped_promptly(stream: Any, server: SSEServer) -> float:
    """Wait until ``server`` has the request, stop ``stream``; the seconds the stop took."""
    server.wait_for_requests(1, TIMEOUT)
    started = time.monotonic()
    assert stream.stop(timeout=TIMEOUT), "the worker is still waiting for the headers"
    return time.monotonic() - started


def silent_stream(
    url: str, pki: dict[str, Any], errors: queue.Queue[BaseException], **options: Any
) -> EventStream:
    return EventStream(
        url,
        timeout=(TIMEOUT, READ_TIMEOUT),
        session_factory=session_factory(pki, options.pop("proxy", None)),
        on_event=lambda event: None,
        on_error=errors.put,
        **options,
    )


def test_a_stop_ends_the_wait_for_headers_at_once(origin: SSEServer, pki: dict[str, Any]) -> None:
    origin.default = Script.no_response()
    errors: queue.Queue[BaseException] = queue.Queue()
    with silent_stream(origin.url, pki, errors) as stream:
        assert stopped_promptly(stream, origin) < STOP_BOUND
    assert errors.empty(), errors.get()  # a stop is no error
    assert len(origin.requests) == 1  # and no second attempt


@pytest.mark.parametrize("proxy_scheme", ["http", "https"])
def test_a_stop_ends_the_wait_for_headers_through_a_proxy(
    origin: SSEServer, pki: dict[str, Any], proxy_scheme: str
) -> None:
    if proxy_scheme == "https" and origin.url.startswith("https:"):
        pytest.skip("TLS inside TLS: urllib3 gives no socket to wait on before the headers")
    origin.default = Script.no_response()
    errors: queue.Queue[BaseException] = queue.Queue()
    context = server_context(pki) if proxy_scheme == "https" else None
    with ForwardProxy(context) as proxy:
        with silent_stream(origin.url, pki, errors, proxy=proxy) as stream:
            assert stopped_promptly(stream, origin) < STOP_BOUND
        assert proxy.requests  # it went through the proxy
    assert errors.empty(), errors.get()


def test_a_stop_ends_the_wait_of_a_one_shot_post(origin: SSEServer, pki: dict[str, Any]) -> None:
    origin.default = Script.no_response()
    stream = eventstream.request(
        "POST",
        origin.url,
        json={"prompt": "think first"},
        timeout=(TIMEOUT, READ_TIMEOUT),
        session_factory=session_factory(pki),
    )
    with stream:
        assert stopped_promptly(stream, origin) < STOP_BOUND
        assert list(stream) == []


def test_a_session_with_its_own_adapter_also_waits_interruptibly(
    origin: SSEServer, pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # Its adapter retries (urllib3 would send the request again on a connection
    # error): the stop is not one, and nothing is sent after it.
    caplog.set_level(logging.WARNING, logger="urllib3")

    def make() -> requests.Session:
        session = session_factory(pki)()
        adapter = requests.adapters.HTTPAdapter(max_retries=2, pool_maxsize=1)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    origin.default = Script.no_response()
    errors: queue.Queue[BaseException] = queue.Queue()
    stream = EventStream(
        origin.url,
        timeout=(TIMEOUT, READ_TIMEOUT),
        session_factory=make,
        on_event=lambda event: None,
        on_error=errors.put,
    )
    with stream:
        assert stopped_promptly(stream, origin) < STOP_BOUND
    assert errors.empty(), errors.get()
    assert not [
        record.getMessage() for record in caplog.records if "Retrying" in record.getMessage()
    ]
    assert len(origin.wait_for_requests(1, TIMEOUT)) == 1


def test_the_read_timeout_still_bounds_the_wait_for_headers(
    origin: SSEServer, pki: dict[str, Any]
) -> None:
    origin.default = Script.no_response()
    request = RequestSpec(origin.url, connect_timeout=TIMEOUT, read_timeout=0.2)
    with make_session(session_factory(pki)) as session:
        started = time.monotonic()
        with pytest.raises(ReadError) as caught:
            open_stream(session, request, StopSignal())
        waited = time.monotonic() - started
    assert str(caught.value) == (f"no response headers from {origin.url} within the read timeout")
    assert 0.2 <= waited < 0.8  # the read timeout, not a second of it


def test_without_a_read_timeout_a_stop_still_ends_the_wait(
    origin: SSEServer, pki: dict[str, Any]
) -> None:
    origin.default = Script.no_response()
    request = RequestSpec(origin.url, connect_timeout=TIMEOUT, read_timeout=None)
    stop = StopSignal()
    with opened_on_a_thread(pki, request, stop) as outcome:
        origin.wait_for_requests(1, TIMEOUT)
        started = time.monotonic()
        stop.set()
        ended = outcome.get(timeout=TIMEOUT)
        assert time.monotonic() - started < STOP_BOUND
    assert isinstance(ended, ReadError), repr(ended)
    assert str(ended) == f"stopped before the response from {origin.url}"
    assert ended.url == origin.url


class FakeTLS(ssl.SSLSocket):
    """Only what the look at a readable TLS socket uses, with ``recv_into``'s outcome."""

    def __init__(self, outcome: bytes | BaseException) -> None:  # no socket at all
        self.outcome, self.timeouts = outcome, [2.5]

    def gettimeout(self) -> float | None:
        return self.timeouts[-1]

    def setblocking(self, flag: bool) -> None:
        self.timeouts.append(None if flag else 0.0)

    def settimeout(self, value: float | None) -> None:
        self.timeouts.append(value)

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        buffer[: len(self.outcome)] = self.outcome
        return len(self.outcome)


@pytest.mark.parametrize(
    ("outcome", "began"),
    [
        (ssl.SSLWantReadError(), False),  # records without data: wait again
        (ssl.SSLWantWriteError(), True),  # TLS must write: the blocking read does it
        (b"", True),  # the end of the connection: http.client reports it
    ],
)
def test_a_look_at_a_readable_tls_socket(outcome: bytes | BaseException, began: bool) -> None:
    sock = FakeTLS(outcome)
    assert _connwait._response_began(sock) is began
    assert sock.timeouts == [2.5, 0.0, 2.5]  # non-blocking for the look, then as it was
    assert "recv_into" not in vars(sock)  # nothing handed back


def test_the_byte_a_look_read_is_handed_back_once() -> None:
    sock = FakeTLS(b"H")
    assert _connwait._response_began(sock) is True
    buffer = bytearray(8192)
    assert sock.recv_into(buffer) == 1  # what http.client's reader reads first
    assert buffer[:1] == b"H"
    sock.outcome = b"TTP/1.1"
    assert sock.recv_into(buffer) == 7  # the socket's own method again
    assert buffer[:7] == b"TTP/1.1"


def test_a_stop_before_the_request_ends_the_wait_at_once(
    origin: SSEServer, pki: dict[str, Any]
) -> None:
    # The waker is poked before the wait begins: the wait sees it, it does not block.
    origin.default = Script.no_response()
    stop = StopSignal()
    stop.set()
    with make_session(session_factory(pki)) as session:
        started = time.monotonic()
        with pytest.raises(ReadError):
            open_stream(session, RequestSpec(origin.url, read_timeout=READ_TIMEOUT), stop)
        assert time.monotonic() - started < STOP_BOUND


def test_a_response_that_comes_later_is_read_whole(origin: SSEServer, pki: dict[str, Any]) -> None:
    # The headers come once the test opens the gate: over TLS the socket was readable
    # before (session tickets), and the byte the wait reads is handed back.
    gate = threading.Event()
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n"
    origin.enqueue(Script.raw_response(b"").wait(gate).wire(head + b"data: late\n\n"))
    request = RequestSpec(origin.url, connect_timeout=TIMEOUT, read_timeout=READ_TIMEOUT)
    try:
        with opened_on_a_thread(pki, request, StopSignal()) as got:
            origin.wait_for_requests(1, TIMEOUT)
            gate.set()
            outcome = got.get(timeout=TIMEOUT)
    finally:
        gate.set()
    assert outcome == (200, "text/event-stream", b"data: late\n\n")


@pytest.fixture
def tls_origin(pki: dict[str, Any]) -> Iterator[SSEServer]:
    with SSEServer(ssl_context=server_context(pki)) as server:
        yield server


def test_a_stop_after_tls_records_without_data_still_ends_the_wait(
    tls_origin: SSEServer, pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # TLS 1.3 session tickets make the socket readable with no response yet: the wait
    # reads them (no byte of data) and goes on waiting, interruptibly.  The test stops
    # only once that has happened.
    looked: queue.Queue[bool] = queue.Queue()
    real = _connwait._response_began

    def spy(sock: ssl.SSLSocket) -> bool:
        began = real(sock)
        looked.put(began)
        return began

    monkeypatch.setattr(_connwait, "_response_began", spy)
    gate = threading.Event()  # the server answers only once it is set: never, here
    tls_origin.default = Script.raw_response(b"").wait(gate).hold()
    errors: queue.Queue[BaseException] = queue.Queue()
    try:
        with silent_stream(tls_origin.url, pki, errors) as stream:
            assert looked.get(timeout=TIMEOUT) is False  # readable, and no response
            assert stopped_promptly(stream, tls_origin) < STOP_BOUND
    finally:
        gate.set()
    assert errors.empty(), errors.get()
