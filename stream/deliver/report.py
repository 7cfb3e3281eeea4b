"""What the deliver stage reports about its lanes: gauges for ``/metrics``, rows for ``/status``.

Both come from one pass over the unsettled events (O(pending), every report interval, on the
loop's thread): per lane its pending events, the age of the oldest (now minus ``event_time``:
Meta's limit applies to it) and how long the oldest has waited in the stage.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

from stream.core.errors import KafkaError
from stream.core.lag import commit_lag
from stream.core.records import TopicPartition
from stream.core.sensors import Sensor
from stream.core.settlement import Settlement, Unsettled
from stream.core.status import LaneStatus
from stream.core.window import LaneKey
from stream.deliver.lanes import Lane


@dataclass(slots=True)
class _Oldest:
    pending: int = 0
    event_time: float | None = None
    arrived_at: float | None = None

    def add(self, entry: Unsettled) -> None:
        self.pending += 1
        event_time = entry.event_time
        if event_time is not None and (self.event_time is None or event_time < self.event_time):
            self.event_time = event_time
        arrived_at = entry.arrived_at
        if self.arrived_at is None or arrived_at < self.arrived_at:
            self.arrived_at = arrived_at

    def merge(self, other: _Oldest) -> None:
        self.pending += other.pending
        for name in ("event_time", "arrived_at"):
            theirs, mine = getattr(other, name), getattr(self, name)
            if theirs is not None and (mine is None or theirs < mine):
                setattr(self, name, theirs)


@dataclass(slots=True)
class LaneReport:
    """Per lane and per pixel: pending events, the oldest's event time and arrival."""

    lanes: dict[Hashable, _Oldest] = field(default_factory=dict)
    pixels: dict[str, _Oldest] = field(default_factory=dict)

    @classmethod
    def of(cls, unsettled: Iterable[Unsettled]) -> LaneReport:
        """One pass over the unsettled events.

        It visits every pending event each report interval (tens of thousands when a lane is
        down): the events are first counted per (lanes, pixel) with their oldest times, then
        spread to lanes and pixels once per group, not once per event.
        """
        groups: dict[tuple[tuple[Hashable, ...], str | None], _Oldest] = {}
        for entry in unsettled:
            key = (entry.lanes, entry.pixel_id)
            group = groups.get(key)
            if group is None:
                group = groups[key] = _Oldest()
            group.add(entry)
        report = cls()
        for (entry_lanes, pixel), group in groups.items():
            for lane in entry_lanes:
                report.lanes.setdefault(lane, _Oldest()).merge(group)
            if pixel is not None:
                report.pixels.setdefault(pixel, _Oldest()).merge(group)
        return report

    def statuses(self, lanes: Mapping[LaneKey, Lane], now: float) -> list[LaneStatus]:
        """A row per lane that has a state or pending events, sorted by pixel."""
        rows = []
        for key, lane in lanes.items():
            oldest = self.lanes.get(key, _Oldest())
            rows.append(lane.status(
                pending=oldest.pending, oldest_event_age_s=_age(now, oldest.event_time),
                oldest_wait_s=_age(now, oldest.arrived_at),
            ))  # fmt: skip
        for lane_key, oldest in self.lanes.items():
            if lane_key in lanes or not isinstance(lane_key, LaneKey):
                continue
            key = lane_key
            rows.append(LaneStatus(  # events waiting in a window; no request made yet
                pixel_id=key.pixel_id, test_event_code=key.test_event_code,
                destination=key.destination, state="running", pending=oldest.pending,
                oldest_event_age_s=_age(now, oldest.event_time),
                oldest_wait_s=_age(now, oldest.arrived_at),
            ))  # fmt: skip
        rows.sort(key=lambda r: (r.pixel_id, r.destination, r.test_event_code or ""))
        return rows

    def gauges(self, sensor: Sensor, seen: set[str], now: float) -> None:
        """``oldest_pending_age_seconds`` and ``oldest_pending_wait_seconds`` per pixel.

        A pixel seen before and with nothing pending now reports 0 (a gauge left at its last
        value would alert for ever); ``seen`` grows by the pixels reported.
        """
        seen.update(self.pixels)
        for pixel in seen:
            oldest = self.pixels.get(pixel, _Oldest())
            sensor.gauge("oldest_pending_age_seconds", _age(now, oldest.event_time) or 0.0,
                         pixel=pixel)  # fmt: skip
            sensor.gauge("oldest_pending_wait_seconds", _age(now, oldest.arrived_at) or 0.0,
                         pixel=pixel)  # fmt: skip


async def stage_gauges(
    sensor: Sensor,
    settlement: Settlement,
    *,
    in_flight: int,
    halted: int,
    lag: Callable[[set[TopicPartition]], Awaitable[dict[TopicPartition, int]]] | None,
) -> None:
    """The stage's gauges: in flight, pending, halted lanes, partitions, commit and consumer lag.

    Consumer lag comes from the consumer's positions and readable ends (no broker call; see
    :mod:`stream.core.lag`: 0 once everything readable is read, transaction markers included),
    through the poll thread; it is skipped when the consumer does not answer.
    """
    sensor.gauge("in_flight", in_flight)
    sensor.gauge("pending", settlement.pending_count())
    sensor.gauge("lanes_halted", halted)
    assigned = settlement.assigned()
    sensor.gauge("assigned_partitions", len(assigned), stage="deliver")
    read = {tp: end for tp in assigned if (end := settlement.read_end(tp)) is not None}
    committed = {tp: c for tp in read if (c := settlement.committed(tp)) is not None}
    sensor.gauge("commit_lag", commit_lag(read, committed), stage="deliver")
    if lag is None:
        return
    try:
        left = await lag(assigned)
    except KafkaError:
        return
    sensor.gauge("consumer_lag", sum(left.values()), stage="deliver")


def _age(now: float, then: float | None) -> float | None:
    return None if then is None else max(now - then, 0.0)
