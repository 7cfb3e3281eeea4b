"""In production mode a test event never reaches Meta, against a real broker and simulator.

An event sent with a ``test_event_code`` shows in Events Manager's test tool; without the
production guard, a test event left in a production topic would either pollute that tool or,
worse, be counted as a real conversion if the code were dropped. The deliver stage with
``production=true`` dead-letters every event that carries a ``test_event_code`` before it joins
a window (``test_event_in_production``, no attempt made), and delivers the rest.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from stream.deliver.stage import Deliverer
from stream.kafka.serde import build_codecs
from stream.sim import SimConfig, Simulator
from tests.integration.helpers import (
    committed_total,
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-production-test"
PIXEL = "111"
PARTITIONS = 2


def test_production_mode_dead_letters_test_events_and_delivers_the_rest(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """200 events, every other one with a test_event_code: the 100 real ones are accepted, the
    simulator sees no test event at all, the 100 test events are dead letters with reason
    test_event_in_production and 0 attempts, and the group is committed to the end."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=PARTITIONS)
    now = time.time()
    real = [f"real-{i}" for i in range(100)]
    tests = [f"test-{i}" for i in range(100)]
    records = [(e.encode(), enriched_value(e, PIXEL, now)) for e in real]
    records += [
        (e.encode(), enriched_value(e, PIXEL, now, test_event_code="TEST4711")) for e in tests
    ]
    produce(kafka_bootstrap, names["enriched"], records)
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_token=TOKEN,
            deliverer={"graph_url": sim.url, "linger_ms": 100, "production": True},
        )  # fmt: skip
        stats = Deliverer(settings).run(max_idle_s=3)
        received = sim.stats()
    assert (stats.delivered, stats.dead_lettered) == (100, 100)
    assert received.accepted == 100
    assert received.test_events == 0
    assert received.missing(("Purchase", e) for e in real) == set()
    assert not {event_id for _, event_id in received.event_keys} & set(tests)

    dead = read_all(kafka_bootstrap, names["dlq"], expected=100, idle_s=0.5)
    codecs = build_codecs(settings)
    try:
        letters = [codecs.dlq.decode(r.value or b"") for r in dead]
    finally:
        codecs.close()
    assert sorted(letter["event_id"] for letter in letters) == sorted(tests)
    assert {letter["reason"] for letter in letters} == {"test_event_in_production"}
    assert {letter["attempts"] for letter in letters} == {0}

    group, topic = names["deliverer_group"], names["enriched"]
    assert committed_total(kafka_bootstrap, group, topic, PARTITIONS) == len(records)
