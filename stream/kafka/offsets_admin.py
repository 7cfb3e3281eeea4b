"""Offsets by time, watermarks and consumer-group offsets: what ``replay`` and ``dlq`` look up.

Everything works on one topic at a time, with partitions as plain ints. Offsets are Kafka's
``next_offset`` convention: a partition's *end* is the offset the next record will get, a
group's *committed* offset is the next record it will read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    IsolationLevel,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

# the defining module: confluent_kafka.admin re-exports OffsetSpec without declaring it
from confluent_kafka.admin._listoffsets import OffsetSpec

from stream.config import Settings
from stream.core.errors import KafkaError
from stream.kafka.errors import translate

_TIMEOUT_S = 30.0
_RECONNECT_BACKOFF = "reconnect.backoff.ms"


@dataclass(frozen=True, slots=True)
class GroupInfo:
    """A consumer group's state and its active members (client id @ host)."""

    group_id: str
    state: str
    members: tuple[str, ...]


def one_off(settings: Settings) -> Settings:
    """``settings`` for the short-lived clients of a one-off tool (look-ups, range reads).

    librdkafka waits its reconnect backoff (100 ms, jittered) before a new client's first
    request: about 50 ms, measured, before a look-up that takes 1 ms, paid once per client and
    a fifth of a 50,000-record replay's time. 20 ms brings it to about 15. A backoff configured
    in ``kafka``, ``admin`` or ``consumer`` stays as it is.
    """
    if _RECONNECT_BACKOFF in settings.kafka:
        return settings
    update = {}
    for section in ("admin", "consumer"):
        props = getattr(settings, section)
        if _RECONNECT_BACKOFF not in props:
            update[section] = {_RECONNECT_BACKOFF: 20, **props}
    return settings.model_copy(update=update)


