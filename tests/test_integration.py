"""Against real third-party servers and proxies, as subprocesses on 127.0.0.1.

uvicorn (``--http h11`` and ``--http httptools``) serving sse-starlette, Tornado with
gzip on, and proxy.py as an ``http://`` proxy (CONNECT to an ``https://`` origin) and
as an ``https://`` proxy (TLS in TLS to an ``https://`` origin, and forwarding to an
``http://`` one), with certificates from trustme.  Every route is checked for: events
intact, delivery right after a silence, stop on a silent stream (p50/p99 over many
trials, printed), and resume with ``Last-Event-ID`` after the server ends the stream.

The packages are in the ``integration`` extra (``pip install -e '.[integration]'``);
without them this module is skipped.  ``.ci/run`` installs them and runs it.
"""

from __future__ import annotations

import dataclasses
import queue
import statistics
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

_REASON = "integration extra not installed: pip install -e '.[integration]'"
for _module in ("uvicorn", "httptools", "sse_starlette", "tornado", "proxy"):
    pytest.importorskip(_module, reason=_REASON)

import _servers  # noqa: E402 - only once the servers' packages are known to be there

from eventstream import Backoff, Event, EventStream, ReadError, ResponseInfo  # noqa: E402

pytestmark = pytest.mark.integration

STOP_TRIALS = 50
STOP_BOUND = 0.5  # seconds, for p99: generous for CI; the figures printed are what matter
DELIVERY_BOUND = 0.25  # seconds from the server's write to the callback
SILENCE = 1.0
TIMEOUT = 10.0
READ_TIMEOUT = 30.0  # a stop that waited for the read timeout would fail every bound


@dataclasses.dataclass(frozen=True)
class Route:
    """A server reached directly or through a proxy, with the session to reach it."""

    name: str
    url: str
    proxy: str | None
    bundle: str
    gzip: bool = False

    def session(self) -> requests.Session:
        session = requests.Session()
        session.verify = self.bundle
        if self.proxy is not None:
            session.proxies = {"http": self.proxy, "https": self.proxy}
        return session


@pytest.fixture(scope="module")
def routes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Route]]:
    folder = tmp_path_factory.mktemp("integration")
    pki = _servers.Pki(folder)
    h11, h11_url = _servers.uvicorn(folder, "h11", None)
    httptools, httptools_url = _servers.uvicorn(folder, "httptools", None)
    tls, tls_url = _servers.uvicorn(folder, "h11", pki)
    gzip, gzip_url = _servers.tornado(folder)
    plain_proxy, plain_proxy_url = _servers.proxy_py(folder, None)
    tls_proxy, tls_proxy_url = _servers.proxy_py(folder, pki)
    bundle = str(pki.bundle)
    with h11, httptools, tls, gzip, plain_proxy, tls_proxy:
        found = [
            Route("direct HTTP, uvicorn h11", h11_url, None, bundle),
            Route("direct HTTP, uvicorn httptools", httptools_url, None, bundle),
            Route("direct HTTPS, uvicorn h11", tls_url, None, bundle),
            Route("direct HTTP, tornado gzip", gzip_url, None, bundle, gzip=True),
            Route("CONNECT via http proxy to HTTPS", tls_url, plain_proxy_url(), bundle),
            Route("https proxy to HTTPS origin", tls_url, tls_proxy_url(), bundle),
            Route("https proxy to HTTP origin", httptools_url, tls_proxy_url(), bundle),
        ]
        yield {route.name: route for route in found}


ROUTE_NAMES = [
    "direct HTTP, uvicorn h11",
    "direct HTTP, uvicorn httptools",
    "direct HTTPS, uvicorn h11",
    "direct HTTP, tornado gzip",
    "CONNECT via http proxy to HTTPS",
    "https proxy to HTTPS origin",
    "https proxy to HTTP origin",
]


