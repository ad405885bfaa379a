"""One-shot streaming requests: one response, retried only before its first byte."""

from __future__ import annotations

import gc
import queue
import random
import threading
import time
from collections.abc import Iterator

import pytest

import eventstream
from eventstream import (
    Backoff,
    ConnectError,
    Event,
    HTTPStatusError,
    ReadError,
    RetriesExhausted,
)
from eventstream.testing import Script, SSEServer

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
WAIT = 5.0


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("eventstream-worker-")]


def test_post_streams_the_answer_and_ends_with_the_body(server: SSEServer) -> None:
    server.enqueue(Script().event("thinking").event("done", event="end").close())
    with eventstream.post(server.url, json={"prompt": "hi"}) as stream:
        events = list(stream)
    assert events == [Event("message", "thinking"), Event("end", "done")]
    (request,) = server.requests
    assert request.method == "POST"
    assert request.body == b'{"prompt": "hi"}'
    assert request.headers["Accept"] == "text/event-stream"


def test_status_and_headers_are_available_once_open(server: SSEServer) -> None:
    server.enqueue(Script(headers={"X-Request-Id": "abc"}).event("a").hold())
    with eventstream.get(server.url) as stream:
        info = stream.wait_open(WAIT)
        assert info.status_code == 200
        assert info.headers["x-request-id"] == "abc"
        assert stream.response is info


def test_wait_open_raises_the_failure(server: SSEServer) -> None:
    server.enqueue(Script(404).send(b"nope"))
    with eventstream.get(server.url) as stream:
        with pytest.raises(HTTPStatusError):
            stream.wait_open(WAIT)
        with pytest.raises(HTTPStatusError):
            list(stream)


def test_204_is_an_empty_answer(server: SSEServer) -> None:
    server.enqueue(Script(204))
    with eventstream.get(server.url) as stream:
        assert list(stream) == []
        assert stream.wait_open(WAIT).status_code == 204


def test_retried_before_the_first_byte_on_retryable_statuses(server: SSEServer) -> None:
    server.enqueue(Script(503), Script(429), Script().event("ok").close())
    with eventstream.post(server.url, data=b"x", retries=2, backoff=FAST) as stream:
        assert [e.data for e in stream] == ["ok"]
    assert len(server.requests) == 3


def test_retries_are_bounded(server: SSEServer) -> None:
    server.default = Script(500)
    stream = eventstream.post(server.url, retries=1, backoff=FAST)
    with stream, pytest.raises(RetriesExhausted) as info:
        list(stream)
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert len(server.requests) == 2


def test_never_replayed_after_the_body_started(server: SSEServer) -> None:
    server.enqueue(Script().event("partial answer").drop())
    server.default = Script().event("must not be fetched").close()
    got: list[str] = []

    def consume(stream: eventstream.OneShotStream) -> None:
        got.extend(event.data for event in stream)

    stream = eventstream.post(server.url, retries=5, backoff=FAST)
    with stream, pytest.raises(ReadError):
        consume(stream)
    assert got == ["partial answer"]
    assert len(server.requests) == 1


def test_header_timeout_is_not_retried(server: SSEServer) -> None:
    # The server may have acted on the request: a read failure is final.
    server.enqueue(Script.no_response())
    stream = eventstream.post(server.url, retries=3, timeout=(5.0, 0.3), backoff=FAST)
    with stream, pytest.raises(ReadError):
        list(stream)
    assert len(server.requests) == 1


def test_connect_errors_are_retried_then_exhausted() -> None:
    with SSEServer() as closed:
        url = closed.url
    stream = eventstream.get(url, retries=2, backoff=FAST)
    with stream, pytest.raises(RetriesExhausted) as info:
        list(stream)
    assert isinstance(info.value.__cause__, ConnectError)


def test_fatal_4xx_is_not_retried(server: SSEServer) -> None:
    server.default = Script(400)
    stream = eventstream.post(server.url, retries=3, backoff=FAST)
    with stream, pytest.raises(HTTPStatusError):
        list(stream)
    assert len(server.requests) == 1


def test_callbacks_instead_of_iterating(server: SSEServer) -> None:
    server.enqueue(Script().event("a").event("b").close())
    seen: queue.Queue[str] = queue.Queue()
    stream = eventstream.post(server.url, on_event=lambda e: seen.put(e.data))
    assert stream.join(WAIT)
    assert [seen.get_nowait(), seen.get_nowait()] == ["a", "b"]


def test_breaking_out_of_the_loop_stops_the_worker(server: SSEServer) -> None:
    server.default = Script().event("a").event("b").hold()
    stream = eventstream.get(server.url)
    for _ in stream:
        break
    assert stream.join(WAIT)


def test_abandoned_calls_leak_nothing(server: SSEServer) -> None:
    script = Script()
    for i in range(20):
        script = script.event(str(i))
    server.default = script.hold()
    rng = random.Random(3)
    for n in range(1000):
        stream = eventstream.post(server.url, json={"n": n})
        how = rng.randrange(4)
        if how == 0:  # dropped at once, unread
            del stream
        elif how == 1:  # a loop left early
            leave_at = rng.randrange(5)
            for i, _ in enumerate(stream):
                if i == leave_at:
                    break
        elif how == 2:  # a with block left early
            with stream:
                next(iter(stream))
        else:  # stopped from here
            stream.stop()
    gc.collect()
    for thread in worker_threads():
        thread.join(WAIT)
    assert worker_threads() == []


def test_request_rejects_bad_retries() -> None:
    with pytest.raises(ValueError, match="retries"):
        eventstream.request("GET", "http://127.0.0.1:9/", retries=-1)


def test_a_finished_request_is_never_sent_again(server: SSEServer) -> None:
    server.enqueue(Script().event("only").close())
    stream = eventstream.post(server.url, data=b"charge the card")
    assert stream.join(WAIT)  # the whole answer arrived before anyone iterated
    with stream:
        assert [e.data for e in stream] == ["only"]
    stream.start()
    assert stream.join(WAIT)
    assert len(server.requests) == 1


def test_iterating_an_unnamed_request_reads_the_whole_answer(server: SSEServer) -> None:
    server.enqueue(Script().event("a").event("b").close())
    got = []
    for event in eventstream.post(server.url):
        gc.collect()
        got.append(event.data)
    assert got == ["a", "b"]


def test_two_retries_by_default(server: SSEServer) -> None:
    server.enqueue(Script(503), Script(503), Script().event("ok").close())
    with eventstream.get(server.url, backoff=FAST) as stream:
        assert [e.data for e in stream] == ["ok"]
    assert len(server.requests) == 3
    server.enqueue(Script(503), Script(503), Script(503), Script().event("late").close())
    stream = eventstream.get(server.url, backoff=FAST)
    with stream, pytest.raises(RetriesExhausted):
        list(stream)
    assert len(server.requests) == 6


def test_wait_open_gives_up_after_its_timeout(server: SSEServer) -> None:
    server.enqueue(Script.no_response())
    with eventstream.get(server.url, timeout=(5.0, 1.0), retries=0) as stream:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            stream.wait_open(0.1)
        assert time.monotonic() - started < 0.9  # not the read timeout's end
