"""Guarantees of ``_control`` that mutation testing found unpinned (#13).

The interpreter's exit hook runs here in the test process, as the interpreter would
call it (the subprocess test in test_lifecycle shows the real exit; mutation testing
cannot see into a subprocess).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests

from eventstream import EventStream
from eventstream._control import EXIT_JOIN_TIMEOUT, _stop_all_at_exit
from eventstream.testing import Script, SSEServer

WAIT = 5.0


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        srv.default = Script().event("hello", id="1").hold()
        yield srv


class SlowClose:
    """A ``session_factory`` whose sessions take ``seconds`` to close (or until
    ``release`` is set), and record it when they have."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.release = threading.Event()
        self.closed: list[int] = []

    def __call__(self) -> requests.Session:
        owner = self

        class Session(requests.Session):
            def close(self) -> None:
                owner.release.wait(owner.seconds)
                super().close()
                owner.closed.append(threading.get_ident())

        return Session()


def _started(server: SSEServer, sessions: SlowClose) -> EventStream:
    got = threading.Event()
    stream = EventStream(server.url, on_event=lambda e: got.set(), session_factory=sessions)
    stream.start()
    assert got.wait(WAIT)
    return stream


def test_the_exit_hook_stops_a_stream_and_waits_for_its_worker_to_close(
    server: SSEServer,
) -> None:
    # The close takes most of the hook's time budget: a hook that waits less (or
    # not at all) returns before the worker has closed its session.
    sessions = SlowClose(0.6 * EXIT_JOIN_TIMEOUT)
    stream = _started(server, sessions)
    try:
        _stop_all_at_exit()
        assert not stream.running
        assert len(sessions.closed) == 1, "the exit hook returned before the worker closed"
        assert stream.join(0)
    finally:
        stream.stop(WAIT)


def test_the_exit_hook_waits_for_all_workers_within_one_budget(server: SSEServer) -> None:
    # Workers that never finish closing: the hook gives up on all of them after
    # EXIT_JOIN_TIMEOUT in all, not per worker, and still stops every one.
    sessions = SlowClose(WAIT)
    streams = [_started(server, sessions) for _ in range(3)]
    try:
        started = time.monotonic()
        _stop_all_at_exit()
        took = time.monotonic() - started
        assert not any(stream.running for stream in streams)
        assert sessions.closed == []
        assert 0.9 * EXIT_JOIN_TIMEOUT <= took < 2.5 * EXIT_JOIN_TIMEOUT
    finally:
        sessions.release.set()
        for stream in streams:
            assert stream.stop(WAIT)
    assert len(sessions.closed) == 3
