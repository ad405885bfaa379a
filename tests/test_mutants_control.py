"""Guarantees of ``_control`` that mutation testing found unpinned (#13).

The interpreter's exit hook runs here in the test process, as the interpreter would
call it (the subprocess test in test_lifecycle shows the real exit; mutation testing
cannot see into a subprocess).
"""

from __future__ import annotations

import gc
import itertools
import logging
import queue
import re
import sys
import threading
import time
import tracemalloc
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from _helpers import refuse_worker_threads

import eventstream
from eventstream import Backoff, EventStream, HTTPStatusError, StreamError, _fork
from eventstream._control import EXIT_JOIN_TIMEOUT, _stop_all_at_exit
from eventstream.testing import Script, SSEServer

WAIT = 5.0
FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)


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


def _logged(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith("eventstream")]


def test_each_callback_that_raises_is_logged_by_name_and_its_error_reported(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    # One connection gives a comment and an event, then a clean end (on_retry); each
    # callback raises its own error, which goes to on_error (which raises too).
    server.enqueue(Script().comment("c").event("a").close())
    reported: queue.Queue[BaseException] = queue.Queue()
    retried = threading.Event()

    def fail(name: str) -> Any:
        def callback(*args: object) -> None:
            if name == "on_retry":
                retried.set()
            raise ValueError(name)

        return callback

    def on_error(exc: BaseException) -> None:
        reported.put(exc)
        raise RuntimeError("on_error")

    callbacks = {name: fail(name) for name in ("on_open", "on_event", "on_comment", "on_retry")}
    stream = EventStream(server.url, backoff=FAST, on_error=on_error, **callbacks)
    with stream:
        assert retried.wait(WAIT)
        got = [reported.get(timeout=WAIT) for _ in range(4)]
    assert [str(exc) for exc in got] == ["on_open", "on_comment", "on_event", "on_retry"]
    assert all(type(exc) is ValueError for exc in got)
    errors = _logged(caplog, logging.ERROR)
    said = [r.getMessage() for r in errors]
    for name in ("on_open", "on_comment", "on_event", "on_retry"):
        assert said.count(f"{name} callback raised") == 1, said
    assert said.count("on_error callback raised") == 4, said
    # With the traceback of the callback, on the worker thread.
    assert all(r.exc_info is not None for r in errors)


def test_errors_that_no_callback_receives_are_logged_at_debug(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    # No on_error: a retried error, and the error that ends the stream, are not
    # swallowed silently.
    caplog.set_level(logging.DEBUG, logger="eventstream")
    server.enqueue(Script(503))
    server.default = Script(404)
    with EventStream(server.url, backoff=FAST, on_event=lambda e: None) as stream:
        assert stream.join(WAIT)
    said = [r.getMessage() for r in _logged(caplog, logging.DEBUG)]
    errors = [m for m in said if m.startswith("stream error: HTTPStatusError(")]
    assert len(errors) == 2, said  # the retried one, then the fatal one
    assert "HTTP 503" in errors[0]
    assert "HTTP 404" in errors[1]
    (end,) = [m for m in said if m.startswith("stream ended with ")]
    assert end.startswith("stream ended with HTTPStatusError(")
    assert "HTTP 404" in end


def test_a_stream_stopped_or_ended_by_the_server_logs_no_error(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventstream")
    server.enqueue(Script().event("a").hold(), Script(204))
    got = threading.Event()
    with EventStream(server.url, on_event=lambda e: got.set()):  # stopped
        assert got.wait(WAIT)
    with EventStream(server.url, on_event=lambda e: None) as stream:  # ended by the 204
        assert stream.join(WAIT)
    said = [r.getMessage() for r in _logged(caplog, logging.DEBUG)]
    assert [m for m in said if m.startswith(("stream ended with", "stream error"))] == []


def test_a_worker_is_a_daemon_and_there_is_no_response_before_a_connect(
    server: SSEServer,
) -> None:
    # A forgotten stream never keeps the interpreter from exiting (the exit hook
    # stops it; a non-daemon worker would be waited for before that hook runs).
    before = set(threading.enumerate())
    stream = EventStream(server.url)
    assert stream.response is None
    with stream:
        assert next(iter(stream)).data == "hello"
        (worker,) = [t for t in set(threading.enumerate()) - before if "worker" in t.name]
        assert worker.daemon
        assert worker.name.startswith("eventstream-worker-")
        assert stream.response is not None
        assert stream.response.status_code == 200


def test_a_restart_out_of_threads_says_so_and_the_exit_hook_still_waits_for_the_old_worker(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    sessions = SlowClose(0.6 * EXIT_JOIN_TIMEOUT)
    stream = _started(server, sessions)
    real_start = refuse_worker_threads(monkeypatch)
    try:
        with pytest.raises(StreamError, match="cannot start the worker thread") as caught:
            stream.restart()  # the old worker was told to stop: it is closing
        assert caught.value.url.startswith(server.url)
        assert re.fullmatch(
            rf"cannot start the worker thread of {re.escape(server.url)} \(can't start new"
            r" thread; \d+ threads running\): the process is out of threads or memory for"
            r" their stacks; raise the limit \(ulimit -u\), lower threading\.stack_size\(\)"
            r" before starting streams, or run fewer streams",
            str(caught.value),
        ), str(caught.value)
        assert not stream.running
        _stop_all_at_exit()  # still waits for the old worker, which is unwinding
        assert len(sessions.closed) == 1, "the exit hook forgot the old worker"
    finally:
        monkeypatch.setattr(threading.Thread, "start", real_start)
        assert stream.stop(WAIT)


@pytest.mark.parametrize("name", ["on_event", "on_error", "on_open", "on_retry", "on_comment"])
def test_a_callback_that_is_not_callable_is_refused_by_name(name: str) -> None:
    with pytest.raises(TypeError) as caught:
        EventStream("http://127.0.0.1:9/", **{name: "print"})
    assert str(caught.value) == f"{name} must be callable, not 'print'"


@pytest.mark.parametrize("size", [0, -1, True, 1.5, "3", None])
def test_a_queue_size_that_is_not_a_positive_int_is_refused(size: Any) -> None:
    with pytest.raises(ValueError, match=r"^queue_size must") as caught:
        EventStream("http://127.0.0.1:9/", queue_size=size)
    assert str(caught.value) == f"queue_size must be a positive int, not {size!r}"


def test_a_queue_of_one_event_is_allowed_and_loses_nothing(server: SSEServer) -> None:
    server.enqueue(Script().event("a").event("b").event("c").hold())
    with EventStream(server.url, queue_size=1) as stream:
        assert [event.data for event in itertools.islice(stream, 3)] == ["a", "b", "c"]


@pytest.mark.parametrize("taken", [0, 1, 2])
def test_stop_drops_the_events_not_taken_and_resumes_after_the_last_one_taken(
    server: SSEServer, taken: int
) -> None:
    # All three events are queued (on_comment runs after the events before it are in
    # the queue); the consumer takes some, then stops the stream: the resume point is
    # the last event it took, or the given one if it took none, and a new start
    # resumes from there.
    script = Script().event("a", id="1").event("b", id="2").event("c", id="3").comment("x")
    server.enqueue(script.hold())
    queued = threading.Event()
    stream = EventStream(
        server.url, last_event_id="0", backoff=FAST, on_comment=lambda text: queued.set()
    )
    events = iter(stream)
    assert queued.wait(WAIT)
    got = [next(events).data for _ in range(taken)]
    assert got == ["a", "b"][:taken]
    assert stream.stop(WAIT)
    expected = ["0", "1", "2"][taken]
    assert stream.last_event_id == expected
    with stream.start():
        assert next(iter(stream)).data == "hello"
    assert server.wait_for_requests(2)[1].headers["Last-Event-ID"] == expected


class FakeUwsgi:
    """The ``uwsgi`` module as a uWSGI master with threads shows it; ``fork()`` plays
    a worker being forked: it becomes worker 1 and runs the post-fork hook."""

    has_threads = True

    def __init__(self) -> None:
        self.worker = 0
        self.post_fork_hook: Any = None

    def worker_id(self) -> int:
        return self.worker

    def mule_id(self) -> int:
        return 0

    def fork(self) -> None:
        self.worker = 1
        assert self.post_fork_hook is not None
        self.post_fork_hook()


def test_a_stream_started_in_a_uwsgi_master_starts_in_the_worker_unless_stopped(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    uwsgi = FakeUwsgi()
    monkeypatch.setitem(sys.modules, "uwsgi", uwsgi)
    monkeypatch.setitem(sys.modules, "uwsgidecorators", None)  # as without --master
    monkeypatch.setattr(_fork, "_deferred", [])  # this test's master: nothing queued yet
    got: queue.SimpleQueue[str] = queue.SimpleQueue()
    deferred = EventStream(server.url, on_event=lambda e: got.put(e.data))
    dropped = EventStream(server.url, on_event=lambda e: got.put("dropped"))
    deferred.start()
    dropped.start()
    assert not deferred.running  # no thread in the master: uWSGI forks in C
    assert dropped.stop() is True
    deferred.start()  # again: still one start, in the worker
    uwsgi.fork()
    try:
        assert got.get(timeout=WAIT) == "hello"
        assert deferred.running
        assert not dropped.running
    finally:
        assert deferred.stop(WAIT)
    assert len(server.requests) == 1


def test_a_stream_that_ended_keeps_nothing_of_its_callbacks_alive(server: SSEServer) -> None:
    # A process that makes many short streams must not accumulate them: once a
    # stream ended and was dropped, the objects its callbacks belong to are freed.
    class Owner:
        def on_event(self, event: object) -> None:
            pass

    owners = []
    for status in (204, 404):  # ended by the server; ended by a fatal error
        server.enqueue(Script(status))
        owner = Owner()
        stream = EventStream(server.url, on_event=owner.on_event)
        stream.start()
        assert stream.join(WAIT)
        owners.append(weakref.ref(owner))
        del owner, stream
    gc.collect()
    assert [ref() for ref in owners] == [None, None]


def test_no_on_open_after_a_stop_made_before_the_response_came(server: SSEServer) -> None:
    calls: list[str] = []
    holder: list[EventStream] = []

    def headers() -> dict[str, str]:  # on the worker, just before the connect
        holder[0].stop()
        return {}

    stream = EventStream(
        server.url,
        headers=headers,
        on_event=lambda e: calls.append("event"),
        on_open=lambda info: calls.append("open"),
        on_error=lambda exc: calls.append("error"),
    )
    holder.append(stream)
    stream.start()
    assert stream.join(WAIT)
    assert calls == []


def test_no_on_retry_after_on_error_stopped_the_stream(server: SSEServer) -> None:
    server.default = Script(503)
    calls: list[str] = []

    def on_error(exc: BaseException) -> None:
        calls.append("error")
        stream.stop()

    stream = EventStream(
        server.url,
        backoff=FAST,
        on_error=on_error,
        on_retry=lambda exc, delay: calls.append("retry"),
    )
    stream.start()
    assert stream.join(WAIT)
    assert calls == ["error"]


def test_wait_open_right_after_a_stop_says_the_stream_was_stopped(server: SSEServer) -> None:
    # The worker is still before its connect (in the headers callable) when the
    # stream is stopped: wait_open does not wait for it, and says what happened.
    entered, release = threading.Event(), threading.Event()

    def headers() -> dict[str, str]:
        entered.set()
        release.wait(WAIT)
        return {}

    stream = eventstream.get(server.url, headers=headers, retries=0)
    try:
        assert entered.wait(WAIT)
        stream.stop()
        with pytest.raises(RuntimeError) as caught:
            stream.wait_open(0)
        assert str(caught.value) == "the stream was stopped before the response arrived"
    finally:
        release.set()
        assert stream.join(WAIT)


def test_on_open_and_on_retry_get_what_happened(server: SSEServer) -> None:
    # on_open gets the response's status and headers; on_retry the error (with the
    # stream's URL) and the delay before the next attempt.
    # Catches: _Sink.opened passing None; _Sink.retrying passing None or leaving out
    # the error or the delay.
    server.enqueue(Script(headers={"X-Test": "1"}).event("a").close())
    server.default = Script().hold()
    opened: queue.Queue[object] = queue.Queue()
    retried: queue.Queue[tuple[object, ...]] = queue.Queue()
    stream = EventStream(
        server.url,
        backoff=FAST,
        on_event=lambda event: None,
        on_open=opened.put,
        on_retry=lambda *args: retried.put(args),
    )
    with stream:
        info = opened.get(timeout=WAIT)
        (error, delay), again = retried.get(timeout=WAIT), opened.get(timeout=WAIT)
    assert isinstance(info, eventstream.ResponseInfo)
    assert (info.status_code, info.headers["X-Test"]) == (200, "1")
    assert info.url.startswith(server.url)
    assert isinstance(again, eventstream.ResponseInfo)
    assert isinstance(error, eventstream.ReadError)
    assert (str(error), error.url, delay) == ("the server ended the stream", server.url, 0.01)


def test_wait_open_on_a_one_shot_stopped_in_a_uwsgi_master_says_it_was_stopped(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Made in a uWSGI master, the request waits for the fork; stopped before it,
    # it never ran: wait_open says so rather than raising something else.
    # Catches: Control starting with a failure that is not None (only a launch
    # reset it, and a deferred start does not get that far).
    monkeypatch.setitem(sys.modules, "uwsgi", FakeUwsgi())
    monkeypatch.setitem(sys.modules, "uwsgidecorators", None)
    monkeypatch.setattr(_fork, "_deferred", [])
    stream = eventstream.get(server.url)
    assert not stream.running
    assert stream.stop() is True
    with pytest.raises(RuntimeError) as caught:
        stream.wait_open(0)
    assert str(caught.value) == "the stream was stopped before the response arrived"
    assert server.requests == []


def test_iterating_a_stream_raises_the_error_that_ended_it_after_its_events(
    server: SSEServer,
) -> None:
    # A consumer that iterates gets the events, then the fatal error (a 404 on the
    # reconnect), not a quiet end it would take for "no more events".
    # Catches: _Sink.end ending the channel without the error.
    server.enqueue(Script().event("a", id="1").close(), Script(404))
    got: list[str] = []
    with EventStream(server.url, backoff=FAST) as stream, pytest.raises(HTTPStatusError) as caught:
        got.extend(event.data for event in stream)
    assert got == ["a"]
    assert caught.value.status_code == 404
    assert caught.value.url.startswith(server.url)


def test_wait_open_raises_the_error_that_ended_a_one_shot_before_it_opened(
    server: SSEServer,
) -> None:
    # A 404 ends a one-shot request before any response is open: wait_open raises
    # that error, not "stopped".
    # Catches: _Sink.end not keeping the error as the stream's failure.
    server.enqueue(Script(404))
    stream = eventstream.get(server.url)
    try:
        with pytest.raises(HTTPStatusError) as caught:
            stream.wait_open(WAIT)
        assert caught.value.status_code == 404
    finally:
        assert stream.stop(WAIT)


def test_a_stream_whose_worker_could_not_start_keeps_nothing_of_its_callbacks_alive(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Out of threads: start() says so, and the stream, once dropped, is freed with
    # the objects its callbacks belong to (nothing process-wide keeps it).
    # Catches: Control.launch leaving the control among the running ones.
    class Owner:
        def on_event(self, event: object) -> None:
            pass

    real_start = refuse_worker_threads(monkeypatch)
    owner = Owner()
    stream = EventStream(server.url, on_event=owner.on_event)
    with pytest.raises(StreamError, match="cannot start the worker thread"):
        stream.start()
    monkeypatch.setattr(threading.Thread, "start", real_start)
    ref = weakref.ref(owner)
    del owner, stream
    gc.collect()
    assert ref() is None
    assert server.requests == []


def _bytes_held_by_the_library() -> int:
    package = str(Path(eventstream.__file__).resolve().parent)
    snapshot = tracemalloc.take_snapshot().filter_traces([tracemalloc.Filter(True, f"{package}/*")])
    return sum(stat.size for stat in snapshot.statistics("filename"))


def test_streams_made_and_dropped_leave_nothing_behind() -> None:
    # A process that makes streams as it goes (one per job, say) must not grow: what
    # the library keeps about a stream (for the exit, fork and monkey-patch hooks)
    # goes with it.  2000 more dropped streams keeping even one small object each
    # would hold over 100 kB.
    def make_and_drop(count: int) -> None:
        for _ in range(count):
            EventStream("http://127.0.0.1:9/never-started")

    # First-use allocations (caches, interned names) and the tables that grow to hold
    # what the collector has not freed yet (a dict keeps its size) happen here, once.
    make_and_drop(2000)
    gc.collect()
    tracemalloc.start()
    try:
        before = _bytes_held_by_the_library()
        make_and_drop(2000)
        gc.collect()
        grown = _bytes_held_by_the_library() - before
    finally:
        tracemalloc.stop()
    assert grown < 20_000, f"2000 dropped streams left {grown} bytes behind"


# -- a monkey-patch of threading, seen in this process ---------------------------------
# tests/test_gevent.py patches with gevent itself, in subprocesses that mutation testing
# cannot see into.  Here threading.Lock is replaced by another factory, as gevent's
# patch replaces it, and the streams' next use sees the change (_fork.check).


@pytest.fixture
def patch_threading(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[int]]]:
    native = threading.Lock
    made: list[int] = []

    def patched_lock() -> Any:
        made.append(threading.get_ident())
        return native()

    def patch() -> list[int]:
        monkeypatch.setattr(threading, "Lock", patched_lock)
        return made

    yield patch
    monkeypatch.undo()
    # Seen by the next use: the streams made since go back to native locks.
    EventStream("http://127.0.0.1:9/").stop()


def test_stopped_streams_take_the_patched_locks_on_their_next_use_and_keep_their_state(
    server: SSEServer, patch_threading: Callable[[], list[int]]
) -> None:
    stream = EventStream(server.url, backoff=FAST)
    assert next(iter(stream)).data == "hello"
    assert stream.stop(WAIT)
    one_shot = eventstream.get(server.url, retries=0)
    assert one_shot.wait_open(WAIT).status_code == 200
    assert one_shot.stop(WAIT)
    made = patch_threading()
    assert stream.join(0)  # its first use since the patch
    assert threading.get_ident() in made, "no lock made by the patched threading"
    # Made again, the locks still say what they said: the one-shot had its answer.
    assert one_shot.wait_open(0).status_code == 200
    # And the stream runs on them.
    stream.restart()
    try:
        assert next(iter(stream)).data == "hello"
    finally:
        assert stream.stop(WAIT)


def test_a_patch_while_a_stream_runs_keeps_its_locks_and_says_so(
    server: SSEServer,
    patch_threading: Callable[[], list[int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    got = threading.Event()
    stream = EventStream(server.url, on_event=lambda event: got.set()).start()
    try:
        assert got.wait(WAIT)
        patch_threading()
        with caplog.at_level(logging.WARNING, logger="eventstream"):
            assert not stream.join(0)  # its first use since the patch: still running
        assert stream.running
        [record] = _logged(caplog, logging.WARNING)
        assert record.getMessage() == (
            f"threading was monkey-patched while the stream of {server.url} ran: it keeps"
            " native locks, which can block every greenlet; monkey-patch before starting"
            " streams"
        )
    finally:
        assert stream.stop(WAIT)
