"""The public stream objects: each owns a worker thread and a stop signal, nothing else.

Ownership rule: the caller's thread never holds the session, the response, the
connection or the socket, nor anything that references them.  What it can reach is
the stream, its ``Control`` (``_control``: locks, the stop signal, the worker's
``Thread``, the event channel, the latest ``ResponseInfo``) and the errors handed
over, which are detached from the worker first (``_httputil.detach``).  The worker
holds the same ``Control`` but never the stream, so dropping the last reference to
a stream stops its worker (``weakref.finalize``), whatever thread collects it.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

from . import _fork
from ._backoff import Backoff
from ._control import (
    DEFAULT_QUEUE_SIZE,
    Control,
    Delivery,
    OnComment,
    OnError,
    OnEvent,
    OnOpen,
    OnRetry,
    abandon,
)
from ._delivery import Channel, make_bell
from ._models import Event, ResponseInfo
from ._options import DEFAULT_TIMEOUT, build_options, check_last_event_id
from ._parser import DEFAULT_MAX_EVENT_SIZE
from ._worker import HeadersOption, Options

__all__ = ["EventStream", "StreamBase"]

_S = TypeVar("_S", bound="StreamBase")


class StreamBase:
    """What every stream does: start, stop, join, iterate.  Not instantiated directly."""

    # A one-shot stream runs once: start() after its first launch is a no-op, and
    # leaving the iteration stops it.
    _one_shot = False

    def __init__(self, options: Options, delivery: Delivery, *, last_event_id: str) -> None:
        check_last_event_id(last_event_id)
        self._control = Control(options, delivery, last_event_id=last_event_id)
        # The finalizer lives in weakref's own registry until it runs: no need to keep it.
        weakref.finalize(self, abandon, self._control)

    def start(self: _S) -> _S:
        """Start the worker (connecting in the background); no-op while running.

        Runs on the calling thread and returns at once; returns ``self``.  Raises
        :class:`StreamError` when the process cannot start one more thread (each
        stream runs on its own), saying what to do.
        """
        _fork.check()
        control = self._control
        with control.lock:
            if self._one_shot and control.thread is not None:
                return self
            if not control.running():
                control.launch()
        return self

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the worker to stop; it leaves within milliseconds, even mid-read.

        Without ``timeout`` this only signals and never blocks; it returns whether
        the worker has already exited.  With ``timeout`` it also waits that long
        for the worker and returns whether it exited; after True, no callback runs
        and no event is delivered.  Called from a callback (the worker thread), it
        cannot wait for itself: no more callbacks run after it, and it returns
        False.  Safe before ``start()`` and repeatedly, from any thread.
        """
        _fork.check()
        thread = self._control.stop_and_cancel()
        if thread is None:
            return True
        if timeout is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to exit; return whether it has (True if never started).

        A worker exits after ``stop()`` or when the stream ends by itself.
        """
        _fork.check()
        thread = self._control.thread
        if thread is None or thread is threading.current_thread():
            return thread is None
        thread.join(timeout)
        return not thread.is_alive()

    @property
    def running(self) -> bool:
        """Whether a worker is running and has not been asked to stop."""
        _fork.check()
        return self._control.running()

    @property
    def last_event_id(self) -> str:
        """The last event ID handed over to the consumer (``""`` if none): where a
        reconnect or restart resumes."""
        return self._control.last_event_id

    @property
    def response(self) -> ResponseInfo | None:
        """Status, headers and final URL of the latest successful connect, or None."""
        return self._control.info

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop the worker and wait for it to exit."""
        self.stop()
        self.join()

    def __iter__(self) -> Iterator[Event]:
        """Events in order, in the iterating thread, blocking for the next; starts the
        stream if it was never started.

        Ends after ``stop()`` or when the stream ends; raises the fatal error, if
        any, after the events received before it.  Iterating a stream that was
        stopped, or that ended, never starts it again (a stop from another thread, or
        a fatal error, would be undone by a loop that began just after it): call
        :meth:`start` for that.
        """
        control = self._control
        channel = control.channel
        if channel is None:
            raise RuntimeError("this stream delivers to on_event; it cannot be iterated")
        _fork.check()
        if control.thread is None:  # never started
            self.start()
        return _iterate(self, channel, self._control if self._one_shot else None)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<{type(self).__name__} {self._control.options.safe_url!r} {state}>"


def _iterate(stream: StreamBase, channel: Channel, owner: Control | None) -> Iterator[Event]:
    # The events come from the channel's readers, chained in C: no Python step per
    # event.  ``stream`` is held (by the generator of readers) only to keep it alive
    # while someone iterates: in ``for event in EventStream(url)`` nothing else
    # refers to it, and collecting it would stop its worker.
    return itertools.chain.from_iterable(_readers(stream, channel, owner))


def _readers(
    stream: StreamBase, channel: Channel, owner: Control | None
) -> Iterator[Iterator[Event]]:
    bell = make_bell()  # this iteration's doorbell (or None: the channel's queue)
    try:
        while True:
            reader = channel.take(bell)
            if reader is None:
                return
            yield reader
    finally:
        try:
            if owner is not None:  # the loop was left (break, exception, collection)
                try:
                    owner.stop_and_cancel()
                except BaseException:  # cut by an interrupt: made again (it can be), raised
                    owner.stop_and_cancel()
                    raise
        finally:  # not left to the collector: a traceback keeps this frame
            if bell is not None:
                bell.close()


