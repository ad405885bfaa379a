"""Parser guarantees pinned by mutation testing (#13): each test names the wrong edit of
``eventstream._parser`` that it catches, and checks only what a reader can observe
(events, the last event ID, the reconnection time, the errors raised)."""

from __future__ import annotations

import tracemalloc

import pytest
from _helpers import chunkings, ev, positioned, reference_parse, run_body

from eventstream import Event, Parser, ProtocolError
from eventstream._parser import comment_positions

BODY = b"\xef\xbb\xbfdata: a\r\ndata: b\r\rid: 1\rretry: 7\r\ndata: c\r\n\r\n: x\ndata: d\n\n"


@pytest.mark.parametrize("label", ["whole", "byte by byte", "split at 14"])
def test_empty_reads_change_nothing(label: str) -> None:
    # A decoder's read can decode to no bytes (a gzip header, a chunk-size line): feeding
    # b"" between any two reads, also between a CR and its LF, changes nothing.
    # Catches: _prepare consuming the CR flag on an empty read (an IndexError).
    reads = dict(chunkings(BODY))[label]
    with_empty = [piece for read in reads for piece in (b"", read)] + [b""]
    events, last_id, retry = run_body(with_empty)
    assert (events, last_id, retry) == reference_parse(BODY)
    assert events == [ev("a\nb"), ev("c", id="1", retry=7), ev("d", id="1", retry=7)]


def test_events_after_the_end_of_a_skipped_event_in_one_read_are_all_kept() -> None:
    # The read that ends an oversized event also brings two more: both are delivered.
    # Catches: _discard resuming after the last blank line of the read (rfind).
    parser = Parser(max_event_size=16)
    message = "an event stream line or event exceeds max_event_size (16 bytes); it was skipped"
    with pytest.raises(ProtocolError) as info:
        parser.feed(b"data: " + b"x" * 20)
    assert str(info.value) == message  # says what was lost
    assert parser.feed(b"xx\n\ndata: a\n\ndata: b\n\n") == [ev("a"), ev("b")]


def test_only_a_retry_line_of_an_unfinished_event_sets_the_reconnection_time() -> None:
    # Complete lines of an unfinished event: "retry:" counts at once (also across
    # reset()), other fields with digits never do.
    # Catches: _held_retry taking any "name:digits" line for a retry.
    parser = Parser()
    assert parser.feed(b"data:5\nid: 6\nretry:x7\nevent:8\n") == []
    assert parser.retry is None
    parser.reset()
    assert parser.retry is None
    assert parser.feed(b"data:5\nretry: 9\nid:6\n") == []
    assert parser.retry == 9


def test_a_comment_inside_an_unfinished_event_is_decoded_with_replacement() -> None:
    # The comment is reported when its line ends, before the event does; bytes that
    # are not UTF-8 become U+FFFD there too, never an exception.
    # Catches: _held_comments decoding strictly.
    comments: list[str] = []
    parser = Parser(on_comment=comments.append)
    assert parser.feed(b"data: a\n: bad \xff\n") == []
    assert comments == [" bad \ufffd"]
    assert parser.feed(b"\n") == [ev("a")]


def test_comments_after_a_skipped_oversized_event_keep_their_place() -> None:
    # One read over the cap: an oversized event first, then comments between events;
    # then reads under the cap, a comment first in each.
    # Catches: _interpret_checked leaving a wrong comment offset for the blocks after
    # the last oversized one (None: a TypeError) or for later reads (None or 1).
    oversized = b"data: " + b"x" * 40 + b"\n\n"
    reads = [oversized + b": 1\ndata: a\n\n: 2\ndata: b\n\n", b": 3\ndata: c\n\n"]
    reads.append(b": 4\n" + b"data: d\n\n" * 8)  # many blocks: the general path
    expected = [("comment", " 1"), ("event", "a"), ("comment", " 2"), ("event", "b")]
    expected += [("comment", " 3"), ("event", "c"), ("comment", " 4")] + [("event", "d")] * 8
    assert positioned(Parser(max_event_size=32), reads) == expected


def test_the_end_of_a_skipped_event_in_a_later_read_is_dropped_whole() -> None:
    # The oversized event ends in a later read with a short line ("id", which would
    # set the last event ID to ""): nothing of it counts, the next event is whole.
    # Catches: _discard resuming two bytes before the blank line that ends the event.
    parser = Parser(max_event_size=16, last_event_id="5")
    with pytest.raises(ProtocolError):
        parser.feed(b"data: " + b"x" * 20)
    assert parser.feed(b"xx\nid\n\ndata: b\n\n") == [ev("b", id="5")]
    assert parser.last_event_id == "5"


