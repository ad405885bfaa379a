"""Running one stream for the command-line tool: open it, consume it, stop it.

Rule: the main thread iterates the stream, so Ctrl-C interrupts the wait for the
next event.  ``--max-time`` and ``--idle-exit`` are enforced by a watchdog thread
that this module starts, owns and joins; it ends a blocked iteration the one way
that is safe from another thread, ``stream.stop()``.  Every way out (the end of the
stream, a limit, a fatal error, Ctrl-C, a closed pipe) stops the stream, joins the
watchdog and gives an exit status.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Union

from ._cli_output import (
    Format,
    Output,
    Renderer,
    Reporter,
    describe,
    redact,
    silence_stdout,
    status_phrase,
)
from ._cli_state import Resume, StateError, StateFile
from ._client import EventStream
from ._exceptions import ProtocolError
from ._models import ResponseInfo
from ._oneshot import DEFAULT_RETRIES, OneShotStream, request
from ._options import DEFAULT_TIMEOUT

__all__ = ["STOP_TIMEOUT", "Config", "ExitStatus", "run"]

_log = logging.getLogger(__name__)

#: Seconds to wait for the worker when leaving.  Stopping takes milliseconds except
#: while connecting or waiting for headers; the worker is a daemon, so the process
#: exits after this wait even then.
STOP_TIMEOUT = 2.0

Stream = Union[EventStream, OneShotStream]


class ExitStatus(enum.IntEnum):
    """The tool's exit statuses."""

    OK = 0  # the stream ended, a limit was reached, or stdout was closed
    ERROR = 1  # a fatal error, reported on one stderr line
    USAGE = 2  # bad arguments (argparse's own status)
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it


class Ending(enum.Enum):
    """Why a run that went well stopped."""

    END = "end"
    MAX_EVENTS = "max-events"
    MAX_TIME = "max-time"
    IDLE = "idle-exit"


