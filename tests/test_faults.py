"""Network faults and malformed HTTP, end to end through EventStream and a real server.

Each case ends in one of two ways: an error of eventstream's own hierarchy, or a
reconnect that resumes with ``Last-Event-ID``; never a hang, never a leaked thread
or fd (the autouse fixture checks), and never the loss of an event that had
completely arrived.  Where the order of reads matters, the script waits on a gate
that the test opens once the client has the earlier events: nothing relies on time.
"""

from __future__ import annotations

import contextlib
import gc
import gzip
import os
import threading
import time
import zlib
from collections.abc import Iterator

import pytest
from _reliability import WAIT, Recorder, streaming, take, watchdog

import eventstream
from eventstream import (
    Backoff,
    ContentTypeError,
    Event,
    EventStream,
    EventStreamError,
    HTTPStatusError,
    ReadError,
)
from eventstream.testing import Framing, Script, SSEServer

SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def head(*fields: bytes) -> bytes:
    """An event-stream status line and headers, with ``fields`` added."""
    return SSE_HEAD + b"".join(field + b"\r\n" for field in fields) + b"\r\n"


def data_of(events: list[Event]) -> list[str]:
    return [event.data for event in events]


def events_until(rec: Recorder, data: str) -> list[Event]:
    """Events up to and including the first whose data is ``data``."""
    events = [rec.next_event()]
    while events[-1].data != data:
        events.append(rec.next_event())
    return events


def assert_resumed(server: SSEServer, last_event_id: str | None) -> None:
    """The second request resumed from ``last_event_id``."""
    second = server.wait_for_requests(2)[1]
    assert second.headers.get("Last-Event-ID") == last_event_id


# -- the connection drops --------------------------------------------------------------


@pytest.mark.parametrize("framing", list(Framing))
def test_drop_mid_event_reconnects_and_discards_only_the_partial_event(
    server: SSEServer, framing: Framing
) -> None:
    # A Content-Length announcing more than is sent, so the drop cuts the body short.
    headers = {"Content-Length": "4096"} if framing is Framing.CONTENT_LENGTH else None
    server.enqueue(
        Script(framing=framing, headers=headers)
        .event("a", id="1")
        .send(b"id: 2\ndata: partial, never dispatched")
        .drop(),
        Script().event("b", id="3").hold(),
    )
    with streaming(server.url) as rec:
        assert rec.take(2) == [Event("message", "a", "1"), Event("message", "b", "3")]
    assert_resumed(server, "1")
    if framing is Framing.CLOSE:
        assert rec.all_errors == []  # a close-delimited body may end anywhere: a clean end
    else:
        assert [type(e) for e in rec.all_errors] == [ReadError]


@pytest.mark.parametrize(
    ("cut", "delivered"),
    [
        pytest.param(b"1", [], id="in-the-size-line"),
        pytest.param(b"1f;ext=", [], id="in-a-chunk-extension"),
        pytest.param(b"20\r\nid: 2\ndata: cu", [], id="in-the-chunk-data"),
        # The chunk's data is complete: its event is delivered though no CRLF follows.
        pytest.param(chunk(b"id: 2\ndata: b\n\n")[:-2], ["b"], id="before-the-chunk-crlf"),
        pytest.param(b"0\r\n", [], id="after-the-last-chunk"),
    ],
)
def test_drop_inside_chunked_framing_is_a_read_error_and_resumes(
    server: SSEServer, cut: bytes, delivered: list[str]
) -> None:
    server.enqueue(
        Script().event("a", id="1").wire(cut).drop(),
        Script().event("c", id="3").hold(),
    )
    with streaming(server.url) as rec:
        events = rec.take(len(delivered) + 2)
        error = rec.next_error()
    assert data_of(events) == ["a", *delivered, "c"]
    assert isinstance(error, ReadError)
    assert "chunked" in str(error)
    assert_resumed(server, "2" if delivered else "1")


def _gzip_members() -> tuple[bytes, bytes]:
    """Two gzip members; the second's event can be decoded before its trailer."""
    first = gzip.compress(b"id: 1\ndata: a\n\n")
    packer = zlib.compressobj(wbits=31)
    second = packer.compress(b"id: 2\ndata: b\n\n") + packer.flush(zlib.Z_SYNC_FLUSH)
    return first, second + packer.flush()


