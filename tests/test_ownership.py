"""The ownership rule, proven from the caller's side.

The caller's thread never calls into the worker's session, response, connection or
socket, and nothing it is given (errors included) keeps them alive.  The second
half walks every object reachable from each kind of error a caller can receive, the
way the garbage collector sees them (``gc.get_referents``, through tracebacks,
frames, ``__cause__`` and ``__context__``).
"""

from __future__ import annotations

import gc
import http.client
import queue
import socket
import sys
import threading
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests
import urllib3

import eventstream
from eventstream import Backoff, Event, EventStream, StreamError
from eventstream._parser import Parser
from eventstream._transport import Body
from eventstream._worker import Worker
from eventstream.testing import Framing, Script, SSEServer

pytestmark = pytest.mark.joins  # every stream here is joined before its test returns

FAST = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
WAIT = 5.0

# What only the worker may hold.  A frame is how an error reaches them (its locals,
# and its caller's frame, up the worker's whole stack): an error handed over by the
# worker must carry none.
WORKER_ONLY: tuple[type, ...] = (
    requests.Session,
    requests.Response,
    requests.PreparedRequest,  # the request's headers: credentials
    urllib3.PoolManager,
    urllib3.HTTPConnectionPool,
    urllib3.connection.HTTPConnection,
    urllib3.response.HTTPResponse,
    http.client.HTTPResponse,
    http.client.HTTPConnection,
    socket.socket,
    Body,
    Parser,
    Worker,
    types.FrameType,
)


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def _module_dicts() -> set[int]:
    return {id(vars(module)) for module in list(sys.modules.values()) if module is not None}


def worker_objects_reachable(root: object) -> list[str]:
    """Every object of a WORKER_ONLY type reachable from ``root``, as the collector
    sees references.  Modules, classes and module namespaces (functions' and
    frames' globals) are not followed: they reach everything in the process."""
    skip = _module_dicts()
    seen: set[int] = set()
    pending = [root]
    found = []
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if isinstance(obj, (types.ModuleType, type)) or id(obj) in skip:
            continue
        if isinstance(obj, WORKER_ONLY):
            found.append(f"{type(obj).__module__}.{type(obj).__qualname__}")
            if not isinstance(obj, types.FrameType):
                continue  # one finding per path is enough
        pending.extend(gc.get_referents(obj))
    return found


def assert_detached(label: str, error: BaseException) -> None:
    found = worker_objects_reachable(error)
    assert not found, f"{label} {type(error).__name__} ({error}) reaches {sorted(set(found))}"


class Collected:
    """Every error a stream hands to its caller, and where it was handed."""

    def __init__(self) -> None:
        self.errors: list[tuple[str, BaseException]] = []
        self._lock = threading.Lock()

    def on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(("on_error", exc))

    def on_retry(self, exc: BaseException, delay: float) -> None:
        with self._lock:
            self.errors.append(("on_retry", exc))

    def raised(self, exc: BaseException) -> None:
        # The raise in this thread gave it a traceback of this thread's frames (the
        # caller's own): those must not be the worker's, and nothing else may be.
        names = set()
        tb = exc.__traceback__
        while tb is not None:
            names.add(tb.tb_frame.f_code.co_name)
            tb = tb.tb_next
        assert not names & {"run", "_loop", "_attempt", "open_stream", "_accept", "_handle"}
        exc.__traceback__ = None
        with self._lock:
            self.errors.append(("raised", exc))

    def check(self) -> set[type]:
        with self._lock:
            errors = list(self.errors)
        for where, error in errors:
            assert_detached(where, error)
        return {type(error) for _, error in errors}


def raw_head(*fields: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n" + b"".join(
        field + b"\r\n" for field in fields
    )


