"""contract-tests/service.py, the test service of LaunchDarkly's SSE contract suite:
its mapping of the suite's options, and one stream driven as the suite drives it.
(The suite itself runs in .ci/run where its binary is available.)"""

from __future__ import annotations

import importlib.util
import json
import queue
import threading
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import eventstream
from eventstream.testing import Script, SSEServer

WAIT = 5.0
PATH = Path(__file__).resolve().parent.parent / "contract-tests" / "service.py"


@pytest.fixture(scope="module")
def service() -> ModuleType:
    spec = importlib.util.spec_from_file_location("contract_service", PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_option_of_the_suite_maps_onto_eventstream(service: ModuleType) -> None:
    config = {
        "streamUrl": "http://127.0.0.1:1/s",
        "callbackUrl": "http://127.0.0.1:1/c",
        "initialDelayMs": 20,
        "readTimeoutMs": 1500,
        "lastEventId": "7",
        "headers": {"x-a": "1", "content-type": "text/plain"},
        "method": "REPORT",
        "body": "hello",
    }
    assert service.stream_options(config) == {
        "timeout": (5.0, 1.5),
        "backoff": eventstream.Backoff(initial=0.02),
        "last_event_id": "7",
        "headers": {"x-a": "1", "content-type": "text/plain"},
        "method": "REPORT",
        "data": b"hello",
    }
    assert service.stream_options({}) == {"headers": {}}  # eventstream's defaults


@pytest.mark.parametrize(
    "config", [{"readTimeoutMs": "1"}, {"readTimeoutMs": 0}, {"initialDelayMs": -1}]
)
def test_malformed_options_are_refused(service: ModuleType, config: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="Ms"):
        service.stream_options(config)


class _Callbacks(ThreadingHTTPServer):
    """The suite's side: receives the numbered callback messages."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _CallbackHandler)
        self.messages: queue.Queue[tuple[str, Any]] = queue.Queue()


class _CallbackHandler(BaseHTTPRequestHandler):
    server: _Callbacks

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.messages.put((self.path, json.loads(body)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def running(service: ModuleType) -> Iterator[tuple[str, _Callbacks]]:
    app = service.Service(0)
    callbacks = _Callbacks()
    threads = [threading.Thread(target=s.serve_forever) for s in (app, callbacks)]
    for thread in threads:
        thread.start()
    try:
        yield f"http://127.0.0.1:{app.server_address[1]}", callbacks
    finally:
        app.shutdown()
        callbacks.shutdown()
        for thread in threads:
            thread.join(WAIT)
        app.close_all()
        app.server_close()
        callbacks.server_close()


def _call(method: str, url: str, body: Any = None) -> tuple[int, Any, str | None]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    with urllib.request.urlopen(request, timeout=WAIT) as response:
        text = response.read()
        return response.status, json.loads(text) if text else None, response.headers["Location"]


def test_a_stream_driven_as_the_suite_drives_it(running: tuple[str, _Callbacks]) -> None:
    url, callbacks = running
    status, info, _ = _call("GET", url)
    assert status == 200
    assert "comments" in info["capabilities"]
    with SSEServer() as server:
        server.enqueue(Script().send(b": hi\n").event("a", id="1", event="put").hold())
        base = f"http://127.0.0.1:{callbacks.server_address[1]}/endpoints/1"
        config = {"streamUrl": server.url, "callbackUrl": base, "headers": {"x-t": "1"}}
        status, _, location = _call("POST", url, config)
        assert status == 201
        assert location is not None
        got = [callbacks.messages.get(timeout=WAIT) for _ in range(2)]
        assert got == [
            ("/endpoints/1/1", {"kind": "comment", "comment": " hi"}),
            ("/endpoints/1/2", {"kind": "event", "event": {"type": "put", "data": "a", "id": "1"}}),
        ]
        (request,) = server.wait_for_requests(1)
        assert request.headers["x-t"] == "1"
        assert _call("DELETE", url + location)[0] == 204
