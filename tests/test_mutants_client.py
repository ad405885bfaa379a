"""Guarantees of ``_client`` that mutation testing found unpinned (#13): what
``stop()`` and ``join()`` wait for, and for how long, while a worker is still busy
ending (here: closing a session that takes as long as the test says)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator

import pytest
import requests

import eventstream
from eventstream import Backoff, EventStream
from eventstream.testing import Script, SSEServer

WAIT = 5.0
SHORT = 0.05


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        srv.default = Script().event("hello", id="1").hold()
        yield srv


class HeldClose:
    """A ``session_factory`` whose sessions finish closing only once ``release`` is
    set (or after WAIT): the worker is then busy ending for as long as the test wants."""

    def __init__(self) -> None:
        self.closing = threading.Event()
        self.release = threading.Event()

    def __call__(self) -> requests.Session:
        owner = self

        class Session(requests.Session):
            def close(self) -> None:
                owner.closing.set()
                owner.release.wait(WAIT)
                super().close()

        return Session()


def _busy_ending(server: SSEServer, sessions: HeldClose) -> EventStream:
    """A stream whose worker got an event, was told to stop, and is now closing."""
    got = threading.Event()
    stream = EventStream(server.url, on_event=lambda e: got.set(), session_factory=sessions)
    stream.start()
    assert got.wait(WAIT)
    started = time.monotonic()
    assert stream.stop() is False  # signals only: the worker has not exited yet
    assert time.monotonic() - started < WAIT / 2, "stop() without a timeout waited"
    assert sessions.closing.wait(WAIT)
    return stream


def test_stop_and_join_wait_no_longer_than_their_timeout_for_a_busy_worker(
    server: SSEServer,
) -> None:
    sessions = HeldClose()
    stream = _busy_ending(server, sessions)
    try:
        for wait in (stream.stop, stream.join):
            started = time.monotonic()
            assert wait(SHORT) is False, f"{wait.__name__}({SHORT}) said the worker exited"
            assert time.monotonic() - started < WAIT / 2, f"{wait.__name__} ignored its timeout"
        assert stream.join(0) is False
    finally:
        sessions.release.set()
    assert stream.join(WAIT) is True
    assert stream.stop() is True  # exited: says so without waiting
    assert stream.stop(SHORT) is True


def test_a_stream_never_started_has_no_worker_to_wait_for() -> None:
    stream = EventStream("http://127.0.0.1:9/never")
    assert stream.join() is True
    assert stream.join(0) is True
    assert stream.stop() is True
    assert stream.stop(SHORT) is True


def test_join_and_stop_from_a_callback_do_not_wait_for_their_own_thread(
    server: SSEServer,
) -> None:
    # Even with a timeout: the worker cannot wait for itself, so join() and stop()
    # return False at once (it has not exited), and the worker then exits.
    results: list[bool] = []
    done = threading.Event()

    def on_event(event: object) -> None:
        started = time.monotonic()
        results.append(stream.join(WAIT))
        results.append(stream.stop(WAIT))
        results.append(time.monotonic() - started < WAIT / 2)
        done.set()

    stream = EventStream(server.url, on_event=on_event)
    stream.start()
    assert done.wait(WAIT)
    assert stream.join(WAIT)
    assert results == [False, False, True]


def test_repr_names_the_class_the_url_without_credentials_and_the_state(
    server: SSEServer,
) -> None:
    url = server.url.replace("http://", "http://user:secret@")
    stream = EventStream(url)
    assert repr(stream) == f"<EventStream {server.url!r} stopped>"
    with stream:
        assert next(iter(stream)).data == "hello"
        assert repr(stream) == f"<EventStream {server.url!r} running>"
    assert repr(stream) == f"<EventStream {server.url!r} stopped>"


def test_iterating_a_callback_stream_says_why() -> None:
    stream = EventStream("http://127.0.0.1:9/", on_event=lambda e: None)
    with pytest.raises(RuntimeError) as caught:
        iter(stream)
    assert str(caught.value) == "this stream delivers to on_event; it cannot be iterated"


def test_params_go_into_the_query_of_every_connect(server: SSEServer) -> None:
    server.enqueue(Script().event("a").close())
    backoff = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    with EventStream(server.url, params={"topic": "a b", "n": 2}, backoff=backoff) as stream:
        assert [event.data for event in itertools.islice(stream, 2)] == ["a", "hello"]
    assert [r.query for r in server.wait_for_requests(2)] == ["topic=a+b&n=2"] * 2


def test_form_data_is_sent_again_on_every_connect(server: SSEServer) -> None:
    server.enqueue(Script().event("a").close())
    backoff = Backoff(initial=0.01, maximum=0.01, jitter=0.0)
    stream = EventStream(server.url, method="POST", data={"q": "x y"}, backoff=backoff)
    with stream:
        assert [event.data for event in itertools.islice(stream, 2)] == ["a", "hello"]
    requests = server.wait_for_requests(2)
    assert [r.body for r in requests] == [b"q=x+y"] * 2
    assert [r.method for r in requests] == ["POST"] * 2


def test_an_event_stream_sends_get_with_its_auth_and_passes_on_its_comments(
    server: SSEServer,
) -> None:
    # The defaults and options a user relies on reach the request and the callbacks.
    # Catches: EventStream.__init__ with another default method, or dropping auth or
    # on_comment on the way to the worker.
    server.enqueue(Script().comment("ping").event("a").hold())
    comments: list[str] = []
    got = threading.Event()
    stream = EventStream(
        server.url,
        auth=("user", "secret"),
        on_event=lambda event: got.set(),
        on_comment=comments.append,
    )
    with stream:
        assert got.wait(WAIT)
    assert comments == [" ping"]
    request = server.wait_for_requests(1)[0]
    assert request.method == "GET"
    assert request.headers["Authorization"] == "Basic dXNlcjpzZWNyZXQ="


def test_leaving_the_loop_over_a_one_shot_stream_stops_it(server: SSEServer) -> None:
    # A one-shot stream belongs to its loop: a break ends it (and closes its
    # connection); a long-lived one goes on, for the next loop.
    # Catches: the loop's end not stopping a one-shot (no owner given to _iterate).
    one_shot = eventstream.get(server.url)
    for event in one_shot:
        assert event.data == "hello"
        break
    assert one_shot.join(WAIT)
    assert not one_shot.running
    stream = EventStream(server.url).start()
    try:
        for _event in stream:
            break
        assert stream.running
    finally:
        assert stream.stop(WAIT)
