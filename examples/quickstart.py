"""Start the built-in test server, stream a few events from it, print them.

Run:  python examples/quickstart.py
"""

from __future__ import annotations

from eventstream import EventStream
from eventstream.testing import Script, SSEServer


def main() -> None:
    script = (
        Script()
        .event("hello from the built-in server", id="1")
        .event('{"price": 101.5}', event="tick", id="2")
        .event("line one\nline two", id="3")
    )
    with SSEServer() as server:
        server.enqueue(script.hold())
        with EventStream(server.url) as stream:
            for n, event in enumerate(stream, 1):
                print(f"{event.event} id={event.id}: {event.data!r}")
                if n == 3:
                    break
        print(f"resume point: Last-Event-ID {stream.last_event_id}")


if __name__ == "__main__":
    main()