class EventStream(StreamBase):
    """A long-lived Server-Sent Events stream, read on a worker thread it owns.

    The worker creates its own ``requests.Session`` (with ``session_factory``),
    connects, parses, delivers and reconnects, and closes the session when it ends.
    Calling threads only signal it; no method here touches a connection.  All methods
    are safe to call from any thread, in any order, any number of times.

    Deliver events either by iterating (``for event in stream``, in the iterating
    thread; a bounded queue between the threads slows reading when the consumer
    lags, and drops nothing) or with ``on_event`` (then iterating is an error).
    Leaving a ``for`` loop early does not stop the stream, and the next loop goes on
    with the next event; ``stop()`` or leaving the ``with`` block stops it.  Keep a
    reference to a stream that delivers to callbacks: a stream that is garbage
    collected stops its worker (while a ``for`` loop runs, the loop keeps the stream
    alive).

    ``headers``, ``session_factory`` and the callbacks run on the worker thread; an
    exception from ``headers`` or ``session_factory`` ends the stream with it (the
    former wrapped in :class:`StreamError`).

    What the caller's thread holds: this object, the events, :class:`ResponseInfo`
    (a copy of the status, headers and URL), and the errors it is given (raised by
    iteration, passed to ``on_error`` or ``on_retry``).  None of them references the
    worker's session, response, connection, socket or parser, so keeping them keeps
    no connection open: an error comes with its type, message, documented
    attributes and ``__cause__`` chain, but without a traceback into the worker
    (exceptions raised by callbacks are logged with theirs, on the worker thread),
    and the ``requests``/``urllib3`` errors it chains have their ``request``,
    ``response``, ``pool`` and ``conn`` attributes set to None.

    What ends a stream: ``stop()``; a 204 response; a fatal error (another 4xx, a
    Content-Type other than ``text/event-stream``, a second 401/403, exhausted
    retries), which is raised in the iterating thread and passed to ``on_error``.
    Anything else (a dropped connection, an idle timeout, 5xx, 408, 429, a clean end
    of body) reconnects after a backoff, resuming with ``Last-Event-ID``.

    Args:
        url: The ``http://`` or ``https://`` URL of the stream.
        method: HTTP method; ``data``/``json`` are sent again on every connect.
        params, data, json, auth: As in ``requests``.
        headers: A mapping, or a callable returning one; the callable runs on the
            worker thread before every connect, so rotated tokens are picked up.  A
            401/403 answer then gets one immediate retry with fresh headers.
        timeout: ``(connect, read)`` seconds, or one number for both, each at most
            ``2147483.647`` (about 24.8 days).  ``read`` is
            also the idle timeout: a connection silent for that long is dropped and
            reopened.  DNS and the TLS handshake cannot be interrupted by
            ``stop()`` (the connect and the wait for the response headers can);
            they are bounded by these timeouts.
        last_event_id: Resume point for the first connect.
        backoff: Reconnection policy, including retry limits (default: retry forever).
        max_event_size: Cap in bytes on one event; a larger one is skipped and
            reported to ``on_error`` as :class:`ProtocolError`.
        on_event: Called with each :class:`Event`, on the worker thread.  If it
            raises, the exception goes to ``on_error`` and is logged; the stream
            goes on.
        on_error: Called with every error, retried or fatal, on the worker thread.
        on_open: Called with a :class:`ResponseInfo` on every successful connect,
            on the worker thread.
        on_retry: Called with the error and the delay in seconds before every wait
            to connect again, on the worker thread: after each retried error, and
            after a clean end of the body (a :class:`ReadError`, not given to
            ``on_error``).  An exception it raises is logged and goes to
            ``on_error``; the stream goes on.
        on_comment: Called with the text of each comment line (all after the
            colon, leading space included: ``": ping"`` gives ``" ping"``), on the
            worker thread, as soon as the line has arrived, in stream order with the
            events.  With ``on_event``, every event before the comment has returned
            from ``on_event`` and none after it has been passed yet.  When iterating,
            every event before the comment is in the queue when ``on_comment`` runs
            (available to the iterating thread, which may not have taken it yet), and
            no event after it is queued until ``on_comment`` returns.  Heartbeats
            (``: ping``) show the server is alive even when no event comes.  An
            exception it raises is logged and goes to ``on_error``; the stream goes
            on.
        queue_size: Events buffered for an iterating consumer before reading pauses.
        session_factory: Zero-argument callable returning a ``requests.Session``,
            called on the worker thread; set ``verify``, ``cert``, ``proxies`` or
            adapters there.  A ``verify`` set on the session wins over
            ``REQUESTS_CA_BUNDLE``.
    """

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        params: Any = None,
        headers: HeadersOption = None,
        data: Any = None,
        json: Any = None,
        auth: Any = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        last_event_id: str = "",
        backoff: Backoff | None = None,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
        on_event: OnEvent | None = None,
        on_error: OnError | None = None,
        on_open: OnOpen | None = None,
        on_retry: OnRetry | None = None,
        on_comment: OnComment | None = None,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        session_factory: Callable[[], Any] | None = None,
    ) -> None:
        options = build_options(
            url,
            method=method,
            params=params,
            headers=headers,
            data=data,
            json=json,
            auth=auth,
            timeout=timeout,
            backoff=backoff,
            max_event_size=max_event_size,
            session_factory=session_factory,
        )
        delivery = Delivery(
            on_event=on_event,
            on_error=on_error,
            on_open=on_open,
            on_retry=on_retry,
            on_comment=on_comment,
            queue_size=queue_size,
        )
        super().__init__(options, delivery, last_event_id=last_event_id)

    def restart(self) -> EventStream:
        """Stop the current worker and start a new one at once, with its own session.

        The new connection resumes from :attr:`last_event_id`; no event is delivered
        twice or lost across the switch.  The way to apply new credentials.  Safe
        from any thread, including a callback of this stream.
        """
        _fork.check()
        control = self._control
        with control.lock:
            control.signal_stop()
            control.launch()
        return self