def test_a_retry_line_of_a_skipped_unfinished_event_does_not_count() -> None:
    # An event that outgrows the cap before its end is skipped whole, as one that
    # arrives complete in one read is: its retry line leaves the reconnection time as
    # it was, now and after the body ends.
    # Catches: _overflow keeping all but the first held byte of the skipped event.
    skipped = b"data: x\nretry: 7\ndata: " + b"x" * 40
    for end in (b"", b"\n\n"):  # unfinished (held, then dropped) or complete
        parser = Parser(max_event_size=32)
        with pytest.raises(ProtocolError) as info:
            parser.feed(b"data: a\n\n" + skipped + end)
        assert info.value.events == [ev("a")]
        assert parser.retry is None
        parser.reset()
        assert parser.retry is None
        assert parser.feed(b"data: b\n\n") == [ev("b")]


LONG = "x" * 5000  # a first line this long sends a region to the long-line path

#: Every kind of line in one region whose first line is long (read from its bytes).
LONG_REGION = (
    (
        f"data: {LONG}\nevent: tick\nid: 7\nretry: 1500\ndata:no space\ndata:  two spaces\ndata\n\n"
        "event:\n: a comment\ndata: b\nid: bad\0id\nretry: 12x\nretry: \u0661\u0662\nretry\n"
        "idx: 9\nev: z\neventx: z\nDATA: z\n\n"
        "id\ndata: c\n\n"
    )
    .encode()
    .replace(b"comment", b"comment \xff")
    .replace(b"data: b", b"data: b\xff")
)
LONG_EVENTS = [
    ev(f"{LONG}\nno space\n two spaces\n", "tick", id="7", retry=1500),
    ev("b\ufffd", id="7", retry=1500),
    ev("c", id="", retry=1500),
]


def test_every_field_form_in_a_region_of_long_lines() -> None:
    # Names of every length up to "event" and past it, with and without a colon or
    # a space, ids with NUL, retry values that are not ASCII digits, an empty event
    # type, bytes that are not UTF-8: as the spec reads them, comments watched or not.
    # Catches: _interpret_long mutants on the name length, the value start, the NUL
    # check, the empty event type, the retry digits and the comment callback.
    assert run_body([LONG_REGION]) == (LONG_EVENTS, "", 1500)
    assert run_body([LONG_REGION]) == reference_parse(LONG_REGION)
    expected = [("event", LONG_EVENTS[0].data), ("comment", " a comment \ufffd")]
    expected += [("event", "b\ufffd"), ("event", "c")]
    assert positioned(Parser(), [LONG_REGION]) == expected


WIDE_VALUE = "data: " + "ça → 東京 🚀 " * 40  # one data line of text that is not ASCII


@pytest.mark.parametrize(
    "first",
    [b"id: 12345678\n\n", b": a comment line\n\n", b"retry: 1000\n\n", b"event: wide\n", b""],
)
def test_wide_one_line_data_blocks_after_another_first_block(first: bytes) -> None:
    # A region over 4 KiB of blocks of one data line, not ASCII, that starts with some
    # other line: every line counts as the spec says, also the first.
    # Catches: _interpret_region sending a region that does not start with "data: " to
    # the one-data-line paths (whose first value would then be cut out of that line).
    body = first + "".join(f"{WIDE_VALUE}{i}\n\n" for i in range(12)).encode()
    assert run_body([body]) == reference_parse(body)
    assert run_body([body], last_event_id="s") == reference_parse(body, last_event_id="s")


def test_one_wide_event_of_many_short_data_lines() -> None:
    # A region over 4 KiB that is one event of many short data lines, not ASCII (no
    # block separator at all in the sample): one event, its lines joined with LF.
    # Catches: _interpret_region dividing by the count of separators (ZeroDivisionError).
    body = "data: é → 東京\n".encode() * 400 + b"\n"
    assert run_body([body]) == ([ev("\n".join(["é → 東京"] * 400))], "", None)


@pytest.mark.parametrize(
    "after",
    [
        [b"\n: c\n"],  # an LF, then a comment line
        [b"\ndata: b"],  # an LF, then an unfinished line
        [b"data: b", b"\n\n"],  # a line in two reads
        [b"data: b\r", b"\n\n"],  # a CRLF split across reads
        [b"\n" + b"data: " + b"y" * 600 + b"\n\n"],  # a read over the short path's size
        [b"\n\n\ndata: b\n\n"],
    ],
)
def test_reads_after_a_cr_and_small_whole_events(after: list[bytes]) -> None:
    # A read ends with a CR; then whole small events come, one per read (the short
    # path), the first starting with the LF of that CRLF; then reads of other shapes.
    # Every event is the spec's, as if the body came whole.
    reads = [b"data: a\r\r", b"\ndata: 1\n\n", b"data: 2\n\n", *after, b"data: z\n\n"]
    body = b"".join(reads)
    assert run_body(reads) == reference_parse(body)
    assert run_body(reads, on_comment=lambda text: None) == reference_parse(body)


