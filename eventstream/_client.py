"""The public stream object: owns a worker thread and a stop signal, nothing else.

Ownership rule: the caller's thread never holds the session, the response, the
connection or the socket.  ``EventStream`` holds a ``_Control`` (locks, the current
stop signal and thread, the delivery side), and the worker holds the same
``_Control`` through its sink but never the ``EventStream``, so dropping the last
reference to a stream stops its worker (a ``weakref.finalize``).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any

from ._backoff import Backoff
from ._delivery import Channel
from ._models import Event, ResponseInfo
from ._parser import DEFAULT_MAX_EVENT_SIZE
from ._stop import StopSignal
from ._worker import HeadersOption, Options, Worker

__all__ = ["EventStream"]

_log = logging.getLogger(__name__)
_thread_ids = itertools.count(1)
_live: set[_Control] = set()  # controls with a running worker, for atexit and fork
_live_lock = threading.Lock()
#: Seconds the interpreter's exit waits, in all, for stopped workers to finish.
EXIT_JOIN_TIMEOUT = 1.0
DEFAULT_TIMEOUT = (5.0, 60.0)
DEFAULT_QUEUE_SIZE = 1024

OnEvent = Callable[[Event], Any]
OnError = Callable[[BaseException], Any]
OnOpen = Callable[[ResponseInfo], Any]


class _Control:
    """State shared by a stream and its workers.  Holds no I/O object."""

    def __init__(
        self,
        options: Options,
        *,
        last_event_id: str,
        on_event: OnEvent | None,
        on_error: OnError | None,
        on_open: OnOpen | None,
        queue_size: int,
    ) -> None:
        self.options = options
        self.on_event = on_event
        self.on_error = on_error
        self.on_open = on_open
        self.queue_size = queue_size
        self.last_event_id = last_event_id
        self._init_sync()
        self.info: ResponseInfo | None = None

    def _init_sync(self) -> None:
        self.lock = threading.Lock()  # guards stop/thread
        # Serialises hand-overs across a restart (see resume_point); re-entrant so
        # that a callback may call restart() or stop() on its own stream.
        self.deliver_lock = threading.RLock()
        self.channel = None if self.on_event else Channel(self.queue_size)
        self.stop: StopSignal | None = None
        self.thread: threading.Thread | None = None

    def after_fork_in_child(self) -> None:
        # The worker does not exist in the child, and locks may have been held by
        # it at the fork: start over, never touching the parent's wake-up sockets.
        self._init_sync()

    def running(self) -> bool:
        thread, stop = self.thread, self.stop
        return thread is not None and thread.is_alive() and stop is not None and not stop.is_set()

    def launch(self) -> None:
        """Start a new worker; called with ``lock`` held."""
        stop = StopSignal()
        if self.channel is not None:
            self.channel.reopen()
        sink = _Sink(self, stop)
        worker = Worker(self.options, stop, sink, resume=self.resume_point)
        thread = threading.Thread(
            target=worker.run, name=f"eventstream-worker-{next(_thread_ids)}", daemon=True
        )
        self.stop, self.thread = stop, thread
        with _live_lock:
            _live.add(self)
        thread.start()

    def signal_stop(self) -> None:
        """Set the current worker's stop signal and wake a hand-over waiting for room."""
        stop = self.stop
        if stop is not None:
            stop.set()
            if self.channel is not None:
                self.channel.wake()

    def resume_point(self) -> str:
        """The last event ID handed over, read on a new worker's thread.

        Hand-overs happen under ``deliver_lock`` and check their own stop signal
        there, so once a restart has signalled the old worker, reading under the lock
        gives exactly the resume point: nothing handed over is missing from it, and
        nothing after it will be handed over by the old worker."""
        with self.deliver_lock:
            return self.last_event_id


