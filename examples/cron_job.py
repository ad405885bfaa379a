"""A cron job: take the events published since the last run, then exit.

The last event ID is kept in a state file, written atomically after each event, so
consecutive runs neither lose nor repeat events (on servers that honour
``Last-Event-ID``).  The run ends once the stream has been quiet for a while.
The command-line tool does the same: ``eventstream URL --state FILE --idle-exit 5``.

Run:  python examples/cron_job.py URL STATE_FILE
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

from eventstream import EventStream


def read_state(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return ""


def write_state(path: Path, last_event_id: str) -> None:
    # Write a temporary file beside the target, then rename it over the target:
    # a crash leaves either the old or the new ID, never half of one.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(last_event_id)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def main(url: str, state_file: str, quiet_seconds: float = 2.0) -> None:
    path = Path(state_file)
    stream = EventStream(url, last_event_id=read_state(path))
    activity = threading.Event()

    def watchdog() -> None:
        # Stop the stream once no event arrived for quiet_seconds.
        while activity.wait(quiet_seconds):
            activity.clear()
        stream.stop()

    guard = threading.Thread(target=watchdog, daemon=True)
    guard.start()
    with stream:
        for event in stream:
            print(event.data)
            if event.id:
                write_state(path, event.id)
            activity.set()
    guard.join()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
