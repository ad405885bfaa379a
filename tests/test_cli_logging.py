"""The library's log, which ``eventstream -v`` and ``logging.basicConfig`` show:
retried errors at WARNING (the first, then one line per interval), fatal errors at
ERROR, connects and the read path at DEBUG.  Streams run against a real server on
127.0.0.1, or a port that refuses."""

from __future__ import annotations

import logging
import socket

import pytest

from eventstream import Backoff, EventStream, RetriesExhausted
from eventstream._retrylog import RetryLog
from eventstream.testing import Script, SSEServer

QUICK = Backoff(initial=0.01, maximum=0.01, jitter=0.0)


def refused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and r.name.startswith("eventstream")
    ]


def test_retry_log_warns_once_then_summarises_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = RetryLog(logging.getLogger("eventstream.test"), "http://h/", clock=lambda: now[0])
    caplog.set_level(logging.DEBUG, logger="eventstream")
    for _ in range(5):  # a flapping server: five failures in two seconds
        log.failed(ConnectionError("refused"), 0.5)
        now[0] += 0.4
    log.connected(200)  # connected again after a logged failure: said once, at INFO
    log.connected(200)
    now[0] = 31.0
    log.failed(ConnectionError("still refused"), 1.0)
    assert messages(caplog, logging.WARNING) == [
        "refused; reconnecting in 0.5 s",
        "still refused; reconnecting in 1.0 s (5 failures since the last warning)",
    ]
    assert messages(caplog, logging.INFO) == ["http://h/: connected again (HTTP 200)"]
    assert len(messages(caplog, logging.DEBUG)) == 4 + 1  # 4 failures, 1 quiet connect


def test_a_stream_retrying_against_a_refused_port_warns_and_then_errors(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventstream")
    url = refused_url()
    backoff = Backoff(initial=0.01, maximum=0.01, jitter=0.0, max_attempts=6)
    with pytest.raises(RetriesExhausted):
        list(EventStream(url, backoff=backoff))
    warnings = messages(caplog, logging.WARNING)
    assert len(warnings) == 1  # six failures in milliseconds: one line
    assert warnings[0].startswith(f"cannot connect to {url}: ConnectionRefusedError")
    (error,) = messages(caplog, logging.ERROR)
    assert error.startswith(f"{url}: the stream failed: gave up after 6 consecutive")
    assert messages(caplog, logging.DEBUG).count(f"connecting to {url}") == 6


def test_connects_and_the_read_path_are_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="eventstream")
    with SSEServer() as server:
        server.enqueue(Script().event("a", id="1").close())
        server.default = Script(204)
        assert [event.data for event in EventStream(server.url, backoff=QUICK)] == ["a"]
    debug = messages(caplog, logging.DEBUG)
    assert f"connecting to {server.url}" in debug
    assert f"{server.url}: connected (HTTP 200)" in debug
    assert f"{server.url}: the body ended; reconnecting in 0.010 s" in debug
    assert f"reading {server.url}/ from its socket (fast path)" in debug
    assert messages(caplog, logging.WARNING) == []  # a clean end of the body is no failure


def test_a_fatal_status_is_logged_at_error(caplog: pytest.LogCaptureFixture) -> None:
    with SSEServer() as server, pytest.raises(Exception, match="HTTP 404"):
        list(EventStream(server.url))
    (error,) = messages(caplog, logging.ERROR)
    assert "HTTP 404" in error


def test_the_package_logs_nothing_unless_configured(capfd: pytest.CaptureFixture[str]) -> None:
    # The NullHandler keeps Python's last-resort handler from printing WARNINGs.
    backoff = Backoff(initial=0.01, maximum=0.01, max_attempts=2)
    with pytest.raises(RetriesExhausted):
        list(EventStream(refused_url(), backoff=backoff))
    assert capfd.readouterr().err == ""
