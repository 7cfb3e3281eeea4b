"""Stage 2: enriched events to the Graph API (or a CAPI Gateway), offsets committed after delivery.

Threads: one owns the Kafka consumer (poll, commit, pause, and the rebalance callbacks); the
asyncio loop owns everything else (offset tracker, batcher, lanes, requests). Records cross to
the loop with ``call_soon_threadsafe``; consumer calls cross to the poll thread as jobs, because
librdkafka's synchronous commit must not race a ``consume`` on another thread. A rebalance
callback blocks the poll thread while the loop settles the partitions, so a revoke can wait
(bounded) for requests in flight, then commits in the callback itself.

An event's offset is done when Meta accepted its request in full or it was dead-lettered. A
short receipt (2xx with ``events_received`` below the events sent) confirms none of the batch:
Meta does not say which events it missed, so the batch is re-sent whole (Meta deduplicates by
``event_id``) up to ``short_receipt_retries`` times, and if every answer stays short its events
are dead-lettered as ``short_receipt`` with Meta's ``fbtrace_id``. A full answer to a re-send
confirms them all.

The commit protocol (``_commit``) has numbered steps. It runs as soon as a partition's watermark
advances, coalesced to at most one commit every ``commit_min_interval_s`` (so right after an
accepted batch or a dead letter), on revoke and at shutdown: a ``kill -9`` re-sends at most what
was in flight plus what was settled in the last ``commit_min_interval_s``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import gc
import importlib
import queue
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import orjson

from stream.config import KafkaProps, Settings
from stream.core import payload
from stream.core.capi import MAX_AGE_PHYSICAL_STORE_SECONDS, MAX_AGE_SECONDS
from stream.core.codec import AvroCodec
from stream.core.dead_letter import SHORT_RECEIPT, MetaErrorFields, dead_letter, letter_record
from stream.core.errors import ConfigError, DecodeError, KafkaError
from stream.core.graph_response import Accepted, Invalid, Outcome, Setup, Throttled, classify
from stream.core.isolate import Isolation, Probe
from stream.core.offsets import OffsetTracker
from stream.core.records import Record, TopicPartition
from stream.core.retry import RetryPolicy
from stream.core.sensors import NullSensor, Sensor
from stream.core.window import Batch, Batcher, LaneKey, PendingEvent
from stream.kafka.consumer import StageConsumer
from stream.kafka.limits import max_record_bytes
from stream.kafka.producer import StageProducer
from stream.kafka.serde import build_codecs
from stream.lanes import Lane
from stream.logs import get_logger
from stream.sinks.http import HttpSink, build_client, gateway_url, graph_url
from stream.watchdog import Watchdog

log = get_logger("capi_stream.deliverer")

#: Dead-letter an event this long before Meta's age limit: clocks differ, requests take time.
EXPIRY_MARGIN_S = 300.0
#: How often a halted lane's prober tries again (doubling up to the retry maximum).
HALT_PROBE_BASE_S = 2.0
#: librdkafka prefetches up to 64 MiB by default; pending events are our memory budget.
PREFETCH_KBYTES = 16384
#: The deadline of one blocking librdkafka call (commit, reading the record size limit); past
#: it the watchdog ends the process (exit 3) and its supervisor starts a fresh one.
CALL_TIMEOUT_S = 60.0
#: After SIGTERM: the revoke timeout for requests in flight, then this for the last commit.
SHUTDOWN_GRACE_S = 5.0
#: Net allocations of tracked objects between two gen-0 collections (CPython's default is 700).
GC_GEN0_THRESHOLD = 50_000


@dataclass
class DelivererStats:
    """Totals since start."""

    consumed: int = 0
    delivered: int = 0
    dead_lettered: int = 0
    batches: int = 0
    requests: int = 0
    retries: int = 0
    short_receipts: int = 0
    skipped: int = 0
    max_pending: int = 0
    # a bounded window of recent produce-to-accept latencies (for summaries), not a history
    latencies_s: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=100_000)
    )


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why an event goes to the dead-letter topic instead of Meta."""

    reason: str
    message: str
    meta_error: MetaErrorFields | None = None
    pixel_id: str | None = None
    event_id: str | None = None
    event_name: str | None = None

    @staticmethod
    def of(
        item: PendingEvent, reason: str, message: str, meta: MetaErrorFields | None = None
    ) -> _Failure:
        """A failure of the event ``item``, carrying its identity for the dead letter."""
        return _Failure(reason, message, meta, item.lane.pixel_id, item.event_id, item.event_name)


