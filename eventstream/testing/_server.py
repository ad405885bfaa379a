"""The :class:`SSEServer`: the listener, its accept thread, routing and the records.

Rule: the server's state (queue, routes, default, records, connections) is guarded by
one lock, and a condition on it wakes the test's waits.  The accept thread hands each
connection to its own thread (``_handler``); :meth:`SSEServer.stop` wakes and joins
every one.  Standard library only.
"""

from __future__ import annotations

import collections
import logging
import socket
import ssl
import threading
import time
from typing import Final

from ._actions import End
from ._connection import Connection
from ._handler import Handler
from ._records import RecordedRequest
from ._script import Responder, Script
from ._wait import ready

__all__ = ["SSEServer"]

logger = logging.getLogger(__name__)

_JOIN_TIMEOUT: Final = 10.0


class SSEServer:
    """A real HTTP/1.1 (or HTTPS) server on a loopback port that answers with scripts.

    Each request takes a script: the one routed to its path (:meth:`route`), else the
    next one queued (:meth:`enqueue`), else :attr:`default`.  The request is recorded
    before its script runs; a request read once :meth:`stop` or :meth:`drop_all` has
    ended its connection is neither recorded nor given a script.  Every public method
    may be called from any thread (start and stop from one thread at a time); scripts
    and route callables run on the connection's own thread, as the package docstring
    describes.

    Args:
        ssl_context: A server-side context (with its certificate loaded) to serve HTTPS.
            Each connection's thread does its own handshake, so a client that stalls
            the handshake holds up nobody else.
        host: The address to listen on (an IPv6 address works too).
        port: The port; 0 picks a free one.  The listener sets ``SO_REUSEADDR``, so a
            new server can take a stopped server's port: ``SSEServer(port=old.port)``.
    """

    NO_SCRIPT: Final[Script] = Script(
        404, headers={"Content-Type": "text/plain; charset=utf-8"}
    ).send(b"no script for this request\n")
    """The initial :attr:`default`: a 404, so a client that connects with nothing
    queued fails at once (a 404 is not retried) instead of retrying or waiting."""

    def __init__(
        self, *, ssl_context: ssl.SSLContext | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._ssl_context = ssl_context
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: collections.deque[Responder] = collections.deque()
        self._routes: dict[str, Responder] = {}
        self._default: Responder = self.NO_SCRIPT
        self._requests: list[RecordedRequest] = []
        self._connections: list[Connection] = []
        self._handed_out = 0  # connections returned by wait_for_connection
        self._running = False
        self._listener: socket.socket | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None
        self._accept_thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Listen and start the accept thread.  After :meth:`stop`, start listens
        again on the same port, keeping the queue, routes and records."""
        if self._running:
            raise RuntimeError("the server is already running")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind((self._host, self._port))
            listener.listen(128)
            listener.setblocking(False)
            wake = socket.socketpair()
        except OSError:
            listener.close()
            raise
        self._port = listener.getsockname()[1]
        thread = threading.Thread(
            target=self._accept_loop,
            args=(listener, wake[0]),
            name=f"eventstream-testing-{self._port}-accept",
            daemon=True,
        )
        with self._lock:
            self._listener, self._wake, self._accept_thread = listener, wake, thread
            self._running = True
        thread.start()

    def stop(self) -> None:
        """Close the listener and every connection (FIN, body unfinished), and join
        every thread.  Idempotent; takes milliseconds even with connections held open.

        Raises ``RuntimeError`` if a thread is still running after 10 s (a route
        callable that never returns, say).
        """
        with self._lock:
            if not self._running:
                return
            self._running = False
            connections = list(self._connections)
            listener, wake, accept_thread = self._listener, self._wake, self._accept_thread
            self._listener = self._wake = self._accept_thread = None
        assert listener is not None
        assert wake is not None
        assert accept_thread is not None
        wake[1].send(b"\0")  # never drained: the accept thread's poll stays readable
        for conn in connections:
            conn._abort(End.DROP)
        try:
            stuck = self._join([accept_thread, *(c._thread for c in connections if c._thread)])
        finally:
            for sock in (listener, *wake):
                sock.close()
        if stuck:
            raise RuntimeError(f"threads still running after stop(): {stuck}")

    def __enter__(self) -> SSEServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @staticmethod
    def _join(threads: list[threading.Thread]) -> list[str]:
        deadline = time.monotonic() + _JOIN_TIMEOUT
        threads = [t for t in threads if t.ident is not None]  # one never started
        for thread in threads:
            if thread is not threading.current_thread():  # a route callable may call us
                thread.join(max(0.0, deadline - time.monotonic()))
        return [t.name for t in threads if t.is_alive() and t is not threading.current_thread()]

    # -- addresses -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port listened on (known once started; kept after stop)."""
        if not self._port:
            raise RuntimeError("the server has not been started")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (``https://`` with an ssl_context), no trailing slash."""
        return self.url_for("")

    def url_for(self, path: str = "/", *, host: str | None = None) -> str:
        """The URL of ``path`` (which may carry a query) on this server.

        ``host`` replaces the host in the URL only, e.g. ``host="localhost"`` for a
        redirect to "another host" that still reaches this server.
        """
        if path and not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")
        host = self._host if host is None else host
        if ":" in host:
            host = f"[{host}]"
        scheme = "http" if self._ssl_context is None else "https"
        return f"{scheme}://{host}:{self.port}{path}"

    # -- what to answer ----------------------------------------------------------------------

    def enqueue(self, *responders: Responder) -> None:
        """Queue responders: each new request not routed takes the next, in arrival order."""
        with self._lock:
            self._queue.extend(responders)

    def route(self, path: str, responder: Responder | None) -> None:
        """Answer every request for ``path`` (exact, query ignored) with ``responder``,
        before the queue; ``None`` removes the route."""
        with self._lock:
            if responder is None:
                self._routes.pop(path, None)
            else:
                self._routes[path] = responder

    @property
    def default(self) -> Responder:
        """What a request gets when no route matches and the queue is empty
        (initially :attr:`NO_SCRIPT`)."""
        return self._default

    @default.setter
    def default(self, responder: Responder) -> None:
        with self._lock:
            self._default = responder

    def _script_for(self, request: RecordedRequest, conn: Connection) -> Script | None:
        with self._lock:
            if not self._running or conn._ending is not None:
                return None  # stop() or drop_all() came first: the request takes nothing
            self._requests.append(request)
            conn._request = request
            responder = self._routes.get(request.path)
            if responder is None:
                responder = self._queue.popleft() if self._queue else self._default
            self._changed.notify_all()
        logger.debug("connection %d: %s %s", conn.index, request.method, request.path)
        if isinstance(responder, Script):
            return responder
        try:
            script = responder(request)
            if not isinstance(script, Script):
                raise TypeError(f"a route callable returned {script!r}, not a Script")
        # The test's own callable: answer 500 so the client sees it, whatever it raised
        # (pytest.fail() and pytest.skip() raise a BaseException, not an Exception).
        except BaseException as exc:
            logger.exception("responder %r failed", responder)
            error = repr(exc)
            if not error.startswith(type(exc).__name__):  # pytest's Failed: the message only
                error = f"{type(exc).__name__}: {error}"
            text = f"responder failed: {error}\n".encode()
            return Script(500, headers={"Content-Type": "text/plain; charset=utf-8"}).send(text)
        return script

    # -- records -------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every request read so far, in arrival order."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> list[Connection]:
        """A snapshot of every connection accepted so far, in index order."""
        with self._lock:
            return list(self._connections)

    def wait_for_requests(self, n: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until ``n`` requests have been read; return the first ``n``.

        Raises ``TimeoutError`` if fewer arrived within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._requests) >= n, timeout):
                got = len(self._requests)
                raise TimeoutError(f"{got} requests after {timeout} s, expected {n}")
            return self._requests[:n]

    def wait_for_connection(self, timeout: float = 5.0) -> Connection:
        """Return the next connection not yet returned, in index order: the first call
        gives connection 0, the next connection 1, and so on, waiting for it to be
        accepted if need be.  Raises ``TimeoutError`` after ``timeout`` seconds."""
        with self._changed:
            if not self._changed.wait_for(
                lambda: len(self._connections) > self._handed_out, timeout
            ):
                raise TimeoutError(f"no connection {self._handed_out} after {timeout} s")
            self._handed_out += 1
            return self._connections[self._handed_out - 1]

    # -- faults ----------------------------------------------------------------------------------

    def drop_all(self) -> None:
        """Reset (TCP RST) every open connection, wherever its script is, as a crashed
        server would, and wait for their threads to finish.  The server keeps listening.
        """
        with self._lock:
            connections = [conn for conn in self._connections if not conn.closed]
        for conn in connections:
            conn._abort(End.RESET)
        stuck = self._join([conn._thread for conn in connections if conn._thread])
        if stuck:
            raise RuntimeError(f"threads still running after drop_all(): {stuck}")

    # -- the accept thread ---------------------------------------------------------------------

    def _accept_loop(self, listener: socket.socket, wake: socket.socket) -> None:
        while True:
            if wake.fileno() in ready([listener.fileno(), wake.fileno()], [], None):
                return
            try:
                sock, address = listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue  # the client left before we took it
            except OSError as exc:  # out of fds, say: back off without spinning
                logger.debug("accept failed: %r", exc)
                if ready([wake.fileno()], [], 0.05):
                    return
                continue
            self._register(sock, (address[0], address[1]))

    def _register(self, sock: socket.socket, address: tuple[str, int]) -> None:
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if not self._running:  # stop() has begun: it will not join a new thread
                    sock.close()
                    return
                conn = Connection(len(self._connections), address)
                handler = Handler(self._script_for, conn, sock, self._ssl_context)
                conn._thread = threading.Thread(
                    target=handler.run,
                    name=f"eventstream-testing-{self._port}-conn-{conn.index}",
                    daemon=True,
                )
                try:
                    # Under the lock: the thread records nothing before it is listed.
                    conn._thread.start()
                except RuntimeError as exc:  # no thread to be had: close this client, go on
                    logger.warning("could not serve %s: %r", address, exc)
                    conn._finish()
                    sock.close()
                    return
                self._connections.append(conn)
                self._changed.notify_all()
        except OSError as exc:  # the client left already, or no fd for the wake-up pair
            logger.debug("could not serve %s: %r", address, exc)
            sock.close()
