"""The checkpoint: the commit protocol's steps in order, a failed commit kept for the next try,
and backpressure that pauses and resumes the owned partitions."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from stream.core.errors import KafkaError
from stream.core.records import TopicPartition
from stream.deliver.checkpoint import Checkpoint, CheckpointLimits
from tests.unit.deliver.helpers import TP, parts


class Kafka:
    """What the checkpoint calls: a log of flushes, commits, pauses and resumes."""

    def __init__(self, fail: KafkaError | None = None) -> None:
        self.calls: list[object] = []
        self.fail = fail

    def flush(self) -> None:
        self.calls.append("flush")

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.fail is not None:
            raise self.fail
        self.calls.append(("commit", dict(offsets)))

    def pause(self, tps: object) -> None:
        self.calls.append(("pause", sorted(tps)))  # type: ignore[call-overload]

    def resume(self, tps: object) -> None:
        self.calls.append(("resume", sorted(tps)))  # type: ignore[call-overload]


def checkpoint(kafka: Kafka, settlement: object, **limits: int) -> Checkpoint:
    errors: list[BaseException] = []
    return Checkpoint(
        settlement, flush=kafka.flush, commit=kafka.commit, pause=kafka.pause,  # type: ignore[arg-type]
        resume=kafka.resume, limits=CheckpointLimits(**limits), on_error=errors.append,
    )  # fmt: skip


def test_commit_flushes_first_then_commits_the_watermark_and_records_it() -> None:
    """Step 1 flush, steps 2-3 commit next_offset, step 4: nothing left to commit."""
    settlement, _, _, items = parts(3)
    for item in items[:2]:
        assert item.entry is not None
        settlement.settle(item.entry)
    kafka = Kafka()
    assert asyncio.run(checkpoint(kafka, settlement).commit())
    assert kafka.calls == ["flush", ("commit", {TP: 2})]
    assert settlement.committable() == {}


def test_a_failed_commit_keeps_the_offsets_for_the_next_try() -> None:
    """A retriable commit error returns False and the watermark stays committable."""
    settlement, _, _, items = parts(1)
    assert items[0].entry is not None
    settlement.settle(items[0].entry)
    kafka = Kafka(fail=KafkaError("coordinator moved", retriable=True))
    assert not asyncio.run(checkpoint(kafka, settlement).commit())
    assert settlement.committable() == {TP: 1}


def test_a_fatal_commit_error_is_raised() -> None:
    """A fatal error (fenced, say) stops the stage instead of retrying."""
    settlement, _, _, items = parts(1)
    assert items[0].entry is not None
    settlement.settle(items[0].entry)
    kafka = Kafka(fail=KafkaError("fenced", fatal=True))
    with pytest.raises(KafkaError, match="fenced"):
        asyncio.run(checkpoint(kafka, settlement).commit())


def test_backpressure_pauses_at_max_pending_and_resumes_at_the_low_water_mark() -> None:
    """4 pending with max 4: paused once; settling down to 2 (resume_pending) resumes."""
    settlement, _, _, items = parts(4)
    kafka = Kafka()
    subject = checkpoint(kafka, settlement, max_pending=4, resume_pending=2)
    subject.backpressure()
    subject.backpressure()
    assert kafka.calls == [("pause", [TP])]
    assert subject.paused
    for item in items[:2]:
        assert item.entry is not None
        settlement.settle(item.entry)
        subject.backpressure()
    assert kafka.calls == [("pause", [TP]), ("resume", [TP])]
    assert not subject.paused
    assert subject.max_pending == 4


def test_revoke_flushes_and_hands_back_the_uncommitted_watermark() -> None:
    """On revoke the dead letters are flushed first, then the partition's next_offset returns."""
    settlement, _, _, items = parts(2)
    assert items[0].entry is not None
    settlement.settle(items[0].entry)
    kafka = Kafka()
    assert asyncio.run(checkpoint(kafka, settlement).revoked([TP])) == {TP: 1}
    assert kafka.calls == ["flush"]
    assert settlement.pending_count() == 0