class Deliverer:
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
        if d.destination == "gateway" and not d.gateway_url:
            raise ConfigError("CAPI_STREAM_DELIVERER__GATEWAY_URL is required for the gateway")
        self.settings = settings
        self.worker = worker
        self.sensor: Sensor = sensor or NullSensor()
        self.clock = clock
        self.stats = DelivererStats()
        self._rnd = random.Random(seed)  # noqa: S311 - jitter, not cryptography
        self._retry = RetryPolicy(base_s=d.retry_base_s, max_s=d.retry_max_s)
        self._filter = _load_filter(d.gateway_filter)
        self._destinations = _destinations(settings)
        self._stopping = threading.Event()
        self._poll_stop = threading.Event()
        # at most two decoded poll batches wait for the loop: backpressure reaches the consumer
        self._handoff = threading.BoundedSemaphore(2)
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = (
            queue.SimpleQueue()
        )
        self._tracker = OffsetTracker()
        self._batcher = Batcher(
            max_events=d.max_events, max_bytes=d.max_bytes, linger_s=d.linger_ms / 1000,
            age_guard_s=d.age_guard_s,
        )  # fmt: skip
        self._lanes: dict[LaneKey, Lane] = {}
        # (tp, offset) -> [record, generation, destinations still to settle, first failure ms]
        self._open: dict[tuple[TopicPartition, int], list[Any]] = {}
        self._generation: dict[TopicPartition, int] = {}
        self._pixels_seen: set[str] = set()
        self._assigned: set[TopicPartition] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._paused = False
        self._last_record_at = clock()
        self._crash: BaseException | None = None
        self._ready = False  # set on the loop thread; read by the health server's thread
        self._last_offset: dict[TopicPartition, int] = {}
        self._committed_next: dict[TopicPartition, int] = {}
        # liveness: when the loop last ticked and the poll thread last polled (monotonic; read
        # by the health server's thread); starting counts as both
        self._ticked_at = self._polled_at = time.monotonic()
        self._watchdog = watchdog or Watchdog()
        self._watch_signals = False
        self.shutdown_s = d.revoke_timeout_s + SHUTDOWN_GRACE_S
        self._committing: asyncio.Task[None] | None = None
        self._next_commit_at = 0.0  # monotonic; no commit starts before

    # -- public surface ----------------------------------------------------------------------

    def stop(self) -> None:
        """Deliver what is batched (bounded by the revoke timeout), commit, and leave."""
        self._stopping.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT drain and stop, and the process ends within :attr:`shutdown_s`.

        The drain gives requests in flight ``revoke_timeout_s``, then commits; should that last
        commit or the consumer's close hang (a broker gone), the watchdog ends the process.
        Nothing is lost either way: what is not committed is sent again by the next owner.
        """

        def handler(signum: int, _: FrameType | None) -> None:
            log.info("stopping", signal=signum)
            self.stop()
            self._watchdog.shutdown(self.shutdown_s)

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, handler)
        self._watch_signals = True

    @property
    def halted_lanes(self) -> list[LaneKey]:
        return [key for key, lane in self._lanes.items() if lane.halted]

    def alive(self) -> bool:
        """Liveness: False when the loop or the poll thread has not ticked for ``stall_timeout_s``.

        A loop or a poll thread stuck in a call that never returns (or a hog) turns /healthz
        red, so a container health check restarts the process; nothing else can notice it. The
        poll thread blocks at most ``revoke_timeout_s`` + 60 s in a rebalance callback, less
        than the default stall timeout of 120 s.
        """
        now, stall_s = time.monotonic(), self.settings.deliverer.stall_timeout_s
        return now - self._ticked_at < stall_s and now - self._polled_at < stall_s

    def ready(self) -> bool:
        """Readiness: partitions assigned and no lane halted by a setup error.

        Computed on the loop's thread (every tick) so other threads never iterate its state.
        """
        return self._ready

    def run(self, *, max_idle_s: float | None = None) -> DelivererStats:
        """Run until stopped, or until idle for ``max_idle_s`` with nothing pending."""
        watchdog = self._watchdog.start()
        if self._watch_signals:
            watchdog.watch_signals(self.shutdown_s)
        try:
            asyncio.run(self._main(max_idle_s))
        finally:
            watchdog.stop()
        if self._crash is not None:
            # committed offsets never pass unsettled events, so stopping here loses nothing
            raise self._crash
        return self.stats

    def _crashed(self, exc: BaseException) -> None:
        """A bug or a fatal Kafka error in a task or the poll thread: stop, then re-raise."""
        if self._crash is None:
            self._crash = exc
            log.error("stopping after an error", error=f"{type(exc).__name__}: {exc}")
        self._stopping.set()

    def _loop_error(self, _: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if not isinstance(exc, BaseException):
            exc = RuntimeError(str(context.get("message", "an error in the event loop")))
        self._crashed(exc)

    # -- the loop ----------------------------------------------------------------------------

    async def _main(self, max_idle_s: float | None) -> None:
        s = self.settings
        self._loop = asyncio.get_running_loop()
        # an error in a loop callback (``_ingest`` producing a dead letter, say) is by default
        # logged by asyncio and forgotten, leaving its record tracked but never settled: the
        # partition would stall in silence. Stop the stage instead; nothing uncommitted is lost.
        self._loop.set_exception_handler(self._loop_error)
        # the global limit; each lane also has its own (max_in_flight_per_lane)
        self._in_flight = asyncio.Semaphore(s.deliverer.max_in_flight)
        # the largest dead letter the broker and our producer take, read once: one that does
        # not fit is cut to prefixes + length + SHA-256 instead of failing (and stalling) here
        with self._watchdog.arm("reading the topics' record size limit", CALL_TIMEOUT_S + 1):
            # the admin client honours its timeout: the deadline is only the backstop
            self._max_record = await asyncio.to_thread(
                max_record_bytes, s.admin_config(), s.producer_config(), [s.topics.dlq],
                timeout_s=CALL_TIMEOUT_S,
            )  # fmt: skip
        self._codecs = build_codecs(s)
        self._consumer = StageConsumer(consumer_config(s, self.worker))
        self._producer = StageProducer(s.producer_config(), transactional=False)
        self._sink = HttpSink(build_client(
            max_connections=s.deliverer.max_in_flight, timeout_s=s.deliverer.request_timeout_s,
            user_agent="capi-stream",
        ))  # fmt: skip
        poller = threading.Thread(target=self._poll_thread, name="capi-poll", daemon=True)
        self._poller = poller
        poller.start()
        log.info("started", topic=s.topics.enriched, destinations=self._destinations,
                 worker=self.worker, max_record_bytes=self._max_record)  # fmt: skip
        restore_gc = tune_gc()  # start-up is over: what exists now lives as long as the stage
        last_report = self.clock()
        try:
            while not self._stopping.is_set():
                await asyncio.sleep(self._sleep_s())
                self._ticked_at = time.monotonic()
                self._dispatch(self._batcher.due(self.clock()))
                self._ready = bool(self._assigned) and not self.halted_lanes
                self._maybe_commit()
                if self.clock() - last_report >= s.deliverer.commit_interval_s:
                    await self._report()
                    last_report = self.clock()
                if max_idle_s is not None and self._idle_for() > max_idle_s:
                    break
            await self._drain()
        finally:
            self._stopping.set()
            self._poll_stop.set()
            await asyncio.to_thread(poller.join, s.deliverer.revoke_timeout_s + 60)
            if poller.is_alive():
                # librdkafka's close (leave group, final commit) did not return: the thread is
                # stuck in C and cannot be cancelled; exit non-zero so a supervisor restarts us
                self._crashed(KafkaError("the consumer did not close in time", retriable=True))
            restore_gc()
            await self._sink.aclose()
            self._producer.close()
            self._codecs.close()
            log.info("stopped", delivered=self.stats.delivered, dead=self.stats.dead_lettered)

    async def _report(self) -> None:
        """Gauges for /metrics: in flight, pending, halted lanes, lags, oldest pending age."""
        sensor, now = self.sensor, self.clock()
        sensor.gauge("in_flight", len(self._tasks))
        sensor.gauge("pending", self._tracker.pending_count())
        sensor.gauge("lanes_halted", len(self.halted_lanes))
        sensor.gauge("assigned_partitions", len(self._assigned), stage="deliver")
        oldest: dict[str, float] = {}
        for entry in self._open.values():
            pixel, event_time = entry[4], entry[5]
            if pixel is not None and event_time is not None:
                oldest[pixel] = max(oldest.get(pixel, 0.0), now - event_time)
        for pixel in self._pixels_seen:
            sensor.gauge("oldest_pending_age_seconds", oldest.get(pixel, 0.0), pixel=pixel)
        self._pixels_seen.update(oldest)
        read = {tp: off + 1 for tp, off in self._last_offset.items() if tp in self._assigned}
        commit_lag = sum(n - self._committed_next.get(tp, n) for tp, n in read.items())
        sensor.gauge("commit_lag", max(commit_lag, 0), stage="deliver")
        try:
            ends = await self._on_poll_thread(
                lambda: self._consumer.high_watermarks(set(self._assigned))
            )
        except KafkaError:
            return
        lag = sum(max(end - read.get(tp, end), 0) for tp, end in ends.items())
        sensor.gauge("consumer_lag", lag, stage="deliver")

    def _sleep_s(self) -> float:
        deadline = self._batcher.next_deadline()
        if deadline is None:
            return 0.05
        return min(0.05, max(0.001, deadline - self.clock()))

    def _idle_for(self) -> float:
        if not self._assigned or self._tracker.pending_count() or self._tasks or len(self._batcher):
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
        left = set(self._tasks)
        for task in left:
            task.cancel()
        if left:
            await asyncio.wait(left)
        if self._committing is not None:
            await asyncio.wait({self._committing})
        await self._commit()

    # -- the poll thread ---------------------------------------------------------------------

    def _poll_thread(self) -> None:
        consumer = self._consumer
        consumer.subscribe(
            [self.settings.topics.enriched],
            on_assign=self._assign_in_callback,
            on_revoke=self._revoke_in_callback,
        )
        codec = self._codecs.enriched
        try:
            self._poll_loop(consumer, codec)
        except Exception as exc:  # noqa: BLE001 - handed to the loop, which stops and re-raises
            self._loop.call_soon_threadsafe(self._crashed, _explain_fencing(exc))
        finally:
            self._run_jobs()
            # runs the revoke callback (its wait on the loop and its commit are bounded), then
            # leaves the group: librdkafka may hang there when the coordinator is gone
            closing_s = self.settings.deliverer.revoke_timeout_s + 2 * CALL_TIMEOUT_S
            with self._watchdog.arm("closing the consumer", closing_s):
                consumer.close()

    def _poll_loop(self, consumer: StageConsumer, codec: AvroCodec) -> None:
        while not self._poll_stop.is_set():
            self._polled_at = time.monotonic()
            self._run_jobs()
            records = consumer.poll(1000, 0.05)
            if records:
                items = [self._prepare(codec, r) for r in records]
                while not self._handoff.acquire(timeout=0.1):
                    self._polled_at = time.monotonic()
                    self._run_jobs()  # the loop may be waiting on a consumer call
                    if self._poll_stop.is_set():
                        return
                self._loop.call_soon_threadsafe(self._ingest, items)

    def _run_jobs(self) -> None:
        while True:
            try:
                job, future = self._jobs.get_nowait()
            except queue.Empty:
                return
            try:
                future.set_result(job())
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine
                future.set_exception(exc)

    async def _on_poll_thread(self, job: Callable[[], Any]) -> Any:
        """Run a consumer call on the poll thread (between two polls) and await its result."""
        if not self._poller.is_alive():
            raise KafkaError("the consumer is closed")
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((job, future))
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout=60)
        except TimeoutError as exc:
            raise KafkaError("the poll thread did not run a consumer call", retriable=True) from exc

    def _call(self, coro: Any) -> Any:
        """Run a coroutine on the loop and block the poll thread until it is done (bounded)."""
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=self.settings.deliverer.revoke_timeout_s + 60)

    def _revoke_in_callback(self, tps: list[TopicPartition]) -> None:
        """Poll thread, inside the rebalance callback: settle on the loop, then commit here."""
        next_offsets = self._call(self._on_revoke(tps))
        try:
            self._commit_offsets(next_offsets)
        except KafkaError as exc:
            # the partitions are gone either way; their new owner re-reads from the last commit
            log.warning("commit on revoke failed", error=str(exc))

    def _assign_in_callback(self, tps: list[TopicPartition]) -> None:
        paused = self._call(self._on_assign(tps))
        if paused:
            self._consumer.pause(tps)

    def _prepare(self, codec: AvroCodec, record: Record) -> tuple[Record, Any]:
        """Decode in the poll thread: (record, decoded enriched record or a failure)."""
        try:
            return record, codec.decode(record.value or b"")
        except DecodeError as exc:
            return record, _Failure(f"decode_{exc.reason}", exc.detail)

    # -- rebalance (on the loop, while the poll thread waits) --------------------------------

    async def _on_assign(self, tps: list[TopicPartition]) -> bool:
        """Start tracking ``tps``; True when they must start paused (backpressure is on)."""
        for tp in tps:
            self._assigned.add(tp)
            self._generation[tp] = self._generation.get(tp, 0) + 1
        self._last_record_at = self.clock()
        log.info("assigned", partitions=[f"{t.topic}[{t.partition}]" for t in tps])
        return self._paused

    async def _on_revoke(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Start nothing new for ``tps``; wait (bounded) for their requests; forget them.

        Returns the next_offsets to commit for them (the callback commits on the poll thread).
        """
        revoked = set(tps)
        self._assigned -= revoked
        unsent = self._batcher.drop_partitions(revoked)
        busy = [t for t in self._tasks if getattr(t, "partitions", set()) & revoked]
        if busy:
            await asyncio.wait(busy, timeout=self.settings.deliverer.revoke_timeout_s)
        await asyncio.to_thread(self._producer.flush)  # dead letters first, as in _commit
        next_offsets = {tp: o for tp, o in self._tracker.committable().items() if tp in revoked}
        abandoned = self._tracker.forget(revoked)
        for tp in revoked:
            self._last_offset.pop(tp, None)
            self._committed_next.pop(tp, None)
        for key in [k for k in self._open if k[0] in revoked]:
            del self._open[key]
        log.info("revoked", partitions=len(tps), unsent=len(unsent), abandoned=abandoned)
        return next_offsets

    # -- ingest (on the loop) ----------------------------------------------------------------

    def _ingest(self, items: list[tuple[Record, Any]]) -> None:
        self._handoff.release()
        now = self.clock()
        self._last_record_at = now
        ready: list[Batch] = []
        for record, decoded in items:
            tp = record.tp
            if tp not in self._assigned:
                continue  # fetched just before a revoke; the new owner reads it again
            self.stats.consumed += 1
            self._tracker.track(tp, record.offset)
            self._last_offset[tp] = record.offset
            key = (tp, record.offset)
            pixel = event_time = None
            if isinstance(decoded, dict):
                pixel, event_time = decoded["pixel_id"], decoded["event_time"]
            # record, generation, destinations left, first failure ms, pixel, event_time
            self._open[key] = [record, self._generation.get(tp, 0), 0, None, pixel, event_time]
            if isinstance(decoded, _Failure):
                self._dead(key, decoded)
                continue
            for item in self._pending(record, decoded, now):
                if isinstance(item, _Failure):
                    self._dead(key, item)
                    break
                self._open[key][2] += 1
                ready += self._batcher.add(item, now)
            else:
                if self._open.get(key, [None, 0, 1])[2] == 0:
                    self.stats.skipped += 1  # the gateway filter kept it from every destination
                    self._settle(key)
        self._dispatch(ready)
        self.sensor.count("consumed", len(items), stage="deliver")
        pending = self._tracker.pending_count()
        self.stats.max_pending = max(self.stats.max_pending, pending)
        self.sensor.gauge("pending", pending)
        self._backpressure()

    def _pending(self, record: Record, enriched: dict[str, Any], now: float) -> list[Any]:
        """The events to send for one record (one per destination), or the failure.

        ``enriched`` is version 2 of the enriched record (a version-1 record was upgraded by the
        codec): its ``event_json`` goes into the request as is, never parsed here.
        """
        d = self.settings.deliverer
        ids = (enriched["pixel_id"], enriched["event_id"], enriched["event_name"])
        code = enriched["test_event_code"] or d.test_event_code
        if code and d.production:
            why = "test_event_code is set and the deliverer runs in production mode"
            return [_Failure("test_event_in_production", why, None, *ids)]
        max_age = (
            MAX_AGE_PHYSICAL_STORE_SECONDS if enriched["action_source"] == "physical_store"
            else MAX_AGE_SECONDS
        )  # fmt: skip
        expires_at = float(enriched["event_time"]) + max_age - EXPIRY_MARGIN_S
        if expires_at <= now:
            why = f"event_time is past Meta's {max_age // 86400}-day limit"
            return [_Failure("expired", why, None, *ids)]
        event_json: bytes = enriched["event_json"]
        items: list[Any] = []
        for dest in self._destinations:
            # the filter hook gets the decoded event; only then is the JSON parsed
            if (
                dest == "gateway"
                and self._filter is not None
                and not self._filter(orjson.loads(event_json))
            ):
                continue
            lane = LaneKey(dest, enriched["pixel_id"], None if dest == "gateway" else code)
            item = PendingEvent(record.tp, record.offset, lane, event_json, *ids[1:], expires_at)
            if not self._batcher.fits(item):
                why = f"{len(event_json)} bytes exceed max_bytes"
                return [_Failure("event_too_large", why, None, *ids)]
            items.append(item)
        return items

    # -- sending -----------------------------------------------------------------------------

    def _dispatch(self, batches: list[Batch]) -> None:
        for batch in batches:
            task = asyncio.create_task(self._deliver(batch))
            task.partitions = {item.tp for item in batch.items}  # type: ignore[attr-defined]
            self._tasks.add(task)
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        if not task.cancelled() and task.exception() is not None:
            self._crashed(task.exception())  # type: ignore[arg-type]

    def _lane(self, key: LaneKey) -> Lane:
        lane = self._lanes.get(key)
        if lane is None:
            d = self.settings.deliverer
            lane = Lane(key, max_in_flight=d.max_in_flight_per_lane, throttle_policy=self._retry,
                        rnd=self._rnd, clock=self.clock)  # fmt: skip
            self._lanes[key] = lane
        return lane

    async def _deliver(self, batch: Batch) -> None:
        self.stats.batches += 1
        self.sensor.count("batches", pixel=batch.lane.pixel_id)
        self.sensor.observe("batch_events", len(batch))
        # the assignment generation of each partition at dispatch: a completion that comes back
        # after its partition was revoked (and maybe re-assigned) must not settle the new copy
        gens = {item.tp: self._generation.get(item.tp, 0) for item in batch.items}
        verdict = await self._send_until_verdict(batch.lane, batch.items, gens)
        if isinstance(verdict, Invalid):
            await self._isolate(batch.lane, batch.items, verdict, gens)

    async def _send_until_verdict(
        self, key: LaneKey, items: tuple[PendingEvent, ...], gens: dict[TopicPartition, int]
    ) -> Accepted | Invalid | None:
        """Send until Meta accepts in full or rejects the content; retries everything else.

        Returns None when the events expired, stayed short through every re-send (both
        dead-lettered) or their partitions were revoked.
        """
        lane = self._lane(key)
        me = object()
        attempts = shorts = 0
        first_failure_ms: int | None = None
        try:
            while True:
                items = self._live(items, first_failure_ms, gens)
                if not items:
                    return None
                await lane.gate(me)
                outcome = await self._post(lane, items)
                if isinstance(outcome, Accepted) and outcome.short:
                    # the lane works (the token was taken); the batch is not confirmed
                    lane.succeeded(me)
                    shorts += 1
                    attempts += 1
                    first_failure_ms = first_failure_ms or int(self.clock() * 1000)
                    if self._short(key, items, outcome, gens, shorts=shorts, attempts=attempts):
                        return None
                    await asyncio.sleep(self._retry.backoff(shorts, self._rnd))
                    continue
                if isinstance(outcome, Accepted):
                    lane.succeeded(me)
                    self._accepted(key, items, outcome, gens, attempts + 1)
                    return outcome
                if isinstance(outcome, Invalid):
                    lane.succeeded(me)
                    return outcome
                attempts += 1
                self.stats.retries += 1
                # a failed request leaves reference cycles that hold its body (up to a few MB):
                # with the raised gen-0 threshold and the consumer paused in an outage, nothing
                # else would allocate enough to collect them (RSS grew 150 MB in a 15 s outage)
                gc.collect(0)
                first_failure_ms = first_failure_ms or int(self.clock() * 1000)
                kind = type(outcome).__name__.lower()
                self.sensor.count("retries", kind=kind)
                now = self.clock()
                if isinstance(outcome, Throttled):
                    lane.throttle.on_throttle(now, outcome.retry_after_s)
                    continue
                if isinstance(outcome, Setup):
                    if lane.halt(me, f"code {outcome.code}"):
                        log.error("lane halted", pixel=key.pixel_id, code=outcome.code,
                                  fbtrace_id=outcome.fbtrace_id)  # fmt: skip
                    delay = min(HALT_PROBE_BASE_S * 2 ** min(attempts, 10), self._retry.max_s)
                    await asyncio.sleep(delay)
                    continue
                await asyncio.sleep(self._retry.backoff(attempts, self._rnd, outcome.retry_after_s))
        finally:
            lane.release(me)

    def _live(
        self,
        items: tuple[PendingEvent, ...],
        first_failure_ms: int | None,
        gens: dict[TopicPartition, int],
    ) -> tuple[PendingEvent, ...]:
        """Drop revoked events; dead-letter the ones that would now poison the request."""
        now = self.clock()
        live = []
        for item in items:
            entry = self._open.get((item.tp, item.offset))
            if entry is None or entry[1] != gens.get(item.tp):
                continue  # settled already, or revoked since dispatch
            if item.expires_at <= now:
                entry[3] = first_failure_ms
                self._dead((item.tp, item.offset), _Failure.of(
                    item, "expired", "event reached Meta's age limit while retrying"))  # fmt: skip
                continue
            live.append(item)
        return tuple(live)

    async def _post(self, lane: Lane, items: tuple[PendingEvent, ...]) -> Outcome:
        s = self.settings
        key = lane.key
        if key.destination == "gateway":
            access = s.gateway_access_key.get_secret_value() if s.gateway_access_key else None
            url = gateway_url(s.deliverer.gateway_url or "", key.pixel_id)
            body = payload.gateway_body(key, items, access_key=access)
        else:
            token = s.token_for(key.pixel_id)
            secret = s.secret()
            url = graph_url(s.deliverer.graph_url, s.deliverer.api_version, key.pixel_id)
            body = payload.graph_body(
                key, items,
                access_token=token.get_secret_value() if token else None,
                app_secret=secret.get_secret_value() if secret and token else None,
                partner_agent=s.deliverer.partner_agent,
            )  # fmt: skip
        async with lane.slots, self._in_flight:
            answer = await self._sink.post(url, body)
        self.stats.requests += 1
        outcome = classify(
            answer.status, answer.body, answer.headers, answer.transport_error, len(items),
            now=self.clock(), gateway=key.destination == "gateway",
        )  # fmt: skip
        self.sensor.observe("request_seconds", answer.elapsed_s)
        self.sensor.count("requests", outcome=type(outcome).__name__.lower(), pixel=key.pixel_id)
        if not isinstance(outcome, Accepted):
            log.warning("request failed", pixel=key.pixel_id, events=len(items),
                        outcome=type(outcome).__name__, status=answer.status,
                        error=answer.transport_error)  # fmt: skip
        return outcome

    async def _isolate(
        self,
        key: LaneKey,
        items: tuple[PendingEvent, ...],
        first: Invalid,
        gens: dict[TopicPartition, int],
    ) -> None:
        """Dead-letter only the events Meta rejects; deliver the rest (CAPI.md §5.4)."""
        iso: Isolation[PendingEvent] = Isolation(items)
        step = iso.start(first)

        async def probe(p: Probe[PendingEvent]) -> None:
            verdict = await self._send_until_verdict(key, p.items, gens)
            await run(iso.on_result(p, verdict if isinstance(verdict, Invalid) else None))

        async def run(step: Any) -> None:
            for dead in step.dead:
                item = dead.item
                if self._generation.get(item.tp) != gens.get(item.tp):
                    continue
                self._dead((item.tp, item.offset), _Failure.of(
                    item, "rejected_by_meta", dead.error.message or "invalid parameter",
                    _meta_fields(dead.error)))  # fmt: skip
            if step.to_send:
                await asyncio.gather(*(probe(p) for p in step.to_send))

        await run(step)
        log.info("isolated", pixel=key.pixel_id, events=len(items), requests=iso.requests)

    # -- settling offsets --------------------------------------------------------------------

    def _short(
        self,
        key: LaneKey,
        items: tuple[PendingEvent, ...],
        short: Accepted,
        gens: dict[TopicPartition, int],
        *,
        shorts: int,
        attempts: int,
    ) -> bool:
        """A short receipt; True when it was the last allowed and the batch is dead-lettered.

        Meta does not say which events it did not count, so all of them stay unconfirmed (and
        their offsets uncommitted) until a full answer to a re-send, or their dead letters.
        """
        self.stats.short_receipts += 1
        self.sensor.count("short_receipts", pixel=key.pixel_id)
        retries = self.settings.deliverer.short_receipt_retries
        final = shorts > retries
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
        meta = MetaErrorFields(message=why, fbtrace_id=short.fbtrace_id)
        for item in items:
            if self._generation.get(item.tp) != gens.get(item.tp):
                continue  # revoked since dispatch: the new owner sends it again
            failure = _Failure.of(item, SHORT_RECEIPT, why, meta)
            self._dead((item.tp, item.offset), failure, attempts)
        return True

    def _accepted(
        self,
        key: LaneKey,
        items: tuple[PendingEvent, ...],
        ok: Accepted,
        gens: dict[TopicPartition, int],
        attempts: int,
    ) -> None:
        now = self.clock()
        for item in items:
            if self._generation.get(item.tp) != gens.get(item.tp):
                continue
            record = self._settle((item.tp, item.offset))
            if record is not None:
                self.stats.delivered += 1
                if record.timestamp_ms:
                    # from the enriched record's produce time to Meta's answer
                    self.stats.latencies_s.append(now - record.timestamp_ms / 1000)
        self.sensor.count("events_posted", len(items), pixel=key.pixel_id)
        self.sensor.count("events_received", ok.events_received or 0, pixel=key.pixel_id)
        delivery: dict[str, Any] = {
            "pixel_id": key.pixel_id, "destination": key.destination,
            "test_event_code": key.test_event_code, "events_sent": len(items),
            "events_received": ok.events_received, "fbtrace_id": ok.fbtrace_id,
            "offsets": _ranges(items), "attempts": attempts, "delivered_at": now,
        }  # fmt: skip
        log.info("batch delivered", **delivery)
        if self.settings.deliverer.ledger:
            # compacted: one record per batch, keyed by where its events came from
            ledger_key = f"{key.pixel_id}/{sorted(delivery['offsets'].items())[0]}".encode()
            self._producer.produce(self.settings.topics.ledger, ledger_key, orjson.dumps(delivery))

    def _settle(self, key: tuple[TopicPartition, int]) -> Record | None:
        """One destination of the event is done; ack the offset when all are (its record)."""
        entry = self._open.get(key)
        if entry is None or self._generation.get(key[0]) != entry[1]:
            return None  # a completion from before a revoke: the new owner settles it
        entry[2] -= 1
        if entry[2] > 0:
            return None
        del self._open[key]
        if self._tracker.tracking(key[0]):
            self._tracker.ack(*key)
        self._backpressure()
        record: Record = entry[0]
        return record

    def _dead(self, key: tuple[TopicPartition, int], failure: _Failure, attempts: int = 1) -> None:
        entry = self._open.get(key)
        if entry is None:
            return
        record: Record = entry[0]
        now_ms = int(self.clock() * 1000)
        letter = dead_letter(
            stage="deliver", reason=failure.reason, message=failure.message, record=record,
            now_ms=now_ms, first_failure_ms=entry[3], meta_error=failure.meta_error,
            pixel_id=failure.pixel_id, event_id=failure.event_id, event_name=failure.event_name,
            attempts=attempts,
        )  # fmt: skip
        # the offset is acked now, but committed only after step 1 of _commit confirms the letter
        out = letter_record(letter, self._codecs.dlq.encode, self._max_record)
        self._producer.produce(self.settings.topics.dlq, out.key, out.value, out.headers)
        self.stats.dead_lettered += 1
        self.sensor.count("dead_lettered", stage="deliver", reason=failure.reason)
        entry[2] = 1
        self._settle(key)

    def _backpressure(self) -> None:
        d = self.settings.deliverer
        pending = self._tracker.pending_count()
        if not self._paused and pending >= d.max_pending:
            self._paused = True
            tps = set(self._assigned)
            self._jobs.put((lambda: self._consumer.pause(tps), concurrent.futures.Future()))
            log.warning("paused: too many pending events", pending=pending)
        elif self._paused and pending <= d.resume_pending:
            self._paused = False
            tps = set(self._assigned)
            self._jobs.put((lambda: self._consumer.resume(tps), concurrent.futures.Future()))
            log.info("resumed", pending=pending)

    def _maybe_commit(self) -> None:
        """Commit in the background when a watermark moved: coalesced, one commit at a time.

        A commit starts at most every ``commit_min_interval_s``, so a burst of settled batches
        costs one commit, and a crash re-sends at most what settled in that interval plus what
        was in flight. After a failed commit the next try waits ``commit_interval_s``.
        """
        if self._committing is not None or time.monotonic() < self._next_commit_at:
            return
        if not self._tracker.committable():
            return
        task = asyncio.create_task(self._commit_coalesced())
        self._committing = task
        task.add_done_callback(self._commit_done)

    async def _commit_coalesced(self) -> None:
        d = self.settings.deliverer
        self._next_commit_at = time.monotonic() + d.commit_min_interval_s
        if not await self._commit():
            self._next_commit_at = time.monotonic() + d.commit_interval_s

    def _commit_done(self, task: asyncio.Task[None]) -> None:
        self._committing = None
        if not task.cancelled() and task.exception() is not None:
            self._crashed(task.exception())  # type: ignore[arg-type]

    def _commit_offsets(self, next_offsets: dict[TopicPartition, int]) -> None:
        """Poll thread: librdkafka's synchronous commit, which has no timeout of its own."""
        with self._watchdog.arm("committing offsets", CALL_TIMEOUT_S):
            self._consumer.commit(next_offsets)

    async def _commit(self) -> bool:
        """The commit protocol; False when the commit failed and should be tried again.

        1. flush the producer and check that every dead letter reached Kafka (bounded: a flush
           that cannot finish in 60 s raises, and the stage exits for its supervisor)
        2. take each partition's next_offset from the watermark (only contiguous done offsets)
        3. commit those offsets synchronously; a partition error raises
        4. record them as committed
        """
        await asyncio.to_thread(self._producer.flush)  # 1
        next_offsets = self._tracker.committable()  # 2
        if not next_offsets:
            return True
        try:
            await self._on_poll_thread(lambda: self._commit_offsets(next_offsets))  # 3
        except KafkaError as exc:
            if exc.fatal:
                raise
            # a rebalance or a coordinator move: the offsets stay committable for the next try
            log.warning("commit failed; will retry", error=str(exc))
            return False
        live = {tp: off for tp, off in next_offsets.items() if self._tracker.tracking(tp)}
        self._tracker.mark_committed(live)  # 4
        self._committed_next.update(live)
        self.sensor.count("commits")
        return True


