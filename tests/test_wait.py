"""The read loop's wait: a socket or the stop signal, with poll() or, without it, select()."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from eventstream._stop import StopSignal
from eventstream._wait import Waiter, have_poll

STOP_BOUND = 0.5  # generous on a loaded machine; the benchmarks measure the real figure


@pytest.fixture(params=["poll", "select"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "poll" and not have_poll():
        pytest.skip("no select.poll here")
    if request.param == "select" and have_poll():
        monkeypatch.delattr(select, "poll")  # as on Windows
    return str(request.param)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    with ours, theirs:
        yield ours, theirs


def test_a_readable_socket_is_ready(how: str, pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    with Waiter(StopSignal()) as waiter:
        waiter.watch(ours.fileno())
        assert (waiter._poller is None) == (how == "select")
        theirs.send(b"x")
        assert waiter.wait(5)
        assert waiter.wait(None)  # nothing was read: still ready


def test_a_writable_socket_is_ready_when_writing_is_asked(
    how: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, _ = pair
    with Waiter(StopSignal()) as waiter:
        waiter.watch(ours.fileno())
        assert waiter.wait(5, write=True)
        assert not waiter.wait(0.01)  # nothing to read
        assert waiter.wait(5, True)


def test_an_exceptional_condition_ends_a_wait_for_writing(how: str) -> None:
    # Windows reports a failed connect only as an exceptional condition (select's
    # third list): a wait for writing must end on it, and the connect then reads the
    # error.  Here the condition is TCP urgent data, on a socket that cannot write.
    if how == "poll":
        pytest.skip("poll() reports a failed connect as POLLERR, which it always reports")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname())
        theirs, _ = listener.accept()
    with ours, theirs, Waiter(StopSignal()) as waiter:
        ours.setblocking(False)
        waiter.watch(ours.fileno())
        for _ in range(100):  # fill both buffers: not writable until the peer reads
            with contextlib.suppress(BlockingIOError):
                while True:
                    ours.send(b"x" * 65536)
            if not waiter.wait(0.05, write=True):
                break
        else:
            pytest.fail("the socket never stopped being writable")
        theirs.send(b"!", socket.MSG_OOB)
        assert waiter.wait(5, write=True)


def test_a_stop_wins_over_a_readable_socket(
    how: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    # A reader that always waits first needs no other stop check, even on a socket
    # that never stops being readable (a stream that floods).
    ours, theirs = pair
    stop = StopSignal()
    with Waiter(stop) as waiter:
        waiter.watch(ours.fileno())
        theirs.send(b"x")
        stop.set()
        assert not waiter.wait(5)
        assert not waiter.wait(None)


def test_the_timeout_is_never_cut_short(
    how: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, _ = pair
    with Waiter(StopSignal()) as waiter:
        waiter.watch(ours.fileno())
        for timeout in (0.0004, 0.02, 0.0501):
            started = time.monotonic()
            assert not waiter.wait(timeout)
            assert time.monotonic() - started >= timeout


def test_a_stop_from_another_thread_ends_a_wait_at_once(
    how: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    ours, _ = pair
    stop = StopSignal()
    returned: list[tuple[bool, float]] = []
    with Waiter(stop) as waiter:
        waiter.watch(ours.fileno())
        thread = threading.Thread(
            target=lambda: returned.append((waiter.wait(None), time.monotonic())),
            name="test-wait-waiter",
        )
        thread.start()
        thread.join(0.05)  # let it block (a stop set before the wait is covered above)
        set_at = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive()
    ((ready, at),) = returned
    assert not ready
    assert at - set_at < STOP_BOUND


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self/fd: Linux")
def test_a_waiter_costs_one_descriptor_on_linux() -> None:
    before = len(os.listdir("/proc/self/fd"))
    eventfd = hasattr(os, "eventfd") and have_poll()  # Python >= 3.10
    with Waiter(StopSignal()):
        assert len(os.listdir("/proc/self/fd")) - before == (1 if eventfd else 2)
    assert len(os.listdir("/proc/self/fd")) == before


def test_close_detaches_from_the_signal() -> None:
    stop = StopSignal()
    waiter = Waiter(stop)
    waiter.close()
    waiter.close()  # idempotent
    assert stop._wakers == []
    stop.set()  # touches nothing closed


@pytest.mark.skipif(
    os.environ.get("EVENTSTREAM_TEST_NO_POLL") != "1", reason="only in the suite's no-poll run"
)
def test_the_no_poll_run_really_has_no_poll() -> None:
    assert not hasattr(select, "poll")
    with Waiter(StopSignal()) as waiter:
        assert waiter._poller is None
