"""The sans-I/O body decoders: chunked framing, Content-Length, gzip and deflate.

Each case runs whole and byte by byte, since the transport feeds whatever one read
returned.
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterable
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstream import _body
from eventstream._body import (
    MAX_CHUNK_LINE,
    MAX_TRAILER,
    BodyDecoder,
    BodyError,
    ContentDecoder,
    Framing,
    supported_coding,
)

PAYLOAD = b"".join(b"id: %d\ndata: event number %d\n\n" % (i, i) for i in range(200))


def feed(decoder: BodyDecoder, reads: Iterable[bytes]) -> bytes:
    return b"".join(decoder.feed(read) for read in reads)


def whole_and_bytewise(data: bytes) -> list[list[bytes]]:
    return [[data], [data[i : i + 1] for i in range(len(data))]]


def chunked(*chunks: bytes, tail: bytes = b"0\r\n\r\n") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + tail


def identity() -> ContentDecoder:
    return ContentDecoder("identity")


def deflate_raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


# -- chunked framing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        chunked(b"data: a\n\n", b"data: b\n\n"),
        b"9;name=value;x\r\ndata: a\n\n\r\n9 ; ext\r\ndata: b\n\n\r\n0\r\n\r\n",  # extensions
        chunked(b"data: a\n\n", b"data: b\n\n", tail=b"0\r\nX-Trailer: 1\r\nY: 2\r\n\r\n"),
        b"9\ndata: a\n\n\n9\ndata: b\n\n\n0\n\n",  # bare LF, accepted leniently
        b"00009\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n0\r\n\r\n",  # leading zeros
        # more leading zeros than 16 digits, in a size and in the last chunk
        b"%s9\r\ndata: a\n\n\r\n9\r\ndata: b\n\n\r\n%s\r\n\r\n" % (b"0" * 20, b"0" * 20),
    ],
    ids=["plain", "extensions", "trailers", "bare-lf", "leading-zeros", "many-leading-zeros"],
)
def test_chunked_body_is_decoded_whole_and_byte_by_byte(wire: bytes) -> None:
    for reads in whole_and_bytewise(wire):
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        assert feed(decoder, reads) == b"data: a\n\ndata: b\n\n"
        assert decoder.done


# Payloads that look like framing: CRLF inside, size lines, the last chunk "0".
_PAYLOAD_BYTES = st.binary(max_size=40) | st.lists(
    st.sampled_from([b"\r\n", b"\r", b"\n", b"0", b"3", b"a", b"abc", b"0\r\n\r\n"]), max_size=8
).map(b"".join)


def _cut(wire: bytes, cuts: list[int]) -> list[bytes]:
    """``wire`` as reads of the sizes in ``cuts``, then the rest."""
    reads, pos = [], 0
    for cut in cuts:
        reads.append(wire[pos : pos + cut])
        pos += cut
    reads.append(wire[pos:])
    return reads


@st.composite
def _chunked_wires(draw: st.DrawFn) -> tuple[bytes, bytes]:
    payloads = draw(st.lists(_PAYLOAD_BYTES.filter(bool), max_size=12))
    wire = []
    for payload in payloads:
        size = draw(st.sampled_from([b"%x", b"%X", b"00%x", b"%x;ext=1", b"%x ; e"])) % len(payload)
        wire.append(b"%s\r\n%s\r\n" % (size, payload))
    wire.append(draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-T: 1\r\n\r\n", b"3\r\nab"])))
    return b"".join(wire), b"".join(payloads)


@settings(max_examples=300, deadline=None)
@given(_chunked_wires(), st.lists(st.integers(1, 60), max_size=20))
def test_chunk_runs_decode_as_one_chunk_at_a_time(
    case: tuple[bytes, bytes], cuts: list[int]
) -> None:
    """The columnwise pass over whole chunks gives what the chunk-by-chunk loop gives,
    wherever the reads split, whatever the payloads hold."""
    wire, payload = case
    reads = _cut(wire, cuts)
    fast = BodyDecoder(Framing.CHUNKED, identity())
    got = feed(fast, reads)
    with mock.patch.object(_body, "_whole_chunks", return_value=0):
        slow = BodyDecoder(Framing.CHUNKED, identity())
        expected = feed(slow, reads)
    assert got == expected
    assert fast.done == slow.done
    if fast.done:
        assert got == payload


@pytest.mark.parametrize(
    ("reads", "expected"),
    [
        # a read that ends in a payload's CR
        ([b"5\nhello", b"\n8\ndata: x\r", b"\n2\n\n\n\n0\n\n"], b"hellodata: x\r\n\n"),
        # the empty line that ends the trailer section, in a read that ends in CR
        ([b"5\r\nhello\r\n0\r\n", b"\nX\r"], b"hello"),
    ],
    ids=["data", "trailer"],
)
def test_a_read_that_starts_with_a_bare_lf_is_not_read_with_its_last_cr(
    reads: list[bytes], expected: bytes
) -> None:
    # A read that starts with a bare LF line end, after a read that ended in CR (a
    # payload byte, or a trailer line cut there).
    # Catches: _Chunked._feed taking buf[-1] (the read's last byte) for the CR before
    # an LF at position 0 (it read "\r\n" as a line "\r", or missed the body's end).
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    assert feed(decoder, reads) == expected
    assert decoder.done


@st.composite
def _lf_chunked_wires(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """A chunked body whose line ends are CRLF or bare LF, each drawn, with payloads
    and trailers that hold CR and LF."""
    ends = st.sampled_from([b"\r\n", b"\n"])
    text = st.lists(st.sampled_from([b"\r", b"\n", b"\r\n", b"x", b"0"]), max_size=6)
    payloads = draw(st.lists(text.map(b"".join).filter(bool), max_size=6))
    wire = [b"%x%s%s%s" % (len(p), draw(ends), p, draw(ends)) for p in payloads]
    wire.append(b"0" + draw(ends))
    for field in draw(st.lists(st.sampled_from([b"X: 1", b"Y: \r2"]), max_size=2)):
        wire.append(field + draw(ends))
    wire.append(draw(ends))
    return b"".join(wire), b"".join(payloads)


@settings(max_examples=300, deadline=None)
@given(_lf_chunked_wires(), st.lists(st.integers(1, 12), max_size=20))
def test_bare_lf_line_ends_decode_wherever_the_reads_split(
    case: tuple[bytes, bytes], cuts: list[int]
) -> None:
    wire, payload = case
    reads = _cut(wire, cuts)
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    assert feed(decoder, reads) == payload
    assert decoder.done


@settings(max_examples=200, deadline=None)
@given(_chunked_wires())
def test_one_whole_chunk_per_read_decodes_as_the_general_loop(case: tuple[bytes, bytes]) -> None:
    """The shortcut for a read that is exactly one chunk (one event per read) gives
    what the general loop gives, with extensions, leading zeros and CRLF in payloads."""
    wire, payload = case
    reads = [piece + b"\r\n" for piece in wire.split(b"\r\n")]
    reads = [b"".join(reads[i : i + 2]) for i in range(0, len(reads), 2)]  # size + payload
    reads[-1] = reads[-1][:-2] if not wire.endswith(b"\r\n") else reads[-1]
    fast = BodyDecoder(Framing.CHUNKED, identity())
    got = [fast.feed(read) for read in reads]
    with (
        mock.patch.object(_body, "_SIZES", {}),
        mock.patch.object(_body, "_size_or_zero", return_value=0),
    ):
        slow = BodyDecoder(Framing.CHUNKED, identity())
        expected = [slow.feed(read) for read in reads]
    assert got == expected
    assert b"".join(got) == payload or not fast.done


def test_reads_that_look_like_a_whole_chunk_are_decoded_in_context() -> None:
    # The shortcut for a read that is exactly one chunk applies only at a chunk
    # boundary: inside a chunk's data, or after the first digit of a size line, such
    # a read is payload or the rest of the size line.
    fake = b"3\r\nabc\r\n"
    cases = [
        ([b"8\r\n", fake, b"\r\n0\r\n\r\n"], fake),  # a payload that is a chunk
        ([b"8\r\n", fake + b"\r\n3\r\nxyz\r\n0\r\n\r\n"], fake + b"xyz"),  # then chunks
        ([b"1", fake, b"x" * 14 + b"\r\n0\r\n\r\n"], b"abc\r\n" + b"x" * 14),  # size 0x13
    ]
    for reads, payload in cases:
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        assert feed(decoder, reads) == payload
        assert decoder.done


def test_trailer_section_at_its_limit_is_accepted() -> None:
    # The trailer section counts its lines with their CRLF, the final empty one too.
    field = b"X-Pad: " + b"x" * (MAX_TRAILER - 4 - 7)
    for extra, ok in ((b"", True), (b"x", False)):
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        wire = b"0\r\n" + field + extra + b"\r\n\r\n"
        if ok:
            assert decoder.feed(wire) == b""
            assert decoder.done
            split = BodyDecoder(Framing.CHUNKED, identity())  # the field's line held
            assert feed(split, [wire[:-4], wire[-4:]]) == b""
            assert split.done
        else:
            with pytest.raises(BodyError, match=r"^chunked trailer too long$"):
                decoder.feed(wire)


def test_chunk_payload_comes_out_before_the_chunk_is_complete() -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    assert decoder.feed(b"12\r\ndata: first") == b"data: first"
    assert decoder.feed(b" half\n\n\r\n") == b" half\n\n"
    assert not decoder.done


def test_chunked_ignores_bytes_after_the_last_chunk() -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    assert decoder.feed(chunked(b"abc") + b"HTTP/1.1 200 OK\r\n") == b"abc"
    assert decoder.done
    assert decoder.feed(b"more") == b""


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\n",
        b"0x3\r\nabc\r\n",
        b"1_0\r\n",
        b"+3\r\nabc\r\n",
        b"-1\r\n",
        b"\r\n",
        b"3\r\nabcdef\r\n",  # data longer than the size
        b"3\r\nabcd\r\n",  # by one byte, in a read shaped like one whole chunk
        b"1" * 17 + b"\r\n",  # more than 64 bits of size
        b"00" + b"1" * 17 + b"\r\n",  # the same after leading zeros
        b"3\r\r\nabc\r\n",  # a CR before the CRLF: only spaces and tabs may pad a size
        b"3\x0b\r\nabc\r\n",  # nor other whitespace
        b"3X\r\nabc\r\n",
        b"\n3\r\nabc\r\n",  # an empty size line: refused at once, not held
        b"3\r\nabcd\n0\r\n\r\n",  # one byte too many, then a bare LF
    ],
)
def test_bad_chunk_framing_is_an_error(wire: bytes) -> None:
    for reads in whole_and_bytewise(wire):
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        with pytest.raises(BodyError):
            feed(decoder, reads)


def test_bytes_after_the_last_chunk_in_the_same_read_are_ignored_however_many() -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    assert decoder.feed(chunked(b"abc") + b"x" * (MAX_CHUNK_LINE + 1)) == b"abc"
    assert decoder.done


def test_a_big_read_may_end_inside_a_size_line() -> None:
    # Only the unfinished line counts against MAX_CHUNK_LINE, not the read around it.
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    reads = [chunked(b"x" * MAX_CHUNK_LINE, tail=b"1"), b"\r\nz\r\n0\r\n\r\n"]
    assert feed(decoder, reads) == b"x" * MAX_CHUNK_LINE + b"z"
    assert decoder.done


def test_payloads_that_look_like_size_lines() -> None:
    # A payload "1" is the hex of its own length: the run of whole chunks still pairs
    # each size line with its own payload.
    wire = chunked(b"a", b"1", b"b", b"c", b"1", b"d")
    for reads in [*whole_and_bytewise(wire), [wire[:24], wire[24:]]]:
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        assert feed(decoder, reads) == b"a1bc1d"
        assert decoder.done


@pytest.mark.parametrize("coding", ["identity", "deflate"])
def test_a_read_that_is_only_a_size_line_waits_for_its_chunk(coding: str) -> None:
    # A server that writes each chunk's size line and its data apart: a read may be
    # just "2\r\n".  It is no whole chunk: the next read is its data, not a size line.
    # Catches: the one-chunk shortcut (inline in BodyDecoder.feed, and _one_chunk)
    # taking "2\r\n" for an empty chunk when it compared the length with end - size.
    data = b"ab" if coding == "identity" else zlib.compress(PAYLOAD)
    reads = [b"2\r\n", data[:2] + b"\r\n"]
    if len(data) > 2:
        reads.append(b"%x\r\n%s\r\n" % (len(data) - 2, data[2:]))
    decoder = BodyDecoder(Framing.CHUNKED, ContentDecoder(coding))
    assert feed(decoder, [*reads, b"0\r\n\r\n"]) == (b"ab" if coding == "identity" else PAYLOAD)
    assert decoder.done


def test_a_payload_that_starts_with_a_hex_line_is_not_taken_for_a_size_line() -> None:
    # A 14-byte chunk whose payload begins "1\r\n" (an SSE line "1", a field that is
    # ignored), then another chunk, in one read: the run of whole chunks pairs the
    # real size line "e" with its payload, and both payloads come out whole.
    # Catches: _whole_chunks comparing the payloads, not the size lines, with the hex
    # of the payloads' lengths (it cut "1" as a payload and failed on the rest).
    wire = b"e\r\n1\r\ndata: a\r\n\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    assert decoder.feed(wire) == b"1\r\ndata: a\r\n\r\nabc"
    assert decoder.done


def test_framing_errors_say_what_is_wrong() -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    with pytest.raises(BodyError, match=r"^chunk data longer than its chunk size$"):
        decoder.feed(b"3\r\nabcdef\r\n")


def test_bad_framing_keeps_the_payload_before_it() -> None:
    # A run of whole chunks, a chunk with an extension, then a bad size line, in one
    # read: the error carries both payloads, so their events are not lost.
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    with pytest.raises(BodyError, match="invalid chunk size") as info:
        decoder.feed(b"3\r\nabc\r\n3;x\r\ndef\r\nzz\r\n")
    assert info.value.decoded == b"abcdef"


def test_endless_chunk_size_line_is_an_error() -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    decoder.feed(b"3;" + b"x" * (MAX_CHUNK_LINE - 2))  # at the limit: still waiting
    with pytest.raises(BodyError, match="too long"):
        decoder.feed(b"x")


def test_chunk_size_line_at_the_limit_is_accepted() -> None:
    # MAX_CHUNK_LINE bytes before the LF (extensions and CR included): a legal line,
    # whether it arrives whole or byte by byte; one byte more is refused.
    line = b"3;" + b"x" * (MAX_CHUNK_LINE - 3) + b"\r"
    for reads in whole_and_bytewise(line + b"\nabc\r\n0\r\n\r\n"):
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        assert feed(decoder, reads) == b"abc"
        assert decoder.done
    for reads in whole_and_bytewise(b"3;x" + line[2:] + b"\nabc\r\n"):
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        with pytest.raises(BodyError, match="too long"):
            feed(decoder, reads)


def test_leading_zeros_are_bounded_by_the_line_length_alone() -> None:
    # A size after zeros that fill the line to its limit (CR included) is accepted,
    # whole or byte by byte; one more zero makes the line too long.
    # Catches: _CHUNK_SIZE counting leading zeros among its 16 digits.
    size = b"0" * (MAX_CHUNK_LINE - 2) + b"3"
    for reads in whole_and_bytewise(size + b"\r\nabc\r\n0\r\n\r\n"):
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        assert feed(decoder, reads) == b"abc"
        assert decoder.done
    for reads in whole_and_bytewise(b"0" + size + b"\r\nabc\r\n"):
        decoder = BodyDecoder(Framing.CHUNKED, identity())
        with pytest.raises(BodyError, match="too long"):
            feed(decoder, reads)


def test_long_chunk_size_line_arriving_whole_is_an_error() -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    with pytest.raises(BodyError, match="too long"):
        decoder.feed(b"3;" + b"x" * MAX_CHUNK_LINE + b"\r\nabc\r\n")


def test_endless_trailer_is_an_error() -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    decoder.feed(b"0\r\n")
    for _ in range(64):  # 64 x 1009 bytes: just under the limit
        decoder.feed(b"X-Pad: " + b"x" * 1000 + b"\r\n")
    with pytest.raises(BodyError, match="trailer"):
        decoder.feed(b"X-Pad: " + b"x" * 1000 + b"\r\n")


@pytest.mark.parametrize("cut", [1, 3, 5, 8, 10, len(chunked(b"abc")) - 1])
def test_chunked_body_cut_short_is_an_error(cut: int) -> None:
    decoder = BodyDecoder(Framing.CHUNKED, identity())
    decoder.feed(chunked(b"abc")[:cut])
    with pytest.raises(BodyError, match="chunked"):
        decoder.end_of_input()


# -- Content-Length and close-delimited ------------------------------------------------


def test_length_body_ends_at_its_length() -> None:
    for reads in whole_and_bytewise(b"0123456789extra"):
        decoder = BodyDecoder(Framing.LENGTH, identity(), 10)
        assert feed(decoder, reads) == b"0123456789"
        assert decoder.done


def test_length_body_cut_short_is_an_error() -> None:
    decoder = BodyDecoder(Framing.LENGTH, identity(), 10)
    assert decoder.feed(b"01234") == b"01234"
    with pytest.raises(BodyError, match="5 bytes before"):
        decoder.end_of_input()


def test_zero_length_body_is_done_at_once() -> None:
    decoder = BodyDecoder(Framing.LENGTH, ContentDecoder("gzip"), 0)
    assert decoder.done
    assert decoder.end_of_input() == b""


def test_close_delimited_body_ends_cleanly_at_end_of_input() -> None:
    decoder = BodyDecoder(Framing.CLOSE, identity())
    assert decoder.feed(b"abc") == b"abc"
    assert decoder.end_of_input() == b""
    assert decoder.done


def test_length_is_given_exactly_for_length_framing() -> None:
    with pytest.raises(ValueError, match="length"):
        BodyDecoder(Framing.LENGTH, identity())
    with pytest.raises(ValueError, match="length"):
        BodyDecoder(Framing.CLOSE, identity(), 3)


# -- content codings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(PAYLOAD)),
        ("gzip", gzip.compress(PAYLOAD[:100]) + gzip.compress(PAYLOAD[100:])),  # 2 members
        ("deflate", zlib.compress(PAYLOAD)),  # RFC 9110: zlib-wrapped
        ("deflate", deflate_raw(PAYLOAD)),  # what some servers send instead
    ],
    ids=["gzip", "gzip-two-members", "deflate-zlib", "deflate-raw"],
)
@pytest.mark.parametrize("framing", [Framing.CHUNKED, Framing.LENGTH, Framing.CLOSE])
def test_compressed_body_is_decoded_whole_and_byte_by_byte(
    coding: str, encoded: bytes, framing: Framing
) -> None:
    wire = chunked(encoded[:50], encoded[50:]) if framing is Framing.CHUNKED else encoded
    length = len(encoded) if framing is Framing.LENGTH else None
    for reads in whole_and_bytewise(wire):
        decoder = BodyDecoder(framing, ContentDecoder(coding), length)
        out = feed(decoder, reads)
        if framing is Framing.CLOSE:
            out += decoder.end_of_input()
        assert out == PAYLOAD
        assert decoder.done


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize("framing", [Framing.CHUNKED, Framing.CLOSE])
def test_empty_body_with_a_content_coding_ends_cleanly(coding: str, framing: Framing) -> None:
    # A server that closes a stream at once may still label it gzip: no bytes, no error.
    decoder = BodyDecoder(framing, ContentDecoder(coding))
    if framing is Framing.CHUNKED:
        assert decoder.feed(b"0\r\n\r\n") == b""
    assert decoder.end_of_input() == b""
    assert decoder.done


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
def test_compressed_body_in_one_whole_chunk_per_read(coding: str) -> None:
    # A live compressed stream: each read is exactly one chunk of compressed bytes.
    encoded = gzip.compress(PAYLOAD) if coding == "gzip" else zlib.compress(PAYLOAD)
    pieces = [encoded[i : i + 40] for i in range(0, len(encoded), 40)]
    reads = [chunked(piece, tail=b"") for piece in pieces] + [b"0\r\n\r\n"]
    decoder = BodyDecoder(Framing.CHUNKED, ContentDecoder(coding))
    assert feed(decoder, reads) == PAYLOAD
    assert decoder.done


def test_sync_flushed_gzip_comes_out_before_the_stream_ends() -> None:
    compressor = zlib.compressobj(wbits=16 + zlib.MAX_WBITS)
    decoder = ContentDecoder("gzip")
    first = compressor.compress(b"data: a\n\n") + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert decoder.feed(first) == b"data: a\n\n"


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(PAYLOAD)[:-4]),  # no trailer
        ("gzip", gzip.compress(PAYLOAD)[:5]),
        ("deflate", zlib.compress(PAYLOAD)[:-2]),
        ("deflate", b"x"),  # not even a whole zlib header
    ],
)
def test_truncated_compressed_body_is_an_error(coding: str, encoded: bytes) -> None:
    decoder = BodyDecoder(Framing.CLOSE, ContentDecoder(coding))
    decoder.feed(encoded)
    with pytest.raises(BodyError, match="end marker"):
        decoder.end_of_input()


def _sync_flushed(coding: str, data: bytes) -> bytes:
    """``data`` compressed and flushed to a byte boundary, with no end marker."""
    wbits = 16 + zlib.MAX_WBITS if coding == "gzip" else zlib.MAX_WBITS
    compressor = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize("coding", ["gzip", "deflate"])
@pytest.mark.parametrize("framing", [Framing.LENGTH, Framing.CHUNKED])
def test_a_body_that_ends_before_its_end_marker_keeps_the_last_read(
    coding: str, framing: Framing
) -> None:
    # The body's end (its length, or the last chunk) arrives in the same read as the
    # last compressed bytes, which lack their end marker: the error carries the events
    # decoded from that read.
    # Catches: BodyDecoder.feed losing the read's output when finish() raised.
    encoded = _sync_flushed(coding, b"data: a\n\n")
    if framing is Framing.CHUNKED:
        decoder = BodyDecoder(framing, ContentDecoder(coding))
        wire = chunked(encoded)  # the data chunk and the last chunk in one read
    else:
        decoder = BodyDecoder(framing, ContentDecoder(coding), len(encoded))
        wire = encoded
    with pytest.raises(BodyError, match="end marker") as info:
        decoder.feed(wire)
    assert info.value.decoded == b"data: a\n\n"


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", b"this is not gzip at all"),
        ("gzip", gzip.compress(b"ok") + b"garbage after the member"),
        ("deflate", zlib.compress(b"ok") + b"trailing"),
        ("deflate", deflate_raw(b"ok") + b"trailing"),
        ("gzip", zlib.compress(b"ok")),  # zlib-wrapped deflate is not gzip
    ],
)
def test_invalid_compressed_data_is_an_error(coding: str, encoded: bytes) -> None:
    decoder = BodyDecoder(Framing.CLOSE, ContentDecoder(coding))
    with pytest.raises(BodyError):
        decoder.feed(encoded)


@pytest.mark.parametrize("cut", [1, 2, 3, None], ids=["1", "2", "3", "one-read"])
def test_a_deflate_body_whose_zlib_header_was_accepted_is_never_read_as_raw_deflate(
    cut: int | None,
) -> None:
    # A valid 2-byte zlib header: from then on the body is zlib data, and bytes that
    # are not are an error, however the reads split it.  These would read as a raw
    # deflate stored block (header included) holding a forged event.
    # Catches: ContentDecoder._feed_probe keeping the probe past 2 bytes (it replayed
    # the header as raw deflate and delivered the forged bytes), or falling back to
    # raw deflate on an error from later bytes of the read that brought the header.
    forged = b"data: forged\n\n".ljust(156, b"\n")
    wire = b"\x78\x9c\x00\x63\xff" + forged
    reads = [wire] if cut is None else [wire[:cut], wire[cut:]]
    decoder = BodyDecoder(Framing.CLOSE, ContentDecoder("deflate"))
    for read in reads[:-1]:
        assert decoder.feed(read) == b""
    with pytest.raises(BodyError, match=r"^invalid deflate data: ") as info:
        decoder.feed(reads[-1])
    assert info.value.decoded == b""


def test_a_zlib_header_is_what_zlib_accepts_less_a_preset_dictionary() -> None:
    # HTTP has no way to give a preset dictionary: such a header means raw deflate.
    for cmf in range(256):
        for flg in range(256):
            try:
                zlib.decompressobj(zlib.MAX_WBITS).decompress(bytes([cmf, flg]))
            except zlib.error:
                accepted = False
            else:
                accepted = not flg & 0x20
            assert _body._zlib_header(cmf, flg) is accepted, (cmf, flg)


def _deflate_outcome(reads: list[bytes]) -> bytes | str:
    """The body, or the error (without what came before it: a zlib call that raises
    drops its output, so that depends on the reads)."""
    decoder = BodyDecoder(Framing.CLOSE, ContentDecoder("deflate"))
    try:
        return feed(decoder, reads) + decoder.end_of_input()
    except BodyError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([b"\x78\x9c", b"\x78\x01", b"\x08\x1d", b"\x78\xbb", b"\x00\x05", b""]),
    st.sampled_from([b"", b"\x00\x63\xff", b"\x01\x05\x00\xfa\xff"]),
    st.binary(max_size=30),
    st.integers(0, 40),
)
def test_deflate_decodes_the_same_wherever_the_first_read_ends(
    header: bytes, block: bytes, rest: bytes, cut: int
) -> None:
    # Zlib-wrapped or raw deflate is decided on the first 2 bytes alone: what comes
    # out (or the error) does not depend on how much of the body the first read held.
    wire = header + block + rest
    assert _deflate_outcome([wire[:cut], wire[cut:]]) == _deflate_outcome([wire])


def _bomb(megabytes: int) -> bytes:
    """gzip data that decodes to that many MiB of zeros, made without the zeros."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    return b"".join(compressor.compress(zeros) for _ in range(megabytes)) + compressor.flush()


