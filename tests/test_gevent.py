"""Streams made before gevent monkey-patches ``threading``, used after it.

That is gunicorn's gevent worker with ``--preload``: the app, and its streams, are
made in the master; each worker patches after the fork.  The streams' locks were
native then, and a greenlet that waits while holding one (``start()`` waits for its
worker to begin; an iterating consumer waits on its doorbell) would block every
greenlet of the process.  Each case runs a script in a fresh interpreter (the patch
is for the whole process); a hung script prints its stack and exits non-zero.

gevent is in the ``test`` extra; skipped without it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventstream
from eventstream.testing import Script, SSEServer

pytest.importorskip("gevent")

HANG = 10  # seconds after which a script dumps its stack and exits
TIMEOUT = 30.0

_PROLOGUE = f"""
import faulthandler, sys
faulthandler.dump_traceback_later({HANG}, exit=True)
from eventstream import EventStream
url = sys.argv[1]
"""


@pytest.fixture
def url() -> Iterator[str]:
    with SSEServer() as server:
        server.default = Script().event("tick", id="1").hold()
        yield server.url + "/events"


def _run(code: str, url: str, where: Path) -> list[str]:
    # A file, not -c: tools that walk the stack (mutmut) resolve each frame's file.
    script = where / "script.py"
    script.write_text(textwrap.dedent(_PROLOGUE) + textwrap.dedent(code), encoding="utf-8")
    package_root = str(Path(eventstream.__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-W", "ignore", str(script), url],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**os.environ, "PYTHONPATH": package_root},  # this eventstream, not another
    )
    assert done.returncode == 0, f"the script hung or failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout.split()


def test_concurrent_starts_and_a_restart_in_greenlets(url: str, tmp_path: Path) -> None:
    said = _run(
        """
        seen = []
        def on_event(event):  # on the worker: a greenlet once patched
            seen.append(event.data)
            arrived.set()
        stream = EventStream(url, on_event=on_event)
        from gevent import monkey
        monkey.patch_all()
        import gevent, gevent.event
        arrived = gevent.event.Event()
        # Two first requests at once, each starting the stream: the first waits in
        # start() for its worker while the second asks for the same lock.
        starters = [gevent.spawn(stream.start) for _ in range(2)]
        gevent.joinall(starters, raise_error=True)
        print(arrived.wait(5))
        arrived.clear()
        gevent.spawn(stream.restart).join()
        print(arrived.wait(5))  # the new worker's connection
        print(len(seen), stream.stop(5), stream.running)
        """,
        url,
        tmp_path,
    )
    assert said == ["True", "True", "2", "True", "False"]


def test_concurrent_first_restarts_in_greenlets(url: str, tmp_path: Path) -> None:
    # restart() is a first use too: it must not take the locks made before the patch.
    said = _run(
        """
        arrived = None
        stream = EventStream(url, on_event=lambda event: arrived.set())
        from gevent import monkey
        monkey.patch_all()
        import gevent, gevent.event
        arrived = gevent.event.Event()
        gevent.joinall([gevent.spawn(stream.restart) for _ in range(2)], raise_error=True)
        print(arrived.wait(5), stream.stop(5), stream.running)
        """,
        url,
        tmp_path,
    )
    assert said == ["True", "True", "False"]


def test_iterating_in_one_greenlet_stopped_from_another(url: str, tmp_path: Path) -> None:
    said = _run(
        """
        stream = EventStream(url)
        from gevent import monkey
        monkey.patch_all()
        import gevent, gevent.event
        seen, first = [], gevent.event.Event()
        def consume():
            for event in stream:  # waits on the doorbell between events
                seen.append(event.data)
                first.set()
        consumer = gevent.spawn(consume)
        print(first.wait(5))
        print(stream.stop(5))
        consumer.join(5)
        print(consumer.successful(), seen)
        """,
        url,
        tmp_path,
    )
    assert said == ["True", "True", "True", "['tick']"]


def test_a_patch_while_a_stream_runs_is_said_and_the_stream_still_stops(
    url: str, tmp_path: Path
) -> None:
    said = _run(
        """
        import logging, threading
        warnings = []
        class Keep(logging.Handler):
            def emit(self, record):
                warnings.append(record.getMessage())
        logging.getLogger("eventstream").addHandler(Keep(logging.WARNING))
        first = threading.Event()
        stream = EventStream(url, on_event=lambda event: first.set()).start()
        print(first.wait(5))  # a native worker thread runs
        from gevent import monkey
        monkey.patch_all()
        print(stream.running)  # its locks are in use: kept, and the log says so
        print(stream.stop(5), stream.running)
        print(len(warnings), "monkey-patched while the stream of" in warnings[0])
        """,
        url,
        tmp_path,
    )
    assert said == ["True", "True", "True", "False", "1", "True"]


def test_a_stream_dropped_in_another_greenlet_stops_its_worker(url: str, tmp_path: Path) -> None:
    # Collecting a stream stops its worker, unless the collector is that worker (it
    # then only marks it).  Which one it is, is a mark per thread: once patched, per
    # greenlet, or every greenlet would pass for the worker and none would stop it.
    said = _run(
        """
        import gc, weakref
        opened = None
        stream = EventStream(url, on_event=lambda event: opened.set())
        from gevent import monkey
        monkey.patch_all()
        import gevent.event, threading
        opened = gevent.event.Event()
        stream.start()
        print(opened.wait(5))
        (worker,) = [t for t in threading.enumerate() if t.name.startswith("eventstream-")]
        gone = weakref.ref(stream)
        del stream
        gc.collect()
        print(gone() is None)
        worker.join(5)  # the stream is silent now: only a stop ends its worker
        print(worker.is_alive())
        """,
        url,
        tmp_path,
    )
    assert said == ["True", "True", "False"]
