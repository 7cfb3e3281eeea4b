"""The sender against a scripted Graph endpoint: retries, isolation, halts, short receipts, and
the attempts and first failure time each dead letter carries."""

from __future__ import annotations

import asyncio

import pytest

import stream.deliver.sender
from stream.core.retry import RetryPolicy
from stream.core.window import Batch
from stream.deliver.sender import Sender, SendLimits
from tests.unit.deliver.helpers import LANE, TP, Script, error, ok, parts, request, ticking

FAST = SendLimits(short_receipt_retries=2, retry=RetryPolicy(base_s=0.001, max_s=0.01))


def run(script: Script, n: int, limits: SendLimits = FAST) -> tuple:
    settlement, settler, produced, items = parts(n, clock=ticking())
    sender = Sender(script.post, request, settler, limits)

    async def go() -> None:
        await sender.deliver(Batch(LANE, items, 0, 0.0))

    asyncio.run(go())
    return settlement, settler, produced, sender


def test_an_accepted_batch_settles_every_event_and_commits_past_it() -> None:
    """A full answer settles the events: their offsets become committable."""
    settlement, settler, produced, _ = run(Script([ok(3)]), 3)
    assert settlement.committable() == {TP: 3}
    assert settler.stats.delivered == 3
    assert produced.letters() == []


def test_transient_failures_are_retried_until_accepted() -> None:
    """Two 500s, then success: three requests of the same events, nothing dead."""
    script = Script([error(500, 2, "Service temporarily unavailable"), error(503, 1, "Unknown"),
                     ok(2)])  # fmt: skip
    settlement, _, produced, sender = run(script, 2)
    assert script.requests == [["e0", "e1"]] * 3
    assert settlement.committable() == {TP: 2}
    assert sender.stats.retries == 2
    assert produced.letters() == []


def test_a_rejected_event_is_isolated_and_its_letter_counts_every_attempt() -> None:
    """A transient failure, then Meta names event 1 as invalid: only event 1 is dead-lettered,
    with Meta's error, attempts 2 (the failed request and the rejected one) and its first
    failure's time before its last; the others are re-sent and delivered."""
    script = Script([
        error(500, 2, "Service temporarily unavailable"),
        error(400, 100, "Invalid parameter", error_data={"event_index": 1}, error_subcode=2804003),
        ok(2),
    ])  # fmt: skip
    settlement, _, produced, _ = run(script, 3)
    assert script.requests == [["e0", "e1", "e2"], ["e0", "e1", "e2"], ["e0", "e2"]]
    (letter,) = produced.letters()
    assert (letter["event_id"], letter["reason"]) == ("e1", "rejected_by_meta")
    assert letter["meta_error"]["code"] == 100
    assert letter["meta_error"]["fbtrace_id"] == "TRACE"
    assert letter["attempts"] == 2
    assert letter["first_failure_at"] < letter["last_failure_at"]
    assert settlement.committable() == {TP: 3}


def test_short_receipts_past_the_retries_dead_letter_the_batch() -> None:
    """Every answer short: 1 + short_receipt_retries requests, then short_receipt letters with
    Meta's fbtrace_id and the number of attempts; nothing is delivered."""
    settlement, _, produced, sender = run(Script([ok(1)]), 2)
    letters = produced.letters()
    assert {letter["reason"] for letter in letters} == {"short_receipt"}
    assert [letter["attempts"] for letter in letters] == [3, 3]
    assert all(letter["meta_error"]["fbtrace_id"] == "OK1" for letter in letters)
    assert sender.stats.short_receipts == 3
    assert settlement.committable() == {TP: 2}  # dead-lettered offsets are settled too


def test_a_setup_error_halts_the_lane_until_a_probe_is_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Code 190 halts the lane (nothing dead-lettered) and records Meta's error; the accepted
    probe reopens it and delivers the events."""
    monkeypatch.setattr(stream.deliver.sender, "HALT_PROBE_BASE_S", 0.001)
    script = Script([error(400, 190, "Invalid OAuth access token."), ok(2)])
    settlement, _, produced, sender = run(script, 2)
    lane = sender.lanes[LANE]
    assert not lane.halted
    assert lane.last_error is not None
    assert (lane.last_error.code, lane.last_error.fbtrace_id) == (190, "TRACE")
    assert "Invalid OAuth" in lane.last_error.message
    assert lane.last_success_at is not None
    assert produced.letters() == []
    assert settlement.committable() == {TP: 2}


def test_events_revoked_during_a_retry_are_not_sent_again() -> None:
    """A partition revoked while its batch waits: the next attempt has nothing to send."""
    settlement, settler, produced, items = parts(2)
    script = Script([error(500, 2, "Service temporarily unavailable"), ok(2)])

    async def post(url: str, body: bytes):  # type: ignore[no-untyped-def]
        answer = await script.post(url, body)
        settlement.revoke([TP])
        return answer

    sender = Sender(post, request, settler, FAST)
    asyncio.run(sender.deliver(Batch(LANE, items, 0, 0.0)))
    assert len(script.requests) == 1
    assert produced.letters() == []