@pytest.mark.parametrize("line", [b"retry: 5", b"foo: 6", b": 7", b"retry:8", b"Data: 9"])
def test_same_lines_in_every_block_with_a_line_that_is_no_column_field(line: bytes) -> None:
    # Blocks that all have the same lines, one of them a retry, an unknown field or a
    # comment: that line is read as the spec says, never as another field's column.
    # Catches: _interpret_uniform taking any "name:value" line for a column (it then
    # read such lines as ids).
    body = b"".join(b"%s\ndata: %d\n\n" % (line, n) for n in range(40))  # over 512 bytes
    assert run_body([b"data: first\n\n", body]) == reference_parse(b"data: first\n\n" + body)
    assert run_body([b"data: first\n\n", body], last_event_id="s") == reference_parse(
        b"data: first\n\n" + body, last_event_id="s"
    )


@pytest.mark.parametrize("lines", range(12, 22))
def test_an_event_ends_before_many_lines_of_the_next_in_one_read(lines: int) -> None:
    # A read ends an event, then brings many lines of the next one (more line ends than
    # the parser steps over one by one before it searches for the blank line): the
    # ended event is returned by that read, however many lines follow it.
    # Catches: _last_blank_line's final search missing a blank line at the start of
    # the read or at the last line end it stepped to.
    following = b"data: x\n" * lines
    expected = [ev("\n".join(["x"] * lines))]
    for reads in ([b"data: a\n\n" + following], [b"data: a", b"\n\n" + following]):
        parser = Parser()
        assert [parser.feed(read) for read in reads][-1] == [ev("a")]
        assert parser.feed(b"\n") == expected


def test_a_retry_line_without_a_space_counts_before_its_event_ends() -> None:
    # "retry:9" (no space) and "retry: 12" in an unfinished event: each counts as soon
    # as its line is complete.
    # Catches: _held_retry stripping a first character that is not a space, or two.
    parser = Parser()
    assert parser.feed(b"data: a\nretry:9\n") == []
    assert parser.retry == 9
    assert parser.feed(b"retry: 12\ndata: b") == []
    assert parser.retry == 12


def test_constructor_accepts_a_cap_of_one_byte_and_ids_of_any_other_characters() -> None:
    # The smallest cap is one byte; a seed may hold any character but NUL, CR and LF,
    # and the error for those says which ones, word for word.
    # Catches: __init__ refusing max_event_size=1, or more characters in last_event_id,
    # or an altered message.
    parser = Parser(max_event_size=1, last_event_id="XX-1")
    assert parser.feed(b"\n\n") == []
    with pytest.raises(ProtocolError):
        parser.feed(b"data: a\n\n")
    assert parser.last_event_id == "XX-1"
    with pytest.raises(ValueError, match=r"^last_event_id must not contain NUL, CR or LF$"):
        Parser(last_event_id="X\r")


@pytest.mark.parametrize(
    ("read", "expected"),
    [
        (b"data: a\xffb\n\n", [ev("a\ufffdb")]),  # a byte that is not UTF-8
        (b"data: \xe2\x82\n\n", [ev("\ufffd")]),  # a cut sequence
        (b"id: 1\r\ndata: b\rdata: c\n\n", [ev("b\nc", id="1")]),  # CR and CRLF inside
    ],
)
def test_a_small_whole_event_in_its_own_read(read: bytes, expected: list[Event]) -> None:
    # The one-event read of a live stream (a read that is one whole small event, after
    # the first read of the body): bad bytes become U+FFFD, CR and CRLF end lines.
    # Catches: Parser.feed's short path decoding strictly or with a wrong handler, or
    # taking a read that holds a CR.
    parser = Parser()
    assert parser.feed(b"data: first\n\n") == [ev("first")]
    assert parser.feed(read) == expected
    assert parser.feed(b"data: next\n\n") == [ev("next", id=expected[0].id)]


