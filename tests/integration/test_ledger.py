"""The delivery ledger on the real broker: one record per accepted batch and destination.

``deliverer.ledger=true`` writes each accepted batch's delivery record to a compacted topic.
Compaction keeps one record per key, so two batches must never share a key: a record whose key
another batch reuses is lost at the next compaction, and with it the proof that those events
reached that destination.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import orjson
import pytest
from pydantic import SecretStr

from stream.deliver.stage import Deliverer
from stream.sim import SimConfig, Simulator
from tests.integration.helpers import (
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-ledger-test-0123456789"
GATEWAY_KEY = "gw-ledger-key-0123456789"
PIXELS = ("111", "222")


def test_every_accepted_batch_of_both_destinations_has_its_own_ledger_record(
    kafka_bootstrap: str, unique: Callable[[str], str], make_topics: Callable[..., None]
) -> None:
    """Graph and the Gateway each accept every event: each destination's records cover every
    event once, every record has its own key, and no credential is in a record."""
    names = stage_names(unique)
    ledger = unique("ledger")
    make_topics(names["enriched"], names["dlq"], partitions=3)
    make_topics(ledger, partitions=1)
    now = time.time()
    per_pixel = 300
    items = [
        (f"{pixel}-{i}".encode(), enriched_value(f"{pixel}-{i}", pixel, now))
        for pixel in PIXELS
        for i in range(per_pixel)
    ]
    produce(kafka_bootstrap, names["enriched"], items)
    config = SimConfig(
        tokens={TOKEN: frozenset({"*"})}, gateway_keys={GATEWAY_KEY: frozenset({"*"})}
    )
    with Simulator(config) as graph, Simulator(config) as gateway:
        settings = stage_settings(
            kafka_bootstrap,
            names,
            access_token=TOKEN,
            deliverer={
                "graph_url": graph.url, "gateway_url": gateway.url, "destination": "gateway",
                "gateway_only": False, "ledger": True, "linger_ms": 200,
                "commit_interval_s": 0.5,
                # small requests: several batches per pixel and destination
                "max_events": 100,
            },
        )  # fmt: skip
        settings = settings.model_copy(
            update={
                "gateway_access_key": SecretStr(GATEWAY_KEY),
                "topics": settings.topics.model_copy(update={"ledger": ledger}),
            }
        )
        stats = Deliverer(settings).run(max_idle_s=3)
        assert graph.stats().accepted == len(items)
        assert gateway.stats().accepted == len(items)
    assert stats.delivered == len(items)

    records = read_all(kafka_bootstrap, ledger, idle_s=1.0, timeout_s=30)
    keys = [r.key for r in records]
    assert len(keys) == len(set(keys)), "two batches share a ledger key: compaction drops one"
    sent: dict[tuple[str, str], int] = defaultdict(int)
    for record in records:
        raw = record.value or b""
        assert TOKEN.encode() not in raw
        assert GATEWAY_KEY.encode() not in raw
        assert TOKEN.encode() not in (record.key or b"")
        delivery = orjson.loads(raw)
        assert delivery["events_received"] == delivery["events_sent"]
        sent[(delivery["destination"], delivery["pixel_id"])] += delivery["events_sent"]
    assert set(sent.values()) == {per_pixel}
    assert {destination for destination, _ in sent} == {"graph", "gateway"}
    assert {pixel for _, pixel in sent} == set(PIXELS)
