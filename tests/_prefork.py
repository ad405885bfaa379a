"""Run a real pre-forking WSGI server once, and check what each worker does.

One start: launch the server (its own process group) serving
``examples/prefork_app.py``, read its log for the worker pids, ask until every worker
has answered (each answer within ``ANSWER_LIMIT``) with at least one event, list the
stream connections each process holds (``/proc``), then SIGTERM the server and time
how long every process takes to exit.  The feed is the test's own ``SSEServer``.

The recipes are README.rst's commands, verbatim (``test_docs`` checks that).
"""

from __future__ import annotations

import json
import os
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ANSWER_LIMIT = 2.0  # seconds: every worker answers within this
SETTLE_LIMIT = 10.0  # seconds after the server is up for every worker to have events
EXIT_LIMIT = 5.0  # seconds after SIGTERM for every process to be gone
BOOT_LIMIT = 20.0
PORT = "8000"  # as written in README.rst; replaced by a free port

# The README's recipes: name -> command.  The app starts its stream at import unless
# PREFORK_START=request (then on each process's first request).
_APP = "examples.prefork_app:application"
_GUNICORN = f"gunicorn -w 2 -b 127.0.0.1:{PORT}"
_UWSGI = f"uwsgi --master --processes 2 --die-on-term --http-socket 127.0.0.1:{PORT}"
RECIPES: dict[str, str] = {
    "gunicorn-sync": f"{_GUNICORN} {_APP}",
    "gunicorn-sync-preload": f"{_GUNICORN} --preload {_APP}",
    "gunicorn-gthread": f"{_GUNICORN} -k gthread --threads 4 {_APP}",
    "gunicorn-gthread-preload": f"{_GUNICORN} -k gthread --threads 4 --preload {_APP}",
    "gunicorn-gevent": f"{_GUNICORN} -k gevent {_APP}",
    "gunicorn-gevent-preload": f"{_GUNICORN} -k gevent --preload {_APP}",
    "uwsgi": f"{_UWSGI} --module {_APP}",
    "uwsgi-threads": f"{_UWSGI} --enable-threads --module {_APP}",
    "uwsgi-lazy": f"{_UWSGI} --lazy-apps --module {_APP}",
    "uwsgi-threads-lazy": f"{_UWSGI} --enable-threads --lazy-apps --module {_APP}",
    "waitress": f"waitress-serve --listen=127.0.0.1:{PORT} {_APP}",
}
# What the log says when a worker is up: its pid in group 1.
_WORKER_LINE = {
    "gunicorn": re.compile(r"Booting worker with pid: (\d+)"),
    "uwsgi": re.compile(r"spawned uWSGI worker \d+ \(pid: (\d+)"),
    "waitress": re.compile(r"Serving on http://"),
}
_WORKERS = {"gunicorn": 2, "uwsgi": 2, "waitress": 1}


@dataclass
class Start:
    """What one start of a server showed."""

    answered: dict[int, float] = field(default_factory=dict)  # pid -> first answer (s)
    hung: list[int] = field(default_factory=list)  # workers that never had events
    slow: list[float] = field(default_factory=list)  # answers over ANSWER_LIMIT
    inherited: list[str] = field(default_factory=list)  # stream sockets in 2 processes
    streams: dict[int, int] = field(default_factory=dict)  # pid -> feed connections
    exit_seconds: float = 0.0
    log: list[str] = field(default_factory=list)


def command(recipe: str) -> tuple[list[str], int]:
    """The recipe's argv, with the venv's executables and a free port; and the port."""
    port = _free_port()
    argv = RECIPES[recipe].replace(PORT, str(port)).split()
    argv[0] = str(Path(sys.executable).parent / argv[0])
    if argv[0].endswith("uwsgi") and sys.prefix != sys.base_prefix:
        argv += ["--virtualenv", sys.prefix]  # the pip-built uwsgi embeds the base Python
    return argv, port


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_once(recipe: str, feed_url: str, start: str) -> Start:
    """Start the server, check every worker, SIGTERM it; never leaves a process."""
    argv, port = command(recipe)
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PREFORK_FEED": feed_url, "PREFORK_START": start, "PYTHONPATH": str(ROOT)}
    kind = recipe.split("-", maxsplit=1)[0]
    result = Start()
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_read_log, args=(process, lines, result.log), daemon=True)
    reader.start()
    try:
        workers = _wait_for_workers(kind, process.pid, lines)
        _ask_every_worker(base, workers, result)
        pids = sorted({process.pid, *workers})
        result.streams, result.inherited = _feed_sockets(pids, feed_url)
        result.exit_seconds = _terminate(process, workers)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # our own server's group, on failure
            process.wait(EXIT_LIMIT)
        reader.join(EXIT_LIMIT)
        if process.stdout is not None:
            process.stdout.close()
    return result


