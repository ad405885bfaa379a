"""Ask once, stream the answer: a POST whose response is an event stream.

Run:  python examples/oneshot_post.py URL
"""

from __future__ import annotations

import sys

import eventstream


def main(url: str) -> None:
    with eventstream.post(url, json={"prompt": "Say hello"}, retries=2) as stream:
        print(f"status {stream.wait_open(10).status_code}")
        answer = "".join(event.data for event in stream if event.event == "token")
    print(answer)


if __name__ == "__main__":
    main(sys.argv[1])
