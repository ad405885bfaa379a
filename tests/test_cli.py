"""The command-line tool, run as a real subprocess against the scripted test server.

Each test starts ``python -m eventstream`` with a timeout; the server runs in the test
process on 127.0.0.1, port 0.  Nothing sleeps: tests wait on the subprocess, its
output pipe (polled with a timeout) or the server's request log.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import eventstream
from eventstream import Event, Parser
from eventstream._cli import build_parser, main
from eventstream.testing import RecordedRequest, Script, SSEServer

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 30.0  # seconds any one run of the tool may take before the test fails
# A short reconnection time (ms) for scripts that end the body cleanly: the tool then
# reconnects quickly, gets the server's 204 default and exits 0.
QUICK = 50


def run_cli(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None, stdout: Any = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventstream", *args],
        input=stdin,
        stdout=subprocess.PIPE if stdout is None else stdout,
        stderr=subprocess.PIPE,
        encoding="utf-8",
        timeout=TIMEOUT,
        check=False,
        cwd=ROOT,
        env=env,
    )


def stdout_env(*, unbuffered: bool) -> dict[str, str]:
    """The environment with stdout's mode pinned: ``PYTHONUNBUFFERED`` makes
    ``sys.stdout.buffer`` a raw ``FileIO``, whose writes can be short."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"}
    if unbuffered:
        env["PYTHONUNBUFFERED"] = "1"
    return env


def start_cli(
    *args: str, stdout: Any = subprocess.PIPE, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    # A shell starts background jobs with SIGINT ignored, and an ignored signal stays
    # ignored across exec, so a suite run with `&` would give a child deaf to Ctrl-C.
    # Start it as from a terminal: a Python handler here becomes the default there.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "eventstream", *args],
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            encoding="utf-8",
            cwd=ROOT,
            env=env,
        )
    finally:
        signal.signal(signal.SIGINT, previous)


def read_line(stream: IO[str] | None, timeout: float = TIMEOUT) -> str:
    """The next line of a pipe, failing the test after ``timeout`` seconds.

    Safe for the first line the tool writes: it writes each event in one flushed write.
    """
    assert stream is not None
    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        assert selector.select(timeout), f"no output within {timeout} s"
    return stream.readline()


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as sse_server:
        sse_server.default = Script(204)  # what a reconnect gets: the stream ends, exit 0
        yield sse_server


def parse(text: str) -> list[Event]:
    return Parser().feed(text.encode("utf-8"))


SAMPLE = (
    Script()
    .event("hello", id="1", retry=QUICK)
    .event("two\nlines", event="tick", id="2")
    .event("")
    .event("ünïcode ✓")
    .close()
)
SAMPLE_EVENTS = [
    Event("message", "hello", "1", QUICK),
    Event("tick", "two\nlines", "2", QUICK),
    Event("message", "", "2", QUICK),
    Event("message", "ünïcode ✓", "2", QUICK),
]


# -- output formats -------------------------------------------------------------------


def test_text_format_writes_a_block_per_event_that_parses_back(server: SSEServer) -> None:
    server.enqueue(SAMPLE)
    result = run_cli(server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "event: message\nid: 1\nretry: 50\ndata: hello\n\n"
        "event: tick\nid: 2\ndata: two\ndata: lines\n\n"
        "event: message\nid: 2\ndata:\n\n"
        "event: message\nid: 2\ndata: ünïcode ✓\n\n"
    )
    assert parse(result.stdout) == SAMPLE_EVENTS


def test_text_format_parses_back_to_the_same_ids_when_one_is_reset(server: SSEServer) -> None:
    # "id: 1" was written for the first event, nothing for the second, whose ID the
    # server had reset: the output parsed back with "1" for both.
    server.enqueue(
        Script()
        .event("a", id="1", retry=QUICK)
        .send(b"id\ndata: b\n\n")  # the reset: the field with no value
        .event("c")
        .event("d", id="2")
        .close()
    )
    result = run_cli(server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "event: message\nid: 1\nretry: 50\ndata: a\n\n"
        "event: message\nid\ndata: b\n\n"
        "event: message\ndata: c\n\n"
        "event: message\nid: 2\ndata: d\n\n"
    )
    assert [(e.data, e.id) for e in parse(result.stdout)] == [
        ("a", "1"),
        ("b", ""),
        ("c", ""),
        ("d", "2"),
    ]


