"""Each injected fault, as a real httpx client meets it."""

from __future__ import annotations

import threading
import time

import httpx
import orjson
import pytest

from stream.sim import FaultConfig, Latency, PoisonRule, Simulator
from tests.sim.conftest import StartSim, default_config
from tests.sim.events import PIXEL, Clock, error_of, event, post


def test_http_500_answers_a_bare_page(client: httpx.Client, sim: Simulator) -> None:
    """http_500 answers HTTP 500 with a non-JSON page, as a load balancer would."""
    sim.set_faults(FaultConfig(rates={"http_500": 1.0}))
    response = post(client, [event(0)])
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")


def test_http_503_answers_a_bare_page(client: httpx.Client, sim: Simulator) -> None:
    """http_503 answers HTTP 503 with a non-JSON page."""
    sim.set_faults(FaultConfig(rates={"http_503": 1.0}))
    response = post(client, [event(0)])
    assert response.status_code == 503
    assert b"Service Unavailable" in response.content


@pytest.mark.parametrize(("kind", "status", "code"), [("code_1", 500, 1), ("code_2", 503, 2)])
def test_transient_graph_codes(
    client: httpx.Client, sim: Simulator, kind: str, status: int, code: int
) -> None:
    """code_1 and code_2 answer Graph errors marked transient."""
    sim.set_faults(FaultConfig(rates={kind: 1.0}))
    response = post(client, [event(0)])
    assert response.status_code == status
    error = error_of(response)
    assert (error["code"], error["is_transient"]) == (code, True)


@pytest.mark.parametrize("code", [4, 17, 613, 80004])
def test_throttles_answer_429_with_usage_headers(
    client: httpx.Client, sim: Simulator, code: int
) -> None:
    """Throttle kinds answer 429, Retry-After and usage headers with the time to regain access."""
    sim.set_faults(
        FaultConfig(rates={f"throttle_{code}": 1.0}, retry_after_seconds=2, regain_access_minutes=3)
    )
    response = post(client, [event(0)])
    assert response.status_code == 429
    assert error_of(response)["code"] == code
    assert error_of(response)["is_transient"] is True
    assert response.headers["retry-after"] == "2"
    usage = orjson.loads(response.headers["x-business-use-case-usage"])
    assert usage[PIXEL][0]["estimated_time_to_regain_access"] == 3
    assert orjson.loads(response.headers["x-app-usage"])["call_count"] == 100


def test_code_190_answers_an_expired_token(client: httpx.Client, sim: Simulator) -> None:
    """code_190 answers an OAuthException with code 190 and a WWW-Authenticate header."""
    sim.set_faults(FaultConfig(rates={"code_190": 1.0}))
    response = post(client, [event(0)])
    assert response.status_code == 400
    assert error_of(response)["code"] == 190
    assert "invalid_token" in response.headers["www-authenticate"]


def test_outage_fails_everything_then_recovers(start_sim: StartSim) -> None:
    """During an outage every request answers 503; after it, requests succeed again."""
    clock = Clock()
    sim = start_sim(clock=clock)
    sim.set_faults(FaultConfig(outage_seconds=30))
    with httpx.Client(base_url=sim.url) as http:
        assert [post(http, [event(i)]).status_code for i in range(3)] == [503, 503, 503]
        clock.advance(31)
        assert post(http, [event(9)]).status_code == 200
    assert sim.stats(PIXEL).faults == {"outage": 3}


def test_hang_outlasts_the_client_timeout(client: httpx.Client, sim: Simulator) -> None:
    """A hang longer than the client's timeout surfaces as httpx.ReadTimeout."""
    sim.set_faults(FaultConfig(rates={"hang": 1.0}, hang_seconds=0.5))
    with pytest.raises(httpx.ReadTimeout):
        client.post(f"/v25.0/{PIXEL}/events", json={"data": [event(0)]}, timeout=0.2)


def test_hang_does_not_block_other_connections(sim: Simulator) -> None:
    """While one request hangs, another connection is answered at once."""
    sim.set_faults(FaultConfig(rates={"hang": 1.0}, hang_seconds=2.0))
    failures: list[BaseException] = []

    def hang() -> None:
        with httpx.Client(base_url=sim.url, timeout=0.5) as slow:
            try:
                post(slow, [event(0)])
            except httpx.ReadTimeout as exc:
                failures.append(exc)

    thread = threading.Thread(target=hang)
    thread.start()
    with httpx.Client(base_url=sim.url, timeout=5) as fast:
        deadline = time.monotonic() + 5
        while sim.stats(PIXEL).faults.get("hang", 0) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        sim.clear_faults()
        started = time.monotonic()
        assert post(fast, [event(1)]).status_code == 200
        # behind the hang it would take its ~1.9 s left; the rest is a loaded machine's slack
        assert time.monotonic() - started < 1.5
    thread.join()
    assert len(failures) == 1


