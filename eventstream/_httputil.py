"""Small standard-library helpers for the HTTP side: URLs and errors.

Rule: no ``requests``, no ``urllib3`` (those stay in ``_transport``), no I/O.  Used by
the transport and the worker, so that a URL is redacted, and an error described, the
same way everywhere.
"""

from __future__ import annotations

import re
import traceback
from urllib.parse import urlsplit

__all__ = ["caused_by", "describe", "leaves_origin", "redact_url", "release_frames"]

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


def leaves_origin(old: str, new: str) -> bool:
    before, after = urlsplit(old), urlsplit(new)
    if before.hostname != after.hostname:  # already lower-case, None if none
        return True
    return before.scheme == "https" and after.scheme != "https"


def caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is among the errors ``exc`` wraps (args, cause or context)."""
    pending: list[object] = [exc]
    seen: set[int] = set()
    while pending:
        item = pending.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, kind):
            return True
        pending.extend(item.args)
        pending.extend((item.__cause__, item.__context__))
    return False


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
    return next((arg for arg in exc.args if isinstance(arg, BaseException)), None)
