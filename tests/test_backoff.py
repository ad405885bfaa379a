"""Backoff: the pure delay formula, its limits and Retry-After parsing."""

from __future__ import annotations

import random
import time
from email.utils import formatdate

import pytest

from eventstream import Backoff
from eventstream._backoff import MAX_DELAY, retry_after


class FixedRandom(random.Random):
    def __init__(self, value: float) -> None:
        super().__init__(0)
        self.value = value

    def random(self) -> float:
        return self.value


def test_delay_grows_exponentially_up_to_the_maximum() -> None:
    policy = Backoff(initial=1.0, maximum=10.0, multiplier=2.0, jitter=0.0)
    delays = [policy.delay(n, FixedRandom(0.0)) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_jitter_adds_up_to_the_fraction_and_never_shortens() -> None:
    policy = Backoff(initial=2.0, jitter=0.5)
    assert policy.delay(1, FixedRandom(0.0)) == 2.0
    assert policy.delay(1, FixedRandom(0.999)) == pytest.approx(2.999)
    rng = random.Random(7)
    samples = [policy.delay(1, rng) for _ in range(1000)]
    assert min(samples) >= 2.0
    assert max(samples) <= 3.0
    assert len(set(samples)) > 900  # spread out: clients do not reconnect in step


def test_server_retry_replaces_the_initial_delay_and_may_exceed_the_maximum() -> None:
    policy = Backoff(initial=1.0, maximum=5.0, jitter=0.0)
    assert policy.delay(1, FixedRandom(0.0), server_retry=0.25) == 0.25
    assert policy.delay(2, FixedRandom(0.0), server_retry=0.25) == 0.5
    assert policy.delay(1, FixedRandom(0.0), server_retry=60.0) == 60.0
    assert policy.delay(5, FixedRandom(0.0), server_retry=60.0) == 60.0


def test_server_retry_of_zero_means_reconnect_at_once_the_first_time() -> None:
    assert Backoff(jitter=0.5).delay(1, FixedRandom(0.5), server_retry=0.0) == 0.0


def test_after_a_server_retry_of_zero_failures_grow_from_the_initial_delay() -> None:
    # retry: 0 made every wait 0, however many failures followed (790 requests/s to
    # a server answering 503).  The first reconnect is at once; then the policy's.
    policy = Backoff(initial=1.0, maximum=10.0, jitter=0.0)
    delays = [policy.delay(n, FixedRandom(0.0), server_retry=0.0) for n in range(1, 7)]
    assert delays == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0]


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert Backoff(maximum=30.0, jitter=0.0).delay(10**6, FixedRandom(0.0)) == 30.0


def test_same_random_state_gives_the_same_delay() -> None:
    policy = Backoff()
    assert policy.delay(3, random.Random(42)) == policy.delay(3, random.Random(42))


def test_exhausted_by_attempts_or_elapsed_time() -> None:
    assert not Backoff().exhausted(10**9, 10**9)
    assert Backoff(max_attempts=3).exhausted(3, 0.0)
    assert not Backoff(max_attempts=3).exhausted(2, 0.0)
    assert Backoff(max_elapsed=5.0).exhausted(1, 5.0)
    assert not Backoff(max_elapsed=5.0).exhausted(1, 4.9)


def test_backoff_is_frozen() -> None:
    policy = Backoff()
    with pytest.raises(AttributeError):
        policy.initial = 3.0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"initial": -1}, ValueError),
        ({"initial": float("nan")}, ValueError),
        ({"maximum": float("inf")}, ValueError),
        ({"initial": "1"}, TypeError),
        ({"jitter": True}, TypeError),
        ({"multiplier": 0.5}, ValueError),
        ({"initial": 5.0, "maximum": 1.0}, ValueError),
        ({"max_attempts": 0}, ValueError),
        ({"max_attempts": 1.5}, TypeError),
        ({"max_elapsed": -1.0}, ValueError),
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_delay_rejects_attempt_zero() -> None:
    with pytest.raises(ValueError, match="from 1"):
        Backoff().delay(0, random.Random())


def test_retry_after_seconds() -> None:
    assert retry_after("120", now=0.0) == 120.0
    assert retry_after(" 3 ", now=0.0) == 3.0


def test_retry_after_http_date() -> None:
    now = 1_800_000_000.0
    assert retry_after(formatdate(now + 30, usegmt=True), now=now) == pytest.approx(30.0)
    assert retry_after(formatdate(now - 30, usegmt=True), now=now) == 0.0


@pytest.mark.parametrize(
    "value", ["86401", "10000000000", "1" + "0" * 400, "Fri, 31 Dec 9999 23:59:59 GMT"]
)
def test_retry_after_past_a_day_is_a_day(value: str) -> None:
    # stop.wait() raised OverflowError past threading.TIMEOUT_MAX (and on inf).
    assert retry_after(value, now=1_800_000_000.0) == MAX_DELAY == 86400.0


