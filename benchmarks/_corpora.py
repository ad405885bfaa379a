"""Deterministic event-stream corpora for the benchmarks, each with its expected events.

Rule: every corpus comes from one fixed seed, so each run, contestant and machine sees
the same bytes.  The expected events are recorded from the same field values as the
wire text is written from (never by parsing that text), following the dispatch rules
of WHATWG HTML 9.2.6 "Interpreting an event stream".
"""

from __future__ import annotations

import random
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

__all__ = ["CORPUS_TITLES", "Corpus", "ExpectedEvent", "build_corpus"]

#: (event type, data, last event ID) of one dispatched event.
ExpectedEvent = tuple[str, str, str]

KIB = 1024
MIB = 1024 * KIB
_SEED = 2024
_QUICK_SCALE = 10  # --quick divides every corpus size by this

_ACTIONS = ("click", "view", "scroll", "purchase", "logout")
_TYPES = ("update", "create", "delete")
_MIXED_TYPES = ("update", "patch", "presence", "notification", "heartbeat")
# Names with multi-byte UTF-8, some of which will straddle a read boundary.
_NAMES = ("alice", "bob", "café", "naïve", "Zürich", "東京", "Ελλάδα", "party 🎉")


@dataclass(frozen=True)
class Corpus:
    """A stream cut into the reads a contestant is fed, and what it must yield."""

    key: str
    title: str
    read_size: int
    chunks: list[bytes]
    expected: list[ExpectedEvent]

    @property
    def size(self) -> int:
        return sum(map(len, self.chunks))


class _Stream:
    """Collects the wire text of a stream and the events a parser must dispatch."""

    def __init__(self, eol: str) -> None:
        self.eol = eol
        self.parts: list[str] = []
        self.expected: list[ExpectedEvent] = []
        self._last_id = ""

    def block(self, fields: Sequence[tuple[str, str]], *, space: bool = True) -> None:
        """Write ``name: value`` lines then a blank line; the name ``""`` is a comment.

        ``space=False`` writes ``name:value``; such values must not start with a space.
        """
        sep = ": " if space else ":"
        self.parts.extend(f"{name}{sep}{value}{self.eol}" for name, value in fields)
        self.parts.append(self.eol)
        self._expect(fields)

    def _expect(self, fields: Sequence[tuple[str, str]]) -> None:
        # The block's last id: sets the last event ID string even if nothing is
        # dispatched; a block without data lines dispatches nothing; an empty event
        # type means "message".
        values: dict[str, list[str]] = {"data": [], "event": [], "id": []}
        for name, value in fields:
            if name in values:
                values[name].append(value)
        if values["id"]:
            self._last_id = values["id"][-1]
        if values["data"]:
            etype = values["event"][-1] if values["event"] else ""
            self.expected.append((etype or "message", "\n".join(values["data"]), self._last_id))


def _filler(rng: random.Random, size: int = 64 * KIB) -> str:
    """ASCII prose-like text of random lowercase words, to cut payloads from."""
    words: list[str] = []
    length = 0
    while length < size:
        word = "".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9)))
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:size]


def _cut(rng: random.Random, filler: str, size: int) -> str:
    if size > len(filler):
        filler *= size // len(filler) + 1
    start = rng.randrange(len(filler) - size + 1)
    return filler[start : start + size]


def _json_of_size(rng: random.Random, filler: str, seq: int, size: int) -> str:
    """A one-line JSON object of exactly ``size`` bytes (its body is ASCII)."""
    head = f'{{"seq":{seq},"body":"'
    return f'{head}{_cut(rng, filler, size - len(head) - 2)}"}}'


def _small_json(rng: random.Random, seq: int) -> str:
    # About 60 bytes, like a typical notification payload.
    user = rng.randrange(100_000)
    action = rng.choice(_ACTIONS)
    return f'{{"seq":{seq},"user":"u{user:05d}","action":"{action}","score":{rng.random():.4f}}}'


def _small(rng: random.Random, count: int, eol: str = "\n") -> _Stream:
    stream = _Stream(eol)
    for seq in range(count):
        fields = [("id", str(seq)), ("event", rng.choice(_TYPES)), ("data", _small_json(rng, seq))]
        stream.block(fields)
    return stream


def _small_crlf(rng: random.Random, count: int) -> _Stream:
    return _small(rng, count, eol="\r\n")


def _sized(size: int) -> Callable[[random.Random, int], _Stream]:
    """Events whose data is one JSON line of ``size`` bytes."""

    def build(rng: random.Random, count: int) -> _Stream:
        stream = _Stream("\n")
        filler = _filler(rng)
        for seq in range(count):
            stream.block([("data", _json_of_size(rng, filler, seq, size))])
        return stream

    return build


