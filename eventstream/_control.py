"""What a stream shares with its workers, and the process-wide bookkeeping.

``Control`` holds locks, the current worker's stop signal and thread, and the
delivery side; it never holds a session, response, connection or socket.  A stream
object holds its ``Control``; a worker holds it too, through its ``_Sink``, but never
the stream object, so a stream that is garbage collected can stop its worker.

Also here: the registry of running workers, the ``atexit`` hook that stops and
briefly joins them, and the fork handler that makes a child see them as stopped
(``_fork`` runs it, and closes the inherited sockets first).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _fork
from ._delivery import Channel
from ._exceptions import StreamError
from ._httputil import detach
from ._models import Event, ResponseInfo
from ._stop import StopSignal
from ._worker import Options, Worker

__all__ = [
    "DEFAULT_QUEUE_SIZE",
    "Control",
    "Delivery",
    "OnComment",
    "OnError",
    "OnEvent",
    "OnOpen",
    "OnRetry",
    "abandon",
]

_log = logging.getLogger(__name__)
_thread_ids = itertools.count(1)
_live: set[Control] = set()  # controls with a running worker, for atexit and fork
_live_lock = threading.Lock()
_made: dict[int, weakref.ref[Control]] = {}  # every control, for _after_patch
# On a worker thread, ``control`` is the Control it works for (see abandon).
_worker_of = threading.local()
#: Seconds the interpreter's exit waits, in all, for stopped workers to finish.
EXIT_JOIN_TIMEOUT = 1.0

DEFAULT_QUEUE_SIZE = 1024
OnEvent = Callable[[Event], Any]
OnError = Callable[[BaseException], Any]
OnOpen = Callable[[ResponseInfo], Any]
OnRetry = Callable[[StreamError, float], Any]
OnComment = Callable[[str], Any]


@dataclass(frozen=True)
class Delivery:
    """Where a stream's events, errors, opens and retries go; checked when the stream
    is made.  Build it by keyword.

    With ``on_event`` events go to the callbacks (on the worker thread); without it
    they go to a queue of ``queue_size`` events for an iterating consumer.
    """

    on_event: OnEvent | None = None
    on_error: OnError | None = None
    on_open: OnOpen | None = None
    on_retry: OnRetry | None = None
    on_comment: OnComment | None = None
    queue_size: int = DEFAULT_QUEUE_SIZE

    def __post_init__(self) -> None:
        for name in ("on_event", "on_error", "on_open", "on_retry", "on_comment"):
            callback = getattr(self, name)
            if callback is not None and not callable(callback):
                raise TypeError(f"{name} must be callable, not {callback!r}")
        size = self.queue_size
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"queue_size must be a positive int, not {size!r}")


class Control:
    """State shared by a stream and its workers.  Holds no I/O object."""

    def __init__(self, options: Options, delivery: Delivery, *, last_event_id: str) -> None:
        self.options = options
        self.delivery = delivery
        self.last_event_id = last_event_id
        self.first_id = last_event_id  # the resume point before any event was received
        self._init_sync()
        self.info: ResponseInfo | None = None  # of the latest successful connect
        self.failure: BaseException | None = None  # what ended the latest worker
        self.deferred = False  # started in a uWSGI master: starts in each worker
        # The stream object was collected on one of its own workers (see abandon):
        # a plain flag, written and read without a lock.
        self.abandoned = False
        made = weakref.ref(self, _forget)
        _made[id(made)] = made

    def stop_and_cancel(self) -> threading.Thread | None:
        """Signal the worker to stop and end consumption; return the worker thread."""
        with self.lock:
            self.signal_stop()  # first, without deliver_lock: a put waiting for room holds it
            thread = self.thread
        if self.channel is not None:
            # Under deliver_lock no hand-over is under way, and none will add events
            # (the worker's stop signal is set): what the consumer has not received
            # is dropped, and the resume point goes back to what it has.  A restart
            # on another thread may have started a worker since: the stop wins, so
            # that worker is signalled too before its channel is cancelled.
            with self.deliver_lock, self.lock:
                self.signal_stop()
                thread = self.thread
                dropped, received = self.channel.cancel()
                if dropped:
                    self.last_event_id = self.first_id if received is None else received.id
        self.settled.set()
        return thread

    def _init_sync(self) -> None:
        self._make_locks()
        delivery = self.delivery
        self.channel = None if delivery.on_event else Channel(delivery.queue_size)
        self.stop: StopSignal | None = None
        self.thread: threading.Thread | None = None

    def _make_locks(self) -> None:
        self.lock = threading.Lock()  # guards stop/thread
        # Serialises hand-overs across a restart (see resume_point); re-entrant so
        # that a callback may call restart() or stop() on its own stream.
        self.deliver_lock = threading.RLock()
        # Set once the latest worker opened a response or ended, whichever is first.
        self.settled = threading.Event()

    def after_fork_in_child(self, running: bool) -> None:
        """In a child, where only the forking thread exists: every lock is made
        again (any thread may have held one at the fork); a worker that was
        ``running`` is seen as stopped, and a ``for`` loop over the stream carried
        into the child (one that forked) ends as after a stop, with the resume point
        at what it received.  The parent's wake-up sockets are never touched."""
        settled = self.settled.is_set()
        self._make_locks()
        if settled or running:
            self.settled.set()
        self.stop = None  # the parent's, whose lock a thread may have held
        channel = self.channel
        if channel is not None:
            channel.make_locks()
        # A worker that ran keeps its thread (dead here): the stream is stopped, not
        # new, so iterating it does not start it (a one-shot request is not sent again).
        if running and channel is not None:
            dropped, received = channel.cancel()
            if dropped:
                self.last_event_id = self.first_id if received is None else received.id

    def after_patch(self) -> bool:
        """``threading`` was monkey-patched since the locks were made (``_fork.check``):
        make them again as the patched module makes them, keeping what they say.
        Not while a worker runs (it may hold or wait on them): returns False then."""
        thread = self.thread
        if thread is not None and thread.is_alive():
            return False
        settled = self.settled.is_set()
        self._make_locks()
        if settled:
            self.settled.set()
        if self.channel is not None:
            self.channel.make_locks()
        return True

    def running(self) -> bool:
        thread, stop = self.thread, self.stop
        return thread is not None and thread.is_alive() and stop is not None and not stop.is_set()

    def launch(self) -> None:
        """Start a new worker; called with ``lock`` held.

        In a uWSGI master no thread may run (uWSGI forks in C): the start is deferred
        to each worker, right after uWSGI forks it (``_fork.uwsgi_defer``).
        """
        _fork.prepare()  # nothing is imported for the first time on a worker thread
        if self.deferred or _fork.uwsgi_defer(self._launch_deferred):
            self.deferred = True
            return
        stop = StopSignal()
        sink = _Sink(self, stop)
        worker = Worker(self.options, stop, sink, resume=self.resume_point)
        thread = threading.Thread(
            target=_run_worker,
            args=(worker, self),
            name=f"eventstream-worker-{next(_thread_ids)}",
            daemon=True,
        )
        with _live_lock:
            _live.add(self)
        previous = self.stop, self.thread
        # From here on, whatever is raised (a KeyboardInterrupt on this thread, or
        # no thread to be had) puts the previous worker back: the new one's stop
        # signal is set, so if it began after all, it ends before it connects.
        try:
            if self.channel is not None:
                self.channel.reopen()
            self.settled.clear()
            self.failure = None
            self.stop, self.thread = stop, thread
            thread.start()
        except BaseException as exc:
            stop.set()
            self.stop, self.thread = previous  # a thread never started cannot be joined
            if previous[1] is None or not previous[1].is_alive():
                with _live_lock:
                    _live.discard(self)
            self.settled.set()
            if isinstance(exc, RuntimeError):  # "can't start new thread": out of threads
                raise _no_thread(self.options.safe_url, exc) from exc
            raise

    def _launch_deferred(self) -> None:
        with self.lock:  # in a uWSGI worker, just forked; not if stopped since
            if self.deferred and not self.running():
                self.deferred = False
                self.launch()

    def signal_stop(self) -> None:
        """Set the current worker's stop signal and wake a hand-over waiting for room."""
        self.deferred = False
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


