"""Sans-I/O decoding of an HTTP/1.1 response body: framing, then content coding.

Bytes from the connection go in, body bytes come out, as soon as they can be decoded:
nothing waits for a chunk, a length or a block to fill.  That is why the transport
does not read through ``http.client``'s chunked reader or ``urllib3``'s decoders on
its fast path (they buffer; see docs/architecture.rst, "The read loop").  No sockets,
clocks or threads here; every error is a :class:`BodyError`, which the transport
turns into ``ReadError``.

* Framing (RFC 9112, section 6): chunked (section 7.1, with chunk extensions and
  trailer fields, both read and ignored), a Content-Length, or "until the connection
  closes".  A run of plain whole chunks is cut in one pass (``_whole_chunks``), the
  rest chunk by chunk.
* Content coding (RFC 9110, section 8.4.1): gzip (section 8.4.1.3, members in
  sequence), deflate (section 8.4.1.2: zlib-wrapped, or raw as some servers send it),
  identity.
"""

from __future__ import annotations

import enum
import operator
import re
import zlib

__all__ = ["BodyDecoder", "BodyError", "ContentDecoder", "Framing", "supported_coding"]

#: Longest chunk-size line accepted, extensions included; longer is an attack or a bug.
MAX_CHUNK_LINE = 4096
#: Most bytes of trailer fields accepted after the last chunk.
MAX_TRAILER = 64 * 1024
#: Most bytes one read's gzip or deflate data may decode to.  Deflate expands at most
#: about 1030 times, so a read of 64 KiB (the transport's) could make 64 MiB: this
#: bound, 256 times a full read, stops a decompression bomb well before, far above
#: what real event streams compress by.
MAX_EXPANSION = 16 * 1024 * 1024

# At most 16 significant hex digits (64 bits), after any number of leading zeros (RFC
# 9112 allows them; MAX_CHUNK_LINE bounds the line).  int(x, 16) alone would accept
# "0x1", "1_0".
_CHUNK_SIZE = re.compile(rb"0*[0-9A-Fa-f]{1,16}")


class BodyError(ValueError):
    """The body broke its framing or its content coding, or ended too early.

    ``decoded`` holds the body bytes that the same ``feed`` decoded before the fault,
    so that nothing received before it is lost.
    """

    decoded = b""


class Framing(enum.Enum):
    """How the end of the body is found (RFC 9112, section 6.3)."""

    CHUNKED = "chunked"
    LENGTH = "content-length"
    CLOSE = "connection close"


def supported_coding(content_encoding: str) -> str | None:
    """The one coding to undo for a Content-Encoding value, ``None`` if unsupported.

    Returns ``"identity"``, ``"gzip"`` or ``"deflate"``.  Stacked codings are not
    supported (the request offers gzip and deflate, each alone).
    """
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return "identity"
    if len(codings) > 1:
        return None
    return {"gzip": "gzip", "x-gzip": "gzip", "deflate": "deflate"}.get(codings[0])


