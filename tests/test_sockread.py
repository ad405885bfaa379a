"""The fast path's socket reader: one wait, then one read, and the wait's cases.

Real sockets (a socket pair), with ``poll()`` and without it (``select()``, as on
Windows).  A socket that counts its reads tells a reader that waits from one that
spins: a spin makes unbounded reads without any byte to read.
"""

from __future__ import annotations

import http.client
import io
import os
import select
import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from eventstream._sockread import SocketSource, locate_connection, locate_socket
from eventstream._stop import StopSignal
from eventstream._wait import Waiter, have_poll

SPIN = 50  # reads without data from which a reader is spinning, not waiting


class CountingSocket(socket.socket):
    """A socket whose reads are counted; the first one may ask to write first, as a
    TLS socket does when OpenSSL must send before it can read (a key update)."""

    def __init__(self, sock: socket.socket, *, want_write_first: bool = False) -> None:
        super().__init__(sock.family, sock.type, sock.proto, fileno=sock.detach())
        self.reads = 0
        self._want_write = want_write_first
        self._taken = b""

    def recv(self, size: int, flags: int = 0) -> bytes:
        self.reads += 1
        if self.reads > SPIN:
            raise AssertionError(f"{self.reads} reads: the reader spins instead of waiting")
        if self._want_write:
            # As TLS does: the bytes are taken in, but they give nothing until a write.
            self._want_write = False
            self._taken = super().recv(size, flags)
            raise ssl.SSLWantWriteError("the TLS layer must write first")
        if self._taken:
            taken, self._taken = self._taken, b""
            return taken
        return super().recv(size, flags)


