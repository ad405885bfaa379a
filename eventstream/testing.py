r"""A real, scripted Server-Sent Events server for tests: the library's and yours.

:class:`SSEServer` is an HTTP/1.1 server on a loopback port.  It answers each request
with a :class:`Script`: a status, headers, then events, pauses, gates and faults
(drops, resets, malformed bytes), in the framing and compression the script asks for.
It records every request.  Standard library only; it imports nothing else of
eventstream, so it can test any SSE client.

Example::

    import requests
    from eventstream.testing import Script, SSEServer

    with SSEServer() as server:
        server.enqueue(Script().event("hello", id="1"))
        with requests.get(server.url_for("/events"), stream=True, timeout=5) as response:
            assert response.raw.read() == b"id: 1\ndata: hello\n\n"
        (request,) = server.wait_for_requests(1)
        assert request.path == "/events"

Threads.  :meth:`SSEServer.start` runs an accept thread
(``eventstream-testing-<port>-accept``); each accepted connection gets its own daemon
thread (``eventstream-testing-<port>-conn-<index>``), which does the TLS handshake,
reads one request, picks its script and runs it.  :meth:`SSEServer.stop` wakes and
joins every one of them.  The test's thread only queues work and reads records.

Connections.  The server answers one request per connection and always sends
``Connection: close``: an SSE client that reconnects opens a new connection anyway.
Bytes a client sends after its request are read and discarded; a client closing its
end ends the connection's thread at its next wait.  Write errors (the client went
away) end the thread quietly, logged at debug level on this module's logger.

Writes.  Each flushing write (``event()``, ``comment()`` and ``send()`` with the
default ``flush=True``, each byte of ``trickle()``, and ``wire()``) goes to the kernel
in one ``send`` call.  With :attr:`Framing.CHUNKED` the write is exactly one chunk,
and with compression it is one ``Z_SYNC_FLUSH`` block, so each event can be decoded
the moment it arrives.  ``flush=False`` holds body bytes back, to share the next
flushing write's chunk.  The status line and headers are held back too and go out
with the first write, as a real server's often do; any other action (a pause, a wait,
``hold()``...) sends what is pending first.  The server sets ``TCP_NODELAY``, so on
loopback one write is normally one TCP segment, but TCP promises nothing about
segments; split a write yourself (``flush=False`` / ``wire()`` / ``pause()``) to test
how a client joins pieces.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import http
import logging
import math
import re
import select
import socket
import ssl
import string
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final, Optional, Union

__all__ = [
    "Connection",
    "Framing",
    "HeaderSpec",
    "Headers",
    "RecordedRequest",
    "Responder",
    "SSEServer",
    "Script",
]

logger = logging.getLogger(__name__)

_MAX_HEAD: Final = 64 * 1024  # bytes of request line and header fields
_RECV_SIZE: Final = 65536
_GATE_POLL: Final = 0.01  # a threading.Event has no fd to poll: look at it this often
_JOIN_TIMEOUT: Final = 10.0
_NO_BODY_STATUSES: Final = frozenset({204, 304})
_DEFAULT_HEADERS: Final = (("Content-Type", "text/event-stream"), ("Cache-Control", "no-store"))
_ZLIB_WBITS: Final = {"gzip": 31, "deflate": 15}  # 31: gzip wrapper; 15: zlib (RFC 1950)
_LINE_BREAK: Final = re.compile(r"\r\n|\r|\n")  # the SSE line ends; str.splitlines has more

HeaderSpec = Union[Mapping[str, Optional[str]], Iterable[tuple[str, Optional[str]]]]
"""Header fields for :class:`Script`: a mapping, or ``(name, value)`` pairs to repeat a name."""


class Framing(enum.Enum):
    """How a response body is delimited on the wire."""

    CHUNKED = "chunked"
    """``Transfer-Encoding: chunked``; each flushing write is one chunk."""
    CONTENT_LENGTH = "content-length"
    """``Content-Length`` of the whole encoded body the script describes (as if it
    ended with ``close()``), computed before the headers go out; pauses and gates still
    happen mid-body.  Bytes from ``wire()`` and from a live connection are not counted:
    pass your own ``Content-Length`` header for those, or to announce a longer body."""
    CLOSE = "close"
    """No length: the body ends when the server closes the connection."""


class _End(enum.Enum):
    """How a script ends, or how a connection is ended from outside."""

    CLOSE = "close"
    DROP = "drop"
    RESET = "reset"
    HOLD = "hold"
    LIVE = "live"


class _Flush(enum.Enum):
    FLUSH = "flush"


@dataclass(frozen=True)
class _Body:
    data: bytes
    flush: bool


@dataclass(frozen=True)
class _Write:
    data: bytes  # body bytes that become one chunk / one compressed block


@dataclass(frozen=True)
class _Wire:
    data: bytes


@dataclass(frozen=True)
class _Pause:
    seconds: float


@dataclass(frozen=True)
class _Wait:
    gate: threading.Event
    timeout: float


_Action = Union[_Body, _Flush, _Wire, _Pause, _Wait, _End]
_Step = Union[_Write, _Wire, _Pause, _Wait, _End]
_Command = Union[_Write, _Wire, _End]


class _Stop(Exception):
    """End this connection now, the way ``end`` says (a private control-flow signal)."""

    def __init__(self, end: _End, reason: str) -> None:
        super().__init__(reason)
        self.end = end


class Headers(Mapping[str, str]):
    """Read-only HTTP header fields with case-insensitive lookup, in the order received.

    ``headers["last-event-id"]`` joins a repeated field's values with ``", "``;
    :meth:`get_all` returns them one by one.  Iteration yields each name once, spelled
    as first received.  Safe to share between threads.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields = tuple(fields)

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every ``(name, value)`` pair, as received."""
        return self._fields

    def get_all(self, name: str) -> list[str]:
        """The values of every field called ``name`` (any case), in order."""
        key = name.lower()
        return [value for field, value in self._fields if field.lower() == key]

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for field, _ in self._fields:
            if field.lower() not in seen:
                seen.add(field.lower())
                yield field

    def __len__(self) -> int:
        return len({field.lower() for field, _ in self._fields})

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server read it (immutable).

    Attributes:
        method: ``"GET"``, ``"POST"``...
        target: The request target as sent, e.g. ``"/events?x=1"``.
        path: ``target`` up to ``?``.
        query: ``target`` after ``?``, undecoded (``""`` if none).
        version: ``"HTTP/1.1"``.
        headers: The header fields, looked up case-insensitively.
        body: The body, de-chunked if it came chunked; ``b""`` if none.
        client_address: The client's ``(host, port)``.
        connection: The index of the :class:`Connection` it came on.
    """

    __slots__ = (
        "body",
        "client_address",
        "connection",
        "headers",
        "method",
        "path",
        "query",
        "target",
        "version",
    )
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    body: bytes
    client_address: tuple[str, int]
    connection: int


