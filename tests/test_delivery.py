"""The channel between a worker and the iterating thread, without threads or sockets:
what a stop drops and names as received, and what a broken loop leaves."""

from __future__ import annotations

import gc
import os
import queue
import select
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator

import pytest
from _threads import inside, wait_until_inside

import eventstream
from eventstream import Backoff, Event, EventStream, _delivery
from eventstream._delivery import Channel, _EventfdBell, make_bell
from eventstream._stop import StopSignal
from eventstream.testing import Script, SSEServer


def events(*data: str) -> list[Event]:
    return [Event("message", d, d) for d in data]


def first_of_three() -> tuple[Channel, Iterator[Event]]:
    """A channel with events a, b, c in one batch, and its reader after "a"."""
    channel = Channel(8)
    assert channel.put(events("a", "b", "c"), StopSignal())
    reader = channel.take()
    assert reader is not None
    assert next(reader).data == "a"
    return channel, reader


def test_a_reader_left_early_is_returned_again() -> None:
    channel, reader = first_of_three()
    again = channel.take()
    assert again is reader
    assert [e.data for e in again] == ["b", "c"]


def test_cancel_names_the_last_event_received_and_ends_the_reader() -> None:
    channel, reader = first_of_three()
    assert channel.put(events("d"), StopSignal())
    dropped, received = channel.cancel()
    assert dropped
    assert received is not None
    assert received.data == "a"
    assert list(reader) == []  # nothing of the batch comes out after a stop
    assert channel.take() is None


def test_cancel_after_whole_batches_drops_nothing() -> None:
    channel = Channel(8)
    assert channel.put(events("a", "b"), StopSignal())
    assert [e.data for e in channel.take() or []] == ["a", "b"]
    assert channel.cancel() == (False, events("b")[0])
    channel.reopen()
    assert channel.put(events("c"), StopSignal())
    reader = channel.take()
    assert reader is not None
    assert channel.cancel() == (True, events("b")[0])  # "c" was taken, never received


def test_cancel_before_any_event_names_none() -> None:
    channel = Channel(8)
    assert channel.cancel() == (False, None)


def test_a_full_channel_holds_its_capacity_and_no_more() -> None:
    # queue_size bounds what a stalled consumer leaves queued: the put after the
    # capacity'th event waits for a take.
    channel = Channel(2)
    stop = StopSignal()
    assert channel.put(events("a"), stop)
    assert channel.put(events("b"), stop)
    third = threading.Thread(target=channel.put, args=(events("c"), stop))
    third.start()
    try:
        assert wait_until_inside(third, threading.Condition.wait.__code__, 5.0)
        assert inside(third, Channel.put.__code__)  # waiting for room, not done
        assert [e.data for e in channel.take() or []] == ["a", "b"]
        third.join(5.0)
        assert not third.is_alive()
        assert [e.data for e in channel.take() or []] == ["c"]
    finally:
        stop.set()
        channel.wake()
        third.join(5.0)


def test_cancel_right_after_a_take_names_the_end_of_the_batch_before() -> None:
    # The consumer received all of a and b, then took the next batch but received
    # nothing of it yet: the stream must resume after b, neither before (a, b again)
    # nor after (c lost).
    channel = Channel(8)
    assert channel.put(events("a", "b"), StopSignal())
    assert [e.data for e in channel.take() or []] == ["a", "b"]
    assert channel.put(events("c"), StopSignal())
    assert channel.take() is not None
    assert channel.cancel() == (True, events("b")[0])


def _waiting_consumer(channel: Channel) -> tuple[threading.Thread, queue.SimpleQueue[object]]:
    """A thread blocked in take(); what take() returned (or raised) goes to the queue."""
    got: queue.SimpleQueue[object] = queue.SimpleQueue()

    def consume() -> None:
        try:
            reader = channel.take()
            got.put(None if reader is None else [e.data for e in reader])
        except Exception as exc:
            got.put(exc)

    thread = threading.Thread(target=consume, name="test-delivery-consumer")
    thread.start()
    deadline = time.monotonic() + 5
    while len(channel._waiting) == 0 and time.monotonic() < deadline:
        thread.join(0.001)  # until it waits (bounded; not a synchronisation by sleep)
    assert len(channel._waiting) == 1
    return thread, got


def test_put_wakes_a_waiting_consumer() -> None:
    channel = Channel(8)
    thread, got = _waiting_consumer(channel)
    assert channel.put(events("a"), StopSignal())
    assert got.get(timeout=5) == ["a"]
    thread.join(5)
    assert not thread.is_alive()


