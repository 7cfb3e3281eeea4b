"""What flows out of Kafka: our own frozen record, made right after ``poll()``.

Nothing past the consumer sees a ``confluent_kafka.Message``; the stages and the core work on
:class:`Record`, which carries everything a dead letter needs to reproduce the original.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.core.errors import Coordinates

Headers = tuple[tuple[str, bytes | None], ...]


@dataclass(frozen=True, slots=True)
class TopicPartition:
    """One partition of one topic."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed Kafka record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    @property
    def coordinates(self) -> Coordinates:
        return Coordinates(self.topic, self.partition, self.offset)