def _check_field(text: str, what: str) -> str:
    # CR or LF would inject lines; malformed bytes on purpose go through wire()/raw_response().
    if "\r" in text or "\n" in text:
        raise ValueError(f"{what} must not contain CR or LF: {text!r}")
    return text


def _format_event(data: str, event: str | None, id: str | None, retry: int | None) -> bytes:
    lines = []
    if id is not None:
        lines.append(f"id: {_check_field(id, 'id')}")
    if event is not None:
        lines.append(f"event: {_check_field(event, 'event')}")
    if retry is not None:
        if isinstance(retry, bool) or not isinstance(retry, int) or retry < 0:
            raise ValueError(f"retry must be a non-negative int (milliseconds), not {retry!r}")
        lines.append(f"retry: {retry}")
    lines.extend(f"data: {line}" for line in _LINE_BREAK.split(data))
    return ("\n".join(lines) + "\n\n").encode()


def _format_comment(text: str) -> bytes:
    return "".join(f": {line}\n" if line else ":\n" for line in _LINE_BREAK.split(text)).encode()


def _merge_headers(spec: HeaderSpec | None) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    pairs = list(spec.items()) if isinstance(spec, Mapping) else list(spec or ())
    named = frozenset(name.lower() for name, _ in pairs)
    merged = [(name, value) for name, value in _DEFAULT_HEADERS if name.lower() not in named]
    for name, value in pairs:
        if not name or ":" in name or name.strip() != name:
            raise ValueError(f"invalid header name {name!r}")
        if value is not None:
            merged.append((_check_field(name, "a header name"), _check_field(value, "a header")))
    return tuple(merged), named


