"""Small standard-library helpers for the HTTP side: URLs and errors.

Rule: no ``requests``, no ``urllib3`` (those stay in ``_transport``), no I/O.  Used by
the transport and the worker, so that a URL is redacted, and an error described, the
same way everywhere.
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Iterator
from typing import TypeVar
from urllib.parse import SplitResult, urlsplit

__all__ = [
    "caused_by",
    "describe",
    "detach",
    "leaves_origin",
    "redact_url",
    "release_frames",
    "wrapped",
]

# The user info of a URL ("user:password@") is a credential.  Greedy up to the last
# "@" before the path, as urllib3 splits the authority: a password with a raw "@"
# must not leave its tail behind.
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def redact_url(url: str) -> str:
    """``url`` without its user info: the form for logs, errors and reprs."""
    return _USERINFO.sub(r"\1", url)  # anchored at the start: one match at most


def release_frames(exc: BaseException | None) -> None:
    # A rejected response's http.client objects stay reachable from the frames of the
    # error's traceback, holding the socket open as long as anyone keeps the error
    # (the consumer, an on_error list): clear them, down the whole chain.
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if exc.__traceback__ is not None:
            traceback.clear_frames(exc.__traceback__)
        exc = exc.__cause__ or exc.__context__


# Packages whose exceptions the transport chains (``raise ... from exc``).  Their
# attributes may point at the worker's objects: requests' ``request`` (the prepared
# request, credentials included) and ``response``, urllib3's ``pool`` and ``conn``.
_TRANSPORT_PACKAGES = frozenset(("requests", "urllib3", "http", "ssl", "socket"))
_PLAIN = (str, bytes, int, float, type(None))
_E = TypeVar("_E", bound=BaseException)


def detach(exc: _E) -> _E:
    """Cut ``exc`` (and every error it chains) loose from the worker; return it.

    An error handed to another thread must not keep the worker's session, response,
    connection, socket, body or parser alive: its traceback's frames hold them (and
    a frame that outlives its call holds its caller's frame, up the whole stack), and
    so do some attributes of the transport's exceptions.  So the tracebacks go, and
    those attributes become None, down the ``__cause__`` and ``__context__`` chain and
    through errors held as arguments.  The type, the message, the chain and the
    documented attributes stay.  Idempotent; other exceptions' attributes (the
    caller's own, raised by a callback) are left alone.
    """
    pending: list[BaseException] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        item.__traceback__ = None
        foreign = type(item).__module__.partition(".")[0] in _TRANSPORT_PACKAGES
        attributes = getattr(item, "__dict__", {})
        for name, value in list(attributes.items()):
            if isinstance(value, BaseException):
                pending.append(value)
            elif foreign and not isinstance(value, _PLAIN):
                attributes[name] = None  # the instance's own slot: no property setter runs
        members = getattr(item, "exceptions", ())  # an exception group's
        related = (item.__cause__, item.__context__, *item.args)
        if isinstance(members, tuple):
            related += members
        pending.extend(e for e in related if isinstance(e, BaseException))
    return exc


_DEFAULT_PORTS = {"http": 80, "https": 443}


def leaves_origin(old: str, new: str) -> bool:
    """Whether a redirect from ``old`` to ``new`` leaves the origin: another scheme,
    host or port (a port not given is the scheme's default).  As in requests, the
    upgrade from http on port 80 to https on port 443 does not."""
    before, after = urlsplit(old), urlsplit(new)
    if before.hostname != after.hostname:  # already lower-case, None if none
        return True
    origins = ((before.scheme, _port(before)), (after.scheme, _port(after)))
    return origins[0] != origins[1] and origins != (("http", 80), ("https", 443))


def _port(url: SplitResult) -> int | None:
    try:
        port = url.port
    except ValueError:  # out of range or not a number: no port, a different origin
        return None
    return _DEFAULT_PORTS.get(url.scheme) if port is None else port


def wrapped(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every error it wraps (as args, cause, context or urllib3's
    ``reason``), each once."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        pending.extend(item.args)
        pending.extend((item.__cause__, item.__context__, getattr(item, "reason", None)))


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is among the errors ``exc`` wraps (args, cause or context)."""
    return any(isinstance(item, kind) for item in wrapped(exc))


def describe(exc: BaseException) -> str:
    """The innermost wrapped error as ``"Type: message"``: what actually went wrong."""
    seen = {id(exc)}
    while True:
        inner = _wrapped(exc)
        if inner is None or id(inner) in seen:
            break
        seen.add(id(inner))
        exc = inner
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _wrapped(exc: BaseException) -> BaseException | None:
    reason = getattr(exc, "reason", None)  # urllib3's MaxRetryError, ProxyError
    if isinstance(reason, BaseException):
        return reason
    if exc.__cause__ is not None:
        return exc.__cause__
    # requests and urllib3 wrap errors as arguments, not always as causes.
    inner = next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
    if inner is None and not exc.__suppress_context__:
        # urllib3 1.26 raises NewConnectionError while handling the socket's error,
        # naming it only in its message: the error it handled is what went wrong.
        inner = exc.__context__
    return inner
