"""The transport against a real server on 127.0.0.1: delivery, stop, timeouts, errors.

Each test runs the stream on one thread, as the worker does: either the test's own
thread, or a :class:`StreamThread` when the test must act while the stream is read.
The fast path (the socket read directly) and the fallback (through urllib3) are both
covered; ``located`` proves which one a test took.
"""

from __future__ import annotations

import errno
import gzip
import io
import linecache
import logging
import os
import queue
import socket
import ssl
import sys
import threading
import time
import types
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
import responses
import trustme

from eventstream import (
    ConnectError,
    ContentTypeError,
    HTTPStatusError,
    ReadError,
    _connwait,
    _transport,
    _wait,
)
from eventstream._stop import StopSignal
from eventstream._transport import Body, RequestSpec, make_session, open_stream
from eventstream.testing import Framing, Script, SSEServer

ENCODINGS = [None, "gzip", "deflate"]
EVENTS = b"".join(b"id: %d\ndata: event %d %s\n\n" % (i, i, b"x" * (i % 97)) for i in range(300))
STOP_BOUND = 0.5  # seconds: generous for CI; the design target is a few milliseconds
TIMEOUT = 5.0  # seconds any wait in a test may take before it fails


# -- fixtures and helpers --------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as server:
        yield server


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@pytest.fixture
def tls_server(ca: tuple[trustme.CA, Path]) -> Iterator[SSEServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca[0].issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with SSEServer(ssl_context=context) as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with make_session() as session:
        yield session


@pytest.fixture
def located(monkeypatch: pytest.MonkeyPatch) -> list[tuple[type[socket.socket], int]]:
    """Records (socket type, bytes OpenSSL held decrypted) each time the fast path is taken."""
    found: list[tuple[type[socket.socket], int]] = []
    real = _transport.locate_socket

    def spy(raw: object) -> Any:
        result = real(raw)
        if result is not None:
            sock = result[1]
            pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
            found.append((type(sock), pending))
        return result

    monkeypatch.setattr(_transport, "locate_socket", spy)
    return found


@pytest.fixture
def fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force the fallback path, as when the socket cannot be reached."""
    monkeypatch.setattr(_transport, "locate_socket", lambda raw: None)


def spec(url: str, **options: Any) -> RequestSpec:
    options.setdefault("connect_timeout", TIMEOUT)
    options.setdefault("read_timeout", TIMEOUT)
    return RequestSpec(url, **options)


def read_all(session: requests.Session, url: str, **options: Any) -> bytes:
    with open_stream(session, spec(url, **options), StopSignal()) as body:
        return b"".join(body.chunks())


def open_error(session: requests.Session, url: str, **options: Any) -> Exception:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the callers check the type
        read_all(session, url, **options)
    return caught.value


class StreamThread:
    """Opens and reads one stream on its own thread, as the worker does."""

    def __init__(
        self,
        spec: RequestSpec,
        setup: Callable[[requests.Session], None] | None = None,
    ) -> None:
        self.spec = spec
        self.setup = setup
        self.stop = StopSignal()
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self.error: BaseException | None = None
        self.returned_at = 0.0  # when chunks() returned or raised
        self.thread = threading.Thread(target=self._run, name="test-transport-stream")

    def __enter__(self) -> StreamThread:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.join()

    def _run(self) -> None:
        with make_session() as session:
            if self.setup is not None:
                self.setup(session)
            try:
                with open_stream(session, self.spec, self.stop) as body:
                    try:
                        for chunk in body.chunks():
                            self.chunks.put(chunk)
                    finally:
                        self.returned_at = time.monotonic()
            except BaseException as exc:
                self.error = exc

    def read(self, size: int, timeout: float = TIMEOUT) -> bytes:
        """Wait until at least ``size`` bytes have arrived; return them all."""
        got = b""
        deadline = time.monotonic() + timeout
        while len(got) < size:
            left = deadline - time.monotonic()
            try:
                got += self.chunks.get(timeout=max(0.0, left))
            except queue.Empty:
                raise AssertionError(f"{len(got)} of {size} bytes after {timeout} s") from None
        return got

    def rest(self) -> bytes:
        """Everything that arrived and was not read yet (call after join)."""
        got = b""
        while not self.chunks.empty():
            got += self.chunks.get_nowait()
        return got

    def join(self, timeout: float = TIMEOUT) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the stream thread did not finish"


def wait_until_reading(thread: threading.Thread, wait: bool = False) -> bool:
    """Wait (bounded) until ``thread`` reads the body on the fast path: in ``reads()``
    of ``_sockread``, or (``wait``) further, in the wait for the socket: in ``_wait``,
    or on the line of ``reads()`` that calls ``poll()`` itself (its inlined wait).
    Names, not code objects, so that the look sees through mutmut's trampolines."""
    deadline = time.monotonic() + TIMEOUT
    tick = threading.Event()  # never set: wait() paces the polling
    while time.monotonic() < deadline and thread.is_alive():
        frame = sys._current_frames().get(thread.ident or -1)
        while frame is not None:
            if _reading(frame, wait):
                return True
            frame = frame.f_back
        tick.wait(0.001)
    return False


def _reading(frame: types.FrameType, wait: bool) -> bool:
    code = frame.f_code

    def named(module: str, *names: str) -> bool:
        return code.co_filename.endswith(f"{module}.py") and any(
            code.co_name == name or code.co_name.endswith(f"ǁ{name}__mutmut_orig") for name in names
        )

    if not wait:
        return named("_sockread", "reads")
    if named("_wait", "wait", "_select"):
        # Not the wait for the connection or the response headers (``_connwait``):
        # the body's.
        caller = frame.f_back
        while caller is not None and caller.f_code.co_filename.endswith("_wait.py"):
            caller = caller.f_back
        return caller is None or not caller.f_code.co_filename.endswith("_connwait.py")
    line = linecache.getline(code.co_filename, frame.f_lineno)
    return named("_sockread", "reads") and "poll(" in line


def split_script(
    framing: Framing, encoding: str | None, first: bytes, second: bytes, gate: threading.Event
) -> Script:
    """A body sent in two writes with a gate between them; with chunked framing the
    two halves are one chunk, so its size line promises bytes still to come."""
    if framing is not Framing.CHUNKED:
        return Script(framing=framing, encoding=encoding).send(first).wait(gate).send(second)
    parts = [first, second]
    if encoding is not None:
        compressor = zlib.compressobj(wbits=31 if encoding == "gzip" else 15)
        parts = [
            compressor.compress(first) + compressor.flush(zlib.Z_SYNC_FLUSH),
            compressor.compress(second) + compressor.flush(),
        ]
    size = b"%x\r\n" % sum(map(len, parts))
    headers = None if encoding is None else {"Content-Encoding": encoding}
    return (
        Script(framing=framing, headers=headers)
        .wire(size + parts[0])
        .wait(gate)
        .wire(parts[1] + b"\r\n")  # close() then sends the last chunk
    )


# -- delivery ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("framing", list(Framing))
def test_every_byte_is_delivered(
    server: SSEServer,
    session: requests.Session,
    located: list[Any],
    framing: Framing,
    encoding: str | None,
) -> None:
    script = Script(framing=framing, encoding=encoding)
    for start in range(0, len(EVENTS), 5000):  # several writes, one of them large
        script = script.send(EVENTS[start : start + 5000])
    server.enqueue(script.send(b"z" * 200_000))
    assert read_all(session, server.url) == EVENTS + b"z" * 200_000
    assert located  # the fast path


@pytest.mark.parametrize("path", ["fast", "fallback"])
@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("framing", list(Framing))
def test_first_half_of_an_event_is_delivered_before_the_rest_is_sent(
    server: SSEServer,
    request: pytest.FixtureRequest,
    framing: Framing,
    encoding: str | None,
    path: str,
) -> None:
    if path == "fallback":
        request.getfixturevalue("fallback")
    first, second = b"id: 1\ndata: " + b"a" * 3000, b"b" * 3000 + b"\n\n"
    gate = threading.Event()
    server.enqueue(split_script(framing, encoding, first, second, gate))
    with StreamThread(spec(server.url)) as stream:
        assert stream.read(len(first)) == first  # while the server waits on the gate
        gate.set()
        stream.join()
        assert stream.error is None
        assert stream.rest() == second


def test_body_describes_the_response(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script(headers={"X-Stream": "yes"}).event("a"))
    with open_stream(session, spec(server.url_for("/s?q=1")), StopSignal()) as body:
        assert body.status_code == 200
        assert body.headers["x-stream"] == "yes"
        assert body.url == server.url_for("/s?q=1")
        assert list(body.chunks()) == [b"data: a\n\n"]


def test_content_type_parameters_and_case_are_accepted(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(headers={"Content-Type": "Text/Event-Stream ; charset=UTF-8"}).event("a"))
    assert read_all(session, server.url) == b"data: a\n\n"


def test_204_is_a_body_at_its_end(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script(204))
    with open_stream(session, spec(server.url), StopSignal()) as body:
        assert body.status_code == 204
        assert list(body.chunks()) == []


def test_204_without_a_content_type_is_a_body_at_its_end(
    server: SSEServer, session: requests.Session
) -> None:
    # A 204 has no body, and servers often send no Content-Type with it: "no more
    # events", not a wrong Content-Type (which would be fatal for another reason).
    server.enqueue(Script.raw_response(b"HTTP/1.1 204 No Content\r\n\r\n"))
    with open_stream(session, spec(server.url), StopSignal()) as body:
        assert body.status_code == 204
        assert list(body.chunks()) == []


# -- the request ---------------------------------------------------------------------------


def test_request_headers(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script().event("a"), Script().event("b"))
    read_all(session, server.url, headers={"Last-Event-ID": "7", "accept-encoding": "br"})
    read_all(session, server.url, headers={"Accept": "text/event-stream, */*;q=0.1"})
    first, second = server.wait_for_requests(2)
    assert first.headers["Accept"] == "text/event-stream"
    assert first.headers["Cache-Control"] == "no-cache"
    assert first.headers["Accept-Encoding"] == "gzip, deflate"  # we decode: ours always wins
    assert first.headers["Last-Event-ID"] == "7"
    assert second.headers["Accept"] == "text/event-stream, */*;q=0.1"  # the caller's wins


def test_method_params_and_json_are_sent(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script().event("a"))
    read_all(session, server.url_for("/s"), method="POST", params={"a": "1"}, json={"k": "v"})
    (recorded,) = server.wait_for_requests(1)
    assert (recorded.method, recorded.target, recorded.body) == ("POST", "/s?a=1", b'{"k": "v"}')


def test_invalid_requests_raise_value_error(session: requests.Session) -> None:
    with pytest.raises(ValueError, match="invalid URL"):
        read_all(session, "not a url")
    with pytest.raises(ValueError, match="header") as caught:
        read_all(session, "http://127.0.0.1:1/", headers={"Authorization": "s3cret\r\nX: y"})
    assert "s3cret" not in str(caught.value)


def test_timeouts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="read_timeout"):
        RequestSpec("http://x/", read_timeout=0)
    with pytest.raises(ValueError, match="connect_timeout"):
        RequestSpec("http://x/", connect_timeout=-1)


