"""The fast path's reader: the connection's socket, read directly and non-blocking.

Rule: standard library only (``http.client``, ``socket``, ``ssl``, ``select``); it
never imports ``requests`` or ``urllib3``, and their errors are translated in
``_transport``, which decides whether this path is taken.  Everything here runs on
the worker thread that owns the socket; another thread only sets the stop signal,
whose waker interrupts the wait in :meth:`SocketSource.read` (``_wait``).

:func:`locate_socket` finds the ``http.client`` response and the socket under a
urllib3 response once the headers are in, checking every private attribute on the
way (docs/architecture.rst, "The read loop", step 2); :class:`SocketSource` drains what
``http.client`` buffered, then reads the socket itself.  The body's framing and
content coding are undone by ``_body``, not here.
"""

from __future__ import annotations

import http.client
import io
import socket
import ssl
from collections.abc import Generator
from typing import Final

from ._body import Framing
from ._stop import StopSignal
from ._wait import Waiter

__all__ = ["READ_SIZE", "SocketSource", "body_framing", "locate_connection", "locate_socket"]

READ_SIZE: Final = 64 * 1024
#: The read size after a read that brought less: a quiet stream's events fit, and the
#: bytes object ``recv()`` makes costs less than one of ``READ_SIZE`` (no large
#: allocation to shrink).  A read that fills it goes back to ``READ_SIZE``.
SMALL_READ: Final = 4096


class SocketSource:
    """The fast path: the connection's socket, read directly and non-blocking.

    One event per read is the common case of a live stream, so a read waits first and
    then reads once: one ``poll()`` and one ``recv()`` per read, and no exception,
    the system calls a blocking reader makes.  What sits above the socket never makes
    it readable, so it is used before any wait: what ``http.client`` buffered with the
    headers (drained once, at the start), and on TLS what OpenSSL holds decrypted
    (``pending()``, checked before each wait).
    """

    def __init__(
        self,
        buffered: io.BufferedReader,
        sock: socket.socket,
        waiter: Waiter,
        stop: StopSignal,
        response: http.client.HTTPResponse | None = None,
    ) -> None:
        sock.setblocking(False)
        waiter.watch(sock.fileno())
        self._poll = waiter.poll_for_reading()
        self._buffered: io.BufferedReader | None = buffered
        self._response = response  # whose reader ``buffered`` is
        self._recv = sock.recv
        self._pending = sock.pending if isinstance(sock, ssl.SSLSocket) else None
        self._wait = waiter.wait
        self._stop = stop
        # The waiter waits for writing (TLS wanted to write): the next wait, through
        # wait(), puts reading back.  Kept here, not only in a generator of reads():
        # read() makes one per call, and poll() for writing would return at once.
        self._restore = False

    def read(self, timeout: float | None) -> bytes | None:
        """Bytes that arrived, ``b""`` at end of input, ``None`` once stopped.

        Raises ``TimeoutError`` when nothing arrives for ``timeout`` seconds.
        """
        # The generator's first item; it is dropped after it, so it reads no more.
        return next(self.reads(timeout), None)

    def reads(self, timeout: float | None) -> Generator[bytes, None, None]:
        """Yield what each read brings, ``b""`` last at end of input; end once stopped.

        Raises ``TimeoutError`` when nothing arrives for ``timeout`` seconds.  A
        generator, so that a read costs no Python call beyond its resumption: with
        one event per read, the calls are much of what an event costs.
        """
        if self._buffered is not None:
            # What http.client read past the headers.  One read1() takes all that its
            # buffer holds (or, holding nothing, reads the socket once, non-blocking,
            # and b"" means no byte or EOF alike): from then on the socket itself is
            # read, which tells those two apart.
            # Either way it is empty then, and is let go.
            buffered, self._buffered = self._buffered, None
            held = read_buffered(buffered)
            self._let_go(buffered)
            if held:
                yield held
        recv, wait, pending, stop = self._recv, self._wait, self._pending, self._stop
        poll, fd = self._poll or (None, -1)
        ms = None if timeout is None else timeout * 1000
        restore = self._restore  # the waiter waits for writing: wait() puts reading back
        size = READ_SIZE
        while True:
            data: bytes | None = None
            write = False
            if pending is not None and pending():  # decrypted bytes: no wait for them
                if stop.is_set():
                    return
                try:
                    data = recv(size)
                except ssl.SSLWantReadError:
                    pass
                except ssl.SSLWantWriteError:
                    write = True
            while data is None:
                # The wait comes first: with events arriving one per read, a read tried
                # first would mostly find nothing (one more system call and an exception).
                # Its usual case, for reading with poll(), is inlined: no Python call.
                if poll is None or write or restore:
                    ready = wait(timeout, write)
                    restore = self._restore = write
                else:
                    found = poll(ms)
                    ready = len(found) == 1 and found[0][0] == fd
                if not ready:
                    if stop.is_set():
                        return
                    raise TimeoutError(f"no data for {timeout} s")  # the wait is exact
                try:
                    data = recv(size)
                except (BlockingIOError, ssl.SSLWantReadError):  # TLS: a partial record
                    write = False
                except ssl.SSLWantWriteError:  # TLS must send (e.g. a key update) first
                    write = True
            yield data
            if not data:
                return
            size = READ_SIZE if len(data) >= SMALL_READ else SMALL_READ

    def _let_go(self, buffered: io.BufferedReader) -> None:
        # The raw reader under it takes its place in http.client's response, which
        # closes it (and the socket with it) as before, and the reader goes, with the
        # 8 KiB buffer it would keep for the life of the stream.
        response, self._response = self._response, None
        if response is not None and response.fp is buffered:
            # A raw SocketIO reads, reads into and closes as the reader did.
            response.fp = buffered.detach()  # type: ignore[assignment]


