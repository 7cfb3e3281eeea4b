"""Retry math: full-jitter backoff, server hints as floors, and the per-lane throttle gate."""

from __future__ import annotations

import math
import random

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream.core.errors import ConfigError
from stream.core.retry import (
    APP_USAGE_SATURATED_WAIT_S,
    LaneThrottle,
    RetryPolicy,
    server_hint_s,
)

POLICY = RetryPolicy(base_s=0.5, max_s=30.0)


class TopDraw(random.Random):
    """Always draws the top of the jitter range, so waits equal their caps."""

    def random(self) -> float:
        return 1.0


@pytest.mark.parametrize(("attempt", "cap"), [(1, 0.5), (2, 1.0), (4, 4.0), (7, 30.0), (9, 30.0)])
def test_the_cap_doubles_per_failure_up_to_max_s(attempt: int, cap: float) -> None:
    """The n-th failure caps the wait at min(max_s, base_s * 2**(n-1))."""
    assert POLICY.cap(attempt) == cap


@pytest.mark.parametrize(
    ("attempt", "hint", "expected"),
    [(1, None, 0.2), (4, None, 1.6), (9, None, 12.0), (9, 60, 60.0)],
)
def test_the_worked_example_of_the_module_docstring(
    attempt: int, hint: float | None, expected: float
) -> None:
    """With a draw of 0.4 the waits are 0.2, 1.6, 12 s, and a 60 s hint wins."""
    assert POLICY.backoff(attempt, 0.4, hint) == pytest.approx(expected)


@given(attempt=st.integers(1, 10_000), seed=st.integers(0, 2**32))
def test_a_jittered_wait_lies_between_zero_and_the_cap(attempt: int, seed: int) -> None:
    """Full jitter draws uniformly in [0, cap], even for absurd attempt counts."""
    wait = POLICY.backoff(attempt, random.Random(seed))
    assert 0.0 <= wait <= POLICY.cap(attempt) <= POLICY.max_s


def test_a_seeded_random_gives_a_repeatable_wait() -> None:
    """Tests (and replays) get the same waits from the same seed."""
    assert POLICY.backoff(5, random.Random(7)) == POLICY.backoff(5, random.Random(7))


def test_a_server_hint_is_a_floor_not_capped_by_max_s() -> None:
    """Meta's "come back in 10 minutes" is honoured even past max_s."""
    assert POLICY.backoff(1, 0.99, hint_s=600.0) == 600.0
    assert POLICY.backoff(1, 1.0, hint_s=0.1) == 0.5


def test_a_draw_outside_the_unit_interval_is_refused() -> None:
    """A float draw is a probability; anything else is a caller bug."""
    with pytest.raises(ValueError, match="jitter draw"):
        POLICY.backoff(1, 1.5)


def test_attempts_count_from_one() -> None:
    """Attempt 0 would mean no failure yet, so there is nothing to back off from."""
    with pytest.raises(ValueError, match="from 1"):
        POLICY.cap(0)


def test_a_policy_without_limits_is_never_exhausted() -> None:
    """By default a transient failure is retried until the event's age limit (the loop's call)."""
    assert not POLICY.exhausted(10_000, 1e9)


def test_max_attempts_exhausts_after_that_many_failures() -> None:
    """max_attempts=3 gives up on the third failure."""
    policy = RetryPolicy(max_attempts=3)
    assert not policy.exhausted(2, 0.0)
    assert policy.exhausted(3, 0.0)