def test_make_session_calls_the_factory_on_the_calling_thread() -> None:
    threads: list[int] = []

    def factory() -> requests.Session:
        threads.append(threading.get_ident())
        return requests.Session()

    with make_session(factory) as session:
        assert isinstance(session, requests.Session)
    assert threads == [threading.get_ident()]
    with make_session() as default:
        assert isinstance(default, requests.Session)
    with pytest.raises(TypeError, match=r"requests\.Session"):
        make_session(object)  # type: ignore[arg-type]


def test_the_default_session_mounts_each_adapter_when_a_request_needs_it(
    server: SSEServer, tls_server: SSEServer, ca: tuple[trustme.CA, Path]
) -> None:
    # An adapter and its pool manager are ~2 KiB per stream: none is kept unused.
    server.enqueue(Script.redirect(tls_server.url_for("/")))
    tls_server.enqueue(Script().event("a"))
    with make_session() as session:
        assert dict(session.adapters) == {}
        session.verify = str(ca[1])
        assert read_all(session, server.url) == b"data: a\n\n"  # http, then https
        assert set(session.adapters) == {"http://", "https://"}
        assert all(type(a) is requests.adapters.HTTPAdapter for a in session.adapters.values())


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["header", "auth"])
def test_redirect_to_another_host_drops_authorization(
    server: SSEServer, session: requests.Session, how: str
) -> None:
    target = server.url_for("/moved", host="localhost")
    server.enqueue(Script.redirect(target), Script().event("a"))
    options: dict[str, Any] = (
        {"headers": {"Authorization": "Bearer s3cret"}} if how == "header" else {"auth": ("u", "p")}
    )
    with open_stream(session, spec(server.url, **options), StopSignal()) as body:
        assert body.url == target
        assert list(body.chunks()) == [b"data: a\n\n"]
    first, second = server.wait_for_requests(2)
    assert "Authorization" in first.headers
    assert "Authorization" not in second.headers
    assert second.headers["Accept"] == "text/event-stream"


