"""Testing your own consumer with eventstream's SSE server (run with pytest).

``SSEServer`` is a real HTTP server on 127.0.0.1; scripts say what each connection
gets: events, pauses, drops, statuses.  It works with any SSE client.

Run:  python -m pytest examples/test_my_consumer.py
"""

from __future__ import annotations

from eventstream import EventStream
from eventstream.testing import Script, SSEServer


def count_orders(url: str, expected: int) -> int:
    """The code under test: add up the "order" events of a stream."""
    total = 0
    with EventStream(url) as stream:
        for n, event in enumerate(stream, 1):
            if event.event == "order":
                total += int(event.data)
            if n == expected:
                break
    return total


def test_count_orders_survives_a_dropped_connection() -> None:
    with SSEServer() as server:
        server.enqueue(
            Script().event("5", event="order", id="1").drop(),  # the server dies here
            Script().event("7", event="order", id="2").hold(),
        )
        assert count_orders(server.url, expected=2) == 12
        resumed = server.wait_for_requests(2)[1]
        assert resumed.headers["Last-Event-ID"] == "1"
