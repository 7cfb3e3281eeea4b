"""Transient answers are retried, never dead-lettered, against a real broker and simulator.

Meta's outages and hiccups (HTTP 500 and 503 pages, Graph codes 1 and 2, a connection reset, a
request that hangs past the client's timeout, with or without Meta processing it) say nothing
about the events: a stage that dead-lettered on them would lose good events in silence (to
the dead-letter topic, where nobody expects them). For each kind: every request gets it for
6 s from the first, then none does; every event is accepted, none is dead-lettered, and the
group is committed to the end. Six seconds is enough for a stage that took the fault for a bad
event to bisect its batches of 100 down to single events and dead-letter them (isolation sends
its probes at once, about 2 x 64 a batch before its first single event): with Graph code 1
classified as Invalid, the code_1 case fails.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from stream.deliver.stage import Deliverer
from stream.sim import FaultConfig, SimConfig, Simulator
from tests.integration.helpers import (
    committed_total,
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-transient-test"
PIXELS = ("111", "222")
EVENTS = 1000
PARTITIONS = 3
FAULT_S = 6.0  # every request gets the fault this long


@pytest.mark.parametrize(
    ("kind", "hang_mode"),
    [
        ("http_500", "close"),
        ("http_503", "close"),
        ("code_1", "close"),
        ("code_2", "close"),
        ("reset", "close"),
        ("hang", "close"),
        ("hang", "process"),
    ],
)
def test_transient_answers_are_retried_and_never_dead_lettered(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None],
    kind: str, hang_mode: str,
) -> None:  # fmt: skip
    """1,000 events over two pixels in requests of at most 100; every request gets ``kind``
    for FAULT_S: each event is then accepted by the simulator, none is dead-lettered, and the
    group's committed offsets reach the end."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=PARTITIONS)
    now = time.time()
    ids = [f"tr-{i}" for i in range(EVENTS)]
    records = ((i.encode(), enriched_value(i, PIXELS[n % 2], now)) for n, i in enumerate(ids))
    produce(kafka_bootstrap, names["enriched"], records)
    group, topic = names["deliverer_group"], names["enriched"]
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as sim:

        def injected() -> int:
            return sum(sim.stats(pixel).faults.get(kind, 0) for pixel in PIXELS)

        sim.set_faults(FaultConfig(rates={kind: 1.0}, hang_seconds=1.5, hang_mode=hang_mode))
        settings = stage_settings(
            kafka_bootstrap, names, access_token=TOKEN,
            deliverer={"graph_url": sim.url, "linger_ms": 100, "max_events": 100,
                       "request_timeout_s": 1.0, "retry_base_s": 0.1, "retry_max_s": 0.5,
                       "commit_interval_s": 0.5},
        )  # fmt: skip
        stage = Deliverer(settings)
        thread = threading.Thread(target=stage.run, daemon=True)
        thread.start()
        try:
            first = wait_until(lambda: injected() >= 1, 60, f"a request to get {kind}")
            time.sleep(max(0.0, first + FAULT_S - time.monotonic()))
            sim.clear_faults()
            wait_until(lambda: sim.stats().accepted == EVENTS, 60, "every event accepted")
            wait_until(
                lambda: committed_total(kafka_bootstrap, group, topic, PARTITIONS) == EVENTS,
                30,
                "commits",
            )
        finally:
            stage.stop()
            thread.join(60)
        received, faults = sim.stats(), injected()
    print(f"{kind} ({hang_mode}): {faults} faults in {received.requests} requests, "
          f"{received.duplicates} duplicates at Meta")  # fmt: skip
    assert not thread.is_alive()
    assert stage.stats.dead_lettered == 0
    assert received.missing(("Purchase", i) for i in ids) == set()
    assert read_all(kafka_bootstrap, names["dlq"], idle_s=1.0) == []