def test_a_big_read_with_a_small_tail_is_not_kept_alive() -> None:
    # A read of a megabyte that ends one byte into the next event: once its events are
    # taken, the parser holds that byte, not the read (a view of it would keep it all).
    # Catches: Parser.feed keeping a view of the read for any tail.
    parser = Parser()
    parser.feed(b"data: first\n\n")
    tracemalloc.start()
    try:
        events = parser.feed((b"data: " + b"x" * 1000 + b"\n\n") * 1000 + b"d")
        assert len(events) == 1000
        del events
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 100_000
    assert parser.feed(b"ata: next\n\n") == [ev("next")]


@pytest.mark.parametrize("other", [0, 1, 24])  # blocks that are an "event:" line
def test_long_lines_in_the_same_places_but_other_fields(other: int) -> None:
    # 25 blocks of one long line (a column checked by its lengths, not split), the
    # first a "data:" line, some others an "event:" line, which dispatches nothing.
    # Catches: _strip_column taking a column whose lines did not all lose the prefix.
    value = "v" * 800
    blocks = [f"data:{value}{n}\n\n" for n in range(25)]
    for n in range(1, other + 1):
        blocks[n] = blocks[n].replace("data:", "event:", 1)
    body = "".join(blocks).encode()
    assert run_body([b"\n", body]) == reference_parse(body)
    assert len(reference_parse(body)[0]) == 25 - other


def test_blocks_with_the_same_lines_carry_the_reconnection_time_in_effect() -> None:
    # A retry set by an earlier block is carried by every later event, also by those
    # of a region of blocks that all have the same lines (read column by column).
    # Catches: _interpret_uniform giving its events no reconnection time.
    body = b"".join(b"id: %d\nevent: tick\ndata: %d\n\n" % (n, n) for n in range(40))
    expected = reference_parse(b"retry: 7\n\n" + body)
    assert expected[0][-1].retry == 7
    assert run_body([b"retry: 7\n\n", body]) == expected


@pytest.mark.parametrize(
    "reads",
    [
        [b"data: a\n\ndata: " + b"x" * 26],  # after an event in the same read
        [b"data: a\n\n", b"data: " + b"x" * 26],  # after an event in an earlier read
        [b"data: a\n\n", b"data: x\ndata: " + b"x" * 18],  # a read with a line end
        [b"data: a\n\n", b"data: xx\r\ndata: " + b"x" * 16],  # one with a CRLF
        [b"\xef\xbb", b"\xbfdata: " + b"x" * 26],  # after a BOM split across reads
        [b"data: a\n\n", b"\ndata: " + b"x" * 26],  # after a blank line that starts a read
        [b"data: a\n\n\ndata: " + b"x" * 26],  # after a blank line more, in one read
    ],
)
def test_an_unfinished_event_of_exactly_the_cap_after_others_is_no_error(
    reads: list[bytes],
) -> None:
    # The connection drops with exactly max_event_size bytes of an event read (its
    # line ends counted as LF, a BOM and blank lines before it not counted): nothing
    # exceeded the cap.
    # Catches: Parser.feed counting one byte too many, or taking "at the cap" for
    # "over it", on the paths that hold an unfinished event.
    parser = Parser(max_event_size=32)
    events = [event for read in reads for event in parser.feed(read)]
    assert events == ([ev("a")] if reads[0].startswith(b"data: a") else [])
    parser.reset()
    assert parser.feed(b"data: " + b"y" * 24 + b"\n\n") == [ev("y" * 24)]  # 32 bytes


@pytest.mark.parametrize("second", [b"\nda", b"x\nda"])  # the line end first, or later
def test_a_comment_completed_by_a_read_that_returns_no_event_comes_before_none(
    second: bytes,
) -> None:
    # comment_positions' hook gets n = 0 for a comment whose line a read completes when
    # that read completes no event: a line end at the start of the read, or later.
    # Catches: Parser.feed skipping the held comments of a read whose only line end
    # is its first byte (they came late), or giving them n = 1.
    parser = Parser()
    notes: list[tuple[str, int]] = []
    comment_positions(parser, lambda text, n: notes.append((text, n)))
    assert parser.feed(b"data: a\n: c") == []
    assert notes == []
    assert parser.feed(second) == []
    expected = [(" c" + second[:-3].decode(), 0)]
    assert notes == expected
    assert parser.feed(b"ta: b\n\n") == [ev("a\nb")]
    assert notes == expected


def test_an_event_outgrowing_the_cap_line_by_line_raises_when_it_does() -> None:
    # Complete lines of one event, read by read: the read that takes it over the cap
    # raises, not a later one.
    # Catches: Parser.feed counting only the last read of an unfinished event.
    parser = Parser(max_event_size=32)
    assert parser.feed(b"data: " + b"x" * 20 + b"\n") == []
    with pytest.raises(ProtocolError):
        parser.feed(b"data: " + b"y" * 10 + b"\n")
    assert parser.feed(b"\ndata: next\n\n") == [ev("next")]