def test_redirect_to_another_host_drops_every_caller_header(
    server: SSEServer, session: requests.Session
) -> None:
    target = server.url_for("/moved", host="localhost")
    server.enqueue(Script.redirect(target), Script().event("a"))
    secrets = {"X-Api-Key": "k3y", "Cookie": "session=s3cret", "Last-Event-ID": "7"}
    read_all(session, server.url, headers=secrets)
    first, second = server.wait_for_requests(2)
    assert first.headers["X-Api-Key"] == "k3y"
    assert "X-Api-Key" not in second.headers
    assert "Cookie" not in second.headers
    assert second.headers["Last-Event-ID"] == "7"  # the protocol's own header goes on


def test_redirect_from_https_to_http_on_the_same_host_drops_credentials() -> None:
    from eventstream._httputil import leaves_origin

    assert leaves_origin("https://a.example/x", "http://a.example/y")
    assert not leaves_origin("http://a.example/x", "https://a.example/y")
    assert not leaves_origin("http://A.example:80/x", "http://a.example/y")
    assert leaves_origin("http://a.example/x", "http://b.example/x")


@pytest.mark.parametrize(("status", "method"), [(301, "GET"), (303, "GET"), (307, "POST")])
def test_redirect_method_follows_the_status(
    server: SSEServer, session: requests.Session, status: int, method: str
) -> None:
    server.enqueue(Script.redirect(server.url_for("/moved"), status=status), Script().event("a"))
    with open_stream(session, spec(server.url, method="POST", data=b"q"), StopSignal()) as body:
        assert list(body.chunks()) == [b"data: a\n\n"]
    second = server.wait_for_requests(2)[1]
    assert second.method == method
    assert second.body == (b"q" if method == "POST" else b"")


