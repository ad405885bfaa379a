"""Fuzzing: the parser on arbitrary bytes, and the whole client on arbitrary responses.

The only exception the parser may raise is the documented :class:`ProtocolError`
(an event over the size cap).  Through a real server, whatever the framing,
compression and packet boundaries, a body must give exactly the events that
parsing it whole gives; and any response at all, however malformed, must end in
events and errors of eventstream's own hierarchy, never in a foreign exception or a
hang.  (tests/test_parser_properties.py checks the parser against a reference of
the spec; this file is about robustness.)
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import pytest
from _reliability import SLOW_ENABLED, watchdog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventstream
from eventstream import Event, EventStreamError, Parser, ProtocolError
from eventstream.testing import Framing, Script, SSEServer

# EVENTSTREAM_SLOW=1 fuzzes ten times longer.
FUZZ = settings(
    max_examples=3000 if SLOW_ENABLED else 300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NETWORK = settings(
    max_examples=600 if SLOW_ENABLED else 60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# Pieces of event streams and of everything that is not one: fields, comments,
# every line end, a BOM, NUL, invalid UTF-8, long runs.
TOKENS = st.sampled_from(
    [
        b"data",
        b"data:",
        b"data: ",
        b"id:",
        b"id: 7",
        b"event:",
        b"retry:",
        b"retry: 15",
        b":",
        b": comment",
        b"\n",
        b"\n\n",
        b"\r",
        b"\r\n",
        b" ",
        b"x",
        b"\xef\xbb\xbf",
        b"\0",
        b"\xff",
        b"\xe2\x82",
        b"\xac",
        b"x" * 70,
        b"\n" * 40,
    ]
)
STREAMS = st.one_of(
    st.lists(TOKENS, max_size=60).map(b"".join),
    st.binary(max_size=600),
)


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:])]


@st.composite
def chunked_bodies(draw: st.DrawFn) -> tuple[bytes, list[bytes]]:
    body = draw(STREAMS)
    return body, split(body, draw(st.lists(st.integers(0, 10_000), max_size=12)))


@FUZZ
@given(
    chunked_bodies(),
    st.one_of(st.none(), st.integers(1, 80)),
    st.lists(st.booleans(), max_size=12),
)
def test_parser_raises_nothing_but_protocol_error(
    case: tuple[bytes, list[bytes]], cap: int | None, resets: list[bool]
) -> None:
    _, reads = case
    parser = Parser(max_event_size=cap)
    for i, read in enumerate(reads):
        try:
            events = parser.feed(read)
        except ProtocolError as exc:
            assert cap is not None  # without a cap there is nothing to exceed
            events = exc.events
        for event in events:
            assert cap is None or len(event.data) <= cap  # a character needs a byte at least
            assert "\0" not in event.id
            # Lines end at CR, LF or CRLF: no field value can hold a CR, and only
            # data joins its lines with LF.  An event always has a type.
            assert "\r" not in event.data
            assert not {"\r", "\n"} & set(event.event + event.id)
            assert event.event
        assert isinstance(parser.last_event_id, str)
        assert parser.retry is None or parser.retry >= 0
        if i < len(resets) and resets[i]:
            parser.reset()  # a new connection's body may start anywhere


@FUZZ
@given(chunked_bodies())
def test_parser_events_do_not_depend_on_the_reads(case: tuple[bytes, list[bytes]]) -> None:
    body, reads = case
    whole = Parser(max_event_size=None)
    expected = whole.feed(body)
    parser = Parser(max_event_size=None)
    got = [event for read in reads for event in parser.feed(read)]
    assert got == expected
    assert (parser.last_event_id, parser.retry) == (whole.last_event_id, whole.retry)


# -- through a real server ---------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def _one_shot(url: str, **options: object) -> tuple[list[Event], list[BaseException]]:
    """Events and errors of one response: what was raised to the consumer included."""
    errors: list[BaseException] = []
    events: list[Event] = []
    stream = eventstream.get(url, on_error=errors.append, **options)
    with stream, watchdog(stream, 10.0) as fired:
        try:
            events.extend(stream)
        except Exception as exc:  # checked below: it must be one of ours
            if not errors or errors[-1] is not exc:
                errors.append(exc)
    assert not fired.is_set(), "the one-shot stream did not end"
    return events, errors


def test_any_body_through_the_network_gives_the_events_of_the_whole(server: SSEServer) -> None:
    @NETWORK
    @given(
        chunked_bodies(),
        st.sampled_from(list(Framing)),
        st.sampled_from([None, "gzip", "deflate"]),
    )
    def check(case: tuple[bytes, list[bytes]], framing: Framing, encoding: str | None) -> None:
        body, reads = case
        script = Script(framing=framing, encoding=encoding)
        for read in reads:
            script = script.send(read)  # each its own write (and chunk, and sync flush)
        server.enqueue(script.close())
        events, errors = _one_shot(server.url, retries=0)
        assert errors == []
        assert events == Parser(max_event_size=None).feed(body)

    check()


_STATUS_LINES = st.sampled_from(
    [
        b"HTTP/1.1 200 OK\r\n",
        b"HTTP/1.0 200 OK\r\n",
        b"HTTP/1.1 200\r\n",
        b"HTTP/1.1 204 No Content\r\n",
        b"HTTP/1.1 301 Moved\r\n",
        b"HTTP/1.1 404 Not Found\r\n",
        b"HTTP/1.1 503 Busy\r\n",
        b"HTTP/1.1 999 What\r\n",
        b"HTTP/1.1 -1 Bad\r\n",
        b"HTTP/2 200\r\n",
        b"ICY 200 OK\r\n",
        b"HTTP/1.1 200 OK",
        b"",
    ]
)
_HEADER_LINES = st.sampled_from(
    [
        b"Content-Type: text/event-stream\r\n",
        b"Content-Type: text/event-stream; charset=utf-8\r\n",
        b"Content-Type: text/html\r\n",
        b"Content-Type: \xff\xfe\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: gzip, chunked\r\n",
        b"Transfer-Encoding: bogus\r\n",
        b"Content-Length: 0\r\n",
        b"Content-Length: 12\r\n",
        b"Content-Length: -5\r\n",
        b"Content-Length: 99999999999999999999\r\n",
        b"Content-Encoding: gzip\r\n",
        b"Content-Encoding: deflate\r\n",
        b"Content-Encoding: br\r\n",
        b"Location: \r\n",
        b"Location: /elsewhere\r\n",
        b"Retry-After: 0\r\n",
        b"Retry-After: \xff\r\n",
        b"X-Folded: a\r\n continued\r\n",
        b"no colon here\r\n",
        b": empty name\r\n",
        b"\xff\xfe: binary\r\n",
        b"X-Long: " + b"v" * 5000 + b"\r\n",
    ]
)
_BODY_PIECES = st.one_of(
    TOKENS,
    st.sampled_from(
        [
            b"data: whole\n\n",  # a complete event, whatever the framing
            b"5\r\ndata:\r\n",
            b"a\r\ndata: x\n\n\r\n",
            b"0\r\n\r\n",
            b"zz\r\n",
            b"ffffffffffffffffff\r\n",
            zlib.compress(b"data: z\n\n"),
            b"\x1f\x8b\x08\x00",
        ]
    ),
    st.binary(max_size=40),
)


_EVENT_STREAM_STATUS = frozenset((b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 200"))


@st.composite
def raw_responses(draw: st.DrawFn) -> tuple[bytes, str, bool]:
    """A raw response, how its connection ends, and whether it may carry events at
    all: only a 200 (with a well-formed status line) labelled text/event-stream."""
    # One field of each name: conflicting Content-Lengths have a test of their own.
    fields = draw(st.lists(_HEADER_LINES, max_size=6, unique_by=lambda f: f.split(b":")[0].lower()))
    status = draw(_STATUS_LINES)
    head = status + b"".join(fields)
    if draw(st.booleans()):
        head += b"\r\n"
    body = b"".join(draw(st.lists(_BODY_PIECES, max_size=10)))
    # A status line without its CRLF takes the first field as its reason phrase.
    parsed = fields if status.endswith(b"\r\n") else fields[1:]
    labelled = any(f.lower().startswith(b"content-type: text/event-stream") for f in parsed)
    may_have_events = status.rstrip(b"\r\n") in _EVENT_STREAM_STATUS and labelled
    return head + body, draw(st.sampled_from(["close", "drop", "reset"])), may_have_events


def test_any_response_at_all_ends_in_events_and_errors_of_our_own(server: SSEServer) -> None:
    # A redirect's target gets a plain 404; nothing else is queued.
    @NETWORK
    @given(raw_responses())
    def check(response: tuple[bytes, str, bool]) -> None:
        data, ending, may_have_events = response
        script = Script.raw_response(data)
        script = {"close": script.close, "drop": script.drop, "reset": script.reset}[ending]()
        server.enqueue(script)
        events, errors = _one_shot(server.url, retries=0, timeout=(2.0, 0.5))
        # No event out of an error page, a redirect, a 204 or a wrong Content-Type.
        assert may_have_events or events == [], events
        foreign = [e for e in errors if not isinstance(e, EventStreamError)]
        assert not foreign, f"not an eventstream error: {foreign!r}"

    check()
