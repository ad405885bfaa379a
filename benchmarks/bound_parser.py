"""How close to the UTF-8 decode floor can a parser in Python get on a corpus?

Issue #12 asks for (h), 1 KiB events of mixed-language text, within 1.3x the decode
floor and at 1.5x launchdarkly-eventsource.  This measures, in CPU time, interleaved
in one process (median of ``--repeat`` runs), the least work any pure-Python parser
that yields one ``str`` per event must do beyond the floor, each way CPython offers:

* decode-then-split: each region (the reads cut at their last blank line, as the
  parser interprets them) decoded whole, then ``str.split("\\n")``: the cheapest way
  to cut a decoded text into lines; the values still carry their ``data: `` prefix.
* split-then-decode: ``bytes.split(b"\\n")`` of each region, then one
  ``bytes.decode`` per line (again with the prefix: stripping it costs more).
* find-then-decode: a Python loop that finds each line end with ``bytes.find`` and
  decodes the line from a ``memoryview`` of the region (what the parser does for
  long lines): one step per line, but each value decoded once at its own width.
* building the events: one ``Event`` per event from ready values, nothing else.

When every block is one ``data: `` line (corpus (h)), four ways to get the values
themselves, each with the checks that make it exact, built on the calls above:

* split the decoded text at ``"\n\ndata: "``: half as many pieces as lines and no
  prefix to strip; exact when the bytes hold no CR and as many LFs as two per value
  (``bytes.count``);
* ``bytes.split`` at ``b"\n\ndata: "``, the same checks, then one decode per value;
* ``bytes.split`` at LF, each other line blank, the prefix stripped, one decode per
  value (eventstream's path for values under a few hundred bytes);
* a loop of ``bytes.find`` to each LF and ``startswith`` of the separator, a slice and
  one decode per value (eventstream's path for longer values).

The bound is the cheapest of the three (each includes the decoding) plus the events:
no parser built from these calls takes less, whatever its logic.  Printed beside:
eventstream's parser and launchdarkly-eventsource's, and the best ratio to
launchdarkly-eventsource that the bound allows.

Usage: python benchmarks/bound_parser.py [--repeat N] [--corpus h]
"""

from __future__ import annotations

import argparse
import codecs
import gc
import statistics
import time
from collections.abc import Callable
from functools import partial
from itertools import chain, repeat

from _corpora import build_corpus

import eventstream
from eventstream._models import Event

_new_event = tuple.__new__
_SEP = b"\n\ndata: "


def _regions(chunks: list[bytes]) -> list[bytes]:
    """The stream cut where the parser cuts it: after the last blank line of each read."""
    regions, held = [], b""
    for chunk in chunks:
        data = held + chunk
        end = data.rfind(b"\n\n") + 2
        if end >= 2:
            regions.append(data[:end])
        held = data[end:] if end >= 2 else data
    return regions


def _data_only(region: bytes) -> bool:
    """The whole-region checks of a one-split way: blocks of one data line each."""
    return b"\r" not in region and region.startswith(b"data: ")


def text_at_separator(regions: list[bytes]) -> bool:
    for region in regions:
        values = region.decode("utf-8", "replace")[6:-2].split("\n\ndata: ")
        if not _data_only(region) or region.count(b"\n") != 2 * len(values):
            return False
    return True


def bytes_at_separator(regions: list[bytes]) -> bool:
    for region in regions:
        values = region[6:-2].split(_SEP)
        if not _data_only(region) or region.count(b"\n") != 2 * len(values):
            return False
        list(map(bytes.decode, values, repeat("utf-8"), repeat("replace")))
    return True


def bytes_at_lf(regions: list[bytes]) -> bool:
    for region in regions:
        lines = region.split(b"\n")
        data = lines[0:-1:2]
        values = list(map(bytes.removeprefix, data, repeat(b"data: ")))
        if any(lines[1::2]) or sum(map(len, data)) - sum(map(len, values)) != 6 * len(data):
            return False
        list(map(bytes.decode, values, repeat("utf-8"), repeat("replace")))
    return True