class _Sink:
    """The worker's side of delivery: runs on the worker thread."""

    def __init__(self, control: _Control, stop: StopSignal) -> None:
        self._control = control
        self._stop = stop

    def opened(self, info: ResponseInfo) -> None:
        control = self._control
        control.info = info
        if control.on_open is not None and not self._stop.is_set():
            try:
                control.on_open(info)
            except Exception as exc:
                _log.exception("on_open callback raised")
                self.error(exc)

    def deliver(self, events: list[Event], last_event_id: str, stop: StopSignal) -> bool:
        control = self._control
        with control.deliver_lock:
            if control.channel is not None:
                if events and not control.channel.put(events, stop):
                    return False
            elif not self._call_on_event(events, stop):
                return False
            if stop.is_set():
                return False
            control.last_event_id = last_event_id
        return True

    def _call_on_event(self, events: list[Event], stop: StopSignal) -> bool:
        control = self._control
        on_event = control.on_event
        assert on_event is not None
        for event in events:
            if stop.is_set():
                return False
            try:
                on_event(event)
            except Exception as exc:  # documented: reported, and the stream goes on
                _log.exception("on_event callback raised")
                self.error(exc)
            control.last_event_id = event.id
        return True

    def error(self, exc: BaseException) -> None:
        on_error = self._control.on_error
        if on_error is None or self._stop.is_set():
            _log.debug("stream error: %r", exc)
            return
        try:
            on_error(exc)
        except Exception:
            _log.exception("on_error callback raised")

    def end(self, exc: BaseException | None) -> None:
        control = self._control
        with control.lock:
            current = control.stop is self._stop
        if control.channel is not None and current:
            control.channel.end(exc)
        elif exc is not None and not self._stop.is_set():
            _log.debug("stream ended with %r", exc)
        with _live_lock:
            if current:
                _live.discard(control)


