"""Credentials stay secret, and TLS verification stays on.

Every way of passing a credential (headers, a headers callable, ``auth=``, cookies,
``user:password@`` in the URL) is run through connects, 401s, 500s, drops, refusals
and reconnects with every logger at DEBUG; no secret may appear in a log record, a
repr, an exception message or a chained traceback.  A redirect to another host or
port gets none of them.  Verification cannot be switched off by the environment.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import subprocess
import sys
import textwrap
import traceback
from collections.abc import Iterator
from typing import Any

import certifi
import pytest
import requests
import trustme
from _reliability import FAST, WAIT, Recorder, closed_port, streaming, take

import eventstream
from eventstream import Backoff, ConnectError, EventStream, HTTPStatusError, RetriesExhausted
from eventstream.testing import RecordedRequest, Script, SSEServer

TOKEN = "tok-SECRET-8f3a"
COOKIE = "ck-SECRET-1b2c"
API_KEY = "key-SECRET-77aa"
USER, PASSWORD = "alice", "pw-SECRET-5e6f"
URL_PASSWORD = "url-SECRET-9d0e"
SECRETS = (
    TOKEN,
    COOKIE,
    API_KEY,
    PASSWORD,
    URL_PASSWORD,
    "SECRET",
    base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
    base64.b64encode(f"{USER}:{URL_PASSWORD}".encode()).decode(),
)
KINDS = ["headers-callable", "headers", "auth", "url-userinfo", "session-cookies"]


@pytest.fixture
def server() -> Iterator[SSEServer]:
    with SSEServer() as srv:
        yield srv


def _cookie_session() -> requests.Session:
    session = requests.Session()
    session.cookies.set("session", COOKIE, domain="127.0.0.1", path="/")
    return session


def credentials(kind: str, url: str) -> tuple[str, dict[str, Any]]:
    """The URL and the EventStream options that carry credentials of ``kind``."""
    if kind == "headers-callable":
        return url, {
            "headers": lambda: {
                "Authorization": f"Bearer {TOKEN}",
                "Cookie": f"session={COOKIE}",
                "X-Api-Key": API_KEY,
            }
        }
    if kind == "headers":
        return url, {"headers": {"Authorization": f"Bearer {TOKEN}", "X-Api-Key": API_KEY}}
    if kind == "auth":
        return url, {"auth": (USER, PASSWORD)}
    if kind == "url-userinfo":
        return url.replace("://", f"://{USER}:{URL_PASSWORD}@", 1), {}
    if kind == "session-cookies":
        return url, {"session_factory": _cookie_session}
    single = {
        "static-api-key": {"X-Api-Key": API_KEY},
        "cookie-header": {"Cookie": f"session={COOKIE}"},
    }
    if kind in single:
        return url, {"headers": single[kind]}
    assert kind == "callable-api-key"
    return url, {"headers": lambda: {"X-Api-Key": API_KEY}}


def sent_secrets(request: RecordedRequest) -> list[str]:
    """The secrets found in a request's header values, as the server received them."""
    values = " ".join(value for _, value in request.headers.fields)
    return [secret for secret in SECRETS if secret in values]


def leaks(text: str) -> list[str]:
    return [secret for secret in SECRETS if secret in text]


def describe_error(exc: BaseException) -> str:
    """Everything an error shows: str, repr, attributes, and the whole chained traceback."""
    chain = traceback.format_exception(type(exc), exc, exc.__traceback__)
    parts = [str(exc), repr(exc), repr(exc.args), "".join(chain)]
    for name in ("url", "headers", "body", "status_code"):
        if hasattr(exc, name):
            parts.append(repr(getattr(exc, name)))
    return "\n".join(parts)


