"""Load and soak: random life cycles against a live server, and many streams through
server crashes.

* A hypothesis state machine runs random sequences of creating, starting, stopping,
  restarting, dropping (``server.drop_all()`` or dropping the last reference) and
  waiting for events, on callback and iterated streams.  After every step, each
  stream's events are checked; after each sequence, every thread, fd and socket
  must be gone and no unexpected error may have reached ``on_error`` or escaped.
* Many concurrent streams read numbered events while the server is killed and
  restarted on the same port; every stream must resume with ``Last-Event-ID`` and
  receive every number exactly once and in order.

CI runs short variants; ``EVENTSTREAM_SLOW=1`` runs the full ones (10,000 operations;
100 streams for 30 s through 5 kills).
"""

from __future__ import annotations

import functools
import gc
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from _reliability import WAIT, slow, take, worker_threads
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from eventstream import Backoff, ConnectError, Event, EventStream, ReadError
from eventstream.testing import RecordedRequest, Script, SSEServer

FAST = Backoff(initial=0.002, maximum=0.01, jitter=0.5)
MAX_STREAMS = 6


def numbered(count: int, interval: float) -> Any:
    """A route: ``count`` events numbered on from the request's Last-Event-ID, one
    every ``interval`` seconds, then the end of the body (the client reconnects)."""

    def respond(request: RecordedRequest) -> Script:
        last = int(request.headers.get("Last-Event-ID") or 0)
        script = Script()
        for n in range(last + 1, last + 1 + count):
            script = script.event(str(n), id=str(n))
            if interval:
                script = script.pause(interval)
        return script.close()

    return respond


def assert_consecutive(ids: list[int], what: str) -> None:
    assert ids == list(range(1, len(ids) + 1)), f"{what}: {ids[:5]}...{ids[-5:]}"


# -- random life cycles ---------------------------------------------------------------------


@dataclass
class Delivered:
    """What one stream delivered.  It never refers to the stream: a callback that
    did would keep the stream alive, and dropping it would stop nothing."""

    ids: list[int] = field(default_factory=list)  # callback streams: every event, in order
    consumers: list[tuple[threading.Thread, list[int]]] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def record(self, got: list[int], event: Event) -> None:
        with self.arrived:
            got.append(int(event.id))
            self.arrived.notify_all()

    def count(self) -> int:
        return len(self.ids) + sum(len(got) for _, got in self.consumers)

    def consumer_alive(self) -> bool:
        return any(thread.is_alive() for thread, _ in self.consumers)


@dataclass
class Tracked:
    """A stream under test, its model state and what it delivered."""

    iterated: bool
    stream: EventStream
    delivered: Delivered
    started: bool = False  # the model: started or restarted, and not stopped since


class Counters:
    """Totals over every run of the machine in one test (for the report)."""

    operations = 0
    events = 0