def test_max_elapsed_exhausts_after_that_much_time() -> None:
    """max_elapsed_s bounds the time spent retrying whatever the attempt count."""
    policy = RetryPolicy(max_elapsed_s=60.0)
    assert not policy.exhausted(50, 59.9)
    assert policy.exhausted(1, 60.0)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_s": 0.0},
        {"base_s": 10.0, "max_s": 1.0},
        {"max_attempts": 0},
        {"max_elapsed_s": -1.0},
    ],
)
def test_impossible_policies_are_refused(kwargs: dict[str, float]) -> None:
    """A policy that could never wait, or never try, is a config error."""
    with pytest.raises(ConfigError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


def test_retry_after_in_seconds_is_read_whatever_the_header_case() -> None:
    """Retry-After: 120 asks for 120 s; header names are case-insensitive."""
    assert server_hint_s({"retry-after": "120"}) == 120.0
    assert server_hint_s({"Retry-After": " 2.5 "}) == 2.5


def test_retry_after_as_an_http_date_counts_from_now() -> None:
    """An HTTP-date Retry-After is turned into seconds from the given now."""
    now = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert server_hint_s({"Retry-After": "Tue, 14 Nov 2023 22:14:20 GMT"}, now) == 60.0


def test_retry_after_as_a_date_without_now_is_ignored() -> None:
    """Without a clock reading the date cannot be used, and the core reads no clock."""
    assert server_hint_s({"Retry-After": "Tue, 14 Nov 2023 22:14:20 GMT"}) is None


def test_business_use_case_usage_gives_minutes_as_seconds() -> None:
    """estimated_time_to_regain_access is in minutes; the longest entry wins."""
    usage = {
        "1234567890": [
            {"type": "ads_management", "call_count": 100, "total_cputime": 25, "total_time": 25,
             "estimated_time_to_regain_access": 19},
            {"type": "custom_audience", "call_count": 40, "estimated_time_to_regain_access": 0},
        ]
    }  # fmt: skip
    headers = {"X-Business-Use-Case-Usage": orjson.dumps(usage).decode()}
    assert server_hint_s(headers) == 19 * 60.0


def test_a_saturated_app_usage_gives_the_fixed_floor() -> None:
    """X-App-Usage at 100 % of any quota asks for a wait; below it, none."""
    full = {"X-App-Usage": '{"call_count":100,"total_cputime":25,"total_time":25}'}
    busy = {"X-App-Usage": '{"call_count":99,"total_cputime":25,"total_time":25}'}
    assert server_hint_s(full) == APP_USAGE_SATURATED_WAIT_S
    assert server_hint_s(busy) is None


def test_ad_account_usage_reset_time_is_read_in_seconds() -> None:
    """X-Ad-Account-Usage reset_time_duration is a wait in seconds."""
    headers = {"x-ad-account-usage": '{"acc_id_util_pct":100,"reset_time_duration":300}'}
    assert server_hint_s(headers) == 300.0


def test_the_longest_hint_wins() -> None:
    """When several headers ask for waits, all of them are honoured."""
    headers = {
        "Retry-After": "30",
        "X-App-Usage": '{"call_count":100}',
        "X-Business-Use-Case-Usage": '{"1":[{"estimated_time_to_regain_access":1}]}',
    }
    assert server_hint_s(headers) == 60.0


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Retry-After": "soon"},
        {"Retry-After": "nan"},
        {"Retry-After": "0"},
        {"X-Business-Use-Case-Usage": "{not json"},
        {"X-Business-Use-Case-Usage": '["list"]'},
        {"X-Business-Use-Case-Usage": '{"1":[{"estimated_time_to_regain_access":"x"}]}'},
        {"X-App-Usage": "[]"},
        {"X-App-Usage": '{"call_count":true}'},
        {"X-Ad-Account-Usage": "null"},
    ],
)
def test_missing_or_garbage_headers_give_no_hint(headers: dict[str, str]) -> None:
    """A header that cannot be read is ignored, never raised."""
    assert server_hint_s(headers) is None


@given(st.dictionaries(st.sampled_from(["Retry-After", "X-App-Usage", "X-Business-Use-Case-Usage",
                                        "X-Ad-Account-Usage"]), st.text()))  # fmt: skip
def test_no_header_value_makes_hint_parsing_raise(headers: dict[str, str]) -> None:
    """Arbitrary header text yields a hint or None, never an exception."""
    hint = server_hint_s(headers, now=1_700_000_000.0)
    assert hint is None or hint > 0


def test_a_new_lane_is_open() -> None:
    """Before any throttle the gate is open at any time."""
    gate = LaneThrottle(POLICY, random.Random(1))
    assert gate.ready_at() == -math.inf
    assert gate.is_open(0.0)


def test_a_throttle_closes_the_lane_at_least_for_the_hint() -> None:
    """on_throttle returns (and ready_at reports) now plus a wait no shorter than the hint."""
    gate = LaneThrottle(POLICY, random.Random(1))
    ready = gate.on_throttle(100.0, hint_s=20.0)
    assert ready == gate.ready_at() >= 120.0
    assert not gate.is_open(119.9)
    assert gate.is_open(ready)


def test_consecutive_throttles_grow_the_wait() -> None:
    """Each throttle without a success in between doubles the cap of the next wait."""
    gate = LaneThrottle(RetryPolicy(base_s=1.0, max_s=1000.0), TopDraw())
    now, waits = 0.0, []
    for _ in range(5):
        ready = gate.on_throttle(now)
        waits.append(ready - now)
        now = ready
    assert waits == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert gate.strikes == 5


def test_a_later_shorter_answer_never_shortens_the_wait() -> None:
    """Requests in flight when the limit hit come back throttled too; the longest wait holds."""
    gate = LaneThrottle(POLICY, random.Random(1))
    first = gate.on_throttle(100.0, hint_s=300.0)
    assert gate.on_throttle(101.0, hint_s=1.0) == first


def test_a_success_resets_the_backoff() -> None:
    """After an accepted request the next throttle starts from base_s again."""
    gate = LaneThrottle(RetryPolicy(base_s=1.0, max_s=1000.0), TopDraw())
    for _ in range(6):
        gate.on_throttle(0.0)
    gate.on_success(500.0)
    assert gate.strikes == 0
    assert gate.on_throttle(1000.0) == 1001.0
