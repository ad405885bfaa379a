"""Waiting on descriptors: ``poll()`` where the platform has it, else ``select()``.

On POSIX ``select()`` fails for descriptors >= 1024, so ``poll()`` is used wherever it
exists; a platform without it is Windows, whose ``select()`` has no such limit.
Standard library only (the testing package imports nothing else of eventstream).
"""

from __future__ import annotations

import select
from collections.abc import Sequence

__all__ = ["ready"]


def ready(read: Sequence[int], write: Sequence[int], timeout: float | None) -> set[int]:
    """Wait until a descriptor of ``read`` is readable or one of ``write`` writable (or
    closed, or in error), or ``timeout`` seconds pass (``None``: no limit); the ready
    ones.  The timeout is never cut short (both calls round it up)."""
    if hasattr(select, "poll"):
        masks: dict[int, int] = {}
        for fd in read:
            masks[fd] = masks.get(fd, 0) | select.POLLIN
        for fd in write:
            masks[fd] = masks.get(fd, 0) | select.POLLOUT
        poller = select.poll()
        for fd, mask in masks.items():
            poller.register(fd, mask)
        return {fd for fd, _ in poller.poll(None if timeout is None else timeout * 1000)}
    readable, writable, _ = select.select(read, write, [], timeout)
    return {*readable, *writable}
