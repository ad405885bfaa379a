"""Properties of the parser on generated streams, checked with hypothesis.

The key one is differential: ``reference_parse`` (tests/_helpers.py) reads the whole
body the way the spec text does, line by line, and the parser must agree with it after
every read, however the body is split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from _helpers import cpu_deadline, feed_all, feed_capped, reference_parse, run_body
from hypothesis import given, settings
from hypothesis import strategies as st

from eventstream import DEFAULT_MAX_EVENT_SIZE, Event, Parser, ProtocolError
from eventstream._parser import comment_positions

SETTINGS = settings(max_examples=200, deadline=None)

# --- A grammar of event streams, close enough to the format to reach every rule, with
# room for anything: random bytes, invalid UTF-8, BOMs, NUL, every kind of line end.

LINE_ENDS = st.sampled_from([b"\n", b"\r", b"\r\n"])
NAMES = st.sampled_from(
    ["data"] * 4
    + ["event", "id", "id", "retry", "retry"]
    + ["Data", "ID", "foo", "", " data", "\ufeffdata"]
)
SEPARATORS = st.sampled_from([b"", b":", b": ", b":  ", b": :"])
RETRY_VALUES = st.one_of(
    st.integers(0, 10**6).map(str),
    st.sampled_from(["007", "+5", " 5", "5 ", "5.0", "-1", "", "1_0", "١٢", "²", "9" * 30]),
)
TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters="\r\n"),
    max_size=8,
)
TEXT_WITH_ODDITIES = st.one_of(
    TEXT,
    st.sampled_from(["\0", "a\0b", "\ufeff", "\ufffd", "\u2028", "\x85", " ", "::", "é€𝄞"]),
)
BAD_BYTES = st.sampled_from(
    [b"\xff", b"\x80", b"\xe2\x82", b"\xf0\x9f\x98", b"\xed\xa0\x80", b"\xc0\xaf", b"\xef\xbb"]
)
BOM = b"\xef\xbb\xbf"


@st.composite
def field_lines(draw: st.DrawFn) -> bytes:
    name = draw(NAMES)
    separator = draw(SEPARATORS)
    value = draw(RETRY_VALUES if name == "retry" else TEXT_WITH_ODDITIES)
    if not separator and draw(st.booleans()):
        value = ""  # "data" alone: a field with an empty value
    return name.encode() + separator + value.encode() + draw(LINE_ENDS)


COMMENTS = st.builds(lambda text, end: b":" + text.encode() + end, TEXT, LINE_ENDS)
NOISE = st.one_of(
    BAD_BYTES,
    st.sampled_from([BOM, b"\0", b"\r", b"\n", b"\r\n", b"\n\n"]),
    st.binary(max_size=6),
)


@st.composite
def blocks(draw: st.DrawFn) -> bytes:
    """Field lines and comments, then a line end: a blank line if the last line ended
    with LF or CRLF (after CR, an LF only completes the CRLF; that is tested too)."""
    lines = draw(st.lists(st.one_of(field_lines(), field_lines(), COMMENTS), max_size=5))
    return b"".join(lines) + draw(LINE_ENDS)


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    head = draw(st.sampled_from([b"", b"", BOM, BOM + BOM, b"\xef", b"\xef\xbb"]))
    parts = draw(st.lists(st.one_of(blocks(), blocks(), blocks(), NOISE), max_size=12))
    tail = draw(st.one_of(st.just(b""), field_lines(), TEXT.map(str.encode)))  # unfinished
    return head + b"".join(parts) + tail


@st.composite
def split(draw: st.DrawFn, body: bytes) -> list[bytes]:
    """``body`` cut into reads at drawn points (empty reads included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=8)))
    return [body[start:end] for start, end in zip([0, *cuts], [*cuts, len(body)])]


SEEDS = st.sampled_from(["", "", "7", "é", " x "])


