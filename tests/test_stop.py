"""The stop signal: an Event whose set() also pokes the wakers that threads poll."""

from __future__ import annotations

import gc
import logging
import os
import select
import socket
import threading
import time
import weakref

import pytest

from eventstream import _stop
from eventstream._stop import StopSignal, WakeFd, WakePair, make_waker

needs_eventfd = pytest.mark.skipif(
    not (hasattr(os, "eventfd") and hasattr(select, "poll")), reason="no eventfd here"
)
WAKERS = [WakePair, pytest.param(WakeFd, marks=needs_eventfd)]


def readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


class SocketWaker:
    """A waker over one end of a socket pair, as a test can look at it."""

    def __init__(self) -> None:
        self.reader, self.writer = socket.socketpair()
        self.writer.setblocking(False)
        self.pokes = 0

    def poke(self) -> None:
        self.pokes += 1
        self.writer.send(b"\0")

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def test_is_an_event() -> None:
    stop = StopSignal()
    assert isinstance(stop, threading.Event)
    assert not stop.wait(0)
    stop.set()
    assert stop.is_set()
    assert stop.wait(0)


def test_requested_says_what_is_set_says() -> None:
    # The attribute a worker reads once per event, instead of calling is_set().
    stop = StopSignal()
    assert (stop.requested, stop.is_set()) == (False, False)
    stop.set()
    assert (stop.requested, stop.is_set()) == (True, True)
    stop.clear()
    assert (stop.requested, stop.is_set()) == (False, False)


def test_set_pokes_each_attached_waker_once() -> None:
    stop = StopSignal()
    w1, w2 = SocketWaker(), SocketWaker()
    try:
        stop.attach(w1)
        stop.attach(w2)
        assert (w1.pokes, w2.pokes) == (0, 0)
        stop.set()
        assert (w1.pokes, w2.pokes) == (1, 1)
        assert w1.reader.recv(10) == b"\0"
    finally:
        w1.close()
        w2.close()


def test_attach_after_set_pokes_at_once() -> None:
    stop = StopSignal()
    stop.set()
    waker = SocketWaker()
    try:
        stop.attach(waker)
        assert waker.pokes == 1
    finally:
        waker.close()


def test_detached_waker_is_not_poked() -> None:
    stop = StopSignal()
    waker = SocketWaker()
    try:
        stop.attach(waker)
        stop.detach(waker)
        stop.detach(waker)  # a second detach is a no-op
        stop.set()
        assert waker.pokes == 0
    finally:
        waker.close()


def test_attaching_twice_is_refused() -> None:
    stop = StopSignal()
    waker = SocketWaker()
    try:
        stop.attach(waker)
        with pytest.raises(ValueError, match=r"^this waker is already attached$"):
            stop.attach(waker)
        stop.detach(waker)
    finally:
        waker.close()


def test_set_neither_blocks_nor_raises_when_the_pair_is_full_or_its_reader_gone() -> None:
    stop = StopSignal()
    full, orphan = WakePair(stop), WakePair(stop)
    orphan._reader.close()
    try:
        try:
            while True:
                full._writer.send(b"x" * 65536)
        except BlockingIOError:
            pass  # the socket buffer is full
        stop.set()
        stop.set()  # again: still fine
        assert stop.is_set()
    finally:
        full.close()
        orphan.close()


@pytest.mark.parametrize("kind", WAKERS)
def test_set_from_another_thread_wakes_a_wait(kind: type[WakePair | WakeFd]) -> None:
    stop = StopSignal()
    woke: list[float] = []
    with kind(stop) as wake:

        def worker() -> None:
            readable(wake.fileno(), 10)
            woke.append(time.monotonic())

        thread = threading.Thread(target=worker, name="test-stop-poller")
        thread.start()
        set_at = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
    assert woke[0] - set_at < 0.5


def test_wake_pair_is_woken_by_set_and_closes_both_ends() -> None:
    stop = StopSignal()
    wake = WakePair(stop)
    reader, writer = wake._reader, wake._writer
    assert not reader.getblocking()
    assert not writer.getblocking()
    assert not readable(wake.fileno())
    assert not os.get_inheritable(reader.fileno())  # close-on-exec
    assert not os.get_inheritable(writer.fileno())
    stop.set()
    assert readable(wake.fileno())
    assert readable(wake.fileno())  # the byte is never drained
    wake.close()
    wake.close()  # idempotent
    assert reader.fileno() == -1
    assert writer.fileno() == -1
    stop.set()  # detached before closing: set() no longer touches it


@pytest.mark.parametrize("kind", WAKERS)
def test_waker_created_after_set_is_woken_at_once(kind: type[WakePair | WakeFd]) -> None:
    stop = StopSignal()
    stop.set()
    with kind(stop) as wake:
        assert readable(wake.fileno())


@needs_eventfd
def test_eventfd_waker_is_one_descriptor_woken_for_good_and_closed() -> None:
    stop = StopSignal()
    wake = WakeFd(stop)
    fd = wake.fileno()
    assert not os.get_inheritable(fd)  # close-on-exec
    assert not os.get_blocking(fd)
    assert not readable(fd)
    stop.set()
    assert readable(fd)
    assert readable(fd)  # never drained
    wake.close()
    wake.close()  # idempotent
    assert wake.fileno() == -1
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
    stop.set()  # detached before closing: set() no longer touches it


