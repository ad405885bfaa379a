"""``--max-time`` and ``--idle-exit``: a watchdog thread that ends a run in time.

Rule: the watchdog ends a blocked iteration the one way that is safe from another
thread, ``stream.stop()``; it never touches the stream's connection.  The run that
starts it owns it and joins it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

__all__ = ["Ending", "Notice", "Watchdog"]


class Ending(enum.Enum):
    """Why a run stopped without an error."""

    END = "end"
    MAX_EVENTS = "max-events"
    MAX_TIME = "max-time"
    IDLE = "idle-exit"


class Watchdog:
    """Stops the stream once ``max_time`` seconds have passed, or ``idle`` seconds
    after the last event (or the start) with no event.

    Its thread (``eventstream-cli-watchdog``) waits on an event with a timeout, never
    sleeps.  :meth:`touch` runs on the main thread for each event; it only stores a
    time, which the watchdog reads when its current wait ends.  :meth:`close` wakes
    and joins the thread.
    """

    def __init__(
        self,
        stop: Callable[[], object],
        *,
        max_time: float | None,
        idle: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stop = stop
        self._clock = clock
        start = clock()
        self._end = None if max_time is None else start + max_time
        self._idle = idle
        self._last_event = start
        self._closed = threading.Event()
        self.fired: Ending | None = None
        self._thread = threading.Thread(
            target=self._run, name="eventstream-cli-watchdog", daemon=True
        )
        self._thread.start()

    def touch(self) -> None:
        self._last_event = self._clock()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _next(self) -> tuple[float, Ending]:
        deadlines = []
        if self._end is not None:
            deadlines.append((self._end, Ending.MAX_TIME))
        if self._idle is not None:
            deadlines.append((self._last_event + self._idle, Ending.IDLE))
        return min(deadlines, key=lambda pair: pair[0])

    def _run(self) -> None:
        while True:
            deadline, ending = self._next()
            left = deadline - self._clock()
            if left <= 0:
                self.fired = ending
                self._stop()
                return
            if self._closed.wait(left):
                return


class Notice:
    """Calls ``callback`` once, ``delay`` seconds from now, unless closed first.

    Its thread (``eventstream-cli-notice``) waits on an event, never sleeps; the
    callback runs there.  :meth:`close` wakes and joins it.
    """

    def __init__(self, delay: float, callback: Callable[[], object]) -> None:
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(delay, callback), name="eventstream-cli-notice", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _run(self, delay: float, callback: Callable[[], object]) -> None:
        if not self._closed.wait(delay):
            callback()
