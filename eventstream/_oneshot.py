"""One-shot streaming requests: one request, one response body read as events.

For APIs that answer a single request (often a POST) with a ``text/event-stream``
body.  The same worker as :class:`EventStream` runs it, with its own session, but it
never reconnects once the body has started: replaying a POST could repeat its effect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._backoff import Backoff
from ._client import StreamBase
from ._control import (
    DEFAULT_QUEUE_SIZE,
    Delivery,
    OnComment,
    OnError,
    OnEvent,
    OnOpen,
    OnRetry,
)
from ._models import ResponseInfo
from ._options import DEFAULT_TIMEOUT, build_options
from ._parser import DEFAULT_MAX_EVENT_SIZE
from ._worker import HeadersOption

__all__ = ["DEFAULT_RETRIES", "OneShotStream", "get", "post", "request"]

#: Attempts after the first one, made only before any body byte has arrived.
DEFAULT_RETRIES = 2


class OneShotStream(StreamBase):
    """The events of one streaming response, read on a worker thread it owns.

    Made (and started) by :func:`request`, :func:`post` and :func:`get`.  Iterate it
    for the events (in the iterating thread), or pass ``on_event``.  The stream ends
    at the end of the body.  Leaving the ``for`` loop early, leaving the ``with``
    block, ``stop()`` or garbage collection stop the worker within milliseconds and
    close its session.

    Retries: the request is sent again (up to ``retries`` times, with ``backoff``
    delays) only when nothing of the body has arrived and the server cannot have
    acted on it or asked for a retry: a connect error, 408, 429 (honouring
    ``Retry-After``) or 500-599, and once at once on 401/403 when ``headers`` is a
    callable.  Once any body byte has arrived, a failure is final (``ReadError``).

    The calling thread holds what :class:`EventStream` says: never the session, the
    response or the connection, not even through the failure ``wait_open`` raises.
    """

    _one_shot = True

    def wait_open(self, timeout: float | None = None) -> ResponseInfo:
        """Block until the response headers have arrived; return status and headers.

        Raises the stream's error if it failed before opening, and ``TimeoutError``
        if ``timeout`` seconds pass first.  Runs on the calling thread.
        """
        control = self._control
        if not control.settled.wait(timeout):
            raise TimeoutError(f"no response within {timeout} s")
        if control.info is not None:
            return control.info
        if control.failure is not None:
            raise control.failure
        raise RuntimeError("the stream was stopped before the response arrived")


def request(
    method: str,
    url: str,
    *,
    params: Any = None,
    headers: HeadersOption = None,
    data: Any = None,
    json: Any = None,
    auth: Any = None,
    timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
    retries: int = DEFAULT_RETRIES,
    backoff: Backoff | None = None,
    max_event_size: int | None = DEFAULT_MAX_EVENT_SIZE,
    on_event: OnEvent | None = None,
    on_error: OnError | None = None,
    on_open: OnOpen | None = None,
    on_retry: OnRetry | None = None,
    on_comment: OnComment | None = None,
    queue_size: int = DEFAULT_QUEUE_SIZE,
    session_factory: Callable[[], Any] | None = None,
) -> OneShotStream:
    """Send one request and stream the events of its response; returns at once.

    The request is sent by a new worker thread with its own session.  Options are as
    for :class:`EventStream`; ``retries`` bounds the attempts made before the body
    starts (see :class:`OneShotStream`).  Use the result as a context manager::

        with eventstream.post(url, json={"prompt": "hi"}) as stream:
            for event in stream:
                print(event.data)
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, not {retries!r}")
    options = build_options(
        url,
        method=method,
        params=params,
        headers=headers,
        data=data,
        json=json,
        auth=auth,
        timeout=timeout,
        backoff=backoff,
        max_event_size=max_event_size,
        session_factory=session_factory,
        reconnect=False,
        retries=retries,
    )
    delivery = Delivery(
        on_event=on_event,
        on_error=on_error,
        on_open=on_open,
        on_retry=on_retry,
        on_comment=on_comment,
        queue_size=queue_size,
    )
    stream = OneShotStream(options, delivery, last_event_id="")
    return stream.start()


def post(url: str, **options: Any) -> OneShotStream:
    """``request("POST", url, **options)``."""
    return request("POST", url, **options)


def get(url: str, **options: Any) -> OneShotStream:
    """``request("GET", url, **options)``: read one response, never reconnect."""
    return request("GET", url, **options)