def _run_worker(worker: Worker, control: Control) -> None:
    _worker_of.control = control
    worker.run()


def _no_thread(url: str, exc: RuntimeError) -> StreamError:
    return StreamError(
        f"cannot start the worker thread of {url} ({exc}; {threading.active_count()} threads"
        " running): the process is out of threads or memory for their stacks; raise the"
        " limit (ulimit -u), lower threading.stack_size() before starting streams, or run"
        " fewer streams",
        url=url,
    )


class _Sink:
    """The worker's side of delivery: runs on the worker thread.

    Every error it passes on (to ``on_error``, ``on_retry``, the consumer, the
    stream's ``failure``) is detached first: no traceback into this thread, no
    reference to its session, response, connection or socket (``_httputil.detach``).
    Each hand-over ends by honouring an ``abandon`` that ran on this thread meanwhile.
    """

    def __init__(self, control: Control, stop: StopSignal) -> None:
        self._control = control
        self._stop = stop
        self.wants_comments = control.delivery.on_comment is not None

    def opened(self, info: ResponseInfo) -> None:
        control = self._control
        control.info = info
        control.settled.set()
        if control.delivery.on_open is not None and not self._stop.is_set():
            try:
                control.delivery.on_open(info)
            except Exception as exc:
                _log.exception("on_open callback raised")
                self.error(exc)
        self._honour_abandon()

    def deliver(self, events: list[Event], last_event_id: str, stop: StopSignal) -> bool:
        # One call per read, with on_event called in it: with one event per read, each
        # Python call here is a noticeable part of what an event costs.
        control = self._control
        with control.deliver_lock:
            channel = control.channel
            if channel is not None:
                # Refused only once stop is set (cancel() follows a stop).  Handed over,
                # they move the resume point even if a stop came meanwhile: the
                # consumer may have received them all already (woken by put(), it
                # runs at once), and cancel(), under this lock after us, takes the
                # point back only if some were dropped.  A read with no event (a
                # heartbeat, an id-only block) moves it only before a stop: after
                # one, cancel() may have taken it back already.
                if events:
                    if not channel.put(events, stop):
                        return False
                elif stop.requested:
                    return False
                control.last_event_id = last_event_id
            else:
                on_event = control.delivery.on_event
                assert on_event is not None
                for event in events:
                    if stop.requested:
                        return False
                    try:
                        on_event(event)
                    except Exception as exc:  # documented: reported, the stream goes on
                        _log.exception("on_event callback raised")
                        self.error(exc)
                    control.last_event_id = event.id
            if stop.requested:
                return False
            control.last_event_id = last_event_id
        # A stop set from now on is seen by the next read's wait, within milliseconds.
        return not (control.abandoned and self._honour_abandon())

    def comment(self, text: str, stop: StopSignal) -> bool:
        control = self._control
        on_comment = control.delivery.on_comment
        assert on_comment is not None
        # Under deliver_lock, as on_event: across a restart, the old worker's last
        # callback ends before the new worker hands anything over.
        with control.deliver_lock:
            if stop.is_set():
                return False
            try:
                on_comment(text)
            except Exception as exc:  # like on_event: logged, reported, the stream goes on
                _log.exception("on_comment callback raised")
                self.error(exc)
        return not self._honour_abandon()

    def retrying(self, exc: StreamError, delay: float) -> None:
        on_retry = self._control.delivery.on_retry
        if on_retry is not None and not self._stop.is_set():
            try:
                on_retry(detach(exc), delay)
            except Exception as raised:  # like on_event: logged, reported, the stream goes on
                _log.exception("on_retry callback raised")
                self.error(raised)
        self._honour_abandon()

    def error(self, exc: BaseException) -> None:
        on_error = self._control.delivery.on_error
        if on_error is None or self._stop.is_set():
            _log.debug("stream error: %r", exc)
        else:
            try:
                on_error(detach(exc))
            except Exception:
                _log.exception("on_error callback raised")
        self._honour_abandon()

    def _honour_abandon(self) -> bool:
        """Stop if the stream was collected on this thread meanwhile; True if stopping.

        Called where this thread holds none of the control's locks."""
        control = self._control
        if control.abandoned and not self._stop.is_set():
            control.stop_and_cancel()
        return self._stop.is_set()

    def end(self, exc: BaseException | None) -> None:
        if exc is not None:
            detach(exc)
        control = self._control
        with control.lock:
            current = control.stop is self._stop
            if current:
                control.failure = exc
                control.settled.set()
        if control.channel is not None and current:
            control.channel.end(exc)
        elif exc is not None and not self._stop.is_set():
            _log.debug("stream ended with %r", exc)
        with _live_lock:
            if current:
                _live.discard(control)


