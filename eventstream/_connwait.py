"""Waiting for a connection on the worker thread: for the connect, and then for the
response headers, on the socket and the stop signal's waker, so that a stop ends
either wait within milliseconds.

Rule: standard library only; everything here runs on the worker thread, inside the
methods of the connections that ``_transport`` makes urllib3 build for the worker's
own session (``_new_conn`` and ``getresponse``).  Another thread only sets the stop
signal, which pokes the waker.

``headers`` also waits for a proxy's answer to ``CONNECT``.  What cannot be waited on
this way still blocks, bounded by the timeouts: DNS (``getaddrinfo``), the TLS
handshakes, and headers that stall half-way.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import socket
import ssl
import sys
import time
from collections.abc import Iterable
from typing import Any

from ._stop import StopSignal
from ._wait import Waiter

__all__ = ["ConnectionWait", "StoppedWaiting"]

if sys.platform == "win32":
    from ctypes import FormatError

    #: What a non-blocking ``connect()`` returns while it goes on (as CPython checks it).
    _IN_PROGRESS: tuple[int, ...] = (errno.WSAEWOULDBLOCK,)
    _TRAILING = "".join(map(chr, range(33))) + "."  # what CPython strips from the message

    def _connect_error(code: int) -> OSError:
        """What a blocking ``connect()`` raises for the error it left in ``SO_ERROR``:
        Winsock's message as CPython words it (no trailing dot or blank), and the
        code as ``winerror``, which picks the subclass (ConnectionRefusedError...)."""
        return OSError(code, FormatError(code).rstrip(_TRAILING), None, code)
else:
    _IN_PROGRESS = (errno.EINPROGRESS, errno.EINTR)  # EINTR: POSIX goes on connecting

    def _connect_error(code: int) -> OSError:
        """What a blocking ``connect()`` raises for the error it left in ``SO_ERROR``:
        the subclass for it (ConnectionRefusedError...), with the system's message."""
        return OSError(code, os.strerror(code))


class StoppedWaiting(Exception):
    """The stop signal ended a wait for the connection or the response headers.

    Not an ``OSError``: urllib3 would retry that (a ``session_factory``'s adapter
    with ``max_retries``), connecting or sending the request again after the stop.
    Nothing in urllib3 or requests catches it; ``_transport`` turns it into a
    ``ReadError``, which the worker, stopped, does not report.
    """


class ConnectionWait:
    """How a stream's connections wait: on the socket and the stop signal's waker.

    One per session (the worker's own); ``_transport.open_stream`` sets ``stop`` for
    each attempt and takes the waiter made for it (the body then waits with it), so
    the connect, the headers and the body share one waker.  Without ``stop`` (outside
    an attempt), or without a descriptor for a waker, both waits block as urllib3's do.
    """

    __slots__ = ("sent", "stop", "waiter")

    def __init__(self) -> None:
        self.stop: StopSignal | None = None
        self.waiter: Waiter | None = None
        #: A request is out and its answer has not begun: what fails now may come
        #: after the request had its effect (set and cleared by the connections).
        self.sent = False

    def take(self) -> Waiter | None:
        """End the attempt: the waiter made for it (the caller closes it), if any."""
        waiter, self.stop, self.waiter = self.waiter, None, None
        self.sent = False
        return waiter

    def _watch(self, sock: socket.socket) -> Waiter | None:
        if self.stop is None:
            return None
        if self.waiter is None:
            try:
                self.waiter = Waiter(self.stop)
            except OSError:
                return None  # the body says why when it needs one (_transport.Body)
        self.waiter.watch(sock.fileno())
        return self.waiter

    def connect(
        self,
        address: tuple[str, int],
        timeout: float | None,
        family: int,
        source_address: tuple[str, int] | None = None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None = None,
    ) -> socket.socket:
        """A connected socket, as urllib3's ``create_connection`` makes it: each
        address that DNS gives for ``address`` is tried in turn, each with the whole
        ``timeout``; the last one's error is raised.  ``socket.timeout`` when the time
        runs out, :class:`StoppedWaiting` on a stop.  The socket keeps ``timeout``.
        """
        host, port = address
        if host.startswith("["):  # a proxy's IPv6 address keeps them (urllib3 strips them too)
            host = host.strip("[]")
        found = socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
        if not found:
            raise OSError("getaddrinfo returns an empty list")
        *others, last = found
        for info in others:
            with contextlib.suppress(OSError):  # a stop is no OSError: it goes through
                return self._open(info, timeout, source_address, socket_options)
        return self._open(last, timeout, source_address, socket_options)

    def _open(
        self,
        info: tuple[Any, ...],
        timeout: float | None,
        source_address: tuple[str, int] | None,
        socket_options: Iterable[tuple[int, int, int | bytes]] | None,
    ) -> socket.socket:
        family, kind, proto, _, peer = info
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if source_address:
                sock.bind(source_address)
            self._connect(sock, peer, timeout)
        except BaseException:
            sock.close()
            raise
        return sock

    def _connect(self, sock: socket.socket, peer: Any, timeout: float | None) -> None:
        waiter = self._watch(sock)
        if waiter is None:
            sock.settimeout(timeout)
            sock.connect(peer)
            return
        sock.setblocking(False)
        code = sock.connect_ex(peer)
        if code in _IN_PROGRESS:
            _wait(waiter, self.stop, timeout, write=True)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        sock.settimeout(timeout)
        if code:
            raise _connect_error(code)

    def headers(self, sock: socket.socket, timeout: float | None) -> None:
        """Return once the response has begun on ``sock`` (or it closed); raise
        ``socket.timeout`` after ``timeout``, :class:`StoppedWaiting` on a stop.
        """
        waiter = self._watch(sock)
        if waiter is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            _wait(waiter, self.stop, left)
            if not isinstance(sock, ssl.SSLSocket) or _response_began(sock):
                return


def _wait(
    waiter: Waiter, stop: StopSignal | None, timeout: float | None, write: bool = False
) -> None:
    """Return once the watched socket is ready; raise as :meth:`ConnectionWait.headers`."""
    if not waiter.wait(timeout, write):
        if stop is not None and stop.is_set():
            raise StoppedWaiting
        raise socket.timeout("timed out")


def _response_began(sock: ssl.SSLSocket) -> bool:
    """Whether a readable TLS socket brings the response, not only TLS records that
    carry no data (TLS 1.3 sends session tickets after the handshake, which make the
    socket readable while the server has not answered yet).

    Reads one byte, non-blocking: none means the records read carried no data (wait
    again); a byte is handed back to the socket's next ``recv_into``, which is how
    http.client's reader reads it, so the response is read whole.
    """
    first = bytearray(1)
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        count = sock.recv_into(first)
    except ssl.SSLWantReadError:
        return False
    except ssl.SSLWantWriteError:
        return True  # TLS must send first: the blocking read that follows does it
    finally:
        sock.settimeout(timeout)
    if count:
        sock.recv_into = functools.partial(_hand_back, sock, first)  # type: ignore[method-assign]
    return True  # a byte, or the end of the connection: http.client reads it


def _hand_back(sock: ssl.SSLSocket, first: bytearray, buffer: Any, *_: Any) -> int:
    # The first recv_into after the wait (http.client's reader, with a buffer of 8 KiB):
    # the byte the wait read, and the socket's own method again from then on.  An
    # error before that read closes the connection, and the socket with it.
    del sock.recv_into
    with memoryview(buffer) as view:
        view[:1] = first
    return 1