def test_json_format_writes_one_object_per_line(server: SSEServer) -> None:
    server.enqueue(Script().event("plain", id="7").event("x", event="e", id="8", retry=QUICK))
    result = run_cli("--format", "json", server.url)
    assert result.returncode == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"event": "message", "data": "plain", "id": "7"},
        {"event": "e", "data": "x", "id": "8", "retry": QUICK},
    ]


def test_data_format_writes_one_line_per_event_with_breaks_as_spaces(server: SSEServer) -> None:
    server.enqueue(SAMPLE)
    result = run_cli("--format", "data", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello\ntwo lines\n\nünïcode ✓\n"


# -- the request ----------------------------------------------------------------------


def test_headers_are_sent_and_repeated_names_joined(server: SSEServer) -> None:
    server.enqueue(Script().event("a", retry=QUICK))
    result = run_cli(
        "-H", "X-Token: abc", "-H", "X-Multi: 1", "-H", "x-multi:2", "-H", "X-Empty:", server.url
    )
    assert result.returncode == 0, result.stderr
    request = server.requests[0]
    assert request.method == "GET"
    assert request.headers["X-Token"] == "abc"
    assert request.headers.get_all("X-Multi") == ["1, 2"]
    assert request.headers["X-Empty"] == ""
    assert request.headers["Accept"] == "text/event-stream"


def test_data_is_sent_as_is_with_post_by_default(server: SSEServer) -> None:
    server.enqueue(Script().event("a", retry=QUICK))
    result = run_cli("-d", "a=1&b=2", server.url)
    assert result.returncode == 0, result.stderr
    request = server.requests[0]
    assert (request.method, request.body) == ("POST", b"a=1&b=2")
    assert "Content-Type" not in request.headers


def test_method_option_wins_over_the_post_default(server: SSEServer) -> None:
    server.enqueue(Script().event("a", retry=QUICK))
    result = run_cli("-X", "put", "-d", "x", server.url)
    assert result.returncode == 0, result.stderr
    assert server.requests[0].method == "PUT"


@pytest.mark.parametrize("source", ["file", "stdin"])
def test_data_is_read_from_a_file_or_stdin(server: SSEServer, tmp_path: Path, source: str) -> None:
    body = "line one\nline two\n"
    server.enqueue(Script().event("a", retry=QUICK))
    if source == "file":
        path = tmp_path / "body.txt"
        path.write_text(body, encoding="utf-8")
        result = run_cli("-d", f"@{path}", server.url)
    else:
        result = run_cli("-d", "@-", server.url, stdin=body)
    assert result.returncode == 0, result.stderr
    assert server.requests[0].body == body.encode()


def test_json_body_is_sent_as_typed_with_its_content_type(server: SSEServer) -> None:
    server.enqueue(Script().event("a", retry=QUICK))
    text = '{"prompt": "hi", "n": [1, 2.50]}'
    result = run_cli("--json", text, server.url)
    assert result.returncode == 0, result.stderr
    request = server.requests[0]
    assert (request.method, request.body) == ("POST", text.encode())
    assert request.headers["Content-Type"] == "application/json"


def test_last_event_id_option_is_sent(server: SSEServer) -> None:
    server.enqueue(Script().event("a", retry=QUICK))
    result = run_cli("--last-event-id", "41", server.url)
    assert result.returncode == 0, result.stderr
    assert server.requests[0].headers["Last-Event-ID"] == "41"


# -- how runs end -----------------------------------------------------------------------


def test_max_events_stops_after_n_events(server: SSEServer) -> None:
    server.enqueue(Script().event("1").event("2").event("3").hold())
    result = run_cli("-n", "2", "--format", "data", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n2\n"
    assert "--max-events" in result.stderr


def test_max_time_ends_a_silent_stream(server: SSEServer) -> None:
    server.enqueue(Script().event("only").hold())
    started = time.monotonic()
    result = run_cli("--max-time", "0.5", "--format", "data", server.url)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 0.5
    assert result.stdout == "only\n"
    assert "--max-time" in result.stderr


def test_idle_exit_waits_for_a_quiet_period(server: SSEServer) -> None:
    # Gaps shorter than the idle limit do not end the run; the silence after does.
    server.enqueue(Script().event("1").pause(0.2).event("2").pause(0.2).event("3").hold())
    result = run_cli("--idle-exit", "1", "--format", "data", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1\n2\n3\n"
    assert "--idle-exit" in result.stderr


def test_no_reconnect_ends_with_the_body(server: SSEServer) -> None:
    server.default = SSEServer.NO_SCRIPT  # a reconnect would get a 404 and exit 1
    server.enqueue(Script().event("a").event("b").close())
    result = run_cli("--no-reconnect", "--format", "data", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\nb\n"
    assert len(server.requests) == 1


def test_a_one_shot_request_says_when_it_retries(server: SSEServer) -> None:
    server.enqueue(Script(503, headers={"Retry-After": "0"}), Script().event("a").close())
    result = run_cli("--no-reconnect", "--format", "data", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\n"
    assert "HTTP 503" in result.stderr
    assert "; retrying in " in result.stderr
    assert "reconnecting" not in result.stderr


def test_a_dropped_connection_is_reported_and_resumed(server: SSEServer) -> None:
    server.enqueue(
        Script().event("a", id="1", retry=QUICK).drop(),
        Script().event("b", id="2").close(),
    )
    result = run_cli("--format", "data", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "a\nb\n"
    assert server.requests[1].headers["Last-Event-ID"] == "1"
    assert "; reconnecting" in result.stderr
    assert "reconnected to" in result.stderr


# -- the state file ---------------------------------------------------------------------


def numbered(request: RecordedRequest) -> Script:
    """Events 1 to 6, starting after the request's Last-Event-ID."""
    last = request.headers.get("Last-Event-ID")
    script = Script()
    for n in range(int(last or 0) + 1, 7):
        script = script.event(f"event {n}", id=str(n))
    return script.hold()


@pytest.mark.parametrize("mode", [[], ["--no-reconnect"]], ids=["stream", "one-shot"])
def test_state_file_carries_the_resume_point_across_runs(
    server: SSEServer, tmp_path: Path, mode: list[str]
) -> None:
    server.route("/feed", numbered)
    state = tmp_path / "feed.id"
    args = [*mode, "--state", str(state), "-n", "2", "--format", "data", server.url_for("/feed")]

    first = run_cli(*args)
    assert first.returncode == 0, first.stderr
    assert first.stdout == "event 1\nevent 2\n"
    assert state.read_text(encoding="utf-8") == "2\n"

    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert second.stdout == "event 3\nevent 4\n"
    assert state.read_text(encoding="utf-8") == "4\n"
    assert "Last-Event-ID" not in server.requests[0].headers
    assert server.requests[1].headers["Last-Event-ID"] == "2"
    assert list(tmp_path.iterdir()) == [state]  # no temporary file left behind


def test_state_file_wins_over_last_event_id(server: SSEServer, tmp_path: Path) -> None:
    server.enqueue(Script().event("a", retry=QUICK))
    state = tmp_path / "feed.id"
    state.write_text("9\n", encoding="utf-8")
    result = run_cli("--state", str(state), "--last-event-id", "3", server.url)
    assert result.returncode == 0, result.stderr
    assert server.requests[0].headers["Last-Event-ID"] == "9"


def test_an_unreadable_state_file_is_a_fatal_error(server: SSEServer, tmp_path: Path) -> None:
    state = tmp_path / "feed.id"
    state.write_text("two\nlines\n", encoding="utf-8")
    result = run_cli("-q", "--state", str(state), server.url)
    assert result.returncode == 1
    assert (
        result.stderr == f"eventstream: error: the state file {state} does not hold one event ID\n"
    )
    assert server.requests == []


# -- errors, signals, pipes -------------------------------------------------------------


def test_fatal_http_error_is_one_line_and_exit_1(server: SSEServer) -> None:
    server.default = SSEServer.NO_SCRIPT
    result = run_cli("-q", server.url_for("/missing"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"eventstream: error: HTTP 404 from {server.url_for('/missing')}: Not Found: "
        "no script for this request"
    ]


def test_wrong_content_type_is_fatal_without_a_traceback(server: SSEServer) -> None:
    server.enqueue(Script(headers={"Content-Type": "text/html"}).send(b"<html></html>"))
    result = run_cli(server.url)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("eventstream: error: expected Content-Type")


def test_bad_arguments_exit_2_with_usage_and_no_traceback() -> None:
    result = run_cli("--timeout", "soon", "http://127.0.0.1:9/")
    assert result.returncode == 2
    assert result.stderr.startswith("usage: eventstream")
    assert result.stderr.splitlines()[-1].startswith("eventstream: error: argument --timeout")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("option", ["--max-time", "--idle-exit", "--fail-after", "--read-timeout"])
def test_seconds_past_the_longest_wait_are_refused(server: SSEServer, option: str) -> None:
    # --max-time and --idle-exit of 1e10 crashed the watchdog thread (a traceback,
    # the limit ignored); a read timeout that long failed after "connecting".
    server.default = Script().event("a").hold()
    result = run_cli("-n", "1", option, "1e10", server.url)
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"eventstream: error: argument {option}: "
        "expected at most 2147483.647 seconds (about 24.8 days), not '1e10'"
    )
    assert server.requests == []
    longest = build_parser().parse_args([option, "2147483.647", server.url])
    assert vars(longest)[option[2:].replace("-", "_")] == 2147483.647


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["ftp://example.com/"],
        ["--demo", "http://127.0.0.1:9/"],
        ["-H", "no colon", "http://127.0.0.1:9/"],
        ["-H", "Bad Name: x", "http://127.0.0.1:9/"],
        ["-H", "X-Evil: a\rb", "http://127.0.0.1:9/"],
        ["-X", "GET /x", "http://127.0.0.1:9/"],
        ["--timeout", "0", "http://127.0.0.1:9/"],
        ["--timeout", "1,2,3", "http://127.0.0.1:9/"],
        ["-n", "0", "http://127.0.0.1:9/"],
        ["--idle-exit", "nan", "http://127.0.0.1:9/"],
        ["--max-time", "-1", "http://127.0.0.1:9/"],
        ["--json", "{nope", "http://127.0.0.1:9/"],
        ["-d", "x", "--json", "1", "http://127.0.0.1:9/"],
        ["-d", "@/nonexistent/body", "http://127.0.0.1:9/"],
        ["--last-event-id", "a\nb", "http://127.0.0.1:9/"],
        ["--state", "/nonexistent/dir/state", "http://127.0.0.1:9/"],
        ["--format", "xml", "http://127.0.0.1:9/"],
    ],
)
def test_bad_arguments_are_usage_errors(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # In the test process: argparse exits before any stream or thread exists.
    with pytest.raises(SystemExit) as exited:
        main(args)
    assert exited.value.code == 2
    assert "usage: eventstream" in capsys.readouterr().err


def test_a_bad_header_is_reported_without_its_value(capsys: pytest.CaptureFixture[str]) -> None:
    for header in ("Authorization Bearer s3cret", "Bad Name: s3cret"):
        with pytest.raises(SystemExit):
            main(["-H", header, "http://127.0.0.1:9/"])
        assert "s3cret" not in capsys.readouterr().err


def test_ctrl_c_stops_cleanly_with_status_130(server: SSEServer) -> None:
    server.enqueue(Script().event("first").hold())
    with start_cli("--format", "data", server.url) as process:
        try:
            assert read_line(process.stdout) == "first\n"
            process.send_signal(signal.SIGINT)
            _, stderr = process.communicate(timeout=TIMEOUT)
        finally:
            process.kill()  # no-op once it has exited
    assert process.returncode == 130
    assert "Traceback" not in stderr
    assert "interrupted" in stderr


def test_a_closed_stdout_ends_the_run_quietly(server: SSEServer) -> None:
    gate = threading.Event()
    server.enqueue(Script().event("first").wait(gate).event("second").event("third").hold())
    with start_cli("--format", "data", server.url) as process:
        try:
            assert read_line(process.stdout) == "first\n"
            assert process.stdout is not None
            process.stdout.close()  # as `| head -1` does
            gate.set()
            process.wait(timeout=TIMEOUT)
        finally:
            gate.set()
            process.kill()
        assert process.stderr is not None
        stderr = process.stderr.read()
    assert process.returncode == 0
    assert "Traceback" not in stderr
    assert "error" not in stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_a_failed_stdout_is_one_error_line_and_exit_1(
    server: SSEServer, tmp_path: Path, unbuffered: bool
) -> None:
    # Buffered, the event stayed in stdout's buffer and the interpreter's last flush
    # failed again: exit 120 and "Exception ignored ... OSError".
    server.default = Script().event("a", id="1").hold()
    state = tmp_path / "feed.id"
    with open("/dev/full", "w") as full:
        result = run_cli(
            "-q",
            "--state",
            str(state),
            server.url,
            stdout=full,
            env=stdout_env(unbuffered=unbuffered),
        )
    assert (result.returncode, result.stderr) == (
        1,
        "eventstream: error: cannot write to stdout: [Errno 28] No space left on device\n",
    )
    assert not state.exists()  # the event was not written: its ID is not saved


# -- quiet, demo, entry points ----------------------------------------------------------


def test_status_lines_go_to_stderr_unless_quiet(server: SSEServer) -> None:
    server.enqueue(SAMPLE)
    loud = run_cli("--format", "data", server.url)
    server.enqueue(SAMPLE)
    quiet = run_cli("-q", "--format", "data", server.url)
    assert loud.returncode == quiet.returncode == 0
    assert loud.stdout == quiet.stdout
    assert [line.split(" ")[1] for line in loud.stderr.splitlines()] == [
        "connecting",  # to URL
        "connected",  # to URL (HTTP 200 OK)
        "the",  # server ended the stream; reconnecting in N s
        "HTTP",  # 204 from URL: no more events
        "the",  # stream has ended
    ]
    assert quiet.stderr == ""


def test_comments_show_on_stderr_with_the_comments_flag(server: SSEServer) -> None:
    script = Script().send(b": ping\n").event("a", retry=QUICK).send(b":pong\n\n")
    server.enqueue(script)
    plain = run_cli("--format", "data", server.url)
    server.enqueue(script)
    shown = run_cli("--comments", "--format", "data", server.url)
    assert plain.returncode == shown.returncode == 0
    assert plain.stdout == shown.stdout == "a\n"  # stdout stays events only
    assert "comment" not in plain.stderr
    comments = [line for line in shown.stderr.splitlines() if ": comment: " in line]
    assert comments == ["eventstream: comment: ping", "eventstream: comment: pong"]


def test_demo_runs_against_its_built_in_server() -> None:
    result = run_cli("--demo", "--format", "json")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["id"] for event in events] == ["1", "2", "3", "4", "5"]
    assert {event["event"] for event in events} == {"message", "chat", "progress"}
    assert "demo server listening at http://127.0.0.1:" in result.stderr
    assert "reconnected to" in result.stderr


def test_version_through_python_m_and_the_console_script() -> None:
    result = run_cli("--version")
    assert (result.returncode, result.stdout) == (0, f"eventstream {eventstream.__version__}\n")
    script = Path(sys.executable).with_name("eventstream")
    if not script.exists():
        pytest.skip("the package is not installed with its console script")
    installed = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert installed.stdout == result.stdout
