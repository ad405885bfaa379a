"""The command-line tool: ``eventstream URL`` and ``python -m eventstream URL``.

Rule: this module only turns arguments into a :class:`~eventstream._cli_run.Config`
(argparse reports every bad argument and an unusable URL, with exit status 2; the
checks are in ``_cli_args``) and hands over to ``_cli_run``, which reads the stream
through the public API (and ``_transport.configured_session`` for the TLS and proxy
options).  The tool is the only part of the package that prints; it never imports
``requests`` itself.  Exit statuses: see ``_cli_run.ExitStatus`` and ``--help``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from . import _cli_args as args_
from ._backoff import Backoff
from ._cli_output import Format, Output, Reporter
from ._cli_run import Config, ExitStatus, Outcome, run
from ._cli_signals import Terminated
from ._oneshot import DEFAULT_RETRIES
from ._options import DEFAULT_TIMEOUT
from ._parser import DEFAULT_MAX_EVENT_SIZE

__all__ = ["build_parser", "main"]

#: Seconds open that make a connection healthy without an event: the count of
#: --max-retries and the clock of --fail-after start again after one.
_RESET_AFTER = Backoff().reset_after


_DESCRIPTION = """\
Read a Server-Sent Events stream and write its events to stdout, each flushed as
it arrives, so the output pipes cleanly.  Status lines (connecting, connected,
reconnecting, errors) go to stderr.  A GET stream reconnects after drops and server
errors, resuming with Last-Event-ID, until it ends (HTTP 204), a limit is
reached, a fatal error happens (another 4xx, a wrong Content-Type) or Ctrl-C.
With a request body (-d, --json) or another method (-X), the tool makes ONE
request and ends with its body, as curl does: retried only before the first byte
of the answer, never reconnected unless --reconnect is given."""

_EPILOG = """\
formats:
  text  a block per event in the event stream's own syntax, so it parses back to
        the same events: "event: TYPE", "id: ID" (if any; "id" alone when the
        server resets it to none), "retry: MS" (when it changes), one
        "data: LINE" per line of data, then a blank line
  json  one JSON object per line: {"event": ..., "data": ..., "id": ...} plus
        "retry" when the server set one
  data  only the data, one line per event; line breaks inside the data are
        written as spaces (multi-line JSON stays valid; use json for exact data)

exit status:
  0    the stream ended (HTTP 204, or the body of a one-request run), a limit was
       reached while the stream was healthy, or the reader of stdout went away
  1    a fatal error (another 4xx, a wrong Content-Type, the state file, a write
       to stdout that failed: a full disk), reported on one line of stderr (even
       with -q)
  2    bad arguments or an unusable URL, with the reason
  3    unhealthy: a limit (--max-time, --idle-exit) ended the run while the
       stream was down (it never connected during the run, or has been failing
       for 10 s or more: no event, no connection that lasted 10 s), or it gave
       up retrying (--max-retries, --fail-after); one line
       "eventstream: error: ..." on stderr, even with -q
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM); the unhealthy line is
       printed too if the stream was down

examples:
  eventstream https://example.com/stream
  eventstream -n 1 --format data https://example.com/stream
  eventstream -H 'Authorization: Bearer TOKEN' --json '{"q": 1}' URL
  eventstream -q --state feed.id --idle-exit 30 --max-time 280 URL >> feed.log
  eventstream --cacert ca.pem --cert me.pem --key me.key https://internal/stream
  eventstream --demo"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool with ``argv`` (default: ``sys.argv[1:]``); return the exit status.

    Run as a program (``argv`` None), a worker still connecting when the run ends
    (DNS and TLS handshakes cannot be interrupted) is left
    behind, and so is the interpreter's clean-up after a signal: the output is
    flushed and the process exits at once (Ctrl-C within milliseconds in every
    state), instead of waiting out the worker's timeout.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        config = _config(parser, args)
        reporter = Reporter(sys.stderr, quiet=args.quiet)
        if args.verbose:
            logging.basicConfig(format="%(name)s: %(levelname)s: %(message)s")
            logging.getLogger("eventstream").setLevel(logging.DEBUG)
        if config.verify is False:
            reporter.warning("--insecure: TLS certificates and host names are not checked")
            # urllib3 would warn again on every connect; the line above says it once.
            warnings.filterwarnings("ignore", message="Unverified HTTPS request")
        output = Output(sys.stdout, sync=config.state is not None)
        if not args.demo:
            outcome = run(config, reporter, output)
        else:
            # Imported only for --demo: the test server is of no use to any other run.
            from ._cli_demo import demo_url  # noqa: PLC0415

            with demo_url() as url:
                reporter.status(f"demo server listening at {url}")
                outcome = run(dataclasses.replace(config, url=url), reporter, output)
    except KeyboardInterrupt:  # before the stream started, or while it was stopped
        outcome = Outcome(ExitStatus.INTERRUPTED)
    except Terminated:  # a second SIGTERM while the run stopped its stream after one
        outcome = Outcome(ExitStatus.TERMINATED)
    signalled = outcome.status in (ExitStatus.INTERRUPTED, ExitStatus.TERMINATED)
    if argv is None and (outcome.abandoned or signalled):
        _leave_now(outcome.status)
    return outcome.status


