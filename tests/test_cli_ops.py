"""The command-line tool as cron and operators run it: exit statuses for outages, TLS
and proxy options, one request for a body, signals in every state, unusable URLs.

Each run is a real ``python -m eventstream`` subprocess against a server on
127.0.0.1 (the scripted test server, or a bare socket where a state needs one that
never answers).  Nothing sleeps: tests wait on the process, its pipes or the server.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import random
import selectors
import signal
import socket
import ssl
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
import trustme
from test_cli import TIMEOUT, read_line, run_cli, start_cli, stdout_env

from eventstream import EventStream
from eventstream._cli import main
from eventstream._cli_health import Health
from eventstream._cli_output import Output, Reporter
from eventstream._cli_run import Config, run
from eventstream._cli_signals import Terminated
from eventstream.testing import RecordedRequest, Script, SSEServer

UNHEALTHY = 3
#: The issue's bound for Ctrl-C, in every state.
CTRL_C_LIMIT = 0.2


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as sse_server:
        sse_server.default = Script(204)
        yield sse_server


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[SSEServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    with SSEServer(ssl_context=context) as sse_server:
        sse_server.default = Script().event("secure").hold()
        yield sse_server


@pytest.fixture
def silent_listener() -> Iterator[socket.socket]:
    """A socket that accepts connections and never says a byte."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(TIMEOUT)
        yield listener


def refused_url() -> str:
    with socket.socket() as probe:  # a port that was free a moment ago: refused now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def assert_one_unhealthy_line(result_stderr: str, *fragments: str) -> None:
    lines = result_stderr.splitlines()
    assert len(lines) == 1, result_stderr
    assert lines[0].startswith("eventstream: error: unhealthy: no connection in "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0]


# -- exit statuses: a retried outage never looks like success ----------------------------


def test_refused_for_the_whole_run_exits_3() -> None:
    result = run_cli("-q", "--max-time", "1", refused_url())
    assert (result.returncode, result.stdout) == (UNHEALTHY, "")
    assert_one_unhealthy_line(result.stderr, "ConnectionRefusedError")


def test_a_dns_failure_for_the_whole_run_exits_3() -> None:
    # .invalid never resolves (RFC 6761); whether the resolver answers at once or
    # not at all, the run ends at --max-time with the stream down.
    result = run_cli("-q", "--max-time", "1", "http://eventstream-test.invalid/")
    assert (result.returncode, result.stdout) == (UNHEALTHY, "")
    assert_one_unhealthy_line(result.stderr)


def test_an_untrusted_certificate_exits_3(tls_server: SSEServer) -> None:
    result = run_cli("-q", "--max-time", "1", tls_server.url)
    assert (result.returncode, result.stdout) == (UNHEALTHY, "")
    assert_one_unhealthy_line(result.stderr, "CERTIFICATE_VERIFY_FAILED")


def test_5xx_for_the_whole_run_exits_3(server: SSEServer) -> None:
    server.default = Script(503, headers={"Retry-After": "0"})
    result = run_cli("-q", "--max-time", "1", server.url)
    assert (result.returncode, result.stdout) == (UNHEALTHY, "")
    assert_one_unhealthy_line(result.stderr, "HTTP 503")


def test_a_server_that_never_answers_exits_3_in_time(server: SSEServer) -> None:
    server.default = Script.no_response()
    started = time.monotonic()
    result = run_cli("-q", "--max-time", "1", server.url)
    assert time.monotonic() - started < 1 + 2.0  # not the 60 s read timeout
    assert (result.returncode, result.stdout) == (UNHEALTHY, "")
    assert_one_unhealthy_line(result.stderr, "no answer yet")


def test_a_healthy_quiet_stream_still_exits_0(server: SSEServer) -> None:
    server.default = Script().event("one", id="1").hold()
    result = run_cli("-q", "--max-time", "0.5", "--format", "data", server.url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "one\n", "")


def test_max_retries_gives_up_with_status_3(server: SSEServer) -> None:
    server.default = Script(503, headers={"Retry-After": "0"})
    result = run_cli("-q", "--max-retries", "2", server.url)
    assert result.returncode == UNHEALTHY
    assert len(server.requests) == 3  # the first attempt and two retries
    (line,) = result.stderr.splitlines()
    assert line.startswith("eventstream: error: gave up after 3 consecutive failed attempts")
    assert "HTTP 503" in line