class Script:
    """An immutable description of one response; build it by chaining methods.

    Every method returns a new script and leaves this one unchanged, so a script can
    be reused for many requests and shared between threads.  A connection's own thread
    runs the script.  A script ends with at most one of :meth:`close` (implied),
    :meth:`drop`, :meth:`reset`, :meth:`hold` or :meth:`live`; adding an action after
    that raises ``ValueError``.

    Args:
        status: The response status (100-999); 204, 304 and 1xx responses have no body.
        headers: Fields added to the defaults ``Content-Type: text/event-stream`` and
            ``Cache-Control: no-store``.  A name given here replaces the default or
            automatic field of that name (any case); the value ``None`` removes it.  The
            automatic fields are ``Transfer-Encoding`` or ``Content-Length`` (from
            ``framing``), ``Content-Encoding`` (from ``encoding``) and
            ``Connection: close``.
        framing: How the body is delimited.
        encoding: ``"gzip"`` or ``"deflate"`` compress the body incrementally.  Any other
            string is sent as ``Content-Encoding`` with the body unchanged (to test an
            unknown coding).  For an invalid gzip body, pass
            ``headers={"Content-Encoding": "gzip"}`` without ``encoding``.
    """

    __slots__ = (
        "_actions",
        "_encoding",
        "_framing",
        "_has_head",
        "_headers",
        "_named",
        "_status",
    )

    def __init__(
        self,
        status: int = 200,
        headers: HeaderSpec | None = None,
        framing: Framing = Framing.CHUNKED,
        encoding: str | None = None,
    ) -> None:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError(f"status must be an int from 100 to 999, not {status!r}")
        if not isinstance(framing, Framing):
            raise TypeError(f"framing must be a Framing, not {framing!r}")
        if encoding is not None and not encoding.strip():
            raise ValueError("encoding must be None or a non-empty string")
        self._status = status
        self._framing = framing
        self._encoding = None if encoding is None else _check_field(encoding, "encoding")
        self._headers, self._named = _merge_headers(headers)
        self._has_head = True
        self._actions: tuple[_Action, ...] = ()

    @property
    def status(self) -> int:
        """The response status."""
        return self._status

    @property
    def headers(self) -> tuple[tuple[str, str], ...]:
        """The header fields given or defaulted (the automatic ones are added when sent)."""
        return self._headers

    @property
    def framing(self) -> Framing:
        """How the body is delimited."""
        return self._framing

    @property
    def encoding(self) -> str | None:
        """The content coding, or ``None``."""
        return self._encoding

    def __repr__(self) -> str:
        return (
            f"Script(status={self._status}, framing={self._framing.name}, "
            f"encoding={self._encoding!r}, actions={len(self._actions)})"
        )

    # -- building ------------------------------------------------------------------

    def _then(self, *actions: _Action) -> Script:
        if self._actions and isinstance(self._actions[-1], _End):
            raise ValueError(f"the script already ends with {self._actions[-1].value}()")
        bodyless = self._status in _NO_BODY_STATUSES or self._status < 200
        if bodyless and any(isinstance(action, _Body) for action in actions):
            raise ValueError(f"a {self._status} response has no body (use wire() to force bytes)")
        new = object.__new__(Script)
        for name in Script.__slots__:
            setattr(new, name, getattr(self, name))
        new._actions = self._actions + actions
        return new

    def event(
        self,
        data: str,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
        flush: bool = True,
    ) -> Script:
        """Send one event block: ``id:``, ``event:``, ``retry:``, then one ``data:`` line
        per line of ``data`` (split at CRLF, CR or LF), then a blank line.

        ``id`` and ``event`` must not contain a line break; send malformed fields with
        :meth:`send`.  ``flush=False`` holds the bytes for the next flushing write.
        """
        return self._then(_Body(_format_event(data, event, id, retry), flush))

    def comment(self, text: str = "", *, flush: bool = True) -> Script:
        """Send a comment line (``": text"``) per line of ``text``, e.g. a keep-alive."""
        return self._then(_Body(_format_comment(text), flush))

    def send(self, data: bytes, *, flush: bool = True) -> Script:
        """Send body bytes as they are (still framed and compressed)."""
        return self._then(_Body(bytes(data), flush))

    def flush(self) -> Script:
        """Write the body bytes held back by ``flush=False`` now, as one write."""
        return self._then(_Flush.FLUSH)

    def pause(self, seconds: float) -> Script:
        """Send what is pending, then stay silent for ``seconds``.

        :meth:`SSEServer.stop` and :meth:`SSEServer.drop_all` cut the pause short.
        """
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        return self._then(_Pause(float(seconds)))

    def wait(self, gate: threading.Event, timeout: float = 10.0) -> Script:
        """Send what is pending, then wait until the test sets ``gate``.

        The connection's thread looks at ``gate`` every 10 ms; stop() and drop_all()
        end the wait at once.  If ``timeout`` seconds pass first, the connection is
        dropped (as by :meth:`drop`) and a warning is logged: a forgotten gate then
        fails the test instead of letting it pass by luck.
        """
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        return self._then(_Wait(gate, float(timeout)))

    def trickle(self, data: bytes, interval: float) -> Script:
        """Send ``data`` one byte at a time, each its own write, ``interval`` seconds apart."""
        if interval < 0:
            raise ValueError("interval must be >= 0")
        actions: list[_Action] = []
        for position, byte in enumerate(bytes(data)):
            if position:
                actions.append(_Pause(float(interval)))
            actions.append(_Body(bytes((byte,)), True))
        return self._then(*actions)

    def wire(self, data: bytes) -> Script:
        """Write bytes to the socket as they are, bypassing framing and compression.

        For malformed framing: ``Script().event("a").wire(b"zz\\r\\n")`` sends a bad chunk
        size, ``.wire(b"1")`` then :meth:`drop` drops mid chunk header.
        """
        return self._then(_Wire(bytes(data)))

    def close(self) -> Script:
        """End the body properly (the chunked terminator, the end of the compressed
        stream), then close the connection.  Implied at the end of every script."""
        return self._then(_End.CLOSE)

    def drop(self) -> Script:
        """Close the connection (FIN) without ending the body: no chunked terminator,
        no gzip trailer.  Models a server or proxy dying mid-stream."""
        return self._then(_End.DROP)

    def reset(self) -> Script:
        """Abort the connection with a TCP RST (``SO_LINGER`` 0), body unfinished."""
        return self._then(_End.RESET)

    def hold(self) -> Script:
        """Send what is pending, then keep the connection open and silent until
        stop(), drop_all() or the client closes it."""
        return self._then(_End.HOLD)

    def live(self) -> Script:
        """Send what is pending, then take commands from the :class:`Connection`
        handle (see :meth:`SSEServer.wait_for_connection`) until one ends it."""
        return self._then(_End.LIVE)

    # -- ready-made scripts ------------------------------------------------------------

    def _headless(self) -> Script:
        new = self._then()
        new._has_head = False
        return new

    @classmethod
    def raw_response(cls, data: bytes) -> Script:
        """A script that writes ``data`` (status line, headers, body: anything) as it is.

        Close-delimited; chain more actions to go on (``.hold()``, ``.wire(...)``).
        ``Script.raw_response(b"").reset()`` resets before any byte of a response.
        """
        return cls(framing=Framing.CLOSE)._headless().wire(data)

    @classmethod
    def no_response(cls) -> Script:
        """A script that reads the request and never answers: it holds the connection
        open and silent until stop(), drop_all() or the client closes it."""
        return cls()._headless().hold()

    @classmethod
    def redirect(cls, location: str, status: int = 302) -> Script:
        """A redirect to ``location`` (any URL; see :meth:`SSEServer.url_for`), empty body."""
        return cls(status, headers={"Location": location}, framing=Framing.CONTENT_LENGTH)


