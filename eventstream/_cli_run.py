"""Running one stream for the command-line tool: open it, consume it, stop it.

Rule: the main thread iterates the stream and is never blocked on the connection,
so a signal ends the run at once in every state: connecting, waiting for headers,
reading, backing off (``_cli_signals``).  ``--max-time`` and ``--idle-exit`` are
enforced by a watchdog thread (``_cli_watch``).  Every way out stops the stream,
waits for its worker only ``LEAVE_TIMEOUT`` (a worker still connecting cannot be
cut short; it is a daemon, and :func:`run` says it was left behind) and gives an
exit status; a retried outage never gives 0 (``_cli_health``).
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Union

from ._backoff import Backoff
from ._cli_health import Health
from ._cli_output import (
    Format,
    Output,
    Renderer,
    Reporter,
    StdoutError,
    describe,
    redact,
    silence_stdout,
    status_phrase,
)
from ._cli_signals import Signals, Terminated
from ._cli_state import Resume, StateError, StateFile
from ._cli_watch import Ending, Notice, Watchdog
from ._client import EventStream
from ._exceptions import ProtocolError, RetriesExhausted
from ._models import ResponseInfo
from ._oneshot import DEFAULT_RETRIES, OneShotStream, request
from ._options import DEFAULT_TIMEOUT
from ._parser import DEFAULT_MAX_EVENT_SIZE
from ._transport import configured_session
from ._worker import last_event_id_field

__all__ = ["LEAVE_TIMEOUT", "SLOW_NOTICE", "Config", "ExitStatus", "Outcome", "run"]

_log = logging.getLogger(__name__)

#: Seconds to wait for the worker when leaving.  Stopping takes milliseconds except
#: in DNS or a TLS handshake, which nothing can interrupt; the
#: worker is a daemon, so it is then left behind and the process exits without it.
LEAVE_TIMEOUT = 0.05
#: Seconds without any answer after which the tool says it is still waiting.
SLOW_NOTICE = 5.0

Stream = Union[EventStream, OneShotStream]


class ExitStatus(enum.IntEnum):
    """The tool's exit statuses."""

    OK = 0  # the stream ended, a limit was reached, or stdout was closed
    ERROR = 1  # a fatal error, reported on one stderr line
    USAGE = 2  # bad arguments (argparse's own status), an unusable URL
    UNHEALTHY = 3  # the run ended while the stream was down, or gave up retrying
    INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as shells report it
    TERMINATED = 143  # 128 + SIGTERM


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
    verify: bool | str = True  # False with --insecure, a file with --cacert
    cert: str | tuple[str, str] | None = None
    proxy: str | None = None
    max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE
    max_retries: int | None = None
    fail_after: float | None = None
    slow_notice: float = SLOW_NOTICE
    comments: bool = False  # show comment lines on stderr


@dataclass
class Outcome:
    """The exit status, and whether the worker was left running (still connecting)."""

    status: int
    abandoned: bool = False


def run(config: Config, reporter: Reporter, output: Output) -> Outcome:
    """Read the stream ``config`` describes and write its events; return the outcome."""
    try:
        resume, start_id = _resume(config)
    except StateError as exc:
        reporter.error(str(exc))
        return Outcome(ExitStatus.ERROR)
    reporter.status(f"connecting to {redact(config.url)}")
    health = Health()
    signals = Signals()
    parts = _Run(config, reporter, output, health, resume, signals)
    progress = _Progress(reporter, health, reconnect=config.reconnect)
    outcome = Outcome(ExitStatus.OK)
    stream: Stream | None = None
    # The handlers go in before the worker starts: a signal at any later point
    # stops it (below), and never reaches the interpreter's default handling.
    with signals:
        try:
            stream = _open(config, start_id, progress)
            outcome.status = parts.watch(stream)
        except (TypeError, ValueError) as exc:  # options the argument checks let through
            reporter.error(str(exc))
            outcome.status = ExitStatus.USAGE
        except (KeyboardInterrupt, Terminated) as exc:  # before watch() took over
            outcome.status = _signalled(exc, reporter, health)
        finally:
            if stream is not None:
                outcome.abandoned = not stream.stop(LEAVE_TIMEOUT)
    return outcome


@dataclass
class _Run:
    """One run's parts, for the main thread's part of it."""

    config: Config
    reporter: Reporter
    output: Output
    health: Health
    resume: Resume | None
    signals: Signals

    def watch(self, stream: Stream) -> int:
        """Consume the stream with the notice and the watchdog running; the status."""
        config, reporter, health = self.config, self.reporter, self.health
        notice = Notice(config.slow_notice, functools.partial(_still_waiting, self))
        watchdog = None
        try:
            if config.max_time is not None or config.idle_exit is not None:
                watchdog = Watchdog(stream.stop, max_time=config.max_time, idle=config.idle_exit)
            ending = _consume(stream, self, watchdog)
            return _ended(ending, config, reporter, health)
        except (KeyboardInterrupt, Terminated) as exc:
            return _signalled(exc, reporter, health)
        except BrokenPipeError:  # the reader left (`| head -1`): a normal end for a filter
            silence_stdout()
            return ExitStatus.OK
        except StdoutError as exc:  # a full disk, an I/O error: the events go nowhere
            silence_stdout()
            reporter.error(str(exc))
            return ExitStatus.ERROR
        except Exception as exc:  # the stream's fatal error, or the state file's
            return _failed(exc, reporter)
        finally:
            notice.close()
            if watchdog is not None:
                watchdog.close()