def test_the_blank_line_of_a_long_event_split_across_reads() -> None:
    # A one-line event over 4 KiB, its blank line's two LFs in two reads.
    # Catches: Parser.feed leaving the blank line's second LF out of the region (the
    # long-line way needs it to dispatch).
    line = b"data: " + b"x" * 5000 + b"\n"
    assert run_body([line, b"\n"]) == ([ev("x" * 5000)], "", None)
    assert run_body([line, b"\ndata: b"]) == ([ev("x" * 5000)], "", None)


def test_a_field_named_with_capital_x_after_a_blank_line_that_starts_a_read() -> None:
    # Blank lines that start a read between events are dropped, and nothing more: the
    # line after them, an unknown field "Xdata", stays unknown.
    # Catches: Parser.feed stripping more than LFs from the start of such a read.
    reads = [b"data: a\n\n", b"\nXdata: b\ndata: c", b"\n\n"]
    assert run_body(reads) == ([ev("a"), ev("c")], "", None)


def test_without_a_cap_an_event_and_the_start_of_the_next_in_one_read() -> None:
    # max_event_size=None, no on_comment: a read that ends one event and starts the
    # next returns the first and keeps the rest.
    # Catches: Parser.feed looking for held comments with no one to give them to.
    parser = Parser(max_event_size=None)
    assert parser.feed(b"data: a\n\ndata: b") == [ev("a")]
    assert parser.feed(b"\n\n") == [ev("b")]


@pytest.mark.parametrize("following", [b"x\n", b"x\ny\n", b"xy\n", b":\n", b"x\n" * 3, b"id\nx\n"])
def test_an_event_ends_before_short_lines_of_the_next_in_one_read(following: bytes) -> None:
    # A read ends an event, then brings short lines of the next one (one or two
    # characters): the ended event is returned by that read, not held for the next.
    # Catches: _last_blank_line stepping back over a one-character line's LF too
    # (rfind up to i - 2), which misses the blank line just before that line.
    for reads in ([b"data: a\n\n" + following], [b"data: a", b"\n\n" + following]):
        parser = Parser()
        assert [parser.feed(read) for read in reads][-1] == [ev("a")]
        assert parser.feed(b"\n") == []


def test_events_end_before_many_lines_of_the_next_in_one_read() -> None:
    # A read ends three events, then brings more lines of the next one than the
    # parser steps over one by one: all three are returned by that read.
    # Catches: _last_blank_line's final search taking the first blank line (find)
    # instead of the last (rfind), which holds the later events back.
    following = b"data: x\n" * 20
    parser = Parser()
    assert parser.feed(b"data: a\n\ndata: b\n\ndata: c\n\n" + following) == [
        ev("a"),
        ev("b"),
        ev("c"),
    ]
    assert parser.feed(b"\n") == [ev("\n".join(["x"] * 20))]


@pytest.mark.parametrize("tail", [b"", b"data: c"])  # the read ends an event, or starts one
def test_a_bytearray_read_can_be_resized_while_its_error_is_held(tail: bytes) -> None:
    # A reader that fills one buffer again and again (readinto) and keeps the
    # ProtocolError of an oversized event (whose traceback holds the parser's frame)
    # while it reads on into the same buffer: the error must not pin the buffer.
    # Catches: Parser.feed joining a held event with a view of a bytearray read.
    parser = Parser(max_event_size=16)
    assert parser.feed(b"data: a") == []
    buffer = bytearray(b"x" * 20 + b"\n\ndata: b\n\n" + tail)
    with pytest.raises(ProtocolError) as info:
        parser.feed(buffer)
    assert info.value.events == [ev("b")]
    buffer[:] = b"\n\n"  # resized and overwritten while the error is held
    assert parser.feed(buffer) == ([ev("c")] if tail else [])


def test_a_two_byte_comment_that_starts_a_body_is_reported_at_once() -> None:
    # A keep-alive ":" line with nothing after it is the body's first read: it is no
    # BOM, so it is a comment at once (the server may send nothing else for a while).
    # Catches: _strip_bom holding any start of a body shorter than three bytes.
    comments: list[str] = []
    parser = Parser(on_comment=comments.append)
    assert parser.feed(b":\n") == []
    assert comments == [""]
    parser.reset()  # the next body: the same
    assert parser.feed(b":\n") == []
    assert comments == ["", ""]
