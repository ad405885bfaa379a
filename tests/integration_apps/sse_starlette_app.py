"""The integration tests' stream on sse-starlette, served by uvicorn (h11 or httptools).

Routes (all ``text/event-stream``):

* ``/events?count=N``: N ``tick`` events with ids after the request's
  ``Last-Event-ID`` (data: the event's number, the ID the server was sent, and a
  second line), then the response ends: the server closes the stream.  With
  ``&drop=1`` the app fails instead, and uvicorn cuts the connection mid-body.
* ``/silence?seconds=S``: ``ready``, then S seconds of silence, then ``late`` whose
  data is the server's ``time.monotonic()`` when it sent it, then silence.
* ``/hold``: ``ready``, then silence until the client leaves.

No keep-alive pings: a silent stream stays silent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route

NO_PING = 3600  # seconds between sse-starlette's keep-alive comments
HOLD = 3600.0


def _stream(events: AsyncIterator[ServerSentEvent]) -> EventSourceResponse:
    return EventSourceResponse(events, ping=NO_PING)


async def events(request: Request) -> EventSourceResponse:
    last = request.headers.get("last-event-id", "")
    first = int(last) + 1 if last.isdigit() else 1
    count = int(request.query_params.get("count", "5"))
    drop = request.query_params.get("drop") == "1"

    async def generate() -> AsyncIterator[ServerSentEvent]:
        for number in range(first, first + count):
            data = f"{number} after {last or '-'}\nsecond line \u00e9\u2713"
            yield ServerSentEvent(data=data, event="tick", id=str(number))
        if drop:
            raise ConnectionAbortedError("the integration test asked for a drop")

    return _stream(generate())


async def silence(request: Request) -> EventSourceResponse:
    seconds = float(request.query_params.get("seconds", "1"))

    async def generate() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data="ready", event="ready")
        await asyncio.sleep(seconds)
        yield ServerSentEvent(data=repr(time.monotonic()), event="late")
        await asyncio.sleep(HOLD)

    return _stream(generate())


async def hold(request: Request) -> EventSourceResponse:
    async def generate() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data="ready", event="ready")
        await asyncio.sleep(HOLD)

    return _stream(generate())


app = Starlette(routes=[Route("/events", events), Route("/silence", silence), Route("/hold", hold)])