@pytest.fixture(params=ROUTE_NAMES)
def route(request: pytest.FixtureRequest, routes: dict[str, Route]) -> Route:
    return routes[request.param]


class Collected:
    """Events and responses a stream delivered, with their arrival times."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[float, Event]] = queue.Queue()
        self.opened: list[ResponseInfo] = []
        self.errors: list[BaseException] = []

    def stream(self, route: Route, path: str, **options: Any) -> EventStream:
        return EventStream(
            route.url + path,
            session_factory=route.session,
            timeout=(TIMEOUT, READ_TIMEOUT),
            on_event=lambda event: self.events.put((time.monotonic(), event)),
            on_open=self.opened.append,
            on_error=self.errors.append,
            **options,
        )

    def take(self, n: int) -> list[tuple[float, Event]]:
        return [self.events.get(timeout=TIMEOUT) for _ in range(n)]


# -- the checks ------------------------------------------------------------------------------


def test_events_arrive_intact(route: Route) -> None:
    got = Collected()
    with got.stream(route, "/events?count=40"):
        events = [event for _, event in got.take(40)]
    assert [(e.id, e.event) for e in events] == [(str(n), "tick") for n in range(1, 41)]
    expected = [f"{n} after -\nsecond line \u00e9\u2713" for n in range(1, 41)]
    assert [e.data for e in events] == expected
    assert not got.errors
    encoding = got.opened[0].headers.get("Content-Encoding")
    assert encoding == ("gzip" if route.gzip else None)


def test_event_after_a_silence_is_delivered_at_once(route: Route) -> None:
    got = Collected()
    with got.stream(route, f"/silence?seconds={SILENCE}"):
        (ready_at, ready), (late_at, late) = got.take(2)
    assert (ready.event, late.event) == ("ready", "late")
    assert late_at - ready_at >= SILENCE * 0.9  # the silence really happened
    # The server wrote ``late`` at its monotonic time (system-wide on Linux and macOS).
    assert late_at - float(late.data) < DELIVERY_BOUND


def test_stop_on_a_silent_stream(route: Route, capsys: pytest.CaptureFixture[str]) -> None:
    latencies = [stop_once(route) for _ in range(STOP_TRIALS)]
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    p50, p99 = statistics.median(latencies), cuts[98]
    with capsys.disabled():  # the figures belong in the CI log
        print(
            f"\nstop on a silent stream, {route.name}: p50 {p50 * 1000:.2f} ms, "
            f"p99 {p99 * 1000:.2f} ms, max {max(latencies) * 1000:.2f} ms ({STOP_TRIALS} trials)"
        )
    assert p99 < STOP_BOUND


def stop_once(route: Route) -> float:
    got = Collected()
    stream = got.stream(route, "/hold")
    with stream:
        ((_, ready),) = got.take(1)
        assert ready.event == "ready"
        started = time.monotonic()
        assert stream.stop(timeout=TIMEOUT)
        return time.monotonic() - started


@pytest.mark.parametrize("ending", ["end", "drop"])
def test_resume_with_last_event_id_after_the_server_ends_the_stream(
    route: Route, ending: str
) -> None:
    # "end": the response ends cleanly; "drop": the connection is cut mid-body.
    got = Collected()
    fast = Backoff(initial=0.01, maximum=0.05, jitter=0.0)
    path = "/events?count=3" + ("&drop=1" if ending == "drop" else "")
    with got.stream(route, path, backoff=fast):
        events = [event for _, event in got.take(9)]
    assert [e.id for e in events] == [str(n) for n in range(1, 10)]
    seen = [e.data.split("\n")[0] for e in events]
    assert seen == [f"{n} after {'-' if n <= 3 else (n - 1) // 3 * 3}" for n in range(1, 10)]
    assert len(got.opened) >= 3
    dropped = [error for error in got.errors if isinstance(error, ReadError)]
    assert bool(dropped) == (ending == "drop")  # the drop really cut the body
