"""Rate-limited WARNING lines for retried errors, so a stream that fails says so.

Rule: a retried error is worth a WARNING (a stream retrying forever against a
mistyped host must not be silent), but a flapping server must not flood the log.
So the first retried error is logged at once, and later ones at most once every
``interval`` seconds, as one line that counts the failures it stands for; the rest
go to DEBUG.  A stream that connects again after a logged failure says so once at
INFO.  Runs on the worker thread; the clock is the worker's (injectable).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["WARNING_INTERVAL", "RetryLog"]

#: Seconds between two WARNING lines about the same stream's retried errors.
WARNING_INTERVAL = 30.0


class RetryLog:
    """Says what a stream's retries look like, without repeating itself."""

    def __init__(
        self,
        logger: logging.Logger,
        url: str,
        *,
        clock: Callable[[], float],
        interval: float = WARNING_INTERVAL,
    ) -> None:
        self._log = logger
        self._url = url  # already without user info
        self._clock = clock
        self._interval = interval
        self._last_warning: float | None = None
        self._since_warning = 0  # failures not in a WARNING line yet
        self._warned = False  # a failure was logged since the last connect

    def failed(self, error: BaseException, delay: float) -> None:
        """A retried error; the worker waits ``delay`` seconds before the next attempt."""
        now = self._clock()
        self._since_warning += 1
        if self._last_warning is not None and now - self._last_warning < self._interval:
            self._log.debug("%s; reconnecting in %.1f s", error, delay)
            return
        # The package's errors name the URL already (without user info).
        if self._since_warning == 1:
            self._log.warning("%s; reconnecting in %.1f s", error, delay)
        else:
            self._log.warning(
                "%s; reconnecting in %.1f s (%d failures since the last warning)",
                error,
                delay,
                self._since_warning,
            )
        self._last_warning = now
        self._since_warning = 0
        self._warned = True

    def connected(self, status_code: int) -> None:
        """A response was opened; at INFO only after a logged failure (so once per
        ``interval`` at most, even for a server that accepts and drops at once)."""
        if self._warned:
            self._warned = False
            self._log.info("%s: connected again (HTTP %d)", self._url, status_code)
        else:
            self._log.debug("%s: connected (HTTP %d)", self._url, status_code)