class ContentDecoder:
    """Undo one content coding incrementally; ``finish()`` at the end of the body."""

    def __init__(self, coding: str) -> None:
        if coding not in ("identity", "gzip", "deflate"):
            raise ValueError(f"unsupported content coding {coding!r}")
        self._coding = coding
        self.identity = coding == "identity"
        self._zlib: zlib._Decompress | None = None
        # deflate: the first byte, kept until the second says whether the body is
        # zlib-wrapped or raw deflate.
        self._probe: bytes | None = b"" if coding == "deflate" else None
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        if self._coding == "identity" or not data:
            return data
        self._fed = True  # zlib errors become BodyError in these two
        if self._probe is not None:
            return self._feed_probe(data)
        return self._decompress(data)

    def finish(self) -> bytes:
        """Flush the decoder; raise if the compressed stream is incomplete."""
        if not self._fed:  # identity (its feed passes bytes through), or an empty body
            return b""
        if self._probe is not None:  # not even a whole zlib header arrived
            raise BodyError(f"{self._coding} body ended before its end marker")
        assert self._zlib is not None
        tail = self._zlib.flush()
        if not self._zlib.eof:
            raise BodyError(f"{self._coding} body ended before its end marker")
        return tail

    def _feed_probe(self, data: bytes) -> bytes:
        """Decide zlib-wrapped or raw deflate on the first 2 bytes alone, so that the
        outcome never depends on how the body is split into reads."""
        assert self._probe is not None
        probe = self._probe + data
        if len(probe) < 2:
            self._probe = probe  # a lone first byte: wait for the second
            return b""
        self._probe = None
        if _zlib_header(probe[0], probe[1]):
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        # else not zlib-wrapped: many servers send raw deflate under this name, and
        # _decompress makes a raw decoder.  Either way, a zlib error is a BodyError.
        return self._decompress(probe)

    def _decompress(self, data: bytes) -> bytes:
        if self._zlib is None:
            self._zlib = self._new()
        out: list[bytes] = []
        room = MAX_EXPANSION  # what this read may still decode to (never 0 here)
        try:
            while data:
                if self._zlib.eof:
                    if self._coding != "gzip":
                        raise BodyError(f"data after the end of the {self._coding} stream")
                    self._zlib = self._new()  # gzip: another member follows
                piece = self._zlib.decompress(data, room)
                out.append(piece)
                room -= len(piece)
                if not room:  # a decompression bomb, or at the least not an event stream
                    raise BodyError(
                        f"{self._coding} data expands to {MAX_EXPANSION} bytes or more in one read"
                    )
                data = self._zlib.unused_data
        except BodyError as exc:
            exc.decoded = b"".join(out)
            raise
        except zlib.error as exc:
            error = BodyError(f"invalid {self._coding} data: {exc}")
            error.decoded = b"".join(out)
            raise error from exc
        return b"".join(out)

    def _new(self) -> zlib._Decompress:
        if self._coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS)


def _zlib_header(cmf: int, flg: int) -> bool:
    """Whether two bytes are a zlib header this decoder takes (RFC 1950, 2.2): method
    8 (deflate), a window of at most 32 KiB, the check bits right, no preset
    dictionary (HTTP has no way to give one)."""
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf * 256 + flg) % 31 == 0 and not flg & 0x20


class _Chunked:
    """Incremental chunked-framing decoder: ``feed`` returns the payload bytes.

    Walks each read with an index (one ``find`` per size line, one slice per
    payload) instead of cutting a buffer from the front: with one small chunk per
    event, this loop runs once per event and is on the hot path.
    """

    _left: int  # payload bytes still to come in the current chunk (set with _DATA)

    def __init__(self) -> None:
        self._held = b""  # an unfinished size, CRLF or trailer line
        self._state = _SIZE
        self._trailer_bytes = 0

    @property
    def done(self) -> bool:
        return self._state is _DONE

    @property
    def position(self) -> str:
        return self._state.value

    def feed(self, data: bytes) -> bytes:
        if self._state is _SIZE and not self._held:
            whole = _one_chunk(data)
            if whole is not None:
                return whole
        out: list[bytes] = []
        try:
            return self._feed(data, out)
        except BodyError as exc:
            exc.decoded = b"".join(out)
            raise

    def _feed(self, data: bytes, out: list[bytes]) -> bytes:
        buf = self._held + data if self._held else data
        self._held = b""
        append, find = out.append, buf.find
        pos, size = 0, len(buf)
        state = self._state
        columns = True  # whole chunks not yet cut in one pass (once per feed)
        while pos < size:
            if state is _SIZE:
                if columns:
                    columns = False
                    pos += _whole_chunks(buf[pos:], out)  # buf[0:] is buf, not a copy
                    if pos == size:
                        break
                end = find(b"\n", pos, pos + MAX_CHUNK_LINE + 1)
                if end < 0:
                    break  # held below, or too long
                # end > pos: at end == 0, buf[-1] would be the read's last byte
                line = buf[pos : end - 1] if end > pos and buf[end - 1] == 13 else buf[pos:end]
                pos = end + 1
                left = _SIZES.get(line)  # streams repeat a few sizes: skip the checks
                if left is None:
                    left = _chunk_size(line)
                if not left:
                    state = _TRAILER
                    continue
                end = pos + left
                if buf[end : end + 2] == b"\r\n":  # the whole chunk is here: the usual case
                    append(buf[pos:end])
                    pos = end + 2
                    continue
                self._left, state = left, _DATA
            elif state is _DATA:
                end = min(size, pos + self._left)
                append(buf[pos:end])
                self._left -= end - pos
                pos = end
                if not self._left:
                    state = _CRLF
            elif state is _DONE:
                break
            else:  # the CRLF after a chunk, or a trailer line
                # Unbounded: a line past its cap fails in _on_line (not empty after a
                # chunk, or over the trailer's total), as it does below when held.
                end = find(b"\n", pos)
                if end < 0:
                    break
                # end > pos: the CR must be on this line (at end == 0, buf[-1] is the
                # read's last byte, and buf[0:-1] not empty)
                line = buf[pos : end - 1] if end > pos and buf[end - 1] == 13 else buf[pos:end]
                pos = end + 1  # CRLF, or a lenient bare LF
                state = self._on_line(state, line)
        if pos < size and state is not _DONE:
            limit = MAX_TRAILER if state is _TRAILER else MAX_CHUNK_LINE
            if size - pos > limit:
                raise BodyError(f"chunked {state.value} line too long")
            self._held = buf[pos:]
        self._state = state
        return out[0] if len(out) == 1 else b"".join(out)

    def _on_line(self, state: _State, line: bytes) -> _State:
        if state is _CRLF:
            if line:
                raise BodyError("chunk data longer than its chunk size")
            return _SIZE
        # Trailer fields: read, bounded, ignored; an empty line ends the body.
        self._trailer_bytes += len(line) + 2
        if self._trailer_bytes > MAX_TRAILER:
            raise BodyError("chunked trailer too long")
        return _TRAILER if line else _DONE