def _prefix_outcomes(parser: Parser, reads: Sequence[bytes]) -> list[tuple[object, ...]]:
    """(events so far, last event ID, retry) after each read, fed to ``parser``."""
    events: list[Event] = []
    outcomes = []
    for read in reads:
        events += parser.feed(read)
        outcomes.append((list(events), parser.last_event_id, parser.retry))
    return outcomes


# --- Properties.


@SETTINGS
@given(st.data(), streams(), SEEDS)
def test_parser_agrees_with_reference_after_every_read(
    data: st.DataObject, body: bytes, seed: str
) -> None:
    # After each read, the parser has seen a prefix of the body: its events, last
    # event ID string and reconnection time are those of the spec read of that prefix
    # (the unfinished line and event are simply not dispatched yet).
    reads = data.draw(split(body))
    got = _prefix_outcomes(Parser(last_event_id=seed), reads)
    consumed = b""
    for read, outcome in zip(reads, got):
        consumed += read
        events, last_id, retry = reference_parse(consumed, last_event_id=seed)
        assert outcome == (events, last_id, retry), consumed


@SETTINGS
@given(st.data(), streams())
def test_any_chunking_gives_the_same_events_and_state(data: st.DataObject, body: bytes) -> None:
    whole = run_body([body])
    assert run_body(data.draw(split(body))) == whole
    assert run_body([body[i : i + 1] for i in range(len(body))]) == whole


@SETTINGS
@given(st.data(), streams(), streams())
def test_reset_starts_a_new_body(data: st.DataObject, first: bytes, second: bytes) -> None:
    events, last_id, retry = reference_parse(first)
    more, last_id, retry = reference_parse(second, last_event_id=last_id, retry=retry)
    parser = Parser()
    got = [e for read in data.draw(split(first)) for e in parser.feed(read)]
    parser.reset()
    got += [e for read in data.draw(split(second)) for e in parser.feed(read)]
    parser.reset()
    assert (got, parser.last_event_id, parser.retry) == (events + more, last_id, retry)


@SETTINGS
@given(st.data(), st.binary(max_size=300))
def test_arbitrary_bytes_never_raise_and_match_reference(data: st.DataObject, body: bytes) -> None:
    # Without a size cap in reach nothing may raise: bad input becomes U+FFFD.
    assert run_body(data.draw(split(body))) == reference_parse(body)


def _is_subsequence(part: Sequence[object], whole: Sequence[object]) -> bool:
    remaining = iter(whole)
    return all(item in remaining for item in part)


@settings(SETTINGS)
@given(st.data(), streams(), st.integers(1, 40))
def test_size_cap_skips_whole_events_only(data: st.DataObject, body: bytes, cap: int) -> None:
    # With a cap, only ProtocolError may be raised, the events that get through are
    # the spec's events minus the skipped ones, and how the body was split does not
    # change which ones get through.
    reference = [(e.event, e.data) for e in reference_parse(body)[0]]
    outcomes = []
    for reads in ([body], data.draw(split(body)), [body[i : i + 1] for i in range(len(body))]):
        with cpu_deadline(1):
            events, _ = feed_capped(Parser(max_event_size=cap), reads)
        assert _is_subsequence([(e.event, e.data) for e in events], reference)
        assert all(len(e.data.encode()) <= cap for e in events)
        outcomes.append(events)
    assert outcomes[0] == outcomes[1] == outcomes[2]


# --- Streams whose events all have the same lines: the column-wise path.

UNIFORM_NAMES = st.sampled_from(["data", "data", "id", "event"])
UNIFORM_SEPARATORS = st.sampled_from([b": ", b":", b": "])
UNIFORM_VALUES = st.one_of(
    TEXT,
    st.sampled_from(["", " ", " lead", "\0", "a\0", "x: y", "data: z", ":"]),
    TEXT.map(lambda text: (text + "~") * 300),  # long lines take another column path
)