def test_put_rings_no_one_when_no_consumer_waits() -> None:
    channel = Channel(8)
    thread, got = _waiting_consumer(channel)
    doorbell = channel._waiting[0]  # the consumer's (its thread's eventfd, or the queue)
    assert channel.put(events("a"), StopSignal())
    assert got.get(timeout=5) == ["a"]
    thread.join(5)
    assert doorbell.qsize() == 0  # its token was taken
    assert channel.put(events("b"), StopSignal())
    assert channel.put(events("c"), StopSignal())
    assert doorbell.qsize() == 0  # a consumer still busy is not woken


def test_end_and_cancel_wake_every_waiting_consumer() -> None:
    channel = Channel(8)
    first, got_first = _waiting_consumer(channel)
    channel.end(ValueError("boom"))
    assert isinstance(got_first.get(timeout=5), ValueError)
    first.join(5)
    channel.reopen()
    consumers = [_waiting_consumer(channel) for _ in range(1)]
    second = threading.Thread(target=channel.take, name="test-delivery-second")
    second.start()
    deadline = time.monotonic() + 5
    while len(channel._waiting) < 2 and time.monotonic() < deadline:
        second.join(0.001)
    assert len(channel._waiting) == 2
    channel.cancel()
    assert consumers[0][1].get(timeout=5) is None
    second.join(5)
    consumers[0][0].join(5)
    assert not second.is_alive()
    assert not consumers[0][0].is_alive()


def test_a_full_channel_makes_the_producer_wait_for_room_or_stop() -> None:
    channel = Channel(1)
    stop = StopSignal()
    assert channel.put(events("a"), stop)
    results: queue.SimpleQueue[bool] = queue.SimpleQueue()
    producer = threading.Thread(
        target=lambda: results.put(channel.put(events("b"), stop)), name="test-delivery-producer"
    )
    producer.start()
    assert [e.data for e in channel.take() or []] == ["a"]  # room: the producer goes on
    assert results.get(timeout=5) is True
    producer.join(5)
    producer = threading.Thread(
        target=lambda: results.put(channel.put(events("c"), stop)), name="test-delivery-producer"
    )
    producer.start()
    stop.set()
    channel.wake()
    assert results.get(timeout=5) is False
    producer.join(5)
    assert not producer.is_alive()


def test_cancel_counts_events_still_queued_behind_a_whole_batch_as_dropped() -> None:
    # The consumer received all of a and b; c was handed over but never taken.  A
    # stop must say that c was dropped, so that the stream resumes after b and c comes
    # again; otherwise the resume point stays after c, which is lost.
    channel = Channel(8)
    assert channel.put(events("a", "b"), StopSignal())
    assert [e.data for e in channel.take() or []] == ["a", "b"]
    assert channel.put(events("c"), StopSignal())
    assert channel.cancel() == (True, events("b")[0])


def test_cancel_right_after_a_take_names_the_end_of_a_longer_batch_before() -> None:
    # As above with a batch of three: the resume point is its last event, not another.
    channel = Channel(8)
    assert channel.put(events("a", "b", "c"), StopSignal())
    assert [e.data for e in channel.take() or []] == ["a", "b", "c"]
    assert channel.put(events("d"), StopSignal())
    assert channel.take() is not None
    assert channel.cancel() == (True, events("c")[0])


def test_a_stop_right_after_a_restart_is_answered_too() -> None:
    # stop(), restart(), stop() before the consumer took anything again: the second
    # cancel finds the reader the first one left, and answers from it.
    channel, _ = first_of_three()
    assert channel.cancel() == (True, events("a")[0])
    channel.reopen()
    assert channel.cancel() == (False, events("a")[0])
    channel.reopen()
    assert channel.put(events("d"), StopSignal())
    assert [e.data for e in channel.take() or []] == ["d"]


def _until(condition: Callable[[], bool], pause: threading.Event) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        pause.wait(0.001)  # bounded polling of a state, not a synchronisation by sleep
    assert condition()


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs pthread_kill")
def test_a_signal_whose_handler_returns_leaves_the_wait_for_events_going() -> None:
    # A handler that returns (the CLI's notes a signal during an event's write) must
    # not end take(): the consumer waits on, and gets what comes next.
    channel = Channel(8)
    noted: list[int] = []
    main, pause = threading.get_ident(), threading.Event()

    def signal_then_put() -> None:
        _until(lambda: len(channel._waiting) == 1, pause)
        signal.pthread_kill(main, signal.SIGUSR1)  # the waiting thread's read is cut
        _until(lambda: bool(noted), pause)
        channel.put(events("a"), StopSignal())

    bell = make_bell()  # None without eventfd: the channel's queue, which retries
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: noted.append(signum))
    helper = threading.Thread(target=signal_then_put, name="test-delivery-signal")
    try:
        helper.start()
        reader = channel.take(bell)  # an eventfd's read is cut by the signal
        assert reader is not None
        assert [e.data for e in reader] == ["a"]
        assert noted == [signal.SIGUSR1]
        helper.join(5)
        if bell is not None:  # the wait went on where it was cut: listed once, rung once
            assert _tokens(bell) == 0
    finally:
        helper.join(5)
        if bell is not None:
            bell.close()
        signal.signal(signal.SIGUSR1, previous)