class LifeCycles(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.server = SSEServer()
        self.server.default = numbered(30, 0.003)
        self.server.start()
        self.tracked: list[Tracked] = []
        self.abandoned: list[threading.Thread] = []  # consumers of dropped streams
        self.unexpected: list[BaseException] = []
        self.lock = threading.Lock()

    # -- plumbing

    def _on_error(self, exc: BaseException) -> None:
        # Connections reset by drop_all() are expected: mid-body a ReadError, before
        # the response a ReadError or ConnectError (as the reset meets the request).
        # Nothing else.
        if not isinstance(exc, (ReadError, ConnectError)):
            with self.lock:
                self.unexpected.append(exc)

    def _pick(self, index: int) -> Tracked:
        return self.tracked[index % len(self.tracked)]

    def _consume(self, stream: EventStream, delivered: Delivered, got: list[int]) -> None:
        try:
            for event in stream:
                delivered.record(got, event)
        except BaseException as exc:  # a fatal error raised into the consumer
            with self.lock:
                self.unexpected.append(exc)

    def _start_consumer(self, tracked: Tracked) -> None:
        got: list[int] = []
        thread = threading.Thread(
            target=self._consume, args=(tracked.stream, tracked.delivered, got), daemon=True
        )
        tracked.delivered.consumers.append((thread, got))
        thread.start()

    # -- rules

    @precondition(lambda self: len(self.tracked) < MAX_STREAMS)
    @rule(iterated=st.booleans(), start=st.booleans())
    def create(self, iterated: bool, start: bool) -> None:
        Counters.operations += 1
        delivered = Delivered()
        stream = EventStream(
            self.server.url,
            backoff=FAST,
            on_error=self._on_error,
            on_event=None if iterated else functools.partial(delivered.record, delivered.ids),
        )
        tracked = Tracked(iterated, stream, delivered)
        self.tracked.append(tracked)
        if start:
            self._start(tracked)

    def _start(self, tracked: Tracked) -> None:
        tracked.started = True
        tracked.stream.start()  # here, not only by iterating: running at once
        if tracked.iterated and not tracked.delivered.consumer_alive():
            self._start_consumer(tracked)

    @precondition(lambda self: self.tracked)
    @rule(index=st.integers(0, MAX_STREAMS))
    def start(self, index: int) -> None:
        Counters.operations += 1
        self._start(self._pick(index))

    @precondition(lambda self: self.tracked)
    @rule(index=st.integers(0, MAX_STREAMS), wait=st.booleans())
    def stop(self, index: int, wait: bool) -> None:
        Counters.operations += 1
        tracked = self._pick(index)
        tracked.started = False
        if wait:
            assert tracked.stream.stop(WAIT), "the worker did not exit after stop()"
            assert not tracked.stream.running
        else:
            tracked.stream.stop()

    @precondition(lambda self: self.tracked)
    @rule(index=st.integers(0, MAX_STREAMS))
    def restart(self, index: int) -> None:
        Counters.operations += 1
        tracked = self._pick(index)
        tracked.started = True
        tracked.stream.restart()
        assert tracked.stream.running
        if tracked.iterated and not tracked.delivered.consumer_alive():
            self._start_consumer(tracked)

    @rule()
    def drop_connections(self) -> None:
        Counters.operations += 1
        self.server.drop_all()

    @precondition(lambda self: self.tracked)
    @rule(index=st.integers(0, MAX_STREAMS), collect=st.booleans())
    def drop_reference(self, index: int, collect: bool) -> None:
        Counters.operations += 1
        tracked = self._pick(index)
        self.tracked.remove(tracked)
        Counters.events += tracked.delivered.count()
        if tracked.iterated:
            # Iterating keeps a stream alive; a stream nobody iterates any more is
            # what can be dropped.  stop() (no wait) ends the iteration.
            tracked.stream.stop()
            self.abandoned += [thread for thread, _ in tracked.delivered.consumers]
        del tracked
        if collect:
            gc.collect()

    # Preconditions read the model only: hypothesis must see the same choices again.
    @precondition(lambda self: any(t.started for t in self.tracked))
    @rule(index=st.integers(0, MAX_STREAMS))
    def receive(self, index: int) -> None:
        """A started stream delivers a new event within the bounded wait, whatever
        happened to it and to the server before."""
        Counters.operations += 1
        running = [t for t in self.tracked if t.started]
        tracked = running[index % len(running)]
        assert tracked.stream.running
        delivered = tracked.delivered
        deadline = time.monotonic() + WAIT
        with delivered.arrived:
            before = delivered.count()
            while delivered.count() == before:
                left = deadline - time.monotonic()
                assert left > 0, "a running stream delivered nothing"
                if tracked.iterated and not delivered.consumer_alive():
                    # A consumer ends when a stop ends its iteration; a stream
                    # started again needs a new one.
                    self._start_consumer(tracked)
                delivered.arrived.wait(min(left, 0.05))

    # -- checks

    @invariant()
    def delivery_is_exact(self) -> None:
        for tracked in self.tracked:
            delivered = tracked.delivered
            with delivered.arrived:
                # Callbacks: stops, restarts and drops never lose or repeat one.
                assert_consecutive(list(delivered.ids), "callback stream")
                seen: list[int] = []
                for _, got in delivered.consumers:
                    # Iterated: in order per consumer; a stop drops what was queued
                    # for a consumer (gaps), but nothing is ever delivered twice.
                    assert got == sorted(set(got)), "out of order or repeated"
                    seen += got
                assert len(seen) == len(set(seen)), "an event was delivered twice"

    @invariant()
    def nothing_unexpected(self) -> None:
        assert not self.unexpected, f"unexpected errors: {self.unexpected!r}"

    def teardown(self) -> None:
        try:
            for tracked in self.tracked:
                Counters.events += tracked.delivered.count()
                assert tracked.stream.stop(WAIT), "the worker did not exit after stop()"
            consumers = [t for tr in self.tracked for t, _ in tr.delivered.consumers]
            consumers += self.abandoned
            for thread in consumers:
                thread.join(WAIT)
                assert not thread.is_alive(), "a consumer is still blocked after stop()"
            self.tracked.clear()
            gc.collect()  # dropped streams: their workers must go too
            for thread in worker_threads():
                thread.join(WAIT)
            assert worker_threads() == []
            assert not self.unexpected, f"unexpected errors: {self.unexpected!r}"
        finally:
            self.server.stop()


def _run_life_cycles(examples: int, steps: int, monkeypatch: pytest.MonkeyPatch) -> None:
    escaped: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    Counters.operations = Counters.events = 0
    LifeCycles.TestCase.settings = settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        # Shrinking replays sequences of live threads and sockets for many minutes:
        # report the failing sequence as found.
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
    LifeCycles.TestCase().runTest()
    assert escaped == [], f"exceptions escaped a thread: {escaped!r}"
    print(f"life cycles: {Counters.operations} operations, {Counters.events} events checked")


def test_random_life_cycles_against_a_live_server(monkeypatch: pytest.MonkeyPatch) -> None:
    _run_life_cycles(examples=25, steps=50, monkeypatch=monkeypatch)
    assert Counters.operations >= 800  # about 1,000: hypothesis varies the lengths


@slow
def test_random_life_cycles_against_a_live_server_long(monkeypatch: pytest.MonkeyPatch) -> None:
    _run_life_cycles(examples=110, steps=125, monkeypatch=monkeypatch)
    assert Counters.operations >= 10_000


def test_stop_and_start_of_an_iterated_stream_loses_nothing() -> None:
    # The events queued for the consumer (and those in the iterator's hands) are
    # dropped by a stop: the resume point must go back to what the consumer got.
    script = Script()
    for n in range(1, 11):
        script = script.event(str(n), id=str(n), flush=n == 10)  # one write: one batch
    with SSEServer() as server:
        server.enqueue(script.hold())
        server.default = numbered(5, 0.0)
        stream = EventStream(server.url, backoff=FAST)
        assert [e.id for e in take(stream, 3)] == ["1", "2", "3"]
        assert stream.stop(WAIT)
        resume_point = stream.last_event_id
        following = take(stream.start(), 1)  # iterating alone never starts it again
        assert stream.stop(WAIT)
    assert resume_point == "3"
    assert [e.id for e in following] == ["4"]


# -- many streams, server crashes ---------------------------------------------------------


class Soak:
    """``count`` streams on paths ``/s/<i>``, half with callbacks, half iterated."""

    def __init__(self, url: str, count: int) -> None:
        self.arrived = threading.Condition()
        self.ids: list[list[int]] = [[] for _ in range(count)]
        self.errors: list[BaseException] = []
        self.consumers: list[threading.Thread] = []
        backoff = Backoff(initial=0.05, maximum=0.4, jitter=0.5)
        self.streams = []
        for i in range(count):
            iterated = i % 2 == 1
            stream = EventStream(
                f"{url}/s/{i}",
                backoff=backoff,
                on_error=self._on_error,
                on_event=None if iterated else functools.partial(self._got, i),
            )
            self.streams.append(stream)
            if iterated:
                self.consumers.append(
                    threading.Thread(target=self._consume, args=(i, stream), daemon=True)
                )
            else:
                stream.start()
        for consumer in self.consumers:
            consumer.start()

    def _on_error(self, exc: BaseException) -> None:
        with self.arrived:
            self.errors.append(exc)

    def _got(self, i: int, event: Event) -> None:
        with self.arrived:
            self.ids[i].append(int(event.id))
            self.arrived.notify_all()

    def _consume(self, i: int, stream: EventStream) -> None:
        try:
            for event in stream:
                self._got(i, event)
        except BaseException as exc:
            self._on_error(exc)

    def counts(self) -> list[int]:
        with self.arrived:
            return [len(ids) for ids in self.ids]

    def wait_all_past(self, counts: list[int], timeout: float) -> None:
        """Wait until every stream has received more events than ``counts``."""
        with self.arrived:
            ok = self.arrived.wait_for(
                lambda: all(len(ids) > n for ids, n in zip(self.ids, counts)), timeout
            )
        stuck = [i for i, (ids, n) in enumerate(zip(self.ids, counts)) if len(ids) <= n]
        assert ok, f"streams that made no progress: {stuck}"

    def stop(self) -> None:
        for stream in self.streams:
            assert stream.stop(WAIT)
        for consumer in self.consumers:
            consumer.join(WAIT)
            assert not consumer.is_alive()


def _crashes(streams: int, seconds: float, kills: int) -> None:
    route = numbered(1000, 0.05)
    server = SSEServer()
    server.default = route
    server.start()
    port = server.port
    servers = [server]
    soak = Soak(server.url, streams)
    pace = threading.Event()  # never set: its wait() is the soak's clock
    started = time.monotonic()
    try:
        for kill in range(kills + 1):
            pace.wait(max(0.0, started + seconds * (kill + 1) / (kills + 1) - time.monotonic()))
            if kill == kills:
                break
            soak.wait_all_past(soak.counts(), 10.0)  # everyone reads before each crash
            server.stop()  # every connection is cut mid-stream; connects are refused
            pace.wait(random.uniform(0.05, 0.3))  # the outage
            server = SSEServer(port=port)
            server.default = route
            server.start()
            servers.append(server)
        soak.wait_all_past(soak.counts(), 10.0)  # everyone resumed after the last one
    finally:
        try:
            soak.stop()
        finally:
            server.stop()

    foreign = [e for e in soak.errors if not isinstance(e, (ReadError, ConnectError))]
    assert foreign == [], f"unexpected errors: {foreign!r}"
    received = 0
    for i, ids in enumerate(soak.ids):
        # Every number after the resume point, exactly once, in order.
        assert_consecutive(ids, f"stream {i}")
        received += len(ids)
        resumed = [
            int(r.headers.get("Last-Event-ID") or 0)
            for s in servers
            for r in s.requests
            if r.path == f"/s/{i}"
        ]
        assert resumed == sorted(resumed), f"stream {i} resumed backwards: {resumed}"
        assert resumed[-1] <= len(ids)
        assert len(resumed) >= kills + 1  # it reconnected after every crash
    print(f"crashes: {streams} streams, {kills} kills, {received} events checked")


def test_streams_resume_exactly_through_server_crashes() -> None:
    _crashes(streams=20, seconds=5.0, kills=2)


@slow
def test_a_hundred_streams_resume_exactly_through_server_crashes_long() -> None:
    _crashes(streams=100, seconds=30.0, kills=5)
