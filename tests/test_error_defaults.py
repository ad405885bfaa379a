"""The public errors built with a message only, as a caller's own tests raise them.

A caller simulating a failure (``on_error`` handlers, retry wrappers, their tests)
constructs these directly; what it leaves out must read as "unknown": no URL, no
status, no body, not a plausible-looking value.
"""

from __future__ import annotations

import pytest

from eventstream import (
    ConnectError,
    ContentTypeError,
    HTTPStatusError,
    ReadError,
    ResponseError,
    RetriesExhausted,
    StreamError,
)


@pytest.mark.parametrize(
    "kind", [StreamError, ConnectError, ReadError, RetriesExhausted, ResponseError]
)
def test_a_stream_error_without_a_url_has_an_empty_one(kind: type[StreamError]) -> None:
    error = kind("it failed")
    assert str(error) == "it failed"
    assert error.url == ""


@pytest.mark.parametrize("kind", [ResponseError, ContentTypeError, HTTPStatusError])
def test_a_response_error_without_a_status_has_status_0_and_no_headers(
    kind: type[ResponseError],
) -> None:
    error = kind("bad answer")
    assert (error.url, error.status_code, dict(error.headers)) == ("", 0, {})


def test_an_http_status_error_without_a_body_has_an_empty_one() -> None:
    error = HTTPStatusError("HTTP 500")
    assert (error.url, error.status_code, error.body) == ("", 0, "")


def test_given_values_are_kept() -> None:
    error = HTTPStatusError(
        "HTTP 503", url="http://h/x", status_code=503, headers={"Retry-After": "1"}, body="busy"
    )
    assert (error.url, error.status_code, error.body) == ("http://h/x", 503, "busy")
    assert error.headers["retry-after"] == "1"
