"""The deliver stage never produces a dead letter the broker would refuse (issue 10 part 2).

An enriched record the deliver stage must dead-letter can be as large as the enriched topic
takes (``max.message.bytes`` 1,048,588 by default, written by any producer that allows it);
its dead letter, whole, is then over the stage producer's 1,000,000 bytes, and producing it
used to fail, stop the stage, and stall the partition at every restart.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable

import pytest

from stream.core.dead_letter import PREFIX_BYTES, record_size
from stream.core.envelope import envelope
from stream.core.normalize import Normalized, normalize_event
from stream.deliver.stage import Deliverer
from stream.kafka.serde import Codecs, build_codecs
from stream.sim import SimConfig, Simulator
from tests.factories import custom_data, raw_event
from tests.integration.helpers import read_all, stage_settings
from tests.integration.test_oversized import (
    DEFAULT_LIMIT,
    NOW,
    big_producer_produce,
    committed,
    create_topics,
    names_for,
)

pytestmark = pytest.mark.integration

TOKEN = "tok-oversized-test"


@pytest.mark.parametrize("wire", ["schemaless", "confluent"])
def test_the_deliver_stage_dead_letters_an_oversized_letter_within_the_limit(
    kafka_bootstrap: str, schema_registry_url: str, unique: Callable[[str], str], wire: str
) -> None:
    """A 1,010,000-byte enriched event the deliver stage must dead-letter (over its max_bytes):
    the letter is cut to fit the limit, and the events after it are delivered and committed."""
    names = names_for(unique)
    create_topics(kafka_bootstrap, names["enriched"], names["dlq"])
    registry = {"schema_registry_url": schema_registry_url} if wire == "confluent" else {}
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_token=TOKEN, **registry,
            deliverer={"graph_url": sim.url, "linger_ms": 200, "max_bytes": 500_000},
        )  # fmt: skip
        codecs = build_codecs(settings)
        small = {f"ok-{i}": enriched(codecs, f"ok-{i}", 0) for i in range(4)}
        big = enriched(codecs, "big", 1_010_000)
        codecs.close()
        items = [(b"ok-0", small["ok-0"]), (b"ok-1", small["ok-1"]), (b"big", big),
                 (b"ok-2", small["ok-2"]), (b"ok-3", small["ok-3"])]  # fmt: skip
        big_producer_produce(kafka_bootstrap, names["enriched"], items)

        stats = Deliverer(settings).run(max_idle_s=3)  # returns: the stage did not crash

        assert sim.stats().accepted == 4
    assert stats.delivered == 4
    dead = read_all(kafka_bootstrap, names["dlq"], expected=1, idle_s=0.5)
    assert len(dead) == 1
    reader = build_codecs(settings)
    try:
        letter = reader.dlq.decode(dead[0].value or b"")
    finally:
        reader.close()
    assert letter["stage"] == "deliver"
    assert letter["reason"] == "event_too_large"
    assert record_size(dead[0].key, dead[0].value, dead[0].headers) <= DEFAULT_LIMIT
    assert letter["original_length"] == len(big)
    assert letter["original_sha256"] == hashlib.sha256(big).hexdigest()
    assert letter["original_value"] == big[:PREFIX_BYTES]
    assert letter["original_truncated"] is True
    assert committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) == len(items)


def enriched(codecs: Codecs, event_id: str, size: int) -> bytes:
    """An enriched record as the normalize stage writes it, padded to about ``size`` bytes."""
    props = {"note": "x" * size} if size else {}
    raw = raw_event(event_id=event_id, event_time=NOW,
                    custom_data=custom_data(custom_properties=props))  # fmt: skip
    result = normalize_event(raw, time.time())
    assert isinstance(result, Normalized), result
    return codecs.enriched.encode(envelope(
        result.event, pixel_id=result.pixel_id, event_id=result.event_id,
        test_event_code=result.test_event_code, warnings=list(result.warnings),
        source=("raw", 0, 0), normalized_at_ms=NOW * 1000,
    ))  # fmt: skip


def test_a_dead_letter_the_broker_refuses_stops_the_stage_instead_of_stalling(
    kafka_bootstrap: str, unique: Callable[[str], str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Had the limit been read wrong, producing the dead letter fails (MSG_SIZE_TOO_LARGE): the
    stage must stop with that error (its supervisor restarts it, nothing is committed past the
    event), never go on with the record tracked and unsettled, silently holding its partition."""
    import stream.deliver.stage

    names = names_for(unique)
    create_topics(kafka_bootstrap, names["enriched"], names["dlq"])
    # what a wrong limit would let through: every letter whole, however large
    monkeypatch.setattr(stream.deliver.stage, "max_record_bytes", lambda *_, **__: 10**9)
    with Simulator(SimConfig(tokens={TOKEN: frozenset({"*"})})) as sim:
        settings = stage_settings(
            kafka_bootstrap, names, access_token=TOKEN,
            deliverer={"graph_url": sim.url, "linger_ms": 200, "max_bytes": 500_000},
        )  # fmt: skip
        codecs = build_codecs(settings)
        big = enriched(codecs, "big", 1_010_000)
        after = enriched(codecs, "ok-after", 0)
        codecs.close()
        big_producer_produce(kafka_bootstrap, names["enriched"], [(b"big", big), (b"ok", after)])
        began = time.monotonic()
        with pytest.raises(Exception, match=r"MSG_SIZE_TOO_LARGE|too large"):
            Deliverer(settings).run(max_idle_s=30)
    assert time.monotonic() - began < 25  # stopped on the error, not after idling out
    assert committed(kafka_bootstrap, names["deliverer_group"], names["enriched"]) in (None, 0)
