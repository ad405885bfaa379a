"""What the server read: :class:`Headers` and :class:`RecordedRequest`.

Rule: plain immutable values, built on a connection's thread and then only read, so
they are safe to share with the test's thread.  Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

__all__ = ["Headers", "RecordedRequest"]


class Headers(Mapping[str, str]):
    """Read-only HTTP header fields with case-insensitive lookup, in the order received.

    ``headers["last-event-id"]`` joins a repeated field's values with ``", "``;
    :meth:`get_all` returns them one by one.  Iteration yields each name once, spelled
    as first received.  Safe to share between threads.
    """

    __slots__ = ("_fields",)

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        self._fields = tuple(fields)

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        """Every ``(name, value)`` pair, as received."""
        return self._fields

    def get_all(self, name: str) -> list[str]:
        """The values of every field called ``name`` (any case), in order."""
        key = name.lower()
        return [value for field, value in self._fields if field.lower() == key]

    def __getitem__(self, name: str) -> str:
        values = self.get_all(name)
        if not values:
            raise KeyError(name)
        return ", ".join(values)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and bool(self.get_all(name))

    def __iter__(self) -> Iterator[str]:
        seen: set[str] = set()
        for field, _ in self._fields:
            if field.lower() not in seen:
                seen.add(field.lower())
                yield field

    def __len__(self) -> int:
        return len({field.lower() for field, _ in self._fields})

    def __repr__(self) -> str:
        return f"Headers({list(self._fields)!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server read it (immutable).

    Attributes:
        method: ``"GET"``, ``"POST"``...
        target: The request target as sent, e.g. ``"/events?x=1"``.
        path: ``target`` up to ``?``.
        query: ``target`` after ``?``, undecoded (``""`` if none).
        version: ``"HTTP/1.1"``.
        headers: The header fields, looked up case-insensitively.
        body: The body, de-chunked if it came chunked; ``b""`` if none.
        client_address: The client's ``(host, port)``.
        connection: The index of the :class:`Connection` it came on.
    """

    __slots__ = (
        "body",
        "client_address",
        "connection",
        "headers",
        "method",
        "path",
        "query",
        "target",
        "version",
    )
    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    body: bytes
    client_address: tuple[str, int]
    connection: int
