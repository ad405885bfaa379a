"""Error statuses, redirects, and failures before any response (refused, DNS, TLS).

Each case ends in an error of eventstream's hierarchy or in a reconnect that resumes
with ``Last-Event-ID``, within a bounded time, leaking nothing.
"""

from __future__ import annotations

import email.utils
import queue
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import trustme
from _reliability import FAST, WAIT, closed_port, streaming, take

import eventstream
from eventstream import (
    Backoff,
    ConnectError,
    Event,
    EventStream,
    HTTPStatusError,
    RetriesExhausted,
)
from eventstream._backoff import MAX_DELAY
from eventstream.testing import RecordedRequest, Script, SSEServer

#: A policy that would make any backoff wait show: only Retry-After or an immediate
#: retry can reconnect within a test's bounded waits.
PATIENT = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
ONCE = Backoff(initial=0.01, max_attempts=1)


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


# -- statuses --------------------------------------------------------------------------


def test_5xx_storm_then_recovery_resumes_without_loss(server: SSEServer) -> None:
    storm = [500, 502, 503, 504, 599] * 4
    server.enqueue(
        Script().event("before", id="1").send(b"data: half").drop(),
        *(Script(status, headers={"Content-Type": "text/plain"}).send(b"busy") for status in storm),
        Script().event("after", id="2").hold(),
    )
    backoff = Backoff(initial=0.001, maximum=0.004, jitter=0.0)
    with streaming(server.url, backoff=backoff) as rec:
        events = rec.take(2)
    assert [e.data for e in events] == ["before", "after"]
    statuses = [e.status_code for e in rec.all_errors if isinstance(e, HTTPStatusError)]
    assert statuses == storm
    assert all(e.body == "busy" for e in rec.all_errors if isinstance(e, HTTPStatusError))
    requests_seen = server.wait_for_requests(2 + len(storm))
    assert {r.headers.get("Last-Event-ID") for r in requests_seen[1:]} == {"1"}


def test_a_storm_past_the_retry_limit_ends_with_retries_exhausted(server: SSEServer) -> None:
    server.default = Script(503)
    stream = EventStream(server.url, backoff=Backoff(initial=0.001, jitter=0.0, max_attempts=5))
    with pytest.raises(RetriesExhausted) as info:
        take(stream, 1)
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert info.value.__cause__.status_code == 503
    assert stream.join(WAIT)
    assert len(server.requests) == 5


def test_a_503_with_a_charset_that_is_no_text_codec_is_retried(server: SSEServer) -> None:
    # The error body's charset named base64: decoding raised LookupError out of the
    # worker, and a retryable 503 ended the stream.
    headers = {"Content-Type": "text/plain; charset=base64"}
    server.enqueue(Script(503, headers=headers).send(b"busy"), Script().event("ok").hold())
    with streaming(server.url) as rec:
        assert rec.next_event().data == "ok"
    [error] = rec.all_errors
    assert isinstance(error, HTTPStatusError)
    assert (error.status_code, error.body) == (503, "busy")


def test_max_elapsed_gives_up_before_a_wait_that_would_pass_it(server: SSEServer) -> None:
    # The limit was checked after the wait: max_elapsed=0.3 against Retry-After: 3
    # waited 3 s and made another request before giving up.
    server.default = Script(503, headers={"Retry-After": "3"})
    backoff = Backoff(initial=0.05, maximum=0.1, max_elapsed=0.3)
    stream = EventStream(server.url, backoff=backoff)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted) as info:
        take(stream, 1)
    assert time.monotonic() - started < 1.0
    assert stream.join(WAIT)
    assert len(server.requests) == 1
    message = str(info.value)
    assert message.startswith("gave up after 1 consecutive failed attempts in ")
    assert "the next wait of 3 s would reach max_elapsed=0.3 s" in message
    assert message.endswith(
        f"the last: HTTPStatusError: HTTP 503 Service Unavailable from {server.url_for('/')}"
    )


def test_max_attempts_says_so_when_it_gives_up(server: SSEServer) -> None:
    server.default = Script(503)
    stream = EventStream(server.url, backoff=Backoff(initial=0.001, max_attempts=2))
    with pytest.raises(RetriesExhausted) as info:
        take(stream, 1)
    assert str(info.value) == (
        "gave up after 2 consecutive failed attempts (max_attempts=2); the last: "
        f"HTTPStatusError: HTTP 503 Service Unavailable from {server.url_for('/')}"
    )