def find_values(regions: list[bytes]) -> bool:
    for region in regions:
        values: list[bytes] = []
        find, at_separator, start, last = region.find, region.startswith, 6, len(region) - 2
        while True:
            end = find(b"\n", start)
            values.append(region[start:end])
            if end == last:
                break
            if not at_separator(_SEP, end):
                return False
            start = end + len(_SEP)
        list(map(bytes.decode, values, repeat("utf-8"), repeat("replace")))
    return _data_only(regions[0]) if regions else True


_DATA_WAYS: dict[str, Callable[[list[bytes]], bool]] = {
    "data: decode, split at sep": text_at_separator,
    "data: split at sep, decode": bytes_at_separator,
    "data: split at LF, decode": bytes_at_lf,
    "data: find, slice, decode": find_values,
}


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--repeat", type=int, default=7)
    args.add_argument("--corpus", default="h")
    options = args.parse_args()
    corpus = build_corpus(options.corpus)
    chunks = corpus.chunks
    regions = _regions(chunks)
    count = len(corpus.expected)
    values = [""] * count

    def floor() -> None:
        decode = codecs.getincrementaldecoder("utf-8")("replace").decode
        for chunk in chunks:
            decode(chunk)

    def decode_split() -> None:
        for region in regions:
            region.decode("utf-8", "replace").split("\n")

    def split_decode() -> None:
        for region in regions:
            list(map(bytes.decode, region.split(b"\n")))

    def find_decode() -> None:
        for region in regions:
            find, start, end = region.find, 0, len(region)
            with memoryview(region) as view:
                while start < end:
                    stop = find(b"\n", start)
                    str(view[start:stop], "utf-8", "replace")
                    start = stop + 1

    def events() -> None:
        list(
            map(_new_event, repeat(Event), zip(repeat("message"), values, repeat(""), repeat(None)))
        )

    def parser() -> None:
        for _ in chain.from_iterable(map(eventstream.Parser().feed, chunks)):
            pass

    def launchdarkly() -> None:
        from ld_eventsource.reader import _BufferedLineReader, _SSEReader

        for _ in _SSEReader(_BufferedLineReader.lines_from(chunks)).events_and_comments():
            pass

    data_only = all(way(regions) for way in _DATA_WAYS.values())
    runs: dict[str, Callable[[], object]] = {
        "UTF-8 decode (floor)": floor,
        "decode, then str.split": decode_split,
        "bytes.split, then decode": split_decode,
        "find, decode from a view": find_decode,
        "Event construction": events,
        **{name: partial(way, regions) for name, way in _DATA_WAYS.items() if data_only},
        "eventstream": parser,
        "launchdarkly-eventsource": launchdarkly,
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for rep in range(options.repeat):
        for i in range(len(names)):
            name = names[(i + rep) % len(names)]
            gc.collect()
            start = time.process_time()
            runs[name]()
            times[name].append(time.process_time() - start)
    med = {name: statistics.median(spent) for name, spent in times.items()}
    base = med["UTF-8 decode (floor)"]
    print(f"({corpus.key}) {corpus.title}: {count:,} events, {len(regions)} regions")
    print(f"CPU time, median of {options.repeat} interleaved runs")
    for name in names:
        print(f"  {name:28s} {med[name] * 1e3:8.1f} ms  {med[name] / base:5.2f}x the floor")
    if data_only:  # each data way gives the values, checked: the events are still to build
        best = min(med[name] for name in _DATA_WAYS) + med["Event construction"]
        print(f"  cheapest data way, with the events: {best / base:.2f}x the floor")
    # Both include the decoding itself: the floor is not added again.
    split = min(
        med["decode, then str.split"],
        med["bytes.split, then decode"],
        med["find, decode from a view"],
    )
    bound = split + med["Event construction"]
    ld = med["launchdarkly-eventsource"]
    print(f"  bound (floor, cheapest split, events): {bound / base:.2f}x the floor")
    print(f"  best ratio to launchdarkly-eventsource the bound allows: {ld / bound:.2f}x")
    print(f"  eventstream now: {ld / med['eventstream']:.2f}x launchdarkly-eventsource")


if __name__ == "__main__":
    main()
