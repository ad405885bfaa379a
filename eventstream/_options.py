"""Validation of what the caller passes, on the caller's thread, into worker options.

Misuse raises ``TypeError``/``ValueError`` here, at construction, rather than on
the worker thread later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._backoff import Backoff
from ._worker import HeadersOption, Options

__all__ = ["DEFAULT_TIMEOUT", "MAX_TIMEOUT", "build_options", "check_last_event_id"]

#: Default (connect, read) timeouts in seconds; read is also the idle timeout.
DEFAULT_TIMEOUT = (5.0, 60.0)
#: The longest timeout, in seconds: what ``poll()`` takes (2**31 - 1 ms).
MAX_TIMEOUT = (2**31 - 1) / 1000


def build_options(
    url: str,
    *,
    method: str,
    params: Any,
    headers: HeadersOption,
    data: Any,
    json: Any,
    auth: Any,
    timeout: float | tuple[float, float],
    backoff: Backoff | None,
    max_event_size: int | None,
    session_factory: Callable[[], Any] | None,
    reconnect: bool = True,
    retries: int = 0,
) -> Options:
    """Validate what the caller passed (on the caller's thread) into worker options."""
    if not isinstance(url, str) or not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"url must be an http:// or https:// URL string, not {url!r}")
    if not isinstance(method, str) or not method:
        raise ValueError(f"method must be a non-empty string, not {method!r}")
    if headers is not None and not callable(headers) and not isinstance(headers, Mapping):
        raise TypeError("headers must be a mapping or a callable returning one")
    if isinstance(headers, Mapping):
        headers = dict(headers)  # a snapshot: later changes by the caller are not seen
    connect, read = _timeouts(timeout)
    if backoff is None:
        backoff = Backoff()
    elif not isinstance(backoff, Backoff):
        raise TypeError(f"backoff must be an eventstream.Backoff, not {backoff!r}")
    if session_factory is not None and not callable(session_factory):
        raise TypeError("session_factory must be callable")
    if max_event_size is not None and (
        isinstance(max_event_size, bool)
        or not isinstance(max_event_size, int)
        or max_event_size < 1
    ):
        raise ValueError(f"max_event_size must be a positive int or None, not {max_event_size!r}")
    return Options(
        url=url,
        method=method.upper(),
        params=params,
        headers=headers,
        data=data,
        json=json,
        auth=auth,
        connect_timeout=connect,
        read_timeout=read,
        backoff=backoff,
        max_event_size=max_event_size,
        session_factory=session_factory,
        reconnect=reconnect,
        retries=retries,
    )


def _timeouts(timeout: float | tuple[float, float]) -> tuple[float, float]:
    pair = timeout if isinstance(timeout, tuple) else (timeout, timeout)
    if len(pair) != 2:
        raise ValueError("timeout must be a number or a (connect, read) pair")
    for value in pair:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
            raise ValueError(f"timeouts must be positive numbers of seconds, not {value!r}")
        if not value <= MAX_TIMEOUT:
            raise ValueError(
                f"timeouts must be at most {MAX_TIMEOUT:g} seconds (about 24.8 days), not {value!r}"
            )
    return float(pair[0]), float(pair[1])


def check_last_event_id(value: str) -> None:
    if not isinstance(value, str):
        raise TypeError(f"last_event_id must be a str, not {value!r}")
    if any(c in value for c in "\0\r\n"):
        raise ValueError("last_event_id must not contain NUL, CR or LF")
