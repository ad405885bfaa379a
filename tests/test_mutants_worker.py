"""Guarantees of ``_worker`` that mutation testing found unpinned (#13), through a
real server."""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from _reliability import streaming

import eventstream
from eventstream import (
    Backoff,
    Event,
    EventStream,
    HTTPStatusError,
    ReadError,
    ResponseInfo,
    RetriesExhausted,
    StreamError,
)
from eventstream._options import build_options
from eventstream._stop import StopSignal
from eventstream._worker import Worker
from eventstream.testing import Script, SSEServer

WAIT = 5.0


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def test_a_given_last_event_id_with_a_lone_surrogate_is_sent_with_a_replacement(
    server: SSEServer,
) -> None:
    # A resume point read back from JSON ("\ud800" is valid JSON) may hold a lone
    # surrogate, which UTF-8 cannot encode: it goes on the wire as "?" rather than
    # failing every connect with UnicodeEncodeError.
    server.enqueue(Script().event("a").hold())
    with streaming(server.url, last_event_id="7\ud800") as rec:
        assert rec.next_event().data == "a"
    assert rec.all_errors == []
    assert server.wait_for_requests(1)[0].headers["Last-Event-ID"] == "7?"


def test_a_401_after_a_healthy_connection_gets_its_own_immediate_retry(
    server: SSEServer,
) -> None:
    # Rotated credentials expire again later: each expiry gets one retry at once
    # with fresh headers, not only the first one in the stream's life.
    server.enqueue(Script(401), Script().event("a").close(), Script(401))
    server.default = Script().event("b").hold()
    tokens = iter(range(1, 100))
    delays: list[tuple[str, float]] = []
    backoff = Backoff(initial=0.01, maximum=1.0, jitter=0.0)  # doubles per failure
    stream = EventStream(
        server.url,
        headers=lambda: {"Authorization": f"Bearer {next(tokens)}"},
        backoff=backoff,
        on_retry=lambda exc, delay: delays.append((type(exc).__name__, delay)),
    )
    with stream:
        assert [event.data for event in iterate(stream, 2)] == ["a", "b"]
    assert delays == [("HTTPStatusError", 0.0), ("ReadError", 0.01), ("HTTPStatusError", 0.0)]
    sent = [r.headers["Authorization"] for r in server.wait_for_requests(4)]
    assert sent == ["Bearer 1", "Bearer 2", "Bearer 3", "Bearer 4"]


def iterate(stream: EventStream, count: int) -> list[object]:
    events = iter(stream)
    return [next(events) for _ in range(count)]


def test_max_elapsed_allows_quick_failures_and_then_gives_up(server: SSEServer) -> None:
    # Time since the last healthy connection, not anything larger: three quick 503s
    # are well within 5 s and the stream goes on.
    server.enqueue(Script(503), Script(503), Script(503))
    server.default = Script().event("a").hold()
    patient = Backoff(initial=0.01, maximum=0.01, jitter=0.0, max_elapsed=WAIT)
    with EventStream(server.url, backoff=patient) as stream:
        assert next(iter(stream)).data == "a"
    # A server that keeps failing: given up after max_elapsed, not before.
    server.default = Script(503)
    brief = Backoff(initial=0.01, maximum=0.01, jitter=0.0, max_elapsed=0.3)
    with (
        EventStream(server.url, backoff=brief) as stream,
        pytest.raises(RetriesExhausted) as caught,
    ):
        list(stream)
    assert "HTTP 503" in str(caught.value.__cause__)


def test_backoff_grows_over_empty_attempts_and_starts_over_after_one_that_lasted(
    server: SSEServer,
) -> None:
    # Connections that open and end at once are failures in a row; one that stayed
    # open for reset_after (even without an event) was healthy: the next wait is
    # the initial one again.
    backoff = Backoff(initial=0.01, maximum=1.0, jitter=0.0, reset_after=0.5)
    quick = Script().close()
    server.enqueue(quick, quick, quick, Script().pause(0.6).close(), quick)
    server.default = Script().event("done").hold()
    delays: list[float] = []
    stream = EventStream(
        server.url, backoff=backoff, on_retry=lambda exc, delay: delays.append(delay)
    )
    with stream:
        assert next(iter(stream)).data == "done"
    assert delays == [0.01, 0.02, 0.04, 0.01, 0.02]


