"""A blocking script: print events from a stream until N have arrived.

Run:  python examples/blocking_script.py URL [N]
"""

from __future__ import annotations

import sys

from eventstream import EventStream


def main(url: str, count: int = 5) -> None:
    with EventStream(url, timeout=(5, 30)) as stream:
        for n, event in enumerate(stream, 1):
            print(f"{n}: {event.event} {event.data}")
            if n == count:
                break  # leaving the with block stops and joins the worker


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 5)
