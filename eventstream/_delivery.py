"""Hand-off of events from a worker thread to the consumer's thread.

A bounded channel of events with lossless back-pressure: a worker hands over what one
read produced as one batch (crossing threads costs microseconds, so never one event
at a time) and blocks while the channel is full, so a slow consumer slows the socket
instead of losing events.  The consumer takes everything available at once.

Waking the consumer is on the path of every event when events come one at a time, so
it costs one C call, and only when the consumer is waiting: no wake-up while it is
still going through what it took.  Each iteration has its own doorbell, an
``eventfd`` where there is one (Linux, Python 3.10+), which its thread waits on and a
producer rings with the GIL released, after the channel's lock: the consumer, woken
(often on the producer's own CPU, before it), finds the GIL and the lock free.  A
``SimpleQueue`` (the channel's, for every consumer: elsewhere, under gevent or
eventlet, whose greenlets a blocking read would stop, or when no descriptor is left)
wakes the consumer while the producer holds the GIL, and the two then trade it
through three or four more context switches per event
(``benchmarks/bench_lowrate.py``, iterating).  An iteration's ``eventfd`` is closed
once the iteration and every channel that was to ring it let it go.  A producer
waiting for room (rare: the consumer lags) waits on a ``Condition``, notified only
when a producer waits.

Nothing here touches a session or a socket; the caller's thread only wakes waiters.
"""

from __future__ import annotations

import operator
import os
import queue
import sys
import threading
import weakref
from collections import deque
from collections.abc import Iterator
from typing import Protocol

from . import _fork
from ._models import Event
from ._stop import StopSignal

__all__ = ["Channel", "make_bell"]

_HAVE_EVENTFD = hasattr(os, "eventfd")
_EFD_FLAGS = getattr(os, "EFD_SEMAPHORE", 0) | getattr(os, "EFD_CLOEXEC", 0)


class _Doorbell(Protocol):
    def put(self, item: None) -> None: ...

    def get(self) -> None: ...


class _EventfdBell:
    """One iteration's doorbell: an ``eventfd`` in semaphore mode (a token per ``put``,
    one per ``get``).  ``put`` and ``get`` release the GIL around their system call;
    ``get`` blocks.  ``close`` (the iteration's end) and ``put`` (any producer, after
    the channel's lock) take the bell's own lock, so a bell is never written after
    its close, whoever still holds it; a bell never closed is closed when collected.
    Raises ``OSError`` when the process has no descriptor left."""

    fd: int

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # One C call makes the descriptor and stores it (``map`` calls os.eventfd from
        # C: no point between the two where a signal handler could raise), so a
        # KeyboardInterrupt never leaves it without an owner; __del__ closes it.
        vars(self).update(zip(("fd",), map(os.eventfd, (0,), (_EFD_FLAGS,))))
        _bells.add(self)

    def after_fork_in_child(self) -> None:
        """A new lock (a producer of the parent may have held it), and an ``eventfd``
        of its own under the same number: the parent's loop reads and is rung
        through the inherited one, and a token taken here would be its wake-up."""
        self._lock = threading.Lock()
        if self.fd < 0:
            return
        try:
            fresh = os.eventfd(0, _EFD_FLAGS)
        except OSError:  # no descriptor left: closed, it is rung no more
            fd, self.fd = self.fd, -1
            os.close(fd)
            return
        try:
            os.dup2(fresh, self.fd, inheritable=False)
        finally:
            os.close(fresh)

    def __del__(self) -> None:
        fd = vars(self).get("fd", -1)
        if fd >= 0:
            os.close(fd)

    def put(self, _item: None) -> None:
        with self._lock:
            if self.fd >= 0:  # closed: nobody waits on it any more
                os.eventfd_write(self.fd, 1)

    def close(self) -> None:
        """Close the descriptor now (idempotent); a later ``put`` does nothing."""
        with self._lock:
            # No point between the two where a signal handler could raise: an
            # interrupt comes after the close, never between forgetting and closing.
            fd, self.fd = self.fd, -1
            if fd >= 0:
                os.close(fd)

    def get(self) -> None:
        while True:
            try:
                os.eventfd_read(self.fd)
            except InterruptedError:
                # A signal arrived (os.eventfd_read does not retry, PEP 475 aside): its
                # handler runs at the loop's jump, and what it raises is raised here.
                # A handler that returns leaves the wait going here, not in take(),
                # which would list this bell a second time (a stale token later).
                continue
            return