def tune_gc() -> Callable[[], None]:
    """Tune the cyclic garbage collector for the stage; returns what restores the defaults.

    Every event's objects (its record, decoded envelope, pending event: ~10 tracked containers)
    survive the poll thread's hand-off and live until Meta answers. With the default gen-0
    threshold (700 net allocations) a collection starts every ~70 events and traverses all the
    young ones, finding no garbage: reference counting frees what the stage drops. That was
    ~30 % of the deliver path's CPU (issue 11). So: move what start-up made (modules, settings,
    clients; never garbage) out of every collection with ``gc.freeze()``, and start gen 0 every
    ``GC_GEN0_THRESHOLD`` net allocations, a few thousand events; the cyclic garbage that can wait
    that long is a few MB. Memory stays bounded by ``max_pending`` as before.
    """
    before = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, before[1], before[2])

    def restore() -> None:
        # a test process runs many stages: leave its collector as it was
        gc.set_threshold(*before)
        gc.unfreeze()

    return restore


def consumer_config(settings: Settings, worker: int, host: str | None = None) -> KafkaProps:
    """The deliverer's librdkafka consumer config, with its static ``group.instance.id``.

    With ``deliverer.static_membership`` the member of worker slot ``worker`` is
    ``"{group_id}-{host}-{worker}"``, or ``"{group_instance_id}-{worker}"`` when
    ``deliverer.group_instance_id`` is set (e.g. a StatefulSet pod's name). The host name keeps
    slot 0 of two hosts (or of two ``docker compose --scale`` replicas) apart. A restarted worker
    takes its slot's partitions back without a rebalance and without waiting out
    ``session.timeout.ms`` for its dead predecessor. A ``group.instance.id`` in the passthrough
    settings (``kafka`` or ``consumer``) wins, as every passthrough property does. Two live
    processes must never share one: the broker fences the older (a fatal error that stops it).
    """
    d = settings.deliverer
    extra: dict[str, str | int | float | bool] = {"queued.max.messages.kbytes": PREFETCH_KBYTES}
    passthrough = {**settings.kafka, **settings.consumer}
    if d.static_membership and "group.instance.id" not in passthrough:
        prefix = d.group_instance_id or f"{d.group_id}-{host or socket.gethostname()}"
        extra["group.instance.id"] = f"{prefix}-{worker}"
    return settings.consumer_config(d.group_id, **extra)


