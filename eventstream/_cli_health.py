"""Whether the stream is up, for the exit status: a retried outage never exits 0.

Rule: the stream is *unhealthy* when the run ends if it never opened a response
during the run (refused, DNS, TLS, 5xx, a server that never answers: whatever the
reason), or if it has been failing for ``DOWN_GRACE`` seconds or more: failures
with no event and no connection that lasted ``DOWN_GRACE`` since the first of them
(so a server that accepts and drops at once is down too).  A clean end of the body
followed by a reconnect is no failure.  The stream's callbacks update it on the
worker thread, the main thread reports each event, and reads it once at the end.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ._cli_output import describe

__all__ = ["DOWN_GRACE", "Health"]

#: Seconds of failed reconnecting, after the stream had connected, that make a run
#: unhealthy.  Shorter blips near the end of a run are not reported: the next run
#: starts with them behind it, or reports them as "never connected".
DOWN_GRACE = 10.0


class Health:
    """The stream's connection history during one run, as far as the exit status cares."""

    def __init__(
        self, *, grace: float = DOWN_GRACE, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._grace = grace
        self._clock = clock
        self._lock = threading.Lock()  # written on two threads, read on the main
        self._start = clock()
        self._connected = False  # a response was opened during the run
        self._open_since: float | None = None  # the current connection's open time
        self._down_since: float | None = None  # the first failure since the stream was up
        self._last_error: BaseException | None = None

    def opened(self) -> None:
        """A response was opened (worker thread)."""
        now = self._clock()
        with self._lock:
            self._connected = True
            self._open_since = now

    def event(self) -> None:
        """An event arrived (main thread): the stream is up."""
        with self._lock:
            self._down_since = None

    def failed(self, error: BaseException) -> None:
        """An attempt failed and will be retried (worker thread)."""
        now = self._clock()
        with self._lock:
            self._last_error = error
            if self._lasted(now):  # that connection was up: a new outage starts now
                self._down_since = None
            self._open_since = None
            if self._down_since is None:
                self._down_since = now

    def silent(self) -> bool:
        """Whether nothing at all has happened yet: no response, and no error."""
        with self._lock:
            return not self._connected and self._last_error is None

    def problem(self) -> str | None:
        """Why the stream is unhealthy now, in one line; None when it is not."""
        now = self._clock()
        with self._lock:
            if not self._connected:
                reason = f"no connection in {now - self._start:.1f} s"
            elif self._lasted(now) or self._down_since is None:
                return None
            elif now - self._down_since >= self._grace:
                reason = f"failing for the last {now - self._down_since:.1f} s"
            else:
                return None
            error = self._last_error
        if error is None:
            return f"{reason}: no answer yet (connecting or waiting for response headers)"
        return f"{reason}; the last error: {describe(error)}"

    def _lasted(self, now: float) -> bool:
        # Called with the lock held.
        return self._open_since is not None and now - self._open_since >= self._grace
