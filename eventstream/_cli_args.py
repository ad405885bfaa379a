"""The command-line tool's argument checks: each says what is wrong, never echoing a
value that may be a credential (a header value, the user info of a URL).

Rule: standard library only (and ``_httputil``'s URL redaction, ``_options``'s
longest timeout); the only I/O is reading a request body given as ``@FILE`` or
``@-``, and checking that a file is readable.  The argument types raise
``ArgumentTypeError``, which argparse reports with exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import urllib.parse
from pathlib import Path

from ._httputil import redact_url
from ._options import MAX_TIMEOUT

__all__ = [
    "TOKEN",
    "count",
    "event_id",
    "header",
    "json_text",
    "merge_headers",
    "proxy",
    "read_data",
    "readable",
    "seconds",
    "shown",
    "timeout",
    "url_problem",
    "whole",
]

TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # a header name (RFC 9110 token)


def url_problem(url: str) -> str | None:
    """Why ``url`` cannot be requested, or None: said now, not after a connect."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # ValueError when not a number from 0 to 65535
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in ("http", "https"):
        return "it must start with http:// or https://"
    host = parts.hostname or ""
    if not host:
        return "it names no host"
    if any(c.isspace() or ord(c) < 32 or c in '<>\\^`{|}"' for c in host):
        return "the host holds a character that is not allowed there"
    if port == 0:
        return "port 0 cannot be connected to"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "it holds a space or a control character (percent-encode it)"
    return None


def shown(url: str) -> str:
    """The URL as an error may show it: without user info (a credential), even when
    it cannot be parsed."""
    return redact_url(url)


def header(text: str) -> tuple[str, str]:
    # Errors never echo the argument: a header value may be a credential.
    name, colon, value = text.partition(":")
    if not colon:
        raise argparse.ArgumentTypeError("expected 'NAME: VALUE' (no colon found)")
    if not TOKEN.fullmatch(name):
        raise argparse.ArgumentTypeError("expected 'NAME: VALUE'; the name is not a valid token")
    value = value.strip(" \t")
    if any(c in value for c in "\0\r\n"):
        raise argparse.ArgumentTypeError(f"the value of {name} holds a line break or NUL")
    return name, value


def json_text(text: str) -> str:
    try:
        json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from exc
    return text


def event_id(text: str) -> str:
    if any(c in text for c in "\0\r\n"):
        raise argparse.ArgumentTypeError("an event ID cannot hold a line break or NUL")
    return text


def seconds(text: str) -> float:
    # At most what a wait can take: --max-time 1e10 crashed the watchdog's wait
    # (OverflowError) and the limit was ignored; a timeout that long failed later.
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, not {text!r}")
    if value > MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(
            f"expected at most {MAX_TIMEOUT:.3f} seconds (about 24.8 days), not {text!r}"
        )
    return value


def timeout(text: str) -> float | tuple[float, float]:
    parts = text.split(",")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected SECONDS or CONNECT,READ, not {text!r}")
    values = [seconds(part.strip()) for part in parts]
    return values[0] if len(values) == 1 else (values[0], values[1])


def whole(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0, not {text!r}")
    return value


def readable(text: str) -> str:
    if not os.path.isfile(text) or not os.access(text, os.R_OK):
        raise argparse.ArgumentTypeError(f"no readable file {text!r}")
    return text


PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def proxy(text: str) -> str:
    parts = urllib.parse.urlsplit(text)
    if parts.scheme.lower() not in PROXY_SCHEMES or not parts.hostname:
        raise argparse.ArgumentTypeError(
            "expected a proxy URL such as http://HOST:PORT (schemes: "
            + ", ".join(PROXY_SCHEMES)
            + ")"
        )
    return text


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1, not {text!r}")
    return value


def read_data(parser: argparse.ArgumentParser, value: str) -> bytes:
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


def merge_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    headers: dict[str, str] = {}
    spelling: dict[str, str] = {}  # lower-case name -> the first spelling given
    for name, value in pairs:
        key = spelling.setdefault(name.lower(), name)
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return headers