def _still_waiting(run: _Run) -> None:
    # Runs on the notice's thread.  A server that accepts and never answers would
    # otherwise show nothing after "connecting to" until the read timeout.
    config = run.config
    if run.health.silent():
        timeout = config.timeout
        read = timeout[1] if isinstance(timeout, tuple) else timeout
        run.reporter.status(
            f"no answer from {redact(config.url)} after {config.slow_notice:g} s; "
            f"waiting up to the read timeout ({read:g} s, --read-timeout)"
        )


def _ended(ending: Ending, config: Config, reporter: Reporter, health: Health) -> int:
    problem = None if ending is Ending.END else health.problem()
    if problem is not None:
        reporter.error(f"unhealthy: {problem}")
        return ExitStatus.UNHEALTHY
    reporter.status(_farewell(ending, config))
    return ExitStatus.OK


def _signalled(exc: BaseException, reporter: Reporter, health: Health) -> int:
    terminated = isinstance(exc, Terminated)
    reporter.status("terminated" if terminated else "interrupted")
    problem = health.problem()
    if problem is not None:
        reporter.error(f"unhealthy: {problem}")
    return ExitStatus.TERMINATED if terminated else ExitStatus.INTERRUPTED


def _failed(exc: Exception, reporter: Reporter) -> int:
    if isinstance(exc, StateError):
        reporter.error(str(exc))
        return ExitStatus.ERROR
    _log.debug("the stream failed", exc_info=True)
    reporter.error(describe(exc))
    if isinstance(exc, RetriesExhausted):
        return ExitStatus.UNHEALTHY
    if isinstance(exc, (ValueError, TypeError)):  # the URL or a header, refused on sending
        return ExitStatus.USAGE
    return ExitStatus.ERROR


def _resume(config: Config) -> tuple[Resume | None, str]:
    """The resume keeper (with ``--state``) and the ID to start from."""
    if config.state is None:
        return None, config.last_event_id
    file = StateFile(config.state)
    saved = file.load()
    start = config.last_event_id if saved is None else saved
    return Resume(file, start, fresh_parser=not config.reconnect), start


def _session_factory(config: Config) -> Callable[[], Any] | None:
    if config.verify is True and config.cert is None and config.proxy is None:
        return None
    return functools.partial(
        configured_session, verify=config.verify, cert=config.cert, proxy=config.proxy
    )


def _open(config: Config, start_id: str, progress: _Progress) -> Stream:
    common: dict[str, Any] = {
        "method": config.method,
        "data": config.data,
        "timeout": config.timeout,
        "max_event_size": config.max_event_size,
        "session_factory": _session_factory(config),
        "on_error": progress.failed,
        "on_open": progress.opened,
        "on_retry": progress.retrying,
        "on_comment": progress.comment if config.comments else None,
    }
    if config.reconnect:
        attempts = None if config.max_retries is None else config.max_retries + 1
        backoff = Backoff(max_attempts=attempts, max_elapsed=config.fail_after)
        return EventStream(
            config.url,
            headers=dict(config.headers),
            last_event_id=start_id,
            backoff=backoff,
            **common,
        ).start()
    # A one-shot request has no resume option: it is an ordinary request, so the
    # resume point goes in as an ordinary header (unless -H gave one), encoded as a
    # stream encodes it (UTF-8, no leading blanks; none when nothing is left).
    headers = dict(config.headers)
    field_value = last_event_id_field(start_id)
    if field_value and "last-event-id" not in {name.lower() for name in headers}:
        headers["Last-Event-ID"] = field_value
    return request(
        config.method,
        config.url,
        headers=headers,
        retries=DEFAULT_RETRIES if config.max_retries is None else config.max_retries,
        backoff=Backoff(max_elapsed=config.fail_after),
        **{name: value for name, value in common.items() if name != "method"},
    )


def _consume(stream: Stream, run: _Run, watchdog: Watchdog | None) -> Ending:
    config, output, resume = run.config, run.output, run.resume
    renderer = Renderer(config.format)
    for count, event in enumerate(stream, 1):
        run.health.event()
        if watchdog is not None:
            watchdog.touch()
        # Written (and synced to a file) before its ID is saved: a crash in between
        # repeats one event, never loses one; a signal waits for the section's end.
        with run.signals.critical():
            output.write(renderer.render(event))
            if resume is not None:
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

    def __init__(self, reporter: Reporter, health: Health, *, reconnect: bool) -> None:
        self._reporter = reporter
        self._health = health
        self._reconnect = reconnect
        self._opened = False  # only the worker thread touches these
        self._reported: BaseException | None = None

    def opened(self, info: ResponseInfo) -> None:
        self._health.opened()
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
        self._reported = exc
        if isinstance(exc, ProtocolError):
            self._reporter.status(f"skipped an event: {exc}")

    def retrying(self, exc: BaseException, delay: float) -> None:
        # A clean end of the body comes here without going through on_error first:
        # it is no failure, and does not make the stream unhealthy.
        if exc is self._reported:
            self._health.failed(exc)
        verb = "reconnecting" if self._reconnect else "retrying"
        self._reporter.status(f"{describe(exc)}; {verb} in {delay:.1f} s")

    def comment(self, text: str) -> None:
        # On stderr, so stdout stays events only.  One leading space is dropped, as
        # from a field's value: ": ping" shows as "comment: ping".
        self._reporter.status(f"comment: {text[1:] if text[:1] == ' ' else text}")
