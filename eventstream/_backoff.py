"""The reconnection policy: a frozen value with a pure delay formula.

No clock and no sleeping here: the worker measures time and waits on its stop
signal; this module only says how long, given the attempt number and a random source.
"""

from __future__ import annotations

import email.utils
import math
import random
from dataclasses import dataclass
from datetime import timezone

__all__ = ["MAX_DELAY", "Backoff", "retry_after"]

#: The longest wait before a reconnect, in seconds (one day), whatever the server asks
#: (``Retry-After``, ``retry:``) or the policy computes: a wait past
#: ``threading.TIMEOUT_MAX`` raised OverflowError, and one of years is no wait.
MAX_DELAY = 86400.0


@dataclass(frozen=True)
class Backoff:
    """How a long-lived stream waits before reconnecting.  Immutable; share freely.

    The wait before the ``n``-th consecutive attempt (``n`` from 1) is
    ``d = min(cap, base * multiplier ** (n - 1))``, drawn uniformly from
    ``[d, d * (1 + jitter)]`` so that many clients do not reconnect in step.
    ``base`` is the server's reconnection time (its last ``retry:`` field) when it
    sent one, else ``initial``; ``cap`` is ``maximum``, or the server's time if that
    is larger, so the client never reconnects sooner than the server asked, up to a
    point: no wait is longer than one day, whatever the server asks.  A server time of
    0 (``retry: 0``) is for the first attempt only: from the second on, the waits grow
    from ``initial`` as if the count started there, so that a server that asks for
    "at once" and then keeps failing is not called in a tight loop.

    The count of consecutive attempts starts again after a healthy connection: one
    that delivered an event or stayed open for ``reset_after`` seconds.

    ``max_attempts`` (consecutive failed attempts; the immediate retry of a 401/403
    with fresh headers is not counted) and ``max_elapsed`` (seconds since
    the last healthy connection, or since start) bound the retrying; when either is
    reached the stream ends with :class:`RetriesExhausted`, which names the limit and
    the last error.  ``max_elapsed`` is reached as soon as the wait before the next
    attempt would reach it: the stream gives up then, without waiting.  Both default to ``None``:
    retry forever, as a browser's EventSource does.

    All times are in seconds.
    """

    initial: float = 1.0
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    reset_after: float = 30.0
    max_attempts: int | None = None
    max_elapsed: float | None = None

    def __post_init__(self) -> None:
        for name in ("initial", "maximum", "multiplier", "jitter", "reset_after"):
            _check_number(name, getattr(self, name))
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, not {self.multiplier}")
        if self.maximum < self.initial:
            raise ValueError("maximum must be >= initial")
        if self.max_attempts is not None:
            if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int):
                raise TypeError(f"max_attempts must be an int or None, not {self.max_attempts!r}")
            if self.max_attempts < 1:
                raise ValueError(f"max_attempts must be >= 1, not {self.max_attempts}")
        if self.max_elapsed is not None:
            _check_number("max_elapsed", self.max_elapsed)

    def delay(
        self, attempt: int, rng: random.Random, *, server_retry: float | None = None
    ) -> float:
        """Seconds to wait before consecutive attempt number ``attempt`` (from 1).

        ``server_retry`` is the server's reconnection time in seconds, if it sent one.
        Pure: the same ``rng`` state gives the same answer.
        """
        if attempt < 1:
            raise ValueError(f"attempt counts from 1, not {attempt}")
        base = self.initial if server_retry is None else server_retry
        if not base and attempt > 1:  # "at once" was for the first attempt: grow from initial
            base, attempt = self.initial, attempt - 1
        cap = max(self.maximum, base)
        try:
            growth = float(self.multiplier) ** (attempt - 1)
        except OverflowError:  # past the largest float: only the cap is left
            growth = math.inf
        d = min(cap, base * growth) if base else 0.0
        return min(MAX_DELAY, d * (1.0 + self.jitter * rng.random()))

    def exhausted(self, failures: int, elapsed: float) -> bool:
        """Whether ``failures`` consecutive failed attempts, ``elapsed`` seconds after
        the last healthy connection, reach a limit."""
        if self.max_attempts is not None and failures >= self.max_attempts:
            return True
        return self.max_elapsed is not None and elapsed >= self.max_elapsed


def _check_number(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, not {value!r}")


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value, or ``None``.

    Accepts delta-seconds (``"120"``) and an HTTP-date; ``now`` is the current POSIX
    time, for the date form.  A date in the past gives 0; anything unparsable, None.
    At most ``MAX_DELAY``: a wait of centuries (``"10000000000"``, a date in year 9999)
    is a day's.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit() and value.isascii():
        return min(MAX_DELAY, float(value))  # 400 digits make inf, not an error
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=timezone.utc)
    return min(MAX_DELAY, max(0.0, when.timestamp() - now))
