"""Body-decoding guarantees pinned by mutation testing (#13), through a real server:
what a stream delivers when a compressed body goes wrong."""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
from _reliability import streaming

from eventstream import ReadError
from eventstream.testing import Script, SSEServer

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
    b"Content-Encoding: deflate\r\n\r\n"
)


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def test_stray_bytes_after_a_deflate_stream_keep_the_events_before_them(
    server: SSEServer,
) -> None:
    # One read: a whole zlib-wrapped deflate stream, then bytes that belong to no
    # stream.  The read is an error, but its events were decoded and are delivered.
    # Catches: the "data after the end" error of ContentDecoder._feed_probe without
    # the bytes decoded before it (they were lost).
    body = HEAD + zlib.compress(b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n") + b"stray"
    server.enqueue(Script.raw_response(body).hold(), Script().event("c", id="3").hold())
    with streaming(server.url) as rec:
        assert [event.data for event in rec.take(3)] == ["a", "b", "c"]
        error = rec.next_error()
    assert isinstance(error, ReadError)
    assert "data after the end of the deflate stream" in str(error)
    assert server.wait_for_requests(2)[1].headers.get("Last-Event-ID") == "2"


def test_a_long_bad_chunk_size_line_is_quoted_to_its_first_40_bytes(server: SSEServer) -> None:
    # A chunk-size line of 60 bytes that is not hex: the error a user sees quotes its
    # first 40 bytes, exactly, so a log line stays short whatever the server sent.
    # Catches: _chunk_size cutting the line at another length (41 bytes).
    line = b"0123456789abcdefghij" * 3
    server.enqueue(Script().event("a", id="1").wire(line + b"\r\n").hold(), Script().hold())
    with streaming(server.url) as rec:
        assert rec.next_event().data == "a"
        error = rec.next_error()
    assert isinstance(error, ReadError)
    quoted = "invalid chunk size line b'0123456789abcdefghij0123456789abcdefghij'"
    assert str(error).endswith(quoted), str(error)
