"""Stage 1: raw events in, enriched events and dead letters out, exactly once.

Each poll batch is one Kafka transaction (exactly_once mode)::

    1. begin the transaction
    2. for every record: produce its enriched record or its dead letter (never both, never none)
    3. send the batch's input next_offsets with the group metadata, commit the transaction

A crash anywhere before step 3 completes leaves the transaction open; the next instance with the
same transactional.id aborts it on start (``init_transactions``), and the group re-reads the
batch from the last committed offsets. ``read_committed`` readers therefore see exactly one
output per raw record. In at_least_once mode step 3 becomes "flush, then commit the consumer
offsets", and a crash between the two repeats that batch.

Rebalances happen only inside ``poll``, i.e. between transactions, so a revoked partition never
has records in an open transaction: nothing is duplicated or lost across a rebalance.

Kafka's error rules (librdkafka's, see :mod:`stream.kafka.producer`): a retriable error is
retried within the call's deadline; an abortable one aborts the transaction and re-reads the
batch; a fatal one (fenced, a producer in fatal state) ends the process with exit 1, and the
next instance fences this one and re-reads from the committed offsets. A blocking call still
running after ``call_timeout_s`` ends the process with exit 3 (:mod:`stream.watchdog`), and so
does a stop signal not honoured within ``deliverer.revoke_timeout_s`` + 5 s. Liveness:
:meth:`Normalizer.alive` turns false when the loop has not ticked for ``stall_timeout_s``.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType

from stream.collector import tune_gc
from stream.config import Settings
from stream.core.enrich import Enricher
from stream.core.errors import KafkaError
from stream.core.lag import commit_lag
from stream.core.normalize import NormalizeOptions
from stream.core.records import Record, TopicPartition
from stream.core.sensors import NullSensor, Sensor
from stream.kafka.consumer import StageConsumer
from stream.kafka.limits import max_record_bytes, record_limits
from stream.kafka.producer import StageProducer
from stream.kafka.serde import build_codecs
from stream.logs import get_logger
from stream.match_report import MatchReport
from stream.watchdog import Watchdog

log = get_logger("capi_stream.normalizer")

#: Beyond the deliver stage's revoke timeout, what a stop signal leaves the stage to close.
SHUTDOWN_GRACE_S = 5.0
#: The first pause before a batch is read again after an abort; it doubles up to the longest.
ABORT_PAUSE_S = (0.1, 2.0)

#: Seconds between two reports of the stage's gauges (lags, partitions, match-key scores).
REPORT_INTERVAL_S = 2.0


def normalize_options(settings: Settings) -> NormalizeOptions:
    """The pure core's options from the stage's settings."""
    n = settings.normalizer
    return NormalizeOptions(
        default_region=n.default_region,
        default_pixel_id=n.default_pixel_id,
        hash_external_id=n.hash_external_id,
        max_future_skew_s=n.max_future_skew_s,
        age_safety_margin_s=n.age_safety_margin_s,
    )


@dataclass
class NormalizerStats:
    """Totals since start (also reported through the sensor)."""

    consumed: int = 0
    enriched: int = 0
    dead_lettered: int = 0
    transactions: int = 0
    aborted: int = 0


class Normalizer:
    """The normalize stage's loop; ``run()`` returns after :meth:`stop` (or SIGTERM)."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: int = 0,
        sensor: Sensor | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.sensor: Sensor = sensor or NullSensor()
        self.clock = clock
        self.stats = NormalizerStats()
        self._stopping = threading.Event()
        self._exactly_once = settings.normalizer.processing == "exactly_once"
        self._consumer: StageConsumer | None = None
        self._monotonic = monotonic
        self._last_tick = monotonic()  # starting counts as a tick: init may take call_timeout_s
        self._watchdog = watchdog or Watchdog()
        self._watch_signals = False
        self._call_timeout_s = settings.normalizer.call_timeout_s
        self.shutdown_s = settings.deliverer.revoke_timeout_s + SHUTDOWN_GRACE_S
        # per assigned partition: the last read record's offset + 1, and the committed offset
        self._read_ends: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._next_report = 0.0
        self.match_report = MatchReport(self.sensor, monotonic=monotonic)
        # since when (monotonic) batches keep being aborted, and the pause before the next read
        self._aborting_since: float | None = None
        self._abort_pause_s = ABORT_PAUSE_S[0]

    def alive(self) -> bool:
        """Liveness: the loop ticked (polled, even emptily) within ``stall_timeout_s``."""
        stalled_s = self._monotonic() - self._last_tick
        return stalled_s <= self.settings.normalizer.stall_timeout_s

    def ready(self) -> bool:
        """Readiness: the stage holds partitions of the raw topic."""
        consumer = self._consumer
        return consumer is not None and bool(consumer.assignment)

    def stop(self) -> None:
        """Finish the current batch's transaction, then leave the loop."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the loop cleanly (the open transaction completes or aborts).

        Either way the process ends within :attr:`shutdown_s`: the watchdog sees the signal even
        while the main thread is stuck in a librdkafka call, where this handler cannot run.
        """

        def handler(signum: int, _: FrameType | None) -> None:
            log.info("stopping", signal=signum)
            self.stop()
            self._watchdog.shutdown(self.shutdown_s)

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
        self._watch_signals = True

    def run(self, *, max_idle_s: float | None = None) -> NormalizerStats:
        """Consume until stopped (or idle for ``max_idle_s``, for one-off runs and tests)."""
        watchdog = self._watchdog.start()
        if self._watch_signals:
            watchdog.watch_signals(self.shutdown_s)
        try:
            return self._run(max_idle_s)
        finally:
            watchdog.stop()

    def _run(self, max_idle_s: float | None) -> NormalizerStats:
        s = self.settings
        arm = self._watchdog.arm
        self._last_tick = self._monotonic()
        codecs = build_codecs(s)
        limits = self._record_limits()
        enriched_limit, letter_limit = limits[s.topics.enriched], limits[s.topics.dlq]
        enricher = Enricher(
            codecs.raw, codecs.enriched, codecs.dlq, normalize_options(s),
            max_record_bytes=enriched_limit, max_letter_bytes=letter_limit,
        )  # fmt: skip
        consumer = StageConsumer(s.consumer_config(s.normalizer.group_id))
        self._consumer = consumer
        producer = self._producer(min(enriched_limit, letter_limit))
        self._last_tick = self._monotonic()  # the start's calls each had their own deadline
        consumer.subscribe([s.topics.raw], on_assign=self._assigned, on_revoke=self._revoked)
        log.info(
            "started", mode=s.normalizer.processing, topic=s.topics.raw, worker=self.worker,
            max_record_bytes=enriched_limit, max_letter_bytes=letter_limit,
        )  # fmt: skip
        idle_since = self.clock()
        # start-up is over: what exists now (schemas, clients, caches) lives as long as the
        # stage, and each batch's records die by reference counting (stream.collector)
        restore_gc = tune_gc()
        try:
            while not self._stopping.is_set():
                self._last_tick = self._monotonic()
                if self._last_tick >= self._next_report:
                    self._report(consumer)
                records = consumer.poll(s.normalizer.poll_batch, s.normalizer.poll_timeout_s)
                if not records:
                    if not consumer.assignment:
                        idle_since = self.clock()  # waiting for partitions is not being idle
                    elif max_idle_s is not None and self.clock() - idle_since > max_idle_s:
                        break
                    continue
                self._process_batch(records, enricher, consumer, producer)
                # from the batch's end: an aborted one is read again, and the first polls
                # after its rewind may come back empty while the fetch restarts
                idle_since = self.clock()
        finally:
            restore_gc()
            self.match_report.report()  # what the last batches committed
            log.info("closing", **vars(self.stats))
            with arm("closing the consumer", self._call_timeout_s):
                consumer.close()
            producer.close(self._call_timeout_s)
            codecs.close()
        return self.stats

    def _record_limits(self) -> dict[str, int]:
        """The largest record the enriched and the dead-letter topic each accept (read once)."""
        s = self.settings
        topics = [s.topics.enriched, s.topics.dlq]
        # the admin client honours its timeout: the deadline is only the backstop
        with self._watchdog.arm("reading the topics' record size limit", self._call_timeout_s + 1):
            try:
                return record_limits(
                    s.admin_config(), s.producer_config(), topics, timeout_s=self._call_timeout_s
                )
            except KafkaError as exc:
                if exc.retriable or exc.fatal:
                    raise  # unreachable (a restart tries again) or a limit too small to work
                # a broker that does not report max.message.bytes (the embedded one): the
                # producer's own message.max.bytes still bounds every record we produce
                log.warning("topic record size limit unknown; using the producer's", error=str(exc))
                limit = max_record_bytes(s.admin_config(), s.producer_config(), [])
                return dict.fromkeys(topics, limit)

    def _producer(self, max_record: int) -> StageProducer:
        s = self.settings
        if self._exactly_once:
            extra: dict[str, str | int | float | bool] = {
                "transactional.id": f"{s.normalizer.transactional_id}-{self.worker}",
                "transaction.timeout.ms": 60_000,
            }
        else:
            extra = {}
        # the broker holds a record *batch* to the topic's max.message.bytes: no batch larger
        # than one record may be (librdkafka's batch.size is 1,000,000 whatever the topic takes)
        config = s.producer_config(**extra, **{"batch.size": max_record})
        return StageProducer(
            config, transactional=self._exactly_once, arm=self._watchdog.arm,
            call_timeout_s=self._call_timeout_s,
        )  # fmt: skip

    def _process_batch(
        self,
        records: list[Record],
        enricher: Enricher,
        consumer: StageConsumer,
        producer: StageProducer,
    ) -> None:
        topics = self.settings.topics
        now = self.clock()
        next_offsets: dict[TopicPartition, int] = {}
        enriched = dead = 0
        match_report = self.match_report
        if self._exactly_once:
            producer.begin()
        try:
            for record in records:
                out = enricher.process(record, now)
                topic = topics.enriched if out.destination == "enriched" else topics.dlq
                producer.produce(topic, out.key, out.value, out.headers)
                if out.destination == "enriched":
                    enriched += 1
                    if out.event is not None:
                        match_report.add(out.event)
                    for warning in out.warnings:
                        self.sensor.count("normalize_warnings", warning=warning)
                else:
                    dead += 1
                    self.sensor.count("dead_lettered", stage="normalize", reason=out.reason or "")
                next_offsets[record.tp] = record.offset + 1
            self._read_ends.update(next_offsets)
            self._commit(next_offsets, consumer, producer)
            self._committed.update(next_offsets)
        except KafkaError as exc:
            if exc.fatal or not (exc.abortable or exc.retriable):
                # a fresh process fences this producer and re-reads from the committed offsets
                log.error("fatal Kafka error; exiting", error=str(exc), records=len(records))
                raise
            if self._aborting_since is None:
                self._aborting_since = self._monotonic()
            if self._monotonic() - self._aborting_since > self._call_timeout_s:
                # refused for call_timeout_s: not transient (a letter over a lowered
                # max.message.bytes, a deleted topic); a fresh start re-reads the topics' limits
                log.error("batch refused for call_timeout_s; exiting", error=str(exc),
                          records=len(records))  # fmt: skip
                raise
            log.warning("batch aborted; re-reading it", error=str(exc), records=len(records),
                        pause_s=self._abort_pause_s)  # fmt: skip
            # the whole batch is read again, from each partition's first record in it: the
            # records after the one that failed (of any partition) were read but not written
            self._abort(_first_offsets(records), consumer, producer)
            match_report.discard()
            self.sensor.count("transactions", outcome="aborted")
            self._stopping.wait(self._abort_pause_s)
            self._abort_pause_s = min(self._abort_pause_s * 2, ABORT_PAUSE_S[1])
            return
        self._aborting_since, self._abort_pause_s = None, ABORT_PAUSE_S[0]
        match_report.committed()
        self.stats.consumed += len(records)
        self.stats.enriched += enriched
        self.stats.dead_lettered += dead
        self.stats.transactions += 1
        self.sensor.count("consumed", len(records), stage="normalize")
        self.sensor.count("enriched", enriched)
        self.sensor.count("transactions", outcome="committed")

    def _commit(
        self,
        next_offsets: dict[TopicPartition, int],
        consumer: StageConsumer,
        producer: StageProducer,
    ) -> None:
        if self._exactly_once:
            producer.commit(next_offsets, consumer.group_metadata())
        else:
            producer.flush()
            with self._watchdog.arm("committing offsets", self._call_timeout_s):
                consumer.commit(next_offsets)

    def _abort(
        self,
        first_offsets: dict[TopicPartition, int],
        consumer: StageConsumer,
        producer: StageProducer,
    ) -> None:
        if self._exactly_once:
            producer.abort()
        # rewind so the aborted records are processed again, in the next transaction
        for tp, offset in first_offsets.items():
            if tp in consumer.assignment:
                consumer.seek(tp, offset)
                self._read_ends[tp] = offset
        self.stats.aborted += 1

    def _assigned(self, tps: list[TopicPartition]) -> None:
        log.info("assigned", partitions=_names(tps))
        self._next_report = 0.0  # the gauges show the new assignment at the next tick

    def _revoked(self, tps: list[TopicPartition]) -> None:
        log.info("revoked", partitions=_names(tps))
        for tp in tps:
            self._read_ends.pop(tp, None)
            self._committed.pop(tp, None)
        self._next_report = 0.0

    def _report(self, consumer: StageConsumer) -> None:
        """The stage's gauges, at most every :data:`REPORT_INTERVAL_S` (never per record).

        Consumer lag counts from the consumer's positions, which librdkafka moves past
        transaction markers, up to what it can read (:mod:`stream.core.lag`): it is 0 once
        everything readable is processed. Commit lag is 0 between batches unless a commit
        failed: every batch is committed (or aborted and re-read) before the next poll.
        """
        self._next_report = self._monotonic() + REPORT_INTERVAL_S
        assigned = set(consumer.assignment)
        sensor = self.sensor
        sensor.gauge("assigned_partitions", len(assigned), stage="normalize")
        read_ends = {tp: end for tp, end in self._read_ends.items() if tp in assigned}
        sensor.gauge("commit_lag", commit_lag(read_ends, self._committed), stage="normalize")
        sensor.gauge("consumer_lag", sum(consumer.lag(assigned).values()), stage="normalize")
        self.match_report.report()


def _first_offsets(records: list[Record]) -> dict[TopicPartition, int]:
    first: dict[TopicPartition, int] = {}
    for record in records:
        first.setdefault(record.tp, record.offset)
    return first


def _names(tps: list[TopicPartition]) -> list[str]:
    return [f"{tp.topic}[{tp.partition}]" for tp in tps]
