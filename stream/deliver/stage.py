"""Stage 2: enriched events to the Graph API (or a CAPI Gateway), offsets committed after delivery.

This module wires the parts and runs the tick loop; each part owns one concern:

==============================  ==========================================================
:mod:`stream.kafka.poll_bridge`  the poll thread, its hand-off and its deadlock rules
:mod:`.intake`                   records to pending events: rules, lanes, windows
:mod:`.sender`                   retry, throttle, halt, isolation, short receipts
:mod:`.outcomes`                 settling: acceptance, dead letters, the ledger
:mod:`.checkpoint`               the commit protocol's numbered steps, backpressure
:mod:`stream.core.settlement`    which events are unsettled; what may be committed
==============================  ==========================================================

An event's offset is done when every destination accepted its request in full or it was
dead-lettered; a completion that comes back after its partition was revoked settles nothing.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from typing import Final

from stream.collector import tune_gc
from stream.config import Settings
from stream.core.delivery_rules import DeliveryRules
from stream.core.errors import ConfigError, KafkaError
from stream.core.records import TopicPartition
from stream.core.retry import RetryPolicy
from stream.core.sensors import NullSensor, Sensor
from stream.core.settlement import Settlement
from stream.core.status import StageStatus
from stream.core.window import Batch, Batcher, LaneKey
from stream.deliver.checkpoint import Checkpoint, CheckpointLimits
from stream.deliver.destinations import Destinations
from stream.deliver.intake import Intake, Prepared, preparer
from stream.deliver.lifecycle import Lifecycle
from stream.deliver.outcomes import Settler, partitions
from stream.deliver.process import consumer_config
from stream.deliver.report import LaneReport, stage_gauges
from stream.deliver.sender import Sender, SendLimits
from stream.deliver.stats import DelivererStats
from stream.kafka.consumer import StageConsumer
from stream.kafka.limits import max_record_bytes
from stream.kafka.poll_bridge import COMMIT_TIMEOUT_S, PollBridge
from stream.kafka.producer import StageProducer
from stream.kafka.serde import build_codecs
from stream.logs import get_logger
from stream.sinks.http import HttpSink, build_client
from stream.watchdog import Watchdog

log = get_logger("capi_stream.deliverer")

#: The deadline of reading the topics' record size limit (the admin client's own is 60 s).
CALL_TIMEOUT_S: Final = 60.0
#: After SIGTERM: the revoke timeout for requests in flight, then this for the last commit.
SHUTDOWN_GRACE_S: Final = 5.0


class Deliverer(Lifecycle):
    """The deliver stage. ``run()`` blocks until :meth:`stop` (or SIGTERM) and returns stats."""

    def __init__(
        self,
        settings: Settings,
        *,
        sensor: Sensor | None = None,
        clock: Callable[[], float] = time.time,
        seed: int | None = None,
        worker: int = 0,
        watchdog: Watchdog | None = None,
    ) -> None:
        d = settings.deliverer
        if d.production and d.test_event_code:
            raise ConfigError("CAPI_STREAM_DELIVERER__TEST_EVENT_CODE is set in production mode")
        super().__init__(
            stall_timeout_s=d.stall_timeout_s, shutdown_s=d.revoke_timeout_s + SHUTDOWN_GRACE_S,
            watchdog=watchdog,
        )  # fmt: skip
        self.settings, self.worker, self.clock = settings, worker, clock
        self.sensor: Sensor = sensor or NullSensor()
        self.stats = DelivererStats()
        self._rnd = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._destinations = Destinations.from_settings(settings)
        self._rules = DeliveryRules(d.production, d.test_event_code, d.max_bytes)
        self._settlement = Settlement()
        early = lambda: self._rnd.uniform(0, d.linger_ms / 10_000)  # noqa: E731 - lanes spread out
        self._batcher = Batcher(d.max_events, d.max_bytes, d.linger_ms / 1000, d.age_guard_s, early)
        self._tasks: dict[asyncio.Task[None], frozenset[TopicPartition]] = {}
        self._revoking: set[TopicPartition] = set()
        self._sender: Sender | None = None
        self._bridge: PollBridge[Prepared] | None = None
        self._pixels_seen: set[str] = set()
        self._last_record_at = clock()
        # read by the health server's thread: written whole, on the loop's thread
        self._ready = False
        self._status = StageStatus("deliver", worker, ready=False)

    # -- public surface (and Lifecycle's: stop, install_signal_handlers, alive) ------------

    @property
    def halted_lanes(self) -> list[LaneKey]:
        lanes = self._sender.lanes if self._sender is not None else {}
        return [key for key, lane in lanes.items() if lane.halted]

    def ready(self) -> bool:
        """Readiness: partitions assigned and no lane halted by a setup error (set every tick)."""
        return self._ready

    def status(self) -> StageStatus:
        """The lanes for ``/status``, as of the last report (every ``commit_interval_s``)."""
        return self._status

    def run(self, *, max_idle_s: float | None = None) -> DelivererStats:
        """Run until stopped, or until idle for ``max_idle_s`` with nothing pending."""
        self._run(self._main(max_idle_s))
        return self.stats

    def _polled(self) -> float:
        return self._bridge.polled_at if self._bridge is not None else self._polled_at

    # -- wiring and the tick loop ------------------------------------------------------------

    async def _main(self, max_idle_s: float | None) -> None:
        s, d = self.settings, self.settings.deliverer
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        # the largest dead letter the broker and our producer take, read once: one that does
        # not fit is cut to prefixes + length + SHA-256 instead of failing (and stalling) here
        with self._watchdog.arm("reading the topics' record size limit", CALL_TIMEOUT_S + 1):
            max_record = await asyncio.to_thread(
                max_record_bytes, s.admin_config(), s.producer_config(), [s.topics.dlq],
                timeout_s=CALL_TIMEOUT_S,
            )  # fmt: skip
        codecs = build_codecs(s)
        # the broker holds a record *batch* to the topic's max.message.bytes: no batch may be
        # larger than one record may (librdkafka fills 1,000,000 bytes whatever the topic takes)
        producer = StageProducer(
            s.producer_config(**{"batch.size": max_record}), transactional=False
        )
        client = build_client(
            max_connections=d.max_in_flight, timeout_s=d.request_timeout_s, user_agent="capi-stream"
        )
        sink = HttpSink(client)
        bridge = self._bridge = PollBridge(
            StageConsumer(consumer_config(s, self.worker)), [s.topics.enriched],
            prepare=preparer(codecs.enriched), deliver=self._ingest, on_assign=self._on_assign,
            on_revoke=self._on_revoke, on_error=self._crashed,
            callback_timeout_s=d.revoke_timeout_s + 60,
            close_timeout_s=d.revoke_timeout_s + 2 * COMMIT_TIMEOUT_S, arm=self._watchdog.arm,
        )  # fmt: skip
        self._checkpoint = Checkpoint(
            self._settlement, flush=producer.flush, commit=bridge.commit, pause=bridge.pause,
            resume=bridge.resume, on_error=self._crashed, sensor=self.sensor,
            limits=CheckpointLimits(d.commit_min_interval_s, d.commit_interval_s, d.max_pending,
                                    d.resume_pending),
        )  # fmt: skip
        settler = Settler(
            self._settlement, producer.produce, encode_letter=codecs.dlq.encode,
            max_record=max_record, dlq_topic=s.topics.dlq,
            ledger_topic=s.topics.ledger if d.ledger else None,
            on_settled=self._checkpoint.backpressure, clock=self.clock, sensor=self.sensor,
            stats=self.stats,
        )  # fmt: skip
        self._sender = Sender(
            sink.post, self._destinations.request, settler, rnd=self._rnd, clock=self.clock,
            sensor=self.sensor, stats=self.stats,
            limits=SendLimits(d.max_in_flight, d.max_in_flight_per_lane, d.short_receipt_retries,
                              RetryPolicy(base_s=d.retry_base_s, max_s=d.retry_max_s)),
        )  # fmt: skip
        self._intake = Intake(
            self._settlement, rules=self._rules, destinations=self._destinations,
            batcher=self._batcher, settler=settler, stats=self.stats,
        )  # fmt: skip
        bridge.start(loop)
        log.info("started", topic=s.topics.enriched, destinations=self._destinations.names,
                 worker=self.worker, max_record_bytes=max_record)  # fmt: skip
        restore_gc = tune_gc()  # start-up is over: what exists now lives as long as the stage
        try:
            await self._tick_loop(max_idle_s)
            await self._drain()
        finally:
            self._stopping.set()
            bridge.stop()
            if not await asyncio.to_thread(bridge.join, d.revoke_timeout_s + 60):
                # librdkafka's close (leave group, final commit) did not return: the thread is
                # stuck in C and cannot be cancelled; exit non-zero so a supervisor restarts us
                self._crashed(KafkaError("the consumer did not close in time", retriable=True))
            restore_gc()
            await sink.aclose()
            producer.close()
            codecs.close()
            log.info("stopped", delivered=self.stats.delivered, dead=self.stats.dead_lettered)

    async def _tick_loop(self, max_idle_s: float | None) -> None:
        interval_s = self.settings.deliverer.commit_interval_s
        last_report = self.clock()
        while not self._stopping.is_set():
            await asyncio.sleep(self._sleep_s())
            self._ticked_at = time.monotonic()
            self._dispatch(self._batcher.due(self.clock()))
            self._ready = bool(self._settlement.assigned()) and not self.halted_lanes
            self._checkpoint.maybe_commit()
            if self.clock() - last_report >= interval_s:
                await self._report()
                last_report = self.clock()
            if max_idle_s is not None and self._idle_for() > max_idle_s:
                break

    def _sleep_s(self) -> float:
        deadline = self._batcher.next_deadline()
        return 0.05 if deadline is None else min(0.05, max(0.001, deadline - self.clock()))

    def _idle_for(self) -> float:
        s = self._settlement
        if not s.assigned() or s.pending_count() or self._tasks or len(self._batcher):
            return 0.0
        return self.clock() - self._last_record_at

    async def _drain(self) -> None:
        """Shutdown: send every open window, wait (bounded) for the requests, commit.

        Requests still retrying after the wait are cancelled: their events are not committed,
        so the next owner of the partitions sends them again.
        """
        self._dispatch(self._batcher.flush())
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.settings.deliverer.revoke_timeout_s)
        if left := set(self._tasks):
            for task in left:
                task.cancel()
            await asyncio.wait(left)
        await self._checkpoint.wait()
        await self._checkpoint.commit()

    async def _report(self) -> None:
        """Gauges for /metrics and the document for /status."""
        now, lanes = self.clock(), self._sender.lanes if self._sender is not None else {}
        report = LaneReport.of(self._settlement.unsettled())
        self._status = StageStatus("deliver", self.worker, self._ready, report.statuses(lanes, now))
        self._pixels_seen.update(key.pixel_id for key in lanes)  # sent to, maybe never seen pending
        report.gauges(self.sensor, self._pixels_seen, now)
        await stage_gauges(
            self.sensor, self._settlement, in_flight=len(self._tasks),
            halted=len(self.halted_lanes),
            lag=self._bridge.lag if self._bridge is not None else None,
        )  # fmt: skip

    # -- rebalance (on the loop, while the poll thread waits: never await the bridge here) ---

    async def _on_assign(self, tps: list[TopicPartition]) -> bool:
        """Start owning ``tps``; True when they must start paused (backpressure is on)."""
        self._settlement.assign(tps)
        self._revoking.difference_update(tps)
        self._last_record_at = self.clock()
        log.info("assigned", partitions=[f"{t.topic}[{t.partition}]" for t in tps])
        return self._checkpoint.paused

    async def _on_revoke(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Start nothing new for ``tps``; wait (bounded) for their requests; forget them. Returns
        the next_offsets to commit for them (the callback commits on the poll thread)."""
        revoked = set(tps)
        self._revoking |= revoked
        unsent = self._batcher.drop_partitions(revoked)
        busy = [task for task, parts in self._tasks.items() if parts & revoked]
        if busy:
            await asyncio.wait(busy, timeout=self.settings.deliverer.revoke_timeout_s)
        next_offsets = await self._checkpoint.revoked(revoked)
        self._revoking -= revoked
        log.info("revoke settled", partitions=len(tps), unsent=len(unsent))
        return next_offsets

    # -- ingest and dispatch (on the loop) ---------------------------------------------------

    def _ingest(self, prepared: Prepared) -> None:
        """A poll batch from the bridge: track, route, dispatch what is full."""
        assert self._bridge is not None
        self._bridge.taken()
        now = self._last_record_at = self.clock()
        consumed = self.stats.consumed
        self._dispatch(self._intake.ingest(prepared, now, self._revoking))
        self.sensor.count("consumed", self.stats.consumed - consumed, stage="deliver")
        self.sensor.gauge("pending", self._settlement.pending_count())
        self._checkpoint.backpressure()
        self.stats.max_pending = self._checkpoint.max_pending

    def _dispatch(self, batches: list[Batch]) -> None:
        assert self._sender is not None
        for batch in batches:
            task = asyncio.create_task(self._sender.deliver(batch))
            self._tasks[task] = partitions(batch.items)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self._crashed(exc)