def test_on_comment_sees_the_resume_point_of_the_events_before_it(server: SSEServer) -> None:
    # Each read holds events and comments; when on_comment runs, last_event_id is
    # the ID of the last event before the comment in the stream, no later one, and
    # a read that held comments leaves it at its last event.
    last, done = threading.Event(), threading.Event()
    server.enqueue(
        Script()
        .send(b": first\n\nid: 1\ndata: a\n\n")
        .send(b"id: 2\ndata: b\n\nid: 3\ndata: c\n\n: second\n\nid: 4\ndata: d\n\n")
        .wait(last)  # the next comment comes in a read of its own
        .send(b": third\n\n")
        .hold()
    )
    seen: list[tuple[str, str]] = []

    def on_event(event: object) -> None:
        if stream.last_event_id == "3":  # "d" is being delivered
            last.set()

    def on_comment(text: str) -> None:
        seen.append((text, stream.last_event_id))
        if text == " third":
            done.set()

    stream = EventStream(server.url, on_event=on_event, on_comment=on_comment)
    with stream:
        assert done.wait(WAIT)
    assert seen == [(" first", ""), (" second", "3"), (" third", "4")]


class RetryRecorder:
    """A worker's sink that records the delays before each reconnect and stops the
    worker after ``count`` of them."""

    wants_comments = False

    def __init__(self, stop: StopSignal, count: int) -> None:
        self.stop = stop
        self.count = count
        self.delays: list[float] = []
        self.ended = threading.Event()

    def opened(self, info: ResponseInfo) -> None:
        pass

    def deliver(self, events: list[Event], last_event_id: str, stop: StopSignal) -> bool:
        return True

    def comment(self, text: str, stop: StopSignal) -> bool:
        return True

    def error(self, exc: BaseException) -> None:
        pass

    def retrying(self, exc: StreamError, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) == self.count:
            self.stop.set()

    def end(self, exc: BaseException | None) -> None:
        self.ended.set()


def test_a_connection_open_for_exactly_reset_after_counts_as_healthy(server: SSEServer) -> None:
    # "Stayed open for reset_after seconds": the bound is included.  With a clock
    # that never moves and reset_after=0, every connection lasted exactly that long,
    # so the backoff starts over after each one.
    server.default = Script().close()
    backoff = Backoff(initial=0.01, maximum=1.0, jitter=0.0, reset_after=0.0)
    options = build_options(
        server.url,
        method="GET",
        params=None,
        headers=None,
        data=None,
        json=None,
        auth=None,
        timeout=WAIT,
        backoff=backoff,
        max_event_size=None,
        session_factory=None,
    )
    stop = StopSignal()
    sink = RetryRecorder(stop, 3)
    worker = Worker(options, stop, sink, clock=lambda: 0.0)
    thread = threading.Thread(target=worker.run, name="test-worker")
    thread.start()
    try:
        assert sink.ended.wait(WAIT)
    finally:
        stop.set()
        thread.join(WAIT)
    assert sink.delays == [0.01, 0.01, 0.01]


def test_a_headers_callable_that_raises_ends_the_stream_saying_so(server: SSEServer) -> None:
    def headers() -> dict[str, str]:
        raise ValueError("token store down")

    with EventStream(server.url, headers=headers) as stream, pytest.raises(StreamError) as caught:
        list(stream)
    assert str(caught.value) == "the headers callable raised ValueError"
    assert caught.value.url == server.url
    assert isinstance(caught.value.__cause__, ValueError)
    assert server.requests == []


def test_a_headers_callable_that_returns_no_mapping_ends_the_stream_saying_so(
    server: SSEServer,
) -> None:
    stream = EventStream(server.url, headers=lambda: [("Authorization", "x")])  # type: ignore[arg-type,return-value]
    with stream, pytest.raises(TypeError) as caught:
        list(stream)
    assert str(caught.value) == "the headers callable must return a mapping, not <class 'list'>"
    assert server.requests == []


def test_the_connect_timeout_bounds_a_tls_handshake_that_never_answers() -> None:
    # The server accepts the connection and never says a byte: the connect timeout,
    # not the (long) read timeout, ends the attempt.
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(WAIT)
        url = f"https://127.0.0.1:{listener.getsockname()[1]}/"
        once = Backoff(max_attempts=1)
        started = time.monotonic()
        stream = EventStream(url, timeout=(0.3, 60.0), backoff=once)
        with stream:
            events = iter(stream)  # starts the stream
            connection, _ = listener.accept()
            with connection, pytest.raises(RetriesExhausted) as caught:
                list(events)
    assert time.monotonic() - started < WAIT
    assert isinstance(caught.value.__cause__, StreamError)


