"""The stop signal: a ``threading.Event`` that can also wake a thread blocked in ``poll()``.

Rule: ``set()`` may be called from any thread (usually the caller's, through
``stop()``); ``wait()``, ``is_set()`` and polling a wake-up socket belong to the worker.
A blocked socket read never sees an ``Event``, so a worker that waits in ``poll()``
attaches the write end of a socket pair here and polls the read end beside its
connection: ``set()`` writes one byte to every attached socket.  Attach, detach and
that write all happen under one lock, so ``set()`` never writes to a socket that was
closed (its fd possibly reused) meanwhile, and a socket attached after ``set()`` gets
its byte at once, so a worker that attaches late still wakes.

Standard library only.
"""

from __future__ import annotations

import logging
import socket
import threading
from types import TracebackType

__all__ = ["StopSignal", "WakePair"]

_log = logging.getLogger(__name__)
_WAKE_BYTE = b"\0"


class StopSignal(threading.Event):
    """A one-shot stop request for one stream.

    Behaves as a ``threading.Event`` (``wait(delay)`` is how a worker backs off), and
    ``set()`` also writes one byte to each attached wake-up socket.  ``set()`` is safe
    to call from any thread, any number of times, never blocks on I/O and never
    raises.  ``clear()`` is inherited but does not take back bytes already written:
    treat a stop signal as one-shot.
    """

    def __init__(self) -> None:
        super().__init__()
        self._wake_lock = threading.Lock()
        self._wake_sockets: list[socket.socket] = []

    def set(self) -> None:
        """Request the stop: wake ``wait()`` callers and every attached socket."""
        with self._wake_lock:
            super().set()
            for sock in self._wake_sockets:
                _poke(sock)

    def attach(self, sock: socket.socket) -> None:
        """Attach the write end of a wake-up pair; if already set, write its byte now.

        The socket must be non-blocking, and detached before it is closed.
        """
        with self._wake_lock:
            if any(sock is attached for attached in self._wake_sockets):
                raise ValueError("this socket is already attached")
            self._wake_sockets.append(sock)
            if self.is_set():
                _poke(sock)

    def detach(self, sock: socket.socket) -> None:
        """Detach a socket attached before; detaching one that is not attached is a no-op.

        Once this returns, ``set()`` no longer touches the socket, so it may be closed.
        """
        with self._wake_lock:
            self._wake_sockets = [s for s in self._wake_sockets if s is not sock]


def _poke(sock: socket.socket) -> None:
    # Called with the lock held, on a socket still attached, so still open.
    try:
        sock.send(_WAKE_BYTE)
    except BlockingIOError:
        pass  # the buffer is full of unread bytes: the reader is awake already
    except OSError as exc:  # the reader end is gone: no one left to wake
        _log.debug("stop signal could not write to a wake-up socket: %r", exc)


class WakePair:
    """A ``socket.socketpair()`` whose write end is attached to a :class:`StopSignal`.

    Poll ``fileno()`` (the read end) for ``POLLIN`` beside a connection: it becomes
    readable when the signal is set, and stays readable (the byte is never drained;
    a pair serves one wait-for-stop lifetime).  Both ends are non-blocking and, as
    every socket Python creates, close-on-exec.  ``close()`` (or leaving the ``with``
    block) detaches the write end first, then closes both ends; it is idempotent.
    Owned by the worker thread that created it.
    """

    def __init__(self, stop: StopSignal) -> None:
        self._stop = stop
        self._reader, self._writer = socket.socketpair()
        try:
            self._reader.setblocking(False)
            self._writer.setblocking(False)
            stop.attach(self._writer)
        except BaseException:
            self._reader.close()
            self._writer.close()
            raise
        self._closed = False

    def fileno(self) -> int:
        """The read end's file descriptor, to register with ``poll()``."""
        return self._reader.fileno()

    def is_woken(self) -> bool:
        """True once a wake byte is waiting on the read end (a non-blocking peek)."""
        try:
            return bool(self._reader.recv(1, socket.MSG_PEEK))
        except BlockingIOError:
            return False

    def close(self) -> None:
        """Detach the write end from the signal, then close both ends."""
        if self._closed:
            return
        self._closed = True
        self._stop.detach(self._writer)
        self._writer.close()
        self._reader.close()

    def __enter__(self) -> WakePair:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
