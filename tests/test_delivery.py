"""The channel between a worker and the iterating thread, without threads or sockets:
what a stop drops and names as received, and what a broken loop leaves."""

from __future__ import annotations

from collections.abc import Iterator

from eventstream import Event
from eventstream._delivery import Channel
from eventstream._stop import StopSignal


def events(*data: str) -> list[Event]:
    return [Event("message", d, d) for d in data]


def first_of_three() -> tuple[Channel, Iterator[Event]]:
    """A channel with events a, b, c in one batch, and its reader after "a"."""
    channel = Channel(8)
    assert channel.put(events("a", "b", "c"), StopSignal())
    reader = channel.take()
    assert reader is not None
    assert next(reader).data == "a"
    return channel, reader


def test_a_reader_left_early_is_returned_again() -> None:
    channel, reader = first_of_three()
    again = channel.take()
    assert again is reader
    assert [e.data for e in again] == ["b", "c"]


def test_cancel_names_the_last_event_received_and_ends_the_reader() -> None:
    channel, reader = first_of_three()
    assert channel.put(events("d"), StopSignal())
    dropped, received = channel.cancel()
    assert dropped
    assert received is not None
    assert received.data == "a"
    assert list(reader) == []  # nothing of the batch comes out after a stop
    assert channel.take() is None


def test_cancel_after_whole_batches_drops_nothing() -> None:
    channel = Channel(8)
    assert channel.put(events("a", "b"), StopSignal())
    assert [e.data for e in channel.take() or []] == ["a", "b"]
    assert channel.cancel() == (False, events("b")[0])
    channel.reopen()
    assert channel.put(events("c"), StopSignal())
    reader = channel.take()
    assert reader is not None
    assert channel.cancel() == (True, events("b")[0])  # "c" was taken, never received


def test_cancel_before_any_event_names_none() -> None:
    channel = Channel(8)
    assert channel.cancel() == (False, None)