def _leave_now(status: int) -> None:
    # The worker is a daemon blocked in a call nothing can interrupt, and the
    # library's exit hook would wait for it: flush what the tool wrote, and go.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    logging.shutdown()
    os._exit(status)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with the help text."""
    parser = argparse.ArgumentParser(
        prog="eventstream",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("url", nargs="?", metavar="URL", help="an http:// or https:// URL")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--demo",
        action="store_true",
        help="start a built-in demo server and read its stream (no URL needed)",
    )
    _request_options(parser)
    output = parser.add_argument_group("output")
    output.add_argument(
        "--format",
        choices=[f.value for f in Format],
        default=Format.TEXT.value,
        help="how events are written (default: text; see below)",
    )
    output.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no status lines on stderr; a fatal error or an unhealthy end is still "
        "reported, on one line",
    )
    output.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also write the library's log (logger 'eventstream', DEBUG) to stderr",
    )
    output.add_argument(
        "--comments",
        action="store_true",
        help="also show the stream's comment lines (heartbeats such as ': ping') on "
        "stderr, as 'eventstream: comment: TEXT' status lines (not with -q)",
    )
    ending = parser.add_argument_group("when to stop")
    ending.add_argument("-n", "--max-events", type=args_.count, metavar="N", help="after N events")
    ending.add_argument(
        "--max-time", type=args_.seconds, metavar="SECONDS", help="after SECONDS in all"
    )
    ending.add_argument(
        "--idle-exit",
        type=args_.seconds,
        metavar="SECONDS",
        help="once SECONDS pass without an event (from the start, or the last event)",
    )
    ending.add_argument(
        "--state",
        metavar="FILE",
        help="resume from the event ID saved in FILE (if it exists; it wins over "
        "--last-event-id) and save the ID there, atomically, after each event (written, "
        "and synced when stdout is a file, first)",
    )
    ending.add_argument(
        "--max-retries",
        type=args_.whole,
        metavar="N",
        help="give up (exit 3) after N retries in a row without a healthy connection: "
        f"one that delivered an event or stayed open {_RESET_AFTER:g} s.  Every other end "
        "of an attempt counts, a connection that ended (even cleanly) before either "
        f"included (default: forever; {DEFAULT_RETRIES} for a one-request run, which is "
        "retried only before its answer)",
    )
    ending.add_argument(
        "--fail-after",
        type=args_.seconds,
        metavar="SECONDS",
        help="give up (exit 3) once SECONDS have passed since the last healthy "
        "connection ended (or the start), checked each time an attempt ends, and at "
        "once when the wait before the next attempt would reach SECONDS: "
        "connections that delivered no event and lasted less than "
        f"{_RESET_AFTER:g} s do not stop the clock",
    )
    _tls_options(parser)
    return parser


def _request_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("request")
    group.add_argument(
        "-X", "--method", help="the HTTP method (default: GET; POST with -d or --json)"
    )
    group.add_argument(
        "-H",
        "--header",
        action="append",
        type=args_.header,
        default=[],
        metavar="'NAME: VALUE'",
        help="a request header; repeat for more (a repeated name joins values with ', ')",
    )
    body = group.add_mutually_exclusive_group()
    body.add_argument(
        "-d",
        "--data",
        metavar="DATA",
        help="the request body as it is: a string, @FILE for a file's bytes, @- for "
        "stdin; no Content-Type is added (give one with -H)",
    )
    body.add_argument(
        "--json",
        metavar="JSON",
        type=args_.json_text,
        help="a JSON request body, checked, then sent as typed with "
        "Content-Type: application/json (unless -H sets one)",
    )
    group.add_argument(
        "--last-event-id",
        metavar="ID",
        type=args_.event_id,
        default="",
        help="resume after this event ID: sent as the Last-Event-ID header",
    )
    group.add_argument(
        "--timeout",
        type=args_.timeout,
        metavar="SECONDS",
        default=DEFAULT_TIMEOUT,
        help="'CONNECT,READ' or one number for both (default: "
        f"{DEFAULT_TIMEOUT[0]:g},{DEFAULT_TIMEOUT[1]:g}); a connection silent for READ "
        "seconds is dropped and reopened",
    )
    group.add_argument(
        "--connect-timeout",
        type=args_.seconds,
        metavar="SECONDS",
        help="seconds for DNS, connect and the TLS handshake (overrides --timeout)",
    )
    group.add_argument(
        "--read-timeout",
        type=args_.seconds,
        metavar="SECONDS",
        help="seconds to wait for the response headers, then for each byte of the "
        "body: a connection silent that long is dropped (overrides --timeout)",
    )
    group.add_argument(
        "--max-event-size",
        type=args_.count,
        metavar="BYTES",
        default=DEFAULT_MAX_EVENT_SIZE,
        help=f"skip (and report) any event larger than BYTES (default: {DEFAULT_MAX_EVENT_SIZE})",
    )
    again = group.add_mutually_exclusive_group()
    again.add_argument(
        "--reconnect",
        dest="reconnect",
        action="store_const",
        const=True,
        help="reconnect after the body ends or fails, resuming with Last-Event-ID, even "
        "with a body or a method other than GET (it sends the request again)",
    )
    again.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_const",
        const=False,
        help="make one request and end with its body (retried only before the first "
        "byte arrives): the default with a body or a method other than GET",
    )


def _tls_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS and proxy")
    group.add_argument(
        "--cacert",
        metavar="FILE",
        type=args_.readable,
        help="trust the CA certificates in FILE (PEM) instead of the default ones",
    )
    group.add_argument(
        "-k",
        "--insecure",
        action="store_true",
        help="do not verify the server's certificate or host name (a warning is printed)",
    )
    group.add_argument(
        "--cert",
        metavar="FILE",
        type=args_.readable,
        help="a client certificate (PEM), with its key unless --key is given",
    )
    group.add_argument(
        "--key", metavar="FILE", type=args_.readable, help="the private key of --cert (PEM)"
    )
    group.add_argument(
        "--proxy",
        metavar="URL",
        type=args_.proxy,
        help="send requests through this proxy (http://, https://, socks5://...); it "
        "wins over HTTP_PROXY/HTTPS_PROXY, which are used otherwise",
    )


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config:
    """Check what argparse cannot check alone, and read the request body."""
    if args.demo and args.url is not None:
        parser.error("--demo takes no URL")
    url = "" if args.demo else args.url
    if not args.demo:
        if url is None:
            parser.error("a URL is required (or --demo)")
        problem = args_.url_problem(url)
        if problem is not None:
            parser.error(f"unusable URL {args_.shown(url)!r}: {problem}")
    if args.key is not None and args.cert is None:
        parser.error("--key needs --cert")
    if args.insecure and args.cacert is not None:
        parser.error("--insecure and --cacert contradict each other")
    if args.state is not None and not Path(args.state).resolve().parent.is_dir():
        parser.error(f"--state: the directory of {args.state!r} does not exist")
    headers = args_.merge_headers(args.header)
    data: bytes | None = None
    if args.json is not None:
        data = args.json.encode("utf-8")
        if "content-type" not in {name.lower() for name in headers}:
            headers["Content-Type"] = "application/json"
    elif args.data is not None:
        data = args_.read_data(parser, args.data)
    method = args.method or ("GET" if data is None else "POST")
    if not args_.TOKEN.fullmatch(method):
        parser.error(f"-X: not an HTTP method: {method!r}")
    # One request unless asked: re-sending a body or a POST may repeat its effect.
    reconnect = args.reconnect
    if reconnect is None:
        reconnect = method == "GET" and data is None
    return Config(
        url=url,
        method=method,
        headers=headers,
        data=data,
        timeout=_timeouts(args),
        last_event_id=args.last_event_id,
        reconnect=reconnect,
        format=Format(args.format),
        state=args.state,
        max_events=args.max_events,
        max_time=args.max_time,
        idle_exit=args.idle_exit,
        verify=False if args.insecure else (args.cacert or True),
        cert=args.cert if args.key is None else (args.cert, args.key),
        proxy=args.proxy,
        max_event_size=args.max_event_size,
        max_retries=args.max_retries,
        fail_after=args.fail_after,
        comments=args.comments,
    )


def _timeouts(args: argparse.Namespace) -> tuple[float, float]:
    timeout = args.timeout
    connect, read = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    return (args.connect_timeout or connect, args.read_timeout or read)
