"""The integration tests' stream on Tornado with ``compress_response=True`` (gzip).

Tornado gzips ``text/*`` responses and flushes the compressor on every
``RequestHandler.flush()``, so each event leaves compressed at once.  Same routes
as ``sse_starlette_app.py`` (``&drop=1`` closes the connection mid-body).  Run as
``python tornado_app.py FD``: it serves on the listening socket it inherits as file
descriptor FD and prints ``ready`` to stderr.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import time

import tornado.httpserver
import tornado.web

HOLD = 3600.0


class _Stream(tornado.web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")

    async def send(self, data: str, event: str, event_id: str = "") -> None:
        lines = [f"id: {event_id}"] if event_id else []
        lines.append(f"event: {event}")
        lines += [f"data: {line}" for line in data.split("\n")]
        self.write("\n".join(lines) + "\n\n")
        await self.flush()


class Events(_Stream):
    async def get(self) -> None:
        last = self.request.headers.get("Last-Event-ID", "")
        first = int(last) + 1 if last.isdigit() else 1
        for number in range(first, first + int(self.get_argument("count", "5"))):
            data = f"{number} after {last or '-'}\nsecond line \u00e9\u2713"
            await self.send(data, "tick", str(number))
        if self.get_argument("drop", "") == "1":
            self.request.connection.close()


class Silence(_Stream):
    async def get(self) -> None:
        await self.send("ready", "ready")
        await asyncio.sleep(float(self.get_argument("seconds", "1")))
        await self.send(repr(time.monotonic()), "late")
        await asyncio.sleep(HOLD)


class Hold(_Stream):
    async def get(self) -> None:
        await self.send("ready", "ready")
        await asyncio.sleep(HOLD)


async def main(fd: int) -> None:
    app = tornado.web.Application(
        [("/events", Events), ("/silence", Silence), ("/hold", Hold)], compress_response=True
    )
    server = tornado.httpserver.HTTPServer(app)
    listener = socket.socket(fileno=fd)
    listener.setblocking(False)  # Tornado accepts until EWOULDBLOCK
    server.add_sockets([listener])
    print("ready", file=sys.stderr, flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
