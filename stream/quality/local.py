"""Our side of the report: customer-key coverage of recent records of the enriched topic.

The enriched record carries each event as the exact JSON of a request's ``data`` array
(:mod:`stream.core.envelope`), so the keys counted here are the keys Meta receives. The read is
bounded twice: by time (records written in the last ``window_s``) and by count (at most
``max_records``, the most recent ones, shared equally by the partitions). It assigns partitions
itself and commits nothing, so it disturbs no stage. Test events (a ``test_event_code``) are left
out, as Meta leaves them out of its numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.config import Settings
from stream.core.errors import DecodeError
from stream.core.match_quality import Coverage, MatchKeyCounts, keys_of_json

#: Defaults of ``capi-stream quality report``: a day of events, at most 100,000 of them.
DEFAULT_WINDOW_S = 86_400.0
DEFAULT_MAX_RECORDS = 100_000


@dataclass(frozen=True, slots=True)
class LocalCoverage:
    """What the enriched topic showed: coverage per (pixel, event label), and how much was read."""

    coverage: dict[tuple[str, str], Coverage]
    records: int  # records read
    counted: int  # of them, events counted (not test events, decodable)
    undecodable: int


def bounded_ranges(
    bounds: dict[int, tuple[int, int]], max_records: int
) -> dict[int, tuple[int, int]]:
    """Each partition's ``(start, end)`` cut to its last ``max_records // partitions`` records.

    >>> bounded_ranges({0: (0, 100), 1: (40, 50)}, 60)
    {0: (70, 100), 1: (40, 50)}
    """
    if not bounds:
        return {}
    share = max(1, max_records // len(bounds))
    return {p: (max(start, end - share), end) for p, (start, end) in bounds.items()}


def read_local(
    settings: Settings,
    *,
    now_s: float,
    window_s: float = DEFAULT_WINDOW_S,
    max_records: int = DEFAULT_MAX_RECORDS,
) -> LocalCoverage:
    """Count customer keys in the enriched topic's records of the last ``window_s`` seconds."""
    from stream.kafka.offsets_admin import OffsetsAdmin
    from stream.kafka.range_reader import read_ranges
    from stream.kafka.serde import build_codecs

    topic = settings.topics.enriched
    ranges = OffsetsAdmin(settings).ranges(topic, from_ms=int((now_s - window_s) * 1000))
    codecs = build_codecs(settings)
    counts = MatchKeyCounts()
    records = counted = undecodable = 0
    try:
        for record in read_ranges(settings, topic, bounded_ranges(ranges, max_records)):
            records += 1
            try:
                decoded = codecs.enriched.decode(record.value or b"")
            except DecodeError:
                undecodable += 1
                continue
            if decoded.get("test_event_code"):
                continue
            counts.add_keys(
                str(decoded["pixel_id"]),
                str(decoded.get("event_name") or ""),
                keys_of_json(decoded["event_json"]),
            )
            counted += 1
    finally:
        codecs.close()
    return LocalCoverage(counts.coverage(), records, counted, undecodable)
