"""TLS inside TLS when the origin's TLS speaks mid-body: the reader must answer it.

TLS 1.3 lets a server ask for the client's certificate after the handshake (urllib3
enables it).  The client's answer is written by the inner TLS during a read, and the
tunnel reader must send it to the proxy: otherwise the origin waits for it forever and
the stream stalls.  The origin here is a small TLS server of the test's own.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import trustme
from _proxy import ForwardProxy
from test_proxies import (  # noqa: F401  (fixtures)
    TIMEOUT,
    pki,
    server_context,
    tls_proxy,
    tunnels,
)

from eventstream._stop import StopSignal
from eventstream._transport import RequestSpec, make_session, open_stream
from eventstream._wait import Waiter


class AskingOrigin:
    """Answers one request with an event, asks for the client's certificate, and
    sends a second event only once the certificate has arrived."""

    def __init__(self, authority: trustme.CA) -> None:
        context = server_context(authority)
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.verify_mode = ssl.CERT_OPTIONAL
        context.post_handshake_auth = True
        context.load_verify_locations(cadata=authority.cert_pem.bytes().decode("ascii"))
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self.listener.getsockname()[1]}/"
        self.done = threading.Event()
        self.ask = threading.Event()  # set once the client reads the tunnel itself
        self.certificate: dict[str, Any] | None = None
        self.bundle = self.client_pem = ""  # the CA bundle, the client's key and chain
        self.thread = threading.Thread(target=self._serve, name="test-asking-origin")
        self.thread.start()

    def _serve(self) -> None:
        raw, _ = self.listener.accept()
        with self.context.wrap_socket(raw, server_side=True) as conn:
            conn.settimeout(TIMEOUT)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Connection: close\r\n\r\ndata: before\n\n"
            )
            if not self.ask.wait(TIMEOUT):
                return
            conn.verify_client_post_handshake()
            conn.sendall(b"data: asked\n\n")  # the request goes out with this record
            conn.settimeout(0.05)
            deadline = time.monotonic() + TIMEOUT
            while self.certificate is None and time.monotonic() < deadline:
                # socket.timeout: on Python 3.9 it is not yet TimeoutError.
                with contextlib.suppress(socket.timeout, ssl.SSLWantReadError):
                    conn.recv(1)  # processes the client's answer, if it came
                self.certificate = conn.getpeercert() or None
            if self.certificate is not None:
                conn.sendall(b"data: after\n\n")
            self.done.wait(TIMEOUT)

    def close(self) -> None:
        self.done.set()
        self.listener.close()
        self.thread.join(TIMEOUT)


@pytest.fixture
def asking_origin(
    pki: dict[str, Any],  # noqa: F811
    tmp_path: Path,
) -> Iterator[AskingOrigin]:
    origin = AskingOrigin(pki["trusted"])
    origin.bundle = pki["bundle"]
    origin.client_pem = str(tmp_path / "client.pem")
    chain = pki["trusted"].issue_cert("client@example.com").private_key_and_cert_chain_pem
    chain.write_to_path(origin.client_pem)
    try:
        yield origin
    finally:
        origin.close()


def test_the_origins_request_for_a_certificate_is_answered_through_the_tunnel(
    monkeypatch: pytest.MonkeyPatch,
    asking_origin: AskingOrigin,
    tls_proxy: ForwardProxy,  # noqa: F811
    tunnels: list[int],  # noqa: F811
) -> None:

    def make() -> requests.Session:
        session = requests.Session()
        session.proxies = {"https": tls_proxy.url}
        session.verify = asking_origin.bundle
        session.cert = asking_origin.client_pem
        return session

    # The origin asks only once the reader waits: by then http.client's
    # buffer is drained and the reader, not urllib3's own read, handles the request.
    real_wait = Waiter.wait

    def first_wait_asks(self: Waiter, timeout: float | None, write: bool = False) -> bool:
        asking_origin.ask.set()
        return real_wait(self, timeout, write)

    monkeypatch.setattr(Waiter, "wait", first_wait_asks)
    expected = b"data: before\n\ndata: asked\n\ndata: after\n\n"
    got = b""
    spec = RequestSpec(asking_origin.url, connect_timeout=TIMEOUT, read_timeout=TIMEOUT)
    with make_session(make) as session:
        body = open_stream(session, spec, StopSignal())
        with body:
            chunks = body.chunks()
            while len(got) < len(expected):
                got += next(chunks)
    assert got == expected
    assert asking_origin.certificate is not None
    assert tunnels  # read by the TLS-in-TLS reader
