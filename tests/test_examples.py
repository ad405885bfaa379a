"""Every script in examples/ runs against the real test server, so the docs cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstream.testing import RecordedRequest, Script, SSEServer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
TIMEOUT = 60


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def numbered(request: RecordedRequest) -> Script:
    """Events numbered after the request's Last-Event-ID, then silence."""
    start = int(request.headers.get("Last-Event-ID", "0"))
    script = Script()
    for n in range(start + 1, start + 4):
        script = script.event(f"event {n}", id=str(n))
    return script.pause(0.2).close()


def test_blocking_script(server: SSEServer) -> None:
    server.default = numbered
    result = run_example("blocking_script.py", server.url, "3")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "1: message event 1",
        "2: message event 2",
        "3: message event 3",
    ]


def test_cron_job_resumes_where_the_last_run_ended(server: SSEServer, tmp_path: Path) -> None:
    published = [3]  # events 1..published[0] exist on the server

    def feed(request: RecordedRequest) -> Script:
        script = Script()
        for n in range(int(request.headers.get("Last-Event-ID", "0")) + 1, published[0] + 1):
            script = script.event(f"event {n}", id=str(n))
        return script.hold()

    server.default = feed
    state = tmp_path / "last-id"
    first = run_example("cron_job.py", server.url, str(state))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["event 1", "event 2", "event 3"]
    published[0] = 5
    second = run_example("cron_job.py", server.url, str(state))
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["event 4", "event 5"]  # none lost or repeated


def test_wsgi_app_serves_events_from_the_background_stream(server: SSEServer) -> None:
    server.default = Script().event("a", id="1").event("b", id="2").hold()
    code = f"""
import json, sys, time
sys.path.insert(0, {str(EXAMPLES)!r})
from wsgi_app import make_app
app, stream = make_app({server.url!r})
statuses = []
def fetch():
    body = b"".join(app({{}}, lambda status, headers: statuses.append(status)))
    return json.loads(body)
fetch()  # the first request starts the stream
deadline = time.monotonic() + 10
while len(fetch()["events"]) < 2 and time.monotonic() < deadline:
    stream.join(0.01)  # a bounded wait between polls of the app
print(json.dumps(fetch()))
assert stream.stop(5)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert [e["data"] for e in json.loads(result.stdout)["events"]] == ["a", "b"]


def test_token_rotation(server: SSEServer) -> None:
    server.enqueue(Script().event("a", id="1").event("b", id="2").hold())
    server.enqueue(Script().event("c", id="3").event("d", id="4").hold())
    result = run_example("token_rotation.py", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["1: a", "2: b", "3: c", "4: d"]
    first, second = server.wait_for_requests(2)
    assert first.headers["Authorization"] == "Bearer token-1"
    assert second.headers["Authorization"] == "Bearer token-2"
    assert second.headers["Last-Event-ID"] == "2"


def test_oneshot_post(server: SSEServer) -> None:
    script = Script()
    for word in ["Hello", ", ", "world"]:
        script = script.event(word, event="token")
    server.enqueue(script.event("", event="done").close())
    result = run_example("oneshot_post.py", server.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["status 200", "Hello, world"]
    assert server.requests[0].body == b'{"prompt": "Say hello"}'


@pytest.mark.parametrize(
    ("script", "code", "message"),
    [
        (Script(404).send(b"no such stream"), 2, "refused: HTTP 404"),
        (Script(headers={"Content-Type": "text/html"}).send(b"<p>"), 2, "not an event stream"),
        (Script(503), 1, "gave up"),
        (Script(204), 0, ""),
    ],
)
def test_error_handling(server: SSEServer, script: Script, code: int, message: str) -> None:
    server.default = script
    result = run_example("error_handling.py", server.url)
    assert result.returncode == code, result.stderr
    assert message in result.stderr


def test_testing_example_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        cwd=EXAMPLES,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


def test_prefork_app_answers_with_its_own_process_events(server: SSEServer) -> None:
    # Under the real servers: tests/test_servers.py (the servers extra).  Here, one
    # request in a plain process, with the stream started at import.
    server.default = Script().event("tick", id="1").hold()
    code = (
        "import json, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from examples import prefork_app as app\n"
        "body = b''.join(app.application({}, lambda status, headers: None))\n"
        "print(body.decode())\n"
        "app.stream.stop(5)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(EXAMPLES.parent)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "PREFORK_FEED": server.url},
    )
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["running"] is True
    assert answer["events"] == 1
    assert answer["errors"] == 0