def test_each_read_with_comments_delivers_every_event_once_in_stream_order(
    server: SSEServer,
) -> None:
    # Reads that hold events before, between and after comments: every event reaches
    # on_event once, between the comments around it in the stream, read after read.
    # Catches: _deliver_with_comments starting past the read's first event (lost), or
    # handing over the events before a comment again after it (duplicated).
    piece = b"id: %d\ndata: a\n\n: x\n\nid: %d\ndata: b\n\nid: %d\ndata: c\n\n: y\n\n"
    script = Script()
    for n in range(3):
        script = script.send(piece % (3 * n + 1, 3 * n + 2, 3 * n + 3))
    server.enqueue(script.hold())
    seen: queue.Queue[str] = queue.Queue()
    stream = EventStream(
        server.url,
        on_event=lambda event: seen.put(f"{event.data}{event.id}"),
        on_comment=lambda text: seen.put(text.strip()),
    )
    with stream:
        got = [seen.get(timeout=WAIT) for _ in range(15)]
        assert seen.empty()
    expected = []
    for n in range(3):
        expected += [f"a{3 * n + 1}", "x", f"b{3 * n + 2}", f"c{3 * n + 3}", "y"]
    assert got == expected


def test_an_id_the_server_gave_with_leading_spaces_resumes_without_them(
    server: SSEServer,
) -> None:
    # "id:  7" gives the ID " 7" (one space after the colon is the separator).  HTTP
    # drops whitespace around a field value and requests refuses a value that starts
    # with it: the reconnect sends "7", and no error is raised.
    # Catches: last_event_id_field stripping the right end instead of the left.
    server.enqueue(Script().send(b"id:  7\ndata: a\n\n").close(), Script().event("b").hold())
    with streaming(server.url) as rec:
        assert [event.data for event in rec.take(2)] == ["a", "b"]
    assert rec.all_errors == []
    assert server.wait_for_requests(2)[1].headers["Last-Event-ID"] == "7"


def _messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name.startswith("eventstream")
    ]