def _retry_after_gap(server: SSEServer, retry_after: str | None = None) -> float:
    """Seconds between a 429 (with ``retry_after``) and the next successful open."""
    headers = None if retry_after is None else {"Retry-After": retry_after}
    server.enqueue(Script(429, headers=headers), Script().event("ok").hold())
    with streaming(server.url, backoff=FAST) as rec:
        failed_at, error = rec.errors.get(timeout=WAIT)
        opened_at, _ = rec.opens.get(timeout=WAIT)
        assert rec.next_event().data == "ok"
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == 429
    return opened_at - failed_at


def test_429_retry_after_in_seconds_is_honoured(server: SSEServer) -> None:
    assert 0.95 <= _retry_after_gap(server, "1") < WAIT


def test_429_retry_after_as_an_http_date_is_honoured(server: SSEServer) -> None:
    # The date is written when the request arrives; whole seconds, so 2 s ahead
    # means a wait of between 1 and 2 s.
    def rate_limited(request: RecordedRequest) -> Script:
        when = email.utils.formatdate(time.time() + 2, usegmt=True)
        return Script(429, headers={"Retry-After": when})

    server.enqueue(rate_limited, Script().event("ok").hold())
    with streaming(server.url, backoff=FAST) as rec:
        failed_at, error = rec.errors.get(timeout=WAIT)
        opened_at, _ = rec.opens.get(timeout=WAIT)
    assert isinstance(error, HTTPStatusError)
    assert error.headers["retry-after"].endswith("GMT")
    assert 0.9 <= opened_at - failed_at < WAIT


@pytest.mark.parametrize(
    "value", ["10000000000", "Fri, 31 Dec 9999 23:59:59 GMT"], ids=["seconds", "date"]
)
def test_a_retry_after_of_centuries_waits_a_day_and_stops_at_once(
    server: SSEServer, value: str
) -> None:
    # stop.wait(1e10) raised OverflowError (past threading.TIMEOUT_MAX): a retryable
    # 503 ended the stream with an error that is not the library's.
    server.enqueue(Script(503, headers={"Retry-After": value}))
    delays: queue.Queue[float] = queue.Queue()
    with streaming(server.url, on_retry=lambda error, delay: delays.put(delay)) as rec:
        assert delays.get(timeout=WAIT) == MAX_DELAY
        assert rec.stream is not None
        assert not rec.stream.join(0.1)  # still waiting to reconnect
    assert [type(e) for e in rec.all_errors] == [HTTPStatusError]
    assert len(server.requests) == 1


@pytest.mark.parametrize("digits", [b"1" + b"0" * 13, b"1" + b"0" * 400], ids=["1e13", "1e400"])
def test_a_retry_field_of_centuries_waits_a_day_and_stops_at_once(
    server: SSEServer, digits: bytes
) -> None:
    # The parser keeps any run of digits (as the spec says): 1e13 ms made
    # stop.wait() overflow, and 400 digits made an int no float holds.
    server.enqueue(Script().event("a").send(b"retry: " + digits + b"\n\n"))
    delays: queue.Queue[float] = queue.Queue()
    with streaming(server.url, on_retry=lambda error, delay: delays.put(delay)) as rec:
        assert rec.next_event().data == "a"
        assert delays.get(timeout=WAIT) == MAX_DELAY
        assert rec.stream is not None
        assert not rec.stream.join(0.1)  # still waiting to reconnect
    assert rec.all_errors == []
    assert len(server.requests) == 1


def test_retry_zero_then_a_failing_server_backs_off_as_usual(server: SSEServer) -> None:
    # retry: 0 made every later wait 0: a server answering 503 was called in a tight
    # loop.  The first reconnect is at once; the failures after it double from initial.
    server.enqueue(Script().event("a", retry=0))
    server.default = Script(503, headers={"Content-Type": "text/plain"}).send(b"down")
    delays: queue.Queue[float] = queue.Queue()
    backoff = Backoff(initial=0.02, maximum=0.08, jitter=0.0)
    with streaming(server.url, backoff=backoff, on_retry=lambda e, d: delays.put(d)):
        seen = [delays.get(timeout=WAIT) for _ in range(5)]
    assert seen == [0.0, 0.02, 0.04, 0.08, 0.08]


