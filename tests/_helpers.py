"""Helpers shared by the parser tests: chunkings, a runner and a reference parser.

``reference_parse`` is the test oracle: a deliberately naive, line-at-a-time reading of
WHATWG HTML 9.2.5 "Parsing an event stream" and 9.2.6 "Interpreting an event stream".
It decodes the whole body first, so it knows nothing about reads, and it shares no
code with ``eventstream._parser``.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import Any, Optional

from eventstream import Event, Parser, ProtocolError
from eventstream._parser import comment_positions

#: (events, last event ID string, reconnection time) after a body has ended.
Outcome = tuple[list[Event], str, Optional[int]]

#: A known event appended to a case to check that nothing is left over or swallowed.
TAIL = b"data: tail\n\n"


def ev(data: str, event: str = "message", id: str = "", retry: int | None = None) -> Event:
    """Shorthand for an expected event (data first, as tables read best that way)."""
    return Event(event=event, data=data, id=id, retry=retry)


def chunkings(data: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Yield (label, reads): the body whole, byte by byte, and at every two-read split."""
    yield "whole", [data]
    yield "byte by byte", [data[i : i + 1] for i in range(len(data))]
    for cut in range(len(data) + 1):
        yield f"split at {cut}", [data[:cut], data[cut:]]


def feed_all(parser: Parser, reads: Iterable[bytes]) -> list[Event]:
    """Feed every read and return all the events, in order."""
    events: list[Event] = []
    for read in reads:
        events += parser.feed(read)
    return events


def run_body(reads: Iterable[bytes], **parser_kwargs: Any) -> Outcome:
    """Parse one body delivered as ``reads``, end it, and return the outcome."""
    parser = Parser(**parser_kwargs)
    events = feed_all(parser, reads)
    parser.reset()  # end of body: the unfinished line and event are dropped
    return events, parser.last_event_id, parser.retry


def feed_capped(parser: Parser, reads: Iterable[bytes]) -> tuple[list[Event], int]:
    """Feed reads to a parser with a size cap; return the events and the error count."""
    events: list[Event] = []
    errors = 0
    for read in reads:
        try:
            events += parser.feed(read)
        except ProtocolError as exc:
            events += exc.events
            errors += 1
    return events, errors


@contextmanager
def cpu_deadline(seconds: float) -> Iterator[None]:
    """Raise ``TimeoutError`` inside the block once it has used ``seconds`` of CPU.

    A parser stuck in a loop then fails its test, with the input that did it, instead
    of hanging the run.  It uses the virtual-time timer, leaving SIGALRM to
    pytest-timeout; where that timer is missing (not POSIX, not the main thread) the
    block runs unguarded and pytest-timeout still ends the test.
    """
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def expire(signum: int, frame: FrameType | None) -> None:
        raise TimeoutError(f"still running after {seconds} s of CPU time: a loop?")

    previous = signal.signal(signal.SIGVTALRM, expire)
    signal.setitimer(signal.ITIMER_VIRTUAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_VIRTUAL, 0)
        signal.signal(signal.SIGVTALRM, previous)


def ends_on_block_boundary(body: bytes) -> bool:
    """True when ``body`` ends between events, so appending an event cannot merge."""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    text = body.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return text in (b"", b"\n") or text.endswith(b"\n\n")


def assert_parses(
    body: bytes,
    events: Sequence[Event],
    last_event_id: str = "",
    retry: int | None = None,
    *,
    parser_kwargs: dict[str, Any] | None = None,
) -> None:
    """Check one body in every way of reading it: whole, byte by byte, split in two at
    every point, followed by a known event in the same body when it ends between
    events, and followed by a known event in the next body (after ``reset()``)."""
    parser_kwargs = parser_kwargs or {}
    expected: Outcome = (list(events), last_event_id, retry)
    for label, reads in chunkings(body):
        assert run_body(reads, **parser_kwargs) == expected, label

    tail = ev("tail", id=last_event_id, retry=retry)
    with_tail: Outcome = ([*events, tail], last_event_id, retry)
    if ends_on_block_boundary(body):
        for label, reads in chunkings(body + TAIL):
            assert run_body(reads, **parser_kwargs) == with_tail, f"with trailing event, {label}"
    bytewise = [body[i : i + 1] for i in range(len(body))]
    for label, reads in (("whole", [body]), ("byte by byte", bytewise)):
        parser = Parser(**parser_kwargs)
        got = feed_all(parser, reads)
        parser.reset()
        got += parser.feed(TAIL)
        parser.reset()
        outcome = (got, parser.last_event_id, parser.retry)
        assert outcome == with_tail, f"with an event in the next body, {label}"


def reference_parse(body: bytes, *, last_event_id: str = "", retry: int | None = None) -> Outcome:
    """Parse one whole body as the spec text reads, one character at a time."""
    # "Streams must be decoded using the UTF-8 decode algorithm": U+FFFD for bad
    # bytes, and one leading BOM removed.
    text = body.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]

    # Line ends: CRLF, LF alone, CR alone.  What follows the last line end is an
    # unfinished line, discarded at end of file.
    lines: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char in "\r\n":
            lines.append("".join(current))
            current = []
            if char == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
        else:
            current.append(char)
        i += 1

    data_buffer = ""
    type_buffer = ""
    id_buffer = last_event_id
    id_string = last_event_id
    events: list[Event] = []
    for line in lines:
        if line == "":
            # Dispatch the event.
            id_string = id_buffer
            if data_buffer == "":
                data_buffer = type_buffer = ""
                continue
            if data_buffer.endswith("\n"):
                data_buffer = data_buffer[:-1]
            events.append(Event(type_buffer or "message", data_buffer, id_string, retry))
            data_buffer = type_buffer = ""
            continue
        if line.startswith(":"):
            continue
        if ":" in line:
            field, value = line.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = line, ""
        # Field names are compared literally, with no case folding.
        if field == "event":
            type_buffer = value
        elif field == "data":
            data_buffer += value + "\n"
        elif field == "id":
            if "\0" not in value:
                id_buffer = value
        elif field == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)  # only ASCII digits; an empty value is no number
    # End of file: the data and event type buffers are dropped undispatched.
    return events, id_string, retry


def positioned(parser: Parser, reads: Iterable[bytes]) -> list[tuple[str, str]]:
    """Events and comments of ``reads`` in the order the parser places them (what
    EventStream hands over), the events of a ProtocolError included."""
    notes: list[tuple[int, str]] = []
    comment_positions(parser, lambda text, before: notes.append((before, text)))
    items: list[tuple[str, str]] = []
    for read in reads:
        try:
            events = parser.feed(read)
        except ProtocolError as exc:
            events = exc.events
        start = 0
        for before, text in notes:
            items += [("event", e.data) for e in events[start:before]]
            items.append(("comment", text))
            start = max(start, before)
        items += [("event", e.data) for e in events[start:]]
        notes.clear()
    return items


def refuse_worker_threads(monkeypatch: Any) -> Any:
    """Make starting an eventstream worker thread fail as when the process is out of
    threads (``RuntimeError``); other threads start as usual.  Returns the real
    ``Thread.start``, to put back."""
    real_start = threading.Thread.start

    def refuse(thread: threading.Thread) -> None:
        if thread.name.startswith("eventstream-worker-"):
            raise RuntimeError("can't start new thread")
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", refuse)
    return real_start
