"""EventStream life cycle: start, stop, restart, garbage collection, exit and fork."""

from __future__ import annotations

import gc
import itertools
import os
import queue
import random
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator

import pytest
import requests
from _helpers import refuse_worker_threads
from _threads import wait_until_inside

import eventstream
from eventstream import Backoff, Event, EventStream, StreamError, _parser
from eventstream._control import Control
from eventstream._delivery import Channel
from eventstream.testing import RecordedRequest, Script, SSEServer

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
WAIT = 5.0


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        srv.default = Script().event("hello", id="1").hold()
        yield srv


def worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("eventstream-worker-")]


class CountingSessions:
    """A ``session_factory`` that records the thread of every session made and closed."""

    def __init__(self) -> None:
        self.made: list[int] = []
        self.closed: list[int] = []

    def __call__(self) -> requests.Session:
        self.made.append(threading.get_ident())
        closed = self.closed

        class Session(requests.Session):
            def close(self) -> None:
                closed.append(threading.get_ident())
                super().close()

        return Session()


def resuming(count: int) -> Callable[[RecordedRequest], Script]:
    """A responder: every connection gets numbered events after the Last-Event-ID it
    sent, then silence."""

    def respond(request: RecordedRequest) -> Script:
        start = int(request.headers.get("Last-Event-ID", "0"))
        script = Script()
        for i in range(start + 1, start + count):
            script = script.event(str(i), id=str(i))
        return script.hold()

    return respond


@pytest.mark.joins
def test_start_is_a_no_op_while_running(server: SSEServer) -> None:
    opened = threading.Event()
    stream = EventStream(server.url, on_event=lambda e: None, on_open=lambda i: opened.set())
    stream.start()
    before = worker_threads()
    stream.start()
    assert worker_threads() == before
    assert stream.running
    assert opened.wait(WAIT)
    stream.start()
    assert stream.stop(WAIT)
    assert not stream.running
    assert len(server.requests) == 1  # one worker, one connection


@pytest.mark.joins
def test_stop_without_start_is_harmless(server: SSEServer) -> None:
    got: queue.Queue[str] = queue.Queue()
    stream = EventStream(server.url, on_event=lambda e: got.put(e.data))
    assert stream.stop() is True
    assert stream.stop(1.0) is True
    assert stream.join(0.1) is True
    assert not stream.running
    stream.start()  # and the stream still works
    assert stream.running
    assert got.get(timeout=WAIT) == "hello"
    assert stream.stop(WAIT)


@pytest.mark.joins
def test_stop_right_after_start(server: SSEServer) -> None:
    sessions = CountingSessions()
    for _ in range(50):
        stream = EventStream(server.url, on_event=lambda e: None, session_factory=sessions)
        stream.start()
        assert stream.running
        assert stream.stop(WAIT)
    # Each start ran a worker, which made its own session and closed it.
    assert len(sessions.made) == len(sessions.closed) == 50
    assert threading.get_ident() not in sessions.made + sessions.closed


def test_stop_on_a_silent_stream_is_prompt(server: SSEServer) -> None:
    server.default = Script().hold()
    opened = threading.Event()
    stream = EventStream(server.url, on_event=lambda e: None, on_open=lambda i: opened.set())
    stream.start()
    assert opened.wait(WAIT)
    started = time.monotonic()
    assert stream.stop(WAIT)
    assert time.monotonic() - started < 0.5  # generous for CI; benchmarks measure ms


def test_stop_from_another_thread_ends_a_blocked_for_loop(server: SSEServer) -> None:
    server.default = Script().event("only one").hold()
    stream = EventStream(server.url)
    got: list[Event] = []
    first = threading.Event()
    done = threading.Event()

    def consume() -> None:
        for event in stream:
            got.append(event)
            first.set()
        done.set()

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert first.wait(WAIT)
    assert stream.stop(WAIT)
    assert done.wait(WAIT)
    consumer.join(WAIT)
    assert [e.data for e in got] == ["only one"]


