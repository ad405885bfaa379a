"""SIGINT and SIGTERM during a run: end it at once, but never between an event's
write and the save of its ID.

Rule: the handlers run on the main thread, between two bytecodes of whatever it is
doing.  Outside a critical section they raise (``KeyboardInterrupt``,
:class:`Terminated`), which ends a blocked wait for the next event at once.  Inside
one (writing an event, then saving its ID) they only note the signal, which is
raised when the section ends, so a signal can neither lose an event nor make the
next run repeat one.  A signal ignored when the tool started (``nohup``, a shell's
background job) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

__all__ = ["Signals", "Terminated"]

_HANDLED = (signal.SIGINT, signal.SIGTERM)


class Terminated(BaseException):
    """SIGTERM arrived (from ``kill``, ``timeout`` or a service manager)."""


class Signals:
    """Installs the handlers for a ``with`` block (main thread only) and restores them."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._depth = 0
        self._pending: int | None = None

    def __enter__(self) -> Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in _HANDLED:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section that a signal must not cut: the signal waits for its end.

        The signal is raised however the section ends, an error included (the
        error is its ``__context__``): a write that fails on a closed pipe after
        SIGTERM came must still end the run as terminated, not as a clean end.
        """
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0 and self._pending is not None:
                pending, self._pending = self._pending, None
                _raise_for(pending)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._pending = signum
            return
        _raise_for(signum)


def _raise_for(signum: int) -> None:
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt
