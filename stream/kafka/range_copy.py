"""Copy chosen records of offset ranges back onto a topic, each copy saying where it came from.

The copy keeps the key (so the same partitioner puts it beside its key's other records), the
value byte for byte and the headers, and adds ``capi.replay.source=topic[partition]@offset``.
Earlier provenance headers stay: a copy of a copy names both sources, oldest first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from stream.config import Settings
from stream.core.records import Record
from stream.kafka.producer import StageProducer
from stream.kafka.range_reader import Ranges, read_ranges

SOURCE_HEADER = "capi.replay.source"

#: Decides one record: ``(outcome to count, whether to copy it)``.
Chooser = Callable[[Record], tuple[str, bool]]


def provenance(record: Record) -> list[tuple[str, bytes]]:
    """The record's headers plus the header naming the record itself."""
    headers = [(k, v) for k, v in record.headers if v is not None]
    headers.append((SOURCE_HEADER, f"{record.topic}[{record.partition}]@{record.offset}".encode()))
    return headers


class Tally:
    """Counts per partition and outcome (``copied``, ``expired``, ``other_pixel``, …)."""

    def __init__(self) -> None:
        self.counts: Counter[tuple[int, str]] = Counter()
        self.old_copies = 0  # copies of records written before Meta's 48-hour dedup window

    def total(self, *outcomes: str) -> int:
        """How many records had one of ``outcomes``, over all partitions."""
        return sum(n for (_, o), n in self.counts.items() if o in outcomes)

    def of(self, partition: int) -> str:
        """One partition's counts as text: ``"3 copied, 1 expired skipped"``."""
        items = sorted((o, n) for (p, o), n in self.counts.items() if p == partition)
        return ", ".join(f"{n} {o.replace('_', ' ')}" for o, n in items) or "nothing"


def copy_ranges(
    settings: Settings,
    source: str,
    ranges: Ranges,
    target: str,
    choose: Chooser,
    *,
    tally: Tally,
    dry_run: bool = False,
) -> None:
    """Copy the chosen records of ``source``'s ranges onto ``target``, counting outcomes.

    Returns only after every copy was acknowledged (idempotent producer, ``acks=all``); raises
    :class:`~stream.core.errors.KafkaError` if any was not. ``dry_run`` decides and counts only.
    """
    producer = None if dry_run else StageProducer(settings.producer_config(), transactional=False)
    for record in read_ranges(settings, source, ranges):
        outcome, copy = choose(record)
        tally.counts[record.partition, outcome] += 1
        if copy and producer is not None:
            producer.produce(target, record.key, record.value or b"", provenance(record))
            producer.poll()
    if producer is not None:
        producer.flush()