def test_redirect_on_the_same_host_keeps_authorization(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script.redirect(server.url_for("/moved")), Script().event("a"))
    read_all(session, server.url, headers={"Authorization": "Bearer s3cret"})
    first, second = server.wait_for_requests(2)
    assert first.headers["Authorization"] == second.headers["Authorization"] == "Bearer s3cret"


def test_redirect_loop_is_a_status_error(server: SSEServer, session: requests.Session) -> None:
    server.route("/loop", Script.redirect(server.url_for("/loop")))
    session.max_redirects = 3
    error = open_error(session, server.url_for("/loop"))
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == 302
    assert "too many redirects" in str(error)


def test_redirect_sends_each_host_only_its_own_cookies(
    server: SSEServer, session: requests.Session
) -> None:
    session.cookies.set("sid", "for-127", domain="127.0.0.1")
    server.enqueue(Script.redirect(server.url_for("/moved", host="localhost")), Script().event("a"))
    read_all(session, server.url)
    first, second = server.wait_for_requests(2)
    assert first.headers["Cookie"] == "sid=for-127"
    assert "Cookie" not in second.headers


# -- stop ----------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_stop_during_a_silent_stream_leaves_at_once(
    request: pytest.FixtureRequest,
    ca: tuple[trustme.CA, Path],
    located: list[Any],
    scheme: str,
) -> None:
    server: SSEServer = request.getfixturevalue("server" if scheme == "http" else "tls_server")
    server.enqueue(Script().event("a").hold())
    setup = None if scheme == "http" else (lambda s: setattr(s, "verify", str(ca[1])))
    with StreamThread(spec(server.url, read_timeout=60), setup) as stream:
        assert stream.read(9) == b"data: a\n\n"
        set_at = time.monotonic()
        stream.stop.set()
        stream.join()
        assert stream.error is None
        assert stream.returned_at - set_at < STOP_BOUND
    assert located


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_stop_before_the_first_body_byte_leaves_at_once(
    request: pytest.FixtureRequest,
    ca: tuple[trustme.CA, Path],
    located: list[Any],
    scheme: str,
) -> None:
    # Headers, then silence: nothing came with the headers, so the first read finds
    # http.client's buffer empty; it must not block on the socket there.
    server: SSEServer = request.getfixturevalue("server" if scheme == "http" else "tls_server")
    server.enqueue(Script().hold())
    setup = None if scheme == "http" else (lambda s: setattr(s, "verify", str(ca[1])))
    with StreamThread(spec(server.url, read_timeout=60), setup) as stream:
        assert wait_until_reading(stream.thread)
        set_at = time.monotonic()
        stream.stop.set()
        stream.join()
        assert stream.error is None
        assert stream.returned_at - set_at < STOP_BOUND
        assert stream.rest() == b""
    assert located


@pytest.mark.parametrize("framing", [Framing.CHUNKED, Framing.CLOSE])
def test_stop_while_bytes_keep_arriving_reads_no_more(
    server: SSEServer, session: requests.Session, located: list[Any], framing: Framing
) -> None:
    # The socket never stops being readable: the wait itself must see the stop (no
    # other stop check is made per read).
    server.enqueue(Script(framing=framing).send(EVENTS * 3000))  # ~9 MB
    stop = StopSignal()
    with open_stream(session, spec(server.url), stop) as body:
        chunks = body.chunks()
        assert next(chunks)
        stop.set()
        assert list(chunks) == []
    assert located


def test_stop_set_before_reading_returns_without_reading(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script().event("a").hold())
    stop = StopSignal()
    with open_stream(session, spec(server.url), stop) as body:
        stop.set()
        started = time.monotonic()
        assert list(body.chunks()) == []
        assert time.monotonic() - started < STOP_BOUND


