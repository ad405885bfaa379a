"""A WSGI app for pre-forking servers: every worker process follows the stream.

The stream is made at import.  With ``PREFORK_START=import`` (the default) it is also
started at import; with ``PREFORK_START=request`` it starts on the first request each
process serves.  Both are safe under every server README.rst lists:

* a worker that imported the app itself (gunicorn without ``--preload``, uWSGI with
  ``--lazy-apps``, waitress) runs its own stream from the start;
* a worker forked from a master that had started the stream (gunicorn ``--preload``)
  sees it stopped, holding none of the master's sockets, and ``start()`` on its first
  request opens its own connection (the master's own stream goes on);
* in a uWSGI master (uWSGI without ``--lazy-apps``), ``start()`` starts nothing there:
  the stream starts in each worker right after uWSGI forks it.

Each answer is JSON: the process id, whether its stream runs, and how many events
and errors it has seen.

Run:  PREFORK_FEED=URL gunicorn -w 2 examples.prefork_app:application
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from typing import Any, Callable

from eventstream import Event, EventStream

FEED = os.environ.get("PREFORK_FEED", "http://127.0.0.1:8001/events")
#: How long the first request of a process waits for the stream's first event.
FIRST_EVENT_WAIT = 1.0


class Seen:
    """Counts written by the stream's worker thread (the callbacks), read by requests.

    Counts are per process: a forked worker starts from zero, with a new lock (the
    parent's stream may have held the old one at the fork, and a lock held at a fork
    stays held in the child).
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._lock = threading.Lock()
        self.first = threading.Event()
        self.events = 0
        self.errors = 0

    def event(self, event: Event) -> None:  # on_event: runs on the worker thread
        with self._lock:
            self.events += 1
        self.first.set()

    def error(self, exc: BaseException) -> None:  # on_error: worker thread too
        with self._lock:
            self.errors += 1

    def counts(self) -> tuple[int, int]:
        with self._lock:
            return self.events, self.errors


seen = Seen()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=seen.reset)
stream = EventStream(FEED, on_event=seen.event, on_error=seen.error)
if os.environ.get("PREFORK_START", "import") == "import":
    stream.start()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    if not stream.running:
        # This process's first request, in a worker forked after the stream had
        # started (gunicorn --preload): the inherited copy is stopped; start our own.
        stream.start()
    seen.first.wait(FIRST_EVENT_WAIT)
    events, errors = seen.counts()
    answer = {"pid": os.getpid(), "running": stream.running, "events": events, "errors": errors}
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(answer).encode()]