def test_hang_in_process_mode_records_the_events(client: httpx.Client, sim: Simulator) -> None:
    """A processing hang lands the events although the client timed out; a retry is a duplicate."""
    sim.set_faults(FaultConfig(rates={"hang": 1.0}, hang_seconds=0.5, hang_mode="process"))
    with pytest.raises(httpx.ReadTimeout):
        client.post(
            f"/v25.0/{PIXEL}/events",
            json={"data": [event(0)], "access_token": "sim-test-token"},
            timeout=0.2,
        )
    sim.clear_faults()
    assert post(client, [event(0)]).status_code == 200
    stats = sim.stats(PIXEL)
    assert (stats.accepted, stats.duplicates) == (1, 1)


def test_reset_drops_the_connection(client: httpx.Client, sim: Simulator) -> None:
    """A reset closes the socket with no answer: httpx raises a transport error."""
    sim.set_faults(FaultConfig(rates={"reset": 1.0}))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        post(client, [event(0)])
    sim.clear_faults()
    assert post(client, [event(1)]).status_code == 200


def test_fixed_latency_delays_every_answer(client: httpx.Client, sim: Simulator) -> None:
    """A fixed latency delays the answer at least that long."""
    sim.set_faults(FaultConfig(latency=Latency(kind="fixed", ms=150)))
    started = time.monotonic()
    assert post(client, [event(0)]).status_code == 200
    assert time.monotonic() - started >= 0.15


def test_latency_includes_the_work(sim: Simulator) -> None:
    """The events are processed as the request arrives and the answer waits out the rest.

    With the work after the wait, each large request of a burst would add its work to the wait
    of every request behind it on the simulator's one thread.
    """
    sim.set_faults(FaultConfig(latency=Latency(kind="fixed", ms=3000)))
    answers: list[httpx.Response] = []
    with httpx.Client(base_url=sim.url, timeout=10) as http:
        thread = threading.Thread(target=lambda: answers.append(post(http, [event(0)])))
        started = time.monotonic()
        thread.start()
        deadline = started + 2.5
        while sim.stats().accepted < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sim.stats().accepted == 1
        assert not answers  # counted long before its answer
        thread.join()
    assert time.monotonic() - started >= 3.0
    assert [a.status_code for a in answers] == [200]


@pytest.mark.parametrize(
    ("rule", "poisoned"),
    [
        (PoisonRule(field="event_id", op="equals", value="e-2"), 2),
        (PoisonRule(field="custom_data.value", op="gt", value=1000), 1),
        (PoisonRule(field="event_id", op="in", value=frozenset({"e-3", "x"})), 3),
        (PoisonRule(field="user_data.fbp", op="exists", value=True), 1),
        (PoisonRule(field="event_source_url", op="contains", value="/bad/"), 2),
    ],
    ids=["equals", "gt", "in", "exists", "contains"],
)
def test_poison_rule_rejects_matching_event(
    client: httpx.Client, sim: Simulator, rule: PoisonRule, poisoned: int
) -> None:
    """A poisoned event rejects its request with code 100 at its index; others pass."""
    sim.set_faults(FaultConfig(poison=(rule,)))
    events = [event(i) for i in range(4)]
    events[1]["custom_data"]["value"] = 5000
    events[1]["user_data"]["fbp"] = "fb.1.1596403881668.1116446470"
    events[2]["event_source_url"] = "https://shop.example.com/bad/page"
    response = post(client, events)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == 100
    assert error["error_data"] == {"event_index": poisoned}
    del events[poisoned]
    assert post(client, events).status_code == 200


def test_faults_set_through_the_admin_endpoint(client: httpx.Client) -> None:
    """POST /_sim/faults applies a plan, DELETE /_sim/faults clears it."""
    plan = {"rates": {"throttle_613": 1.0}, "retry_after_seconds": 0}
    assert client.post("/_sim/faults", json=plan).status_code == 200
    assert post(client, [event(0)]).status_code == 429
    assert client.delete("/_sim/faults").status_code == 200
    assert post(client, [event(0)]).status_code == 200


def test_admin_endpoint_refuses_a_bad_plan(client: httpx.Client) -> None:
    """An unknown fault kind in a plan is answered 400 and changes nothing."""
    response = client.post("/_sim/faults", json={"rates": {"meteor": 1.0}})
    assert response.status_code == 400
    assert "meteor" in response.json()["error"]["message"]
    assert post(client, [event(0)]).status_code == 200


def test_admin_routes_are_never_faulted(client: httpx.Client, sim: Simulator) -> None:
    """Even during an outage the stats and health endpoints answer."""
    sim.set_faults(FaultConfig(outage_seconds=60, rates={"reset": 1.0}))
    assert client.get("/_sim/healthz").status_code == 200
    assert client.get("/_sim/stats").status_code == 200


def statuses(sim: Simulator, count: int) -> list[int]:
    with httpx.Client(base_url=sim.url) as http:
        return [post(http, [event(i)]).status_code for i in range(count)]


def test_same_seed_gives_same_faults(start_sim: StartSim) -> None:
    """Two simulators with one seed fail the same requests, in arrival order."""
    plan = FaultConfig(seed=7, rates={"http_500": 0.3, "throttle_4": 0.2, "code_2": 0.1})
    first, second = start_sim(default_config(faults=plan)), start_sim(default_config(faults=plan))
    assert statuses(first, 30) == statuses(second, 30)


