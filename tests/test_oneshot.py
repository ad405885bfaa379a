"""One-shot streaming requests: one response, retried only before its first byte."""

from __future__ import annotations

import functools
import gc
import queue
import random
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

import eventstream
from eventstream import (
    Backoff,
    ConnectError,
    Event,
    HTTPStatusError,
    ReadError,
    RetriesExhausted,
)
from eventstream._transport import configured_session
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


class _GarbledTLSAnswer:
    """A TLS server that reads a whole POST, then answers with bytes that are not a
    TLS record (a broken middlebox, a misconfigured server): the client's TLS layer
    fails after the request was delivered.  Serves any number of connections (one per
    attempt) until closed, recording each request body."""

    def __init__(self) -> None:
        ca = trustme.CA()
        self._ca = ca
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("127.0.0.1").configure_cert(self._context)
        self.bodies: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="test-garbled-tls")
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}/charge"

    def __enter__(self) -> _GarbledTLSAnswer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(WAIT)
        self._listener.close()

    def _serve(self) -> None:
        while not self._done.is_set():
            try:
                raw, _ = self._listener.accept()
            except socket.timeout:
                continue  # bounded: looks at _done again
            raw.settimeout(WAIT)
            with self._context.wrap_socket(raw, server_side=True) as tls:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += tls.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(body) < length:
                    body += tls.recv(65536)
                self.bodies.put(body)
                socket.socket.sendall(tls, b"HTTP/1.1 200 OK\r\n\r\n")  # plaintext, under TLS


def test_a_request_delivered_is_not_sent_again_when_its_answer_fails(tmp_path: Path) -> None:
    # Retried only before the request had its effect: a TLS error in the answer comes
    # after the server took the POST (a payment, a prompt), so it is a ReadError.
    with _GarbledTLSAnswer() as server:
        ca_file = str(tmp_path / "ca.pem")
        server._ca.cert_pem.write_to_path(ca_file)
        stream = eventstream.post(
            server.url,
            data=b"amount=100",
            backoff=FAST,
            session_factory=functools.partial(configured_session, verify=ca_file),
        )
        with pytest.raises(ReadError, match="lost before the response: SSLError"):
            list(stream)
        assert stream.join(WAIT)
    assert server.bodies.get_nowait() == b"amount=100"
    assert server.bodies.empty()  # sent once
