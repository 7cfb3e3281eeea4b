"""Short receipts: Meta answers 2xx with ``events_received`` below the events sent (issue 10, 3).

The simulator answers short (``short_receipts_first`` and a ``short_receipt`` rate) and keeps a
journal of every request. Nothing of a short batch may count as delivered: it is re-sent until
an answer is full, or dead-lettered as ``short_receipt`` with Meta's fbtrace_id; and no commit
may pass an event that is neither.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from stream import schemas
from stream.core.codec import AvroCodec
from stream.deliver.stage import Deliverer
from stream.sim import FaultConfig, Latency, SimConfig, Simulator
from tests.integration.helpers import (
    GroupOffsets,
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-short-receipt"
PIXELS = ("311", "322")
PARTITIONS = 3


@pytest.fixture
def names(unique: Callable[[str], str], make_topics: Callable[..., None]) -> dict[str, str]:
    n = stage_names(unique)
    make_topics(n["enriched"], n["dlq"], partitions=PARTITIONS)
    return n


@pytest.fixture
def sim() -> Iterator[Simulator]:
    config = SimConfig(tokens={TOKEN: frozenset({"*"})}, journal=True)
    with Simulator(config) as simulator:
        yield simulator


def _committed(offsets: GroupOffsets) -> dict[int, int]:
    """The group's committed next_offset per partition (none: nothing committed, or the
    coordinator is still loading: nothing committed that we can see)."""
    return offsets() or {}


def _confirmed(sim: Simulator) -> set[str]:
    """Event ids the simulator counted in a full (not short) answer so far."""
    return {eid for entry in sim.journal() if not entry.short for _, eid in entry.keys}


def _publish(bootstrap: str, topic: str, ids: list[str], pixels: tuple[str, ...]) -> None:
    now = time.time()
    produce(bootstrap, topic, ((e.encode(), enriched_value(e, pixels[i % len(pixels)], now))
                               for i, e in enumerate(ids)))  # fmt: skip


def test_short_receipts_are_re_sent_or_dead_lettered_and_never_committed_past(
    kafka_bootstrap: str, names: dict[str, str], sim: Simulator
) -> None:
    """Every event ends in a full receipt or as a short_receipt dead letter; commits wait.

    First one batch alone (one pixel, 100 events) meets three short answers: with two re-sends
    allowed it is dead-lettered (deterministically). Then 1,900 more events meet short answers
    at random (a third of the requests): their batches are re-sent until an answer is full, or
    dead-lettered. A sampler reads the committed offsets every 50 ms during the run: every
    event below a committed offset must already be confirmed in a full answer, or be
    dead-lettered.
    """
    first, total = 100, 2000
    ids = [f"sr-{i}" for i in range(total)]
    topic, group = names["enriched"], names["deliverer_group"]
    sim.set_faults(FaultConfig(short_receipts_first=3, short_receipt_missing=3))
    settings = stage_settings(
        kafka_bootstrap, names, access_token=TOKEN,
        deliverer={"graph_url": sim.url, "linger_ms": 50, "max_events": 100,
                   "short_receipt_retries": 2, "retry_base_s": 0.02, "retry_max_s": 0.1,
                   "request_timeout_s": 5.0},
    )  # fmt: skip
    offsets = GroupOffsets(kafka_bootstrap, group, topic, PARTITIONS)
    samples: list[tuple[dict[int, int], set[str]]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            # the confirmed set is read after the offsets: whatever a commit covered was
            # confirmed before that commit, so before this read
            committed = _committed(offsets)
            samples.append((committed, _confirmed(sim)))
            done.wait(0.05)

    stage = Deliverer(settings)
    thread = threading.Thread(target=stage.run, kwargs={"max_idle_s": 3}, daemon=True)
    sampler = threading.Thread(target=sample, daemon=True)
    _publish(kafka_bootstrap, topic, ids[:first], PIXELS[:1])  # one lane: one batch
    thread.start()
    sampler.start()
    try:
        wait_until(lambda: stage.stats.dead_lettered == first, 60, "the first batch's dead letters")
        sim.set_faults(FaultConfig(seed=11, rates={"short_receipt": 0.35}, short_receipt_missing=3,
                                   latency=Latency(kind="fixed", ms=5)))  # fmt: skip
        _publish(kafka_bootstrap, topic, ids[first:], PIXELS)
        thread.join(120)
        assert not thread.is_alive()
    finally:
        stage.stop()
        done.set()
        sampler.join(10)
    stats = stage.stats

    codec = AvroCodec(schemas.load("dead_letter"))
    records = read_all(kafka_bootstrap, names["dlq"], idle_s=1.0, timeout_s=30)
    letters = [codec.decode(r.value or b"") for r in records]
    dead = {str(letter["event_id"]) for letter in letters}
    assert {letter["reason"] for letter in letters} == {"short_receipt"}
    assert all(letter["meta_error"]["fbtrace_id"] for letter in letters)
    assert all(letter["attempts"] == 3 for letter in letters)
    confirmed = _confirmed(sim)
    assert set(ids[:first]) <= dead
    assert dead.isdisjoint(confirmed)  # a full answer confirms; a dead letter means none came
    assert dead | confirmed == set(ids)
    assert stats.short_receipts > 3  # the random ones happened too
    assert stats.delivered + stats.dead_lettered == total
    where = {(r.partition, r.offset): (r.key or b"").decode()
             for r in read_all(kafka_bootstrap, topic, expected=total, idle_s=0.5)}  # fmt: skip
    final = _committed(offsets)
    offsets.close()
    assert sum(final.values()) == total
    assert len(samples) > 5
    for committed, confirmed_then in samples:
        passed = {e for (p, o), e in where.items() if o < committed.get(p, 0)}
        assert passed <= confirmed_then | dead, sorted(passed - confirmed_then - dead)[:5]
