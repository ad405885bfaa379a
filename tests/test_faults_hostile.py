"""Hostile streams and hostile consumers, through a real server.

Invalid UTF-8, NUL bytes and odd IDs, a line that never ends, floods of tiny
events, comments and blank lines; callbacks that raise and a consumer that stops
reading.  The client must deliver exactly what the spec says, keep memory bounded
by its caps, report problems as errors of its own hierarchy, and go on.
"""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import ClassVar

import pytest
from _reliability import FAST, WAIT, streaming, take, watchdog

import eventstream
from eventstream import (
    Event,
    EventStream,
    Parser,
    ProtocolError,
    StreamError,
    _control,
)
from eventstream._delivery import Channel
from eventstream._stop import StopSignal
from eventstream.testing import Script, SSEServer


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def blob_script(blob: bytes, piece: int = 64 * 1024) -> Script:
    """A script sending ``blob`` in writes of ``piece`` bytes, then ending the body."""
    script = Script()
    for start in range(0, len(blob), piece):
        script = script.send(blob[start : start + piece])
    return script.close()


def one_shot_events(url: str, seconds: float = 60.0, **options: object) -> list[Event]:
    """Every event of one response (the body ends the stream), within ``seconds``."""
    stream = eventstream.get(url, **options)
    with stream, watchdog(stream, seconds) as fired:
        events = list(stream)
    assert not fired.is_set(), "the stream did not end in time"
    return events


# -- bytes that are not what they should be ---------------------------------------------


@pytest.mark.parametrize(
    ("pieces", "expected"),
    [
        ([b"data: \xff\xfe ok\n\n"], Event("message", "\ufffd\ufffd ok")),
        ([b"data: caf\xc3\n\n"], Event("message", "caf\ufffd")),
        ([b"data: \xe2\x82", b"\xac\n\n"], Event("message", "\u20ac")),  # split mid-character
        ([b"data: \xed\xa0\x80\n\n"], Event("message", "\ufffd\ufffd\ufffd")),  # a surrogate
        ([b"data: \xc0\xaf\n\n"], Event("message", "\ufffd\ufffd")),  # overlong "/"
        ([b"event: \xff\ndata: x\n\n"], Event("\ufffd", "x")),
        ([b"data: a\0b\n\n"], Event("message", "a\0b")),
        ([b"\0: not a comment\ndata: x\n\n"], Event("message", "x")),
        ([b": \0\xff\ndata: x\0\n\n"], Event("message", "x\0")),
        ([b"event: \0\ndata: x\n\n"], Event("\0", "x")),
    ],
    ids=[
        "invalid-bytes",
        "truncated-sequence",
        "split-sequence",
        "surrogate",
        "overlong",
        "invalid-event-type",
        "nul-in-data",
        "nul-field-name",
        "nul-in-comment",
        "nul-event-type",
    ],
)
def test_invalid_utf8_and_nul_bytes_are_delivered_as_the_spec_says(
    server: SSEServer, pieces: list[bytes], expected: Event
) -> None:
    script = Script()
    for piece in pieces:
        script = script.send(piece)
    server.enqueue(script.event("tail").close())
    assert one_shot_events(server.url, WAIT) == [expected, Event("message", "tail")]


@pytest.mark.parametrize(
    ("sent_id", "on_the_wire"),
    [
        (b"\xe2\x82\xac5", "\u20ac5".encode()),  # not latin-1: sent as UTF-8
        (b"\xff", "\ufffd".encode()),  # invalid UTF-8: U+FFFD, as UTF-8
        (b"  7", b"7"),  # HTTP drops leading whitespace of a field value
        (b"\t8", b"8"),
        (b"\x1f9", b"9"),
        (b"caf\xc3\xa9", "caf\u00e9".encode()),
    ],
    ids=["euro", "invalid", "leading-spaces", "leading-tab", "leading-control", "latin-1"],
)
def test_any_server_id_can_be_sent_back_on_reconnect(
    server: SSEServer, sent_id: bytes, on_the_wire: bytes
) -> None:
    server.enqueue(Script().send(b"id:" + sent_id + b"\ndata: a\n\n").drop())
    server.enqueue(Script().event("b").hold())
    with streaming(server.url) as rec:
        assert [e.data for e in rec.take(2)] == ["a", "b"]
    # The test server reads header fields as latin-1: get the bytes back.
    resumed = server.wait_for_requests(2)[1].headers["Last-Event-ID"].encode("latin-1")
    assert resumed == on_the_wire


def test_a_given_last_event_id_with_any_character_is_sent_as_utf8(server: SSEServer) -> None:
    server.enqueue(Script().event("a").hold())
    with streaming(server.url, last_event_id=" \u20ac \ufffd") as rec:
        assert rec.next_event().data == "a"
    sent = server.wait_for_requests(1)[0].headers["Last-Event-ID"].encode("latin-1")
    assert sent == "\u20ac \ufffd".encode()