@pytest.mark.parametrize("chunked", [True, False], ids=["chunked", "close-delimited"])
@pytest.mark.parametrize(
    ("where", "delivered"),
    [("header", ["a"]), ("deflate-data", ["a"]), ("trailer", ["a", "b"])],
)
def test_drop_mid_gzip_member_is_a_read_error_and_keeps_what_was_decoded(
    server: SSEServer, chunked: bool, where: str, delivered: list[str]
) -> None:
    first, second = _gzip_members()
    cut = {"header": 5, "deflate-data": 14, "trailer": len(second) - 4}[where]
    if chunked:
        body = head(b"Content-Encoding: gzip", b"Transfer-Encoding: chunked")
        body += chunk(first) + chunk(second[:cut])
    else:
        body = head(b"Content-Encoding: gzip") + first + second[:cut]
    server.enqueue(Script.raw_response(body).drop(), Script().event("c", id="3").hold())
    with streaming(server.url) as rec:
        events = rec.take(len(delivered) + 1)
        error = rec.next_error()
    assert data_of(events) == [*delivered, "c"]
    assert isinstance(error, ReadError)
    assert_resumed(server, str(len(delivered)))


def test_tcp_reset_mid_stream_reconnects_and_resumes(server: SSEServer) -> None:
    gate = threading.Event()
    server.enqueue(
        Script().event("a", id="1").wait(gate, timeout=WAIT).reset(),
        Script().event("b", id="2").hold(),
    )
    with streaming(server.url) as rec:
        assert rec.next_event().data == "a"
        gate.set()  # the reset comes only after the client has the event
        assert rec.next_event().data == "b"
        assert isinstance(rec.next_error(), ReadError)
    assert_resumed(server, "1")


@pytest.mark.parametrize(
    "sent",
    [b"", b"HTTP/1.1 200 OK\r\nContent-Ty", SSE_HEAD],
    ids=["before-the-status-line", "mid-headers", "before-the-blank-line"],
)
def test_tcp_reset_before_the_response_is_complete_is_retried(
    server: SSEServer, sent: bytes
) -> None:
    server.enqueue(Script.raw_response(sent).reset(), Script().event("ok").hold())
    with streaming(server.url) as rec:
        assert rec.next_event().data == "ok"
        assert isinstance(rec.next_error(), ReadError)


# -- silence ----------------------------------------------------------------------------


def test_server_that_never_answers_times_out_waiting_for_headers(server: SSEServer) -> None:
    server.enqueue(Script.no_response(), Script().event("ok").hold())
    started = time.monotonic()
    with streaming(server.url, timeout=(2.0, 0.3)) as rec:
        failed_at, error = rec.errors.get(timeout=WAIT)
        assert rec.next_event().data == "ok"
    assert isinstance(error, ReadError)
    assert "no response headers" in str(error)
    assert 0.25 <= failed_at - started < 3.0


@pytest.mark.parametrize("first_event", [False, True], ids=["headers-only", "after-an-event"])
def test_silence_after_the_headers_is_an_idle_timeout(server: SSEServer, first_event: bool) -> None:
    silent = Script().event("a", id="1") if first_event else Script()
    server.enqueue(silent.hold(), Script().event("b", id="2").hold())
    with streaming(server.url, timeout=(2.0, 0.3)) as rec:
        opened_at, _ = rec.opens.get(timeout=WAIT)
        failed_at, error = rec.errors.get(timeout=WAIT)
        events = rec.take(2 if first_event else 1)
    assert isinstance(error, ReadError)
    assert "read timeout" in str(error)
    assert 0.25 <= failed_at - opened_at < 3.0
    assert data_of(events) == (["a", "b"] if first_event else ["b"])
    assert_resumed(server, "1" if first_event else None)


def test_a_trickle_is_not_an_idle_timeout(server: SSEServer) -> None:
    # One byte every 10 ms for about a second, with a 0.2 s read timeout: silence is
    # measured between bytes, not over the event, so this must never time out.
    body = b"id: 1\ndata: " + b"x" * 80 + b"\n\n"
    server.enqueue(Script().trickle(body, 0.01).hold())
    started = time.monotonic()
    with streaming(server.url, timeout=(2.0, 0.2)) as rec:
        event = rec.events.get(timeout=WAIT + 2)
        took = time.monotonic() - started
    assert event == Event("message", "x" * 80, "1")
    assert took >= 0.8  # it really trickled
    assert rec.all_errors == []
    assert len(server.requests) == 1