def _whole_chunks(buf: bytes, out: list[bytes]) -> int:
    """Decode the run of whole chunks at the start of ``buf``, in C loops; return where
    it ends (0 when there is none).  ``buf`` starts with a chunk-size line.

    One small chunk per event is the common shape of a stream, and a Python step per
    chunk costs more than parsing its event: so split at every CRLF at once and check
    the pieces as columns.  If a chunk's payload holds no CRLF, the pieces alternate
    size line, payload; the first size line is a real one, so if it is the hex of the
    next piece's length, that piece is exactly its payload, and the next piece is a
    real size line again.  The run ends at the first pair that fails the check (a
    CRLF inside a payload, chunk extensions, leading zeros, the last chunk "0", an
    unfinished chunk): the general loop decodes from there.
    """
    pieces = buf.split(b"\r\n")
    pairs = (len(pieces) - 1) // 2  # a pair is whole when a CRLF follows its payload
    if not pairs:
        return 0
    sizes = pieces[0 : 2 * pairs : 2]
    payloads = pieces[1 : 2 * pairs : 2]
    lengths = list(map(len, payloads))
    hex_of = _UPPER_HEX if sizes[0].isupper() else _LOWER_HEX  # bytes.isupper: ASCII only
    expected = list(map(hex_of.__getitem__, lengths))
    good = pairs
    if sizes != expected:
        good = list(map(operator.eq, sizes, expected)).index(False)
    if 0 in lengths:  # the last chunk: its trailer section is the general loop's
        good = min(good, lengths.index(0))
    if not good:
        return 0
    if good < pairs:
        out.append(b"".join(payloads[:good]))
        return sum(lengths[:good]) + sum(map(len, sizes[:good])) + 4 * good
    out.append(b"".join(payloads))
    rest = pieces[2 * pairs :]  # one or two pieces: an unfinished chunk, or b""
    return len(buf) - sum(map(len, rest)) - 2 * (len(rest) - 1)


class _HexTable(dict[int, bytes]):
    """Chunk sizes written in lower-case hex, as servers write them, made once per size."""

    _template = b"%x"

    def __missing__(self, size: int) -> bytes:
        text = self._template % size
        if len(self) < _SIZES_MAX:  # a dict shared by threads: one key, one value
            self[size] = text
        return text


class _UpperHexTable(_HexTable):
    """The same, in upper-case hex."""

    _template = b"%X"


class _State(enum.Enum):
    SIZE = "size"
    DATA = "data"
    CRLF = "crlf"
    TRAILER = "trailer"
    DONE = "done"


_SIZE, _DATA, _CRLF, _TRAILER, _DONE = _State


_SIZES: dict[bytes, int] = {}  # chunk-size lines seen, bare hex digits only
_SIZES_MAX = 4096


