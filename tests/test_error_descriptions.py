"""What an error says about its cause, and where credentials may follow a redirect.

``describe`` names the innermost error in the messages of ``ConnectError`` and
``ReadError`` ("connection to URL lost: ConnectionResetError: ..."); the chain walks
must end on cyclic chains (an error that is its own context is easy to make);
``leaves_origin`` decides whether a redirect keeps the ``Authorization`` header;
``redact_url`` keeps credentials out of messages.
"""

from __future__ import annotations

import gc
import weakref

import pytest
import requests
import urllib3

from eventstream._httputil import caused_by, describe, leaves_origin, redact_url, release_frames


class Held:
    """Something a frame of a failed call holds (a response, a socket)."""


def cycle() -> tuple[BaseException, BaseException]:
    outer, inner = RuntimeError("outer"), OSError("inner")
    outer.__cause__, inner.__cause__ = inner, outer
    return outer, inner


def test_describe_names_the_innermost_error() -> None:
    refused = ConnectionRefusedError(111, "Connection refused")
    wrapped = urllib3.exceptions.MaxRetryError(None, "/", reason=refused)  # type: ignore[arg-type]
    assert describe(requests.ConnectionError(wrapped)) == (
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )
    chained = RuntimeError("while reading")
    chained.__cause__ = TimeoutError("read timed out")
    assert describe(chained) == "TimeoutError: read timed out"


def raised_while_handling(
    inner: BaseException, outer: BaseException, *, suppress: bool
) -> BaseException:
    try:
        try:
            raise inner
        except type(inner):
            if suppress:
                raise outer from None
            raise outer  # noqa: B904 (the implicit context is what is tested)
    except type(outer) as caught:
        return caught


def test_describe_names_the_error_being_handled_when_nothing_else_is_wrapped() -> None:
    # urllib3 1.26: NewConnectionError(conn, "Failed to establish a new connection: ...")
    # raised in the except block of the socket's error, without "from".
    refused = ConnectionRefusedError(111, "Connection refused")
    new_connection = urllib3.exceptions.NewConnectionError(None, "Failed to establish")  # type: ignore[arg-type]
    outer = raised_while_handling(refused, new_connection, suppress=False)
    assert describe(outer) == "ConnectionRefusedError: [Errno 111] Connection refused"
    # "from None" says the context is not the cause: the outer error stays.
    hidden = raised_while_handling(OSError("inner"), ValueError("outer"), suppress=True)
    assert describe(hidden) == "ValueError: outer"
    # An error in the arguments wins over the context.
    argued = raised_while_handling(
        OSError("context"), RuntimeError(KeyError("arg")), suppress=False
    )
    assert describe(argued) == "KeyError: 'arg'"


def test_describe_without_a_message_is_the_type_alone() -> None:
    assert describe(ConnectionResetError()) == "ConnectionResetError"
    assert describe(ValueError("x")) == "ValueError: x"


def test_describe_stops_on_a_cycle_at_the_last_new_error() -> None:
    outer, inner = cycle()
    assert describe(outer) == "OSError: inner"
    assert describe(inner) == "RuntimeError: outer"
    itself = OSError("itself")
    itself.__cause__ = itself
    assert describe(itself) == "OSError: itself"
    start, b, c = RuntimeError("start"), OSError("b"), ValueError("c")
    start.__cause__, b.__cause__, c.__cause__ = b, c, b  # a loop after the start
    assert describe(start) == "ValueError: c"


def test_caused_by_looks_through_arguments_causes_and_contexts() -> None:
    assert caused_by(ValueError("text first", KeyError("k")), KeyError)
    wrapper = RuntimeError("wrapper")
    wrapper.__context__ = TimeoutError()
    assert caused_by(wrapper, TimeoutError)
    assert not caused_by(wrapper, KeyError)


def test_caused_by_ends_on_a_cycle() -> None:
    outer, _ = cycle()
    assert not caused_by(outer, KeyError)
    assert caused_by(outer, OSError)


def test_release_frames_ends_on_a_cycle_and_frees_what_the_frames_held() -> None:
    def fail() -> None:
        held = Held()
        refs.append(weakref.ref(held))
        raise OSError("reading failed")

    refs: list[weakref.ref[Held]] = []
    try:
        try:
            fail()
        except OSError as exc:
            raise RuntimeError("rejected") from exc
    except RuntimeError as exc:
        error = exc
    assert error.__cause__ is not None
    error.__cause__.__context__ = error  # a cycle back to the start
    release_frames(error)
    gc.collect()
    assert refs[0]() is None


@pytest.mark.parametrize(
    ("old", "new", "leaves"),
    [
        ("https://h.example/a", "https://h.example/b", False),
        ("https://h.example/a", "https://H.EXAMPLE:443/b", False),
        ("http://h.example/a", "https://h.example/b", False),
        ("https://h.example/a", "http://h.example/b", True),
        ("https://h.example/a", "https://other.example/a", True),
        ("http://h.example/a", "http://h.example.evil/a", True),
        ("http://h.example:8000/a", "http://h.example:8001/a", True),
        ("http://h.example/a", "http://h.example:8080/a", True),
        ("https://h.example/a", "https://h.example:8443/a", True),
        ("http://h.example:80/a", "http://h.example/b", False),
        ("http://h.example:80/a", "https://h.example:443/b", False),
        ("http://h.example:8080/a", "https://h.example:8080/b", True),
        ("http://h.example/a", "https://h.example:8443/b", True),
        ("http://h.example/a", "http://h.example:99999/a", True),
    ],
)
def test_a_redirect_leaves_the_origin_on_another_host_or_a_downgrade(
    old: str, new: str, leaves: bool
) -> None:
    assert leaves_origin(old, new) is leaves


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pa@ss@h.example/x?u=a@b", "https://h.example/x?u=a@b"),
        ("http://token@h.example/", "http://h.example/"),
        ("http://h.example/path@x", "http://h.example/path@x"),
    ],
)
def test_redact_url_drops_the_user_info_only(url: str, shown: str) -> None:
    assert redact_url(url) == shown