# First answers after which the stream reconnects (the next answer says "ok").
RETRIED: dict[str, tuple[Script, dict[str, Any], set[str]]] = {
    "drop mid-body": (Script().event("a").drop(), {}, {"ReadError"}),
    "clean end": (Script().event("a").close(), {}, {"ReadError"}),
    "idle timeout": (Script().event("a").hold(), {"timeout": (5.0, 0.3)}, {"ReadError"}),
    "retryable status": (Script(503).send(b"busy"), {}, {"HTTPStatusError"}),
    "bad chunk": (
        Script(framing=Framing.CHUNKED).event("a").wire(b"zz\r\n").drop(),
        {},
        {"ReadError"},
    ),
    "malformed header": (
        Script.raw_response(raw_head(b"Content-Length: 5, 6") + b"\r\n").close(),
        {},
        {"ReadError"},
    ),
    "oversized event": (
        Script().event("x" * 200).event("ok").hold(),
        {"max_event_size": 100},
        {"ProtocolError"},
    ),
}


@pytest.mark.parametrize("case", list(RETRIED))
def test_retried_errors_keep_nothing_of_the_worker(server: SSEServer, case: str) -> None:
    first, options, kinds = RETRIED[case]
    server.enqueue(first)
    server.default = Script().event("ok").hold()
    got = Collected()
    stream = EventStream(
        server.url, backoff=FAST, on_error=got.on_error, on_retry=got.on_retry, **options
    )
    with stream:
        for event in stream:
            if event.data == "ok":
                break
        # While the worker runs on, with a live session: nothing handed over reaches it.
        assert kinds <= {kind.__name__ for kind in got.check()}
    assert stream.join(0)
    got.check()


def _closed_url() -> str:
    with SSEServer() as closed:
        return closed.url


# Answers that end the stream: the error is raised in the iterating thread too.
FATAL: dict[str, tuple[Callable[[SSEServer], str], dict[str, Any], str]] = {
    "client error": (
        lambda s: (
            s.enqueue(Script(404, headers={"Content-Type": "text/plain"}).send(b"no")) or s.url
        ),
        {},
        "HTTPStatusError",
    ),
    "content type": (
        lambda s: s.enqueue(Script(headers={"Content-Type": "text/html"}).send(b"<p>")) or s.url,
        {},
        "ContentTypeError",
    ),
    "retries exhausted": (
        lambda s: setattr(s, "default", Script(503)) or s.url,
        {"backoff": Backoff(initial=0.01, maximum=0.05, jitter=0.0, max_attempts=2)},
        "RetriesExhausted",
    ),
    "connect refused": (
        lambda s: _closed_url(),
        {"backoff": Backoff(initial=0.01, maximum=0.05, jitter=0.0, max_attempts=2)},
        "RetriesExhausted",
    ),
    "redirect loop": (
        lambda s: s.route("/loop", Script.redirect("/loop")) or s.url_for("/loop"),
        {},
        "HTTPStatusError",
    ),
    "headers callable raises": (
        lambda s: s.url,
        {"headers": lambda: {"X-Token": str(1 / 0)}},
        "StreamError",
    ),
}


@pytest.mark.parametrize("case", list(FATAL))
def test_fatal_errors_keep_nothing_of_the_worker(server: SSEServer, case: str) -> None:
    setup, options, kind = FATAL[case]
    url = setup(server)
    got = Collected()
    options = {"backoff": FAST, **options}
    stream = EventStream(url, on_error=got.on_error, on_retry=got.on_retry, **options)
    with stream:
        with pytest.raises(StreamError) as info:
            list(stream)
        assert type(info.value).__name__ == kind
        assert stream.join(WAIT)  # the worker's Thread drops its target once it ended
        got.raised(info.value)
        del info
    assert kind in {k.__name__ for k in got.check()}
    assert any(where == "on_error" for where, _ in got.errors)


def test_an_error_from_a_callback_keeps_nothing_of_the_worker(server: SSEServer) -> None:
    server.default = Script().event("boom").event("ok").hold()
    got = Collected()
    seen: queue.Queue[str] = queue.Queue()

    def on_event(event: Event) -> None:
        seen.put(event.data)
        if event.data == "boom":
            raise ValueError("the callback failed")

    with EventStream(server.url, on_event=on_event, on_error=got.on_error):
        assert [seen.get(timeout=WAIT), seen.get(timeout=WAIT)] == ["boom", "ok"]
        assert got.check() == {ValueError}
        (_, error), *_ = got.errors
        assert str(error) == "the callback failed"


