"""Copy chosen records of offset ranges onto a topic, near the speed of a hand-written loop.

``replay`` copies records back onto their topic, each with the header
``capi.replay.source=topic[partition]@offset`` (earlier provenance headers stay: a copy of a copy
names both sources, oldest first), key and value byte for byte. ``dlq republish`` produces the
originals that dead letters carry. Both go through :class:`Copier`, which does per record
only what the copy needs: librdkafka hands messages over in batches, the caller's ``decide``
sees plain bytes, the producer reports only failed deliveries (``delivery.report.only.error``)
and is served once per batch, and the caller's progress is told once per batch
(``python -m bench.replay_bench`` and ``bench.dlq_bench`` measure both tools beside such a loop).

The guarantee is the idempotent producer's (``acks=all``): :meth:`Copier.copy` returns only after
every copy was acknowledged and raises :class:`~stream.core.errors.KafkaError` if any was not.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError as RdKafkaError
from confluent_kafka import KafkaException, Producer

from stream.config import Settings
from stream.core.errors import KafkaError
from stream.kafka.errors import translate
from stream.kafka.range_reader import RangeReader, Ranges

SOURCE_HEADER = "capi.replay.source"

#: Headers as librdkafka hands them over (None: the record has none; a dict only when producing).
RawHeaders = list[tuple[str, str | bytes | None]] | dict[str, str | bytes | None] | None
#: Headers to produce.
OutHeaders = list[tuple[str, str | bytes | None]]
#: What to produce for a record: key, value and headers.
Output = tuple[bytes | None, bytes, OutHeaders]
#: Tells the caller how far the copy got: offsets passed and records read so far.
OnBatch = Callable[[int, int], None]
_FLUSH_TIMEOUT_S = 120.0
_NO_TIME = 2**63  # later than any record's timestamp
_QUEUE_FULL_TIMEOUT_S = 60.0


class Decide(Protocol):
    """Decides one record: the outcome to count and what to produce (None: nothing)."""

    def __call__(
        self, value: bytes | None, key: bytes | None, headers: RawHeaders, where: bytes, /
    ) -> tuple[str, Output | None]:
        """``where`` is the record's ``topic[partition]@offset`` (UTF-8), a header value."""
        ...


def replay_copy(
    value: bytes | None, key: bytes | None, headers: RawHeaders, where: bytes
) -> Output:
    """The copy of a record that ``replay`` produces: the same record naming its source."""
    pairs = headers.items() if isinstance(headers, dict) else headers or ()
    copied: OutHeaders = [(k, v) for k, v in pairs if v is not None]
    copied.append((SOURCE_HEADER, where))
    return key, value or b"", copied


