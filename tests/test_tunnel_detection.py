"""Which TLS-in-TLS connections the fast reader takes, and which it leaves to urllib3.

The reader drives urllib3's ``SSLTransport`` through its private parts.  If a
urllib3 release renames or retypes any one of them, or the outer socket is already
closed, the stream must be read by the fallback (``None`` here), never half-driven
and crash; and a socket is a socket whatever its descriptor, 0 included (a daemon or
a cron job may run with stdin closed).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from eventstream import _tunnelread


class OnDescriptorZero(socket.socket):
    """A socket as the kernel numbers it when stdin was closed first."""

    def fileno(self) -> int:
        return 0 if super().fileno() >= 0 else -1


@pytest.fixture
def parts() -> Iterator[dict[str, Any]]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    inner = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="origin")
    outer = socket.socket()
    try:
        yield {"sslobj": inner, "incoming": incoming, "outgoing": outgoing, "socket": outer}
    finally:
        outer.close()


def locate(monkeypatch: pytest.MonkeyPatch, transport: object) -> Any:
    fp = object()
    monkeypatch.setattr(_tunnelread, "locate_connection", lambda raw: (fp, transport))
    found = _tunnelread.locate_tunnel(object())
    if found is not None:
        assert found[0] is fp
    return found


def test_urllib3s_transport_is_taken(
    monkeypatch: pytest.MonkeyPatch, parts: dict[str, Any]
) -> None:
    found = locate(monkeypatch, SimpleNamespace(**parts))
    assert found is not None
    tunnel = found[1]
    assert (tunnel.inner, tunnel.incoming, tunnel.outgoing, tunnel.outer) == (
        parts["sslobj"],
        parts["incoming"],
        parts["outgoing"],
        parts["socket"],
    )


@pytest.mark.parametrize("name", ["sslobj", "incoming", "outgoing", "socket"])
@pytest.mark.parametrize("wrong", [None, "renamed"], ids=["missing", "another-type"])
def test_a_transport_with_any_part_missing_or_retyped_is_left_to_urllib3(
    monkeypatch: pytest.MonkeyPatch, parts: dict[str, Any], name: str, wrong: str | None
) -> None:
    if wrong is None:
        del parts[name]
    else:
        parts[name] = wrong
    assert locate(monkeypatch, SimpleNamespace(**parts)) is None


def test_a_closed_outer_socket_is_left_to_urllib3(
    monkeypatch: pytest.MonkeyPatch, parts: dict[str, Any]
) -> None:
    parts["socket"].close()
    assert locate(monkeypatch, SimpleNamespace(**parts)) is None


def test_an_outer_socket_on_descriptor_zero_is_taken(
    monkeypatch: pytest.MonkeyPatch, parts: dict[str, Any]
) -> None:
    with OnDescriptorZero() as outer:
        assert outer.fileno() == 0
        found = locate(monkeypatch, SimpleNamespace(**{**parts, "socket": outer}))
    assert found is not None
    assert found[1].outer is outer


def test_no_connection_no_tunnel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tunnelread, "locate_connection", lambda raw: None)
    assert _tunnelread.locate_tunnel(object()) is None
