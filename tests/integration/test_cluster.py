"""A three-broker cluster loses the leader of the raw and enriched partitions mid-stream.

Both stages run as separate processes against three KRaft nodes (replication factor 3,
``min.insync.replicas`` 2, transaction state replicated 3 / min ISR 2) while events keep being
published. One node, leader of a raw and an enriched partition, is SIGKILLed and later started
again on its own data dir and ports: two leader elections (away, and back when the preferred
leader returns). The stages must carry on through both without losing, doubling or sticking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from stream.sim import SimConfig, Simulator
from tests.brokers.provision import KafkaCluster
from tests.integration.chaos import (
    SteadyPublisher,
    Supervised,
    assert_exactly_once,
    committed,
    committed_total,
    data_ends,
    end_offsets,
    outcomes,
    undelivered,
    wait_for,
)
from tests.integration.helpers import stage_names, stage_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 3
PIXELS = ("31001", "31002")
TOKENS = {"cluster-tok-a": PIXELS[0], "cluster-tok-b": PIXELS[1]}
RATE = 150.0  # raw events per second


@pytest.fixture
def sim() -> Iterator[Simulator]:
    tokens = {tok: frozenset({pixel}) for tok, pixel in TOKENS.items()}
    with Simulator(SimConfig(tokens=tokens)) as simulator:
        yield simulator


def _leaders(admin: AdminClient, topic: str) -> dict[int, int]:
    """Partition -> node id of its leader (-1 while there is none)."""
    meta = admin.list_topics(topic, timeout=10).topics[topic]
    return {p: part.leader for p, part in meta.partitions.items()}


def _victim(admin: AdminClient, raw: str, enriched: str) -> int:
    """A node that leads both a raw and an enriched partition (round-robin placement: any)."""
    raw_leaders, enriched_leaders = _leaders(admin, raw), _leaders(admin, enriched)
    both = set(raw_leaders.values()) & set(enriched_leaders.values())
    assert both, (raw_leaders, enriched_leaders)
    return min(both)


def test_leader_loss_in_a_three_broker_cluster_neither_loses_nor_doubles_nor_sticks(
    kafka_cluster: KafkaCluster,
    unique: Callable[[str], str],
    sim: Simulator,
    tmp_path: Path,
) -> None:
    """SIGKILL the leader of raw and enriched partitions mid-stream, restart it later.

    Both stages keep committing while the node is down (the new leaders serve them) and after
    it is back; at the end every raw record has exactly one output, every enriched event was
    accepted by the simulator, and both groups have committed to the end of their topics.
    """
    began = time.monotonic()
    bootstrap = kafka_cluster.bootstrap
    names = stage_names(unique)
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    futures = admin.create_topics(
        [NewTopic(names[t], PARTITIONS, 3) for t in ("raw", "enriched", "dlq")]
    )
    for future in futures.values():
        future.result(30)
    settings = stage_settings(
        bootstrap, names,
        access_tokens={pixel: tok for tok, pixel in TOKENS.items()},
        normalizer={"poll_batch": 200, "call_timeout_s": 30.0},
        deliverer={"graph_url": sim.url, "linger_ms": 100, "commit_interval_s": 0.5,
                   "request_timeout_s": 2.0, "retry_base_s": 0.1, "retry_max_s": 1.0},
    )  # fmt: skip
    normalizer = Supervised(["normalize"], settings, tmp_path / "normalizer.log")
    deliverer = Supervised(["deliver"], settings, tmp_path / "deliverer.log")

    def supervise() -> None:
        normalizer.ensure()
        deliverer.ensure()

    def totals() -> tuple[int, int]:
        return (
            committed_total(bootstrap, names["normalizer_group"], names["raw"], PARTITIONS),
            committed_total(bootstrap, names["deliverer_group"], names["enriched"], PARTITIONS),
        )

    def both_past(mark: tuple[int, int], by: int) -> Callable[[], bool]:
        def check() -> bool:
            norm, deliv = totals()
            return norm >= mark[0] + by and deliv >= mark[1] + by

        return check

    def partition_offsets() -> dict[str, dict[int, int]]:
        norm = committed(bootstrap, names["normalizer_group"], names["raw"], PARTITIONS)
        deliv = committed(bootstrap, names["deliverer_group"], names["enriched"], PARTITIONS)
        assert norm is not None
        assert deliv is not None
        return {"raw": norm, "enriched": deliv}

    def led_partitions_moved(before: dict[str, dict[int, int]], led: dict[str, list[int]]) -> bool:
        norm = committed(bootstrap, names["normalizer_group"], names["raw"], PARTITIONS)
        deliv = committed(bootstrap, names["deliverer_group"], names["enriched"], PARTITIONS)
        if norm is None or deliv is None:
            return False
        now = {"raw": norm, "enriched": deliv}
        return all(now[t][p] >= before[t][p] + 50 for t, parts in led.items() for p in parts)

    publisher = SteadyPublisher(bootstrap, names["raw"], PIXELS, rate=RATE, prefix="cl").start()
    normalizer.start()
    deliverer.start()
    timings: dict[str, float] = {}
    try:
        timings["first commits"] = wait_for(both_past((0, 0), 300), 90, "first commits", supervise)
        victim = _victim(admin, names["raw"], names["enriched"])
        led = {t: [p for p, n in _leaders(admin, names[t]).items() if n == victim]
               for t in ("raw", "enriched")}  # fmt: skip
        at_kill = partition_offsets()
        kafka_cluster.kill(victim)
        killed_at, mark = time.monotonic(), totals()
        # carry on without the node: its partitions get new leaders from the two others, and
        # both stages commit past where they were on exactly those partitions
        timings["progress without the node"] = wait_for(
            lambda: both_past(mark, 600)() and led_partitions_moved(at_kill, led), 120,
            "progress on the lost leader's partitions", supervise,
        )  # fmt: skip
        moved = _leaders(admin, names["raw"])
        assert victim not in moved.values(), moved
        # keep it down a while longer under load, then bring it back on its own dir and ports
        wait_for(lambda: time.monotonic() - killed_at > 20, 30, "20 s down", supervise)
        kafka_cluster.restart(victim)
        mark = totals()
        timings["progress after the restart"] = wait_for(
            both_past(mark, 600), 120, "progress after the node's return", supervise
        )
        # preferred leaders move back (auto.leader.rebalance): a second election mid-stream
        timings["leadership back"] = wait_for(
            lambda: victim in _leaders(admin, names["raw"]).values(), 60, "leadership back",
            supervise,
        )  # fmt: skip
        wait_for(both_past(totals(), 300), 60, "progress after leadership returned", supervise)
        raw_count = publisher.finish()
        raw_ends = end_offsets(bootstrap, names["raw"], PARTITIONS)
        assert sum(raw_ends.values()) == raw_count

        def drained() -> bool:
            norm = committed(bootstrap, names["normalizer_group"], names["raw"], PARTITIONS)
            return norm == raw_ends

        timings["normalizer drained"] = wait_for(drained, 120, "normalize to commit the end",
                                                 supervise)  # fmt: skip
        out = outcomes(bootstrap, names, raw_count)
        ends = data_ends(out, PARTITIONS)

        def delivered() -> bool:
            offsets = committed(bootstrap, names["deliverer_group"], names["enriched"], PARTITIONS)
            return offsets is not None and all(offsets[p] >= ends[p] for p in ends)

        timings["deliverer drained"] = wait_for(delivered, 120, "deliver to commit the end",
                                                supervise)  # fmt: skip
    finally:
        publisher.finish()
        rc_norm, rc_deliv = normalizer.stop(), deliverer.stop()

    assert_exactly_once(out, raw_ends)
    assert undelivered(out, sim) == set()
    assert out.deliver_letters == {}  # no faults at the Graph end: nothing to dead-letter
    stats = sim.stats()
    assert stats.accepted == len(out.enriched)
    print(  # the figures the report quotes (pytest -s)
        f"\ncluster: victim node {victim} (leader of {led}), {raw_count} raw, "
        f"{len(out.enriched)} enriched, "
        f"{sum(out.reasons.values())} dead letters, {stats.duplicates} duplicates at the sim; "
        f"normalizer exits {normalizer.exits}, deliverer exits {deliverer.exits}; "
        f"{ {k: round(v, 1) for k, v in timings.items()} }; "
        f"{time.monotonic() - began:.0f}s"
    )
    assert rc_norm == 0, normalizer.tail()
    assert rc_deliv == 0, deliverer.tail()