class Tally:
    """Counts per partition and outcome (``copied``, ``expired``, ``other_pixel``, …), and the
    write time of the oldest record produced (None: nothing was)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, str]] = Counter()
        self.read = 0
        self.produced = 0
        self.oldest_ms: int | None = None

    def total(self, *outcomes: str) -> int:
        """How many records had one of ``outcomes``, over all partitions."""
        return sum(n for (_, o), n in self.counts.items() if o in outcomes)


class Copier:
    """The clients of a copy; use as a context manager (or call :meth:`close`). The producer
    is made at once, so that it connects and gets its idempotent producer id while the caller
    looks up its ranges; the reader's consumer when the copy starts (see :class:`RangeReader`)."""

    def __init__(self, settings: Settings, *, dry_run: bool = False) -> None:
        self._reader = RangeReader(settings)
        self._producer = None if dry_run else _BulkProducer(settings)

    def __enter__(self) -> Copier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def copy(
        self,
        source: str,
        ranges: Ranges,
        target: str,
        decide: Decide,
        *,
        tally: Tally,
        limit: int | None = None,
        on_batch: OnBatch | None = None,
    ) -> None:
        """Produce onto ``target`` what ``decide`` answers for each record of ``source``'s
        ranges, counting outcomes in ``tally``; stop reading once ``limit`` were produced.

        Without a producer (``dry_run``) it decides and counts only (``tally.produced`` counts
        what would be produced). Returns once every record produced was acknowledged.
        """
        producer = self._producer
        send = producer.send if producer is not None else None
        counts = tally.counts
        read, produced, stop = tally.read, tally.produced, -1 if limit is None else limit
        oldest = _NO_TIME if tally.oldest_ms is None else tally.oldest_ms
        try:
            for messages, cursor in self._reader.raw_batches(source, ranges):
                todo, position = cursor.todo, cursor.position
                prefixes = {p: f"{source}[{p}]@".encode() for p in todo}
                # the loop a hand-written copy has, plus the range check, decide and the
                # counts: Cursor.take inlined, as this runs for every record
                for msg in messages:
                    partition, offset = msg.partition() or 0, msg.offset() or 0
                    end = todo.get(partition, -1)
                    err = msg.error()
                    if err is not None or offset >= end:
                        cursor.leave(partition, err)
                        continue
                    position[partition] = offset + 1
                    if offset + 1 == end:
                        del todo[partition]
                    where = b"%b%d" % (prefixes[partition], offset)
                    outcome, out = decide(msg.value(), msg.key(), msg.headers(), where)
                    counts[partition, outcome] += 1
                    read += 1
                    if out is None:
                        continue
                    ts = msg.timestamp()[1]
                    if 0 <= ts < oldest:
                        oldest = ts
                    if send is not None:
                        try:
                            send(target, out[1], out[0], headers=out[2])
                        except BufferError:
                            producer.wait_for_room(target, out)  # type: ignore[union-attr]
                    produced += 1
                    if produced == stop:
                        break
                if producer is not None:
                    producer.serve()
                if on_batch is not None:
                    on_batch(cursor.done(), read)
                if produced == stop:
                    break
            if producer is not None:
                producer.flush()
        except KafkaException as exc:
            raise translate(exc, f"copying {source} to {target}") from exc
        finally:
            tally.read, tally.produced = read, produced
            tally.oldest_ms = None if oldest == _NO_TIME else oldest

    def close(self) -> None:
        """Release both clients."""
        try:
            self._reader.close()
        finally:
            if self._producer is not None:
                self._producer.close()


class _BulkProducer:
    """An idempotent producer (``acks=all``) that hears only of failed deliveries."""

    def __init__(self, settings: Settings) -> None:
        self._failures: list[str] = []
        only_errors = {"delivery.report.only.error": True}
        config: dict[str, Any] = dict(settings.producer_config(**only_errors))
        config["on_delivery"] = self._on_delivery
        self._producer = Producer(config)
        #: librdkafka's produce itself: raises BufferError when the queue is full
        self.send = self._producer.produce

    def _on_delivery(self, err: RdKafkaError | None, _: Any) -> None:
        if err is not None:
            self._failures.append(f"{err.name()}: {err.str()}")

    def wait_for_room(self, topic: str, out: Output) -> None:
        """Produce ``out`` once librdkafka's queue has room (it was full), within a deadline."""
        key, value, headers = out
        deadline = time.monotonic() + _QUEUE_FULL_TIMEOUT_S
        while True:
            self._producer.poll(0.1)
            try:
                self.send(topic, value, key, headers=headers)
                return
            except BufferError:
                if time.monotonic() > deadline:
                    raise KafkaError(
                        f"producing to {topic}: the queue stayed full for "
                        f"{_QUEUE_FULL_TIMEOUT_S:.0f}s",
                        retriable=True,
                    ) from None

    def serve(self) -> None:
        """Serve delivery callbacks (failures only) without waiting."""
        self._producer.poll(0)

    def flush(self) -> None:
        """Wait for every queued record; raise if any failed or is still queued."""
        left = self._producer.flush(_FLUSH_TIMEOUT_S)
        if left:
            raise KafkaError(f"{left} records still queued after {_FLUSH_TIMEOUT_S:.0f}s",
                             retriable=True)  # fmt: skip
        if self._failures:
            raise KafkaError(f"{len(self._failures)} records not delivered: "
                             f"{self._failures[0]}", retriable=True)  # fmt: skip

    def close(self) -> None:
        """Release the client; after an error what is still queued is dropped (the error is
        what the caller reports, and the copies that did arrive are named by their header)."""
        self._producer.purge()
        self._producer.close()