@st.composite
def uniform_streams(draw: st.DrawFn) -> bytes:
    """Blocks with the same field lines in the same order, with fresh values, and
    sometimes one block changed: a line replaced, dropped or doubled, a blank line
    added.  Each change must send the region to the line loop, never misread it."""
    shape = draw(st.lists(st.tuples(UNIFORM_NAMES, UNIFORM_SEPARATORS), min_size=1, max_size=4))
    blocks = []
    for _ in range(draw(st.integers(4, 16))):
        lines = [
            name.encode() + separator + draw(UNIFORM_VALUES).encode() + b"\n"
            for name, separator in shape
        ]
        blocks.append(lines)
    if draw(st.booleans()):
        block = draw(st.sampled_from(blocks))
        at = draw(st.integers(0, len(block) - 1))
        change = draw(st.sampled_from(["replace", "drop", "double", "blank"]))
        if change == "replace":
            block[at] = draw(st.one_of(field_lines(), COMMENTS)).replace(b"\r", b"\n")
        elif change == "drop":
            del block[at]
        elif change == "double":
            block.insert(at, block[at])
        else:
            block.insert(at, b"\n")
    return b"".join(b"".join(lines) + b"\n" for lines in blocks)


@settings(max_examples=400, deadline=None)
@given(st.data(), uniform_streams(), SEEDS)
def test_uniform_blocks_agree_with_reference(data: st.DataObject, body: bytes, seed: str) -> None:
    expected = reference_parse(body, last_event_id=seed)
    assert run_body([body], last_event_id=seed) == expected
    assert run_body(data.draw(split(body)), last_event_id=seed) == expected


def test_uniform_blocks_take_the_column_path() -> None:
    """The property above is only worth something if the column path runs: it does
    for the usual stream, and declines a region with a comment in it."""
    body = "".join(f'id: {i}\nevent: tick\ndata: {{"n": {i}}}\ndata:x\n\n' for i in range(8))
    events = Parser(last_event_id="seed")._interpret_uniform(body, body.split("\n"))
    assert events == reference_parse(body.encode(), last_event_id="seed")[0]
    pinged = body.replace("\ndata:x\n", "\ndata:x\n: ping\n", 1)
    assert Parser()._interpret_uniform(pinged, pinged.split("\n")) is None


# --- Comments.

Positioned = tuple[str, int, int]  # (text, events before it in the stream, read index)


def _reference_comments(body: bytes, reads: Sequence[bytes]) -> list[Positioned]:
    """Each comment line of ``body``, the number of events the spec dispatches before
    it, and the read that brings its line end (where it must be reported)."""
    read_of = [index for index, read in enumerate(reads) for _ in read]
    start = len(BOM) if body.startswith(BOM) else 0
    found = []
    line_start = i = start
    while i < len(body):
        if body[i] in b"\r\n":
            line = body[line_start:i]
            if line.startswith(b":"):
                before = len(reference_parse(body[: i + 1])[0])
                found.append((line[1:].decode("utf-8", "replace"), before, read_of[i]))
            if body[i : i + 2] == b"\r\n":
                i += 1
            line_start = i + 1
        i += 1
    return found


def _watched(
    reads: Sequence[bytes], parser: Parser
) -> tuple[list[tuple[object, ...]], list[Positioned]]:
    comments: list[Positioned] = []
    seen = 0  # events returned by the feeds before the current one
    current = 0

    def hook(text: str, before: int) -> None:
        comments.append((text, seen + before, current))

    comment_positions(parser, hook)
    outcomes = []
    events: list[Event] = []
    for current, read in enumerate(reads):  # noqa: B007 (hook reads it)
        events += parser.feed(read)
        seen = len(events)
        outcomes.append((list(events), parser.last_event_id, parser.retry))
    return outcomes, comments


@SETTINGS
@given(st.data(), streams(), st.sampled_from([DEFAULT_MAX_EVENT_SIZE, None]))
def test_comments_are_reported_in_stream_order_when_their_line_ends(
    data: st.DataObject, body: bytes, cap: int | None
) -> None:
    # Each comment comes out during the feed that completes its line, after exactly
    # the events the spec dispatches before it; the events and the state are those
    # of a parser that does not watch comments.
    reads = data.draw(split(body))
    outcomes, comments = _watched(reads, Parser(max_event_size=cap))
    assert outcomes == _prefix_outcomes(Parser(), reads)
    assert comments == _reference_comments(body, reads)


