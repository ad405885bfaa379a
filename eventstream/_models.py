"""Value types shared by every layer.  Leaf module: standard library only.

``Event`` is an immutable named tuple rather than a frozen dataclass on purpose: the
parser creates one per dispatched event, and a frozen dataclass costs about 1.1 us to
build (one ``object.__setattr__`` per field) where a tuple costs about 0.2 us; on a
stream of small events that is most of the parsing budget.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

__all__ = ["Event"]


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
