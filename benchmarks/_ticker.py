"""The server process of the low-rate benchmarks (``bench_lowrate.py``, ``bench_many.py``).

One asyncio loop serves every connection: after the request headers it sends a chunked
``text/event-stream`` response and then one small event every ``INTERVAL`` seconds,
each in its own HTTP chunk and its own write, so that each event is its own read on
the client.  Each connection's ticks start at a random phase of the interval, so that
many streams spread their events over time instead of arriving in bursts.  A process
of its own, so that the server's CPU time is not the client's::

    python benchmarks/_ticker.py 0.001      # one event per millisecond per stream

It prints its URL on one line, then serves until its standard input closes.  Standard
library only; it listens on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import random
import sys
import threading

HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)
BACKLOG = 4096


def event(seq: int) -> bytes:
    """One small event (about 60 bytes), framed as one HTTP chunk."""
    block = b'id: %d\ndata: {"seq":%d,"price":%d.%02d}\n\n' % (seq, seq, 100 + seq % 7, seq % 100)
    return b"%x\r\n%s\r\n" % (len(block), block)


async def _serve_one(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, interval: float
) -> None:
    loop = asyncio.get_running_loop()
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(HEAD)
        await writer.drain()
        due = loop.time() + random.random() * interval
        seq = 0
        while True:
            await asyncio.sleep(max(0.0, due - loop.time()))
            seq += 1
            writer.write(event(seq))
            await writer.drain()
            due += interval
            if due < loop.time():  # fell behind: never send a burst to catch up
                due = loop.time() + interval
    except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        pass  # the client went away
    except asyncio.CancelledError:
        pass  # the server is shutting down
    finally:
        writer.close()


async def _main(interval: float) -> None:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    server = await asyncio.start_server(
        lambda r, w: _serve_one(r, w, interval), "127.0.0.1", 0, backlog=BACKLOG
    )
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/", flush=True)

    def wait_for_stdin() -> None:
        sys.stdin.read()  # until the parent closes our stdin
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=wait_for_stdin, daemon=True).start()
    async with server:
        await done.wait()


def _raise_fd_limit() -> None:
    try:
        import resource
    except ImportError:  # not POSIX: no per-process soft limit to raise
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: _ticker.py INTERVAL_SECONDS")
    _raise_fd_limit()
    asyncio.run(_main(float(sys.argv[1])))
