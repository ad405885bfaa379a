"""Streams through forward proxies: every path stops at once, TLS in TLS reads every byte.

The proxy is ``tests/_proxy.py`` (standard library, on 127.0.0.1); real third-party
proxies are in ``test_integration.py``.  Four paths: an ``http://`` or ``https://``
proxy, to an ``http://`` origin (the request forwarded) or an ``https://`` one (a
``CONNECT`` tunnel; through an ``https://`` proxy that is TLS inside TLS, read by
``_tunnelread``).  Also: an ``https://`` proxy's certificate is verified with the
session's ``verify``, for ``http://`` and ``https://`` URLs alike.
"""

from __future__ import annotations

import queue
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import trustme
import urllib3
from _proxy import ForwardProxy

from eventstream import ConnectError, EventStream, ReadError, _transport
from eventstream._stop import StopSignal
from eventstream._transport import RequestSpec, make_session, open_stream
from eventstream._tunnelread import TunnelSource
from eventstream.testing import Framing, Script, SSEServer

EVENTS = b"".join(b"id: %d\ndata: event %d %s\n\n" % (i, i, b"y" * (i % 89)) for i in range(300))
STOP_BOUND = 0.5  # seconds: generous for CI; a stop takes about a millisecond
TIMEOUT = 5.0
READ_TIMEOUT = 3.0  # long enough that a stop waiting for it fails STOP_BOUND


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two authorities: ``trusted`` signs the origin and the trusted proxy."""
    folder = tmp_path_factory.mktemp("pki")
    trusted, untrusted = trustme.CA(), trustme.CA()
    bundle = folder / "trusted.pem"
    trusted.cert_pem.write_to_path(str(bundle))
    return {"trusted": trusted, "untrusted": untrusted, "bundle": str(bundle)}


def server_context(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(params=["http", "https"])
def origin(request: pytest.FixtureRequest, pki: dict[str, Any]) -> Iterator[SSEServer]:
    context = server_context(pki["trusted"]) if request.param == "https" else None
    with SSEServer(ssl_context=context) as server:
        yield server


@pytest.fixture
def tls_origin(pki: dict[str, Any]) -> Iterator[SSEServer]:
    with SSEServer(ssl_context=server_context(pki["trusted"])) as server:
        yield server


@pytest.fixture(params=["http-proxy", "https-proxy"])
def proxy(request: pytest.FixtureRequest, pki: dict[str, Any]) -> Iterator[ForwardProxy]:
    context = server_context(pki["trusted"]) if request.param == "https-proxy" else None
    with ForwardProxy(context) as proxy:
        yield proxy


@pytest.fixture
def tls_proxy(pki: dict[str, Any]) -> Iterator[ForwardProxy]:
    with ForwardProxy(server_context(pki["trusted"])) as proxy:
        yield proxy


@pytest.fixture
def untrusted_proxy(pki: dict[str, Any]) -> Iterator[ForwardProxy]:
    with ForwardProxy(server_context(pki["untrusted"])) as proxy:
        yield proxy


@pytest.fixture
def tunnels(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records, each time the TLS-in-TLS reader is taken, the bytes the inner TLS held."""
    found: list[int] = []
    real = _transport.locate_tunnel

    def spy(raw: Any) -> Any:
        result = real(raw)
        if result is not None:
            found.append(result[1].inner.pending())
        return result

    monkeypatch.setattr(_transport, "locate_tunnel", spy)
    return found


def factory(proxy: ForwardProxy, verify: str | bool) -> Any:
    def make() -> requests.Session:
        session = requests.Session()
        session.proxies = {"http": proxy.url, "https": proxy.url}
        session.verify = verify
        return session

    return make


def expected_request(proxy: ForwardProxy, url: str) -> str:
    port = url.rsplit(":", 1)[1]
    return f"CONNECT 127.0.0.1:{port}" if url.startswith("https:") else f"GET {url}/"


def spec(url: str, **options: Any) -> RequestSpec:
    options.setdefault("connect_timeout", TIMEOUT)
    options.setdefault("read_timeout", READ_TIMEOUT)
    return RequestSpec(url, **options)


def read_all(proxy: ForwardProxy, verify: str | bool, url: str) -> bytes:
    with make_session(factory(proxy, verify)) as session:
        body = open_stream(session, spec(url), StopSignal())
        with body:
            return b"".join(body.chunks())


class Tunnelled:
    """An https:// origin behind an https:// proxy, and a stream read on its own thread."""

    def __init__(self, origin: SSEServer, proxy: ForwardProxy, bundle: str) -> None:
        self.origin, self.proxy, self.bundle = origin, proxy, bundle
        self.stop = StopSignal()
        self.chunks: queue.Queue[bytes] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def start(self, read_timeout: float = 60) -> None:
        self.thread = threading.Thread(target=self._run, args=(read_timeout,), name="test-tunnel")
        self.thread.start()

    def _run(self, read_timeout: float) -> None:
        request = spec(self.origin.url, read_timeout=read_timeout)
        try:
            with make_session(factory(self.proxy, self.bundle)) as session:
                body = open_stream(session, request, self.stop)
                with body:
                    for chunk in body.chunks():
                        self.chunks.put(chunk)
        except BaseException as exc:
            self.error = exc
        self.chunks.put(b"<returned>")

    def read(self, size: int) -> bytes:
        received = b""
        while len(received) < size:
            received += self.chunks.get(timeout=TIMEOUT)
        return received

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(TIMEOUT)
            assert not self.thread.is_alive()


