"""The command-line tool: ``eventstream URL`` and ``python -m eventstream URL``.

Rule: this module only turns arguments into a :class:`~eventstream._cli_run.Config`
(argparse reports every bad argument, with exit status 2) and hands over to
``_cli_run``, which reads the stream through the public API.  The tool is the only
part of the package that prints; it never imports ``requests``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from ._cli_output import Format, Output, Reporter
from ._cli_run import Config, ExitStatus, run
from ._options import DEFAULT_TIMEOUT

__all__ = ["build_parser", "main"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 token)

_DESCRIPTION = """\
Read a Server-Sent Events stream and write its events to stdout, each flushed as
it arrives, so the output pipes cleanly.  Status lines (connecting, connected,
reconnecting, errors) go to stderr.  The stream reconnects after drops and server
errors, resuming with Last-Event-ID, until it ends (HTTP 204), a limit is
reached, a fatal error happens (another 4xx, a wrong Content-Type) or Ctrl-C."""

_EPILOG = """\
formats:
  text  a block per event in the event stream's own syntax, so it parses back to
        the same events: "event: TYPE", "id: ID" (if any), "retry: MS" (when it
        changes), one "data: LINE" per line of data, then a blank line
  json  one JSON object per line: {"event": ..., "data": ..., "id": ...} plus
        "retry" when the server set one
  data  only the data, one line per event; line breaks inside the data are
        written as spaces (multi-line JSON stays valid; use json for exact data)

exit status:
  0    the stream ended (HTTP 204, or the body with --no-reconnect), a limit was
       reached, or the reader of stdout went away
  1    a fatal error, reported on one line of stderr (even with -q)
  2    bad arguments
  130  interrupted (Ctrl-C)

examples:
  eventstream https://example.com/stream
  eventstream -n 1 --format data https://example.com/stream
  eventstream -H 'Authorization: Bearer TOKEN' --json '{"q": 1}' --no-reconnect URL
  eventstream -q --state feed.id --idle-exit 30 --max-time 300 URL >> feed.log
  eventstream --demo"""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        config = _config(parser, args)
        reporter = Reporter(sys.stderr, quiet=args.quiet)
        output = Output(sys.stdout)
        if not args.demo:
            return run(config, reporter, output)
        # Imported only for --demo: the test server is of no use to any other run.
        from ._cli_demo import demo_url  # noqa: PLC0415

        with demo_url() as url:
            reporter.status(f"demo server listening at {url}")
            return run(dataclasses.replace(config, url=url), reporter, output)
    except KeyboardInterrupt:  # before the stream started, or again while stopping it
        return ExitStatus.INTERRUPTED


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
        help="no status lines on stderr; a fatal error is still reported",
    )
    output.add_argument(
        "--comments",
        action="store_true",
        help="also show the stream's comment lines (heartbeats such as ': ping') on "
        "stderr, as 'eventstream: comment: TEXT' status lines (not with -q)",
    )
    ending = parser.add_argument_group("when to stop")
    ending.add_argument("-n", "--max-events", type=_count, metavar="N", help="after N events")
    ending.add_argument("--max-time", type=_seconds, metavar="SECONDS", help="after SECONDS in all")
    ending.add_argument(
        "--idle-exit",
        type=_seconds,
        metavar="SECONDS",
        help="once SECONDS pass without an event (from the start, or the last event)",
    )
    ending.add_argument(
        "--state",
        metavar="FILE",
        help="resume from the event ID saved in FILE (if it exists; it wins over "
        "--last-event-id) and save the ID there, atomically, after each event",
    )
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
        type=_header,
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
        type=_json_text,
        help="a JSON request body, checked, then sent as typed with "
        "Content-Type: application/json (unless -H sets one)",
    )
    group.add_argument(
        "--last-event-id",
        metavar="ID",
        type=_event_id,
        default="",
        help="resume after this event ID: sent as the Last-Event-ID header",
    )
    group.add_argument(
        "--timeout",
        type=_timeout,
        metavar="SECONDS",
        default=DEFAULT_TIMEOUT,
        help="'CONNECT,READ' or one number for both (default: "
        f"{DEFAULT_TIMEOUT[0]:g},{DEFAULT_TIMEOUT[1]:g}); a connection silent for READ "
        "seconds is dropped and reopened",
    )
    group.add_argument(
        "--no-reconnect",
        action="store_true",
        help="send one request; the stream ends with its body (retried only before "
        "the first byte arrives); suits a POST",
    )


def _config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Config:
    """Check what argparse cannot check alone, and read the request body."""
    if args.demo and args.url is not None:
        parser.error("--demo takes no URL")
    url = "" if args.demo else args.url
    if not args.demo:
        if url is None:
            parser.error("a URL is required (or --demo)")
        if not url.lower().startswith(("http://", "https://")):
            parser.error(f"the URL must start with http:// or https://, not {url!r}")
    if args.state is not None and not Path(args.state).resolve().parent.is_dir():
        parser.error(f"--state: the directory of {args.state!r} does not exist")
    headers = _merge_headers(args.header)
    data: bytes | None = None
    if args.json is not None:
        data = args.json.encode("utf-8")
        if "content-type" not in {name.lower() for name in headers}:
            headers["Content-Type"] = "application/json"
    elif args.data is not None:
        data = _read_data(parser, args.data)
    method = args.method or ("GET" if data is None else "POST")
    if not _TOKEN.fullmatch(method):
        parser.error(f"-X: not an HTTP method: {method!r}")
    return Config(
        url=url,
        method=method,
        headers=headers,
        data=data,
        timeout=args.timeout,
        last_event_id=args.last_event_id,
        reconnect=not args.no_reconnect,
        format=Format(args.format),
        state=args.state,
        max_events=args.max_events,
        max_time=args.max_time,
        idle_exit=args.idle_exit,
        comments=args.comments,
    )


def _read_data(parser: argparse.ArgumentParser, value: str) -> bytes:
    if not value.startswith("@"):
        return value.encode("utf-8")
    name = value[1:]
    try:
        if name == "-":
            return sys.stdin.buffer.read()
        return Path(name).read_bytes()
    except (OSError, AttributeError) as exc:  # AttributeError: no stdin at all
        reason = getattr(exc, "strerror", None) or str(exc)
        parser.error(f"-d: cannot read {name!r}: {reason}")


def _merge_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    spelling: dict[str, str] = {}  # lower-case name -> the first spelling given
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers


# -- argument types: each raises ArgumentTypeError, which argparse reports ---------------


def _header(text: str) -> tuple[str, str]:
    # Errors never echo the argument: a header value may be a credential.
    name, colon, value = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError("expected 'NAME: VALUE' (no colon found)")
    if not _TOKEN.fullmatch(name):
        raise argparse.ArgumentTypeError("expected 'NAME: VALUE'; the name is not a valid token")
    value = value.strip(" \t")
    if any(c in value for c in "\0\r\n"):
        raise argparse.ArgumentTypeError(f"the value of {name} holds a line break or NUL")
    return name, value


def _json_text(text: str) -> str:
    try:
        json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    return text


def _event_id(text: str) -> str:
    if any(c in text for c in "\0\r\n"):
        raise argparse.ArgumentTypeError("an event ID cannot hold a line break or NUL")
    return text


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    return value


def _timeout(text: str) -> float | tuple[float, float]:
    parts = text.split(",")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected SECONDS or CONNECT,READ, not {text!r}")
    values = [_seconds(part.strip()) for part in parts]
    return values[0] if len(values) == 1 else (values[0], values[1])


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, not {text!r}")
    return value