@SETTINGS
@given(streams())
def test_on_comment_gets_every_comment_byte_by_byte(body: bytes) -> None:
    reads = [body[i : i + 1] for i in range(len(body))]
    texts: list[str] = []
    events = feed_all(Parser(on_comment=texts.append), reads)
    assert events == feed_all(Parser(), reads)
    assert texts == [text for text, _, _ in _reference_comments(body, reads)]


# --- The size cap with comments: what happens, happens in the read that brings its byte.

Happening = tuple[int, str, object]  # (read index, "event" / "comment" / "error", what)


def _timeline(parser: Parser, reads: Sequence[bytes], *, watch: bool) -> list[Happening]:
    """Events, comments (if ``watch``) and errors of ``reads``, in the order a reader
    sees them, each with the index of the read whose feed() gave it.  An error ends
    its read (feed() raises once it is done), its ``events`` are the read's events."""
    notes: list[tuple[int, str]] = []
    if watch:
        comment_positions(parser, lambda text, before: notes.append((before, text)))
    timeline: list[Happening] = []
    for index, read in enumerate(reads):
        notes.clear()
        failed = False
        try:
            events = parser.feed(read)
        except ProtocolError as exc:
            events, failed = exc.events, True
        start = 0
        for before, text in notes:
            timeline += [(index, "event", e) for e in events[start:before]]
            timeline.append((index, "comment", text))
            start = max(start, before)
        timeline += [(index, "event", e) for e in events[start:]]
        if failed:
            timeline.append((index, "error", None))
    return timeline


def _in_reads(at_byte: list[Happening], reads: Sequence[bytes]) -> list[Happening]:
    """The timeline of a byte-by-byte feed, as it must be for ``reads``: each thing in
    the read that holds its byte, and a read's errors (one feed() raises once) last."""
    read_of = [index for index, read in enumerate(reads) for _ in read]
    in_read: list[list[Happening]] = [[] for _ in reads]
    failed = set()
    for byte, kind, what in at_byte:
        index = read_of[byte]
        if kind == "error":
            failed.add(index)
        else:
            in_read[index].append((index, kind, what))
    for index in failed:
        in_read[index].append((index, "error", None))
    return [item for items in in_read for item in items]


def _unwatched(timeline: list[Happening]) -> list[Happening]:
    return [item for item in timeline if item[1] != "comment"]


@settings(max_examples=400, deadline=None)
@given(st.data(), streams(), st.integers(1, 40))
def test_size_cap_and_comments_do_not_depend_on_reads_or_the_hook(
    data: st.DataObject, body: bytes, cap: int
) -> None:
    # Fed byte by byte, each event, comment and error comes from the feed of the byte
    # that completes it (an event's blank line, a comment's line end, the byte that
    # takes an event over the cap).  Fed in any other reads, the same things must come
    # in the same order, each from the read that holds that byte: so which comments
    # are reported, with which events before them, which events are skipped and where
    # the errors are raised does not depend on the reads; nor, but for the comments
    # themselves, on whether comments are watched.
    bytewise = [body[i : i + 1] for i in range(len(body))]
    with cpu_deadline(2):
        at_byte = _timeline(Parser(max_event_size=cap), bytewise, watch=True)
        unwatched = _timeline(Parser(max_event_size=cap), bytewise, watch=False)
        assert unwatched == _unwatched(at_byte)
        for reads in ([body], data.draw(split(body))):
            expected = _in_reads(at_byte, reads)
            assert _timeline(Parser(max_event_size=cap), reads, watch=True) == expected
            unwatched = _timeline(Parser(max_event_size=cap), reads, watch=False)
            assert unwatched == _unwatched(expected)


# --- Streams whose events are each one "data: " line: the one-split path.