def test_the_log_names_the_stream_when_it_connects_again_and_when_it_fails(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A retried failure is a WARNING that says what failed (the error names the URL);
    # the INFO line that says the stream is back names its URL; so does the ERROR
    # line of the failure that ends the stream.
    # Catches: the WARNING without the error; the RetryLog made without the URL; the
    # ERROR line without the URL or the error.
    caplog.set_level(logging.INFO, logger="eventstream")
    server.enqueue(Script(503), Script().event("a").close(), Script(404))
    fast = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    retried: list[BaseException] = []
    stream = EventStream(server.url, backoff=fast, on_retry=lambda e, d: retried.append(e))
    with stream, pytest.raises(HTTPStatusError) as caught:
        list(stream)
    assert "HTTP 503" in str(retried[0])
    assert _messages(caplog, logging.WARNING) == [f"{retried[0]}; reconnecting in 0.0 s"]
    assert _messages(caplog, logging.INFO) == [f"{server.url}: connected again (HTTP 200)"]
    assert _messages(caplog, logging.ERROR) == [f"{server.url}: the stream failed: {caught.value}"]
    assert "HTTP 404" in str(caught.value)


def test_on_retry_after_a_clean_end_says_the_server_ended_the_stream(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The body ended without an error: the stream reconnects after the initial delay,
    # on_retry says why, with the stream's URL, and the log says it at DEBUG (it is
    # no failure: no WARNING).
    # Catches: that ReadError made without its message or its URL; the DEBUG line
    # without its URL or delay.
    caplog.set_level(logging.DEBUG, logger="eventstream")
    server.enqueue(Script().event("a").close())
    server.default = Script().hold()
    retried: queue.Queue[tuple[BaseException, float]] = queue.Queue()
    fast = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    with EventStream(
        server.url, backoff=fast, on_event=lambda e: None, on_retry=lambda e, d: retried.put((e, d))
    ):
        error, delay = retried.get(timeout=WAIT)
    assert isinstance(error, ReadError)
    assert str(error) == "the server ended the stream"
    assert error.url == server.url
    assert delay == 0.01
    said = _messages(caplog, logging.DEBUG)
    assert f"{server.url}: the body ended; reconnecting in 0.010 s" in said, said
    assert _messages(caplog, logging.WARNING) == []


def test_a_one_shot_request_makes_exactly_retries_more_attempts(server: SSEServer) -> None:
    # retries=2: two 503s are retried and the third attempt succeeds; a server that
    # keeps answering 503 is given up after those three attempts, not fewer.
    # Catches: Worker._limit counting the first attempt as a retry.
    fast = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    server.enqueue(Script(503), Script(503), Script().event("a").close())
    with eventstream.get(server.url, retries=2, backoff=fast) as stream:
        assert [event.data for event in stream] == ["a"]
    assert len(server.wait_for_requests(3)) == 3
    server.default = Script(503)
    with (
        eventstream.get(server.url, retries=2, backoff=fast) as stream,
        pytest.raises(RetriesExhausted) as caught,
    ):
        list(stream)
    assert len(server.wait_for_requests(6)) == 6
    assert str(caught.value) == (
        "gave up after 3 consecutive failed attempts (retries=2); the last: "
        f"HTTPStatusError: HTTP 503 Service Unavailable from {server.url_for('/')}"
    )
    assert caught.value.url == server.url
    assert isinstance(caught.value.__cause__, HTTPStatusError)
    assert caught.value.__cause__.status_code == 503


def test_a_one_shot_request_is_never_sent_again_once_its_body_began(server: SSEServer) -> None:
    # Retries are for failures before the answer: the body began (an event came),
    # then the connection dropped; the request (maybe a POST with an effect) is not
    # replayed, whatever retries allows, and the consumer gets the read error.
    # Catches: _loop asking _may_retry about anything but the error that happened.
    fast = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    server.enqueue(Script().event("a").drop())
    server.default = Script().event("again").close()
    got: list[str] = []
    with (
        eventstream.post(server.url, retries=3, backoff=fast) as stream,
        pytest.raises(ReadError),
    ):
        got.extend(event.data for event in stream)
    assert got == ["a"]
    assert len(server.requests) == 1


def test_every_connect_sends_the_params_body_and_credentials_given(server: SSEServer) -> None:
    # The query parameters, the body and the credentials go with every attempt, the
    # reconnect after a clean end included.
    # Catches: _attempt leaving params, data or auth out of the request.
    server.enqueue(Script().event("a").close())
    server.default = Script().event("b").hold()
    fast = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    stream = EventStream(
        server.url,
        method="POST",
        params={"topic": "x y"},
        data=b"subscribe",
        auth=("user", "secret"),
        backoff=fast,
    )
    with stream:
        assert [event.data for event in iterate(stream, 2)] == ["a", "b"]
    for request in server.wait_for_requests(2):
        assert (request.method, request.query, request.body) == ("POST", "topic=x+y", b"subscribe")
        assert request.headers["Authorization"] == "Basic dXNlcjpzZWNyZXQ="


def test_the_read_timeout_given_ends_a_silent_connection_and_on_open_sees_the_headers(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    # timeout=(connect, read): a body silent for longer than the read timeout is a
    # ReadError and the stream connects again.  Each connect is logged at DEBUG with
    # the URL, and on_open gets the response's headers.
    # Catches: _attempt leaving the read timeout out of the request (the 60 s default
    # applied), the "connecting to" DEBUG line without its URL, ResponseInfo without
    # the headers.
    caplog.set_level(logging.DEBUG, logger="eventstream")
    server.enqueue(Script(headers={"X-Test": "1"}).event("a").hold())
    server.default = Script().hold()
    fast = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    opened: queue.Queue[ResponseInfo] = queue.Queue()
    retried: queue.Queue[BaseException] = queue.Queue()
    stream = EventStream(
        server.url,
        timeout=(WAIT, 0.2),
        backoff=fast,
        on_event=lambda e: None,
        on_open=opened.put,
        on_retry=lambda e, d: retried.put(e),
    )
    with stream:
        info = opened.get(timeout=WAIT)
        error = retried.get(timeout=WAIT)
    assert info.headers["X-Test"] == "1"
    assert isinstance(error, ReadError)
    assert f"connecting to {server.url}" in _messages(caplog, logging.DEBUG)


def test_the_resume_header_goes_out_spelled_as_the_sse_spec_spells_it(
    server: SSEServer,
) -> None:
    # HTTP field names ignore case, but servers and proxies written against the SSE
    # spec (and browsers' requests) often match "Last-Event-ID" exactly, on the first
    # connect and on a reconnect alike.
    # Catches: _request_headers spelling the name in lower or upper case.
    server.enqueue(Script().event("a", id="1").close())
    server.default = Script().event("b").hold()
    with streaming(server.url, last_event_id="0") as rec:
        assert [event.data for event in rec.take(2)] == ["a", "b"]
    names = [
        [name for name, _ in request.headers.fields if name.lower() == "last-event-id"]
        for request in server.wait_for_requests(2)
    ]
    assert names == [["Last-Event-ID"], ["Last-Event-ID"]]
