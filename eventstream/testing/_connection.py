"""The :class:`Connection` handle: one accepted connection, as a test sees it.

Rule: the test's thread only queues commands and reads state here; the connection's
own thread (``_handler``) carries the commands out.  Every method is safe from any
thread; a wake-up socket pair interrupts the connection thread's wait (``poll()``, or
``select()`` where there is no ``poll``).  Standard library only.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import threading

from ._actions import Command, End, Wire, Write
from ._records import RecordedRequest
from ._script import format_comment, format_event

__all__ = ["Connection"]

logger = logging.getLogger(__name__)


class Connection:
    """One accepted connection, as a test sees it.

    The accept thread creates it; the connection's own thread
    (``eventstream-testing-<port>-conn-<index>``) reads the request and runs the script.
    Every method may be called from any thread.  The sending methods only queue a
    command: the connection's thread carries the commands out in order once its script
    has reached :meth:`Script.live` (commands queued earlier wait for that; commands
    queued after the connection closed are ignored).
    """

    def __init__(self, index: int, client_address: tuple[str, int]) -> None:
        self._index = index
        self._client_address = client_address
        self._request: RecordedRequest | None = None
        self._commands: collections.deque[Command] = collections.deque()
        self._closed = threading.Event()
        self._ending: End | None = None  # set from outside by stop() / drop_all()
        self._thread: threading.Thread | None = None
        self._wake_lock = threading.Lock()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    @property
    def index(self) -> int:
        """0 for the server's first connection, then 1, 2...; survives a restart."""
        return self._index

    @property
    def client_address(self) -> tuple[str, int]:
        """The client's ``(host, port)``."""
        return self._client_address

    @property
    def request(self) -> RecordedRequest | None:
        """The request read on this connection, ``None`` until it has been read."""
        return self._request

    @property
    def closed(self) -> bool:
        """Whether the connection's thread has closed the socket."""
        return self._closed.is_set()

    def wait_closed(self, timeout: float = 5.0) -> None:
        """Block until the connection is closed; raise ``TimeoutError`` after ``timeout``."""
        if not self._closed.wait(timeout):
            raise TimeoutError(f"connection {self._index} still open after {timeout} s")

    def event(
        self,
        data: str,
        *,
        event: str | None = None,
        id: str | None = None,
        retry: int | None = None,
    ) -> None:
        """Queue one event block, formatted as by :meth:`Script.event`, as one write."""
        self._post(Write(format_event(data, event, id, retry)))

    def comment(self, text: str = "") -> None:
        """Queue a comment, formatted as by :meth:`Script.comment`, as one write."""
        self._post(Write(format_comment(text)))

    def send(self, data: bytes) -> None:
        """Queue body bytes (framed and compressed like the script's) as one write."""
        self._post(Write(bytes(data)))

    def wire(self, data: bytes) -> None:
        """Queue bytes for the socket as they are, bypassing framing and compression."""
        self._post(Wire(bytes(data)))

    def close(self) -> None:
        """Queue the proper end of the body, then the close of the connection."""
        self._post(End.CLOSE)

    def drop(self) -> None:
        """Queue a close without ending the body (FIN)."""
        self._post(End.DROP)

    def reset(self) -> None:
        """Queue a TCP reset."""
        self._post(End.RESET)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Connection {self._index} from {self._client_address} {state}>"

    # -- private: used by the server and the connection's thread -------------------

    def _post(self, command: Command) -> None:
        if self.closed:
            logger.debug("connection %d is closed: command ignored", self._index)
            return
        self._commands.append(command)
        self._signal()

    def _abort(self, ending: End) -> None:
        if self._ending is None:
            self._ending = ending
        self._signal()

    def _signal(self) -> None:
        # Under the lock, so a wake-up is never written to a closed (or reused) fd.
        with self._wake_lock:
            if self._wake_w.fileno() >= 0:
                # A full pair holds wake-ups already: the thread will wake anyway.
                with contextlib.suppress(BlockingIOError):
                    self._wake_w.send(b"\0")

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except BlockingIOError:
            pass  # drained

    def _finish(self) -> None:
        with self._wake_lock:
            self._wake_r.close()
            self._wake_w.close()
        self._closed.set()