def _tokens(bell: _EventfdBell) -> int:
    """0 if no token is pending on ``bell``, else 1 (a look that takes none)."""
    readable, _, _ = select.select([bell.fd], [], [], 0)  # the no-poll run has no poll()
    return len(readable)


def _eventfds() -> int:
    """How many eventfds this process has open (0 where there is no /proc)."""
    if not os.path.isdir("/proc/self/fd"):
        return 0
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventfd]"
        except OSError:
            continue  # closed meanwhile
    return count


@pytest.mark.skipif(not _delivery._HAVE_EVENTFD, reason="eventfd doorbells: Linux, 3.10+")
def test_an_iteration_keeps_one_doorbell_and_it_is_closed_when_let_go(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_delivery, "_green", lambda: False)  # gevent imported by a test
    channels = [Channel(8) for _ in range(3)]
    bells: list[object] = []
    before = _eventfds()

    def consume() -> None:
        bell = make_bell()
        for channel in channels:
            reader = channel.take(bell)
            assert reader is not None
            assert [e.data for e in reader] == ["a"]

    consumer = threading.Thread(target=consume, name="test-delivery-consumer")
    consumer.start()
    pause = threading.Event()
    for channel in channels:
        _until(lambda: len(channel._waiting) == 1, pause)  # noqa: B023
        bells.append(channel._waiting[0])
        assert channel.put(events("a"), StopSignal())
    consumer.join(5)
    assert not consumer.is_alive()
    assert isinstance(bells[0], _EventfdBell)
    assert bells[0] is bells[1] is bells[2]  # one for the iteration, not one per take
    assert _eventfds() == before + 1  # held here only
    bells.clear()
    assert _eventfds() == before  # let go: closed


def test_iterating_a_stream_leaves_no_descriptor_behind() -> None:
    # The doorbell lives as long as the iteration: a loop that ended, on a thread
    # that goes on (this one), keeps no eventfd.
    with SSEServer() as server:
        server.enqueue(Script().event("a").event("b"))
        before = _eventfds()
        with EventStream(server.url, backoff=Backoff(max_attempts=1)) as stream:
            got = []
            for event in stream:
                got.append(event.data)
                if len(got) == 2:
                    break
        gc.collect()
        assert got == ["a", "b"]
        assert _eventfds() == before


@pytest.mark.skipif(not _delivery._HAVE_EVENTFD, reason="eventfd doorbells: Linux, 3.10+")
def test_a_closed_doorbell_ignores_a_late_ring() -> None:
    # A consumer whose wait was cut (KeyboardInterrupt) is still listed as waiting
    # when its iteration closes the bell: the producer's ring then writes nothing
    # (the descriptor's number may belong to another file by then).
    bell = _EventfdBell()
    fd = bell.fd
    bell.put(None)
    assert _tokens(bell) == 1
    bell.close()
    bell.close()  # idempotent
    with open(os.devnull, "rb") as other:
        assert other.fileno() == fd  # the number is reused at once
        bell.put(None)  # neither raises nor writes to the other file
    assert bell.fd == -1


def test_an_iteration_that_ends_with_an_error_closes_its_doorbell_at_once() -> None:
    # The error's traceback keeps the iteration's frames (and what they refer to)
    # alive as long as the caller keeps the error: the doorbell is closed anyway.
    with SSEServer() as server:
        server.enqueue(Script(headers={"Content-Encoding": "br"}).event("a"))
        before = _eventfds()
        stream = EventStream(server.url, backoff=Backoff(max_attempts=1))
        with pytest.raises(eventstream.ContentTypeError) as caught:
            for _ in stream:
                pass
        assert stream.join(5)
        assert _eventfds() == before
        assert caught.value.__traceback__ is not None


def test_with_no_descriptor_left_the_channel_wakes_its_consumer_through_a_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_descriptor() -> _EventfdBell:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(_delivery, "_EventfdBell", no_descriptor)
    monkeypatch.setattr(_delivery, "_green", lambda: False)
    assert make_bell() is None
    channel = Channel(8)
    thread, got = _waiting_consumer(channel)
    assert isinstance(channel._waiting[0], queue.SimpleQueue)
    assert channel.put(events("a"), StopSignal())
    assert got.get(timeout=5) == ["a"]
    thread.join(5)
    assert not thread.is_alive()