_LOWER_HEX, _UPPER_HEX = _HexTable(), _UpperHexTable()


def _one_chunk(data: bytes) -> bytes | None:
    """The payload if ``data`` is exactly one whole chunk (not the last), else None.

    One event per read is the common shape of a live stream, and then a read is one
    chunk with nothing around it: decoded here in a few C calls.
    """
    end = data.find(b"\r\n", 0, MAX_CHUNK_LINE)
    if end > 0:
        size = _SIZES.get(data[:end]) or _size_or_zero(data[:end])
        if size and len(data) == end + size + 4 and data.endswith(b"\r\n"):
            return data[end + 2 : -2]
    return None


def _size_or_zero(line: bytes) -> int:
    """The size a chunk-size line gives, 0 if it is not valid (the general loop then
    reports it)."""
    try:
        return _chunk_size(line)
    except BodyError:
        return 0


def _chunk_size(line: bytes) -> int:
    """The size a chunk-size line gives (RFC 9112 7.1: hex digits, then extensions)."""
    size = line.partition(b";")[0].strip(b" \t")  # chunk extensions are ignored
    # int(x, 16) alone would also accept "0x1a", "1_a", "+1a" and inner spaces.
    if not _CHUNK_SIZE.fullmatch(size):
        raise BodyError(f"invalid chunk size line {line[:40]!r}")
    value = int(size, 16)
    if size == line and len(_SIZES) < _SIZES_MAX:
        _SIZES[line] = value  # a dict shared by threads: one key, one value, no lock
    return value


class BodyDecoder:
    """Framing and content decoding of one body; ``done`` (an attribute) once its end
    was seen.

    ``feed(data)`` takes bytes as they came off the connection and returns decoded
    body bytes (maybe empty).  ``end_of_input()`` says the connection closed: fine for
    a close-delimited body, a :class:`BodyError` for the others unless ``done``.
    """

    def __init__(
        self, framing: Framing, content: ContentDecoder, length: int | None = None
    ) -> None:
        if (framing is Framing.LENGTH) != (length is not None):
            raise ValueError("a length is given exactly when the framing is LENGTH")
        self._framing = framing
        self._content = content
        self._chunked = _Chunked() if framing is Framing.CHUNKED else None
        self._plain = content.identity  # no coding: a whole chunk is the body's bytes
        self._left = length or 0
        self.done = False
        if framing is Framing.LENGTH and self._left == 0:
            self.done = True

    def feed(self, data: bytes) -> bytes:
        chunked = self._chunked
        if chunked is not None and self._plain and chunked._state is _SIZE and not chunked._held:
            # One whole chunk and nothing else, without a content coding: the one-event
            # read of a live stream, decoded in a few C calls (see _one_chunk).
            end = data.find(b"\r\n", 0, MAX_CHUNK_LINE)
            if end > 0:
                size = _SIZES.get(data[:end]) or _size_or_zero(data[:end])
                if size and len(data) == end + size + 4 and data.endswith(b"\r\n"):
                    return data[end + 2 : -2]
        if self.done:
            return b""  # bytes after the end: ignored, the connection is not reused
        if self._chunked is not None:
            try:
                payload = self._chunked.feed(data)
            except BodyError as exc:  # undo the coding of what came before the fault
                try:
                    exc.decoded = self._content.feed(exc.decoded)
                except BodyError as inner:
                    exc.decoded = inner.decoded
                raise
            ended = self._chunked.done
        elif self._framing is Framing.LENGTH:
            payload = data[: self._left]
            self._left -= len(payload)
            ended = self._left == 0
        else:
            payload, ended = data, False
        out = self._content.feed(payload)
        if ended:
            self.done = True
            try:
                out += self._content.finish()
            except BodyError as exc:  # keep what this read decoded before the end
                exc.decoded = out + exc.decoded
                raise
        return out

    def end_of_input(self) -> bytes:
        """The connection closed: return the last decoded bytes, or raise if cut short."""
        if self.done:
            return b""
        self.done = True
        if self._chunked is not None:
            raise BodyError(f"connection closed inside a chunked body ({self._chunked.position})")
        if self._framing is Framing.LENGTH:
            raise BodyError(f"connection closed {self._left} bytes before the Content-Length")
        return self._content.finish()
