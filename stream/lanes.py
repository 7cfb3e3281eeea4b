"""Per-lane delivery state: the throttle gate, the halt on setup errors, the in-flight limit.

A lane is one (destination, pixel_id, test_event_code). Throttling slows only its lane; a setup
error (bad token, missing permission) halts only its lane: one request probes it now and then
while the others wait, and the first accepted probe reopens it. Other lanes go on throughout.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Callable

from stream.core.retry import LaneThrottle, RetryPolicy
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
        self.prober: object | None = None
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

    def halt(self, who: object, reason: str) -> bool:
        """Halt the lane; returns True when ``who`` becomes the one request that probes it."""
        self.halted_reason = reason
        self._reopened.clear()
        if self.prober is None:
            self.prober = who
        return self.prober is who

    def succeeded(self, who: object) -> None:
        """An accepted request: the throttle resets and, if it was halted, the lane reopens."""
        self.throttle.on_success(self._clock())
        if self.halted and (self.prober is who or self.prober is None):
            self.halted_reason = None
            self.prober = None
            self._reopened.set()

    def release(self, who: object) -> None:
        """``who`` finished without reopening the lane; another waiting request may probe."""
        if self.prober is who:
            self.prober = None
            if self.halted:
                # wake the waiters so one of them takes over probing
                self._reopened.set()
                self._reopened = asyncio.Event()
