"""Upgrading the enriched record: a topic holding version-1 and version-2 records drains (issue 11).

A normalizer before issue 11 wrote version 1 (``schemas/capi_event.v1.avsc``); a new one writes
version 2 (the envelope). A deliverer reads both, told apart by the first byte of the Avro body
(``stream.core.envelope``), in both wire formats. In the Confluent format the subject holds
version 1 first, in BACKWARD mode, and the deliverer's own registration of version 2 passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient

from stream import schemas
from stream.config import Settings
from stream.core.codec import AvroCodec
from stream.core.envelope import MARKER
from stream.deliver.stage import Deliverer
from stream.kafka.registry import Registry
from stream.kafka.serde import build_codecs
from stream.sim import SimConfig, Simulator
from tests.integration.helpers import (
    enriched_value,
    produce,
    read_all,
    stage_names,
    stage_settings,
)
from tests.integration.test_oversized import committed

pytestmark = pytest.mark.integration

TOKEN = "tok-upgrade-test"
PIXELS = ("111", "222")
EVENTS = 60


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
def test_a_topic_of_old_and_new_enriched_records_drains(
    kafka_bootstrap: str,
    schema_registry_url: str,
    unique: Callable[[str], str],
    make_topics: Callable[..., None],
    wire: str,
) -> None:
    """Version-1 and version-2 records interleaved on one partition (a backlog meeting a new
    normalizer) are all delivered once, none dead-lettered, and every offset is committed."""
    names = stage_names(unique)
    make_topics(names["enriched"], names["dlq"], partitions=1)
    registry = {"schema_registry_url": schema_registry_url} if wire == "confluent" else {}
    now = time.time()
    ids = [f"up-{i}" for i in range(EVENTS)]
    # every third record is new: old and new alternate within one partition's order
    versions = [2 if i % 3 == 0 else 1 for i in range(EVENTS)]
    values = [enriched_value(e, PIXELS[i % 2], now, version=versions[i]) for i, e in enumerate(ids)]
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_token=TOKEN, **registry,
            deliverer={"graph_url": sim.url, "linger_ms": 200, "commit_interval_s": 0.5},
        )  # fmt: skip
        if wire == "confluent":
            values = _as_confluent(schema_registry_url, settings, values, versions)
        produce(
            kafka_bootstrap, names["enriched"], zip((e.encode() for e in ids), values, strict=True)
        )

        stats = Deliverer(settings).run(max_idle_s=2)

        assert sim.stats().exactly_once({("Purchase", e) for e in ids})
    assert (stats.delivered, stats.dead_lettered) == (EVENTS, 0)
    assert read_all(kafka_bootstrap, names["dlq"], expected=0, timeout_s=2.0) == []
    assert committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) == EVENTS


def _as_confluent(
    url: str, settings: Settings, values: list[bytes], versions: list[int]
) -> list[bytes]:
    """The schemaless values re-encoded in the Confluent format, each with its version's id.

    Version 1 is registered first, as an older normalizer did, and the subject is put in
    BACKWARD mode, so the registry checks version 2 when the stage's codecs register it.
    """
    subject = schemas.subject(settings.topics.enriched)
    registry = Registry(url)
    client = SchemaRegistryClient({"url": url})
    try:
        v1_id = registry.register(subject, schemas.load("capi_event.v1"))
        client.set_compatibility(subject_name=subject, level="BACKWARD")
    finally:
        client.close()
        registry.close()
    codecs = build_codecs(settings)  # what the deliverer does at start: registers version 2
    codecs.close()
    assert codecs.enriched.schema_id not in (None, v1_id)
    v1 = AvroCodec(schemas.load("capi_event.v1"), wire_format="confluent", schema_id=v1_id)
    plain = {1: AvroCodec(schemas.load("capi_event.v1")), 2: AvroCodec(schemas.load("capi_event"))}
    out = []
    for value, version in zip(values, versions, strict=True):
        writer = v1 if version == 1 else codecs.enriched
        out.append(writer.encode(plain[version].decode(value)))
    assert all(v[5:6] == MARKER for v, n in zip(out, versions, strict=True) if n == 2)
    return out
