"""A stream that is garbage collected stops its worker, whatever thread collects it.

The cyclic collector runs on whichever thread allocates, at any allocation: also on
the stream's own worker, while it holds one of the stream's locks.  These tests
force that: a profile hook on the worker runs a full collection at the worst
moments (inside the locks), after the only reference to the stream (kept in a
reference cycle) was dropped.  A finalizer that took those locks again would hang
the worker for ever.
"""

from __future__ import annotations

import gc
import itertools
import re
import threading
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from eventstream import Backoff, EventStream
from eventstream.testing import Script, SSEServer

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
WAIT = 5.0

Moment = Callable[[types.FrameType], bool]


# Under mutation testing (CONTRIBUTING.rst) a function runs as a copy named like
# "xǁClassǁname__mutmut_orig", called through trampoline frames: see through them.
_MUTMUT_COPY = re.compile(r"x(?:ǁ\w+ǁ|_)(\w+?)__mutmut_(?:orig|\d+)")
_MUTMUT_FRAMES = ("trampoline", "_trampoline_wrapper")


def _callers(frame: types.FrameType) -> Iterator[str]:
    caller = frame.f_back
    while caller is not None:
        name = caller.f_code.co_name
        if name not in _MUTMUT_FRAMES:
            copy = _MUTMUT_COPY.fullmatch(name)
            yield name if copy is None else copy.group(1)
        caller = caller.f_back


def _called_from(frame: types.FrameType, *names: str) -> bool:
    return tuple(itertools.islice(_callers(frame), len(names))) == names


# Each moment is the start of a call made while the worker holds a lock of the
# stream: the control's lock (a fatal error being recorded), the channel's lock (a
# batch being handed over), the stop signal's lock (waiting before a reconnect).
MOMENTS: dict[str, tuple[Moment, Script]] = {
    "recording the end": (
        lambda f: f.f_code is threading.Event.set.__code__ and _called_from(f, "end"),
        Script(404),
    ),
    "handing over a batch": (
        lambda f: f.f_code is threading.Event.is_set.__code__ and _called_from(f, "put"),
        Script().event("a").hold(),
    ),
    "waiting to reconnect": (
        lambda f: (
            f.f_code is threading.Condition.wait.__code__ and _called_from(f, "wait", "_loop")
        ),
        Script(503),
    ),
}


class CollectOnWorker:
    """A profile hook: once armed, the first call on a worker thread that matches
    ``moment`` runs a full collection right there."""

    def __init__(self, moment: Moment) -> None:
        self.moment = moment
        self.armed = threading.Event()
        self.fired = threading.Event()

    def __call__(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event != "call" or not self.armed.is_set():
            return
        if not threading.current_thread().name.startswith("eventstream-worker-"):
            return
        if self.moment(frame):
            self.armed.clear()
            gc.collect()
            self.fired.set()


class Owner:
    """An application object in a reference cycle: only the collector frees it."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.me = self


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


@pytest.mark.parametrize("moment", list(MOMENTS))
def test_a_stream_collected_on_its_own_worker_inside_a_lock_stops_it(
    server: SSEServer, moment: str
) -> None:
    matches, answer = MOMENTS[moment]
    server.default = answer
    hook = CollectOnWorker(matches)
    entered, go = threading.Event(), threading.Event()

    def headers() -> dict[str, str]:  # holds the first connect until the stream is dropped
        entered.set()
        go.wait(WAIT)
        return {}

    before = set(threading.enumerate())
    threading.setprofile(hook)  # for threads started from now on: the worker
    gc.disable()  # nothing but the hook collects the cycle
    try:
        owner = Owner(EventStream(server.url, headers=headers, backoff=FAST))
        collected = weakref.ref(owner.stream)
        owner.stream.start()
        (worker,) = [t for t in set(threading.enumerate()) - before if "worker" in t.name]
        assert entered.wait(WAIT)
        del owner
        hook.armed.set()
        go.set()
        assert hook.fired.wait(WAIT), "the worker never reached that moment"
        assert collected() is None  # the hook's collection freed the stream
        worker.join(WAIT)
        assert not worker.is_alive(), "the worker hung or ran on after its stream was collected"
    finally:
        go.set()
        threading.setprofile(None)
        gc.enable()
