"""The producer seam: transactional (exactly-once) and idempotent (at-least-once) producing."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Producer
from confluent_kafka import TopicPartition as RdTopicPartition

from stream.core.errors import KafkaError
from stream.core.records import TopicPartition
from stream.kafka.errors import translate

Headers = Sequence[tuple[str, bytes]]


class StageProducer:
    """Produces records; in transactional mode, batches them with input offsets atomically.

    Delivery failures are collected from librdkafka's callbacks and raised by :meth:`flush`, so a
    record that never reached the broker can never be mistaken for delivered.
    """

    def __init__(self, config: Mapping[str, Any], *, transactional: bool) -> None:
        self._producer = Producer(dict(config))
        self.transactional = transactional
        self._failures: list[str] = []
        if transactional:
            try:
                # fences any earlier instance with the same transactional.id and aborts its open
                # transaction, so a restart after kill -9 does not wait for the transaction timeout
                self._producer.init_transactions(30)
            except KafkaException as exc:
                raise translate(exc, "initialising transactions") from exc

    def _on_delivery(self, err: RdKafkaError | None, _: Any) -> None:
        if err is not None:
            self._failures.append(f"{err.name()}: {err.str()}")

    def produce(self, topic: str, key: bytes | None, value: bytes, headers: Headers = ()) -> None:
        """Queue one record; waits for queue space instead of failing when the queue is full."""
        while True:
            try:
                self._producer.produce(
                    topic,
                    value=value,
                    key=key,
                    headers=list(headers),
                    on_delivery=self._on_delivery,
                )
                return
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise translate(exc, f"producing to {topic}") from exc

    def poll(self) -> None:
        """Serve delivery callbacks."""
        self._producer.poll(0)

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait for every queued record; raise if any failed or is still queued."""
        left = self._producer.flush(timeout_s)
        if left:
            raise KafkaError(f"{left} records still queued after {timeout_s:.0f}s", retriable=True)
        if self._failures:
            failures, self._failures = self._failures, []
            raise KafkaError(
                f"{len(failures)} records not delivered: {failures[0]}", retriable=True
            )

    # -- transactions --------------------------------------------------------------------------

    def begin(self) -> None:
        try:
            self._producer.begin_transaction()
        except KafkaException as exc:
            raise translate(exc, "beginning a transaction") from exc

    def commit(
        self, offsets: Mapping[TopicPartition, int], group_metadata: Any, timeout_s: float = 60.0
    ) -> None:
        """Add the input ``next_offset`` per partition to the transaction and commit it."""
        parts = [RdTopicPartition(tp.topic, tp.partition, off) for tp, off in offsets.items()]
        try:
            if parts:
                self._producer.send_offsets_to_transaction(parts, group_metadata, timeout_s)
            self._producer.commit_transaction(timeout_s)
        except KafkaException as exc:
            raise translate(exc, "committing a transaction") from exc
        self._failures.clear()

    def abort(self, timeout_s: float = 60.0) -> None:
        """Abort the open transaction; its records are never seen by read_committed readers."""
        self._failures.clear()
        try:
            self._producer.abort_transaction(timeout_s)
        except KafkaException as exc:
            raise translate(exc, "aborting a transaction") from exc

    def close(self, timeout_s: float = 30.0) -> None:
        """Deliver what is queued (bounded), then release the client."""
        self._producer.flush(timeout_s)
        self._producer.close()
