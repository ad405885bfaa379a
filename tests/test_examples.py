"""Every script in examples/ runs against the real test server, so the docs cannot rot."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import textwrap
import time
import traceback
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
    state, output = tmp_path / "last-id", tmp_path / "events.jsonl"
    args = (server.url, str(state), str(output), "--idle", "0.5")
    first = run_example("cron_job.py", *args)
    assert first.returncode == 0, first.stderr
    assert [json.loads(line)["data"] for line in output.read_text().splitlines()] == [
        "event 1",
        "event 2",
        "event 3",
    ]
    published[0] = 5
    second = run_example("cron_job.py", *args)
    assert second.returncode == 0, second.stderr
    assert [json.loads(line)["id"] for line in output.read_text().splitlines()] == [
        "1",
        "2",
        "3",
        "4",
        "5",
    ]  # none lost or repeated
    assert state.read_text() == "5\n"


def test_cron_job_repairs_what_a_kill_can_leave(server: SSEServer, tmp_path: Path) -> None:
    # A kill between the write and the save of the ID, then mid-write: the output is
    # ahead of the state file by one event and ends with a torn line.
    server.default = busy_feed
    state, output = tmp_path / "last-id", tmp_path / "events.jsonl"
    state.write_text("1\n")
    output.write_bytes(b'{"id": "1", "data": "1"}\n{"id": "2", "data": "2"}\n{"id": "3", "da')
    result = run_example("cron_job.py", server.url, str(state), str(output), "--max-time", "0.5")
    assert result.returncode == 0, result.stderr
    assert server.requests[0].headers["Last-Event-ID"] == "2"  # not 1: event 2 is written
    assert_exactly_once(output, state)


BUSY_BURST = 10  # events per write burst of the busy feed
BUSY_EVENTS = 100  # events per response; then the body ends and the client reconnects


def busy_feed(request: RecordedRequest) -> Script:
    """Numbered events after the request's Last-Event-ID, about 1000 a second."""
    start = int(request.headers.get("Last-Event-ID", "0"))
    script = Script()
    for n in range(start + 1, start + BUSY_EVENTS + 1):
        script = script.event(str(n), id=str(n), retry=10)
        if n % BUSY_BURST == 0:
            script = script.pause(0.01)
    return script


def assert_exactly_once(output: Path, state: Path) -> list[int]:
    ids = [int(json.loads(line)["id"]) for line in output.read_text().splitlines()]
    assert ids, "no event was written"
    repeated = len(ids) - len(set(ids))
    lost = sorted(set(range(1, max(ids) + 1)) - set(ids))
    assert (repeated, lost[:10]) == (0, []), f"{repeated} repeated, lost: {lost[:10]}..."
    assert ids == sorted(ids)
    assert state.read_text() == f"{ids[-1]}\n"
    return ids


KILLS = 24  # half SIGKILL, half SIGTERM, in a random order


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_for_growth(process: subprocess.Popen[bytes], output: Path, start: int) -> None:
    """Wait (bounded, on the process) until this run has written an event."""
    deadline = time.monotonic() + TIMEOUT
    while size(output) == start and time.monotonic() < deadline:
        try:
            process.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            continue
        return  # it ended by itself: the caller's check reports it


