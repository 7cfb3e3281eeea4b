"""When and how the deliver stage commits, and when it stops reading: the checkpoint.

The commit protocol (:meth:`Checkpoint.commit`) has numbered steps. It runs as soon as a
partition's watermark advances, coalesced to at most one commit every ``min_interval_s`` (so
right after an accepted batch or a dead letter), on revoke and at shutdown: a ``kill -9``
re-sends at most what was in flight plus what was settled in the last ``min_interval_s``.

Backpressure is data, not a sleep: past ``max_pending`` unsettled events the consumer's
partitions are paused; at or below ``resume_pending`` they are resumed. A lane that cannot
deliver therefore holds memory at about ``max_pending`` events, however long it stays down.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from stream.core.errors import KafkaError
from stream.core.records import TopicPartition
from stream.core.sensors import NullSensor, Sensor
from stream.core.settlement import Settlement
from stream.logs import get_logger

log = get_logger("capi_stream.deliverer")

Partitions = Collection[TopicPartition]


@dataclass(frozen=True, slots=True)
class CheckpointLimits:
    """The checkpoint's part of the deliverer settings."""

    min_interval_s: float = 0.25  # between two commits: coalesces a burst of settled batches
    retry_interval_s: float = 2.0  # after a failed commit
    max_pending: int = 40_000
    resume_pending: int = 20_000
    #: a flush still running after this long is said once (it holds every commit meanwhile)
    slow_flush_s: float = 5.0


class Checkpoint:
    """Commits the settlement's watermarks and pauses the consumer when too much is pending.

    ``flush`` waits for every dead letter and ledger record (blocking: it runs in a thread);
    ``commit`` commits ``next_offset`` per partition; ``pause`` and ``resume`` return at once.
    """

    def __init__(
        self,
        settlement: Settlement,
        *,
        flush: Callable[[], None],
        commit: Callable[[dict[TopicPartition, int]], Awaitable[None]],
        pause: Callable[[Partitions], None],
        resume: Callable[[Partitions], None],
        limits: CheckpointLimits,
        on_error: Callable[[BaseException], None],
        sensor: Sensor | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settlement = settlement
        self._flush_producer = flush
        self._commit = commit
        self._pause = pause
        self._resume = resume
        self._limits = limits
        self._on_error = on_error
        self._sensor: Sensor = sensor or NullSensor()
        self._monotonic = monotonic
        self._running: asyncio.Task[None] | None = None
        self._next_at = 0.0  # monotonic; no commit starts before
        self.paused = False
        self.max_pending = 0
        #: the first failed flush: a dead letter that never reached Kafka; from then on nothing
        #: is committed (its offset may be in any later watermark), so the stage must restart
        self.broken: KafkaError | None = None

    def maybe_commit(self) -> None:
        """Start a commit in the background when a watermark moved (coalesced, one at a time).

        After a failed commit the next try waits ``retry_interval_s``.
        """
        if self._running is not None or self._monotonic() < self._next_at:
            return
        if not self._settlement.committable():
            return
        task = asyncio.create_task(self._coalesced())
        self._running = task
        task.add_done_callback(self._done)

    async def commit(self) -> bool:
        """The commit protocol; False when the commit failed and should be tried again.

        1. take each partition's next_offset from the watermark (only contiguous settled
           offsets) before the flush: an event dead-lettered while the flush runs is not in it
        2. flush the producer and check that every dead letter of step 1 reached Kafka (bounded:
           a flush that cannot finish in time raises, and the stage exits for its supervisor);
           after one failed flush every later commit is refused (:attr:`broken`)
        3. commit those offsets synchronously, unless partitions were assigned or revoked since
           step 1 (then False: the next try takes fresh offsets); a partition error raises
        4. record them as committed
        """
        generation = self._settlement.generation  # a rebalance may come while this awaits
        next_offsets = self._settlement.committable()  # 1
        if not next_offsets:
            return True
        await self._flushed()  # 2
        if self._settlement.generation != generation:
            # a partition revoked during the flush may be back already, after another member
            # committed past this snapshot: its old offset would move that commit back
            log.info("commit skipped: partitions moved during its flush; will retry")
            return False
        try:
            await self._commit(next_offsets)  # 3
        except KafkaError as exc:
            if exc.fatal:
                raise
            # a rebalance or a coordinator move: the offsets stay committable for the next try
            log.warning("commit failed; will retry", error=str(exc))
            return False
        self._settlement.mark_committed(next_offsets, generation=generation)  # 4
        self._sensor.count("commits")
        return True

    async def revoked(self, tps: Partitions) -> dict[TopicPartition, int]:
        """The revoke's part of the protocol: steps 1 and 2 for ``tps``, which are forgotten.

        Step 3 is the caller's (the rebalance callback commits on the consumer's thread).
        """
        next_offsets, abandoned = self._settlement.revoke(tps)  # nothing settles on them after
        try:
            await self._flushed()  # their dead letters in Kafka before their offsets commit
        except KafkaError as exc:
            self._on_error(exc)
            log.error("revoked without a commit: a dead letter was not delivered", error=str(exc))
            return {}
        log.info("revoked", partitions=len(tps), abandoned=abandoned)
        # their pending events are gone: if they were what paused us, nothing left would ever
        # settle to resume the partitions kept or assigned next
        self.backpressure()
        return next_offsets

    async def _flushed(self) -> None:
        if self.broken is not None:
            raise self.broken
        flushing = asyncio.ensure_future(asyncio.to_thread(self._flush_producer))
        try:
            done, _ = await asyncio.wait({flushing}, timeout=self._limits.slow_flush_s)
            if not done:
                # a dead letter the broker does not take yet (topic deleted, too few replicas in
                # sync) holds every commit until the flush ends: say so instead of going quiet
                log.warning(
                    "dead letters not yet written; commits wait for them",
                    waited_s=self._limits.slow_flush_s,
                )
            await flushing
        except KafkaError as exc:
            self.broken = exc
            raise

    async def wait(self) -> None:
        """Wait for a commit running in the background (shutdown)."""
        if self._running is not None:
            await asyncio.wait({self._running})

    def backpressure(self) -> None:
        """Pause or resume the owned partitions for the number of unsettled events."""
        pending = self._settlement.pending_count()
        self.max_pending = max(self.max_pending, pending)
        limits = self._limits
        if not self.paused and pending >= limits.max_pending:
            self.paused = True
            self._pause(self._settlement.assigned())
            log.warning("paused: too many pending events", pending=pending)
        elif self.paused and pending <= limits.resume_pending:
            self.paused = False
            self._resume(self._settlement.assigned())
            log.info("resumed", pending=pending)

    async def _coalesced(self) -> None:
        self._next_at = self._monotonic() + self._limits.min_interval_s
        if not await self.commit():
            self._next_at = self._monotonic() + self._limits.retry_interval_s

    def _done(self, task: asyncio.Task[None]) -> None:
        self._running = None
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._on_error(exc)
