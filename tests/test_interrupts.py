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

import gc
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

import eventstream
from eventstream import Event, EventStream
from eventstream._delivery import Channel, make_bell
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
    # No collection meanwhile: its callbacks (hypothesis registers one) run inside the
    # package's frames, and an interrupt raised in a callback is unraisable, not raised.
    collecting = gc.isenabled()
    gc.disable()
    sys.setprofile(interrupter)
    try:
        yield interrupter
    finally:
        sys.setprofile(None)
        if collecting:
            gc.enable()


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


def taken(channel: Channel) -> list[str]:
    """The data of what one take() gives."""
    reader = channel.take()
    assert reader is not None
    return [e.data for e in reader]


def take_all(channel: Channel, at: int) -> tuple[list[str], bool]:
    """Everything available, with an interrupt at point ``at`` of the first take;
    whether it fired."""
    got: list[str] = []
    with interrupted_at(at) as interrupter, suppress(KeyboardInterrupt):
        got += taken(channel)
    if interrupter.fired:
        got += within(TIMEOUT, lambda: taken(channel))
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
            got += taken(channel)
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
        with interrupted_at(at) as interrupter, suppress(KeyboardInterrupt):
            waiting.set()
            got += taken(channel)
        producer.join(TIMEOUT)
        if not got:
            got += within(TIMEOUT, lambda: taken(channel))
        assert got == ["a"], at
        return interrupter.fired

    each_point(scenario)


def test_an_interrupted_cancel_called_again_wakes_every_waiting_consumer() -> None:
    # Consumers on other threads wait, each on its own doorbell; a stop (cancel) on
    # this thread is cut at any point, and called again, as an interrupted stop() is.
    def scenario(at: int) -> bool:
        channel = Channel(8)
        ended: list[None] = []

        def consume() -> None:
            bell = make_bell()
            try:
                assert channel.take(bell) is None
                ended.append(None)
            finally:
                if bell is not None:
                    bell.close()

        consumers = [threading.Thread(target=consume, daemon=True) for _ in range(2)]
        for consumer in consumers:
            consumer.start()
        pause = threading.Event()
        deadline = time.monotonic() + TIMEOUT
        while len(channel._waiting) < 2 and time.monotonic() < deadline:
            pause.wait(0.001)  # bounded polling of a state: both wait
        assert len(channel._waiting) == 2
        with interrupted_at(at) as interrupter, suppress(KeyboardInterrupt):
            channel.cancel()
        within(TIMEOUT, channel.cancel)
        for consumer in consumers:
            consumer.join(TIMEOUT)
        assert len(ended) == 2, at
        return interrupter.fired

    assert each_point(scenario) >= 2


def numbered(count: int) -> Script:
    """Events 1..count (each its own ID), then silence."""
    script = Script()
    for n in range(1, count + 1):
        script = script.event(str(n), id=str(n))
    return script.pause(30)


def on_a_thread(consume: Callable[[], None], stream: EventStream, what: str) -> None:
    """``consume()`` on a thread of its own (profiling is per thread), bounded: a
    consumer still running after the timeout fails the test; the stream is stopped."""
    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    consumer.join(TIMEOUT)
    try:
        assert not consumer.is_alive(), f"stuck: {what}"
    finally:
        stream.stop(TIMEOUT)


Step = Callable[[EventStream, "list[Iterator[Event]]"], object]


def cut_then_stop(url: str, at: int, cut: Step, prelude: Step | None = None) -> dict[str, Any]:
    """A stream of ``url``: ``prelude``, then ``cut`` with an interrupt at point
    ``at``, then ``stop()``.  Says whether the interrupt fired, what ``stop()``
    returned (or raised) and the stream's ``last_event_id`` after it.  The steps keep
    their iterators in the list they get: closed after the stop, not while
    interrupts are raised."""
    stream = EventStream(url)
    outcome: dict[str, Any] = {}

    def consume() -> None:
        held: list[Iterator[Event]] = []
        if prelude is not None:
            prelude(stream, held)
        with interrupted_at(at) as interrupter, suppress(KeyboardInterrupt):
            cut(stream, held)
        outcome["fired"] = interrupter.fired
        try:
            outcome["stopped"] = stream.stop(TIMEOUT)
        except Exception as exc:
            outcome["stopped"] = exc
        outcome["last_event_id"] = stream.last_event_id
        held.clear()

    on_a_thread(consume, stream, f"after interrupt point {at}")
    return outcome