def test_a_decompression_bomb_is_an_error_not_a_flood() -> None:
    # 17 MiB from about 17 KB in one read: refused at MAX_EXPANSION, with the bytes
    # decoded up to there.
    # Catches: ContentDecoder._decompress without a bound on what one read makes.
    decoder = BodyDecoder(Framing.CLOSE, ContentDecoder("gzip"))
    with pytest.raises(BodyError, match=r"^gzip data expands to 16777216 bytes or more") as info:
        decoder.feed(_bomb(17))
    assert info.value.decoded == bytes(_body.MAX_EXPANSION)


@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(PAYLOAD)),
        ("gzip", gzip.compress(PAYLOAD[:3000]) + gzip.compress(PAYLOAD[3000:])),  # 2 members
        ("deflate", zlib.compress(PAYLOAD)),
        ("deflate", deflate_raw(PAYLOAD)),
    ],
    ids=["gzip", "gzip-two-members", "deflate-zlib", "deflate-raw"],
)
def test_the_expansion_bound_is_per_read(coding: str, encoded: bytes) -> None:
    # With the bound below the body's size: one read of the whole body is refused (the
    # bound counts every gzip member of the read), reads that each decode to less pass.
    assert len(PAYLOAD) > 5000
    with mock.patch.object(_body, "MAX_EXPANSION", 5000):
        decoder = BodyDecoder(Framing.CLOSE, ContentDecoder(coding))
        with pytest.raises(BodyError, match="expands to 5000 bytes or more") as info:
            decoder.feed(encoded)
        assert info.value.decoded == PAYLOAD[:5000]
        decoder = BodyDecoder(Framing.CLOSE, ContentDecoder(coding))
        reads = [encoded[i : i + 40] for i in range(0, len(encoded), 40)]
        assert feed(decoder, reads) + decoder.end_of_input() == PAYLOAD