def test_no_policy_waits_more_than_a_day() -> None:
    policy = Backoff(initial=1e300, maximum=1e308, jitter=1.0)
    assert policy.delay(1, FixedRandom(0.999)) == MAX_DELAY


@pytest.mark.parametrize("value", [None, "", "soon", "-5", "1.5", "\u0661"])
def test_retry_after_unparsable_is_none(value: str | None) -> None:
    assert retry_after(value, now=0.0) is None


def test_slow_growth_still_reaches_the_maximum_after_many_attempts() -> None:
    # 1.001 ** 999_999 is far past the cap: clamping the exponent would stop at 2.7 s.
    policy = Backoff(initial=1.0, maximum=3600.0, multiplier=1.001, jitter=0.0)
    assert policy.delay(10**6, FixedRandom(0.0)) == 3600.0
    assert policy.delay(1001, FixedRandom(0.0)) == pytest.approx(1.001**1000)


def test_an_integer_multiplier_and_a_huge_attempt_number_answer_at_once() -> None:
    # An int ** int would be computed exactly (10**8 bits); the cap applies instead.
    policy = Backoff(initial=1, maximum=30, multiplier=2, jitter=0.0)
    assert policy.delay(10**8, FixedRandom(0.0)) == 30.0


def test_an_initial_delay_of_zero_stays_zero_at_any_attempt() -> None:
    policy = Backoff(initial=0.0, maximum=30.0, jitter=0.5)
    assert [policy.delay(n, FixedRandom(0.9)) for n in (1, 2, 50, 10**6)] == [0.0] * 4


def test_a_multiplier_of_one_means_a_constant_delay() -> None:
    policy = Backoff(initial=2.0, maximum=30.0, multiplier=1.0, jitter=0.0)
    assert [policy.delay(n, FixedRandom(0.0)) for n in (1, 2, 10)] == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"initial": "1"}, TypeError, "initial must be a number of seconds, not '1'"),
        ({"maximum": None}, TypeError, "maximum must be a number of seconds, not None"),
        ({"reset_after": -2.0}, ValueError, r"reset_after must be finite and >= 0, not -2\.0"),
        ({"multiplier": 0.5}, ValueError, r"multiplier must be >= 1, not 0\.5"),
        ({"initial": 5.0, "maximum": 1.0}, ValueError, "maximum must be >= initial"),
        ({"max_attempts": 1.5}, TypeError, r"max_attempts must be an int or None, not 1\.5"),
        ({"max_attempts": True}, TypeError, "max_attempts must be an int or None, not True"),
        ({"max_attempts": 0}, ValueError, "max_attempts must be >= 1, not 0"),
        ({"max_elapsed": "5"}, TypeError, "max_elapsed must be a number of seconds"),
    ],
)
def test_an_invalid_policy_says_which_option_and_why(
    kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=f"^{message}"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_retry_after_date_without_a_zone_is_gmt_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # formatdate() writes "-0000", for which email.utils returns a naive datetime;
    # an HTTP-date is GMT (RFC 9110, 5.6.7), never the machine's local time.
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset() is POSIX only")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        now = 1_800_000_000.0
        value = formatdate(now + 30)
        assert value.endswith("-0000")
        assert retry_after(value, now=now) == pytest.approx(30.0)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_boundary_policies_are_accepted() -> None:
    # A fixed delay (maximum == initial) and a single attempt are legitimate policies.
    fixed = Backoff(initial=5.0, maximum=5.0, jitter=0.0)
    assert fixed.delay(4, FixedRandom(0.0)) == 5.0
    once = Backoff(max_attempts=1)
    assert once.exhausted(1, 0.0)


@pytest.mark.parametrize("multiplier", [1.5, 2, 3.0, 10, 1e6])
def test_any_number_of_failures_waits_the_cap(multiplier: float) -> None:
    # A stream retrying forever counts its failures without bound: 3.0 ** 700
    # overflowed a float, and the stream died of an OverflowError.
    policy = Backoff(initial=1.0, maximum=30.0, multiplier=multiplier, jitter=0.0)
    for attempt in (50, 700, 1001, 10**6):
        assert policy.delay(attempt, random.Random()) == 30.0


def test_a_server_retry_of_zero_waits_the_cap_after_any_number_of_failures() -> None:
    policy = Backoff(multiplier=3.0, jitter=0.0)
    assert policy.delay(1, random.Random(), server_retry=0.0) == 0.0
    for attempt in (700, 1001, 10**6):
        assert policy.delay(attempt, random.Random(), server_retry=0.0) == 30.0


def test_retry_after_asctime_date_is_gmt_whatever_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RFC 9110 5.6.7: recipients accept the obsolete asctime form, which has no
    # zone; like every HTTP-date it is GMT, not the machine's local time.
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    now = 1_800_000_000.0
    asctime = time.asctime(time.gmtime(now + 30))
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    try:
        assert retry_after(asctime, now=now) == pytest.approx(30.0)
    finally:
        monkeypatch.undo()
        time.tzset()