def abandon(control: Control) -> None:
    """A stream object was collected: its worker must not run on, unowned.

    Runs wherever the collector runs: on the thread that dropped the last reference,
    or on any thread that allocates, when a reference cycle is collected.  That may
    be one of the stream's own workers, at any point, holding the control's locks
    (taking a non-reentrant one again would hang the thread for ever).  So there it
    only raises a flag, and the worker stops itself at its next hand-over, where it
    holds no lock: at once while events or errors flow, after the read timeout at
    worst on a silent stream.  On any other thread it stops the worker at once.
    """
    if getattr(_worker_of, "control", None) is control:
        control.abandoned = True
    else:
        control.stop_and_cancel()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        controls = list(_live)
    threads = []
    for control in controls:
        abandon(control)
        if control.thread is not None:
            threads.append(control.thread)
    deadline = EXIT_JOIN_TIMEOUT
    for thread in threads:
        # Workers are daemons: one that does not finish in time is simply left.
        thread.join(deadline / max(1, len(threads)))


def _after_fork_in_child() -> None:
    global _live_lock
    _live_lock = threading.Lock()
    for made in list(_made.values()):
        control = made()
        if control is not None:
            control.after_fork_in_child(running=control in _live)
    _live.clear()


_fork.on_child(_after_fork_in_child)


def _forget(made: weakref.ref[Control]) -> None:
    _made.pop(id(made), None)


def _after_patch() -> bool:
    global _worker_of
    quiet = True
    for made in list(_made.values()):
        control = made()
        if control is not None and not control.after_patch():
            quiet = False
            _log.warning(
                "threading was monkey-patched while the stream of %s ran: it keeps"
                " native locks, which can block every greenlet; monkey-patch before"
                " starting streams",
                control.options.safe_url,
            )
    if quiet:  # as _fork's marks: per greenlet from now on
        _worker_of = threading.local()
    return quiet


_fork.on_patched(_after_patch)