def test_the_failure_a_one_shot_stream_keeps_holds_nothing_of_the_worker(
    server: SSEServer,
) -> None:
    server.enqueue(Script(404).send(b"nope"))
    with eventstream.get(server.url) as stream:
        with pytest.raises(eventstream.HTTPStatusError) as info:
            stream.wait_open(WAIT)
        assert stream.join(WAIT)
    got = Collected()
    got.raised(info.value)
    got.check()


def test_an_error_keeps_its_type_message_chain_and_attributes(server: SSEServer) -> None:
    server.enqueue(Script(404, headers={"X-Why": "gone"}).send(b"go away"))
    stream = EventStream(server.url)
    with stream, pytest.raises(eventstream.HTTPStatusError) as info:
        list(stream)
    error = info.value
    assert (error.status_code, error.headers["x-why"], error.body) == (404, "gone", "go away")
    assert str(error).startswith("HTTP 404")
    refused = eventstream.get(_closed_url(), retries=0)
    with refused, pytest.raises(eventstream.RetriesExhausted) as exhausted:
        list(refused)
    cause = exhausted.value.__cause__
    assert isinstance(cause, eventstream.ConnectError)
    assert "cannot connect" in str(cause)
    assert isinstance(cause.__cause__, requests.ConnectionError)  # translated once, chained
    assert cause.__cause__.__traceback__ is None


# What the worker owns, instrumented by a profile hook on every thread: any Python
# method call (its ``self``) and any C method call (its ``__self__``) on these.
OWNED: tuple[type, ...] = (
    requests.Session,
    requests.Response,
    urllib3.HTTPConnectionPool,
    urllib3.connection.HTTPConnection,  # an http.client.HTTPConnection
    urllib3.response.HTTPResponse,
    http.client.HTTPResponse,
    socket.socket,
)


def test_no_thread_but_the_worker_calls_the_session_response_connection_or_socket(
    server: SSEServer,
) -> None:
    server.enqueue(Script().event("a").close(), Script().event("b").drop())
    server.default = Script().event("c").hold()
    calls: list[tuple[int, object, str]] = []

    def record(frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            if not code.co_argcount or code.co_varnames[0] != "self":
                return
            obj, name = frame.f_locals.get("self"), code.co_name
        elif event == "c_call":
            obj, name = getattr(arg, "__self__", None), getattr(arg, "__name__", "?")
        else:
            return
        # The wake-up socket pair is the stop signal's: stop() writes to it, by design.
        if isinstance(obj, OWNED) and not (
            isinstance(obj, socket.socket) and obj.family == socket.AF_UNIX
        ):
            calls.append((threading.get_ident(), obj, name))

    threading.setprofile(record)
    sys.setprofile(record)
    try:
        stream = EventStream(server.url, backoff=FAST)
        with stream:
            data = []
            for event in stream:
                data.append(event.data)
                if len(data) == 3:
                    break
            gc.collect()  # garbage of the worker's, collected on this thread
        assert stream.join(0)
        gc.collect()
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert data == ["a", "b", "c"]
    worker = {ident for ident, obj, _ in calls if isinstance(obj, requests.Session)}
    assert len(worker) == 1
    assert threading.get_ident() not in worker
    (worker_ident,) = worker
    owned = {id(obj) for ident, obj, _ in calls if ident == worker_ident}
    kinds = {type(obj) for ident, obj, _ in calls if ident == worker_ident}
    assert all(any(issubclass(k, t) for k in kinds) for t in OWNED)  # each was watched
    elsewhere = [
        f"{type(obj).__name__}.{name}"
        for ident, obj, name in calls
        if ident != worker_ident and id(obj) in owned
    ]
    calls.clear()
    assert elsewhere == []