@pytest.mark.parametrize(
    "value",
    ["Thu, 01 Jan 1970 00:00:00 GMT", "soon", "-5", "1.5"],
    ids=["date-in-the-past", "garbage", "negative", "fraction"],
)
def test_429_with_an_unusable_retry_after_falls_back_to_the_backoff(
    server: SSEServer, value: str
) -> None:
    assert _retry_after_gap(server, value) < 1.0


def test_redirect_loop_is_a_fatal_status_error(server: SSEServer) -> None:
    server.route("/loop", Script.redirect(server.url_for("/loop")))
    server.default = Script().event("must not be reached").hold()
    stream = EventStream(server.url_for("/loop"), backoff=FAST)
    with pytest.raises(HTTPStatusError) as info:
        take(stream, 1)
    assert "redirect" in str(info.value)
    assert info.value.status_code == 302
    assert stream.join(WAIT)
    loops = len(server.requests)
    assert 2 <= loops <= requests.Session().max_redirects + 1  # bounded, and not retried


def test_redirect_loop_across_hosts_is_a_fatal_status_error(server: SSEServer) -> None:
    server.route("/a", Script.redirect(server.url_for("/b", host="localhost"), status=307))
    server.route("/b", Script.redirect(server.url_for("/a"), status=308))
    stream = EventStream(server.url_for("/a"), backoff=FAST)
    with pytest.raises(HTTPStatusError) as info:
        take(stream, 1)
    assert info.value.status_code in (307, 308)
    assert stream.join(WAIT)
    hosts = {r.headers["Host"].split(":")[0] for r in server.requests}
    assert hosts == {"127.0.0.1", "localhost"}


def test_401_then_success_after_a_token_refresh(server: SSEServer) -> None:
    # The server accepts one token at a time; on a 401 the application refreshes
    # its token (here in on_error) and the immediate retry picks it up through the
    # headers callable.  Later, the server rotates the token again: the retry
    # budget started over after the healthy connection, so that works too.
    valid = {"token": "t2"}
    current = {"token": "t1"}
    lock = threading.Lock()

    def guarded(request: RecordedRequest) -> Script:
        with lock:
            ok = request.headers.get("Authorization") == f"Bearer {valid['token']}"
        if not ok:
            return Script(401, headers={"WWW-Authenticate": "Bearer"})
        last = int(request.headers.get("Last-Event-ID", "0"))
        # retry: 10 ms, so that the reconnect after the clean end is quick.
        script = Script().event(str(last + 1), id=str(last + 1), retry=10)
        if last == 0:
            with lock:
                valid["token"] = "t3"  # rotated: the next connection needs a new one
            return script.close()
        return script.hold()

    def refresh(exc: BaseException) -> None:
        if isinstance(exc, HTTPStatusError) and exc.status_code == 401:
            with lock:
                current["token"] = valid["token"]

    def headers() -> dict[str, str]:
        with lock:
            return {"Authorization": f"Bearer {current['token']}"}

    server.default = guarded
    stream = EventStream(server.url, headers=headers, backoff=PATIENT, on_error=refresh)
    events = take(stream, 2)
    assert stream.stop(WAIT)
    assert [e.data for e in events] == ["1", "2"]
    sent = [r.headers["Authorization"] for r in server.wait_for_requests(4)]
    assert sent == ["Bearer t1", "Bearer t2", "Bearer t2", "Bearer t3"]


def test_a_401_after_a_short_connection_with_fresh_headers_gets_its_retry_again(
    server: SSEServer,
) -> None:
    # The 401's retry was reset only after a healthy connection (an event, or
    # reset_after seconds): a 2xx with the fresh token that dropped at once left the
    # next 401 (the next token expiry) fatal.
    calls: list[int] = []

    def headers() -> dict[str, str]:
        calls.append(len(calls) + 1)
        return {"Authorization": f"Bearer t{len(calls)}"}

    server.enqueue(Script(401), Script().comment("hi"), Script(503), Script(401))
    server.default = Script().event("ok").hold()
    stream = EventStream(server.url, headers=headers, backoff=FAST)
    assert [e.data for e in take(stream, 1)] == ["ok"]
    assert stream.stop(WAIT)
    sent = [r.headers["Authorization"] for r in server.wait_for_requests(5)]
    assert sent == [f"Bearer t{n}" for n in range(1, 6)]