def test_a_doorbell_closes_the_descriptor_it_made_and_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[int] = []
    rung: list[int] = []
    fake = types.SimpleNamespace(close=closed.append, eventfd_write=lambda fd, _: rung.append(fd))
    monkeypatch.setattr(_delivery, "os", fake)
    unmade = _EventfdBell.__new__(_EventfdBell)  # eventfd() raised: no descriptor
    unmade.__del__()
    assert closed == []  # not stdout's, nor any other number
    zero = _EventfdBell.__new__(_EventfdBell)
    zero._lock, zero.fd = threading.Lock(), 0  # a process without stdin gets 0
    zero.put(None)
    assert rung == [0]
    zero.close()
    zero.__del__()  # closed already: not twice
    zero.put(None)  # closed: rung no more
    assert closed == [0]
    assert rung == [0]
    assert zero.fd == -1
    collected = _EventfdBell.__new__(_EventfdBell)
    collected.fd = 0
    collected.__del__()  # never closed: the collector closes it, 0 too
    assert closed == [0, 0]
    collected.fd = -1


@pytest.mark.skipif(not _delivery._HAVE_EVENTFD, reason="eventfd doorbells: Linux, 3.10+")
def test_a_doorbell_counts_its_tokens_and_stays_out_of_child_processes() -> None:
    bell = _EventfdBell()
    try:
        assert not os.get_inheritable(bell.fd)  # a subprocess does not get it
        bell.put(None)
        bell.put(None)
        bell.get()  # one token per get: a stale one stays for the next look
        assert _tokens(bell) == 1
        bell.get()
        assert _tokens(bell) == 0
    finally:
        bell.close()


@pytest.mark.skipif(not _delivery._HAVE_EVENTFD, reason="eventfd doorbells: Linux, 3.10+")
def test_after_a_fork_a_doorbell_has_an_eventfd_of_its_own_under_its_number() -> None:
    # What the child's fork handler does to each bell (run here, without a fork): the
    # number stays, the eventfd behind it is new (a token put before is not in it),
    # closed on exec, and the lock is new (a producer of the parent may hold the old).
    bell = _EventfdBell()
    try:
        fd, lock = bell.fd, bell._lock
        bell.put(None)
        bell.after_fork_in_child()
        assert bell.fd == fd
        assert bell._lock is not lock
        assert _tokens(bell) == 0
        assert not os.get_inheritable(fd)
        bell.put(None)
        bell.put(None)
        bell.get()  # still a token per get (semaphore mode)
        assert _tokens(bell) == 1
    finally:
        bell.close()


@pytest.mark.skipif(not _delivery._HAVE_EVENTFD, reason="eventfd doorbells: Linux, 3.10+")
def test_after_a_fork_with_no_descriptor_left_a_doorbell_is_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bell = _EventfdBell()
    fd = bell.fd

    def no_descriptor(*args: object) -> int:
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(os, "eventfd", no_descriptor)
    bell.after_fork_in_child()
    assert bell.fd == -1
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)  # the inherited one is closed: nothing rings or reads it
    bell.put(None)  # rung no more
    bell.close()


def test_after_a_fork_a_doorbell_on_descriptor_0_is_renewed_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[int, int]] = []
    closed: list[int] = []
    fake = types.SimpleNamespace(
        eventfd=lambda *_: 99,
        dup2=lambda fd, fd2, inheritable: made.append((fd, fd2)),
        close=closed.append,
    )
    monkeypatch.setattr(_delivery, "os", fake)
    zero = _EventfdBell.__new__(_EventfdBell)
    zero.fd = 0  # a process without stdin gets 0
    zero.after_fork_in_child()
    assert made == [(99, 0)]
    assert closed == [99]  # the new one, now also under 0
    zero.fd = -1


@pytest.mark.parametrize(
    ("module", "check", "name"),
    [
        ("gevent.monkey", "is_module_patched", "threading"),
        ("eventlet.patcher", "is_monkey_patched", "thread"),
    ],
)
def test_under_a_green_threads_patch_an_iteration_waits_on_the_queue(
    monkeypatch: pytest.MonkeyPatch, module: str, check: str, name: str
) -> None:
    # A blocking eventfd read would stop every greenlet: no bell once gevent or
    # eventlet has patched threading (each asked the way it answers).
    patched: set[str] = set()
    for other in ("gevent.monkey", "eventlet.patcher"):
        monkeypatch.delitem(sys.modules, other, raising=False)
    monkeypatch.setitem(
        sys.modules, module, types.SimpleNamespace(**{check: lambda n: n in patched})
    )
    assert not _delivery._green()
    patched.add(name)
    assert _delivery._green()
    assert make_bell() is None
    patched.clear()
    bell = make_bell()
    assert (bell is not None) == _delivery._HAVE_EVENTFD
    if bell is not None:
        bell.close()
