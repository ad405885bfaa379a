"""The stop signal: a ``threading.Event`` that can also wake a thread blocked in ``poll()``.

Rule: ``set()`` may be called from any thread (usually the caller's, through
``stop()``); ``wait()``, ``is_set()`` and polling a waker belong to the worker.  A
blocked socket read never sees an ``Event``, so a worker that waits in ``poll()``
attaches a *waker* here and polls its descriptor beside its connection: ``set()``
pokes every attached waker, which makes its descriptor readable for good.  Attach,
detach and that poke all happen under one lock, so ``set()`` never writes to a
descriptor that was closed (its number possibly reused) meanwhile, and a waker
attached after ``set()`` is poked at once, so a worker that attaches late still wakes.

Two wakers: :class:`WakeFd`, one ``eventfd`` (Linux: one descriptor per stream), and
:class:`WakePair`, a ``socket.socketpair()`` (everywhere else, Windows included).
:func:`make_waker` picks the first the platform has.

Standard library only.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from types import TracebackType
from typing import Protocol, TypeVar, Union

from . import _fork

__all__ = ["StopSignal", "WakeFd", "WakePair", "Waker", "make_waker"]

_log = logging.getLogger(__name__)
_WAKE_BYTE = b"\0"
_W = TypeVar("_W", bound="_Waker")


class _Pokeable(Protocol):
    def poke(self) -> None:
        """Make the waker's descriptor readable; never blocks, never raises."""


class StopSignal(threading.Event):
    """A one-shot stop request for one stream.

    Behaves as a ``threading.Event`` (``wait(delay)`` is how a worker backs off), and
    ``set()`` also pokes each attached waker.  ``set()`` is safe to call from any
    thread, any number of times, never blocks on I/O and never raises.  ``clear()``
    is inherited but does not take back pokes already made: treat a stop signal as
    one-shot.
    """

    def __init__(self) -> None:
        super().__init__()
        self._wake_lock = threading.Lock()
        self._wakers: list[_Pokeable] = []
        #: What ``is_set()`` returns, as a plain attribute: a worker reads it once per
        #: event, where the call to ``is_set()`` (a Python method) costs more.
        self.requested = False

    def set(self) -> None:
        """Request the stop: wake ``wait()`` callers and every attached waker."""
        with self._wake_lock:
            super().set()
            self.requested = True
            for waker in self._wakers:
                waker.poke()

    def clear(self) -> None:
        """As ``threading.Event.clear``; pokes already made are not taken back."""
        with self._wake_lock:
            self.requested = False
            super().clear()

    def attach(self, waker: _Pokeable) -> None:
        """Attach a waker; if the signal is already set, poke it now.

        The waker must be detached before its descriptor is closed.
        """
        with self._wake_lock:
            if any(waker is attached for attached in self._wakers):
                raise ValueError("this waker is already attached")
            self._wakers.append(waker)
            if self.is_set():
                waker.poke()

    def detach(self, waker: _Pokeable) -> None:
        """Detach a waker attached before; detaching one that is not attached is a no-op.

        Once this returns, ``set()`` no longer touches it, so it may be closed.
        """
        with self._wake_lock:
            self._wakers = [w for w in self._wakers if w is not waker]


class _Waker:
    """What both wakers share: attach at birth, detach before closing, ``with``."""

    _stop: StopSignal
    _closed = False  # set once by close()

    def fileno(self) -> int:
        raise NotImplementedError

    def poke(self) -> None:
        raise NotImplementedError

    def _close_fds(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Detach from the signal, then close the descriptors; idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stop.detach(self)
        self._close_fds()

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class WakePair(_Waker):
    """A ``socket.socketpair()`` attached to a :class:`StopSignal`: two descriptors.

    Poll ``fileno()`` (the read end) for ``POLLIN`` beside a connection: it becomes
    readable when the signal is set, and stays readable (the byte is never drained;
    a pair serves one wait-for-stop lifetime).  Both ends are non-blocking and, as
    every socket Python creates, close-on-exec.  ``close()`` (or leaving the ``with``
    block) detaches first, then closes both ends; it is idempotent.  Owned by the
    worker thread that created it.
    """

    def __init__(self, stop: StopSignal) -> None:
        self._stop = stop
        self._reader, self._writer = socket.socketpair()
        try:
            self._reader.setblocking(False)
            self._writer.setblocking(False)
            stop.attach(self)
        except BaseException:
            self._reader.close()
            self._writer.close()
            raise

    def fileno(self) -> int:
        """The read end's file descriptor, to register with ``poll()``."""
        return self._reader.fileno()

    def poke(self) -> None:
        # Called by StopSignal with its lock held, on a pair still attached (open).
        try:
            self._writer.send(_WAKE_BYTE)
        except BlockingIOError:
            pass  # the buffer is full of unread bytes: the reader is awake already
        except OSError as exc:  # the reader end is gone: no one left to wake
            _log.debug("stop signal could not write to a wake-up socket: %r", exc)

    def _close_fds(self) -> None:
        self._writer.close()
        self._reader.close()


class WakeFd(_Waker):
    """An ``eventfd`` attached to a :class:`StopSignal`: one descriptor (Linux).

    ``fileno()`` becomes readable when the signal is set and stays so (the counter is
    never read).  Non-blocking and close-on-exec.  Same contract as :class:`WakePair`.
    """

    def __init__(self, stop: StopSignal) -> None:
        self._stop = stop
        self._fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        _fork.record_descriptor(self)  # a forked child closes it (sockets: an audit hook)
        try:
            stop.attach(self)
        except BaseException:
            _fork.forget_descriptor(self._fd)
            os.close(self._fd)
            raise

    def fileno(self) -> int:
        """The eventfd, to register with ``poll()``; -1 once closed."""
        return -1 if self._closed else self._fd

    def poke(self) -> None:
        # Called by StopSignal with its lock held, on an eventfd still attached (open).
        try:
            os.eventfd_write(self._fd, 1)
        except OSError as exc:  # only a counter at its maximum: readable already
            _log.debug("stop signal could not write to an eventfd: %r", exc)

    def _close_fds(self) -> None:
        _fork.forget_descriptor(self._fd)
        os.close(self._fd)


Waker = Union[WakeFd, WakePair]


def make_waker(stop: StopSignal) -> Waker:
    """A waker attached to ``stop``: an eventfd where the platform has one (Linux), else
    a socket pair.  Raises ``OSError`` when no descriptor is left (``EMFILE``)."""
    if _HAVE_EVENTFD:
        return WakeFd(stop)
    return WakePair(stop)


_HAVE_EVENTFD = hasattr(os, "eventfd") and hasattr(select, "poll")
