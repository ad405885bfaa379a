"""A cron job: append the events published since the last run to a file, then exit.

Every event reaches OUTPUT exactly once across runs, even when a run is killed at
any point (SIGKILL included), on servers that give each event an ID and honour
``Last-Event-ID``:

1. each event is appended to OUTPUT as one JSON line, flushed and fsynced;
2. only then is its ID saved in STATE (a temporary file, fsync, rename, fsync of the
   directory), so a saved ID always names an event that is on disk;
3. a run starts by repairing what a kill can leave: a torn last line of OUTPUT (a
   kill mid-write) is cut off, and if OUTPUT's last event is not the one STATE names
   (a kill between steps 1 and 2), STATE catches up with it.  The server delivers
   at least once; this check removes the one event a kill can repeat.

A run ends once no event came for ``--idle`` seconds, after ``--max-time`` seconds
in all (keep it below the cron interval), or on SIGTERM or SIGINT, which finish the
event being written first.  The command-line tool does the same in one line:
``eventstream -q --state STATE --idle-exit 5 --max-time 240 URL >> OUTPUT``.

Run:  python examples/cron_job.py URL STATE_FILE OUTPUT_FILE [--idle S] [--max-time S]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from eventstream import EventStream


def read_state(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").rstrip("\n")
    except FileNotFoundError:
        return ""


def write_state(path: Path, last_event_id: str) -> None:
    # A temporary file beside the target, renamed over it: a crash leaves the old
    # ID or the new one, never half of one.  The directory's fsync keeps the rename.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(last_event_id + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def repair_output(path: Path) -> str | None:
    """Cut a torn last line off OUTPUT; return the ID of its last event (None if empty)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) < len(data):
        with path.open("r+b") as handle:
            handle.truncate(len(complete))
            os.fsync(handle.fileno())
    lines = complete.splitlines()
    return str(json.loads(lines[-1])["id"]) if lines else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("url")
    parser.add_argument("state", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--idle", type=float, default=5.0, help="quiet seconds that end a run")
    parser.add_argument("--max-time", type=float, default=240.0, help="seconds a run may last")
    args = parser.parse_args()

    start_id = read_state(args.state)
    written = repair_output(args.output)
    if written is not None and written != start_id:
        start_id = written  # killed after the write, before the save: catch up
        write_state(args.state, start_id)

    done = threading.Event()  # set by a signal, or by the guard when time is up
    for signum in (signal.SIGTERM, signal.SIGINT):
        # The handler only sets a flag: the event being written is finished first.
        signal.signal(signum, lambda *_: done.set())
    stream = EventStream(args.url, last_event_id=start_id)
    last_event = [time.monotonic()]
    deadline = time.monotonic() + args.max_time

    def guard() -> None:
        # Stops the stream (the one safe way from another thread) when time is up.
        while True:
            now = time.monotonic()
            left = min(deadline - now, last_event[0] + args.idle - now)
            if left <= 0 or done.wait(left):
                stream.stop()
                return

    watcher = threading.Thread(target=guard, name="cron-guard", daemon=True)
    with stream, args.output.open("ab") as output:
        # The guard starts once the stream has: a stop made before start() would be
        # undone by it, and a signal that came early would leave the run unbounded.
        watcher.start()
        for event in stream:
            line = {"id": event.id, "event": event.event, "data": event.data}
            output.write(json.dumps(line).encode("utf-8") + b"\n")
            output.flush()
            os.fsync(output.fileno())  # 1. the event is on disk ...
            write_state(args.state, event.id)  # 2. ... before its ID is saved
            last_event[0] = time.monotonic()
    for signum in (signal.SIGTERM, signal.SIGINT):
        # The run is over; and a handler must not set ``done`` while we do (its lock).
        signal.signal(signum, signal.SIG_IGN)
    done.set()
    watcher.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
