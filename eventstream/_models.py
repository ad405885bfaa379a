"""Value types shared by every layer.  Leaf module: standard library only.

``Event`` is an immutable named tuple rather than a frozen dataclass on purpose: the
parser creates one per dispatched event, and a frozen dataclass costs about 1.1 us to
build (one ``object.__setattr__`` per field) where a tuple costs about 0.2 us; on a
stream of small events that is most of the parsing budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

__all__ = ["Event", "Headers", "ResponseInfo"]


class Event(NamedTuple):
    """One dispatched server-sent event.  Immutable; safe to share between threads.

    The attribute names match sseclient-py's ``Event`` so migrating code keeps working.

    Attributes:
        event: The event type: the block's ``event:`` field, ``"message"`` when the
            block set none (or set it empty).
        data: The ``data:`` lines of the block joined with ``"\\n"``.
        id: The last event ID in effect when the event was dispatched, like the
            browser's ``MessageEvent.lastEventId``: it persists from earlier blocks
            until the server sends another ``id:``.  ``""`` when none was ever set.
        retry: The reconnection time in milliseconds in effect at dispatch (the last
            valid ``retry:`` field seen on the stream), ``None`` if none was seen.
    """

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None

    def json(self, **kwargs: Any) -> Any:
        """Decode ``data`` as JSON (keyword arguments go to :func:`json.loads`).

        Raises :class:`json.JSONDecodeError` (a ``ValueError``) when ``data`` is not JSON.
        """
        return json.loads(self.data, **kwargs)

    def __repr__(self) -> str:
        parts = [f"event={self.event!r}", f"data={_shorten(self.data)!r}"]
        if self.id:
            parts.append(f"id={self.id!r}")
        if self.retry is not None:
            parts.append(f"retry={self.retry}")
        return f"Event({', '.join(parts)})"


def _shorten(text: str, limit: int = 200) -> str:
    # A repr is for logs and tracebacks: keep a multi-megabyte payload out of them.
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} chars)"


class ResponseInfo:
    """What the server answered when a stream opened: status, headers and final URL.

    Immutable.  ``headers`` is a read-only mapping with case-insensitive keys.
    Passed to ``on_open`` (on the worker thread) and kept on one-shot streams.
    """

    __slots__ = ("headers", "status_code", "url")

    status_code: int
    headers: Headers
    url: str

    def __init__(self, status_code: int, headers: Mapping[str, str], url: str) -> None:
        object.__setattr__(self, "status_code", status_code)
        kept = headers if isinstance(headers, Headers) else Headers(headers)  # read-only
        object.__setattr__(self, "headers", kept)
        object.__setattr__(self, "url", url)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ResponseInfo is immutable; cannot set {name!r}")

    def __repr__(self) -> str:
        return f"ResponseInfo(status_code={self.status_code}, url={self.url!r})"


class Headers(Mapping[str, str]):
    """A read-only mapping of HTTP header names to values, case-insensitive on names.

    Iteration gives the names as the server spelt them.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        self._items: dict[str, tuple[str, str]] = {
            name.lower(): (name, value) for name, value in (items or {}).items()
        }

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        # Names only: values may hold credentials or session cookies.
        return f"Headers({sorted(self)})"
