"""Token rotation: fresh credentials on every connect, and at once when they change.

``headers`` is a callable, run on the worker thread before every connect, so a
reconnect always uses the current token; a 401/403 gets one immediate retry with
fresh headers.  When the application rotates the token itself, ``restart()`` opens a
new connection with its own session at once, resuming from the last event ID.

Run:  python examples/token_rotation.py URL
"""

from __future__ import annotations

import sys
import threading

from eventstream import EventStream


class TokenSource:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._generation = 1

    def rotate(self) -> None:
        with self._lock:
            self._generation += 1

    def headers(self) -> dict[str, str]:  # called on the stream's worker thread
        with self._lock:
            return {"Authorization": f"Bearer token-{self._generation}"}


def main(url: str, count: int = 4) -> None:
    tokens = TokenSource()
    with EventStream(url, headers=tokens.headers) as stream:
        for n, event in enumerate(stream, 1):
            print(f"{event.id}: {event.data}")
            if n == 2:
                tokens.rotate()
                stream.restart()  # new token, new connection, no event lost or repeated
            if n == count:
                break


if __name__ == "__main__":
    main(sys.argv[1])
