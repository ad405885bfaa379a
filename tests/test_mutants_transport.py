"""What the transport tells the caller, word for word: the messages of its errors.

A message is what a user reads in a log or a traceback to decide what to fix: the
URL (without credentials), what went wrong, and for a timeout which one.  Each test
runs against the real test server on 127.0.0.1, except for misuse caught before
any request.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import queue
import re
import socket
import ssl
import sys
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import trustme
import urllib3
from _proxy import ForwardProxy

from eventstream import (
    ConnectError,
    ContentTypeError,
    HTTPStatusError,
    ReadError,
    _connwait,
    _transport,
    _wait,
)
from eventstream._stop import StopSignal
from eventstream._transport import RequestSpec, make_session, open_stream
from eventstream.testing import Framing, Script, SSEServer

TIMEOUT = 5.0
MALFORMED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 5, 6\r\n\r\n"
)


def read_on_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bodies are read through urllib3, as when no socket can be located under them."""
    monkeypatch.setattr(_transport, "locate_socket", lambda raw: None)


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as server:
        yield server


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with make_session() as session:
        yield session


def read_all(session: requests.Session, url: str, **options: Any) -> bytes:
    options.setdefault("connect_timeout", TIMEOUT)
    options.setdefault("read_timeout", TIMEOUT)
    with open_stream(session, RequestSpec(url, **options), StopSignal()) as body:
        return b"".join(body.chunks())


def raised(session: requests.Session, url: str, **options: Any) -> BaseException:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the callers check the type
        read_all(session, url, **options)
    return caught.value


def test_a_timeout_that_is_not_positive_is_named_in_the_message() -> None:
    for name in ("connect_timeout", "read_timeout"):
        message = f"{name} must be a positive number of seconds or None"
        with pytest.raises(ValueError, match=f"^{message}$"):
            RequestSpec("http://x/", **{name: 0})


def test_a_session_factory_returning_something_else_is_a_type_error() -> None:
    with pytest.raises(TypeError) as caught:
        make_session(lambda: "not a session")  # type: ignore[arg-type,return-value]
    assert (
        str(caught.value) == "session_factory must return a requests.Session, not 'not a session'"
    )


def test_a_json_body_that_cannot_be_encoded_says_so(session: requests.Session) -> None:
    error = raised(session, "http://127.0.0.1:1/", method="POST", json={"x": float("nan")})
    assert isinstance(error, ValueError)
    assert str(error).startswith("the json body cannot be encoded: ")


def test_a_redirect_to_an_unusable_location_names_the_status_and_the_url(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(302, headers={"Location": "ftp://127.0.0.1/feed"}))
    error = raised(session, server.url_for("/old"))
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == 302
    assert str(error) == f"HTTP 302 from {server.url_for('/old')} redirects to an unusable Location"


def test_a_connection_closed_before_the_headers_says_so(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script.raw_response(b"").drop())
    error = raised(session, server.url)
    assert isinstance(error, ReadError)
    assert str(error).startswith(f"{server.url} closed the connection: ")


def test_no_headers_within_the_read_timeout_names_that_timeout(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script.no_response())
    error = raised(session, server.url, read_timeout=0.2)
    assert isinstance(error, ReadError)
    assert str(error) == f"no response headers from {server.url} within the read timeout"


@pytest.mark.parametrize("path", ["fast", "fallback"])
def test_silence_within_the_body_names_the_read_timeout(
    server: SSEServer,
    session: requests.Session,
    monkeypatch: pytest.MonkeyPatch,
    path: str,
) -> None:
    if path == "fallback":
        read_on_the_fallback(monkeypatch)
    server.enqueue(Script().event("a").hold())
    error = raised(session, server.url, read_timeout=0.2)
    assert isinstance(error, ReadError)
    assert str(error) == f"no data from {server.url_for('/')} within the read timeout"


def test_a_connection_lost_mid_body_names_the_url(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(framing=Framing.CLOSE).event("a").reset())
    error = raised(session, server.url)
    assert isinstance(error, ReadError)
    assert str(error).startswith(f"connection to {server.url_for('/')} lost: ")


def test_broken_chunked_framing_names_the_url_and_the_fault(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(framing=Framing.CHUNKED).event("a").wire(b"zz\r\n").hold())
    error = raised(session, server.url)
    assert isinstance(error, ReadError)
    assert re.fullmatch(rf"bad response body from {re.escape(server.url_for('/'))}: .+", str(error))