def _one_huge(rng: random.Random, size: int) -> _Stream:
    return _sized(size)(rng, 1)


def _multiline(rng: random.Random, count: int) -> _Stream:
    # Pretty-printed JSON, one data line per text line: 10 lines, 8 of them indented,
    # so exactly one of the leading spaces after "data:" is dropped.
    stream = _Stream("\n")
    for seq in range(count):
        name, action = rng.choice(_NAMES), rng.choice(_ACTIONS)
        lines = [
            "{",
            f'  "seq": {seq},',
            f'  "user": "{name}",',
            f'  "action": "{action}",',
            f'  "score": {rng.random():.4f},',
            f'  "ts": {1_700_000_000 + seq * 7},',
            f'  "region": "eu-{rng.randint(1, 4)}",',
            f'  "ok": {"true" if rng.random() < 0.9 else "false"},',
            f'  "tags": ["{rng.choice(_TYPES)}", "{rng.choice(_ACTIONS)}"]',
            "}",
        ]
        stream.block([("data", line) for line in lines])
    return stream


def _mixed_data(rng: random.Random, filler: str, seq: int) -> list[str]:
    roll = rng.random()
    if roll < 0.6:
        name = rng.choice(_NAMES)
        return [f'{{"seq":{seq},"name":"{name}","value":{rng.randrange(1000)}}}']
    if roll < 0.85:
        return [_cut(rng, filler, rng.randint(10, 80)).strip() for _ in range(rng.randint(2, 5))]
    if roll < 0.97:
        return [_json_of_size(rng, filler, seq, rng.randint(512, 2 * KIB))]
    return [""]  # a "data:" line with no value dispatches an event with empty data


def _mixed_meta(rng: random.Random, seq: int) -> list[tuple[str, str]]:
    meta = []
    if rng.random() < 0.5:
        meta.append(("id", f"{seq}-{rng.getrandbits(24):06x}"))
    if rng.random() < 0.3:
        meta.append(("event", rng.choice(_MIXED_TYPES)))
    if rng.random() < 0.02:
        meta.append(("retry", str(rng.choice((1000, 3000, 15_000)))))
    rng.shuffle(meta)
    return meta


def _mixed(rng: random.Random, count: int) -> _Stream:
    """Events whose fields vary one to the next, and a ``: ping`` every few events."""
    stream = _Stream("\n")
    filler = _filler(rng)
    until_ping = rng.randint(3, 8)
    for seq in range(count):
        meta = _mixed_meta(rng, seq)
        data = [("data", line) for line in _mixed_data(rng, filler, seq)]
        # Most servers write metadata first, some after the data; some omit the space.
        fields = data + meta if rng.random() < 0.2 else meta + data
        stream.block(fields, space=rng.random() < 0.9)
        until_ping -= 1
        if until_ping == 0:
            stream.block([("", "ping")])
            until_ping = rng.randint(3, 8)
    return stream


@dataclass(frozen=True)
class _Spec:
    title: str
    size: int  # the count passed to ``build``: events, or bytes for (f)
    build: Callable[[random.Random, int], _Stream]
    read_size: int = 64 * KIB


_SPECS = {
    "a": _Spec("small events: id, event, ~60-byte JSON data", 200_000, _small),
    "b": _Spec("1 KiB JSON events", 20_000, _sized(KIB)),
    "c": _Spec("64 KiB events, one data line each", 300, _sized(64 * KIB)),
    "d": _Spec("events of 10 data lines", 50_000, _multiline),
    "e": _Spec("(a) with CRLF line ends", 200_000, _small_crlf),
    "f": _Spec("one 5 MiB event, one data line", 5 * MIB, _one_huge, read_size=KIB),
    "g": _Spec("realistic mixed stream with pings", 100_000, _mixed),
}

#: What each corpus is, by key, in report order.
CORPUS_TITLES = {key: spec.title for key, spec in _SPECS.items()}


def build_corpus(key: str, *, quick: bool = False) -> Corpus:
    """Generate corpus ``key``, cut into its reads; ``quick`` makes it about 10x smaller."""
    spec = _SPECS[key]
    size = spec.size // _QUICK_SCALE if quick else spec.size
    stream = spec.build(random.Random(_SEED), size)
    wire = "".join(stream.parts).encode("utf-8")
    step = spec.read_size
    chunks = [wire[start : start + step] for start in range(0, len(wire), step)]
    return Corpus(key, spec.title, step, chunks, stream.expected)
