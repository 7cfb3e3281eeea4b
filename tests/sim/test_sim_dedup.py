"""Dedup on (event_name, event_id) per pixel within 48 hours, and the counts tests rely on."""

from __future__ import annotations

import threading

import httpx

from stream.core.capi import DEDUP_WINDOW_SECONDS
from stream.sim import Simulator
from tests.sim.conftest import StartSim, default_config
from tests.sim.events import OTHER_PIXEL, PIXEL, TOKEN, Clock, event, post


def test_distinct_events_arrive_exactly_once(client: httpx.Client, sim: Simulator) -> None:
    """Distinct events are each accepted once, and exactly_once says so."""
    post(client, [event(i) for i in range(5)])
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.duplicates, stats.requests) == (5, 0, 1)
    assert stats.exactly_once({("Purchase", f"e-{i}") for i in range(5)})


def test_repeated_batch_counts_duplicates(client: httpx.Client, sim: Simulator) -> None:
    """Sending a batch three times accepts it once and counts two duplicates per event."""
    batch = [event(i) for i in range(4)]
    for _ in range(3):
        assert post(client, batch).status_code == 200
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.duplicates) == (4, 8)
    assert stats.repeated() == {("Purchase", f"e-{i}"): 3 for i in range(4)}
    assert not stats.exactly_once({("Purchase", f"e-{i}") for i in range(4)})


def test_duplicates_within_one_request_are_counted(client: httpx.Client, sim: Simulator) -> None:
    """The same event twice in one request is one accept and one duplicate."""
    post(client, [event(0), event(0)])
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.duplicates) == (1, 1)


def test_event_name_is_part_of_the_key(client: httpx.Client, sim: Simulator) -> None:
    """One event_id under two event_names is two events."""
    post(client, [event(0), event(0, event_name="Lead", custom_data=None)])
    assert sim.stats(PIXEL).accepted == 2


def test_dedup_is_per_pixel(start_sim: StartSim) -> None:
    """The same event sent to two pixels is accepted by both."""
    sim = start_sim(default_config(tokens={TOKEN: frozenset({"*"})}))
    with httpx.Client(base_url=sim.url) as http:
        post(http, [event(0)])
        http.post(f"/v25.0/{OTHER_PIXEL}/events", json={"data": [event(0)], "access_token": TOKEN})
    assert sim.stats(PIXEL).accepted == sim.stats(OTHER_PIXEL).accepted == 1
    assert sim.stats().accepted == 2


def test_duplicate_within_the_window(start_sim: StartSim) -> None:
    """A copy a second before 48 hours have passed is a duplicate."""
    clock = Clock()
    sim = start_sim(clock=clock)
    with httpx.Client(base_url=sim.url) as http:
        first = event(0)
        post(http, [first])
        clock.advance(DEDUP_WINDOW_SECONDS - 1)
        # the event must stay inside Meta's 7-day age limit on the moved clock
        post(http, [{**first, "event_time": int(clock.now) - 60}])
    assert (sim.stats(PIXEL).accepted, sim.stats(PIXEL).duplicates) == (1, 1)


def test_copy_after_the_window_is_new(start_sim: StartSim) -> None:
    """A copy arriving after 48 hours is accepted again."""
    clock = Clock()
    sim = start_sim(clock=clock)
    with httpx.Client(base_url=sim.url) as http:
        post(http, [event(0)])
        clock.advance(DEDUP_WINDOW_SECONDS + 1)
        post(http, [event(0, event_time=int(clock.now) - 60)])
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.duplicates) == (2, 0)
    assert stats.received == {("Purchase", "e-0"): 2}


def test_events_without_event_id_are_never_duplicates(client: httpx.Client, sim: Simulator) -> None:
    """Events without an event_id cannot be deduplicated: every copy is accepted."""
    anonymous = event(0)
    del anonymous["event_id"]
    post(client, [anonymous, anonymous])
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.duplicates, stats.without_event_id) == (2, 0, 2)


def test_test_events_are_counted_apart(client: httpx.Client, sim: Simulator) -> None:
    """Events sent with test_event_code count as test events, not accepted ones."""
    response = post(client, [event(0), event(1)], test_event_code="TEST123")
    assert response.json()["events_received"] == 2
    stats = sim.stats(PIXEL)
    assert (stats.test_events, stats.accepted) == (2, 0)
    assert not stats.received


def test_rejected_requests_are_not_recorded(client: httpx.Client, sim: Simulator) -> None:
    """A rejected request counts its events as rejected and records none of them."""
    post(client, [event(0), event(1, action_source="web")])
    post(client, [event(0)])
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.rejected, stats.requests) == (1, 2, 2)
    assert stats.event_keys == {("Purchase", "e-0")}


def test_stats_endpoint_matches_the_python_api(client: httpx.Client, sim: Simulator) -> None:
    """GET /_sim/stats reports what Simulator.stats reports, ids on request."""
    post(client, [event(0), event(1)])
    post(client, [event(1)])
    answer = client.get("/_sim/stats", params={"pixel_id": PIXEL, "ids": "1"}).json()
    stats = sim.stats(PIXEL)
    assert answer["accepted"] == stats.accepted == 2
    assert answer["duplicates"] == stats.duplicates == 1
    assert sorted(answer["received"]) == [["Purchase", "e-0", 1], ["Purchase", "e-1", 2]]
    assert answer["pixels"] == [PIXEL]
    assert "received" not in client.get("/_sim/stats").json()


def test_reset_forgets_everything(client: httpx.Client, sim: Simulator) -> None:
    """POST /_sim/reset clears the counts and the dedup store."""
    post(client, [event(0)])
    assert client.post("/_sim/reset").status_code == 200
    post(client, [event(0)])
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.duplicates, stats.requests) == (1, 0, 1)


def test_concurrent_senders_are_counted_exactly(sim: Simulator) -> None:
    """Eight connections posting disjoint batches at once are all recorded exactly once."""

    def send(worker: int) -> None:
        with httpx.Client(base_url=sim.url, timeout=10) as http:
            for batch in range(5):
                events = [event(worker * 1000 + batch * 100 + i) for i in range(100)]
                assert post(http, events).status_code == 200

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expected = {
        ("Purchase", f"e-{w * 1000 + b * 100 + i}")
        for w in range(8)
        for b in range(5)
        for i in range(100)
    }
    stats = sim.stats(PIXEL)
    assert stats.exactly_once(expected)
    assert stats.requests == 40
