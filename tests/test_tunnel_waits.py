"""Waiting through TLS inside TLS: a silent stream costs no CPU and still wakes up.

Through an ``https://`` proxy to an ``https://`` origin, the reader waits
(``_wait.Waiter``) on the outer socket and the stop signal's waker.  A wait that
returned at once (a wrong event mask, a wrong descriptor, a timeout in the wrong
unit) would still pass the tests that only look at what arrives: it would spin.  So
these count the waits, with and without a read timeout.
"""

from __future__ import annotations

import queue
import threading
import time

import pytest
from test_proxies import (  # noqa: F401  (fixtures)
    STOP_BOUND,
    TIMEOUT,
    Tunnelled,
    pki,
    tls_origin,
    tls_proxy,
    tunnelled,
    tunnels,
)

from eventstream import ReadError
from eventstream._wait import Waiter
from eventstream.testing import Script

SILENCE = 0.5  # seconds of silence watched for spinning
MAX_POLLS = 10  # a blocking wait polls once or twice in that time; a spin, thousands


@pytest.fixture
def polls(monkeypatch: pytest.MonkeyPatch) -> list[int | None]:
    """Every wait of the reader (``Waiter.wait``), with its timeout in milliseconds."""
    calls: list[int | None] = []
    real_wait = Waiter.wait

    def counting_wait(self: Waiter, timeout: float | None, write: bool = False) -> bool:
        calls.append(None if timeout is None else round(timeout * 1000))
        return real_wait(self, timeout, write)

    monkeypatch.setattr(Waiter, "wait", counting_wait)
    return calls


@pytest.mark.parametrize("read_timeout", [None, 30.0], ids=["no-timeout", "timeout"])
def test_a_silent_tunnel_waits_without_spinning_and_wakes_for_data(
    tunnelled: Tunnelled,  # noqa: F811
    tunnels: list[int],  # noqa: F811
    polls: list[int | None],
    read_timeout: float | None,
) -> None:
    gate = threading.Event()
    tunnelled.origin.enqueue(Script().event("a").wait(gate).event("b").hold())
    tunnelled.start(read_timeout=read_timeout)  # type: ignore[arg-type]
    assert tunnelled.read(9) == b"data: a\n\n"
    before = len(polls)
    with pytest.raises(queue.Empty):  # the silence, watched from here
        tunnelled.chunks.get(timeout=SILENCE)
    assert len(polls) - before <= MAX_POLLS
    if read_timeout is not None:  # in milliseconds, what is left of the timeout
        assert polls[-1] is not None
        assert 1000 * (read_timeout - SILENCE - 1) <= polls[-1] <= 1000 * read_timeout
    gate.set()
    assert tunnelled.read(9) == b"data: b\n\n"  # the wait ended for data, not for good
    started = time.monotonic()
    tunnelled.stop.set()
    assert tunnelled.chunks.get(timeout=TIMEOUT) == b"<returned>"
    assert time.monotonic() - started < STOP_BOUND
    assert tunnelled.error is None
    assert tunnels


def test_the_idle_timeout_through_the_tunnel_says_how_long_it_waited(
    tunnelled: Tunnelled,  # noqa: F811
    tunnels: list[int],  # noqa: F811
    polls: list[int | None],
) -> None:
    tunnelled.origin.enqueue(Script().event("a").hold())
    tunnelled.start(read_timeout=0.4)
    assert tunnelled.read(9) == b"data: a\n\n"
    before = len(polls)
    assert tunnelled.chunks.get(timeout=TIMEOUT) == b"<returned>"
    assert len(polls) - before <= MAX_POLLS
    error = tunnelled.error
    assert isinstance(error, ReadError)
    assert isinstance(error.__cause__, TimeoutError)
    assert str(error.__cause__) == "no data for 0.4 s"
    assert tunnels
