"""Comments (``on_comment``) through a real stream: order with the events, timing,
threads, errors, iteration and one-shot requests.  The parser's side is in
test_parser.py and test_parser_properties.py."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest

import eventstream
from eventstream import Event, EventStream
from eventstream.testing import Script, SSEServer

WAIT = 5.0  # bound on every wait in this file
QUIET = 0.3  # how long "nothing more arrives" is watched for


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def test_comments_and_events_reach_callbacks_in_stream_order(server: SSEServer) -> None:
    server.enqueue(Script().send(b": 0\ndata: a\n\n: 1\ndata: b\n\n: 2\n").hold())
    seen: queue.Queue[tuple[str, str, int]] = queue.Queue()
    stream = EventStream(
        server.url,
        on_event=lambda e: seen.put(("event", e.data, threading.get_ident())),
        on_comment=lambda text: seen.put(("comment", text, threading.get_ident())),
    )
    with stream:
        got = [seen.get(timeout=WAIT) for _ in range(5)]
    assert [(kind, text) for kind, text, _ in got] == [
        ("comment", " 0"),
        ("event", "a"),
        ("comment", " 1"),
        ("event", "b"),
        ("comment", " 2"),
    ]
    (worker,) = {ident for _, _, ident in got}
    assert worker != threading.get_ident()


def test_a_heartbeat_is_reported_when_its_line_ends(server: SSEServer) -> None:
    # No blank line follows: the comment must not wait for one.
    server.enqueue(Script().event("a").send(b": ping\n").hold())
    comments: queue.Queue[str] = queue.Queue()
    with EventStream(server.url, on_comment=comments.put) as stream:
        assert next(iter(stream)).data == "a"
        assert comments.get(timeout=WAIT) == " ping"


def test_iterating_consumer_has_the_events_before_a_comment_and_none_after(
    server: SSEServer,
) -> None:
    server.enqueue(Script().send(b"data: a\n\ndata: b\n\n: mark\ndata: c\n\n").hold())
    got_b, got_c = threading.Event(), threading.Event()
    outcome: queue.Queue[tuple[bool, bool]] = queue.Queue()

    def on_comment(text: str) -> None:
        # The worker waits here: the events before the comment must already be
        # available to the iterating thread, and the one after it must not be.
        outcome.put((got_b.wait(WAIT), got_c.wait(QUIET)))

    with EventStream(server.url, on_comment=on_comment) as stream:
        for event in stream:
            if event.data == "b":
                got_b.set()
            if event.data == "c":
                got_c.set()
                break
        assert outcome.get(timeout=WAIT) == (True, False)


def test_on_comment_that_raises_is_reported_and_the_stream_goes_on(server: SSEServer) -> None:
    server.enqueue(Script().send(b": boom\n").event("after").hold())
    errors: queue.Queue[BaseException] = queue.Queue()

    def on_comment(text: str) -> None:
        raise KeyError(text)

    with EventStream(server.url, on_comment=on_comment, on_error=errors.put) as stream:
        assert next(iter(stream)).data == "after"
        error = errors.get(timeout=WAIT)
    assert isinstance(error, KeyError)
    assert error.args == (" boom",)


def test_a_stream_resumes_after_the_last_event_before_a_comment(server: SSEServer) -> None:
    # Events and comments are handed over in turns; stopping in a comment leaves the
    # resume point at the last event handed over before it, never one after it.
    server.enqueue(Script().send(b"id: 1\ndata: a\n\n: stop here\nid: 2\ndata: b\n\n").hold())
    seen: list[Event] = []
    stream: EventStream

    def on_comment(text: str) -> None:
        stream.stop()

    stream = EventStream(server.url, on_event=seen.append, on_comment=on_comment)
    with stream:
        assert stream.join(WAIT)
    assert [e.data for e in seen] == ["a"]
    assert stream.last_event_id == "1"


def test_one_shot_requests_report_comments(server: SSEServer) -> None:
    server.enqueue(Script().send(b": hello\n").event("a").send(b":bye\n"))
    comments: list[str] = []
    with eventstream.post(server.url, json={"q": 1}, on_comment=comments.append) as stream:
        assert [e.data for e in stream] == ["a"]
    assert comments == [" hello", "bye"]


def test_on_comment_must_be_callable() -> None:
    with pytest.raises(TypeError, match="on_comment"):
        EventStream("http://127.0.0.1:1/", on_comment="print")  # type: ignore[arg-type]
