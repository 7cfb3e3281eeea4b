"""The normalize stage's match-key report: counts per committed batch, bounded labels, a score
gauge at most every interval, and a rate-limited warning for website events with derived ids."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from stream.core.match_quality import local_score
from stream.core.normalize import WireEvent, normalize_wire
from stream.core.sensors import MemorySensor
from stream.match_report import MatchReport
from tests.factories import empty_user_data, raw_event

NOW = 1_767_225_600.0 + 60
PIXEL = "1234567890"


class Clock:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _event(**overrides: Any) -> WireEvent:
    result = normalize_wire(raw_event(**overrides), NOW)
    assert isinstance(result, WireEvent)
    return result


def _counter(sensor: MemorySensor, name: str, **labels: str) -> float:
    return sensor.counters.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sensor() -> MemorySensor:
    return MemorySensor()


def test_a_committed_batch_is_counted_by_pixel_event_name_and_key(
    sensor: MemorySensor, clock: Clock
) -> None:
    """Three Purchases (em, ph, IP with user agent) and one non-standard event: events per
    name, with the non-standard one as custom, and per key the events that carry it."""
    report = MatchReport(sensor, monotonic=clock)
    for i in range(3):
        report.add(_event(event_id=f"p-{i}"))
    only_email = empty_user_data()
    only_email.update(em=["a@example.com"], client_user_agent="UA")
    report.add(_event(event_name="MyFunnelStep", event_id="c-1", user_data=only_email))
    report.report()
    assert sensor.counters == {}  # nothing before the commit
    report.committed()
    assert sensor.counters == {}  # nor before the next report
    report.report()
    assert _counter(sensor, "events_by_name", pixel=PIXEL, event_name="Purchase") == 3
    assert _counter(sensor, "events_by_name", pixel=PIXEL, event_name="custom") == 1
    purchase = {"pixel": PIXEL, "event_name": "Purchase"}
    for key in ("em", "ph", "client_ip_address", "client_user_agent", "ip_ua"):
        assert _counter(sensor, "match_key_events", **purchase, key=key) == 3, key
    assert _counter(sensor, "match_key_events", **purchase, key="fn") == 0
    custom = {"pixel": PIXEL, "event_name": "custom"}
    assert _counter(sensor, "match_key_events", **custom, key="em") == 1
    assert _counter(sensor, "match_key_events", **custom, key="ip_ua") == 0
    assert sensor.total("derived_event_id") == 0


def test_an_aborted_batch_is_not_counted(sensor: MemorySensor, clock: Clock) -> None:
    """Its records are read again after the abort: counting them now would count them twice."""
    report = MatchReport(sensor, monotonic=clock)
    report.add(_event())
    report.discard()
    report.committed()
    report.report()
    assert sensor.total("events_by_name") == 0


def test_derived_ids_are_counted_and_website_ones_warned_about_once_per_interval(
    sensor: MemorySensor, clock: Clock
) -> None:
    """Events without a producer event_id count as derived per action_source; website ones
    log one warning per pixel per interval (with how many), never per event."""
    report = MatchReport(sensor, monotonic=clock, warn_interval_s=60)
    with capture_logs() as logs:
        for _ in range(2):
            report.add(_event(event_id=None))
        report.add(_event(event_id=None, action_source="email"))
        report.committed()
        report.add(_event(event_id=None))
        report.committed()  # within the interval: counted, not warned
        clock.now += 61
        report.add(_event(event_id=None))
        report.committed()
    report.report()
    derived = {"pixel": PIXEL, "event_name": "Purchase"}
    assert _counter(sensor, "derived_event_id", **derived, action_source="website") == 4
    assert _counter(sensor, "derived_event_id", **derived, action_source="email") == 1
    warnings = [line for line in logs if line["log_level"] == "warning"]
    assert [w["events"] for w in warnings] == [2, 2]
    assert all(w["pixel"] == PIXEL and "browser pixel" in w["event"] for w in warnings)


def test_the_score_gauge_moves_at_most_every_interval_over_the_latest_events(
    sensor: MemorySensor, clock: Clock
) -> None:
    """No score before the interval; then the local score of the events since the last one;
    a row with no new events keeps its value."""
    report = MatchReport(sensor, monotonic=clock, score_interval_s=10)
    report.add(_event())
    report.committed()
    report.report()
    key = ("match_key_score", (("event_name", "Purchase"), ("pixel", PIXEL)))
    assert key not in sensor.gauges
    clock.now += 10
    report.report()
    full = local_score({"em": 1.0, "ph": 1.0, "ip_ua": 1.0})
    assert sensor.gauges[key] == full
    no_phone = empty_user_data()
    no_phone.update(em=["a@example.com"], client_user_agent="UA", client_ip_address="1.2.3.4")
    report.add(_event(user_data=no_phone))
    report.add(_event())
    report.committed()
    clock.now += 5
    report.report()
    assert sensor.gauges[key] == full  # not yet
    clock.now += 5
    report.report()
    assert sensor.gauges[key] == local_score({"em": 1.0, "ph": 0.5, "ip_ua": 1.0})
    clock.now += 10
    report.report()  # nothing new: the last value stays
    assert sensor.gauges[key] == local_score({"em": 1.0, "ph": 0.5, "ip_ua": 1.0})


def test_a_pixel_that_is_not_digits_is_never_logged(sensor: MemorySensor, clock: Clock) -> None:
    """A mis-mapped pixel_id (an e-mail address in the pixel column) reaches no log line."""
    report = MatchReport(sensor, monotonic=clock, warn_interval_s=60)
    with capture_logs() as logs:
        report.add(_event(event_id=None, pixel_id="jane.doe@example.com"))
        report.committed()
    [warning] = [line for line in logs if line["log_level"] == "warning"]
    assert warning["pixel"] == "other"
    assert "jane" not in str(logs)