@st.composite
def data_line_streams(draw: st.DrawFn) -> bytes:
    """Blocks of one ``data: `` line each, sometimes with one block changed: a second
    line, a third, a comment, no space after the colon, an extra blank line, another field."""
    value = st.one_of(TEXT.map(str.encode), TEXT_WITH_ODDITIES.map(str.encode), BAD_BYTES)
    values = draw(st.lists(value, min_size=1, max_size=16))
    blocks = [b"data: " + value + b"\n" for value in values]
    if draw(st.booleans()):
        at = draw(st.integers(0, len(blocks) - 1))
        blocks[at] = draw(
            st.sampled_from(
                [
                    blocks[at] + b"data: more\n",
                    blocks[at] + b"id: 7\ndata: more\n",  # three lines: data first and last
                    b": ping\n" + blocks[at],
                    blocks[at].replace(b"data: ", b"data:", 1),
                    blocks[at] + b"\n",
                    b"id: 7\n" + blocks[at],
                    b"data: x\r" + blocks[at],
                ]
            )
        )
    return b"".join(block + b"\n" for block in blocks)


# Enough blocks of one non-ASCII data line before the body for a region to take the
# one-split path: over the sample size, many line ends in the sample, not ASCII.
_WIDE_HEAD = "data: é → 東京 🚀\n\n".encode() * 200


@settings(max_examples=300, deadline=None)
@given(st.data(), data_line_streams(), SEEDS)
def test_data_line_blocks_agree_with_reference(data: st.DataObject, body: bytes, seed: str) -> None:
    expected = reference_parse(_WIDE_HEAD + body, last_event_id=seed)
    assert run_body([_WIDE_HEAD + body], last_event_id=seed) == expected
    assert run_body(data.draw(split(_WIDE_HEAD + body)), last_event_id=seed) == expected
    # Called directly as the parser calls it: line ends made LF, on "data: " only.
    region = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if region.startswith(b"data: "):
        events = Parser(last_event_id=seed)._interpret_data_bytes(region)
        assert events is None or events == reference_parse(region, last_event_id=seed)[0]


class _Spy(Parser):
    __slots__ = ()
    taken = 0

    def _interpret_data_bytes(self, region: bytes) -> list[Event] | None:
        events = super()._interpret_data_bytes(region)
        _Spy.taken += events is not None
        return events


def test_data_line_blocks_take_the_one_split_path() -> None:
    """The property above is only worth something if the path runs: it does for
    blocks of one data line that are not ASCII, and declines a region where a block
    has two lines."""
    body = "".join(f'data: {{"n": {i}, "text": "é → 東京 🚀"}}\n\n' for i in range(200))
    _Spy.taken = 0  # the test may run twice in one process (mutmut's runs do)
    assert (
        _Spy(last_event_id="s").feed(body.encode())
        == reference_parse(body.encode(), last_event_id="s")[0]
    )
    assert _Spy.taken == 1
    two_lines = body.replace("\n\n", "\ndata: x\n\n", 1).encode()
    assert Parser()._interpret_data_bytes(two_lines) is None
    assert _Spy().feed(two_lines) == reference_parse(two_lines)[0]
    assert _Spy.taken == 1


# --- Blocks of one "data: " line with long values: the value-by-value path.

# Blocks of one long data line before the body: a region over the sample size with
# few line ends in its sample (values of a few hundred bytes) takes that path.
_LONG_HEAD = ("data: " + "é → 東京 🚀 " * 30 + "\n\n").encode() * 8


@settings(max_examples=300, deadline=None)
@given(st.data(), data_line_streams(), SEEDS)
def test_long_data_line_blocks_agree_with_reference(
    data: st.DataObject, body: bytes, seed: str
) -> None:
    expected = reference_parse(_LONG_HEAD + body, last_event_id=seed)
    assert run_body([_LONG_HEAD + body], last_event_id=seed) == expected
    assert run_body(data.draw(split(_LONG_HEAD + body)), last_event_id=seed) == expected
    # Called directly as the parser calls it: line ends made LF, on "data: " only.
    region = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    if region.startswith(b"data: "):
        events = Parser(last_event_id=seed)._interpret_data_values(region)
        assert events is None or events == reference_parse(region, last_event_id=seed)[0]