def test_fail_after_gives_up_with_status_3() -> None:
    started = time.monotonic()
    result = run_cli("-q", "--fail-after", "0.5", refused_url())
    assert result.returncode == UNHEALTHY
    # The first wait (1 s or more) would pass 0.5 s: given up at once, not after it.
    assert time.monotonic() - started < TIMEOUT
    (line,) = result.stderr.splitlines()
    assert line.startswith("eventstream: error: gave up after 1 consecutive failed attempts")
    assert "would reach max_elapsed=0.5 s; the last: " in line


#: A connection accepted, then ended cleanly with no event (a 10 ms reconnection time).
EMPTY = Script().send(b"retry: 10\n\n").close()


def test_max_retries_counts_every_end_since_the_last_healthy_connection(
    server: SSEServer,
) -> None:
    # As --help and the README say: a connection that ends, even cleanly, before an
    # event counts; one that delivered an event starts the count again.
    server.enqueue(EMPTY, Script().event("up", retry=10).close(), EMPTY)
    server.default = EMPTY
    result = run_cli("-q", "--max-retries", "2", "--format", "data", server.url)
    assert (result.returncode, result.stdout) == (UNHEALTHY, "up\n")
    assert len(server.requests) == 4  # the event's connection, then two retries
    assert result.stderr.startswith("eventstream: error: gave up after 3 consecutive")


def test_fail_after_counts_connections_that_deliver_no_event(server: SSEServer) -> None:
    # Each attempt connects (HTTP 200) and ends at once: no healthy connection, so
    # the clock of --fail-after runs on from the start.
    server.default = EMPTY
    result = run_cli("-q", "--fail-after", "0.3", server.url)
    assert result.returncode == UNHEALTHY
    assert result.stderr.startswith("eventstream: error: gave up after")
    assert len(server.requests) > 1


def test_a_signal_during_an_outage_reports_it(server: SSEServer) -> None:
    server.default = Script(503, headers={"Retry-After": "30"})
    with start_cli(server.url) as process:
        wait_for_stderr(process.stderr, "reconnecting in")
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.splitlines()[0] == "eventstream: terminated"
    assert_one_unhealthy_line(stderr.splitlines()[1], "HTTP 503")


def test_health_forgives_a_short_blip_but_not_a_long_outage() -> None:
    now = [100.0]
    health = Health(grace=10.0, clock=lambda: now[0])
    assert health.problem() is not None  # never connected
    health.opened()
    health.event()
    assert health.problem() is None
    now[0] += 30
    health.failed(ConnectionError("refused"))
    now[0] += 9.9
    assert health.problem() is None  # down for less than the grace
    health.failed(ConnectionError("refused again"))
    now[0] += 0.1
    problem = health.problem()
    assert problem == "failing for the last 10.0 s; the last error: refused again"
    health.opened()
    health.event()
    assert health.problem() is None


def test_health_sees_a_server_that_accepts_and_drops_as_down() -> None:
    now = [0.0]
    health = Health(grace=10.0, clock=lambda: now[0])
    for _ in range(20):  # open, drop at once, reconnect: no event, for 20 s
        health.opened()
        now[0] += 0.5
        health.failed(ConnectionResetError("dropped"))
        now[0] += 0.5
    health.opened()  # the run ends while one of those short connections is open
    assert health.problem() == "failing for the last 19.5 s; the last error: dropped"


def test_health_counts_a_lasting_connection_as_up() -> None:
    now = [0.0]
    health = Health(grace=10.0, clock=lambda: now[0])
    health.opened()
    health.failed(ConnectionResetError("dropped"))
    health.opened()  # a quiet stream: no event, but the connection lasts
    now[0] += 60
    assert health.problem() is None
    health.failed(TimeoutError("idle"))  # the read timeout drops it: a new outage
    now[0] += 1
    assert health.problem() is None


# -- one request with a body or another method -------------------------------------------


