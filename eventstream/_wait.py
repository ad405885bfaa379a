"""Waiting for one socket or the stop signal, whichever comes first: the read loop's only
blocking call.

Rule: standard library only; everything here runs on the worker thread that owns the
socket (another thread only sets the stop signal, which pokes the waker).  A
:class:`Waiter` owns one waker (``_stop.make_waker``: an eventfd on Linux, a socket
pair elsewhere) and waits with ``poll()`` where the platform has it, else with
``select()``: on POSIX ``select()`` fails for descriptors >= 1024, but a platform
without ``poll()`` is Windows, whose ``select()`` has no such limit.

The interface, for any reader that keeps the ``read(timeout) -> bytes | None``
contract (the plain and TLS socket reader in ``_sockread``, and one that reads TLS
inside TLS through its own buffers)::

    waiter = Waiter(stop)        # OSError (EMFILE) when no descriptor is left
    waiter.watch(sock.fileno())  # the connection's socket, non-blocking
    ready = waiter.wait(seconds_or_None, write=False)  # True: the socket is ready
    poll, fd = waiter.poll_for_reading()  # the same wait for reading, without a call
    waiter.close()               # detach the waker, close its descriptor

``wait`` returns True when the socket is readable (writable with ``write=True``) and
the stop signal is not set, False when the stop signal is set or the time ran out
(``stop.is_set()`` tells which): a reader that always waits before it reads needs no
other stop check, even on a socket that never stops being readable.  It never reads:
a reader must first use the bytes that its layers above the socket already hold
(http.client's buffer, OpenSSL's ``pending()``), which never make the socket readable.
"""

from __future__ import annotations

import select
from collections.abc import Callable
from types import TracebackType

from ._stop import StopSignal, make_waker

__all__ = ["Waiter", "have_poll"]


def have_poll() -> bool:
    """Whether this platform has ``select.poll`` (every POSIX system; not Windows)."""
    return hasattr(select, "poll")


class Waiter:
    """Waits on the worker thread until a watched socket is ready or ``stop`` is set.

    Costs one descriptor on Linux (an eventfd), two elsewhere (a socket pair), and one
    system call per wait.  Owned by one thread; ``close()`` is idempotent.
    """

    def __init__(self, stop: StopSignal) -> None:
        self._waker = make_waker(stop)
        self._wake_fd = self._waker.fileno()
        self._fd = -1
        self._write = False
        self._poller = select.poll() if have_poll() else None
        if self._poller is not None:
            self._poller.register(self._wake_fd, select.POLLIN)

    def watch(self, fd: int) -> None:
        """Wait on ``fd`` (for reading) from now on, instead of the one watched before."""
        if self._poller is not None:
            if self._fd >= 0:
                self._poller.unregister(self._fd)
            self._poller.register(fd, select.POLLIN)
        self._fd, self._write = fd, False

    def poll_for_reading(
        self,
    ) -> tuple[Callable[[float | None], list[tuple[int, int]]], int] | None:
        """``(poll, fd)`` for a reader's hot loop, or ``None`` without ``poll()``.

        ``poll(ms)`` waits as :meth:`wait` with ``write=False`` does, without the
        Python call: the socket is ready exactly when it returns ``[(fd, events)]``
        alone; the waker beside it, or alone, means stopped.  Valid for the socket
        watched now, while waiting for reading: after a :meth:`wait` with
        ``write=True``, call :meth:`wait` with ``write=False`` once before using it.
        """
        if self._poller is None:
            return None
        return self._poller.poll, self._fd

    def wait(self, timeout: float | None, write: bool = False) -> bool:
        """Block until the watched socket is ready, the stop signal is set, or ``timeout``
        seconds (``None``: no limit) have passed.  True only for a ready socket and a
        stop signal not set; on False, ``stop.is_set()`` says whether it was the stop.

        A timeout is exact: ``poll()`` and ``select()`` round it up to their unit,
        and retry with what is left when a signal interrupts them (PEP 475).
        """
        poller = self._poller
        if poller is None:
            return self._select(timeout, write)
        if write is not self._write:
            self._write = write
            poller.modify(self._fd, select.POLLOUT if write else select.POLLIN)
        ready = poller.poll(None if timeout is None else timeout * 1000)
        # The socket alone: ready.  The waker, alone or beside it: stopped.  None: time.
        return len(ready) == 1 and ready[0][0] == self._fd

    def _select(self, timeout: float | None, write: bool) -> bool:
        fd = self._fd
        # Windows reports a connect that failed as an exceptional condition, not as
        # writable: the caller then reads the error (``_connwait``).
        also = [fd] if write else []
        readable, writable, failed = select.select([fd, self._wake_fd], also, also, timeout)
        if self._wake_fd in readable:
            return False
        return fd in (writable if write else readable) or fd in failed

    def close(self) -> None:
        """Detach the waker from the stop signal and close it (the socket is not ours)."""
        self._poller = None
        self._waker.close()

    def __enter__(self) -> Waiter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
