"""Sending a batch until Meta gives a verdict: retry, throttle, halt, isolation, short receipts.

No Kafka and no settings object here: the sender gets a way to post, a way to build requests,
its limits, and :class:`Outcomes`, through which the stage settles what the sender decides.

Per answer (design.md's failure table, classified by :func:`stream.core.graph_response.classify`):

- accepted in full: the lane's throttle resets (a halted lane reopens); the events settle;
- short receipt (``events_received`` below the events sent): Meta does not say which it missed,
  so none is confirmed; the batch is re-sent whole (Meta deduplicates by ``event_id``) up to
  ``short_receipt_retries`` times, then dead-lettered as ``short_receipt``;
- invalid: the bad events are isolated (:mod:`stream.core.isolate`) and dead-lettered with
  Meta's error; the rest is delivered;
- throttled: the whole lane backs off; transient: this batch backs off (full jitter);
- setup (token, permission): the lane halts; one request probes it, doubling its wait.

Every failed request counts one attempt on each of its events, and the first failure's time,
which their dead letters carry. Before each attempt, :meth:`Outcomes.live` drops events that
were settled or revoked meanwhile, and dead-letters those that reached their age limit.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

from stream.core.dead_letter import SHORT_RECEIPT
from stream.core.delivery_rules import Failure
from stream.core.graph_response import (
    Accepted,
    Invalid,
    MetaError,
    Outcome,
    Setup,
    Throttled,
    classify,
)
from stream.core.isolate import Isolation, Probe, Step
from stream.core.retry import RetryPolicy
from stream.core.sensors import NullSensor, Sensor
from stream.core.window import Batch, LaneKey, Pending
from stream.deliver.destinations import Request
from stream.deliver.lanes import Lane
from stream.deliver.stats import DelivererStats
from stream.logs import get_logger
from stream.sinks.http import HttpAnswer

log = get_logger("capi_stream.deliverer")

#: How often a halted lane's prober tries again (doubling up to the retry maximum).
HALT_PROBE_BASE_S: Final = 2.0

Items = tuple[Pending, ...]
Post = Callable[[str, bytes], Awaitable[HttpAnswer]]


class Outcomes(Protocol):
    """How the stage settles what the sender decides (all on the loop's thread)."""

    def live(self, items: Items) -> Items:
        """``items`` still owed; dead-letters those past their age limit."""

    def failed(self, items: Items) -> None:
        """A request carrying ``items`` failed: one more attempt each."""

    def accepted(self, lane: LaneKey, items: Items, answer: Accepted, attempts: int) -> None:
        """Meta accepted ``items`` in full after ``attempts`` requests."""

    def dead(self, item: Pending, failure: Failure) -> None:
        """Dead-letter ``item``."""


@dataclass(frozen=True, slots=True)
class SendLimits:
    """The sender's part of the deliverer settings."""

    max_in_flight: int = 32
    max_in_flight_per_lane: int = 4
    short_receipt_retries: int = 3
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Sender:
    """Sends batches on their lanes; one :class:`Lane` per lane key, made on first use."""

    def __init__(
        self,
        post: Post,
        request: Callable[[LaneKey, Sequence[Pending]], Request],
        outcomes: Outcomes,
        limits: SendLimits,
        *,
        rnd: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        sensor: Sensor | None = None,
        stats: DelivererStats | None = None,
    ) -> None:
        self._post = post
        self._request = request
        self._outcomes = outcomes
        self._limits = limits
        self._retry = limits.retry
        self._rnd = rnd or random.Random()  # noqa: S311 - jitter, not cryptography
        self._clock = clock
        self._sensor: Sensor = sensor or NullSensor()
        self.stats = stats or DelivererStats()
        self._in_flight = asyncio.Semaphore(limits.max_in_flight)
        self.lanes: dict[LaneKey, Lane] = {}

    def lane(self, key: LaneKey) -> Lane:
        """The lane of ``key``, made on first use."""
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(
                key, max_in_flight=self._limits.max_in_flight_per_lane,
                throttle_policy=self._retry, rnd=self._rnd, clock=self._clock,
            )  # fmt: skip
        return lane

    async def deliver(self, batch: Batch) -> None:
        """Send ``batch`` until every event in it is accepted, dead-lettered or revoked."""
        self.stats.batches += 1
        self._sensor.count("batches", pixel=batch.lane.pixel_id)
        self._sensor.observe("batch_events", len(batch))
        verdict = await self._until_verdict(batch.lane, batch.items)
        if isinstance(verdict, Invalid):
            await self._isolate(batch.lane, batch.items, verdict)

    async def _until_verdict(self, key: LaneKey, items: Items) -> Accepted | Invalid | None:
        """Send until Meta accepts in full or rejects the content; retries everything else.

        None when the events expired, stayed short through every re-send (both dead-lettered)
        or were revoked.
        """
        lane, me = self.lane(key), object()
        attempts = shorts = 0
        try:
            while True:
                items = self._outcomes.live(items)
                if not items:
                    return None
                await lane.gate(me)
                outcome = await self._send(lane, items)
                if isinstance(outcome, Accepted) and not outcome.short:
                    lane.succeeded(me)
                    self._outcomes.accepted(key, items, outcome, attempts + 1)
                    return outcome
                attempts += 1
                self._outcomes.failed(items)
                if isinstance(outcome, Accepted):
                    # the lane works (the token was taken); the batch is not confirmed
                    lane.succeeded(me)
                    shorts += 1
                    if self._short(key, items, outcome, shorts):
                        return None
                    await asyncio.sleep(self._retry.backoff(shorts, self._rnd))
                    continue
                if isinstance(outcome, Invalid):
                    lane.succeeded(me)
                    lane.errored(outcome.meta_error)
                    return outcome
                await self._failed(lane, me, outcome, attempts)
        finally:
            lane.release(me)

    async def _failed(self, lane: Lane, me: object, outcome: Outcome, attempts: int) -> None:
        """Wait as a throttle, halt or transient failure asks (``outcome`` is one of them)."""
        self.stats.retries += 1
        # a failed request leaves reference cycles that hold its body (up to a few MB): with the
        # raised gen-0 threshold and the consumer paused in an outage, nothing else would
        # allocate enough to collect them (RSS grew 150 MB in a 15 s outage)
        gc.collect(0)
        self._sensor.count("retries", kind=type(outcome).__name__.lower())
        key = lane.key
        if isinstance(outcome, Throttled):
            if outcome.error is not None:
                lane.errored(outcome.error)
            lane.throttled(outcome.retry_after_s)
            return
        if isinstance(outcome, Setup):
            lane.errored(outcome.error)
            if lane.halt(me, f"code {outcome.code}"):
                log.error("lane halted", pixel=key.pixel_id, code=outcome.code,
                          subcode=outcome.subcode, message=outcome.message,
                          fbtrace_id=outcome.fbtrace_id)  # fmt: skip
            delay = min(HALT_PROBE_BASE_S * 2 ** min(attempts, 10), self._retry.max_s)
            await asyncio.sleep(delay)
            return
        if isinstance(outcome, Accepted | Invalid):
            raise TypeError(f"not a failure: {type(outcome).__name__}")
        if outcome.error is not None:
            lane.errored(outcome.error)
        await asyncio.sleep(self._retry.backoff(attempts, self._rnd, outcome.retry_after_s))

    async def _send(self, lane: Lane, items: Items) -> Outcome:
        key = lane.key
        request = self._request(key, items)
        async with lane.slots, self._in_flight:
            lane.in_flight += 1
            try:
                answer = await self._post(request.url, request.body)
            finally:
                lane.in_flight -= 1
        self.stats.requests += 1
        outcome = classify(
            answer.status, answer.body, answer.headers, answer.transport_error, len(items),
            now=self._clock(), gateway=key.destination == "gateway",
        )  # fmt: skip
        self._sensor.observe("request_seconds", answer.elapsed_s)
        self._sensor.count("requests", outcome=type(outcome).__name__.lower(), pixel=key.pixel_id)
        if not isinstance(outcome, Accepted):
            log.warning("request failed", pixel=key.pixel_id, events=len(items),
                        outcome=type(outcome).__name__, status=answer.status,
                        error=answer.transport_error)  # fmt: skip
        return outcome

    def _short(self, key: LaneKey, items: Items, short: Accepted, shorts: int) -> bool:
        """A short receipt; True when it was the last allowed and the batch is dead-lettered.

        Meta does not say which events it did not count, so all of them stay unconfirmed (and
        their offsets uncommitted) until a full answer to a re-send, or their dead letters.
        """
        self.stats.short_receipts += 1
        self._sensor.count("short_receipts", pixel=key.pixel_id)
        final = shorts > self._limits.short_receipt_retries
        log.warning(
            "events_received below events sent", pixel=key.pixel_id, sent=len(items),
            received=short.events_received, fbtrace_id=short.fbtrace_id, short_answers=shorts,
            then="dead-letter" if final else "re-send",
        )  # fmt: skip
        if not final:
            return False
        why = (
            f"Meta counted {short.events_received} of {len(items)} events in the last of {shorts} "
            "short answers; which events it missed is unknown"
        )
        meta = MetaError(message=why, fbtrace_id=short.fbtrace_id)
        for item in items:
            failure = Failure(
                SHORT_RECEIPT, why, meta, key.pixel_id, item.event_id, item.event_name
            )
            self._outcomes.dead(item, failure)
        return True

    async def _isolate(self, key: LaneKey, items: Items, first: Invalid) -> None:
        """Dead-letter only the events Meta rejects; deliver the rest (docs/capi.md §5.4)."""
        iso: Isolation[Pending] = Isolation(items)

        async def probe(p: Probe[Pending]) -> None:
            verdict = await self._until_verdict(key, p.items)
            await run(iso.on_result(p, verdict if isinstance(verdict, Invalid) else None))

        async def run(step: Step[Pending]) -> None:
            for dead in step.dead:
                item, error = dead.item, dead.error
                self._outcomes.dead(item, Failure(
                    "rejected_by_meta", error.message or "invalid parameter", error,
                    key.pixel_id, item.event_id, item.event_name,
                ))  # fmt: skip
            if step.to_send:
                await asyncio.gather(*(probe(p) for p in step.to_send))

        await run(iso.start(first))
        log.info("isolated", pixel=key.pixel_id, events=len(items), requests=iso.requests)