def read_buffered(buffered: io.BufferedReader) -> bytes:
    """What ``buffered`` (http.client's reader over a non-blocking socket) holds, or
    ``b""`` when it would have to wait."""
    try:
        return buffered.read1()  # what it holds, else one read of its buffer size
    except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return b""


def locate_socket(raw: object) -> tuple[http.client.HTTPResponse, socket.socket] | None:
    """The http.client response and socket under ``raw``, if safe to read directly.

    urllib3 1.26 and 2.x: ``raw._fp`` is the ``http.client.HTTPResponse``, ``.fp`` its
    ``BufferedReader`` over a ``socket.SocketIO`` whose ``_sock`` is the connection's
    socket (an ``ssl.SSLSocket`` on TLS).  ``None`` means "use another path".
    """
    located = locate_connection(raw)
    if located is None:
        return None
    fp, sock = located
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return None
    return fp, sock


def locate_connection(raw: object) -> tuple[http.client.HTTPResponse, object] | None:
    """The http.client response under ``raw`` and the object its reader reads from.

    That object is the connection's socket, or what urllib3 put in its place (its
    ``SSLTransport`` for TLS inside a TLS proxy).  Private attributes, so every step
    is checked, and the object must be the connection's own; ``None`` means "use the
    fallback".
    """
    fp = getattr(raw, "_fp", None)
    if not isinstance(fp, http.client.HTTPResponse) or fp.isclosed():
        return None
    if (fp.chunked and fp.chunk_left is not None) or getattr(raw, "_fp_bytes_read", None) != 0:
        return None  # someone has started reading the body
    buffered = getattr(fp, "fp", None)
    if not isinstance(buffered, io.BufferedReader) or not isinstance(buffered.raw, socket.SocketIO):
        return None
    sock: object = getattr(buffered.raw, "_sock", None)
    if sock is None:
        return None
    # The connection's own socket; http.client hands it over to the response (the
    # connection forgets it: ``sock`` is None) when the body ends at connection close.
    connection_sock = getattr(getattr(raw, "_connection", None), "sock", None)
    if connection_sock is not None and connection_sock is not sock:
        return None
    return fp, sock


def body_framing(fp: http.client.HTTPResponse) -> tuple[Framing, int | None]:
    """The framing ``http.client`` read from the headers, for ``_body`` to undo.

    Returns the framing and, for :attr:`Framing.LENGTH`, the length.
    """
    if fp.chunked:
        return Framing.CHUNKED, None
    if fp.length is not None:
        return Framing.LENGTH, fp.length
    return Framing.CLOSE, None
