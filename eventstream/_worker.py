"""The body of a stream's worker thread: connect, read, parse, deliver, back off.

The ownership rule lives here: the worker creates its own session, opens, reads and
closes every response, and closes the session in ``finally``.  Nothing it owns is
reachable from another thread; the only things shared are the stop signal (which
other threads set) and the sink (which hands events and errors to the owner).

Reconnection follows the WHATWG rules for EventSource (reconnect after the
reconnection time, resume with ``Last-Event-ID``, drop a partial event) plus what
production clients do: exponential backoff with jitter, ``Retry-After``, limits.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, Union

from . import _fork
from ._backoff import MAX_DELAY, Backoff, retry_after
from ._exceptions import (
    ConnectError,
    HTTPStatusError,
    ProtocolError,
    ReadError,
    RetriesExhausted,
    StreamError,
)
from ._httputil import redact_url
from ._models import Event, ResponseInfo
from ._parser import Parser, comment_positions
from ._retrylog import RetryLog
from ._stop import StopSignal
from ._transport import RequestSpec, make_session, open_stream

__all__ = ["Options", "Sink", "Worker"]

_log = logging.getLogger(__name__)

HeadersOption = Union[Mapping[str, str], Callable[[], Mapping[str, str]], None]
# Statuses worth retrying: the server is overloaded, restarting or rate limiting.
_RETRY_STATUSES = frozenset((408, 429)) | frozenset(range(500, 600))
_AUTH_STATUSES = frozenset((401, 403))
# A ``retry:`` of 400 digits is an int no float holds: compared as an int first.
_MAX_DELAY_MS = int(MAX_DELAY * 1000)
# Shared by every worker: a Random per stream is 2.5 KiB of state (1000 streams, 2.5 MB),
# and SystemRandom keeps none, so processes forked from one parent do not jitter alike.
_JITTER = random.SystemRandom()


def last_event_id_field(last_event_id: str) -> str:
    """The ``Last-Event-ID`` field value for an ID, as it can go on the wire.

    The ID comes from the server and may hold any character.  WHATWG HTML 9.2.4 sends
    it "encoded as UTF-8", but http.client encodes field values as latin-1 (an ID
    with "\u20ac" failed the connect with UnicodeEncodeError): so pass the UTF-8
    bytes as the latin-1 string of those bytes.  HTTP drops whitespace around a field
    value (RFC 9110, 5.5) and requests refuses a value that starts with it (an ID
    " 7" made every reconnect a ValueError): drop it here, the server could not see
    it anyway.  ``""`` means "send no header".
    """
    return last_event_id.encode("utf-8", "replace").decode("latin-1").lstrip()


@dataclass(frozen=True)
class Options:
    """Everything a worker needs to run a stream, fixed when the stream is made."""

    url: str
    method: str
    params: Any
    headers: HeadersOption
    data: Any
    json: Any
    auth: Any
    connect_timeout: float
    read_timeout: float
    backoff: Backoff
    max_event_size: int | None
    session_factory: Callable[[], Any] | None
    reconnect: bool = True  # False: one-shot, retried only before the first byte
    retries: int = 0  # one-shot: attempts allowed after the first one

    @property
    def safe_url(self) -> str:
        """``url`` without user info (credentials stay out of logs, errors, reprs)."""
        return redact_url(self.url)


class Sink(Protocol):
    """Where a worker hands what it produces; implemented by the stream's owner.

    Every method is called on the worker thread.
    """

    #: Whether the owner wants comments; the parser reports them only then.
    wants_comments: bool

    def opened(self, info: ResponseInfo) -> None: ...

    def deliver(self, events: list[Event], last_event_id: str, stop: StopSignal) -> bool:
        """Hand over one read's events (maybe none) and the last event ID after them;
        False when the stream is stopping and nothing more should be read."""

    def comment(self, text: str, stop: StopSignal) -> bool:
        """Hand over one comment, after the events before it in the stream; False
        when the stream is stopping and nothing more should be read."""

    def error(self, exc: BaseException) -> None:
        """Report ``exc``; never raises (an ``on_error`` that raises is the sink's to
        catch and log: the stream goes on)."""

    def retrying(self, exc: StreamError, delay: float) -> None:
        """The worker will connect again in ``delay`` seconds, after ``exc``."""

    def end(self, exc: BaseException | None) -> None: ...


class _Stopped(Exception):
    """Internal: the sink refused a batch because the stream is stopping."""


class Worker:
    """Runs one stream on the current thread until it ends or ``stop`` is set."""

    _parser: Parser  # made in run(), on the worker thread
    _healthy: bool  # the current attempt delivered an event or lasted (set by _loop)
    _accepted: bool  # the current attempt's response was accepted: 2xx, a stream

    def __init__(
        self,
        options: Options,
        stop: StopSignal,
        sink: Sink,
        *,
        resume: Callable[[], str] = str,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._options = options
        self._stop = stop
        self._sink = sink
        self._rng = rng or _JITTER
        self._clock = clock
        self._resume = resume  # gives the last event ID to resume from, on this thread
        self._comments: list[tuple[int, str]] = []  # (events before it, text) of a feed
        self._retry_log = RetryLog(_log, options.safe_url, clock=clock)

    def run(self) -> None:
        """The thread body: never raises; the outcome goes to ``sink.end``."""
        outcome: BaseException | None = None
        _fork.worker_thread()  # a child closes the sockets this thread creates
        try:
            self._parser = Parser(
                max_event_size=self._options.max_event_size, last_event_id=self._resume()
            )
            if self._sink.wants_comments:
                comment_positions(self._parser, self._note_comment)
            session = make_session(self._options.session_factory)
            try:
                self._loop(session)
            finally:
                try:
                    session.close()
                finally:
                    _fork.forget_thread()  # a child forked from here on has none to close
        except _Stopped:
            pass
        except BaseException as exc:  # handed to the owner, never lost
            outcome = exc
            if isinstance(exc, Exception):
                _log.error("%s: the stream failed: %s", self._options.safe_url, exc)
                self._sink.error(exc)
        finally:
            self._sink.end(outcome)

    def _loop(self, session: Any) -> None:
        options = self._options
        failures = 0
        last_healthy = self._clock()
        auth_retried = False
        while not self._stop.is_set():
            self._healthy = self._accepted = False
            wait_at_least = 0.0
            immediate = quiet = False
            try:
                if self._attempt(session):
                    return
                # A clean end of a long-lived stream: reconnect, but it is no error.
                error: StreamError = ReadError("the server ended the stream", url=options.safe_url)
                quiet = True
            except HTTPStatusError as exc:
                if exc.status_code in _AUTH_STATUSES and callable(options.headers):
                    if auth_retried:
                        raise
                    auth_retried = immediate = True  # once, at once, with fresh headers
                elif exc.status_code not in _RETRY_STATUSES:
                    raise
                error = exc
                wait_at_least = retry_after(exc.headers.get("Retry-After"), time.time()) or 0.0
            except (ConnectError, ReadError) as exc:
                error = exc
            if self._accepted:  # the fresh headers worked: a later 401 gets its retry
                auth_retried = False
            if self._stop.is_set():
                return
            if not self._may_retry(error):
                raise error
            if not quiet:
                self._sink.error(error)
            now = self._clock()
            if self._healthy:
                failures, last_healthy, auth_retried = 0, now, False
            # The immediate retry of a 401/403 (at most one in a row) is not counted
            # toward max_attempts: max_attempts=1 would otherwise never make it.
            counted = not (immediate and options.reconnect)
            if counted:
                failures += 1
            delay = 0.0 if immediate else self._delay(failures, wait_at_least)
            limit = self._limit(failures, now - last_healthy, delay) if counted else None
            if limit is not None:
                raise RetriesExhausted(
                    f"gave up after {failures} consecutive failed attempts {limit}; "
                    f"the last: {type(error).__name__}: {error}",
                    url=options.safe_url,
                ) from error
            if quiet:
                _log.debug("%s: the body ended; reconnecting in %.3f s", options.safe_url, delay)
            else:
                self._retry_log.failed(error, delay)  # WARNING, rate-limited
            self._sink.retrying(error, delay)
            if self._stop.wait(delay):
                return

    def _limit(self, failures: int, elapsed: float, delay: float) -> str | None:
        """Which limit ends the retrying, in words, or None to wait ``delay`` and go
        on.  ``max_elapsed`` ends it as soon as the wait would reach it: waiting first
        overshot by a whole wait (a Retry-After of 3 s against max_elapsed=0.3)."""
        options = self._options
        backoff = options.backoff
        if not options.reconnect and failures > options.retries:
            return f"(retries={options.retries})"
        if backoff.max_attempts is not None and failures >= backoff.max_attempts:
            return f"(max_attempts={backoff.max_attempts})"
        if backoff.max_elapsed is not None and elapsed + delay >= backoff.max_elapsed:
            return (
                f"in {elapsed:.3g} s: the next wait of {delay:.3g} s would reach "
                f"max_elapsed={backoff.max_elapsed:g} s"
            )
        return None

    def _may_retry(self, error: StreamError) -> bool:
        # One-shot: never replay a request once any body byte arrived (a POST may
        # have had its effect), and never after a read failure of any kind.  Every
        # failure once the body has started is a ReadError (see _attempt), so the
        # second rule implies the first.
        return self._options.reconnect or not isinstance(error, ReadError)

    def _delay(self, failures: int, wait_at_least: float) -> float:
        retry_ms = self._parser.retry  # any run of digits, as the spec says: clamp it
        server = None if retry_ms is None else min(retry_ms, _MAX_DELAY_MS) / 1000.0
        delay = self._options.backoff.delay(failures, self._rng, server_retry=server)
        return min(MAX_DELAY, max(wait_at_least, delay))  # stop.wait() has a limit

    def _attempt(self, session: Any) -> bool:
        """One connection: open and read to the end.  True when the stream is over:
        the answer was 204, or a one-shot body ended."""
        options = self._options
        parser = self._parser
        spec = RequestSpec(
            method=options.method,
            url=options.url,
            params=options.params,
            headers=self._request_headers(),
            data=options.data,
            json=options.json,
            auth=options.auth,
            connect_timeout=options.connect_timeout,
            read_timeout=options.read_timeout,
        )
        _log.debug("connecting to %s", options.safe_url)
        with open_stream(session, spec, self._stop) as body:
            self._retry_log.connected(body.status_code)
            # requests keeps "user:password@" in the final URL: not for on_open's eyes.
            info = ResponseInfo(body.status_code, body.headers, redact_url(body.url))
            self._sink.opened(info)
            self._accepted = True
            if body.status_code == 204:
                return True  # "no content": the server says there is nothing more
            opened_at = self._clock()
            parser.reset()
            try:
                self._read(body.chunks())
            finally:
                if self._clock() - opened_at >= options.backoff.reset_after:
                    self._healthy = True
        return not options.reconnect

    def _read(self, chunks: Iterator[bytes]) -> None:
        """Parse and hand over each chunk of one body (``chunks`` fails with ReadError
        only).  One loop, no call per chunk beyond the parser's and the sink's: with
        one event per read, the calls are much of what an event costs."""
        parser, deliver, stop = self._parser, self._sink.deliver, self._stop
        feed = parser.feed
        for chunk in chunks:
            try:
                events = feed(chunk)
            except ProtocolError as exc:  # the oversized event was skipped; go on
                events = exc.events
                self._sink.error(exc)
            if events:
                self._healthy = True
            if self._comments:
                self._deliver_with_comments(events)
            # The parser's last event ID, read from its slot: the property is a call.
            elif not deliver(events, parser._last_id, stop):
                raise _Stopped

    def _note_comment(self, text: str, events_before: int) -> None:
        self._comments.append((events_before, text))  # during feed(): delivered after it

    def _deliver_with_comments(self, events: list[Event]) -> None:
        """Hand over one read's events and comments in stream order: the events before
        each comment, then the comment."""
        comments, self._comments = self._comments, []
        sink, stop = self._sink, self._stop
        start = 0
        for count, text in comments:
            # A resume point between events: the ID of the last event handed over.
            if count > start and not sink.deliver(events[start:count], events[count - 1].id, stop):
                raise _Stopped
            start = max(start, count)
            if not sink.comment(text, stop):
                raise _Stopped
        if not sink.deliver(events[start:], self._parser.last_event_id, stop):
            raise _Stopped

    def _request_headers(self) -> dict[str, str]:
        source = self._options.headers
        if callable(source):
            try:
                fresh = source()  # on this thread, before every connect: rotated tokens
            except Exception as exc:
                raise StreamError(
                    f"the headers callable raised {type(exc).__name__}",
                    url=self._options.safe_url,
                ) from exc
            if not isinstance(fresh, Mapping):
                raise TypeError(f"the headers callable must return a mapping, not {type(fresh)}")
            source = fresh
        headers = dict(source or {})
        resume = last_event_id_field(self._parser.last_event_id)
        if resume:
            headers["Last-Event-ID"] = resume
        return headers