@pytest.fixture
def tunnelled(
    tls_origin: SSEServer, tls_proxy: ForwardProxy, pki: dict[str, Any]
) -> Iterator[Tunnelled]:
    tunnelled = Tunnelled(tls_origin, tls_proxy, pki["bundle"])
    try:
        yield tunnelled
    finally:
        tunnelled.finish()


# -- stop ------------------------------------------------------------------------------------


def test_stop_on_a_silent_stream_through_every_proxy_leaves_at_once(
    origin: SSEServer, proxy: ForwardProxy, pki: dict[str, Any]
) -> None:
    origin.enqueue(Script().event("a", id="1").hold())
    events: queue.Queue[str] = queue.Queue()
    stream = EventStream(
        origin.url,
        timeout=(TIMEOUT, READ_TIMEOUT),
        session_factory=factory(proxy, pki["bundle"]),
        on_event=lambda event: events.put(event.data),
    )
    with stream:
        assert events.get(timeout=TIMEOUT) == "a"
        started = time.monotonic()
        assert stream.stop(timeout=TIMEOUT)
        assert time.monotonic() - started < STOP_BOUND
    assert proxy.requests == [expected_request(proxy, origin.url)]


def test_stop_through_the_tunnel_interrupts_a_wait_for_the_next_record(
    tunnelled: Tunnelled, tunnels: list[int]
) -> None:
    # Half of an event, then silence: the reader waits with no whole inner record.
    gate = threading.Event()
    tunnelled.origin.enqueue(Script().send(b"data: half").wait(gate).send(b"\n\n"))
    tunnelled.start(read_timeout=READ_TIMEOUT)
    assert tunnelled.read(10) == b"data: half"
    started = time.monotonic()
    tunnelled.stop.set()
    assert tunnelled.chunks.get(timeout=TIMEOUT) == b"<returned>"
    assert time.monotonic() - started < STOP_BOUND
    assert tunnelled.error is None
    gate.set()
    assert tunnels  # the TLS-in-TLS reader, not the fallback


# -- every byte, through the tunnel ----------------------------------------------------------


@pytest.mark.parametrize("encoding", [None, "gzip"])
@pytest.mark.parametrize("framing", list(Framing))
def test_every_byte_is_delivered_through_the_tunnel(
    tunnelled: Tunnelled, tunnels: list[int], framing: Framing, encoding: str | None
) -> None:
    script = Script(framing=framing, encoding=encoding)
    for start in range(0, len(EVENTS), 5000):
        script = script.send(EVENTS[start : start + 5000])
    tunnelled.origin.enqueue(script.send(b"z" * 100_000))
    got = read_all(tunnelled.proxy, tunnelled.bundle, tunnelled.origin.url)
    assert got == EVENTS + b"z" * 100_000
    assert len(tunnels) == 1


def test_bytes_held_above_the_outer_socket_are_delivered_without_waiting(
    tunnelled: Tunnelled, tunnels: list[int]
) -> None:
    # Headers and events in one write, then silence.  http.client's header read takes
    # part of the first inner record and the inner TLS keeps the rest decrypted: a
    # reader that waited on the socket before emptying it would stall.
    events = EVENTS * 8
    tunnelled.origin.enqueue(Script().send(events).hold())
    tunnelled.start()
    assert tunnelled.read(len(events)) == events
    assert tunnelled.error is None
    (inner_pending,) = tunnels
    assert inner_pending > 0  # the scenario really happened


def test_small_records_that_arrive_together_are_delivered_without_waiting(
    tunnelled: Tunnelled, tunnels: list[int]
) -> None:
    # One event per inner TLS record; the proxy relays several in one outer record,
    # so after one inner read the incoming BIO still holds whole records while the
    # outer socket has nothing: they must be read before the next wait.
    script = Script()
    for i in range(300):
        script = script.event(f"{i}", id=f"{i}")
    expected = b"".join(b"id: %d\ndata: %d\n\n" % (i, i) for i in range(300))
    tunnelled.origin.enqueue(script.hold())
    tunnelled.start()
    assert tunnelled.read(len(expected)) == expected
    assert tunnels


@pytest.mark.parametrize(
    ("script", "complete"),
    [
        (Script(framing=Framing.CLOSE).event("a").drop(), True),
        (Script(framing=Framing.CHUNKED).event("a").drop(), False),
        (Script(framing=Framing.CHUNKED).event("a").reset(), False),
    ],
    ids=["close-delimited-end", "chunked-drop", "reset"],
)
def test_end_and_drop_through_the_tunnel(
    tunnelled: Tunnelled, tunnels: list[int], script: Script, complete: bool
) -> None:
    tunnelled.origin.enqueue(script)
    args = tunnelled.proxy, tunnelled.bundle, tunnelled.origin.url
    if complete:
        assert read_all(*args) == b"data: a\n\n"
    else:
        with pytest.raises(ReadError):
            read_all(*args)
    assert tunnels


