r"""A real, scripted Server-Sent Events server for tests: the library's and yours.

:class:`SSEServer` is an HTTP/1.1 server on a loopback port.  It answers each request
with a :class:`Script`: a status, headers, then events, pauses, gates and faults
(drops, resets, malformed bytes), in the framing and compression the script asks for.
It records every request.  Standard library only; it imports nothing else of
eventstream, so it can test any SSE client.

Example::

    import requests
    from eventstream.testing import Script, SSEServer

    with SSEServer() as server:
        server.enqueue(Script().event("hello", id="1"))
        with requests.get(server.url_for("/events"), stream=True, timeout=5) as response:
            assert response.raw.read() == b"id: 1\ndata: hello\n\n"
        (request,) = server.wait_for_requests(1)
        assert request.path == "/events"

Threads.  :meth:`SSEServer.start` runs an accept thread
(``eventstream-testing-<port>-accept``); each accepted connection gets its own daemon
thread (``eventstream-testing-<port>-conn-<index>``), which does the TLS handshake,
reads one request, picks its script and runs it.  :meth:`SSEServer.stop` wakes and
joins every one of them.  The test's thread only queues work and reads records.

Connections.  The server answers one request per connection and always sends
``Connection: close``: an SSE client that reconnects opens a new connection anyway.
Bytes a client sends after its request are read and discarded; a client closing its
end ends the connection's thread at its next wait.  Write errors (the client went
away) end the thread quietly, logged at debug level under the ``eventstream.testing``
logger.

Writes.  Each flushing write (``event()``, ``comment()`` and ``send()`` with the
default ``flush=True``, each byte of ``trickle()``, and ``wire()``) goes to the kernel
in one ``send`` call.  With :attr:`Framing.CHUNKED` the write is exactly one chunk,
and with compression it is one ``Z_SYNC_FLUSH`` block, so each event can be decoded
the moment it arrives.  ``flush=False`` holds body bytes back, to share the next
flushing write's chunk.  The status line and headers are held back too and go out
with the first write, as a real server's often do; any other action (a pause, a wait,
``hold()``...) sends what is pending first.  The server sets ``TCP_NODELAY``, so on
loopback one write is normally one TCP segment, but TCP promises nothing about
segments; split a write yourself (``flush=False`` / ``wire()`` / ``pause()``) to test
how a client joins pieces.
"""

from __future__ import annotations

# The package's modules import the standard library and each other only, each one
# only modules listed before it: _records (what the server read), _actions (what a
# script is made of), _script (the builder), _connection (the test's handle),
# _handler (a connection's thread), _server (the listener and the accept thread).
from ._connection import Connection
from ._records import Headers, RecordedRequest
from ._script import Framing, HeaderSpec, Responder, Script
from ._server import SSEServer

__all__ = [
    "Connection",
    "Framing",
    "HeaderSpec",
    "Headers",
    "RecordedRequest",
    "Responder",
    "SSEServer",
    "Script",
]