def test_an_unsupported_content_encoding_names_it_and_what_we_offer(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(encoding="br").send(b"data: a\n\n"))
    error = raised(session, server.url)
    assert isinstance(error, ContentTypeError)
    assert str(error) == (
        f"unsupported Content-Encoding 'br' from {server.url_for('/')} (we offer gzip, deflate)"
    )


def test_a_wrong_content_type_names_what_came(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script(headers={"Content-Type": "Text/HTML; charset=utf-8"}).send(b"<html>"))
    error = raised(session, server.url)
    assert isinstance(error, ContentTypeError)
    assert str(error) == (
        f"expected Content-Type text/event-stream from {server.url_for('/')}, got 'text/html'"
    )


def test_reading_a_closed_body_is_a_runtime_error(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script().event("a").hold())
    with open_stream(session, RequestSpec(server.url, read_timeout=TIMEOUT), StopSignal()) as body:
        chunks = body.chunks()
        assert next(chunks) == b"data: a\n\n"
    with pytest.raises(RuntimeError) as caught:
        body.chunks()
    assert str(caught.value) == "the body is closed"


def test_a_204_on_a_connection_kept_open_ends_the_body_at_once(
    server: SSEServer, session: requests.Session
) -> None:
    # A 204 has no body by definition: its end is not the connection's end, nor a
    # silence that lasts the read timeout.
    server.enqueue(Script.raw_response(b"HTTP/1.1 204 No Content\r\n\r\n").hold())
    started = time.monotonic()
    assert read_all(session, server.url, read_timeout=TIMEOUT) == b""
    assert time.monotonic() - started < 1.0


def test_a_300_that_is_no_redirect_is_a_status_error_even_with_an_event_stream(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(300).event("a"))  # an event-stream Content-Type, no Location
    error = raised(session, server.url)
    assert isinstance(error, HTTPStatusError)
    assert error.status_code == 300


@pytest.mark.parametrize(
    ("status_line", "words"),
    [(b"HTTP/1.1 503 Busy Now", "HTTP 503 Busy Now from "), (b"HTTP/1.1 599 ", "HTTP 599 from ")],
    ids=["reason", "no-reason"],
)
def test_a_status_error_says_the_status_and_its_reason(
    server: SSEServer, session: requests.Session, status_line: bytes, words: str
) -> None:
    head = status_line + b"\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n"
    server.enqueue(Script.raw_response(head))
    error = raised(session, server.url)
    assert isinstance(error, HTTPStatusError)
    assert str(error) == words + server.url_for("/")


@pytest.mark.parametrize(
    "content_type",
    [
        "text/event-stream;charset=utf-8",
        "text/event-stream; charset=utf-8; x=y",
        "text/event-stream",
    ],
)
def test_media_type_parameters_in_any_spacing_are_accepted(
    server: SSEServer, session: requests.Session, content_type: str
) -> None:
    server.enqueue(Script(headers={"Content-Type": content_type}).event("a"))
    assert read_all(session, server.url) == b"data: a\n\n"


def test_no_content_type_says_none(server: SSEServer, session: requests.Session) -> None:
    server.enqueue(Script(headers={"Content-Type": None}).send(b"data: a\n\n"))
    error = raised(session, server.url)
    assert isinstance(error, ContentTypeError)
    expected = f"expected Content-Type text/event-stream from {server.url_for('/')}, got 'none'"
    assert str(error) == expected


def test_a_hostile_content_type_or_encoding_is_cut_to_60_characters(
    server: SSEServer, session: requests.Session
) -> None:
    # A message quotes what the server sent, but never more than 60 characters of it.
    long = "x" * 200
    server.enqueue(
        Script(headers={"Content-Type": f"text/{long}"}).send(b"<html>"),
        Script(headers={"Content-Encoding": long}).send(b"data: a\n\n"),
    )
    for cut in (f"got '{('text/' + long)[:60]}'", f"Content-Encoding '{long[:60]}' from"):
        error = raised(session, server.url)
        assert isinstance(error, ContentTypeError)
        assert cut in str(error)


# -- the error body: its budget, its end, its charset (survivors of tools/mutate.py) --


def plain(charset_param: str | None = "; charset=utf-8") -> dict[str, str | None]:
    return {"Content-Type": None if charset_param is None else "text/plain" + charset_param}


def status_error(session: requests.Session, url: str, **options: Any) -> HTTPStatusError:
    error = raised(session, url, **options)
    assert isinstance(error, HTTPStatusError), repr(error)
    return error


