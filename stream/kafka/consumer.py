"""The consumer seam: librdkafka's consumer behind a small typed surface of our own records."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import orjson
from confluent_kafka import Consumer, KafkaException
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from stream.core.errors import KafkaError
from stream.core.lag import consumer_lag
from stream.core.polled import Polled
from stream.core.records import Record, TopicPartition
from stream.kafka.errors import translate
from stream.kafka.records import to_polled, to_record

PartitionsCallback = Callable[[list[TopicPartition]], None]

#: How often librdkafka reports a read_committed consumer's last stable offsets (statistics).
STATS_INTERVAL_MS: Final = 5000


def _ours(parts: Iterable[RdTopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in parts]


def _eof(err: RdKafkaError | None) -> bool:
    """Whether a message's error is a partition-EOF notice (skipped); any other raises."""
    if err is None:
        return False
    if err.code() == RdKafkaError._PARTITION_EOF:
        return True
    raise KafkaError(
        f"consuming: {err.name()}: {err.str()}",
        retriable=bool(err.retriable()), fatal=bool(err.fatal()),
    )  # fmt: skip


def _theirs(offsets: Mapping[TopicPartition, int]) -> list[RdTopicPartition]:
    return [RdTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]


class StageConsumer:
    """A group member reading our :class:`Record` objects; offsets are committed explicitly."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        conf = dict(config)
        # librdkafka's default isolation is read_committed too
        self.read_committed = conf.get("isolation.level", "read_committed") == "read_committed"
        # A read_committed consumer can read up to the last stable offset, not the high
        # watermark: records of an open transaction are not readable yet. librdkafka knows the
        # LSO from every fetch response but shows it only in its statistics, so they are
        # turned on (unless the configuration took them over) and the LSO kept per partition.
        self._stable_ends: dict[TopicPartition, int] = {}
        self._stable_lock = threading.Lock()
        if self.read_committed and "stats_cb" not in conf:
            conf.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
            conf["stats_cb"] = self._on_stats
        self._consumer = Consumer(conf)
        self.assignment: set[TopicPartition] = set()

    def subscribe(
        self,
        topics: list[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> None:
        """Join the group; the callbacks run inside :meth:`poll` (incremental, cooperative)."""

        def assigned(_: Consumer, parts: list[RdTopicPartition]) -> None:
            ours = _ours(parts)
            self.assignment.update(ours)
            if on_assign is not None:
                on_assign(ours)

        def revoked(_: Consumer, parts: list[RdTopicPartition]) -> None:
            ours = _ours(parts)
            if on_revoke is not None:
                on_revoke(ours)
            self.assignment.difference_update(ours)

        self._consumer.subscribe(topics, on_assign=assigned, on_revoke=revoked, on_lost=revoked)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        """Up to ``max_records`` records; partition-EOF notices are skipped, other errors raise."""
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as exc:
            raise translate(exc, "consuming") from exc
        records = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.code() == RdKafkaError._PARTITION_EOF:
                    continue
                raise KafkaError(
                    f"consuming: {err.name()}: {err.str()}",
                    retriable=bool(err.retriable()), fatal=bool(err.fatal()),
                )  # fmt: skip
            records.append(to_record(msg))
        return records

    def poll_batch(self, max_records: int, timeout_s: float) -> Polled | None:
        """Up to ``max_records`` records as columns (:class:`Polled`); None when none came.

        The same records as :meth:`poll` (partition-EOF notices skipped, other errors raise),
        without a :class:`Record` made per record: the deliver stage's hot path.
        """
        began = time.monotonic()
        try:
            messages = self._consumer.consume(num_messages=max_records, timeout=timeout_s)
        except KafkaException as exc:
            raise translate(exc, "consuming") from exc
        waited_s = time.monotonic() - began
        errors = [msg.error() for msg in messages]
        if errors.count(None) != len(errors):
            messages = [msg for msg, err in zip(messages, errors, strict=True) if not _eof(err)]
        return to_polled(messages, waited_s) if messages else None

    def assigned(self) -> set[TopicPartition]:
        """The partitions librdkafka has assigned to this consumer now (local, no broker call)."""
        return {TopicPartition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def commit(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Commit ``next_offset`` per partition synchronously; raise if any partition failed."""
        if not offsets:
            return
        try:
            results = self._consumer.commit(offsets=_theirs(offsets), asynchronous=False)
        except KafkaException as exc:
            raise translate(exc, "committing offsets") from exc
        for part in results or []:
            if part.error is not None:
                raise KafkaError(f"committing {part.topic}[{part.partition}]: {part.error}")

    def committed(
        self, tps: Iterable[TopicPartition], timeout_s: float = 10.0
    ) -> dict[TopicPartition, int]:
        """The group's committed ``next_offset`` per partition (negative: none committed)."""
        parts = self._consumer.committed(
            [RdTopicPartition(t.topic, t.partition) for t in tps], timeout=timeout_s
        )
        return {TopicPartition(p.topic, p.partition): p.offset for p in parts}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Read ``tp`` again from ``offset`` (after an aborted transaction)."""
        self._consumer.seek(RdTopicPartition(tp.topic, tp.partition, offset))

    def pause(self, tps: Iterable[TopicPartition]) -> None:
        self._consumer.pause([RdTopicPartition(t.topic, t.partition) for t in tps])

    def resume(self, tps: Iterable[TopicPartition]) -> None:
        self._consumer.resume([RdTopicPartition(t.topic, t.partition) for t in tps])

    def high_watermarks(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The last known end offset per partition (from fetch responses: no broker call)."""
        ends = {}
        for tp in tps:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    RdTopicPartition(tp.topic, tp.partition), cached=True
                )
            except KafkaException:
                continue
            if high >= 0:
                ends[tp] = high
        return ends

    def positions(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """The next offset to read per partition (local; past transaction markers); partitions
        with no position yet are left out."""
        parts = [RdTopicPartition(tp.topic, tp.partition) for tp in tps]
        if not parts:
            return {}
        try:
            found = self._consumer.position(parts)
        except KafkaException:
            return {}
        return {TopicPartition(p.topic, p.partition): p.offset for p in found if p.offset >= 0}

    def readable_ends(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Per partition, the offset this consumer can read up to (no broker call): the last
        stable offset for read_committed (from the latest statistics, at most
        :data:`STATS_INTERVAL_MS` old), else, or before the first statistics, the high
        watermark of the latest fetch."""
        tps = list(tps)
        ends = self.high_watermarks(tps)
        if self.read_committed:
            with self._stable_lock:
                stable = {tp: self._stable_ends[tp] for tp in tps if tp in self._stable_ends}
            for tp, end in stable.items():
                ends[tp] = min(end, ends.get(tp, end))
        return ends

    def lag(self, tps: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Records left to read per partition (:func:`stream.core.lag.consumer_lag`): 0 once
        everything readable is read, transaction markers and open transactions included."""
        tps = list(tps)
        return consumer_lag(self.readable_ends(tps), self.positions(tps))

    def _on_stats(self, text: str) -> None:
        # librdkafka's statistics JSON, inside poll(): keep each partition's last stable offset
        try:
            topics = orjson.loads(text).get("topics") or {}
            stable = {
                TopicPartition(topic, int(number)): int(part["ls_offset"])
                for topic, data in topics.items()
                for number, part in (data.get("partitions") or {}).items()
                if number != "-1" and int(part.get("ls_offset", -1)) >= 0
            }
        except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError, KeyError):
            return  # a malformed report is skipped: the gauges fall back to high watermarks
        with self._stable_lock:
            self._stable_ends.update(stable)

    def group_metadata(self) -> Any:
        """The opaque group metadata a transactional producer sends with offsets."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        """Leave the group (running the revoke callback) and release the client."""
        self._consumer.close()
