"""A WSGI app that follows a stream in the background, with callbacks.

The stream runs on its own worker thread; the callbacks (worker thread) update a
small piece of shared state under a lock, and requests read it.  Under a pre-forking
server (gunicorn, uWSGI), a stream started in the master is seen as stopped in each
worker process after the fork, so each process starts its own on first use.

Run:  python examples/wsgi_app.py URL     (serves http://127.0.0.1:8000/)
"""

from __future__ import annotations

import json
import sys
import threading
from collections import deque
from collections.abc import Iterable
from typing import Any, Callable
from wsgiref.simple_server import make_server

from eventstream import Event, EventStream


class LatestEvents:
    """The last few events, written by the stream's worker, read by requests."""

    def __init__(self, size: int = 10) -> None:
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=size)
        self.errors = 0

    def add(self, event: Event) -> None:  # on_event: runs on the worker thread
        with self._lock:
            self._events.append(event)

    def failed(self, exc: BaseException) -> None:  # on_error: worker thread too
        with self._lock:
            self.errors += 1

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"event": e.event, "data": e.data, "id": e.id} for e in self._events]


def make_app(url: str) -> tuple[Callable[..., Iterable[bytes]], EventStream]:
    latest = LatestEvents()
    stream = EventStream(url, on_event=latest.add, on_error=latest.failed)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not stream.running:
            stream.start()  # first request in this process (also after a fork)
        body = json.dumps({"events": latest.snapshot(), "errors": latest.errors}).encode()
        start_response("200 OK", [("Content-Type", "application/json")])
        return [body]

    return app, stream


def main(url: str) -> None:
    app, stream = make_app(url)
    try:
        with make_server("127.0.0.1", 8000, app) as httpd:
            httpd.serve_forever()
    finally:
        stream.stop(timeout=1.0)  # stopped with the app


if __name__ == "__main__":
    main(sys.argv[1])