@pytest.mark.parametrize(
    ("coding", "encoded", "message"),
    [
        ("deflate", zlib.compress(b"ok") + b"trailing", "data after the end of the deflate stream"),
        ("deflate", deflate_raw(b"ok") + b"trailing", "data after the end of the deflate stream"),
        ("gzip", gzip.compress(b"o") + gzip.compress(b"k") + b"garbage", "invalid gzip data"),
    ],
    ids=["deflate-zlib", "deflate-raw", "gzip-two-members"],
)
@pytest.mark.parametrize("framing", [Framing.CHUNKED, Framing.CLOSE])
def test_bytes_decoded_before_a_coding_error_are_kept(
    coding: str, encoded: bytes, message: str, framing: Framing
) -> None:
    # The error says what is wrong, and carries the body decoded before the fault in
    # the same read, so that the events it completes are not lost.
    wire = chunked(encoded, tail=b"") if framing is Framing.CHUNKED else encoded
    decoder = BodyDecoder(framing, ContentDecoder(coding))
    with pytest.raises(BodyError, match=f"^{message}") as info:
        decoder.feed(wire)
    assert info.value.decoded == b"ok"


@pytest.mark.parametrize(
    "encoded",
    [zlib.compress(b"ok") + b"trailing", deflate_raw(b"ok") + b"trailing"],
    ids=["zlib", "raw"],
)
def test_a_framing_fault_after_a_coding_fault_keeps_what_came_before_both(
    encoded: bytes,
) -> None:
    # A chunk whose compressed bytes go bad, then a chunk-size line that is not hex:
    # the framing error is raised, and it still carries the events' bytes decoded
    # before the coding went bad.
    decoder = BodyDecoder(Framing.CHUNKED, ContentDecoder("deflate"))
    with pytest.raises(BodyError, match="chunk") as info:
        decoder.feed(chunked(encoded, tail=b"zz\r\n"))
    assert info.value.decoded == b"ok"


def test_unknown_coding_is_refused() -> None:
    with pytest.raises(ValueError, match="br"):
        ContentDecoder("br")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", "identity"),
        ("identity", "identity"),
        ("GZIP", "gzip"),
        ("x-gzip", "gzip"),
        (" deflate ", "deflate"),
        ("gzip, identity", "gzip"),
        ("br", None),
        ("zstd", None),
        ("gzip, gzip", None),
        ("deflate, gzip", None),
    ],
)
def test_supported_coding(header: str, expected: str | None) -> None:
    assert supported_coding(header) == expected


@pytest.mark.parametrize("bad", [b"0x1", b"1_0", b"+1", b"-1", b" 1 2", b"g"])
def test_remembered_sizes_never_admit_a_bad_line(bad: bytes) -> None:
    decoder = BodyDecoder(Framing.CHUNKED, ContentDecoder("identity"))
    assert decoder.feed(b"1\r\na\r\n10\r\n" + b"b" * 16 + b"\r\n") == b"a" + b"b" * 16
    with pytest.raises(BodyError):
        decoder.feed(bad + b"\r\nx\r\n")
