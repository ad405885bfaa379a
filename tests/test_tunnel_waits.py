"""Waiting through TLS inside TLS: a silent stream costs no CPU and still wakes up.

Through an ``https://`` proxy to an ``https://`` origin, the reader waits
(``_wait.Waiter``) on the outer socket and the stop signal's waker.  A wait that
returned at once (a wrong event mask, a wrong descriptor, a timeout in the wrong
unit) would still pass the tests that only look at what arrives: it would spin.  So
these count the waits, with and without a read timeout.
"""

from __future__ import annotations

import dataclasses
import io
import queue
import socket
import ssl
import threading
import time
from typing import Any

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

from eventstream import ReadError, _transport
from eventstream._stop import StopSignal
from eventstream._tunnelread import Tunnel, TunnelSource
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


def test_the_idle_timeout_through_the_tunnel_is_waited_in_full(
    tunnelled: Tunnelled,  # noqa: F811
    tunnels: list[int],  # noqa: F811
) -> None:
    # A silent stream is given up after read_timeout seconds, not earlier.
    # Catches: TunnelSource.read giving up once less than a second was left.
    tunnelled.origin.enqueue(Script().event("a").hold())
    tunnelled.start(read_timeout=0.4)
    assert tunnelled.read(9) == b"data: a\n\n"
    started = time.monotonic()
    assert tunnelled.chunks.get(timeout=TIMEOUT) == b"<returned>"
    assert time.monotonic() - started >= 0.3
    assert isinstance(tunnelled.error, ReadError)
    assert tunnels


class _WritesFirst:
    """The outer socket, whose first read that brings bytes asks to write first (as
    TLS does for a key update): the bytes are taken in, and come out of the next
    read, which only a wait for writing leads to (the socket is no longer readable)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._taken = b""
        self.asked = threading.Event()

    def recv(self, size: int) -> bytes:
        if self._taken:
            taken, self._taken = self._taken, b""
            return taken
        data = self._sock.recv(size)
        if data and not self.asked.is_set():
            self.asked.set()
            self._taken = data
            raise ssl.SSLWantWriteError("the TLS layer must write first")
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_a_read_that_must_write_first_waits_for_writing_not_for_more_data(
    tunnelled: Tunnelled,  # noqa: F811
    tunnels: list[int],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The event's bytes were taken in by the read that asked to write: waiting for
    # the socket to be readable again would wait for the next event (here: until the
    # read timeout), while the socket is writable at once.
    # Catches: TunnelSource.read waiting for reading after SSLWantWriteError.
    wrapped: list[_WritesFirst] = []
    real = _transport.locate_tunnel

    def locate(raw: object) -> Any:
        found = real(raw)
        if found is None:
            return None
        fp, parts = found
        wrapped.append(_WritesFirst(parts.outer))
        return fp, dataclasses.replace(parts, outer=wrapped[0])

    monkeypatch.setattr(_transport, "locate_tunnel", locate)
    waiting = threading.Event()
    real_wait = Waiter.wait

    def wait(self: Waiter, timeout: float | None, write: bool = False) -> bool:
        if wrapped:  # the body's reader (not the connect's or the headers' wait)
            waiting.set()
        return real_wait(self, timeout, write)

    monkeypatch.setattr(Waiter, "wait", wait)
    gate = threading.Event()
    tunnelled.origin.enqueue(Script().wait(gate).event("a").hold())
    tunnelled.start(read_timeout=4 * TIMEOUT)
    assert waiting.wait(TIMEOUT)  # the reader waits for the event
    gate.set()
    assert tunnelled.chunks.get(timeout=TIMEOUT) == b"data: a\n\n"
    assert wrapped[0].asked.is_set()


def test_a_body_that_ends_at_close_through_the_tunnel_ends_there(
    tunnelled: Tunnelled,  # noqa: F811
    tunnels: list[int],  # noqa: F811
) -> None:
    # No length, no chunks: the origin's TLS ending is the end of the body, and the
    # reader returns with what came before it, and nothing after.
    # Catches: TunnelSource._read_inner taking the inner TLS's end for more bytes.
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
    tunnelled.origin.enqueue(Script.raw_response(head + b"data: a\n\n"))
    tunnelled.start(read_timeout=TIMEOUT)
    assert tunnelled.read(9) == b"data: a\n\n"
    assert tunnelled.chunks.get(timeout=TIMEOUT) == b"<returned>"
    assert tunnelled.error is None
    assert tunnels


class _WantsMore:
    """An inner TLS object that asks for more input whatever it has been given."""

    def read(self, size: int) -> bytes:
        raise ssl.SSLWantReadError("more input needed")


def test_a_tunnel_whose_input_ended_reads_as_ended_even_if_tls_wants_more() -> None:
    # The outer connection ended (its EOF is in the incoming BIO): no more input can
    # come, so a read reports the end of input rather than waiting or inventing bytes.
    # Catches: TunnelSource._read_now returning other bytes there.
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    incoming.write_eof()
    ours, theirs = socket.socketpair()
    stop = StopSignal()
    with ours, theirs, Waiter(stop) as waiter:
        tunnel = Tunnel(_WantsMore(), incoming, outgoing, ours)  # type: ignore[arg-type]
        source = TunnelSource(io.BufferedReader(io.BytesIO(b"")), tunnel, waiter, stop)
        assert source.read(TIMEOUT) == b""
