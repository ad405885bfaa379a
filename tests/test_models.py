"""Event: the value every layer hands around."""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import sseclient

from eventstream import Event


def test_defaults_are_those_of_a_message_without_id_or_retry() -> None:
    event = Event()
    assert (event.event, event.data, event.id, event.retry) == ("message", "", "", None)


def test_fields_in_order() -> None:
    assert Event._fields == ("event", "data", "id", "retry")
    assert Event("e", "d", "i", 5) == Event(event="e", data="d", id="i", retry=5)


def test_attribute_names_match_sseclient_py() -> None:
    # Code migrating from sseclient-py reads event.event/.data/.id/.retry.
    theirs = set(vars(sseclient.Event()))
    assert set(Event._fields) == theirs


@pytest.mark.parametrize("field", ["event", "data", "id", "retry"])
def test_immutable(field: str) -> None:
    event = Event(data="x")
    with pytest.raises(AttributeError):
        setattr(event, field, "changed")
    with pytest.raises(AttributeError):
        event.extra = 1  # type: ignore[attr-defined]
    assert event == Event(data="x")


def test_equal_and_hashable_by_value() -> None:
    assert Event(data="x", id="1") == Event(data="x", id="1")
    assert Event(data="x", id="1") != Event(data="x", id="2")
    assert len({Event(data="x"), Event(data="x"), Event(data="y")}) == 2


def test_copies_and_pickles_to_an_equal_event() -> None:
    event = Event("update", '{"a": 1}', "7", 3000)
    assert copy.copy(event) == event
    assert copy.deepcopy(event) == event
    assert pickle.loads(pickle.dumps(event)) == event


def test_replace_gives_a_new_event() -> None:
    event = Event(data="x")
    assert event._replace(id="9") == Event(data="x", id="9")
    assert event.id == ""


@pytest.mark.parametrize(
    ("data", "value"),
    [('{"a": [1, 2.5, null]}', {"a": [1, 2.5, None]}), ("3", 3), ('"s"', "s"), ("null", None)],
)
def test_json_decodes_data(data: str, value: object) -> None:
    assert Event(data=data).json() == value


def test_json_passes_keyword_arguments_to_json_loads() -> None:
    assert Event(data='{"n": 1.5}').json(parse_float=str) == {"n": "1.5"}


@pytest.mark.parametrize("data", ["", "not json", '{"a": 1'])
def test_json_on_non_json_data_raises_value_error(data: str) -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        Event(data=data).json()
    assert isinstance(info.value, ValueError)


def test_repr_shows_the_fields_that_are_set() -> None:
    assert repr(Event()) == "Event(event='message', data='')"
    assert repr(Event("tick", "x", "7", 500)) == "Event(event='tick', data='x', id='7', retry=500)"
    assert repr(Event(retry=0)) == "Event(event='message', data='', retry=0)"


def test_repr_keeps_short_data_whole() -> None:
    data = "d" * 200
    assert repr(Event(data=data)) == f"Event(event='message', data={data!r})"


def test_repr_shortens_long_data() -> None:
    data = "a" * 150 + "b" * (5 * 1024 * 1024)
    text = repr(Event(data=data))
    assert len(text) < 400
    assert text.startswith("Event(event='message', data='" + "a" * 150 + "b")
    assert str(len(data)) in text  # says how long the data really is


def test_repr_escapes_control_characters() -> None:
    # A repr goes to logs: a newline in data must not start a new log line.
    text = repr(Event(data="a\nb\r\0", id="x\ty"))
    assert "\n" not in text
    assert "\r" not in text
    assert "\\n" in text
    assert "\\t" in text


def test_is_a_tuple_for_unpacking() -> None:
    event_type, data, id_, retry = Event("e", "d", "i", 1)
    assert (event_type, data, id_, retry) == ("e", "d", "i", 1)