# -- before any response -----------------------------------------------------------------


def test_connection_refused_is_retried_then_exhausted() -> None:
    errors: list[BaseException] = []
    stream = EventStream(
        f"http://127.0.0.1:{closed_port()}/",
        backoff=Backoff(initial=0.001, jitter=0.0, max_attempts=3),
        on_error=errors.append,
    )
    with pytest.raises(RetriesExhausted) as info:
        take(stream, 1)
    assert isinstance(info.value.__cause__, ConnectError)
    assert "refused" in str(info.value.__cause__).lower()
    assert stream.join(WAIT)
    assert [type(e) for e in errors] == [ConnectError] * 3 + [RetriesExhausted]


def test_refused_until_the_server_comes_up_then_connects() -> None:
    port = closed_port()
    with streaming(f"http://127.0.0.1:{port}/") as rec:
        assert isinstance(rec.next_error(), ConnectError)
        assert isinstance(rec.next_error(), ConnectError)
        with SSEServer(port=port) as server:
            server.default = Script().event("up", id="1").hold()
            assert rec.next_event() == Event("message", "up", "1")


def test_unresolvable_host_is_a_connect_error() -> None:
    # The reserved .invalid TLD never resolves (RFC 6761), with or without network.
    url = "http://eventstream-test.invalid/stream"
    stream = EventStream(url, backoff=ONCE, timeout=(5.0, 5.0))
    with pytest.raises(RetriesExhausted) as info:
        take(stream, 1, seconds=30.0)
    assert isinstance(info.value.__cause__, ConnectError)
    assert info.value.__cause__.url == url
    assert stream.join(WAIT)


def test_unresolvable_host_in_a_one_shot_request_is_a_clear_error() -> None:
    stream = eventstream.get("http://eventstream-test.invalid/", retries=0)
    with stream, pytest.raises(RetriesExhausted) as info:
        stream.wait_open(30.0)
    assert isinstance(info.value.__cause__, ConnectError)


# -- TLS ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[trustme.CA, Path]:
    authority = trustme.CA()
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


def _tls_server(authority: trustme.CA, *hostnames: str) -> SSEServer:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    authority.issue_cert(*hostnames).configure_cert(context)
    server = SSEServer(ssl_context=context)
    server.default = Script().event("secret data").hold()
    return server


def _trusting(cafile: Path) -> requests.Session:
    session = requests.Session()
    session.verify = str(cafile)
    return session


def _connect_error_of(stream: EventStream) -> ConnectError:
    with pytest.raises(RetriesExhausted) as info:
        take(stream, 1)
    assert stream.join(WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, ConnectError)
    return cause


def test_tls_certificate_for_another_hostname_fails(ca: tuple[trustme.CA, Path]) -> None:
    authority, cafile = ca
    with _tls_server(authority, "eventstream.example") as tls:
        stream = EventStream(tls.url, backoff=ONCE, session_factory=lambda: _trusting(cafile))
        error = _connect_error_of(stream)
        assert not tls.requests  # nothing was sent over the unverified connection
    assert "certificate" in str(error).lower() or "hostname" in str(error).lower()


def test_tls_untrusted_certificate_fails(ca: tuple[trustme.CA, Path]) -> None:
    authority, _ = ca
    with _tls_server(authority, "127.0.0.1") as tls:
        error = _connect_error_of(EventStream(tls.url, backoff=ONCE))
        assert not tls.requests
    assert "certificate" in str(error).lower()


def test_tls_trusted_and_matching_certificate_works(ca: tuple[trustme.CA, Path]) -> None:
    # The control case: the failures above are about the certificate, not the setup.
    authority, cafile = ca
    tls = _tls_server(authority, "127.0.0.1")
    with tls, streaming(tls.url, session_factory=lambda: _trusting(cafile)) as rec:
        assert rec.next_event().data == "secret data"
