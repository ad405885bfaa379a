"""A minimal HTTP forward proxy on 127.0.0.1 for tests, standard library only.

It tunnels ``CONNECT host:port`` and forwards absolute-form requests
(``GET http://host:port/path``), over plain TCP or, given a server-side
``ssl.SSLContext``, as an ``https://`` proxy.  Each connection is relayed by one
thread that waits (``poll()``, or ``select()`` without it) on both sides and on a
wake-up socket, so leaving the
``with`` block ends every relay at once and joins every thread.  ``requests`` holds
the request line of every request the proxy received (``CONNECT 127.0.0.1:4321``).
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from types import TracebackType
from urllib.parse import urlsplit

from eventstream.testing._wait import ready

_HEAD_LIMIT = 64 * 1024


class ForwardProxy:
    """An HTTP or HTTPS forward proxy; ``url`` is its address (port 0, 127.0.0.1)."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.requests: list[str] = []
        self._wake_r, self._wake_w = socket.socketpair()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = False
            block_on_close = True  # server_close() joins every relay thread

        self._server = Server(("127.0.0.1", 0), Handler)
        port = self._server.server_address[1]
        self.url = f"{'http' if ssl_context is None else 'https'}://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="test-proxy"
        )

    def __enter__(self) -> ForwardProxy:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._wake_w.send(b"x")  # never drained: every relay sees it
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()
        self._wake_w.close()
        self._wake_r.close()

    def _serve(self, client: socket.socket) -> None:
        client.settimeout(5.0)
        try:
            if self.ssl_context is not None:
                client = self.ssl_context.wrap_socket(client, server_side=True)
            head = _read_head(client)
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            self.requests.append(f"{method} {target}")
            if method == "CONNECT":
                host, _, port = target.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=5.0)
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = b""
            else:
                url = urlsplit(target)
                upstream = socket.create_connection((url.hostname, url.port or 80), timeout=5.0)
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                first = _origin_form(head, method, path)
            with upstream:
                upstream.sendall(first)
                self._relay(client, upstream)
        except (OSError, ValueError):
            pass  # a client that went away or spoke nonsense: nothing to relay
        finally:
            client.close()

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        watched = [client.fileno(), upstream.fileno(), self._wake_r.fileno()]
        ends = {client.fileno(): (client, upstream), upstream.fileno(): (upstream, client)}
        while True:
            for fd in ready(watched, [], None):  # poll(), or select() without it
                if fd not in ends:
                    return  # the proxy is shutting down
                source, sink = ends[fd]
                data = source.recv(65536)
                # A TLS socket may hold more decrypted bytes than the kernel shows.
                while data and isinstance(source, ssl.SSLSocket) and source.pending():
                    data += source.recv(source.pending())
                if not data:
                    return
                sink.sendall(data)


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)  # byte by byte: nothing past the head is taken
        if not data or len(head) > _HEAD_LIMIT:
            raise ValueError("no request head")
        head += data
    return head


def _origin_form(head: bytes, method: str, path: str) -> bytes:
    lines = head.split(b"\r\n")
    kept = [line for line in lines[1:] if not line.lower().startswith(b"proxy-")]
    return b"\r\n".join([f"{method} {path} HTTP/1.1".encode("latin-1"), *kept])
