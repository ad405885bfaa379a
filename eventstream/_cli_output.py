"""What the command-line tool writes: events to stdout, status lines to stderr.

Rule: stdout carries events and nothing else, one flushed write per event, so a pipe
sees each event the moment it arrives and can be parsed without filtering.  Every
other line (progress, retried errors, the fatal error) goes to stderr through
:class:`Reporter`, which the worker thread's callbacks share with the main thread.
"""

from __future__ import annotations

import enum
import http
import json
import os
import select
import stat
import sys
import threading
import urllib.parse
from typing import Any, BinaryIO, TextIO, cast

from ._exceptions import EventStreamError, HTTPStatusError, RetriesExhausted
from ._models import Event

__all__ = [
    "Format",
    "Output",
    "Renderer",
    "Reporter",
    "StdoutError",
    "describe",
    "redact",
    "silence_stdout",
]

PROG = "eventstream"
_SNIPPET_LIMIT = 120  # characters of an error body shown on the one error line
_TEXT_BODY_TYPES = ("text/plain", "application/json", "application/problem+json")


class Format(enum.Enum):
    """How each event is written on stdout (``--format``)."""

    TEXT = "text"
    """A block per event in the event stream's own syntax (see :class:`Renderer`)."""
    JSON = "json"
    """One JSON object per line: ``event``, ``data``, ``id``, and ``retry`` if set."""
    DATA = "data"
    """Only the data, one line per event; its line breaks become spaces."""


class Renderer:
    """Turns events into the text written for them, in one :class:`Format`.

    ``text`` writes ``event:``, then ``id:`` (when there is one; a bare ``id`` line
    when the server reset it to none after one was written), then ``retry:`` (when
    it differs from the previous event's), then one ``data:`` line per line of
    data, then a blank line.  The output is itself a valid event stream that parses
    back to the same events.  ``data`` mode keeps one event per line, which is what
    line tools need; a space in place of a line break also keeps multi-line JSON
    valid (JSON strings cannot hold a raw line break).  ``--format json`` is exact.
    """

    def __init__(self, fmt: Format) -> None:
        self._format = fmt
        self._id = ""  # the last ID written: a reader's parser holds it until reset
        self._retry: int | None = None

    def render(self, event: Event) -> str:
        if self._format is Format.JSON:
            record: dict[str, Any] = {"event": event.event, "data": event.data, "id": event.id}
            if event.retry is not None:
                record["retry"] = event.retry
            return json.dumps(record, ensure_ascii=False) + "\n"
        if self._format is Format.DATA:
            return event.data.replace("\n", " ") + "\n"
        lines = [f"event: {event.event}"]
        if event.id:
            lines.append(f"id: {event.id}")
        elif self._id:
            lines.append("id")  # the field with no value: the ID is reset to none
        self._id = event.id
        if event.retry is not None and event.retry != self._retry:
            lines.append(f"retry: {event.retry}")
        self._retry = event.retry
        # "data:" alone for an empty line: the same value, without trailing blanks.
        lines.extend(f"data: {line}" if line else "data:" for line in event.data.split("\n"))
        return "\n".join(lines) + "\n\n"