def test_make_waker_takes_an_eventfd_where_there_is_one(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = StopSignal()
    with make_waker(stop) as waker:
        has = hasattr(os, "eventfd") and hasattr(select, "poll")
        assert isinstance(waker, WakeFd if has else WakePair)
    monkeypatch.setattr(_stop, "_HAVE_EVENTFD", False)
    with make_waker(stop) as waker:
        assert isinstance(waker, WakePair)


@pytest.mark.parametrize("kind", WAKERS)
def test_set_racing_with_wakers_coming_and_going(kind: type[WakePair | WakeFd]) -> None:
    # Workers attach, poll and close pairs while another thread sets the signal:
    # set() must never write to a closed fd, and every pair made after set() wakes.
    stop = StopSignal()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(300):
                with kind(stop) as wake:
                    if stop.is_set():
                        assert readable(wake.fileno(), timeout=5)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=churn, name=f"test-stop-churn-{i}") for i in range(4)]
    for thread in threads:
        thread.start()
    stop.set()
    for thread in threads:
        thread.join(10)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)


@needs_eventfd
def test_set_after_a_waker_closed_writes_nothing_to_a_descriptor_that_took_its_number() -> None:
    # A stream's stop signal outlives each connection's waker.  Once a waker is closed,
    # its descriptor number goes to the next file or socket the process opens: set()
    # must not write the wake counter into it (here: a socket, which would receive it).
    stop = StopSignal()
    wake = WakeFd(stop)
    number = wake.fileno()
    reader, writer = socket.socketpair()
    wake.close()
    reused = os.dup2(writer.fileno(), number)  # the number, now someone else's socket
    try:
        assert reused == number
        reader.setblocking(False)
        stop.set()
        with pytest.raises(BlockingIOError):
            reader.recv(64)  # nothing was written to it
    finally:
        os.close(reused)
        reader.close()
        writer.close()


@pytest.mark.parametrize("kind", WAKERS)
def test_a_signal_keeps_no_waker_once_closed(kind: type[WakePair | WakeFd]) -> None:
    # A stream's stop signal lives through every reconnect, and each connection closes
    # its waker: a signal that kept them would grow with each reconnect (and set()
    # would go through all of them).
    stop = StopSignal()
    closed = []
    for _ in range(3):
        with kind(stop) as wake:
            closed.append(weakref.ref(wake))
    del wake
    gc.collect()
    assert [ref() for ref in closed] == [None, None, None]
    stop.set()


def test_set_says_in_the_debug_log_why_a_wake_pair_could_not_be_poked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A pair whose reader end is gone cannot be woken; set() still returns quietly,
    # and the debug log says which error it met (for whoever debugs a late stop).
    stop = StopSignal()
    orphan = WakePair(stop)
    orphan._reader.close()
    try:
        with caplog.at_level(logging.DEBUG, logger="eventstream._stop"):
            stop.set()
        (record,) = caplog.records
        assert record.getMessage().startswith("stop signal could not write to a wake-up socket: ")
        assert "Error(" in record.getMessage()  # the error's repr, not None
    finally:
        orphan.close()


@needs_eventfd
def test_set_says_in_the_debug_log_why_an_eventfd_could_not_be_poked(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An eventfd whose counter is at its maximum cannot be written (it is readable
    # already): set() returns quietly, and the debug log names the error.
    stop = StopSignal()
    with WakeFd(stop) as wake:
        os.eventfd_write(wake.fileno(), 0xFFFFFFFFFFFFFFFE)  # the counter's maximum
        with caplog.at_level(logging.DEBUG, logger="eventstream._stop"):
            stop.set()
        (record,) = caplog.records
        assert record.getMessage().startswith("stop signal could not write to an eventfd: ")
        assert "BlockingIOError(" in record.getMessage()
        assert readable(wake.fileno())


def assert_a_forked_child_keeps_an_eventfd_at(number: int) -> None:
    """Give ``number`` to an eventfd of the application's own (the same kind of inode
    as a waker's), fork, and check that the child still has it open."""
    mine = os.eventfd(0)
    if mine != number:
        os.dup2(mine, number)
        os.close(mine)
    try:
        pid = os.fork()
        if pid == 0:  # the child: report whether the application's eventfd is open
            try:
                os.fstat(number)
                os._exit(0)
            except OSError:
                os._exit(1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child closed the descriptor"
    finally:
        os.close(number)


@needs_eventfd
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_fork_leaves_alone_a_descriptor_that_took_a_closed_wakers_number() -> None:
    # A forked child closes the eventfds of the streams it inherited.  A waker closed
    # before the fork is none of them: its number may since belong to the
    # application (here, its own eventfd, which has the same kind of inode), and the
    # child must keep that one open.
    stop = StopSignal()
    wake = WakeFd(stop)
    number = wake.fileno()
    wake.close()
    assert_a_forked_child_keeps_an_eventfd_at(number)


@needs_eventfd
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_fork_leaves_alone_a_descriptor_that_took_the_number_of_a_waker_never_attached() -> None:
    # A waker whose attach failed closed its eventfd at once; its number may then go
    # to the application, whose descriptor a forked child must keep open.
    numbers: list[int] = []

    class Refusing(StopSignal):
        def attach(self, waker: WakeFd) -> None:  # type: ignore[override]
            numbers.append(waker.fileno())
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError):
        WakeFd(Refusing())
    (number,) = numbers
    assert_a_forked_child_keeps_an_eventfd_at(number)


@pytest.mark.parametrize("kind", WAKERS)
def test_a_waker_whose_attach_fails_raises_that_error_and_leaks_nothing(
    kind: type[WakePair | WakeFd],
) -> None:
    # An error while attaching (an interrupt, say) reaches the caller as it was, and
    # the descriptors made for the waker are closed (the autouse fixture checks).
    class Refusing(StopSignal):
        def attach(self, waker: object) -> None:
            raise RuntimeError("refused")

    with pytest.raises(RuntimeError, match=r"^refused$"):
        kind(Refusing())
