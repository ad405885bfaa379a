"""EventStream against a real server: delivery, reconnection, statuses, errors."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import eventstream
from eventstream import (
    Backoff,
    ContentTypeError,
    Event,
    EventStream,
    HTTPStatusError,
    ProtocolError,
    ReadError,
    ResponseInfo,
    RetriesExhausted,
)
from eventstream.testing import Framing, Script, SSEServer

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
WAIT = 5.0  # bound on every wait in this file


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def take(stream: EventStream, n: int) -> list[Event]:
    events = []
    for event in stream:
        events.append(event)
        if len(events) == n:
            break
    return events


def test_iterating_delivers_events_in_order(server: SSEServer) -> None:
    server.enqueue(Script().event("a", id="1").event("b", event="tick").event("c\nd").hold())
    with EventStream(server.url) as stream:
        events = take(stream, 3)
    assert events == [
        Event("message", "a", "1"),
        Event("tick", "b", "1"),
        Event("message", "c\nd", "1"),
    ]
    assert stream.last_event_id == "1"


def test_leaving_a_loop_loses_nothing(server: SSEServer) -> None:
    # Three events in one write arrive in one read, so in one batch: the rest of the
    # batch must wait for the next loop, not go with the first one.
    server.enqueue(Script().send(b"data: a\n\ndata: b\n\ndata: c\n\n").send(b"data: d\n\n").hold())
    with EventStream(server.url) as stream:
        assert [e.data for e in take(stream, 1)] == ["a"]
        assert [e.data for e in take(stream, 2)] == ["b", "c"]
        assert [e.data for e in take(stream, 1)] == ["d"]


def test_request_carries_sse_headers_and_no_last_event_id_at_first(server: SSEServer) -> None:
    server.enqueue(Script().event("a").hold())
    with EventStream(server.url_for("/feed?x=1"), params={"y": "2"}) as stream:
        take(stream, 1)
    (request,) = server.requests
    assert request.path == "/feed"
    assert request.headers["Accept"] == "text/event-stream"
    assert request.headers["Cache-Control"] == "no-cache"
    assert request.headers["Accept-Encoding"] == "gzip, deflate"
    assert "Last-Event-ID" not in request.headers


def test_reconnect_sends_last_event_id_and_drops_the_partial_event(server: SSEServer) -> None:
    server.enqueue(
        Script().event("a", id="7").send(b"data: partial").close(),
        Script().event("b", id="8").hold(),
    )
    with EventStream(server.url, backoff=FAST) as stream:
        events = take(stream, 2)
    assert [e.data for e in events] == ["a", "b"]
    assert server.wait_for_requests(2)[1].headers["Last-Event-ID"] == "7"


def test_first_connect_resumes_from_the_given_last_event_id(server: SSEServer) -> None:
    server.enqueue(Script().event("x", id="43").hold())
    with EventStream(server.url, last_event_id="42") as stream:
        take(stream, 1)
    assert server.requests[0].headers["Last-Event-ID"] == "42"


def test_empty_id_is_not_sent(server: SSEServer) -> None:
    server.enqueue(
        Script().event("a", id="5").send(b"id\n\n").close(),
        Script().event("b").hold(),
    )
    with EventStream(server.url, backoff=FAST) as stream:
        take(stream, 2)
    assert "Last-Event-ID" not in server.wait_for_requests(2)[1].headers


def test_server_retry_field_sets_the_reconnection_time(server: SSEServer) -> None:
    # The policy alone would wait 60 s; the server's retry: 10 must win, or this
    # test runs into its bounded wait.
    slow = Backoff(initial=60.0, maximum=60.0, jitter=0.0)
    server.enqueue(Script().event("a", retry=10).close(), Script().event("b").hold())
    with EventStream(server.url, backoff=slow) as stream:
        events = take(stream, 2)
    assert events[1].retry == 10


@pytest.mark.parametrize("framing", list(Framing))
@pytest.mark.parametrize("encoding", [None, "gzip", "deflate"])
def test_every_framing_and_coding_delivers(
    server: SSEServer, framing: Framing, encoding: str | None
) -> None:
    server.enqueue(Script(framing=framing, encoding=encoding).event("a").event("b").pause(30))
    with EventStream(server.url) as stream:
        assert [e.data for e in take(stream, 2)] == ["a", "b"]


def test_204_ends_the_stream_without_reconnecting(server: SSEServer) -> None:
    server.enqueue(Script(204))
    server.default = Script().event("must not be fetched").hold()
    stream = EventStream(server.url, backoff=FAST)
    assert list(stream) == []
    assert stream.join(WAIT)
    assert len(server.requests) == 1


def test_204_without_a_content_type_ends_the_stream_without_error(server: SSEServer) -> None:
    # A 204 has no body, so servers often send no Content-Type: it is no wrong type.
    server.enqueue(Script.raw_response(b"HTTP/1.1 204 No Content\r\n\r\n"))
    server.default = Script().event("must not be fetched").hold()
    errors: list[BaseException] = []
    stream = EventStream(server.url, backoff=FAST, on_error=errors.append)
    assert list(stream) == []
    assert stream.join(WAIT)
    assert errors == []
    assert len(server.requests) == 1


def test_wrong_content_type_is_fatal(server: SSEServer) -> None:
    server.enqueue(Script(headers={"Content-Type": "text/html"}).send(b"<html>"))
    stream = EventStream(server.url, backoff=FAST)
    with pytest.raises(ContentTypeError) as info:
        list(stream)
    assert info.value.status_code == 200
    assert stream.join(WAIT)
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [400, 404, 410])
def test_client_errors_are_fatal_with_status_headers_and_body(
    server: SSEServer, status: int
) -> None:
    server.enqueue(
        Script(status, headers={"Content-Type": "text/plain", "X-Why": "nope"}).send(b"go away")
    )
    errors: list[BaseException] = []
    stream = EventStream(server.url, backoff=FAST, on_error=errors.append)
    with pytest.raises(HTTPStatusError) as info:
        list(stream)
    assert info.value.status_code == status
    assert info.value.headers["x-why"] == "nope"
    assert "go away" in info.value.body
    assert info.value.url.rstrip("/") == server.url
    assert errors == [info.value]
    assert len(server.requests) == 1


@pytest.mark.parametrize("status", [500, 503, 408, 429])
def test_retryable_statuses_are_retried_and_reported(server: SSEServer, status: int) -> None:
    server.enqueue(Script(status), Script().event("ok").hold())
    errors: queue.Queue[BaseException] = queue.Queue()
    with EventStream(server.url, backoff=FAST, on_error=errors.put) as stream:
        assert take(stream, 1)[0].data == "ok"
    error = errors.get(timeout=WAIT)
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == status


def test_retry_after_seconds_is_honoured(server: SSEServer) -> None:
    server.enqueue(Script(429, headers={"Retry-After": "1"}), Script().event("ok").hold())
    stamps: queue.Queue[tuple[str, float]] = queue.Queue()
    with EventStream(
        server.url,
        backoff=FAST,
        on_error=lambda exc: stamps.put(("error", time.monotonic())),
        on_open=lambda info: stamps.put(("open", time.monotonic())),
        on_event=lambda event: None,
    ):
        (_, failed), (_, opened) = stamps.get(timeout=WAIT), stamps.get(timeout=WAIT)
    assert opened - failed >= 0.95


def test_on_retry_gets_each_retried_error_and_its_delay_on_the_worker(
    server: SSEServer,
) -> None:
    server.enqueue(
        Script(503, headers={"Retry-After": "1"}),
        Script().event("a", retry=20).close(),  # a clean end: retried, not an error
        Script().event("b").hold(),
    )
    retries: queue.Queue[tuple[BaseException, float, str]] = queue.Queue()
    errors: queue.Queue[BaseException] = queue.Queue()

    def on_retry(error: BaseException, delay: float) -> None:
        retries.put((error, delay, threading.current_thread().name))

    with EventStream(server.url, backoff=FAST, on_retry=on_retry, on_error=errors.put) as s:
        assert [e.data for e in take(s, 2)] == ["a", "b"]
    (status, after_503, thread), (ended, after_end, _) = retries.get(), retries.get()
    assert isinstance(status, HTTPStatusError)
    assert status.status_code == 503
    assert after_503 >= 1.0  # Retry-After
    assert isinstance(ended, ReadError)
    assert after_end == pytest.approx(0.02)  # the server's retry: (FAST has no jitter)
    assert thread.startswith("eventstream-")
    assert errors.get_nowait() is status  # the clean end went to on_retry only
    assert errors.empty()
    assert retries.empty()


def test_on_retry_is_not_called_for_a_fatal_error(server: SSEServer) -> None:
    server.enqueue(Script(404))
    retries: queue.Queue[tuple[BaseException, float]] = queue.Queue()
    stream = EventStream(server.url, on_retry=lambda exc, delay: retries.put((exc, delay)))
    with stream, pytest.raises(HTTPStatusError):
        take(stream, 1)
    assert retries.empty()


def test_on_retry_that_raises_is_reported_and_the_stream_goes_on(server: SSEServer) -> None:
    server.enqueue(Script(500), Script().event("ok").hold())
    errors: queue.Queue[BaseException] = queue.Queue()

    def on_retry(error: BaseException, delay: float) -> None:
        raise RuntimeError("callback bug")

    with EventStream(server.url, backoff=FAST, on_retry=on_retry, on_error=errors.put) as s:
        assert take(s, 1)[0].data == "ok"
    assert isinstance(errors.get(timeout=WAIT), HTTPStatusError)
    assert str(errors.get(timeout=WAIT)) == "callback bug"


def test_401_with_callable_headers_retries_once_with_fresh_headers(server: SSEServer) -> None:
    server.enqueue(Script(401), Script().event("ok").hold())
    tokens = iter(["old", "new"])
    slow = Backoff(initial=60.0, maximum=60.0, jitter=0.0)  # an immediate retry, not a backoff
    headers = lambda: {"Authorization": f"Bearer {next(tokens)}"}  # noqa: E731
    with EventStream(server.url, headers=headers, backoff=slow) as stream:
        take(stream, 1)
    first, second = server.wait_for_requests(2)
    assert first.headers["Authorization"] == "Bearer old"
    assert second.headers["Authorization"] == "Bearer new"


def test_the_immediate_401_retry_is_not_counted_toward_max_attempts(server: SSEServer) -> None:
    # max_attempts=1 gave up on the 401 itself: the documented retry with fresh
    # headers never happened.  The failures after it are counted as ever.
    headers = lambda: {"Authorization": "Bearer fresh"}  # noqa: E731
    once = Backoff(initial=0.01, max_attempts=1)
    server.enqueue(Script(401), Script().event("ok").hold())
    with EventStream(server.url, headers=headers, backoff=once) as stream:
        assert [event.data for event in take(stream, 1)] == ["ok"]
    assert len(server.wait_for_requests(2)) == 2
    server.enqueue(Script(401), Script(503))
    with pytest.raises(RetriesExhausted) as info:
        list(EventStream(server.url, headers=headers, backoff=once))
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert info.value.__cause__.status_code == 503
    assert len(server.wait_for_requests(4)) == 4


def test_a_second_401_is_fatal(server: SSEServer) -> None:
    server.enqueue(Script(401), Script(403))
    stream = EventStream(server.url, headers=lambda: {"Authorization": "x"}, backoff=FAST)
    with pytest.raises(HTTPStatusError) as info:
        list(stream)
    assert info.value.status_code == 403
    assert len(server.requests) == 2


def test_401_with_static_headers_is_fatal_at_once(server: SSEServer) -> None:
    server.enqueue(Script(401))
    with pytest.raises(HTTPStatusError):
        list(EventStream(server.url, headers={"Authorization": "x"}, backoff=FAST))
    assert len(server.requests) == 1


def test_retries_exhausted_chains_the_last_error(server: SSEServer) -> None:
    server.default = Script(503)
    stream = EventStream(server.url, backoff=Backoff(initial=0.01, jitter=0.0, max_attempts=3))
    with pytest.raises(RetriesExhausted) as info:
        list(stream)
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert len(server.requests) == 3


def test_idle_timeout_reconnects(server: SSEServer) -> None:
    server.enqueue(Script().event("a", id="1").hold(), Script().event("b").hold())
    errors: queue.Queue[BaseException] = queue.Queue()
    with EventStream(server.url, timeout=(5.0, 0.3), backoff=FAST, on_error=errors.put) as s:
        assert [e.data for e in take(s, 2)] == ["a", "b"]
    assert isinstance(errors.get(timeout=WAIT), ReadError)
    assert server.wait_for_requests(2)[1].headers["Last-Event-ID"] == "1"


def test_dropped_connection_reconnects(server: SSEServer) -> None:
    server.enqueue(Script().event("a").send(b"data: half", flush=True).drop())
    server.enqueue(Script().event("b").hold())
    with EventStream(server.url, backoff=FAST) as stream:
        assert [e.data for e in take(stream, 2)] == ["a", "b"]


def test_headers_callable_runs_on_the_worker_before_every_connect(server: SSEServer) -> None:
    server.enqueue(Script().event("a").close(), Script().event("b").hold())
    calls: list[int] = []

    def headers() -> dict[str, str]:
        calls.append(threading.get_ident())
        return {"X-Token": str(len(calls))}

    with EventStream(server.url, headers=headers, backoff=FAST) as stream:
        take(stream, 2)
    assert len(calls) == 2
    assert threading.get_ident() not in calls
    assert [r.headers["X-Token"] for r in server.wait_for_requests(2)] == ["1", "2"]


def test_body_is_sent_again_on_every_reconnect(server: SSEServer) -> None:
    server.enqueue(Script().event("a").close(), Script().event("b").hold())
    with EventStream(server.url, method="POST", json={"q": 1}, backoff=FAST) as stream:
        take(stream, 2)
    first, second = server.wait_for_requests(2)
    assert first.method == second.method == "POST"
    assert first.body == second.body == b'{"q": 1}'


def test_redirects_are_followed(server: SSEServer) -> None:
    server.route("/old", Script.redirect(server.url_for("/new")))
    server.route("/new", Script().event("moved").hold())
    with EventStream(server.url_for("/old")) as stream:
        assert take(stream, 1)[0].data == "moved"
        assert stream.response is not None
        assert stream.response.url.endswith("/new")


def test_callbacks_run_on_the_worker_thread(server: SSEServer) -> None:
    server.enqueue(Script().event("a").event("b").hold())
    seen: queue.Queue[tuple[str, Any, int]] = queue.Queue()
    stream = EventStream(
        server.url,
        on_event=lambda e: seen.put(("event", e.data, threading.get_ident())),
        on_open=lambda info: seen.put(("open", info, threading.get_ident())),
    )
    with stream:
        got = [seen.get(timeout=WAIT) for _ in range(3)]
    assert [kind for kind, _, _ in got] == ["open", "event", "event"]
    assert isinstance(got[0][1], ResponseInfo)
    assert got[0][1].status_code == 200
    assert len({ident for _, _, ident in got}) == 1
    assert got[0][2] != threading.get_ident()


def test_iterating_a_callback_stream_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="on_event"):
        iter(EventStream("http://127.0.0.1:1/", on_event=print))


def test_on_event_exception_is_reported_and_the_stream_goes_on(server: SSEServer) -> None:
    server.enqueue(Script().event("boom").event("fine").hold())
    errors: queue.Queue[BaseException] = queue.Queue()
    delivered: queue.Queue[str] = queue.Queue()

    def on_event(event: Event) -> None:
        if event.data == "boom":
            raise KeyError("bad consumer")
        delivered.put(event.data)

    with EventStream(server.url, on_event=on_event, on_error=errors.put):
        assert delivered.get(timeout=WAIT) == "fine"
        assert isinstance(errors.get(timeout=WAIT), KeyError)


def test_oversized_event_is_skipped_reported_and_the_stream_goes_on(server: SSEServer) -> None:
    big = "x" * 200
    server.enqueue(Script().event("a").event(big).event("b").hold())
    errors: queue.Queue[BaseException] = queue.Queue()
    with EventStream(server.url, max_event_size=100, on_error=errors.put) as stream:
        assert [e.data for e in take(stream, 2)] == ["a", "b"]
    assert isinstance(errors.get(timeout=WAIT), ProtocolError)


def test_slow_consumer_loses_nothing(server: SSEServer) -> None:
    n = 3000
    script = Script()
    for i in range(n):
        script = script.event(str(i), id=str(i), flush=i % 50 == 49)
    server.enqueue(script.flush().hold())
    with EventStream(server.url, queue_size=16) as stream:
        data = []
        for event in stream:
            data.append(event.data)
            if len(data) % 500 == 0:
                threading.Event().wait(0.05)  # a slow consumer, not a synchronisation
            if len(data) == n:
                break
    assert data == [str(i) for i in range(n)]


def test_ownership_every_session_call_is_on_the_worker_thread(server: SSEServer) -> None:
    server.enqueue(Script().event("a").close(), Script().event("b").hold())
    calls: list[tuple[str, int]] = []

    class RecordingSession(requests.Session):
        def __init__(self) -> None:
            calls.append(("__init__", threading.get_ident()))
            super().__init__()

        def __getattribute__(self, name: str) -> Any:
            if not name.startswith("__"):
                calls.append((name, threading.get_ident()))
            return super().__getattribute__(name)

    with EventStream(server.url, session_factory=RecordingSession, backoff=FAST) as stream:
        take(stream, 2)
    assert stream.join(WAIT)
    names = {name for name, _ in calls}
    assert {"__init__", "request", "close"} <= names
    threads = {ident for _, ident in calls}
    assert len(threads) == 1
    assert threading.get_ident() not in threads


def test_verify_set_on_the_session_wins_over_requests_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    ca = trustme.CA()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")

    def factory() -> requests.Session:
        session = requests.Session()
        session.verify = str(cafile)
        return session

    with SSEServer(ssl_context=context) as tls:
        tls.enqueue(Script().event("secure").hold())
        with EventStream(tls.url, session_factory=factory) as stream:
            assert take(stream, 1)[0].data == "secure"


def test_tls_with_an_untrusted_certificate_fails(tmp_path: Any) -> None:
    trustme = pytest.importorskip("trustme")
    import ssl

    from eventstream import ConnectError

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(context)
    with SSEServer(ssl_context=context) as tls:
        tls.default = Script().event("never").hold()
        stream = EventStream(tls.url, backoff=Backoff(initial=0.01, max_attempts=1))
        with pytest.raises(RetriesExhausted) as info:
            list(stream)
    assert isinstance(info.value.__cause__, ConnectError)


def test_iterating_after_a_fatal_error_raises_it_and_connects_no_more(server: SSEServer) -> None:
    # The worker fails before the consumer begins its loop: the loop must see that
    # error, not start the stream again (a second request, the error lost).
    server.default = Script(404)
    stream = EventStream(server.url).start()
    assert stream.join(WAIT)
    with pytest.raises(HTTPStatusError):
        for _ in stream:
            pass
    assert len(server.requests) == 1


def test_iterating_a_stopped_stream_ends_and_connects_no_more(server: SSEServer) -> None:
    # A stop from another thread just before the loop begins is not undone by it.
    server.enqueue(Script().event("a").hold())
    server.default = Script(204)  # what a second connection would get: a quick end
    stream = EventStream(server.url).start()
    server.wait_for_requests(1, timeout=WAIT)
    assert stream.stop(WAIT)
    assert list(stream) == []
    assert not stream.running
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "timeout",
    [0, -1.0, float("nan"), float("inf"), 3e6, (5.0, 2147483.648), (2147483.648, 5.0), True],
)
def test_a_timeout_that_cannot_be_waited_is_refused_when_the_stream_is_made(
    timeout: Any,
) -> None:
    # poll() takes at most 2**31 - 1 ms: a longer wait would fail on the worker, later.
    with pytest.raises(ValueError, match="timeouts must be"):
        EventStream("http://127.0.0.1:9/", timeout=timeout)
    with pytest.raises(ValueError, match="timeouts must be"):
        eventstream.request("GET", "http://127.0.0.1:9/", timeout=timeout)


def test_the_longest_timeout_is_taken(server: SSEServer) -> None:
    server.enqueue(Script().event("a"))
    longest = 2147483.647
    with EventStream(server.url, timeout=(longest, longest)) as stream:
        assert next(iter(stream)).data == "a"