@pytest.fixture(params=["poll", "select"])
def how(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "poll" and not have_poll():
        pytest.skip("no select.poll here")
    if request.param == "select" and have_poll():
        monkeypatch.delattr(select, "poll")  # as on Windows
    return str(request.param)


def _source(sock: socket.socket, stop: StopSignal, waiter: Waiter) -> SocketSource:
    # Nothing buffered above the socket (http.client read no body byte with the headers).
    return SocketSource(io.BufferedReader(io.BytesIO(b"")), sock, waiter, stop)


@pytest.fixture
def sockets() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        yield ours, theirs


def test_each_read_waits_then_reads_once(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = sockets
    stop = StopSignal()
    with CountingSocket(ours) as counted, Waiter(stop) as waiter:
        reads = _source(counted, stop, waiter).reads(5)
        for n, block in enumerate((b"data: 1\n\n", b"data: 2\n\n", b"data: 3\n\n"), 1):
            theirs.send(block)
            assert next(reads) == block
            assert counted.reads == n
        reads.close()


def test_a_read_that_had_to_write_first_then_waits_for_reading(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    # After a wait for writing, the next wait is for reading again: a socket that is
    # writable but has nothing to read is not taken as ready (that would spin).
    ours, theirs = sockets
    stop = StopSignal()
    with CountingSocket(ours, want_write_first=True) as counted, Waiter(stop) as waiter:
        reads = _source(counted, stop, waiter).reads(0.05)
        theirs.send(b"a")
        # Nothing is left to read: only a wait for writing lets the read go on.
        assert next(reads) == b"a"
        assert counted.reads == 2  # asked to write, then read after a wait for writing
        with pytest.raises(TimeoutError):
            next(reads)
        assert counted.reads == 2  # nothing came: no read at all
        reads = _source(counted, stop, waiter).reads(5)
        theirs.send(b"b")
        assert next(reads) == b"b"
        reads.close()


def test_one_read_at_a_time_after_a_read_that_had_to_write_first_waits_for_reading(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    # read() (the error body's reader) makes a generator per call: the next call must
    # still know that the waiter was left waiting for writing, or it spins on a
    # writable socket and never times out.
    ours, theirs = sockets
    stop = StopSignal()
    with CountingSocket(ours, want_write_first=True) as counted, Waiter(stop) as waiter:
        source = _source(counted, stop, waiter)
        theirs.send(b"a")
        assert source.read(0.05) == b"a"
        assert counted.reads == 2
        with pytest.raises(TimeoutError):
            source.read(0.05)
        assert counted.reads == 2  # nothing came: no read at all
        theirs.send(b"b")
        assert source.read(5) == b"b"


def test_a_stop_wins_over_a_readable_socket(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = sockets
    stop = StopSignal()
    with CountingSocket(ours) as counted, Waiter(stop) as waiter:
        source = _source(counted, stop, waiter)
        theirs.send(b"data: 1\n\n")
        stop.set()
        assert list(source.reads(5)) == []
        assert counted.reads == 0


def test_the_read_timeout_is_never_cut_short(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    ours, _ = sockets
    stop = StopSignal()
    with CountingSocket(ours) as counted, Waiter(stop) as waiter:
        source = _source(counted, stop, waiter)
        for timeout in (0.0004, 0.02, 0.0501):
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                next(source.reads(timeout))
            assert time.monotonic() - started >= timeout
        assert counted.reads == 0


def test_the_end_of_input_is_the_last_read(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = sockets
    stop = StopSignal()
    with CountingSocket(ours) as counted, Waiter(stop) as waiter:
        theirs.send(b"data: 1\n\n")
        theirs.shutdown(socket.SHUT_WR)
        assert list(_source(counted, stop, waiter).reads(5)) == [b"data: 1\n\n", b""]


def test_without_a_timeout_a_read_waits_for_data(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = sockets
    stop = StopSignal()
    with CountingSocket(ours) as counted, Waiter(stop) as waiter:
        theirs.send(b"data: 1\n\n")
        reads = _source(counted, stop, waiter).reads(None)
        assert next(reads) == b"data: 1\n\n"
        reads.close()


def test_read_gives_one_read_then_none_once_stopped(
    how: str, sockets: tuple[socket.socket, socket.socket]
) -> None:
    ours, theirs = sockets
    stop = StopSignal()
    with CountingSocket(ours) as counted, Waiter(stop) as waiter:
        source = _source(counted, stop, waiter)
        theirs.send(b"data: 1\n\n")
        assert source.read(5) == b"data: 1\n\n"
        assert counted.reads == 1
        stop.set()
        assert source.read(5) is None


def test_the_headers_reader_goes_once_drained_and_the_response_still_closes_the_socket(
    sockets: tuple[socket.socket, socket.socket],
) -> None:
    # As urllib3 leaves it: http.client read the headers (and the first event) through
    # its 8 KiB buffered reader, and the connection, whose body ends at close, has
    # dropped its own reference to the socket: the response's reader keeps it open.
    ours, theirs = sockets
    theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n")
    response = http.client.HTTPResponse(ours)
    response.begin()
    ours.close()
    stop = StopSignal()
    with Waiter(stop) as waiter:
        assert response.fp is not None
        reads = SocketSource(response.fp, ours, waiter, stop, response).reads(5)
        assert next(reads) == b"data: 1\n\n"  # what the reader held
        theirs.sendall(b"data: 2\n\n")
        assert next(reads) == b"data: 2\n\n"  # from the socket, which is still open
        # The buffered reader and its buffer are gone for the rest of the stream...
        assert isinstance(response.fp, socket.SocketIO)
        # ...and closing the response closes the connection, as it did with it.
        response.close()
        theirs.settimeout(5)
        assert theirs.recv(10) == b""
        reads.close()


# -- locate_connection: each private attribute is checked before the socket is taken ----


@pytest.fixture
def response(sockets: tuple[socket.socket, socket.socket]) -> Iterator[http.client.HTTPResponse]:
    # http.client's response over a real socket, its headers read, no body byte taken.
    ours, theirs = sockets
    theirs.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    fp = http.client.HTTPResponse(ours)
    fp.begin()
    yield fp
    fp.close()


class _Raw:
    """What urllib3's response offers: ``_fp``, ``_fp_bytes_read``, ``_connection``."""

    def __init__(self, fp: object, **attributes: object) -> None:
        self._fp = fp
        self.__dict__.update(attributes)


class _Connection:
    def __init__(self, sock: object) -> None:
        self.sock = sock


def test_the_connection_is_located_under_urllib3s_attributes(
    response: http.client.HTTPResponse, sockets: tuple[socket.socket, socket.socket]
) -> None:
    ours, _ = sockets
    raw = _Raw(response, _fp_bytes_read=0, _connection=_Connection(ours))
    assert locate_connection(raw) == (response, ours)
    # The connection forgot its socket (the body ends at close): still the one.
    assert locate_connection(_Raw(response, _fp_bytes_read=0, _connection=_Connection(None))) == (
        response,
        ours,
    )


def test_without_connection_attribute_the_responses_socket_is_taken(
    response: http.client.HTTPResponse, sockets: tuple[socket.socket, socket.socket]
) -> None:
    # Another urllib3 may keep no "_connection": nothing to compare, the socket is
    # still located (and no AttributeError escapes).
    # Catches: getattr without its default for "_connection", or for its "sock".
    assert locate_connection(_Raw(response, _fp_bytes_read=0)) == (response, sockets[0])


def test_a_socket_that_is_not_the_connections_own_is_not_taken(
    response: http.client.HTTPResponse,
) -> None:
    # Someone put another socket under the response: its connection's socket differs,
    # and reading the response's socket directly would bypass theirs: the fallback.
    # Catches: the connection's socket not compared (looked up under another name).
    with socket.socket() as other:
        raw = _Raw(response, _fp_bytes_read=0, _connection=_Connection(other))
        assert locate_connection(raw) is None


@pytest.mark.parametrize(
    "raw",
    [object(), _Raw(None)],
    ids=["no-_fp", "_fp-None"],
)
def test_a_response_without_http_client_under_it_is_not_located(raw: object) -> None:
    # Catches: getattr without its default for "_fp" (AttributeError escapes).
    assert locate_connection(raw) is None


def test_a_response_that_counts_no_bytes_read_is_not_located(
    response: http.client.HTTPResponse,
) -> None:
    # Without urllib3's count of body bytes read, no one can tell that the body is
    # untouched: the fallback reads it.
    # Catches: getattr without its default for "_fp_bytes_read".
    assert locate_connection(_Raw(response)) is None


def test_a_body_already_read_from_is_not_located(
    response: http.client.HTTPResponse, sockets: tuple[socket.socket, socket.socket]
) -> None:
    # A close-delimited body (not chunked) that someone has started to read: the
    # socket must not be taken from under them.
    # Catches: "and" for "or" between the chunked check and the bytes-read check.
    raw = _Raw(response, _fp_bytes_read=5, _connection=_Connection(sockets[0]))
    assert locate_connection(raw) is None


class _Wrapped:
    """A reader put in place of http.client's, that reads through the same SocketIO."""

    def __init__(self, buffered: io.BufferedReader) -> None:
        self._buffered = buffered

    def __getattr__(self, name: str) -> object:
        return getattr(self._buffered, name)


def test_a_reader_put_in_place_of_http_clients_is_not_bypassed(
    response: http.client.HTTPResponse, sockets: tuple[socket.socket, socket.socket]
) -> None:
    # Reading the socket directly would skip what the other reader does.
    # Catches: "and" for "or" in the reader's type checks.
    assert isinstance(response.fp, io.BufferedReader)
    response.fp = _Wrapped(response.fp)  # type: ignore[assignment]
    raw = _Raw(response, _fp_bytes_read=0, _connection=_Connection(sockets[0]))
    assert locate_connection(raw) is None


def test_a_closed_socket_under_the_response_is_not_taken(
    response: http.client.HTTPResponse, sockets: tuple[socket.socket, socket.socket]
) -> None:
    # Closed meanwhile (its descriptor is -1): nothing to read directly.
    # Catches: "and" for "or" between the type check and the descriptor check.
    ours, _ = sockets
    raw = _Raw(response, _fp_bytes_read=0, _connection=_Connection(ours))
    assert locate_socket(raw) == (response, ours)
    os.close(ours.detach())  # its descriptor is -1 from now on
    assert locate_socket(raw) is None
