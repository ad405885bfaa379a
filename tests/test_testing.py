"""Tests for eventstream.testing: the scripted SSE server, checked with plain requests
and raw sockets (never with eventstream's own client)."""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import requests
import trustme

from eventstream.testing import Framing, Headers, RecordedRequest, Script, SSEServer
from eventstream.testing._handler import Handler

GET = b"GET /events?x=1 HTTP/1.1\r\nHost: test\r\n\r\n"


# -- helpers -----------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as running:
        yield running


@contextlib.contextmanager
def raw_client(server: SSEServer, request: bytes = GET) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        yield sock


def read_all(sock: socket.socket) -> bytes:
    data = bytearray()
    while chunk := sock.recv(65536):
        data += chunk
    return bytes(data)


def read_until(sock: socket.socket, received: bytearray, needle: bytes) -> None:
    while needle not in received:
        chunk = sock.recv(65536)
        assert chunk, f"EOF before {needle!r}; got {bytes(received)!r}"
        received += chunk


def silent_for(sock: socket.socket, seconds: float) -> bool:
    return not select.select([sock], [], [], seconds)[0]  # few fds: select works everywhere


def exchange(server: SSEServer, script: Script, request: bytes = GET) -> bytes:
    server.enqueue(script)
    with raw_client(server, request) as sock:
        return read_all(sock)


def split(response: bytes | bytearray) -> tuple[str, dict[str, str], bytes]:
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.partition(":") for line in lines)
    return status_line, {name.lower(): value.strip() for name, _, value in fields}, bytes(body)


