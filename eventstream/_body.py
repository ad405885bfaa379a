"""Sans-I/O decoding of an HTTP/1.1 response body: framing, then content coding.

Bytes from the connection go in, body bytes come out, as soon as they can be decoded:
nothing waits for a chunk, a length or a block to fill.  That is why the transport
does not read through ``http.client``'s chunked reader or ``urllib3``'s decoders on
its fast path (they buffer; see ARCHITECTURE.md, "The read loop").  No sockets,
clocks or threads here; every error is a :class:`BodyError`, which the transport
turns into ``ReadError``.

* Framing (RFC 9112, section 6): chunked (section 7.1, with chunk extensions and
  trailer fields, both read and ignored), a Content-Length, or "until the connection
  closes".
* Content coding (RFC 9110, section 8.4.1): gzip (section 8.4.1.3, members in
  sequence), deflate (section 8.4.1.2: zlib-wrapped, or raw as some servers send it),
  identity.
"""

from __future__ import annotations

import enum
import re
import zlib

__all__ = ["BodyDecoder", "BodyError", "ContentDecoder", "Framing", "supported_coding"]

#: Longest chunk-size line accepted, extensions included; longer is an attack or a bug.
MAX_CHUNK_LINE = 4096
#: Most bytes of trailer fields accepted after the last chunk.
MAX_TRAILER = 64 * 1024

_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")  # int(x, 16) alone would accept "0x1", "1_0"


class BodyError(ValueError):
    """The body broke its framing or its content coding, or ended too early."""


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
        self._zlib: zlib._Decompress | None = None
        # deflate: the first bytes, kept until the zlib header has been accepted, so
        # they can be replayed as raw deflate if it is refused.
        self._probe: bytes | None = b"" if coding == "deflate" else None
        self._fed = False

    def feed(self, data: bytes) -> bytes:
        if self._coding == "identity" or not data:
            return data
        self._fed = True
        try:
            if self._probe is not None:
                return self._feed_probe(data)
            return self._decompress(data)
        except zlib.error as exc:
            raise BodyError(f"invalid {self._coding} data: {exc}") from exc

    def finish(self) -> bytes:
        """Flush the decoder; raise if the compressed stream is incomplete."""
        if self._coding == "identity" or not self._fed:
            return b""
        if self._probe is not None:  # not even a whole zlib header arrived
            raise BodyError(f"{self._coding} body ended before its end marker")
        assert self._zlib is not None
        tail = self._zlib.flush()
        if not self._zlib.eof:
            raise BodyError(f"{self._coding} body ended before its end marker")
        return tail

    def _feed_probe(self, data: bytes) -> bytes:
        assert self._probe is not None
        probe = self._probe + data
        if self._zlib is None:
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS)
        try:
            out = self._zlib.decompress(data)
        except zlib.error:
            # Not zlib-wrapped: many servers send raw deflate under this name.
            self._probe = None
            self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
            return self._decompress(probe)
        self._probe = None if len(probe) >= 2 else probe  # the header is 2 bytes
        if self._zlib.unused_data:
            raise BodyError("data after the end of the deflate stream")
        return out

    def _decompress(self, data: bytes) -> bytes:
        if self._zlib is None:
            self._zlib = self._new()
        out: list[bytes] = []
        while data:
            if self._zlib.eof:
                if self._coding != "gzip":
                    raise BodyError(f"data after the end of the {self._coding} stream")
                self._zlib = self._new()  # gzip: another member follows
            out.append(self._zlib.decompress(data))
            data = self._zlib.unused_data
        return b"".join(out)

    def _new(self) -> zlib._Decompress:
        if self._coding == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        return zlib.decompressobj(-zlib.MAX_WBITS)


class _Chunked:
    """Incremental chunked-framing decoder: ``feed`` returns the payload bytes."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._left = 0  # payload bytes still to come in the current chunk
        self._state = "size"  # size -> data -> crlf -> size ... -> trailer -> done
        self._trailer_bytes = 0

    @property
    def done(self) -> bool:
        return self._state == "done"

    @property
    def position(self) -> str:
        return self._state

    def feed(self, data: bytes) -> bytes:
        self._buf += data
        out: list[bytes] = []
        while self._buf and self._state != "done":
            if self._state == "data":
                piece = bytes(self._buf[: self._left])
                del self._buf[: self._left]
                self._left -= len(piece)
                out.append(piece)
                if self._left == 0:
                    self._state = "crlf"
                continue
            line = self._line()
            if line is None:
                break
            self._on_line(line)
        if self._state == "done":
            self._buf.clear()  # nothing may follow on a connection we will close
        return b"".join(out)

    def _line(self) -> bytes | None:
        limit = MAX_TRAILER if self._state == "trailer" else MAX_CHUNK_LINE
        end = self._buf.find(b"\n", 0, limit + 1)
        if end < 0:
            if len(self._buf) > limit:
                raise BodyError(f"chunked {self._state} line too long")
            return None
        line = bytes(self._buf[:end])
        del self._buf[: end + 1]
        return line[:-1] if line.endswith(b"\r") else line  # CRLF, or a lenient bare LF

    def _on_line(self, line: bytes) -> None:
        if self._state == "crlf":
            if line:
                raise BodyError("chunk data longer than its chunk size")
            self._state = "size"
        elif self._state == "size":
            size = line.split(b";", 1)[0].strip(b" \t")  # chunk extensions are ignored
            if not _CHUNK_SIZE.fullmatch(size):
                raise BodyError(f"invalid chunk size line {line[:40]!r}")
            self._left = int(size, 16)
            self._state = "data" if self._left else "trailer"
        else:  # trailer fields: read, bounded, ignored; an empty line ends the body
            self._trailer_bytes += len(line) + 2
            if self._trailer_bytes > MAX_TRAILER:
                raise BodyError("chunked trailer too long")
            if not line:
                self._state = "done"


class BodyDecoder:
    """Framing and content decoding of one body; ``done`` once its end was seen.

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
        self._left = length or 0
        self._done = False
        if framing is Framing.LENGTH and self._left == 0:
            self._done = True

    @property
    def done(self) -> bool:
        return self._done

    def feed(self, data: bytes) -> bytes:
        if self._done:
            return b""  # bytes after the end: ignored, the connection is not reused
        if self._chunked is not None:
            payload = self._chunked.feed(data)
            ended = self._chunked.done
        elif self._framing is Framing.LENGTH:
            payload = data[: self._left]
            self._left -= len(payload)
            ended = self._left == 0
        else:
            payload, ended = data, False
        out = self._content.feed(payload)
        if ended:
            self._done = True
            out += self._content.finish()
        return out

    def end_of_input(self) -> bytes:
        """The connection closed: return the last decoded bytes, or raise if cut short."""
        if self._done:
            return b""
        self._done = True
        if self._chunked is not None:
            raise BodyError(f"connection closed inside a chunked body ({self._chunked.position})")
        if self._framing is Framing.LENGTH:
            raise BodyError(f"connection closed {self._left} bytes before the Content-Length")
        return self._content.finish()
