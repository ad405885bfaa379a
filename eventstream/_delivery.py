"""Hand-off of events from a worker thread to the consumer's thread.

A bounded channel of events with lossless back-pressure: a worker hands over what one
read produced as one batch (crossing threads costs microseconds, so never one event
at a time) and blocks while the channel is full, so a slow consumer slows the socket
instead of losing events.  The consumer takes everything available at once.

Nothing here touches a session or a socket; the caller's thread only wakes waiters.
"""

from __future__ import annotations

import threading
from collections import deque

from ._models import Event
from ._stop import StopSignal

__all__ = ["Channel"]


class Channel:
    """A bounded event queue with an end marker and an optional error.

    ``put`` runs on a worker thread, ``take`` on the consumer's thread, ``wake`` and
    ``cancel`` on any thread.
    """

    def __init__(self, capacity: int) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._events: deque[Event] = deque()
        self._capacity = capacity
        self._ended = False
        # Whether a stop cancelled consumption: written under the lock, read without
        # it by the consumer before each event (a plain attribute: that check is on
        # the per-event path).
        self.cancelled = False
        # The last event the consumer got (set by the iterator), and the last one it
        # has taken: they differ while taken events wait in the iterator's hands.
        self.received: Event | None = None
        self._tail: Event | None = None
        self._error: BaseException | None = None

    def put(self, batch: list[Event], stop: StopSignal) -> bool:
        """Append a batch once there is room; False (nothing added) if ``stop`` is set
        first or the consumer cancelled.  ``stop`` is checked under the lock, and
        whoever sets it calls :meth:`wake` after, so a waiting put never misses it."""
        with self._cond:
            while True:
                if stop.is_set() or self.cancelled:
                    return False
                if len(self._events) < self._capacity:
                    break
                self._cond.wait()
            self._events.extend(batch)
            self._cond.notify_all()
            return True

    def end(self, error: BaseException | None = None) -> None:
        """The producer is done; ``error`` (if any) is raised to the consumer after the
        events already queued."""
        with self._cond:
            self._ended = True
            if error is not None and self._error is None:
                self._error = error
            self._cond.notify_all()

    def reopen(self) -> None:
        """Accept a new producer after an end (a stream started again)."""
        with self._cond:
            self._ended = False
            self.cancelled = False
            self._error = None

    def cancel(self) -> tuple[bool, Event | None]:
        """Drop queued events and end consumption now (the stream was stopped).

        Returns whether events the consumer had not received were dropped, and the
        last event it received (None if none ever), so the stream can resume after it.
        The iterator checks ``cancelled`` and then records ``received`` before it
        yields each event; under the GIL no thread switch falls between the two, so
        the answer is exact.  (Without a GIL, a stop racing with that step could name
        the event before: it would be delivered once more after a start, never lost.)
        """
        with self._cond:
            self.cancelled = True
            dropped = bool(self._events) or self.received is not self._tail
            self._events.clear()
            self._tail = self.received
            self._cond.notify_all()
            return dropped, self.received

    def wake(self) -> None:
        """Wake every waiter so it re-checks its stop signal."""
        with self._cond:
            self._cond.notify_all()

    def take(self, timeout: float | None = None) -> list[Event] | None:
        """Block until events are available; return all of them.

        Returns ``None`` at the end of the stream (or an empty list when ``timeout``
        passed first).  Raises the producer's error once the queued events are taken.
        """
        with self._cond:
            while not self._events:
                if self.cancelled:
                    return None
                if self._ended:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return None
                if not self._cond.wait(timeout):
                    return []
            batch = list(self._events)
            self._tail = batch[-1]
            self._events.clear()
            self._cond.notify_all()
            return batch
