"""A lane: one prober while halted, throttling as a gate, and what /status shows of it."""

from __future__ import annotations

import asyncio
import random

from stream.core.graph_response import MetaError
from stream.core.retry import RetryPolicy
from stream.core.window import LaneKey
from stream.deliver.lanes import Lane

KEY = LaneKey("graph", "222", "TEST1")


def lane(now: list[float]) -> Lane:
    return Lane(KEY, max_in_flight=2, throttle_policy=RetryPolicy(base_s=5, max_s=5),
                rnd=random.Random(1), clock=lambda: now[0])  # fmt: skip


def test_a_halted_lane_lets_only_its_prober_through_until_it_succeeds() -> None:
    """While halted, a second request waits at the gate; the prober's success reopens the lane
    and lets it through."""
    now = [100.0]
    subject = lane(now)
    first, second = object(), object()

    async def scenario() -> list[str]:
        order: list[str] = []
        assert subject.halt(first, "code 190")
        await subject.gate(first)  # the prober passes
        waiter = asyncio.create_task(subject.gate(second))
        await asyncio.sleep(0.01)
        order.append("waiting" if not waiter.done() else "passed")
        subject.succeeded(first)
        await asyncio.wait_for(waiter, 1)
        order.append("passed")
        return order

    assert asyncio.run(scenario()) == ["waiting", "passed"]
    assert not subject.halted


def test_a_prober_that_gives_up_hands_over_to_a_waiter() -> None:
    """release() by the prober of a still-halted lane wakes a waiter, which becomes the prober."""
    subject = lane([0.0])
    first, second = object(), object()

    async def scenario() -> object:
        subject.halt(first, "code 10")
        waiter = asyncio.create_task(subject.gate(second))
        await asyncio.sleep(0.01)
        subject.release(first)
        await asyncio.wait_for(waiter, 1)
        return subject.prober

    assert asyncio.run(scenario()) is second


def test_status_shows_halted_since_with_metas_error_then_running_with_a_success() -> None:
    """The status row names the state, since when, Meta's last error and the last success."""
    now = [1000.0]
    subject = lane(now)
    subject.errored(MetaError(190, 463, "OAuthException", "Session has expired",
                                    fbtrace_id="Tr1"))  # fmt: skip
    subject.halt(object(), "code 190")
    now[0] = 1010.0
    row = subject.status(pending=20, oldest_event_age_s=30.0, oldest_wait_s=12.0)
    assert (row.state, row.since, row.pending) == ("halted", 1000.0, 20)
    assert row.test_event_code == "TEST1"
    assert row.last_error is not None
    assert (row.last_error.code, row.last_error.subcode) == (190, 463)
    assert (row.last_error.message, row.last_error.fbtrace_id, row.last_error.at) == (
        "Session has expired", "Tr1", 1000.0)  # fmt: skip
    assert row.last_success_at is None
    subject.succeeded(subject.prober)
    row = subject.status()
    assert (row.state, row.since, row.last_success_at) == ("running", None, 1010.0)


def test_a_throttled_lane_reports_throttled_since_its_first_throttle() -> None:
    """Throttled from the first throttle answer (a second one keeps that time) until the wait
    is over; then running again."""
    now = [10.0]
    subject = lane(now)
    subject.throttled(30.0)
    now[0] = 20.0
    subject.throttled(30.0)
    assert (subject.status().state, subject.status().since) == ("throttled", 10.0)
    now[0] = subject.throttle.ready_at()
    assert (subject.status().state, subject.status().since) == ("running", None)
