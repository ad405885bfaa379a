"""The stop signal: an Event whose set() also wakes threads blocked in poll()."""

from __future__ import annotations

import os
import select
import socket
import threading
import time

import pytest

from eventstream._stop import StopSignal, WakePair


def readable(fd: int, timeout: float = 0.0) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(int(timeout * 1000)))


def pair() -> tuple[socket.socket, socket.socket]:
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    return reader, writer


def test_is_an_event() -> None:
    stop = StopSignal()
    assert isinstance(stop, threading.Event)
    assert not stop.wait(0)
    stop.set()
    assert stop.is_set()
    assert stop.wait(0)


def test_set_writes_one_byte_to_each_attached_socket() -> None:
    stop = StopSignal()
    (r1, w1), (r2, w2) = pair(), pair()
    with r1, w1, r2, w2:
        stop.attach(w1)
        stop.attach(w2)
        assert not readable(r1.fileno())
        stop.set()
        assert r1.recv(10) == b"\0"
        assert r2.recv(10) == b"\0"


def test_attach_after_set_writes_at_once() -> None:
    stop = StopSignal()
    stop.set()
    reader, writer = pair()
    with reader, writer:
        stop.attach(writer)
        assert reader.recv(10) == b"\0"


def test_detached_socket_is_not_written() -> None:
    stop = StopSignal()
    reader, writer = pair()
    with reader, writer:
        stop.attach(writer)
        stop.detach(writer)
        stop.detach(writer)  # a second detach is a no-op
        stop.set()
        assert not readable(reader.fileno())


def test_attaching_twice_is_refused() -> None:
    stop = StopSignal()
    reader, writer = pair()
    with reader, writer:
        stop.attach(writer)
        with pytest.raises(ValueError, match="already attached"):
            stop.attach(writer)
        stop.detach(writer)


def test_set_neither_blocks_nor_raises_when_the_socket_is_full_or_its_peer_gone() -> None:
    stop = StopSignal()
    full_reader, full_writer = pair()
    orphan_reader, orphan_writer = pair()
    orphan_reader.close()
    with full_reader, full_writer, orphan_writer:
        try:
            while True:
                full_writer.send(b"x" * 65536)
        except BlockingIOError:
            pass  # the socket buffer is full
        stop.attach(full_writer)
        stop.attach(orphan_writer)
        stop.set()
        stop.set()  # again: still fine
        assert stop.is_set()
        stop.detach(full_writer)
        stop.detach(orphan_writer)


def test_set_from_another_thread_wakes_a_poll() -> None:
    stop = StopSignal()
    woke: list[float] = []
    with WakePair(stop) as wake:

        def worker() -> None:
            poller = select.poll()
            poller.register(wake.fileno(), select.POLLIN)
            poller.poll(10_000)
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
    assert not wake.is_woken()
    assert not reader.getblocking()
    assert not writer.getblocking()
    assert not os.get_inheritable(reader.fileno())  # close-on-exec
    assert not os.get_inheritable(writer.fileno())
    stop.set()
    assert wake.is_woken()
    assert wake.is_woken()  # the byte is peeked, never drained
    wake.close()
    wake.close()  # idempotent
    assert reader.fileno() == -1
    assert writer.fileno() == -1
    stop.set()  # detached before closing: set() no longer touches it


def test_wake_pair_created_after_set_is_woken_at_once() -> None:
    stop = StopSignal()
    stop.set()
    with WakePair(stop) as wake:
        assert readable(wake.fileno())


def test_set_racing_with_wake_pairs_coming_and_going() -> None:
    # Workers attach, poll and close pairs while another thread sets the signal:
    # set() must never write to a closed fd, and every pair made after set() wakes.
    stop = StopSignal()
    errors: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(300):
                with WakePair(stop) as wake:
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
