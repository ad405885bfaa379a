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
# Mixed-language text for the non-ASCII corpora: each event is written in one language
# (a multilingual feed: each message in its author's), with the symbols any text
# holds (arrows, currency, degrees) and, on some events, emoji outside the BMP (a
# str holding one needs 4 bytes a character).  UTF-8 takes 1 to 4 bytes a character.
_LANGUAGES = (
    ("le", "café", "déjà", "très", "été", "garçon", "élève", "où", "naïve", "à", "prix"),
    ("der", "über", "Straße", "Grüße", "schön", "Zürich", "Bär", "größer", "und"),
    ("el", "mañana", "niño", "São", "coração", "año", "está", "información", "sí"),
    ("Łódź", "čeština", "smörgåsbord", "fjörður", "żółw", "ćma", "ještě", "ñu"),
    ("η", "Ελληνικά", "καλημέρα", "θάλασσα", "ευχαριστώ", "και", "δεδομένα"),
    ("и", "Москва", "привет", "данные", "поток", "событие", "спасибо", "цена"),
    ("東京", "北京市", "数据流", "服务器", "事件", "价格", "更新", "你好", "的"),
    ("日本語", "ありがとう", "カタカナ", "ひらがな", "東京都", "です", "データ", "の"),
    ("한국어", "서울", "감사합니다", "데이터", "스트림", "가격", "이벤트", "는"),
)  # fmt: skip
_SHARED_WORDS = ("→", "⇒", "←", "↔", "✓", "€", "½", "°C", "42", "2024", "ok", "API", "id")
_EMOJI = ("🎉", "🚀", "✅", "😀", "🌍", "🔥", "👍")
_LLM_MODEL = "gpt-4o-mini-2024-07-18"
_LLM_ASCII_TOKENS = (" the", " model", " answer", " is", ",", ".", " of", " stream", " to")
_LLM_WORLD_TOKENS = (" café", " à", "é", " 東京", "の", "天气", " привет", "→", " 🚀", "✅")


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


def _world_fillers(rng: random.Random, size: int = 64 * KIB) -> list[str]:
    """Text of at least ``size`` UTF-8 bytes in each language, to cut payloads from:
    its words, one in five a shared one (a symbol, a number, an ASCII term)."""
    fillers = []
    for language in _LANGUAGES:
        words: list[str] = []
        length = 0
        while length < size:
            word = rng.choice(_SHARED_WORDS if rng.random() < 0.2 else language)
            words.append(word)
            length += len(word.encode()) + 1
        fillers.append(" ".join(words))
    return fillers


def _world_text(rng: random.Random, fillers: list[str], size: int) -> str:
    """About ``size`` UTF-8 bytes (whole characters, no LF) in one language, and an
    emoji on three events in ten."""
    text = _cut(rng, rng.choice(fillers), size)  # >= ``size`` bytes: a character is >= 1
    if rng.random() < 0.3:
        text = f"{rng.choice(_EMOJI)} {text}"
    return text.encode()[:size].decode(errors="ignore").strip()


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


def _world_sized(size: int) -> Callable[[random.Random, int], _Stream]:
    """Events whose data is one line of about ``size`` bytes of mixed-language text."""

    def build(rng: random.Random, count: int) -> _Stream:
        stream = _Stream("\n")
        fillers = _world_fillers(rng, max(64 * KIB, 2 * size))
        for _ in range(count):
            stream.block([("data", _world_text(rng, fillers, size))])
        return stream

    return build


def _llm_chunk(rng: random.Random, seq: int, created: int) -> str:
    # An OpenAI-style chat completion chunk, about 200 bytes; a third of the tokens
    # are raw UTF-8 (servers that write JSON with ensure_ascii off).
    pool = _LLM_WORLD_TOKENS if rng.random() < 0.33 else _LLM_ASCII_TOKENS
    content = "".join(rng.choice(pool) for _ in range(rng.randint(1, 3)))
    return (
        f'{{"id":"chatcmpl-{seq // 500:08x}","object":"chat.completion.chunk",'
        f'"created":{created},"model":"{_LLM_MODEL}",'
        f'"choices":[{{"index":0,"delta":{{"content":"{content}"}},"logprobs":null,'
        '"finish_reason":null}]}'
    )


def _llm(rng: random.Random, count: int) -> _Stream:
    """An LLM token stream: ``data:`` lines of JSON deltas, then ``data: [DONE]``."""
    stream = _Stream("\n")
    created = 1_722_000_000
    for seq in range(count - 1):
        stream.block([("data", _llm_chunk(rng, seq, created + seq // 500))])
    stream.block([("data", "[DONE]")])
    return stream


def _world_data(rng: random.Random, fillers: list[str], seq: int) -> list[str]:
    roll = rng.random()
    if roll < 0.5:
        text = _world_text(rng, fillers, rng.randint(20, 120)).replace('"', "")
        return [f'{{"seq":{seq},"text":"{text}"}}']
    if roll < 0.8:  # a multi-line message, one data line per text line
        return [_world_text(rng, fillers, rng.randint(10, 90)) for _ in range(rng.randint(2, 6))]
    return [_world_text(rng, fillers, rng.randint(300, 1500))]


def _world_mixed(rng: random.Random, count: int) -> _Stream:
    """A real-world stream of mixed-language text: heartbeat comments, several event
    types, ids on some events, multi-line data, and ``retry:`` now and then."""
    stream = _Stream("\n")
    fillers = _world_fillers(rng)
    for seq in range(count):
        meta = []
        if rng.random() < 0.6:
            meta.append(("id", f"{seq}"))
        if rng.random() < 0.7:
            meta.append(("event", rng.choice(_MIXED_TYPES)))
        if rng.random() < 0.01:
            meta.append(("retry", str(rng.choice((1000, 5000)))))
        stream.block(meta + [("data", line) for line in _world_data(rng, fillers, seq)])
        if rng.random() < 0.15:
            stream.block([("", "heartbeat")])
        if rng.random() < 0.005:
            stream.block([("retry", "2500")])  # a block with only retry: no event
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
    "h": _Spec("1 KiB events of mixed-language text", 20_000, _world_sized(KIB)),
    "i": _Spec("64 KiB events of mixed-language text, one line each", 300, _world_sized(64 * KIB)),
    "j": _Spec("LLM token stream: ~200-byte JSON deltas, some raw UTF-8", 100_000, _llm),
    "k": _Spec(
        "real-world mixed-language stream: comments, types, ids, retry", 100_000, _world_mixed
    ),
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