@dataclass(frozen=True)
class Config:
    """What to request, how to write events, and when to stop: the parsed options."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    data: bytes | None = None
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT
    last_event_id: str = ""
    reconnect: bool = True
    format: Format = Format.TEXT
    state: str | None = None
    max_events: int | None = None
    max_time: float | None = None
    idle_exit: float | None = None
    comments: bool = False  # show comment lines on stderr


def run(config: Config, reporter: Reporter, output: Output) -> int:
    """Read the stream ``config`` describes and write its events; return the exit status."""
    try:
        resume, start_id = _resume(config)
    except StateError as exc:
        reporter.error(str(exc))
        return ExitStatus.ERROR
    reporter.status(f"connecting to {redact(config.url)}")
    try:
        stream = _open(config, start_id, _Progress(reporter, reconnect=config.reconnect))
    except (TypeError, ValueError) as exc:  # options the argument checks let through
        reporter.error(str(exc))
        return ExitStatus.ERROR
    watchdog = None
    try:
        if config.max_time is not None or config.idle_exit is not None:
            watchdog = Watchdog(stream.stop, max_time=config.max_time, idle=config.idle_exit)
        ending = _consume(stream, config, output, resume, watchdog)
    except KeyboardInterrupt:
        reporter.status("interrupted")
        return ExitStatus.INTERRUPTED
    except BrokenPipeError:  # the reader left (`| head -1`): a normal end for a filter
        silence_stdout()
        return ExitStatus.OK
    except StateError as exc:
        reporter.error(str(exc))
        return ExitStatus.ERROR
    except Exception as exc:  # the stream's fatal error, re-raised by the iteration
        _log.debug("the stream failed", exc_info=True)
        reporter.error(describe(exc))
        return ExitStatus.ERROR
    finally:
        if watchdog is not None:
            watchdog.close()
        if not stream.stop(STOP_TIMEOUT):
            _log.debug("the worker was still connecting after %s s; leaving it", STOP_TIMEOUT)
    reporter.status(_farewell(ending, config))
    return ExitStatus.OK


def _resume(config: Config) -> tuple[Resume | None, str]:
    """The resume keeper (with ``--state``) and the ID to start from."""
    if config.state is None:
        return None, config.last_event_id
    file = StateFile(config.state)
    saved = file.load()
    start = config.last_event_id if saved is None else saved
    return Resume(file, start, fresh_parser=not config.reconnect), start


def _open(config: Config, start_id: str, progress: _Progress) -> Stream:
    if config.reconnect:
        return EventStream(
            config.url,
            method=config.method,
            headers=dict(config.headers),
            data=config.data,
            timeout=config.timeout,
            last_event_id=start_id,
            on_error=progress.failed,
            on_open=progress.opened,
            on_retry=progress.retrying,
            on_comment=progress.comment if config.comments else None,
        ).start()
    # A one-shot request has no resume option: it is an ordinary request, so the
    # resume point goes in as an ordinary header (unless -H gave one).
    headers = dict(config.headers)
    if start_id and "last-event-id" not in {name.lower() for name in headers}:
        headers["Last-Event-ID"] = start_id
    return request(
        config.method,
        config.url,
        headers=headers,
        data=config.data,
        timeout=config.timeout,
        retries=DEFAULT_RETRIES,
        on_error=progress.failed,
        on_open=progress.opened,
        on_retry=progress.retrying,
        on_comment=progress.comment if config.comments else None,
    )


def _consume(
    stream: Stream,
    config: Config,
    output: Output,
    resume: Resume | None,
    watchdog: Watchdog | None,
) -> Ending:
    renderer = Renderer(config.format)
    for count, event in enumerate(stream, 1):
        if watchdog is not None:
            watchdog.touch()
        output.write(renderer.render(event))
        if resume is not None:  # after the write: a crash between repeats, never loses
            resume.delivered(event.id)
        if config.max_events is not None and count >= config.max_events:
            return Ending.MAX_EVENTS
    if watchdog is not None and watchdog.fired is not None:
        return watchdog.fired
    return Ending.END


def _farewell(ending: Ending, config: Config) -> str:
    if ending is Ending.MAX_EVENTS:
        return f"stopping after {config.max_events} events (--max-events)"
    if ending is Ending.MAX_TIME:
        return f"stopping after {config.max_time:g} s (--max-time)"
    if ending is Ending.IDLE:
        return f"stopping: no event for {config.idle_exit:g} s (--idle-exit)"
    return "the stream has ended"


class _Progress:
    """The stream's callbacks, turned into status lines; they run on the worker thread."""

    def __init__(self, reporter: Reporter, *, reconnect: bool) -> None:
        self._reporter = reporter
        self._reconnect = reconnect
        self._opened = False  # only the worker thread touches it

    def opened(self, info: ResponseInfo) -> None:
        url = redact(info.url)
        if info.status_code == 204:
            self._reporter.status(f"HTTP 204 from {url}: no more events")
            return
        # After a clean end of the body, on_retry said "reconnecting", not on_error.
        verb = "reconnected" if self._opened else "connected"
        self._opened = True
        phrase = status_phrase(info.status_code)
        self._reporter.status(f"{verb} to {url} (HTTP {info.status_code} {phrase})")

    def failed(self, exc: BaseException) -> None:
        # on_error sees every error: fatal ones are raised by the iteration and
        # reported once by run(), retried ones by retrying().  Left: skipped events.
        if isinstance(exc, ProtocolError):
            self._reporter.status(f"skipped an event: {exc}")

    def retrying(self, exc: BaseException, delay: float) -> None:
        verb = "reconnecting" if self._reconnect else "retrying"
        self._reporter.status(f"{describe(exc)}; {verb} in {delay:.1f} s")

    def comment(self, text: str) -> None:
        # On stderr, so stdout stays events only.  One leading space is dropped, as
        # from a field's value: ": ping" shows as "comment: ping".
        self._reporter.status(f"comment: {text[1:] if text[:1] == ' ' else text}")


class Watchdog:
    """Stops the stream once ``max_time`` seconds have passed, or ``idle`` seconds
    after the last event (or the start) with no event.

    Its thread (``eventstream-cli-watchdog``) waits on an event with a timeout, never
    sleeps.  :meth:`touch` runs on the main thread for each event; it only stores a
    time, which the watchdog reads when its current wait ends.  :meth:`close` wakes
    and joins the thread.
    """

    def __init__(
        self,
        stop: Callable[[], object],
        *,
        max_time: float | None,
        idle: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stop = stop
        self._clock = clock
        start = clock()
        self._end = None if max_time is None else start + max_time
        self._idle = idle
        self._last_event = start
        self._closed = threading.Event()
        self.fired: Ending | None = None
        self._thread = threading.Thread(
            target=self._run, name="eventstream-cli-watchdog", daemon=True
        )
        self._thread.start()

    def touch(self) -> None:
        self._last_event = self._clock()

    def close(self) -> None:
        self._closed.set()
        self._thread.join()

    def _next(self) -> tuple[float, Ending]:
        deadlines = []
        if self._end is not None:
            deadlines.append((self._end, Ending.MAX_TIME))
        if self._idle is not None:
            deadlines.append((self._last_event + self._idle, Ending.IDLE))
        return min(deadlines, key=lambda pair: pair[0])

    def _run(self) -> None:
        while True:
            deadline, ending = self._next()
            left = deadline - self._clock()
            if left <= 0:
                self.fired = ending
                self._stop()
                return
            if self._closed.wait(left):
                return