def test_an_interrupted_loop_over_a_stream_goes_on_where_it_stopped() -> None:
    # Forty loops over one stream, each cut at another point of its first steps,
    # then one that runs to the end: every event exactly once, then a prompt stop.
    with SSEServer() as server:
        server.default = lambda request: numbered(40)
        stream = EventStream(server.url)
        got: list[str] = []

        def loop() -> None:
            for event in stream:
                got.append(event.id)
                if len(got) == 40:
                    return

        def consume() -> None:
            for at in range(1, 41):
                with interrupted_at(at), suppress(KeyboardInterrupt):
                    loop()
                    return
            loop()

        on_a_thread(consume, stream, "the consumer")
        assert got == [str(n) for n in range(1, 41)]


def test_stop_after_an_interrupted_loop_is_prompt() -> None:
    # What the CLI does on SIGTERM: a loop cut at any point (starting the stream,
    # waiting, taking), then stop(), which must not hang or raise.
    def start_and_take(stream: EventStream, held: list[Iterator[Event]]) -> None:
        held.append(iter(stream))
        next(held[0])

    with SSEServer() as server:
        server.default = lambda request: numbered(1)

        def scenario(at: int) -> bool:
            outcome = cut_then_stop(server.url, at, start_and_take)
            assert outcome["stopped"] is True, (at, outcome)
            return bool(outcome["fired"])

        assert each_point(scenario) > 20


def test_an_interrupted_stop_can_be_called_again_and_names_the_last_event_received() -> None:
    # Ctrl-C twice: once in the loop, once in the stop() that follows.  A second
    # stop() ends the worker, and the resume point is still the last event received.
    def take_three(stream: EventStream, held: list[Iterator[Event]]) -> None:
        held.append(iter(stream))
        assert [next(held[0]).id for _ in range(3)] == ["1", "2", "3"]

    with SSEServer() as server:
        server.default = lambda request: numbered(10)

        def scenario(at: int) -> bool:
            outcome = cut_then_stop(server.url, at, lambda s, _: s.stop(TIMEOUT), take_three)
            assert outcome["stopped"] is True, (at, outcome)
            assert outcome["last_event_id"] == "3", (at, outcome)
            return bool(outcome["fired"])

        assert each_point(scenario) > 5


def test_a_one_shot_loop_let_go_with_an_interrupt_at_any_point_still_stops_and_closes() -> None:
    # A one-shot stream's loop stops the stream when it is let go; an interrupt in
    # that (Ctrl-C as the collector closes it) must neither leave the worker running
    # nor keep the loop's descriptor.
    with SSEServer() as server:
        server.default = lambda request: numbered(3)

        def scenario(at: int) -> bool:
            stream = eventstream.request("GET", server.url)
            try:
                events = iter(stream)
                assert next(events).id == "1"
                ignored: list[BaseException | None] = []
                hook, sys.unraisablehook = sys.unraisablehook, lambda u: ignored.append(u.exc_value)
                try:
                    # Point 1 is the generator's resumption, where a profile function's
                    # raise (unlike a signal handler's) unwinds the frame without running
                    # its finally: not a point a real interrupt has.
                    with interrupted_at(at + 1) as interrupter:
                        del events  # the loop's generator is closed here, in the package
                finally:
                    sys.unraisablehook = hook
                # Raised in a generator's close by the collector: printed, not raised.
                assert all(isinstance(e, KeyboardInterrupt) for e in ignored), ignored
                assert stream.join(TIMEOUT), at
                return interrupter.fired
            finally:
                stream.stop(TIMEOUT)

        assert each_point(scenario) > 3