def test_an_id_with_nul_is_ignored_and_never_sent(server: SSEServer) -> None:
    server.enqueue(Script().event("a", id="1").send(b"id: 2\0x\ndata: b\n\n").drop())
    server.enqueue(Script().event("c").hold())
    with streaming(server.url) as rec:
        events = rec.take(3)
    assert events == [Event("message", data, "1") for data in ("a", "b", "c")]
    assert server.wait_for_requests(2)[1].headers["Last-Event-ID"] == "1"


# -- floods -----------------------------------------------------------------------------


def test_a_line_that_never_ends_hits_the_cap_and_memory_stays_bounded(
    server: SSEServer,
) -> None:
    cap = 64 * 1024
    piece = b"x" * (64 * 1024)
    pieces = 512  # 32 MiB on one line, 512 times the cap
    server.enqueue(Script().event("before", id="1").send(b"data: ").live())
    with streaming(server.url, max_event_size=cap) as rec:
        assert rec.next_event().data == "before"
        conn = server.wait_for_connection()
        tracemalloc.start()
        try:
            for _ in range(pieces):
                conn.send(piece)  # the same bytes object each time: nothing piles up here
            conn.send(b"\n\nid: 2\ndata: after\n\n")
            after = rec.events.get(timeout=30.0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        errors = list(rec.all_errors)
    assert after == Event("message", "after", "2")
    assert [type(e) for e in errors] == [ProtocolError]
    # Server and client together, while 32 MiB went through: a few reads' worth.
    assert peak < 4 * 1024 * 1024, f"peak {peak} bytes"


def _tiny_events(server: SSEServer, n: int) -> None:
    server.enqueue(blob_script(b"data:x\n\n" * n))
    count = 0
    stream = eventstream.get(server.url)
    with stream, watchdog(stream, 120.0) as fired:
        for event in stream:
            assert event.data == "x"
            count += 1
    assert not fired.is_set()
    assert count == n


def test_a_million_tiny_events_are_all_delivered(server: SSEServer) -> None:
    _tiny_events(server, 1_000_000)  # 8 MB of "data:x\n\n": about 2 s


def test_a_comment_flood_delivers_only_the_events(server: SSEServer) -> None:
    flood = b": keep-alive\n" * 160_000  # 2 MiB of comment lines, no blank line
    body = b"data: 1\n\n" + flood + b"\n" + b"data: 2\n\n" + flood + b"data: 3\n\n"
    server.enqueue(blob_script(body))
    errors: list[BaseException] = []
    events = one_shot_events(server.url, on_error=errors.append)
    assert [e.data for e in events] == ["1", "2", "3"]
    assert errors == []


def test_a_flood_of_comment_blocks_never_reaches_a_small_cap(server: SSEServer) -> None:
    flood = b":\n\n" * 500_000  # each keep-alive is a block of its own
    server.enqueue(blob_script(b"data: 1\n\n" + flood + b"data: 2\n\n"))
    errors: list[BaseException] = []
    events = one_shot_events(server.url, max_event_size=1024, on_error=errors.append)
    assert [e.data for e in events] == ["1", "2"]
    assert errors == []


def test_comment_lines_past_the_cap_skip_that_block_and_go_on(server: SSEServer) -> None:
    # Comments belong to the block they are in: a block over the cap is skipped,
    # reported, and the stream goes on with the next block.
    flood = b": c\n" * 100_000
    server.enqueue(blob_script(b"data: 1\n\n" + flood + b"data: lost\n\ndata: 2\n\n"))
    errors: list[BaseException] = []
    events = one_shot_events(server.url, max_event_size=64 * 1024, on_error=errors.append)
    assert [e.data for e in events] == ["1", "2"]
    assert [type(e) for e in errors] == [ProtocolError]


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize(
    ("cap", "size"),
    [(None, 4 * 1024 * 1024), (1024, 256 * 1024)],
    ids=["no-cap-4MiB", "1KiB-cap-256KiB"],
)
def test_an_endless_run_of_blank_lines_dispatches_nothing(
    server: SSEServer, line_end: bytes, cap: int | None, size: int
) -> None:
    blanks = line_end * (size // len(line_end))
    server.enqueue(blob_script(b"data: 1\n\n" + blanks + b"data: 2\n\n" + blanks))
    errors: list[BaseException] = []
    events = one_shot_events(server.url, max_event_size=cap, on_error=errors.append)
    assert [e.data for e in events] == ["1", "2"]
    assert errors == []


def _parse_seconds(body: bytes, cap: int | None) -> float:
    """CPU seconds of this thread to parse ``body`` in 64 KiB reads."""
    parser = Parser(max_event_size=cap)
    started = time.thread_time()
    for start in range(0, len(body), 64 * 1024):
        parser.feed(body[start : start + 64 * 1024])
    return time.thread_time() - started


@pytest.mark.parametrize(
    "block",
    [b"\n", b"\r\n", b":\n\n", b"data:x\n\n"],
    ids=["blank-lines", "crlf-blank-lines", "comment-blocks", "tiny-events"],
)
def test_a_small_cap_does_not_make_tiny_blocks_slow(block: bytes) -> None:
    # Reads larger than the cap take the parser's checked path, which once cost
    # one Python call per block: some 15 times slower on a flood of blank lines.
    # A ratio of CPU times of this thread, so the machine's speed and load cancel.
    body = block * (512 * 1024 // len(block))
    uncapped = min(_parse_seconds(body, None) for _ in range(3))
    capped = min(_parse_seconds(body, 1024) for _ in range(3))
    assert capped < 4 * max(uncapped, 0.005), f"{capped:.3f} s capped, {uncapped:.3f} s not"


# -- hostile callbacks ---------------------------------------------------------------------


def test_callbacks_that_raise_are_reported_and_lose_nothing(server: SSEServer) -> None:
    server.enqueue(Script().event("0", id="0").event("1", id="1").event("2", id="2").drop())
    server.enqueue(Script().event("3", id="3").hold())
    seen: list[str] = []
    reported: list[BaseException] = []
    done = threading.Event()

    def on_event(event: Event) -> None:
        seen.append(event.data)
        if event.data == "3":
            done.set()
        if int(event.data) % 2 == 0:
            raise KeyError(f"consumer bug at {event.data}")

    def on_open(info: object) -> None:
        raise RuntimeError("on_open bug")

    def on_error(exc: BaseException) -> None:
        reported.append(exc)
        raise ValueError("on_error bug")  # must not kill the stream either

    stream = EventStream(
        server.url, backoff=FAST, on_event=on_event, on_open=on_open, on_error=on_error
    )
    stream.start()
    assert done.wait(WAIT)
    assert stream.stop(WAIT)
    assert seen == ["0", "1", "2", "3"]
    assert server.wait_for_requests(2)[1].headers["Last-Event-ID"] == "2"
    kinds = sorted(type(e).__name__ for e in reported)
    assert kinds == sorted(["RuntimeError"] * 2 + ["KeyError"] * 2 + ["ReadError"])


def test_headers_callable_that_raises_is_a_stream_error(server: SSEServer) -> None:
    server.default = Script().event("never").hold()

    def headers() -> dict[str, str]:
        raise LookupError("token store is down")

    stream = EventStream(server.url, headers=headers)
    with pytest.raises(StreamError) as info:
        take(stream, 1)
    assert isinstance(info.value.__cause__, LookupError)
    assert stream.join(WAIT)
    assert server.requests == []


def test_on_event_raising_a_base_exception_ends_the_worker_cleanly(server: SSEServer) -> None:
    server.default = Script().event("a").event("b").hold()
    seen: list[str] = []

    def on_event(event: Event) -> None:
        seen.append(event.data)
        raise SystemExit("a callback that exits")

    stream = EventStream(server.url, on_event=on_event)
    stream.start()
    assert stream.join(WAIT)
    assert not stream.running
    assert seen == ["a"]


# -- a consumer that stops reading --------------------------------------------------------


class _RecordingChannel(Channel):
    """A channel that records how many events it held at most and the largest batch
    put, and says when a put found it full (the worker is about to block).

    Only the worker adds events, so the length right after each put, read under the
    channel's own lock, reaches the true maximum."""

    instances: ClassVar[list[_RecordingChannel]] = []

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.capacity = capacity
        self.largest_put = 0
        self.most_held = 0
        self.full = threading.Event()
        _RecordingChannel.instances.append(self)

    def put(self, batch: list[Event], stop: StopSignal) -> bool:
        self.largest_put = max(self.largest_put, len(batch))
        with self._lock:
            if len(self._events) >= self.capacity:
                self.full.set()
        added = super().put(batch, stop)
        with self._lock:
            self.most_held = max(self.most_held, len(self._events))
        return added


def test_a_consumer_that_stops_reading_bounds_memory_and_stalls_the_server(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_control, "Channel", _RecordingChannel)
    _RecordingChannel.instances.clear()
    n, size, queue_size = 48_000, 1000, 4  # 48 MB offered: more than socket buffers
    pad = b"p" * (size - 20)
    server.enqueue(
        blob_script(b"".join(b"id: %d\ndata: %s\n\n" % (i, pad) for i in range(1, n + 1)))
    )
    stream = EventStream(server.url, queue_size=queue_size)
    received = 0
    with stream, watchdog(stream, 60.0) as fired:
        events = iter(stream)
        first = next(events)
        (channel,) = _RecordingChannel.instances
        connection = server.wait_for_connection()
        # The consumer now stops reading.  The worker fills the queue and blocks;
        # the server's writes stall on full socket buffers.
        assert channel.full.wait(WAIT)
        threading.Event().wait(0.5)  # an observation window, not a synchronisation
        assert not connection.closed, "the server could write everything: no back-pressure"
        received = 1
        expected = 2
        for event in events:
            assert event.id == str(expected)
            expected += 1
            received += 1
            if received == n:
                break
    assert not fired.is_set()
    assert first.id == "1"
    assert received == n
    # A batch is put whole once there is room, so the queue holds at most
    # queue_size - 1 events plus one read's batch (64 KiB of 1 KB events).
    assert channel.largest_put <= 64 * 1024 // size + 1
    assert channel.most_held <= queue_size - 1 + channel.largest_put