# -- malformed HTTP ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "response",
    [
        b"garbage\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"\x00\xff\xfe\x16\x03\x01\r\n\r\n",
        b"data: an HTTP/0.9 style body\n\n",
    ],
    ids=["garbage", "non-numeric-status", "binary", "no-status-line"],
)
def test_garbage_status_line_is_a_read_error_and_retried(
    server: SSEServer, response: bytes
) -> None:
    server.enqueue(Script.raw_response(response), Script().event("ok").hold())
    with streaming(server.url) as rec:
        assert rec.next_event().data == "ok"
        error = rec.next_error()
    assert isinstance(error, ReadError)
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"zz\r\n", "invalid chunk size"),
        (b"-1\r\n", "invalid chunk size"),
        (b"0x10\r\n", "invalid chunk size"),
        (b"1" * 17 + b"\r\n", "invalid chunk size"),
        (b"2\r\nabc\r\n", "longer than its chunk size"),
        (b"1" * 5000, "line too long"),
    ],
    ids=["not-hex", "negative", "0x-prefix", "too-many-digits", "overlong-data", "endless"],
)
def test_bad_chunk_framing_is_a_read_error_after_the_events_before_it(
    server: SSEServer, bad: bytes, message: str
) -> None:
    gate = threading.Event()
    server.enqueue(
        Script().event("a", id="1").wait(gate, timeout=WAIT).wire(bad).hold(),
        Script().event("b", id="2").hold(),
    )
    with streaming(server.url) as rec:
        assert rec.next_event().data == "a"
        gate.set()
        error = rec.next_error()
        assert rec.next_event().data == "b"
    assert isinstance(error, ReadError)
    assert message in str(error)
    assert_resumed(server, "1")


def test_bad_chunk_size_in_the_same_read_keeps_the_events_before_it(server: SSEServer) -> None:
    # One write, so one read: the complete chunk, then a broken size line.
    body = head(b"Transfer-Encoding: chunked") + chunk(b"id: 1\ndata: a\n\n") + b"zz\r\n"
    server.enqueue(Script.raw_response(body).hold(), Script().event("b", id="2").hold())
    with streaming(server.url) as rec:
        events = events_until(rec, "b")
    assert data_of(events) == ["a", "b"]
    assert_resumed(server, "1")


def test_truncated_content_length_body_is_a_read_error_and_resumes(server: SSEServer) -> None:
    server.enqueue(
        Script(framing=Framing.CONTENT_LENGTH, headers={"Content-Length": "1000"})
        .event("a", id="1")
        .send(b"data: cut sh")
        .drop(),
        Script().event("b", id="2").hold(),
    )
    with streaming(server.url) as rec:
        assert data_of(rec.take(2)) == ["a", "b"]
        error = rec.next_error()
    assert isinstance(error, ReadError)
    assert "Content-Length" in str(error)
    assert_resumed(server, "1")


@pytest.mark.parametrize("coding", ["gzip", "deflate", "x-gzip"])
def test_invalid_compressed_body_is_a_read_error_and_retried(
    server: SSEServer, coding: str
) -> None:
    server.enqueue(
        Script(headers={"Content-Encoding": coding}).send(b"\xff this is not compressed"),
        Script().event("ok").hold(),
    )
    with streaming(server.url) as rec:
        assert rec.next_event().data == "ok"
        error = rec.next_error()
    assert isinstance(error, ReadError)
    assert "invalid" in str(error)


def test_garbage_after_a_gzip_member_keeps_the_events_before_it(server: SSEServer) -> None:
    gate = threading.Event()
    first, _ = _gzip_members()
    body = head(b"Content-Encoding: gzip") + first
    server.enqueue(
        Script.raw_response(body).wait(gate, timeout=WAIT).wire(b"\x1f\x8b\xff junk").hold(),
        Script().event("b", id="2").hold(),
    )
    with streaming(server.url) as rec:
        assert rec.next_event().data == "a"
        gate.set()
        assert isinstance(rec.next_error(), ReadError)
        assert rec.next_event().data == "b"
    assert_resumed(server, "1")