@pytest.mark.parametrize(
    "args", [["--json", '{"q": 1}'], ["-d", "x"], ["-X", "DELETE"]], ids=["json", "data", "method"]
)
def test_a_body_or_another_method_makes_one_request(server: SSEServer, args: list[str]) -> None:
    server.enqueue(Script().event("answer", retry=10).close())
    result = run_cli(*args, "--format", "data", server.url)
    assert (result.returncode, result.stdout) == (0, "answer\n"), result.stderr
    assert len(server.requests) == 1


def test_reconnect_sends_a_post_again_when_asked(server: SSEServer) -> None:
    server.enqueue(Script().event("answer", retry=10).close())
    result = run_cli("--json", "{}", "--reconnect", "--format", "data", server.url)
    assert (result.returncode, result.stdout) == (0, "answer\n"), result.stderr
    assert [request.method for request in server.requests] == ["POST", "POST"]


@pytest.mark.parametrize(
    ("saved", "sent"),
    [("café-7", "café-7".encode().decode("latin-1")), (" 7", "7"), (" ", None)],
    ids=["non-ascii", "leading-space", "only-space"],
)
@pytest.mark.parametrize("given", ["state", "option"])
def test_a_one_request_run_sends_the_resume_id_as_a_stream_does(
    server: SSEServer, tmp_path: Path, saved: str, sent: str | None, given: str
) -> None:
    # The ID went into the header as it was: "café-7" failed to encode and " 7" was
    # refused by requests, exit 2 on every run of a cron job.  A stream sends the
    # UTF-8 bytes, without leading blanks, and no header when nothing is left.
    state = tmp_path / "feed.id"
    resume = ["--state", str(state)] if given == "state" else ["--last-event-id", saved]
    for args in (["-d", "x"], []):  # one request, then a stream
        server.enqueue(Script().event("answer", id="8", retry=10).close())
        if given == "state":
            state.write_text(saved + "\n", encoding="utf-8")
        result = run_cli("-q", *args, *resume, "--format", "data", server.url)
        assert (result.returncode, result.stdout, result.stderr) == (0, "answer\n", "")
    one_request, stream = server.requests[:2]  # then the stream's reconnect, given 204
    assert one_request.method == "POST"
    assert one_request.headers.get("Last-Event-ID") == stream.headers.get("Last-Event-ID") == sent


def test_help_says_a_body_means_one_request() -> None:
    text = " ".join(run_cli("--help").stdout.split())
    assert "makes ONE request" in text
    assert "--reconnect" in text


# -- TLS, proxy, limits ------------------------------------------------------------------


def test_cacert_trusts_a_private_ca(tls_server: SSEServer, ca: trustme.CA, tmp_path: Path) -> None:
    cafile = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(cafile))
    result = run_cli("-q", "-n", "1", "--format", "data", "--cacert", str(cafile), tls_server.url)
    assert (result.returncode, result.stdout, result.stderr) == (0, "secure\n", "")


def test_insecure_skips_verification_and_warns_even_when_quiet(tls_server: SSEServer) -> None:
    result = run_cli("-q", "-k", "-n", "1", "--format", "data", tls_server.url)
    assert (result.returncode, result.stdout) == (0, "secure\n")
    assert result.stderr.splitlines() == [
        "eventstream: warning: --insecure: TLS certificates and host names are not checked"
    ]


def test_client_certificate_and_key(ca: trustme.CA, tmp_path: Path) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED  # the server asks for a client certificate
    client = ca.issue_cert("client@example.com")
    cafile, certfile, keyfile = (tmp_path / name for name in ("ca.pem", "me.pem", "me.key"))
    ca.cert_pem.write_to_path(str(cafile))
    client.cert_chain_pems[0].write_to_path(str(certfile))
    client.private_key_pem.write_to_path(str(keyfile))
    with SSEServer(ssl_context=context) as tls:
        tls.default = Script().event("mutual").hold()
        base = ["-q", "-n", "1", "--format", "data", "--cacert", str(cafile)]
        with_cert = run_cli(*base, "--cert", str(certfile), "--key", str(keyfile), tls.url)
        without = run_cli(*base, "--max-time", "1", tls.url)
    assert (with_cert.returncode, with_cert.stdout) == (0, "mutual\n"), with_cert.stderr
    assert without.returncode == UNHEALTHY