def test_cron_job_killed_at_random_points_loses_and_repeats_nothing(
    server: SSEServer, tmp_path: Path
) -> None:
    server.default = busy_feed
    state, output = tmp_path / "last-id", tmp_path / "events.jsonl"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    kinds = [signal.SIGKILL, signal.SIGTERM] * (KILLS // 2)
    rng.shuffle(kinds)
    args = [sys.executable, str(EXAMPLES / "cron_job.py"), server.url, str(state), str(output)]
    clean_stops = mid_stream = 0
    for run, kind in enumerate(kinds):
        before = size(output)
        with subprocess.Popen([*args, "--idle", "5", "--max-time", "20"]) as process:
            # Every other run is killed at any point (starting up, connecting...),
            # the others once events flow: a machine under load then still tests
            # kills mid-stream.
            if run % 2:
                wait_for_growth(process, output, before)
            try:
                process.wait(timeout=rng.uniform(0.0, 0.3) if run % 2 else rng.uniform(0.05, 0.9))
            except subprocess.TimeoutExpired:
                process.send_signal(kind)
            returncode = process.wait(timeout=TIMEOUT)
        assert returncode in (0, -kind), (seed, run, kind, returncode)  # -15: before its handler
        clean_stops += kind == signal.SIGTERM and returncode == 0
        mid_stream += size(output) > before
    final = run_example("cron_job.py", server.url, str(state), str(output), "--max-time", "1")
    assert final.returncode == 0, final.stderr
    ids = assert_exactly_once(output, state)
    print(
        f"seed {seed}: {KILLS} kills ({mid_stream} mid-stream, {clean_stops} clean SIGTERM "
        f"stops), {len(ids)} events checked: 0 lost, 0 repeated"
    )
    assert clean_stops >= 1  # the SIGTERM handler's path was taken
    assert mid_stream >= KILLS // 2


def test_cron_job_signalled_before_its_stream_starts_still_ends(
    server: SSEServer, tmp_path: Path
) -> None:
    # SIGTERM right after the handler is installed, before the stream starts: a stop
    # made then would be undone by start(), and on a busy feed the run would go on
    # until --max-time (here far beyond the wait) instead of ending at once.
    server.default = busy_feed
    state, output = tmp_path / "last-id", tmp_path / "events.jsonl"
    script = EXAMPLES / "cron_job.py"
    code = f"""
import runpy, signal, sys
import eventstream
made = eventstream.EventStream.__init__
def make_then_signal(self, *args, **kwargs):
    made(self, *args, **kwargs)
    signal.raise_signal(signal.SIGTERM)  # the handler runs now, before start()
eventstream.EventStream.__init__ = make_then_signal
sys.argv = [{str(script)!r}, {server.url!r}, {str(state)!r}, {str(output)!r},
            "--idle", "120", "--max-time", "120"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 20  # ended by the signal, not by a limit


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


# -- README's migration section and names --------------------------------------------

README = EXAMPLES.parent / "README.rst"


def migration_blocks() -> list[str]:
    """The ``.. code-block:: python`` blocks of README's migration section."""
    text = README.read_text(encoding="utf-8")
    section = text.split("Migrating from sseclient-py\n", 1)[1]
    section = section.split("\nThe parser on its own\n", 1)[0]
    blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", section)
    return [textwrap.dedent(block) for block in blocks]


def run_follow(block: str, url: str) -> list[str]:
    namespace: dict[str, object] = {}
    exec(compile(block, "README.rst", "exec"), namespace)
    handled: list[str] = []
    follow = namespace["follow"]
    assert callable(follow)
    follow(url, handled.append)
    return handled


@pytest.mark.parametrize("side", ["sseclient-py", "eventstream"])
def test_migration_code_reads_the_same_events(server: SSEServer, side: str) -> None:
    pytest.importorskip("sseclient")
    before, after = migration_blocks()
    server.enqueue(Script().event("one", id="1", retry=10).event("two", id="2").close())
    server.default = Script(204)  # what eventstream's reconnect gets: the stream is over
    block = before if side == "sseclient-py" else after
    assert run_follow(block, server.url) == ["one", "two"]


@pytest.mark.parametrize("side", ["sseclient-py", "eventstream"])
def test_migration_code_maps_a_404(
    server: SSEServer, side: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("sseclient")
    before, after = migration_blocks()
    assert run_follow(before if side == "sseclient-py" else after, server.url) == []
    assert capsys.readouterr().out == "refused: 404\n"


def test_public_exceptions_print_their_public_path() -> None:
    import eventstream

    for name in ("EventStreamError", "HTTPStatusError", "RetriesExhausted", "ConnectError"):
        cls = getattr(eventstream, name)
        assert repr(cls) == f"<class 'eventstream.{name}'>"
    error = eventstream.HTTPStatusError("HTTP 404 from u", status_code=404)
    assert traceback.format_exception_only(type(error), error) == [
        "eventstream.HTTPStatusError: HTTP 404 from u\n"
    ]


def test_docstrings_cite_sections_that_exist() -> None:
    doc = (EXAMPLES.parent / "docs" / "architecture.rst").read_text(encoding="utf-8")
    headings = set(re.findall(r"\n([^\n]+)\n-{3,}\n", doc))
    package = EXAMPLES.parent / "eventstream"
    cited = {
        match
        for path in package.rglob("*.py")
        for match in re.findall(r'docs/architecture\.rst, "([^"]+)"', path.read_text("utf-8"))
    }
    assert cited  # the docstrings do cite it
    assert cited <= headings
    for path in [*package.rglob("*.py"), README]:
        assert "ARCHITECTURE.md" not in path.read_text(encoding="utf-8"), path


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