def test_garbage_after_a_gzip_member_in_the_same_read_keeps_its_events(
    server: SSEServer,
) -> None:
    first, _ = _gzip_members()
    body = head(b"Content-Encoding: gzip") + first + b"\x1f\x8b\xff junk"
    server.enqueue(Script.raw_response(body).hold(), Script().event("b", id="2").hold())
    with streaming(server.url) as rec:
        events = events_until(rec, "b")
    assert data_of(events) == ["a", "b"]
    assert_resumed(server, "1")


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, br", "compress"])
def test_unknown_content_encoding_is_fatal(server: SSEServer, coding: str) -> None:
    server.enqueue(Script(headers={"Content-Encoding": coding}).event("a"))
    server.default = Script().event("must not be fetched").hold()
    stream = EventStream(server.url, backoff=Backoff(initial=0.01))
    with pytest.raises(ContentTypeError) as info:
        take(stream, 1)
    assert "Content-Encoding" in str(info.value)
    assert stream.join(WAIT)
    assert len(server.requests) == 1


def test_every_fault_in_a_row_still_delivers_every_event(server: SSEServer) -> None:
    # One stream through a sequence of different failures: each connection resumes
    # exactly where the last complete event left off.
    gate = threading.Event()
    server.enqueue(
        Script().event("1", id="1").send(b"data: partial").drop(),
        Script.raw_response(b"garbage\r\n\r\n"),
        Script().event("2", id="2").wire(b"1").drop(),
        Script(framing=Framing.CONTENT_LENGTH, headers={"Content-Length": "99"})
        .event("3", id="3")
        .drop(),
        Script.no_response(),
        Script(503),
        Script().event("4", id="4").wait(gate, timeout=WAIT).reset(),
        Script(headers={"Content-Encoding": "gzip"}).send(b"junk"),
        Script().event("5", id="5").hold(),
    )
    with streaming(server.url, timeout=(2.0, 0.3)) as rec:
        events = rec.take(4)
        gate.set()
        events.append(rec.next_event())
    assert data_of(events) == ["1", "2", "3", "4", "5"]
    resumed = [r.headers.get("Last-Event-ID") for r in server.wait_for_requests(9)]
    assert resumed == [None, "1", "1", "2", "3", "3", "3", "4", "4"]
    kinds = [type(e).__name__ for e in rec.all_errors]
    assert kinds == ["ReadError"] * 5 + ["HTTPStatusError"] + ["ReadError"] * 2


@pytest.mark.parametrize(
    "fields",
    [(b"Content-Length: 5, 6",), (b"Content-Length: 0", b"Content-Length: 12")],
    ids=["one-field", "two-fields"],
)
def test_conflicting_content_lengths_are_a_read_error(
    server: SSEServer, fields: tuple[bytes, ...]
) -> None:
    server.enqueue(Script.raw_response(head(*fields)).close(), Script().event("ok").hold())
    with streaming(server.url) as rec:
        error = rec.next_error()
        assert isinstance(error, ReadError), repr(error)
        assert rec.next_event().data == "ok"


def _open_sockets() -> set[str]:
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                found.add(f"{fd} -> {target}")
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_response_rejected_while_opening_releases_its_socket_at_once(
    server: SSEServer,
) -> None:
    server.enqueue(Script.raw_response(head(b"Content-Length: 5, 6")).close())
    before = _open_sockets()
    stream = eventstream.get(server.url, retries=0)
    with stream, pytest.raises(ReadError, match="malformed response header") as info:
        stream.wait_open(WAIT)
    assert stream.join(WAIT)
    server.connections[-1].wait_closed(WAIT)
    gc.collect()
    # The error is still referenced (by ``info``, as by any caller that keeps it):
    # that must not keep the connection's socket open.
    assert info.value is not None
    assert _open_sockets() - before == set()


@pytest.mark.parametrize(
    "location",
    [
        "http://[::1",
        "http://:99999/x",
        "http://127.0.0.1:99999/x",
        "http://exa mple.com/",
        "ftp://eventstream.invalid/",
        "http://\u00e9xample.invalid/",
    ],
)
def test_redirect_to_an_unusable_location_is_a_status_error(
    server: SSEServer, location: str
) -> None:
    # The Location comes from the server: a bad one is the server's failure (like a
    # redirect loop), not a misuse of the API by the caller.
    server.enqueue(Script.redirect(location, status=301))
    stream = EventStream(server.url, backoff=Backoff(initial=0.01, max_attempts=1))
    with watchdog(stream), pytest.raises(EventStreamError) as info:
        take(stream, 1)
    assert stream.join(WAIT)
    assert isinstance(info.value, HTTPStatusError)
    assert info.value.status_code == 301