def test_proxy_option_wins_over_the_environment(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", refused_url())  # would fail every request
    server.default = Script().event("via proxy").hold()
    target = "http://stream.invalid/feed"  # never resolved: the proxy gets the request
    result = run_cli("-n", "1", "--format", "data", "--proxy", server.url, target)
    assert (result.returncode, result.stdout) == (0, "via proxy\n"), result.stderr
    assert server.requests[0].target == target


def test_max_event_size_skips_a_larger_event(server: SSEServer) -> None:
    server.enqueue(Script().event("x" * 100).event("small", retry=10).close())
    result = run_cli("--max-event-size", "50", "--format", "data", server.url)
    assert (result.returncode, result.stdout) == (0, "small\n"), result.stderr
    assert "skipped an event" in result.stderr


def test_read_timeout_option_drops_a_silent_connection(server: SSEServer) -> None:
    server.enqueue(Script().event("a", retry=10).hold(), Script().event("b").close())
    result = run_cli("--timeout", "5,60", "--read-timeout", "0.3", "--format", "data", server.url)
    assert (result.returncode, result.stdout) == (0, "a\nb\n"), result.stderr
    assert "within the read timeout; reconnecting" in result.stderr


def test_connect_timeout_option_bounds_the_tls_handshake(silent_listener: socket.socket) -> None:
    port = silent_listener.getsockname()[1]
    args = ["-q", "--connect-timeout", "0.3", "--max-retries", "0", f"https://127.0.0.1:{port}/"]
    started = time.monotonic()
    with start_cli(*args) as process:
        connection, _ = silent_listener.accept()
        with connection:
            _, stderr = process.communicate(timeout=TIMEOUT)
    assert time.monotonic() - started < 10  # not the 60 s read timeout
    assert process.returncode == UNHEALTHY
    assert stderr.startswith("eventstream: error: gave up after 1 consecutive failed attempts")


# -- unusable URLs -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://", "names no host"),
        ("http://127.0.0.1:99999/", "Port out of range"),
        ("http://exa mple.com/", "not allowed"),
        ("https://[::1/", "Invalid IPv6 URL"),
        ("ftp://example.com/", "http:// or https://"),
    ],
)
def test_an_unusable_url_exits_2_with_the_reason(
    url: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([url])
    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("eventstream: error: unusable URL")
    assert reason in last


def test_an_unusable_url_never_shows_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["http://user:s3cret@host:99999/"])
    assert "s3cret" not in capsys.readouterr().err


# -- Ctrl-C in every state ---------------------------------------------------------------


def interrupt(process: subprocess.Popen[str], *, sig: int = signal.SIGINT) -> float:
    """Send ``sig`` and return the seconds until the process has exited."""
    started = time.monotonic()
    process.send_signal(sig)
    process.wait(timeout=TIMEOUT)
    elapsed = time.monotonic() - started
    print(f"signal {sig} to exit: {elapsed * 1000:.1f} ms")  # shown with -s
    return elapsed


