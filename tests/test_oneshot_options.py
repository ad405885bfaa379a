"""One-shot requests: every option reaches the request, and ``wait_open`` keeps its word.

Each test here is pinned by a mutant of ``_oneshot`` that mutmut found surviving: an
option of ``request()`` dropped on its way to the worker, a method name garbled, a
bound or a message of ``wait_open`` lost.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import eventstream
from eventstream import Backoff, ProtocolError, ReadError, ResponseInfo, StreamError
from eventstream.testing import Script, SSEServer

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
WAIT = 5.0


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def test_get_sends_a_get_and_post_a_post(server: SSEServer) -> None:
    server.default = Script().event("a").close()
    for call in (eventstream.get, eventstream.post):
        with call(server.url) as stream:
            assert [e.data for e in stream] == ["a"]
    assert [r.method for r in server.requests] == ["GET", "POST"]


def test_params_headers_data_and_auth_reach_the_server(server: SSEServer) -> None:
    server.enqueue(Script().event("a").close())
    stream = eventstream.post(
        server.url_for("/ask"),
        params={"model": "m1"},
        headers={"X-Tenant": "t7"},
        data=b"the body",
        auth=("user", "secret"),
    )
    with stream:
        assert [e.data for e in stream] == ["a"]
    (request,) = server.requests
    assert request.target == "/ask?model=m1"
    assert request.headers["X-Tenant"] == "t7"
    assert request.body == b"the body"
    assert request.headers["Authorization"] == "Basic dXNlcjpzZWNyZXQ="


def test_the_session_factory_makes_the_session(server: SSEServer) -> None:
    server.enqueue(Script().event("a").close())

    def make() -> requests.Session:
        session = requests.Session()
        session.headers["X-From-Factory"] = "yes"
        return session

    with eventstream.get(server.url, session_factory=make) as stream:
        assert [e.data for e in stream] == ["a"]
    assert server.requests[0].headers["X-From-Factory"] == "yes"


def test_on_open_and_on_retry_are_called_with_the_given_backoff(server: SSEServer) -> None:
    server.enqueue(Script(503), Script().event("ok").close())
    opened: list[int] = []
    retried: list[tuple[StreamError, float]] = []

    def on_open(info: ResponseInfo) -> None:
        opened.append(info.status_code)

    def on_retry(error: StreamError, delay: float) -> None:
        retried.append((error, delay))

    stream = eventstream.get(
        server.url, backoff=FAST, retries=1, on_open=on_open, on_retry=on_retry
    )
    with stream:
        assert [e.data for e in stream] == ["ok"]
    assert opened == [200]
    ((error, delay),) = retried
    assert isinstance(error, eventstream.HTTPStatusError)
    assert delay <= FAST.maximum  # the caller's backoff, not the default (1 s and up)


def test_queue_size_is_the_callers(server: SSEServer) -> None:
    # Checked where the stream is made: a bad size is refused at once, in this thread.
    with pytest.raises(ValueError, match="queue_size"):
        eventstream.get(server.url, queue_size=0)
    assert server.requests == []


@pytest.mark.parametrize("retries", [True, 1.5, "2", -1])
def test_retries_must_be_an_int_of_zero_or_more(retries: Any) -> None:
    with pytest.raises(ValueError, match=r"retries must be an int >= 0, not "):
        eventstream.request("GET", "http://127.0.0.1:9/", retries=retries)


def test_zero_retries_is_one_attempt(server: SSEServer) -> None:
    server.default = Script(503)
    stream = eventstream.get(server.url, retries=0, backoff=FAST)
    with stream, pytest.raises(eventstream.RetriesExhausted):
        list(stream)
    assert len(server.requests) == 1


def test_wait_open_gives_up_after_its_timeout(server: SSEServer) -> None:
    # The server reads the request and never answers; the read timeout is far later.
    server.enqueue(Script.no_response())
    with eventstream.get(server.url, timeout=(WAIT, 3.0), retries=0) as stream:
        started = time.monotonic()
        with pytest.raises(TimeoutError, match=r"^no response within 0\.2 s$"):
            stream.wait_open(0.2)
        assert time.monotonic() - started < 2.0


def test_wait_open_after_a_stop_before_the_response_says_so(server: SSEServer) -> None:
    # A stop during the wait for the headers ends that wait at once, long before the
    # read timeout (the worker waits on the socket and the stop signal's waker).
    server.enqueue(Script.no_response())
    with eventstream.get(server.url, timeout=(WAIT, 60.0)) as stream:
        server.wait_for_requests(1, WAIT)
        assert stream.stop(WAIT)
        with pytest.raises(
            RuntimeError, match=r"^the stream was stopped before the response arrived$"
        ):
            stream.wait_open(WAIT)


def test_a_one_shot_request_sends_no_last_event_id_and_never_reconnects(
    server: SSEServer,
) -> None:
    server.enqueue(Script().event("a", id="7").close())
    server.default = Script().event("must not be fetched").close()
    events: queue.Queue[str] = queue.Queue()
    stream = eventstream.get(server.url, on_event=lambda e: events.put(e.data))
    assert stream.join(WAIT)
    assert events.get_nowait() == "a"
    assert events.empty()
    (request,) = server.requests
    assert "Last-Event-ID" not in request.headers


def test_a_failure_after_open_is_final_and_reported(server: SSEServer) -> None:
    server.enqueue(Script().event("a").drop())
    stream = eventstream.get(server.url, retries=3, backoff=FAST)
    with stream, pytest.raises(ReadError):
        list(stream)
    assert len(server.requests) == 1


def test_on_error_on_comment_and_max_event_size_reach_the_worker(server: SSEServer) -> None:
    # An event over the size cap, one within it, then a comment: the big event is
    # skipped and reported to on_error, the small one delivered, the comment goes to
    # on_comment.
    # Catches: request() dropping on_error, on_comment or max_event_size on the way.
    server.default = Script().event("x" * 200, id="1").event("small", id="2").comment("c").close()
    events: list[str] = []
    comments: list[str] = []
    errors: list[BaseException] = []
    stream = eventstream.post(
        server.url,
        max_event_size=100,
        on_event=lambda event: events.append(event.data),
        on_error=errors.append,
        on_comment=comments.append,
    )
    with stream:
        assert stream.join(WAIT)
    assert events == ["small"]
    assert comments == [" c"]
    assert [type(error) for error in errors] == [ProtocolError]