def _read_log(
    process: subprocess.Popen[str], lines: queue.Queue[str | None], log: list[str]
) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        log.append(line.rstrip())
        lines.put(line)
    lines.put(None)


def _wait_for_workers(kind: str, master: int, lines: queue.Queue[str | None]) -> list[int]:
    pattern, wanted = _WORKER_LINE[kind], _WORKERS[kind]
    workers: list[int] = []
    deadline = time.monotonic() + BOOT_LIMIT
    while len(workers) < wanted:
        line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        if line is None:
            raise AssertionError("the server exited before its workers were up")
        match = pattern.search(line)
        if match:
            workers.append(int(match.group(1)) if match.groups() else master)
    return workers


def _ask_every_worker(base: str, workers: list[int], result: Start) -> None:
    """Ask from two threads until every worker answered with an event (or time is up)."""
    started = time.monotonic()
    deadline = started + SETTLE_LIMIT
    pending = set(workers)
    lock = threading.Lock()

    def ask() -> None:
        while time.monotonic() < deadline:
            with lock:
                if not pending:
                    return
            sent = time.monotonic()
            try:
                with urllib.request.urlopen(base + "/", timeout=ANSWER_LIMIT) as response:
                    answer = json.loads(response.read())
            except OSError:
                with lock:
                    result.slow.append(time.monotonic() - sent)
                continue
            took = time.monotonic() - sent
            with lock:
                if took > ANSWER_LIMIT:
                    result.slow.append(took)
                pid = answer["pid"]
                result.answered.setdefault(pid, time.monotonic() - started)
                if answer["events"] >= 1:
                    pending.discard(pid)

    askers = [threading.Thread(target=ask) for _ in range(2)]
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(SETTLE_LIMIT + ANSWER_LIMIT + 1)
    result.hung = sorted(pending)


def _feed_sockets(pids: list[int], feed_url: str) -> tuple[dict[int, int], list[str]]:
    """Per process, its TCP connections to the feed; and any held by two processes."""
    if not Path("/proc/net/tcp").exists():
        return {}, []  # no /proc: the check is skipped (the caller says so)
    feed_port = int(feed_url.rsplit(":", 1)[1].split("/", maxsplit=1)[0])
    to_feed = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == feed_port:
                to_feed.add(fields[9])  # the inode of a client socket to the feed
    holders: dict[str, list[int]] = {}
    streams: dict[int, int] = {}
    for pid in pids:
        inodes = _socket_inodes(pid) & to_feed
        streams[pid] = len(inodes)
        for inode in inodes:
            holders.setdefault(inode, []).append(pid)
    shared = [f"socket:[{inode}] in {pids}" for inode, pids in holders.items() if len(pids) > 1]
    return streams, shared


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for name in names:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _terminate(process: subprocess.Popen[str], workers: list[int]) -> float:
    """SIGTERM the server; seconds until it and every worker are gone (inf if not)."""
    handles = [_exit_handle(pid) for pid in workers if pid != process.pid]
    try:
        sent = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(EXIT_LIMIT)
        except subprocess.TimeoutExpired:
            return float("inf")
        for handle in handles:
            if handle is not None and not _wait_exit(handle, sent + EXIT_LIMIT):
                return float("inf")
        return time.monotonic() - sent
    finally:
        for handle in handles:
            if handle is not None:
                os.close(handle)


def _exit_handle(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)  # readable once the process has exited
    except (AttributeError, OSError):
        return None  # gone already, or no pidfd here: the master's exit must do


def _wait_exit(handle: int, deadline: float) -> bool:
    readable, _, _ = select.select([handle], [], [], max(0.0, deadline - time.monotonic()))
    return bool(readable)