Responder = Union[Script, Callable[[RecordedRequest], Script]]
"""A :class:`Script`, or a callable that builds one from the request.  A callable runs
on the connection's thread; if it raises, the client gets a 500 naming the error."""


def _compile(actions: tuple[_Action, ...]) -> list[_Step]:
    """Merge held-back body bytes into writes, and end the list with an _End."""
    steps: list[_Step] = []
    pending = bytearray()
    for action in actions:
        if isinstance(action, _Body):
            pending += action.data
            if not action.flush:
                continue
        if pending:
            steps.append(_Write(bytes(pending)))
            pending.clear()
        if not isinstance(action, (_Body, _Flush)):
            steps.append(action)
    if pending:
        steps.append(_Write(bytes(pending)))
    if not steps or not isinstance(steps[-1], _End):
        steps.append(_End.CLOSE)
    return steps


class _Encoder:
    """Compress writes incrementally; the same calls always give the same bytes."""

    def __init__(self, encoding: str | None) -> None:
        wbits = _ZLIB_WBITS.get((encoding or "").lower())
        self._zlib = None if wbits is None else zlib.compressobj(wbits=wbits)

    def encode(self, data: bytes) -> bytes:
        if self._zlib is None:
            return data
        # A sync flush ends the write on a byte boundary: the client can decode it now.
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return b"" if self._zlib is None else self._zlib.flush()