def wait_for_stderr(stream: IO[str] | None, text: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while text not in read_line(stream, max(0.0, deadline - time.monotonic())):
        pass


def test_ctrl_c_while_connecting(silent_listener: socket.socket) -> None:
    # The TLS handshake with a server that never answers it: nothing can cut it short.
    port = silent_listener.getsockname()[1]
    with start_cli("-q", f"https://127.0.0.1:{port}/") as process:
        connection, _ = silent_listener.accept()
        with connection:
            elapsed = interrupt(process)
    assert process.returncode == 130
    assert elapsed < CTRL_C_LIMIT


def test_ctrl_c_while_waiting_for_headers(server: SSEServer) -> None:
    server.default = Script.no_response()
    with start_cli("-q", server.url) as process:
        server.wait_for_requests(1)
        elapsed = interrupt(process)
    assert process.returncode == 130
    assert elapsed < CTRL_C_LIMIT


def test_ctrl_c_while_reading(server: SSEServer) -> None:
    server.default = Script().event("first").hold()
    with start_cli("--format", "data", server.url) as process:
        assert read_line(process.stdout) == "first\n"
        elapsed = interrupt(process)
    assert process.returncode == 130
    assert elapsed < CTRL_C_LIMIT


def test_ctrl_c_while_backing_off(server: SSEServer) -> None:
    server.default = Script(503, headers={"Retry-After": "30"})
    with start_cli(server.url) as process:
        wait_for_stderr(process.stderr, "reconnecting in")
        elapsed = interrupt(process)
    assert process.returncode == 130
    assert elapsed < CTRL_C_LIMIT


def test_sigterm_while_waiting_for_headers_exits_143(server: SSEServer) -> None:
    server.default = Script.no_response()
    with start_cli("-q", server.url) as process:
        server.wait_for_requests(1)
        elapsed = interrupt(process, sig=signal.SIGTERM)
    assert process.returncode == 128 + signal.SIGTERM
    assert elapsed < CTRL_C_LIMIT


def test_a_second_sigterm_while_stopping_still_exits_143(
    server: SSEServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A service manager may send SIGTERM again while the run stops its stream: the
    # handler raises Terminated there too, and the status must still say terminated.
    server.default = Script().event("1", id="1").pause(30)
    stopped = []
    stop = EventStream.stop

    def stop_then_terminated(self: EventStream, timeout: float | None = None) -> bool:
        stopped.append(stop(self, timeout))
        raise Terminated

    monkeypatch.setattr(EventStream, "stop", stop_then_terminated)
    assert main(["-q", "--max-events", "1", "--format", "data", server.url]) == 128 + signal.SIGTERM
    assert stopped == [True]  # the worker was stopped before the second signal
    assert capsys.readouterr().out.strip() == "1"


def test_a_silent_server_is_reported_before_the_read_timeout(server: SSEServer) -> None:
    # In-process, to shorten the notice's delay: run() is what main() calls.
    server.default = Script.no_response()
    stderr, stdout = io.StringIO(), io.StringIO()
    config = Config(url=server.url, timeout=(1.0, 0.8), max_time=0.6, slow_notice=0.2)
    outcome = run(config, Reporter(stderr, quiet=False), Output(stdout))
    assert outcome.status == UNHEALTHY
    lines = stderr.getvalue().splitlines()
    assert lines[1] == (
        f"eventstream: no answer from {server.url} after 0.2 s; "
        "waiting up to the read timeout (0.8 s, --read-timeout)"
    )
    assert lines[-1].startswith("eventstream: error: unhealthy: no connection in 0.6 s")


# -- --state under SIGTERM ----------------------------------------------------------------


def busy_feed(request: RecordedRequest) -> Script:
    """Numbered events after the request's Last-Event-ID, in bursts, then the body ends."""
    start = int(request.headers.get("Last-Event-ID", "0"))
    script = Script()
    for n in range(start + 1, start + 101):
        script = script.event(str(n), id=str(n), retry=10)
        if n % 10 == 0:
            script = script.pause(0.01)
    return script


def test_sigterm_never_splits_an_event_from_its_saved_id(server: SSEServer, tmp_path: Path) -> None:
    # SIGTERM waits for the event being written and its ID being saved: runs stopped
    # at random points, then a last one, write every event exactly once.
    server.default = busy_feed
    state, output = tmp_path / "feed.id", tmp_path / "feed.jsonl"
    args = ["-q", "--state", str(state), "--format", "json", server.url]
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for attempt in range(12):
        before = output.stat().st_size if output.exists() else 0
        with output.open("ab") as sink, start_cli(*args, stdout=sink) as process:
            deadline = time.monotonic() + TIMEOUT
            # Every other run is stopped once events flow, the others at any point.
            while attempt % 2 and output.stat().st_size == before and time.monotonic() < deadline:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(timeout=0.01)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=rng.uniform(0.0, 0.5))
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=TIMEOUT) in (143, -signal.SIGTERM), seed
    with output.open("ab") as sink, start_cli("--max-time", "1", *args, stdout=sink) as last:
        assert last.wait(timeout=TIMEOUT) == 0
    ids = [int(json.loads(line)["id"]) for line in output.read_text().splitlines()]
    assert ids == list(range(1, len(ids) + 1)), seed  # none lost, none repeated
    assert state.read_text() == f"{ids[-1]}\n"


