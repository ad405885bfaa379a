"""Body-decoding guarantees pinned by mutation testing (#13), through a real server:
what a stream delivers when a compressed body goes wrong."""

from __future__ import annotations

import gc
import tracemalloc
import zlib
from collections.abc import Iterator

import pytest
from _reliability import streaming

from eventstream import ReadError
from eventstream._body import BodyDecoder, BodyError, ContentDecoder, Framing
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
    # Catches: the "data after the end" error of ContentDecoder._decompress without
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


# -- the decoder alone: reads shaped to catch the one-chunk and run-of-chunks shortcuts


def _decode(reads: list[bytes]) -> bytes:
    decoder = BodyDecoder(Framing.CHUNKED, ContentDecoder("identity"))
    return b"".join(decoder.feed(read) for read in reads)


@pytest.mark.parametrize(
    "reads",
    [
        # A size line "aXX": not hex.  What follows splits at "XX\r\nXX" into a piece
        # "a" and a 10-byte one.  Catches: _whole_chunks splitting at another separator.
        [b"aXX\r\nXX0123456789XX\r\nXX"],
        # A size line "5XX", in a read as long as a 5-byte chunk after a 1-byte line.
        # Catches: the one-chunk shortcut (_one_chunk, and inline in BodyDecoder.feed)
        # ending the size line at another separator than CRLF.
        [b"5XX\r\nXX?\r\n"],
        # A size line of 5000 bytes (an extension), past MAX_CHUNK_LINE, that ends in a
        # NUL and LF.  Catches: the one-chunk shortcut looking for a byte other than
        # CRLF past the cap.
        [b"5;" + b"e" * 5000 + b"\0\nhello\r\n"],
        # A 5-byte chunk whose data runs on: "aXX\r\n" then "XX" where CRLF belongs.
        # Catches: the one-chunk shortcut checking the read's end for another marker.
        [b"5\r\naXX\r\nXX", b"0\r\n\r\n"],
    ],
    ids=["junk-line-run", "junk-line-one-chunk", "overlong-line-with-nul", "data-too-long"],
)
def test_malformed_chunk_framing_is_refused_however_it_is_shaped(reads: list[bytes]) -> None:
    with pytest.raises(BodyError):
        _decode(reads)


def test_a_chunk_with_an_extension_and_crlf_in_its_data_is_decoded_from_its_size_line() -> None:
    # A 4096-byte chunk with an extension whose data holds a CRLF near its start,
    # then a 1-byte chunk, all in one read longer than MAX_CHUNK_LINE: the chunk's
    # size line is the first line, and its data starts right after it.
    # Catches: the one-chunk shortcut taking the last CRLF of the first 4096 bytes for
    # the end of the size line (it then returned the read's tail as one chunk).
    read = b"1000;e\r\nabcd\r\n" + b"f" * 4090 + b"\r\n1\r\nz\r\n"
    assert _decode([read, b"0\r\n\r\n"]) == b"abcd\r\n" + b"f" * 4090 + b"z"


def test_a_decoder_made_with_a_length_for_another_framing_says_so() -> None:
    # The decoder's contract: a length exactly with Content-Length framing.  A misuse
    # is refused with a message that names the rule.
    message = "^a length is given exactly when the framing is LENGTH$"
    with pytest.raises(ValueError, match=message):
        BodyDecoder(Framing.LENGTH, ContentDecoder("identity"))
    with pytest.raises(ValueError, match=message):
        BodyDecoder(Framing.CHUNKED, ContentDecoder("identity"), 3)


def _distinct_size_lines(count: int) -> list[tuple[int, bytes]]:
    # Chunk sizes as a server may write them, all different as lines: each small size
    # in every case of its hex letters, with every count of leading zeros allowed.
    lines: list[tuple[int, bytes]] = []
    size = 0
    while len(lines) < count:
        size += 1
        digits = b"%x" % size
        spellings = {
            bytes(d - 32 if mask >> i & 1 and d >= 97 else d for i, d in enumerate(digits))
            for mask in range(1 << len(digits))
        }
        for spelling in sorted(spellings):
            lines.extend((size, b"0" * pad + spelling) for pad in range(17 - len(spelling)))
    return lines[:count]


def test_many_distinct_chunk_size_lines_do_not_grow_memory_without_bound() -> None:
    # A long-lived stream sees chunk-size lines in endless spellings (sizes, case,
    # leading zeros).  Sizes already parsed are kept to skip the checks, but only up
    # to a bound: decoding 20000 different lines keeps well under 1 MB.
    # Catches: _chunk_size caching a line whenever it is bare ("or" for "and"): one
    # entry per line, about 2 MB here, and more for as long as the stream lives.
    lines = _distinct_size_lines(20000)
    reads = [b"%s\r\n%s\r\n" % (line, b"x" * size) for size, line in lines]
    decoder = BodyDecoder(Framing.CHUNKED, ContentDecoder("identity"))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        decoded = sum(len(decoder.feed(read)) for read in reads)
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert decoded == sum(size for size, _ in lines)
    assert kept < 1_000_000, kept
