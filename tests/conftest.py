"""Fixtures every test gets: no proxy from the environment, and no leaks.

The autouse ``no_leaks`` fixture fails a test that leaves a thread or a file
descriptor behind.  It waits (bounded, on the thread objects, never by sleeping) for
threads the test started to finish, since a stopped worker may still be unwinding.
A test marked ``joins`` promises that every stream worker it started was joined
(``with``, ``stop(timeout)``, ``join``) by the time it returns: there a worker
still alive at that moment fails the test at once, before any fixture's teardown
(a server's, say) gives it time to finish.

``EVENTSTREAM_TEST_NO_POLL=1`` runs the suite as on a platform without
``select.poll`` (Windows): ``poll`` is removed here, before eventstream is imported,
and in every interpreter the tests start (``tests/nopoll/sitecustomize.py``).
"""

from __future__ import annotations

import gc
import os
import select
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

NO_POLL = os.environ.get("EVENTSTREAM_TEST_NO_POLL") == "1"
if NO_POLL:
    if "eventstream" in sys.modules:
        raise RuntimeError("EVENTSTREAM_TEST_NO_POLL=1: eventstream was imported before conftest")
    if hasattr(select, "poll"):
        del select.poll
    _site = str(Path(__file__).resolve().parent / "nopoll")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [_site, *filter(None, [os.environ.get("PYTHONPATH")])]
    )


def pytest_report_header() -> str:
    return f"select.poll: {'removed (EVENTSTREAM_TEST_NO_POLL=1)' if NO_POLL else 'present'}"


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
_LEAK_GRACE = 5.0  # seconds a test's threads get to finish after it returns


def _open_fds() -> set[int]:
    try:
        return {int(name) for name in os.listdir("/proc/self/fd")}
    except FileNotFoundError:  # not Linux: fd accounting is skipped
        return set()


@pytest.fixture(autouse=True)
def _no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[Any]:
    before = set(threading.enumerate())
    outcome = yield
    if item.get_closest_marker("joins") is not None and outcome.excinfo is None:
        unjoined = [
            t.name
            for t in threading.enumerate()
            if t not in before and t.name.startswith("eventstream-worker-")
        ]
        assert not unjoined, f"stream workers not joined when the test returned: {unjoined}"


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail the test if it leaks a thread or a file descriptor."""
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    yield
    deadline = time.monotonic() + _LEAK_GRACE
    leaked = [t for t in threading.enumerate() if t not in threads_before]
    for thread in leaked:
        thread.join(max(0.0, deadline - time.monotonic()))
    alive = [t.name for t in leaked if t.is_alive()]
    assert not alive, f"threads left running: {alive}"
    gc.collect()  # objects in reference cycles may hold sockets until collected
    fds_after = _open_fds()
    new = sorted(fds_after - fds_before)
    details = []
    for fd in new:
        try:
            details.append(f"{fd} -> {os.readlink(f'/proc/self/fd/{fd}')}")
        except OSError:
            continue  # closed meanwhile (e.g. by the collector): not a leak
    assert not details, f"file descriptors left open: {details}"