_bells: weakref.WeakSet[_EventfdBell] = weakref.WeakSet()  # every bell not collected


def _after_fork_in_child() -> None:
    for bell in list(_bells):
        bell.after_fork_in_child()


_fork.on_child(_after_fork_in_child)


def make_bell() -> _EventfdBell | None:
    """A doorbell for one iteration's takes (see :meth:`Channel.take`): an ``eventfd``,
    or None where the channel's queue must be used (no ``eventfd``, gevent or
    eventlet, no descriptor left).  Runs on the consumer's thread."""
    if not _HAVE_EVENTFD or _green():
        return None
    try:
        return _EventfdBell()
    except OSError:
        return None


def _green() -> bool:
    """Whether gevent or eventlet has patched ``threading``: a blocking ``eventfd``
    read would stop all of its greenlets."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return True
    patcher = sys.modules.get("eventlet.patcher")
    return patcher is not None and bool(patcher.is_monkey_patched("thread"))


class Channel:
    """A bounded event queue with an end marker and an optional error.

    ``put`` runs on a worker thread, ``take`` on the consumer's thread, ``wake`` and
    ``cancel`` on any thread.
    """

    # Until an end, a cancel or a reopen sets them for this channel.
    _ended = False
    _cancelled = False  # a stop cancelled consumption
    _error: BaseException | None = None  # what the producer ended with (read after _ended)
    _answer: tuple[bool, Event | None] | None = None  # cancel's, until a reopen

    _waiting: list[_Doorbell]  # the doorbell of each consumer waiting
    _room_waiting: int  # how many producers wait for room

    def __init__(self, capacity: int) -> None:
        self.make_locks()
        self._events: deque[Event] = deque()
        self._capacity = capacity
        # The batch the consumer is going through, and the iterator it reads it with
        # (events are not copied out one at a time: see take).  The iterator's
        # position says which events the consumer has received.
        self._batch: list[Event] = []
        self._reader: Iterator[Event] = iter(self._batch)
        self._before: Event | None = None  # the last event of the batches before
        self._drained: list[Event] = []  # what a cancel took from the reader

    def make_locks(self) -> None:
        """Make the lock, the producers' condition and the consumer's doorbell; again
        after ``threading`` and ``queue`` were monkey-patched (gevent), when nothing
        waits, and in a child after a fork, where no other thread is left to wait."""
        self._waiting = []
        self._room_waiting = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # producers wait here for room
        # A consumer waits for a token on a doorbell, outside the lock; a token per
        # waiting consumer is put by whoever changes what it waits for (see _ring).
        # Its iteration's eventfd, or this queue for all (see the module docstring).
        self._doorbell: queue.SimpleQueue[None] = queue.SimpleQueue()

    def put(self, batch: list[Event], stop: StopSignal) -> bool:
        """Append a batch once there is room; False (nothing added) if ``stop`` is set
        first or the consumer cancelled.  ``stop`` is checked under the lock, and
        whoever sets it calls :meth:`wake` after, so a waiting put never misses it."""
        with self._lock:
            while True:
                if stop.is_set() or self._cancelled:
                    return False
                if len(self._events) < self._capacity:
                    break
                self._room_waiting += 1
                try:
                    self._room.wait()
                finally:
                    self._room_waiting -= 1
            self._events.extend(batch)
            waiting = self._waiting
            if not waiting:
                return True
            self._waiting = []
        # The tokens are put after the lock is released (see the module docstring); a
        # consumer that wakes for another reason meanwhile only finds a stale token
        # later, and looks once more.  (A producer is a worker thread: no signal
        # handler raises between the two.)
        for doorbell in waiting:
            doorbell.put(None)
        return True

    def _ring(self) -> None:
        # Under the lock: one token for each consumer waiting (a stale token left by
        # an interrupted wait only makes a consumer look once more).  Unlisted only
        # once all are rung: on a consumer's thread (a stop in its loop) a signal
        # handler may raise between two rings, and a stop called again then rings
        # the rest (and the first again: a stale token).
        for doorbell in self._waiting:
            doorbell.put(None)
        self._waiting = []

    def _wake_all(self) -> None:
        # Under the lock.
        self._ring()
        if self._room_waiting:
            self._room.notify_all()

    def end(self, error: BaseException | None = None) -> None:
        """The producer is done; ``error`` (if any) is raised to the consumer after the
        events already queued.  Once per producer (:meth:`reopen` accepts the next)."""
        with self._lock:
            self._ended = True
            self._error = error
            self._wake_all()

    def reopen(self) -> None:
        """Accept a new producer after an end (a stream started again).  An error the
        consumer did not take is replaced by what the new producer's end brings."""
        with self._lock:
            self._ended = self._cancelled = False
            self._answer = None

    def cancel(self) -> tuple[bool, Event | None]:
        """Drop queued events and end consumption now (the stream was stopped).

        Returns whether events the consumer had not received were dropped, and the
        last event it received (None if none ever), so the stream can resume after it.
        The consumer's reader is a list iterator, and taking the next event from it
        is one C call; so is draining it here (``list.extend``), which both ends it
        and says how many events it still held.  Under the GIL the two cannot
        interleave, so the answer is exact and no event of the batch comes out after
        this returns.  (Two calls, one to ask where the reader stands and one to end
        it, would let the consumer take more events in between: the stream would
        then resume too early and deliver those again.  Without a GIL, a stop racing
        with the consumer's step could do the same for one event, never lose one.)
        """
        with self._lock:
            # A stop may be cut by a KeyboardInterrupt and called again (see take):
            # the answer is kept until a reopen, and what the drain took is kept
            # until the answer is, so a second call gives the same answer.
            if self._answer is not None:
                self._wake_all()
                return self._answer
            drained = self._drained
            drained.extend(self._reader)  # one C call: ends the reader, keeps the rest
            batch = self._batch
            taken = len(batch) - len(drained)
            received = batch[taken - 1] if taken else self._before
            answer = bool(self._events) or bool(drained), received
            empty = iter(())
            self._cancelled, self._answer, self._drained = True, answer, []
            self._batch, self._reader, self._before = [], empty, received
            self._events.clear()
            self._wake_all()
            return answer

    def wake(self) -> None:
        """Wake every waiter so it re-checks its stop signal."""
        with self._lock:
            self._wake_all()

    def take(self, bell: _Doorbell | None = None) -> Iterator[Event] | None:
        """Block until events are available; return a reader of all of them.

        Consumer thread only; it waits on ``bell`` (from :func:`make_bell`, one for
        all the takes of an iteration), or without one on the channel's queue.
        Returns ``None`` at the end of the stream.  Raises the producer's error once
        the queued events are taken.  A reader that was left before its end (a
        ``for`` loop that broke) is returned again first, so that leaving a loop
        loses nothing.  Iterating the reader costs no Python step per event, which
        is most of what handing events to another thread costs.
        """
        # A signal handler that raises (KeyboardInterrupt, the CLI's SIGTERM) runs
        # between two steps of this thread: after any C call, at a function's start or
        # a loop's jump.  So the lock is held only by ``with`` (released whatever is
        # raised), the calls that may be followed by such a raise come before the
        # state changes, which are plain stores that nothing can cut, or the last
        # step.  A raise at any point leaves the channel as before the call or after.
        while True:
            with self._lock:
                if self._room_waiting:  # also wakes producers that a raise kept waiting
                    self._room.notify_all()
                if operator.length_hint(self._reader):
                    return self._reader
                if self._events:
                    batch = list(self._events)
                    reader = iter(batch)
                    before = self._batch[-1] if self._batch else self._before
                    self._before, self._batch, self._reader = before, batch, reader
                    self._events.clear()  # a raise after it finds the reader stored
                    return reader
                if self._cancelled:
                    return None
                if self._ended:
                    error, self._error = self._error, None
                    if error is not None:
                        raise error
                    return None
                doorbell = self._doorbell if bell is None else bell
                self._waiting.append(doorbell)
            doorbell.get()
