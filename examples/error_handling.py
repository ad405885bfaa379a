"""Error handling: what each exception means and what to do about it.

Run:  python examples/error_handling.py URL
"""

from __future__ import annotations

import sys

from eventstream import (
    Backoff,
    ContentTypeError,
    EventStream,
    EventStreamError,
    HTTPStatusError,
    RetriesExhausted,
)


def main(url: str) -> int:
    # Give up after 5 consecutive failed attempts instead of retrying forever.
    stream = EventStream(url, backoff=Backoff(initial=0.1, max_attempts=5))
    try:
        with stream:
            for event in stream:
                print(event.data)
    except HTTPStatusError as exc:  # 4xx other than a retried 401/403: fix the request
        print(f"refused: HTTP {exc.status_code}: {exc.body[:80]}", file=sys.stderr)
        return 2
    except ContentTypeError as exc:  # not an event stream at all: wrong URL?
        print(f"not an event stream: {exc.headers.get('Content-Type')}", file=sys.stderr)
        return 2
    except RetriesExhausted as exc:  # the server kept failing; exc.__cause__ says how
        print(f"gave up: {exc.__cause__}", file=sys.stderr)
        return 1
    except EventStreamError as exc:  # anything else the library reports
        print(f"stream failed: {exc}", file=sys.stderr)
        return 1
    return 0  # a 204 answer ends the stream cleanly


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
