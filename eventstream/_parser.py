"""Sans-I/O parser for the ``text/event-stream`` format.

Implements "Parsing an event stream" and "Interpreting an event stream" of the WHATWG
HTML Living Standard, section 9.2 (Server-sent events).  No sockets, threads or
clocks: bytes go in, events come out.

How it stays exact and fast:

* Line ends are normalised to LF on the raw bytes (CR, LF and CRLF are all line ends;
  a CR that ends one read and an LF that starts the next are one line end).  CR and LF
  never occur inside a multi-byte UTF-8 sequence, so this is safe before decoding.
* Only *complete* blocks (lines up to and including the blank line that dispatches
  them) are decoded and interpreted.  A complete region ends on a line end, so it can
  be decoded on its own with U+FFFD replacement, exactly as decoding the whole stream
  would.  The unfinished tail is kept as the raw reads, joined once when its blank
  line arrives, and only the new bytes of each read are scanned, so an event that
  arrives in many small reads is copied and scanned a bounded number of times.
* Interpreting only complete regions means a block's ``id:`` reaches the last event
  ID string exactly at its dispatch, as the spec's buffer/string pair does, and an
  unfinished block at end of body is dropped whole.
* A region whose blocks all have the same lines (the usual stream) is interpreted
  column by column, with C loops over all its blocks at once; one whose blocks are
  each one ``data: `` line, straight from its bytes, value by value; anything else
  takes the line loop.  All read the same input the same way
  (tests/test_parser_properties.py).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from itertools import repeat

from ._exceptions import ProtocolError
from ._models import Event

__all__ = ["DEFAULT_MAX_EVENT_SIZE", "Parser", "comment_positions"]

#: Default cap, in bytes, on one line or one event (16 MiB).
DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024

_BOM = b"\xef\xbb\xbf"
# Replaces the colon of a comment line already reported while its event is unfinished:
# the line keeps its length (its bytes count toward the event's size) and becomes a
# line of an unknown field, which the spec ignores (no field name starts with NUL).
_MASK = b"\0"
_new_event = tuple.__new__  # Event is a NamedTuple: build it without the Python-level __new__
_FIELDS = frozenset(("data", "id", "event", "retry"))
_FIELDS_BYTES = frozenset(name.encode() for name in _FIELDS)
_UNIFORM_FIELDS = frozenset(("data", "id", "event"))
_UNIFORM_MIN_BLOCKS = 4  # fewer blocks in a region: the line loop is as fast
_UNIFORM_MAX_LINES = 32  # more lines in a block: the line loop is as fast
_LONG_LINE = 256  # characters per line, on average, from which copies cost more than steps
_NOT_LF = re.compile(rb"[^\n]")
_SAMPLE = 4096  # bytes looked at to tell long lines from short ones
_FEW_LINES = 2  # fewer line ends than this in the sample: take the long-line path
_DATA_SEPARATOR_BYTES = b"\n\ndata: "  # between blocks of one data line each
_DATA_PREFIX = b"data: "
_SHORT_BLOCKS = 16  # LFs in the sample from which short values are decoded one by one
_SCAN_STEPS = 16  # line ends looked at one by one before searching for b"\n\n"
#: Bytes up to which a read that is one whole region (nothing held, it ends with its
#: blank line) goes straight to the line loop: the one-event read of a live stream.
#: Few blocks fit, and below _UNIFORM_MIN_BLOCKS blocks the column path declines anyway.
_SMALL_REGION = 512


#: A ``retry:`` value is its integer, up to this many significant digits: the fewest
#: that any Python converts (``sys.set_int_max_str_digits`` takes no less), in
#: microseconds.  A longer run counts as :data:`MAX_RETRY`: converting it could
#: raise, and takes time that grows with the square of its length.
_RETRY_DIGITS = 640
MAX_RETRY = int("9" * _RETRY_DIGITS)


def _retry_value(digits: str | bytes) -> int:
    """The reconnection time of a ``retry:`` value of ASCII digits (checked by the
    caller): the integer, at most :data:`MAX_RETRY`."""
    significant = digits.lstrip(b"0") if isinstance(digits, bytes) else digits.lstrip("0")
    if len(significant) > _RETRY_DIGITS:
        return MAX_RETRY
    return int(significant) if significant else 0


def _held_retry(held: bytes, current: int | None) -> int | None:
    """The reconnection time after the complete lines of an unfinished event."""
    if b"retry" not in held:
        return current
    for line in held.split(b"\n")[:-1]:  # the last piece is the unfinished line
        name, colon, value = line.partition(b":")
        if name == b"retry" and colon:
            value = value[1:] if value.startswith(b" ") else value
            if value.isdigit():  # bytes.isdigit is ASCII digits only
                current = _retry_value(value)
    return current


def _strip_column(column: list[str], prefix: str, long_lines: bool) -> list[str] | None:
    """Every line of ``column`` without ``prefix``, or ``None`` if a line lacks it.

    The first line has the prefix (the caller took it from that line).  Short
    lines: join, then split at LF plus the prefix, which finds exactly the lines
    that have it (a line holds no LF).  Long lines, where copying costs more than
    stepping: strip each one and compare lengths, since a line loses the prefix or
    nothing, so all of them lost it when the total fell by that much per line.
    """
    if not long_lines:
        values = "\n".join(column)[len(prefix) :].split("\n" + prefix)
        return values if len(values) == len(column) else None
    values = list(map(str.removeprefix, column, repeat(prefix)))
    if sum(map(len, column)) - sum(map(len, values)) != len(column) * len(prefix):
        return None
    return values


def _last_blank_line(data: bytes, last_lf: int) -> int:
    """Index of the last ``b"\n\n"`` in ``data``, given the index of its last LF.

    Steps back from line end to line end with ``rfind(b"\n")`` (memrchr), which is
    much faster than searching for the two-byte pattern over a long line; after a
    few steps the plain search bounds the cost on streams of many short lines.
    """
    i = last_lf
    for _ in range(_SCAN_STEPS):
        if data[i - 1] == 10:
            return i - 1
        i = data.rfind(b"\n", 0, i - 1)
        if i <= 0:
            return -1
    return data.rfind(b"\n\n", 0, i + 1)


class Parser:
    """Incremental decoder of one event stream: feed it body bytes, get events.

    Not thread-safe: one parser belongs to one reader (in eventstream, the worker
    thread of a stream).  It never raises on malformed input; bytes that are not
    UTF-8 become U+FFFD.  The only error is :class:`ProtocolError` when a line or an
    event grows past ``max_event_size`` bytes (``None`` disables the cap).

    An event's size is its bytes from the start of its first line to the end of the
    blank line that dispatches it, every line counted (comments and unknown fields
    too), each line end as one byte (a CRLF too), without a leading BOM or the blank
    lines before the event.  An event over the cap (a line over it makes one) is
    skipped whole: the :meth:`feed` that brings its first byte past the cap raises,
    and the rest of the event is dropped as it comes.  None of this depends on how
    the bytes are split into reads, nor on whether comments are watched.

    ``last_event_id`` seeds the last event ID, as when resuming a stream.

    ``on_comment``, if given, is called with the text of each comment line (all that
    follows the colon, leading space included: ``": ping"`` gives ``" ping"``), on
    the thread that calls :meth:`feed`, during that call, as soon as the line has
    ended (not at the next blank line), and in stream order with the other comments.
    The events that the same bytes complete are returned by that :meth:`feed` once it
    is done, whether they come before or after the comment in the stream
    (:class:`EventStream` hands both over in stream order).  In an event over the cap,
    the comment lines that end (line end included) within its first
    ``max_event_size`` bytes are reported, the later ones are not: as if the event
    came byte by byte, a comment is reported when its line ends and the event is
    known to be too large at the byte past the cap, whatever the reads.  Without
    ``on_comment``, comments cost nothing beyond being skipped.
    """

    __slots__ = (
        "_at_start",
        "_cap",
        "_comment_at",
        "_comment_base",
        "_direct",
        "_discarding",
        "_last_id",
        "_max",
        "_parts",
        "_retry",
        "_size",
        "_skip_lf",
    )

    def __init__(
        self,
        *,
        max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
        last_event_id: str = "",
        on_comment: Callable[[str], object] | None = None,
    ) -> None:
        if on_comment is not None and not callable(on_comment):
            raise TypeError(f"on_comment must be callable, not {on_comment!r}")
        if max_event_size is not None and (
            isinstance(max_event_size, bool) or not isinstance(max_event_size, int)
        ):
            raise TypeError(f"max_event_size must be an int or None, not {max_event_size!r}")
        if max_event_size is not None and max_event_size < 1:
            raise ValueError(f"max_event_size must be positive, not {max_event_size}")
        if not isinstance(last_event_id, str):
            raise TypeError(f"last_event_id must be a str, not {last_event_id!r}")
        if any(c in last_event_id for c in "\0\r\n"):
            raise ValueError("last_event_id must not contain NUL, CR or LF")
        self._max = max_event_size
        self._cap = sys.maxsize if max_event_size is None else max_event_size
        # Largest read that may take the direct path of feed(): within the cap, so a
        # read it takes never holds an oversized event.
        self._direct = min(_SMALL_REGION, self._cap)
        self._last_id = last_event_id
        self._retry: int | None = None
        # The unfinished tail: reads kept as they came (appending to a list costs
        # nothing per byte) and joined once, when the blank line that ends it comes.
        self._parts: list[bytes | memoryview] = []
        self._size = 0  # bytes in _parts
        self._at_start = True  # a leading BOM may still come
        self._skip_lf = False  # the previous read ended with CR
        self._discarding = False  # skipping the rest of an oversized event
        # Comments go to _comment_at(text, n): n is how many of the events the
        # current feed() returns come before the comment (see comment_positions).
        self._comment_at: Callable[[str, int], object] | None = None
        self._comment_base = 0  # events of this feed() before the region interpreted
        if on_comment is not None:
            self._comment_at = lambda text, _: on_comment(text)

    @property
    def last_event_id(self) -> str:
        """The spec's last event ID string: set at dispatch of a block with an ``id:``
        field (also one without data), kept across events and :meth:`reset`; ``""``
        when none was set."""
        return self._last_id

    @property
    def retry(self) -> int | None:
        """The reconnection time in milliseconds from the last valid ``retry:`` field,
        or ``None`` if none was seen.  Kept across :meth:`reset`.

        Exact at any moment: a complete ``retry:`` line counts as soon as it is
        parsed, as the spec says, even inside an event not finished yet.
        """
        if self._parts:
            return _held_retry(b"".join(self._parts), self._retry)
        return self._retry

    def reset(self) -> None:
        """Prepare for the body of a new connection.

        Discards the unfinished line and event (the spec drops them at end of body)
        and re-arms BOM stripping; keeps the last event ID and the reconnection time.
        A ``retry:`` line that was complete but in an unfinished event still counts,
        since the spec applies that field when its line is parsed, not at dispatch.
        """
        self._retry = _held_retry(self._take_held(), self._retry)
        self._at_start = True
        self._discarding = False
        # The flag of a CR ending the last read is left as it is: it can only drop an
        # LF that starts the new body (after its BOM), and that LF is a blank line
        # with no field before it, which dispatches nothing and changes no state.

    def feed(self, data: bytes) -> list[Event]:
        """Consume the next bytes of the body; return the events they complete, in order.

        Raises :class:`ProtocolError` when a line or an event exceeds the size cap; its
        ``events`` attribute then holds the other events these bytes completed.
        """
        parts = self._parts
        if (
            not parts
            and len(data) <= self._direct
            and data[-2:] == b"\n\n"
            and 13 not in data  # CR
            and not self._at_start
        ):
            # One region and nothing else: the one-event read of a live stream.  The
            # general path below would find the same region (the whole read) and
            # interpret it with the same line loop, after a few more calls.  Nothing
            # is held, so no oversized event is being discarded (that holds its last
            # byte), and this read starts an event: an LF after a CR that ended the
            # last read is a blank line here, which dispatches nothing.  The CR flag
            # then stays set, harmlessly: the read that clears it starts an event too.
            return self._interpret_lines(data.decode("utf-8", "replace").split("\n"))
        if (
            parts
            and data
            and 10 not in data  # LF; an int needle is a plain memchr, a bytes one is not
            and 13 not in data  # CR
            and not (self._at_start or self._skip_lf or self._discarding)
        ):
            # The middle of a long line (an event in many small reads): only hold it.
            parts.append(data)
            self._size += len(data)
            if self._size > self._cap:
                self._overflow([], discard=True)
            return []
        if self._at_start or self._skip_lf:
            data = self._prepare(data)
        if 13 in data:  # CR
            # A CR at the very end is a complete line end; remember it so that an LF
            # starting the next read is not taken for a second (blank) line.
            self._skip_lf = data[-1] == 13
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        if self._discarding and data:
            data = self._discard(data)
        if not data:
            return []
        parts = self._parts
        last_lf = data.rfind(b"\n")  # memrchr: cheap even on a long line
        end = _last_blank_line(data, last_lf) if last_lf > 0 else -1
        if end < 0:
            if not (last_lf >= 0 and data[0] == 10 and parts and parts[-1][-1] == 10):
                if not parts:
                    # At an event's start, blank lines dispatch nothing: drop them, so
                    # that how reads split never changes an event's size.
                    data = data.lstrip(b"\n")
                    if not data:
                        return []
                parts.append(data)
                self._size += len(data)
                if self._comment_at is not None and last_lf >= 0:
                    self._held_comments(0)
                if self._size > self._cap:
                    self._overflow([], discard=True)
                return []
            end = -1  # the blank line straddles the previous read and this one
        end += 2

        # Views, not slices, of the read for the parts that are joined later: each
        # byte is copied once into a region, not first into a slice of its own.  Not
        # of a bytearray: the caller may reuse or resize it (a view would forbid it).
        size = len(data)
        view = type(data) is bytes
        if parts:
            parts.append(memoryview(data)[:end] if view and end < size else data[:end])
            region = b"".join(parts)
        else:
            region = data[:end]  # the read itself when it ends with its blank line
        if end < size:
            # A view holds the whole read: only for a tail of at least half of it
            # (a big read with a small tail, say decompressed, is not kept alive).
            rest = memoryview(data)[end:] if view and 2 * end <= size else data[end:]
            self._parts = [rest]
            self._size = size - end
        else:
            self._parts = []
            self._size = 0
        if self._max is None:
            events = self._interpret_region(region)
            if self._comment_at is not None and self._parts:
                self._held_comments(len(events))
            return events
        if len(region) > self._max:
            events, skipped = self._interpret_checked(region)
        else:
            events, skipped = self._interpret_region(region), False
        if self._comment_at is not None and self._parts:
            self._held_comments(len(events))
        tail_too_long = self._size > self._max
        if skipped or tail_too_long:
            self._overflow(events, discard=tail_too_long)
        return events

    def _held_comments(self, count: int) -> None:
        """Report the comment lines that end in the last read held, within the cap,
        and mask them.

        A comment takes effect when its line ends, not at the blank line that ends
        the event around it.  A reported line stays held, as long as it was (it counts
        toward the event's size as every line does, watched or not), with its colon
        made a NUL: a line of an unknown field, which the spec ignores, so it is not
        reported again.  So the comment lines that end in earlier parts are masked
        already, and only the lines from the one the last read continues are looked
        at: each byte a bounded number of times, however many reads an event takes.
        Held bytes start with the event's first line, so the lines that end past its
        first ``max_event_size`` bytes are not reported: the event overflows first.
        """
        assert self._comment_at is not None
        parts = self._parts
        first = cut = 0  # the lines to look at start at parts[first][cut:]
        for index in range(len(parts) - 2, -1, -1):
            lf = bytes(parts[index]).rfind(b"\n")  # bytes(b) is b; a view is copied
            if lf >= 0:
                first, cut = index, lf + 1
                break
        lines = b"".join([parts[first][cut:], *parts[first + 1 :]])
        if not lines.startswith(b":") and b"\n:" not in lines:
            return  # no comment line (an unfinished one passes, and is kept as it is)
        # They start at byte size - len(lines) of the event, at most the bytes held
        # before this read, which were within the cap (else the event overflowed
        # then): the bound is not negative.
        within = lines[: self._cap - (self._size - len(lines))]
        complete = within[: within.rfind(b"\n") + 1]
        masked = complete.replace(b"\n:", b"\n" + _MASK)  # the lines after the first
        if masked[:1] == b":":
            masked = _MASK + masked[1:]
        masked += lines[len(complete) :]
        self._parts = [*parts[:first], parts[first][:cut], masked]  # [:0]: b"" is harmless
        self._report_comments(complete, count)

    def _take_held(self) -> bytes:
        held = b"".join(self._parts)
        self._parts = []
        self._size = 0
        return held

    def _hold(self, data: bytes) -> None:
        self._parts = [data] if data else []
        self._size = len(data)

    def _prepare(self, data: bytes) -> bytes:
        """The rare states, on raw bytes: BOM still possible, CR ending the last read."""
        if self._at_start:
            data = self._strip_bom(data)
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == 10:
                data = data[1:]
        return data

    def _interpret_region(self, region: bytes) -> list[Event]:
        # Splitting a str costs about 2 ns per character whatever the line lengths,
        # while finding line ends with memchr costs per line: take the first for
        # short lines, the second (on the bytes) when a sample shows long ones.
        if len(region) > _SAMPLE:
            line_ends = region.count(b"\n", 0, _SAMPLE)
            if line_ends < _FEW_LINES:
                return self._interpret_long(region)
            if (
                region.startswith(_DATA_PREFIX)
                # On ASCII, decoding the region at once (a copy) and the column path
                # cost less (a 1 KiB event costs a quarter more value by value).
                and not region[:_SAMPLE].isascii()
                # In the sample, every LF but the last two ends a one-line data block.
                and line_ends - 2 * region.count(_DATA_SEPARATOR_BYTES, 0, _SAMPLE) <= 2
            ):
                events = self._interpret_data_only(region, line_ends)
                if events is not None:
                    return events
        return self._interpret(region.decode("utf-8", "replace"))

    def _interpret_data_only(self, region: bytes, line_ends: int) -> list[Event] | None:
        """A region that looks like blocks of one ``data: `` line each of text that
        is not ASCII (from its sample), by the cheaper of two exact paths, or ``None``.

        Values of about 256 bytes or more (fewer line ends in the sample): the loop
        that finds them one by one costs less than a split.  Shorter ones: one split.
        Only the sample was looked at: each path is exact on any text, only its cost
        varies.
        """
        if line_ends < _SHORT_BLOCKS:
            return self._interpret_data_values(region)
        return self._interpret_data_bytes(region)

    def _strip_bom(self, data: bytes) -> bytes:
        # Exactly one leading U+FEFF is dropped per body, also when its three bytes
        # arrive in separate reads; until three bytes are seen nothing is decided.
        head = self._take_held() + data
        if len(head) < 3 and _BOM.startswith(head):
            self._hold(head)
            return b""
        self._at_start = False
        return head[3:] if head.startswith(_BOM) else head

    def _interpret(self, text: str) -> list[Event]:
        """Interpret complete lines: ``text`` ends with a blank line (``"\n\n"``).

        Blocks that all have the same fields in the same order (the usual stream)
        are interpreted column by column; others by the loop, one line at a time.
        """
        lines = text.split("\n")
        events = self._interpret_uniform(text, lines)
        return self._interpret_lines(lines) if events is None else events

    def _interpret_data_bytes(self, region: bytes) -> list[Event] | None:
        """Interpret a region of blocks that are each one ``data: `` line, from its
        bytes, or return ``None``.  For short lines of text that is not ASCII.

        The commonest stream (JSON feeds, LLM token streams) writes every event as
        one ``data: `` line and a blank line.  Then the region is the values joined
        by ``"\n\ndata: "``, and one split of the bytes makes each value.  Exact:
        when no value holds an LF, every LF belongs to a separator or to the final
        ``"\n\n"``, so every line is a data line and every block one line.  The
        region starts with ``data: ``.

        Why bytes: decoded at once, a region is a str as wide as its widest
        character (one emoji makes it 4 bytes a character), and each value split
        from it is copied out of that buffer and narrowed again; decoding each
        value alone writes it once, at its own width.  On ASCII, one decode of the
        region costs less than one call per value.  Splitting at ASCII bytes never
        cuts a UTF-8 sequence, so each value decodes as the whole region would.
        The split is at LF (a one-byte separator: a plain byte loop, where the eight
        bytes of ``"\n\ndata: "`` take a costlier substring search): the
        lines then alternate, a data line and a blank one, which two C-level
        checks prove, and each value is its line without the prefix.
        """
        lines = region.split(b"\n")  # ends with b"", b"": the region ends with b"\n\n"
        if any(lines[1::2]):
            return None  # some block has another line than its data line
        # The data lines, with their prefix (still to check).  With an even count of
        # lines, the last of these is the b"" before the final one, which fails it.
        lines = lines[0:-1:2]
        values = list(map(bytes.removeprefix, lines, repeat(_DATA_PREFIX)))
        # A line loses the prefix or nothing: all lost it when the total fell by that.
        if sum(map(len, lines)) - sum(map(len, values)) != len(lines) * len(_DATA_PREFIX):
            return None  # a comment, another field, "data:" without its space, ...
        return self._data_events(values)

    def _interpret_data_values(self, region: bytes) -> list[Event] | None:
        """Interpret a region of blocks that are each one ``data: `` line, by finding
        each value, or return ``None``.  For values of a few hundred bytes or more.

        The same shape as :meth:`_interpret_data_bytes`, found another way: from the
        end of the prefix, the value runs to the next LF (memchr, which a long value
        makes worth a step in Python), and then either the region ends (that LF and
        the blank line's are its last two bytes) or ``"\n\ndata: "`` starts the next
        block.  Exact: every byte of the region is in a value, a prefix or a
        separator, so every block is one data line; anything else (a comment, a
        second line, ``data:`` without its space, a third LF) fails a check.  The
        region starts with ``data: `` (the caller checked).  Each value is decoded
        on its own, which equals decoding the region whole (see
        :meth:`_interpret_data_bytes`), and costs less than splitting a decoded region.
        """
        values: list[bytes] = []
        append = values.append
        find = region.find
        at_separator = region.startswith
        last = len(region) - 2  # the first LF of the region's final "\n\n"
        start = len(_DATA_PREFIX)
        while True:
            end = find(b"\n", start)  # never -1: the region ends with LFs after start
            append(region[start:end])
            if end == last:
                return self._data_events(values)
            if not at_separator(_DATA_SEPARATOR_BYTES, end):
                return None  # some block has another line, or a blank line more
            start = end + len(_DATA_SEPARATOR_BYTES)

    def _data_events(self, values: list[bytes]) -> list[Event]:
        """One "message" event per data value, each value decoded on its own."""
        try:
            texts = list(map(bytes.decode, values))
        except UnicodeDecodeError:  # rare: only then pay for the replacement handler
            texts = list(map(bytes.decode, values, repeat("utf-8"), repeat("replace")))
        return list(
            map(
                _new_event,
                repeat(Event),
                zip(repeat("message"), texts, repeat(self._last_id), repeat(self._retry)),
            )
        )

    def _interpret_uniform(self, text: str, lines: list[str]) -> list[Event] | None:
        """Interpret blocks that repeat the first block's fields, or return ``None``.

        A stream usually writes every event with the same lines, say ``id``,
        ``event`` and ``data``, and a read brings hundreds of them.  Then line ``i``
        of every block is the same field, and the values of that field are one
        column: ``lines[i::period]``, whose prefix :func:`_strip_column` checks and
        strips in C loops instead of a Python step per line.  Each check is exact,
        so any other input gives ``None``, never a different reading: the first
        block decides each prefix (``name: `` or ``name:``; with ``name:`` no value
        may start with a space, which the spec would strip), and a column with any
        other line fails the strip.  Only ``data``, ``id`` and ``event`` lines
        qualify; a comment, ``retry`` or a line without a colon sends the region to
        the loop.  ``lines`` is ``text.split("\n")``.
        """
        long_lines = len(text) > _LONG_LINE * len(lines)
        size = lines.index("")  # lines of the first block (the text ends with "\n\n")
        period = size + 1
        end = len(lines) - 1  # lines[-1] is the "" after the last LF
        count = end // period
        if not 0 < size <= _UNIFORM_MAX_LINES or count < _UNIFORM_MIN_BLOCKS:
            return None  # a few blocks, or long ones: the loop is as fast
        if end % period or any(lines[size:end:period]):
            return None  # blocks of different lengths, or more than one blank line
        datas: list[list[str]] = []
        etypes: list[str] | None = None
        ids: list[str] | None = None
        for i in range(size):
            name, colon, value = lines[i].partition(":")
            if not colon or name not in _UNIFORM_FIELDS:
                return None
            prefix = name + ": " if value[:1] == " " else name + ":"
            values = _strip_column(lines[i:end:period], prefix, long_lines)
            if values is None:
                return None  # some line of the column is another field
            if prefix[-1] == ":" and any(map(str.startswith, values, repeat(" "))):
                return None  # a value with a space to strip, in the "name:" form
            if name == "data":
                datas.append(values)
            elif name == "event":
                etypes = values
            elif "\0" in text:  # an id with U+0000 is ignored: leave that to the loop
                return None
            else:
                ids = values
        if not datas:
            return None  # blocks without data dispatch nothing: the loop keeps it simple
        data = datas[0] if len(datas) == 1 else list(map("\n".join, zip(*datas)))
        if etypes is not None and "" in etypes:
            etypes = [etype or "message" for etype in etypes]
        events = list(
            map(
                _new_event,
                repeat(Event),
                zip(
                    repeat("message") if etypes is None else etypes,
                    data,
                    repeat(self._last_id) if ids is None else ids,
                    repeat(self._retry),
                ),
            )
        )
        if ids is not None:
            self._last_id = ids[-1]
        return events

    def _interpret_lines(self, lines: list[str]) -> list[Event]:
        """The general loop: one pass over the lines, with the common fields
        recognised by a single ``partition`` and no per-block work."""
        events: list[Event] = []
        append = events.append
        last_id = self._last_id  # the spec's last event ID buffer
        retry = self._retry
        data: str | None = None  # first data line; None means an empty data buffer
        more: list[str] | None = None  # all data lines once there are two or more
        etype = "message"
        comment_at = self._comment_at
        for line in lines:
            if not line:
                # Blank line: dispatch.  The last event ID string takes the buffer's
                # value even without data (so it is saved after the loop); an empty
                # data buffer dispatches nothing but the event type is reset.
                if data is not None:
                    if more is not None:
                        data = "\n".join(more)  # joined with LF, no trailing LF
                        more = None
                    append(_new_event(Event, (etype, data, last_id, retry)))
                    data = None
                etype = "message"
                continue
            # "name: value" with exactly one space is the common form.  When the text
            # before the first ": " is one of the four field names, it has no colon,
            # so that ": " holds the line's first colon and this split is the spec's.
            # A line with no ": " at all gives name == line and value == "", which is
            # also the spec's reading of a line without a colon.
            name, _, value = line.partition(": ")
            # Comparisons, not "in _FIELDS" (nor a tuple, measured slower): name is a
            # new str, whose hash a set lookup would compute first; a comparison of
            # two str only checks their length and bytes.
            if name != "data" and name != "event" and name != "id" and name != "retry":  # noqa: PLR1714
                # "name:value", a comment (empty name) or an unknown field.  The first
                # colon is not followed by a space here, so there is none to strip.
                name, _, value = line.partition(":")
            if name == "data":
                if data is None:
                    data = value
                elif more is None:
                    more = [data, value]
                else:
                    more.append(value)  # a list keeps many-line events linear
            elif name == "event":
                etype = value or "message"
            elif name == "id":
                if "\0" not in value:  # an id containing U+0000 is ignored
                    last_id = value
            elif name == "retry" and value.isdigit() and value.isascii():
                retry = _retry_value(value)  # only a value of ASCII digits counts
            elif not name and comment_at is not None:  # a comment: ":" starts the line
                comment_at(value, self._comment_base + len(events))
            # Anything else (unknown fields, unwatched comments) is ignored.
        self._last_id = last_id
        self._retry = retry
        return events

    def _interpret_long(self, region: bytes) -> list[Event]:
        """Interpret complete lines of a region with long lines, from the bytes.

        The same rules as :meth:`_interpret`, written for a different cost: line ends
        and colons are found with memchr, and a field's value is decoded once, from
        a view, straight into its final string, so a multi-megabyte line is copied
        once instead of three times (decode, split, partition).  Splitting at the
        ASCII bytes LF, ":" and " " never cuts a UTF-8 sequence, so decoding each
        value alone gives what decoding the whole stream would.
        """
        events: list[Event] = []
        last_id, retry = self._last_id, self._retry
        data: list[str] = []
        etype = "message"
        find = region.find
        i = 0
        with memoryview(region) as view:
            while i < len(region):
                j = find(b"\n", i)
                if j == i:  # blank line: dispatch (see _interpret)
                    if data:
                        events.append(_new_event(Event, (etype, "\n".join(data), last_id, retry)))
                        data = []
                    etype = "message"
                    i += 1
                    continue
                colon = find(b":", i, j)
                name_end = j if colon < 0 else colon
                name = bytes(view[i:name_end]) if name_end - i <= 5 else b""  # 5: "event"
                start = j if colon < 0 else colon + 1
                if region[start] == 32:  # at j, an LF: the line ends there
                    start += 1  # exactly one leading space is dropped
                if colon == i and self._comment_at is not None:  # a watched comment
                    text = str(view[i + 1 : j], "utf-8", "replace")
                    self._comment_at(text, self._comment_base + len(events))
                i = j + 1
                if name not in _FIELDS_BYTES:
                    continue  # a comment or an unknown field: never decoded
                value = str(view[start:j], "utf-8", "replace")
                if name == b"data":
                    data.append(value)
                elif name == b"id":
                    if "\0" not in value:
                        last_id = value
                elif name == b"event":
                    etype = value or "message"
                elif value.isdigit() and value.isascii():  # retry
                    retry = _retry_value(value)
        self._last_id, self._retry = last_id, retry
        return events

    def _interpret_checked(self, region: bytes) -> tuple[list[Event], bool]:
        """Interpret a region larger than the cap, skipping any block over the cap; say
        whether one was skipped.

        A block's size runs from its first line to its blank line: blank lines before
        it dispatch nothing and do not count, so the outcome never depends on how the
        reads were split.  The comment lines of a skipped block that end within the
        cap are reported, as in small reads.  The blocks between oversized ones are
        interpreted in one run each, so a cap costs little even on a flood of tiny blocks.
        """
        assert self._max is not None
        events: list[Event] = []
        skipped = False
        run = start = 0  # run: where the blocks not yet interpreted begin
        while True:
            if region[start : start + 1] == b"\n":
                found = _NOT_LF.search(region, start)
                if found is None:
                    break  # only blank lines are left
                start = found.start()
            end = region.find(b"\n\n", start)
            if end < 0:
                break
            end += 2
            if end - start > self._max:
                if run < start:
                    self._comment_base = len(events)
                    events += self._interpret_region(region[run:start])
                if self._comment_at is not None:
                    self._early_comments(region[start : start + self._max], len(events))
                skipped, run = True, end
            start = end
        if run < len(region):
            self._comment_base = len(events)
            events += self._interpret_region(region[run:])
        self._comment_base = 0
        return events, skipped

    def _early_comments(self, head: bytes, count: int) -> None:
        """Report the comment lines that end in ``head``, the first ``max_event_size``
        bytes of a skipped event: as they would be, had the event come in pieces
        (see :meth:`_held_comments`; the lines already reported there are masked)."""
        if head.startswith(b":") or b"\n:" in head:
            self._report_comments(head[: head.rfind(b"\n") + 1], count)

    def _report_comments(self, lines: bytes, count: int) -> None:
        """Report the comment lines of ``lines`` (whole lines), in order."""
        assert self._comment_at is not None
        for line in lines.split(b"\n"):
            if line[:1] == b":":
                self._comment_at(line[1:].decode("utf-8", "replace"), count)

    def _discard(self, data: bytes) -> bytes:
        # After an overflow, drop bytes up to the blank line that ends the oversized
        # event; the stream can then go on with the next event.  Only the last byte
        # dropped is held, to see a blank line split across reads.
        buf = self._take_held() + data
        end = buf.find(b"\n\n")
        if end < 0:
            self._hold(buf[-1:])
            return b""
        self._discarding = False
        return buf[end + 2 :]

    def _overflow(self, events: list[Event], *, discard: bool) -> None:
        # ``discard``: the oversized event is the unfinished one held; drop what is
        # held of it and the rest of it as it arrives (see _discard).  Otherwise a
        # complete oversized event was skipped and what is held is the next one.
        if discard:
            self._discarding = True
            self._hold(self._take_held()[-1:])
        raise ProtocolError(
            f"an event stream line or event exceeds max_event_size ({self._max} bytes)"
            "; it was skipped",
            events=events,
        )


def comment_positions(parser: Parser, hook: Callable[[str, int], object]) -> None:
    """Send ``parser``'s comments to ``hook(text, n)`` instead of its ``on_comment``.

    ``n`` is how many of the events returned by the ``feed()`` during which the hook
    runs come before the comment in the stream: what a reader needs to hand events
    and comments over in stream order (eventstream's worker does).
    """
    parser._comment_at = hook
