"""Shared by the reliability suite (test_faults*, test_soak, test_security, test_fuzz).

``Recorder`` collects what a stream's callbacks see, on queues the test waits on
with timeouts.  ``slow`` marks the long soak variants: they run only when the
environment sets ``EVENTSTREAM_SLOW=1`` (``pytest -m slow`` selects just them).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, Union

import pytest

from eventstream import Backoff, Event, EventStream, OneShotStream, ResponseInfo

#: Bound on every single wait in the reliability suite.
WAIT = 5.0
#: Reconnect almost at once: these tests are about what happens, not about waiting.
FAST = Backoff(initial=0.005, maximum=0.02, jitter=0.0)

AnyStream = Union[EventStream, OneShotStream]
SLOW_ENABLED = os.environ.get("EVENTSTREAM_SLOW") == "1"
_F = TypeVar("_F", bound=Callable[..., Any])


def slow(test: _F) -> _F:
    """Mark a long variant: ``slow``, and skipped unless ``EVENTSTREAM_SLOW=1``."""
    skip = pytest.mark.skipif(not SLOW_ENABLED, reason="long variant: set EVENTSTREAM_SLOW=1")
    # Beyond the suite's 120 s per test (pytest-timeout), but still bounded.
    return pytest.mark.slow(pytest.mark.timeout(900)(skip(test)))  # type: ignore[no-any-return]


class Recorder:
    """Callbacks for a stream that record events, errors and opens, with timestamps.

    Every callback runs on the worker thread; the test reads the queues.
    """

    def __init__(self) -> None:
        self.events: queue.Queue[Event] = queue.Queue()
        self.errors: queue.Queue[tuple[float, BaseException]] = queue.Queue()
        self.opens: queue.Queue[tuple[float, ResponseInfo]] = queue.Queue()
        self.all_errors: list[BaseException] = []
        self.stream: EventStream | None = None  # set by streaming()
        self._lock = threading.Lock()

    def on_event(self, event: Event) -> None:
        self.events.put(event)

    def on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.all_errors.append(exc)
        self.errors.put((time.monotonic(), exc))

    def on_open(self, info: ResponseInfo) -> None:
        self.opens.put((time.monotonic(), info))

    def callbacks(self) -> dict[str, Any]:
        return {"on_event": self.on_event, "on_error": self.on_error, "on_open": self.on_open}

    def next_event(self) -> Event:
        return self.events.get(timeout=WAIT)

    def take(self, n: int) -> list[Event]:
        return [self.events.get(timeout=WAIT) for _ in range(n)]

    def next_error(self) -> BaseException:
        return self.errors.get(timeout=WAIT)[1]

    def assert_no_more_events(self) -> None:
        assert self.events.empty(), f"unexpected event {self.events.get_nowait()!r}"


@contextlib.contextmanager
def watchdog(stream: AnyStream, seconds: float = WAIT) -> Iterator[threading.Event]:
    """Stop ``stream`` if the block is still running after ``seconds``: a ``for`` loop
    over it then ends instead of hanging.  Yields an event set if the dog fired."""
    fired = threading.Event()
    done = threading.Event()

    def guard() -> None:
        if not done.wait(seconds):
            fired.set()
            stream.stop()

    thread = threading.Thread(target=guard, name="reliability-watchdog", daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        done.set()
        thread.join()


def take(stream: AnyStream, n: int, seconds: float = WAIT) -> list[Event]:
    """The next ``n`` events of an iterated stream; fewer if ``seconds`` pass first."""
    events: list[Event] = []
    if n == 0:
        return events
    with watchdog(stream, seconds):
        for event in stream:
            events.append(event)
            if len(events) == n:
                break
    return events


def closed_port() -> int:
    """A loopback port that nothing listens on (bound, then closed)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("eventstream-worker-")]


@contextlib.contextmanager
def streaming(url: str, **options: Any) -> Iterator[Recorder]:
    """Run an ``EventStream`` with a :class:`Recorder`'s callbacks for the block, then
    stop it and check that its worker exits in time."""
    recorder = Recorder()
    options.setdefault("backoff", FAST)
    stream = recorder.stream = EventStream(url, **recorder.callbacks(), **options)
    stream.start()
    try:
        yield recorder
    finally:
        assert stream.stop(WAIT), "the worker did not exit after stop()"