@given(st.lists(st.one_of(st.binary(max_size=8), BAD_BYTES), max_size=8))
def test_decoding_lines_alone_equals_decoding_the_stream(pieces: list[bytes]) -> None:
    """What the byte-level paths rest on (WHATWG: the stream is decoded as a whole):
    a line end is ASCII, and a UTF-8 decoder never takes an ASCII byte into an
    invalid sequence, so decoding each line alone with U+FFFD gives the same text."""
    body = b"\n".join(pieces)
    alone = [line.decode("utf-8", "replace") for line in body.split(b"\n")]
    assert "\n".join(alone) == body.decode("utf-8", "replace")


class _LongSpy(Parser):
    __slots__ = ()
    taken = 0

    def _interpret_data_values(self, region: bytes) -> list[Event] | None:
        events = super()._interpret_data_values(region)
        _LongSpy.taken += events is not None
        return events


_LONG_VALUE = "data: " + "ça → 東京 🚀 " * 40  # one block's data line, 600 bytes


@pytest.mark.parametrize("at", [0, 5, 11])  # the first block, one inside, the last
@pytest.mark.parametrize(
    ("change", "taken"),
    [
        (lambda line: line, True),
        (lambda line: line + "a\udcffb", True),  # a byte that is not UTF-8: U+FFFD
        (lambda line: line.replace("data: ", "data:  ", 1), True),  # value " ça ..."
        (lambda line: "data: ", True),  # an empty value
        (lambda line: line.replace("data: ", "data:", 1), False),
        (lambda line: ": ping\n" + line, False),
        (lambda line: line + "\n: ping", False),
        (lambda line: "id: 7\n" + line, False),
        (lambda line: line + "\nevent: tick", False),
        (lambda line: line + "\ndata: more", False),
        (lambda line: line + "\n", False),  # a blank line more
        (lambda line: line + "\r", True),  # CRLF then LF: the same block
        (lambda line: line + "\r\r", False),  # CR, CR, LF: a blank line more
        (lambda line: "data: x\r" + line, False),
    ],
)
def test_long_data_line_blocks_read_value_by_value(
    at: int, change: Callable[[str], str], taken: bool
) -> None:
    """Twelve blocks of one long data line, one of them changed: the value-by-value
    path reads the region when every block is still one ``data: `` line, declines
    it otherwise, and the events are the spec's however the bytes are cut."""
    lines = [_LONG_VALUE] * 12
    lines[at] = change(lines[at])
    body = "".join(line + "\n\n" for line in lines).encode("utf-8", "surrogateescape")
    expected = reference_parse(body, last_event_id="s")
    _LongSpy.taken = 0
    assert run_body([body], last_event_id="s") == expected
    spy = _LongSpy(last_event_id="s")
    assert (spy.feed(body), spy.last_event_id, spy.retry) == expected
    assert _LongSpy.taken == taken
    for size in (1, 7, 4099, 5000, 8191):  # cuts inside multi-byte characters too
        reads = [body[i : i + size] for i in range(0, len(body), size)]
        assert run_body(reads, last_event_id="s") == expected


@pytest.mark.parametrize("value", [_LONG_VALUE, "data: é → 🚀"])  # each one-data-line path
def test_one_data_line_blocks_carry_the_id_and_retry_in_effect(value: str) -> None:
    """The events of a region read from its bytes carry the last event ID and the
    reconnection time set by earlier blocks, as every event does."""
    head = b"id: 5\nretry: 7000\n\n"
    body = "".join(f"{value}{i}\n\n" for i in range(300)).encode()
    expected = reference_parse(head + body)
    assert expected[0][-1][2:] == ("5", 7000)  # (id, retry)
    assert run_body([head, body]) == expected