def _explain_fencing(exc: Exception) -> Exception:
    """Name the causes when the broker fenced this static member.

    Two causes give librdkafka's one fatal error: another live process took this process's
    ``group.instance.id`` (two hosts or two processes left at one ``--worker`` slot; under
    supervisors they would fence each other in turn), or the group coordinator expired this
    member's session while it could not reach it (a broker outage longer than
    ``session.timeout.ms``) and refuses the old member on its return. Either way the process
    exits (nothing uncommitted is lost) and its supervisor's restart joins afresh.
    """
    if isinstance(exc, KafkaError) and "same group.instance.id" in str(exc):
        return KafkaError(
            "fenced as a static group member: either another deliverer process uses this "
            "process's group.instance.id (give each its own --worker slot, or "
            "deliverer.group_instance_id), or the group coordinator expired this member's "
            "session during an outage (a restart rejoins)"
            f"; {exc}",
            fatal=True,
        )
    return exc


def _destinations(settings: Settings) -> tuple[str, ...]:
    d = settings.deliverer
    if d.destination == "gateway":
        return ("gateway",) if d.gateway_only else ("graph", "gateway")
    return ("graph",)


def _load_filter(spec: str | None) -> Callable[[dict[str, Any]], bool] | None:
    """The Gateway filter hook named ``module:function`` in settings."""
    if spec is None:
        return None
    module, _, name = spec.partition(":")
    try:
        func = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"CAPI_STREAM_DELIVERER__GATEWAY_FILTER: cannot load {spec}") from exc
    if not callable(func):
        raise ConfigError(f"CAPI_STREAM_DELIVERER__GATEWAY_FILTER: {spec} is not callable")
    return func  # type: ignore[no-any-return]


def _meta_fields(error: Any) -> MetaErrorFields:
    return MetaErrorFields(
        code=error.code, error_subcode=error.error_subcode, type=error.type,
        message=error.message, error_user_title=error.error_user_title,
        error_user_msg=error.error_user_msg, fbtrace_id=error.fbtrace_id,
    )  # fmt: skip


def _ranges(items: tuple[PendingEvent, ...]) -> dict[str, list[int]]:
    """First and last offset per partition of a batch, for the delivery record."""
    spans: dict[str, list[int]] = {}
    for item in items:
        name = f"{item.tp.topic}[{item.tp.partition}]"
        span = spans.setdefault(name, [item.offset, item.offset])
        span[0] = min(span[0], item.offset)
        span[1] = max(span[1], item.offset)
    return spans