class EventStream:
    """A long-lived Server-Sent Events stream, read on a worker thread it owns.

    The worker creates its own ``requests.Session`` (with ``session_factory``),
    connects, parses, delivers and reconnects, and closes the session when it ends.
    Calling threads only signal it; no method here touches a connection.  All methods
    are safe to call from any thread, in any order, any number of times.

    Deliver events either by iterating (``for event in stream``, in the iterating
    thread; a bounded queue between the threads slows reading when the consumer
    lags, and drops nothing) or with ``on_event`` (then iterating is an error).

    What ends a stream: ``stop()``; a 204 response; a fatal error (another 4xx, a
    Content-Type other than ``text/event-stream``, a second 401/403, exhausted
    retries), which is raised in the iterating thread and passed to ``on_error``.
    Anything else (a dropped connection, an idle timeout, 5xx, 408, 429, a clean end
    of body) reconnects after a backoff, resuming with ``Last-Event-ID``.

    Args:
        url: The ``http://`` or ``https://`` URL of the stream.
        method: HTTP method; ``data``/``json`` are sent again on every connect.
        params, data, json, auth: as in ``requests``.
        headers: A mapping, or a callable returning one; the callable runs on the
            worker thread before every connect, so rotated tokens are picked up.  A
            401/403 answer then gets one immediate retry with fresh headers.
        timeout: ``(connect, read)`` seconds, or one number for both.  ``read`` is
            also the idle timeout: a connection silent for that long is dropped and
            reopened.  Connect, TLS and waiting for headers cannot be interrupted by
            ``stop()``; they are bounded by these timeouts.
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
        _check_last_event_id(last_event_id)
        for name, callback in (
            ("on_event", on_event),
            ("on_error", on_error),
            ("on_open", on_open),
        ):
            if callback is not None and not callable(callback):
                raise TypeError(f"{name} must be callable, not {callback!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 1:
            raise ValueError(f"queue_size must be a positive int, not {queue_size!r}")
        self._control = _Control(
            options,
            last_event_id=last_event_id,
            on_event=on_event,
            on_error=on_error,
            on_open=on_open,
            queue_size=queue_size,
        )
        self._finalizer = weakref.finalize(self, _abandon, self._control)

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> EventStream:
        """Start the worker (connecting in the background); no-op while running.

        Runs on the calling thread and returns at once; returns ``self``.
        """
        control = self._control
        with control.lock:
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
        False.  Safe before ``start()`` and repeatedly.
        """
        control = self._control
        with control.lock:
            control.signal_stop()
            thread = control.thread
        if control.channel is not None:
            control.channel.cancel()
        if thread is None:
            return True
        if timeout is not None and thread is not threading.current_thread():
            thread.join(timeout)
        return not thread.is_alive()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the worker to exit (it exits on its own only when the stream
        ends); return whether it has.  True if never started."""
        thread = self._control.thread
        if thread is None or thread is threading.current_thread():
            return thread is None
        thread.join(timeout)
        return not thread.is_alive()

    def restart(self) -> EventStream:
        """Stop the current worker and start a new one at once, with its own session.

        The new connection resumes from :attr:`last_event_id`; no event is delivered
        twice or lost across the switch.  The way to apply new credentials.
        """
        control = self._control
        with control.lock:
            control.signal_stop()
            control.launch()
        return self

    @property
    def running(self) -> bool:
        """Whether a worker is running and has not been asked to stop."""
        return self._control.running()

    @property
    def last_event_id(self) -> str:
        """The last event ID handed over to the consumer (``""`` if none): where a
        reconnect or restart resumes."""
        return self._control.last_event_id

    @property
    def response(self) -> ResponseInfo | None:
        """Status, headers and URL of the latest successful connect, or None."""
        return self._control.info

    def __enter__(self) -> EventStream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self.join()

    def __iter__(self) -> Iterator[Event]:
        """Events in order, blocking for the next; starts the stream if needed.

        Ends after ``stop()`` or when the stream ends; raises the fatal error, if
        any, after the events received before it.
        """
        control = self._control
        channel = control.channel
        if channel is None:
            raise RuntimeError("this stream delivers to on_event; it cannot be iterated")
        self.start()
        return _iterate(channel)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EventStream {self._control.options.url!r} {state}>"


def _iterate(channel: Channel) -> Iterator[Event]:
    buffered: deque[Event] = deque()
    while True:
        if not buffered:
            batch = channel.take()
            if batch is None:
                return
            buffered.extend(batch)
        if channel.cancelled:
            return
        yield buffered.popleft()


def build_options(
    url: str,
    *,
    method: str,
    params: Any,
    headers: HeadersOption,
    data: Any,
    json: Any,
    auth: Any,
    timeout: float | tuple[float, float],
    backoff: Backoff | None,
    max_event_size: int | None,
    session_factory: Callable[[], Any] | None,
    reconnect: bool = True,
    retries: int = 0,
) -> Options:
    """Validate what the caller passed (on the caller's thread) into worker options."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// URL string, not {url!r}")
    if not isinstance(method, str) or not method:
        raise ValueError(f"method must be a non-empty string, not {method!r}")
    if headers is not None and not callable(headers) and not isinstance(headers, Mapping):
        raise TypeError("headers must be a mapping or a callable returning one")
    if isinstance(headers, Mapping):
        headers = dict(headers)  # a snapshot: later changes by the caller are not seen
    connect, read = _timeouts(timeout)
    if backoff is None:
        backoff = Backoff()
    elif not isinstance(backoff, Backoff):
        raise TypeError(f"backoff must be an eventstream.Backoff, not {backoff!r}")
    if session_factory is not None and not callable(session_factory):
        raise TypeError("session_factory must be callable")
    if max_event_size is not None and (
        isinstance(max_event_size, bool)
        or not isinstance(max_event_size, int)
        or max_event_size < 1
    ):
        raise ValueError(f"max_event_size must be a positive int or None, not {max_event_size!r}")
    return Options(
        url=url,
        method=method.upper(),
        params=params,
        headers=headers,
        data=data,
        json=json,
        auth=auth,
        connect_timeout=connect,
        read_timeout=read,
        backoff=backoff,
        max_event_size=max_event_size,
        session_factory=session_factory,
        reconnect=reconnect,
        retries=retries,
    )


def _timeouts(timeout: float | tuple[float, float]) -> tuple[float, float]:
    pair = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if len(pair) != 2:
        raise ValueError("timeout must be a number or a (connect, read) pair")
    for value in pair:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"timeouts must be positive numbers of seconds, not {value!r}")
    return float(pair[0]), float(pair[1])


def _check_last_event_id(value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"last_event_id must be a str, not {value!r}")
    if any(c in value for c in "\0\r\n"):
        raise ValueError("last_event_id must not contain NUL, CR or LF")


def _abandon(control: _Control) -> None:
    # The stream object was collected: its worker must not run on unowned.
    with control.lock:
        control.signal_stop()
    if control.channel is not None:
        control.channel.cancel()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        controls = list(_live)
    threads = []
    for control in controls:
        _abandon(control)
        if control.thread is not None:
            threads.append(control.thread)
    deadline = EXIT_JOIN_TIMEOUT
    for thread in threads:
        # Workers are daemons: one that does not finish in time is simply left.
        thread.join(deadline / max(1, len(threads)))


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for control in list(_live):
        control.after_fork_in_child()
    _live.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
