"""The public :class:`Script` builder, :class:`Framing`, and the SSE formatting.

Rule: a script is an immutable value, checked when it is built (a bad field raises
``ValueError`` in the test, not on the wire), so it can be reused and shared between
threads.  Standard library only.
"""

from __future__ import annotations

import enum
import math
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Optional, Union

from ._actions import NO_BODY_STATUSES, Action, Body, End, Flush, Pause, Wait, Wire
from ._records import RecordedRequest

__all__ = [
    "Framing",
    "HeaderSpec",
    "Responder",
    "Script",
    "format_comment",
    "format_event",
]

_DEFAULT_HEADERS: Final = (("Content-Type", "text/event-stream"), ("Cache-Control", "no-store"))
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


def _check_field(text: str, what: str) -> str:
    # CR or LF would inject lines; malformed bytes on purpose go through wire()/raw_response().
    if "\r" in text or "\n" in text:
        raise ValueError(f"{what} must not contain CR or LF: {text!r}")
    return text


def _check_seconds(seconds: float, what: str) -> float:
    # inf and NaN would end the connection's thread (or, NaN, not wait at all).
    seconds = float(seconds)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} must be finite and >= 0 (seconds), not {seconds!r}")
    return seconds


def _check_header(text: str, what: str) -> str:
    # Header fields go out as Latin-1: anything else would fail on the connection's thread.
    try:
        text.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be Latin-1 text: {text!r}") from None
    return _check_field(text, what)


def format_event(data: str, event: str | None, id: str | None, retry: int | None) -> bytes:
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


def format_comment(text: str) -> bytes:
    return "".join(f": {line}\n" if line else ":\n" for line in _LINE_BREAK.split(text)).encode()


def _merge_headers(spec: HeaderSpec | None) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    pairs = list(spec.items()) if isinstance(spec, Mapping) else list(spec or ())
    named = frozenset(name.lower() for name, _ in pairs)
    merged = [(name, value) for name, value in _DEFAULT_HEADERS if name.lower() not in named]
    for name, value in pairs:
        if not name or ":" in name or name.strip() != name:
            raise ValueError(f"invalid header name {name!r}")
        if value is not None:
            merged.append((_check_header(name, "a header name"), _check_header(value, "a header")))
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
            automatic field of that name (any case); the value ``None`` removes it.
            Names and values must be Latin-1 text without CR or LF.  The
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
        self._encoding = None if encoding is None else _check_header(encoding, "encoding")
        self._headers, self._named = _merge_headers(headers)
        self._has_head = True
        self._actions: tuple[Action, ...] = ()

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

    def _then(self, *actions: Action) -> Script:
        if self._actions and isinstance(self._actions[-1], End):
            raise ValueError(f"the script already ends with {self._actions[-1].value}()")
        bodyless = self._status in NO_BODY_STATUSES or self._status < 200
        if bodyless and any(isinstance(action, Body) for action in actions):
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
        return self._then(Body(format_event(data, event, id, retry), flush))

    def comment(self, text: str = "", *, flush: bool = True) -> Script:
        """Send a comment line (``": text"``) per line of ``text``, e.g. a keep-alive."""
        return self._then(Body(format_comment(text), flush))

    def send(self, data: bytes, *, flush: bool = True) -> Script:
        """Send body bytes as they are (still framed and compressed)."""
        return self._then(Body(bytes(data), flush))

    def flush(self) -> Script:
        """Write the body bytes held back by ``flush=False`` now, as one write."""
        return self._then(Flush.FLUSH)

    def pause(self, seconds: float) -> Script:
        """Send what is pending, then stay silent for ``seconds`` (finite, >= 0; any
        length: a long pause waits in slices).

        :meth:`SSEServer.stop` and :meth:`SSEServer.drop_all` cut the pause short.
        """
        return self._then(Pause(_check_seconds(seconds, "seconds")))

    def wait(self, gate: threading.Event, timeout: float = 10.0) -> Script:
        """Send what is pending, then wait until the test sets ``gate``.

        The connection's thread looks at ``gate`` every 10 ms; stop() and drop_all()
        end the wait at once.  If ``timeout`` seconds pass first, the connection is
        dropped (as by :meth:`drop`) and a warning is logged: a forgotten gate then
        fails the test instead of letting it pass by luck.  ``timeout`` must be finite
        and > 0.
        """
        if _check_seconds(timeout, "timeout") == 0:
            raise ValueError("timeout must be > 0")
        return self._then(Wait(gate, float(timeout)))

    def trickle(self, data: bytes, interval: float) -> Script:
        """Send ``data`` one byte at a time, each its own write, ``interval`` seconds
        apart (finite, >= 0)."""
        interval = _check_seconds(interval, "interval")
        actions: list[Action] = []
        for position, byte in enumerate(bytes(data)):
            if position:
                actions.append(Pause(interval))
            actions.append(Body(bytes((byte,)), True))
        return self._then(*actions)

    def wire(self, data: bytes) -> Script:
        """Write bytes to the socket as they are, bypassing framing and compression.

        For malformed framing: ``Script().event("a").wire(b"zz\\r\\n")`` sends a bad chunk
        size, ``.wire(b"1")`` then :meth:`drop` drops mid chunk header.
        """
        return self._then(Wire(bytes(data)))

    def close(self) -> Script:
        """End the body properly (the chunked terminator, the end of the compressed
        stream), then close the connection.  Implied at the end of every script."""
        return self._then(End.CLOSE)

    def drop(self) -> Script:
        """Close the connection (FIN) without ending the body: no chunked terminator,
        no gzip trailer.  Models a server or proxy dying mid-stream."""
        return self._then(End.DROP)

    def reset(self) -> Script:
        """Abort the connection with a TCP RST (``SO_LINGER`` 0), body unfinished."""
        return self._then(End.RESET)

    def hold(self) -> Script:
        """Send what is pending, then keep the connection open and silent until
        stop(), drop_all() or the client closes it."""
        return self._then(End.HOLD)

    def live(self) -> Script:
        """Send what is pending, then take commands from the :class:`Connection`
        handle (see :meth:`SSEServer.wait_for_connection`) until one ends it."""
        return self._then(End.LIVE)

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
on the connection's thread; if it raises (anything, ``pytest.fail()`` too), the client
gets a 500 naming the error, and the server logs it."""