def test_other_seed_gives_other_faults(start_sim: StartSim) -> None:
    """Another seed draws another sequence."""
    first = start_sim(default_config(faults=FaultConfig(seed=1, rates={"http_500": 0.5})))
    second = start_sim(default_config(faults=FaultConfig(seed=2, rates={"http_500": 0.5})))
    assert statuses(first, 30) != statuses(second, 30)


def test_rates_are_honoured_in_proportion(client: httpx.Client, sim: Simulator) -> None:
    """A rate of 0.25 fails about a quarter of requests."""
    sim.set_faults(FaultConfig(seed=3, rates={"http_503": 0.25}))
    failed = sum(post(client, [event(i)]).status_code == 503 for i in range(200))
    assert 30 <= failed <= 70
    assert sim.stats(PIXEL).faults == {"http_503": failed}


def test_thirty_two_requests_in_flight_are_served_together(sim: Simulator) -> None:
    """32 connections waiting out a 200 ms latency at once finish in about 200 ms, not 32 x."""
    sim.set_faults(FaultConfig(latency=Latency(kind="fixed", ms=200)))
    barrier = threading.Barrier(33)  # the 32 senders and this thread, which starts the clock
    codes: list[int] = []

    def send(worker: int) -> None:
        with httpx.Client(base_url=sim.url, timeout=10) as http:
            barrier.wait()
            codes.append(post(http, [event(worker)]).status_code)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(32)]
    for thread in threads:
        thread.start()
    barrier.wait()  # every client is built (an SSL context each): the requests start now
    started = time.monotonic()
    for thread in threads:
        thread.join()
    assert codes == [200] * 32
    # one after another would take at least 32 x 200 ms; the margin is for a loaded machine
    assert time.monotonic() - started < 32 * 0.2


def test_short_receipt_counts_fewer_events_and_records_only_those(
    client: httpx.Client, sim: Simulator
) -> None:
    """short_receipt answers 200 with events_received below the events sent; a re-send dedups."""
    sim.set_faults(FaultConfig(rates={"short_receipt": 1.0}, short_receipt_missing=2))
    response = post(client, [event(0), event(1), event(2)])
    assert response.status_code == 200
    assert response.json()["events_received"] == 1
    assert response.json()["fbtrace_id"]
    assert sim.stats().accepted == 1
    assert sim.stats().faults == {"short_receipt": 1}
    sim.clear_faults()
    full = post(client, [event(0), event(1), event(2)])
    assert full.json()["events_received"] == 3
    assert (sim.stats().accepted, sim.stats().duplicates) == (3, 1)


def test_first_n_short_receipts_then_full_answers(client: httpx.Client, sim: Simulator) -> None:
    """short_receipts_first=N answers the first N requests short, the rest in full."""
    sim.set_faults(FaultConfig(short_receipts_first=2))
    counts = [post(client, [event(i), event(i + 10)]).json()["events_received"] for i in range(4)]
    assert counts == [1, 1, 2, 2]


def test_first_n_short_receipts_keep_the_seeded_sequence(
    client: httpx.Client, sim: Simulator
) -> None:
    """With latency drawn, the short answers take the first N places and later draws stay put."""
    plan = FaultConfig(seed=5, rates={"http_500": 0.5})
    sim.set_faults(plan)
    plain = [post(client, [event(i)]).status_code for i in range(6)]
    sim.set_faults(FaultConfig(seed=5, rates={"http_500": 0.5}, short_receipts_first=2))
    shorted = [post(client, [event(i)]).status_code for i in range(6)]
    assert shorted[2:] == plain[2:]
    assert shorted[:2] == [200, 200]


def test_journal_keeps_each_request_with_its_times(start_sim: StartSim) -> None:
    """With journal=True each processed request is kept: arrival, answer, sent, recorded keys."""
    sim = start_sim(default_config(journal=True))
    sim.set_faults(FaultConfig(latency=Latency(kind="fixed", ms=50), short_receipts_first=1))
    with httpx.Client(base_url=sim.url, timeout=5.0) as http:
        post(http, [event(0), event(1)])
        post(http, [event(2)])
    first, second = sim.journal()
    assert (first.sent, len(first.keys), first.short) == (2, 1, True)
    assert (second.sent, len(second.keys), second.short) == (1, 1, False)
    assert first.answered_at - first.arrived_at >= 0.04
    assert second.keys[0][1] == event(2)["event_id"]


def test_throttle_usage_percent_sets_the_usage_headers(
    client: httpx.Client, sim: Simulator
) -> None:
    """throttle_usage_percent below 100 reports an unsaturated quota (no minute-long wait)."""
    sim.set_faults(FaultConfig(rates={"throttle_4": 1.0}, throttle_usage_percent=95))
    response = post(client, [event(0)])
    assert orjson.loads(response.headers["x-app-usage"])["call_count"] == 95
