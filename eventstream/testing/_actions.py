"""What a :class:`Script` is made of, and how its actions become writes.

Rule: values only.  A script is a tuple of actions; :func:`compile_steps` merges the
body bytes held back by ``flush=False`` into the writes a connection's thread sends,
and :class:`Encoder` compresses each write so that it can be decoded on arrival.
Nothing here touches a socket or a thread.  Standard library only.
"""

from __future__ import annotations

import enum
import threading
import zlib
from dataclasses import dataclass
from typing import Final, Union

__all__ = [
    "NO_BODY_STATUSES",
    "Action",
    "Body",
    "Command",
    "Encoder",
    "End",
    "Flush",
    "Pause",
    "Step",
    "Wait",
    "Wire",
    "Write",
    "compile_steps",
]

NO_BODY_STATUSES: Final = frozenset({204, 304})
_ZLIB_WBITS: Final = {"gzip": 31, "deflate": 15}  # 31: gzip wrapper; 15: zlib (RFC 1950)


class End(enum.Enum):
    """How a script ends, or how a connection is ended from outside."""

    CLOSE = "close"
    DROP = "drop"
    RESET = "reset"
    HOLD = "hold"
    LIVE = "live"


class Flush(enum.Enum):
    """``Script.flush()``: write the held-back body bytes now."""

    FLUSH = "flush"


@dataclass(frozen=True)
class Body:
    """Body bytes (framed and compressed); ``flush=False`` holds them for the next write."""

    data: bytes
    flush: bool


@dataclass(frozen=True)
class Write:
    data: bytes  # body bytes that become one chunk / one compressed block


@dataclass(frozen=True)
class Wire:
    """Bytes for the socket as they are."""

    data: bytes


@dataclass(frozen=True)
class Pause:
    """Send what is pending, then stay silent."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """Send what is pending, then wait for the test to set ``gate``."""

    gate: threading.Event
    timeout: float


Action = Union[Body, Flush, Wire, Pause, Wait, End]  # what a Script holds
Step = Union[Write, Wire, Pause, Wait, End]  # what a connection's thread runs
Command = Union[Write, Wire, End]  # what a Connection handle queues


def compile_steps(actions: tuple[Action, ...]) -> list[Step]:
    """Merge held-back body bytes into writes, and end the list with an End."""
    steps: list[Step] = []
    pending = bytearray()
    for action in actions:
        if isinstance(action, Body):
            pending += action.data
            if not action.flush:
                continue
        if pending:
            steps.append(Write(bytes(pending)))
            pending.clear()
        if not isinstance(action, (Body, Flush)):
            steps.append(action)
    if pending:
        steps.append(Write(bytes(pending)))
    if not steps or not isinstance(steps[-1], End):
        steps.append(End.CLOSE)
    return steps


class Encoder:
    """Compress writes incrementally; the same calls always give the same bytes."""

    def __init__(self, encoding: str | None) -> None:
        wbits = _ZLIB_WBITS.get((encoding or "").lower())
        self._zlib = None if wbits is None else zlib.compressobj(wbits=wbits)

    def encode(self, data: bytes) -> bytes:
        if self._zlib is None:
            return data
        # A sync flush ends the write on a byte boundary: the client can decode it now.
        return self._zlib.compress(data) + self._zlib.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return b"" if self._zlib is None else self._zlib.flush()