def _head(script: Script, framing: Framing | None, steps: list[_Step]) -> bytes:
    try:
        reason = http.HTTPStatus(script.status).phrase
    except ValueError:
        reason = "Unknown"
    fields = list(script.headers)
    automatic: list[tuple[str, str]] = []
    if framing is Framing.CHUNKED:
        automatic.append(("Transfer-Encoding", "chunked"))
    elif framing is Framing.CONTENT_LENGTH and "content-length" not in script._named:
        encoder = _Encoder(script.encoding)
        length = sum(len(encoder.encode(s.data)) for s in steps if isinstance(s, _Write))
        automatic.append(("Content-Length", str(length + len(encoder.finish()))))
    if framing is not None and script.encoding is not None:
        automatic.append(("Content-Encoding", script.encoding))
    automatic.append(("Connection", "close"))
    fields += [(name, value) for name, value in automatic if name.lower() not in script._named]
    lines = [f"HTTP/1.1 {script.status} {reason}", *(f"{n}: {v}" for n, v in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Connection:
    """One accepted connection, as a test sees it.

    The accept thread creates it; the connection's own thread
    (``eventstream-testing-<port>-conn-<index>``) reads the request and runs the script.
    Every method may be called from any thread.  The sending methods only queue a
    command: the connection's thread carries the commands out in order once its script
    has reached :meth:`Script.live` (commands queued earlier wait for that; commands
    queued after the connection closed are ignored).
    """

    def __init__(self, index: int, client_address: tuple[str, int]) -> None:
        self._index = index
        self._client_address = client_address
        self._request: RecordedRequest | None = None
        self._commands: collections.deque[_Command] = collections.deque()
        self._closed = threading.Event()
        self._ending: _End | None = None  # set from outside by stop() / drop_all()
        self._thread: threading.Thread | None = None
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    @property
    def index(self) -> int:
        """0 for the server's first connection, then 1, 2...; survives a restart."""
        return self._index

    @property
    def client_address(self) -> tuple[str, int]:
        """The client's ``(host, port)``."""
        return self._client_address

    @property
    def request(self) -> RecordedRequest | None:
        """The request read on this connection, ``None`` until it has been read."""
        return self._request

    @property
    def closed(self) -> bool:
        """Whether the connection's thread has closed the socket."""
        return self._closed.is_set()

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Block until the connection is closed; raise ``TimeoutError`` after ``timeout``."""
        if not self._closed.wait(timeout):
            raise TimeoutError(f"connection {self._index} still open after {timeout} s")

    def event(
        self,
        data: str,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        """Queue one event block, formatted as by :meth:`Script.event`, as one write."""
        self._post(_Write(_format_event(data, event, id, retry)))

    def comment(self, text: str = "") -> None:
        """Queue a comment, formatted as by :meth:`Script.comment`, as one write."""
        self._post(_Write(_format_comment(text)))

    def send(self, data: bytes) -> None:
        """Queue body bytes (framed and compressed like the script's) as one write."""
        self._post(_Write(bytes(data)))

    def wire(self, data: bytes) -> None:
        """Queue bytes for the socket as they are, bypassing framing and compression."""
        self._post(_Wire(bytes(data)))

    def close(self) -> None:
        """Queue the proper end of the body, then the close of the connection."""
        self._post(_End.CLOSE)

    def drop(self) -> None:
        """Queue a close without ending the body (FIN)."""
        self._post(_End.DROP)

    def reset(self) -> None:
        """Queue a TCP reset."""
        self._post(_End.RESET)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection {self._index} from {self._client_address} {state}>"

    # -- private: used by the server and the connection's thread -------------------

    def _post(self, command: _Command) -> None:
        if self.closed:
            logger.debug("connection %d is closed: command ignored", self._index)
            return
        self._commands.append(command)
        self._signal()

    def _abort(self, ending: _End) -> None:
        if self._ending is None:
            self._ending = ending
        self._signal()

    def _signal(self) -> None:
        # Under the lock, so a wake-up is never written to a closed (or reused) fd.
        with self._wake_lock:
            if self._wake_w.fileno() >= 0:
                # A full pair holds wake-ups already: the thread will wake anyway.
                with contextlib.suppress(BlockingIOError):
                    self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass  # drained

    def _finish(self) -> None:
        with self._wake_lock:
            self._wake_r.close()
            self._wake_w.close()
        self._closed.set()


def _size(text: str, base: int) -> int:
    """A Content-Length or chunk size; ``ValueError`` unless it is plain digits."""
    text = text.strip()
    digits = string.hexdigits if base == 16 else string.digits
    if not text or not all(c in digits for c in text):  # int() would take "-1", "0x1", "1_0"
        raise ValueError(f"invalid size {text!r}")
    return int(text, base)


class _Handler:
    """The body of one connection's thread: handshake, request, script, close."""

    def __init__(
        self, server: SSEServer, conn: Connection, sock: socket.socket, tls: ssl.SSLContext | None
    ) -> None:
        self._server = server
        self._conn = conn
        self._sock = sock
        self._tls = tls
        self._inbox = bytearray()  # request bytes read but not parsed yet
        self._out = bytearray()  # bytes for the wire not sent yet (at first, the head)
        self._framing: Framing | None = None
        self._encoder = _Encoder(None)

    def run(self) -> None:
        end = _End.DROP
        try:
            if self._tls is not None:
                self._handshake(self._tls)
            try:
                request = self._read_request()
            except ValueError as exc:
                logger.debug("connection %d: bad request: %s", self._conn.index, exc)
                self._sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                end = _End.CLOSE
                return
            end = self._respond(self._server._script_for(request, self._conn), request)
        except _Stop as stop:
            logger.debug("connection %d: %s", self._conn.index, stop)
            end = stop.end
        except OSError as exc:  # the client went away, or refused the TLS handshake
            logger.debug("connection %d: %r", self._conn.index, exc)
        finally:
            self._close(self._conn._ending or end)
            self._conn._finish()

    # -- waiting: every blocking point is a poll that a wake-up interrupts -------------

    def _poll(self, events: int, timeout: float | None) -> bool:
        """Wait for ``events`` on the socket, a wake-up or the timeout; True if ready."""
        poller = select.poll()
        poller.register(self._sock.fileno(), events)
        poller.register(self._conn._wake_r.fileno(), select.POLLIN)
        ready = dict(poller.poll(-1 if timeout is None else math.ceil(timeout * 1000)))
        if self._conn._wake_r.fileno() in ready:
            self._conn._drain_wake()
        if self._conn._ending is not None:
            raise _Stop(self._conn._ending, "ended by the server")
        return self._sock.fileno() in ready

    def _idle(self, timeout: float | None) -> None:
        """Stay silent until the timeout or a wake-up, noticing a client that left."""
        if not self._poll(select.POLLIN, timeout):
            return
        try:
            if not self._sock.recv(_RECV_SIZE):
                raise _Stop(_End.DROP, "the client closed the connection")
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # nothing for the application (a TLS record, say)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._idle(left)

    def _wait_gate(self, wait: _Wait) -> None:
        deadline = time.monotonic() + wait.timeout
        while not wait.gate.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning(
                    "connection %d: gate not set in %s s", self._conn.index, wait.timeout
                )
                raise _Stop(_End.DROP, "gate timed out")
            self._idle(min(left, _GATE_POLL))

    # -- socket I/O on a non-blocking socket ------------------------------------------

    def _handshake(self, context: ssl.SSLContext) -> None:
        self._sock = tls = context.wrap_socket(
            self._sock, server_side=True, do_handshake_on_connect=False
        )
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self._poll(select.POLLIN, None)
            except ssl.SSLWantWriteError:
                self._poll(select.POLLOUT, None)

    def _recv(self) -> bytes:
        while True:
            try:
                return self._sock.recv(_RECV_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._poll(select.POLLIN, None)
            except ssl.SSLWantWriteError:
                self._poll(select.POLLOUT, None)

    def _sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view) :]
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._poll(select.POLLOUT, None)
            except ssl.SSLWantReadError:
                self._poll(select.POLLIN, None)

    def _close(self, end: _End) -> None:
        try:
            if end is _End.RESET:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif end is _End.CLOSE:
                # Unread input would turn the close into a reset and could cost the
                # client the end of the body: read what is there first.
                while self._sock.recv(_RECV_SIZE):
                    pass
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # nothing left to read
        except OSError as exc:
            logger.debug("connection %d: closing: %r", self._conn.index, exc)
        finally:
            self._sock.close()

    # -- the request ---------------------------------------------------------------------

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self._inbox.find(marker)) < 0:
            if len(self._inbox) > _MAX_HEAD:
                raise ValueError("request line or header fields too long")
            data = self._recv()
            if not data:
                raise _Stop(_End.DROP, "the client closed the connection before a request")
            self._inbox += data
        found = bytes(self._inbox[:end])
        del self._inbox[: end + len(marker)]
        return found

    def _read_exact(self, size: int) -> bytes:
        while len(self._inbox) < size:
            data = self._recv()
            if not data:
                raise _Stop(_End.DROP, "the client closed the connection mid-body")
            self._inbox += data
        found = bytes(self._inbox[:size])
        del self._inbox[:size]
        return found

    def _read_request(self) -> RecordedRequest:
        """Read one request; ``ValueError`` if it is malformed."""
        request_line, *lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")  # ValueError if not three parts
        fields = []
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise ValueError(f"malformed header field {line!r}")
            fields.append((name, value.strip()))
        headers = Headers(fields)
        if headers.get("Expect", "").lower() == "100-continue":
            self._sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked()
        else:
            body = self._read_exact(_size(headers.get("Content-Length", "0"), 10))
        path, _, query = target.partition("?")
        return RecordedRequest(
            method=method,
            target=target,
            path=path,
            query=query,
            version=version,
            headers=headers,
            body=body,
            client_address=self._conn.client_address,
            connection=self._conn.index,
        )

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while size := _size(self._read_until(b"\r\n").split(b";")[0].decode("latin-1"), 16):
            body += self._read_exact(size)
            if self._read_exact(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
        while self._read_until(b"\r\n"):
            pass  # trailer fields
        return bytes(body)

    # -- the response --------------------------------------------------------------------

    def _respond(self, script: Script, request: RecordedRequest) -> _End:
        steps = _compile(script._actions)
        bodyless = request.method == "HEAD" or script.status in _NO_BODY_STATUSES
        self._framing = None if bodyless or script.status < 200 else script.framing
        self._encoder = _Encoder(script.encoding)
        if script._has_head:
            self._out += _head(script, self._framing, steps)
        for step in steps:
            if self._conn._ending is not None:
                raise _Stop(self._conn._ending, "ended by the server")
            if isinstance(step, _End):
                return self._end(step)
            self._run(step)
        raise AssertionError("a compiled script always ends with an _End")

    def _run(self, step: _Step) -> None:
        if isinstance(step, _Write):
            if self._framing is not None:  # a HEAD request gets no body
                self._frame(self._encoder.encode(step.data))
        elif isinstance(step, _Wire):
            self._out += step.data
        self._flush_out()
        if isinstance(step, _Pause):
            self._pause(step.seconds)
        elif isinstance(step, _Wait):
            self._wait_gate(step)

    def _end(self, end: _End) -> _End:
        self._flush_out()
        if end is _End.HOLD:
            while True:
                self._idle(None)
        if end is _End.LIVE:
            end = self._live()
        if end is _End.CLOSE and self._framing is not None:
            self._frame(self._encoder.finish())
            if self._framing is Framing.CHUNKED:
                self._out += b"0\r\n\r\n"
            self._flush_out()
        return end

    def _live(self) -> _End:
        while True:
            try:
                command = self._conn._commands.popleft()
            except IndexError:
                self._idle(None)
                continue
            if isinstance(command, _End):
                return command
            self._run(command)

    def _frame(self, encoded: bytes) -> None:
        if not encoded:
            return  # an empty chunk would end a chunked body
        if self._framing is Framing.CHUNKED:
            self._out += b"%x\r\n%s\r\n" % (len(encoded), encoded)
        else:
            self._out += encoded

    def _flush_out(self) -> None:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            self._sendall(data)


class SSEServer:
    """A real HTTP/1.1 (or HTTPS) server on a loopback port that answers with scripts.

    Each request takes a script: the one routed to its path (:meth:`route`), else the
    next one queued (:meth:`enqueue`), else :attr:`default`.  The request is recorded
    before its script runs.  Every public method may be called from any thread (start
    and stop from one thread at a time); scripts and route callables run on the
    connection's own thread, as the module docstring describes.

    Args:
        ssl_context: A server-side context (with its certificate loaded) to serve HTTPS.
            Each connection's thread does its own handshake, so a client that stalls
            the handshake holds up nobody else.
        host: The address to listen on (an IPv6 address works too).
        port: The port; 0 picks a free one.  The listener sets ``SO_REUSEADDR``, so a
            new server can take a stopped server's port: ``SSEServer(port=old.port)``.
    """

    NO_SCRIPT: Final[Script] = Script(
        404, headers={"Content-Type": "text/plain; charset=utf-8"}
    ).send(b"no script for this request\n")
    """The initial :attr:`default`: a 404, so a client that connects with nothing
    queued fails at once (a 404 is not retried) instead of retrying or waiting."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._ssl_context = ssl_context
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: collections.deque[Responder] = collections.deque()
        self._routes: dict[str, Responder] = {}
        self._default: Responder = self.NO_SCRIPT
        self._requests: list[RecordedRequest] = []
        self._connections: list[Connection] = []
        self._handed_out = 0  # connections returned by wait_for_connection
        self._running = False
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Listen and start the accept thread.  After :meth:`stop`, start listens
        again on the same port, keeping the queue, routes and records."""
        if self._running:
            raise RuntimeError("the server is already running")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(128)
            listener.setblocking(False)
            wake = socket.socketpair()
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        thread = threading.Thread(
            target=self._accept_loop,
            args=(listener, wake[0]),
            name=f"eventstream-testing-{self._port}-accept",
            daemon=True,
        )
        with self._lock:
            self._listener, self._wake, self._accept_thread = listener, wake, thread
            self._running = True
        thread.start()

    def stop(self) -> None:
        """Close the listener and every connection (FIN, body unfinished), and join
        every thread.  Idempotent; takes milliseconds even with connections held open.

        Raises ``RuntimeError`` if a thread is still running after 10 s (a route
        callable that never returns, say).
        """
        with self._lock:
            if not self._running:
                return
            self._running = False
            connections = list(self._connections)
            listener, wake, accept_thread = self._listener, self._wake, self._accept_thread
            self._listener = self._wake = self._accept_thread = None
        assert listener is not None
        assert wake is not None
        assert accept_thread is not None
        wake[1].send(b"\0")  # never drained: the accept thread's poll stays readable
        for conn in connections:
            conn._abort(_End.DROP)
        stuck = self._join([accept_thread, *(c._thread for c in connections if c._thread)])
        for sock in (listener, *wake):
            sock.close()
        if stuck:
            raise RuntimeError(f"threads still running after stop(): {stuck}")

    def __enter__(self) -> SSEServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _join(threads: list[threading.Thread]) -> list[str]:
        deadline = time.monotonic() + _JOIN_TIMEOUT
        for thread in threads:
            if thread is not threading.current_thread():  # a route callable may call us
                thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive() and t is not threading.current_thread()]

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (known once started; kept after stop)."""
        if not self._port:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (``https://`` with an ssl_context), no trailing slash."""
        return self.url_for("")

    def url_for(self, path: str = "/", *, host: str | None = None) -> str:
        """The URL of ``path`` (which may carry a query) on this server.

        ``host`` replaces the host in the URL only, e.g. ``host="localhost"`` for a
        redirect to "another host" that still reaches this server.
        """
        if path and not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        host = self._host if host is None else host
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}{path}"

    # -- what to answer ----------------------------------------------------------------------

    def enqueue(self, *responders: Responder) -> None:
        """Queue responders: each new request not routed takes the next, in arrival order."""
        with self._lock:
            self._queue.extend(responders)

    def route(self, path: str, responder: Responder | None) -> None:
        """Answer every request for ``path`` (exact, query ignored) with ``responder``,
        before the queue; ``None`` removes the route."""
        with self._lock:
            if responder is None:
                self._routes.pop(path, None)
            else:
                self._routes[path] = responder

    @property
    def default(self) -> Responder:
        """What a request gets when no route matches and the queue is empty
        (initially :attr:`NO_SCRIPT`)."""
        return self._default

    @default.setter
    def default(self, responder: Responder) -> None:
        with self._lock:
            self._default = responder

    def _script_for(self, request: RecordedRequest, conn: Connection) -> Script:
        with self._lock:
            self._requests.append(request)
            conn._request = request
            responder = self._routes.get(request.path)
            if responder is None:
                responder = self._queue.popleft() if self._queue else self._default
            self._changed.notify_all()
        logger.debug("connection %d: %s %s", conn.index, request.method, request.path)
        if isinstance(responder, Script):
            return responder
        try:
            script = responder(request)
            if not isinstance(script, Script):
                raise TypeError(f"a route callable returned {script!r}, not a Script")
        except Exception as exc:  # the test's own callable: answer 500 so the client sees it
            logger.exception("responder %r failed", responder)
            text = f"responder failed: {exc!r}\n".encode()
            return Script(500, headers={"Content-Type": "text/plain; charset=utf-8"}).send(text)
        return script

    # -- records -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request read so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> list[Connection]:
        """A snapshot of every connection accepted so far, in index order."""
        with self._lock:
            return list(self._connections)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until ``n`` requests have been read; return the first ``n``.

        Raises ``TimeoutError`` if fewer arrived within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= n, timeout):
                got = len(self._requests)
                raise TimeoutError(f"{got} requests after {timeout} s, expected {n}")
            return self._requests[:n]

    def wait_for_connection(self, timeout: float = 5.0) -> Connection:
        """Return the next connection not yet returned, in index order: the first call
        gives connection 0, the next connection 1, and so on, waiting for it to be
        accepted if need be.  Raises ``TimeoutError`` after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: len(self._connections) > self._handed_out, timeout
            ):
                raise TimeoutError(f"no connection {self._handed_out} after {timeout} s")
            self._handed_out += 1
            return self._connections[self._handed_out - 1]

    # -- faults ----------------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Reset (TCP RST) every open connection, wherever its script is, as a crashed
        server would, and wait for their threads to finish.  The server keeps listening.
        """
        with self._lock:
            connections = [conn for conn in self._connections if not conn.closed]
        for conn in connections:
            conn._abort(_End.RESET)
        stuck = self._join([conn._thread for conn in connections if conn._thread])
        if stuck:
            raise RuntimeError(f"threads still running after drop_all(): {stuck}")

    # -- the accept thread ---------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(wake.fileno(), select.POLLIN)
        while True:
            ready = dict(poller.poll())
            if wake.fileno() in ready:
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue  # the client left before we took it
            except OSError as exc:  # out of fds, say: back off without spinning
                logger.debug("accept failed: %r", exc)
                backoff = select.poll()
                backoff.register(wake.fileno(), select.POLLIN)
                if backoff.poll(50):
                    return
                continue
            self._register(sock, (address[0], address[1]))

    def _register(self, sock: socket.socket, address: tuple[str, int]) -> None:
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if not self._running:  # stop() has begun: it will not join a new thread
                    sock.close()
                    return
                conn = Connection(len(self._connections), address)
                handler = _Handler(self, conn, sock, self._ssl_context)
                conn._thread = threading.Thread(
                    target=handler.run,
                    name=f"eventstream-testing-{self._port}-conn-{conn.index}",
                    daemon=True,
                )
                self._connections.append(conn)
                conn._thread.start()
                self._changed.notify_all()
        except OSError as exc:  # the client left already, or no fd for the wake-up pair
            logger.debug("could not serve %s: %r", address, exc)
            sock.close()
