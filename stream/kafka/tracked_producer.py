"""An idempotent producer that says which records failed, for tools that report per input line.

:class:`~stream.kafka.producer.StageProducer` knows only how many records failed; ``publish``
must name the input lines, so each record here carries a caller's tag (the line number) to its
delivery report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Producer

from stream.core.errors import KafkaError
from stream.kafka.errors import translate


@dataclass(frozen=True, slots=True)
class Undelivered:
    """A record the broker did not take: its tag and librdkafka's error name."""

    tag: int
    error: str


class TrackedProducer:
    """Produces tagged records; :meth:`flush` returns the tags that were not delivered."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self._producer = Producer(dict(config))
        self._failed: list[Undelivered] = []
        self.delivered = 0

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        tag: int,
        headers: Sequence[tuple[str, bytes]] = (),
    ) -> None:
        """Queue one record; waits for queue space instead of failing when the queue is full."""
        # per record: one partial (C) and no header list unless there are headers, which
        # librdkafka would otherwise copy for every record (publish queues tens of thousands)
        extra: dict[str, Any] = {"headers": list(headers)} if headers else {}
        report = partial(self._report, tag)
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=report, **extra)
                break
            except BufferError:
                self._producer.poll(0.1)
            except KafkaException as exc:
                raise translate(exc, f"producing to {topic}") from exc
        self._producer.poll(0)

    def _report(self, tag: int, err: RdKafkaError | None, _: Any) -> None:
        if err is None:
            self.delivered += 1
        else:
            self._failed.append(Undelivered(tag, f"{err.name()}: {err.str()}"))

    def flush(self, timeout_s: float = 60.0) -> list[Undelivered]:
        """Wait for every queued record; the records that failed since the last flush.

        Raises :class:`KafkaError` when records are still queued after ``timeout_s``: their fate
        is unknown, and calling them failed or delivered would both be a guess.
        """
        left = self._producer.flush(timeout_s)
        if left:
            raise KafkaError(f"{left} records still queued after {timeout_s:.0f}s", retriable=True)
        failed, self._failed = self._failed, []
        return failed

    def close(self) -> None:
        """Release the client; call after :meth:`flush` (queued records would be dropped)."""
        self._producer.close()
