"""eventstream's parser against sseclient-py, the client many users migrate from.

On streams where sseclient-py follows the spec (LF line ends, valid UTF-8, no BOM,
data in every block, no NUL in ids, complete events) both must give the same events.
Where they differ, a documented case below pins both results and says why
eventstream's is the spec's; the list stays true because each case asserts both.

sseclient-py reads any iterable of byte chunks, so it runs offline here.  Its events
carry only what their own block set (``id`` and ``retry`` are ``None`` otherwise, and
``retry`` stays a string); ``_sseclient_as_spec`` carries them forward as the spec's
last event ID and reconnection time before comparing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional, Union

import pytest
from _helpers import ev, run_body
from hypothesis import given, settings
from hypothesis import strategies as st
from sseclient import SSEClient

from eventstream import Event

#: An sseclient-py event as a plain tuple: (event, data, id, retry).
Raw = tuple[str, str, Optional[str], Optional[str]]


def _sseclient_raw(reads: Sequence[bytes]) -> list[Raw]:
    return [(e.event, e.data, e.id, e.retry) for e in SSEClient(iter(reads)).events()]


def _sseclient_as_spec(reads: Sequence[bytes]) -> list[Event]:
    events = []
    last_id, retry = "", None
    for event, data, id_, retry_text in _sseclient_raw(reads):
        last_id = last_id if id_ is None else id_
        retry = retry if retry_text is None else int(retry_text)
        events.append(Event(event, data, last_id, retry))
    return events


# --- Streams on which sseclient-py follows the spec.

VALUE = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n\0"),
    max_size=8,
)
NAMES = st.sampled_from(["event", "id", "id", "retry", "foo", "Data", "", "\ufeffx"])


@st.composite
def _line(draw: st.DrawFn, name: str) -> bytes:
    if name == "retry":  # sseclient-py keeps any value: give it ASCII digits only
        value = str(draw(st.integers(0, 10**9)))
        return f"retry{draw(st.sampled_from([':', ': ']))}{value}\n".encode()
    if name == "":
        return f":{draw(VALUE)}\n".encode()  # a comment
    separator = draw(st.sampled_from(["", ":", ": ", ":  "]))
    value = draw(VALUE) if separator else ""
    return f"{name}{separator}{value}\n".encode()


@st.composite
def _block(draw: st.DrawFn) -> bytes:
    lines = [draw(_line("data"))]  # every block has data: sseclient-py drops the others
    for name in draw(st.lists(st.one_of(st.just("data"), NAMES), max_size=4)):
        lines.insert(draw(st.integers(0, len(lines))), draw(_line(name)))
    return b"".join(lines) + b"\n" * draw(st.integers(1, 3))


@st.composite
def _spec_abiding_streams(draw: st.DrawFn) -> bytes:
    return b"\n" * draw(st.integers(0, 2)) + b"".join(draw(st.lists(_block(), max_size=6)))


@settings(max_examples=200, deadline=None)
@given(st.data(), _spec_abiding_streams())
def test_same_events_as_sseclient_on_spec_abiding_streams(data: st.DataObject, body: bytes) -> None:
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=6)))
    reads = [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)])]
    events, _, _ = run_body(reads)
    assert events == _sseclient_as_spec(reads)
    assert events == _sseclient_as_spec([body])


# --- Where the two differ, and why eventstream follows the spec (WHATWG HTML 9.2).

SseclientResult = Union[list[Raw], type[BaseException]]

DIFFERENCES: list[tuple[str, bytes, list[Event], SseclientResult, str]] = [
    (
        "bom",
        b"\xef\xbb\xbfdata: x\n\n",
        [ev("x")],
        [],
        "UTF-8 decode removes one leading BOM; sseclient-py keeps it, so the first "
        "field is named '\\ufeffdata' and ignored",
    ),
    (
        "invalid-utf8",
        b"data: \xff\n\n",
        [ev("\ufffd")],
        UnicodeDecodeError,
        "the stream is decoded with U+FFFD replacement; sseclient-py decodes strictly "
        "and the error ends the stream",
    ),
    (
        "unfinished-event-at-end",
        b"data: x\n",
        [],
        [("message", "x", None, None)],
        "an event not ended by a blank line before the end of the stream is discarded",
    ),
    (
        "unfinished-line-at-end",
        b"data: x",
        [],
        [("message", "x", None, None)],
        "an unfinished line at the end of the stream is discarded with its event",
    ),
    (
        "id-persists",
        b"id: 1\ndata: a\n\ndata: b\n\n",
        [ev("a", id="1"), ev("b", id="1")],
        [("message", "a", "1", None), ("message", "b", None, None)],
        "the last event ID buffer is not reset between events, so lastEventId stays set",
    ),
    (
        "id-only-block",
        b"id: 1\n\ndata: x\n\n",
        [ev("x", id="1")],
        [("message", "x", None, None)],
        "dispatch sets the last event ID string before it checks for data",
    ),
    (
        "id-with-nul",
        b"id: a\x00b\ndata: x\n\n",
        [ev("x")],
        [("message", "x", "a\x00b", None)],
        "an id field whose value contains U+0000 NULL is ignored",
    ),
    (
        "retry-is-an-integer",
        b"retry: 10\ndata: x\n\n",
        [ev("x", retry=10)],
        [("message", "x", None, "10")],
        "the retry value is interpreted as an integer in base ten",
    ),
    (
        "retry-plus-sign",
        b"retry: +5\ndata: x\n\n",
        [ev("x")],
        [("message", "x", None, "+5")],
        "retry counts only when its value is ASCII digits only",
    ),
    (
        "retry-non-ascii-digits",
        "retry: ١٢\ndata: x\n\n".encode(),
        [ev("x")],
        [("message", "x", None, "١٢")],
        "Arabic-Indic digits are digits, but not ASCII digits",
    ),
    (
        "retry-persists",
        b"retry: 5\ndata: a\n\ndata: b\n\n",
        [ev("a", retry=5), ev("b", retry=5)],
        [("message", "a", None, "5"), ("message", "b", None, None)],
        "the reconnection time belongs to the stream, not to one event",
    ),
    (
        "lf-then-crlf-blank-line",
        b"data: a\n\r\ndata: b\n\n",
        [ev("a"), ev("b")],
        [("message", "a\nb", None, None)],
        "LF then CRLF is a line end then a blank line; sseclient-py only ends an event "
        "on LF LF, CR CR or CRLF CRLF, and skips the blank line inside it",
    ),
    (
        "cr-then-crlf-blank-line",
        b"data: a\r\r\ndata: b\r\n\r\n",
        [ev("a"), ev("b")],
        [("message", "a\nb", None, None)],
        "CR then CRLF is a line end then a blank line",
    ),
    (
        "lf-then-cr-blank-line",
        b"data: a\n\rdata: b\n\n",
        [ev("a"), ev("b")],
        [("message", "a\nb", None, None)],
        "LF then CR is a line end then a blank line",
    ),
]


@pytest.mark.parametrize(
    ("name", "body", "ours", "theirs", "why"), DIFFERENCES, ids=[d[0] for d in DIFFERENCES]
)
def test_documented_difference_from_sseclient(
    name: str, body: bytes, ours: list[Event], theirs: Any, why: str
) -> None:
    assert run_body([body])[0] == ours, why
    if isinstance(theirs, type):
        with pytest.raises(theirs):
            _sseclient_raw([body])
    else:
        assert _sseclient_raw([body]) == theirs, why
