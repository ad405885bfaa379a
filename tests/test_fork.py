"""Processes that fork: the child holds none of the stream's sockets and can start its
own; no worker thread imports anything for the first time; uWSGI's master defers a
start to its workers; a fork that ran no Python hook is noticed by the process id.

Each case runs a script in a fresh interpreter (a fork, an audit hook or a fake
``uwsgi`` module must not touch the test process); the feed server runs here, and the
script and the test talk over the script's stdin and stdout.
"""

from __future__ import annotations

import ast
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventstream.testing import RecordedRequest, Script, SSEServer

TIMEOUT = 30.0
needs_fork = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="needs os.fork and /proc/self/fd"
)

# Shared by the scripts: the socket inodes a process holds, and its eventfds (all share
# one anonymous inode: named by number), from /proc.
_SOCKETS = """
import os
def sockets():
    found = set()
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
        elif target == "anon_inode:[eventfd]":  # a worker's waker (Linux, 3.10+)
            found.add(name + ":" + target)
    return found
"""


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def _start(code: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(_SOCKETS) + textwrap.dedent(code), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # a forked child is killed with it, on failure
    )


def _finish(process: subprocess.Popen[str], tell: str = "") -> str:
    try:
        out, err = process.communicate(tell, timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # the script's group: it and its child
            process.communicate()
    assert process.returncode == 0, err
    return out


# The script: start a stream, say "started", fork when the test says so; the child
# lists the sockets it holds that the stream made, then starts its own stream.
_FORK_SCRIPT = """
import sys, threading
from eventstream import EventStream
before = sockets()
got = threading.Event()
stream = EventStream(sys.argv[1], on_event=lambda e: got.set(), timeout=(5, 30))
stream.start()
if sys.argv[2] == "streaming":
    assert got.wait(10)  # the worker reads the body: connection and wake-up pair open
print("started", flush=True)
sys.stdin.readline()  # the test: "fork now"
pid = os.fork()
if pid == 0:
    code = 3
    try:
        inherited = sockets() - before
        print("child inherited", sorted(inherited), "running", stream.running, flush=True)
        got.clear()
        stream.start()
        code = 0 if got.wait(10) and stream.stop(5) else 4
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
print("parent running", stream.running, "received", got.wait(10), flush=True)
stream.stop(5)
"""


@needs_fork
@pytest.mark.parametrize("when", ["streaming", "waiting for headers"])
def test_a_child_holds_no_socket_of_the_stream_and_starts_its_own(
    server: SSEServer, when: str
) -> None:
    headers_go = threading.Event()
    first = threading.Event()

    def parent_then_child(request: RecordedRequest) -> Script:
        if not first.is_set():  # the parent's connection
            first.set()
            if when == "waiting for headers":
                headers_go.wait(TIMEOUT)  # the fork comes before any byte is sent
            return Script().event("parent").hold()
        return Script().event("child").hold()

    server.default = parent_then_child
    process = _start(_FORK_SCRIPT, server.url, when.split(maxsplit=1)[0])
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    server.wait_for_requests(1, timeout=TIMEOUT)  # the parent's worker is connected
    process.stdin.write("fork\n")  # type: ignore[union-attr]
    process.stdin.flush()  # type: ignore[union-attr]
    child = process.stdout.readline()
    headers_go.set()
    out = child + _finish(process)
    assert "child inherited [] running False" in out
    assert "child exit 0" in out
    # The parent's connection was never shut down: it went on, and never reconnected.
    assert "parent running True received True" in out
    assert len(server.requests) == 2


_IMPORT_SCRIPT = """
import sys, threading, time
from eventstream import EventStream
from eventstream.testing import Script, SSEServer
imported = []
def audit(event, args):
    if event == "import" and threading.current_thread().name.startswith("eventstream-"):
        imported.append((threading.current_thread().name, args[0]))
sys.addaudithook(audit)
with SSEServer() as server:
    done = threading.Event()
    server.enqueue(Script(302, headers={"Location": server.url_for("/moved")}))
    server.enqueue(Script().event("a", id="1").drop())
    server.enqueue(Script(503))
    server.enqueue(Script(encoding="gzip").event("g", id="2").close())
    server.enqueue(Script(encoding="deflate").event("d", id="3").reset())
    server.default = Script().event("last", id="4").hold()
    url = server.url.replace("//", "//user:secret@")  # credentials: netrc is skipped
    for target in (server.url, url, "http://b\\u00fccher.invalid/", "http://127.0.0.1:1/"):
        stream = EventStream(
            target,
            on_event=lambda e: done.set() if e.data == "last" else None,
            on_error=lambda e: None,
            timeout=(2, 2),
        )
        stream.start()
        if target.startswith(server.url[:10]):
            assert done.wait(20)
            done.clear()
        else:
            stream.join(0.5)
        stream.stop(5)
print("imported on worker threads:", sorted(set(imported)))
"""


def test_no_worker_thread_imports_a_module_for_the_first_time() -> None:
    # A worker holding a module's import lock at a fork would leave it held in the
    # child, where the next import of that module waits forever (gunicorn --preload).
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_IMPORT_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT * 2,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "imported on worker threads: []" in result.stdout


_UWSGI_SCRIPT = """
import sys, threading, types
uwsgi = types.ModuleType("uwsgi")  # what uWSGI's master shows a Python app
uwsgi.worker_id = lambda: 0
uwsgi.mule_id = lambda: 0
uwsgi.masterpid = lambda: 0  # so uwsgidecorators, if installed, refuses to load
uwsgi.has_threads = int(sys.argv[2])
sys.modules["uwsgi"] = uwsgi
from eventstream import EventStream
got = threading.Event()
stream = EventStream(sys.argv[1], on_event=lambda e: got.set())
cancelled = EventStream(sys.argv[1], on_event=lambda e: None)
try:
    stream.start()
except RuntimeError as exc:
    print("refused:", exc)
    raise SystemExit(0)
cancelled.start()
cancelled.stop()  # stopped in the master: it must not start in the workers
print("master running", stream.running, threading.active_count(), flush=True)
uwsgi.worker_id = lambda: 1  # uWSGI forked worker 1 and calls its post-fork hook
uwsgi.post_fork_hook()
print("worker running", stream.running, cancelled.running, "received", got.wait(10))
stream.stop(5)
"""


def test_in_a_uwsgi_master_start_is_deferred_to_each_worker(server: SSEServer) -> None:
    # A thread running in uWSGI's master when it forks (in C, with no Python hook)
    # leaves every worker waiting forever for the GIL: the master must start nothing.
    server.default = Script().event("hi").hold()
    out = _finish(_start(_UWSGI_SCRIPT, server.url, "1"))
    assert "master running False 1" in out  # no thread started in the master
    assert "worker running True False received True" in out


def test_a_uwsgi_without_python_threads_is_refused_with_what_to_do(server: SSEServer) -> None:
    out = _finish(_start(_UWSGI_SCRIPT, server.url, "0"))
    assert "refused:" in out
    assert "--enable-threads" in out


_RAW_FORK_SCRIPT = """
import ctypes, faulthandler, sys, threading
from eventstream import EventStream
before = sockets()
got = threading.Event()
stream = EventStream(sys.argv[1], on_event=lambda e: got.set())
stream.start()
assert got.wait(10)
# fork(2) itself, as uWSGI does: no os.register_at_fork hook runs, so nothing resets
# the interpreter's own locks in the child either.  That is only safe while no other
# thread is taking or dropping the GIL: PyDLL keeps it across the call, and the worker
# must be parked in poll() or select() (the syscall it is in, from /proc), waiting.
(worker,) = [t for t in threading.enumerate() if t.name.startswith("eventstream-worker")]
# poll, ppoll; select, pselect6 (the suite's run without select.poll)
POLLS = {"x86_64": ("7", "271", "23", "270"), "aarch64": ("73", "72")}[os.uname().machine]
pause = threading.Event()
for _ in range(1000):
    with open(f"/proc/self/task/{worker.native_id}/syscall") as status:
        if status.read().split()[0] in POLLS:
            break
    pause.wait(0.005)
else:
    raise SystemExit("the worker never parked in poll()")
pid = ctypes.PyDLL(None).fork()
if pid == 0:
    code = 3
    faulthandler.dump_traceback_later(20, exit=True)  # a hang shows where, and ends
    try:
        running = stream.running  # the stream's first use in the child notices the fork
        inherited = sockets() - before
        got.clear()
        stream.start()
        ok = not running and not inherited and got.wait(10) and stream.stop(5)
        code = 0 if ok else 4
    finally:
        os._exit(code)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
stream.stop(5)
"""


@needs_fork
@pytest.mark.skipif(
    os.uname().machine not in ("x86_64", "aarch64"), reason="poll's syscall number unknown"
)
def test_a_fork_without_python_hooks_is_noticed_on_the_next_use(server: SSEServer) -> None:
    server.default = Script().event("hi").hold()
    process = _start(_RAW_FORK_SCRIPT, server.url)
    out, err = process.communicate(timeout=TIMEOUT)
    assert "child exit 0" in out, err


def test_the_fork_module_needs_only_the_standard_library() -> None:
    # _transport, _worker and _control all import it: it must stay a leaf.
    path = Path(__file__).resolve().parent.parent / "eventstream" / "_fork.py"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, "the fork module imports nothing of the package"
            names.add((node.module or "").split(".")[0])
    if hasattr(sys, "stdlib_module_names"):  # Python 3.10+
        assert names <= set(sys.stdlib_module_names) | {"__future__"}


# A patch of ``threading`` while a worker runs (as gevent's would be, seen from the
# stream: ``threading.Lock`` becomes another type), then a reconnect, then a fork.
_PATCH_WHILE_RUNNING_SCRIPT = """
import sys, threading
from eventstream import EventStream
before = sockets()
second = threading.Event()
stream = EventStream(
    sys.argv[1], on_event=lambda e: e.data == "2" and second.set(), timeout=(5, 30)
)
stream.start()
native = threading.Lock
class PatchedLock:
    def __init__(self):
        self._lock = native()
    def acquire(self, *args, **kwargs):
        return self._lock.acquire(*args, **kwargs)
    def release(self):
        self._lock.release()
    def locked(self):
        return self._lock.locked()
    __enter__ = acquire
    def __exit__(self, *exc):
        self.release()
threading.Lock = PatchedLock
print("running", stream.running, flush=True)  # the first use since the patch
assert second.wait(10)  # on the worker's new connection, made after the patch
pid = os.fork()
if pid == 0:
    os._exit(0 if not sockets() - before else 3)
_, status = os.waitpid(pid, 0)
print("child exit", os.waitstatus_to_exitcode(status), flush=True)
stream.stop(5)
"""


@needs_fork
def test_a_worker_running_through_a_patch_still_keeps_its_sockets_from_a_child(
    server: SSEServer,
) -> None:
    # The worker's mark ("this thread's sockets are the stream's") is per thread; a
    # patch while it runs must not renew the marks, or the sockets it makes after
    # would stay open in a forked child.
    patched = threading.Event()
    server.enqueue(Script().event("1", retry=10).wait(patched), Script().event("2").hold())
    process = _start(_PATCH_WHILE_RUNNING_SCRIPT, server.url)
    assert process.stdout is not None
    assert process.stdout.readline() == "running True\n"
    patched.set()  # the first connection ends: the worker connects again
    assert "child exit 0" in _finish(process)