def dechunk(body: bytes | bytearray) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether it ended with the terminator."""
    chunks: list[bytes] = []
    position = 0
    while (end := body.find(b"\r\n", position)) >= 0:
        size = int(body[position:end], 16)
        if size == 0:
            return chunks, body[end:] == b"\r\n\r\n"
        chunks.append(bytes(body[end + 2 : end + 2 + size]))
        position = end + 4 + size
    return chunks, False


def gunzip_so_far(response: bytes | bytearray) -> bytes:
    """What the chunks of a gzip response received so far decode to."""
    return zlib.decompressobj(31).decompress(b"".join(dechunk(split(response)[2])[0]))


# -- script actions ----------------------------------------------------------------------


def test_event_formats_fields_and_splits_multiline_data(server: SSEServer) -> None:
    script = Script().event("a\nb\r\nc\rd", event="update", id="7", retry=1500).event("")
    server.enqueue(script)
    response = requests.get(server.url_for("/events"), timeout=5)
    assert response.content == (
        b"id: 7\nevent: update\nretry: 1500\ndata: a\ndata: b\ndata: c\ndata: d\n\ndata: \n\n"
    )


def test_comment_and_send_pass_bytes_through(server: SSEServer) -> None:
    server.enqueue(Script().comment("ping\npong").comment().send(b"data: \xff raw\n\n"))
    response = requests.get(server.url, timeout=5)
    assert response.content == b": ping\n: pong\n:\ndata: \xff raw\n\n"


def test_default_headers_and_overrides(server: SSEServer) -> None:
    server.enqueue(
        Script(),
        Script(headers={"content-type": "text/plain", "Cache-Control": None, "X-A": "1"}),
        Script(headers=[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]),
    )
    first, second, third = (requests.get(server.url, timeout=5) for _ in range(3))
    assert first.headers["Content-Type"] == "text/event-stream"
    assert first.headers["Cache-Control"] == "no-store"
    assert first.headers["Connection"] == "close"
    assert second.headers["Content-Type"] == "text/plain"
    assert "Cache-Control" not in second.headers
    assert second.headers["X-A"] == "1"
    assert third.raw.headers.getlist("Set-Cookie") == ["a=1", "b=2"]


def test_each_write_is_one_chunk_unless_held_back(server: SSEServer) -> None:
    script = Script().event("a", flush=False).send(b": b\n", flush=False).flush().event("c")
    status, headers, body = split(exchange(server, script))
    assert status == "HTTP/1.1 200 OK"
    assert headers["transfer-encoding"] == "chunked"
    assert dechunk(body) == ([b"data: a\n\n: b\n", b"data: c\n\n"], True)


def test_headers_go_out_with_the_first_event(server: SSEServer) -> None:
    gate = threading.Event()
    server.enqueue(Script().event("first").wait(gate))
    with raw_client(server) as sock:
        first_read = sock.recv(65536)  # one send on loopback: one read
        gate.set()
        read_all(sock)
    assert first_read.endswith(b"\r\n\r\nd\r\ndata: first\n\n\r\n")


def test_pause_delays_the_next_write(server: SSEServer) -> None:
    server.enqueue(Script().event("a").pause(0.2).event("b"))
    received = bytearray()
    with raw_client(server) as sock:
        read_until(sock, received, b"data: a")
        started = time.monotonic()
        read_until(sock, received, b"data: b")
        assert time.monotonic() - started >= 0.19


def test_pause_longer_than_poll_takes(server: SSEServer) -> None:
    # poll() takes at most 2**31-1 ms (24.8 days): a longer pause must wait in slices,
    # not end the connection's thread (which closed the connection at once).
    server.enqueue(Script().event("a").pause(1e7).event("b"))
    received = bytearray()
    with raw_client(server) as sock:
        read_until(sock, received, b"data: a")
        assert silent_for(sock, 0.1)


def test_wait_holds_until_the_gate_is_set(server: SSEServer) -> None:
    gate = threading.Event()
    server.enqueue(Script().event("a").wait(gate).event("b"))
    received = bytearray()
    with raw_client(server) as sock:
        read_until(sock, received, b"data: a")
        assert silent_for(sock, 0.1)
        gate.set()
        received += read_all(sock)
    assert dechunk(split(bytes(received))[2]) == ([b"data: a\n\n", b"data: b\n\n"], True)


def test_wait_timeout_drops_the_connection(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    body = split(exchange(server, Script().event("a").wait(threading.Event(), 0.05)))[2]
    assert dechunk(body) == ([b"data: a\n\n"], False)
    assert "gate not set" in caplog.text


def test_trickle_sends_one_byte_per_write(server: SSEServer) -> None:
    started = time.monotonic()
    body = split(exchange(server, Script().trickle(b"data", 0.02)))[2]
    assert dechunk(body) == ([b"d", b"a", b"t", b"a"], True)
    assert time.monotonic() - started >= 0.06


def test_drop_ends_without_terminator(server: SSEServer) -> None:
    body = split(exchange(server, Script().event("a").send(b"data: part").drop()))[2]
    assert dechunk(body) == ([b"data: a\n\n", b"data: part"], False)
    server.enqueue(Script().event("a").drop())
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        requests.get(server.url, timeout=5)


def test_reset_sends_rst(server: SSEServer) -> None:
    server.enqueue(Script().hold(), Script().event("a").reset())
    with raw_client(server) as held:  # a first connection proves reset is per connection
        read_until(held, bytearray(), b"\r\n\r\n")
        with raw_client(server) as sock, pytest.raises(ConnectionResetError):
            read_all(sock)
        assert silent_for(held, 0.05)


def test_wire_bypasses_framing(server: SSEServer) -> None:
    body = split(exchange(server, Script().event("a").wire(b"zz\r\nbad").drop()))[2]
    assert body == b"9\r\ndata: a\n\n\r\nzz\r\nbad"


def test_raw_response_is_sent_verbatim(server: SSEServer) -> None:
    assert exchange(server, Script.raw_response(b"NOT HTTP\r\n\r\n")) == b"NOT HTTP\r\n\r\n"
    with raw_client(server, b"") as sock:  # reset before any byte, even before a request
        server.enqueue(Script.raw_response(b"").reset())
        sock.sendall(GET)
        with pytest.raises(ConnectionResetError):
            read_all(sock)


def test_no_response_reads_the_request_and_never_answers(server: SSEServer) -> None:
    server.enqueue(Script.no_response())
    with raw_client(server) as sock:
        (request,) = server.wait_for_requests(1)
        assert request.path == "/events"
        assert silent_for(sock, 0.1)
        server.stop()
        assert read_all(sock) == b""


def test_hold_sends_headers_then_silence(server: SSEServer) -> None:
    server.enqueue(Script().hold())
    received = bytearray()
    with raw_client(server) as sock:
        read_until(sock, received, b"\r\n\r\n")
        assert received.endswith(b"Connection: close\r\n\r\n")
        assert silent_for(sock, 0.1)


def test_live_connection_carries_out_commands_in_order(server: SSEServer) -> None:
    server.enqueue(Script().event("first").live())
    received = bytearray()
    with raw_client(server) as sock:
        conn = server.wait_for_connection()
        read_until(sock, received, b"data: first")
        conn.event("second", id="2")
        conn.comment("keep-alive")
        conn.send(b"data: third\n\n")
        conn.close()
        received += read_all(sock)
    conn.wait_closed()
    chunks, terminated = dechunk(split(bytes(received))[2])
    assert chunks[:2] == [b"data: first\n\n", b"id: 2\ndata: second\n\n"]
    assert chunks[2:] == [b": keep-alive\n", b"data: third\n\n"]
    assert terminated
    assert conn.request is not None
    assert conn.request.connection == conn.index == 0


def test_live_commands_queued_early_wait_for_live(server: SSEServer) -> None:
    gate = threading.Event()
    server.enqueue(Script().wait(gate).live())
    with raw_client(server) as sock:
        conn = server.wait_for_connection()
        conn.wire(b"1\r\nx\r\n")
        conn.reset()
        gate.set()
        with pytest.raises(ConnectionResetError):
            read_all(sock)


# -- framing and encoding ----------------------------------------------------------------


def test_content_length_counts_the_whole_body_across_pauses(server: SSEServer) -> None:
    script = Script(framing=Framing.CONTENT_LENGTH).event("a").pause(0.05).event("b")
    _, headers, body = split(exchange(server, script))
    assert "transfer-encoding" not in headers
    assert int(headers["content-length"]) == len(body)
    assert body == b"data: a\n\ndata: b\n\n"


def test_content_length_can_announce_a_truncated_body(server: SSEServer) -> None:
    script = Script(framing=Framing.CONTENT_LENGTH, headers={"Content-Length": "100"})
    _, headers, body = split(exchange(server, script.event("a").drop()))
    assert headers["content-length"] == "100"
    assert body == b"data: a\n\n"


def test_close_delimited_body_ends_at_eof(server: SSEServer) -> None:
    _, headers, body = split(exchange(server, Script(framing=Framing.CLOSE).event("a")))
    assert "content-length" not in headers
    assert "transfer-encoding" not in headers
    assert body == b"data: a\n\n"


@pytest.mark.parametrize(("encoding", "wbits"), [("gzip", 31), ("deflate", 15)])
def test_compressed_body_decodes(server: SSEServer, encoding: str, wbits: int) -> None:
    _, headers, body = split(exchange(server, Script(encoding=encoding).event("a").event("b")))
    assert headers["content-encoding"] == encoding
    chunks, terminated = dechunk(body)
    assert terminated
    assert zlib.decompress(b"".join(chunks), wbits) == b"data: a\n\ndata: b\n\n"
    server.enqueue(Script(encoding=encoding).event("c"))
    assert requests.get(server.url, timeout=5).content == b"data: c\n\n"


def test_gzip_delivers_each_event_before_the_next(server: SSEServer) -> None:
    gate = threading.Event()
    server.enqueue(Script(encoding="gzip").event("one").wait(gate).event("two"))
    received = bytearray()
    with raw_client(server) as sock:
        while b"data: one" not in gunzip_so_far(received):
            received += sock.recv(65536)
        assert gunzip_so_far(received) == b"data: one\n\n"
        gate.set()
        received += read_all(sock)
    chunks, terminated = dechunk(split(bytes(received))[2])
    assert terminated
    assert zlib.decompress(b"".join(chunks), 31) == b"data: one\n\ndata: two\n\n"


def test_gzip_with_content_length_and_mid_member_drop(server: SSEServer) -> None:
    script = Script(framing=Framing.CONTENT_LENGTH, encoding="gzip").event("a")
    _, headers, body = split(exchange(server, script))
    assert int(headers["content-length"]) == len(body)
    assert zlib.decompress(body, 31) == b"data: a\n\n"
    decoder = zlib.decompressobj(31)
    chunks, terminated = dechunk(
        split(exchange(server, Script(encoding="gzip").event("a").drop()))[2]
    )
    assert decoder.decompress(b"".join(chunks)) == b"data: a\n\n"
    assert not terminated
    assert not decoder.eof  # no gzip trailer


def test_unknown_and_false_encodings(server: SSEServer) -> None:
    _, headers, body = split(exchange(server, Script(encoding="x-unknown").event("a")))
    assert headers["content-encoding"] == "x-unknown"
    assert dechunk(body) == ([b"data: a\n\n"], True)
    server.enqueue(Script(headers={"Content-Encoding": "gzip"}).send(b"not gzip"))
    with pytest.raises(requests.exceptions.ContentDecodingError):
        requests.get(server.url, timeout=5)


# -- statuses and routing ----------------------------------------------------------------


def test_statuses_and_retry_after(server: SSEServer) -> None:
    server.enqueue(Script(204), Script(429, headers={"Retry-After": "3"}), Script(503))
    no_content = requests.get(server.url, timeout=5)
    assert (no_content.status_code, no_content.content) == (204, b"")
    assert "Transfer-Encoding" not in no_content.headers
    throttled = requests.get(server.url, timeout=5)
    assert (throttled.status_code, throttled.headers["Retry-After"]) == (429, "3")
    assert requests.get(server.url, timeout=5).status_code == 503


def test_default_is_404_and_can_be_replaced(server: SSEServer) -> None:
    server.enqueue(Script().event("queued"))
    assert requests.get(server.url, timeout=5).content == b"data: queued\n\n"
    missing = requests.get(server.url, timeout=5)
    assert missing.status_code == 404
    assert missing.headers["Content-Type"].startswith("text/plain")
    server.default = Script().event("default")
    assert requests.get(server.url, timeout=5).content == b"data: default\n\n"


def test_routes_come_before_the_queue(server: SSEServer) -> None:
    server.enqueue(Script().event("queued"))
    server.route("/routed", Script().event("routed"))
    assert requests.get(server.url_for("/routed?x=1"), timeout=5).content == b"data: routed\n\n"
    server.route("/routed", None)
    assert requests.get(server.url_for("/routed"), timeout=5).content == b"data: queued\n\n"


def test_route_callable_resumes_from_last_event_id(server: SSEServer) -> None:
    def resume(request: RecordedRequest) -> Script:
        last = request.headers.get("Last-Event-ID", "0")
        return Script().event("next", id=str(int(last) + 1))

    server.route("/events", resume)
    response = requests.get(server.url_for("/events"), headers={"Last-Event-ID": "41"}, timeout=5)
    assert response.content == b"id: 42\ndata: next\n\n"


def test_failing_route_callable_answers_500(server: SSEServer) -> None:
    def broken(request: RecordedRequest) -> Script:
        raise LookupError("no such stream")

    server.route("/broken", broken)
    response = requests.get(server.url_for("/broken"), timeout=5)
    assert response.status_code == 500
    assert "LookupError('no such stream')" in response.text


def test_route_callable_failing_the_test_answers_500(server: SSEServer) -> None:
    # pytest.fail() and pytest.skip() raise a BaseException, not an Exception: it used
    # to end the connection's thread, and the client saw the connection close.
    def broken(request: RecordedRequest) -> Script:
        pytest.fail("unexpected request")

    server.default = broken
    response = requests.get(server.url_for("/any"), timeout=5)
    assert response.status_code == 500
    assert "responder failed: Failed: unexpected request" in response.text


def test_redirect_to_another_host(server: SSEServer) -> None:
    server.route("/start", Script.redirect(server.url_for("/end", host="localhost"), 307))
    server.route("/end", Script().event("arrived"))
    response = requests.get(server.url_for("/start"), timeout=5)
    assert response.content == b"data: arrived\n\n"
    assert response.history[0].status_code == 307
    first, second = server.wait_for_requests(2)
    assert first.headers["Host"] == f"127.0.0.1:{server.port}"
    assert second.headers["Host"] == f"localhost:{server.port}"


def test_redirect_loop(server: SSEServer) -> None:
    server.route("/loop", Script.redirect("/loop"))
    with pytest.raises(requests.TooManyRedirects):
        requests.get(server.url_for("/loop"), timeout=5)
    assert len(server.requests) == 31  # requests' limit of 30 redirects, plus the first


# -- requests and connections ------------------------------------------------------------


def test_records_method_target_headers_and_body(server: SSEServer) -> None:
    server.default = Script()
    requests.post(
        server.url_for("/p?a=1&b=2"), data=b"payload", headers={"X-Token": "t"}, timeout=5
    )
    (request,) = server.wait_for_requests(1)
    assert (request.method, request.target, request.path) == ("POST", "/p?a=1&b=2", "/p")
    assert (request.query, request.version, request.body) == ("a=1&b=2", "HTTP/1.1", b"payload")
    assert request.headers["x-token"] == request.headers["X-TOKEN"] == "t"
    assert request.client_address[0] == "127.0.0.1"
    assert request.connection == 0


def test_records_a_chunked_request_body(server: SSEServer) -> None:
    server.default = Script()
    requests.post(server.url, data=iter([b"ab", b"", b"cd"]), timeout=5)
    (request,) = server.wait_for_requests(1)
    assert request.headers["Transfer-Encoding"] == "chunked"
    assert request.body == b"abcd"


def test_malformed_request_gets_400_and_is_not_recorded(server: SSEServer) -> None:
    response = exchange(server, Script(), b"NONSENSE\r\n\r\n")
    assert response.startswith(b"HTTP/1.1 400 ")
    assert server.requests == []


def test_headers_mapping_is_case_insensitive() -> None:
    headers = Headers([("Accept", "a"), ("X-Many", "1"), ("x-many", "2")])
    assert headers["x-MANY"] == "1, 2"
    assert headers.get_all("X-Many") == ["1", "2"]
    assert list(headers) == ["Accept", "X-Many"]
    assert len(headers) == 2
    assert "accept" in headers
    not_a_name: object = 3
    assert not_a_name not in headers
    assert headers.get("missing") is None


def test_wait_for_helpers_time_out(server: SSEServer) -> None:
    with pytest.raises(TimeoutError):
        server.wait_for_requests(1, timeout=0.05)
    with pytest.raises(TimeoutError):
        server.wait_for_connection(timeout=0.05)


def test_connections_are_handed_out_in_index_order(server: SSEServer) -> None:
    server.default = Script().hold()
    with contextlib.ExitStack() as stack:
        for count in range(1, 4):
            stack.enter_context(raw_client(server))
            server.wait_for_requests(count)
        handles = [server.wait_for_connection() for _ in range(3)]
        assert [conn.index for conn in handles] == [0, 1, 2]
        assert [request.connection for request in server.requests] == [0, 1, 2]
        assert server.connections == handles
        assert not any(conn.closed for conn in handles)


def test_client_disconnect_ends_the_connection_thread(server: SSEServer) -> None:
    server.enqueue(Script().hold(), Script().trickle(b"x" * 10_000, 0.001))
    for _ in range(2):
        with raw_client(server) as sock:
            sock.recv(1)  # the server has started answering
        server.wait_for_connection().wait_closed()


def test_server_threads_are_named_daemons(server: SSEServer) -> None:
    server.enqueue(Script().hold())
    with raw_client(server):
        server.wait_for_requests(1)
        prefix = f"eventstream-testing-{server.port}-"
        names = {t.name: t.daemon for t in threading.enumerate() if t.name.startswith(prefix)}
    assert names == {f"{prefix}accept": True, f"{prefix}conn-0": True}


def test_a_connection_thread_that_fails_to_start_closes_that_client_only(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "can't start new thread" for one connection: that client is closed, the accept
    # thread goes on serving, and stop() (the fixture's) joins and closes everything.
    start = threading.Thread.start
    failed = []

    def fail_once(thread: threading.Thread) -> None:
        if "-conn-" in thread.name and not failed:
            failed.append(thread.name)
            raise RuntimeError("can't start new thread")
        start(thread)

    monkeypatch.setattr(threading.Thread, "start", fail_once)
    server.default = Script().event("served")
    # A reset, or EOF: the request was left unread.
    with raw_client(server) as sock, contextlib.suppress(ConnectionResetError):
        assert read_all(sock) == b""
    assert failed
    assert server.connections == []
    with raw_client(server) as sock:
        assert b"data: served" in read_all(sock)
    assert [conn.index for conn in server.connections] == [0]


# -- scripts as values ---------------------------------------------------------------------


def test_scripts_are_immutable_and_reusable(server: SSEServer) -> None:
    base = Script()
    extended = base.event("a")
    server.enqueue(base, extended, extended)
    bodies = [requests.get(server.url, timeout=5).content for _ in range(3)]
    assert bodies == [b"", b"data: a\n\n", b"data: a\n\n"]


@pytest.mark.parametrize(
    "build",
    [
        lambda: Script().drop().event("late"),
        lambda: Script().live().hold(),
        lambda: Script(204).event("body"),
        lambda: Script().event("x", id="a\nb"),
        lambda: Script().event("x", retry=-1),
        lambda: Script(42),
        lambda: Script(headers={"X": "a\r\nInjected: 1"}),
        lambda: Script().pause(-1),
        lambda: Script().pause(float("inf")),  # would end the connection's thread
        lambda: Script().pause(float("nan")),  # would not pause at all
        lambda: Script().wait(threading.Event(), timeout=float("nan")),
        lambda: Script().wait(threading.Event(), timeout=float("inf")),
        lambda: Script().trickle(b"ab", float("nan")),
        lambda: Script(headers={"X-Name": "caf\u00e9 \u20ac"}),  # not Latin-1
        lambda: Script(headers={"X-\u20ac": "1"}),
        lambda: Script(encoding="gz\u20ac"),
    ],
)
def test_script_rejects_misuse(build: object) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        build()  # type: ignore[operator]


# -- faults, life cycle, TLS ---------------------------------------------------------------


def test_drop_all_resets_open_connections_and_keeps_listening(server: SSEServer) -> None:
    gate = threading.Event()
    server.enqueue(Script().hold(), Script().wait(gate), Script().live())
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(raw_client(server)) for _ in range(3)]
        server.wait_for_requests(3)
        server.drop_all()
        for sock in socks:
            with pytest.raises(ConnectionResetError):
                read_all(sock)
    server.enqueue(Script().event("after"))
    assert requests.get(server.url, timeout=5).content == b"data: after\n\n"


def test_stop_is_fast_with_held_connections() -> None:
    gate = threading.Event()
    with contextlib.ExitStack() as stack:
        server = stack.enter_context(SSEServer())
        scripts = [Script().hold(), Script().pause(60), Script().wait(gate), Script().live()]
        server.enqueue(*scripts, Script.no_response(), *[Script().hold()] * 20)
        socks = [stack.enter_context(raw_client(server)) for _ in range(25)]
        socks.append(stack.enter_context(raw_client(server, b"GET / HTTP/1.1\r\n")))
        server.wait_for_requests(25)
        connections = [server.wait_for_connection() for _ in socks]
        started = time.monotonic()
        server.stop()
        elapsed = time.monotonic() - started
        for sock in socks:
            # A FIN, or a reset where the server had not read all the client sent.
            with contextlib.suppress(ConnectionResetError):
                read_all(sock)
        server.stop()  # idempotent
    assert elapsed < 1.0, f"stop() took {elapsed:.3f} s"
    assert all(conn.closed for conn in connections)


def test_a_request_read_after_drop_all_takes_no_script(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # drop_all() between reading a request and choosing its script (called here from
    # the connection's own thread, which it does not join): the request used to be
    # recorded and take the queued script, which the next client then missed.
    read_request = Handler._read_request
    dropped = []

    def read_then_drop_all(handler: Handler) -> RecordedRequest:
        request = read_request(handler)
        if not dropped:  # the first connection only
            dropped.append(request)
            server.drop_all()
        return request

    monkeypatch.setattr(Handler, "_read_request", read_then_drop_all)
    server.enqueue(Script().event("first"), Script().event("second"))
    with raw_client(server) as sock, pytest.raises(ConnectionResetError):
        read_all(sock)
    server.wait_for_connection().wait_closed()
    assert server.requests == []
    assert b"data: first" in exchange(server, Script().event("third"))


def test_restart_on_the_same_port() -> None:
    with SSEServer() as first:
        first.enqueue(Script().hold())
        port = first.port
        with raw_client(first):  # a connection still open when the server dies
            first.wait_for_requests(1)
            first.stop()
            with SSEServer(port=port) as second:
                second.enqueue(Script().event("back"))
                assert requests.get(second.url, timeout=5).content == b"data: back\n\n"
    first.start()  # the same object restarts on its port, keeping its records
    try:
        assert first.port == port
        first.enqueue(Script().event("again"))
        assert requests.get(first.url, timeout=5).content == b"data: again\n\n"
        assert len(first.requests) == 2
    finally:
        first.stop()


@dataclass(frozen=True)
class Tls:
    ca: trustme.CA
    server_context: ssl.SSLContext
    cafile: str


@pytest.fixture(scope="module")
def tls() -> Iterator[Tls]:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    with ca.cert_pem.tempfile() as cafile:
        yield Tls(ca, context, cafile)


def test_tls_serves_https(tls: Tls) -> None:
    with SSEServer(ssl_context=tls.server_context) as server:
        assert server.url.startswith("https://127.0.0.1:")
        server.enqueue(Script(encoding="gzip").event("secure"), Script().event("b").drop())
        response = requests.get(server.url_for("/s"), verify=tls.cafile, timeout=5)
        assert response.content == b"data: secure\n\n"
        client_context = ssl.create_default_context()
        tls.ca.configure_trust(client_context)
        plain = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        with client_context.wrap_socket(plain, server_hostname="localhost") as sock:
            sock.sendall(GET)
            assert dechunk(split(read_all(sock))[2]) == ([b"data: b\n\n"], False)


def test_tls_stalled_handshake_blocks_nobody(tls: Tls) -> None:
    with SSEServer(ssl_context=tls.server_context) as server:
        server.default = Script().event("ok")
        with raw_client(server, b""):  # connects, never starts the handshake
            server.wait_for_connection()
            response = requests.get(server.url, verify=tls.cafile, timeout=5)
            assert response.content == b"data: ok\n\n"
            started = time.monotonic()
            server.stop()
            assert time.monotonic() - started < 1.0


def test_tls_client_refusing_the_certificate_is_quiet(tls: Tls) -> None:
    with SSEServer(ssl_context=tls.server_context) as server:
        with pytest.raises(requests.exceptions.SSLError):
            requests.get(server.url, verify=requests.utils.DEFAULT_CA_BUNDLE_PATH, timeout=5)
        server.wait_for_connection().wait_closed()
