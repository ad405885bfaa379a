"""The body of one connection's thread: TLS handshake, request, script, close.

Rule: everything here runs on that one thread, on a non-blocking socket.  Every
blocking point is a wait (``_wait.ready``: ``poll()``, or ``select()`` without it) on
the socket and the connection's wake-up socket, so
:meth:`SSEServer.stop` and :meth:`SSEServer.drop_all` end it at once.  Write errors
(the client went away) end the thread quietly, logged at debug level.  Standard
library only.
"""

from __future__ import annotations

import http
import logging
import socket
import ssl
import string
import struct
import time
from collections.abc import Callable
from typing import Final, Optional

from ._actions import NO_BODY_STATUSES, Encoder, End, Pause, Step, Wait, Wire, Write, compile_steps
from ._connection import Connection
from ._records import Headers, RecordedRequest
from ._script import Framing, Script
from ._wait import ready

__all__ = ["Handler", "ScriptFor"]

logger = logging.getLogger(__name__)

_MAX_HEAD: Final = 64 * 1024  # bytes of request line and header fields
_RECV_SIZE: Final = 65536
_GATE_POLL: Final = 0.01  # a threading.Event has no fd to poll: look at it this often
_MAX_POLL: Final = 86400.0  # poll() takes at most 2**31-1 ms: a long pause waits in slices


class _Stop(Exception):
    """End this connection now, the way ``end`` says (a private control-flow signal)."""

    def __init__(self, end: End, reason: str) -> None:
        super().__init__(reason)
        self.end = end


