"""A KeyboardInterrupt (Ctrl-C, or the CLI's SIGTERM) in the iterating thread, at any
point of taking events: nothing received is lost or repeated, and the stream can still
be iterated, stopped and fed.

Since Python 3.10 a signal handler runs, and may raise, only as a function begins,
after a call returns or at a loop's jump back.  These tests raise at each of the
first two kinds of point of the library's code in turn (a profile function that
raises is seen by the interpreter exactly there), so every point is tried, not a lucky
few.  (Python 3.9 also runs handlers between most other steps, for example just
before a ``with`` block's lock is released, where no Python code can defend itself.)
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import eventstream
from eventstream import Event, EventStream
from eventstream._delivery import Channel
from eventstream._stop import StopSignal
from eventstream.testing import Script, SSEServer

TIMEOUT = 10.0
_PACKAGE = os.path.dirname(eventstream.__file__)


def _in_package(frame: FrameType | None) -> bool:
    return frame is not None and frame.f_code.co_filename.startswith(_PACKAGE)


class _Interrupter:
    """Counts the interrupt points of the package's code on this thread: its
    functions' starts, and the returns of the calls they make (raising as a callee
    returns is raising in the caller just after the call); raises at the ``at``-th."""

    def __init__(self, at: int) -> None:
        self.at, self.seen, self.fired = at, 0, False

    def __call__(self, frame: FrameType, event: str, arg: Any) -> None:
        if event in ("call", "c_return"):
            if not _in_package(frame):
                return
        elif event != "return" or not _in_package(frame.f_back):
            return
        self.seen += 1
        if self.seen == self.at:
            self.fired = True
            sys.setprofile(None)
            name = getattr(arg, "__qualname__", "")
            raise KeyboardInterrupt(
                f"interrupt point {self.at}: {event} {name} in {frame.f_code.co_name}"
            )


@contextmanager
def interrupted_at(at: int) -> Iterator[_Interrupter]:
    interrupter = _Interrupter(at)
    sys.setprofile(interrupter)
    try:
        yield interrupter
    finally:
        sys.setprofile(None)


def events(*data: str) -> list[Event]:
    return [Event("message", d, d) for d in data]


def within(seconds: float, action: Callable[[], Any]) -> Any:
    """``action()`` on another thread; fails the test if it blocks (a lock left held)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(action()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "blocked: an interrupt left the channel locked"
    return result[0]


def take_all(channel: Channel, at: int) -> tuple[list[str], bool]:
    """Everything available, with an interrupt at point ``at`` of the first take;
    whether it fired."""
    got: list[str] = []
    with interrupted_at(at) as interrupter:
        try:
            reader = channel.take()
            assert reader is not None
            got += [e.data for e in reader]
        except KeyboardInterrupt:
            pass
    if interrupter.fired:
        reader = within(TIMEOUT, channel.take)
        assert reader is not None
        got += [e.data for e in reader]
    return got, interrupter.fired


def each_point(scenario: Callable[[int], bool]) -> int:
    """Run ``scenario(at)`` for at = 1, 2, ... until no interrupt fires; the count."""
    at = 1
    while scenario(at):
        at += 1
        assert at < 500
    return at - 1


def test_an_interrupted_take_loses_and_repeats_nothing() -> None:
    def scenario(at: int) -> bool:
        channel = Channel(8)
        assert channel.put(events("a", "b"), StopSignal())
        got, fired = take_all(channel, at)
        assert got == ["a", "b"], at
        # The lock is free and the state whole: a producer adds, a stop names "b".
        assert within(TIMEOUT, lambda: channel.put(events("c"), StopSignal()))
        assert channel.cancel() == (True, events("b")[0]), at
        return fired

    assert each_point(scenario) >= 4  # its start, and the returns of three calls


def test_an_interrupted_take_still_lets_a_waiting_producer_in() -> None:
    # A producer blocked on a full channel waits for the consumer to make room: an
    # interrupt must not leave it waiting while the consumer waits for it.
    def scenario(at: int) -> bool:
        channel = Channel(2)
        stop = StopSignal()
        assert channel.put(events("a", "b"), stop)
        producer = threading.Thread(target=channel.put, args=(events("c"), stop), daemon=True)
        producer.start()
        try:
            got, fired = take_all(channel, at)
            producer.join(TIMEOUT)
            assert not producer.is_alive(), at
            reader = channel.take()
            assert reader is not None
            got += [e.data for e in reader]
            assert got == ["a", "b", "c"], at
            return fired
        finally:
            stop.set()
            channel.wake()
            producer.join(TIMEOUT)

    each_point(scenario)


def test_an_interrupted_wait_for_events_misses_none() -> None:
    # The consumer waits on an empty channel; a producer adds while it waits.
    def scenario(at: int) -> bool:
        channel = Channel(8)
        stop = StopSignal()
        waiting = threading.Event()

        def produce() -> None:
            waiting.wait(TIMEOUT)
            channel.put(events("a"), stop)

        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        got: list[str] = []
        with interrupted_at(at) as interrupter:
            waiting.set()
            try:
                reader = channel.take()
                assert reader is not None
                got += [e.data for e in reader]
            except KeyboardInterrupt:
                pass
        producer.join(TIMEOUT)
        while not got:
            reader = within(TIMEOUT, channel.take)
            assert reader is not None
            got += [e.data for e in reader]
        assert got == ["a"], at
        return interrupter.fired

    each_point(scenario)


def test_an_interrupted_loop_over_a_stream_goes_on_where_it_stopped() -> None:
    # Ten loops over one stream, each cut at another point of its first steps, then
    # one that runs to the end: every event exactly once, then a prompt stop.
    script = Script()
    for n in range(1, 41):
        script = script.event(str(n), id=str(n))
    with SSEServer() as server:
        server.default = lambda request: script.pause(30)
        stream = EventStream(server.url)
        got: list[str] = []
        done = threading.Event()

        def consume() -> None:
            try:
                for at in range(1, 41):
                    with interrupted_at(at):
                        try:
                            for event in stream:
                                got.append(event.id)
                                if len(got) == 40:
                                    return
                        except KeyboardInterrupt:
                            pass
                for event in stream:
                    got.append(event.id)
                    if len(got) == 40:
                        return
            finally:
                done.set()

        consumer = threading.Thread(target=consume, daemon=True)
        consumer.start()
        try:
            assert done.wait(TIMEOUT), "the consumer is stuck"
            assert got == [str(n) for n in range(1, 41)]
        finally:
            assert within(TIMEOUT, lambda: stream.stop(TIMEOUT))
            consumer.join(TIMEOUT)


def test_stop_after_an_interrupted_loop_is_prompt() -> None:
    # What the CLI does on SIGTERM: a loop cut at any point (starting the stream,
    # waiting, taking), then stop(), which must not hang or raise.
    with SSEServer() as server:
        server.default = lambda request: Script().event("1", id="1").pause(30)

        def scenario(at: int) -> bool:
            stream = EventStream(server.url)
            outcome: list[Any] = []

            def consume() -> None:
                events: Iterator[Event] = iter(())
                with interrupted_at(at) as interrupter:
                    try:
                        events = iter(stream)
                        next(events)
                    except KeyboardInterrupt:
                        pass
                try:
                    outcome.append(stream.stop(TIMEOUT))
                except Exception as exc:
                    outcome.append(exc)
                outcome.append(interrupter.fired)
                del events  # closed here, not while interrupts are raised

            consumer = threading.Thread(target=consume, daemon=True)
            consumer.start()
            consumer.join(TIMEOUT)
            try:
                assert not consumer.is_alive(), f"stuck after interrupt point {at}"
                assert outcome[0] is True, (at, outcome)
            finally:
                stream.stop(TIMEOUT)
            return bool(outcome[1])

        assert each_point(scenario) > 20