class OffsetsAdmin:
    """Admin look-ups and offset moves for one cluster."""

    def __init__(self, settings: Settings) -> None:
        self._settings = one_off(settings)
        self._admin = AdminClient(self._settings.admin_config())

    def partitions(self, topic: str) -> list[int]:
        """The topic's partition ids; raises :class:`KafkaError` when the topic does not exist."""
        try:
            meta = self._admin.list_topics(topic, timeout=_TIMEOUT_S).topics.get(topic)
        except KafkaException as exc:
            raise translate(exc, f"reading metadata of {topic}") from exc
        if meta is None or meta.error is not None or not meta.partitions:
            raise KafkaError(f"topic {topic} does not exist")
        return sorted(meta.partitions)

    def bounds(self, topic: str, partitions: Iterable[int]) -> dict[int, tuple[int, int]]:
        """``(first, end)`` offsets per partition; end is read_committed's (the stable offset)."""
        parts = list(partitions)
        # OffsetSpec's class methods carry no annotations
        earliest, latest = OffsetSpec.earliest(), OffsetSpec.latest()  # type: ignore[no-untyped-call]
        first = self._list(topic, dict.fromkeys(parts, earliest))
        end = self._list(topic, dict.fromkeys(parts, latest))
        return {p: (first[p], end[p]) for p in parts}

    def offsets_at(self, topic: str, partitions: Iterable[int], ts_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is at or after ``ts_ms``.

        A partition with no such record answers its end offset, so ranges stay ``[start, end)``.
        """
        parts = list(partitions)
        found = self._list(topic, {p: OffsetSpec.for_timestamp(ts_ms) for p in parts})
        missing = [p for p, off in found.items() if off < 0]
        if missing:
            found.update({p: self.bounds(topic, missing)[p][1] for p in missing})
        return found

    def ranges(
        self,
        topic: str,
        *,
        partition: int | None = None,
        offsets: tuple[int, int | None] | None = None,
        from_ms: int | None = None,
        to_ms: int | None = None,
    ) -> dict[int, tuple[int, int]]:
        """``partition -> (start, end)`` for a range, clamped to what the topic still holds.

        ``offsets`` is ``(start, end)`` of ``partition`` (end None: the partition's end); times
        select records with ``from_ms <= timestamp < to_ms`` in every (or the one) partition.
        """
        partitions = self.partitions(topic)
        if partition is not None:
            if partition not in partitions:
                raise KafkaError(f"{topic} has no partition {partition}")
            partitions = [partition]
        bounds = self.bounds(topic, partitions)
        if offsets is not None:
            start, stop = offsets
            first, end = bounds[partitions[0]]
            return {partitions[0]: (max(start, first), min(end if stop is None else stop, end))}
        starts = self.offsets_at(topic, partitions, from_ms) if from_ms is not None else {}
        ends = self.offsets_at(topic, partitions, to_ms) if to_ms is not None else {}
        return {
            p: (max(starts.get(p, first), first), min(ends.get(p, end), end))
            for p, (first, end) in bounds.items()
        }

    def _list(self, topic: str, specs: Mapping[int, OffsetSpec]) -> dict[int, int]:
        request = {TopicPartition(topic, p): spec for p, spec in specs.items()}
        futures = self._admin.list_offsets(
            request, isolation_level=IsolationLevel.READ_COMMITTED, request_timeout=_TIMEOUT_S
        )
        return {tp.partition: int(_result(f, f"listing offsets of {topic}").offset)
                for tp, f in futures.items()}  # fmt: skip

    def group(self, group_id: str) -> GroupInfo:
        """The group's state and active members (none: nobody consumes with that group id)."""
        future = self._admin.describe_consumer_groups([group_id], request_timeout=_TIMEOUT_S)
        desc = _result(future[group_id], f"describing group {group_id}")
        members = tuple(f"{m.client_id}@{m.host}" for m in desc.members or [])
        state = getattr(desc.state, "name", str(desc.state))
        return GroupInfo(group_id, state, members)

    def committed(self, group_id: str, topic: str, partitions: Iterable[int]) -> dict[int, int]:
        """The group's committed offset per partition; -1 where it has committed none.

        Read by a consumer of the group that never subscribes (so never joins it), not by the
        admin client: librdkafka's ListConsumerGroupOffsets crashes the process when the broker
        answers NOT_COORDINATOR (a coordinator moving, a broker restarting; librdkafka issue
        #5040), and a crash in C cannot be caught.
        """
        consumer = Consumer(
            self._settings.consumer_config(group_id, **{"enable.auto.commit": False})
        )
        try:
            parts = consumer.committed(
                [TopicPartition(topic, p) for p in partitions], timeout=_TIMEOUT_S
            )
        except KafkaException as exc:
            raise translate(exc, f"reading offsets of group {group_id}") from exc
        finally:
            consumer.close()
        out = {}
        for tp in parts:
            if tp.error is not None:
                raise KafkaError(f"offsets of {group_id} on {topic}[{tp.partition}]: {tp.error}")
            out[tp.partition] = int(tp.offset) if tp.offset >= 0 else -1
        return out

    def move_group(self, group_id: str, topic: str, offsets: Mapping[int, int]) -> None:
        """Set the group's committed offsets; the broker refuses while the group has members."""
        if not offsets:
            return
        request = ConsumerGroupTopicPartitions(
            group_id, [TopicPartition(topic, p, off) for p, off in sorted(offsets.items())]
        )
        future = self._admin.alter_consumer_group_offsets([request], request_timeout=_TIMEOUT_S)
        result = _result(future[group_id], f"moving offsets of group {group_id}")
        for tp in result.topic_partitions or []:
            if tp.error is not None:
                raise KafkaError(f"moving {group_id} on {topic}[{tp.partition}]: {tp.error}")


def parse_offsets(text: str) -> tuple[int, int | None]:
    """``"100-200"`` → (100, 201): both ends included; ``"100-"`` → (100, None): to the end."""
    match = re.fullmatch(r"(\d+)(?:-(\d*))?", text.strip())
    if match is None:
        raise ValueError("--offsets is FIRST-LAST, FIRST- or FIRST")
    first, last = int(match.group(1)), match.group(2)
    if last is None:
        return first, first + 1
    if not last:
        return first, None
    if int(last) < first:
        raise ValueError("--offsets: the last offset is before the first")
    return first, int(last) + 1


def _result(future: Future[Any], doing: str) -> Any:
    try:
        return future.result(timeout=_TIMEOUT_S)
    except KafkaException as exc:
        raise translate(exc, doing) from exc
