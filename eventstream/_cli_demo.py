"""``--demo``: a built-in server with a short scripted stream, read the usual way.

The server is :class:`eventstream.testing.SSEServer` on 127.0.0.1, port 0, in this
process, so the demo needs no network and no server of one's own.  A request with no
``Last-Event-ID`` gets the first part of the demo, which ends the body cleanly; the
client reconnects (after the ``retry:`` time the first event set) resuming from ID 3
and gets the rest; any other request gets 204 No Content, which ends the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .testing import RecordedRequest, Script, SSEServer

__all__ = ["demo_url"]

_PATH = "/demo"
_FIRST = (
    Script()
    .comment("comments like this one keep a connection alive; clients skip them")
    .event("Hello from the eventstream demo server!", id="1", retry=250)
    .pause(0.2)
    .event('{"user": "ada", "text": "events can carry JSON"}', event="chat", id="2")
    .pause(0.2)
    .event("data can span lines:\nthis is the second\nand the third", id="3")
    .close()
)
_RESUMED = (
    Script()
    .event('{"done": 4, "total": 5}', event="progress", id="4")
    .event('{"done": 5, "total": 5}', event="progress", id="5")
    .close()
)
_OVER = Script(204)


def _respond(request: RecordedRequest) -> Script:
    # Runs on the server's connection thread.
    last_event_id = request.headers.get("Last-Event-ID")
    if last_event_id is None:
        return _FIRST
    if last_event_id == "3":
        return _RESUMED
    return _OVER


@contextmanager
def demo_url() -> Iterator[str]:
    """Run the demo server for the ``with`` block; yields the stream's URL."""
    with SSEServer() as server:
        server.route(_PATH, _respond)
        yield server.url_for(_PATH)
