"""The HTTP side of a stream; the only module that imports ``requests`` and ``urllib3``.

Rule: everything here runs on the worker thread that owns the session, the response
and the socket.  The only object shared with another thread is the
:class:`StopSignal`, whose ``set()`` wakes the fast path's ``poll()`` (``_sockread``).

``open_stream`` sends the request and checks the status and Content-Type;
:meth:`Body.chunks` then yields body bytes the moment they arrive.  On the fast path
(docs/architecture.rst, "The read loop") it takes the socket from under ``http.client``
once the headers are in and reads it directly, non-blocking, waiting on the socket
and the stop signal's waker (``_sockread`` and ``_wait``, standard library only),
undoing the framing and the content coding itself (``_body``).  Through an
``https://`` proxy to an ``https://`` origin (TLS inside TLS) there is no socket to
read directly but urllib3's ``SSLTransport`` over one; ``_tunnelread`` then feeds its
inner TLS from the outer socket, non-blocking, with the same wait.  When neither can be
reached safely (a mocked or custom adapter: no socket at all), the fallback here
reads through urllib3, checking the stop signal between reads, so a stop then waits
at most the read timeout.  Before that, the connect and the wait for the response
headers wait on the socket and the waker too: the session's pools make connections
(subclasses of urllib3's) whose ``_new_conn()`` and ``getresponse()`` wait with
``_connwait`` before urllib3 and http.client go on.

Errors from ``requests``, ``urllib3``, ``http.client``, ``socket`` and ``ssl`` are
translated here, once, into :class:`StreamError` subclasses, chained with ``from``.
Messages carry the URL (without user info) but never a header value.
"""

from __future__ import annotations

import codecs
import dataclasses
import errno
import functools
import http.client
import logging
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Union
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from urllib3.util.connection import allowed_gai_family

from . import _fork
from ._body import BodyDecoder, BodyError, ContentDecoder, Framing, supported_coding
from ._connwait import ConnectionWait, StoppedWaiting
from ._exceptions import ConnectError, ContentTypeError, HTTPStatusError, ReadError
from ._httputil import caused_by, describe, leaves_origin, redact_url, release_frames, wrapped
from ._models import Headers
from ._sockread import READ_SIZE, SocketSource, body_framing, locate_socket
from ._stop import StopSignal
from ._tunnelread import TunnelSource, locate_tunnel
from ._wait import Waiter

__all__ = ["Body", "RequestSpec", "make_session", "open_stream"]

_log = logging.getLogger(__name__)

EVENT_STREAM = "text/event-stream"
#: What we offer: exactly the codings ``_body`` undoes (requests may offer br, zstd).
ACCEPT_ENCODING = "gzip, deflate"
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_READ_TIMEOUT = 60.0
#: How much of an error response's body is read into ``HTTPStatusError.body``.
ERROR_BODY_LIMIT = 512
#: Bound on reading an error body when the read timeout is ``None``.
ERROR_BODY_TIMEOUT = 5.0

Auth = Union[tuple[str, str], Callable[[requests.PreparedRequest], requests.PreparedRequest], None]