class BlockedWrite:
    """A pipe for the tool's stdout, and the test's end of it, which reads nothing
    until asked: an event larger than the pipe blocks the tool in its write."""

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        try:
            # Linux's F_GETPIPE_SZ, which Python names from 3.10 on.
            self.capacity = fcntl.fcntl(self.write_end, getattr(fcntl, "F_GETPIPE_SZ", 1032))
        except BaseException:
            self.close()
            raise

    def wait_until_full(self) -> None:
        # Bounded polling of the pipe's fill (accepted: nothing else tells when the
        # tool is blocked in its write).
        deadline = time.monotonic() + TIMEOUT
        while self.unread() < self.capacity:
            assert time.monotonic() < deadline, "the pipe never filled"
            threading.Event().wait(0.001)

    def unread(self) -> int:
        count = fcntl.ioctl(self.read_end, termios.FIONREAD, b"\0" * 4)
        return int(struct.unpack("i", count)[0])

    def read_to_end(self) -> bytes:
        chunks = []
        with selectors.DefaultSelector() as selector:
            selector.register(self.read_end, selectors.EVENT_READ)
            while True:
                assert selector.select(TIMEOUT), f"no end of output within {TIMEOUT} s"
                chunk = os.read(self.read_end, 1 << 16)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)

    def close_write_end(self) -> None:
        """The tool's end, once it has its own copy."""
        if self.write_end >= 0:
            os.close(self.write_end)
            self.write_end = -1

    def close_read_end(self) -> None:
        """The reader's end: the tool's writes fail with EPIPE."""
        if self.read_end >= 0:
            os.close(self.read_end)
            self.read_end = -1

    def close(self) -> None:
        self.close_write_end()
        self.close_read_end()


@pytest.fixture
def blocked_write() -> Iterator[BlockedWrite]:
    if sys.platform != "linux":
        pytest.skip("a pipe's size and fill are asked the Linux way")
    pipe = BlockedWrite()
    try:
        yield pipe
    finally:
        pipe.close()


@contextlib.contextmanager
def terminated_in_a_write(
    blocked_write: BlockedWrite, args: list[str], unbuffered: bool
) -> Iterator[subprocess.Popen[str]]:
    """The tool, its stdout the pipe nobody reads, blocked writing an event; then
    SIGTERM.  Killed on the way out, if still running."""
    env = stdout_env(unbuffered=unbuffered)
    with start_cli(*args, stdout=blocked_write.write_end, env=env) as process:
        try:
            blocked_write.close_write_end()
            blocked_write.wait_until_full()
            process.send_signal(signal.SIGTERM)
            yield process
        finally:
            process.kill()  # no-op once it has exited


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_sigterm_during_a_blocked_write_lets_the_whole_event_out_first(
    server: SSEServer, tmp_path: Path, blocked_write: BlockedWrite, unbuffered: bool
) -> None:
    # Unbuffered, the signal made the blocked write return a short count, and the
    # event's ID was saved with only part of the event written: lost for good.
    big = "x" * (2 * blocked_write.capacity)
    server.default = Script().event(big, id="1").event(big, id="2").hold()
    state = tmp_path / "feed.id"
    args = ["-q", "--state", str(state), "--format", "data", server.url]
    with terminated_in_a_write(blocked_write, args, unbuffered) as process:
        output = blocked_write.read_to_end()
        assert process.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
    assert output == (big + "\n").encode()
    assert state.read_text() == "1\n"


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_sigterm_during_a_write_that_then_fails_still_exits_143(
    server: SSEServer, tmp_path: Path, blocked_write: BlockedWrite, unbuffered: bool
) -> None:
    # The signal waited for the write, which then failed (the reader left): the
    # run ended as for a closed stdout, status 0, the signal forgotten.
    big = "x" * (2 * blocked_write.capacity)
    server.default = Script().event(big, id="1").hold()
    state = tmp_path / "feed.id"
    args = ["-q", "--state", str(state), "--format", "data", server.url]
    with terminated_in_a_write(blocked_write, args, unbuffered) as process:
        blocked_write.close_read_end()  # the write fails with EPIPE
        assert process.wait(timeout=TIMEOUT) == 128 + signal.SIGTERM
        assert process.stderr is not None
        assert "Traceback" not in process.stderr.read()
    assert not state.exists()  # the event was not written: its ID is not saved
