"""The exception hierarchy: one root, and subclasses that tell the caller what to do next.

Leaf module: standard library and ``_models`` only.  Errors are raised by the layer
that detects them and translated once, at the transport boundary, from ``requests``,
``urllib3`` and ``socket`` errors into these classes (``raise ... from exc``), so
callers never need to import those libraries to handle failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ._models import Event, Headers

__all__ = [
    "ConnectError",
    "ContentTypeError",
    "EventStreamError",
    "HTTPStatusError",
    "ProtocolError",
    "ReadError",
    "ResponseError",
    "RetriesExhausted",
    "StreamError",
]


class EventStreamError(Exception):
    """Root of every error eventstream raises on purpose.

    Catch this to handle anything the library reports; misuse of the API (wrong
    argument types or values, calling methods in the wrong state) raises the
    standard ``TypeError``, ``ValueError`` or ``RuntimeError`` instead.

    An error a stream hands to the caller holds nothing of its worker thread: no
    traceback into it, and the transport's errors it chains (``__cause__``) have
    their references to the request, response, pool and connection set to None.
    Keeping errors (a list of recent failures) keeps no connection open.
    """


class ProtocolError(EventStreamError):
    """The stream broke a limit the client enforces: a line or an event larger than
    ``max_event_size``.

    The oversized event is skipped whole, never delivered in part; its ``id:`` and
    ``retry:`` lines are skipped with it.  ``events`` holds the other events that the
    same :meth:`Parser.feed` call completed, in order, so nothing else already
    received is lost; the parser goes on with the event after the oversized one.
    """

    def __init__(self, message: str, *, events: Sequence[Event] = ()) -> None:
        super().__init__(message)
        self.events: list[Event] = list(events)


class StreamError(EventStreamError):
    """A stream could not be opened or read; ``url`` names it.

    Raised in the caller's thread (the one iterating or joining a stream).
    """

    def __init__(self, message: str, *, url: str = "") -> None:
        super().__init__(message)
        self.url = url


class ConnectError(StreamError):
    """No connection could be made (DNS, refused, TLS, connect timeout).

    Long-lived streams retry it with backoff; it reaches the caller only inside
    :class:`RetriesExhausted` or through the ``on_error`` callback.
    """


class ReadError(StreamError):
    """An open connection failed: dropped, idle for longer than the read timeout,
    or broken framing mid-body.  Long-lived streams reconnect and resume."""


class ResponseError(StreamError):
    """The server answered, but not with an event stream to read.

    ``status_code`` and ``headers`` (case-insensitive names) are those of the response.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status_code: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, url=url)
        self.status_code = status_code
        self.headers = Headers(headers)


class HTTPStatusError(ResponseError):
    """The response status says the request failed (4xx, 5xx).

    ``body`` holds the first few hundred bytes of the response body, decoded, to
    help diagnose the failure.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str = "",
        status_code: int = 0,
        headers: Mapping[str, str] | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message, url=url, status_code=status_code, headers=headers)
        self.body = body


class ContentTypeError(ResponseError):
    """A successful response whose Content-Type is not ``text/event-stream``.

    Not retried: the endpoint is not an event stream.
    """


class RetriesExhausted(StreamError):
    """The retry limit was reached; ``__cause__`` is the last error seen."""


# Tracebacks and reprs name the public path (``eventstream.HTTPStatusError``), where
# users import these from, not this private module.
for _public in (
    EventStreamError,
    ProtocolError,
    StreamError,
    ConnectError,
    ReadError,
    ResponseError,
    HTTPStatusError,
    ContentTypeError,
    RetriesExhausted,
):
    _public.__module__ = "eventstream"
del _public
