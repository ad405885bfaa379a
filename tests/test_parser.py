"""Parser cases written from WHATWG HTML 9.2.5/9.2.6 ("Parsing an event stream",
"Interpreting an event stream").

Every table case is checked whole, byte by byte, split in two at every point, with a
known event after it, and with a known event in the next body (``_helpers``).  A body
ends with ``reset()``, so an unfinished line or event at its end is dropped.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import pytest
from _helpers import (
    assert_parses,
    chunkings,
    cpu_deadline,
    ev,
    feed_capped,
    positioned,
    reference_parse,
    run_body,
)

from eventstream import (
    DEFAULT_MAX_EVENT_SIZE,
    Event,
    EventStreamError,
    Parser,
    ProtocolError,
    _parser,
)

FFFD = "\ufffd"

# (id, body, expected events, last event ID string, reconnection time) at end of body.
CASES: list[tuple[str, bytes, list[Event], str, int | None]] = [
    # --- Decoding: UTF-8 decode, U+FFFD for every maximal bad subsequence, never raises.
    ("utf8-valid-multibyte", "data: héllo €𝄞\n\n".encode(), [ev("héllo €𝄞")], "", None),
    ("utf8-lone-continuation", b"data: \x80\n\n", [ev(FFFD)], "", None),
    ("utf8-invalid-byte-ff", b"data: a\xffb\n\n", [ev(f"a{FFFD}b")], "", None),
    ("utf8-lead-f5", b"data: \xf5\n\n", [ev(FFFD)], "", None),
    ("utf8-overlong-2-byte", b"data: \xc0\xaf\n\n", [ev(FFFD * 2)], "", None),
    ("utf8-overlong-3-byte", b"data: \xe0\x80\xaf\n\n", [ev(FFFD * 3)], "", None),
    ("utf8-overlong-4-byte", b"data: \xf0\x80\x80\xaf\n\n", [ev(FFFD * 4)], "", None),
    ("utf8-surrogate", b"data: \xed\xa0\x80\n\n", [ev(FFFD * 3)], "", None),
    ("utf8-above-u10ffff", b"data: \xf4\x90\x80\x80\n\n", [ev(FFFD * 4)], "", None),
    ("utf8-truncated-before-lf", b"data: \xe2\x82\n\n", [ev(FFFD)], "", None),
    ("utf8-truncated-before-cr", b"data: \xf0\x9f\x98\r\r", [ev(FFFD)], "", None),
    ("utf8-truncated-before-crlf", b"data: \xe2\r\n\r\n", [ev(FFFD)], "", None),
    ("utf8-truncated-then-ascii", b"data: \xe2\x82x\n\n", [ev(f"{FFFD}x")], "", None),
    ("utf8-valid-then-truncated", b"data: \xe2\x82\xac\xe2\x82\n\n", [ev(f"€{FFFD}")], "", None),
    ("utf8-truncated-at-end-of-body", b"data: a\n\ndata: \xe2\x82", [ev("a")], "", None),
    ("utf8-invalid-in-field-name", b"dat\xe1: x\n\n", [], "", None),
    ("utf8-invalid-in-event-type", b"event: \xfe\ndata: x\n\n", [ev("x", FFFD)], "", None),
    ("utf8-invalid-in-id", b"id: \xff1\ndata: x\n\n", [ev("x", id=f"{FFFD}1")], f"{FFFD}1", None),
    ("utf8-invalid-in-comment", b": \xff\xfe\ndata: x\n\n", [ev("x")], "", None),
    ("nul-in-data-kept", b"data: a\x00b\n\n", [ev("a\x00b")], "", None),
    (
        "unicode-line-breaks-are-data",
        "data: a\u2028b\u0085c\n\n".encode(),
        [ev("a\u2028b\u0085c")],
        "",
        None,
    ),
    ("vt-ff-fs-are-data", b"data: a\x0bb\x0cc\x1cd\n\n", [ev("a\x0bb\x0cc\x1cd")], "", None),
    # --- Byte order mark: exactly one leading U+FEFF is removed by UTF-8 decode.
    ("bom-stripped", b"\xef\xbb\xbfdata: x\n\n", [ev("x")], "", None),
    ("bom-only", b"\xef\xbb\xbf", [], "", None),
    ("bom-then-blank-lines", b"\xef\xbb\xbf\n\ndata: x\n\n", [ev("x")], "", None),
    ("bom-then-comment", b"\xef\xbb\xbf: hi\ndata: x\n\n", [ev("x")], "", None),
    ("bom-then-crlf", b"\xef\xbb\xbfdata: x\r\n\r\n", [ev("x")], "", None),
    ("two-boms-second-is-field-name", b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\n", [], "", None),
    (
        "two-boms-then-next-event",
        b"\xef\xbb\xbf\xef\xbb\xbfdata: x\n\ndata: y\n\n",
        [ev("y")],
        "",
        None,
    ),
    ("bom-not-at-start-kept", b"data: x\n\n\xef\xbb\xbfdata: y\n\n", [ev("x")], "", None),
    ("bom-in-value-kept", b"data: \xef\xbb\xbfx\n\n", [ev("\ufeffx")], "", None),
    ("bom-partial-is-invalid-utf8", b"\xef\xbbdata: x\n\n", [], "", None),
    ("bom-after-blank-line-kept", b"\n\xef\xbb\xbfdata: x\n\n", [], "", None),
    # --- Line ends: CRLF, LF, CR; CR CR is two line ends.
    ("lf", b"data: x\n\n", [ev("x")], "", None),
    ("crlf", b"data: x\r\n\r\n", [ev("x")], "", None),
    ("cr", b"data: x\r\r", [ev("x")], "", None),
    ("mixed-line-ends-in-one-event", b"data: a\rdata: b\ndata: c\r\n\n", [ev("a\nb\nc")], "", None),
    ("cr-cr-is-blank-line", b"data: a\r\rdata: b\r\r", [ev("a"), ev("b")], "", None),
    ("crlf-crlf-two-events", b"data: a\r\n\r\ndata: b\r\n\r\n", [ev("a"), ev("b")], "", None),
    ("lf-then-cr-blank", b"data: a\n\r", [ev("a")], "", None),
    ("cr-then-lf-blank", b"data: a\r\n\n", [ev("a")], "", None),
    ("lf-then-crlf-blank", b"data: a\n\r\ndata: b\n\n", [ev("a"), ev("b")], "", None),
    ("cr-then-crlf-blank", b"data: a\r\r\ndata: b\r\n\r\n", [ev("a"), ev("b")], "", None),
    ("crlf-then-cr-blank", b"data: a\r\n\r", [ev("a")], "", None),
    ("lf-cr-cr-extra-blank", b"data: a\n\r\rdata: b\n\n", [ev("a"), ev("b")], "", None),
    ("cr-inside-value-ends-line", b"data: a\rb\n\n", [ev("a")], "", None),
    ("lf-cr-lf-cr", b"data: a\n\r\n\rdata: b\n\n", [ev("a"), ev("b")], "", None),
    # --- End of body: the unfinished line and the unfinished event are dropped.
    ("unfinished-line", b"data: a", [], "", None),
    ("unfinished-event-lf", b"data: a\n", [], "", None),
    ("unfinished-event-cr", b"data: a\r", [], "", None),
    ("unfinished-event-crlf", b"data: a\r\n", [], "", None),
    ("unfinished-after-complete", b"data: a\n\ndata: b\n", [ev("a")], "", None),
    ("unfinished-multi-line", b"data: a\ndata: b\nevent: e\n", [], "", None),
    ("empty-body", b"", [], "", None),
    # --- Blank lines.
    ("leading-blank-lines", b"\n\n\ndata: x\n\n", [ev("x")], "", None),
    ("consecutive-blank-lines", b"data: a\n\n\n\ndata: b\n\n\n", [ev("a"), ev("b")], "", None),
    ("only-blank-lines", b"\n\r\n\r\n", [], "", None),
    ("leading-crlf-blank-lines", b"\r\n\r\ndata: x\r\n\r\n", [ev("x")], "", None),
    # --- Comments: lines starting with a colon are ignored.
    ("comment-only", b": hello\n\n", [], "", None),
    ("comment-between-data-lines", b"data: a\n: c\ndata: b\n\n", [ev("a\nb")], "", None),
    ("colon-only-line", b":\ndata: x\n\n", [ev("x")], "", None),
    ("comment-looks-like-data", b":data: x\n\n", [], "", None),
    ("comment-looks-like-id", b":id: 1\ndata: x\n\n", [ev("x")], "", None),
    ("comment-keepalive-stream", b":\n\n:\n\ndata: x\n\n", [ev("x")], "", None),
    # --- A line without a colon is a field name with an empty value.
    ("data-alone", b"data\n\n", [ev("")], "", None),
    ("data-alone-twice", b"data\ndata\n\n", [ev("\n")], "", None),
    ("event-alone-is-message", b"event\ndata: x\n\n", [ev("x")], "", None),
    ("event-set-then-alone", b"event: a\nevent\ndata: x\n\n", [ev("x")], "", None),
    ("id-alone-resets", b"id: 1\ndata: a\n\nid\ndata: b\n\n", [ev("a", id="1"), ev("b")], "", None),
    ("retry-alone-ignored", b"retry\ndata: x\n\n", [ev("x")], "", None),
    ("unknown-alone", b"foo\ndata: x\n\n", [ev("x")], "", None),
    ("data-space-no-colon", b"data \n\n", [], "", None),
    # --- Exactly one leading space after the colon is removed.
    ("no-space", b"data:x\n\n", [ev("x")], "", None),
    ("one-space-removed", b"data: x\n\n", [ev("x")], "", None),
    ("two-spaces-keep-one", b"data:  x\n\n", [ev(" x")], "", None),
    ("tab-kept", b"data:\tx\n\n", [ev("\tx")], "", None),
    ("nbsp-kept", "data:\u00a0x\n\n".encode(), [ev("\u00a0x")], "", None),
    ("trailing-space-kept", b"data: x \n\n", [ev("x ")], "", None),
    ("space-only-value", b"data: \n\n", [ev("")], "", None),
    ("space-before-colon", b"data : x\n\n", [], "", None),
    ("colons-in-value", b"data: a:b: c\n\n", [ev("a:b: c")], "", None),
    ("event-two-spaces", b"event:  x\ndata: y\n\n", [ev("y", " x")], "", None),
    ("id-two-spaces", b"id:  7\ndata: y\n\n", [ev("y", id=" 7")], " 7", None),
    # --- Field names: compared literally; unknown fields are ignored.
    ("unknown-field", b"foo: bar\ndata: x\n\n", [ev("x")], "", None),
    ("unknown-field-only", b"foo: bar\n\n", [], "", None),
    ("capitalised-data-ignored", b"Data: x\n\n", [], "", None),
    ("upper-case-data-ignored", b"DATA: x\ndata: y\n\n", [ev("y")], "", None),
    ("capitalised-event-ignored", b"Event: e\ndata: x\n\n", [ev("x")], "", None),
    ("capitalised-id-ignored", b"Id: 1\ndata: x\n\n", [ev("x")], "", None),
    ("capitalised-retry-ignored", b"Retry: 5\ndata: x\n\n", [ev("x")], "", None),
    ("leading-space-in-name", b" data: x\n\n", [], "", None),
    ("name-with-suffix", b"datax: 1\nids: 2\ndata: x\n\n", [ev("x")], "", None),
    # --- Data: lines joined with LF; one trailing LF removed.
    ("data-multi-line", b"data: a\ndata: b\ndata: c\n\n", [ev("a\nb\nc")], "", None),
    ("data-empty-line-in-middle", b"data: a\ndata:\ndata: b\n\n", [ev("a\n\nb")], "", None),
    ("data-empty-last-line", b"data: a\ndata:\n\n", [ev("a\n")], "", None),
    ("data-two-empty-lines", b"data:\ndata:\n\n", [ev("\n")], "", None),
    ("data-interleaved-fields", b"data: a\nevent: e\ndata: b\n\n", [ev("a\nb", "e")], "", None),
    ("data-json", b'data: {"a": [1, 2]}\n\n', [ev('{"a": [1, 2]}')], "", None),
    # --- Dispatch: no data, no event; the event type is reset either way.
    ("no-data-no-event", b"event: foo\n\n", [], "", None),
    ("no-data-resets-type", b"event: foo\n\ndata: x\n\n", [ev("x")], "", None),
    ("type-per-event", b"event: a\ndata: 1\n\ndata: 2\n\n", [ev("1", "a"), ev("2")], "", None),
    ("empty-event-is-message", b"event:\ndata: x\n\n", [ev("x")], "", None),
    ("last-event-line-wins", b"event: a\nevent: b\ndata: x\n\n", [ev("x", "b")], "", None),
    ("event-after-data", b"data: x\nevent: a\n\n", [ev("x", "a")], "", None),
    ("event-type-unicode", "event: ünï\ndata: x\n\n".encode(), [ev("x", "ünï")], "", None),
    # --- id: the buffer is set per line; the string at dispatch, also without data.
    ("id-on-event", b"id: 1\ndata: x\n\n", [ev("x", id="1")], "1", None),
    (
        "id-persists",
        b"id: 1\ndata: a\n\ndata: b\n\n",
        [ev("a", id="1"), ev("b", id="1")],
        "1",
        None,
    ),
    ("id-only-block", b"id: 5\n\n", [], "5", None),
    ("id-only-block-then-event", b"id: 5\n\ndata: x\n\n", [ev("x", id="5")], "5", None),
    (
        "id-empty-resets",
        b"id: 1\ndata: a\n\nid:\ndata: b\n\n",
        [ev("a", id="1"), ev("b")],
        "",
        None,
    ),
    ("id-empty-only-block", b"id: 1\n\nid:\n\n", [], "", None),
    ("id-last-line-wins", b"id: 1\nid: 2\ndata: x\n\n", [ev("x", id="2")], "2", None),
    ("id-after-data", b"data: x\nid: 9\n\n", [ev("x", id="9")], "9", None),
    (
        "id-with-nul-ignored",
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\n",
        [ev("a", id="1"), ev("b", id="1")],
        "1",
        None,
    ),
    ("id-with-nul-first", b"id: a\x00\ndata: x\n\n", [ev("x")], "", None),
    ("id-nul-only-block", b"id: 1\n\nid: \x00\n\n", [], "1", None),
    ("id-in-unfinished-event", b"id: 1\ndata: a\n\nid: 2\ndata: b\n", [ev("a", id="1")], "1", None),
    ("id-in-unfinished-id-block", b"id: 7\n", [], "", None),
    ("id-only-block-resets-type", b"event: x\nid: 1\n\ndata: y\n\n", [ev("y", id="1")], "1", None),
    ("id-unicode-and-colon", "id: ü:1 \ndata: x\n\n".encode(), [ev("x", id="ü:1 ")], "ü:1 ", None),
    # --- retry: ASCII digits only, base ten; applied when its line is parsed.
    ("retry-valid", b"retry: 1000\ndata: x\n\n", [ev("x", retry=1000)], "", 1000),
    ("retry-only-block", b"retry: 5\n\n", [], "", 5),
    ("retry-zero", b"retry: 0\n\n", [], "", 0),
    ("retry-leading-zeros", b"retry: 007\n\n", [], "", 7),
    ("retry-no-space", b"retry:15\n\n", [], "", 15),
    (
        "retry-huge",
        b"retry: 123456789012345678901234567890\n\n",
        [],
        "",
        123456789012345678901234567890,
    ),
    ("retry-plus-sign", b"retry: +5\n\n", [], "", None),
    ("retry-minus-sign", b"retry: -1\n\n", [], "", None),
    ("retry-two-spaces", b"retry:  5\n\n", [], "", None),
    ("retry-trailing-space", b"retry: 5 \n\n", [], "", None),
    ("retry-decimal", b"retry: 5.0\n\n", [], "", None),
    ("retry-exponent", b"retry: 1e3\n\n", [], "", None),
    ("retry-underscore", b"retry: 1_000\n\n", [], "", None),
    ("retry-hex", b"retry: 0x10\n\n", [], "", None),
    ("retry-empty", b"retry:\n\n", [], "", None),
    ("retry-tab", b"retry:\t5\n\n", [], "", None),
    ("retry-nul", b"retry: 5\x00\n\n", [], "", None),
    ("retry-arabic-indic-digits", "retry: ١٢\n\n".encode(), [], "", None),
    ("retry-superscript-two", "retry: ²\n\n".encode(), [], "", None),
    ("retry-fullwidth-digit", "retry: \uff15\n\n".encode(), [], "", None),
    (
        "retry-invalid-keeps-previous",
        b"retry: 5\n\nretry: x\ndata: y\n\n",
        [ev("y", retry=5)],
        "",
        5,
    ),
    (
        "retry-persists",
        b"retry: 5\ndata: a\n\ndata: b\n\n",
        [ev("a", retry=5), ev("b", retry=5)],
        "",
        5,
    ),
    (
        "retry-later-wins",
        b"retry: 5\ndata: a\n\nretry: 6\ndata: b\n\n",
        [ev("a", retry=5), ev("b", retry=6)],
        "",
        6,
    ),
    ("retry-after-data-same-event", b"data: x\nretry: 3\n\n", [ev("x", retry=3)], "", 3),
    ("retry-in-unfinished-event", b"data: a\nretry: 7\n", [], "", 7),
    ("retry-unfinished-line", b"retry: 7", [], "", None),
    ("retry-in-comment", b": retry: 7\n\n", [], "", None),
    # --- Event.id and Event.retry are the state at dispatch.
    (
        "state-at-dispatch",
        b"data: a\n\nid: 1\nretry: 10\ndata: b\n\nid: 2\n\ndata: c\n\n",
        [ev("a"), ev("b", id="1", retry=10), ev("c", id="2", retry=10)],
        "2",
        10,
    ),
    (
        "full-event",
        b': comment\r\nevent: update\r\nid: 42\r\nretry: 3000\r\ndata: {"n": 1}\r\n\r\n',
        [ev('{"n": 1}', "update", "42", 3000)],
        "42",
        3000,
    ),
]


def _ids(cases: Sequence[tuple[Any, ...]]) -> list[str]:
    return [case[0] for case in cases]


def test_case_ids_are_unique() -> None:
    assert len(set(_ids(CASES))) == len(CASES)


@pytest.mark.parametrize(
    ("name", "body", "events", "last_event_id", "retry"), CASES, ids=_ids(CASES)
)
def test_spec_case(
    name: str, body: bytes, events: list[Event], last_event_id: str, retry: int | None
) -> None:
    assert_parses(body, events, last_event_id, retry)


def test_reference_parser_agrees_with_table() -> None:
    # The property tests trust reference_parse as an oracle: hold it to the table too.
    # One test, not one per case: the table is checked case by case just above.
    for name, body, events, last_event_id, retry in CASES:
        assert reference_parse(body) == (events, last_event_id, retry), name


# --- Seeding the last event ID, as when resuming a stream.

SEEDED: list[tuple[str, bytes, list[Event], str]] = [
    ("seed-on-event", b"data: x\n\n", [ev("x", id="7")], "7"),
    ("seed-kept-without-events", b": hi\n\n", [], "7"),
    ("seed-replaced", b"id: 8\ndata: x\n\n", [ev("x", id="8")], "8"),
    ("seed-reset-by-empty-id", b"id:\ndata: x\n\n", [ev("x")], ""),
    ("seed-kept-on-nul-id", b"id: \x00\ndata: x\n\n", [ev("x", id="7")], "7"),
    ("seed-kept-on-unfinished-id", b"id: 8\ndata: x\n", [], "7"),
]


@pytest.mark.parametrize(("name", "body", "events", "last_event_id"), SEEDED, ids=_ids(SEEDED))
def test_last_event_id_seeded_by_constructor(
    name: str, body: bytes, events: list[Event], last_event_id: str
) -> None:
    assert Parser(last_event_id="7").last_event_id == "7"
    assert_parses(body, events, last_event_id, None, parser_kwargs={"last_event_id": "7"})
    assert reference_parse(body, last_event_id="7") == (events, last_event_id, None)


# --- Constructor validation.


@pytest.mark.parametrize("size", ["1", 1.5, True, False, b"1"])
def test_max_event_size_of_wrong_type_is_type_error(size: object) -> None:
    with pytest.raises(TypeError, match="max_event_size"):
        Parser(max_event_size=size)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [0, -1])
def test_max_event_size_not_positive_is_value_error(size: int) -> None:
    with pytest.raises(ValueError, match="max_event_size"):
        Parser(max_event_size=size)


@pytest.mark.parametrize("size", [9, 10**12, None])
def test_max_event_size_accepts_positive_int_or_none(size: int | None) -> None:
    assert Parser(max_event_size=size).feed(b"data: \n\n") == [ev("")]


@pytest.mark.parametrize("seed", [b"1", 1, None])
def test_last_event_id_of_wrong_type_is_type_error(seed: object) -> None:
    with pytest.raises(TypeError, match="last_event_id"):
        Parser(last_event_id=seed)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", ["a\0b", "a\rb", "a\nb", "\n"])
def test_last_event_id_with_nul_cr_or_lf_is_value_error(seed: str) -> None:
    with pytest.raises(ValueError, match="last_event_id"):
        Parser(last_event_id=seed)


def test_options_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        Parser(1024)  # type: ignore[misc]


def test_fresh_parser_state() -> None:
    parser = Parser()
    assert (parser.last_event_id, parser.retry) == ("", None)
    assert parser.feed(b"") == []


# --- reset(): the next body of the stream.


def test_reset_drops_unfinished_line_and_event() -> None:
    parser = Parser()
    assert parser.feed(b"event: e\ndata: a\ndata: b") == []
    parser.reset()
    assert parser.feed(b"\n\ndata: c\n\n") == [ev("c")]


def test_reset_keeps_last_event_id_and_retry() -> None:
    parser = Parser()
    assert parser.feed(b"id: 3\nretry: 50\ndata: a\n\n") == [ev("a", id="3", retry=50)]
    parser.reset()
    assert parser.feed(b"data: b\n\n") == [ev("b", id="3", retry=50)]
    assert (parser.last_event_id, parser.retry) == ("3", 50)


def test_reset_applies_complete_retry_line_of_unfinished_event() -> None:
    parser = Parser()
    parser.feed(b"data: a\nretry: 70\nretry: 8")  # the last line is unfinished
    parser.reset()
    assert parser.retry == 70
    assert parser.feed(b"data: b\n\n") == [ev("b", retry=70)]


def test_retry_counts_as_soon_as_its_line_is_complete() -> None:
    # 9.2.6: the reconnection time is set when the retry line is processed, not at
    # dispatch, so a worker reading it before reset() already sees it.
    parser = Parser()
    parser.feed(b"data: a\nretry: 60")
    assert parser.retry is None  # the line is not finished yet
    parser.feed(b"\n")
    assert parser.retry == 60


def test_reset_ignores_id_of_unfinished_event() -> None:
    parser = Parser()
    parser.feed(b"id: 1\n\nid: 2\ndata: a\n")
    parser.reset()
    assert parser.last_event_id == "1"
    assert parser.feed(b"data: b\n\n") == [ev("b", id="1")]


@pytest.mark.parametrize("first", [b"data: a\n\n", b"", b"data: a\n", b"\xef\xbb\xbfdata: a\n\n"])
def test_bom_stripped_again_after_reset(first: bytes) -> None:
    parser = Parser()
    parser.feed(first)
    parser.reset()
    assert parser.feed(b"\xef\xbb\xbfdata: b\n\n") == [ev("b")]


def test_bom_split_across_reads_after_reset() -> None:
    parser = Parser()
    parser.feed(b"\xef\xbb")  # a BOM that never completed: the body ended
    parser.reset()
    reads = [b"\xef", b"\xbb", b"\xbf", b"data: b\n\n"]
    assert [event for read in reads for event in parser.feed(read)] == [ev("b")]


def test_reset_forgets_cr_at_end_of_previous_body() -> None:
    # The LF that starts the next body is a line end of its own (a blank line).
    parser = Parser()
    assert parser.feed(b"data: a\r") == []
    parser.reset()
    assert parser.feed(b"\ndata: b\n\n") == [ev("b")]


def test_a_read_in_a_bytearray_can_be_reused_once_fed() -> None:
    # A reader that fills one buffer again and again (readinto) hands the parser a
    # bytearray: the parser must neither keep seeing it nor stop it being resized.
    parser = Parser()
    assert parser.feed(b"data: 0\n\n") == [ev("0")]
    buffer = bytearray(b"data: a\n\ndata: " + b"b" * 40)
    assert parser.feed(buffer) == [ev("a")]
    buffer[:] = b"\n\n"  # resized and overwritten, as the next read would be
    assert parser.feed(buffer) == [ev("b" * 40)]


def test_two_bodies_match_the_reference() -> None:
    first, second = b"id: 1\nretry: 9\ndata: a\n\nid: 2\ndata: x", b"\xef\xbb\xbfdata: b\n\n"
    events, last_id, retry = reference_parse(first)
    more, last_id, retry = reference_parse(second, last_event_id=last_id, retry=retry)
    parser = Parser()
    got = parser.feed(first)
    parser.reset()
    got += parser.feed(second)
    assert (got, parser.last_event_id, parser.retry) == (events + more, last_id, retry)


def test_cr_ending_one_read_and_lf_starting_the_next_are_one_line_end() -> None:
    parser = Parser()
    assert parser.feed(b"data: a\r") == []
    assert parser.feed(b"\n") == []  # the LF completes the CRLF: no blank line yet
    assert parser.feed(b"\r") == [ev("a")]  # this CR is the blank line
    assert parser.feed(b"\ndata: b\r") == []  # its LF is part of that CRLF
    assert parser.feed(b"\r") == [ev("b")]


def test_events_carry_state_at_their_own_dispatch_in_one_read() -> None:
    body = b"id: 1\ndata: a\n\nid: 2\nretry: 4\ndata: b\n\n"
    events, last_id, retry = run_body([body])
    assert [(e.id, e.retry) for e in events] == [("1", None), ("2", 4)]
    assert (last_id, retry) == ("2", 4)


# --- Bounded memory: max_event_size caps one line and one event.

CAP = 64
KIB = 1024
MIB = 1024 * KIB


def _reads(body: bytes, size: int) -> Iterator[bytes]:
    # A generator: the reads are not all held at once, so tracemalloc sees the parser.
    return (body[i : i + size] for i in range(0, len(body), size))


def test_line_over_cap_raises_and_parsing_resumes_after_its_event() -> None:
    parser = Parser(max_event_size=CAP)
    with pytest.raises(ProtocolError, match="max_event_size") as info:
        parser.feed(b"data: a\n\nid: 1\ndata: b\n\ndata: " + b"x" * CAP)
    assert isinstance(info.value, EventStreamError)
    assert info.value.events == [ev("a"), ev("b", id="1")]
    assert parser.feed(b"x" * 10 * CAP) == []  # the rest of the line: dropped quietly
    # The line ends, but its event goes on until the blank line: all of it is skipped.
    assert parser.feed(b"\ndata: still the oversized event\n\n") == []
    assert parser.feed(b"data: c\n\n") == [ev("c", id="1")]


def test_an_oversized_event_alone_in_its_read_is_skipped() -> None:
    # The one-event read of a live stream (a whole event, nothing held) takes a short
    # path: it still honours the cap, whether the cap is under that path's size or not.
    for cap in (CAP, 600):
        parser = Parser(max_event_size=cap)
        assert parser.feed(b"data: a\n\n") == [ev("a")]  # the first read: BOM check
        with pytest.raises(ProtocolError) as info:
            parser.feed(b"data: " + b"x" * cap + b"\n\n")
        assert info.value.events == []
        assert parser.feed(b"data: b\n\n") == [ev("b")]


def test_line_over_cap_in_one_read_keeps_the_events_around_it() -> None:
    parser = Parser(max_event_size=CAP)
    body = b"data: a\n\ndata: " + b"x" * 2 * CAP + b"\n\ndata: b\n\n"
    with pytest.raises(ProtocolError) as info:
        parser.feed(body)
    assert info.value.events == [ev("a"), ev("b")]
    assert parser.feed(b"data: c\n\n") == [ev("c")]


def test_event_of_many_short_lines_over_cap_is_skipped_once() -> None:
    oversized = b"data: 123456789\n" * 20 + b"\n"  # every line fits, the event does not
    body = b"data: a\n\n" + oversized + b"data: b\n\n"
    for label, reads in [("whole", [body]), ("line by line", body.splitlines(keepends=True))]:
        events, errors = feed_capped(Parser(max_event_size=CAP), reads)
        assert (events, errors) == ([ev("a"), ev("b")], 1), label


def test_events_under_cap_pass_in_every_chunking() -> None:
    body = b"".join(b"data: %d%s\n\n" % (n, b"x" * 38) for n in range(3))
    expected = [ev(f"{n}{'x' * 38}") for n in range(3)]
    assert len(body) > CAP  # one read holds more than the cap, each event less
    assert_parses(body, expected, parser_kwargs={"max_event_size": CAP})


def test_cap_none_disables_the_limit() -> None:
    body = b"data: " + b"x" * (DEFAULT_MAX_EVENT_SIZE + KIB) + b"\n\n"
    with pytest.raises(ProtocolError):
        feed_all_reads(Parser(), _reads(body, MIB))
    events = feed_all_reads(Parser(max_event_size=None), _reads(body, MIB))
    assert [len(e.data) for e in events] == [DEFAULT_MAX_EVENT_SIZE + KIB]


def feed_all_reads(parser: Parser, reads: Iterable[bytes]) -> list[Event]:
    return [event for read in reads for event in parser.feed(read)]


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "line", [b"x" * (5 * MIB), b"y" * 99 + b"\ndata: "], ids=["one-long-line", "many-lines"]
)
def test_large_event_in_small_reads_is_linear_and_bounded(line: bytes) -> None:
    # A parser that copies or rescans its whole buffer on each read takes minutes on
    # 5 MiB in 1 KiB reads (5,120 reads) and fails on the timeout; a linear one takes
    # milliseconds.  Peak memory is checked structurally with tracemalloc.
    body = b"data: " + line * (5 * MIB // len(line)) + b"end\n\n"
    parser = Parser()
    tracemalloc.start()
    try:
        events = feed_all_reads(parser, _reads(body, KIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(events) == 1
    assert events[0].data.endswith("end")
    assert peak < 8 * len(body)


def _in_two_reads_a_line(body: bytes) -> list[bytes]:
    # Each line in two reads, the first without the line end (a long line in pieces).
    lines = body.splitlines(keepends=True)
    return [piece for line in lines for piece in (line[:-20], line[-20:]) if piece]


def _reads_starting_with_line_ends(body: bytes) -> list[bytes]:
    # Each read starts with the line end of the line before: its only LF is its first byte.
    first, *rest = body.split(b"\n")
    return [first] + [b"\n" + piece for piece in rest]


@pytest.mark.parametrize("every", [1, 10, 10**9], ids=["comment-per-line", "some", "none"])
@pytest.mark.parametrize(
    "cut",
    [lambda body: list(_reads(body, KIB)), _in_two_reads_a_line, _reads_starting_with_line_ends],
    ids=["1-KiB", "lines-in-two", "line-end-first"],
)
def test_a_watched_large_event_in_small_reads_is_linear(
    every: int, cut: Callable[[bytes], list[bytes]]
) -> None:
    # With comments watched, each read of an unfinished event is searched for comment
    # lines: only its own lines (and the one it continues, back to its start), or an
    # event of 4 MiB takes seconds of CPU (all held joined and searched per read).
    lines = [b"data: " + b"y" * 993 + b"\n"] * (4 * MIB // 1000)
    for i in range(0, len(lines), every):
        lines[i] = b": " + b"c" * 997 + b"\n"
    body = b"".join(lines) + b"data: end\n\n"
    reads = cut(body)
    comments: list[str] = []
    with cpu_deadline(1):
        events = feed_all_reads(Parser(on_comment=comments.append), reads)
    assert [e.data[-3:] for e in events] == ["end"]
    assert len(comments) == len(range(0, len(lines), every))


@pytest.mark.timeout(60)
def test_oversized_event_in_small_reads_is_dropped_in_bounded_memory() -> None:
    cap = 64 * KIB
    body = b"data: " + b"x" * (5 * MIB) + b"\n\n"
    parser = Parser(max_event_size=cap)
    tracemalloc.start()
    try:
        events, errors = feed_capped(parser, _reads(body, KIB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (events, errors) == ([], 1)  # one error per oversized event, not per read
    assert peak < 16 * cap
    assert parser.feed(b"data: next\n\n") == [ev("next")]


@pytest.mark.parametrize("piece", [1, 7, 64])
def test_unfinished_event_of_exactly_the_cap_is_no_error(piece: int) -> None:
    # A connection that drops with exactly max_event_size bytes of an event read
    # exceeded nothing: no ProtocolError (the worker would report it to on_error).
    # The bytes after the first read carry no line end, as a long line in small
    # reads does, and the parser only holds them; one byte more is over the cap.
    head, body = b"data: ", b"x" * (CAP - 6)
    for extra, raises in [(b"", False), (b"x", True)]:
        parser = Parser(max_event_size=CAP)
        parser.feed(head)
        rest = body + extra
        reads = [rest[i : i + piece] for i in range(0, len(rest), piece)]
        events, errors = feed_capped(parser, reads)
        assert (events, errors) == ([], int(raises)), (piece, extra)
        parser.reset()
        assert parser.feed(b"data: next\n\n") == [ev("next")]


def test_event_of_exactly_the_cap_in_small_reads_is_delivered() -> None:
    line = b"data: " + b"x" * (CAP - 8) + b"\n"  # the block is CAP bytes with its "\n"
    for piece in (1, 5, CAP):
        reads = [line[i : i + piece] for i in range(0, len(line), piece)] + [b"\n"]
        events, errors = feed_capped(Parser(max_event_size=CAP), reads)
        assert (events, errors) == ([ev("x" * (CAP - 8))], 0), piece


def test_reset_ends_discarding_an_oversized_event() -> None:
    parser = Parser(max_event_size=CAP)
    with pytest.raises(ProtocolError):
        parser.feed(b"data: " + b"x" * 2 * CAP)
    parser.reset()  # the connection dropped mid-event: the next body starts clean
    assert parser.feed(b"data: a\n\n") == [ev("a")]


# --- Regressions: bugs the size cap once had.


def test_extra_blank_line_in_a_read_larger_than_cap_does_not_hang() -> None:
    # Two small events and one extra blank line, in one read longer than the cap:
    # the block-by-block walk once found no b"\n\n" after the last event and moved
    # its cursor back to the start.  A keep-alive blank line does this.
    parser = Parser(max_event_size=10)
    with cpu_deadline(1):
        assert parser.feed(b"data: 1\n\ndata: 2\n\n\n") == [ev("1"), ev("2")]


def test_event_after_skipped_event_survives_a_read_boundary() -> None:
    # The first read completes an oversized event and starts the next one ("d"),
    # which must not be taken for the rest of the oversized one.
    parser = Parser(max_event_size=10)
    with pytest.raises(ProtocolError):
        parser.feed(b"data: 12345678\n\nd")
    assert parser.feed(b"ata: y\n\n") == [ev("y")]


def test_event_size_does_not_depend_on_read_boundaries() -> None:
    # The blank line before "data:" must not count toward the next event's size
    # in some splits and not in others.
    body = b"id: 1\n\n\ndata: \n\n"
    outcomes = set()
    for _, reads in chunkings(body):
        with cpu_deadline(1):
            events, _ = feed_capped(Parser(max_event_size=8), reads)
        outcomes.add(tuple(events))
    assert len(outcomes) == 1, outcomes


# --- Comments (on_comment).  The generated streams of test_parser_properties.py check
# order and timing on every chunking; these pin the API and the paths those miss.


def _positioned(reads: Iterable[bytes], **kwargs: Any) -> list[tuple[str, str]]:
    """Events and comments of ``reads``, merged in the order the parser places them."""
    return positioned(Parser(**kwargs), reads)


def test_on_comment_gets_the_text_after_the_colon() -> None:
    texts: list[str] = []
    parser = Parser(on_comment=texts.append)
    assert parser.feed(b": ping\n:\n::x\n:data: y\ndata: z\n\n") == [ev("z")]
    assert texts == [" ping", "", ":x", "data: y"]


def test_a_comment_is_reported_when_its_line_ends_not_at_the_blank_line() -> None:
    texts: list[str] = []
    parser = Parser(on_comment=texts.append)
    assert parser.feed(b"data: a\n: half") == []
    assert texts == []  # the line has not ended
    assert parser.feed(b" done\r") == []
    assert texts == [" half done"]  # a CR ends it; the event is not finished
    assert parser.feed(b"\n\n") == [ev("a")]  # the LF of the CRLF, then the blank line
    assert texts == [" half done"]  # not twice


def test_comments_between_events_of_one_read_keep_their_place() -> None:
    body = b": 0\ndata: a\n\n: 1\ndata: b\n: 2\n\ndata: c\n\n: 3\n"
    expected = [
        ("comment", " 0"),
        ("event", "a"),
        ("comment", " 1"),
        ("comment", " 2"),  # inside b's block, so before b is dispatched
        ("event", "b"),
        ("event", "c"),
        ("comment", " 3"),
    ]
    for label, reads in chunkings(body):
        assert _positioned(reads) == expected, label


def test_comments_between_long_lines_keep_their_place() -> None:
    # A region of long lines is read from the bytes (_interpret_long).
    long = "x" * 10_000
    body = f"data: {long}\n\n: between\ndata: {long}\n\n:after {long}\n\n".encode()
    expected = [("event", long), ("comment", " between"), ("event", long)]
    expected.append(("comment", f"after {long}"))
    assert _positioned([body]) == expected


def test_comments_around_a_skipped_oversized_event_keep_their_place() -> None:
    oversized = b"data: " + b"x" * 2 * CAP + b"\n\n"
    body = b": 0\ndata: a\n\n" + oversized + b": 1\ndata: b\n\n" + oversized + b": 2\n"
    expected = [("comment", " 0"), ("event", "a"), ("comment", " 1"), ("event", "b")]
    expected.append(("comment", " 2"))
    assert _positioned([body], max_event_size=CAP) == expected


class _Counting(Parser):
    """A parser that counts the ProtocolErrors its feed() raises."""

    __slots__ = ("errors",)

    def feed(self, data: bytes) -> list[Event]:
        try:
            return super().feed(data)
        except ProtocolError:
            self.errors += 1
            raise


def _capped(reads: Iterable[bytes], *, watch: bool) -> tuple[list[tuple[str, str]], int]:
    """Events and comments (if ``watch``) in place, and the number of errors raised."""
    parser = _Counting(max_event_size=CAP)
    parser.errors = 0
    if watch:
        return positioned(parser, reads), parser.errors
    events, _ = feed_capped(parser, reads)
    return [("event", e.data) for e in events], parser.errors


@pytest.mark.parametrize("line_end", [b"\n", b"\r", b"\r\n"])
@pytest.mark.parametrize("first", [b"", b"data: x\n"], ids=["comment-first", "after-a-line"])
@pytest.mark.parametrize(("past_cap", "reported"), [(0, True), (1, False), (2, False)])
def test_a_comment_in_an_oversized_event_is_reported_if_its_line_ends_within_the_cap(
    line_end: bytes, first: bytes, past_cap: int, reported: bool
) -> None:
    # The event's bytes up to the comment's line end (one byte, a CRLF too) are CAP,
    # CAP + 1, CAP + 2: the comment is reported in the first case only, whatever the
    # reads.  Comment first, CAP + 1 is a line over the cap on its own.
    text = b" " + b"c" * (CAP + past_cap - len(first) - 3)
    oversized = first + b":" + text + line_end + b"data: " + b"y" * CAP + b"\n\n"
    body = b"data: a\n\n" + oversized + b"data: b\n\n"
    comment = [("comment", text.decode())] if reported else []
    expected = [("event", "a"), *comment, ("event", "b")]
    for label, reads in chunkings(body):
        assert _capped(reads, watch=True) == (expected, 1), label
        assert _capped(reads, watch=False) == ([("event", "a"), ("event", "b")], 1), label


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n"])
@pytest.mark.parametrize("comment_first", [False, True])
@pytest.mark.parametrize(("size", "errors"), [(CAP, 0), (CAP + 1, 1)])
def test_comment_lines_count_toward_the_event_size_watched_or_not(
    line_end: bytes, comment_first: bool, size: int, errors: int
) -> None:
    # "data: x" and a comment that fill the event to CAP or CAP + 1 bytes with its
    # blank line: at CAP + 1 it is skipped, also when the comment was reported (and
    # could have been forgotten) before the rest of the event came.
    text = b" " + b"c" * (size - 12)  # and "data: x\n", ":", two line ends: size
    lines = [b"data: x" + line_end, b":" + text + line_end]
    block = b"".join(lines[::-1] if comment_first else lines) + line_end
    body = b"data: a\n\n" + block + b": after\ndata: b\n\n"
    event = [("event", "x")] if not errors else []
    expected = [("event", "a"), ("comment", text.decode()), *event, ("comment", " after")]
    expected.append(("event", "b"))
    for label, reads in chunkings(body):
        assert _capped(reads, watch=True) == (expected, errors), label
        unwatched = [item for item in expected if item[0] == "event"]
        assert _capped(reads, watch=False) == (unwatched, errors), label


def test_a_line_over_the_cap_is_an_overflow_comment_or_not() -> None:
    # A heartbeat comment longer than the cap, alone between events, skips its block
    # and raises, however it arrives; the stream goes on.
    for line in (b":" + b"p" * CAP + b"\n", b"x" * CAP + b"\n"):
        body = b"data: a\n\n" + line + b"\ndata: b\n\n"
        for label, reads in chunkings(body):
            assert _capped(reads, watch=True) == ([("event", "a"), ("event", "b")], 1), label


def test_a_comment_of_a_skipped_event_is_decoded_with_replacement() -> None:
    # A comment that ends within the cap, in an oversized event that came in one read:
    # reported, its bytes that are not UTF-8 as U+FFFD, never an exception.
    body = b"data: a\n\n: bad \xff\n" + b"data: " + b"y" * CAP + b"\n\ndata: b\n\n"
    for label, reads in chunkings(body):
        expected = [("event", "a"), ("comment", f" bad {FFFD}"), ("event", "b")]
        assert _capped(reads, watch=True) == (expected, 1), label


def test_uniform_blocks_with_a_comment_keep_it_in_place() -> None:
    # Blocks of the same fields are read column by column, unless a comment is there.
    blocks = [b"id: %d\ndata: %d\n\n" % (n, n) for n in range(8)]
    body = b"".join(blocks[:5]) + b": here\n" + b"".join(blocks[5:])
    expected: list[tuple[str, object]] = [("event", str(n)) for n in range(5)]
    expected += [("comment", " here")] + [("event", str(n)) for n in range(5, 8)]
    assert _positioned([body]) == expected


def test_without_on_comment_comments_are_skipped() -> None:
    assert Parser().feed(b": ping\ndata: a\n\n: pong\n") == [ev("a")]


@pytest.mark.parametrize("callback", ["print", 1])
def test_on_comment_must_be_callable(callback: object) -> None:
    with pytest.raises(TypeError, match="on_comment"):
        Parser(on_comment=callback)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "reads",
    [
        [b"data: one\n\nretry: " + b"9" * 5000 + b"\ndata: x\n\n"],  # the line loop
        [b"data: one\n\nretry: " + b"9" * 5000 + b"\n\n", b"data: x\n\n"],  # the long line
        [b"data: one\n\nretry: " + b"9" * 5000 + b"\ndata: x", b"\n\n"],  # held unfinished
    ],
    ids=["lines", "long line", "held"],
)
def test_a_retry_of_thousands_of_digits_is_the_largest_and_loses_nothing(
    reads: list[bytes],
) -> None:
    # int() refuses more than 4300 digits (Python 3.11+): the parse raised ValueError,
    # and the events of the same read were lost with the stream.
    parser = Parser()
    events = [e for chunk in reads for e in parser.feed(chunk)]
    assert [e.data for e in events] == ["one", "x"]
    assert parser.retry == _parser.MAX_RETRY
    parser.feed(b"retry: " + b"9" * 5000 + b"\ndata: unfinished")
    parser.reset()  # applies the complete retry line of the unfinished event
    assert parser.retry == _parser.MAX_RETRY


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"0" * 30 + b"5", 5),  # leading zeros are no size
        (b"0" * 700, 0),
        (b"0" * 700 + b"7", 7),
        (b"9" * 640, 10**640 - 1),  # still its integer
        (b"1" + b"0" * 639, 10**639),  # 640 digits, not the largest
        (b"1" + b"0" * 640, 10**640 - 1),  # one digit more: the largest
    ],
    ids=["zeros-5", "zeros", "many-zeros-7", "640-nines", "640-digits", "641-digits"],
)
def test_a_retry_value_is_its_integer_up_to_the_largest(value: bytes, expected: int) -> None:
    for reads in ([b"retry: " + value + b"\ndata: x\n\n"], [b"retry: " + value + b"\n\n"]):
        parser = Parser()
        events = [e for chunk in reads for e in parser.feed(chunk)]
        assert parser.retry == expected
        assert all(e.retry == expected for e in events)
