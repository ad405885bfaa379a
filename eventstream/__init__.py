"""eventstream: a threaded, synchronous Server-Sent Events client on top of requests.

The public names are listed in ``__all__``; every module whose name starts with an
underscore is private.
"""

from __future__ import annotations

import logging

from ._backoff import Backoff
from ._client import EventStream
from ._exceptions import (
    ConnectError,
    ContentTypeError,
    EventStreamError,
    HTTPStatusError,
    ProtocolError,
    ReadError,
    ResponseError,
    RetriesExhausted,
    StreamError,
)
from ._models import Event, Headers, ResponseInfo
from ._oneshot import OneShotStream, get, post, request
from ._parser import DEFAULT_MAX_EVENT_SIZE, Parser

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "Backoff",
    "ConnectError",
    "ContentTypeError",
    "Event",
    "EventStream",
    "EventStreamError",
    "HTTPStatusError",
    "Headers",
    "OneShotStream",
    "Parser",
    "ProtocolError",
    "ReadError",
    "ResponseError",
    "ResponseInfo",
    "RetriesExhausted",
    "StreamError",
    "__version__",
    "get",
    "post",
    "request",
]

logging.getLogger(__name__).addHandler(logging.NullHandler())
