"""A deliver-stage dead letter says how hard the stage tried: the real attempt count and the
time of the first failure, over the simulator with a fault that fails, then rejects."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from stream.deliver.stage import Deliverer
from stream.sim import FaultConfig, PoisonRule, SimConfig, Simulator
from tests.integration.helpers import (
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN, PIXEL = "tok-attempts-7f1", "3003"
FAILED = 3  # requests answered 503 before the outage ends


def test_a_rejected_event_after_an_outage_carries_every_attempt(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """The simulator answers 503 to the stage's first three requests (at least), then rejects
    one poisoned event with code 100. Its dead letter counts each failed request that carried
    it (three or more 503s plus the rejection: four or more), its first failure lies before its
    last, and Meta's error is kept; the nine other events are delivered, nothing else is dead."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=1)
    now = time.time()
    ids = [f"att-{i}" for i in range(10)]
    produce(kafka_bootstrap, names["enriched"],
            [(e.encode(), enriched_value(e, PIXEL, now)) for e in ids])  # fmt: skip
    poison = PoisonRule("event_id", "equals", "att-3", message="Poisoned by the test.")
    with Simulator(SimConfig(tokens={TOKEN: frozenset({PIXEL})})) as sim:
        sim.set_faults(FaultConfig(outage_seconds=600, poison=(poison,)))
        settings = stage_settings(
            kafka_bootstrap, names, access_token=TOKEN,
            deliverer={"graph_url": sim.url, "linger_ms": 50, "commit_interval_s": 0.3,
                       "retry_base_s": 0.2, "retry_max_s": 0.5},
        )  # fmt: skip
        stage = Deliverer(settings)
        result: list[object] = []
        thread = threading.Thread(target=lambda: result.append(stage.run(max_idle_s=2)))
        thread.start()
        try:
            wait_until(lambda: sim.stats().requests >= FAILED, 60, "three failing requests")
            sim.set_faults(FaultConfig(poison=(poison,)))
            thread.join(60)
        finally:
            stage.stop()
            thread.join(30)
        (stats,) = result
    assert (stats.delivered, stats.dead_lettered) == (9, 1)  # type: ignore[attr-defined]
    codec = AvroCodec(schemas.load("dead_letter"))
    (record,) = read_all(kafka_bootstrap, names["dlq"], expected=1, idle_s=1.0)
    letter = codec.decode(record.value or b"")
    assert (letter["event_id"], letter["reason"], letter["stage"]) == (
        "att-3", "rejected_by_meta", "deliver")  # fmt: skip
    assert letter["meta_error"]["code"] == 100
    assert "Poisoned by the test." in str(letter["meta_error"])
    assert letter["attempts"] >= FAILED + 1
    first, last = letter["first_failure_at"], letter["last_failure_at"]
    first_ms = first if isinstance(first, int) else int(first.timestamp() * 1000)
    last_ms = last if isinstance(last, int) else int(last.timestamp() * 1000)
    assert last_ms > first_ms  # three requests and their backoffs lie between the two