def test_a_connection_on_descriptor_0_is_read_on_the_fast_path(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A daemon that closed its standard input gets descriptor 0 for its next socket:
    # a socket like any other, whose stop must be just as prompt (only a closed
    # socket's -1 means "no socket").
    numbers: list[int] = []
    real = _transport.locate_socket

    def spy(raw: object) -> Any:
        result = real(raw)
        numbers.append(-1 if result is None else result[1].fileno())
        return result

    monkeypatch.setattr(_transport, "locate_socket", spy)
    server.enqueue(Script().event("a").hold())
    saved = os.dup(0)
    os.close(0)  # the next descriptor the process opens is 0: the connection's socket
    try:
        with StreamThread(spec(server.url, read_timeout=60)) as stream:
            assert stream.read(9) == b"data: a\n\n"
            set_at = time.monotonic()
            stream.stop.set()
            stream.join()
            assert stream.returned_at - set_at < STOP_BOUND
    finally:
        os.dup2(saved, 0)
        os.close(saved)
    assert numbers == [0]
    assert stream.error is None


def test_stop_on_the_fallback_path_waits_at_most_the_read_timeout(
    server: SSEServer, fallback: None
) -> None:
    server.enqueue(Script().event("a").hold())
    with StreamThread(spec(server.url, read_timeout=0.3)) as stream:
        assert stream.read(9) == b"data: a\n\n"
        set_at = time.monotonic()
        stream.stop.set()
        stream.join()
        assert stream.error is None  # the timeout after a stop is not an error
        assert stream.returned_at - set_at < 0.3 + STOP_BOUND


# -- timeouts and failures mid-body ----------------------------------------------------------


@pytest.mark.parametrize("path", ["fast", "fallback"])
def test_idle_timeout(server: SSEServer, request: pytest.FixtureRequest, path: str) -> None:
    if path == "fallback":
        request.getfixturevalue("fallback")
    server.enqueue(Script().event("a").hold())
    with StreamThread(spec(server.url, read_timeout=0.3)) as stream:
        assert stream.read(9) == b"data: a\n\n"
        got_at = time.monotonic()
        stream.join()
    assert isinstance(stream.error, ReadError)
    assert "read timeout" in str(stream.error)
    assert stream.error.url == server.url_for("/")
    assert 0.25 <= stream.returned_at - got_at < 0.3 + STOP_BOUND


@pytest.mark.parametrize("path", ["fast", "fallback"])
@pytest.mark.parametrize(
    "script",
    [
        Script(framing=Framing.CHUNKED).event("a").drop(),
        Script(framing=Framing.CONTENT_LENGTH, headers={"Content-Length": "100"}).event("a").drop(),
        Script(framing=Framing.CLOSE, encoding="gzip").event("a").drop(),
        Script(framing=Framing.CLOSE).event("a").reset(),
        Script(framing=Framing.CHUNKED).event("a").wire(b"zz\r\n").hold(),
        Script(headers={"Content-Encoding": "gzip"}).send(b"this is not gzip"),
    ],
    ids=["chunked-drop", "length-short", "gzip-drop", "reset", "bad-chunk", "bad-gzip"],
)
def test_broken_body_is_a_read_error(
    server: SSEServer,
    session: requests.Session,
    request: pytest.FixtureRequest,
    script: Script,
    path: str,
) -> None:
    if path == "fallback":
        request.getfixturevalue("fallback")
    server.enqueue(script)
    with pytest.raises(ReadError) as caught:
        read_all(session, server.url)
    assert caught.value.url == server.url_for("/")
    assert caught.value.__cause__ is not None


def test_close_delimited_body_ends_cleanly_at_close(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(framing=Framing.CLOSE).event("a").drop())
    assert read_all(session, server.url) == b"data: a\n\n"


def test_closing_the_body_closes_the_connection(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script().event("a").hold(), Script().event("b"))
    with open_stream(session, spec(server.url), StopSignal()) as body:
        assert next(body.chunks()) == b"data: a\n\n"
    body.close()  # idempotent
    server.connections[0].wait_closed(TIMEOUT)  # not left half-read in the pool
    with pytest.raises(RuntimeError, match="closed"):
        body.chunks()
    assert read_all(session, server.url) == b"data: b\n\n"  # the session goes on


# -- TLS -------------------------------------------------------------------------------------


def test_tls_bytes_held_by_openssl_are_delivered_without_waiting(
    tls_server: SSEServer, ca: tuple[trustme.CA, Path], located: list[Any]
) -> None:
    # Headers and events in one write, one TLS record: http.client's header read takes
    # part of it, OpenSSL keeps the rest decrypted, and the socket is not readable.
    events = EVENTS[:12000]
    tls_server.enqueue(Script().send(events).hold())
    with StreamThread(
        spec(tls_server.url, read_timeout=60), lambda s: setattr(s, "verify", str(ca[1]))
    ) as stream:
        assert stream.read(len(events)) == events
    assert stream.error is None
    ((sock_type, pending),) = located
    assert issubclass(sock_type, ssl.SSLSocket)
    assert pending > 0  # the scenario really happened


def test_stop_while_openssl_holds_decrypted_bytes_reads_no_more(
    tls_server: SSEServer, ca: tuple[trustme.CA, Path], located: list[Any]
) -> None:
    # OpenSSL decrypts a record whole: a read smaller than the record leaves the rest
    # decrypted in OpenSSL (pending()), which is read without a wait, so no wait sees
    # the stop there.  The stop must still end the reading at once.
    first, second = threading.Event(), threading.Event()
    big = b"data: " + b"x" * 14000 + b"\n\n"  # one write: one TLS record (< 16 KiB)
    tls_server.enqueue(Script().event("a").wait(first).event("b").wait(second).send(big).hold())
    stop = StopSignal()
    with make_session() as session:
        session.verify = str(ca[1])
        with open_stream(session, spec(tls_server.url, read_timeout=60), stop) as body:
            chunks = body.chunks()
            assert next(chunks) == b"data: a\n\n"
            first.set()
            assert next(chunks) == b"data: b\n\n"  # a small read: the next ones are small
            second.set()
            part = next(chunks)
            assert 0 < len(part) < len(big)  # the rest of the record is held by OpenSSL
            stop.set()
            assert list(chunks) == []
    assert located


def test_tls_event_after_a_silence_that_followed_the_headers_arrives_intact(
    tls_server: SSEServer, ca: tuple[trustme.CA, Path], located: list[Any]
) -> None:
    # Nothing came with the headers: the first look at http.client's buffer finds
    # OpenSSL with nothing to decrypt (SSLWantReadError), which must read as no bytes.
    gate = threading.Event()
    tls_server.enqueue(Script().wait(gate).event("a").hold())
    setup = lambda s: setattr(s, "verify", str(ca[1]))  # noqa: E731
    with StreamThread(spec(tls_server.url, read_timeout=60), setup) as stream:
        assert wait_until_reading(stream.thread, wait=True)  # past the first look
        gate.set()
        assert stream.read(9) == b"data: a\n\n"
    assert stream.error is None
    assert located


def test_session_verify_wins_over_requests_ca_bundle(
    tls_server: SSEServer,
    ca: tuple[trustme.CA, Path],
    session: requests.Session,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())  # not our CA
    session.verify = str(ca[1])
    tls_server.enqueue(Script().event("a"), Script().event("a"))
    with pytest.raises(requests.exceptions.SSLError):  # the pitfall, in plain requests
        session.get(tls_server.url, stream=True).close()
    assert read_all(session, tls_server.url) == b"data: a\n\n"


def test_untrusted_certificate_is_a_connect_error(
    tls_server: SSEServer, session: requests.Session
) -> None:
    error = open_error(session, tls_server.url)
    assert isinstance(error, ConnectError)
    assert "CERTIFICATE_VERIFY_FAILED" in str(error)


# -- connection errors ----------------------------------------------------------------------


def test_refused_connection_is_a_connect_error(session: requests.Session) -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{unused.getsockname()[1]}/"
    error = open_error(session, url)
    assert isinstance(error, ConnectError)
    assert error.url == url
    assert "refused" in str(error).lower()


def test_no_response_headers_within_the_read_timeout_is_a_read_error(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script.no_response())
    started = time.monotonic()
    error = open_error(session, server.url, read_timeout=0.3)
    assert isinstance(error, ReadError)
    assert time.monotonic() - started < 0.3 + STOP_BOUND


@pytest.mark.parametrize("end", ["drop", "reset"])
def test_connection_closed_before_the_headers_is_a_read_error(
    server: SSEServer, session: requests.Session, end: str
) -> None:
    script = Script.raw_response(b"")
    server.enqueue(script.drop() if end == "drop" else script.reset())
    assert isinstance(open_error(session, server.url), ReadError)


# -- status and content errors ---------------------------------------------------------------


def test_error_status_carries_status_headers_and_body(
    server: SSEServer, session: requests.Session
) -> None:
    plain = {"Content-Type": "text/plain; charset=utf-8", "X-Secret": "hunter2"}
    server.enqueue(Script(503, headers=plain, encoding="gzip").send("indisponible é".encode()))
    error = open_error(session, server.url, headers={"Authorization": "Bearer s3cret"})
    assert isinstance(error, HTTPStatusError)
    assert (error.status_code, error.body) == (503, "indisponible é")
    assert error.url == server.url_for("/")
    assert error.headers["X-Secret"] == "hunter2"
    assert "503" in str(error)
    assert "hunter2" not in str(error)
    assert "s3cret" not in str(error)


@pytest.mark.parametrize("charset", ["base64", "hex", "rot13", "idna", "undefined"])
def test_an_error_body_whose_charset_is_no_usable_text_codec_is_read_as_utf_8(
    server: SSEServer, session: requests.Session, charset: str
) -> None:
    # base64, hex, rot13: codecs, but not text encodings (bytes.decode refuses them);
    # idna refuses "replace", "undefined" refuses everything.  LookupError and
    # UnicodeError came out of the connect instead of the status error.
    headers = {"Content-Type": f"text/plain; charset={charset}"}
    server.enqueue(Script(503, headers=headers).send("busy é".encode() + b"\xff"))
    error = open_error(session, server.url)
    assert isinstance(error, HTTPStatusError), repr(error)
    assert (error.status_code, error.body) == (503, "busy é\ufffd")


def test_error_body_is_cut_at_512_bytes(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script(500, headers={"Content-Type": "text/plain"}).send(b"x" * 100_000))
    error = open_error(session, server.url)
    assert isinstance(error, HTTPStatusError)
    assert error.body == "x" * 512


def test_stalled_error_body_is_read_within_the_read_timeout(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(500, headers={"Content-Type": "text/plain"}).send(b"partial").hold())
    started = time.monotonic()
    error = open_error(session, server.url, read_timeout=0.3)
    assert isinstance(error, HTTPStatusError)
    assert error.body == "partial"
    assert time.monotonic() - started < 0.3 + STOP_BOUND


def test_stop_while_reading_an_error_body_leaves_at_once_with_what_came(
    server: SSEServer,
) -> None:
    # The status is known; its body is what the user reads to see why.  A stop while
    # it trickles in ends the read at once, and the error keeps what arrived.
    head = b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
    server.enqueue(Script.raw_response(head + b"partial").hold())  # one write: one read
    with StreamThread(spec(server.url, read_timeout=60)) as stream:
        assert wait_until_reading(stream.thread, wait=True)  # waiting for the rest
        set_at = time.monotonic()
        stream.stop.set()
        stream.join()
        assert time.monotonic() - set_at < STOP_BOUND
    assert isinstance(stream.error, HTTPStatusError), repr(stream.error)
    assert (stream.error.status_code, stream.error.body) == (500, "partial")


def test_an_error_body_in_several_writes_is_read_whole_within_the_read_timeout(
    server: SSEServer,
) -> None:
    # The error body's reads go on past what came with the headers: each read must
    # find http.client's buffer empty and read the socket, without failing.
    gate = threading.Event()
    head = b"HTTP/1.1 500 Oops\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n"
    server.enqueue(Script.raw_response(head + b"part1").wait(gate).wire(b"-part2").hold())
    with StreamThread(spec(server.url, read_timeout=0.3)) as stream:
        assert wait_until_reading(stream.thread, wait=True)  # "part1" read: waiting
        gate.set()
        stream.join()
    assert isinstance(stream.error, HTTPStatusError), repr(stream.error)
    assert stream.error.body == "part1-part2"  # the rest never came: the timeout ends it


def test_user_info_stays_out_of_errors(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script(404))
    url = server.url.replace("://", "://user:pa55word@") + "/x"
    error = open_error(session, url)
    assert isinstance(error, HTTPStatusError)
    assert "pa55word" not in str(error)
    assert error.url == server.url + "/x"


@pytest.mark.parametrize(
    ("script", "words"),
    [
        (Script(headers={"Content-Type": "text/html"}).send(b"<html>"), "text/html"),
        (Script(headers={"Content-Type": None}).send(b"data: a\n\n"), "none"),
        (Script(encoding="br").send(b"data: a\n\n"), "Content-Encoding"),
    ],
    ids=["html", "no-content-type", "unknown-encoding"],
)
def test_not_an_event_stream_is_a_content_type_error(
    server: SSEServer, session: requests.Session, script: Script, words: str
) -> None:
    server.enqueue(script)
    error = open_error(session, server.url)
    assert isinstance(error, ContentTypeError)
    assert error.status_code == 200
    assert words in str(error)


# -- the fallback path -------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("framing", list(Framing))
def test_fallback_delivers_every_byte(
    server: SSEServer, session: requests.Session, fallback: None, framing: Framing, encoding: str
) -> None:
    server.enqueue(Script(framing=framing, encoding=encoding).send(EVENTS).send(b"end"))
    assert read_all(session, server.url) == EVENTS + b"end"


def test_out_of_descriptors_for_the_waker_says_so(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No silent fallback (whose stop would wait for the read timeout): a plain error.
    def no_fds(stop: StopSignal) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(_wait, "make_waker", no_fds)
    server.enqueue(Script().event("a"))
    with pytest.raises(ReadError, match=r"out of file descriptors.*RLIMIT_NOFILE") as caught:
        open_stream(session, spec(server.url), StopSignal())
    assert isinstance(caught.value.__cause__, OSError)


def test_out_of_descriptors_at_connect_says_so(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fds(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    # The stream's connect (``_connwait``), in place of urllib3's create_connection.
    monkeypatch.setattr(_connwait.ConnectionWait, "connect", no_fds)
    with pytest.raises(ConnectError, match=r"out of file descriptors.*ulimit -n"):
        open_stream(session, spec(server.url), StopSignal())


@pytest.mark.parametrize("encoding", ["identity", "gzip", "deflate"])
def test_fallback_with_a_mocked_response(session: requests.Session, encoding: str) -> None:
    encode: dict[str, Callable[[bytes], bytes]] = {
        "identity": bytes,
        "gzip": gzip.compress,
        "deflate": zlib.compress,
    }
    with responses.RequestsMock() as mock:
        mock.add(
            responses.GET,
            "http://mocked.test/stream",
            body=encode[encoding](EVENTS),
            content_type="text/event-stream",
            headers={"Content-Encoding": encoding},
        )
        with open_stream(session, spec("http://mocked.test/stream"), StopSignal()) as body:
            assert isinstance(body._source, _transport._FallbackSource)
            assert b"".join(body.chunks()) == EVENTS


def test_fallback_errors_with_a_mocked_response(session: requests.Session) -> None:
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "http://mocked.test/a", body="gone", status=410)
        mock.add(responses.GET, "http://mocked.test/b", body="<p>", content_type="text/html")
        mock.add(responses.GET, "http://mocked.test/c", body=ConnectionError("no route"))
        error = open_error(session, "http://mocked.test/a")
        assert isinstance(error, HTTPStatusError)
        assert (error.status_code, error.body) == (410, "gone")
        assert isinstance(open_error(session, "http://mocked.test/b"), ContentTypeError)
        assert isinstance(open_error(session, "http://mocked.test/c"), ConnectError)


def test_body_is_a_context_manager_that_closes(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script().event("a").hold())
    body = open_stream(session, spec(server.url), StopSignal())
    with body as entered:
        assert entered is body
        assert isinstance(body, Body)
    assert body._closed
    assert body._waiter is not None
    assert body._waiter._waker._closed  # detached from the signal, descriptor closed
    server.connections[0].wait_closed(TIMEOUT)


# -- a custom adapter whose raw body is not urllib3's: read through the fallback ------


class RawAdapter(requests.adapters.BaseAdapter):
    """A transport adapter of the user's own (not built on urllib3), whose response's
    ``raw`` is a plain file object: the stream reads it through the fallback."""

    def __init__(self, raw: Any) -> None:
        super().__init__()
        self.raw = raw

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = 200
        response.headers["Content-Type"] = "text/event-stream"
        response.raw = self.raw
        response.url = str(request.url)
        response.request = request
        return response

    def close(self) -> None:
        pass


class ReadOnlyFile:
    """A raw body with only ``read()``, as the simplest adapter may give."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def read(self, size: int = -1) -> bytes:
        return self._data.read(size)

    def close(self) -> None:
        self._data.close()


def test_a_custom_adapter_with_a_read_only_body_is_read_to_its_end() -> None:
    with make_session() as session:
        session.mount("http://custom.test/", RawAdapter(ReadOnlyFile(EVENTS)))
        assert read_all(session, "http://custom.test/feed") == EVENTS


def test_a_custom_adapter_body_over_a_socket_is_delivered_as_it_arrives() -> None:
    # read1(): what has arrived, not a full read size; the end of input ends it cleanly.
    ours, theirs = socket.socketpair()
    with ours, theirs, ours.makefile("rb") as raw:
        stream = StreamThread(
            spec("http://custom.test/feed"),
            setup=lambda session: session.mount("http://custom.test/", RawAdapter(raw)),
        )
        with stream:
            theirs.sendall(b"data: 1\n\n")
            try:
                first = stream.read(9, timeout=2.0)
            finally:
                theirs.shutdown(socket.SHUT_WR)  # ends a reader that waits for more
            stream.join()
    assert first == b"data: 1\n\n"
    assert stream.error is None, repr(stream.error)


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_stream_on_one_scheme_mounts_only_that_adapter(
    server: SSEServer, tls_server: SSEServer, ca: tuple[trustme.CA, Path], scheme: str
) -> None:
    # The other scheme's adapter (and its pool manager) would be memory kept for nothing.
    origin = server if scheme == "http" else tls_server
    origin.enqueue(Script().event("a"))
    with make_session() as session:
        session.verify = str(ca[1])
        assert read_all(session, origin.url) == b"data: a\n\n"
        assert set(session.adapters) == {f"{scheme}://"}


class FailingClose(ReadOnlyFile):
    def close(self) -> None:
        super().close()
        raise OSError(errno.EIO, "close failed")


def test_a_body_whose_close_fails_is_closed_and_logs_why(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with make_session() as session:
        session.mount("http://custom.test/", RawAdapter(FailingClose(EVENTS)))
        with caplog.at_level(logging.DEBUG, logger="eventstream._transport"):
            assert read_all(session, "http://custom.test/feed") == EVENTS  # close() raises no error
    expected = "closing the response of http://custom.test/feed failed: OSError(5, 'close failed')"
    assert expected in [record.getMessage() for record in caplog.records]