class FailingFlush(Kafka):
    """A producer whose first flush reports an undelivered dead letter; later ones pass."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        self.calls.append("flush")
        if self.flushes == 1:
            raise KafkaError("1 records not delivered: MSG_TIMED_OUT", retriable=True)


def test_after_a_failed_flush_nothing_is_committed_again() -> None:
    """A dead letter that never reached Kafka may sit under any later watermark: once a flush
    failed, the next commit and the revoke commit nothing, even though their flush would pass
    (the producer forgets its failures once it has reported them)."""
    settlement, _, _, items = parts(2)
    assert items[0].entry is not None
    settlement.settle(items[0].entry)
    kafka = FailingFlush()
    subject = checkpoint(kafka, settlement)
    with pytest.raises(KafkaError, match="not delivered"):
        asyncio.run(subject.commit())
    with pytest.raises(KafkaError, match="not delivered"):
        asyncio.run(subject.commit())
    assert asyncio.run(subject.revoked([TP])) == {}
    assert [c for c in kafka.calls if isinstance(c, tuple) and c[0] == "commit"] == []
    assert subject.broken is not None


def test_the_commit_takes_its_offsets_before_the_flush() -> None:
    """An event dead-lettered while the flush runs is not in the offsets this commit sends:
    the flush did not cover its letter."""
    settlement, _, _, items = parts(2)
    assert items[0].entry is not None
    assert items[1].entry is not None
    settlement.settle(items[0].entry)
    kafka = Kafka()
    late = items[1].entry

    def flush_while_another_settles() -> None:
        kafka.calls.append("flush")
        settlement.settle(late)  # what a sender task can do while the commit awaits the flush

    subject = Checkpoint(
        settlement, flush=flush_while_another_settles, commit=kafka.commit, pause=kafka.pause,
        resume=kafka.resume, limits=CheckpointLimits(), on_error=lambda _: None,
    )  # fmt: skip
    assert asyncio.run(subject.commit())
    assert kafka.calls == ["flush", ("commit", {TP: 1})]
    assert settlement.committable() == {TP: 2}


def test_backpressure_resumes_when_a_revoke_took_every_pending_event() -> None:
    """Paused at max_pending, then every partition revoked: the next assignment is not left
    paused with nothing pending (nothing would ever settle to resume it)."""
    settlement, _, _, _ = parts(4)
    kafka = Kafka()
    subject = checkpoint(kafka, settlement, max_pending=4, resume_pending=2)
    subject.backpressure()
    assert subject.paused
    asyncio.run(subject.revoked([TP]))
    assert not subject.paused
    assert kafka.calls[-1] == ("resume", [])  # nothing kept; the next assignment starts unpaused


def test_a_slow_flush_is_said_once_and_the_commit_still_follows_it() -> None:
    """A flush still running after ``slow_flush_s`` (a dead letter the broker does not take
    yet) logs one warning; when it ends the commit goes on. A quick flush says nothing."""
    settlement, _, _, items = parts(1)
    assert items[0].entry is not None
    settlement.settle(items[0].entry)
    kafka = Kafka()

    def slow_flush() -> None:
        time.sleep(0.3)
        kafka.calls.append("flush")

    subject = Checkpoint(
        settlement, flush=slow_flush, commit=kafka.commit, pause=kafka.pause,
        resume=kafka.resume, limits=CheckpointLimits(slow_flush_s=0.05), on_error=lambda _: None,
    )  # fmt: skip
    with capture_logs() as logs:
        assert asyncio.run(subject.commit())
    slow = [e for e in logs if e["event"].startswith("dead letters not yet written")]
    assert len(slow) == 1
    assert slow[0]["log_level"] == "warning"
    assert kafka.calls == ["flush", ("commit", {TP: 1})]

    quick = Kafka()
    with capture_logs() as logs:
        assert asyncio.run(checkpoint(quick, parts(1)[0]).commit())
    assert not [e for e in logs if e["event"].startswith("dead letters not yet written")]


def test_a_commit_whose_partitions_moved_during_the_flush_is_not_sent() -> None:
    """The partition is revoked and assigned back while the commit awaits its flush (another
    member may have owned it and committed past this snapshot meanwhile): the old offset is not
    sent, since it would move that member's commit back; the next commit takes a fresh one."""
    settlement, _, _, items = parts(2)
    assert items[0].entry is not None
    settlement.settle(items[0].entry)
    kafka = Kafka()

    def flush_across_two_rebalances() -> None:
        kafka.calls.append("flush")
        settlement.revoke([TP])
        settlement.assign([TP])  # back, with fresh state: nothing settled in it yet

    subject = Checkpoint(
        settlement, flush=flush_across_two_rebalances, commit=kafka.commit, pause=kafka.pause,
        resume=kafka.resume, limits=CheckpointLimits(), on_error=lambda _: None,
    )  # fmt: skip
    assert not asyncio.run(subject.commit())
    assert kafka.calls == ["flush"]
    assert settlement.committable() == {}