def describe_logs(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


@pytest.mark.parametrize("kind", KINDS)
def test_credentials_never_reach_logs_reprs_or_errors(
    server: SSEServer, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger: eventstream's, requests', urllib3's
    url, options = credentials(kind, server.url_for("/stream"))
    gate_401 = (
        [Script(401, headers={"WWW-Authenticate": "Bearer"})]
        if callable(options.get("headers"))
        else []
    )
    server.enqueue(
        *gate_401,
        # The server sets a secret cookie too: response headers show names only.
        Script(500, headers={"Set-Cookie": f"sid={COOKIE}"}).send(b"internal error"),
        Script().event("a", id="1").send(b"data: cut").drop(),
        Script().event("b", id="2").hold(),
    )
    shown: list[str] = []
    with streaming(url, **options) as rec:
        assert [e.data for e in rec.take(2)] == ["a", "b"]
        shown.append(repr(rec.stream))
    requests_seen = server.wait_for_requests(len(gate_401) + 3)
    assert all(sent_secrets(r) for r in requests_seen)  # the control: they were sent
    errors = list(rec.all_errors)
    assert errors, "the scenario must have produced errors to look at"

    # A fatal status, raised in the consumer's thread; a refused connection; a
    # one-shot request; the info of a successful open.
    server.enqueue(Script(403), *([Script(401)] if gate_401 else []))  # fatal, at once
    stream = EventStream(url, backoff=FAST, on_error=errors.append, **options)
    with pytest.raises(HTTPStatusError) as fatal:
        take(stream, 1)
    errors.append(fatal.value)
    shown.append(repr(stream))
    refused_url, _ = credentials(kind, f"http://127.0.0.1:{closed_port()}/x")
    refused = EventStream(refused_url, backoff=Backoff(initial=0.001, max_attempts=2), **options)
    with pytest.raises(RetriesExhausted) as exhausted:
        take(refused, 1)
    errors.append(exhausted.value)
    shown.append(repr(refused))
    server.enqueue(Script(headers={"Set-Cookie": f"sid={COOKIE}"}).event("c").close())
    with eventstream.get(url, **options) as one_shot:
        info = one_shot.wait_open(WAIT)
        shown += [repr(one_shot), repr(info), repr(info.headers), info.url, str(one_shot)]
        assert [e.data for e in one_shot] == ["c"]

    for error in errors:
        assert not leaks(describe_error(error)), describe_error(error)
    for text in shown:
        assert not leaks(text), text
    logs = describe_logs(caplog)
    assert "reconnecting" in logs  # the log did cover the reconnects
    assert not leaks(logs), [line for line in logs.splitlines() if leaks(line)]


def test_url_password_with_a_raw_at_sign_is_redacted_everywhere(
    server: SSEServer, caplog: pytest.LogCaptureFixture
) -> None:
    # urllib3 splits the authority at its last "@": so must every redaction, or the
    # tail of such a password ends up in the messages.
    caplog.set_level(logging.DEBUG)
    url = server.url.replace("://", f"://{USER}:p@ss-{URL_PASSWORD}@", 1)
    server.enqueue(Script(500), Script().event("a").hold())
    with streaming(url) as rec:
        assert rec.next_event().data == "a"
    (error,) = rec.all_errors
    assert not leaks(describe_error(error))
    assert not leaks(describe_logs(caplog))


# -- redirects --------------------------------------------------------------------------


def _redirected(server: SSEServer, kind: str, *, host: str) -> tuple[list[str], list[str]]:
    """The secrets sent to the first URL, and to the one it redirects to on ``host``."""
    server.route("/start", Script.redirect(server.url_for("/target", host=host)))
    server.route("/target", Script().event("moved").hold())
    url, options = credentials(kind, server.url_for("/start"))
    with streaming(url, **options) as rec:
        assert rec.next_event().data == "moved"
    first, second = server.wait_for_requests(2)
    assert second.path == "/target"
    return sent_secrets(first), sent_secrets(second)


@pytest.mark.parametrize("kind", [*KINDS, "static-api-key", "callable-api-key", "cookie-header"])
def test_no_credential_follows_a_redirect_to_another_host(server: SSEServer, kind: str) -> None:
    first, second = _redirected(server, kind, host="localhost")
    assert first, "the control: the credentials went to the first host"
    assert second == [], f"sent to the other host: {second}"


@pytest.mark.parametrize(
    "kind",
    [
        "headers-callable",
        "headers",
        "auth",
        "url-userinfo",
    ],
)
def test_credentials_do_follow_a_redirect_on_the_same_host(server: SSEServer, kind: str) -> None:
    first, second = _redirected(server, kind, host="127.0.0.1")
    assert first
    assert second == first


# The session's own cookie jar is left out: a cookie is for a host whatever the port
# (RFC 6265, 8.5), in requests and browsers alike.
@pytest.mark.parametrize(
    "kind",
    [k for k in KINDS if k != "session-cookies"]
    + ["static-api-key", "callable-api-key", "cookie-header"],
)
def test_no_credential_follows_a_redirect_to_another_port_on_the_same_host(
    server: SSEServer, kind: str
) -> None:
    # Another port is another origin (RFC 6454): the port was ignored, and the
    # caller's Authorization and other headers went to whatever listened there.
    with SSEServer() as other:
        server.route("/start", Script.redirect(other.url_for("/target"), 307))
        other.route("/target", Script().event("moved").hold())
        url, options = credentials(kind, server.url_for("/start"))
        with streaming(url, **options) as rec:
            assert rec.next_event().data == "moved"
        [first], [second] = server.wait_for_requests(1), other.wait_for_requests(1)
    assert sent_secrets(first), "the control: the credentials went to the first port"
    assert sent_secrets(second) == [], f"sent to the other port: {sent_secrets(second)}"


# -- TLS verification ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_context() -> ssl.SSLContext:
    """A server context with a certificate from a CA that nobody trusts."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    trustme.CA().issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def tls_server(tls_context: ssl.SSLContext) -> Iterator[SSEServer]:
    with SSEServer(ssl_context=tls_context) as srv:
        srv.default = Script().event("must never be read").hold()
        yield srv


def _fails_verification(url: str, **options: Any) -> ConnectError:
    errors = Recorder()
    stream = EventStream(
        url, backoff=Backoff(initial=0.001, max_attempts=1), on_error=errors.on_error, **options
    )
    with pytest.raises(RetriesExhausted) as info:
        take(stream, 1)
    assert stream.join(WAIT)
    cause = info.value.__cause__
    assert isinstance(cause, ConnectError), repr(cause)
    assert "certificate" in str(cause).lower()
    return cause


@pytest.mark.parametrize(
    "environment",
    [
        {},
        {"REQUESTS_CA_BUNDLE": certifi.where()},
        {"CURL_CA_BUNDLE": certifi.where()},
        {"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ""},
        {"SSL_CERT_FILE": os.devnull, "SSL_CERT_DIR": os.devnull},
        {"PYTHONHTTPSVERIFY": "0"},
    ],
    ids=["default", "requests-bundle", "curl-bundle", "empty-bundles", "ssl-cert-env", "pyverify"],
)
def test_tls_verification_is_on_whatever_the_environment(
    tls_server: SSEServer, monkeypatch: pytest.MonkeyPatch, environment: dict[str, str]
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    _fails_verification(tls_server.url)
    _fails_verification(tls_server.url, session_factory=requests.Session)
    assert tls_server.requests == []  # not one request went over the unverified connection


def test_an_untrusted_certificate_fails_one_shot_requests_too(tls_server: SSEServer) -> None:
    stream = eventstream.post(tls_server.url, json={"x": 1}, retries=0)
    with stream, pytest.raises(RetriesExhausted) as info:
        stream.wait_open(WAIT)
    assert isinstance(info.value.__cause__, ConnectError)
    assert tls_server.requests == []


def test_a_fresh_interpreter_with_every_verify_switch_off_still_verifies(
    tls_server: SSEServer,
) -> None:
    # Variables read at start-up (PYTHONHTTPSVERIFY) can only be tested in a new process.
    code = textwrap.dedent(
        f"""
        from eventstream import Backoff, EventStream, RetriesExhausted
        stream = EventStream({tls_server.url!r}, backoff=Backoff(initial=0.01, max_attempts=1))
        try:
            for event in stream:
                print("READ", event.data)
        except RetriesExhausted as exc:
            print("FAILED", type(exc.__cause__).__name__)
        """
    )
    env = dict(os.environ)
    env.update(PYTHONHTTPSVERIFY="0", CURL_CA_BUNDLE="", REQUESTS_CA_BUNDLE="")
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert result.stdout.strip() == "FAILED ConnectError", result.stderr
    assert tls_server.requests == []
