"""Guarantees of ``_worker`` that mutation testing found unpinned (#13), through a
real server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _reliability import streaming

from eventstream.testing import Script, SSEServer


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def test_a_given_last_event_id_with_a_lone_surrogate_is_sent_with_a_replacement(
    server: SSEServer,
) -> None:
    # A resume point read back from JSON ("\ud800" is valid JSON) may hold a lone
    # surrogate, which UTF-8 cannot encode: it goes on the wire as "?" rather than
    # failing every connect with UnicodeEncodeError.
    server.enqueue(Script().event("a").hold())
    with streaming(server.url, last_event_id="7\ud800") as rec:
        assert rec.next_event().data == "a"
    assert rec.all_errors == []
    assert server.wait_for_requests(1)[0].headers["Last-Event-ID"] == "7?"