def test_stop_inside_on_event_does_not_deadlock(server: SSEServer) -> None:
    server.default = Script().event("a").event("b").event("c").hold()
    seen: list[str] = []
    results: queue.Queue[bool] = queue.Queue()
    holder: list[EventStream] = []

    def on_event(event: Event) -> None:
        seen.append(event.data)
        results.put(holder[0].stop(1.0))

    stream = EventStream(server.url, on_event=on_event)
    holder.append(stream)
    stream.start()
    assert results.get(timeout=WAIT) is False  # it cannot wait for its own thread
    assert stream.join(WAIT)
    assert seen == ["a"]  # no callback after stop()


def test_no_callback_runs_after_stop_returns_true(server: SSEServer) -> None:
    script = Script()
    for _ in range(500):
        script = script.event("x").pause(0.001)
    server.default = script.hold()
    window = threading.Event()  # never set: wait() is an observation window
    for _ in range(10):
        calls: list[float] = []
        stream = EventStream(server.url, on_event=lambda e, calls=calls: calls.append(1.0))
        stream.start()
        window.wait(random.uniform(0, 0.02))
        assert stream.stop(WAIT)
        count = len(calls)
        window.wait(0.05)  # the server is still sending: a late callback would show
        assert len(calls) == count


def test_restart_switches_connection_and_resumes(server: SSEServer) -> None:
    server.enqueue(Script().event("a", id="1").event("b", id="2").hold())
    server.enqueue(Script().event("c", id="3").hold())
    with EventStream(server.url) as stream:
        events = iter(stream)
        assert [next(events).data, next(events).data] == ["a", "b"]
        stream.restart()
        assert next(events).data == "c"
    assert server.wait_for_requests(2)[1].headers["Last-Event-ID"] == "2"


def test_restart_from_any_thread_never_duplicates_or_loses(server: SSEServer) -> None:
    server.default = resuming(200)
    got: list[int] = []
    with EventStream(server.url, queue_size=8) as stream:
        for event in stream:
            got.append(int(event.data))
            if len(got) % 40 == 0:
                threading.Thread(target=stream.restart).start()
            if len(got) == 600:
                break
    assert got == list(range(1, 601))
    assert len(server.requests) > 1


def test_restart_with_callbacks_never_duplicates_or_loses(server: SSEServer) -> None:
    server.default = resuming(100)
    got: list[int] = []
    enough = threading.Event()
    holder: list[EventStream] = []

    def on_event(event: Event) -> None:
        got.append(int(event.data))
        if len(got) % 30 == 0:
            holder[0].restart()
        if len(got) >= 300:
            enough.set()

    stream = EventStream(server.url, on_event=on_event)
    holder.append(stream)
    with stream:
        assert enough.wait(WAIT)
        assert stream.stop(WAIT)
    assert got[:300] == list(range(1, 301))


def test_dropping_the_last_reference_stops_the_worker(server: SSEServer) -> None:
    opened = threading.Event()
    stream = EventStream(server.url, on_event=lambda e: None, on_open=lambda i: opened.set())
    stream.start()
    assert opened.wait(WAIT)
    (thread,) = worker_threads()
    ref = weakref.ref(stream)
    del stream
    gc.collect()
    assert ref() is None
    thread.join(WAIT)
    assert not thread.is_alive()


def test_an_abandoned_iterator_stops_the_worker(server: SSEServer) -> None:
    def consume_one() -> None:
        for _ in EventStream(server.url):
            break

    consume_one()
    gc.collect()
    for thread in worker_threads():
        thread.join(WAIT)
    assert worker_threads() == []


@pytest.mark.joins
def test_rapid_start_stop_cycles_leak_nothing(server: SSEServer) -> None:
    rng = random.Random(1)
    pause = threading.Event()  # never set: wait() is a bounded random gap
    sessions = CountingSessions()
    stream = EventStream(
        server.url, on_event=lambda e: None, backoff=FAST, session_factory=sessions
    )
    for _ in range(1000):
        stream.start()
        assert stream.running
        pause.wait(rng.uniform(0, 0.02) if rng.random() < 0.5 else 0)
        assert stream.stop(WAIT)
    assert worker_threads() == []
    assert len(sessions.made) == len(sessions.closed) == 1000  # a worker per cycle
    assert server.requests  # and the ones given time connected