def test_idle_timeout_through_the_tunnel(tunnelled: Tunnelled, tunnels: list[int]) -> None:
    tunnelled.origin.enqueue(Script().event("a").hold())
    tunnelled.start(read_timeout=0.3)
    assert tunnelled.read(9) == b"data: a\n\n"
    started = time.monotonic()
    assert tunnelled.chunks.get(timeout=TIMEOUT) == b"<returned>"
    assert 0.25 <= time.monotonic() - started < 0.3 + STOP_BOUND
    assert isinstance(tunnelled.error, ReadError)
    assert "read timeout" in str(tunnelled.error)
    assert tunnels


# -- the proxy's certificate -----------------------------------------------------------------


def test_untrusted_https_proxy_is_refused_before_any_request(
    origin: SSEServer, untrusted_proxy: ForwardProxy, pki: dict[str, Any]
) -> None:
    origin.enqueue(Script().event("a"))
    with pytest.raises(ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        read_all(untrusted_proxy, pki["bundle"], origin.url)
    assert untrusted_proxy.requests == []  # not a header went to it
    assert origin.requests == []


def test_trusted_https_proxy_is_accepted(
    origin: SSEServer, tls_proxy: ForwardProxy, pki: dict[str, Any]
) -> None:
    # pytest turns warnings into errors: an InsecureRequestWarning would fail this.
    origin.enqueue(Script().event("a"))
    assert read_all(tls_proxy, pki["bundle"], origin.url) == b"data: a\n\n"
    assert tls_proxy.requests == [expected_request(tls_proxy, origin.url)]


def test_verify_false_still_turns_proxy_verification_off(
    origin: SSEServer, untrusted_proxy: ForwardProxy
) -> None:
    origin.enqueue(Script().event("a"))
    with pytest.warns(urllib3.exceptions.InsecureRequestWarning):
        got = read_all(untrusted_proxy, False, origin.url)
    assert got == b"data: a\n\n"


def test_tunnel_source_is_not_used_without_a_proxy(
    tls_origin: SSEServer, pki: dict[str, Any], tunnels: list[Any]
) -> None:
    tls_origin.enqueue(Script().event("a"))
    with make_session() as session:
        session.verify = pki["bundle"]
        body = open_stream(session, spec(tls_origin.url), StopSignal())
        with body:
            assert not isinstance(body._source, TunnelSource)
            assert b"".join(body.chunks()) == b"data: a\n\n"
    assert tunnels == []


# -- configured_session: what the command line's --proxy, --cacert and --cert build ---------


def read_with(session: requests.Session, url: str) -> bytes:
    with make_session(lambda: session) as made, open_stream(made, spec(url), StopSignal()) as body:
        return b"".join(body.chunks())


def test_an_explicit_proxy_wins_over_the_environment(
    proxy: ForwardProxy, origin: SSEServer, pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The variables name a proxy nobody listens on: a request that took them would fail.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    origin.enqueue(Script().event("a"))
    session = _transport.configured_session(verify=pki["bundle"], proxy=proxy.url)
    assert read_with(session, origin.url) == b"data: a\n\n"
    assert len(proxy.requests) == 1


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
@pytest.mark.parametrize("verify", [True, False, "bundle"])
def test_verify_is_the_sessions_setting(
    tls_origin: SSEServer, pki: dict[str, Any], verify: bool | str
) -> None:
    # True: the system's authorities, which never signed the test origin.
    tls_origin.enqueue(Script().event("a"))
    if verify is True:  # the default
        session = _transport.configured_session()
    else:
        session = _transport.configured_session(verify=pki["bundle"] if verify else False)
    if verify is True:
        with pytest.raises(ConnectError):
            read_with(session, tls_origin.url)
    else:
        assert read_with(session, tls_origin.url) == b"data: a\n\n"


def test_a_client_certificate_is_presented(
    pki: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> None:
    context = server_context(pki["trusted"])
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cafile=pki["bundle"])
    client = tmp_path_factory.mktemp("client") / "client.pem"
    pki["trusted"].issue_cert("client@example.test").private_key_and_cert_chain_pem.write_to_path(
        str(client)
    )
    with SSEServer(ssl_context=context) as origin:
        origin.enqueue(Script().event("a"))
        session = _transport.configured_session(verify=pki["bundle"], cert=str(client))
        assert read_with(session, origin.url) == b"data: a\n\n"


def test_without_an_explicit_proxy_the_environments_is_used(
    pki: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with ForwardProxy() as proxy, SSEServer() as origin:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        origin.enqueue(Script().event("a"))
        assert read_with(_transport.configured_session(), origin.url) == b"data: a\n\n"
        assert len(proxy.requests) == 1