@dataclasses.dataclass(frozen=True)
class RequestSpec:
    """The stream's request, resolved: what ``open_stream`` sends on each connection.

    ``headers`` are the caller's, already merged (``Last-Event-ID`` included); the
    transport adds ``Accept: text/event-stream`` and ``Cache-Control: no-cache``
    unless given, and always sends ``Accept-Encoding: gzip, deflate``.
    ``connect_timeout`` bounds DNS, connect and the TLS handshake; ``read_timeout``
    bounds the wait for the response headers and then each silence in the body (the
    idle timeout).  ``None`` waits forever.
    """

    url: str
    method: str = "GET"
    params: Any = None
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)
    data: Any = None
    json: Any = None
    auth: Auth = None
    connect_timeout: float | None = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float | None = DEFAULT_READ_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("connect_timeout", "read_timeout"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be a positive number of seconds or None")


def make_session(factory: Callable[[], requests.Session] | None = None) -> requests.Session:
    """Create the stream's session on the calling (worker) thread.

    Its ``requests`` adapters are set to verify an ``https://`` proxy's certificate
    for ``http://`` URLs too, with the session's ``verify`` (see ``_cert_verify``).
    """
    session = _Session() if factory is None else factory()
    if not isinstance(session, requests.Session):
        raise TypeError(f"session_factory must return a requests.Session, not {session!r}")
    session._eventstream_wait = ConnectionWait()  # type: ignore[attr-defined]
    _prepare_adapters(session)
    return session


def _prepare_adapters(session: requests.Session) -> None:
    # The session is the worker's own (made just now, on this thread): wrapping its
    # adapters' methods and setting their pool classes touches nothing another stream
    # or thread uses.
    wait: ConnectionWait = session._eventstream_wait  # type: ignore[attr-defined]
    for adapter in session.adapters.values():
        wrapped_already = "cert_verify" in vars(adapter)
        if isinstance(adapter, requests.adapters.HTTPAdapter) and not wrapped_already:
            wrapped = functools.partial(_cert_verify, adapter.cert_verify)
            adapter.cert_verify = wrapped  # type: ignore[method-assign]
            _waiting_pools(adapter.poolmanager, wait)
            made = functools.partial(_proxy_manager_for, adapter.proxy_manager_for, wait)
            adapter.proxy_manager_for = made  # type: ignore[method-assign]


def _cert_verify(
    adapter_cert_verify: Callable[[Any, str, Any, Any], None],
    conn: Any,
    url: str,
    verify: Any,
    cert: Any,
) -> None:
    """requests' ``cert_verify``, but an ``https://`` proxy is verified for http URLs too.

    urllib3 sends an ``http://`` request through an ``https://`` proxy on a TLS
    connection to the proxy, with the TLS settings of the pool, and requests sets
    those from the URL's scheme: none at all for ``http``, so any proxy certificate
    was accepted.  Here such a pool gets the settings an ``https://`` URL gets: the
    session's ``verify`` (``True``, a CA bundle or directory; ``False`` still turns
    it off).  ``https://`` URLs need nothing: urllib3 verifies their proxy already.
    """
    proxy = getattr(conn, "proxy", None)
    if getattr(proxy, "scheme", None) == "https" and urlsplit(url).scheme.lower() == "http":
        url = "https" + url[len("http") :]
    adapter_cert_verify(conn, url, verify, cert)


class _Session(requests.Session):
    """The default session, which mounts its ``http://`` or ``https://`` adapter when a
    request first needs it.

    A stream mostly talks to one scheme, and an adapter with its pool manager is about
    2 KiB kept per stream (1000 streams: 2 MB) for nothing.  A redirect to the other
    scheme mounts the other one then, a standard ``HTTPAdapter`` as requests would.
    """

    def __init__(self) -> None:
        super().__init__()
        self.adapters.clear()

    def get_adapter(self, url: str) -> requests.adapters.BaseAdapter:
        lowered = url.lower()
        for prefix in ("https://", "http://"):
            if lowered.startswith(prefix) and prefix not in self.adapters:
                self.mount(prefix, requests.adapters.HTTPAdapter())
                _prepare_adapters(self)
        return super().get_adapter(url)


_URLLIB3_2 = not str(getattr(urllib3, "__version__", "")).startswith("1.")


class _Waits:
    """What urllib3's connections get here: the connect and the wait for the response
    headers wait with the stream's :class:`ConnectionWait` (``_connwait``), so that a
    stop cuts them short; urllib3's own errors are raised as urllib3 raises them."""

    def __init__(self, *, eventstream_wait: ConnectionWait, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # urllib3's connection; urllib3 names every argument
        self._eventstream_wait = eventstream_wait

    def _new_conn(self) -> socket.socket:
        # urllib3's _new_conn, with the connect waiting on the waker too.  A timeout
        # left to urllib3's default, or a host that urllib3 rejects, goes to urllib3.
        conn: Any = self
        host, timeout = conn._dns_host, conn.timeout
        if not (timeout is None or isinstance(timeout, (int, float))) or not _encodes(host):
            return super()._new_conn()  # type: ignore[misc,no-any-return]
        try:
            sock = self._eventstream_wait.connect(
                (host, conn.port),
                timeout,
                allowed_gai_family(),
                conn.source_address,
                conn.socket_options,
            )
        except socket.gaierror as exc:
            if _URLLIB3_2:
                raise urllib3.exceptions.NameResolutionError(conn.host, conn, exc) from exc
            raise _new_connection_error(conn, exc) from exc
        except socket.timeout as exc:
            raise _connect_timeout(conn) from exc
        except OSError as exc:
            raise _new_connection_error(conn, exc) from exc
        sys.audit("http.client.connect", conn, conn.host, conn.port)
        return sock

    def connect(self) -> None:
        # The connect, a proxy's answer to CONNECT and the TLS handshake, all within the
        # connect timeout: urllib3 calls a timeout of the last two a read timeout.
        try:
            super().connect()  # type: ignore[misc]
        except socket.timeout as exc:
            raise _connect_timeout(self) from exc

    def _tunnel(self) -> None:
        # http.client's CONNECT to a proxy: its answer is read by a response object,
        # made just after the request is sent; it is made once the answer has begun.
        conn: Any = self
        conn.response_class = functools.partial(
            _answer, conn.response_class, self._eventstream_wait
        )
        try:
            super()._tunnel()  # type: ignore[misc]
        finally:
            del conn.response_class  # the class's own again

    def getresponse(self) -> Any:  # no arguments: urllib3 1.26 tries buffering=True first
        conn: Any = self
        wait = self._eventstream_wait
        wait.sent = True  # the request is out (see _sent)
        sock = conn.sock  # none to wait on: TLS inside TLS, a custom connection
        if isinstance(sock, socket.socket):
            # The read timeout: urllib3 2 sets the socket's in getresponse(), 1.26 before.
            timeout = conn.timeout if _URLLIB3_2 else sock.gettimeout()
            wait.headers(sock, timeout)
        response = super().getresponse()  # type: ignore[misc]
        wait.sent = False  # answered (a redirect's next request is another)
        return response


def _answer(response_class: Any, wait: ConnectionWait, sock: Any, *args: Any, **kwargs: Any) -> Any:
    """A proxy's answer to ``CONNECT``, waited for as the response headers are (within
    the connect timeout, the socket's then)."""
    if isinstance(sock, socket.socket):
        wait.headers(sock, sock.gettimeout())
    return response_class(sock, *args, **kwargs)


def _encodes(host: str) -> bool:
    try:
        host.encode("idna")
    except UnicodeError:
        return False  # urllib3 says how (LocationParseError)
    return True


def _connect_timeout(conn: Any) -> Exception:
    message = f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
    return urllib3.exceptions.ConnectTimeoutError(conn, message)


def _new_connection_error(conn: Any, exc: OSError) -> Exception:
    message = f"Failed to establish a new connection: {exc}"
    return urllib3.exceptions.NewConnectionError(conn, message)


class _WaitingHTTPConnection(_Waits, urllib3.connection.HTTPConnection):
    pass


class _WaitingHTTPSConnection(_Waits, urllib3.connection.HTTPSConnection):
    pass


class _WaitingHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _WaitingHTTPConnection


class _WaitingHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _WaitingHTTPSConnection


_STOCK_POOLS = {"http": urllib3.HTTPConnectionPool, "https": urllib3.HTTPSConnectionPool}


def _waiting_pools(manager: Any, wait: ConnectionWait) -> None:
    """Make ``manager`` (a pool manager of the worker's own session) open connections
    that wait for the response headers with ``wait``; only where it uses urllib3's own
    pools (a SOCKS proxy manager, or one a user gave its own pools, is left alone)."""
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if classes != _STOCK_POOLS:
        return
    manager.pool_classes_by_scheme = {
        "http": functools.partial(_WaitingHTTPPool, eventstream_wait=wait),
        "https": functools.partial(_WaitingHTTPSPool, eventstream_wait=wait),
    }


def _proxy_manager_for(
    proxy_manager_for: Callable[..., Any], wait: ConnectionWait, proxy: str, **kwargs: Any
) -> Any:
    """requests' ``proxy_manager_for``, with the manager's connections waiting as above."""
    manager = proxy_manager_for(proxy, **kwargs)
    _waiting_pools(manager, wait)
    return manager


def open_stream(session: requests.Session, spec: RequestSpec, stop: StopSignal) -> Body:
    """Send ``spec`` on ``session`` (made by :func:`make_session`) and return the body.

    Follows redirects; the caller's headers and ``auth`` never go to another host
    (see ``_send``).  Returns a :class:`Body` for a 2xx
    ``text/event-stream`` response, and for 204, whose body is empty at once (the
    caller decides that it means "the server is done").  Raises:

    * :class:`ConnectError`: DNS, refused, TLS handshake or certificate, connect
      timeout.
    * :class:`ReadError`: no response headers within the read timeout, or the
      connection closed before them.
    * :class:`HTTPStatusError`: any other non-2xx status (``body`` holds the first
      bytes of the response body, read within the read timeout).
    * :class:`ContentTypeError`: a 2xx that is not ``text/event-stream`` (parameters
      such as ``charset`` allowed), or a Content-Encoding other than gzip or deflate:
      reading it again would not help.
    * ``ValueError``: a malformed URL or header, a ``json`` that cannot be encoded.
    """
    wait: ConnectionWait = session._eventstream_wait  # type: ignore[attr-defined]
    wait.stop = stop
    try:
        response = _sent(session, spec)
    except BaseException:
        waiter = wait.take()
        if waiter is not None:
            waiter.close()
        raise
    # The waiter the headers were waited with goes to the body, if any.
    waiter = wait.take()
    try:
        return _accept(response, spec, stop, waiter)
    except BaseException:
        response.close()
        if waiter is not None:
            waiter.close()  # idempotent: the body may have closed it
        raise


def _sent(session: requests.Session, spec: RequestSpec) -> requests.Response:
    try:
        return _send(session, spec)
    except StoppedWaiting as exc:  # the worker stops: this error goes nowhere
        safe = redact_url(spec.url)
        raise ReadError(f"stopped before the response from {safe}", url=safe) from exc
    except requests.RequestException as exc:
        release_frames(exc)
        error = _send_error(exc, spec.url)
        if isinstance(error, ConnectError) and session._eventstream_wait.sent:  # type: ignore[attr-defined]
            # Failed once the request was out (a TLS error in the answer, say): it may
            # have had its effect, so it is no connect failure, which a one-shot
            # request would send again.
            safe = redact_url(spec.url)
            error = ReadError(
                f"connection to {safe} lost before the response: {describe(exc)}", url=safe
            )
        raise error from exc
    except urllib3.exceptions.LocationValueError as exc:  # a host urllib3 cannot encode
        raise ValueError(f"invalid URL {redact_url(spec.url)!r}: {exc}") from exc
    except OSError as exc:  # a custom adapter that lets socket errors through
        release_frames(exc)
        safe = redact_url(spec.url)
        reason = OUT_OF_FDS if _out_of_fds(exc) else describe(exc)
        raise ConnectError(f"cannot connect to {safe}: {reason}", url=safe) from exc


def _send(session: requests.Session, spec: RequestSpec) -> requests.Response:
    """Send the request and follow redirects, never taking credentials elsewhere.

    requests itself drops only ``Authorization`` when a redirect changes host; a
    token in any other header (``X-Api-Key``, a ``Cookie`` set by hand...) would go
    along.  So redirects are followed here: when the next URL is on another host, or
    leaves https for http, the caller's headers and ``auth`` are not sent there, nor
    the session's (a ``session_factory`` may set ``auth`` or ``headers``); only the
    stream's own headers are (``Accept``, ``Cache-Control``, ``Last-Event-ID``).
    The session's cookie jar still sends each host only its own cookies, and
    ``.netrc`` each host its own entry, as requests does.
    """
    method, url, params = spec.method, spec.url, spec.params
    data, json_body = spec.data, spec.json
    headers: dict[str, str | None] = {**request_headers(spec.headers)}
    auth = spec.auth
    if auth is None and urlsplit(url).username is not None:
        # Credentials in the URL are an ``auth``: held here, so that a redirect on
        # the same host keeps them (as requests would) and one elsewhere drops them.
        auth = requests.utils.get_auth_from_url(url)
    redirect: requests.Response | None = None  # the redirect that led to ``url``
    # requests parses a redirect's Location inside Session.send even when it does not
    # follow it (to fill Response.next); a response hook runs before that, so a
    # Location it cannot parse can still be blamed on the response that sent it.
    answered: list[requests.Response] = []
    hooks = {"response": [lambda response, **_: answered.append(response)]}
    for _ in range(session.max_redirects + 1):
        answered.clear()
        try:
            response = session.request(
                method,
                url,
                params=params,
                data=data,
                json=json_body,
                headers=headers,
                auth=auth,
                timeout=(spec.connect_timeout, spec.read_timeout),
                allow_redirects=False,
                stream=True,
                # With trust_env, requests lets REQUESTS_CA_BUNDLE replace the verify
                # setting unless the request gives one: a CA file the user put on the
                # session would be silently ignored.  So pass the session's own.
                verify=session.verify,
                hooks=hooks,
            )
        except ValueError as exc:  # requests' InvalidURL and InvalidSchema included
            if answered:
                answered[-1].close()
                raise _unusable_location(answered[-1]) from exc
            if redirect is None:
                raise  # the caller's own URL: misuse
            raise _unusable_location(redirect) from exc
        target = _redirect_target(session, response)
        if target is None:
            return response
        redirect = response
        if leaves_origin(response.url, target):
            headers = _headers_elsewhere(session, headers)
            auth = _auth_elsewhere(session, target)
        if response.status_code == 303 or (response.status_code in (301, 302) and method == "POST"):
            method, data, json_body = "GET", None, None  # as browsers and requests do
        url, params = target, None  # the Location is complete
    safe = redact_url(spec.url)  # the last redirect was closed by _redirect_target
    raise HTTPStatusError(
        f"too many redirects from {safe}",
        url=safe,
        status_code=response.status_code,
        headers=response.headers,
    )


_PROTOCOL_HEADERS = frozenset(("accept", "cache-control", "accept-encoding", "last-event-id"))
#: Headers a session has by default (requests' own), sent to any host.
_SESSION_DEFAULTS = frozenset(("user-agent", "connection"))


def _headers_elsewhere(
    session: requests.Session, headers: Mapping[str, str | None]
) -> dict[str, str | None]:
    """The headers for a redirect to another origin: the stream's own, and None for
    each other header of the session's, which requests then leaves out."""
    kept = {k: v for k, v in headers.items() if k.lower() in _PROTOCOL_HEADERS}
    for name in session.headers:
        if name.lower() not in _PROTOCOL_HEADERS | _SESSION_DEFAULTS:
            kept[name] = None
    return kept


def _auth_elsewhere(session: requests.Session, url: str) -> Auth:
    """The ``auth`` for a redirect to another origin: the ``.netrc`` entry for its
    host (as requests does), else one that sends nothing.  None would not do: requests
    would send the session's own ``auth`` (or the Location's user info) there."""
    found = requests.utils.get_netrc_auth(url) if session.trust_env else None
    return _no_auth if found is None else found


def _no_auth(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


# A host as RFC 3986 writes it: a reg-name (ASCII, maybe percent-encoded), an IPv4
# address, or the inside of an IPv6 literal.  What requests does with anything else
# (a space, raw non-ASCII) depends on its version: connect, refuse, or encode it.
_HOST = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=%-]+|[0-9A-Fa-f:.]+")


def _redirect_target(session: requests.Session, response: requests.Response) -> str | None:
    """The absolute URL a redirect points to, or None if ``response`` is no redirect.

    A redirect is closed here.  One whose Location cannot be followed (not UTF-8,
    malformed, not http or https) is a fatal :class:`HTTPStatusError`, as a loop is.
    """
    try:
        location = session.get_redirect_target(response)
        if location is None:
            return None
        target = urljoin(response.url, location)
        parts = urlsplit(target)
        host, _ = parts.hostname or "", parts.port  # .port raises ValueError if out of range
        usable = parts.scheme in ("http", "https") and bool(_HOST.fullmatch(host))
    except ValueError:  # UnicodeDecodeError included
        usable = False
    response.close()
    if not usable:
        raise _unusable_location(response)
    return target


def _unusable_location(redirect: requests.Response) -> HTTPStatusError:
    safe = redact_url(redirect.url)
    return HTTPStatusError(
        f"HTTP {redirect.status_code} from {safe} redirects to an unusable Location",
        url=safe,
        status_code=redirect.status_code,
        headers=redirect.headers,
    )


def request_headers(user: Mapping[str, str]) -> dict[str, str]:
    """The request headers: our defaults, the caller's over them, our Accept-Encoding."""
    merged: requests.structures.CaseInsensitiveDict[str] = requests.structures.CaseInsensitiveDict(
        {"Accept": EVENT_STREAM, "Cache-Control": "no-cache"}
    )
    merged.update(user)
    merged["Accept-Encoding"] = ACCEPT_ENCODING  # _body decodes: offer only what it undoes
    return dict(merged.items())


class Body:
    """The body of an accepted response, read on the worker thread that opened it.

    ``status_code``, ``headers`` and ``url`` (the final URL, after redirects) describe
    the response.  Iterate :meth:`chunks` once, then :meth:`close` (or use ``with``).
    Not thread-safe: only the stop signal may be touched from another thread.
    """

    def __init__(
        self,
        response: requests.Response,
        stop: StopSignal,
        read_timeout: float | None,
        *,
        empty: bool = False,
        waiter: Waiter | None = None,
    ) -> None:
        self.status_code: int = response.status_code
        self.headers = Headers(response.headers)  # what ResponseInfo keeps, not a copy
        self.url: str = response.url
        # Only the urllib3 response is kept: the requests one would keep its request,
        # cookie jars and hooks (about 2 KiB) for the life of the stream.
        self._raw = response.raw
        self._stop = stop
        self._read_timeout = read_timeout
        self._closed = False
        # The waiter the headers were waited with, if any: the body closes it.
        self._waiter: Waiter | None = waiter
        # An unsupported coding only reaches here on an error body: read it as is.
        coding = supported_coding(self.headers.get("Content-Encoding", "")) or "identity"
        content = ContentDecoder(coding)
        source = None if empty else self._fast_source(response.raw, stop)
        self._source: SocketSource | TunnelSource | _FallbackSource
        if source is None:
            if not empty:
                _log.debug("reading %s through urllib3 (fallback path)", redact_url(self.url))
            self._source = _FallbackSource(response.raw)
            length = 0 if empty else None
            framing = Framing.LENGTH if empty else Framing.CLOSE  # urllib3 undoes framing
            self._decoder = BodyDecoder(framing, content, length)
            return
        self._source, fp = source
        _log.debug(
            "reading %s from its %s (fast path)",
            redact_url(self.url),
            "socket" if isinstance(self._source, SocketSource) else "TLS tunnel",
        )
        framing, length = body_framing(fp)
        self._decoder = BodyDecoder(framing, content, length)

    def _fast_source(
        self, raw: object, stop: StopSignal
    ) -> tuple[SocketSource | TunnelSource, http.client.HTTPResponse] | None:
        """A reader the stop signal interrupts: the socket, or TLS inside a TLS proxy."""
        located = locate_socket(raw)
        tunnel = None if located is not None else locate_tunnel(raw)
        if located is None and tunnel is None:
            return None  # no socket to wait on (a mocked or custom adapter)
        try:
            if self._waiter is None:
                self._waiter = Waiter(stop)
        except OSError as exc:  # out of descriptors, say: no stop within milliseconds
            safe = redact_url(self.url)
            raise ReadError(f"{_no_waker(exc)} (reading {safe})", url=safe) from exc
        if located is not None:
            fp, sock = located
            return SocketSource(fp.fp, sock, self._waiter, stop, fp), fp
        assert tunnel is not None
        fp, parts = tunnel
        return TunnelSource(fp.fp, parts, self._waiter, stop), fp

    def chunks(self) -> Iterator[bytes]:
        """Yield decoded body bytes as soon as they arrive (never an empty chunk).

        Returns normally at the end of the body, and also as soon as the stop signal
        is set: the caller tells the two apart with ``stop.is_set()``.  Raises
        :class:`ReadError` when the connection drops mid-body (a chunked body without
        its last chunk, fewer bytes than Content-Length), when no byte arrives for
        ``read_timeout`` seconds, or on broken chunked framing or compressed data.
        """
        if self._closed:
            raise RuntimeError("the body is closed")
        if isinstance(self._source, SocketSource):
            return self._socket_chunks(self._source)
        return self._chunks(None)

    def close(self) -> None:
        """Close the response (its connection is not reused) and the waiter's waker."""
        if self._closed:
            return
        self._closed = True
        raw = self._raw
        try:
            raw.close()  # as requests' Response.close() for a body not read through it
            release = getattr(raw, "release_conn", None)
            if release is not None:
                release()
        except OSError as exc:
            _log.debug("closing the response of %s failed: %r", redact_url(self.url), exc)
        finally:
            if self._waiter is not None:
                self._waiter.close()

    def __enter__(self) -> Body:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _chunks(self, deadline: float | None) -> Iterator[bytes]:
        # ``deadline`` (monotonic) also bounds the whole read: used for error bodies.
        url = redact_url(self.url)
        while not self._decoder.done:
            # An error body's deadline is at most the read timeout away.
            if deadline is None:
                timeout = self._read_timeout
            else:  # never negative: poll() would take that as "forever"
                timeout = max(0.0, deadline - time.monotonic())
            data = self._read(timeout)
            if data is None:
                return  # stopped
            try:
                out = self._decoder.feed(data) if data else self._decoder.end_of_input()
            except BodyError as exc:
                if exc.decoded:  # what came before the fault in the same read
                    yield exc.decoded
                raise ReadError(f"bad response body from {url}: {exc}", url=url) from exc
            if out:
                yield out

    def _socket_chunks(self, source: SocketSource) -> Iterator[bytes]:
        # The fast path's loop, kept flat: with one event per read, each Python call
        # here is a noticeable part of what an event costs.
        decoder, stop = self._decoder, self._stop
        feed = decoder.feed
        if stop.is_set():
            return
        reads = source.reads(self._read_timeout)
        try:
            # No check for close() here: it closes the socket, so no read after it
            # brings data (the wait ends at the read timeout, a ReadError).
            for data in reads:
                try:
                    out = feed(data) if data else decoder.end_of_input()
                except BodyError as exc:
                    if exc.decoded:  # what came before the fault in the same read
                        yield exc.decoded
                    url = redact_url(self.url)
                    raise ReadError(f"bad response body from {url}: {exc}", url=url) from exc
                if out:
                    yield out
                if decoder.done:
                    return
        except (OSError, http.client.HTTPException) as exc:  # TimeoutError included
            error = self._read_error(exc)
            if error is not None:
                raise error from exc
        finally:
            reads.close()

    def _read(self, timeout: float | None) -> bytes | None:
        if self._closed:
            raise RuntimeError("the body is closed")
        if self._stop.is_set():
            return None
        try:
            return self._source.read(timeout)
        except (OSError, http.client.HTTPException, urllib3.exceptions.HTTPError) as exc:
            error = self._read_error(exc)
            if error is None:
                return None
            raise error from exc

    def _read_error(self, exc: BaseException) -> ReadError | None:
        """What a failed read means: None once stopped (a blocked read of the fallback
        ends with an error after a stop), else the ``ReadError`` to raise."""
        if self._stop.is_set():
            return None
        url = redact_url(self.url)
        if isinstance(exc, (TimeoutError, socket.timeout, urllib3.exceptions.ReadTimeoutError)):
            return ReadError(f"no data from {url} within the read timeout", url=url)
        return ReadError(f"connection to {url} lost: {describe(exc)}", url=url)


class _FallbackSource:
    """Reads through urllib3 (or the adapter's raw object), which undoes the framing."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._read1 = _fallback_reader(raw)

    def read(self, timeout: float | None) -> bytes:
        # The timeout is the socket's own (the read timeout, set by urllib3).
        data = self._read1(READ_SIZE)
        if data:
            return bytes(data)
        fp = getattr(self._raw, "_fp", None)
        if isinstance(fp, http.client.HTTPResponse) and fp.length:
            # urllib3 1.26: http.client's read1() ends a short Content-Length body
            # quietly; urllib3 2 raises before this.
            raise http.client.IncompleteRead(b"", fp.length)
        return b""


def _fallback_reader(raw: Any) -> Callable[[int], bytes | None]:
    if isinstance(raw, urllib3.response.HTTPResponse):
        if hasattr(raw, "read1"):  # urllib3 >= 2: returns what has arrived
            return lambda amt: raw.read1(amt, decode_content=False)
        fp_read1 = getattr(getattr(raw, "_fp", None), "read1", None)  # urllib3 1.26
        if callable(fp_read1):
            return fp_read1  # type: ignore[no-any-return]
        return lambda amt: raw.read(amt, decode_content=False)
    read1 = getattr(raw, "read1", None)
    return read1 if callable(read1) else raw.read  # type: ignore[no-any-return]


def _accept(
    response: requests.Response, spec: RequestSpec, stop: StopSignal, waiter: Waiter | None
) -> Body:
    status = response.status_code
    if status == 204:
        return Body(response, stop, spec.read_timeout, empty=True, waiter=waiter)
    url = redact_url(response.url)
    headers = response.headers
    if not 200 <= status < 300:
        body = _error_body(response, stop, spec.read_timeout, waiter)
        reason = f" {response.reason}" if response.reason else ""
        raise HTTPStatusError(
            f"HTTP {status}{reason} from {url}",
            url=url,
            status_code=status,
            headers=headers,
            body=body,
        )
    content_type = headers.get("Content-Type", "")
    media_type = content_type.partition(";")[0].strip().lower()
    if media_type != EVENT_STREAM:
        raise ContentTypeError(
            f"expected Content-Type {EVENT_STREAM} from {url}, got {media_type[:60] or 'none'!r}",
            url=url,
            status_code=status,
            headers=headers,
        )
    encoding = headers.get("Content-Encoding", "")
    if supported_coding(encoding) is None:
        raise ContentTypeError(
            f"unsupported Content-Encoding {encoding[:60]!r} from {url} (we offer gzip, deflate)",
            url=url,
            status_code=status,
            headers=headers,
        )
    return Body(response, stop, spec.read_timeout, waiter=waiter)


def _error_body(
    response: requests.Response,
    stop: StopSignal,
    read_timeout: float | None,
    waiter: Waiter | None,
) -> str:
    """The first ``ERROR_BODY_LIMIT`` bytes of an error body, read within the timeout."""
    budget = ERROR_BODY_TIMEOUT if read_timeout is None else read_timeout
    got = bytearray()
    with Body(response, stop, read_timeout, waiter=waiter) as body:
        try:
            for chunk in body._chunks(time.monotonic() + budget):
                got += chunk
                if len(got) >= ERROR_BODY_LIMIT:
                    break
        except ReadError as exc:  # what arrived is still worth showing
            _log.debug("reading the error body of %s: %s", redact_url(body.url), exc)
    data = bytes(got[:ERROR_BODY_LIMIT])
    try:
        return data.decode(_charset(response), "replace")
    except (LookupError, ValueError, TypeError):  # UnicodeError is a ValueError
        # A text codec that refuses "replace" (idna) or any input ("undefined").
        return data.decode("utf-8", "replace")


def _charset(response: requests.Response) -> str:
    """The codec for the body: the first ``charset`` parameter if it names a text
    encoding, else UTF-8.  base64, hex or rot13 are codecs but not text encodings:
    ``bytes.decode`` refuses them with LookupError."""
    for param in response.headers.get("Content-Type", "").split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            try:
                with _fork.guarded_import():  # a codec is imported on first use
                    # The codec search ignores quotes and spaces around the name.
                    codec = codecs.lookup(value)
            except LookupError:
                break
            if getattr(codec, "_is_text_encoding", True):
                return codec.name
            break
    return "utf-8"


def _send_error(exc: requests.RequestException, url: str) -> Exception:
    safe = redact_url(url)
    exceptions = requests.exceptions
    if isinstance(exc, exceptions.ReadTimeout):
        return ReadError(f"no response headers from {safe} within the read timeout", url=safe)
    if caused_by(exc, urllib3.exceptions.InvalidHeader):
        # The response's own header is malformed (e.g. conflicting Content-Length):
        # the server answered badly, as with broken framing.
        return ReadError(f"{safe} sent a malformed response header", url=safe)
    if isinstance(exc, exceptions.InvalidHeader):
        return ValueError("a request header name or value is not allowed")  # never echo it
    if isinstance(exc, exceptions.InvalidJSONError):
        return ValueError(f"the json body cannot be encoded: {describe(exc)}")
    if isinstance(
        exc,
        (exceptions.InvalidURL, exceptions.MissingSchema, exceptions.InvalidSchema),
    ):
        return ValueError(f"invalid URL {safe!r}: {exc}")
    if isinstance(exc, exceptions.ConnectionError) and any(
        isinstance(arg, urllib3.exceptions.ProtocolError) for arg in exc.args
    ):
        # urllib3 raises ProtocolError (not MaxRetryError) when an open connection
        # fails before the response: it connected, so this is a read failure.
        return ReadError(f"{safe} closed the connection: {describe(exc)}", url=safe)
    if _out_of_fds(exc):
        return ConnectError(f"cannot connect to {safe}: {OUT_OF_FDS}", url=safe)
    return ConnectError(f"cannot connect to {safe}: {describe(exc)}", url=safe)


def configured_session(
    *,
    verify: bool | str = True,
    cert: str | tuple[str, str] | None = None,
    proxy: str | None = None,
) -> requests.Session:
    """A new session with these TLS and proxy settings: a ``session_factory`` body.

    ``verify`` is True, False or a CA bundle file; ``cert`` a client certificate file
    (with its key) or a (certificate, key) pair; ``proxy`` a proxy URL for both http
    and https, which wins over the ``*_PROXY`` environment variables.  Runs on the
    worker thread, like any session factory.
    """
    session = _ExplicitProxySession()  # without a proxy, a requests.Session's behaviour
    session.verify = verify
    if cert is not None:
        session.cert = cert
    if proxy is not None:
        session.proxies = {"http": proxy, "https": proxy}
    return session


class _ExplicitProxySession(requests.Session):
    # requests merges the environment's proxies over the session's (an HTTPS_PROXY
    # variable would beat an explicit proxy): hand ours in as the request's own.
    # (Session.request passes a dict, ``{}`` when the request names no proxy.)
    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        merged = {**self.proxies, **proxies}
        return super().merge_environment_settings(url, merged, stream, verify, cert)


#: What to do when the process has no descriptor left (EMFILE, ENFILE).
OUT_OF_FDS = (
    "the process is out of file descriptors (each stream needs 2 on Linux, 3 elsewhere):"
    " raise the limit on open files (ulimit -n, or resource.setrlimit with"
    " resource.RLIMIT_NOFILE) or run fewer streams"
)


def _out_of_fds(exc: BaseException) -> bool:
    """Whether ``exc`` wraps EMFILE or ENFILE (as args, cause, context or reason)."""
    return any(
        isinstance(item, OSError) and item.errno in (errno.EMFILE, errno.ENFILE)
        for item in wrapped(exc)
    )


def _no_waker(exc: OSError) -> str:
    if _out_of_fds(exc):
        return OUT_OF_FDS
    return f"cannot create the stop signal's wake-up descriptor: {describe(exc)}"