def _run_script(code: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_script_that_never_stops_still_exits_promptly() -> None:
    started = time.monotonic()
    result = _run_script(
        """
        import atexit, threading, time
        # Registered before eventstream's own hook, so it runs after it.
        atexit.register(lambda: print("interpreter exit", flush=True))
        import requests
        from eventstream import EventStream
        from eventstream.testing import Script, SSEServer

        class Session(requests.Session):
            def close(self):
                # A slow close: only a worker that the exit waits for gets to finish.
                threading.Event().wait(0.2)
                print("worker closed its session", flush=True)
                super().close()

        server = SSEServer()
        server.start()
        server.default = Script().event("hi").hold()
        got = threading.Event()
        stream = EventStream(server.url, on_event=lambda e: got.set(), session_factory=Session)
        stream.start()
        assert got.wait(5)
        """
    )
    assert result.returncode == 0, result.stderr
    # The library's exit hook stopped the worker and waited for it to close its session.
    assert result.stdout.splitlines() == ["worker closed its session", "interpreter exit"]
    assert time.monotonic() - started < 10.0  # a worker that kept it alive would hang


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_after_fork_the_child_sees_the_stream_stopped_and_can_start_its_own() -> None:
    result = _run_script(
        """
        import os, threading
        from eventstream import EventStream
        from eventstream.testing import RecordedRequest, Script, SSEServer
        with SSEServer() as server:
            server.default = Script().event("hi").hold()
            got = threading.Event()
            stream = EventStream(server.url, on_event=lambda e: got.set())
            stream.start()
            assert got.wait(5)
            pid = os.fork()
            if pid == 0:
                try:
                    assert not stream.running
                    got.clear()
                    stream.start()
                    ok = got.wait(5) and stream.stop(5)
                finally:
                    os._exit(0 if ok else 3)
            _, status = os.waitpid(pid, 0)
            assert stream.running
            stream.stop(5)
            print("child", os.waitstatus_to_exitcode(status))
        """
    )
    assert result.returncode == 0, result.stderr
    assert "child 0" in result.stdout


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_loop_that_forks_ends_in_the_child_and_goes_on_in_the_parent() -> None:
    # The loop over the stream is carried into the child: there it ends at once (the
    # stream is stopped there), after what it received; the child's own start resumes
    # from that; the parent's loop goes on with what was queued, and the doorbell it
    # waits on is not the child's.
    result = _run_script(
        """
        import os, select, threading
        from eventstream import EventStream, _delivery
        from eventstream.testing import Script, SSEServer

        def tokens():
            found = 0
            for bell in list(_delivery._bells):
                found += len(select.select([bell.fd], [], [], 0)[0])  # no poll() in one run
            return found

        with SSEServer() as server:
            gate = threading.Event()
            script = Script().event("a", id="1").event("b", id="2")
            server.enqueue(script.wait(gate).event("c", id="3").hold())
            server.enqueue(Script().event("child", id="9").hold())
            stream = EventStream(server.url)
            events = iter(stream)
            assert next(events).data == "a"
            pause = threading.Event()
            while stream.last_event_id != "2":
                pause.wait(0.001)  # b is handed over, not received
            pid = os.fork()
            if pid == 0:
                code = 3
                try:
                    for bell in list(_delivery._bells):
                        bell.put(None)  # the child's own: the parent's stays quiet
                    assert list(events) == []
                    assert not stream.running
                    assert stream.last_event_id == "1"
                    stream.start()
                    assert next(iter(stream)).data == "child"
                    assert stream.stop(5)
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
            print("parent's tokens", tokens())
            gate.set()
            print("parent got", next(events).data, next(events).data)
            print("child resumed after", server.requests[1].headers.get("Last-Event-ID"))
            assert stream.stop(5)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "child 0",
        "parent's tokens 0",
        "parent got b c",
        "child resumed after 1",
    ], result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_one_shot_request_is_not_sent_again_from_a_forked_child() -> None:
    # The child sees the request's stream stopped, not new: iterating it there ends
    # at once, and the POST is not made a second time.
    result = _run_script(
        """
        import os
        import eventstream
        from eventstream.testing import Script, SSEServer
        with SSEServer() as server:
            server.default = Script().event("done").hold()
            stream = eventstream.post(server.url, data=b"charge=1")
            stream.wait_open(5)
            pid = os.fork()
            if pid == 0:
                code = 3
                try:
                    assert list(stream) == []
                    assert not stream.running
                    code = 0
                finally:
                    os._exit(code)
            _, status = os.waitpid(pid, 0)
            print("child", os.waitstatus_to_exitcode(status))
            print("parent got", next(iter(stream)).data)
            assert stream.stop(5)
            print("requests", [(r.method, r.body) for r in server.requests])
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "child 0",
        "parent got done",
        "requests [('POST', b'charge=1')]",
    ], result.stderr


def test_iterating_an_unnamed_stream_keeps_it_alive(server: SSEServer) -> None:
    server.default = Script().event("a").event("b").event("c").hold()
    got = []
    for event in EventStream(server.url):  # no other reference to the stream
        gc.collect()
        got.append(event.data)
        if len(got) == 3:
            break
    assert got == ["a", "b", "c"]
    gc.collect()
    for thread in worker_threads():
        thread.join(WAIT)
    assert worker_threads() == []


@pytest.mark.joins
def test_leaving_the_with_block_joins_the_worker(server: SSEServer) -> None:
    for _ in range(3):  # the unjoined worker would still be unwinding: seen every time
        with EventStream(server.url) as stream:
            assert next(iter(stream)).data == "hello"
            (worker,) = worker_threads()
        assert not worker.is_alive()


def _cpu_seconds(thread: threading.Thread) -> float:
    with open(f"/proc/self/task/{thread.native_id}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@pytest.mark.joins
@pytest.mark.skipif(
    not hasattr(os, "fork") or not os.path.isdir("/proc/self/task"),
    reason="needs os.fork and /proc/self/task",
)
def test_a_forked_child_stopping_its_copy_leaves_the_parent_stream_alone(
    server: SSEServer,
) -> None:
    server.default = Script().event("before").wait(gate := threading.Event()).event("after").hold()
    got: queue.Queue[str] = queue.Queue()
    stream = EventStream(server.url, on_event=lambda e: got.put(e.data))
    with stream:
        assert got.get(timeout=WAIT) == "before"  # the worker now waits in poll()
        (worker,) = worker_threads()
        reader, writer = os.pipe()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads
            pid = os.fork()
        if pid == 0:  # the child: only os._exit leaves it
            status = 1
            try:
                stream.stop()
                stream.stop(1.0)
                os.write(writer, b"running" if stream.running else b"stopped")
                status = 0
            finally:
                os._exit(status)
        os.close(writer)
        try:
            ready, _, _ = select.select([reader], [], [], WAIT)
            report = os.read(reader, 64) if ready else b"no answer"
        finally:
            os.close(reader)
            if report == b"no answer":
                os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        assert report == b"stopped"
        # The child's stop must not reach the parent's worker: a wake-up it cannot
        # explain would spin its poll() loop.
        before = _cpu_seconds(worker)
        threading.Event().wait(0.5)  # an observation window, not a synchronisation
        assert _cpu_seconds(worker) - before < 0.05
        assert stream.running
        gate.set()
        assert got.get(timeout=WAIT) == "after"


@pytest.mark.joins
def test_a_stop_from_on_event_keeps_the_resume_point_at_the_last_event_handed_over(
    server: SSEServer,
) -> None:
    # In one read, after event a: another event, or an ID with no event.  on_event
    # stops the stream at a: what follows came after the stop, so a restart must
    # resume from a.  (The ID-only case twice: it must be one read to matter.)
    for body in [
        b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n",
        b"id: 1\ndata: a\n\nid: 2\n\n",
        b"id: 1\ndata: a\n\nid: 2\n\n",
    ]:
        server.enqueue(Script().send(body).hold())
        server.enqueue(resuming(3))
        seen: queue.Queue[str] = queue.Queue()
        holder: list[EventStream] = []

        def on_event(
            event: Event, seen: queue.Queue[str] = seen, holder: list[EventStream] = holder
        ) -> None:
            seen.put(event.data)
            if event.data == "a":
                holder[0].stop()

        stream = EventStream(server.url, on_event=on_event)
        holder.append(stream)
        stream.start()
        assert seen.get(timeout=WAIT) == "a"
        assert stream.join(WAIT)
        assert stream.last_event_id == "1"
        stream.start()
        assert [seen.get(timeout=WAIT), seen.get(timeout=WAIT)] == ["2", "3"]
        assert stream.stop(WAIT)
        assert server.requests[-1].headers["Last-Event-ID"] == "1"


@pytest.mark.joins
def test_stop_wakes_a_worker_waiting_for_room_in_the_queue(server: SSEServer) -> None:
    gate = threading.Event()
    script = Script().event("0").wait(gate)
    for i in range(1, 30):  # paced, so that they come in several reads (batches)
        script = script.event(str(i)).pause(0.01)
    server.default = script.hold()
    stream = EventStream(server.url, queue_size=1)
    events = iter(stream)
    stopper = None
    try:
        assert next(events).data == "0"
        (worker,) = worker_threads()
        gate.set()
        # The consumer takes no more: the worker blocks handing over a batch.
        assert wait_until_inside(worker, threading.Condition.wait.__code__, WAIT)
        assert wait_until_inside(worker, Channel.put.__code__, WAIT)
        stopped: queue.Queue[bool] = queue.Queue()
        stopper = threading.Thread(target=lambda: stopped.put(stream.stop(WAIT)))
        stopper.start()
        assert stopped.get(timeout=WAIT), "stop() did not get the worker out of the hand-over"
    finally:
        if stopper is not None and stopper.is_alive():
            next(events, None)  # a take makes room: frees the stuck hand-over
            stopper.join(WAIT)
        stream.stop(WAIT)


@pytest.mark.joins
def test_no_on_error_after_stop_even_for_the_callback_that_stopped(server: SSEServer) -> None:
    errors: list[BaseException] = []
    holder: list[EventStream] = []
    called = threading.Event()

    def on_event(event: Event) -> None:
        called.set()
        holder[0].stop()
        raise ValueError("after stop")

    stream = EventStream(server.url, on_event=on_event, on_error=errors.append)
    holder.append(stream)
    stream.start()
    assert called.wait(WAIT)
    assert stream.join(WAIT)
    assert errors == []


@pytest.mark.joins
def test_a_stop_during_a_failed_attempt_ends_a_one_shot_stream_as_stopped(
    server: SSEServer,
) -> None:
    # Stopped while its request fails with a retryable status: the stream is
    # stopped, not failed (no RetriesExhausted for a retry nobody wanted).
    server.default = Script(503)
    ready = threading.Event()
    holder: list[eventstream.OneShotStream] = []

    def headers() -> dict[str, str]:
        assert ready.wait(WAIT)
        holder[0].stop()
        return {}

    stream = eventstream.get(server.url, headers=headers, retries=0, backoff=FAST)
    holder.append(stream)
    ready.set()
    assert stream.join(WAIT)
    # The stop ends the connect (or the wait for the answer) at once: the server may
    # read the request after the worker left, or get none.  Never a second one (the
    # worker is gone).
    assert len(server.requests) <= 1
    with pytest.raises(RuntimeError, match="stopped"):
        stream.wait_open(0)


def test_out_of_threads_start_says_so_and_a_later_start_works(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.default = Script().event("a").hold()
    real_start = refuse_worker_threads(monkeypatch)
    got: queue.SimpleQueue[Event] = queue.SimpleQueue()
    stream = EventStream(server.url, on_event=got.put)
    with pytest.raises(StreamError, match=r"cannot start the worker thread.*ulimit -u") as caught:
        stream.start()
    assert isinstance(caught.value.__cause__, RuntimeError)
    assert not stream.running
    assert stream.stop(WAIT)  # nothing to stop, nothing to join
    assert stream.join(WAIT)
    monkeypatch.setattr(threading.Thread, "start", real_start)
    with stream:
        assert got.get(timeout=WAIT).data == "a"


def test_a_read_without_events_after_a_stop_leaves_the_resume_point_where_the_stop_put_it(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The consumer received event 1 of 3; the worker has read a heartbeat when the
    # stop drops events 2 and 3 and takes the resume point back to 1.  Handing over
    # that read (no event) must not move it to the parser's last ID, 3.
    read_the_heartbeat, go_on = threading.Event(), threading.Event()
    feed = _parser.Parser.feed

    def holding_feed(self: _parser.Parser, data: bytes) -> list[Event]:
        events = feed(self, data)
        if b"ping" in data:
            read_the_heartbeat.set()
            go_on.wait(WAIT)
        return events

    monkeypatch.setattr(_parser.Parser, "feed", holding_feed)
    gate = threading.Event()
    script = Script().event("a", id="1").event("b", id="2").event("c", id="3")
    server.enqueue(script.wait(gate).comment("ping").hold())
    server.enqueue(resuming(3))
    stream = EventStream(server.url, backoff=Backoff(max_attempts=1))
    events = iter(stream)
    assert next(events).id == "1"
    channel = stream._control.channel
    assert channel is not None
    pause = threading.Event()
    deadline = time.monotonic() + WAIT
    while stream.last_event_id != "3" and time.monotonic() < deadline:
        pause.wait(0.001)  # bounded polling of a state: events 2 and 3 handed over
    assert stream.last_event_id == "3"
    gate.set()
    assert read_the_heartbeat.wait(WAIT)
    stream.stop()
    assert stream.last_event_id == "1"  # 2 and 3 were dropped
    go_on.set()
    assert stream.join(WAIT)
    assert stream.last_event_id == "1"
    stream.start()
    assert [e.data for e in itertools.islice(stream, 2)] == ["2", "3"]
    assert stream.stop(WAIT)
    assert server.requests[-1].headers["Last-Event-ID"] == "1"


@pytest.mark.joins
def test_a_stop_that_races_a_restart_on_another_thread_stops_the_new_worker_too(
    server: SSEServer,
) -> None:
    # stop() signals the worker, then waits for the hand-over lock to cancel the
    # consumption; a restart() on another thread in between starts a new worker.
    # The stop wins: the new worker is signalled too, not left running with its
    # consumption cancelled (every loop would end at once, start() would do nothing).
    in_callback, release = threading.Event(), threading.Event()

    def on_comment(text: str) -> None:
        if text.strip() == "block":
            in_callback.set()  # the worker holds the hand-over lock from here
            release.wait(WAIT)

    server.enqueue(Script().event("a", id="1").comment("block").hold())
    server.default = Script().event("b", id="2").hold()
    stream = EventStream(server.url, on_comment=on_comment, backoff=Backoff(max_attempts=1))
    try:
        events = iter(stream)
        assert next(events).data == "a"
        assert in_callback.wait(WAIT)
        first = stream._control.thread
        stopper = threading.Thread(target=stream.stop, name="test-stopper")
        stopper.start()
        assert wait_until_inside(stopper, Control.stop_and_cancel.__code__, WAIT)
        pause = threading.Event()
        deadline = time.monotonic() + WAIT
        while stream.running and time.monotonic() < deadline:
            pause.wait(0.001)  # bounded polling of a state: the first worker is signalled
        stream.restart()
        second = stream._control.thread
        assert second is not first
        release.set()
        stopper.join(WAIT)
        assert not stopper.is_alive()
        assert not stream.running
        assert stream.join(WAIT)  # the second worker
        assert first is not None
        first.join(WAIT)
        assert not first.is_alive()
        stream.start()  # stopped, so this starts a worker that delivers
        assert next(iter(stream)).data == "b"
    finally:
        release.set()
        assert stream.stop(WAIT)
