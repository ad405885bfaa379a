"""The fast path through TLS inside TLS: an ``https://`` proxy tunnelling to an ``https://`` origin.

Rule: standard library only, as ``_sockread``; everything here runs on the worker
thread that owns the connection, and another thread only sets the stop signal,
whose waker interrupts the wait in :meth:`TunnelSource.read` (``_wait``).

There urllib3 puts its ``SSLTransport`` where http.client expects a socket: an
``ssl.SSLObject`` (the origin's TLS) fed through two memory BIOs from an
``ssl.SSLSocket`` (the proxy's TLS).  Its reads block in the outer socket's
``recv()``, which no stop signal reaches.  :class:`TunnelSource` does that feeding
itself, with the outer socket non-blocking, and waits (``_wait``) only when every
layer above the kernel is empty: http.client's buffer (drained first), the inner
object (read until it wants more), its incoming BIO (fed until the outer socket has
nothing), and the outer socket's decrypted bytes (``recv()`` returns those first).
"""

from __future__ import annotations

import dataclasses
import http.client
import io
import socket
import ssl
import time

from ._sockread import READ_SIZE, locate_connection, read_buffered
from ._stop import StopSignal
from ._wait import Waiter

__all__ = ["Tunnel", "TunnelSource", "locate_tunnel"]


@dataclasses.dataclass(frozen=True)
class Tunnel:
    """The parts of urllib3's ``SSLTransport`` that :class:`TunnelSource` drives."""

    inner: ssl.SSLObject
    incoming: ssl.MemoryBIO
    outgoing: ssl.MemoryBIO
    outer: socket.socket


def locate_tunnel(raw: object) -> tuple[http.client.HTTPResponse, Tunnel] | None:
    """The http.client response and the TLS-in-TLS tunnel under ``raw``, if any.

    urllib3 1.26 and 2.x name the parts of their ``SSLTransport`` alike: ``sslobj``,
    ``incoming``, ``outgoing``, ``socket``.  Each is checked by type; ``None``
    means "not a tunnel we can read".
    """
    located = locate_connection(raw)
    if located is None:
        return None
    fp, transport = located
    inner = getattr(transport, "sslobj", None)
    incoming = getattr(transport, "incoming", None)
    outgoing = getattr(transport, "outgoing", None)
    outer = getattr(transport, "socket", None)
    if not (
        isinstance(inner, ssl.SSLObject)
        and isinstance(incoming, ssl.MemoryBIO)
        and isinstance(outgoing, ssl.MemoryBIO)
        and isinstance(outer, socket.socket)
        and outer.fileno() >= 0
    ):
        return None
    return fp, Tunnel(inner, incoming, outgoing, outer)


class TunnelSource:
    """Reads a TLS-in-TLS connection non-blocking; same contract as ``SocketSource``."""

    def __init__(
        self, buffered: io.BufferedReader, tunnel: Tunnel, waiter: Waiter, stop: StopSignal
    ) -> None:
        # From here on urllib3's own reads through the transport would not block
        # either: they raise SSLWantReadError, which _drain takes as "nothing".
        tunnel.outer.setblocking(False)
        self._buffered: io.BufferedReader | None = buffered
        self._tunnel = tunnel
        self._stop = stop
        self._unsent = b""  # the inner TLS's own bytes for the peer (a key update...)
        waiter.watch(tunnel.outer.fileno())
        self._wait = waiter.wait

    def read(self, timeout: float | None) -> bytes | None:
        """Bytes that arrived, ``b""`` at end of input, ``None`` once stopped.

        Raises ``TimeoutError`` when nothing arrives for ``timeout`` seconds, and
        ``ssl.SSLError`` / ``OSError`` when either TLS layer fails.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            # Read first: every layer above the outer socket may hold bytes that never
            # make it readable (a wait comes only once they are all empty).
            try:
                return self._read_now()
            except (BlockingIOError, ssl.SSLWantReadError):
                write = False
            except ssl.SSLWantWriteError:
                write = True
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:  # checked after a read attempt: a late byte still counts
                    raise TimeoutError(f"no data for {timeout} s")
            self._wait(left, write)  # False on a stop (the loop sees it) or time out
        return None

    def _read_now(self) -> bytes:
        """What is there now, from the top layer down; raises "want" errors if nothing."""
        if self._buffered is not None:
            data = self._drain()
            if data:
                return data
        tunnel = self._tunnel
        while True:
            try:
                return self._read_inner()
            except ssl.SSLWantReadError:
                if tunnel.incoming.eof:
                    return b""  # not expected: an inner read after EOF ends or fails
            self._flush()
            data = tunnel.outer.recv(READ_SIZE)  # raises SSLWantReadError when empty
            if data:
                tunnel.incoming.write(data)
            else:
                tunnel.incoming.write_eof()  # the inner read now ends or fails for good

    def _drain(self) -> bytes:
        # What http.client buffered with the headers.  One read1() takes all that its
        # buffer holds; holding nothing, it calls the transport once, which raises
        # SSLWantReadError instead of blocking (the outer socket is non-blocking),
        # having kept whatever it read in the incoming BIO.  Either way the buffer is
        # empty then: from here on the tunnel is read directly.  (The transport also
        # sends what the inner TLS has to send, with sendall(): on a non-blocking
        # socket that could only fail with a full send buffer, which one request
        # cannot fill.)
        buffered, self._buffered = self._buffered, None
        assert buffered is not None
        return read_buffered(buffered)

    def _read_inner(self) -> bytes:
        tunnel = self._tunnel
        try:
            data = tunnel.inner.read(READ_SIZE)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            # close_notify, or an end without it: the end of input, as urllib3's own
            # read takes both (it makes every SSLTransport with suppress_ragged_eofs
            # True).  A body cut short is still caught by the framing above.
            return b""
        finally:
            self._unsent += tunnel.outgoing.read()
        return data

    def _flush(self) -> None:
        # Rarely anything: TLS 1.3 answers a key update request with one of its own,
        # and a post-handshake certificate request with the certificate.
        while self._unsent:
            sent = self._tunnel.outer.send(self._unsent)  # may raise SSLWantWriteError
            self._unsent = self._unsent[sent:]
