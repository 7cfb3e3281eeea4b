"""Per-lane delivery state: the throttle gate, the halt on setup errors, the in-flight limit.

A lane is one (destination, pixel_id, test_event_code). Throttling slows only its lane; a setup
error (bad token, missing permission) halts only its lane: one request probes it now and then
while the others wait, and the first accepted probe reopens it. Other lanes go on throughout.

A lane also remembers what ``/status`` shows of it: since when it is halted, its last success
and Meta's last error (code, subcode, message, fbtrace_id), and its requests in flight.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from stream.core.graph_response import MetaError
from stream.core.retry import LaneThrottle, RetryPolicy
from stream.core.status import LaneError, LaneStatus, State
from stream.core.window import LaneKey


class Lane:
    """Everything the deliverer knows about one lane, confined to the event loop's thread."""

    def __init__(
        self,
        key: LaneKey,
        *,
        max_in_flight: int,
        throttle_policy: RetryPolicy,
        rnd: random.Random,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.key = key
        self.slots = asyncio.Semaphore(max_in_flight)
        self.throttle = LaneThrottle(throttle_policy, rnd)
        self.halted_reason: str | None = None
        self.halted_since: float | None = None
        self.throttled_since: float | None = None
        self.prober: object | None = None
        self.in_flight = 0  # requests posted and not answered yet
        self.last_success_at: float | None = None
        self.last_error: LaneError | None = None
        self._reopened = asyncio.Event()
        self._reopened.set()
        self._clock = clock

    @property
    def halted(self) -> bool:
        return self.halted_reason is not None

    async def gate(self, who: object) -> None:
        """Wait until ``who`` may send on this lane: not throttled, and open or its prober."""
        while True:
            if self.halted:
                if self.prober is None:
                    self.prober = who  # the previous prober gave up its turn
                if self.prober is not who:
                    await self._reopened.wait()
                    continue
            wait = self.throttle.ready_at() - self._clock()
            if wait > 0 and not math.isinf(wait):
                await asyncio.sleep(wait)
                continue
            return

    def throttled(self, retry_after_s: float | None) -> None:
        """A throttle answer: the whole lane waits (the server's hint is a floor)."""
        now = self._clock()
        if self.throttled_since is None or self.throttle.is_open(now):
            self.throttled_since = now
        self.throttle.on_throttle(now, retry_after_s)

    def halt(self, who: object, reason: str) -> bool:
        """Halt the lane; returns True when ``who`` becomes the one request that probes it."""
        if self.halted_reason is None:
            self.halted_since = self._clock()
        self.halted_reason = reason
        self._reopened.clear()
        if self.prober is None:
            self.prober = who
        return self.prober is who

    def succeeded(self, who: object) -> None:
        """An accepted request: the throttle resets and, if it was halted, the lane reopens."""
        now = self._clock()
        self.throttle.on_success(now)
        self.throttled_since = None
        self.last_success_at = now
        if self.halted and (self.prober is who or self.prober is None):
            self.halted_reason = None
            self.halted_since = None
            self.prober = None
            self._reopened.set()

    def errored(self, error: MetaError) -> None:
        """Meta answered with an error: it becomes the lane's last error for ``/status``."""
        self.last_error = LaneError(
            error.code, error.error_subcode, error.message or "", error.fbtrace_id, self._clock()
        )

    def release(self, who: object) -> None:
        """``who`` finished without reopening the lane; another waiting request may probe."""
        if self.prober is who:
            self.prober = None
            if self.halted:
                # wake the waiters so one of them takes over probing
                self._reopened.set()
                self._reopened = asyncio.Event()

    def status(
        self,
        *,
        pending: int = 0,
        oldest_event_age_s: float | None = None,
        oldest_wait_s: float | None = None,
    ) -> LaneStatus:
        """The lane as ``/status`` shows it, with the stage's counts of its pending events."""
        key, now = self.key, self._clock()
        state: State
        since: float | None
        if self.halted:
            state, since = "halted", self.halted_since
        elif not self.throttle.is_open(now):
            state, since = "throttled", self.throttled_since
        else:
            state, since = "running", None
        return LaneStatus(
            pixel_id=key.pixel_id, test_event_code=key.test_event_code,
            destination=key.destination, state=state, since=since, pending=pending,
            in_flight=self.in_flight, oldest_event_age_s=oldest_event_age_s,
            oldest_wait_s=oldest_wait_s, last_success_at=self.last_success_at,
            last_error=self.last_error,
        )  # fmt: skip
