"""The test service for LaunchDarkly's SSE contract suite (``sse-contract-tests``).

The suite drives an SSE client through this small HTTP service (its protocol:
``service_spec.md`` beside the suite's binary): it asks for a stream with some
options, and the service runs an :class:`eventstream.EventStream` with exactly those
options and posts what the stream reports (events, comments, errors) back to the
suite's callback URL, numbered in order.  Standard library plus eventstream.

Usage::

    python contract-tests/service.py [--port PORT] [--port-file FILE]

Port 0 (the default) takes a free port; ``--port-file`` receives the port once the
service is listening.  SIGTERM, SIGINT and ``DELETE /`` stop every stream (joining
its worker) and exit.

Threads: the HTTP server answers each request on its own thread; each stream's
callbacks run on that stream's worker thread, which posts the callback messages
itself, one at a time, so they reach the suite in the order the stream produced them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import signal
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import eventstream

# Every capability eventstream has.  Not claimed: "event-type-listeners", which says
# that a client must be told which event types to listen for before it delivers them
# (as the browser's EventSource must); eventstream delivers every event, whatever its
# type, so the suite's "listen" command would have nothing to act on.  It is a mode of
# the suite, not a test group: without it the suite runs the same event tests and
# simply sends no "listen" command, and it reports no test as skipped for it.
CAPABILITIES = (
    "bom",
    "comments",
    "headers",
    "last-event-id",
    "post",
    "read-timeout",
    "report",
    "restart",
)
CONNECT_TIMEOUT = 5.0  # eventstream's default connect timeout
STOP_TIMEOUT = 5.0  # seconds a closed stream's worker is waited for
CALLBACK_TIMEOUT = 5.0

_log = logging.getLogger("contract-service")


class Client:
    """One stream the suite asked for, and its numbered callback messages."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._callback = str(config["callbackUrl"]).rstrip("/")
        self._counter = itertools.count(1)
        self._lock = threading.Lock()  # callbacks come from successive workers
        self.stream = eventstream.EventStream(
            str(config["streamUrl"]), **stream_options(config), **self._callbacks()
        )

    def _callbacks(self) -> dict[str, Any]:
        return {
            "on_event": self._on_event,
            "on_comment": self._on_comment,
            "on_error": self._on_error,
        }

    def _on_event(self, event: eventstream.Event) -> None:
        message = {"type": event.event, "data": event.data, "id": event.id}
        self._post({"kind": "event", "event": message})

    def _on_comment(self, text: str) -> None:
        self._post({"kind": "comment", "comment": text})

    def _on_error(self, error: BaseException) -> None:
        self._post({"kind": "error", "comment": str(error)})

    def _post(self, message: dict[str, Any]) -> None:
        # On the worker thread: the next event waits until the suite has this one.
        with self._lock:
            url = f"{self._callback}/{next(self._counter)}"
            request = urllib.request.Request(
                url,
                data=json.dumps(message).encode(),
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=CALLBACK_TIMEOUT) as response:
                    response.read()
            except OSError as exc:  # the suite ended the test: nothing to report to
                _log.debug("callback %s failed: %s", url, exc)


def stream_options(config: dict[str, Any]) -> dict[str, Any]:
    """The suite's stream options as EventStream keyword arguments; ValueError if
    one is malformed."""
    options: dict[str, Any] = {}
    read = config.get("readTimeoutMs")
    if read is not None:  # else eventstream's default, 60 s
        options["timeout"] = (CONNECT_TIMEOUT, _positive_ms(read, "readTimeoutMs"))
    delay = config.get("initialDelayMs")
    if delay is not None:
        initial = _positive_ms(delay, "initialDelayMs", allow_zero=True)
        maximum = max(initial, eventstream.Backoff().maximum)
        options["backoff"] = eventstream.Backoff(initial=initial, maximum=maximum)
    if config.get("lastEventId"):
        options["last_event_id"] = str(config["lastEventId"])
    headers = config.get("headers") or {}
    if not isinstance(headers, dict):
        raise ValueError("headers must be an object")
    options["headers"] = {str(k): str(v) for k, v in headers.items()}
    if config.get("method"):
        options["method"] = str(config["method"])
    if config.get("body") is not None:
        options["data"] = str(config["body"]).encode()
    return options


def _positive_ms(value: Any, name: str, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be positive")
    return value / 1000.0


class Service(ThreadingHTTPServer):
    """The HTTP side: status, create, command and close, as service_spec.md says."""

    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.clients: dict[str, Client] = {}
        self.clients_lock = threading.Lock()
        self.ids = itertools.count(1)

    def close_all(self) -> None:
        with self.clients_lock:
            clients = list(self.clients.values())
            self.clients.clear()
        for client in clients:
            if not client.stream.stop(timeout=STOP_TIMEOUT):
                _log.warning("a stream's worker did not stop in %s s", STOP_TIMEOUT)


class Handler(BaseHTTPRequestHandler):
    server: Service
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        if self.path != "/":
            return self._reply(404)
        return self._reply(200, {"capabilities": list(CAPABILITIES)})

    def do_POST(self) -> None:
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            return self._reply(400)
        if self.path == "/":
            return self._create(body)
        client = self._client()
        if client is None:
            return self._reply(404)
        if body.get("command") != "restart":
            return self._reply(400)
        client.stream.restart()
        return self._reply(204)

    def do_DELETE(self) -> None:
        if self.path == "/":
            self._reply(204)
            threading.Thread(target=self.server.shutdown, daemon=True).start()
            return None
        with self.server.clients_lock:
            client = self.server.clients.pop(self.path, None)
        if client is None:
            return self._reply(404)
        client.stream.stop(timeout=STOP_TIMEOUT)
        return self._reply(204)

    def _create(self, config: Any) -> None:
        try:
            if not isinstance(config, dict) or "streamUrl" not in config:
                raise ValueError("streamUrl is required")
            client = Client(config)
        except (KeyError, TypeError, ValueError) as exc:
            return self._reply(400, {"error": str(exc)})
        path = f"/streams/{next(self.server.ids)}"
        with self.server.clients_lock:
            self.server.clients[path] = client
        _log.debug("%s: %s", path, config.get("tag", ""))
        client.stream.start()
        return self._reply(201, location=path)

    def _client(self) -> Client | None:
        with self.server.clients_lock:
            return self.server.clients.get(self.path)

    def _reply(self, status: int, body: Any = None, *, location: str | None = None) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        self.send_response(status)
        if location is not None:
            self.send_header("Location", location)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", type=Path)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING)
    service = Service(args.port)

    def _terminate(signum: int, frame: Any) -> None:
        threading.Thread(target=service.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, _terminate)
    port = service.server_address[1]
    if args.port_file is not None:
        args.port_file.write_text(f"{port}\n")
    print(f"contract test service on http://127.0.0.1:{port}", file=sys.stderr, flush=True)
    try:
        service.serve_forever()
    finally:
        service.close_all()
        service.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