def _head(script: Script, framing: Framing | None, steps: list[Step]) -> bytes:
    """The status line and header fields, with the automatic ones added."""
    try:
        reason = http.HTTPStatus(script.status).phrase
    except ValueError:
        reason = "Unknown"
    fields = list(script.headers)
    automatic: list[tuple[str, str]] = []
    if framing is Framing.CHUNKED:
        automatic.append(("Transfer-Encoding", "chunked"))
    elif framing is Framing.CONTENT_LENGTH and "content-length" not in script._named:
        encoder = Encoder(script.encoding)
        length = sum(len(encoder.encode(s.data)) for s in steps if isinstance(s, Write))
        automatic.append(("Content-Length", str(length + len(encoder.finish()))))
    if framing is not None and script.encoding is not None:
        automatic.append(("Content-Encoding", script.encoding))
    automatic.append(("Connection", "close"))
    fields += [(name, value) for name, value in automatic if name.lower() not in script._named]
    lines = [f"HTTP/1.1 {script.status} {reason}", *(f"{n}: {v}" for n, v in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _size(text: str, base: int) -> int:
    """A Content-Length or chunk size; ``ValueError`` unless it is plain digits."""
    text = text.strip()
    digits = string.hexdigits if base == 16 else string.digits
    if not text or not all(c in digits for c in text):  # int() would take "-1", "0x1", "1_0"
        raise ValueError(f"invalid size {text!r}")
    return int(text, base)


ScriptFor = Callable[[RecordedRequest, Connection], Optional[Script]]
"""The server's choice of script for a request (it records the request first), or
``None`` if the server has ended the connection (the request is then not recorded)."""


class Handler:
    """The body of one connection's thread: handshake, request, script, close."""

    def __init__(
        self,
        script_for: ScriptFor,
        conn: Connection,
        sock: socket.socket,
        tls: ssl.SSLContext | None,
    ) -> None:
        self._script_for = script_for
        self._conn = conn
        self._sock = sock
        self._tls = tls
        self._inbox = bytearray()  # request bytes read but not parsed yet
        self._out = bytearray()  # bytes for the wire not sent yet (at first, the head)
        self._framing: Framing | None = None
        self._encoder = Encoder(None)

    def run(self) -> None:
        end = End.DROP
        try:
            if self._tls is not None:
                self._handshake(self._tls)
            try:
                request = self._read_request()
            except ValueError as exc:
                logger.debug("connection %d: bad request: %s", self._conn.index, exc)
                self._sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                end = End.CLOSE
                return
            script = self._script_for(request, self._conn)
            if script is None:  # stop() or drop_all() came first
                raise _Stop(self._conn._ending or End.DROP, "ended by the server")
            end = self._respond(script, request)
        except _Stop as stop:
            logger.debug("connection %d: %s", self._conn.index, stop)
            end = stop.end
        except OSError as exc:  # the client went away, or refused the TLS handshake
            logger.debug("connection %d: %r", self._conn.index, exc)
        finally:
            self._close(self._conn._ending or end)
            self._conn._finish()

    # -- waiting: every blocking point is a poll that a wake-up interrupts -------------

    def _poll(self, write: bool, timeout: float | None) -> bool:
        """Wait for the socket to be readable (writable if ``write``), a wake-up or the
        timeout; True if the socket is ready."""
        sock, wake = self._sock.fileno(), self._conn._wake_r.fileno()
        found = ready([wake] if write else [sock, wake], [sock] if write else [], timeout)
        if wake in found:
            self._conn._drain_wake()
        self._check_ending()
        return sock in found

    def _check_ending(self) -> None:
        """Raise ``_Stop`` if stop() or drop_all() has ended this connection."""
        if self._conn._ending is not None:
            raise _Stop(self._conn._ending, "ended by the server")

    def _idle(self, timeout: float | None) -> None:
        """Stay silent until the timeout or a wake-up, noticing a client that left."""
        if not self._poll(False, timeout):
            return
        try:
            if not self._sock.recv(_RECV_SIZE):
                raise _Stop(End.DROP, "the client closed the connection")
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # nothing for the application (a TLS record, say)

    def _pause(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._idle(min(left, _MAX_POLL))

    def _wait_gate(self, wait: Wait) -> None:
        deadline = time.monotonic() + wait.timeout
        while not wait.gate.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning(
                    "connection %d: gate not set in %s s", self._conn.index, wait.timeout
                )
                raise _Stop(End.DROP, "gate timed out")
            self._idle(min(left, _GATE_POLL))

    # -- socket I/O on a non-blocking socket ------------------------------------------

    def _handshake(self, context: ssl.SSLContext) -> None:
        self._sock = tls = context.wrap_socket(
            self._sock, server_side=True, do_handshake_on_connect=False
        )
        while True:
            try:
                tls.do_handshake()
                return
            except ssl.SSLWantReadError:
                self._poll(False, None)
            except ssl.SSLWantWriteError:
                self._poll(True, None)

    def _recv(self) -> bytes:
        while True:
            try:
                return self._sock.recv(_RECV_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError):
                self._poll(False, None)
            except ssl.SSLWantWriteError:
                self._poll(True, None)

    def _sendall(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[self._sock.send(view) :]
            except (BlockingIOError, ssl.SSLWantWriteError):
                self._poll(True, None)
            except ssl.SSLWantReadError:
                self._poll(False, None)

    def _close(self, end: End) -> None:
        try:
            if end is End.RESET:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif end is End.CLOSE:
                # Unread input would turn the close into a reset and could cost the
                # client the end of the body: read what is there first.
                while self._sock.recv(_RECV_SIZE):
                    pass
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass  # nothing left to read
        except OSError as exc:
            logger.debug("connection %d: closing: %r", self._conn.index, exc)
        finally:
            self._sock.close()

    # -- the request ---------------------------------------------------------------------

    def _read_until(self, marker: bytes) -> bytes:
        while (end := self._inbox.find(marker)) < 0:
            if len(self._inbox) > _MAX_HEAD:
                raise ValueError("request line or header fields too long")
            data = self._recv()
            if not data:
                raise _Stop(End.DROP, "the client closed the connection before a request")
            self._inbox += data
        found = bytes(self._inbox[:end])
        del self._inbox[: end + len(marker)]
        return found

    def _read_exact(self, size: int) -> bytes:
        while len(self._inbox) < size:
            data = self._recv()
            if not data:
                raise _Stop(End.DROP, "the client closed the connection mid-body")
            self._inbox += data
        found = bytes(self._inbox[:size])
        del self._inbox[:size]
        return found

    def _read_request(self) -> RecordedRequest:
        """Read one request; ``ValueError`` if it is malformed."""
        request_line, *lines = self._read_until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        method, target, version = request_line.split(" ")  # ValueError if not three parts
        fields = []
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise ValueError(f"malformed header field {line!r}")
            fields.append((name, value.strip()))
        headers = Headers(fields)
        if headers.get("Expect", "").lower() == "100-continue":
            self._sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if "chunked" in headers.get("Transfer-Encoding", "").lower():
            body = self._read_chunked()
        else:
            body = self._read_exact(_size(headers.get("Content-Length", "0"), 10))
        path, _, query = target.partition("?")
        return RecordedRequest(
            method=method,
            target=target,
            path=path,
            query=query,
            version=version,
            headers=headers,
            body=body,
            client_address=self._conn.client_address,
            connection=self._conn.index,
        )

    def _read_chunked(self) -> bytes:
        body = bytearray()
        while size := _size(self._read_until(b"\r\n").split(b";")[0].decode("latin-1"), 16):
            body += self._read_exact(size)
            if self._read_exact(2) != b"\r\n":
                raise ValueError("chunk not followed by CRLF")
        while self._read_until(b"\r\n"):
            pass  # trailer fields
        return bytes(body)

    # -- the response --------------------------------------------------------------------

    def _respond(self, script: Script, request: RecordedRequest) -> End:
        steps = compile_steps(script._actions)
        bodyless = request.method == "HEAD" or script.status in NO_BODY_STATUSES
        self._framing = None if bodyless or script.status < 200 else script.framing
        self._encoder = Encoder(script.encoding)
        if script._has_head:
            self._out += _head(script, self._framing, steps)
        for step in steps:
            self._check_ending()
            if isinstance(step, End):
                return self._end(step)
            self._run(step)
        raise AssertionError("a compiled script always ends with an End")

    def _run(self, step: Step) -> None:
        if isinstance(step, Write):
            if self._framing is not None:  # a HEAD request gets no body
                self._frame(self._encoder.encode(step.data))
        elif isinstance(step, Wire):
            self._out += step.data
        self._flush_out()
        if isinstance(step, Pause):
            self._pause(step.seconds)
        elif isinstance(step, Wait):
            self._wait_gate(step)

    def _end(self, end: End) -> End:
        self._flush_out()
        if end is End.HOLD:
            while True:
                self._idle(None)
        if end is End.LIVE:
            end = self._live()
        if end is End.CLOSE and self._framing is not None:
            self._frame(self._encoder.finish())
            if self._framing is Framing.CHUNKED:
                self._out += b"0\r\n\r\n"
            self._flush_out()
        return end

    def _live(self) -> End:
        while True:
            self._check_ending()  # a command may not wait: send() need not poll
            try:
                command = self._conn._commands.popleft()
            except IndexError:
                self._idle(None)
                continue
            if isinstance(command, End):
                return command
            self._run(command)

    def _frame(self, encoded: bytes) -> None:
        if not encoded:
            return  # an empty chunk would end a chunked body
        if self._framing is Framing.CHUNKED:
            self._out += b"%x\r\n%s\r\n" % (len(encoded), encoded)
        else:
            self._out += encoded

    def _flush_out(self) -> None:
        if self._out:
            data = bytes(self._out)
            self._out.clear()
            self._sendall(data)
