"""The lanes report: per lane and per pixel, pending events and the oldest's times."""

from __future__ import annotations

from stream.core.polled import Polled
from stream.core.records import Record
from stream.core.settlement import Settlement
from stream.core.window import LaneKey
from stream.deliver.report import LaneReport
from tests.unit.deliver.helpers import TP

GRAPH_A, GATEWAY_A = LaneKey("graph", "A"), LaneKey("gateway", "A")
GRAPH_B = LaneKey("graph", "B")


def test_pending_events_and_their_oldest_times_per_lane_and_pixel() -> None:
    """An event in two lanes counts in both; a pixel counts each of its events once; the
    oldest event time and arrival are the minimum over the events, whatever their order."""
    settlement = Settlement()
    settlement.assign([TP])
    first = settlement.track(Polled.of([Record(TP.topic, 0, 0, None, b"v")]), now=100.0)
    rest = settlement.track(
        Polled.of([Record(TP.topic, 0, o, None, b"v") for o in (1, 2, 3)]), now=200.0
    )
    routes = [
        ((GRAPH_A, GATEWAY_A), "A", 50.0),
        ((GRAPH_A,), "A", 10.0),
        ((GRAPH_B,), "B", 70.0),
        ((), None, None),  # refused before routing: counted nowhere
    ]
    for entry, (lanes, pixel, event_time) in zip(first + rest, routes, strict=True):
        assert entry is not None
        entry.lanes, entry.pixel_id, entry.event_time = lanes, pixel, event_time
    report = LaneReport.of(settlement.unsettled())
    seen = {lane: (o.pending, o.event_time, o.arrived_at) for lane, o in report.lanes.items()}
    assert seen == {
        GRAPH_A: (2, 10.0, 100.0), GATEWAY_A: (1, 50.0, 100.0), GRAPH_B: (1, 70.0, 200.0)
    }  # fmt: skip
    pixels = {p: (o.pending, o.event_time, o.arrived_at) for p, o in report.pixels.items()}
    assert pixels == {"A": (2, 10.0, 100.0), "B": (1, 70.0, 200.0)}
