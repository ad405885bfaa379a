"""What the transport tells the caller, word for word: the messages of its errors.

A message is what a user reads in a log or a traceback to decide what to fix: the
URL (without credentials), what went wrong, and for a timeout which one.  Each test
runs against the real test server on 127.0.0.1, except for misuse caught before
any request.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from eventstream import ContentTypeError, HTTPStatusError, ReadError
from eventstream._stop import StopSignal
from eventstream._transport import RequestSpec, make_session, open_stream
from eventstream.testing import Framing, Script, SSEServer

TIMEOUT = 5.0


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
        from eventstream import _transport

        monkeypatch.setattr(_transport, "locate_socket", lambda raw: None)
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
