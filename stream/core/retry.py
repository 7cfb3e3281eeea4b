"""Retry math: full-jitter exponential backoff, server hints, and a throttle gate per lane.

Pure helpers beside the I/O (as confluent-kafka's schema-registry client keeps ``full_jitter``):
the sink reports what came back, the loop asks here how long to wait. Nothing sleeps.

Full jitter (AWS architecture blog, "Exponential Backoff And Jitter"): the n-th consecutive
failure waits ``uniform(0, min(max_s, base_s * 2**(n-1)))``. A server hint is a floor: when
Meta says "come back in 5 minutes", no jitter may bring us back earlier. Worked example with
``base_s=0.5, max_s=30``::

    attempt 1 -> cap 0.5   draw 0.4 -> 0.2 s
    attempt 4 -> cap 4.0   draw 0.4 -> 1.6 s
    attempt 9 -> cap 30.0  draw 0.4 -> 12.0 s;  with a Retry-After of 60 -> 60.0 s
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

import orjson

from stream.core.errors import ConfigError
from stream.core.json_values import number

#: When X-App-Usage reports a quota at 100 % but no time to wait, Meta's limiter works over a
#: rolling hour; a minute is a floor that avoids hammering without stalling the lane for long.
APP_USAGE_SATURATED_WAIT_S = 60.0

# Past this many doublings every cap is max_s anyway; stops 2**n overflowing a float.
_MAX_DOUBLINGS = 64


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long to wait before the next attempt, and when to stop trying.

    ``max_attempts`` and ``max_elapsed_s`` may both be None: at-least-once delivery retries a
    transient failure until the event's own age limit, which the loop checks separately.
    """

    base_s: float = 0.5
    max_s: float = 30.0
    max_attempts: int | None = None
    max_elapsed_s: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.base_s <= self.max_s:
            raise ConfigError(f"retry needs 0 < base_s <= max_s, got {self.base_s}, {self.max_s}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1, not {self.max_attempts}")
        if self.max_elapsed_s is not None and self.max_elapsed_s < 0:
            raise ConfigError(f"max_elapsed_s must not be negative, not {self.max_elapsed_s}")

    def cap(self, attempt: int) -> float:
        """The upper bound of the jittered wait after the ``attempt``-th failure (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt counts failures from 1, not {attempt}")
        doublings = min(attempt - 1, _MAX_DOUBLINGS)
        return min(self.max_s, self.base_s * 2.0**doublings)

    def backoff(
        self, attempt: int, rnd: random.Random | float, hint_s: float | None = None
    ) -> float:
        """Seconds to wait after the ``attempt``-th consecutive failure.

        ``rnd`` is a ``random.Random`` (seeded in tests) or a draw in [0, 1) already made.
        ``hint_s`` (Retry-After, usage headers) is a floor, never capped by ``max_s``.
        """
        draw = rnd.random() if isinstance(rnd, random.Random) else rnd
        if not 0.0 <= draw <= 1.0:
            raise ValueError(f"a jitter draw lies in [0, 1], not {draw}")
        delay = draw * self.cap(attempt)
        return delay if hint_s is None else max(delay, hint_s)

    def exhausted(self, attempts: int, elapsed_s: float) -> bool:
        """Whether to give up after ``attempts`` failures spread over ``elapsed_s`` seconds."""
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return self.max_elapsed_s is not None and elapsed_s >= self.max_elapsed_s


class LaneThrottle:
    """A gate per lane: after a throttle answer the lane waits; other lanes go on.

    Consecutive throttles back off exponentially (with the server hint as a floor); one success
    resets the count. ``ready_at()`` is ``-inf`` until the first throttle.
    """

    __slots__ = ("_policy", "_ready_at", "_rnd", "_strikes")

    def __init__(self, policy: RetryPolicy, rnd: random.Random) -> None:
        self._policy = policy
        self._rnd = rnd
        self._strikes = 0
        self._ready_at = -math.inf

    def on_throttle(self, now: float, hint_s: float | None = None) -> float:
        """Record a throttle answer; return the time the lane may send again."""
        self._strikes += 1
        delay = self._policy.backoff(self._strikes, self._rnd, hint_s)
        # Requests in flight when the limit hit come back throttled too; none may shorten
        # a wait an earlier answer already imposed.
        self._ready_at = max(self._ready_at, now + delay)
        return self._ready_at

    def on_success(self, now: float) -> None:  # noqa: ARG002 - keeps the hook shape uniform
        """Record an accepted request: the next throttle starts from the base again."""
        self._strikes = 0

    def ready_at(self) -> float:
        """When the lane may send; in the past (or -inf) when it is open."""
        return self._ready_at

    def is_open(self, now: float) -> bool:
        """Whether the lane may send at ``now``."""
        return now >= self._ready_at

    @property
    def strikes(self) -> int:
        """Consecutive throttle answers since the last success."""
        return self._strikes


def server_hint_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The longest wait any rate-limit header asks for, in seconds; None if none asks.

    Reads ``Retry-After`` (seconds, or an HTTP date when ``now`` is given),
    ``X-Business-Use-Case-Usage`` ``estimated_time_to_regain_access`` (minutes),
    ``X-Ad-Account-Usage`` ``reset_time_duration`` (seconds) and ``X-App-Usage`` (percentages:
    any at 100 gives :data:`APP_USAGE_SATURATED_WAIT_S`). Garbage in a header is ignored.
    """
    lower = {key.lower(): value for key, value in headers.items()}
    hints = [
        _retry_after_s(lower.get("retry-after"), now),
        _buc_wait_s(lower.get("x-business-use-case-usage")),
        _ad_account_wait_s(lower.get("x-ad-account-usage")),
        _app_usage_wait_s(lower.get("x-app-usage")),
    ]
    waits = [hint for hint in hints if hint is not None and hint > 0]
    return max(waits) if waits else None


def _retry_after_s(value: str | None, now: float | None) -> float | None:
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) else None
    if now is None:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - now if when.tzinfo is not None else None


def _json(value: str | None) -> object:
    if value is None:
        return None
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError:
        return None


def _buc_wait_s(value: str | None) -> float | None:
    # {"<business id>": [{"type": "ads_management", "call_count": 100, ...,
    #                     "estimated_time_to_regain_access": 19}]}   (minutes)
    parsed = _json(value)
    if not isinstance(parsed, dict):
        return None
    minutes = [
        number(entry.get("estimated_time_to_regain_access"))
        for entries in parsed.values()
        if isinstance(entries, list)
        for entry in entries
        if isinstance(entry, dict)
    ]
    found = [m for m in minutes if m is not None]
    return max(found) * 60.0 if found else None


def _ad_account_wait_s(value: str | None) -> float | None:
    parsed = _json(value)
    return number(parsed.get("reset_time_duration")) if isinstance(parsed, dict) else None


def _app_usage_wait_s(value: str | None) -> float | None:
    # {"call_count": 100, "total_cputime": 25, "total_time": 25}   (percent of the quota)
    parsed = _json(value)
    if not isinstance(parsed, dict):
        return None
    usage = [number(v) for v in parsed.values()]
    saturated = any(u is not None and u >= 100 for u in usage)
    return APP_USAGE_SATURATED_WAIT_S if saturated else None
