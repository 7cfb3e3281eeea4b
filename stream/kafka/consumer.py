"""The consumer seam: librdkafka's consumer behind a small typed surface of our own records."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaException
from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import TopicPartition as RdTopicPartition

from stream.core.errors import KafkaError
from stream.core.records import Record, TopicPartition
from stream.kafka.errors import translate
from stream.kafka.records import to_record

PartitionsCallback = Callable[[list[TopicPartition]], None]


def _ours(parts: Iterable[RdTopicPartition]) -> list[TopicPartition]:
    return [TopicPartition(p.topic, p.partition) for p in parts]


def _theirs(offsets: Mapping[TopicPartition, int]) -> list[RdTopicPartition]:
    return [RdTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]


class StageConsumer:
    """A group member reading our :class:`Record` objects; offsets are committed explicitly."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._consumer = Consumer(dict(config))
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

    def group_metadata(self) -> Any:
        """The opaque group metadata a transactional producer sends with offsets."""
        return self._consumer.consumer_group_metadata()

    def close(self) -> None:
        """Leave the group (running the revoke callback) and release the client."""
        self._consumer.close()