class StdoutError(Exception):
    """Writing to stdout failed for a reason other than a closed pipe: the disk is
    full (``> /dev/full``), an I/O error, a failed fsync.  Raised by
    :meth:`Output.write` on the main thread; its message says so, with the
    ``OSError`` (also its ``__cause__``)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(f"cannot write to stdout: {error}")


class Output:
    """Writes rendered events to stdout as UTF-8, flushing after each one.

    Writes to the binary buffer when there is one, so the encoding does not depend
    on the locale: an event stream is UTF-8.  With ``sync`` (``--state``), each write
    to a regular file is also fsynced, so the event is on disk before its ID is
    saved.  A closed pipe raises ``BrokenPipeError`` to the caller (the reader left:
    a normal end for a filter), any other ``OSError`` :class:`StdoutError`.

    Every byte is written before :meth:`write` returns: an unbuffered stdout
    (``PYTHONUNBUFFERED``, ``python -u``) writes straight to the file descriptor,
    and a signal that cuts a blocked write to a pipe makes it return a short count.
    The signal waits for the rest (``_cli_signals``): the event's ID must not be
    saved with only part of the event out.
    """

    def __init__(self, stream: TextIO, *, sync: bool = False) -> None:
        self._text = stream
        self._binary: BinaryIO | None = getattr(stream, "buffer", None)
        self._sync_fd = _regular_file_fd(stream) if sync else None

    def write(self, text: str) -> None:
        """Write, flush (and sync) one rendered event (main thread)."""
        try:
            if self._binary is not None:
                _write_all(self._binary, text.encode("utf-8"))
                self._binary.flush()
            else:
                self._text.write(text)
                self._text.flush()
            if self._sync_fd is not None:
                os.fsync(self._sync_fd)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise StdoutError(exc) from exc


def _write_all(binary: BinaryIO, data: bytes) -> None:
    # A buffered writer writes everything or raises; a raw FileIO may return a short
    # count (a signal cut the write), or None (a non-blocking descriptor was full).
    left = memoryview(data)
    while left:
        written = cast("int | None", binary.write(left))  # typed as BinaryIO's: int
        if written is None:
            select.select((), (binary,), ())  # until it can take more; no busy loop
            continue
        left = left[written:]


def _regular_file_fd(stream: TextIO) -> int | None:
    # A pipe or a terminal cannot be synced (and needs not be): only a file can.
    try:
        fd = stream.fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (AttributeError, OSError, ValueError):
        return None


def silence_stdout() -> None:
    """After a broken pipe or another failed write: point stdout's fd at the null
    device, so that the interpreter's final flush of what is still buffered cannot
    fail again (the recipe of the Python documentation, "Note on SIGPIPE")."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return  # not a real file: nothing will flush to a closed pipe
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


class Reporter:
    """Writes ``eventstream: ...`` lines on stderr; safe from any thread.

    ``status`` lines (progress and retried errors) are dropped with ``quiet``;
    ``error`` lines, the reason for exit status 1, are always written, so that a
    quiet cron job still reports a failure.
    """

    def __init__(self, stream: TextIO, *, quiet: bool) -> None:
        self._stream = stream
        self._quiet = quiet
        self._lock = threading.Lock()  # callbacks run on the worker thread

    def status(self, message: str) -> None:
        if not self._quiet:
            self._write(f"{PROG}: {message}")

    def error(self, message: str) -> None:
        self._write(f"{PROG}: error: {message}")

    def warning(self, message: str) -> None:
        """A line written even with ``quiet``: something the user must know."""
        self._write(f"{PROG}: warning: {message}")

    def _write(self, line: str) -> None:
        line = line.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")  # one line
        with self._lock:
            try:
                self._stream.write(line + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # stderr is gone: there is nowhere left to say anything


def redact(url: str) -> str:
    """``url`` with any user name and password replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{host}"))


def describe(exc: BaseException) -> str:
    """One line saying what went wrong, for the fatal error line."""
    if isinstance(exc, HTTPStatusError) and 400 <= exc.status_code <= 599:
        text = f"HTTP {exc.status_code} from {exc.url}"
        reason = status_phrase(exc.status_code)
        snippet = _snippet(exc)
        return text + "".join(f": {part}" for part in (reason, snippet) if part)
    if isinstance(exc, RetriesExhausted) and exc.__cause__ is not None:
        # The message ends with the library's own "; the last: ..."; this one has the body.
        limit = str(exc).partition("; the last: ")[0]
        return f"{limit}; the last: {describe(exc.__cause__)}"
    if isinstance(exc, EventStreamError):
        return str(exc)
    return str(exc) or type(exc).__name__


def status_phrase(status_code: int) -> str:
    try:
        return http.HTTPStatus(status_code).phrase
    except ValueError:
        return ""


def _snippet(exc: HTTPStatusError) -> str:
    # The start of a short plain-text or JSON error body often says what to fix;
    # an HTML error page would only be noise on one line.
    media_type = exc.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if media_type not in _TEXT_BODY_TYPES:
        return ""
    text = " ".join(exc.body.split())
    if len(text) > _SNIPPET_LIMIT:
        text = text[: _SNIPPET_LIMIT - 3] + "..."
    return text