def test_an_error_body_without_a_read_timeout_is_read_within_its_own_bound(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # read_timeout=None waits forever for events, but never for an error body.
    monkeypatch.setattr(_transport, "ERROR_BODY_TIMEOUT", 0.2)
    server.enqueue(Script(503, headers=plain()).send(b"busy").hold())
    started = time.monotonic()
    error = status_error(session, server.url, read_timeout=None)
    assert (error.status_code, error.body) == (503, "busy")
    assert time.monotonic() - started < 0.2 + 0.8


def test_an_error_body_that_trickles_on_is_cut_at_the_read_timeout(
    server: SSEServer, session: requests.Session
) -> None:
    # Each byte comes within the read timeout, but the whole read is bounded by it too.
    server.enqueue(Script(503, headers=plain()).trickle(b"." * 100, 0.05))
    started = time.monotonic()
    error = status_error(session, server.url, read_timeout=0.3)
    assert 0 < len(error.body) < 100
    assert time.monotonic() - started < 0.3 + 0.5


def test_an_error_body_of_exactly_the_limit_is_not_waited_past(
    server: SSEServer, session: requests.Session
) -> None:
    # The first 512 bytes are all that is kept: nothing after them is waited for.
    server.enqueue(Script(503, headers=plain()).send(b"x" * 512).hold())
    started = time.monotonic()
    error = status_error(session, server.url, read_timeout=TIMEOUT)
    assert error.body == "x" * 512
    assert time.monotonic() - started < 1.0


def test_a_read_error_in_an_error_body_is_logged_with_the_url(
    server: SSEServer, session: requests.Session, caplog: pytest.LogCaptureFixture
) -> None:
    server.enqueue(Script(503, headers=plain()).send(b"part").hold())
    with caplog.at_level(logging.DEBUG, logger="eventstream._transport"):
        error = status_error(session, server.url, read_timeout=0.2)
    assert error.body == "part"
    url = server.url_for("/")
    expected = f"reading the error body of {url}: no data from {url} within the read timeout"
    assert expected in [record.getMessage() for record in caplog.records]


@pytest.mark.parametrize(
    ("content_type", "body", "text"),
    [
        (";charset=iso-8859-1", b"caf\xe9", "café"),  # no space after ";"
        ("; charset=iso-8859-1", b"caf\xe9", "café"),  # charset first
        ("; format=flowed; Charset=iso-8859-1", b"caf\xe9", "café"),
        ('; charset="iso-8859-1"', b"caf\xe9", "café"),
        ("; charset=no-such-codec", b"caf\xc3\xa9", "café"),  # unknown: UTF-8
        ("; charset=utf-8", b"caf\xe9!", "caf\ufffd!"),  # invalid bytes are replaced
        (None, b"caf\xc3\xa9", "café"),  # no Content-Type at all: UTF-8
    ],
    ids=["no-space", "first", "later-any-case", "quoted", "unknown", "invalid", "none"],
)
def test_an_error_body_is_decoded_with_its_charset(
    server: SSEServer,
    session: requests.Session,
    content_type: str | None,
    body: bytes,
    text: str,
) -> None:
    server.enqueue(Script(503, headers=plain(content_type)).send(body))
    assert status_error(session, server.url).body == text


# -- every error names the URL it is about, as ``url`` as well as in words ------------


def test_an_invalid_request_header_says_so_without_echoing_it(session: requests.Session) -> None:
    error = raised(session, "http://127.0.0.1:1/", headers={"X-Token": "s3cret\r\nX: y"})
    assert isinstance(error, ValueError)
    assert str(error) == "a request header name or value is not allowed"


def test_a_redirect_loop_carries_the_last_redirect(
    server: SSEServer, session: requests.Session
) -> None:
    server.route("/loop", Script.redirect(server.url_for("/loop"), status=307))
    session.max_redirects = 2
    error = raised(session, server.url_for("/loop"))
    assert isinstance(error, HTTPStatusError)
    assert (error.url, error.status_code) == (server.url_for("/loop"), 307)
    assert error.headers is not None
    assert error.headers["Location"] == server.url_for("/loop")
    assert str(error) == f"too many redirects from {server.url_for('/loop')}"


def test_an_unusable_location_error_carries_the_redirect(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script(301, headers={"Location": "ftp://127.0.0.1/feed", "X-Why": "moved"}))
    error = raised(session, server.url_for("/old"))
    assert isinstance(error, HTTPStatusError)
    assert (error.url, error.status_code) == (server.url_for("/old"), 301)
    assert error.headers is not None
    assert error.headers["X-Why"] == "moved"


@pytest.mark.parametrize(
    "script",
    [
        Script.no_response(),
        Script.raw_response(b"").drop(),
        Script.raw_response(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 5, 6\r\n\r\n"
        ).close(),
    ],
    ids=["no-headers-in-time", "closed-before-headers", "malformed-header"],
)
def test_a_read_error_before_the_body_carries_the_url(
    server: SSEServer, session: requests.Session, script: Script
) -> None:
    server.enqueue(script)
    error = raised(session, server.url_for("/feed?x=1"), read_timeout=0.2)
    assert isinstance(error, ReadError), repr(error)
    assert error.url == server.url_for("/feed?x=1")


def test_out_of_descriptors_at_connect_carries_the_url(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_fds(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(_connwait.ConnectionWait, "connect", no_fds)  # the stream's connect
    error = raised(session, server.url_for("/feed"))
    assert isinstance(error, ConnectError), repr(error)
    assert error.url == server.url_for("/feed")


def test_a_waker_that_cannot_be_made_says_why(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_memory(stop: StopSignal) -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(_wait, "make_waker", no_memory)
    server.enqueue(Script().event("a"))
    error = raised(session, server.url)
    assert isinstance(error, ReadError), repr(error)
    assert str(error).startswith("cannot create the stop signal's wake-up descriptor: ")
    assert "Cannot allocate memory" in str(error)
    assert str(error).endswith(f" (reading {server.url_for('/')})")
    assert error.url == server.url_for("/")


def test_reading_on_after_closing_the_body_is_a_runtime_error_on_the_fallback(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_on_the_fallback(monkeypatch)
    server.enqueue(Script().event("a").event("b").hold())
    spec = RequestSpec(server.url, read_timeout=TIMEOUT)
    with open_stream(session, spec, StopSignal()) as body:
        chunks = body.chunks()
        assert next(chunks).startswith(b"data: a\n\n")
        body.close()
        with pytest.raises(RuntimeError) as caught:
            next(chunks)
    assert str(caught.value) == "the body is closed"


def test_bad_compressed_data_on_the_fallback_names_the_url_and_the_fault(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_on_the_fallback(monkeypatch)
    server.enqueue(Script(headers={"Content-Encoding": "gzip"}).send(b"not gzip at all"))
    error = raised(session, server.url)
    assert isinstance(error, ReadError), repr(error)
    assert re.fullmatch(rf"bad response body from {re.escape(server.url_for('/'))}: .+", str(error))


def test_a_content_type_error_carries_the_url_and_the_headers(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(
        Script(headers={"Content-Type": "text/html", "X-Why": "page"}).send(b"<p>"),
        Script(headers={"Content-Encoding": "br", "X-Why": "coded"}).send(b"data: a\n\n"),
    )
    for why in ("page", "coded"):
        error = raised(session, server.url_for("/feed"))
        assert isinstance(error, ContentTypeError), repr(error)
        assert error.url == server.url_for("/feed")
        assert error.headers is not None
        assert error.headers["X-Why"] == why


class RaisingAdapter(requests.adapters.BaseAdapter):
    """A custom adapter that lets the socket's error through, as some do."""

    def __init__(self, error: OSError) -> None:
        super().__init__()
        self.error = error

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "Connection refused"),
        (OSError(errno.EMFILE, "Too many open files"), "out of file descriptors"),
    ],
    ids=["refused", "out-of-fds"],
)
def test_a_socket_error_from_a_custom_adapter_is_a_connect_error(
    error: OSError, reason: str
) -> None:
    with make_session() as session:
        session.mount("http://", RaisingAdapter(error))
        caught = raised(session, "http://user:pw@custom.test/feed")
    assert isinstance(caught, ConnectError), repr(caught)
    assert caught.url == "http://custom.test/feed"
    assert str(caught).startswith("cannot connect to http://custom.test/feed: ")
    assert reason in str(caught)
    if error.errno != errno.EMFILE:
        assert "out of file descriptors" not in str(caught)


@pytest.mark.parametrize("path", ["fast", "fallback"])
def test_the_path_a_body_is_read_on_is_logged(
    server: SSEServer,
    session: requests.Session,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    path: str,
) -> None:
    if path == "fallback":
        read_on_the_fallback(monkeypatch)
    server.enqueue(Script().event("a"), Script.raw_response(b"HTTP/1.1 204 No Content\r\n\r\n"))
    with caplog.at_level(logging.DEBUG, logger="eventstream._transport"):
        assert read_all(session, server.url) == b"data: a\n\n"
        assert read_all(session, server.url) == b""  # a 204: no body, no path to log
    url = server.url_for("/")
    expected = {
        "fast": f"reading {url} from its socket (fast path)",
        "fallback": f"reading {url} through urllib3 (fallback path)",
    }[path]
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("reading ")] == [
        expected
    ]


def test_a_relative_location_is_followed_from_the_redirect(
    server: SSEServer, session: requests.Session
) -> None:
    server.route("/old/feed", Script(302, headers={"Location": "../new/feed"}))
    server.route("/new/feed", Script().event("a"))
    assert read_all(session, server.url_for("/old/feed")) == b"data: a\n\n"


def test_credentials_in_the_url_go_along_a_redirect_on_the_same_host(
    server: SSEServer, session: requests.Session
) -> None:
    server.enqueue(Script.redirect(server.url_for("/moved")), Script().event("a"))
    with_user = server.url.replace("http://", "http://user:pw@", 1)
    assert read_all(session, with_user) == b"data: a\n\n"
    first, second = server.wait_for_requests(2)
    expected = "Basic dXNlcjpwdw=="  # user:pw
    assert first.headers["Authorization"] == second.headers["Authorization"] == expected


@pytest.mark.parametrize("limit", [0, 2])
def test_max_redirects_redirects_are_followed_and_no_more(
    server: SSEServer, session: requests.Session, limit: int
) -> None:
    session.max_redirects = limit
    server.enqueue(*(Script.redirect(server.url_for(f"/{n}")) for n in range(limit)))
    server.enqueue(Script().event("a"))
    assert read_all(session, server.url) == b"data: a\n\n"


# -- redirects, TLS settings, error bodies, released errors (survivors of tools/mutate.py) --


def test_a_location_requests_refuses_is_blamed_on_the_redirect(
    server: SSEServer, session: requests.Session
) -> None:
    # The host passes our check (dots are allowed) but requests refuses the URL: the
    # server sent it, so it is the redirect's status error, not a ValueError about
    # the caller's own URL.
    server.enqueue(Script(302, headers={"Location": "http://.example/feed", "X-Why": "moved"}))
    error = raised(session, server.url_for("/old"))
    assert isinstance(error, HTTPStatusError), repr(error)
    assert (error.url, error.status_code) == (server.url_for("/old"), 302)
    assert error.headers is not None
    assert error.headers["X-Why"] == "moved"
    assert str(error) == f"HTTP 302 from {server.url_for('/old')} redirects to an unusable Location"


def test_a_location_whose_host_urls_do_not_allow_is_not_followed(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "<" has no place in a host: urllib3 would percent-encode it and look the result
    # up.  Such a Location is refused as unusable (fatal), never tried (a connect
    # error, retried).  No lookup leaves this machine: other hosts are refused here.
    real = _connwait.ConnectionWait.connect
    tried: list[str] = []

    def only_the_server(
        self: _connwait.ConnectionWait, address: tuple[str, int], *args: Any
    ) -> Any:
        tried.append(address[0])
        if address[0] != "127.0.0.1":
            raise ConnectionRefusedError(errno.ECONNREFUSED, "not the test server")
        return real(self, address, *args)

    monkeypatch.setattr(_connwait.ConnectionWait, "connect", only_the_server)
    server.enqueue(Script(302, headers={"Location": "http://feeds<1>.example/new"}))
    error = raised(session, server.url_for("/old"))
    assert isinstance(error, HTTPStatusError), repr(error)
    assert error.status_code == 302
    assert str(error) == f"HTTP 302 from {server.url_for('/old')} redirects to an unusable Location"
    assert tried == ["127.0.0.1"]


def test_a_post_answered_by_302_is_followed_with_a_get_without_the_body(
    server: SSEServer, session: requests.Session
) -> None:
    # As browsers and requests do (and as for 301 and 303); 307 and 308 keep the POST.
    server.enqueue(Script.redirect(server.url_for("/moved"), status=302), Script().event("a"))
    assert read_all(session, server.url, method="POST", data=b"q") == b"data: a\n\n"
    first, second = server.wait_for_requests(2)
    assert (first.method, first.body) == ("POST", b"q")
    assert (second.method, second.body, second.path) == ("GET", b"", "/moved")


def test_a_ca_bundle_setting_does_not_matter_to_an_http_url(
    server: SSEServer, tmp_path: Path
) -> None:
    # A session set up for https hosts (a CA bundle path that does not exist here)
    # still reads plain http: no certificate is verified there.
    server.enqueue(Script().event("a"))
    factory = functools.partial(_transport.configured_session, verify=str(tmp_path / "no-ca.pem"))
    with make_session(factory) as session:
        assert read_all(session, server.url) == b"data: a\n\n"


def test_a_missing_client_certificate_file_is_named_in_the_error(
    tmp_path: Path,
) -> None:
    # requests' own check names the file; without it the TLS library's error does not.
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority = trustme.CA()
    authority.issue_cert("127.0.0.1").configure_cert(context)
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    missing = str(tmp_path / "client.pem")
    with SSEServer(ssl_context=context) as origin:
        factory = functools.partial(_transport.configured_session, verify=str(bundle), cert=missing)
        with make_session(factory) as session:
            error = raised(session, origin.url)
    assert isinstance(error, ConnectError), repr(error)
    assert missing in str(error)


def test_an_error_body_in_an_unsupported_coding_is_kept_as_it_came(
    server: SSEServer, session: requests.Session
) -> None:
    # The status is what matters; its body is shown undecoded rather than lost.
    server.enqueue(Script(503, headers={**plain(), "Content-Encoding": "br"}).send(b"busy"))
    error = status_error(session, server.url)
    assert (error.status_code, error.body) == (503, "busy")


def test_a_rejected_response_is_closed_while_the_caller_keeps_the_error(
    server: SSEServer, session: requests.Session
) -> None:
    # The error's traceback reached http.client's response, whose file keeps the
    # socket open: the connection must not live as long as the error is kept.
    server.enqueue(Script.raw_response(MALFORMED_HEAD).hold())
    error = raised(session, server.url)
    assert isinstance(error, ReadError), repr(error)
    server.connections[0].wait_closed(TIMEOUT)
    assert error.__traceback__ is not None  # still kept, with its traceback


class ResetAfterTheHeadAdapter(requests.adapters.BaseAdapter):
    """A custom adapter on a raw socket that lets ``ECONNRESET`` through, leaving the
    connection to its reader (as http.client does) and so to the garbage collector."""

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        parts = urlsplit(request.url)
        with socket.create_connection((parts.hostname, parts.port), timeout=TIMEOUT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % parts.netloc.encode())
            reader = sock.makefile("rb")  # holds the connection open after sock.close()
        reader.readline()  # the status line
        raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")

    def close(self) -> None:
        pass


def test_a_custom_adapters_connection_is_closed_while_the_caller_keeps_the_error(
    server: SSEServer,
) -> None:
    server.enqueue(Script().event("a").hold())
    with make_session() as session:
        session.mount("http://", ResetAfterTheHeadAdapter())
        error = raised(session, server.url)
    assert isinstance(error, ConnectError), repr(error)
    server.connections[0].wait_closed(TIMEOUT)
    assert error.__traceback__ is not None  # still kept, with its traceback


# -- a session's own credentials stay home too (a session_factory may set them) -------


def session_with_credentials() -> requests.Session:
    session = requests.Session()
    session.auth = ("session-user", "session-pw")
    session.headers["X-Api-Key"] = "session-key"
    session.headers["User-Agent"] = "feed-reader/1"
    return session


def redirected_requests(server: SSEServer, host: str, **options: Any) -> list[Any]:
    server.enqueue(Script.redirect(server.url_for("/moved", host=host)), Script().event("a"))
    with make_session(session_with_credentials) as session:
        assert read_all(session, server.url, **options) == b"data: a\n\n"
    return server.wait_for_requests(2)


def test_a_sessions_auth_and_headers_do_not_follow_a_redirect_to_another_host(
    server: SSEServer,
) -> None:
    first, second = redirected_requests(server, "localhost")
    assert first.headers["Authorization"].startswith("Basic ")
    assert first.headers["X-Api-Key"] == "session-key"
    assert "Authorization" not in second.headers
    assert "X-Api-Key" not in second.headers
    assert second.headers["User-Agent"] == "feed-reader/1"  # no credential: it goes on
    assert second.headers["Connection"] == "keep-alive"  # requests' own default, too
    assert second.headers["Accept"] == "text/event-stream"


def test_a_sessions_auth_and_headers_follow_a_redirect_on_the_same_host(
    server: SSEServer,
) -> None:
    first, second = redirected_requests(server, "127.0.0.1")
    assert second.headers["Authorization"] == first.headers["Authorization"]
    assert second.headers["X-Api-Key"] == "session-key"


def test_a_sessions_authorization_header_does_not_follow_a_redirect_to_another_host(
    server: SSEServer,
) -> None:
    def factory() -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = "Bearer s3cret"
        return session

    server.enqueue(Script.redirect(server.url_for("/moved", host="localhost")), Script().event("a"))
    with make_session(factory) as session:
        assert read_all(session, server.url) == b"data: a\n\n"
    first, second = server.wait_for_requests(2)
    assert first.headers["Authorization"] == "Bearer s3cret"
    assert "Authorization" not in second.headers


def test_user_info_in_a_location_to_another_host_is_not_sent(
    server: SSEServer, session: requests.Session
) -> None:
    target = server.url_for("/moved", host="localhost").replace("http://", "http://lu:lp@", 1)
    server.enqueue(Script.redirect(target), Script().event("a"))
    assert read_all(session, server.url) == b"data: a\n\n"
    assert "Authorization" not in server.wait_for_requests(2)[1].headers


def test_a_redirect_to_another_host_uses_its_netrc_entry(
    server: SSEServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As requests does: .netrc says what each host gets; the session's auth stays home.
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login netrc-user password netrc-pw\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(netrc))
    first, second = redirected_requests(server, "localhost")
    assert first.headers["Authorization"] == "Basic c2Vzc2lvbi11c2VyOnNlc3Npb24tcHc="
    assert second.headers["Authorization"] == "Basic bmV0cmMtdXNlcjpuZXRyYy1wdw=="


# -- the connection goes back to its pool; the fallback as under urllib3 1.26 ----------


def test_a_session_with_a_blocking_pool_of_one_connects_again(server: SSEServer) -> None:
    # A closed body gives its connection back to the pool: with pool_block=True and
    # one connection, the next attempt (a reconnect) would otherwise wait forever.
    def factory() -> requests.Session:
        session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=1, pool_block=True)
        session.mount("http://", adapter)
        return session

    server.enqueue(Script().event("a"), Script().event("b"))
    results: queue.Queue[bytes] = queue.Queue()
    with make_session(factory) as session:
        assert read_all(session, server.url) == b"data: a\n\n"
        again = threading.Thread(target=lambda: results.put(read_all(session, server.url)))
        again.daemon = True  # if it waits forever, it must not hold up the interpreter
        again.start()
        assert results.get(timeout=TIMEOUT) == b"data: b\n\n"
        again.join(TIMEOUT)


def like_urllib3_1_26(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback path as under urllib3 1.26, whose responses have no ``read1``."""
    read_on_the_fallback(monkeypatch)
    for cls in urllib3.response.HTTPResponse.__mro__:
        if "read1" in vars(cls):
            monkeypatch.delattr(cls, "read1")


@pytest.mark.parametrize("framing", [Framing.CHUNKED, Framing.CLOSE])
def test_without_urllib3s_read1_each_event_comes_as_it_arrives(
    server: SSEServer,
    session: requests.Session,
    monkeypatch: pytest.MonkeyPatch,
    framing: Framing,
) -> None:
    like_urllib3_1_26(monkeypatch)
    server.enqueue(Script(framing=framing).event("a").hold())
    spec = RequestSpec(server.url, read_timeout=TIMEOUT)
    started = time.monotonic()
    with open_stream(session, spec, StopSignal()) as body:
        assert next(body.chunks()) == b"data: a\n\n"
    assert time.monotonic() - started < 1.0  # not after the read timeout


def short_body_error(server: SSEServer, session: requests.Session) -> ReadError:
    """The error of a body that ends 5 bytes short of its Content-Length, after the
    event it did bring arrived."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: 14\r\n\r\n"
    server.enqueue(Script.raw_response(head + b"data: a\n\n").close())
    with open_stream(session, RequestSpec(server.url, read_timeout=TIMEOUT), StopSignal()) as body:
        chunks = body.chunks()
        assert next(chunks) == b"data: a\n\n"
        with pytest.raises(ReadError) as caught:
            next(chunks)
    return caught.value


def test_without_urllib3s_read1_a_short_body_is_a_lost_connection(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    like_urllib3_1_26(monkeypatch)
    assert str(short_body_error(server, session)) == (
        f"connection to {server.url_for('/')} lost:"
        " IncompleteRead: IncompleteRead(0 bytes read, 5 more expected)"
    )


def test_an_unusable_charset_parameter_means_utf_8_even_if_another_follows(
    server: SSEServer, session: requests.Session
) -> None:
    # The first charset parameter decides; one that names no codec means UTF-8.
    headers = plain("; charset=iso-8859-1=x; charset=iso-8859-1")
    server.enqueue(Script(503, headers=headers).send(b"caf\xc3\xa9"))
    assert status_error(session, server.url).body == "café"


def test_an_open_body_keeps_no_header_reader_once_it_is_drained(
    server: SSEServer, session: requests.Session
) -> None:
    # Memory per stream: http.client's 8 KiB buffered reader (made in socket.py's
    # makefile) read the headers; once what it held is read, it is let go, and the
    # socket is read directly for the life of the stream.
    count = 10
    server.enqueue(*(Script().event("a").hold() for _ in range(count)))
    spec = RequestSpec(server.url, read_timeout=TIMEOUT)
    with contextlib.ExitStack() as bodies:
        tracemalloc.start()
        try:
            for _ in range(count):
                body = bodies.enter_context(open_stream(session, spec, StopSignal()))
                assert next(body.chunks()) == b"data: a\n\n"
            kept = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(True, socket.__file__)]
            )
        finally:
            tracemalloc.stop()
        held = sum(stat.size for stat in kept.statistics("filename"))
    assert held < count * 2048, f"{held} bytes held by socket.py's readers"


@pytest.mark.skipif(urllib3.__version__.startswith("1."), reason="urllib3 2 counts the bytes")
def test_a_short_body_on_the_fallback_says_how_much_of_it_arrived(
    server: SSEServer, session: requests.Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_on_the_fallback(monkeypatch)
    error = short_body_error(server, session)
    assert str(error).endswith(": IncompleteRead(9 bytes read, 5 more expected)")


def test_a_session_that_ignores_the_environment_ignores_netrc_on_a_redirect(
    server: SSEServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine localhost login netrc-user password netrc-pw\n", encoding="utf-8")
    monkeypatch.setenv("NETRC", str(netrc))

    def factory() -> requests.Session:
        session = requests.Session()
        session.trust_env = False  # no proxy variables, no CA bundle variables, no .netrc
        return session

    server.enqueue(Script.redirect(server.url_for("/moved", host="localhost")), Script().event("a"))
    with make_session(factory) as session:
        assert read_all(session, server.url) == b"data: a\n\n"
    assert "Authorization" not in server.wait_for_requests(2)[1].headers


def test_the_tls_in_tls_path_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # An https:// origin through an https:// proxy: no socket to read directly, but
    # the tunnel under urllib3's SSLTransport.
    authority = trustme.CA()
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))

    def context() -> ssl.SSLContext:
        made = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1").configure_cert(made)
        return made

    with ForwardProxy(context()) as proxy, SSEServer(ssl_context=context()) as origin:
        origin.enqueue(Script().event("a"))
        factory = functools.partial(
            _transport.configured_session, verify=str(bundle), proxy=proxy.url
        )
        with (
            make_session(factory) as session,
            caplog.at_level(logging.DEBUG, logger="eventstream._transport"),
        ):
            assert read_all(session, origin.url) == b"data: a\n\n"
    expected = f"reading {origin.url_for('/')} from its TLS tunnel (fast path)"
    assert expected in [record.getMessage() for record in caplog.records]


def test_a_factory_handing_back_the_same_session_works_however_often_it_is_called(
    server: SSEServer,
) -> None:
    # Each start or restart of a stream calls the factory again: one that keeps its
    # session gets it back prepared once, not wrapped once more each time.
    kept = requests.Session()
    for _ in range(sys.getrecursionlimit()):
        assert make_session(lambda: kept) is kept
    server.enqueue(Script().event("a"))
    with kept:
        assert read_all(kept, server.url) == b"data: a\n\n"


def test_the_streams_own_headers_are_spelt_as_a_browser_spells_them(
    server: SSEServer, session: requests.Session
) -> None:
    # Names are case-insensitive in HTTP, but a server or proxy that compares them as
    # written still finds them spelt as an EventSource sends them.
    server.enqueue(Script().event("a"))
    assert read_all(session, server.url) == b"data: a\n\n"
    (request,) = server.wait_for_requests(1)
    fields = set(request.headers.fields)
    assert {("Accept", "text/event-stream"), ("Cache-Control", "no-cache")} <= fields
    assert ("Accept-Encoding", "gzip, deflate") in fields
