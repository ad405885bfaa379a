"""The ``--state`` file: where a run resumes, kept across runs of the tool.

Rule: the file always holds a complete event ID, never a torn write.  Each save
writes a temporary file in the same directory, fsyncs it, renames it over the old
one (``os.replace`` is atomic on POSIX and Windows) and fsyncs the directory, so a
crash or power cut leaves either the old ID or the new one.  An event is written to
stdout before its ID is saved: a run killed between the two repeats that one event
next time rather than losing it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

__all__ = ["Resume", "StateError", "StateFile"]

_log = logging.getLogger(__name__)


class StateError(Exception):
    """The state file cannot be read or written, or holds no valid event ID."""


class StateFile:
    """One state file: the last event ID delivered, as UTF-8 text and a newline."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def load(self) -> str | None:
        """The saved event ID, or None if the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise StateError(f"cannot read the state file {self.path}: {exc}") from exc
        value = text[:-1] if text.endswith("\n") else text
        if any(c in value for c in "\0\r\n"):
            raise StateError(f"the state file {self.path} does not hold one event ID")
        return value

    def save(self, last_event_id: str) -> None:
        """Replace the file's content with ``last_event_id``, atomically and durably."""
        directory = self.path.parent
        try:
            fd, temporary = tempfile.mkstemp(
                dir=directory, prefix=f".{self.path.name}.", suffix=".tmp"
            )
        except OSError as exc:
            raise StateError(f"cannot write the state file {self.path}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as file:  # bytes: "\n" on every platform
                file.write(f"{last_event_id}\n".encode())
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
        except BaseException as exc:  # Ctrl-C included: never leave the temporary behind
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            if isinstance(exc, OSError):
                raise StateError(f"cannot write the state file {self.path}: {exc}") from exc
            raise
        _fsync_directory(directory)


def _fsync_directory(directory: Path) -> None:
    # Makes the rename itself durable.  Not every platform can open a directory
    # (Windows cannot); the rename is still atomic there.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        _log.debug("cannot open %s to fsync it: %r", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse it; atomicity is unaffected
        _log.debug("fsync of %s failed: %r", directory, exc)
    finally:
        os.close(fd)


class Resume:
    """Saves the resume point after each delivered event, when it changed.

    ``fresh_parser`` is true for a one-shot request: its parser does not start from
    the saved ID, so events before the body's first ``id:`` carry ``""``, which
    means "not set yet" there, not "reset"; the saved ID is kept until one comes.
    """

    def __init__(self, file: StateFile, saved: str, *, fresh_parser: bool) -> None:
        self._file = file
        self._saved = saved
        self._waiting_for_id = fresh_parser

    def delivered(self, event_id: str) -> None:
        if self._waiting_for_id:
            if not event_id:
                return
            self._waiting_for_id = False
        if event_id != self._saved:
            self._file.save(event_id)
            self._saved = event_id
